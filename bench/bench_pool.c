/* bench_pool.c - the CPnet small layers, forward and backward at Cellpose
 * shapes, printed as `BENCH <key> <ms>` (bench/run_bench.sh; the PyTorch side
 * is bench/peer_pool.py with the same keys).
 *
 * Shapes: N = 8 at (C, S) = (32, 224), (64, 112), (128, 56), (256, 28), the
 * CPnet levels:
 *   maxpool: input [8, C, S, S] -> [8, C, S/2, S/2];
 *   upsample: input [8, C, S/2, S/2] -> [8, C, S, S] (the decoder produces S);
 *   style: input [8, C, S, S] -> [8, C] (CPnet uses it at the deepest level
 *          only; all four shown for scale).
 * GELU: 4M = 2^22 elements (the ViT MLP scale: 1024 tokens x 4096).
 * Backward gradients accumulate across repetitions (ops.h convention): the
 * buffers are zeroed once; the time per call is unaffected. */
#include <stdio.h>
#include <string.h>

#include "bench_util.h"
#include "kernels/ops.h"
#include "philox.h"

/* Best of REPS (peer_pool.py uses the same): on a shared, busy machine a
 * 2-thread OpenMP region stalls whenever one thread is descheduled, so more
 * repetitions are needed to see the op rather than the scheduler. */
#define REPS 20

static float *make(int64_t n, uint32_t stream, float lo, float hi) {
    float *p = cp_malloc(sizeof(float) * (size_t)n);
    CpRngKey key = cp_rng_key(7, stream);
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * cp_u01(cp_rng_block(key, 0, 0, (uint32_t)i, 0).v[0]);
    return p;
}

static void bench_level(int N, int C, int S, const CpCtx *ctx) {
    int64_t n = (int64_t)N * C * S * S, nq = n / 4, HW = (int64_t)S * S;
    float *x = make(n, 1, -1.0f, 1.0f), *dx = make(n, 2, 0, 0), *g = make(n, 3, -1.0f, 1.0f);
    float *q = make(nq, 4, 0, 0), *dq = make(nq, 5, 0, 0), *gq = make(nq, 6, -1.0f, 1.0f);
    float *st = make(N * C, 7, 0, 0), *pooled = make(N * C, 8, 0, 0), *norm = make(N, 9, 0, 0);
    float *gst = make(N * C, 10, -1.0f, 1.0f);
    uint8_t *arg = cp_malloc((size_t)nq);
    char key[96];
    snprintf(key, sizeof key, "maxpool_fwd_n%d_c%d_%d", N, C, S);
    BENCH_RUN(key, REPS, maxpool2x2_forward_cpu(q, arg, x, N, C, S, S, ctx));
    snprintf(key, sizeof key, "maxpool_bwd_n%d_c%d_%d", N, C, S);
    BENCH_RUN(key, REPS, maxpool2x2_backward_cpu(dx, gq, arg, N, C, S, S, ctx));
    snprintf(key, sizeof key, "upsample_fwd_n%d_c%d_%dto%d", N, C, S / 2, S);
    BENCH_RUN(key, REPS, upsample2x_forward_cpu(x, q, N, C, S / 2, S / 2, ctx));
    snprintf(key, sizeof key, "upsample_bwd_n%d_c%d_%dto%d", N, C, S / 2, S);
    BENCH_RUN(key, REPS, upsample2x_backward_cpu(dq, g, N, C, S / 2, S / 2, ctx));
    snprintf(key, sizeof key, "style_fwd_n%d_c%d_%d", N, C, S);
    BENCH_RUN(key, REPS, style_forward_cpu(st, pooled, norm, x, N, C, HW, ctx));
    snprintf(key, sizeof key, "style_bwd_n%d_c%d_%d", N, C, S);
    BENCH_RUN(key, REPS, style_backward_cpu(dx, gst, st, norm, N, C, HW, ctx));
    float *all[] = {x, dx, g, q, dq, gq, st, pooled, norm, gst};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cp_free(all[i]);
    cp_free(arg);
}

static void bench_gelu(int64_t n, const CpCtx *ctx) {
    float *x = make(n, 11, -4.0f, 4.0f), *y = make(n, 12, 0, 0), *g = make(n, 13, -1.0f, 1.0f);
    float *dx = make(n, 14, 0, 0);
    BENCH_RUN("gelu_fwd_4M", REPS, gelu_forward_cpu(y, x, n, ctx));
    BENCH_RUN("gelu_bwd_4M", REPS, gelu_backward_cpu(dx, g, x, n, ctx));
    float *all[] = {x, y, g, dx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cp_free(all[i]);
}

int main(int argc, char **argv) {
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, bench_threads(argc, argv), 0);
    const int levels[4][2] = {{32, 224}, {64, 112}, {128, 56}, {256, 28}};
    for (int i = 0; i < 4; i++) bench_level(8, levels[i][0], levels[i][1], &ctx);
    bench_gelu((int64_t)1 << 22, &ctx);
    cp_ctx_free(&ctx);
    return 0;
}
