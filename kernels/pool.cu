// pool.cu - CUDA twins of kernels/pool_cpu.c: MaxPool2d(2, 2), nearest
// upsample x2 and the CPnet style vector (global average pool + L2 norm).
// Per-element math: the CP_HD functions of kernels/pool.h.
//
// Legend: N batch, C channels, H W input spatial, HW = H*W, Ho = H/2, Wo = W/2.
// Determinism: every output has one writer. Backwards are gathers (each input
// gradient element reads the outputs it fed, in the order pool.h states).
// The pooled sums use the chunk plan over hw (one block per (n, c) row,
// plan_block_sum); the norms and dots over c run sequentially in one thread
// per sample (style_norm / style_dot, the plan over c).
#include <stdint.h>

#include "kernels/ops_cuda.h"
#include "kernels/pool.h"

#define GRID_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// ---- kernels ----
// out[N,C,Ho,Wo], arg[N,C,Ho,Wo], inp[N,C,H,W]; one thread per output.
__global__ void k_maxpool_fwd(float *out, uint8_t *arg, const float *inp, int H, int W, int Ho, int Wo, int64_t n) {
    GRID_LOOP(o, n) {
        int64_t plane = o / ((int64_t)Ho * Wo), r = o % ((int64_t)Ho * Wo);
        int oy = (int)(r / Wo), ox = (int)(r % Wo);
        const float *x0 = inp + (plane * H + 2 * oy) * W + 2 * ox, *x1 = x0 + W;
        uint8_t a;
        out[o] = maxpool2x2_window(x0[0], x0[1], x1[0], x1[1], &a);
        arg[o] = a;
    }
}
// Gather: input (y, x) inside the pooled area reads output (y/2, x/2).
__global__ void k_maxpool_bwd(float *dinp, const float *dout, const uint8_t *arg, int H, int W, int Ho, int Wo,
                              int64_t n) {
    GRID_LOOP(i, n) { /* i over [N*C, 2Ho, 2Wo] */
        int64_t plane = i / (4 * (int64_t)Ho * Wo), r = i % (4 * (int64_t)Ho * Wo);
        int y = (int)(r / (2 * Wo)), x = (int)(r % (2 * Wo));
        int64_t o = (plane * Ho + y / 2) * Wo + x / 2;
        float *d = dinp + (plane * H + y) * W + x;
        *d = maxpool2x2_grad(*d, dout[o], arg[o], (uint8_t)((y & 1) * 2 + (x & 1)));
    }
}
__global__ void k_upsample_fwd(float *out, const float *inp, int H, int W, int64_t n) {
    GRID_LOOP(o, n) { /* o over [N*C, 2H, 2W] */
        int64_t plane = o / (4 * (int64_t)H * W), r = o % (4 * (int64_t)H * W);
        int Y = (int)(r / (2 * W)), X = (int)(r % (2 * W));
        out[o] = inp[(plane * H + Y / 2) * W + X / 2];
    }
}
__global__ void k_upsample_bwd(float *dinp, const float *dout, int H, int W, int64_t n) {
    GRID_LOOP(i, n) { /* i over [N*C, H, W] */
        int64_t plane = i / ((int64_t)H * W), r = i % ((int64_t)H * W);
        int y = (int)(r / W), x = (int)(r % W);
        const float *g0 = dout + (plane * 2 * H + 2 * y) * (2 * (int64_t)W) + 2 * x, *g1 = g0 + 2 * (int64_t)W;
        dinp[i] += upsample2x_grad(g0[0], g0[1], g1[0], g1[1]);
    }
}
// One block per row (n, c): pooled = plan-sum over hw / HW.
__global__ void k_style_pool(float *pooled, const float *inp, int64_t HW) {
    const float *row = inp + (int64_t)blockIdx.x * HW;
    float s = plan_block_sum<float>(rplan_nchunks(HW), [&](int64_t c) {
        return rplan_chunk_sum(row, rplan_chunk_lo(c), rplan_chunk_hi(c, HW));
    });
    if (threadIdx.x == 0) pooled[blockIdx.x] = s / (float)HW; /* the mean */
}
// One thread per sample: norm, then the outputs; zero[0] counts bad norms
// (an integer count, not a float sum: the order cannot matter).
__global__ void k_style_norm(float *out, float *norm, int *zero, const float *pooled, int N, int C) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    const float *p = pooled + (int64_t)n * C;
    float nv = style_norm(p, C);
    norm[n] = nv;
    zero[n] = !(nv > 0.0f);
    for (int c = 0; c < C; c++) out[(int64_t)n * C + c] = style_out(p[c], nv);
}
// zero[N] = sum of the flags zero[0..N) (one thread; integers).
__global__ void k_style_count(int *zero, int N) {
    int z = 0;
    for (int n = 0; n < N; n++) z += zero[n];
    zero[N] = z;
}
__global__ void k_style_dot(float *dot, const float *dout, const float *out, int N, int C) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n < N) dot[n] = style_dot(out + (int64_t)n * C, dout + (int64_t)n * C, C);
}
__global__ void k_style_bwd(float *dinp, const float *dout, const float *out, const float *norm, const float *dot,
                            int C, int64_t HW, int64_t n) {
    GRID_LOOP(i, n) {
        int64_t nc = i / HW, s = nc / C;
        float g = style_grad_pixel(dout[nc], out[nc], dot[s], norm[s], HW);
        dinp[i] = style_accum(dinp[i], g);
    }
}

