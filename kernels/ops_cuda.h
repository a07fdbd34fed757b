/* ops_cuda.h - the deterministic CUDA backend: the CpOps table with device
 * pointers (cp_ops_cuda()), the device workspace of a ctx, and the device
 * helpers every kernels/<op>.cu shares (the chunk-plan reduction of
 * core/reduce.h).
 *
 * Contract (DESIGN.md rules 1-7, L3): every op gives the same bits as its CPU
 * twin in kernels/<op>_cpu.c, because
 *  - the per-element math is the CP_HD function of the op's header
 *    (kernels/<op>.h), the very code the CPU loop calls;
 *  - each output has exactly one writer (a thread), which runs that output's
 *    canonical sum order: dot-like sums sequentially in k, long sums by the
 *    chunk plan (chunks of RCHUNK, each from 0, partials in chunk order from
 *    0). Threads may compute different chunks of one output in parallel; the
 *    partials are then combined by one thread in chunk order (plan_block_sum
 *    below). Scatter-shaped backwards are gathers. No float atomics;
 *  - the build: --fmad=false -prec-div=true -prec-sqrt=true -ftz=false, FP32
 *    on CUDA cores only (no TF32, no tensor cores); tests/cuda_gate.sh checks
 *    the PTX and SASS of every kernels/<op>.cu for forbidden instructions.
 *
 * Pointers: every tensor argument of a *_cuda op is DEVICE memory; shapes and
 * scalars are host values. Ops that return a value (losses, style) copy a
 * scalar back and synchronize the stream.
 *
 * Stream and scratch travel in the ctx (core/ctx.h), no module globals: every
 * op launches on ctx->stream (a cudaStream_t; NULL = the legacy default
 * stream, which the caller owns and destroys). Ops that need scratch
 * (attention backward, the readout db, style, the losses) take it from
 * ctx->dev_workspace, which the caller reserves up front, outside
 * forward/backward (cp_cuda_workspace_reserve): no cudaMalloc inside an op.
 * cp_ctx_free() frees it (through cp_cuda_ctx_free, defined here).
 * Scratch per op (reserve the largest of a pass): attention_backward
 * cp_cuda_attention_workspace_bytes; conv_transpose_patch_backward with db
 * cp_cuda_readout_workspace_bytes; style_forward / style_backward
 * cp_cuda_style_workspace_bytes; the losses cp_cuda_loss_workspace_bytes.
 * Every other op needs none (their plan reductions combine chunk partials in
 * shared memory).
 *
 * Dimension legend and argument order: kernels/ops.h. */
#ifndef CP_OPS_CUDA_H
#define CP_OPS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "kernels/ops.h"

/* The CUDA op table (same signatures as cp_ops_cpu(), device pointers). */
const CpOps *cp_ops_cuda(void);

/* Grow ctx->dev_workspace to at least `bytes` (cudaMalloc; call before a
 * pass, never inside one; it never shrinks). */
void cp_cuda_workspace_reserve(CpCtx *ctx, size_t bytes);
/* Frees ctx->dev_workspace (cp_ctx_free calls it when this library is linked;
 * its presence makes cp_backend_available(CP_BACKEND_CUDA) true). */
void cp_cuda_ctx_free(CpCtx *ctx);
/* Device scratch bytes an op needs (0 if none): reserve the max over a pass. */
size_t cp_cuda_attention_workspace_bytes(int N, int Hq, int Wq, int NH);
/* conv_transpose_patch_backward with db: OC*P*P floats. */
size_t cp_cuda_readout_workspace_bytes(int OC, int P);
size_t cp_cuda_loss_workspace_bytes(void);
size_t cp_cuda_style_workspace_bytes(int N);

/* ---- the ops (device pointers; contracts in kernels/ops.h) ---- */
void conv2d_forward_cuda(float *out, const float *inp, const float *w, const float *b, int N, int C, int H, int W,
                         int OC, int K, const CpCtx *ctx);
void conv2d_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                          int N, int C, int H, int W, int OC, int K, const CpCtx *ctx);
void patch_embed_forward_cuda(float *out, const float *inp, const float *w, const float *b, int N, int C, int H,
                              int W, int OC, int P, const CpCtx *ctx);
void patch_embed_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, int N, int C, int H, int W, int OC, int P, const CpCtx *ctx);
void conv_transpose_patch_forward_cuda(float *out, const float *inp, const float *w, const float *b, int N, int C,
                                       int H, int W, int OC, int P, const CpCtx *ctx);
void conv_transpose_patch_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                        const float *w, int N, int C, int H, int W, int OC, int P,
                                        const CpCtx *ctx);
void linear_forward_cuda(float *out, const float *inp, const float *w, const float *b, int64_t M, int IN, int OUT,
                         const CpCtx *ctx);
void linear_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                          int64_t M, int IN, int OUT, const CpCtx *ctx);
void batchnorm_forward_train_cuda(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                  const float *inp, const float *weight, const float *bias, int N, int C,
                                  int64_t HW, float eps, float momentum, const CpCtx *ctx);
