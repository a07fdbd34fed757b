/* batchnorm_cpu.c - BatchNorm2d forward (train, eval) and backward on the CPU.
 * The arithmetic, the expression order and the PyTorch mapping are written
 * once in kernels/batchnorm.h; this file only walks the data.
 *
 * Legend: N batch, C channels, HW = H*W; tensors NCHW [N,C,HW]; per-channel
 * vectors [C]. The per-channel sums run over the batch-major index
 * i = n*HW + hw, count = N*HW, by the chunk plan of core/reduce.h.
 *
 * Determinism (DESIGN.md rule 1, T): each channel's sums are computed by one
 * thread: chunk by chunk in chunk order, each chunk sequentially from 0 (in
 * double, see batchnorm.h), the chunk partial then added to the channel
 * total (which starts at 0),
 * exactly rplan_combine's order, so no scratch is needed. BN_G channels are
 * reduced side by side, one independent accumulator per channel (lanes across
 * outputs, never across i): this hides the add latency and changes no bit.
 * Threads own whole channel groups (statistics, parameter gradients, dinp) or
 * whole (n, c) planes (the normalization pass): every output has one writer.
 * No float atomics, no allocation. Outputs and gradients must not alias the
 * inputs (the elementwise loops are restrict-qualified so -O2 vectorizes them). */
#include "batchnorm.h"

#include "common.h"
#include "ops.h"
#include "reduce.h"

/* Channels reduced together by one thread (independent accumulators; the
 * lane loops are unrolled so each lane lives in a register: no gathers). */
#define BN_G 8
/* Elementwise loops run in blocks of BN_V: a fixed trip count is what lets
 * -O2 vectorize them (across elements, each element its own output). */
#define BN_V 16

/* Offsets (elements) of the BN_G channel lanes of the group starting at c0,
 * relative to channel c0 of the same image. Lanes past C repeat channel C-1;
 * their results are computed and discarded (same arithmetic, no bit changes). */
static int bn_lanes(int64_t off[BN_G], int64_t c0, int64_t C, int64_t HW) {
    for (int l = 0; l < BN_G; l++) off[l] = ((c0 + l < C ? c0 + l : C - 1) - c0) * HW;
    return (int)(C - c0 < BN_G ? C - c0 : BN_G); /* valid lanes */
}

/* The contiguous stretch of the batch-major index that starts at i and stays
 * inside one image and below hi: sets image n and pixel hw, returns its length. */
static inline int64_t bn_run(int64_t i, int64_t hi, int64_t HW, int64_t *n, int64_t *hw) {
    *n = i / HW;
    *hw = i % HW;
    return HW - *hw < hi - i ? HW - *hw : hi - i;
}

/* tot[l] = plan-sum_i x[n, c0+l, hw] (PyTorch: x.sum(dim=(0, 2, 3))). */
static void bn_group_sum(float out[BN_G], const float *x, const int64_t off[BN_G], int64_t c0, int64_t C,
                         int64_t HW, int64_t count) {
    double tot[BN_G] = {0.0};
    for (int64_t ch = 0; ch < rplan_nchunks(count); ch++) {
        int64_t hi = rplan_chunk_hi(ch, count), n, hw, run;
        double part[BN_G] = {0.0};
        for (int64_t i = rplan_chunk_lo(ch); i < hi; i += run) {
            run = bn_run(i, hi, HW, &n, &hw);
            const float *p = x + (n * C + c0) * HW + hw;
            for (int64_t k = 0; k < run; k++)
#pragma GCC unroll 8
                for (int l = 0; l < BN_G; l++) part[l] += (double)p[off[l] + k];
        }
        for (int l = 0; l < BN_G; l++) tot[l] += part[l];
    }
    for (int l = 0; l < BN_G; l++) out[l] = (float)tot[l];
}

