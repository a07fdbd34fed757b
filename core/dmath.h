/* dmath.h - deterministic float transcendental functions, the same bits on the
 * CPU (C11) and the GPU (CUDA C++). DESIGN.md rule 5.
 *
 *   cp_expf cp_expm1f cp_logf cp_log1pf cp_tanhf cp_erff cp_sigmoidf
 *   cp_softplusf cp_sinf cp_cosf cp_powf
 *
 * Contract
 * - Built only from IEEE add/sub/mul/div, explicit fma(), integer and bit
 *   operations and float<->double<->integer conversions of in-range values.
 *   No libm or CUDA math-library transcendental is called, no long double, no
 *   __int128. Every fused multiply-add is an explicit fma() (host compiled
 *   with -ffp-contract=off, device with --fmad=false), so every operation and
 *   its order is fixed by this file and both compilers produce the same bits.
 * - Method: the float argument is widened to double, the function is computed
 *   in double with a relative error of a few 2^-53 (reduction + a minimax
 *   polynomial whose own error is <= 2^-54), and the result is rounded to
 *   float once. The float result is therefore within 0.5 ulp + ~2^-25 ulp of
 *   the exact value (pow: 0.5 + ~2^-20 ulp): correctly rounded except for
 *   inputs whose exact result lies within that distance of a rounding
 *   midpoint. Subnormal float results come out of the same single rounding.
 * - NaN results never come from arithmetic on NaN (whose payload differs
 *   between CPU and GPU): a NaN input returns that NaN quieted (payload kept),
 *   an invalid operation (log(-1), sin(inf), pow(-2, 0.5)) returns the quiet
 *   NaN 0x7fc00000. Special values follow C99 Annex F (signed zeros included).
 *
 * Polynomial coefficients: weighted minimax (Remez exchange) fits computed
 * with mpmath at 256 bits, then rounded to double; the error quoted beside
 * each set is the measured maximum with the rounded coefficients. Constants
 * of pi, ln2 and 2/pi are their correctly rounded doubles (and the rounded
 * remainders for the Cody-Waite splits); the 2/pi bit table is
 * floor(2/pi * 2^256) in 32-bit words.
 *
 * Performance: each call is ~15-40 double operations; double throughput on
 * data-centre GPUs (H100: half of float) makes this fine for the places these
 * functions are used (activations, losses, Box-Muller, augmentations). */
#ifndef CP_DMATH_H
#define CP_DMATH_H

#include <math.h> /* fma only: a correctly rounded IEEE operation */
#include <stdint.h>
#include <string.h>

#include "hd.h"

/* ---- bit casts and small helpers ------------------------------------------ */

