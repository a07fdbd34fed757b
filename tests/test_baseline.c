/* test_baseline.c - eval/baseline vs references nobody here wrote
 * (tests/ref/baseline.py): cv2's Otsu threshold on uint8 images (raw and
 * after Cellpose normalization: the same pixels), cv2.GaussianBlur and
 * cv2.boxFilter in float64, cv2.connectedComponents (same partition) and
 * scipy.ndimage.label (same numbering), and the whole otsu baseline equal to
 * cv2 Otsu + cv2 components + Cellpose's fill_holes_and_remove_small_masks. */
#include <math.h>

#include "baseline.h"
#include "optest.h"

/* A 2-D reference tensor as float64, with its shape. */
static double *ref2d(TestCase *tc, const Ref *r, const char *name, int64_t *H, int64_t *W) {
    const StTensor *t = r->ok ? st_find(&r->f, name) : NULL;
    CHECKF(t != NULL && t->ndim == 2, "reference tensor '%s' missing or not 2-D", name);
    if (!t || t->ndim != 2) return NULL;
    int64_t n;
    *H = t->shape[0], *W = t->shape[1];
    return ref_f64v(tc, r, name, &n);
}

static float *to_f32(const double *v, int64_t n) {
    float *p = alloc_f32(n);
    for (int64_t i = 0; i < n; i++) p[i] = (float)v[i];
    return p;
}

TEST(test_otsu_vs_cv2) {
    Ref r;
    if (!ref_load(tc, &r, "baseline")) return;
    CpCtx ctx = ctx_with(1);
    for (int k = 0; k < 5; k++) {
        char nm[64];
        int64_t H, W, h2, w2;
        snprintf(nm, sizeof nm, "otsu%d.img", k);
        double *img = ref2d(tc, &r, nm, &H, &W);
        snprintf(nm, sizeof nm, "otsu%d.fg", k);
        double *want = ref2d(tc, &r, nm, &h2, &w2);
        if (!img || !want) continue;
        float *x = to_f32(img, H * W), *xn = alloc_f32(H * W);
        uint8_t *fg = cp_malloc((size_t)(H * W));
        double t;
        CHECK(bl_otsu_threshold(&t, x, H * W) == 1);
        int64_t bad_raw = 0, bad_norm = 0, nfg = 0;
        for (int64_t i = 0; i < H * W; i++) bad_raw += ((double)x[i] > t) != (want[i] != 0), nfg += want[i] != 0;
        /* through the normalization the baselines use: Otsu picks the same pixels */
        Image im = {.h = H, .w = W, .c = 1, .dtype = IMG_F32, .data = x, .npages = 1};
        int ch[2] = {0, 0};
        CpErr e;
        BlParams p;
        bl_params_default(&p);
        CHECK(bl_prepare(xn, &im, ch, &ctx, "otsu", &e) == CP_OK);
        CHECK(bl_foreground(fg, xn, H, W, BL_OTSU, &p, &e) == CP_OK);
        for (int64_t i = 0; i < H * W; i++) bad_norm += fg[i] != (want[i] != 0);
        printf("  otsu%d %lldx%lld: our t %g, %lld fg pixels; differing from cv2: raw %lld, normalized %lld\n", k,
               (long long)H, (long long)W, t, (long long)nfg, (long long)bad_raw, (long long)bad_norm);
        CHECKF(bad_raw == 0 && bad_norm == 0, "otsu%d: %lld / %lld pixels differ from cv2", k, (long long)bad_raw,
               (long long)bad_norm);
        cp_free(img), cp_free(want), cp_free(x), cp_free(xn), cp_free(fg);
    }
    float c[12] = {3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3};
    double t;
    CHECK(bl_otsu_threshold(&t, c, 12) == 0); /* one value: no split, no foreground */
    ref_free(&r);
}

