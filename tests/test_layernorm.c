/* test_layernorm.c - LayerNorm over the last dim and LayerNorm2d over the
 * channels of NCHW (kernels/layernorm.h, layernorm_cpu.c):
 *  1. vs PyTorch (tests/ref/layernorm.py): output, saved mean/rstd, all
 *     gradients, for both ops;
 *  2. finite differences (double loss, CPU only) of dinp, dw, db;
 *  3. byte-identical results for 1, 2 and 3 threads (shapes with partial
 *     lane groups and several chunks);
 *  4. poisoned outputs are all written; backward accumulates exactly
 *     (prefilled + fresh == one call into the prefilled buffer, bit for bit)
 *     and NULL gradient pointers change nothing else;
 *  5. statistics and dw/db equal an independent transcription of the chunk
 *     plan bit for bit (the order the CUDA kernels must reproduce).
 * Legend: M rows, D features (LayerNorm x[M,D]); N batch, C channels,
 * HW = H*W (LayerNorm2d x[N,C,HW], statistics per (n, hw)). */
#include <math.h>
#include <string.h>

#include "ctx.h"
#include "harness.h"
#include "kernels/layernorm.h"
#include "kernels/ops.h"
#include "optest.h"
#include "reduce.h"

#define EPS 1e-6f

/* Tolerances (atol, rtol), one place. PyTorch computes the same quantities
 * in another order (LayerNorm: vectorized partial sums and
 * dx = a*dy*w + b*x + c; LayerNorm2d: separate mean ops and a division by
 * sqrt), so the differences are float rounding of O(1) values:
 *  - TOL_FWD: out, mean, rstd: a few ulp of O(1) values (rows up to 9001 long);
 *  - TOL_DX: dinp is a difference of O(1) terms (cancellation: absolute scale);
 *  - TOL_DWB: dw/db are sums over up to 8540 rows/pixels of O(1) terms:
 *    a sequential float chunk of 4096 terms with partial sums up to ~50
 *    errs by ~sqrt(4096) ulp(50) ~ 2.5e-4 (measured up to 1.7e-4 vs PyTorch);
 *  - TOL_FD: central differences of a float op, eps 1e-2: the loss carries
 *    float rounding ~1e-6 (-> 1e-4 in the quotient) and O(eps^2) truncation. */
static const double TOL_FWD[2] = {1e-5, 1e-5};
static const double TOL_DX[2] = {2e-5, 1e-4};
static const double TOL_DWB[2] = {5e-4, 1e-5};
static const double TOL_FD[2] = {3e-4, 3e-3};


/* One problem of either op: LayerNorm (is2d = 0: M, D) or LayerNorm2d
 * (is2d = 1: N, C, HW). n elements, nstat statistics (M or N*HW), npar
 * parameters per tensor (D or C). */
typedef struct {
    int is2d, D, N, C;
    int64_t M, HW, n, nstat, npar;
    float *x, *w, *b, *probe;    /* inputs [n], [npar], [npar], [n] */
    float *out, *mean, *rstd;    /* forward results [n], [nstat], [nstat] */
} Prob;

static Prob prob_shape(int is2d, int64_t M, int D, int N, int C, int64_t HW) {
    Prob p;
    memset(&p, 0, sizeof p);
    p.is2d = is2d, p.M = M, p.D = D, p.N = N, p.C = C, p.HW = HW;
    p.n = is2d ? (int64_t)N * C * HW : M * D;
    p.nstat = is2d ? (int64_t)N * HW : M;
    p.npar = is2d ? C : D;
    p.out = alloc_f32(p.n), p.mean = alloc_f32(p.nstat), p.rstd = alloc_f32(p.nstat);
    return p;
}

/* Own data: x with a per-element offset, so mean removal matters. */
static Prob prob_make(int is2d, int64_t M, int D, int N, int C, int64_t HW, uint32_t seed) {
    Prob p = prob_shape(is2d, M, D, N, C, HW);
    p.x = alloc_f32(p.n), p.probe = alloc_f32(p.n), p.w = alloc_f32(p.npar), p.b = alloc_f32(p.npar);
    fill_uniform(p.x, p.n, seed, -2.0f, 3.0f);
    fill_uniform(p.probe, p.n, seed + 1, -1.0f, 1.0f);
    fill_uniform(p.w, p.npar, seed + 2, 0.5f, 1.5f);
    fill_uniform(p.b, p.npar, seed + 3, -1.0f, 1.0f);
    return p;
}

