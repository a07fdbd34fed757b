/* test_augment.c - train/augment.{h,c}: Cellpose's random_rotate_and_resize
 * with Philox draws and our exact bilinear warp.
 *
 *  parity     vs the real Cellpose 3.1.1.3 (tests/ref/augment.py: a bundled
 *             real image + masks_to_flows flows, 8 parameter sets, OpenCV
 *             warpAffine inside). Our matrix must map onto Cellpose's M; the
 *             outputs differ only by OpenCV's 1/32-pixel fixed-point
 *             interpolation, so mean/max |diff| are printed and bounded by
 *             tolerances that a wrong matrix, flip or rotation sign exceeds
 *             by orders of magnitude; mask ids must agree on > 99% of pixels.
 *  identity   theta 0, scale 1, no flip, integer crop offset: the output is
 *             the input crop, value for value (synthetic data, no Python).
 *  flip2      flipping twice gives the input back; one flip mirrors x and
 *             negates dX.
 *  draw       aug_draw over many (epoch, image) counters: flip ~ 50%, theta
 *             uniform in [0, 2pi), scale uniform in its range / rescale,
 *             offsets uniform within their bounds (and 0 for small images),
 *             order independence. Philox makes every figure deterministic.
 *  threads    aug_apply bytes equal for 1, 2, 3, 7 threads and run to run;
 *             every output element written.
 *
 * Layouts: img [C, h, w], lbl [3, h, w] (ids or cellprob, dY, dX), outputs
 * [C, B, B] and [3, B, B]. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/augment.h"
#include "optest.h"

#define TWO_PI 6.28318530717958647692

static CpCtx ctx_threads(int threads) {
    CpCtx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.backend = CP_BACKEND_CPU;
    ctx.threads = threads;
    return ctx;
}

/* Mean and max |a - b| over n elements. */
static void diff_stats(const float *a, const float *b, int64_t n, double *mean, double *max) {
    double s = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        s += d;
        if (d > m) m = d;
    }
    *mean = s / (double)n;
    *max = m;
}

/* ---- parity with Cellpose -------------------------------------------------- */

/* Our source coordinates of three output pixels pushed through Cellpose's
 * forward matrix M [2, 3] must land back on those pixels. */
static void check_matrix(TestCase *tc, int k, const AugWarp *wp, const float *M, int bsize) {
    const int px[3][2] = {{0, 0}, {bsize - 1, 0}, {bsize / 3, bsize - 1}};
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        float sx, sy;
        aug_src_coord(wp, px[i][0], px[i][1], &sx, &sy);
        double x = (double)M[0] * sx + (double)M[1] * sy + M[2];
        double y = (double)M[3] * sx + (double)M[4] * sy + M[5];
        double d = fmax(fabs(x - px[i][0]), fabs(y - px[i][1]));
        if (d > worst) worst = d;
    }
    CHECKF(worst < 2e-3, "set %d: our inverse map vs Cellpose's M: %.3g px off", k, worst);
}