TEST(test_gaussian_vs_cv2) {
    Ref r;
    if (!ref_load(tc, &r, "baseline")) return;
    for (int k = 0; k < 4; k++) {
        char nm[64];
        int64_t H, W, h2, w2, n;
        snprintf(nm, sizeof nm, "blur%d.img", k);
        double *img = ref2d(tc, &r, nm, &H, &W);
        snprintf(nm, sizeof nm, "blur%d.out", k);
        double *want = ref2d(tc, &r, nm, &h2, &w2);
        snprintf(nm, sizeof nm, "blur%d.sigma", k);
        double *sg = ref_f64v(tc, &r, nm, &n);
        if (!img || !want || !sg) continue;
        float *x = to_f32(img, H * W), *y = alloc_f32(H * W);
        CpErr e;
        poison(y, H * W);
        CHECK(bl_gaussian_blur(y, x, H, W, sg[0], &e) == CP_OK);
        double md = 0;
        for (int64_t i = 0; i < H * W; i++) md = fmax(md, fabs((double)y[i] - want[i]));
        /* float32 output: within one rounding (2^-25 for values below 1) */
        printf("  blur%d %lldx%lld sigma %g: max |ours - cv2 f64| %.3g (tol 1e-7)\n", k, (long long)H, (long long)W,
               sg[0], md);
        CHECKF(md <= 1e-7 && count_poison(y, H * W) == 0, "blur%d: max diff %g", k, md);
        cp_free(img), cp_free(want), cp_free(sg), cp_free(x), cp_free(y);
    }
    ref_free(&r);
}

TEST(test_box_mean_and_adaptive_vs_cv2) {
    Ref r;
    if (!ref_load(tc, &r, "baseline")) return;
    for (int k = 0; k < 3; k++) {
        char nm[64];
        int64_t H, W, h2, w2;
        snprintf(nm, sizeof nm, "box%d.img", k);
        double *img = ref2d(tc, &r, nm, &H, &W);
        snprintf(nm, sizeof nm, "box%d.mean", k);
        double *want = ref2d(tc, &r, nm, &h2, &w2);
        snprintf(nm, sizeof nm, "box%d.block", k);
        int blk = (int)ref_int(tc, &r, nm);
        if (!img || !want) continue;
        float *x = to_f32(img, H * W);
        double *m = cp_malloc(sizeof(double) * (size_t)(H * W));
        uint8_t *fg = cp_malloc((size_t)(H * W));
        CpErr e;
        CHECK(bl_box_mean(m, x, H, W, blk, &e) == CP_OK);
        double md = 0;
        for (int64_t i = 0; i < H * W; i++) md = fmax(md, fabs(m[i] - want[i]));
        /* adaptive = x > cv2 mean + offset, except within 1e-9 of the threshold */
        BlParams p;
        bl_params_default(&p);
        p.block = blk, p.offset = 0.02;
        CHECK(bl_foreground(fg, x, H, W, BL_ADAPTIVE, &p, &e) == CP_OK);
        int64_t bad = 0, near = 0, nfg = 0;
        for (int64_t i = 0; i < H * W; i++) {
            double d = (double)x[i] - (want[i] + p.offset);
            if (fabs(d) < 1e-9) {
                near++;
                continue;
            }
            bad += fg[i] != (d > 0), nfg += fg[i];
        }
        printf("  box%d %lldx%lld block %d: max |mean - cv2| %.3g (tol 1e-12); adaptive: %lld fg, %lld differ, %lld "
               "within 1e-9\n",
               k, (long long)H, (long long)W, blk, md, (long long)nfg, (long long)bad, (long long)near);
        CHECKF(md <= 1e-12 && bad == 0 && nfg > 0, "box%d: mean diff %g, %lld fg pixels differ", k, md, (long long)bad);
        cp_free(img), cp_free(want), cp_free(x), cp_free(m), cp_free(fg);
    }
    CpErr e;
    double m[64];
    float x[64] = {0};
    CHECK(bl_box_mean(m, x, 8, 8, 4, &e) != CP_OK); /* even block */
    ref_free(&r);
}

/* Same partition: a bijection between our labels and cv2's. */
static int64_t partition_mismatch(const uint32_t *a, const double *b, int64_t n, int64_t nlab) {
    int64_t *fwd = cp_calloc((size_t)(n + 2), sizeof(int64_t)), *bwd = cp_calloc((size_t)(n + 2), sizeof(int64_t));
    int64_t bad = 0, nb = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t la = a[i], lb = (int64_t)b[i];
        if ((la == 0) != (lb == 0)) {
            bad++;
            continue;
        }
        if (!la) continue;
        nb = lb > nb ? lb : nb;
        if (!fwd[la]) fwd[la] = lb;
        if (!bwd[lb]) bwd[lb] = la;
        bad += fwd[la] != lb || bwd[lb] != la;
    }
    bad += nb != nlab;
    cp_free(fwd), cp_free(bwd);
    return bad;
}

