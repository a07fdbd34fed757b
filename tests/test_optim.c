/* test_optim.c - AdamW and SGD steps (kernels/ops.h, kernels/optim.h) on the
 * CPU:
 *  (a) vs PyTorch (tests/ref/optim.py): 10 steps of torch.optim.AdamW(lr=0.005,
 *      wd=1e-5) and SGD(lr=0.2, momentum=0.9, wd=1e-5), 3 late AdamW steps
 *      (t = 99998..) and 3 plain SGD steps, parameters and moments after
 *      every step, BITWISE (ops.h takes the hyperparameters as doubles, as
 *      PyTorch does); the same steps with hyperparameters first rounded to
 *      float (what a float API would give) within a stated tolerance; optim_powi correctly rounded (MPFR) and
 *      Python's bias corrections 1 - beta**t reproduced bitwise;
 *  (b) no gradients to check (an optimizer has none); instead an independent
 *      double-precision transcription of the textbook update, with tolerance;
 *  (c) threads 1, 2, 3 and a scalar (non-vectorized) loop: identical bytes;
 *  (d) SGD's momentum buffer is output-only at step 1: poisoned, then
 *      check_written. (AdamW's m, v are read-modify-write from step 1.) */
#include <math.h>
#include <mpfr.h>
#include <string.h>

#include "ctx.h"
#include "harness.h"
#include "kernels/ops.h"
#include "kernels/optim.h"
#include "optest.h"

/* ---- tolerances, all in one place ----
 * Bitwise (atol = rtol = 0) wherever the hyperparameters are PyTorch's
 * doubles: every float operation mirrors PyTorch's kernels.
 * Float-rounded hyperparameters (kinds 1 and 3): (double)0.005f etc. differ from the doubles by
 * <= 2^-25 relative, so the step scalars move by an ulp or so; after 10
 * steps parameters differ by a few ulp of a step (lr = 0.005 -> ~1e-9) or
 * of the parameter (~1e-7): atol 1e-7, rtol 1e-6. Moments: float(1 - (double)0.999f)
 * is 1.29e-5 relative below float(1 - 0.999), so v moves by that: rtol 2e-5;
 * float(1 - (double)0.9f) is 2.4e-7 relative off, times |g| <= 100 per step,
 * and m can cancel to ~0: atol 1e-5, rtol 1e-5.
 * Double transcription: fp32 rounding of ~10 ops per step over 10 steps on
 * |p| <= 1: atol 1e-6, rtol 1e-5. */
#define TOL_F32API_ATOL 1e-7
#define TOL_F32API_RTOL 1e-6
#define TOL_F32API_M_ATOL 1e-5
#define TOL_F32API_M_RTOL 1e-5
#define TOL_F32API_V_ATOL 1e-12
#define TOL_F32API_V_RTOL 2e-5
#define TOL_F64REF_ATOL 1e-6
#define TOL_F64REF_RTOL 1e-5

static const double LR_ADAMW = 0.005, WD = 1e-5, B1 = 0.9, B2 = 0.999, EPS = 1e-8;
static const double LR_SGD = 0.2, MOMENTUM = 0.9;

static void ctx_threads(CpCtx *ctx, int threads) { cp_ctx_init(ctx, CP_BACKEND_CPU, threads, 0); }

static int64_t count_diff_bits(const float *a, const float *b, int64_t n) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) c += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return c;
}

/* Bitwise check, printed like check_close (max abs diff, elements differing). */
static int check_bits(TestCase *tc, const char *what, const float *got, const float *ref, int64_t n) {
    int64_t bad = count_diff_bits(got, ref, n);
    double max_abs = 0;
    for (int64_t i = 0; i < n; i++) max_abs = fmax(max_abs, fabs((double)got[i] - (double)ref[i]));
    printf("  %-34s n=%-8lld bitwise: %lld differ, max abs %.2e\n", what, (long long)n, (long long)bad, max_abs);
    CHECKF(bad == 0, "%s: %lld of %lld elements differ from PyTorch in bits", what, (long long)bad, (long long)n);
    return bad == 0;
}

