// cuda_ops.cu - every op of the CUDA backend (kernels/ops_cuda.h) gives the
// same BYTES as the CPU reference (kernels/*_cpu.c) on odd shapes: channel
// counts not multiples of 4 or of the CUDA tiles, H and W not multiples of
// the pixel tiles, reduced lengths of three RCHUNK chunks (with two, the
// combine order could not show: (0 + a) + b == (0 + b) + a).
// Inputs are Philox normals (core/philox.h); gradient buffers start random
// (the ops accumulate); outputs start as a poison NaN on both sides, so an
// element the GPU never writes differs. Each comparison prints the count of
// differing float32 words and the largest |difference|.
// Without a GPU every test prints SKIPPED and the binary exits 0.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "cuda_check.h"
#include "harness.h"
#include "philox.h"
#include "kernels/attention.h"
#include "kernels/ops_cuda.h"

static const CpOps *CPU, *GPU;
static CpCtx g_ctx;
static uint32_t g_stream_id = 1; /* a new Philox stream per array */

#define NEED_GPU()                                                                 \
    do {                                                                           \
        char why_[256];                                                            \
        if (!cp_cuda_available(why_, sizeof why_)) SKIP("%s", why_);               \
        setup_once(why_);                                                          \
    } while (0)

static void setup_once(const char *device) {
    static int done = 0;
    if (done) return;
    done = 1;
    printf("  device: %s\n", device);
    cp_ctx_init(&g_ctx, CP_BACKEND_CPU, 2, 42);
    cp_ctx_workspace(&g_ctx, attention_backward_workspace_bytes(5, 7, 16));
    cp_cuda_workspace_reserve(&g_ctx, 64u << 20);
    CPU = cp_ops_cpu();
    GPU = cp_ops_cuda();
}

/* A tensor on both sides: h (host, CPU op) and d (device, CUDA op). */
typedef struct {
    float *h, *d;
    int64_t n;
} Pair;

static Pair pair_new(int64_t n) {
    Pair p = {(float *)cp_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1)), NULL, n};
    CUDA_CHECK(cudaMalloc(&p.d, sizeof(float) * (size_t)(n > 0 ? n : 1)));
    return p;
}
static void pair_upload(Pair *p) {
    CUDA_CHECK(cudaMemcpy(p->d, p->h, sizeof(float) * (size_t)p->n, cudaMemcpyHostToDevice));
}
/* Random normals * scale + offset, the same on both sides. */
static Pair rnd(int64_t n, float scale, float offset) {
    Pair p = pair_new(n);
    CpRngKey key = cp_rng_key(1234, g_stream_id++);
    for (int64_t i = 0; i < n; i++) p.h[i] = cp_rng_normal(key, 0, 0, (uint32_t)i) * scale + offset;
    pair_upload(&p);
    return p;
}
/* An output: the poison NaN 0x7fa5a5a5 on both sides. */
static Pair out(int64_t n) {
    Pair p = pair_new(n);
    uint32_t poison = 0x7fa5a5a5u;
    for (int64_t i = 0; i < n; i++) memcpy(&p.h[i], &poison, 4);
    pair_upload(&p);
    return p;
}
static void pair_free(Pair *p) {
    cp_free(p->h);
    CUDA_CHECK(cudaFree(p->d));
}

/* Compare the bytes of the CPU result and the CUDA result. */
static void same(TestCase *tc, const char *what, const Pair *p) {
    float *g = (float *)cp_malloc(sizeof(float) * (size_t)(p->n > 0 ? p->n : 1));
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(g, p->d, sizeof(float) * (size_t)p->n, cudaMemcpyDeviceToHost));
    int64_t diff = 0, first = -1;
    double maxd = 0.0;
    for (int64_t i = 0; i < p->n; i++)
        if (memcmp(&p->h[i], &g[i], 4) != 0) {
            if (first < 0) first = i;
            diff++;
            double d = fabs((double)p->h[i] - (double)g[i]);
            if (d > maxd || d != d) maxd = d;
        }
    printf("  %-34s %8lld values, %lld differ, max |diff| %.3g\n", what, (long long)p->n, (long long)diff, maxd);
    CHECKF(diff == 0, "%s: %lld of %lld words differ (first at %lld: cpu %.9g gpu %.9g)", what, (long long)diff,
           (long long)p->n, (long long)first, first >= 0 ? p->h[first] : 0.0, first >= 0 ? g[first] : 0.0);
    cp_free(g);
}
static void same_scalar(TestCase *tc, const char *what, float c, float g) {
    printf("  %-34s cpu %.9g gpu %.9g\n", what, c, g);
    CHECKF(memcmp(&c, &g, 4) == 0, "%s: cpu %.9g gpu %.9g", what, c, g);
}

