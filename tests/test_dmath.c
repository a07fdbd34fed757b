/* test_dmath.c - accuracy of core/dmath.h (DESIGN.md rule 5), in float ulps.
 *
 * For every function:
 *  1. special values (zeros, infinities, NaNs, subnormals, FLT_MAX, overflow
 *     and underflow thresholds, multiples of pi/2, piece boundaries) against
 *     MPFR at 256 bits: error <= 1 ulp, NaN/inf exactly as MPFR (C99 Annex F),
 *     and the exact bits (sign of zero included) wherever the true result is
 *     a float (exp(0) = 1, log(1) = 0, sin(-0) = -0, pow(2, 3) = 8, ...);
 *  2. N random inputs (10M, or 100k with CP_TEST_QUICK=1), half of them
 *     random finite bit patterns, half uniform over the function's working
 *     range, against double-precision glibc (its error, < 1 double ulp, is
 *     ~2^-29 float ulp); the first M of them (200k / 10k) also against MPFR,
 *     which validates the double reference itself.
 * Error in ulps = |ours - exact| / ulp(exact), ulp that of a float at the
 * exact value's magnitude (2^-149 in the subnormal range; an infinite result
 * counts as 2^128 so that rounding to inf at the overflow threshold measures
 * like any other rounding). The test prints one table row per function. */
#include <float.h>
#include <math.h>
#include <mpfr.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/dmath.h"
#include "tests/harness.h"
#include "tests/ulp.h"

#define MPFR_PREC 256

/* ---- small helpers ------------------------------------------------------- */

/* Stateless counter-based generator: input i never depends on threads. */
static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint64_t rnd(uint64_t seed, uint64_t i) { return mix64(mix64(seed) ^ mix64(i)); }
static double unit(uint64_t r) { return (double)(r >> 11) * 0x1p-53; }
static float finite_bits(uint32_t b) {
    if ((b & 0x7f800000u) == 0x7f800000u) b &= 0xbfffffffu; /* clear top exponent bit */
    return u2f(b);
}

/* NaN/inf disagreement with the correctly rounded result of `ref`. */
static int naninf_mismatch(float got, double ref) {
    if (isnan(got) != isnan(ref)) return 1;
    if (isnan(ref)) return 0;
    float cr = (float)ref;
    if (isinf(got) != isinf(cr)) return 1;
    return isinf(got) && !signbit(got) != !signbit(cr);
}

/* Same against an MPFR value (`exact`, finite, infinite or NaN). */
static double err_ulp_mpfr(float got, mpfr_srcptr exact) {
    if (mpfr_nan_p(exact) || isnan(got)) return (mpfr_nan_p(exact) && isnan(got)) ? 0.0 : INFINITY;
    if (mpfr_inf_p(exact))
        return (isinf(got) && (signbit(got) != 0) == (mpfr_signbit(exact) != 0)) ? 0.0 : INFINITY;
    if (isinf(got) && (signbit(got) != 0) == (mpfr_signbit(exact) != 0) && mpfr_get_exp(exact) > 128)
        return 0.0; /* |exact| >= 2^128: inf is the correctly rounded float */
    mpfr_t g, d;
    mpfr_inits2(MPFR_PREC + 64, g, d, (mpfr_ptr)0);
    if (isinf(got)) mpfr_set_si_2exp(g, signbit(got) ? -1 : 1, 128, MPFR_RNDN);
    else mpfr_set_flt(g, got, MPFR_RNDN);
    mpfr_sub(d, g, exact, MPFR_RNDN);
    double diff = fabs(mpfr_get_d(d, MPFR_RNDN));
    double ulp = 0x1p-149;
    if (!mpfr_zero_p(exact)) {
        long e = mpfr_get_exp(exact) - 1; /* floor(log2 |exact|) */
        if (e > 127) e = 127;
        if (e >= -126) ulp = ldexp(1.0, (int)e - 23);
    }
    mpfr_clears(g, d, (mpfr_ptr)0);
    return diff / ulp;
}

/* ---- MPFR references (return the OR of the ternary values: 0 = exact) ---- */

