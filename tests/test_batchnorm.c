/* test_batchnorm.c - BatchNorm2d (kernels/batchnorm.h, batchnorm_cpu.c):
 *  1. vs PyTorch (tests/ref/batchnorm.py): outputs, saved mean/rstd, running
 *     stats after one and three training calls, eval output, all gradients;
 *  2. finite differences (double loss, CPU only) of dinp, dweight, dbias;
 *  3. byte-identical results for 1, 2 and 3 threads;
 *  4. poisoned outputs are all written; backward accumulates exactly
 *     (prefilled + fresh == one call into the prefilled buffer, bit for bit)
 *     and NULL gradient pointers (or NULL running stats) change nothing else;
 *  5. the statistics equal an independent transcription of the chunk plan
 *     bit for bit (the order the CUDA kernel must reproduce).
 * Legend: N batch, C channels, HW = H*W; tensors NCHW. */
#include <math.h>
#include <string.h>

#include "ctx.h"
#include "harness.h"
#include "kernels/batchnorm.h"
#include "kernels/ops.h"
#include "optest.h"
#include "reduce.h"

#define EPS 1e-5f
#define MOMENTUM 0.05f

/* Tolerances (atol, rtol), one place. PyTorch's CPU kernel computes the same
 * quantities in another order (mean/var in double accumulators, out as
 * x * (invstd * w) + (b - mean * invstd * w)), so the differences are float
 * rounding of O(1) values through reductions of up to 12810 terms:
 *  - TOL_FWD: out, mean, rstd, running stats, eval out: a few ulp of O(1)
 *    values, plus the plan's float sum over <= 12810 terms for the stats;
 *  - TOL_DX: dinp is a difference of O(1) terms (dout - mean(dout) - ...),
 *    cancellation puts the error on an absolute scale;
 *  - TOL_DWB: dweight/dbias are plan sums of up to 12810 O(1) terms: a
 *    sequential float chunk of 4096 terms with partial sums up to ~50 errs
 *    by ~sqrt(4096) ulp(50) ~ 2.5e-4 (measured up to 1.5e-4 vs PyTorch);
 *  - TOL_FD: central differences of a float op, eps 1e-2: the loss carries
 *    float rounding ~1e-6 (-> 1e-4 in the quotient) and O(eps^2) truncation. */
static const double TOL_FWD[2] = {1e-5, 1e-5};
static const double TOL_DX[2] = {2e-5, 1e-4};
static const double TOL_DWB[2] = {5e-4, 1e-5};
static const double TOL_FD[2] = {3e-4, 3e-3};


/* ---- 1. vs PyTorch ---- */
/* The tensors of one reference case, named "<case>_<name>" in the file. */
enum { X1, X2, X3, W, B, RM, RV, PROBE, XE,                                      /* inputs */
       OUT_R, MEAN_R, RSTD_R, DX_R, DW_R, DB_R, RM1, RV1, RM3, RV3, OUTE_R, NREF }; /* PyTorch results */
static const char *const REF_NAME[NREF] = {"x1",  "x2", "x3", "w",  "b",  "rm0", "rv0", "probe", "xe",  "out",
                                           "mean", "rstd", "dx", "dw", "db", "rm1", "rv1", "rm3",   "rv3", "oute"};
static const int REF_PER_CHANNEL[NREF] = {0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0};

#define TOL(t) (t)[0], (t)[1]

