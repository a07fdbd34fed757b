/* test_pool.c - pooling / resampling ops (kernels/pool.h, pool_cpu.c):
 * maxpool2x2 (floor mode, saved window position), upsample2x (nearest) and
 * style (Cellpose make_style: global mean over HW, then / L2 norm).
 *  1. vs PyTorch (tests/ref/pool.py): outputs, saved maxpool positions and
 *     input gradients, including odd H/W (dropped row/column), ties (first
 *     maximum wins and takes the gradient), NaN inputs (NaN wins, the last
 *     NaN of a window as PyTorch) and a zero-norm style sample (count 1, NaN
 *     style and gradient for that sample only);
 *  2. finite differences (double loss, CPU only) of every gradient;
 *  3. byte-identical results for 1, 2 and 3 threads;
 *  4. poisoned outputs are all written; backward accumulates exactly
 *     (prefilled G0 + fresh == one call into G0, bit for bit); the dropped
 *     row/column of an odd maxpool input is never touched;
 *  5. the style mean and norm equal an independent transcription of the
 *     core/reduce.h plan bit for bit; hand-made tie and NaN windows.
 * Legend: N batch, C channels, H W input spatial, HW = H*W; tensors NCHW. */
#include <math.h>
#include <string.h>

#include "ctx.h"
#include "harness.h"
#include "kernels/ops.h"
#include "kernels/pool.h"
#include "optest.h"
#include "reduce.h"

/* Tolerances (atol, rtol), one place.
 *  - TOL_EXACT: maxpool copies one input and routes dout unchanged; nearest
 *    upsample copies; its backward adds 4 values in PyTorch's order (PyTorch
 *    accumulates the 2x2 block into a zeroed buffer in the same row-major
 *    order): all bit-equal.
 *  - TOL_STYLE: the mean over HW <= 4757 is a plan sum (PyTorch: one
 *    sequential float sum, the same order while HW <= RCHUNK); the norm is a
 *    sum of C <= 6 squares (we fmaf, PyTorch rounds the squares); out = p/norm
 *    is O(1): a few ulp, 1e-6 relative; at HW = 4757 the two sums differ by
 *    ~u * sqrt(HW) relative -> 1e-5 covers it with margin.
 *  - TOL_DSTYLE: dinp = (dy - y*dot)/norm/HW, a difference of O(1) terms
 *    (cancellation) divided by HW*norm: absolute 1e-7 scale (values ~1e-2 ..
 *    1e-5), relative 1e-5 where no cancellation.
 *  - TOL_FD: central differences of a float op with eps below: one output's
 *    float rounding (~6e-8 * |out|) over 2 eps, plus O(eps^2) curvature for
 *    style (its gradients are ~1/(HW*norm), so atol is scaled down). */
static const double TOL_EXACT[2] = {0.0, 0.0};
static const double TOL_STYLE[2] = {1e-6, 1e-5};
static const double TOL_DSTYLE[2] = {1e-7, 1e-5};
static const double TOL_FD[2] = {1e-4, 1e-3};
static const double TOL_FD_STYLE[2] = {2e-5, 2e-3};
#define FD_EPS 1e-2f
#define FD_EPS_MAXPOOL 1e-3f /* < half the gap between distinct window values */


/* check_close for tensors that may hold NaN: the NaN positions must match
 * exactly, then the other elements obey the tolerance rule. */
static void check_close_nan(TestCase *tc, const char *what, const float *got, const float *ref, int64_t n,
                            const double tol[2]) {
    float *g = alloc_f32(n), *r = alloc_f32(n);
    int64_t mism = 0, nans = 0;
    for (int64_t i = 0; i < n; i++) {
        mism += isnan(got[i]) != isnan(ref[i]);
        nans += isnan(ref[i]) != 0;
        g[i] = isnan(got[i]) ? 0.0f : got[i];
        r[i] = isnan(ref[i]) ? 0.0f : ref[i];
    }
    CHECKF(mism == 0, "%s: %lld NaN positions differ from PyTorch", what, (long long)mism);
    char label[128];
    snprintf(label, sizeof label, "%s (%lld NaN match)", what, (long long)nans);
    check_close(tc, label, g, r, n, tol[0], tol[1]);
    FREE_ALL(g, r);
}

