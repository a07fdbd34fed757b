/* bench_conv2d.c - conv2d forward and backward (dinp + dw + db) at the CPnet
 * shapes (batch 8; 3x3 convs of each level, 1x1 projections and the output
 * conv), printed as `BENCH conv2d_k<K>_c<C>_oc<OC>_<H>_{fwd,bwd} <ms>` for
 * bench/run_bench.sh (best of --reps, default 5), plus a `#` line with the
 * work per shape (2*N*C*OC*K*K*H*W flops forward, twice that backward) to
 * turn times into GFLOP/s.
 *
 *   bench_conv2d [--threads N] [--reps R] [--only SUBSTRING] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "kernels/conv2d.h"
#include "kernels/ops.h"
#include "philox.h"

typedef struct {
    int N, C, OC, H, K;
} BShape;

/* CPnet (nbase 2-32-64-128-256) at 224 x 224 tiles, batch 8 */
static const BShape shapes[] = {
    {8, 2, 32, 224, 3},  {8, 32, 32, 224, 3},   {8, 64, 64, 112, 3},   {8, 128, 128, 56, 3},
    {8, 256, 256, 28, 3}, {8, 2, 32, 224, 1},   {8, 32, 64, 112, 1},   {8, 64, 128, 56, 1},
    {8, 128, 256, 28, 1}, {8, 32, 3, 224, 1},
};

static void fill(float *p, size_t n, uint32_t stream) {
    CpRngKey key = cp_rng_key(7, stream);
    for (size_t i = 0; i < n; i++) p[i] = cp_u01(cp_rng_block(key, 0, 0, (uint32_t)i, 0).v[0]) * 2.0f - 1.0f;
}

static int arg_int(int argc, char **argv, const char *name, int dflt) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return atoi(argv[i + 1]);
    return dflt;
}

static const char *arg_str(int argc, char **argv, const char *name) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return NULL;
}

static void bench_shape(const BShape *s, const CpCtx *ctx, int reps, const char *only) {
    const size_t ni = (size_t)s->N * s->C * s->H * s->H, no = (size_t)s->N * s->OC * s->H * s->H;
    const size_t nw = (size_t)s->OC * s->C * s->K * s->K;
    float *inp = cp_malloc(4 * ni), *out = cp_malloc(4 * no), *dout = cp_malloc(4 * no);
    float *w = cp_malloc(4 * nw), *b = cp_malloc(4 * (size_t)s->OC);
    float *dinp = cp_calloc(ni, 4), *dw = cp_calloc(nw, 4), *db = cp_calloc((size_t)s->OC, 4);
    fill(inp, ni, 1), fill(dout, no, 2), fill(w, nw, 3), fill(b, (size_t)s->OC, 4);
    double gflop = 2.0 * (double)s->N * s->C * s->OC * s->K * s->K * s->H * s->H * 1e-9;
    char key[128];
    snprintf(key, sizeof key, "conv2d_k%d_c%d_oc%d_%d_fwd", s->K, s->C, s->OC, s->H);
    if (!only || strstr(key, only))
        BENCH_RUN(key, reps, conv2d_forward_cpu(out, inp, w, b, s->N, s->C, s->H, s->H, s->OC, s->K, ctx));
    snprintf(key, sizeof key, "conv2d_k%d_c%d_oc%d_%d_bwd", s->K, s->C, s->OC, s->H);
    if (!only || strstr(key, only))
        BENCH_RUN(key, reps,
                  conv2d_backward_cpu(dinp, dw, db, dout, inp, w, s->N, s->C, s->H, s->H, s->OC, s->K, ctx));
    printf("# conv2d_k%d_c%d_oc%d_%d: %.3f GFLOP forward, %.3f GFLOP backward\n", s->K, s->C, s->OC, s->H, gflop,
           2 * gflop);
    cp_free(inp), cp_free(out), cp_free(dout), cp_free(w), cp_free(b), cp_free(dinp), cp_free(dw), cp_free(db);
}

int main(int argc, char **argv) {
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, bench_threads(argc, argv), 0);
    int reps = arg_int(argc, argv, "--reps", 5);
    const char *only = arg_str(argc, argv, "--only");
    printf("# conv2d CPU, %d threads, SIMD %s\n", ctx.threads, conv2d_cpu_simd());
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) bench_shape(&shapes[i], &ctx, reps, only);
    cp_ctx_free(&ctx);
    return 0;
}
