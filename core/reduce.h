/* reduce.h - the reduction plan (DESIGN.md rule 1), written once.
 *
 * Every reduction in cellpose.c follows one of two orders, chosen by the
 * problem size only, never by thread count, SIMD width, block size, SM count
 * or timing:
 *
 *  1. Dot-like (conv/linear forward and input gradient, attention QK^T, PV):
 *     per output, acc = 0; for k in canonical order: acc = fmaf(a_k, b_k, acc);
 *     bias is added after the loop.             -> rplan_dot()
 *
 *  2. Long (weight gradients over batch x space, BatchNorm statistics, pooling
 *     means, loss means, norms): the index range [0, n) is cut into chunks of
 *     RCHUNK consecutive indices; each chunk is summed sequentially from 0.0f;
 *     the chunk partials are then summed sequentially in chunk order from
 *     0.0f.                                     -> rplan_chunk_* + rplan_combine()
 *
 * The CPU may compute chunk partials in parallel (any thread computes any
 * chunk, each chunk is computed by exactly one thread, in index order); the
 * CUDA backend maps chunks to blocks and combines them in a second pass. Both
 * use these inline helpers, so the arithmetic is literally the same code. */
#ifndef CP_REDUCE_H
#define CP_REDUCE_H

#include <math.h>
#include <stdint.h>

#include "hd.h"

/* One compile-time chunk length shared by CPU and CUDA. Changing it changes
 * every result hash (the golden hashes pin it). */
#define RCHUNK 4096

CP_HD static inline int64_t rplan_nchunks(int64_t n) { return (n + RCHUNK - 1) / RCHUNK; }
CP_HD static inline int64_t rplan_chunk_lo(int64_t chunk) { return chunk * RCHUNK; }
CP_HD static inline int64_t rplan_chunk_hi(int64_t chunk, int64_t n) {
    int64_t hi = (chunk + 1) * RCHUNK;
    return hi < n ? hi : n;
}

/* Order 1: sequential fused dot product, strides in elements. */
CP_HD static inline float rplan_dot(const float *a, int64_t sa, const float *b, int64_t sb, int64_t n) {
    float acc = 0.0f;
    for (int64_t k = 0; k < n; k++) acc = fmaf(a[k * sa], b[k * sb], acc);
    return acc;
}

/* Order 2, one chunk: sum of x[i] for i in [lo, hi), sequential from 0. */
CP_HD static inline float rplan_chunk_sum(const float *x, int64_t lo, int64_t hi) {
    float acc = 0.0f;
    for (int64_t i = lo; i < hi; i++) acc += x[i];
    return acc;
}

/* Order 2, one chunk of a sum of products: acc = fmaf(a[i], b[i], acc). */
CP_HD static inline float rplan_chunk_dot(const float *a, const float *b, int64_t lo, int64_t hi) {
    float acc = 0.0f;
    for (int64_t i = lo; i < hi; i++) acc = fmaf(a[i], b[i], acc);
    return acc;
}

/* Order 2, final pass: partials summed sequentially in chunk order. */
CP_HD static inline float rplan_combine(const float *partials, int64_t nchunks) {
    float acc = 0.0f;
    for (int64_t c = 0; c < nchunks; c++) acc += partials[c];
    return acc;
}

/* ---- CPU implementations (core/reduce.c); threads never change a bit ---- */
#ifndef __CUDACC__
#include "ctx.h"

/* sum(x[0..n)) by the chunk plan. `partials` scratch: rplan_nchunks(n) floats. */
float rplan_sum_cpu(const CpCtx *ctx, const float *x, int64_t n, float *partials);
/* sum(a[i] * b[i]) by the chunk plan. */
float rplan_dot_cpu(const CpCtx *ctx, const float *a, const float *b, int64_t n, float *partials);
/* Per-channel sums over (N, HW) of an NCHW tensor, the BatchNorm / weight-
 * gradient shape: out[c] = sum_{n, hw} x[n, c, hw], where the reduced index is
 * i = n * HW + hw (batch-major) and chunks are taken over i in [0, N*HW).
 * `partials` scratch: C * rplan_nchunks(N*HW) floats. */
void rplan_sum_nchw_cpu(const CpCtx *ctx, float *out, const float *x, int64_t N, int64_t C, int64_t HW,
                        float *partials);
#endif

#endif