static void *ref_raw(TestCase *tc, const Ref *r, const char *name, StDtype dt, int64_t numel) {
    const StTensor *t = r->ok ? st_find(&r->f, name) : NULL;
    CHECKF(t != NULL, "reference tensor '%s' missing", name);
    if (!t) return NULL;
    void *p = cp_malloc(st_dtype_size(dt) * (size_t)numel);
    CpErr e;
    if (st_copy(&r->f, t, dt, p, numel, &e) != CP_OK) {
        CHECKF(0, "%s", e.msg);
        cp_free(p);
        return NULL;
    }
    return p;
}

/* ---- (a) vs PyTorch ---- */

/* optim_powi must be the correctly rounded b**t (MPFR decides) wherever
 * b**t >= 2^-969 (optim.h: below, only 1 - b**t = 1 matters), and the
 * bias corrections 1 - b**t must equal Python's bit for bit. Python's raw
 * b**t comes from glibc pow (<= 0.52 ulp, not always correctly rounded): its
 * misroundings are counted and printed, not failed, since PyTorch only uses
 * 1 - b**t, where they vanish unless they straddle a rounding point of the
 * subtraction. */
static int64_t powi_vs_mpfr(double b, int64_t t0, int64_t t1) {
    mpfr_t x;
    mpfr_init2(x, 256);
    int64_t bad = 0;
    for (int64_t t = t0; t <= t1; t++) {
        mpfr_set_d(x, b, MPFR_RNDN);
        mpfr_pow_si(x, x, (long)t, MPFR_RNDN); /* 256 bits, then one rounding to double */
        double want = mpfr_get_d(x, MPFR_RNDN), got = optim_powi(b, t);
        if (want >= 0x1p-969) bad += memcmp(&want, &got, 8) != 0; /* the documented range */
    }
    mpfr_clear(x);
    return bad;
}

TEST(test_bias_correction_vs_python) {
    static const double betas[4] = {0.9, 0.999, 0.95, 0.98};
    int64_t tmax = test_quick() ? 2000 : 20000;
    for (int k = 0; k < 4; k++) {
        int64_t bad = powi_vs_mpfr(betas[k], 1, tmax) + powi_vs_mpfr(betas[k], 16777200, 16777216);
        printf("  optim_powi(%g, t), t = 1..%lld and 2^24-16..2^24 (results >= 2^-969): %lld not correctly "
               "rounded (MPFR)\n", betas[k],
               (long long)tmax, (long long)bad);
        CHECK(bad == 0);
    }
    Ref r;
    if (!ref_load(tc, &r, "optim")) return;
    const StTensor *ts = st_find(&r.f, "bc_steps");
    int64_t ns = ts ? ts->numel : 0;
    int64_t *steps = ref_raw(tc, &r, "bc_steps", ST_I64, ns);
    double *bc1 = ref_raw(tc, &r, "bc1", ST_F64, ns), *bc2 = ref_raw(tc, &r, "bc2", ST_F64, ns);
    double *pow2 = ref_raw(tc, &r, "pow2", ST_F64, ns);
    if (steps && bc1 && bc2 && pow2) {
        int64_t bad1 = 0, bad2 = 0, badp = 0;
        for (int64_t i = 0; i < ns; i++) {
            double a = 1.0 - optim_powi(B1, steps[i]), b = 1.0 - optim_powi(B2, steps[i]);
            double p = optim_powi(B2, steps[i]);
            bad1 += memcmp(&a, &bc1[i], 8) != 0;
            bad2 += memcmp(&b, &bc2[i], 8) != 0;
            badp += memcmp(&p, &pow2[i], 8) != 0;
        }
        printf("  vs Python over %lld steps (1..3000, up to 2^24): 1 - 0.9**t: %lld differ, 1 - 0.999**t: %lld "
               "differ; raw 0.999**t: %lld glibc misrounding(s) (informational)\n",
               (long long)ns, (long long)bad1, (long long)bad2, (long long)badp);
        CHECK(bad1 == 0 && bad2 == 0);
    }
    cp_free(steps), cp_free(bc1), cp_free(bc2), cp_free(pow2);
    ref_free(&r);
}