/* got must be fl(g0 + fresh) element by element, bit for bit. */
static void check_accum(TestCase *tc, const char *what, const float *got, const float *g0, const float *fresh,
                        int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float want = g0[i] + fresh[i];
        bad += memcmp(&want, &got[i], sizeof want) != 0;
    }
    CHECKF(bad == 0, "%s: %lld of %lld elements != prefilled + fresh gradient", what, (long long)bad,
           (long long)n);
}

/* ---- 1. vs PyTorch ---- */
typedef struct {
    int N, C, H, W;
    int64_t n; /* N*C*H*W */
} Shape;

static Shape ref_shape(TestCase *tc, const Ref *r, const char *k) {
    char nm[64];
    Shape s;
#define RI(f) (snprintf(nm, sizeof nm, "%s_%s", k, f), (int)ref_int(tc, r, nm))
    s.N = RI("N"), s.C = RI("C"), s.H = RI("H"), s.W = RI("W");
#undef RI
    s.n = (int64_t)s.N * s.C * s.H * s.W;
    return s;
}

static void check_maxpool(TestCase *tc, const Ref *r, const char *k) {
    char nm[64], what[96];
#define NAME(s) (snprintf(nm, sizeof nm, "%s_%s", k, s), nm)
#define WHAT(s) (snprintf(what, sizeof what, "%s %s", k, s), what)
    Shape s = ref_shape(tc, r, k);
    int64_t no = (int64_t)s.N * s.C * (s.H / 2) * (s.W / 2);
    float *x = ref_f32(tc, r, NAME("x"), s.n), *out_r = ref_f32(tc, r, NAME("out"), no);
    float *arg_r = ref_f32(tc, r, NAME("arg"), no), *dout = ref_f32(tc, r, NAME("dout"), no);
    float *dx_r = ref_f32(tc, r, NAME("dx"), s.n);
    if (tc->failures || no <= 0) return; /* missing reference: reported already */
    CpCtx ctx = ctx_with(2);
    float *out = alloc_f32(no), *argf = alloc_f32(no), *dx = alloc_f32(s.n);
    uint8_t *arg = cp_malloc((size_t)no + 1);
    poison(out, no), memset(arg, 0xff, (size_t)no);
    maxpool2x2_forward_cpu(out, arg, x, s.N, s.C, s.H, s.W, &ctx);
    check_written(tc, WHAT("out"), out, no);
    for (int64_t i = 0; i < no; i++) argf[i] = arg[i]; /* 0xff (unwritten) fails below */
    check_close_nan(tc, WHAT("out"), out, out_r, no, TOL_EXACT);
    check_close(tc, WHAT("arg (window position)"), argf, arg_r, no, TOL_EXACT[0], TOL_EXACT[1]);
    zero(dx, s.n);
    maxpool2x2_backward_cpu(dx, dout, arg, s.N, s.C, s.H, s.W, &ctx);
    check_close(tc, WHAT("dinp"), dx, dx_r, s.n, TOL_EXACT[0], TOL_EXACT[1]);
#undef NAME
#undef WHAT
    FREE_ALL(x, out_r, arg_r, dout, dx_r, out, argf, dx);
    cp_free(arg);
}

