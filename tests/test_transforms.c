/* test_transforms.c - train/transforms.c against Cellpose 3.1.1.3 itself
 * (tests/ref/transforms.py runs convert_image, normalize_img, np.percentile
 * and train_seg's LR construction on the bundled sample images):
 *  (a) percentiles: tfm_percentile == np.percentile, bit for bit (doubles);
 *  (b) channels: tfm_select_channels == convert_image(+reshape, transpose),
 *      bytes, on 8/16-bit, RGB (stacked) and float32 4-channel images, with
 *      every channel rule; the file cases are read from data/samples with
 *      image_read and must equal what tifffile read;
 *  (c) normalization: tfm_normalize_img == normalize_img(axis=0): the target
 *      is bit equality (numpy 1 does this arithmetic in float32); the count
 *      of differing elements and the max abs difference are printed;
 *      a 3401x3307 image exercises the subsampled percentiles (> 224^3);
 *  (d) thread counts 1, 2, 3, 7 give identical bytes;
 *  (e) the LR schedule, bitwise, n_epochs in {1 .. 2000}, 4 rates;
 *  (f) one-line errors: missing channel, bad channel numbers, tiny image,
 *      NaN pixels (image_read refuses them; normalize too, untouched),
 *      bad LR arguments; constant images are left as Cellpose leaves them. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "ctx.h"
#include "harness.h"
#include "image.h"
#include "optest.h"
#include "train/transforms.h"

/* The one tolerance rule with (atol, rtol) = (0, 0): Cellpose's arithmetic is
 * reproduced exactly (see transforms.h), so any difference is a failure. */
#define TOL_NORM_ATOL 0.0
#define TOL_NORM_RTOL 0.0

static const char *REF = "transforms";

/* ---- helpers ---- */

static int64_t count_diff_bits(const float *a, const float *b, int64_t n, double *max_abs) {
    int64_t c = 0;
    *max_abs = 0;
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], 4) != 0) c++;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > *max_abs) *max_abs = d;
    }
    return c;
}

static int one_line(const char *msg) { return msg[0] && !strchr(msg, '\n'); }

/* An Image viewing reference tensor `name` (HW or HWC, u8/u16/f32). */
static int ref_image(TestCase *tc, const Ref *r, const char *name, Image *img) {
    const StTensor *t = r->ok ? st_find(&r->f, name) : NULL;
    CHECKF(t != NULL, "reference tensor '%s' missing", name);
    if (!t) return 0;
    memset(img, 0, sizeof *img);
    img->h = t->shape[0];
    img->w = t->shape[1];
    img->c = t->ndim == 3 ? (int)t->shape[2] : 1;
    img->npages = 1;
    img->dtype = t->dtype == ST_U8 ? IMG_U8 : t->dtype == ST_U16 ? IMG_U16 : IMG_F32;
    img->data = cp_malloc(image_nbytes(img));
    CpErr e;
    int ok = st_copy(&r->f, t, t->dtype, img->data, t->numel, &e) == CP_OK;
    CHECKF(ok, "%s", e.msg);
    return ok;
}

/* ---- (a) percentiles ---- */

TEST(test_percentile) {
    Ref r;
    if (!ref_load(tc, &r, REF)) return;
    double ps[10];
    const StTensor *tp = st_find(&r.f, "pct_p");
    CpErr e;
    CHECK(tp && st_copy(&r.f, tp, ST_F64, ps, 10, &e) == CP_OK);
    int64_t ncase = ref_int(tc, &r, "pct_count");
    int64_t nbad = 0, ntot = 0;
    for (int k = 0; k < ncase; k++) {
        char nx[32], no[32];
        snprintf(nx, sizeof nx, "pct%d_x", k);
        snprintf(no, sizeof no, "pct%d_out", k);
        const StTensor *t = st_find(&r.f, nx);
        if (!t) continue;
        int64_t n = t->numel;
        float *x = ref_f32(tc, &r, nx, n);
        double want[10];
        CHECK(st_copy(&r.f, st_find(&r.f, no), ST_F64, want, 10, &e) == CP_OK);
        uint32_t *scratch = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)(2 * n));
        for (int j = 0; j < 10; j++) {
            double got = NAN;
            CHECK(tfm_percentile(&got, x, n, 1, ps[j], scratch, &e) == CP_OK);
            ntot++;
            if (memcmp(&got, &want[j], sizeof got) != 0) {
                nbad++;
                CHECKF(0, "case %d (n %lld) p %g: %.17g vs numpy %.17g", k, (long long)n, ps[j], got, want[j]);
            }
        }
        /* strided input: every other element of a doubled array */
        float *x2 = alloc_f32(2 * n);
        for (int64_t i = 0; i < n; i++) x2[2 * i] = x[i], x2[2 * i + 1] = -1e30f;
        double got = NAN;
        CHECK(tfm_percentile(&got, x2, n, 2, ps[1], scratch, &e) == CP_OK);
        CHECKF(memcmp(&got, &want[1], sizeof got) == 0, "strided case %d", k);
        cp_free(x2);
        cp_free(scratch);
        cp_free(x);
    }
    printf("  percentiles: %lld of %lld differ from np.percentile (bitwise, float64)\n", (long long)nbad,
           (long long)ntot);
    double out;
    uint32_t s[4];
    float one = 1.0f;
    CHECK(tfm_percentile(&out, &one, 0, 1, 50, s, &e) != CP_OK && one_line(e.msg));
    CHECK(tfm_percentile(&out, &one, 1, 1, 101, s, &e) != CP_OK && one_line(e.msg));
    ref_free(&r);
}

