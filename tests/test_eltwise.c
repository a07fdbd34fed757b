/* test_eltwise.c - elementwise ops (kernels/eltwise.h, eltwise_cpu.c):
 * relu, gelu, add, add_bias_hw.
 *  1. vs PyTorch (tests/ref/eltwise.py): every output and every gradient;
 *  2. finite differences (double loss, CPU only) of every gradient;
 *  3. byte-identical results for 1, 2 and 3 threads, on sizes that span
 *     several OpenMP blocks and several RCHUNK chunks;
 *  4. poisoned outputs are all written; backward accumulates exactly
 *     (prefilled G0 + fresh gradient == one call into G0, bit for bit) and a
 *     NULL gradient pointer is "not needed";
 *  5. dbias equals an independent transcription of the core/reduce.h plan bit
 *     for bit (the order the CUDA kernel must reproduce); special values.
 * Legend: N batch, C channels, HW = H*W; tensors NCHW, flat n elements. */
#include <math.h>
#include <string.h>

#include "ctx.h"
#include "harness.h"
#include "kernels/eltwise.h"
#include "kernels/ops.h"
#include "optest.h"
#include "reduce.h"

/* Tolerances (atol, rtol), one place.
 *  - TOL_EXACT: relu, add, the add_bias_hw forward and dinp involve one IEEE
 *    operation (or none) per element, the same one PyTorch does: bit-equal.
 *  - TOL_GELU: one element, no reduction. PyTorch's vectorised erf/exp
 *    (Sleef, <= 1 ulp) and our correctly rounded ones differ by <= 1 ulp;
 *    in 1 + erf(x/sqrt2) near x = -5 that is an absolute 6e-8 of a value
 *    near 0, times |x|/2 <= 6 for |x| <= 12: absolute 4e-7 at worst; relative
 *    elsewhere a few ulp (1e-6 = 8 ulp).
 *  - TOL_DGELU: as TOL_GELU plus exp(-x^2/2) whose argument x*x is rounded:
 *    relative error of the pdf up to x^2/2 * 6e-8 (4e-6 at |x| = 12, where
 *    the pdf is ~1e-31 and disappears under atol).
 *  - TOL_DBIAS: dbias is a sum of HW <= 4757 values in [-1, 1): PyTorch sums
 *    pairwise/vectorised, we by the chunk plan; a sequential float sum of n
 *    such terms carries ~u * n / 2 (random walk of partial sums of size
 *    ~sqrt(n)) = 1.4e-4 at n = 4757, and |sum| ~ 40 gives the rtol scale.
 *  - TOL_FD: central differences of a float op (eps below): float rounding of
 *    one output (~6e-8 * |out| <= 2e-7) over 2 eps, plus O(eps^2 f''') for
 *    gelu. */
static const double TOL_EXACT[2] = {0.0, 0.0};
static const double TOL_GELU[2] = {5e-7, 1e-6};
static const double TOL_DGELU[2] = {5e-7, 1e-5};
static const double TOL_DBIAS[2] = {5e-4, 1e-5};
static const double TOL_FD[2] = {1e-4, 1e-3};
#define FD_EPS 1e-2f


/* ---- 1. vs PyTorch ---- */
typedef enum { OP_RELU, OP_GELU } UnaryOp;

static void unary_fwd(UnaryOp op, float *out, const float *x, int64_t n, const CpCtx *ctx) {
    if (op == OP_RELU) relu_forward_cpu(out, x, n, ctx);
    else gelu_forward_cpu(out, x, n, ctx);
}
/* relu's backward takes the forward OUTPUT, gelu's the INPUT (ops.h). */
static void unary_bwd(UnaryOp op, float *dx, const float *dout, const float *x, const float *out, int64_t n,
                      const CpCtx *ctx) {
    if (op == OP_RELU) relu_backward_cpu(dx, dout, out, n, ctx);
    else gelu_backward_cpu(dx, dout, x, n, ctx);
}