static void check_upsample(TestCase *tc, const Ref *r, const char *k) {
    char nm[64], what[96];
#define NAME(s) (snprintf(nm, sizeof nm, "%s_%s", k, s), nm)
#define WHAT(s) (snprintf(what, sizeof what, "%s %s", k, s), what)
    Shape s = ref_shape(tc, r, k);
    float *x = ref_f32(tc, r, NAME("x"), s.n), *out_r = ref_f32(tc, r, NAME("out"), 4 * s.n);
    float *dout = ref_f32(tc, r, NAME("dout"), 4 * s.n), *dx_r = ref_f32(tc, r, NAME("dx"), s.n);
    if (tc->failures) return;
    CpCtx ctx = ctx_with(2);
    float *out = alloc_f32(4 * s.n), *dx = alloc_f32(s.n);
    poison(out, 4 * s.n);
    upsample2x_forward_cpu(out, x, s.N, s.C, s.H, s.W, &ctx);
    check_written(tc, WHAT("out"), out, 4 * s.n);
    check_close(tc, WHAT("out"), out, out_r, 4 * s.n, TOL_EXACT[0], TOL_EXACT[1]);
    zero(dx, s.n);
    upsample2x_backward_cpu(dx, dout, s.N, s.C, s.H, s.W, &ctx);
    check_close(tc, WHAT("dinp"), dx, dx_r, s.n, TOL_EXACT[0], TOL_EXACT[1]);
#undef NAME
#undef WHAT
    FREE_ALL(x, out_r, dout, dx_r, out, dx);
}

static void check_style(TestCase *tc, const Ref *r, const char *k, int want_zero) {
    char nm[64], what[96];
#define NAME(s) (snprintf(nm, sizeof nm, "%s_%s", k, s), nm)
#define WHAT(s) (snprintf(what, sizeof what, "%s %s", k, s), what)
    Shape s = ref_shape(tc, r, k);
    int64_t nc = (int64_t)s.N * s.C, HW = (int64_t)s.H * s.W;
    float *x = ref_f32(tc, r, NAME("x"), s.n), *out_r = ref_f32(tc, r, NAME("out"), nc);
    float *dout = ref_f32(tc, r, NAME("dout"), nc), *dx_r = ref_f32(tc, r, NAME("dx"), s.n);
    if (tc->failures) return;
    CpCtx ctx = ctx_with(2);
    float *out = alloc_f32(nc), *pooled = alloc_f32(nc), *norm = alloc_f32(s.N), *dx = alloc_f32(s.n);
    poison(out, nc), poison(pooled, nc), poison(norm, s.N);
    int nzero = style_forward_cpu(out, pooled, norm, x, s.N, s.C, HW, &ctx);
    CHECKF(nzero == want_zero, "%s: style_forward returned %d zero-norm samples, want %d", k, nzero, want_zero);
    check_written(tc, WHAT("out"), out, nc), check_written(tc, WHAT("pooled"), pooled, nc);
    check_written(tc, WHAT("norm"), norm, s.N);
    check_close_nan(tc, WHAT("out"), out, out_r, nc, TOL_STYLE);
    zero(dx, s.n);
    style_backward_cpu(dx, dout, out, norm, s.N, s.C, HW, &ctx);
    check_close_nan(tc, WHAT("dinp"), dx, dx_r, s.n, TOL_DSTYLE);
#undef NAME
#undef WHAT
    FREE_ALL(x, out_r, dout, dx_r, out, pooled, norm, dx);
}

TEST(test_pool_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "pool")) return;
    check_maxpool(tc, &r, "mp_a");
    check_maxpool(tc, &r, "mp_b");
    check_maxpool(tc, &r, "mp_tie");
    check_maxpool(tc, &r, "mp_nan");
    check_upsample(tc, &r, "up_a");
    check_upsample(tc, &r, "up_b");
    check_style(tc, &r, "st_a", 0);
    check_style(tc, &r, "st_b", 0);
    check_style(tc, &r, "st_big", 0);
    check_style(tc, &r, "st_zero", 1);
    ref_free(&r);
}

/* ---- 2. finite differences: loss = sum(out * probe) in double ---- */
typedef enum { FD_MAXPOOL, FD_UPSAMPLE, FD_STYLE } FdOp;
typedef struct {
    FdOp op;
    int N, C, H, W;
    float *x, *probe, *out, *pooled, *norm;
    uint8_t *arg;
    int64_t nout;
} FdState;

