/* test_flows.c - train/flows.c against the real Cellpose 3.1.1.3
 * (tests/ref/flows.py writes $CP_REF_DIR/flows.safetensors).
 *
 * Per case (8 bundled label images, 4 synthetic ones):
 *   - the bundled TIFF read with core/image.h equals the labels Python read;
 *   - flows_renumber == fastremap.renumber (every pixel) and the mask count;
 *   - flows_from_labels (3, H, W) vs labels_to_flows channels [1:] computed
 *     with masks_to_flows(device=cpu): max abs diff and differing pixels are
 *     printed; the contract is bitwise equality;
 *   - flows_diameter: bitwise equal to the median with IEEE sqrt, and within
 *     2 ulp of utils.diameters (numpy's int ** 0.5 is not always sqrt).
 * Thread identity: 1, 2 and 3 threads give identical bytes. Errors: a label
 * above n is refused. CP_TEST_QUICK=1 skips three of the larger images. */
#include <math.h>
#include <stdio.h>

#include "ctx.h"
#include "image.h"
#include "optest.h"
#include "train/flows.h"

typedef struct {
    const char *name, *path; /* path NULL: synthetic, labels come from the reference */
    int big;                 /* skipped in quick mode */
} Case;

static const Case CASES[] = {
    {"dsb000", "data/samples/dsb2018_stage1test_fluo/dsbfluo_000_masks.tif", 0},
    {"dsb009", "data/samples/dsb2018_stage1test_fluo/dsbfluo_009_masks.tif", 0},
    {"bbbc000", "data/samples/bbbc039_u2os_nuclei/bbbc039_000_masks.tif", 0},
    {"usii000", "data/samples/usiigaci_phase_contrast/usiigaci_000_masks.tif", 1},
    {"dsb005", "data/samples/dsb2018_stage1test_fluo/dsbfluo_005_masks.tif", 1},
    {"dsb010", "data/samples/dsb2018_stage1test_fluo/dsbfluo_010_masks.tif", 0},
    {"bbbc001", "data/samples/bbbc039_u2os_nuclei/bbbc039_001_masks.tif", 1},
    {"bbbc002", "data/samples/bbbc039_u2os_nuclei/bbbc039_002_masks.tif", 0},
    {"touch", NULL, 0},
    {"lines", NULL, 0},
    {"empty", NULL, 0},
    {"full", NULL, 0},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

/* Integer tensor <case>.<what> as uint32 (H, W); shape from the file. */
static uint32_t *ref_labels(TestCase *tc, const Ref *r, const char *cname, const char *what, int64_t *h,
                            int64_t *w) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", cname, what);
    const StTensor *t = r->ok ? st_find(&r->f, key) : NULL;
    CHECKF(t && t->ndim == 2, "reference tensor '%s' missing or not 2-D", key);
    if (!t || t->ndim != 2) return NULL;
    *h = t->shape[0];
    *w = t->shape[1];
    int32_t *tmp = (int32_t *)cp_malloc(sizeof(int32_t) * (size_t)(t->numel + 1));
    uint32_t *out = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)(t->numel + 1));
    CpErr e;
    int ok = st_copy(&r->f, t, ST_I32, tmp, t->numel, &e) == CP_OK;
    CHECKF(ok, "%s", e.msg);
    for (int64_t i = 0; i < t->numel; i++) out[i] = ok ? (uint32_t)tmp[i] : 0;
    cp_free(tmp);
    return out;
}

static double ref_f64(TestCase *tc, const Ref *r, const char *key) {
    const StTensor *t = r->ok ? st_find(&r->f, key) : NULL;
    double v = NAN;
    CpErr e;
    CHECKF(t && st_copy(&r->f, t, ST_F64, &v, 1, &e) == CP_OK, "reference f64 '%s' missing", key);
    return v;
}

/* Max abs difference and the number of differing pixels (any channel). */
static void compare_flows(TestCase *tc, const char *name, const float *got, const float *ref, int64_t h,
                          int64_t w) {
    double maxd = 0;
    int64_t npx = 0;
    for (int64_t i = 0; i < h * w; i++) {
        int diff = 0;
        for (int c = 0; c < 3; c++) {
            double d = fabs((double)got[c * h * w + i] - (double)ref[c * h * w + i]);
            maxd = d > maxd ? d : maxd;
            diff |= memcmp(&got[c * h * w + i], &ref[c * h * w + i], sizeof(float)) != 0;
        }
        npx += diff;
    }
    printf("  %-8s %5lld x %-5lld flows vs Cellpose: max abs diff %.3g, %lld of %lld pixels differ\n", name,
           (long long)h, (long long)w, maxd, (long long)npx, (long long)(h * w));
    CHECKF(npx == 0, "%s: flows differ from Cellpose at %lld pixels (max abs %.3g)", name, (long long)npx, maxd);
}

/* Labels of one case: the bundled TIFF through core/image.h (checked against
 * what Python read) or the synthetic labels from the reference. */
static uint32_t *case_labels(TestCase *tc, const Ref *r, const Case *cs, int64_t *h, int64_t *w) {
    uint32_t *raw = ref_labels(tc, r, cs->name, "raw", h, w);
    if (!raw || !cs->path) return raw;
    Image img;
    CpErr e;
    int ok = image_read(&img, cs->path, 0, INT64_MAX, &e) == CP_OK;
    CHECKF(ok, "%s", e.msg);
    if (!ok) return raw;
    CHECKF(img.h == *h && img.w == *w, "%s: shape %lldx%lld vs %lldx%lld", cs->path, (long long)img.h,
           (long long)img.w, (long long)*h, (long long)*w);
    uint32_t *lab = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)(img.h * img.w));
    if (img.h == *h && img.w == *w) {
        CHECKF(image_to_labels(&img, cs->path, lab, &e) == CP_OK, "%s", e.msg);
        check_same_bytes(tc, "labels read by image.h vs tifffile", lab, raw, sizeof(uint32_t) * (size_t)(*h * *w));
    }
    image_free(&img);
    cp_free(lab);
    return raw;
}

