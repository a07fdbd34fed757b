// linear.cu - CUDA twin of kernels/linear_cpu.c: the Linear layer and the
// GEMM engine that linear, patch embedding and the patch readout share
// (kernels/patch.cu), over the same "separable views" as the CPU engine.
//
// Legend: M rows, IN input features, OUT output features; inp[M,IN],
// w[OUT,IN], b[OUT], out[M,OUT]. Engine: C(i,j) = sum_r A(i,r) B(r,j),
// i < M, j < N, r < K.
//
// Reduction orders (kernels/linear.h, bit for bit):
//  - STORE / ACCUM: per output acc = 0; for r = 0..K-1: acc = fmaf(A, B, acc)
//    (cp_mac); STORE writes acc (+ bias, cp_add_bias), ACCUM adds it once.
//  - ACCUM_CHUNKED (weight gradients): r cut into RCHUNK chunks, each from 0,
//    partials added to a total (from 0) in chunk order, C += total once.
//  - column sums (bias gradients): the chunk plan over rows, one block per
//    column (plan_block_sum).
// How it is fast and still exact: a block owns a GT_BM x GT_BN tile of
// outputs; r advances in slices of GT_BK staged in shared memory, and every
// thread walks its GT_TM x GT_TN register micro-tile through the slice in
// increasing r: each output's chain is exactly the sequential one. GT_BK
// divides RCHUNK, so chunk boundaries fall between slices. The r-tail of the
// last slice is not padded (a padded fmaf(0, 0, -0) would turn -0 into +0).
// FP32 FMA on CUDA cores (no TF32, no tensor cores).
#include <stdint.h>

#include "kernels/linear.h"
#include "kernels/ops_cuda.h"
#include "kernels/patch.h"

#define GT_BM 64
#define GT_BN 64
#define GT_BK 16
#define GT_TM 4
#define GT_TN 4
#define GT_THREADS ((GT_BM / GT_TM) * (GT_BN / GT_TN)) /* 256 */
static_assert(RCHUNK % GT_BK == 0, "chunk boundaries must fall between r-slices");

// Offset of index idx along a view (the patch.h maps, as the CPU callbacks).
__device__ inline int64_t gv_off(const GView &v, int64_t idx) {
    switch (v.kind) {
    case GV_STRIDE: return idx * v.p[0];
    case GV_PATCH_TOK: return patch_tok_off(idx, (int)v.p[0], (int)v.p[1], (int)v.p[2], (int)v.p[3]);
    case GV_PATCH_K: return patch_k_off(idx, (int)v.p[0], (int)v.p[1], (int)v.p[2]);
    case GV_NCHW_PIX: return nchw_pix_off(idx, (int)v.p[0], v.p[1]);
    case GV_READOUT_PIX: return readout_pix_off(idx, (int)v.p[0], (int)v.p[1], (int)v.p[2], (int)v.p[3]);
    default: return readout_q_off(idx, (int)v.p[0], (int)v.p[1], (int)v.p[2]);
    }
}

// Thread (ty, tx) owns outputs i = i0 + ty + 16*u, j = j0 + tx + 16*v
// (u, v < 4): strided so that shared-memory reads are conflict-free.
__global__ void __launch_bounds__(GT_THREADS) k_gemm(GemmCuda g) {
    __shared__ float As[GT_BK][GT_BM];
    __shared__ float Bs[GT_BK][GT_BN];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int64_t i0 = (int64_t)blockIdx.y * GT_BM, j0 = (int64_t)blockIdx.x * GT_BN;
    // row / column offsets of the tile, computed once
    __shared__ int64_t aoff[GT_BM], boff[GT_BN];
    if (tid < GT_BM) aoff[tid] = i0 + tid < g.M ? gv_off(g.a_i, i0 + tid) : 0;
    else if (tid < GT_BM + GT_BN) boff[tid - GT_BM] = j0 + tid - GT_BM < g.N ? gv_off(g.b_j, j0 + tid - GT_BM) : 0;
    float acc[GT_TM][GT_TN], total[GT_TM][GT_TN];
#pragma unroll
    for (int u = 0; u < GT_TM; u++)
#pragma unroll
        for (int v = 0; v < GT_TN; v++) acc[u][v] = 0.0f, total[u][v] = 0.0f;
    const int chunked = g.mode == GM_ACCUM_CHUNKED;
    for (int64_t k0 = 0; k0 < g.K; k0 += GT_BK) {
        if (chunked && k0 > 0 && k0 % RCHUNK == 0) { /* a chunk ends: total += partial, in chunk order */
#pragma unroll
            for (int u = 0; u < GT_TM; u++)
#pragma unroll
                for (int v = 0; v < GT_TN; v++) total[u][v] += acc[u][v], acc[u][v] = 0.0f;
        }
        const int kn = g.K - k0 < GT_BK ? (int)(g.K - k0) : GT_BK;
        __syncthreads(); /* previous slice consumed (and aoff/boff written) */
        for (int e = tid; e < GT_BK * GT_BM; e += GT_THREADS) {
            int kk = e / GT_BM, ii = e % GT_BM;
            As[kk][ii] = (kk < kn && i0 + ii < g.M) ? g.a[aoff[ii] + gv_off(g.a_r, k0 + kk)] : 0.0f;
        }
        for (int e = tid; e < GT_BK * GT_BN; e += GT_THREADS) {
            int kk = e / GT_BN, jj = e % GT_BN;
            Bs[kk][jj] = (kk < kn && j0 + jj < g.N) ? g.b[gv_off(g.b_r, k0 + kk) + boff[jj]] : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < kn; kk++) { /* increasing r: each output's sequential chain */
            float a[GT_TM], b[GT_TN];
#pragma unroll
            for (int u = 0; u < GT_TM; u++) a[u] = As[kk][ty + 16 * u];
#pragma unroll
            for (int v = 0; v < GT_TN; v++) b[v] = Bs[kk][tx + 16 * v];
#pragma unroll
            for (int u = 0; u < GT_TM; u++)
#pragma unroll
                for (int v = 0; v < GT_TN; v++) acc[u][v] = cp_mac(acc[u][v], a[u], b[v]);
        }
    }
#pragma unroll
    for (int u = 0; u < GT_TM; u++) {
        const int64_t i = i0 + ty + 16 * u;
        if (i >= g.M) continue;
        const int64_t ci = gv_off(g.c_i, i);
#pragma unroll
        for (int v = 0; v < GT_TN; v++) {
            const int64_t j = j0 + tx + 16 * v;
            if (j >= g.N) continue;
            float *c = g.c + ci + gv_off(g.c_j, j);
            if (g.mode == GM_STORE) *c = g.bias ? cp_add_bias(acc[u][v], g.bias[j / g.bias_div]) : acc[u][v];
            else if (g.mode == GM_ACCUM) *c += acc[u][v];
            else *c += total[u][v] + acc[u][v]; /* the last chunk's partial joins the total */
        }
    }
}