static void check_unary(TestCase *tc, const Ref *r, UnaryOp op, const char *k) {
    char nm[64], what[96];
#define NAME(s) (snprintf(nm, sizeof nm, "%s_%s", k, s), nm)
#define WHAT(s) (snprintf(what, sizeof what, "%s %s", k, s), what)
    int64_t n = ref_int(tc, r, NAME("n"));
    float *x = ref_f32(tc, r, NAME("x"), n), *out_r = ref_f32(tc, r, NAME("out"), n);
    float *dout = ref_f32(tc, r, NAME("dout"), n), *dx_r = ref_f32(tc, r, NAME("dx"), n);
    if (tc->failures) return; /* missing reference: reported already */
    const double *tf = op == OP_RELU ? TOL_EXACT : TOL_GELU, *tb = op == OP_RELU ? TOL_EXACT : TOL_DGELU;
    CpCtx ctx = ctx_with(2);
    float *out = alloc_f32(n), *dx = alloc_f32(n);
    poison(out, n);
    unary_fwd(op, out, x, n, &ctx);
    check_written(tc, WHAT("out"), out, n);
    check_close(tc, WHAT("out"), out, out_r, n, tf[0], tf[1]);
    zero(dx, n);
    unary_bwd(op, dx, dout, x, out, n, &ctx);
    check_close(tc, WHAT("dinp"), dx, dx_r, n, tb[0], tb[1]);
#undef NAME
#undef WHAT
    FREE_ALL(x, out_r, dout, dx_r, out, dx);
}

static void check_add(TestCase *tc, const Ref *r) {
    int64_t n = ref_int(tc, r, "add_n");
    float *a = ref_f32(tc, r, "add_a", n), *b = ref_f32(tc, r, "add_b", n), *out_r = ref_f32(tc, r, "add_out", n);
    if (tc->failures) return;
    CpCtx ctx = ctx_with(2);
    float *out = alloc_f32(n), *ab = alloc_f32(n);
    poison(out, n);
    add_forward_cpu(out, a, b, n, &ctx);
    check_written(tc, "add out", out, n);
    check_close(tc, "add out", out, out_r, n, TOL_EXACT[0], TOL_EXACT[1]);
    copy(ab, a, n);
    add_forward_cpu(ab, ab, b, n, &ctx); /* out aliases a */
    check_close(tc, "add out (aliasing a)", ab, out_r, n, TOL_EXACT[0], TOL_EXACT[1]);
    copy(ab, b, n);
    add_forward_cpu(ab, a, ab, n, &ctx); /* out aliases b */
    check_close(tc, "add out (aliasing b)", ab, out_r, n, TOL_EXACT[0], TOL_EXACT[1]);
    FREE_ALL(a, b, out_r, out, ab);
}

static void check_abh(TestCase *tc, const Ref *r, const char *k) {
    char nm[64], what[96];
#define NAME(s) (snprintf(nm, sizeof nm, "%s_%s", k, s), nm)
#define WHAT(s) (snprintf(what, sizeof what, "%s %s", k, s), what)
    int N = (int)ref_int(tc, r, NAME("N")), C = (int)ref_int(tc, r, NAME("C"));
    int64_t HW = ref_int(tc, r, NAME("H")) * ref_int(tc, r, NAME("W")), n = (int64_t)N * C * HW;
    float *inp = ref_f32(tc, r, NAME("inp"), n), *bias = ref_f32(tc, r, NAME("bias"), N * C);
    float *out_r = ref_f32(tc, r, NAME("out"), n), *dout = ref_f32(tc, r, NAME("dout"), n);
    float *dinp_r = ref_f32(tc, r, NAME("dinp"), n), *dbias_r = ref_f32(tc, r, NAME("dbias"), N * C);
    if (tc->failures) return;
    CpCtx ctx = ctx_with(2);
    float *out = alloc_f32(n), *dinp = alloc_f32(n), *dbias = alloc_f32(N * C);
    poison(out, n);
    add_bias_hw_forward_cpu(out, inp, bias, N, C, HW, &ctx);
    check_written(tc, WHAT("out"), out, n);
    check_close(tc, WHAT("out"), out, out_r, n, TOL_EXACT[0], TOL_EXACT[1]);
    zero(dinp, n), zero(dbias, N * C);
    add_bias_hw_backward_cpu(dinp, dbias, dout, N, C, HW, &ctx);
    check_close(tc, WHAT("dinp"), dinp, dinp_r, n, TOL_EXACT[0], TOL_EXACT[1]);
    check_close(tc, WHAT("dbias"), dbias, dbias_r, N * C, TOL_DBIAS[0], TOL_DBIAS[1]);
#undef NAME
#undef WHAT
    FREE_ALL(inp, bias, out_r, dout, dinp_r, dbias_r, out, dinp, dbias);
}