static int m_sigmoid(mpfr_ptr r, mpfr_srcptr x, mpfr_rnd_t rnd_) {
    int t = mpfr_neg(r, x, rnd_) != 0;
    t |= mpfr_exp(r, r, rnd_) != 0;
    t |= mpfr_add_ui(r, r, 1, rnd_) != 0;
    t |= mpfr_ui_div(r, 1, r, rnd_) != 0;
    return t;
}
static int m_softplus(mpfr_ptr r, mpfr_srcptr x, mpfr_rnd_t rnd_) {
    int t;
    if (mpfr_sgn(x) > 0) { /* x + log1p(exp(-x)) */
        mpfr_t a;
        mpfr_init2(a, mpfr_get_prec(r));
        t = mpfr_neg(a, x, rnd_) != 0;
        t |= mpfr_exp(a, a, rnd_) != 0;
        t |= mpfr_log1p(a, a, rnd_) != 0;
        t |= mpfr_add(r, x, a, rnd_) != 0;
        mpfr_clear(a);
        return t;
    }
    t = mpfr_exp(r, x, rnd_) != 0;
    t |= mpfr_log1p(r, r, rnd_) != 0;
    return t;
}

/* ---- double references ---------------------------------------------------- */

static double d_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double d_softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* ---- the unary functions under test --------------------------------------- */

typedef struct {
    const char *name;
    float (*ours)(float);
    double (*refd)(double);
    int (*refm)(mpfr_ptr, mpfr_srcptr, mpfr_rnd_t);
    double lo, hi; /* range of the uniform half of the random inputs */
} Fn1;

static float w_exp(float x) { return cp_expf(x); }
static float w_expm1(float x) { return cp_expm1f(x); }
static float w_log(float x) { return cp_logf(x); }
static float w_log1p(float x) { return cp_log1pf(x); }
static float w_tanh(float x) { return cp_tanhf(x); }
static float w_erf(float x) { return cp_erff(x); }
static float w_sigmoid(float x) { return cp_sigmoidf(x); }
static float w_softplus(float x) { return cp_softplusf(x); }
static float w_sin(float x) { return cp_sinf(x); }
static float w_cos(float x) { return cp_cosf(x); }

static const Fn1 FNS[] = {
    {"exp", w_exp, exp, mpfr_exp, -104, 89},
    {"expm1", w_expm1, expm1, mpfr_expm1, -20, 89},
    {"log", w_log, log, mpfr_log, 0, 4},
    {"log1p", w_log1p, log1p, mpfr_log1p, -1, 4},
    {"tanh", w_tanh, tanh, mpfr_tanh, -10, 10},
    {"erf", w_erf, erf, mpfr_erf, -6, 6},
    {"sigmoid", w_sigmoid, d_sigmoid, m_sigmoid, -110, 30},
    {"softplus", w_softplus, d_softplus, m_softplus, -30, 30},
    {"sin", w_sin, sin, mpfr_sin, -1000, 1000},
    {"cos", w_cos, cos, mpfr_cos, -1000, 1000},
};
#define NFNS ((int)(sizeof FNS / sizeof FNS[0]))

static const Fn1 *fn_by_name(const char *name) {
    for (int i = 0; i < NFNS; i++)
        if (!strcmp(FNS[i].name, name)) return &FNS[i];
    return NULL;
}

