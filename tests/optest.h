/* optest.h - shared helpers for the per-op tests (tests/test_<op>.c).
 *
 * The four checks every op gets (STYLE.md "Tests", issue 3):
 *  1. vs PyTorch: tests/ref/<op>.py writes inputs, outputs and gradients to
 *     $CP_REF_DIR/<op>.safetensors; ref_load/ref_f32 read them back and
 *     check_close compares with ONE tolerance rule, printed:
 *         pass iff |got - ref| <= atol + rtol * |ref|   for every element
 *     with max abs, max rel, the worst index and the fraction of the
 *     tolerance used.
 *  2. finite differences in double on the CPU, independent of PyTorch:
 *     check_fd perturbs one input element at a time (central difference,
 *     loss evaluated in double) and compares with the analytic gradient.
 *  3. thread counts: the op run with 1, 2 and 3 threads gives identical
 *     bytes (check_same_bytes).
 *  4. poisoned outputs: buffers are filled with a NaN pattern before the
 *     call (poison) and count_poison proves every element was written. */
#ifndef CP_OPTEST_H
#define CP_OPTEST_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctx.h"
#include "harness.h"
#include "philox.h"
#include "safetensors.h"

/* ---- references written by PyTorch ---- */
typedef struct {
    StFile f;
    int ok;
} Ref;

/* Loads $CP_REF_DIR/<op>.safetensors (default build/ref). A missing file is a
 * failed check with the command that makes it. */
static inline int ref_load(TestCase *tc, Ref *r, const char *op) {
    const char *dir = getenv("CP_REF_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir && dir[0] ? dir : "build/ref", op);
    CpErr e;
    r->ok = st_read(&r->f, path, &e) == CP_OK;
    CHECKF(r->ok, "%s (make it with: /usr/bin/python3 tests/ref/%s.py --out %s)", e.msg, op,
           dir && dir[0] ? dir : "build/ref");
    return r->ok;
}

static inline void ref_free(Ref *r) {
    if (r->ok) st_free(&r->f);
    r->ok = 0;
}

/* F32 tensor `name` with exactly `numel` elements, copied into a fresh
 * cp_malloc buffer (caller frees); NULL and a failed check otherwise. */
static inline float *ref_f32(TestCase *tc, const Ref *r, const char *name, int64_t numel) {
    const StTensor *t = r->ok ? st_find(&r->f, name) : NULL;
    CHECKF(t != NULL, "reference tensor '%s' missing", name);
    if (!t) return NULL;
    float *p = (float *)cp_malloc(sizeof(float) * (size_t)(numel > 0 ? numel : 1));
    CpErr e;
    if (st_copy(&r->f, t, ST_F32, p, numel, &e) != CP_OK) {
        CHECKF(0, "%s", e.msg);
        cp_free(p);
        return NULL;
    }
    return p;
}

/* F64 tensor `name` (any shape) into a fresh buffer; *n = its element count. */
static inline double *ref_f64v(TestCase *tc, const Ref *r, const char *name, int64_t *n) {
    const StTensor *t = r->ok ? st_find(&r->f, name) : NULL;
    CHECKF(t != NULL, "reference tensor '%s' missing", name);
    if (!t) return NULL;
    double *p = (double *)cp_malloc(sizeof(double) * (size_t)(t->numel > 0 ? t->numel : 1));
    CpErr e;
    CHECK(st_copy(&r->f, t, ST_F64, p, t->numel, &e) == CP_OK);
    *n = t->numel;
    return p;
}

/* Integer scalar stored by the reference script (shapes, flags), as I64. */
static inline int64_t ref_int(TestCase *tc, const Ref *r, const char *name) {
    const StTensor *t = r->ok ? st_find(&r->f, name) : NULL;
    int64_t v = 0;
    CpErr e;
    CHECKF(t && st_copy(&r->f, t, ST_I64, &v, 1, &e) == CP_OK, "reference int '%s' missing", name);
    return v;
}

/* ---- the tolerance rule ---- */
static inline int check_close(TestCase *tc, const char *what, const float *got, const float *ref, int64_t n,
                              double atol, double rtol) {
    double max_abs = 0, max_rel = 0, worst_frac = 0;
    int64_t worst = -1, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i], d = fabs(g - r);
        double tol = atol + rtol * fabs(r);
        double frac = d == 0 ? 0.0 : d / tol;
        if (!(d <= tol) || isnan(g) != isnan(r)) { /* NaN anywhere fails */
            bad++;
            frac = INFINITY;
        }
        if (d > max_abs) max_abs = d;
        if (fabs(r) > 0 && d / fabs(r) > max_rel) max_rel = d / fabs(r);
        if (frac > worst_frac || worst < 0) {
            worst_frac = frac;
            worst = i;
        }
    }
    printf("  %-34s n=%-8lld max abs %.2e  max rel %.2e  worst [%lld] %.8g vs %.8g  tol used %5.1f%%  "
           "(atol %.0e, rtol %.0e)\n",
           what, (long long)n, max_abs, max_rel, (long long)worst, worst >= 0 ? got[worst] : 0.0,
           worst >= 0 ? ref[worst] : 0.0, 100.0 * worst_frac, atol, rtol);
    CHECKF(bad == 0, "%s: %lld of %lld elements outside |a-b| <= %.0e + %.0e*|ref|", what, (long long)bad,
           (long long)n, atol, rtol);
    return bad == 0;
}

