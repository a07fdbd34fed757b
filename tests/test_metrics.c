/* test_metrics.c - eval/metrics vs the real Cellpose 3.1.1.3
 * (tests/ref/metrics.py): identical tp/fp/fn, AP to 1e-12 (Cellpose's
 * float32 values, widened), AJI to 1e-12, mask_ious' assignment identical;
 * the assignment timed on the 329-object image. */
#include <math.h>

#include "metrics.h"
#include "optest.h"

static const char *CASES[] = {"same", "shift", "erode", "merge", "split", "miss", "extra",
                              "mix",  "gap",   "emptypred", "emptygt", "swap"};

static int64_t *ref_i64v(TestCase *tc, const Ref *r, const char *name, int64_t *n, int64_t *h, int64_t *w) {
    const StTensor *t = r->ok ? st_find(&r->f, name) : NULL;
    CHECKF(t != NULL, "reference tensor '%s' missing", name);
    if (!t) return NULL;
    int64_t *p = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)(t->numel > 0 ? t->numel : 1));
    CpErr e;
    CHECK(st_copy(&r->f, t, ST_I64, p, t->numel, &e) == CP_OK);
    *n = t->numel;
    if (h) *h = t->ndim == 2 ? t->shape[0] : 0, *w = t->ndim == 2 ? t->shape[1] : 0;
    return p;
}

static int same_f64(double a, double b, double tol) { return (isnan(a) && isnan(b)) || fabs(a - b) <= tol; }

/* One case: AP at both threshold sets, AJI, mask_ious. Returns max |AP diff|. */
static double check_case(TestCase *tc, const Ref *r, const char *c, const double *th10) {
    char nm[96];
    int64_t n, H, W, n2, h2, w2;
    snprintf(nm, sizeof nm, "%s.gt", c);
    int64_t *g64 = ref_i64v(tc, r, nm, &n, &H, &W);
    snprintf(nm, sizeof nm, "%s.pred", c);
    int64_t *p64 = ref_i64v(tc, r, nm, &n2, &h2, &w2);
    if (!g64 || !p64) return INFINITY;
    uint32_t *gt = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)n);
    uint32_t *pr = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) gt[i] = (uint32_t)g64[i], pr[i] = (uint32_t)p64[i];
    static const double th3[3] = {0.5, 0.75, 0.9};
    double maxd = 0;
    CpErr e;
    for (int s = 0; s < 2; s++) {
        int nt = s ? 10 : 3;
        const double *th = s ? th10 : th3;
        double ap[10];
        int64_t tp[10], fp[10], fn[10];
        CHECK(met_average_precision(ap, tp, fp, fn, gt, pr, H, W, th, nt, &e) == CP_OK);
        const char *keys[4] = {"ap", "tp", "fp", "fn"};
        for (int k = 0; k < 4; k++) {
            int64_t m;
            snprintf(nm, sizeof nm, "%s.%s%d", c, keys[k], nt);
            double *want = ref_f64v(tc, r, nm, &m);
            if (!want) continue;
            for (int i = 0; i < nt && i < m; i++) {
                double got = k == 0 ? ap[i] : (double)(k == 1 ? tp[i] : k == 2 ? fp[i] : fn[i]);
                CHECKF(same_f64(got, want[i], k == 0 ? 1e-12 : 0), "%s: %s[%d] %.17g vs Cellpose %.17g", c,
                       keys[k], i, got, want[i]);
                if (k == 0 && !isnan(got) && !isnan(want[i])) maxd = fmax(maxd, fabs(got - want[i]));
            }
            cp_free(want);
        }
    }
    double aji, *waji;
    int64_t m;
    CHECK(met_aggregated_jaccard(&aji, gt, pr, H, W, &e) == CP_OK);
    snprintf(nm, sizeof nm, "%s.aji", c);
    if ((waji = ref_f64v(tc, r, nm, &m)) != NULL) {
        CHECKF(same_f64(aji, waji[0], 1e-12), "%s: aji %.17g vs Cellpose %.17g", c, aji, waji[0]);
        cp_free(waji);
    }
    double *iout;
    int64_t *preds, ntrue;
    CHECK(met_mask_ious(&iout, &preds, &ntrue, gt, pr, H, W, &e) == CP_OK);
    if (ntrue > 0) {
        snprintf(nm, sizeof nm, "%s.preds", c);
        int64_t *wp = ref_i64v(tc, r, nm, &m, NULL, NULL);
        snprintf(nm, sizeof nm, "%s.iout", c);
        double *wi = ref_f64v(tc, r, nm, &m);
        int64_t bad = 0;
        for (int64_t i = 0; wp && wi && i < ntrue && i < m; i++) bad += preds[i] != wp[i] || iout[i] != wi[i];
        CHECKF(m == ntrue && bad == 0, "%s: mask_ious differ for %lld of %lld true masks", c, (long long)bad,
               (long long)ntrue);
        cp_free(wp), cp_free(wi);
    }
    printf("  %-14s %lld x %lld  AP/tp/fp/fn/aji/mask_ious equal, max |AP diff| %.1e\n", c, (long long)H,
           (long long)W, maxd);
    cp_free(iout), cp_free(preds), cp_free(gt), cp_free(pr), cp_free(g64), cp_free(p64);
    return maxd;
}