/* ---- (b, c) channels and normalization on the sample images ---- */

typedef struct {
    const char *name;
    const char *path; /* read from disk with image_read, or NULL: built from the reference */
} Case;

static const Case CASES[] = {
    {"g8", "data/samples/dsb2018_stage1test_fluo/dsbfluo_000.tif"},
    {"g8c", "data/samples/dsb2018_stage1test_fluo/dsbfluo_004.tif"},
    {"g16", "data/samples/bbbc039_u2os_nuclei/bbbc039_000.tif"},
    {"phase", "data/samples/usiigaci_phase_contrast/usiigaci_000.tif"},
    {"rgb00", NULL}, {"rgb23", NULL}, {"rgb30", NULL}, {"rgb12", NULL},
    {"f400", NULL},  {"f441", NULL},  {"const", NULL}, {"flat", NULL},
};

/* One case: returns the selected+normalized [2, H, W] compared to Cellpose. */
static void run_case(TestCase *tc, const Ref *r, const Case *cs, int64_t *ndiff_total, double *maxabs_total) {
    char key[64];
    Image ref_img, img;
    snprintf(key, sizeof key, "%s_img", cs->name);
    if (!ref_image(tc, r, key, &ref_img)) return;
    CpErr e;
    if (cs->path) { /* our TIFF reader must see what tifffile saw */
        CHECKF(image_read(&img, cs->path, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
        CHECKF(img.h == ref_img.h && img.w == ref_img.w && img.c == ref_img.c && img.dtype == ref_img.dtype &&
                   memcmp(img.data, ref_img.data, image_nbytes(&img)) == 0,
               "%s: image_read differs from tifffile", cs->path);
        image_free(&img);
    }
    int64_t ch64[2] = {0, 0};
    snprintf(key, sizeof key, "%s_ch", cs->name);
    CHECK(st_copy(&r->f, st_find(&r->f, key), ST_I64, ch64, 2, &e) == CP_OK);
    int ch[2] = {(int)ch64[0], (int)ch64[1]};
    int64_t H = ref_img.h, W = ref_img.w, n = 2 * H * W;
    float *sel = alloc_f32(n);
    poison(sel, n);
    CHECKF(tfm_select_channels(sel, &ref_img, ch, cs->name, &e) == CP_OK, "%s", e.msg);
    check_written(tc, cs->name, sel, n);
    snprintf(key, sizeof key, "%s_sel", cs->name);
    float *want_sel = ref_f32(tc, r, key, n);
    snprintf(key, sizeof key, "%s_norm", cs->name);
    float *want_norm = ref_f32(tc, r, key, n);
    if (want_sel && want_norm) {
        char label[96];
        snprintf(label, sizeof label, "%s [%d,%d] %lldx%lldx%d channels", cs->name, ch[0], ch[1], (long long)H,
                 (long long)W, ref_img.c);
        double sel_abs;
        int64_t sel_diff = count_diff_bits(sel, want_sel, n, &sel_abs);
        printf("  %-44s %lld of %lld elements differ from convert_image\n", label, (long long)sel_diff,
               (long long)n);
        check_same_bytes(tc, label, sel, want_sel, sizeof(float) * (size_t)n);
        CpCtx ctx;
        cp_ctx_init(&ctx, CP_BACKEND_CPU, 3, 0);
        uint32_t *scratch = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)tfm_normalize_scratch(H, W));
        CHECKF(tfm_normalize_img(sel, 2, H, W, 1.0, 99.0, scratch, NULL, NULL, &ctx, cs->name, &e) == CP_OK, "%s",
               e.msg);
        double max_abs;
        int64_t nd = count_diff_bits(sel, want_norm, n, &max_abs);
        snprintf(label, sizeof label, "%s normalize (%lld differ)", cs->name, (long long)nd);
        check_close(tc, label, sel, want_norm, n, TOL_NORM_ATOL, TOL_NORM_RTOL);
        *ndiff_total += nd;
        if (max_abs > *maxabs_total) *maxabs_total = max_abs;
        cp_free(scratch);
        cp_ctx_free(&ctx);
    }
    cp_free(want_sel);
    cp_free(want_norm);
    cp_free(sel);
    image_free(&ref_img);
}