// ---- convolutions ----
static void conv_case(TestCase *tc, int N, int C, int H, int W, int OC, int K, int bias) {
    char name[96];
    Pair x = rnd((int64_t)N * C * H * W, 1.0f, 0.0f), w = rnd((int64_t)OC * C * K * K, 0.3f, 0.0f);
    Pair b = rnd(OC, 0.5f, 0.0f), y = out((int64_t)N * OC * H * W);
    Pair dy = rnd(y.n, 1.0f, 0.0f), dx = rnd(x.n, 0.1f, 0.0f), dw = rnd(w.n, 0.1f, 0.0f), db = rnd(OC, 0.1f, 0.0f);
    CPU->conv2d_forward(y.h, x.h, w.h, bias ? b.h : NULL, N, C, H, W, OC, K, &g_ctx);
    GPU->conv2d_forward(y.d, x.d, w.d, bias ? b.d : NULL, N, C, H, W, OC, K, &g_ctx);
    snprintf(name, sizeof name, "conv2d K%d %dx%dx%dx%d->%d fwd", K, N, C, H, W, OC);
    same(tc, name, &y);
    CPU->conv2d_backward(dx.h, dw.h, db.h, dy.h, x.h, w.h, N, C, H, W, OC, K, &g_ctx);
    GPU->conv2d_backward(dx.d, dw.d, db.d, dy.d, x.d, w.d, N, C, H, W, OC, K, &g_ctx);
    snprintf(name, sizeof name, "conv2d K%d dinp", K);
    same(tc, name, &dx);
    snprintf(name, sizeof name, "conv2d K%d dw", K);
    same(tc, name, &dw);
    snprintf(name, sizeof name, "conv2d K%d db", K);
    same(tc, name, &db);
    Pair *all[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
    for (Pair *p : all) pair_free(p);
}

TEST(test_conv2d_cuda) {
    NEED_GPU();
    conv_case(tc, 2, 5, 7, 19, 37, 3, 1);   /* tiles: 2 in x, 2 channel blocks */
    conv_case(tc, 2, 3, 67, 67, 9, 3, 0);   /* N*HW = 8978: three chunks; no bias */
    conv_case(tc, 1, 11, 9, 17, 33, 1, 1);  /* 1x1 */
    conv_case(tc, 1, 3, 1, 5, 4, 3, 1);     /* one row: no row above or below */
    conv_case(tc, 2, 3, 6, 7, 5, 5, 1);     /* K = 5: the reference path */
    conv_case(tc, 1, 1, 1, 1, 1, 3, 1);     /* a 1 x 1 image: every off-centre tap skipped */
    conv_case(tc, 3, 2, 2, 3, 5, 1, 0);     /* tiny 1x1 */
}

TEST(test_patch_cuda) {
    NEED_GPU();
    const int N = 2, C = 3, H = 12, W = 20, P = 4, OC = 37, T = (H / P) * (W / P);
    Pair x = rnd((int64_t)N * C * H * W, 1.0f, 0.0f), w = rnd((int64_t)OC * C * P * P, 0.2f, 0.0f), b = rnd(OC, 0.5f, 0.0f);
    Pair y = out((int64_t)N * T * OC), dy = rnd(y.n, 1.0f, 0.0f);
    Pair dx = rnd(x.n, 0.1f, 0.0f), dw = rnd(w.n, 0.1f, 0.0f), db = rnd(OC, 0.1f, 0.0f);
    CPU->patch_embed_forward(y.h, x.h, w.h, b.h, N, C, H, W, OC, P, &g_ctx);
    GPU->patch_embed_forward(y.d, x.d, w.d, b.d, N, C, H, W, OC, P, &g_ctx);
    same(tc, "patch_embed fwd", &y);
    CPU->patch_embed_backward(dx.h, dw.h, db.h, dy.h, x.h, w.h, N, C, H, W, OC, P, &g_ctx);
    GPU->patch_embed_backward(dx.d, dw.d, db.d, dy.d, x.d, w.d, N, C, H, W, OC, P, &g_ctx);
    same(tc, "patch_embed dinp", &dx);
    same(tc, "patch_embed dw", &dw);
    same(tc, "patch_embed db", &db);
    Pair *all[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
    for (Pair *p : all) pair_free(p);
}

TEST(test_conv_transpose_patch_cuda) {
    NEED_GPU();
    const int N = 2, C = 7, H = 5, W = 6, OC = 3, P = 4;
    for (int bias = 0; bias < 2; bias++) {
        Pair x = rnd((int64_t)N * C * H * W, 1.0f, 0.0f), w = rnd((int64_t)C * OC * P * P, 0.3f, 0.0f), b = rnd(OC, 0.5f, 0.0f);
        Pair y = out((int64_t)N * OC * H * P * W * P), dy = rnd(y.n, 1.0f, 0.0f);
        Pair dx = rnd(x.n, 0.1f, 0.0f), dw = rnd(w.n, 0.1f, 0.0f), db = rnd(OC, 0.1f, 0.0f);
        CPU->conv_transpose_patch_forward(y.h, x.h, w.h, bias ? b.h : NULL, N, C, H, W, OC, P, &g_ctx);
        GPU->conv_transpose_patch_forward(y.d, x.d, w.d, bias ? b.d : NULL, N, C, H, W, OC, P, &g_ctx);
        same(tc, bias ? "readout fwd (bias)" : "readout fwd", &y);
        CPU->conv_transpose_patch_backward(dx.h, dw.h, db.h, dy.h, x.h, w.h, N, C, H, W, OC, P, &g_ctx);
        GPU->conv_transpose_patch_backward(dx.d, dw.d, db.d, dy.d, x.d, w.d, N, C, H, W, OC, P, &g_ctx);
        same(tc, "readout dinp", &dx);
        same(tc, "readout dw", &dw);
        same(tc, "readout db", &db);
        Pair *all[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
        for (Pair *p : all) pair_free(p);
    }
}

TEST(test_linear_cuda) {
    NEED_GPU();
    const int64_t M = 8999; /* three chunks of rows for dw, db */
    const int IN = 37, OUT = 19;
    for (int bias = 0; bias < 2; bias++) {
        Pair x = rnd(M * IN, 1.0f, 0.0f), w = rnd((int64_t)OUT * IN, 0.3f, 0.0f), b = rnd(OUT, 0.5f, 0.0f);
        Pair y = out(M * OUT), dy = rnd(y.n, 1.0f, 0.0f);
        Pair dx = rnd(x.n, 0.1f, 0.0f), dw = rnd(w.n, 0.1f, 0.0f), db = rnd(OUT, 0.1f, 0.0f);
        CPU->linear_forward(y.h, x.h, w.h, bias ? b.h : NULL, M, IN, OUT, &g_ctx);
        GPU->linear_forward(y.d, x.d, w.d, bias ? b.d : NULL, M, IN, OUT, &g_ctx);
        same(tc, bias ? "linear fwd (bias)" : "linear fwd", &y);
        CPU->linear_backward(dx.h, dw.h, db.h, dy.h, x.h, w.h, M, IN, OUT, &g_ctx);
        GPU->linear_backward(dx.d, dw.d, db.d, dy.d, x.d, w.d, M, IN, OUT, &g_ctx);
        same(tc, "linear dinp", &dx);
        same(tc, "linear dw", &dw);
        same(tc, "linear db", &db);
        Pair *all[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
        for (Pair *p : all) pair_free(p);
    }
}

// ---- normalization ----
TEST(test_batchnorm_cuda) {
    NEED_GPU();
    const int N = 3, C = 5;
    const int64_t HW = 2900; /* N*HW = 8700: three chunks */
    Pair x = rnd(N * C * HW, 2.0f, 0.7f), wt = rnd(C, 0.5f, 1.0f), bs = rnd(C, 0.5f, 0.0f);
    Pair rm = rnd(C, 0.1f, 0.0f), rv = rnd(C, 0.1f, 1.0f), y = out(x.n), mean = out(C), rstd = out(C);
    CPU->batchnorm_forward_train(y.h, mean.h, rstd.h, rm.h, rv.h, x.h, wt.h, bs.h, N, C, HW, 1e-5f, 0.05f, &g_ctx);
    GPU->batchnorm_forward_train(y.d, mean.d, rstd.d, rm.d, rv.d, x.d, wt.d, bs.d, N, C, HW, 1e-5f, 0.05f, &g_ctx);
    same(tc, "batchnorm train out", &y);
    same(tc, "batchnorm mean", &mean);
    same(tc, "batchnorm rstd", &rstd);
    same(tc, "batchnorm running_mean", &rm);
    same(tc, "batchnorm running_var", &rv);
    Pair dy = rnd(x.n, 1.0f, 0.0f), dx = rnd(x.n, 0.1f, 0.0f), dwt = rnd(C, 0.1f, 0.0f), dbs = rnd(C, 0.1f, 0.0f);
    CPU->batchnorm_backward(dx.h, dwt.h, dbs.h, dy.h, x.h, mean.h, rstd.h, wt.h, N, C, HW, &g_ctx);
    GPU->batchnorm_backward(dx.d, dwt.d, dbs.d, dy.d, x.d, mean.d, rstd.d, wt.d, N, C, HW, &g_ctx);
    same(tc, "batchnorm dinp", &dx);
    same(tc, "batchnorm dweight", &dwt);
    same(tc, "batchnorm dbias", &dbs);
    Pair ye = out(x.n);
    CPU->batchnorm_forward_eval(ye.h, x.h, wt.h, bs.h, rm.h, rv.h, N, C, HW, 1e-5f, &g_ctx);
    GPU->batchnorm_forward_eval(ye.d, x.d, wt.d, bs.d, rm.d, rv.d, N, C, HW, 1e-5f, &g_ctx);
    same(tc, "batchnorm eval out", &ye);
    Pair *all[] = {&x, &wt, &bs, &rm, &rv, &y, &mean, &rstd, &dy, &dx, &dwt, &dbs, &ye};
    for (Pair *p : all) pair_free(p);
}

TEST(test_layernorm_cuda) {
    NEED_GPU();
    const int64_t M = 8231; /* dw, db: three chunks of rows */
    const int D = 45;
    Pair x = rnd(M * D, 1.5f, 0.3f), w = rnd(D, 0.5f, 1.0f), b = rnd(D, 0.5f, 0.0f);
    Pair y = out(x.n), mean = out(M), rstd = out(M);
    CPU->layernorm_forward(y.h, mean.h, rstd.h, x.h, w.h, b.h, M, D, 1e-6f, &g_ctx);
    GPU->layernorm_forward(y.d, mean.d, rstd.d, x.d, w.d, b.d, M, D, 1e-6f, &g_ctx);
    same(tc, "layernorm out", &y);
    same(tc, "layernorm mean", &mean);
    same(tc, "layernorm rstd", &rstd);
    Pair dy = rnd(x.n, 1.0f, 0.0f), dx = rnd(x.n, 0.1f, 0.0f), dw = rnd(D, 0.1f, 0.0f), db = rnd(D, 0.1f, 0.0f);
    CPU->layernorm_backward(dx.h, dw.h, db.h, dy.h, x.h, mean.h, rstd.h, w.h, M, D, &g_ctx);
    GPU->layernorm_backward(dx.d, dw.d, db.d, dy.d, x.d, mean.d, rstd.d, w.d, M, D, &g_ctx);
    same(tc, "layernorm dinp", &dx);
    same(tc, "layernorm dw", &dw);
    same(tc, "layernorm db", &db);
    Pair *all[] = {&x, &w, &b, &y, &mean, &rstd, &dy, &dx, &dw, &db};
    for (Pair *p : all) pair_free(p);
}

TEST(test_layernorm2d_cuda) {
    NEED_GPU();
    const int N = 2, C = 13;
    const int64_t HW = 4500; /* N*HW = 9000: three chunks for dw, db */
    Pair x = rnd(N * C * HW, 1.5f, -0.2f), w = rnd(C, 0.5f, 1.0f), b = rnd(C, 0.5f, 0.0f);
    Pair y = out(x.n), mean = out(N * HW), rstd = out(N * HW);
    CPU->layernorm2d_forward(y.h, mean.h, rstd.h, x.h, w.h, b.h, N, C, HW, 1e-6f, &g_ctx);
    GPU->layernorm2d_forward(y.d, mean.d, rstd.d, x.d, w.d, b.d, N, C, HW, 1e-6f, &g_ctx);
    same(tc, "layernorm2d out", &y);
    same(tc, "layernorm2d mean", &mean);
    same(tc, "layernorm2d rstd", &rstd);
    Pair dy = rnd(x.n, 1.0f, 0.0f), dx = rnd(x.n, 0.1f, 0.0f), dw = rnd(C, 0.1f, 0.0f), db = rnd(C, 0.1f, 0.0f);
    CPU->layernorm2d_backward(dx.h, dw.h, db.h, dy.h, x.h, mean.h, rstd.h, w.h, N, C, HW, &g_ctx);
    GPU->layernorm2d_backward(dx.d, dw.d, db.d, dy.d, x.d, mean.d, rstd.d, w.d, N, C, HW, &g_ctx);
    same(tc, "layernorm2d dinp", &dx);
    same(tc, "layernorm2d dw", &dw);
    same(tc, "layernorm2d db", &db);
    Pair *all[] = {&x, &w, &b, &y, &mean, &rstd, &dy, &dx, &dw, &db};
    for (Pair *p : all) pair_free(p);
}

// ---- elementwise ----
TEST(test_eltwise_cuda) {
    NEED_GPU();
    const int64_t n = 10007;
    Pair x = rnd(n, 3.0f, 0.0f), a = rnd(n, 1.0f, 0.0f), dy = rnd(n, 1.0f, 0.0f);
    x.h[5] = -0.0f, x.h[6] = 0.0f, x.h[7] = NAN; /* signed zeros and a NaN pass through ReLU */
    pair_upload(&x);
    Pair y = out(n), dx = rnd(n, 0.1f, 0.0f);
    CPU->relu_forward(y.h, x.h, n, &g_ctx);
    GPU->relu_forward(y.d, x.d, n, &g_ctx);
    same(tc, "relu fwd", &y);
    CPU->relu_backward(dx.h, dy.h, y.h, n, &g_ctx);
    GPU->relu_backward(dx.d, dy.d, y.d, n, &g_ctx);
    same(tc, "relu dinp", &dx);
    Pair g = out(n), dg = rnd(n, 0.1f, 0.0f);
    CPU->gelu_forward(g.h, x.h, n, &g_ctx);
    GPU->gelu_forward(g.d, x.d, n, &g_ctx);
    same(tc, "gelu fwd", &g);
    CPU->gelu_backward(dg.h, dy.h, x.h, n, &g_ctx);
    GPU->gelu_backward(dg.d, dy.d, x.d, n, &g_ctx);
    same(tc, "gelu dinp", &dg);
    Pair s = out(n);
    CPU->add_forward(s.h, x.h, a.h, n, &g_ctx);
    GPU->add_forward(s.d, x.d, a.d, n, &g_ctx);
    same(tc, "add", &s);
    const int N = 2, C = 3;
    const int64_t HW = 9001; /* dbias: three chunks per row */
    Pair xb = rnd(N * C * HW, 1.0f, 0.0f), bias = rnd(N * C, 1.0f, 0.0f), yb = out(xb.n);
    CPU->add_bias_hw_forward(yb.h, xb.h, bias.h, N, C, HW, &g_ctx);
    GPU->add_bias_hw_forward(yb.d, xb.d, bias.d, N, C, HW, &g_ctx);
    same(tc, "add_bias_hw fwd", &yb);
    Pair dyb = rnd(xb.n, 1.0f, 0.0f), dxb = rnd(xb.n, 0.1f, 0.0f), dbias = rnd(N * C, 0.1f, 0.0f);
    CPU->add_bias_hw_backward(dxb.h, dbias.h, dyb.h, N, C, HW, &g_ctx);
    GPU->add_bias_hw_backward(dxb.d, dbias.d, dyb.d, N, C, HW, &g_ctx);
    same(tc, "add_bias_hw dinp", &dxb);
    same(tc, "add_bias_hw dbias", &dbias);
    Pair *all[] = {&x, &a, &dy, &y, &dx, &g, &dg, &s, &xb, &bias, &yb, &dyb, &dxb, &dbias};
    for (Pair *p : all) pair_free(p);
}

// ---- pooling / resampling ----
TEST(test_pool_cuda) {
    NEED_GPU();
    const int N = 2, C = 3, H = 9, W = 11, Ho = H / 2, Wo = W / 2;
    Pair x = rnd((int64_t)N * C * H * W, 1.0f, 0.0f);
    x.h[3] = NAN, x.h[W + 2] = x.h[2]; /* a NaN and a tie */
    pair_upload(&x);
    Pair y = out((int64_t)N * C * Ho * Wo);
    uint8_t *arg_h = (uint8_t *)cp_malloc((size_t)y.n), *arg_d, *arg_g = (uint8_t *)cp_malloc((size_t)y.n);
    CUDA_CHECK(cudaMalloc(&arg_d, (size_t)y.n));
    CPU->maxpool2x2_forward(y.h, arg_h, x.h, N, C, H, W, &g_ctx);
    GPU->maxpool2x2_forward(y.d, arg_d, x.d, N, C, H, W, &g_ctx);
    same(tc, "maxpool fwd", &y);
    CUDA_CHECK(cudaMemcpy(arg_g, arg_d, (size_t)y.n, cudaMemcpyDeviceToHost));
    CHECKF(memcmp(arg_h, arg_g, (size_t)y.n) == 0, "maxpool arg differs");
    Pair dy = rnd(y.n, 1.0f, 0.0f), dx = rnd(x.n, 0.1f, 0.0f);
    CPU->maxpool2x2_backward(dx.h, dy.h, arg_h, N, C, H, W, &g_ctx);
    GPU->maxpool2x2_backward(dx.d, dy.d, arg_d, N, C, H, W, &g_ctx);
    same(tc, "maxpool dinp", &dx);
    Pair u = out(x.n * 4), du = rnd(x.n * 4, 1.0f, 0.0f), dxu = rnd(x.n, 0.1f, 0.0f);
    CPU->upsample2x_forward(u.h, x.h, N, C, H, W, &g_ctx);
    GPU->upsample2x_forward(u.d, x.d, N, C, H, W, &g_ctx);
    same(tc, "upsample2x fwd", &u);
    CPU->upsample2x_backward(dxu.h, du.h, N, C, H, W, &g_ctx);
    GPU->upsample2x_backward(dxu.d, du.d, N, C, H, W, &g_ctx);
    same(tc, "upsample2x dinp", &dxu);
    /* style: N = 3 samples, the last one all zero (NaN style, counted) */
    const int SN = 3, SC = 37;
    const int64_t SHW = 9000; /* pooled sums: three chunks */
    Pair sx = rnd(SN * SC * SHW, 1.0f, 0.2f);
    for (int64_t i = 2 * SC * SHW; i < sx.n; i++) sx.h[i] = 0.0f;
    pair_upload(&sx);
    Pair so = out(SN * SC), sp = out(SN * SC), sn = out(SN);
    int zc = CPU->style_forward(so.h, sp.h, sn.h, sx.h, SN, SC, SHW, &g_ctx);
    int zg = GPU->style_forward(so.d, sp.d, sn.d, sx.d, SN, SC, SHW, &g_ctx);
    CHECKF(zc == zg && zc == 1, "style zero-norm count cpu %d gpu %d (expected 1)", zc, zg);
    same(tc, "style out", &so);
    same(tc, "style pooled", &sp);
    same(tc, "style norm", &sn);
    Pair sdy = rnd(so.n, 1.0f, 0.0f), sdx = rnd(sx.n, 0.1f, 0.0f);
    CPU->style_backward(sdx.h, sdy.h, so.h, sn.h, SN, SC, SHW, &g_ctx);
    GPU->style_backward(sdx.d, sdy.d, so.d, sn.d, SN, SC, SHW, &g_ctx);
    same(tc, "style dinp", &sdx);
    CUDA_CHECK(cudaFree(arg_d));
    cp_free(arg_h);
    cp_free(arg_g);
    Pair *all[] = {&x, &y, &dy, &dx, &u, &du, &dxu, &sx, &so, &sp, &sn, &sdy, &sdx};
    for (Pair *p : all) pair_free(p);
}

// ---- attention ----
TEST(test_softmax_interp_cuda) {
    NEED_GPU();
    const int64_t M = 37;
    const int L = 53;
    Pair x = rnd(M * L, 4.0f, 0.0f), y = out(x.n), dy = rnd(x.n, 1.0f, 0.0f), dx = rnd(x.n, 0.1f, 0.0f);
    CPU->softmax_forward(y.h, x.h, M, L, &g_ctx);
    GPU->softmax_forward(y.d, x.d, M, L, &g_ctx);
    same(tc, "softmax fwd", &y);
    CPU->softmax_backward(dx.h, dy.h, y.h, M, L, &g_ctx);
    GPU->softmax_backward(dx.d, dy.d, y.d, M, L, &g_ctx);
    same(tc, "softmax dinp", &dx);
    const int lens[4][2] = {{14, 27}, {27, 14}, {9, 9}, {1, 5}};
    for (int k = 0; k < 4; k++) {
        const int Lin = lens[k][0], Lout = lens[k][1], C = 9;
        char name[64];
        Pair t = rnd((int64_t)Lin * C, 1.0f, 0.0f), o = out((int64_t)Lout * C), g = rnd(o.n, 1.0f, 0.0f),
             dt = rnd(t.n, 0.1f, 0.0f);
        CPU->interp1d_forward(o.h, t.h, Lin, Lout, C, &g_ctx);
        GPU->interp1d_forward(o.d, t.d, Lin, Lout, C, &g_ctx);
        snprintf(name, sizeof name, "interp1d %d->%d fwd", Lin, Lout);
        same(tc, name, &o);
        CPU->interp1d_backward(dt.h, g.h, Lin, Lout, C, &g_ctx);
        GPU->interp1d_backward(dt.d, g.d, Lin, Lout, C, &g_ctx);
        snprintf(name, sizeof name, "interp1d %d->%d dinp", Lin, Lout);
        same(tc, name, &dt);
        Pair *all[] = {&t, &o, &g, &dt};
        for (Pair *p : all) pair_free(p);
    }
    Pair *all[] = {&x, &y, &dy, &dx};
    for (Pair *p : all) pair_free(p);
}

static void attention_case(TestCase *tc, int N, int Hq, int Wq, int NH, int HD) {
    const int T = Hq * Wq, D = NH * HD;
    Pair qkv = rnd((int64_t)N * T * 3 * D, 1.0f, 0.0f), rh = rnd((int64_t)(2 * Hq - 1) * HD, 0.5f, 0.0f),
         rw = rnd((int64_t)(2 * Wq - 1) * HD, 0.5f, 0.0f);
    Pair o = out((int64_t)N * T * D), att = out((int64_t)N * NH * T * T);
    CPU->attention_forward(o.h, att.h, qkv.h, rh.h, rw.h, N, Hq, Wq, NH, HD, &g_ctx);
    GPU->attention_forward(o.d, att.d, qkv.d, rh.d, rw.d, N, Hq, Wq, NH, HD, &g_ctx);
    same(tc, "attention out", &o);
    same(tc, "attention att", &att);
    Pair dO = rnd(o.n, 1.0f, 0.0f), dqkv = rnd(qkv.n, 0.1f, 0.0f), drh = rnd(rh.n, 0.1f, 0.0f),
         drw = rnd(rw.n, 0.1f, 0.0f);
    CPU->attention_backward(dqkv.h, drh.h, drw.h, dO.h, att.h, qkv.h, rh.h, rw.h, N, Hq, Wq, NH, HD, &g_ctx);
    GPU->attention_backward(dqkv.d, drh.d, drw.d, dO.d, att.d, qkv.d, rh.d, rw.d, N, Hq, Wq, NH, HD, &g_ctx);
    same(tc, "attention dqkv", &dqkv);
    same(tc, "attention drelh", &drh);
    same(tc, "attention drelw", &drw);
    Pair *all[] = {&qkv, &rh, &rw, &o, &att, &dO, &dqkv, &drh, &drw};
    for (Pair *p : all) pair_free(p);
}

TEST(test_attention_cuda) {
    NEED_GPU();
    attention_case(tc, 2, 3, 5, 2, 9);
    attention_case(tc, 1, 1, 4, 3, 5); /* one grid row */
}

// ---- losses ----
TEST(test_loss_cuda) {
    NEED_GPU();
    const int64_t n = 9001; /* three chunks */
    Pair p = rnd(n, 1.0f, 0.0f), t = rnd(n, 1.0f, 0.0f), u = rnd(n, 0.3f, 0.5f);
    same_scalar(tc, "mse", CPU->mse_forward(p.h, t.h, n, &g_ctx), GPU->mse_forward(p.d, t.d, n, &g_ctx));
    same_scalar(tc, "bce", CPU->bce_logits_forward(p.h, u.h, n, &g_ctx), GPU->bce_logits_forward(p.d, u.d, n, &g_ctx));
    Pair dm = rnd(n, 0.1f, 0.0f), db = rnd(n, 0.1f, 0.0f);
    CPU->mse_backward(dm.h, p.h, t.h, n, 0.75f, &g_ctx);
    GPU->mse_backward(dm.d, p.d, t.d, n, 0.75f, &g_ctx);
    same(tc, "mse dpred", &dm);
    CPU->bce_logits_backward(db.h, p.h, u.h, n, 1.25f, &g_ctx);
    GPU->bce_logits_backward(db.d, p.d, u.d, n, 1.25f, &g_ctx);
    same(tc, "bce dlogit", &db);
    const int N = 2;
    const int64_t HW = 2503; /* flow terms: N*2*HW = 10012, three chunks */
    Pair y = rnd(N * 3 * HW, 1.0f, 0.0f), lbl = rnd(N * 3 * HW, 0.5f, 0.4f), dy = rnd(y.n, 0.1f, 0.0f);
    same_scalar(tc, "cellpose loss", CPU->cellpose_loss(dy.h, y.h, lbl.h, N, HW, &g_ctx),
                GPU->cellpose_loss(dy.d, y.d, lbl.d, N, HW, &g_ctx));
    same(tc, "cellpose loss dy", &dy);
    Pair *all[] = {&p, &t, &u, &dm, &db, &y, &lbl, &dy};
    for (Pair *q : all) pair_free(q);
}

// ---- optimizers ----
TEST(test_optim_cuda) {
    NEED_GPU();
    const int64_t n = 10007;
    Pair p = rnd(n, 1.0f, 0.0f), m = rnd(n, 0.1f, 0.0f), v = rnd(n, 0.01f, 0.02f), g = rnd(n, 1.0f, 0.0f);
    for (int64_t i = 0; i < n; i++) v.h[i] = fabsf(v.h[i]);
    pair_upload(&v);
    for (int64_t step = 1; step <= 3; step++) {
        CPU->adamw_step(p.h, m.h, v.h, g.h, n, 1e-3, 0.9, 0.999, 1e-8, 0.01, step, &g_ctx);
        GPU->adamw_step(p.d, m.d, v.d, g.d, n, 1e-3, 0.9, 0.999, 1e-8, 0.01, step, &g_ctx);
    }
    same(tc, "adamw param (3 steps)", &p);
    same(tc, "adamw m", &m);
    same(tc, "adamw v", &v);
    Pair q = rnd(n, 1.0f, 0.0f), buf = out(n);
    for (int64_t step = 1; step <= 3; step++) {
        CPU->sgd_step(q.h, buf.h, g.h, n, 0.05, 0.9, 1e-5, step, &g_ctx);
        GPU->sgd_step(q.d, buf.d, g.d, n, 0.05, 0.9, 1e-5, step, &g_ctx);
    }
    same(tc, "sgd param (3 steps, momentum)", &q);
    same(tc, "sgd buf", &buf);
    Pair r = rnd(n, 1.0f, 0.0f);
    CPU->sgd_step(r.h, NULL, g.h, n, 0.05, 0.0, 0.0, 2, &g_ctx);
    GPU->sgd_step(r.d, NULL, g.d, n, 0.05, 0.0, 0.0, 2, &g_ctx);
    same(tc, "sgd param (no momentum)", &r);
    Pair *all[] = {&p, &m, &v, &g, &q, &buf, &r};
    for (Pair *x : all) pair_free(x);
}

TEST_MAIN(T(test_conv2d_cuda), T(test_patch_cuda), T(test_conv_transpose_patch_cuda), T(test_linear_cuda),
          T(test_batchnorm_cuda), T(test_layernorm_cuda), T(test_layernorm2d_cuda), T(test_eltwise_cuda),
          T(test_pool_cuda), T(test_softmax_interp_cuda), T(test_attention_cuda), T(test_loss_cuda),
          T(test_optim_cuda))