/* One parameter set: returns the figures through the pointers. */
static void parity_set(TestCase *tc, const Ref *r, int k, const float *img, const float *lbl, int C, int64_t h,
                       int64_t w, int bsize) {
    char name[64];
    int64_t nb = (int64_t)bsize * bsize;
    AugParams p;
    snprintf(name, sizeof name, "p%d_flip", k);
    p.flip = (int)ref_int(tc, r, name);
    snprintf(name, sizeof name, "p%d_theta", k);
    float *th = ref_f32(tc, r, name, 1);
    snprintf(name, sizeof name, "p%d_scale", k);
    float *sc = ref_f32(tc, r, name, 1);
    snprintf(name, sizeof name, "p%d_dxy", k);
    float *dxy = ref_f32(tc, r, name, 2);
    snprintf(name, sizeof name, "p%d_M", k);
    float *M = ref_f32(tc, r, name, 6);
    snprintf(name, sizeof name, "p%d_img", k);
    float *rimg = ref_f32(tc, r, name, C * nb);
    snprintf(name, sizeof name, "p%d_lbl", k);
    float *rlbl = ref_f32(tc, r, name, 3 * nb);
    if (!th || !sc || !dxy || !M || !rimg || !rlbl) goto done;
    p.theta = th[0];
    p.scale = sc[0];
    p.dxy[0] = dxy[0];
    p.dxy[1] = dxy[1];
    AugWarp wp = aug_warp(&p, h, w, bsize);
    check_matrix(tc, k, &wp, M, bsize);

    float *oimg = alloc_f32(C * nb), *olbl = alloc_f32(3 * nb);
    CpCtx ctx = ctx_threads(2);
    aug_apply(oimg, olbl, img, lbl, C, h, w, bsize, &p, &ctx);
    double mi, xi, my, xy, mx, xx;
    diff_stats(oimg, rimg, C * nb, &mi, &xi);
    diff_stats(olbl + nb, rlbl + nb, nb, &my, &xy);
    diff_stats(olbl + 2 * nb, rlbl + 2 * nb, nb, &mx, &xx);
    int64_t agree = 0;
    for (int64_t i = 0; i < nb; i++) agree += olbl[i] == rlbl[i];
    double fa = (double)agree / (double)nb;
    printf("  set %d flip %d theta %.4f scale %.3f dxy (%7.2f, %7.2f): image mean %.2e max %.2e | dY mean %.2e "
           "max %.2e | dX mean %.2e max %.2e | mask ids agree %.4f%%\n",
           k, p.flip, (double)p.theta, (double)p.scale, (double)p.dxy[0], (double)p.dxy[1], mi, xi, my, xy, mx,
           xx, 100.0 * fa);
    /* Image range is [~0, ~1] (normalize99); flows are unit vectors. OpenCV's
     * 1/32-px quantisation gives mean < 5e-4, max < 0.035 (measured); a wrong
     * sign or matrix gives means > 1e-2. */
    CHECKF(mi < 1e-3 && my < 1e-3 && mx < 1e-3, "set %d: mean |diff| img %.2e dY %.2e dX %.2e", k, mi, my, mx);
    CHECKF(xi < 0.05 && xy < 0.1 && xx < 0.1, "set %d: max |diff| img %.2e dY %.2e dX %.2e", k, xi, xy, xx);
    CHECKF(fa > 0.99, "set %d: mask ids agree on %.4f%% of pixels", k, 100.0 * fa);
    cp_free(oimg);
    cp_free(olbl);
done:
    cp_free(th);
    cp_free(sc);
    cp_free(dxy);
    cp_free(M);
    cp_free(rimg);
    cp_free(rlbl);
}

TEST(test_parity) {
    Ref r;
    if (!ref_load(tc, &r, "augment")) return;
    int C = (int)ref_int(tc, &r, "C");
    int64_t h = ref_int(tc, &r, "h"), w = ref_int(tc, &r, "w");
    int bsize = (int)ref_int(tc, &r, "bsize"), nsets = (int)ref_int(tc, &r, "nsets");
    float *img = ref_f32(tc, &r, "img", C * h * w), *lbl = ref_f32(tc, &r, "lbl", 3 * h * w);
    if (img && lbl) {
        printf("  input %dx%lld x %lld, crop %d (vs Cellpose random_rotate_and_resize / cv2.warpAffine)\n", C,
               (long long)h, (long long)w, bsize);
        for (int k = 0; k < nsets; k++) parity_set(tc, &r, k, img, lbl, C, h, w, bsize);
    }
    cp_free(img);
    cp_free(lbl);
    ref_free(&r);
}

/* ---- exact properties ------------------------------------------------------ */

/* Synthetic image + labels with integer-valued ids and signed flows. */
static void synth(float *img, float *lbl, int C, int64_t h, int64_t w) {
    fill_uniform(img, C * h * w, 1, -1.0f, 2.0f);
    fill_uniform(lbl + h * w, 2 * h * w, 2, -1.0f, 1.0f);
    for (int64_t i = 0; i < h * w; i++) lbl[i] = (float)((i * 7919) % 13);
}