TEST(test_label_vs_cv2_scipy) {
    Ref r;
    if (!ref_load(tc, &r, "baseline")) return;
    for (int k = 0; k < 3; k++)
        for (int conn = 4; conn <= 8; conn += 4) {
            char nm[64];
            int64_t H, W, h2, w2;
            snprintf(nm, sizeof nm, "cc%d.fg", k);
            double *fgd = ref2d(tc, &r, nm, &H, &W);
            snprintf(nm, sizeof nm, "cc%d.cv%d", k, conn);
            double *cv = ref2d(tc, &r, nm, &h2, &w2);
            snprintf(nm, sizeof nm, "cc%d.sp%d", k, conn);
            double *sp = ref2d(tc, &r, nm, &h2, &w2);
            if (!fgd || !cv || !sp) continue;
            uint8_t *fg = cp_malloc((size_t)(H * W));
            uint32_t *lab = cp_malloc(sizeof(uint32_t) * (size_t)(H * W));
            for (int64_t i = 0; i < H * W; i++) fg[i] = fgd[i] != 0;
            CpErr e;
            int64_t n = bl_label(lab, fg, H, W, conn, &e), bad_sp = 0;
            for (int64_t i = 0; i < H * W; i++) bad_sp += (double)lab[i] != sp[i];
            int64_t bad_cv = partition_mismatch(lab, cv, H * W, n);
            printf("  cc%d %lldx%lld %d-connected: %lld components; vs scipy %lld labels differ, vs cv2 partition "
                   "%lld\n",
                   k, (long long)H, (long long)W, conn, (long long)n, (long long)bad_sp, (long long)bad_cv);
            CHECKF(n > 1 && bad_sp == 0 && bad_cv == 0, "cc%d conn %d", k, conn);
            cp_free(fgd), cp_free(cv), cp_free(sp), cp_free(fg), cp_free(lab);
        }
    CpErr e;
    uint8_t fg[4] = {1, 0, 0, 1};
    uint32_t lab[4];
    CHECK(bl_label(lab, fg, 2, 2, 6, &e) < 0 && strstr(e.msg, "connectivity"));
    ref_free(&r);
}

TEST(test_otsu_segment_vs_cellpose) {
    Ref r;
    if (!ref_load(tc, &r, "baseline")) return;
    int64_t H, W, h2, w2;
    double *img = ref2d(tc, &r, "seg.img", &H, &W), *want = ref2d(tc, &r, "seg.masks", &h2, &w2);
    if (img && want) {
        float *raw = to_f32(img, H * W), *x = alloc_f32(H * W);
        uint32_t *m = cp_malloc(sizeof(uint32_t) * (size_t)(H * W));
        Image im = {.h = H, .w = W, .c = 1, .dtype = IMG_F32, .data = raw, .npages = 1};
        int ch[2] = {0, 0};
        CpCtx ctx = ctx_with(2);
        CpErr e;
        BlParams p;
        bl_params_default(&p);
        CHECK(bl_prepare(x, &im, ch, &ctx, "seg", &e) == CP_OK);
        CHECK(bl_segment(m, x, H, W, BL_OTSU, &p, &e) == CP_OK);
        int64_t bad = 0;
        uint32_t mx = 0;
        for (int64_t i = 0; i < H * W; i++) bad += (double)m[i] != want[i], mx = m[i] > mx ? m[i] : mx;
        printf("  otsu baseline on dsbfluo_000 (%lldx%lld): %u masks, %lld labels differ from cv2 + Cellpose\n",
               (long long)H, (long long)W, mx, (long long)bad);
        CHECKF(bad == 0 && mx > 5, "%lld pixels differ", (long long)bad);
        cp_free(raw), cp_free(x), cp_free(m);
    }
    cp_free(img), cp_free(want);
    ref_free(&r);
}

TEST_MAIN(T(test_otsu_vs_cv2), T(test_gaussian_vs_cv2), T(test_box_mean_and_adaptive_vs_cv2),
          T(test_label_vs_cv2_scipy), T(test_otsu_segment_vs_cellpose))