TEST(test_eltwise_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "eltwise")) return;
    check_unary(tc, &r, OP_RELU, "relu_n1");
    check_unary(tc, &r, OP_RELU, "relu_n3");
    check_unary(tc, &r, OP_GELU, "gelu_n1");
    check_unary(tc, &r, OP_GELU, "gelu_n3");
    check_unary(tc, &r, OP_GELU, "gelu_sp");
    check_add(tc, &r);
    check_abh(tc, &r, "abh_a");
    check_abh(tc, &r, "abh_b");
    check_abh(tc, &r, "abh_big");
    ref_free(&r);
}

/* ---- 2. finite differences: loss = sum(out * probe) in double ---- */
typedef struct {
    UnaryOp op; /* unary ops */
    int N, C;
    int64_t HW, n;
    float *x, *bias, *probe, *out;
} FdState;

static double loss_sum(const float *out, const float *probe, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)out[i] * probe[i];
    return s;
}
static double loss_unary(void *p) {
    FdState *s = p;
    CpCtx ctx = ctx_with(1);
    unary_fwd(s->op, s->out, s->x, s->n, &ctx);
    return loss_sum(s->out, s->probe, s->n);
}
static double loss_abh(void *p) {
    FdState *s = p;
    CpCtx ctx = ctx_with(1);
    add_bias_hw_forward_cpu(s->out, s->x, s->bias, s->N, s->C, s->HW, &ctx);
    return loss_sum(s->out, s->probe, s->n);
}

TEST(test_eltwise_fd) {
    CpCtx ctx = ctx_with(1);
    int64_t n = 3 * 5 * 7 * 9;
    FdState s = {OP_RELU, 3, 5, 63, n, alloc_f32(n), alloc_f32(15), alloc_f32(n), alloc_f32(n)};
    float *g = alloc_f32(n), *gb = alloc_f32(15);
    fill_uniform(s.x, n, 1, -3.0f, 3.0f);
    fill_uniform(s.probe, n, 2, -1.0f, 1.0f);
    fill_uniform(s.bias, 15, 3, -1.0f, 1.0f);
    for (int64_t i = 0; i < n; i++) /* keep relu's kink out of [-eps, eps] */
        if (fabsf(s.x[i]) < 4 * FD_EPS) s.x[i] = s.x[i] < 0 ? -0.5f : 0.5f;
    for (int op = OP_RELU; op <= OP_GELU; op++) {
        s.op = (UnaryOp)op;
        unary_fwd(s.op, s.out, s.x, n, &ctx);
        zero(g, n);
        unary_bwd(s.op, g, s.probe, s.x, s.out, n, &ctx);
        check_fd(tc, op == OP_RELU ? "relu dinp" : "gelu dinp", g, s.x, n, loss_unary, &s, FD_EPS, 200, TOL_FD[0],
                 TOL_FD[1]);
    }
    zero(g, n), zero(gb, 15);
    add_bias_hw_backward_cpu(g, gb, s.probe, s.N, s.C, s.HW, &ctx);
    check_fd(tc, "add_bias_hw dinp", g, s.x, n, loss_abh, &s, FD_EPS, 200, TOL_FD[0], TOL_FD[1]);
    check_fd(tc, "add_bias_hw dbias", gb, s.bias, 15, loss_abh, &s, FD_EPS, 15, TOL_FD[0], TOL_FD[1]);
    FREE_ALL(s.x, s.bias, s.probe, s.out, g, gb);
}