CP_HD static inline uint32_t cp_dm_f2u(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
CP_HD static inline float cp_dm_u2f(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
CP_HD static inline uint64_t cp_dm_d2u(double x) {
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
CP_HD static inline double cp_dm_u2d(uint64_t u) {
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

#define CP_DM_INF_BITS 0x7f800000u
#define CP_DM_NAN_BITS 0x7fc00000u /* the NaN of an invalid operation */

/* A NaN input, quieted, payload kept (bit ops only: same on CPU and GPU). */
CP_HD static inline float cp_dm_qnan(uint32_t ix) { return cp_dm_u2f(ix | 0x00400000u); }
CP_HD static inline float cp_dm_inf(int negative) {
    return cp_dm_u2f(CP_DM_INF_BITS | (negative ? 0x80000000u : 0u));
}
/* -x by flipping the sign bit (exact for every value, zeros included). */
CP_HD static inline float cp_dm_negf(float x) { return cp_dm_u2f(cp_dm_f2u(x) ^ 0x80000000u); }

/* Round-to-nearest-even of a double with |v| < 2^51: adding 1.5*2^52 leaves no
 * fraction bits, subtracting it back is exact. */
CP_HD static inline double cp_dm_rint(double v) {
    const double magic = 0x1.8p52;
    return (v + magic) - magic;
}

/* 2^n as a double for -1022 <= n <= 1023 (a normal number), built from bits. */
CP_HD static inline double cp_dm_pow2i(int n) { return cp_dm_u2d((uint64_t)(n + 1023) << 52); }

/* ---- double-precision cores ------------------------------------------------ */

#define CP_DM_LOG2E 0x1.71547652b82fep+0  /* 1/ln2 */
#define CP_DM_LN2_HI 0x1.62e42fefa39efp-1 /* ln2 rounded to double */
#define CP_DM_LN2_LO 0x1.abc9e3b39803fp-56 /* ln2 - LN2_HI rounded */

/* expm1(r) for |r| <= 0.34658 (ln2/2 plus rounding slack):
 *   expm1(r) = r + r^2/2 + r^3 G(r), G of degree 9, minimax for the weight
 *   (r^2 + 0.01)/(1 + r), i.e. relative error of expm1(r) <= 2^-58.9. */
CP_HD static inline double cp_dm_expm1_core(double r) {
    double g = 0x1.1e34904ceb490p-29;
    g = fma(g, r, 0x1.af50b17d8cf52p-26);
    g = fma(g, r, 0x1.27e59cf6be288p-22);
    g = fma(g, r, 0x1.71de00db11766p-19);
    g = fma(g, r, 0x1.a01a0154bec37p-16);
    g = fma(g, r, 0x1.a01a01ac48448p-13);
    g = fma(g, r, 0x1.6c16c16c242a7p-10);
    g = fma(g, r, 0x1.1111111110087p-7);
    g = fma(g, r, 0x1.555555555553dp-5);
    g = fma(g, r, 0x1.5555555555557p-3);
    double h = fma(g, r, 0.5); /* 1/2 + r G(r) */
    return fma(r * r, h, r);
}

/* Cody-Waite reduction t = n ln2 + r, |r| <= 0.34658, for |t| <= 708. The
 * products n*LN2_HI, n*LN2_LO are exact inside fma; the neglected tail of ln2
 * (< 2^-108) times |n| <= 1022 is far below double resolution of r. */
CP_HD static inline double cp_dm_exp_reduce(double t, int *n) {
    double k = cp_dm_rint(t * CP_DM_LOG2E);
    double r = fma(-k, CP_DM_LN2_HI, t);
    r = fma(-k, CP_DM_LN2_LO, r);
    *n = (int)k;
    return r;
}

/* exp(t) in double for |t| <= 708 (callers clamp): 2^n (1 + expm1(r)).
 * Relative error ~2^-52. */
CP_HD static inline double cp_dm_expd(double t) {
    int n;
    double r = cp_dm_exp_reduce(t, &n);
    return (1.0 + cp_dm_expm1_core(r)) * cp_dm_pow2i(n);
}

/* expm1(t) in double for |t| <= 708: 2^n expm1(r) + (2^n - 1); both products
 * and 2^n - 1 (for n <= 53) are exact, the sum is rounded once. When n != 0,
 * |expm1(t)| >= 0.29, so there is no harmful cancellation. */
CP_HD static inline double cp_dm_expm1d(double t) {
    int n;
    double r = cp_dm_exp_reduce(t, &n);
    double p = cp_dm_expm1_core(r);
    if (n == 0) return p;
    double s = cp_dm_pow2i(n);
    return s * p + (s - 1.0);
}

/* log(v) in double for a positive, finite, normal double v.
 * v = 2^e m with m in [sqrt(1/2), sqrt(2)); s = (m-1)/(m+1) (m-1 exact),
 * log(m) = 2 atanh(s) = 2s + s^3 H(s^2), s^2 <= 0.02944, H of degree 7,
 * minimax for the weight (z + 0.001)/2 (relative error of log(m) <= 2^-61.7).
 * log(v) = e ln2 + log(m), with ln2 as HI + LO. Relative error ~2^-52. */
CP_HD static inline double cp_dm_logd(double v) {
    uint64_t u = cp_dm_d2u(v);
    int e = (int)(u >> 52) - 1023;
    double m = cp_dm_u2d((u & 0x000fffffffffffffull) | 0x3ff0000000000000ull);
    if (m > 0x1.6a09e667f3bcdp+0) { /* sqrt(2) */
        m *= 0.5;
        e += 1;
    }
    double s = (m - 1.0) / (m + 1.0);
    double z = s * s;
    double h = 0x1.0e93ed7dcf822p-3;
    h = fma(h, z, 0x1.0f75d373cfc82p-3);
    h = fma(h, z, 0x1.3b1f6f84050b9p-3);
    h = fma(h, z, 0x1.745ce65c090aep-3);
    h = fma(h, z, 0x1.c71c723b0afcep-3);
    h = fma(h, z, 0x1.24924924493b3p-2);
    h = fma(h, z, 0x1.9999999999c2ap-2);
    h = fma(h, z, 0x1.5555555555555p-1);
    double lm = fma(s * z, h, 2.0 * s);
    double de = (double)e;
    return fma(de, CP_DM_LN2_HI, fma(de, CP_DM_LN2_LO, lm));
}

/* log1p(u) in double for 0 < u <= 1 (softplus): Goldberg's
 * log(1+u) = log(w) * u / (w - 1), w = 1 + u rounded; the factor u/(w-1)
 * corrects the rounding of w. Relative error a few 2^-53. */
CP_HD static inline double cp_dm_log1p_unit(double u) {
    double w = 1.0 + u;
    if (w == 1.0) return u; /* u < 2^-53: log1p(u) = u (1 - u/2 ...) */
    return cp_dm_logd(w) * (u / (w - 1.0));
}

/* ---- exp, expm1, log, log1p ------------------------------------------------- */

/* exp(x). Overflow above 88.7228391 and underflow (subnormals, then 0) below
 * -87.34 come from the single double->float rounding; |x| beyond the clamps
 * (100, -110) gives +inf / +0 directly. */
CP_HD static inline float cp_expf(float x) {
    uint32_t ix = cp_dm_f2u(x);
    if ((ix & 0x7fffffffu) > CP_DM_INF_BITS) return cp_dm_qnan(ix);
    if (x > 100.0f) return cp_dm_inf(0);
    if (x < -110.0f) return 0.0f;
    return (float)cp_dm_expd((double)x);
}

/* expm1(x) = exp(x) - 1, accurate near 0 (the core polynomial has no 1 to
 * cancel). x < -40 gives -1 (the exact value rounds to -1 below -17.33). */
CP_HD static inline float cp_expm1f(float x) {
    uint32_t ix = cp_dm_f2u(x);
    if ((ix & 0x7fffffffu) > CP_DM_INF_BITS) return cp_dm_qnan(ix);
    if ((ix & 0x7fffffffu) == 0) return x; /* keeps the sign of zero */
    if (x > 100.0f) return cp_dm_inf(0);
    if (x < -40.0f) return -1.0f;
    return (float)cp_dm_expm1d((double)x);
}

/* log(x): NaN for x < 0, -inf at +-0, +inf at +inf. Subnormal x is normal
 * once widened to double. */
CP_HD static inline float cp_logf(float x) {
    uint32_t ix = cp_dm_f2u(x);
    if ((ix & 0x7fffffffu) > CP_DM_INF_BITS) return cp_dm_qnan(ix);
    if ((ix & 0x7fffffffu) == 0) return cp_dm_inf(1);
    if (ix >> 31) return cp_dm_u2f(CP_DM_NAN_BITS);
    if (ix == CP_DM_INF_BITS) return x;
    return (float)cp_dm_logd((double)x);
}

/* log1p(x) = log(1 + x). For |x| >= 2^-28, 1 + x is exact in double for every
 * float x below 2^29 (and above, its rounding moves log by < 2^-53 absolute,
 * against a result > 20), so log(1 + x) is computed as is; smaller |x| use
 * x - x^2/2 + x^3/3 (next term x^4/4 < 2^-84 relative). */
CP_HD static inline float cp_log1pf(float x) {
    uint32_t ix = cp_dm_f2u(x);
    uint32_t ax = ix & 0x7fffffffu;
    if (ax > CP_DM_INF_BITS) return cp_dm_qnan(ix);
    if (ix == CP_DM_INF_BITS) return x;
    if (ix == 0xbf800000u) return cp_dm_inf(1); /* x = -1 */
    if (x < -1.0f) return cp_dm_u2f(CP_DM_NAN_BITS);
    double xd = (double)x;
    if (ax < 0x31800000u) /* |x| < 2^-28; keeps the sign of zero */
        return (float)(xd * (1.0 - xd * (0.5 - xd * (1.0 / 3.0))));
    return (float)cp_dm_logd(1.0 + xd);
}

/* ---- tanh, sigmoid, softplus ---------------------------------------------- */

/* tanh(x) = sign(x) e / (e + 2), e = expm1(2|x|): no cancellation anywhere.
 * |x| >= 10 gives +-1 (the exact value rounds to +-1 above 9.011). */
CP_HD static inline float cp_tanhf(float x) {
    uint32_t ix = cp_dm_f2u(x);
    uint32_t ax = ix & 0x7fffffffu;
    if (ax > CP_DM_INF_BITS) return cp_dm_qnan(ix);
    if (ax == 0) return x;
    if (ax >= 0x41200000u) return (ix >> 31) ? -1.0f : 1.0f; /* |x| >= 10 */
    double e = cp_dm_expm1d(2.0 * (double)cp_dm_u2f(ax));
    float r = (float)(e / (e + 2.0));
    return (ix >> 31) ? cp_dm_negf(r) : r;
}

/* sigmoid(x) = 1 / (1 + exp(-x)). x > 40 gives 1 (exact value rounds to 1
 * above 17.33), x < -110 gives +0 (exact value < 2^-158). Results down to the
 * subnormal range come from the single final rounding. */
CP_HD static inline float cp_sigmoidf(float x) {
    uint32_t ix = cp_dm_f2u(x);
    if ((ix & 0x7fffffffu) > CP_DM_INF_BITS) return cp_dm_qnan(ix);
    if (x > 40.0f) return 1.0f;
    if (x < -110.0f) return 0.0f;
    return (float)(1.0 / (1.0 + cp_dm_expd(-(double)x)));
}

/* softplus(x) = log(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|)).
 * x > 40 gives x (the correction is < 2^-57 x), x < -110 gives +0. */
CP_HD static inline float cp_softplusf(float x) {
    uint32_t ix = cp_dm_f2u(x);
    if ((ix & 0x7fffffffu) > CP_DM_INF_BITS) return cp_dm_qnan(ix);
    if (x > 40.0f) return x;
    if (x < -110.0f) return 0.0f;
    double xd = (double)x;
    if (xd >= 0.0) return (float)(xd + cp_dm_log1p_unit(cp_dm_expd(-xd)));
    return (float)cp_dm_log1p_unit(cp_dm_expd(xd));
}

/* ---- erf ------------------------------------------------------------------ */

/* erf(x), odd. Three pieces on a = |x|:
 *   a < 1:      erf = x E(x^2), E of degree 12 in x^2, minimax relative
 *               (relative error <= 2^-54.9 with double coefficients);
 *   1 <= a < 2: erf = 1 - exp(-a^2) F1(a - 1.5), F1 of degree 16;
 *   2 <= a < 4: erf = 1 - exp(-a^2) F2(a - 3),   F2 of degree 15;
 *               F approximates erfc(a) exp(a^2), minimax for the weight
 *               exp(-a^2), i.e. absolute error of erf <= 2^-57.4 / 2^-61.8.
 *               a^2 is exact in double (a has 24 bits).
 *   a >= 4:     +-1 (erfc(4) = 1.5e-8 < 2^-25: the exact value rounds to 1
 *               from a = 3.92 on). */
CP_HD static inline double cp_dm_erf_small(double x) {
    double z = x * x;
    double p = 0x1.0579ab29ce0b6p-34;
    p = fma(p, z, -0x1.386ac0ef03aafp-30);
    p = fma(p, z, 0x1.f7a4123bbf5e5p-27);
    p = fma(p, z, -0x1.5f1d36c38490cp-23);
    p = fma(p, z, 0x1.b9def19e196f3p-20);
    p = fma(p, z, -0x1.f4d1df394e707p-17);
    p = fma(p, z, 0x1.f9a321a11dfd9p-14);
    p = fma(p, z, -0x1.c02db3d8ed260p-11);
    p = fma(p, z, 0x1.565bcd0db02e5p-8);
    p = fma(p, z, -0x1.b82ce3128499cp-6);
    p = fma(p, z, 0x1.ce2f21a042b20p-4);
    p = fma(p, z, -0x1.812746b0379e6p-2);
    p = fma(p, z, 0x1.20dd750429b6dp+0);
    return x * p;
}
/* erfc(a) exp(a^2) for 1 <= a < 2, in powers of t = a - 1.5 */
CP_HD static inline double cp_dm_erfcx_mid(double t) {
    double p = 0x1.fa08b0546b215p-27;
    p = fma(p, t, -0x1.a6eba81625032p-25);
    p = fma(p, t, 0x1.63da1af619460p-23);
    p = fma(p, t, -0x1.3f5238bec66a1p-21);
    p = fma(p, t, 0x1.15832147f7626p-19);
    p = fma(p, t, -0x1.d41a033376ae5p-18);
    p = fma(p, t, 0x1.7f98ee832ae3cp-16);
    p = fma(p, t, -0x1.30c0e44657631p-14);
    p = fma(p, t, 0x1.d4509ee9b526bp-13);
    p = fma(p, t, -0x1.5b0abff5fc5a2p-11);
    p = fma(p, t, 0x1.ee705e6fed301p-10);
    p = fma(p, t, -0x1.513ed75ffede3p-8);
    p = fma(p, t, 0x1.b65944f3529d9p-7);
    p = fma(p, t, -0x1.0dc51d2941eb6p-5);
    p = fma(p, t, 0x1.37ea271bc54acp-4);
    p = fma(p, t, -0x1.4f1988444caf7p-3);
    p = fma(p, t, 0x1.494daffa2ad68p-2);
    return p;
}
/* erfc(a) exp(a^2) for 2 <= a < 4, in powers of t = a - 3 */
CP_HD static inline double cp_dm_erfcx_tail(double t) {
    double p = -0x1.80e32e752ed25p-32;
    p = fma(p, t, 0x1.3e5c793d73d64p-31);
    p = fma(p, t, -0x1.9662577e9e3adp-29);
    p = fma(p, t, 0x1.09a2639201bafp-26);
    p = fma(p, t, -0x1.1e067350f78c0p-24);
    p = fma(p, t, 0x1.361aedeca70cfp-22);
    p = fma(p, t, -0x1.4b1ba6c1444cep-20);
    p = fma(p, t, 0x1.5961fbfdb013ap-18);
    p = fma(p, t, -0x1.6024b493d4057p-16);
    p = fma(p, t, 0x1.5e738df5920d0p-14);
    p = fma(p, t, -0x1.53decb068acd3p-12);
    p = fma(p, t, 0x1.409cc2e8a4439p-10);
    p = fma(p, t, -0x1.259061b951648p-8);
    p = fma(p, t, 0x1.043fe1a99736ap-6);
    p = fma(p, t, -0x1.bd6ae4d14b701p-5);
    p = fma(p, t, 0x1.6e9827d229cfcp-3);
    return p;
}
CP_HD static inline float cp_erff(float x) {
    uint32_t ix = cp_dm_f2u(x);
    uint32_t ax = ix & 0x7fffffffu;
    if (ax > CP_DM_INF_BITS) return cp_dm_qnan(ix);
    if (ax < 0x3f800000u) return (float)cp_dm_erf_small((double)x); /* |x| < 1, sign kept */
    if (ax >= 0x40800000u) return (ix >> 31) ? -1.0f : 1.0f;        /* |x| >= 4 */
    double a = (double)cp_dm_u2f(ax);
    double f = (ax < 0x40000000u) ? cp_dm_erfcx_mid(a - 1.5) : cp_dm_erfcx_tail(a - 3.0);
    float r = (float)(1.0 - cp_dm_expd(-(a * a)) * f);
    return (ix >> 31) ? cp_dm_negf(r) : r;
}

/* ---- sin, cos --------------------------------------------------------------- */

#define CP_DM_TWO_OVER_PI 0x1.45f306dc9c883p-1
#define CP_DM_PIO2_1 0x1.921fb54442d18p+0   /* pi/2 rounded to double */
#define CP_DM_PIO2_2 0x1.1a62633145c07p-54  /* pi/2 - PIO2_1 rounded */
#define CP_DM_PIO2_3 -0x1.f1976b7ed8fbcp-110 /* pi/2 - PIO2_1 - PIO2_2 rounded */

/* sin(r) for |r| <= 0.7855: r + r^3 S(r^2), S of degree 6, minimax for the
 * weight z + 0.01 (relative error <= 2^-57.3). */
CP_HD static inline double cp_dm_sin_core(double r) {
    double z = r * r;
    double p = -0x1.aab17325826bbp-41;
    p = fma(p, z, 0x1.6120ade8b474ep-33);
    p = fma(p, z, -0x1.ae6452c8508acp-26);
    p = fma(p, z, 0x1.71de3a5363d1fp-19);
    p = fma(p, z, -0x1.a01a01a018d4ep-13);
    p = fma(p, z, 0x1.111111111110cp-7);
    p = fma(p, z, -0x1.5555555555555p-3);
    return fma(r * z, p, r);
}
/* cos(r) for |r| <= 0.7855: 1 - r^2/2 + r^4 C(r^2), C of degree 5, minimax
 * for the weight 1.42 (z^2 + 0.001) (relative error <= 2^-59.3). */
CP_HD static inline double cp_dm_cos_core(double r) {
    double z = r * r;
    double p = -0x1.8fbd79aba62c5p-37;
    p = fma(p, z, 0x1.1eea0b28ff586p-29);
    p = fma(p, z, -0x1.27e4f83c9fd6cp-22);
    p = fma(p, z, 0x1.a01a019d00690p-16);
    p = fma(p, z, -0x1.6c16c16c1551bp-10);
    p = fma(p, z, 0x1.555555555554ep-5);
    return fma(z * z, p, fma(-0.5, z, 1.0));
}

/* Payne-Hanek reduction of a = m 2^E (m the 24-bit integer significand,
 * E >= -3, i.e. a >= 2^20): a * 2/pi mod 4 needs only the bits of 2/pi from
 * weight 2^-(E-1) on (earlier bits give multiples of 4). A 128-bit window of
 * those bits times m, kept mod 2^128, holds the quadrant in its top 2 bits and
 * 126 bits of fraction; the neglected bits change the fraction by < 2^-102
 * quadrants, while no float >= 2^20 lies closer than 2^-29.9 quadrants to a
 * multiple of pi/2 (measured over all of them: at 0x6f79be45), so r keeps
 * >= 60 correct bits. All products are 24x32 -> 56 bits. */
CP_HD static inline double cp_dm_reduce_big(uint32_t ax, int *q) {
    /* word 0 is padding so the window may start before the binary point;
     * words 1..8: floor(2/pi * 2^256). */
    static const uint32_t tbl[9] = {0x00000000u, 0xa2f9836eu, 0x4e441529u,
                                    0xfc2757d1u, 0xf534ddc0u, 0xdb629599u,
                                    0x3c439041u, 0xfe5163abu, 0xdebbc561u};
    uint64_t m = (ax & 0x007fffffu) | 0x00800000u;
    int pos = (int)(ax >> 23) - 150 + 30; /* padded bit index of 2/pi bit E-1 */
    int j = pos >> 5, sh = pos & 31;
    uint64_t w[4];
    for (int t = 0; t < 4; t++)
        w[t] = ((((uint64_t)tbl[j + t] << 32) | tbl[j + t + 1]) >> (32 - sh)) & 0xffffffffu;
    uint64_t p3 = m * w[3];
    uint64_t p2 = m * w[2] + (p3 >> 32);
    uint64_t p1 = m * w[1] + (p2 >> 32);
    uint64_t p0 = m * w[0] + (p1 >> 32);
    uint64_t hi = (p0 << 32) | (p1 & 0xffffffffu);
    uint64_t lo = (p2 << 32) | (p3 & 0xffffffffu);
    int quad = (int)(hi >> 62);
    uint64_t fh = (hi << 2) | (lo >> 62), fl = lo << 2; /* fraction * 2^128 */
    int neg = 0;
    if (fh >> 63) { /* fraction >= 1/2: next quadrant, negative remainder */
        neg = 1;
        quad += 1;
        fl = ~fl + 1u;
        fh = ~fh + (fl == 0 ? 1u : 0u);
    }
    double d = (double)fh + (double)fl * 0x1p-64; /* quadrants * 2^64 */
    double r = d * 0x1.921fb54442d18p-64;         /* (pi/2) 2^-64 */
    *q = quad & 3;
    return neg ? -r : r;
}

/* a = q pi/2 + r, |r| <= pi/4 (+2^-30), q mod 4, for finite a = |x| given as
 * bits. Below 2^20 Cody-Waite in double: k < 2^20, each k*PIO2_i is exact
 * inside fma, and the two roundings err by <= 2^-53 (|r| + 4e-11), tiny
 * against the smallest |r| of a float there (2^-28.5 quadrants, measured over
 * all of them: at 0x437ce5f1). */
CP_HD static inline double cp_dm_trig_reduce(uint32_t ax, int *q) {
    if (ax >= 0x49800000u) return cp_dm_reduce_big(ax, q);
    double a = (double)cp_dm_u2f(ax);
    double k = cp_dm_rint(a * CP_DM_TWO_OVER_PI);
    double r = fma(-k, CP_DM_PIO2_1, a);
    r = fma(-k, CP_DM_PIO2_2, r);
    r = fma(-k, CP_DM_PIO2_3, r);
    *q = (int)k & 3;
    return r;
}

/* sin(x) over the whole float range; odd symmetry applied by sign bit. */
CP_HD static inline float cp_sinf(float x) {
    uint32_t ix = cp_dm_f2u(x);
    uint32_t ax = ix & 0x7fffffffu;
    if (ax > CP_DM_INF_BITS) return cp_dm_qnan(ix);
    if (ax == CP_DM_INF_BITS) return cp_dm_u2f(CP_DM_NAN_BITS);
    if (ax == 0) return x;
    int q;
    double r = cp_dm_trig_reduce(ax, &q);
    double v = (q & 1) ? cp_dm_cos_core(r) : cp_dm_sin_core(r);
    if (q & 2) v = -v;
    float f = (float)v;
    return (ix >> 31) ? cp_dm_negf(f) : f;
}

/* cos(x) over the whole float range (even: computed on |x|). */
CP_HD static inline float cp_cosf(float x) {
    uint32_t ix = cp_dm_f2u(x);
    uint32_t ax = ix & 0x7fffffffu;
    if (ax > CP_DM_INF_BITS) return cp_dm_qnan(ix);
    if (ax == CP_DM_INF_BITS) return cp_dm_u2f(CP_DM_NAN_BITS);
    int q;
    double r = cp_dm_trig_reduce(ax, &q);
    double v = (q & 1) ? cp_dm_sin_core(r) : cp_dm_cos_core(r);
    if ((q + 1) & 2) v = -v;
    return (float)v;
}

/* ---- pow ------------------------------------------------------------------- */

/* Kind of a finite nonzero float y: 0 not an integer, 1 odd integer, 2 even
 * integer. */
CP_HD static inline int cp_dm_int_kind(uint32_t iy) {
    int e = (int)((iy >> 23) & 0xffu) - 127; /* unbiased exponent */
    if (e < 0) return 0;                     /* 0 < |y| < 1 */
    if (e > 23) return 2;                    /* |y| >= 2^24: even */
    uint32_t m = (iy & 0x007fffffu) | 0x00800000u;
    int sh = 23 - e; /* number of fraction bits */
    if (sh > 0 && (m & ((1u << sh) - 1u)) != 0) return 0;
    return ((m >> sh) & 1u) ? 1 : 2;
}

/* pow(x, y), C99 Annex F special cases:
 *   pow(x, +-0) = 1 and pow(+1, y) = 1 for every x, y (NaN too);
 *   pow(+-0, y<0) = +-inf for odd integer y, +inf otherwise;
 *   pow(+-0, y>0) = +-0 for odd integer y, +0 otherwise;
 *   pow(-1, +-inf) = 1; pow(x, -inf) = +inf (|x|<1), +0 (|x|>1);
 *   pow(x, +inf) = +0 (|x|<1), +inf (|x|>1);
 *   pow(-inf, y) = -0/-inf for odd integer y<0 / y>0, else +0/+inf;
 *   pow(+inf, y) = +0 (y<0), +inf (y>0);
 *   pow(x<0, non-integer y) = NaN; pow(x<0, integer y) = +-|x|^y.
 * Otherwise |x|^y = exp(y log|x|) in double: t = y log|x| has relative error
 * ~2^-52, so for |t| <= 104 the result is off by <= 2^-45 relative before the
 * final rounding (<= 0.5 + 2^-20 ulp). t > 100 overflows, t < -110 is 0. */
CP_HD static inline float cp_powf(float x, float y) {
    uint32_t ix = cp_dm_f2u(x), iy = cp_dm_f2u(y);
    uint32_t ax = ix & 0x7fffffffu, ay = iy & 0x7fffffffu;
    int xneg = (int)(ix >> 31), yneg = (int)(iy >> 31);
    if (ay == 0) return 1.0f;
    if (ix == 0x3f800000u) return 1.0f;
    if (ax > CP_DM_INF_BITS) return cp_dm_qnan(ix);
    if (ay > CP_DM_INF_BITS) return cp_dm_qnan(iy);
    if (ay == CP_DM_INF_BITS) {
        if (ax == 0x3f800000u) return 1.0f; /* (-1)^+-inf */
        int big = ax > 0x3f800000u;         /* |x| > 1 */
        return (big != yneg) ? cp_dm_inf(0) : 0.0f;
    }
    int kind = cp_dm_int_kind(iy);
    int odd_neg = xneg && kind == 1; /* result carries the sign of x */
    if (ax == 0 || ax == CP_DM_INF_BITS) {
        /* 0^y is inf for y < 0; inf^y is inf for y > 0 */
        int inf = (ax == 0) == yneg;
        float r = inf ? cp_dm_inf(0) : 0.0f;
        return odd_neg ? cp_dm_negf(r) : r;
    }
    if (xneg && kind == 0) return cp_dm_u2f(CP_DM_NAN_BITS);
    double t = (double)y * cp_dm_logd((double)cp_dm_u2f(ax));
    float r;
    if (t > 100.0) r = cp_dm_inf(0);
    else if (t < -110.0) r = 0.0f;
    else r = (float)cp_dm_expd(t);
    return odd_neg ? cp_dm_negf(r) : r;
}

#endif
