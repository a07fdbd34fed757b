/* reduce.c - CPU implementations of the reduction plan (reduce.h).
 *
 * Parallelism is over chunks (and channels): each chunk partial is computed by
 * one thread in index order, then partials are combined in chunk order by one
 * thread. The OpenMP schedule decides only *who* computes a chunk, never the
 * order of additions, so the result is the same for any thread count. */
#include "reduce.h"

float rplan_sum_cpu(const CpCtx *ctx, const float *x, int64_t n, float *partials) {
    int64_t nc = rplan_nchunks(n);
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t c = 0; c < nc; c++) partials[c] = rplan_chunk_sum(x, rplan_chunk_lo(c), rplan_chunk_hi(c, n));
    return rplan_combine(partials, nc);
}

float rplan_dot_cpu(const CpCtx *ctx, const float *a, const float *b, int64_t n, float *partials) {
    int64_t nc = rplan_nchunks(n);
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t c = 0; c < nc; c++)
        partials[c] = rplan_chunk_dot(a, b, rplan_chunk_lo(c), rplan_chunk_hi(c, n));
    return rplan_combine(partials, nc);
}

/* One chunk [lo, hi) of the batch-major index i = n*HW + hw for channel ch. */
static float chunk_sum_nchw(const float *x, int64_t C, int64_t HW, int64_t ch, int64_t lo, int64_t hi) {
    float acc = 0.0f;
    int64_t i = lo;
    while (i < hi) {
        int64_t n = i / HW, hw = i % HW;
        int64_t run = HW - hw < hi - i ? HW - hw : hi - i; /* contiguous stretch in one image */
        const float *p = x + (n * C + ch) * HW + hw;
        for (int64_t k = 0; k < run; k++) acc += p[k];
        i += run;
    }
    return acc;
}

void rplan_sum_nchw_cpu(const CpCtx *ctx, float *out, const float *x, int64_t N, int64_t C, int64_t HW,
                        float *partials) {
    int64_t n = N * HW, nc = rplan_nchunks(n);
#pragma omp parallel for num_threads(ctx->threads) schedule(static) collapse(2)
    for (int64_t ch = 0; ch < C; ch++)
        for (int64_t c = 0; c < nc; c++)
            partials[ch * nc + c] = chunk_sum_nchw(x, C, HW, ch, rplan_chunk_lo(c), rplan_chunk_hi(c, n));
    for (int64_t ch = 0; ch < C; ch++) out[ch] = rplan_combine(partials + ch * nc, nc);
}
