/* pool.h - per-element math of the pooling / resampling ops (kernels/ops.h
 * "pooling / resampling"): MaxPool2d(2, 2), nearest upsample x2 and the
 * CPnet style vector (global average pool + L2 normalisation).
 *
 * DESIGN.md rule 2: these CP_HD functions are the ONE arithmetic definition,
 * called by kernels/pool_cpu.c and by the CUDA kernels to come. IEEE
 * add/sub/mul/div/sqrt only; nothing C-only, no OpenMP.
 *
 * Dimension legend: N batch, C channels, H W input spatial (HW = H*W),
 * Ho = H/2, Wo = W/2 (floor) for the max pool.
 *
 * Determinism notes
 * - maxpool: the window is scanned in the order (0,0) (0,1) (1,0) (1,1);
 *   arg = dy*2+dx of the first maximum; a NaN replaces the current maximum
 *   (PyTorch's CPU rule `val > max || isnan(val)`, so among several NaNs the
 *   LAST one is kept, exactly as PyTorch). The output is one of the inputs,
 *   copied, never computed.
 * - Backwards are gathers (rule 3): each input-gradient element has exactly
 *   one writer and sums its contributions in the fixed order given below.
 * - style: the pooled sum over hw uses the core/reduce.h chunk plan (rows of
 *   HW), the sum of squares over c and the backward dot over c use the plan
 *   over c (one chunk for C <= RCHUNK, i.e. sequential fmaf from 0). A zero
 *   norm gives the canonical quiet NaN 0x7fc00000 (never 0/0, whose NaN bits
 *   differ between x86 and CUDA). */
#ifndef CP_POOL_H
#define CP_POOL_H

#include <stdint.h>

#include "dmath.h"
#include "hd.h"
#include "reduce.h"

/* ---- MaxPool2d(2, 2) ---- */
/* c ? x : y on the bits, written with an integer mask: the same value as the
 * ternary (no arithmetic on x or y), but CPU compilers emit neither a branch
 * (random data mispredicts half the time in the scalar tail of a vector loop:
 * 3-6x slower) nor need a float blend. */
CP_HD static inline float pool_select(int c, float x, float y) {
    uint32_t m = 0u - (uint32_t)(c != 0);
    return cp_dm_u2f((cp_dm_f2u(x) & m) | (cp_dm_f2u(y) & ~m));
}

/* The window v0=(0,0), v1=(0,1), v2=(1,0), v3=(1,1); *arg = index of the
 * winner: a later value wins if it is greater or NaN.
 * PyTorch: F.max_pool2d_with_indices(x, 2, 2) (CPU kernel rule). */
CP_HD static inline float maxpool2x2_window(float v0, float v1, float v2, float v3, uint8_t *arg) {
    float m = v0;
    int a = 0, c;
    c = v1 > m || v1 != v1, m = pool_select(c, v1, m), a = c ? 1 : a;
    c = v2 > m || v2 != v2, m = pool_select(c, v2, m), a = c ? 2 : a;
    c = v3 > m || v3 != v3, m = pool_select(c, v3, m), a = c ? 3 : a;
    *arg = (uint8_t)a;
    return m;
}

/* Backward of one input element at window position pos (0..3) of the output
 * it maps to: dinp + dout where the forward picked this position, otherwise
 * dinp itself, bit for bit (not dinp + 0, which would turn -0 into +0). */
CP_HD static inline float maxpool2x2_grad(float dinp, float dout, uint8_t arg, uint8_t pos) {
    return pool_select(arg == pos, dinp + dout, dinp);
}

/* ---- nearest upsample x2 ---- */
/* dinp[y][x] += ((d00 + d01) + d10) + d11, the 2x2 block of dout it fed, in
 * the order ops.h states. PyTorch: upsample_nearest2d_backward (scale 2). */
CP_HD static inline float upsample2x_grad(float d00, float d01, float d10, float d11) {
    return ((d00 + d01) + d10) + d11;
}

/* ---- style: y = p / ||p||, p = mean over hw ---- */
/* The canonical NaN of a zero (or NaN) norm. */
CP_HD static inline float style_nan(void) { return cp_dm_u2f(CP_DM_NAN_BITS); }

/* Sum over c of p[c]^2 by the plan over c (chunks of RCHUNK, sequential fmaf
 * within a chunk, partials added in chunk order), then sqrt.
 * PyTorch: (p ** 2).sum(1) ** .5 */
CP_HD static inline float style_norm(const float *p, int C) {
    float total = 0.0f;
    for (int64_t c = 0; c < rplan_nchunks(C); c++)
        total += rplan_chunk_dot(p, p, rplan_chunk_lo(c), rplan_chunk_hi(c, C));
    return sqrtf(total);
}

/* One output: p / norm, or the canonical NaN when the norm is not > 0.
 * PyTorch: p / norm (Cellpose make_style, no epsilon) */
CP_HD static inline float style_out(float p, float norm) { return norm > 0.0f ? p / norm : style_nan(); }

/* dot(y, dy) over c by the plan over c (as style_norm). */
CP_HD static inline float style_dot(const float *y, const float *dy, int C) {
    float total = 0.0f;
    for (int64_t c = 0; c < rplan_nchunks(C); c++)
        total += rplan_chunk_dot(y, dy, rplan_chunk_lo(c), rplan_chunk_hi(c, C));
    return total;
}

/* Gradient reaching each pixel of channel c: dp / HW with
 * dp = (dy - y * dot(y, dy)) / norm (backward of y = p / ||p||, then of the
 * mean over HW). NaN (canonical) for a zero or NaN norm.
 * PyTorch: autograd of make_style (avg_pool2d backward divides by HW). */
CP_HD static inline float style_grad_pixel(float dy, float y, float dot, float norm, int64_t HW) {
    if (!(norm > 0.0f)) return style_nan();
    float dp = (dy - y * dot) / norm;
    return dp / (float)HW;
}

/* dinp += g, except that a NaN g (zero-norm sample, always the canonical
 * NaN) is stored as is: x86 and CUDA propagate NaN bits differently through
 * an add, a plain store is the same everywhere. */
CP_HD static inline float style_accum(float dinp, float g) { return g != g ? g : dinp + g; }

#endif