/* Runs `steps` optimizer steps from the reference's start and compares with
 * the saved per-step states. kind: 0 AdamW f64, 1 AdamW ops.h float,
 * 2 SGD f64, 3 SGD ops.h float, 4 plain SGD f64. */
static void run_vs_torch(TestCase *tc, const Ref *r, const char *pre, int kind, int64_t step0, float *m0,
                         float *v0) {
    int64_t n = ref_int(tc, r, "n");
    char nm[64];
    snprintf(nm, sizeof nm, "%s_grad", pre);
    const StTensor *tg = st_find(&r->f, nm);
    int64_t steps = tg ? tg->shape[0] : 0;
    float *p = ref_f32(tc, r, "p0", n), *g = ref_f32(tc, r, nm, steps * n);
    snprintf(nm, sizeof nm, "%s_param", pre);
    float *pref = ref_f32(tc, r, nm, steps * n), *mref = NULL, *vref = NULL;
    int adam = kind <= 1, f32api = kind == 1 || kind == 3;
    int tol = kind == 1; /* SGD takes each hyperparameter as float(x): its float signature is exact too */
    if (kind != 4) {
        snprintf(nm, sizeof nm, adam ? "%s_m" : "%s_buf", pre);
        mref = ref_f32(tc, r, nm, steps * n);
    }
    if (adam) {
        snprintf(nm, sizeof nm, "%s_v", pre);
        vref = ref_f32(tc, r, nm, steps * n);
    }
    float *m = alloc_f32(n), *v = alloc_f32(n);
    if (!p || !g || !pref || (kind != 4 && !mref) || (adam && !vref)) goto done;
    if (adam) {
        memset(m, 0, sizeof(float) * (size_t)n); /* PyTorch's initial state, or the preset one */
        memset(v, 0, sizeof(float) * (size_t)n);
        if (m0) memcpy(m, m0, sizeof(float) * (size_t)n);
        if (v0) memcpy(v, v0, sizeof(float) * (size_t)n);
    } else {
        poison(m, n); /* SGD buffer: output only at step 1 */
    }
    CpCtx ctx;
    ctx_threads(&ctx, 2);
    for (int64_t s = 0; s < steps; s++) {
        const float *gs = g + s * n;
        int64_t t = step0 + s + 1;
        if (kind == 0) adamw_step_cpu(p, m, v, gs, n, LR_ADAMW, B1, B2, EPS, WD, t, &ctx);
        if (kind == 1)
            adamw_step_cpu(p, m, v, gs, n, (float)LR_ADAMW, (float)B1, (float)B2, (float)EPS, (float)WD, t, &ctx);
        if (kind == 2) sgd_step_cpu(p, m, gs, n, LR_SGD, MOMENTUM, WD, t, &ctx);
        if (kind == 3) sgd_step_cpu(p, m, gs, n, (float)LR_SGD, (float)MOMENTUM, (float)WD, t, &ctx);
        if (kind == 4) sgd_step_cpu(p, NULL, gs, n, 0.1, 0.0, 0.0, t, &ctx);
        if (s == 0 && !adam && kind != 4) check_written(tc, "sgd momentum buffer after step 1", m, n);
        char what[80];
        const char *api = f32api ? " (ops.h float)" : "";
        snprintf(what, sizeof what, "%s step %lld param%s", pre, (long long)t, api);
        if (tol) check_close(tc, what, p, pref + s * n, n, TOL_F32API_ATOL, TOL_F32API_RTOL);
        else check_bits(tc, what, p, pref + s * n, n);
        if (mref) {
            snprintf(what, sizeof what, "%s step %lld %s%s", pre, (long long)t, adam ? "m" : "buf", api);
            if (tol) check_close(tc, what, m, mref + s * n, n, TOL_F32API_M_ATOL, TOL_F32API_M_RTOL);
            else check_bits(tc, what, m, mref + s * n, n);
        }
        if (vref) {
            snprintf(what, sizeof what, "%s step %lld v%s", pre, (long long)t, api);
            if (tol) check_close(tc, what, v, vref + s * n, n, TOL_F32API_V_ATOL, TOL_F32API_V_RTOL);
            else check_bits(tc, what, v, vref + s * n, n);
        }
    }
done:
    cp_free(p), cp_free(g), cp_free(pref), cp_free(mref), cp_free(vref), cp_free(m), cp_free(v);
}