static void prob_free(Prob *p) {
    float *all[] = {p->x, p->w, p->b, p->probe, p->out, p->mean, p->rstd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cp_free(all[i]);
}

static void prob_forward(Prob *p, const CpCtx *ctx) {
    if (p->is2d) layernorm2d_forward_cpu(p->out, p->mean, p->rstd, p->x, p->w, p->b, p->N, p->C, p->HW, EPS, ctx);
    else layernorm_forward_cpu(p->out, p->mean, p->rstd, p->x, p->w, p->b, p->M, p->D, EPS, ctx);
}

/* Backward with dout = probe (the gradient of sum(out * probe)). */
static void prob_backward(const Prob *p, float *dx, float *dw, float *db, const CpCtx *ctx) {
    if (p->is2d)
        layernorm2d_backward_cpu(dx, dw, db, p->probe, p->x, p->mean, p->rstd, p->w, p->N, p->C, p->HW, ctx);
    else layernorm_backward_cpu(dx, dw, db, p->probe, p->x, p->mean, p->rstd, p->w, p->M, p->D, ctx);
}

/* ---- 1. vs PyTorch ---- */
static void check_case(TestCase *tc, const Ref *r, const char *k, int is2d) {
    char nm[64], what[96];
    int before = tc->failures;
#define NAME(s) (snprintf(nm, sizeof nm, "%s_%s", k, s), nm)
#define WHAT(s) (snprintf(what, sizeof what, "%s[%s] %s", is2d ? "ln2d" : "ln", k, s), what)
    Prob p = is2d ? prob_shape(1, 0, 0, (int)ref_int(tc, r, NAME("N")), (int)ref_int(tc, r, NAME("C")),
                               ref_int(tc, r, NAME("H")) * ref_int(tc, r, NAME("W")))
                  : prob_shape(0, ref_int(tc, r, NAME("M")), (int)ref_int(tc, r, NAME("D")), 0, 0, 0);
    p.x = ref_f32(tc, r, NAME("x"), p.n), p.probe = ref_f32(tc, r, NAME("probe"), p.n);
    p.w = ref_f32(tc, r, NAME("w"), p.npar), p.b = ref_f32(tc, r, NAME("b"), p.npar);
    float *out_r = ref_f32(tc, r, NAME("out"), p.n), *mean_r = ref_f32(tc, r, NAME("mean"), p.nstat);
    float *rstd_r = ref_f32(tc, r, NAME("rstd"), p.nstat), *dx_r = ref_f32(tc, r, NAME("dx"), p.n);
    float *dw_r = ref_f32(tc, r, NAME("dw"), p.npar), *db_r = ref_f32(tc, r, NAME("db"), p.npar);
    float *dx = alloc_f32(p.n), *dw = alloc_f32(p.npar), *db = alloc_f32(p.npar);
    if (tc->failures == before) { /* else a reference tensor is missing: reported already */
        CpCtx ctx = ctx_with(2);
        poison(p.out, p.n), poison(p.mean, p.nstat), poison(p.rstd, p.nstat);
        prob_forward(&p, &ctx);
        check_written(tc, WHAT("out"), p.out, p.n), check_written(tc, WHAT("mean"), p.mean, p.nstat);
        check_written(tc, WHAT("rstd"), p.rstd, p.nstat);
        check_close(tc, WHAT("out"), p.out, out_r, p.n, TOL_FWD[0], TOL_FWD[1]);
        check_close(tc, WHAT("mean"), p.mean, mean_r, p.nstat, TOL_FWD[0], TOL_FWD[1]);
        check_close(tc, WHAT("rstd"), p.rstd, rstd_r, p.nstat, TOL_FWD[0], TOL_FWD[1]);
        zero(dx, p.n), zero(dw, p.npar), zero(db, p.npar);
        prob_backward(&p, dx, dw, db, &ctx);
        check_close(tc, WHAT("dinp"), dx, dx_r, p.n, TOL_DX[0], TOL_DX[1]);
        check_close(tc, WHAT("dw"), dw, dw_r, p.npar, TOL_DWB[0], TOL_DWB[1]);
        check_close(tc, WHAT("db"), db, db_r, p.npar, TOL_DWB[0], TOL_DWB[1]);
    }
#undef NAME
#undef WHAT
    float *all[] = {out_r, mean_r, rstd_r, dx_r, dw_r, db_r, dx, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cp_free(all[i]);
    prob_free(&p);
}

TEST(test_ln_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "layernorm")) return;
    const char *cases[] = {"a", "b", "c", "d", "e", "f"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(tc, &r, cases[i], 0);
    ref_free(&r);
}

TEST(test_ln2d_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "layernorm")) return;
    const char *cases[] = {"p", "q", "r"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(tc, &r, cases[i], 1);
    ref_free(&r);
}

/* ---- 2. finite differences ---- */
static double loss(void *state) {
    Prob *p = state;
    CpCtx ctx = ctx_with(1);
    prob_forward(p, &ctx);
    double s = 0;
    for (int64_t i = 0; i < p->n; i++) s += (double)p->out[i] * (double)p->probe[i];
    return s;
}