TEST(test_channels_normalize) {
    Ref r;
    if (!ref_load(tc, &r, REF)) return;
    int64_t nd = 0;
    double max_abs = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) run_case(tc, &r, &CASES[i], &nd, &max_abs);
    printf("  all cases: %lld normalized elements differ from Cellpose, max abs diff %.3g\n", (long long)nd,
           max_abs);
    ref_free(&r);
}

/* The subsampled-percentile path: usiigaci tiled to 3401x3307. */
TEST(test_big_subsampled) {
    if (test_quick()) SKIP("11M-pixel image under CP_TEST_QUICK");
    Ref r;
    if (!ref_load(tc, &r, REF)) return;
    CpErr e;
    Image ph;
    if (image_read(&ph, "data/samples/usiigaci_phase_contrast/usiigaci_000.tif", 0, INT64_MAX, &e) != CP_OK) {
        CHECKF(0, "%s", e.msg);
        ref_free(&r);
        return;
    }
    int64_t H = ref_int(tc, &r, "big_H"), W = ref_int(tc, &r, "big_W");
    Image big = {.h = H, .w = W, .c = 1, .dtype = IMG_U16, .npages = 1, .page = 0};
    big.data = cp_malloc(sizeof(uint16_t) * (size_t)(H * W));
    const uint16_t *src = (const uint16_t *)ph.data;
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) ((uint16_t *)big.data)[y * W + x] = src[(y % ph.h) * ph.w + x % ph.w];
    float *img = alloc_f32(2 * H * W);
    CHECK(tfm_select_channels(img, &big, (const int[2]){0, 0}, "big", &e) == CP_OK);
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 4, 0);
    uint32_t *scratch = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)tfm_normalize_scratch(H, W));
    double plo[2], phi[2], psub[2], pfull[2];
    CHECK(tfm_normalize_img(img, 2, H, W, 1.0, 99.0, scratch, plo, phi, &ctx, "big", &e) == CP_OK);
    CHECK(st_copy(&r.f, st_find(&r.f, "big_p_sub"), ST_F64, psub, 2, &e) == CP_OK);
    CHECK(st_copy(&r.f, st_find(&r.f, "big_p_full"), ST_F64, pfull, 2, &e) == CP_OK);
    CHECKF(plo[0] == psub[0] && phi[0] == psub[1], "percentiles %.17g %.17g vs subsampled %.17g %.17g", plo[0],
           phi[0], psub[0], psub[1]);
    CHECKF(psub[0] != pfull[0] && psub[1] != pfull[1], "case does not exercise subsampling");
    CHECK(isnan(plo[1])); /* zero channel: untouched */
    float *want = ref_f32(tc, &r, "big_norm0", H * W);
    if (want) {
        double max_abs;
        int64_t nd = count_diff_bits(img, want, H * W, &max_abs);
        char label[64];
        snprintf(label, sizeof label, "big normalize (%lld differ)", (long long)nd);
        check_close(tc, label, img, want, H * W, TOL_NORM_ATOL, TOL_NORM_RTOL);
    }
    cp_free(want);
    cp_free(scratch);
    cp_free(img);
    cp_free(big.data);
    image_free(&ph);
    cp_ctx_free(&ctx);
    ref_free(&r);
}

/* ---- (d) thread identity ---- */