void batchnorm_forward_eval_cuda(float *out, const float *inp, const float *weight, const float *bias,
                                 const float *running_mean, const float *running_var, int N, int C, int64_t HW,
                                 float eps, const CpCtx *ctx);
void batchnorm_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *mean, const float *rstd, const float *weight, int N, int C, int64_t HW,
                             const CpCtx *ctx);
void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                            int64_t M, int D, float eps, const CpCtx *ctx);
void layernorm_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                             const float *mean, const float *rstd, const float *w, int64_t M, int D,
                             const CpCtx *ctx);
void layernorm2d_forward_cuda(float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, int N, int C, int64_t HW, float eps, const CpCtx *ctx);
void layernorm2d_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *mean, const float *rstd, const float *w, int N, int C, int64_t HW,
                               const CpCtx *ctx);
void relu_forward_cuda(float *out, const float *inp, int64_t n, const CpCtx *ctx);
void relu_backward_cuda(float *dinp, const float *dout, const float *out, int64_t n, const CpCtx *ctx);
void gelu_forward_cuda(float *out, const float *inp, int64_t n, const CpCtx *ctx);
void gelu_backward_cuda(float *dinp, const float *dout, const float *inp, int64_t n, const CpCtx *ctx);
void add_forward_cuda(float *out, const float *a, const float *b, int64_t n, const CpCtx *ctx);
void add_bias_hw_forward_cuda(float *out, const float *inp, const float *bias, int N, int C, int64_t HW,
                              const CpCtx *ctx);
void add_bias_hw_backward_cuda(float *dinp, float *dbias, const float *dout, int N, int C, int64_t HW,
                               const CpCtx *ctx);
void maxpool2x2_forward_cuda(float *out, uint8_t *arg, const float *inp, int N, int C, int H, int W,
                             const CpCtx *ctx);
void maxpool2x2_backward_cuda(float *dinp, const float *dout, const uint8_t *arg, int N, int C, int H, int W,
                              const CpCtx *ctx);
void upsample2x_forward_cuda(float *out, const float *inp, int N, int C, int H, int W, const CpCtx *ctx);
void upsample2x_backward_cuda(float *dinp, const float *dout, int N, int C, int H, int W, const CpCtx *ctx);
int style_forward_cuda(float *out, float *pooled, float *norm, const float *inp, int N, int C, int64_t HW,
                       const CpCtx *ctx);
void style_backward_cuda(float *dinp, const float *dout, const float *out, const float *norm, int N, int C,
                         int64_t HW, const CpCtx *ctx);
void softmax_forward_cuda(float *out, const float *inp, int64_t M, int L, const CpCtx *ctx);
void softmax_backward_cuda(float *dinp, const float *dout, const float *out, int64_t M, int L, const CpCtx *ctx);
void interp1d_forward_cuda(float *out, const float *inp, int Lin, int Lout, int C, const CpCtx *ctx);
void interp1d_backward_cuda(float *dinp, const float *dout, int Lin, int Lout, int C, const CpCtx *ctx);
void attention_forward_cuda(float *out, float *att, const float *qkv, const float *relh, const float *relw, int N,
                            int Hq, int Wq, int NH, int HD, const CpCtx *ctx);
void attention_backward_cuda(float *dqkv, float *drelh, float *drelw, const float *dout, const float *att,
                             const float *qkv, const float *relh, const float *relw, int N, int Hq, int Wq, int NH,
                             int HD, const CpCtx *ctx);
float mse_forward_cuda(const float *pred, const float *target, int64_t n, const CpCtx *ctx);
void mse_backward_cuda(float *dpred, const float *pred, const float *target, int64_t n, float dloss,
                       const CpCtx *ctx);
float bce_logits_forward_cuda(const float *logit, const float *target, int64_t n, const CpCtx *ctx);
void bce_logits_backward_cuda(float *dlogit, const float *logit, const float *target, int64_t n, float dloss,
                              const CpCtx *ctx);
float cellpose_loss_cuda(float *dy, const float *y, const float *lbl, int N, int64_t HW, const CpCtx *ctx);
void adamw_step_cuda(float *param, float *m, float *v, const float *grad, int64_t n, double lr, double beta1,
                     double beta2, double eps, double weight_decay, int64_t step, const CpCtx *ctx);
void sgd_step_cuda(float *param, float *buf, const float *grad, int64_t n, double lr, double momentum,
                   double weight_decay, int64_t step, const CpCtx *ctx);

#ifdef __cplusplus
}
#endif

/* ---- device helpers shared by the kernels/<op>.cu files (CUDA C++ only) ---- */
#ifdef __CUDACC__
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "reduce.h"

/* The ctx's stream, as a cudaStream_t. */
static inline cudaStream_t cp_stream(const CpCtx *ctx) { return (cudaStream_t)ctx->stream; }
/* The ctx's device workspace; aborts if fewer than `bytes` are reserved. */
void *cp_cuda_workspace(const CpCtx *ctx, size_t bytes);

