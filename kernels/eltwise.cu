// eltwise.cu - CUDA twins of kernels/eltwise_cpu.c: ReLU, exact GELU, add,
// the CPnet style-bias broadcast and its backward. Per-element math: the CP_HD
// functions of kernels/eltwise.h (the CPU loops call the same ones).
//
// Legend: n flat length; N batch, C channels, HW = H*W; tensors NCHW.
// Determinism: one thread per output element (grid-stride loops), no shared
// state; dbias[n,c] = plan-sum over hw (core/reduce.h) by one block per row,
// chunk partials combined in chunk order by plan_block_sum.
#include <stdint.h>

#include "kernels/eltwise.h"
#include "kernels/ops_cuda.h"

#define GRID_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// ---- kernels ----
__global__ void k_relu_fwd(float *out, const float *inp, int64_t n) {
    GRID_LOOP(i, n) out[i] = relu_fwd(inp[i]);
}
__global__ void k_relu_bwd(float *dinp, const float *dout, const float *out, int64_t n) {
    GRID_LOOP(i, n) dinp[i] += relu_grad(dout[i], out[i]);
}
__global__ void k_gelu_fwd(float *out, const float *inp, int64_t n) {
    GRID_LOOP(i, n) out[i] = gelu_fwd(inp[i]);
}
__global__ void k_gelu_bwd(float *dinp, const float *dout, const float *inp, int64_t n) {
    GRID_LOOP(i, n) dinp[i] += gelu_grad(dout[i], inp[i]);
}
__global__ void k_add(float *out, const float *a, const float *b, int64_t n) {
    GRID_LOOP(i, n) out[i] = add_fwd(a[i], b[i]);
}
__global__ void k_add_bias_hw(float *out, const float *inp, const float *bias, int64_t HW, int64_t n) {
    GRID_LOOP(i, n) out[i] = add_fwd(inp[i], bias[i / HW]);
}
__global__ void k_accum(float *dinp, const float *dout, int64_t n) {
    GRID_LOOP(i, n) dinp[i] += dout[i];
}
// One block per row r of x[rows, HW]: dbias[r] += plan-sum over hw.
__global__ void k_rows_plan_sum_accum(float *dbias, const float *x, int64_t HW) {
    const float *row = x + (int64_t)blockIdx.x * HW;
    float s = plan_block_sum<float>(rplan_nchunks(HW), [&](int64_t c) {
        return rplan_chunk_sum(row, rplan_chunk_lo(c), rplan_chunk_hi(c, HW));
    });
    if (threadIdx.x == 0) dbias[blockIdx.x] += s;
}

// ---- launchers ----
void relu_forward_cuda(float *out, const float *inp, int64_t n, const CpCtx *ctx) {
    if (n <= 0) return;
    k_relu_fwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, inp, n);
    CUDA_CHECK_LAUNCH();
}
void relu_backward_cuda(float *dinp, const float *dout, const float *out, int64_t n, const CpCtx *ctx) {
    if (!dinp || n <= 0) return;
    k_relu_bwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dinp, dout, out, n);
    CUDA_CHECK_LAUNCH();
}
void gelu_forward_cuda(float *out, const float *inp, int64_t n, const CpCtx *ctx) {
    if (n <= 0) return;
    k_gelu_fwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, inp, n);
    CUDA_CHECK_LAUNCH();
}
void gelu_backward_cuda(float *dinp, const float *dout, const float *inp, int64_t n, const CpCtx *ctx) {
    if (!dinp || n <= 0) return;
    k_gelu_bwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dinp, dout, inp, n);
    CUDA_CHECK_LAUNCH();
}
void add_forward_cuda(float *out, const float *a, const float *b, int64_t n, const CpCtx *ctx) {
    if (n <= 0) return; // out may alias a or b: each element read, then written, by one thread
    k_add<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, a, b, n);
    CUDA_CHECK_LAUNCH();
}
void add_bias_hw_forward_cuda(float *out, const float *inp, const float *bias, int N, int C, int64_t HW,
                              const CpCtx *ctx) {
    int64_t n = (int64_t)N * C * HW;
    if (n <= 0) return;
    k_add_bias_hw<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, inp, bias, HW, n);
    CUDA_CHECK_LAUNCH();
}
void add_bias_hw_backward_cuda(float *dinp, float *dbias, const float *dout, int N, int C, int64_t HW,
                               const CpCtx *ctx) {
    int64_t rows = (int64_t)N * C, n = rows * HW;
    if (n <= 0) return;
    if (dinp) {
        k_accum<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dinp, dout, n);
        CUDA_CHECK_LAUNCH();
    }
    if (dbias) {
        CP_ASSERT(rows <= 0x7fffffff);
        k_rows_plan_sum_accum<<<(unsigned)rows, CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(dbias, dout, HW);
        CUDA_CHECK_LAUNCH();
    }
}
