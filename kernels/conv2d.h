/* conv2d.h - the arithmetic contract of the "same" 2-D convolution (stride 1,
 * zero padding K/2, K odd), shared by the CPU loop (kernels/conv2d_cpu.c) and
 * the CUDA kernel (kernels/conv2d.cu): DESIGN.md rule 2, one definition.
 *
 * Legend: N batch, C input channels, OC output channels, H W spatial
 * (HW = H*W), K kernel (odd), KK = K*K taps, pad = K/2. NCHW, contiguous:
 *   inp[N,C,H,W]  out/dout[N,OC,H,W]  w[OC,C,K,K]  b[OC]
 *
 * Reduction orders (kernels/ops.h, core/reduce.h), bit for bit:
 *  - forward, per output out[n,co,y,x]: acc = 0; for ci, for ky, for kx
 *    (row-major), skipping taps outside the image:
 *    acc = fmaf(inp[n,ci,y+ky-pad,x+kx-pad], w[co,ci,ky,kx], acc);
 *    out = acc + b[co] (out = acc when b is NULL: no "+ 0", which would turn
 *    a -0 into +0).
 *  - input gradient, per dinp[n,ci,y,x]: acc = 0; for co, for ky, for kx:
 *    acc = fmaf(dout[n,co,y-ky+pad,x-kx+pad], w[co,ci,ky,kx], acc) (skip
 *    out-of-range); dinp += acc.
 *  - weight gradient dw[co,ci,ky,kx]: the chunk plan (RCHUNK) over the
 *    batch-major index i = n*HW + y*W + x of dout; position i contributes
 *    fmaf(dout[n,co,y,x], inp[n,ci,y+ky-pad,x+kx-pad], partial) unless the tap
 *    falls outside the image (then it is skipped); each chunk from 0, the
 *    partials summed in chunk order from 0; dw += total.
 *  - bias gradient db[co]: the same plan over dout[n,co,y,x]; db += total.
 * "Skipped" is not "multiplied by a padded 0": fmaf(0, w, -0) is +0 and
 * 0 * inf is NaN, so a padded tap would change bits in corner cases.
 *
 * The functions below compute ONE output (or one chunk partial) in that order.
 * They are the reference for every fast path: the CPU SIMD kernels must give
 * the same bits (they vectorize across outputs, never across k). */
#ifndef CP_CONV2D_H
#define CP_CONV2D_H

#include <math.h>
#include <stdint.h>

#include "hd.h"
#include "reduce.h"

/* Is (yy, xx) inside the H x W image? */
CP_HD static inline int conv2d_inside(int yy, int xx, int H, int W) {
    return yy >= 0 && yy < H && xx >= 0 && xx < W;
}

/* Forward accumulator of out[n,co,y,x] (bias not added).
 * inp_n: image n, [C,H,W]; w_co: filter co, [C,K,K]. */
CP_HD static inline float conv2d_fwd_acc(const float *inp_n, const float *w_co, int C, int H, int W, int K, int y,
                                         int x) {
    const int pad = K / 2;
    const int64_t HW = (int64_t)H * W;
    float acc = 0.0f;
    for (int ci = 0; ci < C; ci++)
        for (int ky = 0; ky < K; ky++)
            for (int kx = 0; kx < K; kx++) {
                int yy = y + ky - pad, xx = x + kx - pad;
                if (!conv2d_inside(yy, xx, H, W)) continue; /* skipped tap */
                acc = fmaf(inp_n[ci * HW + (int64_t)yy * W + xx], w_co[(ci * K + ky) * K + kx], acc);
            }
    return acc;
}

/* The forward output from its accumulator: bias added after the sum. */
CP_HD static inline float conv2d_fwd_out(float acc, const float *b, int co) { return b ? acc + b[co] : acc; }

/* Input-gradient accumulator of dinp[n,ci,y,x] (to be added to dinp).
 * dout_n: image n, [OC,H,W]; w: [OC,C,K,K]. */
CP_HD static inline float conv2d_dinp_acc(const float *dout_n, const float *w, int C, int OC, int H, int W, int K,
                                          int ci, int y, int x) {
    const int pad = K / 2;
    const int64_t HW = (int64_t)H * W;
    float acc = 0.0f;
    for (int co = 0; co < OC; co++)
        for (int ky = 0; ky < K; ky++)
            for (int kx = 0; kx < K; kx++) {
                int yy = y - ky + pad, xx = x - kx + pad;
                if (!conv2d_inside(yy, xx, H, W)) continue;
                acc = fmaf(dout_n[co * HW + (int64_t)yy * W + xx], w[(((int64_t)co * C + ci) * K + ky) * K + kx],
                           acc);
            }
    return acc;
}

/* Weight-gradient partial of dw[co,ci,ky,kx] over positions [lo, hi) of the
 * batch-major index i = n*HW + y*W + x (one chunk of the plan).
 * dout: [N,OC,H,W]; inp: [N,C,H,W]. */
CP_HD static inline float conv2d_dw_chunk(const float *dout, const float *inp, int C, int OC, int H, int W, int K,
                                          int co, int ci, int ky, int kx, int64_t lo, int64_t hi) {
    const int pad = K / 2;
    const int64_t HW = (int64_t)H * W;
    float acc = 0.0f;
    for (int64_t i = lo; i < hi; i++) {
        int64_t n = i / HW, p = i % HW;
        int y = (int)(p / W), x = (int)(p % W);
        int yy = y + ky - pad, xx = x + kx - pad;
        if (!conv2d_inside(yy, xx, H, W)) continue;
        acc = fmaf(dout[(n * OC + co) * HW + p], inp[(n * C + ci) * HW + (int64_t)yy * W + xx], acc);
    }
    return acc;
}

/* Bias-gradient partial of db[co] over positions [lo, hi) of i = n*HW + p. */
CP_HD static inline float conv2d_db_chunk(const float *dout, int OC, int64_t HW, int co, int64_t lo, int64_t hi) {
    float acc = 0.0f;
    for (int64_t i = lo; i < hi; i++) acc += dout[((i / HW) * OC + co) * HW + i % HW];
    return acc;
}

/* Which SIMD path the CPU build uses: "avx512", "avx2" or "scalar" (host only;
 * every path gives the same bits). */
#ifndef __CUDACC__
const char *conv2d_cpu_simd(void);
#endif

#endif