static double fd_loss(void *p) {
    FdState *s = p;
    CpCtx ctx = ctx_with(1);
    if (s->op == FD_MAXPOOL) maxpool2x2_forward_cpu(s->out, s->arg, s->x, s->N, s->C, s->H, s->W, &ctx);
    if (s->op == FD_UPSAMPLE) upsample2x_forward_cpu(s->out, s->x, s->N, s->C, s->H, s->W, &ctx);
    if (s->op == FD_STYLE)
        style_forward_cpu(s->out, s->pooled, s->norm, s->x, s->N, s->C, (int64_t)s->H * s->W, &ctx);
    double l = 0;
    for (int64_t i = 0; i < s->nout; i++) l += (double)s->out[i] * s->probe[i];
    return l;
}

/* Distinct values k * 4e-3 - 1 in a Philox-shuffled order: every window's
 * entries are >= 4e-3 apart, so +-FD_EPS_MAXPOOL never changes the argmax. */
static void fill_distinct(float *x, int64_t n, uint32_t stream) {
    float *u = alloc_f32(n);
    fill_uniform(u, n, stream, 0.0f, 1.0f);
    for (int64_t i = 0; i < n; i++) x[i] = (float)i * 4e-3f - 1.0f;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = (int64_t)(u[i] * (float)(i + 1));
        if (j > i) j = i;
        float t = x[i];
        x[i] = x[j], x[j] = t;
    }
    cp_free(u);
}

static void fd_case(TestCase *tc, FdOp op, const char *what, int N, int C, int H, int W) {
    CpCtx ctx = ctx_with(1);
    int64_t n = (int64_t)N * C * H * W, HW = (int64_t)H * W;
    int64_t nout = op == FD_MAXPOOL ? (int64_t)N * C * (H / 2) * (W / 2) : op == FD_UPSAMPLE ? 4 * n : (int64_t)N * C;
    FdState s = {op, N, C, H, W, alloc_f32(n), alloc_f32(nout), alloc_f32(nout), alloc_f32(N * C), alloc_f32(N),
                 cp_malloc((size_t)nout + 1), nout};
    float *g = alloc_f32(n);
    if (op == FD_MAXPOOL) fill_distinct(s.x, n, 41);
    else fill_uniform(s.x, n, 42, -0.5f, 1.0f);
    fill_uniform(s.probe, nout, 43, -1.0f, 1.0f);
    fd_loss(&s); /* forward: saved arg / out / norm for the backward */
    zero(g, n);
    if (op == FD_MAXPOOL) maxpool2x2_backward_cpu(g, s.probe, s.arg, N, C, H, W, &ctx);
    if (op == FD_UPSAMPLE) upsample2x_backward_cpu(g, s.probe, N, C, H, W, &ctx);
    if (op == FD_STYLE) style_backward_cpu(g, s.probe, s.out, s.norm, N, C, HW, &ctx);
    const double *tol = op == FD_STYLE ? TOL_FD_STYLE : TOL_FD;
    check_fd(tc, what, g, s.x, n, fd_loss, &s, op == FD_MAXPOOL ? FD_EPS_MAXPOOL : FD_EPS, 300, tol[0], tol[1]);
    FREE_ALL(s.x, s.probe, s.out, s.pooled, s.norm, g);
    cp_free(s.arg);
}

TEST(test_pool_fd) {
    fd_case(tc, FD_MAXPOOL, "maxpool dinp 3x5x9x11", 3, 5, 9, 11);
    fd_case(tc, FD_UPSAMPLE, "upsample dinp 3x5x7x9", 3, 5, 7, 9);
    fd_case(tc, FD_STYLE, "style dinp 3x5x7x9", 3, 5, 7, 9);
    fd_case(tc, FD_STYLE, "style dinp 1x6x5x3", 1, 6, 5, 3);
}