TEST(test_identity) {
    const int C = 3, B = 224;
    const int64_t h = 301, w = 250;
    const int off[3][2] = {{0, 0}, {26, 77}, {9, 40}}; /* crop (x, y) offsets */
    float *img = alloc_f32(C * h * w), *lbl = alloc_f32(3 * h * w);
    float *oi = alloc_f32(C * B * B), *ol = alloc_f32(3 * B * B);
    synth(img, lbl, C, h, w);
    CpCtx ctx = ctx_threads(3);
    for (int t = 0; t < 3; t++) {
        /* src = dst + (w - B)/2 - dx  ->  dx = (w - B)/2 - offset */
        AugParams p = {0, 0.0f, 1.0f, {0.5f * (float)(w - B) - (float)off[t][0], 0.5f * (float)(h - B) - (float)off[t][1]}};
        aug_apply(oi, ol, img, lbl, C, h, w, B, &p, &ctx);
        int64_t bad = 0;
        for (int k = 0; k < C; k++)
            for (int y = 0; y < B; y++)
                for (int x = 0; x < B; x++)
                    bad += oi[((int64_t)k * B + y) * B + x] != img[(k * h + y + off[t][1]) * w + x + off[t][0]];
        for (int k = 0; k < 3; k++)
            for (int y = 0; y < B; y++)
                for (int x = 0; x < B; x++)
                    bad += ol[((int64_t)k * B + y) * B + x] != lbl[(k * h + y + off[t][1]) * w + x + off[t][0]];
        CHECKF(bad == 0, "crop at (%d, %d): %lld values differ from the input crop", off[t][0], off[t][1],
               (long long)bad);
    }
    cp_free(img);
    cp_free(lbl);
    cp_free(oi);
    cp_free(ol);
}

TEST(test_flip2) {
    const int C = 2, B = 97; /* input the size of the crop: src = dst exactly */
    const int64_t n = (int64_t)B * B;
    float *img = alloc_f32(C * n), *lbl = alloc_f32(3 * n);
    float *i1 = alloc_f32(C * n), *l1 = alloc_f32(3 * n), *i2 = alloc_f32(C * n), *l2 = alloc_f32(3 * n);
    synth(img, lbl, C, B, B);
    CpCtx ctx = ctx_threads(2);
    AugParams p = {1, 0.0f, 1.0f, {0.0f, 0.0f}};
    aug_apply(i1, l1, img, lbl, C, B, B, B, &p, &ctx);
    aug_apply(i2, l2, i1, l1, C, B, B, B, &p, &ctx);
    int64_t bad1 = 0, bad2 = 0;
    for (int k = 0; k < C; k++)
        for (int y = 0; y < B; y++)
            for (int x = 0; x < B; x++) bad1 += i1[(k * B + y) * B + x] != img[(k * B + y) * B + (B - 1 - x)];
    for (int k = 0; k < 3; k++)
        for (int y = 0; y < B; y++)
            for (int x = 0; x < B; x++) {
                float want = lbl[(k * B + y) * B + (B - 1 - x)];
                bad1 += l1[(k * B + y) * B + x] != (k == 2 ? -want : want);
            }
    /* value comparison: a 0.0 in dX comes back as -0.0 (negated twice) */
    for (int64_t i = 0; i < C * n; i++) bad2 += i2[i] != img[i];
    for (int64_t i = 0; i < 3 * n; i++) bad2 += l2[i] != lbl[i];
    CHECKF(bad1 == 0, "one flip: %lld values are not the mirror image (dX negated)", (long long)bad1);
    CHECKF(bad2 == 0, "flip twice: %lld values differ from the input", (long long)bad2);
    cp_free(img);
    cp_free(lbl);
    cp_free(i1);
    cp_free(l1);
    cp_free(i2);
    cp_free(l2);
}

