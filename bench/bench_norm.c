/* bench_norm.c - BatchNorm2d, LayerNorm and LayerNorm2d forward/backward at
 * Cellpose shapes, printed as `BENCH <key> <ms>` (bench/run_bench.sh; the
 * PyTorch side is bench/peer_norm.py with the same keys).
 *
 * Shapes: BN (CPnet): N = 8 at (C, H=W) = (32, 224), (64, 112), (128, 56),
 * (256, 28), training forward (statistics + running stats + output) and
 * backward (dinp, dweight, dbias). LN (ViT blocks): M = 1024 tokens (32x32),
 * D = 1024. LN2d (SAM neck): N = 8, C = 256, 32x32.
 * Backward gradients accumulate across repetitions (ops.h convention): the
 * buffers are zeroed once; the time per call is unaffected. */
#include <stdio.h>
#include <string.h>

#include "bench_util.h"
#include "kernels/ops.h"
#include "philox.h"

static float *make(int64_t n, uint32_t stream, float lo, float hi) {
    float *p = cp_malloc(sizeof(float) * (size_t)n);
    CpRngKey key = cp_rng_key(7, stream);
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * cp_u01(cp_rng_block(key, 0, 0, (uint32_t)i, 0).v[0]);
    return p;
}

static void bench_bn(int N, int C, int S, const CpCtx *ctx) {
    int64_t HW = (int64_t)S * S, n = (int64_t)N * C * HW;
    float *x = make(n, 1, -2.0f, 3.0f), *g = make(n, 2, -1.0f, 1.0f), *out = make(n, 3, 0, 1);
    float *dx = make(n, 4, 0, 0), *w = make(C, 5, 0.5f, 1.5f), *b = make(C, 6, -1, 1);
    float *mean = make(C, 7, 0, 0), *rstd = make(C, 8, 0, 0), *rm = make(C, 9, 0, 0), *rv = make(C, 10, 1, 1);
    float *dw = make(C, 11, 0, 0), *db = make(C, 12, 0, 0);
    char key[96];
    snprintf(key, sizeof key, "bn_fwd_train_n%d_c%d_%dx%d", N, C, S, S);
    BENCH_RUN(key, 5, batchnorm_forward_train_cpu(out, mean, rstd, rm, rv, x, w, b, N, C, HW, 1e-5f, 0.05f, ctx));
    snprintf(key, sizeof key, "bn_bwd_n%d_c%d_%dx%d", N, C, S, S);
    BENCH_RUN(key, 5, batchnorm_backward_cpu(dx, dw, db, g, x, mean, rstd, w, N, C, HW, ctx));
    float *all[] = {x, g, out, dx, w, b, mean, rstd, rm, rv, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cp_free(all[i]);
}

static void bench_ln(int64_t M, int D, const CpCtx *ctx) {
    int64_t n = M * D;
    float *x = make(n, 1, -2.0f, 3.0f), *g = make(n, 2, -1.0f, 1.0f), *out = make(n, 3, 0, 1);
    float *dx = make(n, 4, 0, 0), *w = make(D, 5, 0.5f, 1.5f), *b = make(D, 6, -1, 1);
    float *mean = make(M, 7, 0, 0), *rstd = make(M, 8, 0, 0), *dw = make(D, 11, 0, 0), *db = make(D, 12, 0, 0);
    char key[96];
    snprintf(key, sizeof key, "ln_fwd_m%lld_d%d", (long long)M, D);
    BENCH_RUN(key, 10, layernorm_forward_cpu(out, mean, rstd, x, w, b, M, D, 1e-6f, ctx));
    snprintf(key, sizeof key, "ln_bwd_m%lld_d%d", (long long)M, D);
    BENCH_RUN(key, 10, layernorm_backward_cpu(dx, dw, db, g, x, mean, rstd, w, M, D, ctx));
    float *all[] = {x, g, out, dx, w, b, mean, rstd, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cp_free(all[i]);
}

static void bench_ln2d(int N, int C, int S, const CpCtx *ctx) {
    int64_t HW = (int64_t)S * S, n = (int64_t)N * C * HW;
    float *x = make(n, 1, -2.0f, 3.0f), *g = make(n, 2, -1.0f, 1.0f), *out = make(n, 3, 0, 1);
    float *dx = make(n, 4, 0, 0), *w = make(C, 5, 0.5f, 1.5f), *b = make(C, 6, -1, 1);
    float *mean = make(N * HW, 7, 0, 0), *rstd = make(N * HW, 8, 0, 0), *dw = make(C, 11, 0, 0);
    float *db = make(C, 12, 0, 0);
    char key[96];
    snprintf(key, sizeof key, "ln2d_fwd_n%d_c%d_%dx%d", N, C, S, S);
    BENCH_RUN(key, 10, layernorm2d_forward_cpu(out, mean, rstd, x, w, b, N, C, HW, 1e-6f, ctx));
    snprintf(key, sizeof key, "ln2d_bwd_n%d_c%d_%dx%d", N, C, S, S);
    BENCH_RUN(key, 10, layernorm2d_backward_cpu(dx, dw, db, g, x, mean, rstd, w, N, C, HW, ctx));
    float *all[] = {x, g, out, dx, w, b, mean, rstd, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cp_free(all[i]);
}

int main(int argc, char **argv) {
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, bench_threads(argc, argv), 0);
    const int bn_shapes[4][2] = {{32, 224}, {64, 112}, {128, 56}, {256, 28}};
    for (int i = 0; i < 4; i++) bench_bn(8, bn_shapes[i][0], bn_shapes[i][1], &ctx);
    bench_ln(1024, 1024, &ctx);
    bench_ln2d(8, 256, 32, &ctx);
    cp_ctx_free(&ctx);
    return 0;
}
