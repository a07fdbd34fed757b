/* bench_dmath_sweep.c - exhaustive accuracy sweep of core/dmath.h: every one of
 * the 2^32 float bit patterns through one function, compared with double
 * precision glibc (whose own error, < 1 double ulp, is ~2^-29 float ulp).
 *
 *   bench_dmath_sweep [exp|expm1|log|log1p|tanh|erf|sigmoid|softplus|sin|cos|all ...]
 *                      (default: exp tanh erf)
 *
 * Per function it prints the max error in float ulps (ulp of a float at the
 * exact value's magnitude, 2^-149 for subnormals), the worst input, how many
 * results are off by more than 0.5 ulp (not correctly rounded, as far as a
 * double reference can tell: within ~2^-29 ulp of a midpoint it cannot), how
 * many differ from the libm double rounded to float, NaN/inf disagreements,
 * and the time. OpenMP over the inputs; every count is independent of the
 * thread count. Exits non-zero if any function exceeds 1 ulp. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/dmath.h"
#include "tests/ulp.h"

static double d_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double d_softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
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

typedef struct {
    const char *name;
    float (*ours)(float);
    double (*ref)(double);
} Fn;
static const Fn FNS[] = {
    {"exp", w_exp, exp},         {"expm1", w_expm1, expm1},       {"log", w_log, log},
    {"log1p", w_log1p, log1p},   {"tanh", w_tanh, tanh},          {"erf", w_erf, erf},
    {"sigmoid", w_sigmoid, d_sigmoid}, {"softplus", w_softplus, d_softplus},
    {"sin", w_sin, sin},         {"cos", w_cos, cos},
};
#define NFNS ((int)(sizeof FNS / sizeof FNS[0]))

typedef struct {
    double max_ulp;
    uint32_t worst; /* input bits; ties keep the smallest bits */
    long long over_half, differ, naninf;
} Sweep;

static void sweep(const Fn *f, Sweep *out) {
    memset(out, 0, sizeof *out);
    out->worst = 0xffffffffu;
#pragma omp parallel
    {
        Sweep s = {0, 0xffffffffu, 0, 0, 0};
#pragma omp for schedule(dynamic, 1 << 16)
        for (int64_t i = 0; i < ((int64_t)1 << 32); i++) {
            uint32_t b = (uint32_t)i;
            float x = u2f(b), got = f->ours(x);
            double ref = f->ref((double)x);
            double e = err_ulp(got, ref);
            float cr = (float)ref;
            s.over_half += e > 0.5;
            s.differ += !(isnan(cr) && isnan(got)) && f2u(cr) != f2u(got);
            s.naninf += isnan(got) != isnan(ref) || isinf(got) != isinf(cr) ||
                        (isinf(got) && !signbit(got) != !signbit(cr));
            if (e > s.max_ulp || (e == s.max_ulp && b < s.worst)) {
                s.max_ulp = e;
                s.worst = b;
            }
        }
#pragma omp critical
        {
            out->over_half += s.over_half;
            out->differ += s.differ;
            out->naninf += s.naninf;
            if (s.max_ulp > out->max_ulp || (s.max_ulp == out->max_ulp && s.worst < out->worst)) {
                out->max_ulp = s.max_ulp;
                out->worst = s.worst;
            }
        }
    }
}

static int run(const Fn *f) {
    double t0 = omp_get_wtime();
    Sweep s;
    sweep(f, &s);
    double dt = omp_get_wtime() - t0;
    float w = u2f(s.worst);
    printf("%-8s | %.8f | 0x%08x %-15.9g | ours %-15.9g ref %-22.17g | %10lld | %10lld | %6lld | %7.1f s\n",
           f->name, s.max_ulp, s.worst, w, f->ours(w), f->ref((double)w), s.over_half, s.differ, s.naninf, dt);
    fflush(stdout);
    return s.max_ulp <= 1.0 && s.naninf == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    const char *defaults[] = {"exp", "tanh", "erf"};
    const char **names = argc > 1 ? (const char **)(argv + 1) : defaults;
    int n = argc > 1 ? argc - 1 : 3;
    printf("all 2^32 float inputs vs double libm, %d threads\n", omp_get_max_threads());
    printf("%-8s | %-10s | %-26s | %-48s | %-10s | %-10s | %-6s | time\n", "function", "max ulp", "worst input",
           "value there", ">0.5 ulp", "!=libm", "naninf");
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int all = !strcmp(names[i], "all"), found = 0;
        for (int k = 0; k < NFNS; k++)
            if (all || !strcmp(names[i], FNS[k].name)) {
                bad |= run(&FNS[k]);
                found = 1;
            }
        if (!found) {
            fprintf(stderr, "bench_dmath_sweep: unknown function '%s'; use exp expm1 log log1p tanh erf "
                            "sigmoid softplus sin cos or all\n", names[i]);
            return 2;
        }
    }
    return bad;
}