// ---- launchers ----
void maxpool2x2_forward_cuda(float *out, uint8_t *arg, const float *inp, int N, int C, int H, int W,
                             const CpCtx *ctx) {
    int Ho = H / 2, Wo = W / 2;
    int64_t n = (int64_t)N * C * Ho * Wo;
    if (n <= 0) return;
    k_maxpool_fwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, arg, inp, H, W, Ho, Wo, n);
    CUDA_CHECK_LAUNCH();
}
void maxpool2x2_backward_cuda(float *dinp, const float *dout, const uint8_t *arg, int N, int C, int H, int W,
                              const CpCtx *ctx) {
    int Ho = H / 2, Wo = W / 2;
    int64_t n = (int64_t)N * C * 4 * Ho * Wo; /* the dropped last row / column of odd H, W get nothing */
    if (!dinp || n <= 0) return;
    k_maxpool_bwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dinp, dout, arg, H, W, Ho, Wo, n);
    CUDA_CHECK_LAUNCH();
}
void upsample2x_forward_cuda(float *out, const float *inp, int N, int C, int H, int W, const CpCtx *ctx) {
    int64_t n = (int64_t)N * C * 4 * H * W;
    if (n <= 0) return;
    k_upsample_fwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, inp, H, W, n);
    CUDA_CHECK_LAUNCH();
}
void upsample2x_backward_cuda(float *dinp, const float *dout, int N, int C, int H, int W, const CpCtx *ctx) {
    int64_t n = (int64_t)N * C * H * W;
    if (!dinp || n <= 0) return;
    k_upsample_bwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dinp, dout, H, W, n);
    CUDA_CHECK_LAUNCH();
}
/* Scratch: N + 1 ints (the zero-norm flags and their count) from the
 * reserved workspace (cp_cuda_style_workspace_bytes). Copies one int back. */
int style_forward_cuda(float *out, float *pooled, float *norm, const float *inp, int N, int C, int64_t HW,
                       const CpCtx *ctx) {
    int64_t rows = (int64_t)N * C;
    if (rows <= 0) return 0;
    CP_ASSERT(rows <= 0x7fffffff);
    int *dzero = (int *)cp_cuda_workspace(ctx, cp_cuda_style_workspace_bytes(N));
    k_style_pool<<<(unsigned)rows, CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(pooled, inp, HW);
    CUDA_CHECK_LAUNCH();
    k_style_norm<<<(N + 63) / 64, 64, 0, cp_stream(ctx)>>>(out, norm, dzero, pooled, N, C);
    CUDA_CHECK_LAUNCH();
    k_style_count<<<1, 1, 0, cp_stream(ctx)>>>(dzero, N);
    CUDA_CHECK_LAUNCH();
    int zero = 0;
    CUDA_CHECK(cudaMemcpyAsync(&zero, dzero + N, sizeof(int), cudaMemcpyDeviceToHost, cp_stream(ctx)));
    CUDA_CHECK(cudaStreamSynchronize(cp_stream(ctx)));
    return zero;
}
void style_backward_cuda(float *dinp, const float *dout, const float *out, const float *norm, int N, int C,
                         int64_t HW, const CpCtx *ctx) {
    int64_t n = (int64_t)N * C * HW;
    if (!dinp || n <= 0) return;
    float *dot = (float *)cp_cuda_workspace(ctx, sizeof(float) * (size_t)N);
    k_style_dot<<<(N + 63) / 64, 64, 0, cp_stream(ctx)>>>(dot, dout, out, N, C);
    CUDA_CHECK_LAUNCH();
    k_style_bwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dinp, dout, out, norm, dot, C, HW, n);
    CUDA_CHECK_LAUNCH();
}
