/* test_dataset.c - the training folder reader (train/dataset.h).
 *
 *  - parity with Cellpose 3.1.1.3 (tests/ref/dataset.py): on
 *    data/samples/dsb2018_stage1test_fluo the same 36 names in the same
 *    order, sizes, pixel sums, image 0 and labels 0 exactly, and
 *    utils.diameters' mask count exactly and median diameter to 1e-14
 *    relative (numpy takes uint64 ** 0.5 with a pow() that is up to an ulp
 *    from the correctly rounded sqrt used here), also on the no-background
 *    and even-count corner cases;
 *  - the SHA-256 of one file equals sha256sum's;
 *  - which files count as images (masks, flows, _cp_masks, hidden files,
 *    folders skipped; upper-case extensions, .png masks, RGB layout);
 *  - each bad folder gives one line naming the right file.
 * Run from the repo root. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "optest.h"
#include "sha256.h"
#include "train/dataset.h"

#define DSB "data/samples/dsb2018_stage1test_fluo"

/* ---- small file makers for the temporary folders ---- */
static void make_u8(TestCase *tc, const char *dir, const char *name, int64_t h, int64_t w, int c, uint8_t base) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *px = (uint8_t *)cp_malloc((size_t)(h * w * c));
    for (int64_t i = 0; i < h * w * c; i++) px[i] = (uint8_t)(base + i);
    Image im = {h, w, c, IMG_U8, px, 1, 0};
    CpErr e;
    int rc = cp_ends_with_ci(name, ".png") ? image_write_png(path, px, c, h, w, &e) : image_write_tiff(path, &im, 0, &e);
    CHECKF(rc == CP_OK, "%s", e.msg);
    cp_free(px);
}

static void make_mask(TestCase *tc, const char *dir, const char *name, int64_t h, int64_t w, uint32_t nlab) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint32_t *l = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)(h * w));
    for (int64_t i = 0; i < h * w; i++) l[i] = nlab ? (uint32_t)(i % (nlab + 1)) : 0;
    CpErr e;
    int rc;
    if (cp_ends_with_ci(name, ".png")) {
        uint8_t *b = (uint8_t *)cp_malloc((size_t)(h * w));
        for (int64_t i = 0; i < h * w; i++) b[i] = (uint8_t)l[i];
        rc = image_write_png(path, b, 1, h, w, &e);
        cp_free(b);
    } else {
        rc = image_write_labels_tiff(path, l, h, w, &e);
    }
    CHECKF(rc == CP_OK, "%s", e.msg);
    cp_free(l);
}

static void make_bytes(const char *dir, const char *name, const char *bytes) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(bytes, f);
        fclose(f);
    }
}

static void new_dir(char *dir, size_t n) {
    snprintf(dir, n, "/tmp/cp_test_dataset_XXXXXX");
    CP_ASSERT(mkdtemp(dir) != NULL);
}

static void rm_dir(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CP_ASSERT(system(cmd) == 0);
}

/* dataset_open must fail with a message containing every string in want[]. */
static void expect_fail(TestCase *tc, const char *what, const char *dir, const char *filter, const char *want1,
                        const char *want2) {
    Dataset d;
    CpErr e = {{0}};
    int rc = dataset_open(&d, dir, filter, INT64_MAX, &e);
    CHECKF(rc != CP_OK, "%s: opened, expected an error", what);
    if (rc == CP_OK) {
        dataset_free(&d);
        return;
    }
    printf("  %-22s -> %s\n", what, e.msg);
    CHECKF(strchr(e.msg, '\n') == NULL, "%s: not one line", what);
    CHECKF(strstr(e.msg, want1) != NULL, "%s: '%s' not in '%s'", what, want1, e.msg);
    if (want2) CHECKF(strstr(e.msg, want2) != NULL, "%s: '%s' not in '%s'", what, want2, e.msg);
    CHECKF(d.n == 0 && d.items == NULL, "%s: dataset not left empty", what);
}

/* ---- parity with Cellpose on the bundled folder ---- */
static int64_t ref_i64(TestCase *tc, const Ref *r, const char *name, int64_t *dst, int64_t n) {
    const StTensor *t = r->ok ? st_find(&r->f, name) : NULL;
    CpErr e;
    int ok = t && st_copy(&r->f, t, ST_I64, dst, n, &e) == CP_OK;
    CHECKF(ok, "reference '%s' missing or wrong size", name);
    return ok;
}
static int ref_f64(TestCase *tc, const Ref *r, const char *name, double *dst, int64_t n) {
    const StTensor *t = r->ok ? st_find(&r->f, name) : NULL;
    CpErr e;
    int ok = t && st_copy(&r->f, t, ST_F64, dst, n, &e) == CP_OK;
    CHECKF(ok, "reference '%s' missing or wrong size", name);
    return ok;
}

