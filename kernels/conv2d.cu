// conv2d.cu - CUDA twin of kernels/conv2d_cpu.c: "same" 2-D convolution
// (stride 1, zero padding K/2, K odd): forward, input gradient, weight and
// bias gradients, bit-identical to the per-output reference of
// kernels/conv2d.h (the orders are stated there).
//
// Legend: N batch, C input channels, OC output channels, H W spatial,
// HW = H*W, K kernel (odd), KK = K*K, pad = K/2. NCHW; w[OC,C,K,K]; b[OC].
//
// How it is fast and still exact:
//  - Forward and input gradient are one implicit-GEMM "direct conv" kernel
//    (as the CPU's DConv): dst[n,o,p] (=|+=) sum_j sum_t src[n,j,p+off(t)] *
//    w[o*wso + j*wsj + t]. A block owns DC_TO output channels x a DC_TY x DC_TX
//    pixel tile of one image; reduced channels j go through shared memory
//    DC_JB at a time (the input tile with its K-1 halo, and the weights), and
//    each thread walks its DC_UO x DC_VP register micro-tile through j, ky, kx
//    in the canonical order: every output is one sequential fmaf chain from 0.
//    Taps outside the image are SKIPPED (never multiplied by a padded 0:
//    fmaf(0, w, -0) is +0, and 0 * inf is NaN). The input gradient is the
//    same kernel with flipped taps (pad-ky, pad-kx) and transposed weight
//    strides, then dinp += acc. Bias is added after the sum.
//  - Weight gradient: one block per (DW_COB output channels, ci); its threads
//    compute chunk partials of the plan over i = n*HW + p (all taps of those
//    channels at once, taps outside the image skipped), thread t then sums
//    accumulator t's partials in chunk order from 0; dw += total. Bias gradient: one block per co, the same plan.
//  - K other than 1 and 3 runs the per-output reference functions of
//    conv2d.h directly (one thread per output).
// No atomics; every output has exactly one writer. FP32 FMA on CUDA cores.
#include <stdint.h>

#include "kernels/conv2d.h"
#include "kernels/ops_cuda.h"

#define DC_TO 32  /* output channels per block */
#define DC_TY 8   /* pixel tile rows */
#define DC_TX 16  /* pixel tile columns */
#define DC_JB 8   /* reduced channels staged per shared-memory slice */
#define DC_UO 4   /* output channels per thread (o = og + 8*u) */
#define DC_VP 4   /* pixels per thread (pl = pg + 32*v) */
#define DC_THREADS 256
#define DW_COB3 4 /* weight gradient: output channels per block, K = 3 (36 accumulators) */
#define DW_COB1 8 /* and K = 1 (8 accumulators) */
static_assert(DC_TO / DC_UO == 8 && DC_TY * DC_TX / DC_VP == 32, "thread layout 8 x 32");