/* tot[l] = plan-sum_i (x[n, c0+l, hw] - mu[l])^2 (bn_sqdev). */
static void bn_group_sqdev(float out[BN_G], const float *x, const float mu[BN_G], const int64_t off[BN_G],
                           int64_t c0, int64_t C, int64_t HW, int64_t count) {
    double tot[BN_G] = {0.0};
    for (int64_t ch = 0; ch < rplan_nchunks(count); ch++) {
        int64_t hi = rplan_chunk_hi(ch, count), n, hw, run;
        double part[BN_G] = {0.0};
        for (int64_t i = rplan_chunk_lo(ch); i < hi; i += run) {
            run = bn_run(i, hi, HW, &n, &hw);
            const float *p = x + (n * C + c0) * HW + hw;
            for (int64_t k = 0; k < run; k++)
#pragma GCC unroll 8
                for (int l = 0; l < BN_G; l++) part[l] = bn_sqdev(part[l], p[off[l] + k], mu[l]);
        }
        for (int l = 0; l < BN_G; l++) tot[l] += part[l];
    }
    for (int l = 0; l < BN_G; l++) out[l] = (float)tot[l];
}

/* sb[l] = plan-sum_i dout, sw[l] = plan-sum_i dout * xhat, both over channel
 * c0+l (PyTorch: the dbias / dweight of BatchNorm2d's backward). */
static void bn_group_grad_sums(float sb[BN_G], float sw[BN_G], const float *dout, const float *x,
                               const float mu[BN_G], const float rs[BN_G], const int64_t off[BN_G], int64_t c0,
                               int64_t C, int64_t HW, int64_t count) {
    double tb[BN_G] = {0.0}, tw[BN_G] = {0.0};
    for (int64_t ch = 0; ch < rplan_nchunks(count); ch++) {
        int64_t hi = rplan_chunk_hi(ch, count), n, hw, run;
        double pb[BN_G] = {0.0}, pw[BN_G] = {0.0};
        for (int64_t i = rplan_chunk_lo(ch); i < hi; i += run) {
            run = bn_run(i, hi, HW, &n, &hw);
            int64_t base = (n * C + c0) * HW + hw;
            const float *g = dout + base, *p = x + base;
            for (int64_t k = 0; k < run; k++)
#pragma GCC unroll 8
                for (int l = 0; l < BN_G; l++) {
                    double gv = (double)g[off[l] + k];
                    pb[l] += gv;
                    pw[l] = fma(gv, (double)bn_xhat(p[off[l] + k], mu[l], rs[l]), pw[l]);
                }
        }
        for (int l = 0; l < BN_G; l++) {
            tb[l] += pb[l];
            tw[l] += pw[l];
        }
    }
    for (int l = 0; l < BN_G; l++) sb[l] = (float)tb[l], sw[l] = (float)tw[l];
}

/* Batch statistics and running-stat update of the channels c0..c0+BN_G-1. */
static void bn_stats_group(float *mean, float *rstd, float *running_mean, float *running_var, const float *x,
                           int64_t c0, int64_t C, int64_t HW, int64_t count, float eps, float momentum) {
    int64_t off[BN_G];
    int nl = bn_lanes(off, c0, C, HW);
    float s1[BN_G], s2[BN_G], mu[BN_G];
    bn_group_sum(s1, x, off, c0, C, HW, count);
    for (int l = 0; l < BN_G; l++) mu[l] = bn_mean(s1[l], count);
    bn_group_sqdev(s2, x, mu, off, c0, C, HW, count);
    for (int l = 0; l < nl; l++) {
        int64_t c = c0 + l;
        mean[c] = mu[l];
        rstd[c] = bn_rstd(bn_mean(s2[l], count), eps);
        /* PyTorch: running = (1 - m) * running + m * batch, the variance unbiased */
        if (running_mean) running_mean[c] = bn_running(running_mean[c], mu[l], momentum);
        if (running_var) running_var[c] = bn_running(running_var[c], bn_unbiased(s2[l], count), momentum);
    }
}

/* out[p] = bn_affine(bn_xhat(x[p], m, r), w, b) over one (n, c) plane. */
static void bn_normalize_plane(float *restrict out, const float *restrict x, float m, float r, float w, float b,
                               int64_t HW) {
    int64_t k = 0;
    for (; k + BN_V <= HW; k += BN_V)
        for (int j = 0; j < BN_V; j++) out[k + j] = bn_affine(bn_xhat(x[k + j], m, r), w, b);
    for (; k < HW; k++) out[k] = bn_affine(bn_xhat(x[k], m, r), w, b);
}

/* out[N,C,HW], mean[C], rstd[C], running_mean[C], running_var[C] (updated in
 * place; NULL: not tracked), inp[N,C,HW], weight[C], bias[C]. Requires N*HW > 1. */
