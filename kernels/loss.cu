// loss.cu - CUDA twins of kernels/loss_cpu.c: MSE, BCE with logits and the
// Cellpose v3 segmentation loss. Per-element terms and gradients: the CP_HD
// functions of kernels/loss.h.
//
// Legend: n elements; N batch, HW = H*W; y, lbl [N,3,HW].
// Determinism: each mean is the chunk plan over the logical index (loss.h),
// run by ONE block (plan_block_sum: chunk partials in parallel, combined in
// chunk order by one thread); the division by n happens on the host, as in
// the CPU path. Gradients are elementwise, one thread per element.
#include <stdint.h>

#include "kernels/loss.h"
#include "kernels/ops_cuda.h"

#define GRID_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

enum { LOSS_MSE, LOSS_BCE, LOSS_CP_FLOW, LOSS_CP_PROB };

// Term i of the loss `kind` (the logical index of loss.h).
__device__ inline float loss_term(int kind, const float *a, const float *b, int64_t HW, int64_t i) {
    switch (kind) {
    case LOSS_MSE: return mse_term(a[i], b[i]);
    case LOSS_BCE: return bce_term(a[i], b[i]);
    case LOSS_CP_FLOW: { /* i = (n*2 + c)*HW + hw: y channel c vs 5 * lbl channel c+1 */
        int64_t plane = i / HW, hw = i % HW, n = plane / 2, c = plane % 2;
        return mse_term(a[(n * 3 + c) * HW + hw], cp_flow_target(b[(n * 3 + c + 1) * HW + hw]));
    }
    default: { /* i = n*HW + hw: y channel 2 vs lbl channel 0 > 0.5 */
        int64_t n = i / HW, hw = i % HW;
        return bce_term(a[(n * 3 + 2) * HW + hw], cp_prob_target(b[n * 3 * HW + hw]));
    }
    }
}

// One block: out[0] = plan-sum over i < n of the terms.
__global__ void k_loss_sum(float *out, int kind, const float *a, const float *b, int64_t HW, int64_t n) {
    float s = plan_block_sum<float>(rplan_nchunks(n), [&](int64_t c) {
        float acc = 0.0f;
        for (int64_t i = rplan_chunk_lo(c); i < rplan_chunk_hi(c, n); i++) acc += loss_term(kind, a, b, HW, i);
        return acc;
    });
    if (threadIdx.x == 0) *out = s;
}

__global__ void k_mse_bwd(float *dpred, const float *pred, const float *target, int64_t n, float scale, float dloss) {
    GRID_LOOP(i, n) dpred[i] += mse_grad(pred[i], target[i], scale, dloss);
}
__global__ void k_bce_bwd(float *dlogit, const float *logit, const float *target, int64_t n, float dloss, float nf) {
    GRID_LOOP(i, n) dlogit[i] += bce_grad(logit[i], target[i], dloss, nf);
}
// dy[N,3,HW] += the Cellpose loss gradient (flow channels 0, 1; prob channel 2).
__global__ void k_cp_loss_bwd(float *dy, const float *y, const float *lbl, int64_t HW, int64_t n, float fscale,
                              float pscale) {
    GRID_LOOP(i, n) { /* i over [N,3,HW] */
        int64_t plane = i / HW, hw = i % HW, s = plane / 3, c = plane % 3;
        if (c < 2)
            dy[i] += mse_grad(y[i], cp_flow_target(lbl[(s * 3 + c + 1) * HW + hw]), fscale, CP_FLOW_DLOSS);
        else
            dy[i] += bce_grad(y[i], cp_prob_target(lbl[s * 3 * HW + hw]), 1.0f, pscale);
    }
}

// The plan sum of one loss, copied back to the host (synchronizes the stream).
static float loss_sum(int kind, const float *a, const float *b, int64_t HW, int64_t n, const CpCtx *ctx) {
    float *d = (float *)cp_cuda_workspace(ctx, sizeof(float)), h = 0.0f;
    k_loss_sum<<<1, CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(d, kind, a, b, HW, n);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaMemcpyAsync(&h, d, sizeof(float), cudaMemcpyDeviceToHost, cp_stream(ctx)));
    CUDA_CHECK(cudaStreamSynchronize(cp_stream(ctx)));
    return h;
}

float mse_forward_cuda(const float *pred, const float *target, int64_t n, const CpCtx *ctx) {
    return loss_sum(LOSS_MSE, pred, target, 1, n, ctx) / (float)n; /* PyTorch: F.mse_loss */
}
void mse_backward_cuda(float *dpred, const float *pred, const float *target, int64_t n, float dloss,
                       const CpCtx *ctx) {
    if (n <= 0) return;
    k_mse_bwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dpred, pred, target, n, mse_grad_scale(n), dloss);
    CUDA_CHECK_LAUNCH();
}
float bce_logits_forward_cuda(const float *logit, const float *target, int64_t n, const CpCtx *ctx) {
    return loss_sum(LOSS_BCE, logit, target, 1, n, ctx) / (float)n; /* PyTorch: F.binary_cross_entropy_with_logits */
}
void bce_logits_backward_cuda(float *dlogit, const float *logit, const float *target, int64_t n, float dloss,
                              const CpCtx *ctx) {
    if (n <= 0) return;
    k_bce_bwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dlogit, logit, target, n, dloss, (float)n);
    CUDA_CHECK_LAUNCH();
}
/* y[N,3,HW], lbl[N,3,HW] -> loss; dy (or NULL) += gradient. Same expression
 * as cellpose_loss_cpu: (flow_sum / nflow) / 2 + prob_sum / nprob. */
float cellpose_loss_cuda(float *dy, const float *y, const float *lbl, int N, int64_t HW, const CpCtx *ctx) {
    int64_t nflow = (int64_t)N * 2 * HW, nprob = (int64_t)N * HW;
    if (dy && nprob > 0) {
        int64_t n = (int64_t)N * 3 * HW;
        k_cp_loss_bwd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dy, y, lbl, HW, n, mse_grad_scale(nflow),
                                                                               (float)nprob);
        CUDA_CHECK_LAUNCH();
    }
    float flow_loss = (loss_sum(LOSS_CP_FLOW, y, lbl, HW, nflow, ctx) / (float)nflow) / 2.0f;
    float prob_loss = loss_sum(LOSS_CP_PROB, y, lbl, HW, nprob, ctx) / (float)nprob;
    return flow_loss + prob_loss;
}