// The direct conv. FLIP = input gradient (taps mirrored), ACCUM = dst +=.
template <int K, bool FLIP>
__global__ void __launch_bounds__(DC_THREADS) k_dconv(float *dst, const float *src, const float *w, int64_t wso,
                                                      int64_t wsj, const float *bias, int accumulate, int J, int O,
                                                      int H, int W, int tiles_x) {
    constexpr int pad = K / 2, KK = K * K, HY = DC_TY + K - 1, HX = DC_TX + K - 1;
    __shared__ float in_s[DC_JB][HY][HX];
    __shared__ float w_s[DC_JB][KK][DC_TO];
    const int tid = threadIdx.x, og = tid / 32, pg = tid % 32;
    const int n = blockIdx.z, o0 = blockIdx.y * DC_TO;
    const int ty0 = (blockIdx.x / tiles_x) * DC_TY, tx0 = (blockIdx.x % tiles_x) * DC_TX;
    const int64_t HW = (int64_t)H * W;
    const float *src_n = src + (int64_t)n * J * HW;
    // Tile origin of the halo: the source row/column of tap 0 for pixel (ty0, tx0).
    // Forward: y + ky - pad; flipped: y - ky + pad = y + (K-1-ky) - pad, so the
    // halo is the same window and tap (ky, kx) reads halo (ly + K-1-ky, lx + K-1-kx).
    const int hy0 = ty0 - pad, hx0 = tx0 - pad;
    float acc[DC_UO][DC_VP];
#pragma unroll
    for (int u = 0; u < DC_UO; u++)
#pragma unroll
        for (int v = 0; v < DC_VP; v++) acc[u][v] = 0.0f;
    int ly[DC_VP], lx[DC_VP];
#pragma unroll
    for (int v = 0; v < DC_VP; v++) ly[v] = (pg + 32 * v) / DC_TX, lx[v] = (pg + 32 * v) % DC_TX;
    for (int j0 = 0; j0 < J; j0 += DC_JB) {
        const int jn = J - j0 < DC_JB ? J - j0 : DC_JB;
        __syncthreads();
        for (int e = tid; e < DC_JB * HY * HX; e += DC_THREADS) {
            int jj = e / (HY * HX), r = e % (HY * HX), yy = hy0 + r / HX, xx = hx0 + r % HX;
            in_s[jj][r / HX][r % HX] = (jj < jn && conv2d_inside(yy, xx, H, W)) ? src_n[(int64_t)(j0 + jj) * HW + (int64_t)yy * W + xx] : 0.0f;
        }
        for (int e = tid; e < DC_JB * KK * DC_TO; e += DC_THREADS) {
            int jj = e / (KK * DC_TO), t = (e / DC_TO) % KK, oo = e % DC_TO;
            w_s[jj][t][oo] = (jj < jn && o0 + oo < O) ? w[(int64_t)(o0 + oo) * wso + (int64_t)(j0 + jj) * wsj + t] : 0.0f;
        }
        __syncthreads();
        for (int jj = 0; jj < jn; jj++)
#pragma unroll
            for (int ky = 0; ky < K; ky++)
#pragma unroll
                for (int kx = 0; kx < K; kx++) {
                    const int dy = FLIP ? pad - ky : ky - pad, dx = FLIP ? pad - kx : kx - pad;
                    const int hy = FLIP ? K - 1 - ky : ky, hx = FLIP ? K - 1 - kx : kx;
                    float wv[DC_UO];
#pragma unroll
                    for (int u = 0; u < DC_UO; u++) wv[u] = w_s[jj][ky * K + kx][og + 8 * u];
#pragma unroll
                    for (int v = 0; v < DC_VP; v++) {
                        const int y = ty0 + ly[v], x = tx0 + lx[v];
                        if (!conv2d_inside(y + dy, x + dx, H, W)) continue; /* skipped tap */
                        const float iv = in_s[jj][ly[v] + hy][lx[v] + hx];
#pragma unroll
                        for (int u = 0; u < DC_UO; u++) acc[u][v] = fmaf(iv, wv[u], acc[u][v]);
                    }
                }
    }
#pragma unroll
    for (int u = 0; u < DC_UO; u++) {
        const int o = o0 + og + 8 * u;
        if (o >= O) continue;
#pragma unroll
        for (int v = 0; v < DC_VP; v++) {
            const int y = ty0 + ly[v], x = tx0 + lx[v];
            if (y >= H || x >= W) continue;
            float *d = dst + ((int64_t)n * O + o) * HW + (int64_t)y * W + x;
            if (accumulate) *d += acc[u][v];
            else *d = conv2d_fwd_out(acc[u][v], bias, o);
        }
    }
}

// Reference path (any odd K): one thread per output.
__global__ void k_conv_fwd_ref(float *out, const float *inp, const float *w, const float *b, int C, int H, int W,
                               int OC, int K, int64_t n) {
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < n; o += (int64_t)gridDim.x * blockDim.x) {
        int64_t HW = (int64_t)H * W, nc = o / HW, p = o % HW, img = nc / OC;
        int co = (int)(nc % OC);
        out[o] = conv2d_fwd_out(conv2d_fwd_acc(inp + img * C * HW, w + (int64_t)co * C * K * K, C, H, W, K,
                                               (int)(p / W), (int)(p % W)), b, co);
    }
}
__global__ void k_conv_dinp_ref(float *dinp, const float *dout, const float *w, int C, int H, int W, int OC, int K,
                                int64_t n) {
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < n; o += (int64_t)gridDim.x * blockDim.x) {
        int64_t HW = (int64_t)H * W, nc = o / HW, p = o % HW;
        dinp[o] += conv2d_dinp_acc(dout + (nc / C) * OC * HW, w, C, OC, H, W, K, (int)(nc % C), (int)(p / W), (int)(p % W));
    }
}

