/* loss_cpu.c - CPU loops of the losses (kernels/ops.h): MSE, BCE with logits
 * and Cellpose v3's segmentation loss. Per-element math: kernels/loss.h.
 *
 * Legend: N batch, HW = H*W, n elements averaged. y[N,3,H,W], lbl[N,3,H,W].
 *
 * Determinism: a mean is the chunk plan of core/reduce.h over the logical
 * index i in [0, n): chunk c covers [c*RCHUNK, min((c+1)*RCHUNK, n)), summed
 * sequentially from 0.0f; partials summed in chunk order from 0.0f. No
 * scratch is allocated: the partials of up to LOSS_GROUP chunks are computed
 * in parallel into a stack array, then added to one running total in chunk
 * order, which is exactly rplan_combine() over all partials (a sequential
 * sum from 0.0f in chunk order). Threads only decide who computes a chunk.
 * Gradients are elementwise: each element is written by exactly one thread
 * (the owner of its chunk, or of its index), accumulated with +=.
 *
 * The Cellpose loss walks the strided channels of y and lbl directly: the
 * logical index is mapped to (sample, channel, pixel) in runs that stay
 * inside one channel plane, so no contiguous copy is made. */
#include "loss.h"

#include "ops.h"
#include "reduce.h"

/* Chunk partials computed per parallel region (stack: 1 KiB). */
#define LOSS_GROUP 256

/* One chunk partial: the sequential sum of the terms of [lo, hi). */
typedef float (*LossChunkFn)(const void *arg, int64_t lo, int64_t hi);

/* sum of n terms by the chunk plan (reduce.h), without scratch. */
static float loss_plan_sum(LossChunkFn chunk, const void *arg, int64_t n, const CpCtx *ctx) {
    float part[LOSS_GROUP];
    float total = 0.0f;
    int64_t nc = rplan_nchunks(n);
    for (int64_t c0 = 0; c0 < nc; c0 += LOSS_GROUP) {
        int64_t c1 = c0 + LOSS_GROUP < nc ? c0 + LOSS_GROUP : nc;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
        for (int64_t c = c0; c < c1; c++) part[c - c0] = chunk(arg, rplan_chunk_lo(c), rplan_chunk_hi(c, n));
        for (int64_t c = c0; c < c1; c++) total += part[c - c0]; /* rplan_combine, continued */
    }
    return total;
}

/* ---- MSE ---- */
typedef struct {
    const float *a, *b; /* [n] prediction/logit and target */
} FlatPair;

static float mse_chunk(const void *arg, int64_t lo, int64_t hi) {
    const FlatPair *f = (const FlatPair *)arg;
    float acc = 0.0f;
    for (int64_t i = lo; i < hi; i++) acc += mse_term(f->a[i], f->b[i]);
    return acc;
}

/* pred[n], target[n] -> mean((pred - target)^2) */
float mse_forward_cpu(const float *pred, const float *target, int64_t n, const CpCtx *ctx) {
    FlatPair f = {pred, target};
    return loss_plan_sum(mse_chunk, &f, n, ctx) / (float)n; /* PyTorch: F.mse_loss(pred, target) */
}

/* dpred[n] += (s * (pred - target)) * dloss, s = float(2/n) */
void mse_backward_cpu(float *dpred, const float *pred, const float *target, int64_t n, float dloss,
                      const CpCtx *ctx) {
    float scale = mse_grad_scale(n);
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t i = 0; i < n; i++) dpred[i] += mse_grad(pred[i], target[i], scale, dloss);
}

/* ---- BCE with logits ---- */
static float bce_chunk(const void *arg, int64_t lo, int64_t hi) {
    const FlatPair *f = (const FlatPair *)arg;
    float acc = 0.0f;
    for (int64_t i = lo; i < hi; i++) acc += bce_term(f->a[i], f->b[i]);
    return acc;
}

/* logit[n], target[n] in [0,1] -> mean BCE */
float bce_logits_forward_cpu(const float *logit, const float *target, int64_t n, const CpCtx *ctx) {
    FlatPair f = {logit, target};
    return loss_plan_sum(bce_chunk, &f, n, ctx) / (float)n; /* PyTorch: F.binary_cross_entropy_with_logits */
}

