// ops_cuda.cu - the CUDA op table (kernels/ops_cuda.h) and the device
// workspace of a ctx. The kernels live in kernels/<op>.cu, one file per op
// family, each the twin of kernels/<op>_cpu.c. No module globals: the stream
// and the workspace are fields of the CpCtx every op receives.
#include <stdint.h>

#include "common.h"
#include "cuda_check.h"
#include "kernels/ops_cuda.h"

void cp_cuda_workspace_reserve(CpCtx *ctx, size_t bytes) {
    if (bytes <= ctx->dev_workspace_bytes) return;
    cp_cuda_ctx_free(ctx);
    CUDA_CHECK(cudaMalloc(&ctx->dev_workspace, bytes));
    ctx->dev_workspace_bytes = bytes;
}

void cp_cuda_ctx_free(CpCtx *ctx) {
    if (ctx->dev_workspace) CUDA_CHECK(cudaFree(ctx->dev_workspace));
    ctx->dev_workspace = NULL;
    ctx->dev_workspace_bytes = 0;
}

void *cp_cuda_workspace(const CpCtx *ctx, size_t bytes) {
    CP_ASSERT(bytes <= ctx->dev_workspace_bytes && "reserve it first: cp_cuda_workspace_reserve(ctx, cp_cuda_*_workspace_bytes(...))");
    return ctx->dev_workspace;
}

/* Attention backward, all heads at once: g[N*NH*T, T], gh[N*NH*T, Hq], gw[N*NH*T, Wq]. */
size_t cp_cuda_attention_workspace_bytes(int N, int Hq, int Wq, int NH) {
    size_t rows = (size_t)N * NH * Hq * Wq;
    return sizeof(float) * rows * ((size_t)Hq * Wq + Hq + Wq);
}
size_t cp_cuda_readout_workspace_bytes(int OC, int P) { return sizeof(float) * (size_t)OC * P * P; }
/* Losses: one float result (plus padding). */
size_t cp_cuda_loss_workspace_bytes(void) { return 256; }
/* style: forward N + 1 ints (flags, count), backward N floats (dots). */
size_t cp_cuda_style_workspace_bytes(int N) { return sizeof(float) * (size_t)((N > 0 ? N : 0) + 1); }

static const CpOps cuda_ops = {
    "cuda",
    conv2d_forward_cuda,
    conv2d_backward_cuda,
    patch_embed_forward_cuda,
    patch_embed_backward_cuda,
    conv_transpose_patch_forward_cuda,
    conv_transpose_patch_backward_cuda,
    linear_forward_cuda,
    linear_backward_cuda,
    batchnorm_forward_train_cuda,
    batchnorm_forward_eval_cuda,
    batchnorm_backward_cuda,
    layernorm_forward_cuda,
    layernorm_backward_cuda,
    layernorm2d_forward_cuda,
    layernorm2d_backward_cuda,
    relu_forward_cuda,
    relu_backward_cuda,
    gelu_forward_cuda,
    gelu_backward_cuda,
    add_forward_cuda,
    add_bias_hw_forward_cuda,
    add_bias_hw_backward_cuda,
    maxpool2x2_forward_cuda,
    maxpool2x2_backward_cuda,
    upsample2x_forward_cuda,
    upsample2x_backward_cuda,
    style_forward_cuda,
    style_backward_cuda,
    softmax_forward_cuda,
    softmax_backward_cuda,
    interp1d_forward_cuda,
    interp1d_backward_cuda,
    attention_forward_cuda,
    attention_backward_cuda,
    mse_forward_cuda,
    mse_backward_cuda,
    bce_logits_forward_cuda,
    bce_logits_backward_cuda,
    cellpose_loss_cuda,
    adamw_step_cuda,
    sgd_step_cuda,
};

const CpOps *cp_ops_cuda(void) { return &cuda_ops; }