// Weight gradient, K in {1, 3}: one block per (COB output channels, ci), all
// taps: per position a thread loads COB dout values and the KK input taps
// once and updates COB*KK independent accumulators (each its own chain in
// increasing i). Output channels past OC are computed from dout = 0 and never
// stored.
template <int K, int COB>
__global__ void k_conv_dw(float *dw, const float *dout, const float *inp, int C, int OC, int H, int W, int64_t n) {
    constexpr int pad = K / 2, KK = K * K, NA = COB * KK;
    __shared__ float part[CP_PLAN_THREADS][NA + 1]; /* +1: no bank conflicts in the column sums */
    const int co0 = (blockIdx.x / C) * COB, ci = blockIdx.x % C;
    const int64_t HW = (int64_t)H * W, nchunks = rplan_nchunks(n);
    float total = 0.0f; /* thread t < NA: accumulator t's running total */
    for (int64_t c0 = 0; c0 < nchunks; c0 += CP_PLAN_THREADS) {
        const int64_t c = c0 + threadIdx.x;
        if (c < nchunks) {
            float acc[NA];
#pragma unroll
            for (int t = 0; t < NA; t++) acc[t] = 0.0f;
            for (int64_t i = rplan_chunk_lo(c); i < rplan_chunk_hi(c, n); i++) {
                const int64_t img = i / HW, p = i % HW;
                const int y = (int)(p / W), x = (int)(p % W);
                const float *plane = inp + (img * C + ci) * HW;
                float g[COB];
#pragma unroll
                for (int u = 0; u < COB; u++) g[u] = co0 + u < OC ? dout[(img * OC + co0 + u) * HW + p] : 0.0f;
#pragma unroll
                for (int ky = 0; ky < K; ky++)
#pragma unroll
                    for (int kx = 0; kx < K; kx++) {
                        const int yy = y + ky - pad, xx = x + kx - pad;
                        if (!conv2d_inside(yy, xx, H, W)) continue; /* skipped tap */
                        const float iv = plane[(int64_t)yy * W + xx];
#pragma unroll
                        for (int u = 0; u < COB; u++) acc[u * KK + ky * K + kx] = fmaf(g[u], iv, acc[u * KK + ky * K + kx]);
                    }
            }
#pragma unroll
            for (int t = 0; t < NA; t++) part[threadIdx.x][t] = acc[t];
        }
        __syncthreads();
        if (threadIdx.x < NA) {
            const int64_t nb = nchunks - c0 < CP_PLAN_THREADS ? nchunks - c0 : CP_PLAN_THREADS;
            for (int64_t k = 0; k < nb; k++) total += part[k][threadIdx.x]; /* chunk order */
        }
        __syncthreads();
    }
    const int u = threadIdx.x / KK, t = threadIdx.x % KK;
    if (threadIdx.x < NA && co0 + u < OC) dw[((int64_t)(co0 + u) * C + ci) * KK + t] += total;
}

// Weight gradient, any odd K: one block per weight, the reference chunk function.
__global__ void k_conv_dw_ref(float *dw, const float *dout, const float *inp, int C, int OC, int H, int W, int K,
                              int64_t n) {
    const int64_t o = blockIdx.x;
    const int KK = K * K, co = (int)(o / ((int64_t)C * KK)), ci = (int)(o / KK % C), t = (int)(o % KK);
    float s = plan_block_sum<float>(rplan_nchunks(n), [&](int64_t c) {
        return conv2d_dw_chunk(dout, inp, C, OC, H, W, K, co, ci, t / K, t % K, rplan_chunk_lo(c), rplan_chunk_hi(c, n));
    });
    if (threadIdx.x == 0) dw[o] += s;
}

// Bias gradient: one block per co.
__global__ void k_conv_db(float *db, const float *dout, int OC, int64_t HW, int64_t n) {
    const int co = blockIdx.x;
    float s = plan_block_sum<float>(rplan_nchunks(n), [&](int64_t c) {
        return conv2d_db_chunk(dout, OC, HW, co, rplan_chunk_lo(c), rplan_chunk_hi(c, n));
    });
    if (threadIdx.x == 0) db[co] += s;
}

