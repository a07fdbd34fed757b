/* bench_optim.c - optimizer steps and the Cellpose loss at training sizes,
 * printed as `BENCH <key> <ms>` (bench/run_bench.sh; the PyTorch side is
 * bench/peer_optim.py with the same keys).
 *
 * Shapes: AdamW and SGD-momentum steps over one flat buffer of 6,610,389
 * parameters (CPnet nbase 2-32-64-128-256, DESIGN.md); the Cellpose v3 loss
 * forward alone (dy = NULL) and forward + backward on y, lbl [8, 3, 224, 224].
 * Steps run with increasing step counts from 1, as in training; the loss
 * gradient accumulates across repetitions (ops.h convention), which does not
 * change the time per call. */
#include <stdio.h>
#include <string.h>

#include "bench_util.h"
#include "kernels/ops.h"
#include "philox.h"

#define CPNET_PARAMS 6610389

static float *make(int64_t n, uint32_t stream, float lo, float hi) {
    float *p = cp_malloc(sizeof(float) * (size_t)n);
    CpRngKey key = cp_rng_key(7, stream);
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * cp_u01(cp_rng_block(key, 0, 0, (uint32_t)i, 0).v[0]);
    return p;
}

static void bench_steps(const CpCtx *ctx) {
    int64_t n = CPNET_PARAMS, step = 0;
    float *p = make(n, 1, -1, 1), *g = make(n, 2, -1, 1), *m = make(n, 3, 0, 0), *v = make(n, 4, 0, 0);
    BENCH_RUN("adamw_step_6.6M", 10,
              adamw_step_cpu(p, m, v, g, n, 0.005f, 0.9f, 0.999f, 1e-8f, 1e-5f, ++step, ctx));
    step = 0;
    BENCH_RUN("sgd_step_6.6M", 10, sgd_step_cpu(p, m, g, n, 0.2f, 0.9f, 1e-5f, ++step, ctx));
    cp_free(p), cp_free(g), cp_free(m), cp_free(v);
}

static void bench_loss(int N, int S, const CpCtx *ctx) {
    int64_t HW = (int64_t)S * S, n = (int64_t)N * 3 * HW;
    float *y = make(n, 5, -5, 5), *lbl = make(n, 6, -1, 1), *dy = make(n, 7, 0, 0);
    for (int s = 0; s < N; s++) /* cellprob labels 0/1 */
        for (int64_t i = 0; i < HW; i++) lbl[(int64_t)s * 3 * HW + i] = lbl[(int64_t)s * 3 * HW + i] > 0 ? 1.0f : 0.0f;
    char key[96];
    volatile float sink = 0;
    snprintf(key, sizeof key, "cellpose_loss_fwd_n%d_%dx%d", N, S, S);
    BENCH_RUN(key, 10, sink += cellpose_loss_cpu(NULL, y, lbl, N, HW, ctx));
    snprintf(key, sizeof key, "cellpose_loss_fwdbwd_n%d_%dx%d", N, S, S);
    BENCH_RUN(key, 10, sink += cellpose_loss_cpu(dy, y, lbl, N, HW, ctx));
    (void)sink;
    cp_free(y), cp_free(lbl), cp_free(dy);
}

int main(int argc, char **argv) {
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, bench_threads(argc, argv), 0);
    bench_steps(&ctx);
    bench_loss(8, 224, &ctx);
    cp_ctx_free(&ctx);
    return 0;
}
