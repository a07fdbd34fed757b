/* test_cleanup.c - infer/cleanup vs the real Cellpose 3.1.1.3
 * (tests/ref/cleanup.py): flow errors, remove_bad_flow_masks and
 * fill_holes_and_remove_small_masks on damaged bundled label images must
 * give identical masks; the per-label flow errors agree to 1e-6 (Cellpose
 * keeps the recomputed flows in float64, flows_from_labels rounds them to
 * float32); thread counts 1/2/3 give identical bytes. */
#include <math.h>

#include "cleanup.h"
#include "optest.h"

static const char *CASES[] = {"dsb000", "bbbc000", "usii000", "syn"};

/* An int64 reference array as uint32 (or f64) with its shape. */
static uint32_t *ref_u32(TestCase *tc, const Ref *r, const char *name, int64_t *h, int64_t *w) {
    const StTensor *t = r->ok ? st_find(&r->f, name) : NULL;
    CHECKF(t != NULL && t->ndim == 2, "reference tensor '%s' missing", name);
    if (!t || t->ndim != 2) return NULL;
    int64_t *tmp = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)t->numel);
    CpErr e;
    CHECK(st_copy(&r->f, t, ST_I64, tmp, t->numel, &e) == CP_OK);
    uint32_t *m = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)t->numel);
    for (int64_t i = 0; i < t->numel; i++) m[i] = (uint32_t)tmp[i];
    cp_free(tmp);
    *h = t->shape[0];
    *w = t->shape[1];
    return m;
}

static int same_masks(TestCase *tc, const char *what, const uint32_t *got, const uint32_t *ref, int64_t n) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != ref[i]) bad++, first = first < 0 ? i : first;
    printf("  %-28s %lld pixels, %lld differ\n", what, (long long)n, (long long)bad);
    CHECKF(bad == 0, "%s: %lld pixels differ, first [%lld] %u vs %u", what, (long long)bad, (long long)first,
           first >= 0 ? got[first] : 0, first >= 0 ? ref[first] : 0);
    return bad == 0;
}

static uint32_t *dup_u32(const uint32_t *m, int64_t n) {
    uint32_t *c = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)n);
    memcpy(c, m, sizeof(uint32_t) * (size_t)n);
    return c;
}

TEST(test_flow_remove_vs_cellpose) {
    Ref r;
    if (!ref_load(tc, &r, "cleanup")) return;
    CpCtx ctx = ctx_with(2);
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        if (test_quick() && c == 2) continue; /* the 1022 x 1024 image */
        char nm[64];
        int64_t H = 0, W = 0, h2, w2, nerr = 0, nlab = 0;
        snprintf(nm, sizeof nm, "%s.masks", CASES[c]);
        uint32_t *m = ref_u32(tc, &r, nm, &H, &W);
        snprintf(nm, sizeof nm, "%s.flowrm", CASES[c]);
        uint32_t *want = ref_u32(tc, &r, nm, &h2, &w2);
        snprintf(nm, sizeof nm, "%s.dp", CASES[c]);
        float *dp = ref_f32(tc, &r, nm, 2 * H * W);
        snprintf(nm, sizeof nm, "%s.err", CASES[c]);
        double *werr = ref_f64v(tc, &r, nm, &nerr);
        if (!m || !want || !dp || !werr) break;
        CpErr e;
        double *err = NULL;
        CHECK(cln_flow_errors(&err, &nlab, m, dp, H, W, &ctx, &e) == CP_OK);
        CHECKF(nlab == nerr, "%s: %lld flow errors vs %lld", CASES[c], (long long)nlab, (long long)nerr);
        double maxd = 0;
        for (int64_t l = 0; l < nlab && l < nerr; l++) {
            if (isnan(werr[l]) || isnan(err[l])) {
                CHECKF(isnan(werr[l]) && isnan(err[l]), "%s: label %lld NaN mismatch", CASES[c], (long long)l + 1);
                continue;
            }
            double d = fabs(err[l] - werr[l]);
            maxd = d > maxd ? d : maxd;
        }
        printf("  %-8s flow errors: %lld labels, max abs diff vs Cellpose %.2e\n", CASES[c], (long long)nlab, maxd);
        CHECKF(maxd <= 1e-6, "%s: flow error differs by %.3e", CASES[c], maxd);
        CHECK(cln_flow_error_remove(m, dp, H, W, 0.4f, &ctx, &e) == CP_OK);
        snprintf(nm, sizeof nm, "%s flow removal", CASES[c]);
        same_masks(tc, nm, m, want, H * W);
        cp_free(err), cp_free(werr), cp_free(dp), cp_free(want), cp_free(m);
    }
    cp_ctx_free(&ctx);
    ref_free(&r);
}