/* Inputs every unary function is checked at (bits). */
static const uint32_t SPECIAL_BITS[] = {
    0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7fa00001, /* sNaN */
    0x00000001, 0x80000001, 0x007fffff, 0x807fffff, 0x00800000, 0x80800000, 0x7f7fffff, 0xff7fffff,
    0x3f800000, 0xbf800000, 0x3f7fffff, 0x3f800001, 0xbf7fffff, 0xbf800001, 0x40000000, 0xc0000000,
    0x3f000000, 0xbf000000, 0x40400000, 0x40800000, 0x407fffff, 0x40800001, 0x3fffffff, 0x40000001,
    0x41200000, 0xc1200000, 0x411fffff, 0x42c80000, 0xc2c80000, /* +-10, +-100 */
    0x31800000, 0x317fffff, 0x31000000, 0xb1800000, /* 2^-28 boundary */
    0x2edbe6ff, 0xaedbe6ff, 0x0da24260, 0x33800000, 0x33000000, /* 1e-10, 1e-30, 2^-24, 2^-25 */
    0x3eb17218, 0xbeb17218, /* ln2/2 */
    0x42b17217, 0x42b17218, 0x42b17219, 0xc2aeac4f, 0xc2aeac50, 0xc2cff1b4, 0xc2cff1b5, 0xc2d00000,
    0x42b20000, 0xc1cab4cd, 0xc18aa122, 0x41102cb4, 0x417aaaab, 0x407ad444, /* -25.3, -17.33, 9.01, 15.7, 3.92 */
    0x42200000, 0xc2200000, 0x42dc0000, 0xc2dc0000, /* +-40, +-110 */
    0x3fc90fdb, 0xbfc90fdb, 0x40490fdb, 0x40c90fdb, 0x4096cbe4, 0x411c463b, 0x4a9a2d49, 0x4b490fdb,
    0x497fffff, 0x49800000, 0x49800001, 0x46c90fdb, 0x5922aa80, 0x6c7a2aa6, 0x7e7a2aa6, 0x60e7c4b5,
    0x5cf9ab2b, /* 16367173 * 2^72 */
    0x3f490fdb, 0x3f490fdc, 0x3f490fda, /* pi/4 */
};
#define NSPECIAL ((int)(sizeof SPECIAL_BITS / sizeof SPECIAL_BITS[0]))

/* Special values of one unary function against MPFR. Returns max ulp. */
static double check_specials(TestCase *tc, const Fn1 *f) {
    mpfr_t x, r;
    mpfr_inits2(MPFR_PREC, x, r, (mpfr_ptr)0);
    double maxe = 0;
    for (int i = 0; i < NSPECIAL; i++) {
        for (int neg = 0; neg < 2; neg++) {
            uint32_t b = SPECIAL_BITS[i] ^ (neg ? 0x80000000u : 0u);
            float xf = u2f(b), got = f->ours(xf);
            mpfr_set_flt(x, xf, MPFR_RNDN);
            int inexact = f->refm(r, x, MPFR_RNDN);
            double e = err_ulp_mpfr(got, r);
            if (e > maxe) maxe = e;
            CHECKF(e <= 1.0, "%s(%a = 0x%08x) = %a, %.3f ulp", f->name, xf, b, got, e);
            if (isnan(xf)) /* contract: the input NaN, quieted */
                CHECKF(f2u(got) == (b | 0x00400000u), "%s(NaN 0x%08x) = 0x%08x", f->name, b, f2u(got));
            /* exactly representable true result -> exact bits (sign of 0 too) */
            if (!mpfr_nan_p(r) && !inexact) {
                float cr = mpfr_get_flt(r, MPFR_RNDN);
                mpfr_t back;
                mpfr_init2(back, 64);
                mpfr_set_flt(back, cr, MPFR_RNDN);
                if (mpfr_equal_p(back, r) || mpfr_inf_p(r))
                    CHECKF(f2u(got) == f2u(cr), "%s(%a) = %a (0x%08x), exact %a (0x%08x)", f->name, xf, got,
                           f2u(got), cr, f2u(cr));
                mpfr_clear(back);
            }
        }
    }
    mpfr_clears(x, r, (mpfr_ptr)0);
    return maxe;
}

/* One result of a sweep: max error and the input that produced it. */
typedef struct {
    double max_ulp;
    float worst_x, worst_y;
    long long n, over_half, naninf;
    double ref_err; /* max |double ref - MPFR| in float ulps */
} Stats;

static void stats_merge(Stats *s, double e, float x, float y, long long idx, long long *best_idx) {
    if (e > s->max_ulp || (e == s->max_ulp && idx < *best_idx)) {
        s->max_ulp = e;
        s->worst_x = x;
        s->worst_y = y;
        *best_idx = idx;
    }
}

static float gen1(const Fn1 *f, uint64_t seed, long long i) {
    uint64_t r = rnd(seed, (uint64_t)i);
    if (i & 1) return (float)(f->lo + (f->hi - f->lo) * unit(r));
    return finite_bits((uint32_t)r);
}