TEST(test_vs_cellpose) {
    Ref r;
    if (!ref_load(tc, &r, "metrics")) return;
    int64_t m;
    double *th10 = ref_f64v(tc, &r, "th10", &m);
    if (!th10 || m != 10) return;
    static const char *PRE[] = {"d9", "b1"};
    for (int p = 0; p < 2; p++)
        for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
            char nm[64];
            snprintf(nm, sizeof nm, "%s_%s", PRE[p], CASES[c]);
            check_case(tc, &r, nm, th10);
        }
    check_case(tc, &r, "bothempty", th10);
    cp_free(th10);
    ref_free(&r);
}

/* The assignment on the 329-object image (mix perturbation), timed. */
TEST(test_lsap_timing_and_small) {
    CpErr e;
    /* 3x2: rows 1 and 2 compete for column 0 */
    double c1[6] = {4, 1, 2, 0, 3, 5};
    int64_t col[3];
    CHECK(met_lsap(col, c1, 3, 2, &e) == CP_OK);
    CHECK(col[0] == 1 && col[1] == 0 && col[2] == -1);
    double cnan[1] = {NAN};
    CHECK(met_lsap(col, cnan, 1, 1, &e) == CP_EFAIL);
    Ref r;
    if (!ref_load(tc, &r, "metrics")) return;
    int64_t n, H, W, n2;
    int64_t *g64 = ref_i64v(tc, &r, "d9_mix.gt", &n, &H, &W);
    int64_t *p64 = ref_i64v(tc, &r, "d9_mix.pred", &n2, NULL, NULL);
    if (!g64 || !p64) return;
    uint32_t *gt = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)n);
    uint32_t *pr = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) gt[i] = (uint32_t)g64[i], pr[i] = (uint32_t)p64[i];
    double ap[10], th[10];
    int64_t tp[10], fp[10], fn[10];
    for (int i = 0; i < 10; i++) th[i] = 0.5 + 0.05 * i;
    int reps = test_quick() ? 1 : 5;
    double t0 = cp_time_sec();
    for (int k = 0; k < reps; k++) CHECK(met_average_precision(ap, tp, fp, fn, gt, pr, H, W, th, 10, &e) == CP_OK);
    double dt = (cp_time_sec() - t0) / reps;
    printf("  329 true x 458 predicted, 10 thresholds (overlap + 10 assignments): %.2f ms per image\n", 1e3 * dt);
    cp_free(gt), cp_free(pr), cp_free(g64), cp_free(p64);
    ref_free(&r);
}

TEST_MAIN(T(test_vs_cellpose), T(test_lsap_timing_and_small))