TEST(test_fill_holes_vs_cellpose) {
    Ref r;
    if (!ref_load(tc, &r, "cleanup")) return;
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        if (test_quick() && c == 2) continue;
        static const struct {
            const char *src, *dst;
            int min_size;
        } RUNS[] = {{"flowrm", "fill15", 15}, {"masks", "fill0", 0}, {"masks", "fill40", 40}};
        for (int k = 0; k < 3; k++) {
            char nm[64];
            int64_t H = 0, W = 0, h2, w2;
            snprintf(nm, sizeof nm, "%s.%s", CASES[c], RUNS[k].src);
            uint32_t *m = ref_u32(tc, &r, nm, &H, &W);
            snprintf(nm, sizeof nm, "%s.%s", CASES[c], RUNS[k].dst);
            uint32_t *want = ref_u32(tc, &r, nm, &h2, &w2);
            if (!m || !want) return;
            CpErr e;
            CHECK(cln_fill_holes_remove_small(m, H, W, RUNS[k].min_size, &e) == CP_OK);
            snprintf(nm, sizeof nm, "%s fill min_size %d", CASES[c], RUNS[k].min_size);
            same_masks(tc, nm, m, want, H * W);
            cp_free(m), cp_free(want);
        }
    }
    ref_free(&r);
}

TEST(test_threads_identical) {
    Ref r;
    if (!ref_load(tc, &r, "cleanup")) return;
    int64_t H = 0, W = 0;
    uint32_t *m0 = ref_u32(tc, &r, "dsb000.masks", &H, &W);
    float *dp = ref_f32(tc, &r, "dsb000.dp", 2 * H * W);
    if (!m0 || !dp) return;
    uint32_t *out[3];
    for (int t = 1; t <= 3; t++) {
        CpCtx ctx = ctx_with(t);
        CpErr e;
        out[t - 1] = dup_u32(m0, H * W);
        CHECK(cln_flow_error_remove(out[t - 1], dp, H, W, 0.4f, &ctx, &e) == CP_OK);
        CHECK(cln_fill_holes_remove_small(out[t - 1], H, W, 15, &e) == CP_OK);
        cp_ctx_free(&ctx);
    }
    check_same_bytes(tc, "cleanup 1 vs 2 threads", out[0], out[1], sizeof(uint32_t) * (size_t)(H * W));
    check_same_bytes(tc, "cleanup 1 vs 3 threads", out[0], out[2], sizeof(uint32_t) * (size_t)(H * W));
    cp_free(out[0]), cp_free(out[1]), cp_free(out[2]), cp_free(m0), cp_free(dp);
    ref_free(&r);
}

TEST(test_edge_cases) {
    CpCtx ctx = ctx_with(1);
    CpErr e;
    uint32_t z[12] = {0};
    float dp[24] = {0};
    CHECK(cln_flow_error_remove(z, dp, 3, 4, 0.4f, &ctx, &e) == CP_OK); /* empty: nothing to do */
    CHECK(cln_fill_holes_remove_small(z, 3, 4, 15, &e) == CP_OK);
    for (int i = 0; i < 12; i++) CHECK(z[i] == 0);
    CHECK(cln_fill_holes_remove_small(z, 0, 4, 15, &e) == CP_EFAIL); /* bad shape: one line */
    CHECK(strncmp(e.msg, "cleanup:", 8) == 0 && !strchr(e.msg, '\n'));
    uint32_t big[4] = {0, 0xffffffffu, 0, 0};
    CHECK(cln_fill_holes_remove_small(big, 2, 2, 0, &e) == CP_EFAIL);
    cp_ctx_free(&ctx);
}

TEST_MAIN(T(test_flow_remove_vs_cellpose), T(test_fill_holes_vs_cellpose), T(test_threads_identical),
          T(test_edge_cases))