void cp_gemm_cuda(const GemmCuda *g, const CpCtx *ctx) {
    if (g->M <= 0 || g->N <= 0) return;
    int64_t bx = (g->N + GT_BN - 1) / GT_BN, by = (g->M + GT_BM - 1) / GT_BM;
    CP_ASSERT(bx <= 0x7fffffff && by <= 65535 && g->bias_div >= 1);
    dim3 grid((unsigned)bx, (unsigned)by);
    k_gemm<<<grid, GT_THREADS, 0, cp_stream(ctx)>>>(*g);
    CUDA_CHECK_LAUNCH();
}

// One block per column j: out[j] += plan-sum over i of d[row(i) + col(j)].
__global__ void k_colsum(float *out, const float *d, GView row, GView col, int64_t M) {
    const int64_t j = blockIdx.x, cj = gv_off(col, j);
    float s = plan_block_sum<float>(rplan_nchunks(M), [&](int64_t c) {
        float acc = 0.0f;
        for (int64_t i = rplan_chunk_lo(c); i < rplan_chunk_hi(c, M); i++) acc += d[gv_off(row, i) + cj];
        return acc;
    });
    if (threadIdx.x == 0) out[j] += s;
}

void cp_colsum_accum_cuda(float *out, const float *d, GView row, GView col, int64_t M, int64_t N, const CpCtx *ctx) {
    if (N <= 0) return;
    CP_ASSERT(N <= 0x7fffffff);
    k_colsum<<<(unsigned)N, CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(out, d, row, col, M);
    CUDA_CHECK_LAUNCH();
}

/* PyTorch: out = torch.nn.functional.linear(inp, w, b) */
void linear_forward_cuda(float *out, const float *inp, const float *w, const float *b, int64_t M, int IN, int OUT,
                         const CpCtx *ctx) {
    GemmCuda g = {M, OUT, IN, inp, gv_stride(IN), gv_stride(1), /* A(m,k) = inp[m,k] */
                  w, gv_stride(1), gv_stride(IN),                /* B(k,o) = w[o,k] */
                  out, gv_stride(OUT), gv_stride(1), GM_STORE, b, 1};
    cp_gemm_cuda(&g, ctx);
}

/* dinp[M,IN] +=, dw[OUT,IN] +=, db[OUT] += (each may be NULL) */
void linear_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                          int64_t M, int IN, int OUT, const CpCtx *ctx) {
    if (dinp) { /* PyTorch: dinp += dout @ w */
        GemmCuda g = {M, IN, OUT, dout, gv_stride(OUT), gv_stride(1), w, gv_stride(IN), gv_stride(1),
                      dinp, gv_stride(IN), gv_stride(1), GM_ACCUM, NULL, 1};
        cp_gemm_cuda(&g, ctx);
    }
    if (dw) { /* PyTorch: dw += dout^T @ inp, rows m by the chunk plan */
        GemmCuda g = {OUT, IN, M, dout, gv_stride(1), gv_stride(OUT), inp, gv_stride(IN), gv_stride(1),
                      dw, gv_stride(IN), gv_stride(1), GM_ACCUM_CHUNKED, NULL, 1};
        cp_gemm_cuda(&g, ctx);
    }
    if (db) cp_colsum_accum_cuda(db, dout, gv_stride(OUT), gv_stride(1), M, OUT, ctx); /* db += dout.sum(0) */
}