/* Train forward (x1), backward, two more train forwards (x2, x3), eval forward. */
static void check_case_run(TestCase *tc, const char *k, float **t, int N, int C, int64_t HW) {
    int64_t n = (int64_t)N * C * HW;
    char what[96];
#define WHAT(s) (snprintf(what, sizeof what, "bn[%s] %s", k, s), what)
    CpCtx ctx = ctx_with(2);
    float *out = alloc_f32(n), *mean = alloc_f32(C), *rstd = alloc_f32(C);
    float *dx = alloc_f32(n), *dw = alloc_f32(C), *db = alloc_f32(C);
    poison(out, n), poison(mean, C), poison(rstd, C);
    batchnorm_forward_train_cpu(out, mean, rstd, t[RM], t[RV], t[X1], t[W], t[B], N, C, HW, EPS, MOMENTUM, &ctx);
    check_written(tc, WHAT("out"), out, n), check_written(tc, WHAT("mean"), mean, C);
    check_written(tc, WHAT("rstd"), rstd, C);
    check_close(tc, WHAT("out"), out, t[OUT_R], n, TOL(TOL_FWD));
    check_close(tc, WHAT("mean"), mean, t[MEAN_R], C, TOL(TOL_FWD));
    check_close(tc, WHAT("rstd"), rstd, t[RSTD_R], C, TOL(TOL_FWD));
    check_close(tc, WHAT("running_mean, 1 call"), t[RM], t[RM1], C, TOL(TOL_FWD));
    check_close(tc, WHAT("running_var, 1 call"), t[RV], t[RV1], C, TOL(TOL_FWD));
    zero(dx, n), zero(dw, C), zero(db, C);
    batchnorm_backward_cpu(dx, dw, db, t[PROBE], t[X1], mean, rstd, t[W], N, C, HW, &ctx);
    check_close(tc, WHAT("dinp"), dx, t[DX_R], n, TOL(TOL_DX));
    check_close(tc, WHAT("dweight"), dw, t[DW_R], C, TOL(TOL_DWB));
    check_close(tc, WHAT("dbias"), db, t[DB_R], C, TOL(TOL_DWB));
    batchnorm_forward_train_cpu(out, mean, rstd, t[RM], t[RV], t[X2], t[W], t[B], N, C, HW, EPS, MOMENTUM, &ctx);
    batchnorm_forward_train_cpu(out, mean, rstd, t[RM], t[RV], t[X3], t[W], t[B], N, C, HW, EPS, MOMENTUM, &ctx);
    check_close(tc, WHAT("running_mean, 3 calls"), t[RM], t[RM3], C, TOL(TOL_FWD));
    check_close(tc, WHAT("running_var, 3 calls"), t[RV], t[RV3], C, TOL(TOL_FWD));
    /* eval with PyTorch's running stats after 3 calls, so it is checked on its own */
    poison(out, n);
    batchnorm_forward_eval_cpu(out, t[XE], t[W], t[B], t[RM3], t[RV3], N, C, HW, EPS, &ctx);
    check_written(tc, WHAT("eval out"), out, n);
    check_close(tc, WHAT("eval out"), out, t[OUTE_R], n, TOL(TOL_FWD));
#undef WHAT
    cp_free(out), cp_free(mean), cp_free(rstd), cp_free(dx), cp_free(dw), cp_free(db);
}

static void check_case(TestCase *tc, const Ref *r, const char *k) {
    char nm[64];
    int before = tc->failures;
#define NAME(s) (snprintf(nm, sizeof nm, "%s_%s", k, s), nm)
    int N = (int)ref_int(tc, r, NAME("N")), C = (int)ref_int(tc, r, NAME("C"));
    int64_t HW = ref_int(tc, r, NAME("H")) * ref_int(tc, r, NAME("W"));
    float *t[NREF];
    for (int i = 0; i < NREF; i++) t[i] = ref_f32(tc, r, NAME(REF_NAME[i]), REF_PER_CHANNEL[i] ? C : N * C * HW);
#undef NAME
    if (tc->failures == before) check_case_run(tc, k, t, N, C, HW); /* else: missing tensors, reported */
    for (int i = 0; i < NREF; i++) cp_free(t[i]);
}

TEST(test_bn_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "batchnorm")) return;
    check_case(tc, &r, "a");
    check_case(tc, &r, "b");
    check_case(tc, &r, "c");
    ref_free(&r);
}

/* ---- a problem with its own data (fd, threads, accumulation) ---- */
typedef struct {
    int N, C;
    int64_t HW, n;
    float *x, *w, *b, *probe;       /* inputs [N,C,HW], [C], [C], [N,C,HW] */
    float *out, *mean, *rstd, *rm, *rv; /* forward results */
} Prob;