// ---- launchers ----
static void dconv_launch(float *dst, const float *src, const float *w, int64_t wso, int64_t wsj, const float *bias,
                         int accumulate, int N, int J, int O, int H, int W, int K, bool flip, const CpCtx *ctx) {
    const int tiles_x = (W + DC_TX - 1) / DC_TX, tiles_y = (H + DC_TY - 1) / DC_TY;
    const int64_t tiles = (int64_t)tiles_x * tiles_y, oblocks = (O + DC_TO - 1) / DC_TO;
    CP_ASSERT(tiles <= 0x7fffffff && oblocks <= 65535 && N <= 65535);
    dim3 grid((unsigned)tiles, (unsigned)oblocks, (unsigned)N);
    if (K == 3 && flip) k_dconv<3, true><<<grid, DC_THREADS, 0, cp_stream(ctx)>>>(dst, src, w, wso, wsj, bias, accumulate, J, O, H, W, tiles_x);
    else if (K == 3) k_dconv<3, false><<<grid, DC_THREADS, 0, cp_stream(ctx)>>>(dst, src, w, wso, wsj, bias, accumulate, J, O, H, W, tiles_x);
    else if (flip) k_dconv<1, true><<<grid, DC_THREADS, 0, cp_stream(ctx)>>>(dst, src, w, wso, wsj, bias, accumulate, J, O, H, W, tiles_x);
    else k_dconv<1, false><<<grid, DC_THREADS, 0, cp_stream(ctx)>>>(dst, src, w, wso, wsj, bias, accumulate, J, O, H, W, tiles_x);
    CUDA_CHECK_LAUNCH();
}

/* PyTorch: out = F.conv2d(inp, w, b, stride=1, padding=K//2) */
void conv2d_forward_cuda(float *out, const float *inp, const float *w, const float *b, int N, int C, int H, int W,
                         int OC, int K, const CpCtx *ctx) {
    CP_ASSERT(K >= 1 && K % 2 == 1 && N >= 0 && C >= 0 && H >= 0 && W >= 0 && OC >= 0);
    int64_t n = (int64_t)N * OC * H * W;
    if (n == 0) return;
    if (K != 1 && K != 3) {
        k_conv_fwd_ref<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, inp, w, b, C, H, W, OC, K, n);
        CUDA_CHECK_LAUNCH();
        return;
    }
    dconv_launch(out, inp, w, (int64_t)C * K * K, (int64_t)K * K, b, 0, N, C, OC, H, W, K, false, ctx);
}

/* PyTorch: torch.ops.aten.convolution_backward(...), accumulated (+=) */
void conv2d_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                          int N, int C, int H, int W, int OC, int K, const CpCtx *ctx) {
    CP_ASSERT(K >= 1 && K % 2 == 1 && N >= 0 && C >= 0 && H >= 0 && W >= 0 && OC >= 0);
    const int64_t HW = (int64_t)H * W, n = (int64_t)N * HW;
    if (dinp && (int64_t)N * C * HW > 0) {
        if (K == 1 || K == 3) {
            /* dinp[n,ci,p] += sum_{co,ky,kx} dout[n,co,p + (pad-ky, pad-kx)] * w[co,ci,ky,kx] */
            dconv_launch(dinp, dout, w, (int64_t)K * K, (int64_t)C * K * K, NULL, 1, N, OC, C, H, W, K, true, ctx);
        } else {
            int64_t m = (int64_t)N * C * HW;
            k_conv_dinp_ref<<<cp_flat_blocks(m), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dinp, dout, w, C, H, W, OC, K, m);
            CUDA_CHECK_LAUNCH();
        }
    }
    if (dw && (int64_t)OC * C > 0) {
        int64_t nw = (int64_t)OC * C;
        CP_ASSERT(nw * K * K <= 0x7fffffff);
        if (K == 3) {
            int64_t nb = (int64_t)((OC + DW_COB3 - 1) / DW_COB3) * C;
            k_conv_dw<3, DW_COB3><<<(unsigned)nb, CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(dw, dout, inp, C, OC, H, W, n);
        } else if (K == 1) {
            int64_t nb = (int64_t)((OC + DW_COB1 - 1) / DW_COB1) * C;
            k_conv_dw<1, DW_COB1><<<(unsigned)nb, CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(dw, dout, inp, C, OC, H, W, n);
        } else k_conv_dw_ref<<<(unsigned)(nw * K * K), CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(dw, dout, inp, C, OC, H, W, K, n);
        CUDA_CHECK_LAUNCH();
    }
    if (db && OC > 0) {
        k_conv_db<<<OC, CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(db, dout, OC, HW, n);
        CUDA_CHECK_LAUNCH();
    }
}