/* ---- 3. threads 1, 2, 3: identical bytes ---- */
#define NRES 7
TEST(test_pool_threads) {
    /* 37 channels (4 full + 1 partial row group of 8, 3 style tasks of 16
     * channels), odd H and W, HW = 97*93 = 9021 (3 chunks for the style mean) */
    const int N = 2, C = 37, H = 97, W = 93;
    const int64_t n = (int64_t)N * C * H * W, no = (int64_t)N * C * (H / 2) * (W / 2), nc = (int64_t)N * C;
    const int64_t len[NRES] = {no, n, 4 * n, n, nc, nc, n};
    static const char *names[NRES] = {"maxpool out", "maxpool dinp", "upsample out", "upsample dinp",
                                      "style out", "style pooled", "style dinp"};
    float *x = alloc_f32(n), *g0 = alloc_f32(n), *dout = alloc_f32(4 * n), *res[3][NRES], *norm[3];
    uint8_t *arg[3];
    fill_uniform(x, n, 51, -0.5f, 1.0f), fill_uniform(g0, n, 52, -1.0f, 1.0f);
    fill_uniform(dout, 4 * n, 53, -1.0f, 1.0f);
    for (int t = 0; t < 3; t++) {
        CpCtx ctx = ctx_with(t + 1);
        for (int k = 0; k < NRES; k++) res[t][k] = alloc_f32(len[k]);
        norm[t] = alloc_f32(N), arg[t] = cp_malloc((size_t)no);
        copy(res[t][1], g0, n), copy(res[t][3], g0, n), copy(res[t][6], g0, n); /* prefilled grads */
        maxpool2x2_forward_cpu(res[t][0], arg[t], x, N, C, H, W, &ctx);
        maxpool2x2_backward_cpu(res[t][1], dout, arg[t], N, C, H, W, &ctx);
        upsample2x_forward_cpu(res[t][2], x, N, C, H, W, &ctx);
        upsample2x_backward_cpu(res[t][3], dout, N, C, H, W, &ctx);
        style_forward_cpu(res[t][4], res[t][5], norm[t], x, N, C, (int64_t)H * W, &ctx);
        style_backward_cpu(res[t][6], dout, res[t][4], norm[t], N, C, (int64_t)H * W, &ctx);
    }
    for (int t = 1; t < 3; t++) {
        for (int k = 0; k < NRES; k++)
            check_same_bytes(tc, names[k], res[0][k], res[t][k], sizeof(float) * (size_t)len[k]);
        check_same_bytes(tc, "maxpool arg", arg[0], arg[t], (size_t)no);
        check_same_bytes(tc, "style norm", norm[0], norm[t], sizeof(float) * (size_t)N);
    }
    for (int t = 0; t < 3; t++) {
        free_all(res[t], NRES);
        cp_free(norm[t]), cp_free(arg[t]);
    }
    FREE_ALL(x, g0, dout);
}