/* ---- finite differences ---- */
/* A loss in double of the op's current inputs, e.g. sum(out * probe). */
typedef double (*FdLoss)(void *state);

/* Central differences for `nsample` elements of x spread over [0, n), against
 * the analytic gradient `grad` (same layout as x), with the tolerance rule. */
static inline int check_fd(TestCase *tc, const char *what, const float *grad, float *x, int64_t n, FdLoss loss,
                           void *state, float eps, int nsample, double atol, double rtol) {
    int m = n < nsample ? (int)n : nsample;
    float *num = (float *)cp_malloc(sizeof(float) * (size_t)(m + 1));
    float *ana = (float *)cp_malloc(sizeof(float) * (size_t)(m + 1));
    for (int s = 0; s < m; s++) {
        int64_t i = (int64_t)((double)s * (double)n / (double)m); /* spread, first element included */
        float keep = x[i];
        x[i] = keep + eps;
        double lp = loss(state);
        x[i] = keep - eps;
        double lm = loss(state);
        x[i] = keep;
        num[s] = (float)((lp - lm) / (2.0 * (double)eps));
        ana[s] = grad[i];
    }
    char label[128];
    snprintf(label, sizeof label, "%s (fd, eps %.0e)", what, (double)eps);
    int ok = check_close(tc, label, ana, num, m, atol, rtol);
    cp_free(num);
    cp_free(ana);
    return ok;
}

/* ---- determinism and coverage helpers ---- */
#define POISON_BITS 0x7fa5a5a5u /* a quiet NaN no arithmetic produces */
static inline void poison(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) memcpy(&p[i], &(uint32_t){POISON_BITS}, 4);
}
static inline int64_t count_poison(const float *p, int64_t n) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &p[i], 4);
        c += u == POISON_BITS;
    }
    return c;
}
static inline int check_written(TestCase *tc, const char *what, const float *p, int64_t n) {
    int64_t c = count_poison(p, n);
    CHECKF(c == 0, "%s: %lld of %lld elements never written", what, (long long)c, (long long)n);
    return c == 0;
}
static inline int check_same_bytes(TestCase *tc, const char *what, const void *a, const void *b, size_t nbytes) {
    int same = memcmp(a, b, nbytes) == 0;
    CHECKF(same, "%s: results differ between thread counts", what);
    return same;
}

/* Deterministic test data in [lo, hi). */
static inline void fill_uniform(float *p, int64_t n, uint32_t stream, float lo, float hi) {
    CpRngKey key = cp_rng_key(20261121u, stream);
    for (int64_t i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * cp_u01(cp_rng_block(key, 0, 0, (uint32_t)i, 0).v[0]);
}

static inline float *alloc_f32(int64_t n) { return (float *)cp_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1)); }
static inline void zero(float *p, int64_t n) { memset(p, 0, sizeof(float) * (size_t)n); }
static inline void copy(float *dst, const float *src, int64_t n) { memcpy(dst, src, sizeof(float) * (size_t)n); }

/* A CPU context with `threads` workers (the thread-identity checks). */
static inline CpCtx ctx_with(int threads) {
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, threads, 0);
    return ctx;
}

/* FREE_ALL(a, b, c): cp_free each buffer. */
static inline void free_all(float **p, size_t n) {
    for (size_t i = 0; i < n; i++) cp_free(p[i]);
}
#define FREE_ALL(...)                                                          \
    do {                                                                       \
        float *all_[] = {__VA_ARGS__};                                         \
        free_all(all_, sizeof all_ / sizeof all_[0]);                          \
    } while (0)

#endif