/* N random inputs against double libm; the first M also against MPFR. */
static void sweep1(const Fn1 *f, long long n, long long m, Stats *lib, Stats *mp) {
    uint64_t seed = mix64((uint64_t)(f - FNS) + 1);
    memset(lib, 0, sizeof *lib);
    memset(mp, 0, sizeof *mp);
    long long best_lib = n, best_mp = n;
#pragma omp parallel
    {
        Stats a = {0}, b = {0};
        long long ba = n, bb = n;
        mpfr_t x, r;
        mpfr_inits2(MPFR_PREC, x, r, (mpfr_ptr)0);
#pragma omp for schedule(static)
        for (long long i = 0; i < n; i++) {
            float xf = gen1(f, seed, i), got = f->ours(xf);
            double ref = f->refd((double)xf);
            double e = err_ulp(got, ref);
            a.n++;
            a.over_half += e > 0.5;
            a.naninf += naninf_mismatch(got, ref);
            stats_merge(&a, e, xf, 0, i, &ba);
            if (i < m) {
                mpfr_set_flt(x, xf, MPFR_RNDN);
                f->refm(r, x, MPFR_RNDN);
                double em = err_ulp_mpfr(got, r);
                b.n++;
                b.over_half += em > 0.5;
                stats_merge(&b, em, xf, 0, i, &bb);
                if (!mpfr_nan_p(r) && !mpfr_inf_p(r) && fabs(ref) <= FLT_MAX) {
                    double er = fabs(ref - mpfr_get_d(r, MPFR_RNDN)) / ulp_at(ref);
                    if (er > b.ref_err) b.ref_err = er;
                }
            }
        }
        mpfr_clears(x, r, (mpfr_ptr)0);
#pragma omp critical
        {
            lib->n += a.n;
            lib->over_half += a.over_half;
            lib->naninf += a.naninf;
            stats_merge(lib, a.max_ulp, a.worst_x, 0, ba, &best_lib);
            mp->n += b.n;
            mp->over_half += b.over_half;
            if (b.ref_err > mp->ref_err) mp->ref_err = b.ref_err;
            stats_merge(mp, b.max_ulp, b.worst_x, 0, bb, &best_mp);
        }
    }
    mpfr_free_cache();
}

static long long n_random(void) { return test_quick() ? 100000 : 10000000; }
static long long n_mpfr(void) { return test_quick() ? 10000 : 200000; }

static void print_header(void) {
    static int printed = 0; /* one header for the whole table */
    if (printed++) return;
    printf("  %-9s | %-10s | %-10s | %-33s | %-9s | %-8s | %-8s\n", "function", "max ulp", "vs MPFR",
           "worst input (hex, %g)", "inputs", ">0.5 ulp", "ref err");
}
static void print_row(const char *name, const Stats *lib, const Stats *mp, double spec, int nspec, float wy,
                      int two) {
    char in[64];
    const Stats *w = lib->max_ulp >= mp->max_ulp ? lib : mp;
    if (two)
        snprintf(in, sizeof in, "%a, %a", w->worst_x, wy);
    else
        snprintf(in, sizeof in, "0x%08x %.9g", f2u(w->worst_x), w->worst_x);
    double m = mp->max_ulp > spec ? mp->max_ulp : spec;
    printf("  %-9s | %-10.8f | %-10.8f | %-33s | %-9lld | %-8lld | %.1e\n", name,
           lib->max_ulp > m ? lib->max_ulp : m, m, in, lib->n + nspec, lib->over_half, mp->ref_err);
    fflush(stdout);
}

static void run_unary(TestCase *tc, const char *name) {
    const Fn1 *f = fn_by_name(name);
    CHECK(f != NULL);
    if (!f) return;
    double spec = check_specials(tc, f);
    Stats lib, mp;
    sweep1(f, n_random(), n_mpfr(), &lib, &mp);
    print_header();
    print_row(f->name, &lib, &mp, spec, 2 * NSPECIAL, 0, 0);
    CHECKF(lib.max_ulp <= 1.0, "%s: %.4f ulp at %a", name, lib.max_ulp, lib.worst_x);
    CHECKF(mp.max_ulp <= 1.0, "%s: %.4f ulp vs MPFR at %a", name, mp.max_ulp, mp.worst_x);
    CHECKF(lib.naninf == 0, "%s: %lld NaN/inf mismatches", name, lib.naninf);
    /* the double reference must be far more accurate than a float ulp */
    CHECKF(mp.ref_err < 1e-3, "%s: double libm reference off by %.3g float ulp", name, mp.ref_err);
}

