// batchnorm.cu - CUDA twin of kernels/batchnorm_cpu.c: BatchNorm2d forward
// (train, eval) and backward. Arithmetic and expression order: the CP_HD
// functions of kernels/batchnorm.h (the CPU loops call the same ones).
//
// Legend: N batch, C channels, HW = H*W; tensors NCHW [N,C,HW]; per-channel
// vectors [C]. Per channel the reduced index is batch-major, i = n*HW + hw,
// count = N*HW, summed by the chunk plan IN DOUBLE (batchnorm.h).
// Determinism: one block per channel computes that channel's sums
// (plan_block_sum: chunk partials in parallel threads, each chunk sequential,
// combined in chunk order by thread 0), then its statistics / parameter
// gradients (thread 0) and its dinp elements (all threads, one writer each).
// The normalization pass is elementwise. No atomics, no scratch.
#include <stdint.h>

#include "kernels/batchnorm.h"
#include "kernels/ops_cuda.h"

#define GRID_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// x[n, c, hw] for the batch-major index i of channel c.
__device__ inline int64_t bn_at(int64_t i, int64_t c, int64_t C, int64_t HW) { return ((i / HW) * C + c) * HW + i % HW; }

// One block per channel: mean, rstd, running stats (PyTorch: training BN statistics).
__global__ void k_bn_stats(float *mean, float *rstd, float *running_mean, float *running_var, const float *x, int C,
                           int64_t HW, int64_t count, float eps, float momentum) {
    const int64_t c = blockIdx.x;
    __shared__ float mu_s;
    double t1 = plan_block_sum<double>(rplan_nchunks(count), [&](int64_t ch) {
        double acc = 0.0;
        for (int64_t i = rplan_chunk_lo(ch); i < rplan_chunk_hi(ch, count); i++) acc += (double)x[bn_at(i, c, C, HW)];
        return acc;
    });
    if (threadIdx.x == 0) mu_s = bn_mean((float)t1, count);
    __syncthreads();
    const float mu = mu_s;
    double t2 = plan_block_sum<double>(rplan_nchunks(count), [&](int64_t ch) {
        double acc = 0.0;
        for (int64_t i = rplan_chunk_lo(ch); i < rplan_chunk_hi(ch, count); i++) acc = bn_sqdev(acc, x[bn_at(i, c, C, HW)], mu);
        return acc;
    });
    if (threadIdx.x == 0) {
        float s2 = (float)t2;
        mean[c] = mu;
        rstd[c] = bn_rstd(bn_mean(s2, count), eps);
        if (running_mean) running_mean[c] = bn_running(running_mean[c], mu, momentum);
        if (running_var) running_var[c] = bn_running(running_var[c], bn_unbiased(s2, count), momentum);
    }
}

// out = bn_affine(bn_xhat(x, m, r), w, b); eval: r = bn_rstd(running_var, eps).
__global__ void k_bn_normalize(float *out, const float *x, const float *m, const float *r, const float *rv,
                               const float *w, const float *b, int C, int64_t HW, float eps, int64_t n) {
    GRID_LOOP(i, n) {
        int64_t c = (i / HW) % C;
        float rs = rv ? bn_rstd(rv[c], eps) : r[c];
        out[i] = bn_affine(bn_xhat(x[i], m[c], rs), w[c], b[c]);
    }
}

// One block per channel: sb = plan-sum dout, sw = plan-sum dout * xhat
// (double), dbias/dweight += once, then dinp of the channel's elements.
__global__ void k_bn_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *x,
                              const float *mean, const float *rstd, const float *weight, int C, int64_t HW,
                              int64_t count) {
    const int64_t c = blockIdx.x;
    const float mu = mean[c], rs = rstd[c];
    __shared__ float sb_s, sw_s;
    double tb, tw;
    plan_block_sum2<double>(
        rplan_nchunks(count),
        [&](int64_t ch, double *pb, double *pw) {
            double b = 0.0, w = 0.0;
            for (int64_t i = rplan_chunk_lo(ch); i < rplan_chunk_hi(ch, count); i++) {
                int64_t at = bn_at(i, c, C, HW);
                double gv = (double)dout[at];
                b += gv;
                w = fma(gv, (double)bn_xhat(x[at], mu, rs), w);
            }
            *pb = b;
            *pw = w;
        },
        &tb, &tw);
    if (threadIdx.x == 0) {
        sb_s = (float)tb;
        sw_s = (float)tw;
        if (dbias) dbias[c] += sb_s;
        if (dweight) dweight[c] += sw_s;
    }
    __syncthreads();
    if (!dinp) return;
    const float k = weight[c] * rs, mb = bn_mean(sb_s, count), mw = bn_mean(sw_s, count);
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
        int64_t at = bn_at(i, c, C, HW);
        dinp[at] += bn_dinp(dout[at], bn_xhat(x[at], mu, rs), k, mb, mw);
    }
}

/* PyTorch: nn.BatchNorm2d(C, eps, momentum).train()(inp). Requires N*HW > 1. */
void batchnorm_forward_train_cuda(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                  const float *inp, const float *weight, const float *bias, int N, int C,
                                  int64_t HW, float eps, float momentum, const CpCtx *ctx) {
    int64_t count = (int64_t)N * HW, n = count * C;
    CP_ASSERT(count > 1); /* PyTorch: "Expected more than 1 value per channel when training" */
    if (C <= 0) return;
    k_bn_stats<<<C, CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(mean, rstd, running_mean, running_var, inp, C, HW, count, eps,
                                                       momentum);
    CUDA_CHECK_LAUNCH();
    k_bn_normalize<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, inp, mean, rstd, NULL, weight, bias, C,
                                                                           HW, eps, n);
    CUDA_CHECK_LAUNCH();
}

/* PyTorch: (x - running_mean) / sqrt(running_var + eps) * weight + bias */
void batchnorm_forward_eval_cuda(float *out, const float *inp, const float *weight, const float *bias,
                                 const float *running_mean, const float *running_var, int N, int C, int64_t HW,
                                 float eps, const CpCtx *ctx) {
    int64_t n = (int64_t)N * C * HW;
    if (n <= 0) return;
    k_bn_normalize<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, inp, running_mean, NULL, running_var,
                                                                           weight, bias, C, HW, eps, n);
    CUDA_CHECK_LAUNCH();
}

/* PyTorch: torch.ops.aten.native_batch_norm_backward(train=True) */
void batchnorm_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *mean, const float *rstd, const float *weight, int N, int C, int64_t HW,
                             const CpCtx *ctx) {
    if (C <= 0 || (!dinp && !dweight && !dbias)) return;
    k_bn_backward<<<C, CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(dinp, dweight, dbias, dout, inp, mean, rstd, weight, C, HW,
                                                          (int64_t)N * HW);
    CUDA_CHECK_LAUNCH();
}