/* ---- parameter draws --------------------------------------------------------- */

/* Pearson chi-square of n values u in [0, 1) over nb equal bins. */
static double chi2_uniform(const double *u, int n, int nb) {
    int cnt[64] = {0};
    for (int i = 0; i < n; i++) cnt[(int)(u[i] * nb)]++;
    double e = (double)n / nb, c = 0;
    for (int b = 0; b < nb; b++) c += (cnt[b] - e) * (cnt[b] - e) / e;
    return c;
}

/* One configuration: n draws, ranges checked for every draw, uniformity by
 * chi-square over 16 bins (15 dof: p = 1e-4 at 42.6; Philox gives fixed values). */
static void draw_config(TestCase *tc, int n, int64_t h, int64_t w, int B, float rescale, float sr) {
    CpRngKey key = cp_rng_key(42u, AUG_STREAM);
    double *ut = cp_malloc(sizeof(double) * (size_t)n), *us = cp_malloc(sizeof(double) * (size_t)n);
    double *ux = cp_malloc(sizeof(double) * (size_t)n), *uy = cp_malloc(sizeof(double) * (size_t)n);
    float src = sr > 2.0f ? 2.0f : sr;
    int flips = 0, bad = 0, nx = 0, ny = 0;
    for (int i = 0; i < n; i++) {
        AugParams p;
        aug_draw(&p, key, (uint32_t)(i / 1000), (uint32_t)(i % 1000), h, w, B, rescale, sr, 1);
        flips += p.flip;
        double s0 = (double)p.scale * rescale; /* undo 1/rescale: uniform in [1 - sr/2, 1 + sr/2) */
        bad += !(p.theta >= 0.0f && p.theta < TWO_PI);
        bad += !(s0 >= 1.0 - src / 2 - 1e-6 && s0 <= 1.0 + src / 2 + 1e-6);
        double rx = fmax(0.0, (double)w * p.scale - B), ry = fmax(0.0, (double)h * p.scale - B);
        bad += !(fabs((double)p.dxy[0]) <= 0.5 * rx * (1 + 1e-6) && fabs((double)p.dxy[1]) <= 0.5 * ry * (1 + 1e-6));
        ut[i] = p.theta / TWO_PI;
        us[i] = src > 0 ? fmin(fmax((s0 - (1.0 - src / 2)) / src, 0.0), 0.999999) : 0.5;
        if (rx > 1) ux[nx++] = fmin(fmax(p.dxy[0] / rx + 0.5, 0.0), 0.999999);
        if (ry > 1) uy[ny++] = fmin(fmax(p.dxy[1] / ry + 0.5, 0.0), 0.999999);
    }
    double ff = (double)flips / n, sig = sqrt(0.25 / n);
    double ct = chi2_uniform(ut, n, 16), cs = chi2_uniform(us, n, 16);
    double cx = nx > 160 ? chi2_uniform(ux, nx, 16) : 0, cy = ny > 160 ? chi2_uniform(uy, ny, 16) : 0;
    printf("  %lldx%lld B %d rescale %.2f sr %.2f: flip %.4f, chi2(16 bins) theta %.1f scale %.1f dx %.1f (n %d) "
           "dy %.1f (n %d)\n",
           (long long)h, (long long)w, B, (double)rescale, (double)sr, ff, ct, cs, cx, nx, cy, ny);
    CHECKF(bad == 0, "%d draws out of range", bad);
    CHECKF(fabs(ff - 0.5) < 4 * sig, "flip fraction %.4f", ff);
    CHECKF(ct < 42.6 && cx < 42.6 && cy < 42.6, "not uniform: theta %.1f dx %.1f dy %.1f", ct, cx, cy);
    CHECKF(src == 0 || cs < 42.6, "scale not uniform: %.1f", cs);
    cp_free(ut);
    cp_free(us);
    cp_free(ux);
    cp_free(uy);
}