/* dlogit[n] += ((sigmoid(logit) - target) * dloss) / n */
void bce_logits_backward_cpu(float *dlogit, const float *logit, const float *target, int64_t n, float dloss,
                             const CpCtx *ctx) {
    float nf = (float)n;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t i = 0; i < n; i++) dlogit[i] += bce_grad(logit[i], target[i], dloss, nf);
}

/* ---- Cellpose v3 segmentation loss ---- */
typedef struct {
    const float *y, *lbl; /* [N,3,HW] */
    float *dy;            /* [N,3,HW] or NULL */
    int64_t HW;
    float scale; /* flow: mse_grad_scale(N*2*HW); prob: (float)(N*HW) */
} CpLossArg;

/* Flow terms of logical [lo, hi), i = (n*2 + c)*HW + hw: y channel c against
 * 5 * lbl channel c+1. With dy, also adds their gradients (same elements). */
static float cp_flow_chunk(const void *arg, int64_t lo, int64_t hi) {
    const CpLossArg *a = (const CpLossArg *)arg;
    float acc = 0.0f;
    int64_t i = lo;
    while (i < hi) {
        int64_t plane = i / a->HW, hw = i % a->HW; /* plane = n*2 + c */
        int64_t run = a->HW - hw < hi - i ? a->HW - hw : hi - i;
        int64_t n = plane / 2, c = plane % 2;
        const float *yp = a->y + (n * 3 + c) * a->HW + hw;
        const float *lp = a->lbl + (n * 3 + c + 1) * a->HW + hw;
        for (int64_t k = 0; k < run; k++) acc += mse_term(yp[k], cp_flow_target(lp[k]));
        if (a->dy) {
            float *dp = a->dy + (n * 3 + c) * a->HW + hw;
            for (int64_t k = 0; k < run; k++)
                dp[k] += mse_grad(yp[k], cp_flow_target(lp[k]), a->scale, CP_FLOW_DLOSS);
        }
        i += run;
    }
    return acc;
}

/* Cell-probability terms of logical [lo, hi), i = n*HW + hw: y channel 2
 * against (lbl channel 0 > 0.5). With dy, also adds their gradients. */
static float cp_prob_chunk(const void *arg, int64_t lo, int64_t hi) {
    const CpLossArg *a = (const CpLossArg *)arg;
    float acc = 0.0f;
    int64_t i = lo;
    while (i < hi) {
        int64_t n = i / a->HW, hw = i % a->HW;
        int64_t run = a->HW - hw < hi - i ? a->HW - hw : hi - i;
        const float *yp = a->y + (n * 3 + 2) * a->HW + hw;
        const float *lp = a->lbl + n * 3 * a->HW + hw;
        for (int64_t k = 0; k < run; k++) acc += bce_term(yp[k], cp_prob_target(lp[k]));
        if (a->dy) {
            float *dp = a->dy + (n * 3 + 2) * a->HW + hw;
            for (int64_t k = 0; k < run; k++) dp[k] += bce_grad(yp[k], cp_prob_target(lp[k]), 1.0f, a->scale);
        }
        i += run;
    }
    return acc;
}

/* y[N,3,HW], lbl[N,3,HW] -> loss; dy[N,3,HW] (or NULL) += d loss / d y.
 * PyTorch (Cellpose v3 train._loss_fn_seg):
 *   loss = F.mse_loss(y[:, :2], 5. * lbl[:, 1:]) / 2.
 *        + F.binary_cross_entropy_with_logits(y[:, -1], (lbl[:, 0] > 0.5).float()) */
float cellpose_loss_cpu(float *dy, const float *y, const float *lbl, int N, int64_t HW, const CpCtx *ctx) {
    int64_t nflow = (int64_t)N * 2 * HW, nprob = (int64_t)N * HW;
    CpLossArg flow = {y, lbl, dy, HW, mse_grad_scale(nflow)};
    CpLossArg prob = {y, lbl, dy, HW, (float)nprob};
    float flow_loss = (loss_plan_sum(cp_flow_chunk, &flow, nflow, ctx) / (float)nflow) / 2.0f;
    float prob_loss = loss_plan_sum(cp_prob_chunk, &prob, nprob, ctx) / (float)nprob;
    return flow_loss + prob_loss;
}