/* Names, sizes, pixel sums and image/labels 0 as Cellpose's io reads them. */
static void check_folder_parity(TestCase *tc, const Dataset *d, const Ref *r) {
    const StTensor *tn = st_find(&r->f, "names");
    CHECK(tn != NULL);
    if (!tn) return;
    char joined[8192] = {0};
    size_t len = (size_t)(tn->end - tn->begin);
    CHECK(len < sizeof joined);
    memcpy(joined, tn->data, len < sizeof joined ? len : sizeof joined - 1);
    char *save = NULL, *tok = strtok_r(joined, "\n", &save);
    for (int i = 0; i < d->n; i++, tok = strtok_r(NULL, "\n", &save))
        CHECKF(tok && strcmp(tok, d->items[i].name) == 0, "name %d: %s vs Cellpose %s", i, d->items[i].name,
               tok ? tok : "(none)");
    int64_t *hw = (int64_t *)cp_malloc(sizeof(int64_t) * 2 * (size_t)d->n);
    double *sum = (double *)cp_malloc(sizeof(double) * (size_t)d->n);
    if (ref_i64(tc, r, "hw", hw, 2 * d->n) && ref_f64(tc, r, "img_sum", sum, d->n))
        for (int i = 0; i < d->n; i++) {
            const DatasetItem *it = &d->items[i];
            double s = 0;
            for (int64_t p = 0; p < it->h * it->w * it->c; p++) s += it->image[p];
            CHECKF(it->h == hw[2 * i] && it->w == hw[2 * i + 1] && it->c == 1, "%s: %lldx%lldx%d vs %lldx%lld",
                   it->name, (long long)it->h, (long long)it->w, it->c, (long long)hw[2 * i], (long long)hw[2 * i + 1]);
            CHECKF(s == sum[i], "%s: pixel sum %.17g vs Cellpose %.17g", it->name, s, sum[i]);
        }
    const DatasetItem *it0 = &d->items[0];
    int64_t n0 = it0->h * it0->w;
    float *img0 = ref_f32(tc, r, "img0", n0);
    int64_t *lab0 = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)n0);
    if (img0) check_close(tc, "image 0 vs io.imread", it0->image, img0, n0, 0.0, 0.0);
    if (ref_i64(tc, r, "lab0", lab0, n0)) {
        int64_t bad = 0;
        for (int64_t p = 0; p < n0; p++) bad += (int64_t)it0->labels[p] != lab0[p];
        CHECKF(bad == 0, "labels 0: %lld pixels differ from io.imread", (long long)bad);
    }
    cp_free(img0);
    cp_free(lab0);
    cp_free(hw);
    cp_free(sum);
}

/* dataset_count_masks == utils.diameters (count and median diameter, exact). */
static void check_diameters(TestCase *tc, const Dataset *d, const Ref *r) {
    int64_t *nm = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)d->n);
    double *dm = (double *)cp_malloc(sizeof(double) * (size_t)d->n);
    double maxdiff = 0;
    if (ref_i64(tc, r, "nmasks", nm, d->n) && ref_f64(tc, r, "diam", dm, d->n))
        for (int i = 0; i < d->n; i++) {
            double diam = -1;
            int64_t n = dataset_count_masks(d->items[i].labels, d->items[i].h, d->items[i].w, &diam);
            CHECKF(n == nm[i], "%s: %lld masks vs Cellpose %lld", d->items[i].name, (long long)n, (long long)nm[i]);
            if (fabs(diam - dm[i]) > maxdiff) maxdiff = fabs(diam - dm[i]);
            /* numpy's uint64 ** 0.5 is a pow(), up to an ulp away from the correctly
             * rounded sqrt used here (DESIGN rule 5): allow 1e-14 relative */
            CHECKF(fabs(diam - dm[i]) <= 1e-14 * dm[i], "%s: diameter %.17g vs Cellpose %.17g", d->items[i].name,
                   diam, dm[i]);
        }
    printf("  diameters of %d images vs utils.diameters: max abs diff %.3g (max rel allowed 1e-14)\n", d->n, maxdiff);
    const char *cases[2] = {"nobg", "even"};
    for (int c = 0; c < 2; c++) { /* 3x5 hand-made label images */
        char name[64];
        int64_t l64[15];
        uint32_t l32[15];
        double want = -1, got = -1;
        snprintf(name, sizeof name, "%s_labels", cases[c]);
        if (!ref_i64(tc, r, name, l64, 15)) continue;
        for (int p = 0; p < 15; p++) l32[p] = (uint32_t)l64[p];
        snprintf(name, sizeof name, "%s_diam", cases[c]);
        ref_f64(tc, r, name, &want, 1);
        snprintf(name, sizeof name, "%s_n", cases[c]);
        int64_t wantn = ref_int(tc, r, name);
        int64_t n = dataset_count_masks(l32, 3, 5, &got);
        CHECKF(n == wantn && fabs(got - want) <= 1e-14 * want, "%s: %lld masks, diam %.17g vs Cellpose %lld, %.17g", cases[c],
               (long long)n, got, (long long)wantn, want);
    }
    cp_free(nm);
    cp_free(dm);
}