TEST(test_parity) {
    Ref r;
    if (!ref_load(tc, &r, "flows")) return;
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 1, 0);
    for (int k = 0; k < NCASES; k++) {
        const Case *cs = &CASES[k];
        if (cs->big && test_quick()) continue;
        int64_t h = 0, w = 0, h2 = 0, w2 = 0;
        uint32_t *lab = case_labels(tc, &r, cs, &h, &w);
        uint32_t *ren = ref_labels(tc, &r, cs->name, "renum", &h2, &w2);
        char key[128];
        snprintf(key, sizeof key, "%s.n", cs->name);
        int64_t nref = ref_int(tc, &r, key);
        snprintf(key, sizeof key, "%s.flows", cs->name);
        float *fref = ref_f32(tc, &r, key, 3 * h * w);
        if (lab && ren && fref && h == h2 && w == w2) {
            int n = flows_renumber(lab, h, w);
            CHECKF(n == nref, "%s: %d masks vs fastremap %lld", cs->name, n, (long long)nref);
            int64_t nd = 0;
            for (int64_t i = 0; i < h * w; i++) nd += lab[i] != ren[i];
            CHECKF(nd == 0, "%s: renumbered labels differ from fastremap.renumber at %lld pixels", cs->name,
                   (long long)nd);
            float *fl = alloc_f32(3 * h * w);
            poison(fl, 3 * h * w);
            CpErr e;
            double t0 = harness_now();
            CHECKF(flows_from_labels(fl, lab, h, w, n, &ctx, &e) == CP_OK, "%s", e.msg);
            double dt = harness_now() - t0;
            check_written(tc, "flows", fl, 3 * h * w);
            compare_flows(tc, cs->name, fl, fref, h, w);
            printf("           %d masks, %.3f s (1 thread)\n", n, dt);
            snprintf(key, sizeof key, "%s.diam_sqrt", cs->name);
            double ds = ref_f64(tc, &r, key);
            snprintf(key, sizeof key, "%s.diam", cs->name);
            double dc = ref_f64(tc, &r, key), d = flows_diameter(lab, h, w);
            printf("           diameter %.17g, Cellpose %.17g (with np.sqrt %.17g)\n", d, dc, ds);
            CHECKF(memcmp(&d, &ds, sizeof d) == 0, "%s: diameter %.17g vs %.17g", cs->name, d, ds);
            CHECKF(fabs(d - dc) <= 2 * 2.220446049250313e-16 * fabs(dc), "%s: diameter %.17g vs Cellpose %.17g",
                   cs->name, d, dc);
            cp_free(fl);
        }
        cp_free(lab);
        cp_free(ren);
        cp_free(fref);
    }
    ref_free(&r);
}

/* 1, 2 and 3 threads: identical bytes (the largest image unless quick). */
TEST(test_threads) {
    Ref r;
    if (!ref_load(tc, &r, "flows")) return;
    const char *name = test_quick() ? "dsb009" : "usii000";
    int64_t h = 0, w = 0;
    uint32_t *lab = ref_labels(tc, &r, name, "renum", &h, &w);
    if (lab) {
        int n = flows_renumber(lab, h, w); /* already renumbered: a no-op */
        float *out[3];
        for (int t = 0; t < 3; t++) {
            CpCtx ctx;
            cp_ctx_init(&ctx, CP_BACKEND_CPU, t + 1, 0);
            out[t] = alloc_f32(3 * h * w);
            poison(out[t], 3 * h * w);
            CpErr e;
            double t0 = harness_now();
            CHECKF(flows_from_labels(out[t], lab, h, w, n, &ctx, &e) == CP_OK, "%s", e.msg);
            printf("  %s %lldx%lld, %d threads: %.3f s\n", name, (long long)h, (long long)w, t + 1,
                   harness_now() - t0);
        }
        check_same_bytes(tc, "flows 1 vs 2 threads", out[0], out[1], sizeof(float) * (size_t)(3 * h * w));
        check_same_bytes(tc, "flows 1 vs 3 threads", out[0], out[2], sizeof(float) * (size_t)(3 * h * w));
        for (int t = 0; t < 3; t++) cp_free(out[t]);
    }
    cp_free(lab);
    ref_free(&r);
}

/* Labels above n are refused with a message; an absent label is skipped. */
TEST(test_errors) {
    uint32_t lab[6] = {0, 1, 1, 0, 4, 4};
    float fl[18];
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 2, 0);
    CpErr e = {{0}};
    CHECK(flows_from_labels(fl, lab, 2, 3, 3, &ctx, &e) == CP_EFAIL);
    CHECKF(strstr(e.msg, "exceeds the mask count") != NULL, "message: %s", e.msg);
    poison(fl, 18);
    CHECKF(flows_from_labels(fl, lab, 2, 3, 4, &ctx, &e) == CP_OK, "%s", e.msg); /* 2, 3 absent */
    check_written(tc, "flows", fl, 18);
    CHECK(fl[0] == 0.0f && fl[1] == 1.0f && fl[6 + 0] == 0.0f);
    CHECK(flows_diameter(lab, 0, 0) == 0.0);
}

TEST_MAIN(T(test_parity), T(test_threads), T(test_errors))