/* Threads per block of the chunk-plan reductions and of flat launches. */
#define CP_PLAN_THREADS 128
#define CP_FLAT_THREADS 256

/* Blocks for a flat loop over n elements (grid-stride loops cover the rest). */
static inline unsigned cp_flat_blocks(int64_t n) {
    int64_t b = (n + CP_FLAT_THREADS - 1) / CP_FLAT_THREADS;
    if (b < 1) b = 1;
    return (unsigned)(b > 65535 * 8 ? 65535 * 8 : b);
}

/* The chunk plan over nchunks chunks, run by ONE block of CP_PLAN_THREADS
 * threads: thread t computes the partials of chunks t, t + T, ... (each
 * partial by chunk_fn(chunk), sequential inside the chunk: the CP_HD chunk
 * functions of the op headers), a batch of T partials goes to shared memory,
 * and thread 0 adds them to the total in chunk order, from 0
 * (rplan_combine's order). The total is valid in thread 0 only.
 * ACC is float (most sums) or double (BatchNorm). Every thread of the block
 * must call it (it synchronizes). */
template <typename ACC, typename F>
__device__ inline ACC plan_block_sum(int64_t nchunks, F chunk_fn) {
    __shared__ ACC part[CP_PLAN_THREADS];
    ACC total = (ACC)0;
    for (int64_t c0 = 0; c0 < nchunks; c0 += CP_PLAN_THREADS) {
        int64_t c = c0 + threadIdx.x;
        if (c < nchunks) part[threadIdx.x] = chunk_fn(c);
        __syncthreads();
        if (threadIdx.x == 0) {
            int64_t nb = nchunks - c0 < CP_PLAN_THREADS ? nchunks - c0 : CP_PLAN_THREADS;
            for (int64_t k = 0; k < nb; k++) total += part[k]; /* chunk order */
        }
        __syncthreads();
    }
    return total;
}

/* Two sums over the same chunks at once (BatchNorm / LayerNorm gradients:
 * sum(dout) and sum(dout * xhat)); chunk_fn(c, &a, &b) sets both partials. */
template <typename ACC, typename F>
__device__ inline void plan_block_sum2(int64_t nchunks, F chunk_fn, ACC *ta, ACC *tb) {
    __shared__ ACC pa[CP_PLAN_THREADS], pb[CP_PLAN_THREADS];
    ACC sa = (ACC)0, sb = (ACC)0;
    for (int64_t c0 = 0; c0 < nchunks; c0 += CP_PLAN_THREADS) {
        int64_t c = c0 + threadIdx.x;
        if (c < nchunks) chunk_fn(c, &pa[threadIdx.x], &pb[threadIdx.x]);
        __syncthreads();
        if (threadIdx.x == 0) {
            int64_t nb = nchunks - c0 < CP_PLAN_THREADS ? nchunks - c0 : CP_PLAN_THREADS;
            for (int64_t k = 0; k < nb; k++) sa += pa[k], sb += pb[k];
        }
        __syncthreads();
    }
    *ta = sa;
    *tb = sb;
}

/* ---- the GEMM engine of kernels/linear.cu (linear, patch embed, readout) ----
 * C(i,j) = sum_r A(i,r) B(r,j) over "separable views" as the CPU engine
 * (kernels/linear.h): element (x,y) of an operand at p[off_x(x) + off_y(y)],
 * each axis an affine stride or one of the patch.h index maps. */
typedef enum { GV_STRIDE, GV_PATCH_TOK, GV_PATCH_K, GV_NCHW_PIX, GV_READOUT_PIX, GV_READOUT_Q } GViewKind;
typedef struct {
    int kind;      /* GViewKind */
    int64_t p[4];  /* the stride (GV_STRIDE) or the geometry of the map */
} GView;
typedef enum { GM_STORE, GM_ACCUM, GM_ACCUM_CHUNKED } GMode; /* as CpGemmMode */
typedef struct {
    int64_t M, N, K;
    const float *a;
    GView a_i, a_r;
    const float *b;
    GView b_r, b_j;
    float *c;
    GView c_i, c_j;
    int mode;          /* GMode */
    const float *bias; /* STORE only; NULL = none */
    int64_t bias_div;  /* bias index = j / bias_div */
} GemmCuda;
static inline GView gv_stride(int64_t s) {
    GView v = {GV_STRIDE, {s, 0, 0, 0}};
    return v;
}
static inline GView gv_map(int kind, int64_t p0, int64_t p1, int64_t p2, int64_t p3) {
    GView v = {kind, {p0, p1, p2, p3}};
    return v;
}
/* Runs the GEMM on ctx->stream: each output one thread, its r-sum in
 * the order of the mode (sequential fmaf; ACCUM_CHUNKED: the chunk plan). */
void cp_gemm_cuda(const GemmCuda *g, const CpCtx *ctx);
/* out(j) += plan-sum over rows i < M of d[row(i) + col(j)], j < N: one block
 * per column j. */
void cp_colsum_accum_cuda(float *out, const float *d, GView row, GView col, int64_t M, int64_t N, const CpCtx *ctx);
#endif

#endif