TEST(test_adamw_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "optim")) return;
    run_vs_torch(tc, &r, "adamw", 0, 0, NULL, NULL);
    run_vs_torch(tc, &r, "adamw", 1, 0, NULL, NULL);
    int64_t n = ref_int(tc, &r, "n");
    float *m0 = ref_f32(tc, &r, "adamwL_m0", n), *v0 = ref_f32(tc, &r, "adamwL_v0", n);
    if (m0 && v0) run_vs_torch(tc, &r, "adamwL", 0, ref_int(tc, &r, "adamwL_step0"), m0, v0);
    cp_free(m0), cp_free(v0);
    ref_free(&r);
}

TEST(test_sgd_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "optim")) return;
    run_vs_torch(tc, &r, "sgd", 2, 0, NULL, NULL);
    run_vs_torch(tc, &r, "sgd", 3, 0, NULL, NULL);
    run_vs_torch(tc, &r, "sgd0", 4, 0, NULL, NULL);
    ref_free(&r);
}

/* ---- (b) independent double-precision transcription ---- */

TEST(test_vs_double_textbook) {
    const int64_t n = 1001;
    float *p = alloc_f32(n), *m = alloc_f32(n), *v = alloc_f32(n), *g = alloc_f32(n), *b = alloc_f32(n);
    float *q = alloc_f32(n);
    double *pd = cp_malloc(sizeof(double) * n), *md = cp_malloc(sizeof(double) * n);
    double *vd = cp_malloc(sizeof(double) * n);
    fill_uniform(p, n, 1, -1.0f, 1.0f);
    memcpy(q, p, sizeof(float) * (size_t)n);
    memset(m, 0, sizeof(float) * (size_t)n), memset(v, 0, sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) pd[i] = p[i], md[i] = 0, vd[i] = 0;
    CpCtx ctx;
    ctx_threads(&ctx, 1);
    double b1t = 1, b2t = 1;
    for (int t = 1; t <= 10; t++) {
        fill_uniform(g, n, 100 + (uint32_t)t, -1.0f, 1.0f);
        adamw_step_cpu(p, m, v, g, n, LR_ADAMW, B1, B2, EPS, WD, t, &ctx);
        b1t *= B1, b2t *= B2;
        for (int64_t i = 0; i < n; i++) { /* p -= lr*wd*p; m, v; p -= lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps) */
            pd[i] -= LR_ADAMW * WD * pd[i];
            md[i] = B1 * md[i] + (1 - B1) * g[i];
            vd[i] = B2 * vd[i] + (1 - B2) * g[i] * g[i];
            pd[i] -= LR_ADAMW / (1 - b1t) * md[i] / (sqrt(vd[i]) / sqrt(1 - b2t) + EPS);
        }
    }
    float *pf = alloc_f32(n);
    for (int64_t i = 0; i < n; i++) pf[i] = (float)pd[i];
    check_close(tc, "adamw 10 steps vs double textbook", p, pf, n, TOL_F64REF_ATOL, TOL_F64REF_RTOL);
    /* SGD: buf = momentum*buf + (g + wd*p), p -= lr*buf */
    for (int64_t i = 0; i < n; i++) pd[i] = q[i], md[i] = 0;
    for (int t = 1; t <= 10; t++) {
        fill_uniform(g, n, 200 + (uint32_t)t, -1.0f, 1.0f);
        sgd_step_cpu(q, b, g, n, LR_SGD, MOMENTUM, WD, t, &ctx);
        for (int64_t i = 0; i < n; i++) {
            double d = g[i] + WD * pd[i];
            md[i] = t == 1 ? d : MOMENTUM * md[i] + d;
            pd[i] -= LR_SGD * md[i];
        }
    }
    for (int64_t i = 0; i < n; i++) pf[i] = (float)pd[i];
    check_close(tc, "sgd 10 steps vs double textbook", q, pf, n, TOL_F64REF_ATOL, TOL_F64REF_RTOL);
    cp_free(p), cp_free(m), cp_free(v), cp_free(g), cp_free(b), cp_free(q), cp_free(pd), cp_free(md), cp_free(vd);
    cp_free(pf);
}