/* ---- 3. threads 1, 2, 3: identical bytes ---- */
TEST(test_eltwise_threads) {
    /* > 3 OpenMP blocks of 16384; abh: 37 rows (4 full + 1 partial row group
     * of 8) of HW = 9001 (3 chunks) */
    const int N = 1, C = 37;
    const int64_t HW = 9001, n = (int64_t)N * C * HW;
    float *x = alloc_f32(n), *y = alloc_f32(n), *dout = alloc_f32(n), *bias = alloc_f32(N * C);
    fill_uniform(x, n, 11, -4.0f, 4.0f), fill_uniform(y, n, 12, -1.0f, 1.0f);
    fill_uniform(dout, n, 13, -1.0f, 1.0f), fill_uniform(bias, N * C, 14, -1.0f, 1.0f);
    float *res[3][8];
    for (int t = 0; t < 3; t++) {
        CpCtx ctx = ctx_with(t + 1);
        for (int k = 0; k < 8; k++) res[t][k] = alloc_f32(k == 6 ? N * C : n);
        for (int k = 3; k < 7; k++) copy(res[t][k], k == 6 ? bias : y, k == 6 ? N * C : n); /* prefilled grads */
        add_forward_cpu(res[t][7], x, y, n, &ctx);
        relu_forward_cpu(res[t][0], x, n, &ctx);
        gelu_forward_cpu(res[t][1], x, n, &ctx);
        add_bias_hw_forward_cpu(res[t][2], x, bias, N, C, HW, &ctx);
        relu_backward_cpu(res[t][3], dout, x, n, &ctx);
        gelu_backward_cpu(res[t][4], dout, x, n, &ctx);
        add_bias_hw_backward_cpu(res[t][5], res[t][6], dout, N, C, HW, &ctx);
    }
    static const char *names[8] = {"relu out", "gelu out", "abh out", "relu dinp", "gelu dinp", "abh dinp",
                                   "abh dbias", "add out"};
    for (int t = 1; t < 3; t++)
        for (int k = 0; k < 8; k++)
            check_same_bytes(tc, names[k], res[0][k], res[t][k], sizeof(float) * (size_t)(k == 6 ? N * C : n));
    for (int t = 0; t < 3; t++) free_all(res[t], 8);
    FREE_ALL(x, y, dout, bias);
}

/* ---- 4. accumulation, NULL gradients ---- */
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

TEST(test_eltwise_accumulate) {
    CpCtx ctx = ctx_with(2);
    const int N = 3, C = 5;
    const int64_t HW = 4801, n = (int64_t)N * C * HW, nb = N * C;
    float *x = alloc_f32(n), *dout = alloc_f32(n), *g0 = alloc_f32(n), *gb0 = alloc_f32(nb);
    float *fresh = alloc_f32(n), *got = alloc_f32(n), *fb = alloc_f32(nb), *gotb = alloc_f32(nb);
    fill_uniform(x, n, 21, -4.0f, 4.0f), fill_uniform(dout, n, 22, -1.0f, 1.0f);
    fill_uniform(g0, n, 23, -1.0f, 1.0f), fill_uniform(gb0, nb, 24, -10.0f, 10.0f);
    for (int op = OP_RELU; op <= OP_GELU; op++) {
        zero(fresh, n), copy(got, g0, n);
        unary_bwd((UnaryOp)op, fresh, dout, x, x, n, &ctx);
        unary_bwd((UnaryOp)op, got, dout, x, x, n, &ctx);
        check_accum(tc, op == OP_RELU ? "relu dinp" : "gelu dinp", got, g0, fresh, n);
    }
    zero(fresh, n), zero(fb, nb), copy(got, g0, n), copy(gotb, gb0, nb);
    add_bias_hw_backward_cpu(fresh, fb, dout, N, C, HW, &ctx);
    add_bias_hw_backward_cpu(got, gotb, dout, N, C, HW, &ctx);
    check_accum(tc, "abh dinp", got, g0, fresh, n);
    check_accum(tc, "abh dbias", gotb, gb0, fb, nb);
    /* NULL = not needed: the other gradient is unchanged in value */
    copy(got, g0, n), copy(gotb, gb0, nb);
    add_bias_hw_backward_cpu(NULL, gotb, dout, N, C, HW, &ctx);
    add_bias_hw_backward_cpu(got, NULL, dout, N, C, HW, &ctx);
    check_accum(tc, "abh dbias (dinp NULL)", gotb, gb0, fb, nb);
    check_accum(tc, "abh dinp (dbias NULL)", got, g0, fresh, n);
    relu_backward_cpu(NULL, dout, x, n, &ctx);
    gelu_backward_cpu(NULL, dout, x, n, &ctx);
    FREE_ALL(x, dout, g0, gb0, fresh, got, fb, gotb);
}