TEST(test_exp) { run_unary(tc, "exp"); }
TEST(test_expm1) { run_unary(tc, "expm1"); }
TEST(test_log) { run_unary(tc, "log"); }
TEST(test_log1p) { run_unary(tc, "log1p"); }
TEST(test_tanh) { run_unary(tc, "tanh"); }
TEST(test_erf) { run_unary(tc, "erf"); }
TEST(test_sigmoid) { run_unary(tc, "sigmoid"); }
TEST(test_softplus) { run_unary(tc, "softplus"); }
TEST(test_sin) { run_unary(tc, "sin"); }
TEST(test_cos) { run_unary(tc, "cos"); }

/* Symmetries that hold bit for bit: odd and even functions. */
TEST(test_symmetry) {
    long long bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static)
    for (long long i = 0; i < 1000000; i++) {
        float x = finite_bits((uint32_t)rnd(77, (uint64_t)i) & 0x7fffffffu), m = -x;
        bad += f2u(cp_sinf(m)) != (f2u(cp_sinf(x)) ^ 0x80000000u);
        bad += f2u(cp_tanhf(m)) != (f2u(cp_tanhf(x)) ^ 0x80000000u);
        bad += f2u(cp_erff(m)) != (f2u(cp_erff(x)) ^ 0x80000000u);
        bad += f2u(cp_cosf(m)) != f2u(cp_cosf(x));
    }
    CHECKF(bad == 0, "%lld symmetry violations", bad);
}

/* ---- pow ------------------------------------------------------------------- */

static const float POW_SPECIAL[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f, -1.0f, 2.0f, -2.0f, 0.5f,
                                    -0.5f, 3.0f, -3.0f, 1.5f, -1.5f, 0.1f, 10.0f, 0x1p-149f, -0x1p-149f,
                                    FLT_MAX, -FLT_MAX, 0x1p24f, 0x1p24f + 2, 0x1p23f + 1, 127.0f, 128.0f,
                                    -128.0f, -149.0f, -150.0f, 0.99999994f, 1.0000001f, 0x1.000002p0f};
#define NPOW_SPECIAL ((int)(sizeof POW_SPECIAL / sizeof POW_SPECIAL[0]))

/* Random (x, y) pairs, four classes by i mod 4: positive x with y scaled so
 * that y log2 x spans [-160, 140] (overflow, underflow and subnormal results);
 * x in (0, 4] with y in [-50, 50]; negative x with integer y in [-60, 60];
 * both random finite bit patterns (mostly 0, inf, NaN). */
static void gen_pow(long long i, float *x, float *y) {
    uint64_t r1 = rnd(1001, (uint64_t)i), r2 = rnd(1002, (uint64_t)i);
    switch (i & 3) {
    case 0: {
        *x = finite_bits((uint32_t)r1 & 0x7fffffffu);
        double l2 = log2((double)*x);
        double t = -160 + 300 * unit(r2);
        *y = l2 == 0 || *x == 0 ? (float)t : (float)(t / l2);
        break;
    }
    case 1:
        *x = (float)(4 * unit(r1));
        *y = (float)(-50 + 100 * unit(r2));
        break;
    case 2:
        *x = (r1 & 1) ? -(float)(4 * unit(r1)) : finite_bits((uint32_t)r1 | 0x80000000u);
        *y = (float)((int)(r2 % 121) - 60);
        break;
    default:
        *x = finite_bits((uint32_t)r1);
        *y = finite_bits((uint32_t)r2);
    }
}