TEST(test_draw) {
    int n = test_quick() ? 4000 : 20000;
    draw_config(tc, n, 519, 253, 224, 1.0f, 1.0f);  /* x range often 0 (w*scale < B) */
    draw_config(tc, n, 520, 696, 224, 0.8f, 0.5f);  /* v3 default range, rescale */
    draw_config(tc, n, 1022, 1024, 256, 2.3f, 5.0f); /* scale_range clipped to 2 */

    CpRngKey key = cp_rng_key(7u, AUG_STREAM);
    int bad = 0, same_seed_other = 0;
    for (uint32_t i = 0; i < 500; i++) {
        AugParams a, b, c, d;
        aug_draw(&a, key, 3, i, 100, 90, 224, 1.0f, 0.5f, 1);  /* smaller than the crop */
        aug_draw(&b, key, 3, i, 100, 90, 224, 1.0f, 0.5f, 0);  /* do_flip off */
        aug_draw(&c, key, 3, 499 - i, 100, 90, 224, 1.0f, 0.5f, 1);
        aug_draw(&d, cp_rng_key(8u, AUG_STREAM), 3, i, 100, 90, 224, 1.0f, 0.5f, 1);
        bad += a.dxy[0] != 0.0f || a.dxy[1] != 0.0f || b.flip != 0 || b.theta != a.theta || b.scale != a.scale;
        AugParams e;
        aug_draw(&e, key, 3, 499 - i, 100, 90, 224, 1.0f, 0.5f, 1); /* again, other order: same */
        bad += memcmp(&c, &e, sizeof c) != 0;
        same_seed_other += d.theta == a.theta;
    }
    CHECKF(bad == 0, "%d draws: small image offset != 0, do_flip ignored or order-dependent", bad);
    CHECKF(same_seed_other < 3, "seeds 7 and 8 give %d equal thetas of 500", same_seed_other);
}

/* ---- threads and coverage ---------------------------------------------------- */

TEST(test_threads) {
    const int C = 3, B = test_quick() ? 96 : 224;
    const int64_t h = 333, w = 271, nb = (int64_t)B * B;
    float *img = alloc_f32(C * h * w), *lbl = alloc_f32(3 * h * w);
    synth(img, lbl, C, h, w);
    CpRngKey key = cp_rng_key(1u, AUG_STREAM);
    float *ri = alloc_f32(C * nb), *rl = alloc_f32(3 * nb), *oi = alloc_f32(C * nb), *ol = alloc_f32(3 * nb);
    for (uint32_t s = 0; s < 4; s++) {
        AugParams p;
        aug_draw(&p, key, 0, s, h, w, B, 0.7f + 0.2f * (float)s, 1.0f, 1);
        const int threads[5] = {1, 1, 2, 3, 7}; /* 1 twice: run to run */
        for (int t = 0; t < 5; t++) {
            CpCtx ctx = ctx_threads(threads[t]);
            float *di = t ? oi : ri, *dl = t ? ol : rl;
            poison(di, C * nb);
            poison(dl, 3 * nb);
            aug_apply(di, dl, img, lbl, C, h, w, B, &p, &ctx);
            check_written(tc, "img_out", di, C * nb);
            check_written(tc, "lbl_out", dl, 3 * nb);
            if (!t) continue;
            check_same_bytes(tc, "img_out", ri, oi, sizeof(float) * (size_t)(C * nb));
            check_same_bytes(tc, "lbl_out", rl, ol, sizeof(float) * (size_t)(3 * nb));
        }
        /* image-only call gives the same image bytes */
        CpCtx ctx = ctx_threads(2);
        aug_apply(oi, NULL, img, NULL, C, h, w, B, &p, &ctx);
        check_same_bytes(tc, "img_out (no labels)", ri, oi, sizeof(float) * (size_t)(C * nb));
    }
    cp_free(img);
    cp_free(lbl);
    cp_free(ri);
    cp_free(rl);
    cp_free(oi);
    cp_free(ol);
}

TEST_MAIN(T(test_parity), T(test_identity), T(test_flip2), T(test_draw), T(test_threads))