/* ---- 5. the reduction plan and special values ---- */
TEST(test_dbias_is_the_plan) {
    /* HW = 3 chunks + 1; rows 0..10 (one full group of 8 and a group of 3) */
    CpCtx ctx = ctx_with(3);
    const int N = 1, C = 11;
    const int64_t HW = 3 * RCHUNK + 1, n = (int64_t)N * C * HW;
    float *dout = alloc_f32(n), *db = alloc_f32(C);
    fill_uniform(dout, n, 31, -1.0f, 1.0f);
    zero(db, C);
    add_bias_hw_backward_cpu(NULL, db, dout, N, C, HW, &ctx);
    int bad = 0;
    for (int c = 0; c < C; c++) {
        float part[8], want; /* rplan_chunk_sum per chunk, rplan_combine over chunks */
        int64_t nc = rplan_nchunks(HW);
        for (int64_t k = 0; k < nc; k++)
            part[k] = rplan_chunk_sum(dout + c * HW, rplan_chunk_lo(k), rplan_chunk_hi(k, HW));
        want = 0.0f + rplan_combine(part, nc); /* dbias was 0: 0 + total */
        bad += memcmp(&want, &db[c], sizeof want) != 0;
    }
    CHECKF(bad == 0, "%d of %d dbias values differ from the core/reduce.h plan", bad, C);
    FREE_ALL(dout, db);
}

TEST(test_eltwise_special_values) {
    CpCtx ctx = ctx_with(1);
    float x[6] = {NAN, -0.0f, 0.0f, INFINITY, -INFINITY, -1e-30f}, out[6], d[6] = {0}, one[6];
    for (int i = 0; i < 6; i++) one[i] = 1.0f;
    relu_forward_cpu(out, x, 6, &ctx);
    CHECKF(isnan(out[0]), "relu(NaN) = %g, PyTorch keeps NaN", out[0]);
    CHECK(out[1] == 0.0f && out[2] == 0.0f && out[3] == INFINITY && out[4] == 0.0f && out[5] == 0.0f);
    relu_backward_cpu(d, one, out, 6, &ctx);
    CHECKF(d[0] == 1.0f && d[1] == 0.0f && d[2] == 0.0f && d[3] == 1.0f && d[4] == 0.0f,
           "relu grad: NaN passes dout (threshold_backward), zeros get 0: %g %g %g %g %g", d[0], d[1], d[2], d[3],
           d[4]);
    gelu_forward_cpu(out, x, 6, &ctx);
    /* PyTorch 1.13: gelu(NaN) = NaN, gelu(inf) = inf, gelu(-inf) = -inf * 0 = NaN */
    CHECKF(isnan(out[0]) && out[2] == 0.0f && out[3] == INFINITY && isnan(out[4]) && out[5] == -5e-31f,
           "gelu: NaN, 0, inf, -inf, -1e-30 -> %g %g %g %g %g", out[0], out[2], out[3], out[4], out[5]);
}

TEST_MAIN(T(test_eltwise_vs_torch), T(test_eltwise_fd), T(test_eltwise_threads), T(test_eltwise_accumulate),
          T(test_dbias_is_the_plan), T(test_eltwise_special_values))
