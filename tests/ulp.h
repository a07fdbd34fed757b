/* ulp.h - float bit views and the error of a float result in ulps against a
 * double reference, for the dmath test (tests/test_dmath.c) and the
 * exhaustive sweep (bench/bench_dmath_sweep.c). */
#ifndef CP_TESTS_ULP_H
#define CP_TESTS_ULP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t f2u(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* ulp of a float at the magnitude of a finite double. */
static inline double ulp_at(double a) {
    a = fabs(a);
    if (a < 0x1p-126) return 0x1p-149;
    int e;
    frexp(a, &e); /* a = f 2^e, f in [0.5, 1): floor(log2 a) = e - 1 */
    if (e - 1 > 127) e = 128;
    return ldexp(1.0, e - 1 - 23);
}

/* Error of `got` in float ulps against a double reference; INFINITY when
 * NaN-ness or an infinite reference disagrees. */
static inline double err_ulp(float got, double ref) {
    if (isnan(ref) || isnan(got)) return (isnan(ref) && isnan(got)) ? 0.0 : INFINITY;
    if (isinf(ref)) return (isinf(got) && !signbit(got) == !signbit(ref)) ? 0.0 : INFINITY;
    /* an infinite result is exact when |ref| >= 2^128 (float overflow) */
    if (isinf(got) && fabs(ref) >= 0x1p128 && !signbit(got) == !signbit(ref)) return 0.0;
    double g = isinf(got) ? copysign(0x1p128, got) : (double)got;
    return fabs(g - ref) / ulp_at(ref);
}

#endif