TEST(test_dsb_folder) {
    Dataset d;
    CpErr e;
    int rc = dataset_open(&d, DSB, "_masks", INT64_MAX, &e);
    CHECKF(rc == CP_OK, "%s", e.msg);
    if (rc) return;
    CHECKF(d.n == 36, "%d pairs, expected 36", d.n);
    for (int i = 1; i < d.n; i++) CHECK(strcmp(d.items[i - 1].name, d.items[i].name) < 0);
    Ref r;
    if (ref_load(tc, &r, "dataset")) {
        CHECKF(ref_int(tc, &r, "n") == d.n, "Cellpose finds %lld images", (long long)ref_int(tc, &r, "n"));
        check_folder_parity(tc, &d, &r);
        check_diameters(tc, &d, &r);
        ref_free(&r);
    }
    /* the manifest hash equals sha256sum's */
    char cmd[512], line[256] = {0};
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", d.items[3].mask_path);
    FILE *p = popen(cmd, "r");
    CHECK(p && fgets(line, sizeof line, p));
    if (p) pclose(p);
    CHECKF(strncmp(line, d.items[3].mask_sha256, 64) == 0, "%s: %.64s vs sha256sum %.64s", d.items[3].mask_path,
           d.items[3].mask_sha256, line);
    char hex[CP_SHA256_HEX];
    CHECK(sha256_file_hex(d.items[3].image_path, hex, &e) == CP_OK && strcmp(hex, d.items[3].image_sha256) == 0);
    printf("  %d pairs; %s sha256 %.16s... = sha256sum\n", d.n, d.items[3].mask_path, d.items[3].mask_sha256);
    dataset_free(&d);
}

/* Which files are images, how masks pair, strcmp order, CHW layout. */
TEST(test_file_rules) {
    char dir[64];
    new_dir(dir, sizeof dir);
    make_u8(tc, dir, "a.tif", 5, 7, 1, 0);
    make_mask(tc, dir, "a_masks.tif", 5, 7, 3);
    make_u8(tc, dir, "a_flows.tif", 5, 7, 1, 0);     /* Cellpose outputs: skipped */
    make_u8(tc, dir, "a_cp_masks.tif", 5, 7, 1, 0);
    make_u8(tc, dir, "a_cellprob.tif", 5, 7, 1, 0);
    make_u8(tc, dir, "B.png", 4, 6, 3, 10);          /* RGB, .png mask */
    make_mask(tc, dir, "B_masks.png", 4, 6, 2);
    make_u8(tc, dir, "c.TIF", 3, 3, 1, 0);           /* upper-case extension, .tiff mask */
    make_mask(tc, dir, "c_masks.tiff", 3, 3, 1);
    make_u8(tc, dir, ".hidden.tif", 3, 3, 1, 0);     /* hidden: skipped (no mask needed) */
    make_bytes(dir, "notes.txt", "hello");
    char sub[128];
    snprintf(sub, sizeof sub, "%s/sub.tif", dir);   /* a folder named like an image */
    CP_ASSERT(mkdir(sub, 0700) == 0);
    Dataset d;
    CpErr e;
    int rc = dataset_open(&d, dir, NULL, INT64_MAX, &e);
    CHECKF(rc == CP_OK, "%s", e.msg);
    if (rc == CP_OK) {
        CHECKF(d.n == 3, "%d pairs, expected 3", d.n);
        const char *want[3] = {"B.png", "a.tif", "c.TIF"}; /* strcmp: upper case first */
        for (int i = 0; i < d.n && i < 3; i++) CHECKF(strcmp(d.items[i].name, want[i]) == 0, "%d: %s", i, d.items[i].name);
        if (d.n == 3) {
            DatasetItem *b = &d.items[0];
            CHECK(b->c == 3 && b->h == 4 && b->w == 6 && strstr(b->mask_path, "B_masks.png"));
            /* file byte (y, x, ch) = 10 + (y*6 + x)*3 + ch lands at [ch, y, x] */
            int bad = 0;
            for (int ch = 0; ch < 3; ch++)
                for (int p = 0; p < 24; p++) bad += b->image[ch * 24 + p] != (float)(uint8_t)(10 + p * 3 + ch);
            CHECKF(bad == 0, "RGB -> CHW: %d values wrong", bad);
            CHECK(b->labels[1] == 1 && b->labels[2] == 2 && b->labels[3] == 0);
            CHECK(strstr(d.items[2].mask_path, "c_masks.tiff") != NULL);
            CHECK(dataset_count_masks(d.items[1].labels, 5, 7, NULL) == 3);
        }
        dataset_free(&d);
    }
    /* a custom mask filter pairs a_seg.tif and skips files ending in it */
    make_mask(tc, dir, "a_seg.tif", 5, 7, 2);
    make_mask(tc, dir, "B_seg.tif", 4, 6, 2);
    make_mask(tc, dir, "c_seg.tif", 3, 3, 2);
    rc = dataset_open(&d, dir, "_seg", INT64_MAX, &e);
    CHECKF(rc == CP_OK && d.n == 3, "%s", rc ? e.msg : "count");
    if (rc == CP_OK) {
        CHECK(strstr(d.items[1].mask_path, "a_seg.tif") && dataset_count_masks(d.items[1].labels, 5, 7, NULL) == 2);
        dataset_free(&d);
    }
    rm_dir(dir);
}