TEST(test_pow) {
    mpfr_t mx, my, mr;
    mpfr_inits2(MPFR_PREC, mx, my, mr, (mpfr_ptr)0);
    double spec = 0;
    for (int i = 0; i < NPOW_SPECIAL; i++)
        for (int j = 0; j < NPOW_SPECIAL; j++) {
            float x = POW_SPECIAL[i], y = POW_SPECIAL[j], got = cp_powf(x, y);
            mpfr_set_flt(mx, x, MPFR_RNDN);
            mpfr_set_flt(my, y, MPFR_RNDN);
            int inexact = mpfr_pow(mr, mx, my, MPFR_RNDN);
            double e = err_ulp_mpfr(got, mr);
            if (e > spec) spec = e;
            CHECKF(e <= 1.0, "pow(%a, %a) = %a, %.3f ulp", x, y, got, e);
            if (!mpfr_nan_p(mr) && !inexact) {
                float cr = mpfr_get_flt(mr, MPFR_RNDN);
                if (mpfr_cmp_d(mr, (double)cr) == 0 || mpfr_inf_p(mr))
                    CHECKF(f2u(got) == f2u(cr), "pow(%a, %a) = %a, exact %a", x, y, got, cr);
            }
        }
    mpfr_clears(mx, my, mr, (mpfr_ptr)0);

    long long n = n_random(), m = n_mpfr();
    Stats lib = {0}, mp = {0};
    long long best_lib = n, best_mp = n;
#pragma omp parallel
    {
        Stats a = {0}, b = {0};
        long long ba = n, bb = n;
        mpfr_t x, y, r;
        mpfr_inits2(MPFR_PREC, x, y, r, (mpfr_ptr)0);
#pragma omp for schedule(static)
        for (long long i = 0; i < n; i++) {
            float xf, yf;
            gen_pow(i, &xf, &yf);
            float got = cp_powf(xf, yf);
            double ref = pow((double)xf, (double)yf);
            double e = err_ulp(got, ref);
            a.n++;
            a.over_half += e > 0.5;
            a.naninf += naninf_mismatch(got, ref);
            stats_merge(&a, e, xf, yf, i, &ba);
            if (i < m) {
                mpfr_set_flt(x, xf, MPFR_RNDN);
                mpfr_set_flt(y, yf, MPFR_RNDN);
                mpfr_pow(r, x, y, MPFR_RNDN);
                double em = err_ulp_mpfr(got, r);
                b.n++;
                stats_merge(&b, em, xf, yf, i, &bb);
                if (!mpfr_nan_p(r) && !mpfr_inf_p(r) && fabs(ref) <= FLT_MAX) {
                    double er = fabs(ref - mpfr_get_d(r, MPFR_RNDN)) / ulp_at(ref);
                    if (er > b.ref_err) b.ref_err = er;
                }
            }
        }
        mpfr_clears(x, y, r, (mpfr_ptr)0);
#pragma omp critical
        {
            lib.n += a.n;
            lib.over_half += a.over_half;
            lib.naninf += a.naninf;
            stats_merge(&lib, a.max_ulp, a.worst_x, a.worst_y, ba, &best_lib);
            mp.n += b.n;
            if (b.ref_err > mp.ref_err) mp.ref_err = b.ref_err;
            stats_merge(&mp, b.max_ulp, b.worst_x, b.worst_y, bb, &best_mp);
        }
    }
    mpfr_free_cache();
    print_header();
    print_row("pow", &lib, &mp, spec, NPOW_SPECIAL * NPOW_SPECIAL, lib.max_ulp >= mp.max_ulp ? lib.worst_y : mp.worst_y, 1);
    CHECKF(lib.max_ulp <= 1.0, "pow: %.4f ulp at (%a, %a)", lib.max_ulp, lib.worst_x, lib.worst_y);
    CHECKF(mp.max_ulp <= 1.0, "pow: %.4f ulp vs MPFR at (%a, %a)", mp.max_ulp, mp.worst_x, mp.worst_y);
    CHECKF(lib.naninf == 0, "pow: %lld NaN/inf mismatches", lib.naninf);
    CHECKF(mp.ref_err < 1e-3, "pow: double libm reference off by %.3g float ulp", mp.ref_err);
}

TEST_MAIN(T(test_exp), T(test_expm1), T(test_log), T(test_log1p), T(test_tanh), T(test_erf),
          T(test_sigmoid), T(test_softplus), T(test_sin), T(test_cos), T(test_pow), T(test_symmetry))