static void fd_all(TestCase *tc, Prob *p, const char *op) {
    CpCtx ctx = ctx_with(1);
    float *dx = alloc_f32(p->n), *dw = alloc_f32(p->npar), *db = alloc_f32(p->npar);
    char what[64];
    zero(dx, p->n), zero(dw, p->npar), zero(db, p->npar);
    prob_forward(p, &ctx);
    prob_backward(p, dx, dw, db, &ctx);
    snprintf(what, sizeof what, "%s dinp", op);
    check_fd(tc, what, dx, p->x, p->n, loss, p, 1e-2f, 60, TOL_FD[0], TOL_FD[1]);
    snprintf(what, sizeof what, "%s dw", op);
    check_fd(tc, what, dw, p->w, p->npar, loss, p, 1e-2f, 60, TOL_FD[0], TOL_FD[1]);
    snprintf(what, sizeof what, "%s db", op);
    check_fd(tc, what, db, p->b, p->npar, loss, p, 1e-2f, 60, TOL_FD[0], TOL_FD[1]);
    cp_free(dx), cp_free(dw), cp_free(db);
}

TEST(test_ln_fd) {
    Prob p = prob_make(0, 5, 13, 0, 0, 0, 11);
    fd_all(tc, &p, "ln");
    prob_free(&p);
}

TEST(test_ln2d_fd) {
    Prob p = prob_make(1, 0, 0, 2, 6, 5 * 7, 12);
    fd_all(tc, &p, "ln2d");
    prob_free(&p);
}

/* ---- 3. thread counts ---- */
/* out | mean | rstd | dx | dw | db of one problem for one thread count. */
static int64_t run_all(float *res, Prob shape, int threads) {
    Prob p = prob_make(shape.is2d, shape.M, shape.D, shape.N, shape.C, shape.HW, 21);
    CpCtx ctx = ctx_with(threads);
    int64_t n = p.n, ns = p.nstat, np = p.npar;
    prob_forward(&p, &ctx);
    if (res) {
        copy(res, p.out, n), copy(res + n, p.mean, ns), copy(res + n + ns, p.rstd, ns);
        float *g = res + n + 2 * ns;
        zero(g, n + 2 * np);
        prob_backward(&p, g, g + n, g + n + np, &ctx);
    }
    prob_free(&p);
    return 2 * n + 2 * ns + 2 * np;
}

static void threads_case(TestCase *tc, Prob shape, const char *label) {
    int64_t total = run_all(NULL, shape, 1);
    float *ref = alloc_f32(total), *got = alloc_f32(total);
    run_all(ref, shape, 1);
    for (int t = 2; t <= 3; t++) {
        char what[96];
        run_all(got, shape, t);
        snprintf(what, sizeof what, "%s all outputs, 1 vs %d threads", label, t);
        check_same_bytes(tc, what, ref, got, sizeof(float) * (size_t)total);
    }
    printf("  %s threads 1/2/3: %lld floats compared bytewise\n", label, (long long)total);
    cp_free(ref), cp_free(got);
}

TEST(test_ln_threads) {
    Prob a = {0}, b = {0}, c = {0};
    a.M = 45, a.D = test_quick() ? 1000 : 9001; /* partial row group; rows of several chunks */
    b.M = 8200, b.D = 37;                       /* dw/db over 3 row chunks; partial feature block */
    c.is2d = 1, c.N = 3, c.C = 11, c.HW = test_quick() ? 41 * 53 : 70 * 61; /* partial blocks, 4 chunks */
    threads_case(tc, a, "ln 45x9001");
    threads_case(tc, b, "ln 8200x37");
    threads_case(tc, c, "ln2d 3x11x70x61");
}

/* ---- 4. accumulation and NULL gradients ---- */
static void accumulate_case(TestCase *tc, Prob *p, const char *label) {
    CpCtx ctx = ctx_with(2);
    int64_t n = p->n, np = p->npar, tot = n + 2 * np, bad = 0;
    prob_forward(p, &ctx);
    float *g = alloc_f32(tot), *h = alloc_f32(tot), *g0 = alloc_f32(tot);
    zero(g, tot);
    prob_backward(p, g, g + n, g + n + np, &ctx);
    fill_uniform(g0, tot, 77, -1.0f, 1.0f);
    copy(h, g0, tot);
    prob_backward(p, h, h + n, h + n + np, &ctx);
    for (int64_t i = 0; i < tot; i++) {
        float want = g0[i] + g[i];
        bad += memcmp(&want, &h[i], 4) != 0;
    }
    CHECKF(bad == 0, "%s: %lld of %lld gradient elements are not prefilled + fresh", label, (long long)bad,
           (long long)tot);
    zero(h, tot);
    prob_backward(p, h, NULL, NULL, &ctx);
    prob_backward(p, NULL, h + n, NULL, &ctx);
    prob_backward(p, NULL, NULL, h + n + np, &ctx);
    char what[96];
    snprintf(what, sizeof what, "%s backward with NULL gradients", label);
    check_same_bytes(tc, what, g, h, sizeof(float) * (size_t)tot);
    cp_free(g), cp_free(h), cp_free(g0);
}