/* Every bad folder: one line naming the right file. */
TEST(test_bad_folders) {
    char dir[64];
    expect_fail(tc, "missing folder", "/tmp/cp_no_such_folder_x", NULL, "/tmp/cp_no_such_folder_x", "no such folder");
    new_dir(dir, sizeof dir);
    expect_fail(tc, "empty folder", dir, NULL, dir, "empty");
    make_bytes(dir, "readme.txt", "x");
    expect_fail(tc, "no images", dir, NULL, dir, "no images with extensions");
    make_mask(tc, dir, "a_masks.tif", 5, 7, 3);
    expect_fail(tc, "only masks", dir, NULL, dir, "no images left");
    make_u8(tc, dir, "a.tif", 5, 7, 1, 0);
    make_u8(tc, dir, "b.tif", 5, 7, 1, 0);
    expect_fail(tc, "image without mask", dir, NULL, "b.tif: no mask b_masks.tif (mask filter '_masks'", NULL);
    make_mask(tc, dir, "b_masks.tif", 5, 8, 3);
    expect_fail(tc, "mask of other size", dir, NULL, "b_masks.tif", "5x8");
    make_mask(tc, dir, "b_masks.tif", 5, 7, 0);
    expect_fail(tc, "empty mask", dir, NULL, "b_masks.tif", "no labels");
    make_mask(tc, dir, "b_masks.tif", 5, 7, 2);
    make_bytes(dir, "b.tif", "II*\0garbage");
    expect_fail(tc, "corrupt image", dir, NULL, "b.tif", NULL);
    make_u8(tc, dir, "b.tif", 5, 7, 1, 0);
    make_bytes(dir, "b_masks.tif", "not a tiff at all");
    expect_fail(tc, "corrupt mask", dir, NULL, "b_masks.tif", NULL);
    make_mask(tc, dir, "b_masks.tif", 5, 7, 2);
    float nanimg[35];
    for (int i = 0; i < 35; i++) nanimg[i] = i == 17 ? NAN : 1.0f;
    char path[256];
    CpErr e;
    snprintf(path, sizeof path, "%s/b.tif", dir);
    CHECK(image_write_f32_tiff(path, nanimg, 1, 5, 7, &e) == CP_OK);
    expect_fail(tc, "NaN pixel", dir, NULL, "b.tif", "NaN");
    make_u8(tc, dir, "b.tif", 5, 7, 1, 0);
    Dataset d;
    int rc = dataset_open(&d, dir, NULL, INT64_MAX, &e); /* repaired: opens */
    CHECKF(rc == CP_OK && d.n == 2, "%s", rc ? e.msg : "count");
    if (rc == CP_OK) dataset_free(&d);
    rc = dataset_open(&d, dir, NULL, 34, &e);
    CHECKF(rc != CP_OK && strstr(e.msg, "a.tif"), "max_pixels: %s", rc ? e.msg : "opened");
    make_bytes(dir, "c.nd2", "x");
    expect_fail(tc, "unsupported format", dir, NULL, "c.nd2", "not supported");
    rm_dir(dir);
}

TEST_MAIN(T(test_dsb_folder), T(test_file_rules), T(test_bad_folders))