TEST(test_threads) {
    CpErr e;
    Image ph;
    if (image_read(&ph, "data/samples/usiigaci_phase_contrast/usiigaci_000.tif", 0, INT64_MAX, &e) != CP_OK) {
        CHECKF(0, "%s", e.msg);
        return;
    }
    int64_t H = ph.h, W = ph.w, n = 2 * H * W;
    float *base = alloc_f32(n), *got = alloc_f32(n);
    CHECK(tfm_select_channels(base, &ph, (const int[2]){0, 0}, "phase", &e) == CP_OK);
    uint32_t *scratch = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)tfm_normalize_scratch(H, W));
    float *one = alloc_f32(n);
    const int threads[] = {1, 2, 3, 7};
    for (int t = 0; t < 4; t++) {
        CpCtx ctx;
        cp_ctx_init(&ctx, CP_BACKEND_CPU, threads[t], 0);
        memcpy(got, base, sizeof(float) * (size_t)n);
        CHECK(tfm_normalize_img(got, 2, H, W, 1.0, 99.0, scratch, NULL, NULL, &ctx, "phase", &e) == CP_OK);
        if (t == 0)
            memcpy(one, got, sizeof(float) * (size_t)n);
        else
            check_same_bytes(tc, "normalize threads", one, got, sizeof(float) * (size_t)n);
        cp_ctx_free(&ctx);
    }
    cp_free(one);
    cp_free(scratch);
    cp_free(base);
    cp_free(got);
    image_free(&ph);
}

/* ---- (e) LR schedule ---- */

TEST(test_lr_schedule) {
    Ref r;
    if (!ref_load(tc, &r, REF)) return;
    int64_t epochs[12];
    double rates[4];
    CpErr e;
    CHECK(st_copy(&r.f, st_find(&r.f, "lr_epochs"), ST_I64, epochs, 12, &e) == CP_OK);
    CHECK(st_copy(&r.f, st_find(&r.f, "lr_rates"), ST_F64, rates, 4, &e) == CP_OK);
    int nsched = 0, nbad = 0;
    double *lr = (double *)cp_malloc(sizeof(double) * 2000), *want = (double *)cp_malloc(sizeof(double) * 2000);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 12; k++) {
            int n = (int)epochs[k];
            char key[32];
            snprintf(key, sizeof key, "lr_%d_%d", i, n);
            CHECK(st_copy(&r.f, st_find(&r.f, key), ST_F64, want, n, &e) == CP_OK);
            CHECK(tfm_lr_schedule(lr, rates[i], n, 3, &e) == CP_OK);
            nsched++;
            if (memcmp(lr, want, sizeof(double) * (size_t)n) != 0) {
                nbad++;
                CHECKF(0, "lr %g n_epochs %d differs from train_seg", rates[i], n);
            }
        }
    printf("  LR schedules: %d of %d differ from train_seg (bitwise)\n", nbad, nsched);
    /* v4 (CELLPOSE.md 4.8): 100 epochs decay over the last 50, v3 does not */
    CHECK(tfm_lr_schedule(lr, 1e-5, 100, 4, &e) == CP_OK);
    CHECK(lr[0] == 0 && lr[49] == 1e-5 && lr[50] == 1e-5 / 2 && lr[99] == 1e-5 / 1024);
    CHECK(tfm_lr_schedule(lr, 1e-5, 100, 3, &e) == CP_OK);
    CHECK(lr[99] == 1e-5);
    CHECK(tfm_lr_schedule(lr, 0.1, 0, 3, &e) != CP_OK && one_line(e.msg));
    CHECK(tfm_lr_schedule(lr, -0.1, 5, 3, &e) != CP_OK && one_line(e.msg));
    CHECK(tfm_lr_schedule(lr, NAN, 5, 3, &e) != CP_OK && one_line(e.msg));
    CHECK(tfm_lr_schedule(lr, 0.1, 5, 5, &e) != CP_OK && one_line(e.msg));
    cp_free(lr);
    cp_free(want);
    ref_free(&r);
}

/* ---- (f) errors and constant images ---- */