TEST(test_ln_accumulate) {
    Prob a = prob_make(0, 37, 96, 0, 0, 0, 31), b = prob_make(1, 0, 0, 3, 6, 5 * 7, 32);
    accumulate_case(tc, &a, "ln");
    accumulate_case(tc, &b, "ln2d");
    prob_free(&a), prob_free(&b);
}

/* ---- 5. the plan, transcribed independently ---- */
/* plan-sum of f(k) for k in [0, n): chunks of RCHUNK, sequential within and across. */
#define PLAN_SUM(res, n, init, step)                                                                        \
    do {                                                                                                    \
        res = 0.0f;                                                                                         \
        for (int64_t lo_ = 0; lo_ < (n); lo_ += RCHUNK) {                                                   \
            float acc = init;                                                                               \
            for (int64_t k = lo_; k < (n) && k < lo_ + RCHUNK; k++) step;                                   \
            res += acc;                                                                                     \
        }                                                                                                   \
    } while (0)

/* Statistics of row/pixel s and dw/db of feature j, by hand, vs the op. */
static int64_t plan_mismatches(const Prob *p, const float *dw, const float *db) {
    int64_t bad = 0, L = p->is2d ? p->C : p->D;
    for (int64_t s = 0; s < p->nstat; s++) {
        /* element k of the group s: row s (LN), pixel s = n*HW + hw over channels k (LN2d) */
        int64_t base = p->is2d ? (s / p->HW) * p->C * p->HW + s % p->HW : s * p->D, st = p->is2d ? p->HW : 1;
        float s1, s2;
        PLAN_SUM(s1, L, 0.0f, acc += p->x[base + k * st]);
        float mu = s1 / (float)L;
        PLAN_SUM(s2, L, 0.0f, { float d = p->x[base + k * st] - mu; acc = fmaf(d, d, acc); });
        float rs = 1.0f / sqrtf(s2 / (float)L + EPS);
        bad += memcmp(&mu, &p->mean[s], 4) != 0 || memcmp(&rs, &p->rstd[s], 4) != 0;
    }
    for (int64_t j = 0; j < p->npar; j++) {
        /* element k of feature j: row k (LN), batch-major pixel k = n*HW + hw (LN2d) */
#define ELEM(a) (p->is2d ? (a)[((k / p->HW) * p->C + j) * p->HW + k % p->HW] : (a)[k * p->D + j])
        float sw, sb;
        PLAN_SUM(sb, p->nstat, 0.0f, acc += ELEM(p->probe));
        PLAN_SUM(sw, p->nstat, 0.0f, acc = fmaf(ELEM(p->probe), (ELEM(p->x) - p->mean[k]) * p->rstd[k], acc));
#undef ELEM
        bad += memcmp(&sw, &dw[j], 4) != 0 || memcmp(&sb, &db[j], 4) != 0;
    }
    return bad;
}

TEST(test_ln_plan_order) {
    Prob ps[3] = {prob_make(0, 3, 9001, 0, 0, 0, 41), prob_make(0, 8200, 5, 0, 0, 0, 42),
                  prob_make(1, 0, 0, 2, 3, 70 * 61, 43)};
    const char *labels[3] = {"ln 3x9001", "ln 8200x5", "ln2d 2x3x70x61"};
    for (int i = 0; i < 3; i++) {
        Prob *p = &ps[i];
        CpCtx ctx = ctx_with(3);
        float *dw = alloc_f32(p->npar), *db = alloc_f32(p->npar);
        zero(dw, p->npar), zero(db, p->npar);
        prob_forward(p, &ctx);
        prob_backward(p, NULL, dw, db, &ctx);
        int64_t bad = plan_mismatches(p, dw, db);
        CHECKF(bad == 0, "%s: %lld statistics/parameter gradients differ from the hand-written chunk plan",
               labels[i], (long long)bad);
        cp_free(dw), cp_free(db);
        prob_free(p);
    }
}

TEST_MAIN(T(test_ln_vs_torch), T(test_ln2d_vs_torch), T(test_ln_fd), T(test_ln2d_fd), T(test_ln_threads),
          T(test_ln_accumulate), T(test_ln_plan_order))