/* ---- (c) threads and SIMD width ---- */

/* The per-element functions one element at a time, never vectorized. */
__attribute__((optimize("no-tree-vectorize"))) static void scalar_steps(float *p, float *m, float *v, float *b,
                                                                       const float *g, int64_t n, int t) {
    AdamwCoef ca = adamw_coef(LR_ADAMW, B1, B2, EPS, WD, t);
    SgdCoef cs = sgd_coef(LR_SGD, MOMENTUM, WD);
    for (int64_t i = 0; i < n; i++) adamw_update(&p[i], &m[i], &v[i], g[i], &ca);
    for (int64_t i = 0; i < n; i++) sgd_update(&p[i], &b[i], g[i], t == 1, &cs);
}

TEST(test_threads_and_simd_identical) {
    const int64_t n = test_quick() ? 100003 : 1000003;
    float *st[4][4]; /* [run][p, m, v, buf]: runs = threads 1, 2, 3, scalar loop */
    float *g = alloc_f32(n);
    for (int k = 0; k < 4; k++) {
        for (int j = 0; j < 4; j++) st[k][j] = alloc_f32(n);
        fill_uniform(st[k][0], n, 1, -1.0f, 1.0f);
        memset(st[k][1], 0, sizeof(float) * (size_t)n), memset(st[k][2], 0, sizeof(float) * (size_t)n);
        memset(st[k][3], 0, sizeof(float) * (size_t)n);
    }
    for (int t = 1; t <= 3; t++) {
        fill_uniform(g, n, 10 + (uint32_t)t, -3.0f, 3.0f);
        for (int k = 0; k < 3; k++) {
            CpCtx ctx;
            ctx_threads(&ctx, k + 1);
            adamw_step_cpu(st[k][0], st[k][1], st[k][2], g, n, LR_ADAMW, B1, B2, EPS, WD, t, &ctx);
            sgd_step_cpu(st[k][0], st[k][3], g, n, LR_SGD, MOMENTUM, WD, t, &ctx);
        }
        scalar_steps(st[3][0], st[3][1], st[3][2], st[3][3], g, n, t);
    }
    static const char *names[4] = {"param", "adamw m", "adamw v", "sgd buf"};
    for (int k = 1; k < 4; k++)
        for (int j = 0; j < 4; j++) {
            char what[64];
            snprintf(what, sizeof what, "%s: threads 1 vs %s", names[j], k < 3 ? (k == 1 ? "2" : "3") : "scalar");
            check_same_bytes(tc, what, st[0][j], st[k][j], sizeof(float) * (size_t)n);
        }
    printf("  n=%lld, 3 AdamW + SGD steps: threads 1/2/3 and the scalar loop byte-identical\n", (long long)n);
    cp_free(g);
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 4; j++) cp_free(st[k][j]);
}

TEST_MAIN(T(test_bias_correction_vs_python), T(test_adamw_vs_torch), T(test_sgd_vs_torch),
          T(test_vs_double_textbook), T(test_threads_and_simd_identical))