void batchnorm_forward_train_cpu(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                 const float *inp, const float *weight, const float *bias, int N, int C, int64_t HW,
                                 float eps, float momentum, const CpCtx *ctx) {
    int64_t count = (int64_t)N * HW, ngroups = ((int64_t)C + BN_G - 1) / BN_G;
    CP_ASSERT(count > 1); /* PyTorch: "Expected more than 1 value per channel when training" */
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t g = 0; g < ngroups; g++)
        bn_stats_group(mean, rstd, running_mean, running_var, inp, g * BN_G, C, HW, count, eps, momentum);
    /* PyTorch: (x - mean) * invstd * weight + bias */
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
        int64_t c = nc % C;
        bn_normalize_plane(out + nc * HW, inp + nc * HW, mean[c], rstd[c], weight[c], bias[c], HW);
    }
}

/* out[N,C,HW], inp[N,C,HW], weight[C], bias[C], running_mean[C], running_var[C]. */
void batchnorm_forward_eval_cpu(float *out, const float *inp, const float *weight, const float *bias,
                                const float *running_mean, const float *running_var, int N, int C, int64_t HW,
                                float eps, const CpCtx *ctx) {
    /* PyTorch: (x - running_mean) / sqrt(running_var + eps) * weight + bias */
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
        int64_t c = nc % C;
        bn_normalize_plane(out + nc * HW, inp + nc * HW, running_mean[c], bn_rstd(running_var[c], eps), weight[c],
                           bias[c], HW);
    }
}

/* dinp[p] += bn_dinp(dout[p], xhat[p], k, mb, mw) over one (n, c) plane. */
static void bn_dinp_plane(float *restrict d, const float *restrict g, const float *restrict x, float m, float r,
                          float k, float mb, float mw, int64_t HW) {
    int64_t i = 0;
    for (; i + BN_V <= HW; i += BN_V)
        for (int j = 0; j < BN_V; j++) d[i + j] += bn_dinp(g[i + j], bn_xhat(x[i + j], m, r), k, mb, mw);
    for (; i < HW; i++) d[i] += bn_dinp(g[i], bn_xhat(x[i], m, r), k, mb, mw);
}

/* Backward of the channel group starting at c0: parameter gradients and dinp
 * of its channels (this thread is their only writer). */
static void bn_backward_group(float *dinp, float *dweight, float *dbias, const float *dout, const float *x,
                              const float *mean, const float *rstd, const float *weight, int64_t c0, int N,
                              int64_t C, int64_t HW) {
    int64_t off[BN_G], count = (int64_t)N * HW;
    int nl = bn_lanes(off, c0, C, HW);
    float mu[BN_G], rs[BN_G], sb[BN_G], sw[BN_G];
    for (int l = 0; l < BN_G; l++) {
        int64_t c = c0 + (off[l] / HW);
        mu[l] = mean[c];
        rs[l] = rstd[c];
    }
    bn_group_grad_sums(sb, sw, dout, x, mu, rs, off, c0, C, HW, count);
    for (int l = 0; l < nl; l++) {
        int64_t c = c0 + l;
        if (dbias) dbias[c] += sb[l];
        if (dweight) dweight[c] += sw[l];
        if (!dinp) continue;
        float k = weight[c] * rs[l], mb = bn_mean(sb[l], count), mw = bn_mean(sw[l], count);
        for (int64_t n = 0; n < N; n++) {
            int64_t base = (n * C + c) * HW;
            bn_dinp_plane(dinp + base, dout + base, x + base, mu[l], rs[l], k, mb, mw, HW);
        }
    }
}

/* dinp[N,C,HW] +=, dweight[C] +=, dbias[C] += (each may be NULL); dout[N,C,HW],
 * inp[N,C,HW], mean[C] and rstd[C] saved by the training forward, weight[C]. */
void batchnorm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *mean, const float *rstd, const float *weight, int N, int C, int64_t HW,
                            const CpCtx *ctx) {
    int64_t ngroups = ((int64_t)C + BN_G - 1) / BN_G;
    /* PyTorch: torch.ops.aten.native_batch_norm_backward(train=True) */
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t g = 0; g < ngroups; g++)
        bn_backward_group(dinp, dweight, dbias, dout, inp, mean, rstd, weight, g * BN_G, N, C, HW);
}
