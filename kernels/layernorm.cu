// layernorm.cu - CUDA twin of kernels/layernorm_cpu.c: LayerNorm over the
// last dim (ViT) and LayerNorm2d over the channels of NCHW (SAM neck).
// Arithmetic and order: the CP_HD functions of kernels/layernorm.h.
//
// Legend: M rows, D features (x[M,D]); N batch, C channels, HW = H*W
// (x[N,C,HW], normalized over c at each pixel). "The group" is a row or a
// pixel, L its length; every sum is the chunk plan over its index.
// Determinism: one thread per group computes that group's statistics and its
// dinp (each group's sums sequential in the plan order); the parameter
// gradients dw[j], db[j] are one block per feature / channel (plan over the
// rows, resp. the batch-major pixel index, plan_block_sum2). Outputs have one
// writer each; no atomics, no scratch.
#include <stdint.h>

#include "kernels/layernorm.h"
#include "kernels/ops_cuda.h"

#define GRID_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// Statistics of one group of L elements at x[k * stride], k < L.
__device__ inline void ln_group_stats(float *mu_out, float *rs_out, const float *x, int64_t stride, int64_t L, float eps) {
    float s = 0.0f;
    for (int64_t ch = 0; ch < rplan_nchunks(L); ch++) {
        float part = 0.0f;
        for (int64_t k = rplan_chunk_lo(ch); k < rplan_chunk_hi(ch, L); k++) part += x[k * stride];
        s += part;
    }
    const float mu = ln_mean(s, L);
    float s2 = 0.0f;
    for (int64_t ch = 0; ch < rplan_nchunks(L); ch++) {
        float part = 0.0f;
        for (int64_t k = rplan_chunk_lo(ch); k < rplan_chunk_hi(ch, L); k++) part = ln_sqdev(part, x[k * stride], mu);
        s2 += part;
    }
    *mu_out = mu;
    *rs_out = ln_rstd(ln_mean(s2, L), eps);
}

// m1 = plan-sum(dxhat) / L, m2 = plan-sum(dxhat * xhat) / L of one group.
__device__ inline void ln_group_grad(float *m1, float *m2, const float *g, const float *x, const float *w,
                                     int64_t stride, int64_t L, float mu, float rs) {
    float t1 = 0.0f, t2 = 0.0f;
    for (int64_t ch = 0; ch < rplan_nchunks(L); ch++) {
        float q1 = 0.0f, q2 = 0.0f;
        for (int64_t k = rplan_chunk_lo(ch); k < rplan_chunk_hi(ch, L); k++) {
            float gd = ln_dxhat(g[k * stride], w[k]);
            q1 += gd;
            q2 = fmaf(gd, ln_xhat(x[k * stride], mu, rs), q2);
        }
        t1 += q1, t2 += q2;
    }
    *m1 = ln_mean(t1, L);
    *m2 = ln_mean(t2, L);
}

// ---- LayerNorm over the last dim ----
__global__ void k_ln_stats(float *mean, float *rstd, const float *x, int64_t M, int D, float eps) {
    GRID_LOOP(m, M) ln_group_stats(&mean[m], &rstd[m], x + m * D, 1, D, eps);
}
__global__ void k_ln_affine(float *out, const float *x, const float *mean, const float *rstd, const float *w,
                            const float *b, int D, int64_t n) {
    GRID_LOOP(i, n) {
        int64_t m = i / D, d = i % D;
        out[i] = ln_affine(ln_xhat(x[i], mean[m], rstd[m]), w[d], b[d]);
    }
}
__global__ void k_ln_dinp(float *dinp, const float *dout, const float *x, const float *mean, const float *rstd,
                          const float *w, int64_t M, int D) {
    GRID_LOOP(m, M) {
        const float *g = dout + m * D, *xr = x + m * D;
        float mu = mean[m], rs = rstd[m], m1, m2;
        ln_group_grad(&m1, &m2, g, xr, w, 1, D, mu, rs);
        for (int d = 0; d < D; d++) dinp[m * D + d] += ln_dinp(ln_dxhat(g[d], w[d]), ln_xhat(xr[d], mu, rs), rs, m1, m2);
    }
}
// One block per feature d: dw[d] += plan-sum_m dout * xhat, db[d] += plan-sum_m dout.
__global__ void k_ln_wgrad(float *dw, float *db, const float *dout, const float *x, const float *mean,
                           const float *rstd, int64_t M, int D) {
    const int64_t d = blockIdx.x;
    float tw, tb;
    plan_block_sum2<float>(
        rplan_nchunks(M),
        [&](int64_t ch, float *pw, float *pb) {
            float w = 0.0f, b = 0.0f;
            for (int64_t m = rplan_chunk_lo(ch); m < rplan_chunk_hi(ch, M); m++) {
                float g = dout[m * D + d];
                b += g;
                w = fmaf(g, ln_xhat(x[m * D + d], mean[m], rstd[m]), w);
            }
            *pw = w;
            *pb = b;
        },
        &tw, &tb);
    if (threadIdx.x == 0) {
        if (dw) dw[d] += tw;
        if (db) db[d] += tb;
    }
}