static Prob prob_make(int N, int C, int64_t HW, uint32_t seed) {
    Prob p = {N, C, HW, (int64_t)N * C * HW, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    p.x = alloc_f32(p.n), p.probe = alloc_f32(p.n), p.out = alloc_f32(p.n);
    p.w = alloc_f32(C), p.b = alloc_f32(C), p.mean = alloc_f32(C), p.rstd = alloc_f32(C);
    p.rm = alloc_f32(C), p.rv = alloc_f32(C);
    fill_uniform(p.x, p.n, seed, -2.0f, 3.0f);
    fill_uniform(p.probe, p.n, seed + 1, -1.0f, 1.0f);
    fill_uniform(p.w, C, seed + 2, 0.5f, 1.5f);
    fill_uniform(p.b, C, seed + 3, -1.0f, 1.0f);
    fill_uniform(p.rm, C, seed + 4, -1.0f, 1.0f);
    fill_uniform(p.rv, C, seed + 5, 0.5f, 2.0f);
    return p;
}

static void prob_free(Prob *p) {
    float *all[] = {p->x, p->w, p->b, p->probe, p->out, p->mean, p->rstd, p->rm, p->rv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cp_free(all[i]);
}

static void prob_forward(Prob *p, const CpCtx *ctx) {
    batchnorm_forward_train_cpu(p->out, p->mean, p->rstd, p->rm, p->rv, p->x, p->w, p->b, p->N, p->C, p->HW, EPS,
                                MOMENTUM, ctx);
}

/* ---- 2. finite differences ---- */
static double bn_loss(void *state) {
    Prob *p = state;
    CpCtx ctx = ctx_with(1);
    prob_forward(p, &ctx);
    double s = 0;
    for (int64_t i = 0; i < p->n; i++) s += (double)p->out[i] * (double)p->probe[i];
    return s;
}

TEST(test_bn_fd) {
    Prob p = prob_make(2, 3, 5 * 7, 11);
    CpCtx ctx = ctx_with(1);
    float *dx = alloc_f32(p.n), *dw = alloc_f32(p.C), *db = alloc_f32(p.C);
    zero(dx, p.n), zero(dw, p.C), zero(db, p.C);
    prob_forward(&p, &ctx);
    batchnorm_backward_cpu(dx, dw, db, p.probe, p.x, p.mean, p.rstd, p.w, p.N, p.C, p.HW, &ctx);
    check_fd(tc, "bn dinp", dx, p.x, p.n, bn_loss, &p, 1e-2f, 60, TOL_FD[0], TOL_FD[1]);
    check_fd(tc, "bn dweight", dw, p.w, p.C, bn_loss, &p, 1e-2f, 60, TOL_FD[0], TOL_FD[1]);
    check_fd(tc, "bn dbias", db, p.b, p.C, bn_loss, &p, 1e-2f, 60, TOL_FD[0], TOL_FD[1]);
    cp_free(dx), cp_free(dw), cp_free(db);
    prob_free(&p);
}

/* ---- 3. thread counts ---- */
/* Every output of train forward, eval forward and backward for one thread
 * count, concatenated: out | mean | rstd | rm | rv | eval out | dx | dw | db. */
static void run_all(float *res, int N, int C, int64_t HW, int threads) {
    Prob p = prob_make(N, C, HW, 21);
    CpCtx ctx = ctx_with(threads);
    int64_t n = p.n;
    prob_forward(&p, &ctx);
    copy(res, p.out, n), copy(res + n, p.mean, C), copy(res + n + C, p.rstd, C);
    copy(res + n + 2 * C, p.rm, C), copy(res + n + 3 * C, p.rv, C);
    float *r = res + n + 4 * C;
    batchnorm_forward_eval_cpu(r, p.x, p.w, p.b, p.rm, p.rv, N, C, HW, EPS, &ctx);
    r += n;
    zero(r, n + 2 * C);
    batchnorm_backward_cpu(r, r + n, r + n + C, p.probe, p.x, p.mean, p.rstd, p.w, N, C, HW, &ctx);
    prob_free(&p);
}

TEST(test_bn_threads) {
    /* C = 11: one full group of 8 channels and a partial one; 3x70x61: several chunks */
    int N = 3, C = 11;
    int64_t HW = test_quick() ? 41 * 53 : 70 * 61, total = 3 * (int64_t)N * C * HW + 6 * C;
    float *ref = alloc_f32(total), *got = alloc_f32(total);
    run_all(ref, N, C, HW, 1);
    for (int t = 2; t <= 3; t++) {
        run_all(got, N, C, HW, t);
        char what[64];
        snprintf(what, sizeof what, "bn all outputs, 1 vs %d threads", t);
        check_same_bytes(tc, what, ref, got, sizeof(float) * (size_t)total);
    }
    printf("  bn threads 1/2/3: %lld floats compared bytewise\n", (long long)total);
    cp_free(ref), cp_free(got);
}

/* ---- 4. accumulation and NULL gradients ---- */
TEST(test_bn_accumulate) {
    Prob p = prob_make(3, 7, 9 * 13, 31);
    CpCtx ctx = ctx_with(2);
    int64_t n = p.n, C = p.C;
    prob_forward(&p, &ctx);
    float *g = alloc_f32(n + 2 * C), *h = alloc_f32(n + 2 * C), *g0 = alloc_f32(n + 2 * C);
    zero(g, n + 2 * C);
    batchnorm_backward_cpu(g, g + n, g + n + C, p.probe, p.x, p.mean, p.rstd, p.w, p.N, p.C, p.HW, &ctx);
    fill_uniform(g0, n + 2 * C, 77, -1.0f, 1.0f);
    copy(h, g0, n + 2 * C);
    batchnorm_backward_cpu(h, h + n, h + n + C, p.probe, p.x, p.mean, p.rstd, p.w, p.N, p.C, p.HW, &ctx);
    int64_t bad = 0;
    for (int64_t i = 0; i < n + 2 * C; i++) {
        float want = g0[i] + g[i];
        bad += memcmp(&want, &h[i], 4) != 0;
    }
    CHECKF(bad == 0, "%lld of %lld gradient elements are not prefilled + fresh", (long long)bad,
           (long long)(n + 2 * C));
    /* NULL: dinp alone, then dweight/dbias alone, equal the full call */
    zero(h, n + 2 * C);
    batchnorm_backward_cpu(h, NULL, NULL, p.probe, p.x, p.mean, p.rstd, p.w, p.N, p.C, p.HW, &ctx);
    batchnorm_backward_cpu(NULL, h + n, h + n + C, p.probe, p.x, p.mean, p.rstd, p.w, p.N, p.C, p.HW, &ctx);
    check_same_bytes(tc, "bn backward with NULL gradients", g, h, sizeof(float) * (size_t)(n + 2 * C));
    cp_free(g), cp_free(h), cp_free(g0);
    prob_free(&p);
}

/* NULL running stats (not tracked): the same out, mean and rstd. */
TEST(test_bn_null_running) {
    Prob p = prob_make(3, 7, 9 * 13, 51);
    CpCtx ctx = ctx_with(2);
    float *out = alloc_f32(p.n), *mean = alloc_f32(p.C), *rstd = alloc_f32(p.C);
    prob_forward(&p, &ctx);
    batchnorm_forward_train_cpu(out, mean, rstd, NULL, NULL, p.x, p.w, p.b, p.N, p.C, p.HW, EPS, MOMENTUM, &ctx);
    check_same_bytes(tc, "bn out without running stats", out, p.out, sizeof(float) * (size_t)p.n);
    check_same_bytes(tc, "bn mean without running stats", mean, p.mean, sizeof(float) * (size_t)p.C);
    check_same_bytes(tc, "bn rstd without running stats", rstd, p.rstd, sizeof(float) * (size_t)p.C);
    cp_free(out), cp_free(mean), cp_free(rstd);
    prob_free(&p);
}

/* ---- 5. the plan, transcribed independently ---- */
TEST(test_bn_plan_order) {
    Prob p = prob_make(3, 5, 70 * 61, 41); /* 12810 per channel: 4 chunks */
    CpCtx ctx = ctx_with(3);
    int64_t count = p.N * p.HW, bad = 0;
    prob_forward(&p, &ctx);
    for (int c = 0; c < p.C; c++) {
        double s1 = 0.0, s2 = 0.0; /* double accumulators, rounded once (batchnorm.h) */
        for (int64_t lo = 0; lo < count; lo += RCHUNK) {
            double part = 0.0;
            for (int64_t i = lo; i < count && i < lo + RCHUNK; i++)
                part += p.x[((i / p.HW) * p.C + c) * p.HW + i % p.HW]; /* i = n*HW + hw */
            s1 += part;
        }
        float mean = (float)s1 / (float)count;
        for (int64_t lo = 0; lo < count; lo += RCHUNK) {
            double part = 0.0;
            for (int64_t i = lo; i < count && i < lo + RCHUNK; i++) {
                double d = p.x[((i / p.HW) * p.C + c) * p.HW + i % p.HW] - mean;
                part = fma(d, d, part);
            }
            s2 += part;
        }
        float rstd = 1.0f / sqrtf((float)s2 / (float)count + EPS);
        bad += memcmp(&mean, &p.mean[c], 4) != 0 || memcmp(&rstd, &p.rstd[c], 4) != 0;
    }
    CHECKF(bad == 0, "%lld channels whose mean/rstd differ from the hand-written chunk plan", (long long)bad);
    prob_free(&p);
}

TEST_MAIN(T(test_bn_vs_torch), T(test_bn_fd), T(test_bn_threads), T(test_bn_accumulate), T(test_bn_null_running),
          T(test_bn_plan_order))