/* ---- 4. accumulation; the dropped maxpool row/column stays untouched ---- */
TEST(test_pool_accumulate) {
    CpCtx ctx = ctx_with(2);
    const int N = 3, C = 5, H = 9, W = 11;
    const int64_t n = (int64_t)N * C * H * W, HW = (int64_t)H * W, no = (int64_t)N * C * (H / 2) * (W / 2);
    float *x = alloc_f32(n), *dout = alloc_f32(4 * n), *g0 = alloc_f32(n), *fresh = alloc_f32(n), *got = alloc_f32(n);
    float *out = alloc_f32(4 * n), *pooled = alloc_f32(N * C), *norm = alloc_f32(N);
    uint8_t *arg = cp_malloc((size_t)no);
    fill_uniform(x, n, 61, -0.5f, 1.0f), fill_uniform(dout, 4 * n, 62, -1.0f, 1.0f);
    fill_uniform(g0, n, 63, -1.0f, 1.0f);
    maxpool2x2_forward_cpu(out, arg, x, N, C, H, W, &ctx);
    zero(fresh, n), copy(got, g0, n);
    maxpool2x2_backward_cpu(fresh, dout, arg, N, C, H, W, &ctx);
    maxpool2x2_backward_cpu(got, dout, arg, N, C, H, W, &ctx);
    check_accum(tc, "maxpool dinp", got, g0, fresh, n);
    poison(got, n); /* dropped last row (y = 8) and column (x = 10): never written */
    maxpool2x2_backward_cpu(got, dout, arg, N, C, H, W, &ctx);
    int64_t touched = 0, kept = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t y = (i / W) % H, xx = i % W, poisoned = count_poison(&got[i], 1);
        if (y == H - 1 || xx == W - 1) touched += !poisoned;
        else kept += poisoned && fresh[i] != 0.0f; /* a routed gradient must land */
    }
    CHECKF(touched == 0 && kept == 0, "maxpool: %lld dropped elements written, %lld routed gradients lost",
           (long long)touched, (long long)kept);
    zero(fresh, n), copy(got, g0, n);
    upsample2x_backward_cpu(fresh, dout, N, C, H, W, &ctx);
    upsample2x_backward_cpu(got, dout, N, C, H, W, &ctx);
    check_accum(tc, "upsample dinp", got, g0, fresh, n);
    style_forward_cpu(out, pooled, norm, x, N, C, HW, &ctx);
    zero(fresh, n), copy(got, g0, n);
    style_backward_cpu(fresh, dout, out, norm, N, C, HW, &ctx);
    style_backward_cpu(got, dout, out, norm, N, C, HW, &ctx);
    check_accum(tc, "style dinp", got, g0, fresh, n);
    maxpool2x2_backward_cpu(NULL, dout, arg, N, C, H, W, &ctx); /* NULL: not needed, no crash */
    upsample2x_backward_cpu(NULL, dout, N, C, H, W, &ctx);
    style_backward_cpu(NULL, dout, out, norm, N, C, HW, &ctx);
    FREE_ALL(x, dout, g0, fresh, got, out, pooled, norm);
    cp_free(arg);
}

/* ---- 5. the plan, hand-made windows ---- */
TEST(test_style_is_the_plan) {
    /* rows 0..10 (a group of 8 and a group of 3), HW = 2 chunks + 5 */
    CpCtx ctx = ctx_with(3);
    const int N = 1, C = 11;
    const int64_t HW = 2 * RCHUNK + 5, n = (int64_t)N * C * HW;
    float *x = alloc_f32(n), *out = alloc_f32(C), *pooled = alloc_f32(C), *norm = alloc_f32(N);
    fill_uniform(x, n, 71, -0.5f, 1.0f);
    style_forward_cpu(out, pooled, norm, x, N, C, HW, &ctx);
    int bad = 0;
    float p[16], sq = 0.0f;
    for (int c = 0; c < C; c++) {
        float part[4], tot; /* rplan_chunk_sum per chunk, rplan_combine, then / HW */
        for (int64_t k = 0; k < rplan_nchunks(HW); k++)
            part[k] = rplan_chunk_sum(x + c * HW, rplan_chunk_lo(k), rplan_chunk_hi(k, HW));
        tot = rplan_combine(part, rplan_nchunks(HW));
        p[c] = tot / (float)HW;
        bad += memcmp(&p[c], &pooled[c], sizeof p[c]) != 0;
    }
    for (int c = 0; c < C; c++) sq = fmaf(p[c], p[c], sq); /* C < RCHUNK: one chunk, sequential fmaf */
    float nrm = sqrtf(0.0f + sq);
    CHECKF(bad == 0, "%d of %d pooled values differ from the core/reduce.h plan", bad, C);
    CHECKF(memcmp(&nrm, norm, sizeof nrm) == 0, "norm %.9g != plan %.9g", norm[0], nrm);
    FREE_ALL(x, out, pooled, norm);
}