TEST(test_errors) {
    CpErr e;
    /* a 3-channel 16x12 image */
    Image rgb = {.h = 16, .w = 12, .c = 3, .dtype = IMG_U8, .npages = 1};
    rgb.data = cp_calloc(16 * 12 * 3, 1);
    float *out = alloc_f32(2 * 16 * 12);
    CHECK(tfm_select_channels(out, &rgb, (const int[2]){4, 0}, "rgb.tif", &e) != CP_OK);
    CHECKF(one_line(e.msg) && strstr(e.msg, "rgb.tif") && strstr(e.msg, "channel 4"), "%s", e.msg);
    printf("  missing channel: %s\n", e.msg);
    CHECK(tfm_select_channels(out, &rgb, (const int[2]){1, 4}, "rgb.tif", &e) != CP_OK && one_line(e.msg));
    CHECK(tfm_select_channels(out, &rgb, (const int[2]){-1, 0}, "rgb.tif", &e) != CP_OK && one_line(e.msg));
    CHECK(tfm_select_channels(out, &rgb, (const int[2]){0, 9}, "rgb.tif", &e) != CP_OK && one_line(e.msg));
    CHECK(tfm_select_channels(out, &rgb, (const int[2]){3, 1}, "rgb.tif", &e) == CP_OK);
    Image gray = {.h = 16, .w = 12, .c = 1, .dtype = IMG_U8, .npages = 1, .data = rgb.data};
    CHECK(tfm_select_channels(out, &gray, (const int[2]){3, 2}, "g.tif", &e) == CP_OK); /* v3 ignores */
    /* below 8 rows: a gray image is fine (no channel axis to guess), an RGB one is refused */
    Image tiny = {.h = 5, .w = 12, .c = 3, .dtype = IMG_U8, .npages = 1, .data = rgb.data};
    CHECK(tfm_select_channels(out, &tiny, (const int[2]){0, 0}, "tiny.tif", &e) != CP_OK);
    CHECKF(one_line(e.msg) && strstr(e.msg, "tiny.tif"), "%s", e.msg);
    Image tiny_gray = {.h = 1, .w = 1, .c = 1, .dtype = IMG_U8, .npages = 1, .data = rgb.data};
    CHECK(tfm_select_channels(out, &tiny_gray, (const int[2]){0, 0}, "one.tif", &e) == CP_OK);
    cp_free(rgb.data);
    cp_free(out);

    /* NaN pixels: image_read refuses the file, normalize refuses the buffer */
    char path[64];
    snprintf(path, sizeof path, "/tmp/cp_tfm_nan_%d.tif", (int)getpid());
    float px[8 * 9];
    for (int i = 0; i < 72; i++) px[i] = (float)i;
    px[3 * 9 + 4] = NAN;
    Image nan_img = {.h = 8, .w = 9, .c = 1, .dtype = IMG_F32, .npages = 1, .data = px};
    CHECK(image_write_tiff(path, &nan_img, 0, &e) == CP_OK);
    Image rd;
    CHECK(image_read(&rd, path, 0, INT64_MAX, &e) != CP_OK);
    CHECKF(one_line(e.msg) && strstr(e.msg, path), "%s", e.msg);
    printf("  NaN file: %s\n", e.msg);
    unlink(path);
    float keep[72];
    memcpy(keep, px, sizeof keep);
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 2, 0);
    uint32_t scratch[2 * 72];
    CHECK(tfm_normalize_img(px, 1, 8, 9, 1, 99, scratch, NULL, NULL, &ctx, "nan.tif", &e) != CP_OK);
    CHECKF(one_line(e.msg) && strstr(e.msg, "nan.tif") && strstr(e.msg, "(3, 4)"), "%s", e.msg);
    CHECK(memcmp(keep, px, sizeof keep) == 0); /* nothing touched */
    CHECK(tfm_normalize_img(px, 1, 8, 9, 99, 1, scratch, NULL, NULL, &ctx, "x", &e) != CP_OK && one_line(e.msg));

    /* constant image: left untouched (Cellpose: np.ptp == 0 -> skipped) */
    float cst[72];
    for (int i = 0; i < 72; i++) cst[i] = 7.5f;
    double plo, phi;
    CHECK(tfm_normalize_img(cst, 1, 8, 9, 1, 99, scratch, &plo, &phi, &ctx, "c", &e) == CP_OK);
    int same = 1;
    for (int i = 0; i < 72; i++) same &= cst[i] == 7.5f;
    CHECK(same && isnan(plo) && isnan(phi));
    cp_ctx_free(&ctx);
}

TEST_MAIN(T(test_percentile), T(test_channels_normalize), T(test_big_subsampled), T(test_threads),
          T(test_lr_schedule), T(test_errors))