// ---- LayerNorm2d over the channels ----
__global__ void k_ln2d_forward(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b,
                               int C, int64_t HW, float eps, int64_t npix) {
    GRID_LOOP(i, npix) { /* pixel i = n*HW + hw */
        int64_t base = (i / HW) * C * HW + i % HW;
        float mu, rs;
        ln_group_stats(&mu, &rs, x + base, HW, C, eps);
        mean[i] = mu;
        rstd[i] = rs;
        for (int c = 0; c < C; c++) out[base + c * HW] = ln_affine(ln_xhat(x[base + c * HW], mu, rs), w[c], b[c]);
    }
}
__global__ void k_ln2d_dinp(float *dinp, const float *dout, const float *x, const float *mean, const float *rstd,
                            const float *w, int C, int64_t HW, int64_t npix) {
    GRID_LOOP(i, npix) {
        int64_t base = (i / HW) * C * HW + i % HW;
        float mu = mean[i], rs = rstd[i], m1, m2;
        ln_group_grad(&m1, &m2, dout + base, x + base, w, HW, C, mu, rs);
        for (int c = 0; c < C; c++)
            dinp[base + c * HW] += ln_dinp(ln_dxhat(dout[base + c * HW], w[c]), ln_xhat(x[base + c * HW], mu, rs), rs, m1, m2);
    }
}
// One block per channel c: plan over the batch-major pixel index.
__global__ void k_ln2d_wgrad(float *dw, float *db, const float *dout, const float *x, const float *mean,
                             const float *rstd, int C, int64_t HW, int64_t count) {
    const int64_t c = blockIdx.x;
    float tw, tb;
    plan_block_sum2<float>(
        rplan_nchunks(count),
        [&](int64_t ch, float *pw, float *pb) {
            float w = 0.0f, b = 0.0f;
            for (int64_t i = rplan_chunk_lo(ch); i < rplan_chunk_hi(ch, count); i++) {
                int64_t at = ((i / HW) * C + c) * HW + i % HW;
                float g = dout[at];
                b += g;
                w = fmaf(g, ln_xhat(x[at], mean[i], rstd[i]), w);
            }
            *pw = w;
            *pb = b;
        },
        &tw, &tb);
    if (threadIdx.x == 0) {
        if (dw) dw[c] += tw;
        if (db) db[c] += tb;
    }
}

// ---- launchers ----
/* PyTorch: F.layer_norm(inp, (D,), w, b, eps) */
void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                            int64_t M, int D, float eps, const CpCtx *ctx) {
    if (M <= 0 || D <= 0) return;
    k_ln_stats<<<cp_flat_blocks(M), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(mean, rstd, inp, M, D, eps);
    CUDA_CHECK_LAUNCH();
    k_ln_affine<<<cp_flat_blocks(M * D), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, inp, mean, rstd, w, b, D, M * D);
    CUDA_CHECK_LAUNCH();
}
/* PyTorch: aten.native_layer_norm_backward */
void layernorm_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                             const float *mean, const float *rstd, const float *w, int64_t M, int D,
                             const CpCtx *ctx) {
    if (M <= 0 || D <= 0) return;
    if (dinp) {
        k_ln_dinp<<<cp_flat_blocks(M), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dinp, dout, inp, mean, rstd, w, M, D);
        CUDA_CHECK_LAUNCH();
    }
    if (dw || db) {
        k_ln_wgrad<<<D, CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(dw, db, dout, inp, mean, rstd, M, D);
        CUDA_CHECK_LAUNCH();
    }
}
/* PyTorch (SAM LayerNorm2d): u = x.mean(1); s = (x - u).pow(2).mean(1); ... */
void layernorm2d_forward_cuda(float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, int N, int C, int64_t HW, float eps, const CpCtx *ctx) {
    int64_t npix = (int64_t)N * HW;
    if (npix <= 0 || C <= 0) return;
    k_ln2d_forward<<<cp_flat_blocks(npix), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, mean, rstd, inp, w, b, C, HW, eps, npix);
    CUDA_CHECK_LAUNCH();
}
/* PyTorch: autograd of the LayerNorm2d forward */
void layernorm2d_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *mean, const float *rstd, const float *w, int N, int C, int64_t HW,
                               const CpCtx *ctx) {
    int64_t npix = (int64_t)N * HW;
    if (npix <= 0 || C <= 0) return;
    if (dinp) {
        k_ln2d_dinp<<<cp_flat_blocks(npix), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dinp, dout, inp, mean, rstd, w, C, HW, npix);
        CUDA_CHECK_LAUNCH();
    }
    if (dw || db) {
        k_ln2d_wgrad<<<C, CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(dw, db, dout, inp, mean, rstd, C, HW, npix);
        CUDA_CHECK_LAUNCH();
    }
}