TEST(test_maxpool_windows) {
    CpCtx ctx = ctx_with(1);
    const float nan = NAN, inf = INFINITY;
    /* one 2x2 window per case, scan order (0,0) (0,1) (1,0) (1,1) */
    const float win[][4] = {{1, 1, 1, 1}, {1, 3, 3, 2}, {0, 0, 0, 5}, {-inf, -inf, -inf, -inf},
                            {nan, 2, 3, 4}, {1, nan, 3, nan}, {-0.0f, 0.0f, 0.0f, -0.0f}, {2, 1, 2, 2}};
    const int want[] = {0, 1, 3, 0, 0, 3, 0, 0};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        float x[4] = {win[k][0], win[k][1], win[k][2], win[k][3]}, out, dx[4] = {-0.0f, -0.0f, -0.0f, -0.0f};
        float d = 1.5f;
        uint8_t a = 0xff;
        maxpool2x2_forward_cpu(&out, &a, x, 1, 1, 2, 2, &ctx);
        maxpool2x2_backward_cpu(dx, &d, &a, 1, 1, 2, 2, &ctx);
        CHECKF(a == want[k], "window %zu: arg %d, want %d", k, a, want[k]);
        CHECKF(dx[want[k]] == 1.5f && dx[0] + dx[1] + dx[2] + dx[3] == 1.5f, "window %zu: gradient misrouted", k);
        for (int j = 0; j < 4; j++) /* the others are untouched: -0.0 stays -0.0 (no += 0) */
            CHECKF(j == want[k] || signbit(dx[j]), "window %zu: position %d was written", k, j);
        CHECKF(memcmp(&out, &x[want[k]], 4) == 0, "window %zu: out is not the winning input, bit for bit", k);
    }
    /* H or W = 1: nothing to pool, nothing written or read out of bounds */
    float x1[3] = {1, 2, 3}, o1 = 7.0f;
    uint8_t a1 = 9;
    maxpool2x2_forward_cpu(&o1, &a1, x1, 1, 1, 1, 3, &ctx);
    CHECK(o1 == 7.0f && a1 == 9);
}

TEST(test_upsample_order) {
    /* ((1 + 2^-24) + 2^-24) + 0 = 1 (each add ties to even), while any order
     * that adds the two small values first gives 1 + 2^-23 */
    CpCtx ctx = ctx_with(1);
    float dout[4] = {1.0f, 0x1p-24f, 0x1p-24f, 0.0f}, dx = 0.0f;
    upsample2x_backward_cpu(&dx, dout, 1, 1, 1, 1, &ctx);
    CHECKF(dx == 1.0f, "upsample backward: %.9g, want 1 (order 00, 01, 10, 11 of ops.h)", dx);
}

TEST(test_style_zero_norm_bits) {
    /* A zero sample gives the canonical quiet NaN 0x7fc00000 (not x86's 0/0
     * = 0xffc00000 nor CUDA's 0x7fffffff) in out and in its gradient; the
     * other sample is unaffected. */
    CpCtx ctx = ctx_with(2);
    const int N = 2, C = 3;
    const int64_t HW = 5, n = (int64_t)N * C * HW;
    float x[30] = {0}, out[6], pooled[6], norm[2], dout[6] = {1, 2, 3, 4, 5, 6}, dx[30] = {0};
    for (int64_t i = C * HW; i < n; i++) x[i] = (float)(i % 7) - 2.0f;
    int nz = style_forward_cpu(out, pooled, norm, x, N, C, HW, &ctx);
    style_backward_cpu(dx, dout, out, norm, N, C, HW, &ctx);
    CHECKF(nz == 1 && norm[0] == 0.0f && norm[1] > 0.0f, "zero-norm count %d, norms %g %g", nz, norm[0], norm[1]);
    int64_t bad = 0;
    for (int c = 0; c < C; c++) bad += cp_dm_f2u(out[c]) != CP_DM_NAN_BITS || isnan(out[C + c]);
    for (int64_t i = 0; i < n; i++) bad += i < C * HW ? cp_dm_f2u(dx[i]) != CP_DM_NAN_BITS : isnan(dx[i]);
    CHECKF(bad == 0, "%lld style values are not the canonical NaN (sample 0) or are NaN (sample 1)", (long long)bad);
}

TEST_MAIN(T(test_pool_vs_torch), T(test_pool_fd), T(test_pool_threads), T(test_pool_accumulate),
          T(test_style_is_the_plan), T(test_maxpool_windows), T(test_upsample_order), T(test_style_zero_norm_bits))
