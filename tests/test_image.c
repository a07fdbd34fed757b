/* test_image.c - image I/O: TIFF round trips of every dtype and layout,
 * tiles, multi-page, bilevel, label/f32/PNG writers, hostile and malformed
 * inputs (one-line errors naming the file), atomic writers.
 *
 * With CP_IMAGE_OUT set, test_export_for_python also leaves files there for
 * tests/py/test_image_io.py (see that test for the list). Pixel formula,
 * with base = y*131 + x*7 + c*3:
 *   unsigned N-bit: (base * 40503) mod 2^N
 *   signed N-bit:   ((base * 40503) mod 2^N) - 2^(N-1)
 *   float32/64:     base * 0.25 - 100
 *   labels_u16.tif: (base * 40503) mod 65536 (c = 0)    -> written as uint16
 *   labels_u32.tif: base * 40503 + 70000 (c = 0)        -> written as uint32
 *   f32_c{1,3}.tif: float formula, c = plane            -> planar float32
 *   png_c{1,3,4}.png: (base * 40503) mod 256 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image_write.h>
#include <tiffio.h>

#include "core/image.h"
#include "harness.h"

#define GEN_H 37
#define GEN_W 53

static const ImgDtype ALL_DTYPES[] = {IMG_U8, IMG_U16, IMG_U32, IMG_I8, IMG_I16, IMG_I32, IMG_F32, IMG_F64};

/* ---- helpers ----------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void make_tmpdir(char *dir) {
    strcpy(dir, "/tmp/cp_test_image.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
}
static void rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void path_in(char *out, size_t n, const char *dir, const char *name) {
    if (snprintf(out, n, "%s/%s", dir, name) >= (int)n) exit(2);
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int dir_entries(const char *dir) { /* entries besides . and .. */
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));) n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    if (d) closedir(d);
    return n;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) exit(2);
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 11;
}

/* Image with pseudo-random content covering each dtype's full range (finite floats). */
static void make_random(Image *img, ImgDtype dt, int64_t h, int64_t w, int c, uint64_t seed) {
    memset(img, 0, sizeof *img);
    img->h = h, img->w = w, img->c = c, img->dtype = dt, img->npages = 1;
    img->data = cp_malloc(image_nbytes(img));
    size_t n = (size_t)(h * w * c);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = lcg(&seed);
        if (dt == IMG_F32) ((float *)img->data)[i] = (float)((double)(r % 2000001) * 1e-3 - 1000.0);
        else if (dt == IMG_F64) ((double *)img->data)[i] = (double)(int64_t)r * 1e-9 - 4e6;
        else memcpy((uint8_t *)img->data + i * img_dtype_size(dt), &r, img_dtype_size(dt));
    }
}

/* The documented formula (see the file comment). */
static double gen_value(ImgDtype dt, int64_t y, int64_t x, int c) {
    uint64_t base = (uint64_t)(y * 131 + x * 7 + c * 3), m = base * 40503u;
    switch (dt) {
    case IMG_U8: return (double)(m % 256);
    case IMG_U16: return (double)(m % 65536);
    case IMG_U32: return (double)(m % 4294967296u);
    case IMG_I8: return (double)(m % 256) - 128;
    case IMG_I16: return (double)(m % 65536) - 32768;
    case IMG_I32: return (double)(m % 4294967296u) - 2147483648.0;
    default: return (double)base * 0.25 - 100.0;
    }
}

static void set_elem(Image *img, size_t i, double v) {
    switch (img->dtype) {
    case IMG_U8: ((uint8_t *)img->data)[i] = (uint8_t)v; break;
    case IMG_U16: ((uint16_t *)img->data)[i] = (uint16_t)v; break;
    case IMG_U32: ((uint32_t *)img->data)[i] = (uint32_t)v; break;
    case IMG_I8: ((int8_t *)img->data)[i] = (int8_t)v; break;
    case IMG_I16: ((int16_t *)img->data)[i] = (int16_t)v; break;
    case IMG_I32: ((int32_t *)img->data)[i] = (int32_t)v; break;
    case IMG_F32: ((float *)img->data)[i] = (float)v; break;
    case IMG_F64: ((double *)img->data)[i] = v; break;
    }
}

static void make_gen(Image *img, ImgDtype dt, int c) {
    memset(img, 0, sizeof *img);
    img->h = GEN_H, img->w = GEN_W, img->c = c, img->dtype = dt, img->npages = 1;
    img->data = cp_malloc(image_nbytes(img));
    for (int64_t y = 0; y < GEN_H; y++)
        for (int64_t x = 0; x < GEN_W; x++)
            for (int k = 0; k < c; k++) set_elem(img, (size_t)((y * GEN_W + x) * c + k), gen_value(dt, y, x, k));
}

static int same_image(const Image *a, const Image *b) {
    return a->h == b->h && a->w == b->w && a->c == b->c && a->dtype == b->dtype &&
           memcmp(a->data, b->data, image_nbytes(a)) == 0;
}

/* The call failed with one line that names `path` and contains `what`. */
#define CHECK_FAILS(rc, e, path, what)                                                                       \
    do {                                                                                                     \
        CHECKF((rc) == CP_EFAIL, "expected failure for %s (%s)", path, what);                                \
        CHECKF(strstr((e).msg, path) != NULL, "message does not name %s: %s", path, (e).msg);                 \
        CHECKF(strstr((e).msg, what) != NULL, "message lacks \"%s\": %s", what, (e).msg);                     \
        CHECKF(strchr((e).msg, '\n') == NULL, "message is not one line: %s", (e).msg);                         \
    } while (0)

/* Minimal classic little-endian TIFF, IFD first then one strip: lets the tests
 * craft layouts libtiff would not write (truncated data, 12-bit, palette). */
static void raw_tiff(const char *path, uint32_t w, uint32_t h, uint16_t bps, uint16_t photo, uint32_t declared,
                     uint32_t present) {
    enum { NENT = 11 };
    uint8_t hdr[8] = {'I', 'I', 42, 0, 8, 0, 0, 0};
    uint32_t ifd_end = 8 + 2 + NENT * 12 + 4, cmap_off = ifd_end, data_off = cmap_off + 3 * 256 * 2;
    typedef struct { uint16_t tag, type; uint32_t count, value; } Ent;
    Ent ent[NENT] = {
        {256, 4, 1, w}, {257, 4, 1, h}, {258, 3, 1, bps}, {259, 3, 1, 1}, {262, 3, 1, photo},
        {273, 4, 1, data_off}, {277, 3, 1, 1}, {278, 4, 1, h}, {279, 4, 1, declared},
        {320, 3, 3 * 256, cmap_off}, {339, 3, 1, 1}};
    FILE *f = fopen(path, "wb");
    if (!f) exit(2);
    fwrite(hdr, 1, 8, f);
    uint16_t n = NENT;
    fwrite(&n, 2, 1, f);
    if (photo != PHOTOMETRIC_PALETTE) ent[9] = (Ent){305, 2, 4, 0x00616263}; /* no colormap: Software "cba" */
    for (int i = 0; i < NENT; i++) {
        fwrite(&ent[i].tag, 2, 1, f);
        fwrite(&ent[i].type, 2, 1, f);
        fwrite(&ent[i].count, 4, 1, f);
        fwrite(&ent[i].value, 4, 1, f);
    }
    uint32_t next = 0;
    fwrite(&next, 4, 1, f);
    for (int i = 0; i < 3 * 256; i++) {
        uint16_t v = (uint16_t)(i * 85);
        fwrite(&v, 2, 1, f);
    }
    for (uint32_t i = 0; i < present; i++) fputc((int)(i * 7 & 0xff), f);
    fclose(f);
}

/* ---- round trips ---------------------------------------------------------- */

TEST(test_dtype_names) {
    CHECK(strcmp(img_dtype_name(IMG_U8), "uint8") == 0);
    CHECK(strcmp(img_dtype_name(IMG_I16), "int16") == 0);
    CHECK(strcmp(img_dtype_name(IMG_F32), "float32") == 0);
    CHECK(strcmp(img_dtype_name(IMG_F64), "float64") == 0);
    CHECK(img_dtype_size(IMG_U32) == 4 && img_dtype_size(IMG_F64) == 8 && img_dtype_size(IMG_I8) == 1);
}

TEST(test_roundtrip_all_layouts) {
    char dir[64], p[256];
    make_tmpdir(dir);
    static const int chans[] = {1, 3, 4};
    for (int d = 0; d < 8; d++)
        for (int ci = 0; ci < 3; ci++)
            for (int planar = 0; planar < 2; planar++)
                for (int comp = 0; comp < 2; comp++) {
                    Image a, b;
                    CpErr e = {{0}};
                    make_random(&a, ALL_DTYPES[d], 13, 17, chans[ci], (uint64_t)(d * 100 + ci * 10 + planar));
                    snprintf(p, sizeof p, "%s/rt_%d_%d_%d_%d.tif", dir, d, chans[ci], planar, comp);
                    int rc = image_write_tiff_ex(p, &a, planar, comp, &e);
                    CHECKF(rc == CP_OK, "%s", e.msg);
                    rc = image_read(&b, p, 0, INT64_MAX, &e);
                    CHECKF(rc == CP_OK, "%s", e.msg);
                    CHECKF(rc == CP_OK && same_image(&a, &b), "%s c=%d planar=%d comp=%d differs",
                           img_dtype_name(ALL_DTYPES[d]), chans[ci], planar, comp);
                    CHECK(rc != CP_OK || (b.npages == 1 && b.page == 0));
                    image_free(&a);
                    image_free(&b);
                }
    rm_tree(dir);
}

TEST(test_roundtrip_many_strips) {
    /* 700 x 650 x 3 uint16 = 2.7 MB: several ~1 MiB strips, planar and chunky. */
    char dir[64], p[256];
    make_tmpdir(dir);
    for (int planar = 0; planar < 2; planar++) {
        Image a, b;
        CpErr e = {{0}};
        make_random(&a, IMG_U16, 700, 650, 3, 7 + (uint64_t)planar);
        path_in(p, sizeof p, dir, "big.tif");
        CHECKF(image_write_tiff_ex(p, &a, planar, 1, &e) == CP_OK, "%s", e.msg);
        CHECKF(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
        CHECK(same_image(&a, &b));
        image_free(&a);
        image_free(&b);
    }
    rm_tree(dir);
}

/* Tiled file written with libtiff directly: 3 x uint16, 16 x 32 tiles, edges partial. */
static int write_tiled(const char *path, const Image *a, int planar) {
    TIFF *t = TIFFOpen(path, "w");
    if (!t) return 0;
    uint16_t extra = EXTRASAMPLE_UNSPECIFIED;
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)a->w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)a->h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)a->c);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 16);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    if (a->c > 1) TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &extra);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, planar ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
    TIFFSetField(t, TIFFTAG_PREDICTOR, PREDICTOR_HORIZONTAL);
    TIFFSetField(t, TIFFTAG_TILEWIDTH, 16);
    TIFFSetField(t, TIFFTAG_TILELENGTH, 32);
    size_t tsz = (size_t)TIFFTileSize(t);
    uint16_t *tile = calloc(tsz, 1);
    const uint16_t *src = a->data;
    int planes = planar ? a->c : 1, spt = planar ? 1 : a->c, ok = 1;
    for (int p = 0; p < planes; p++)
        for (int64_t ty = 0; ty < a->h; ty += 32)
            for (int64_t tx = 0; tx < a->w; tx += 16) {
                memset(tile, 0, tsz);
                for (int64_t y = ty; y < ty + 32 && y < a->h; y++)
                    for (int64_t x = tx; x < tx + 16 && x < a->w; x++)
                        for (int k = 0; k < spt; k++)
                            tile[((y - ty) * 16 + (x - tx)) * spt + k] = src[(y * a->w + x) * a->c + (planar ? p : k)];
                ok &= TIFFWriteTile(t, tile, (uint32_t)tx, (uint32_t)ty, 0, (uint16_t)p) >= 0;
            }
    free(tile);
    TIFFClose(t);
    return ok;
}

TEST(test_tiled) {
    char dir[64], p[256];
    make_tmpdir(dir);
    for (int planar = 0; planar < 2; planar++) {
        Image a, b;
        CpErr e = {{0}};
        make_random(&a, IMG_U16, 45, 39, 3, 99);
        path_in(p, sizeof p, dir, "tiled.tif");
        CHECK(write_tiled(p, &a, planar));
        CHECKF(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
        CHECKF(same_image(&a, &b), "tiled planar=%d differs", planar);
        image_free(&a);
        image_free(&b);
    }
    rm_tree(dir);
}

/* One image written by libtiff with a given codec; rows per strip 16. */
static int write_codec(const char *path, const Image *a, uint16_t comp, uint16_t pred, int ycbcr) {
    static const uint16_t fmt[] = {1, 1, 1, 2, 2, 2, 3, 3};
    TIFF *t = TIFFOpen(path, "w");
    if (!t) return 0;
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)a->w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)a->h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)a->c);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)(8 * img_dtype_size(a->dtype)));
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, fmt[a->dtype]);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_COMPRESSION, comp);
    if (ycbcr) {
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR);
        TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
        TIFFSetField(t, TIFFTAG_JPEGQUALITY, 95);
    } else {
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, a->c == 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
    }
    if (pred) TIFFSetField(t, TIFFTAG_PREDICTOR, pred);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 16);
    int ok = 1;
    size_t row = (size_t)(a->w * a->c) * img_dtype_size(a->dtype);
    uint8_t *copy = malloc(row); /* predictors difference the caller's row in place */
    for (int64_t y = 0; y < a->h; y++) {
        memcpy(copy, (uint8_t *)a->data + (size_t)y * row, row);
        ok &= TIFFWriteScanline(t, copy, (uint32_t)y, 0) >= 0;
    }
    free(copy);
    TIFFClose(t);
    return ok;
}

TEST(test_libtiff_codecs) {
    char dir[64], p[256];
    make_tmpdir(dir);
    path_in(p, sizeof p, dir, "codec.tif");
    struct { ImgDtype dt; int c; uint16_t comp, pred; } cases[] = {
        {IMG_U16, 1, COMPRESSION_LZW, PREDICTOR_HORIZONTAL},
        {IMG_I32, 3, COMPRESSION_ADOBE_DEFLATE, PREDICTOR_HORIZONTAL},
        {IMG_F32, 1, COMPRESSION_ADOBE_DEFLATE, PREDICTOR_FLOATINGPOINT},
        {IMG_F64, 3, COMPRESSION_LZW, PREDICTOR_FLOATINGPOINT},
        {IMG_U8, 3, COMPRESSION_PACKBITS, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        Image a, b;
        CpErr e = {{0}};
        make_random(&a, cases[k].dt, 41, 29, cases[k].c, 50 + k);
        CHECK(write_codec(p, &a, cases[k].comp, cases[k].pred, 0));
        CHECKF(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
        CHECKF(same_image(&a, &b), "codec case %zu (%s, compression %d) differs", k, img_dtype_name(a.dtype),
               cases[k].comp);
        image_free(&a);
        image_free(&b);
    }
    if (TIFFIsCODECConfigured(COMPRESSION_JPEG)) { /* YCbCr JPEG: libtiff hands out RGB */
        Image a, b;
        CpErr e = {{0}};
        make_random(&a, IMG_U8, 32, 48, 3, 1);
        for (int i = 0; i < 32 * 48 * 3; i++) ((uint8_t *)a.data)[i] = (uint8_t)(60 + (i % 3) * 50 + (i / 144));
        CHECK(write_codec(p, &a, COMPRESSION_JPEG, 0, 1));
        CHECKF(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
        int worst = 0;
        for (int i = 0; b.data && i < 32 * 48 * 3; i++) {
            int d = abs((int)((uint8_t *)a.data)[i] - (int)((uint8_t *)b.data)[i]);
            worst = d > worst ? d : worst;
        }
        CHECKF(b.c == 3 && b.dtype == IMG_U8 && worst < 12, "JPEG-in-TIFF off by up to %d", worst);
        image_free(&a);
        image_free(&b);
    }
    rm_tree(dir);
}

TEST(test_bilevel) {
    char dir[64], p[256];
    make_tmpdir(dir);
    path_in(p, sizeof p, dir, "bits.tif");
    const uint32_t w = 21, h = 5;
    TIFF *t = TIFFOpen(p, "w");
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 1);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISWHITE);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 2);
    for (uint32_t y = 0; y < h; y++) {
        uint8_t row[3] = {0};
        for (uint32_t x = 0; x < w; x++)
            if ((x + y) % 3 == 0) row[x >> 3] |= (uint8_t)(0x80 >> (x & 7));
        TIFFWriteScanline(t, row, y, 0);
    }
    TIFFClose(t);
    Image b;
    CpErr e = {{0}};
    CHECKF(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
    CHECK(b.dtype == IMG_U8 && b.c == 1 && b.w == w && b.h == h);
    int bad = 0;
    for (uint32_t y = 0; b.data && y < h; y++)
        for (uint32_t x = 0; x < w; x++) bad += ((uint8_t *)b.data)[y * w + x] != ((x + y) % 3 == 0);
    CHECKF(bad == 0, "%d bilevel pixels differ (expected 0/1 as stored, no inversion)", bad);
    image_free(&b);
    rm_tree(dir);
}

TEST(test_multipage) {
    char dir[64], p[256];
    make_tmpdir(dir);
    path_in(p, sizeof p, dir, "pages.tif");
    Image pages[3];
    make_random(&pages[0], IMG_U8, 10, 12, 1, 1);
    make_random(&pages[1], IMG_U16, 7, 9, 3, 2);
    make_random(&pages[2], IMG_F32, 5, 4, 1, 3);
    TIFF *t = TIFFOpen(p, "w");
    static const uint16_t fmt[] = {SAMPLEFORMAT_UINT, SAMPLEFORMAT_UINT, SAMPLEFORMAT_IEEEFP};
    for (int k = 0; k < 3; k++) {
        const Image *a = &pages[k];
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)a->w);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)a->h);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)a->c);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)(8 * img_dtype_size(a->dtype)));
        TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, fmt[k]);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, a->c == 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, (uint32_t)a->h);
        TIFFWriteEncodedStrip(t, 0, a->data, (tmsize_t)image_nbytes(a));
        TIFFWriteDirectory(t);
    }
    TIFFClose(t);
    for (int k = 0; k < 3; k++) {
        Image b;
        CpErr e = {{0}};
        CHECKF(image_read(&b, p, k, INT64_MAX, &e) == CP_OK, "%s", e.msg);
        CHECKF(same_image(&pages[k], &b), "page %d differs", k);
        CHECK(b.npages == 3 && b.page == k);
        image_free(&b);
    }
    Image b;
    CpErr e = {{0}};
    int rc = image_read(&b, p, 3, INT64_MAX, &e);
    CHECK_FAILS(rc, e, p, "page 3 requested, file has 3 pages");
    rc = image_read(&b, p, -1, INT64_MAX, &e);
    CHECK_FAILS(rc, e, p, "page -1 requested");
    for (int k = 0; k < 3; k++) image_free(&pages[k]);
    rm_tree(dir);
}

TEST(test_labels_writer) {
    char dir[64], p[256];
    make_tmpdir(dir);
    const int64_t h = 9, w = 11;
    uint32_t lab[99], back[99];
    for (uint32_t top = 65535; top <= 65536; top++) {
        for (int i = 0; i < 99; i++) lab[i] = (uint32_t)(i * 661) % top;
        lab[50] = top;
        path_in(p, sizeof p, dir, "labels.tif");
        CpErr e = {{0}};
        CHECKF(image_write_labels_tiff(p, lab, h, w, &e) == CP_OK, "%s", e.msg);
        Image b;
        CHECKF(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
        CHECKF(b.dtype == (top == 65535 ? IMG_U16 : IMG_U32), "max %u written as %s", top, img_dtype_name(b.dtype));
        CHECK(b.c == 1 && b.h == h && b.w == w);
        CHECKF(image_to_labels(&b, p, back, &e) == CP_OK, "%s", e.msg);
        CHECK(memcmp(lab, back, sizeof lab) == 0);
        image_free(&b);
    }
    rm_tree(dir);
}

TEST(test_f32_writer) {
    char dir[64], p[256];
    make_tmpdir(dir);
    const int64_t h = 6, w = 10;
    for (int c = 1; c <= 3; c += 2) {
        float chw[3 * 60];
        for (int i = 0; i < c * 60; i++) chw[i] = (float)i * 0.5f - 7.25f;
        path_in(p, sizeof p, dir, "flows.tif");
        CpErr e = {{0}};
        CHECKF(image_write_f32_tiff(p, chw, c, h, w, &e) == CP_OK, "%s", e.msg);
        TIFF *t = TIFFOpen(p, "r");
        uint16_t pc = 0;
        TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &pc);
        TIFFClose(t);
        CHECKF(c == 1 || pc == PLANARCONFIG_SEPARATE, "planar config %d", pc);
        Image b;
        CHECKF(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
        CHECK(b.dtype == IMG_F32 && b.c == c);
        int bad = 0;
        for (int k = 0; b.data && k < c; k++)
            for (int i = 0; i < 60; i++) bad += ((float *)b.data)[i * c + k] != chw[k * 60 + i];
        CHECKF(bad == 0, "%d values differ", bad);
        image_free(&b);
    }
    rm_tree(dir);
}

/* 16-bit grayscale PNG built by hand (stb cannot write one): IHDR + zlib IDAT. */
static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return c ^ 0xFFFFFFFFu;
}
static void put_be32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16 & 255, p[2] = v >> 8 & 255, p[3] = v & 255; }
static void png_chunk(FILE *f, const char *type, const uint8_t *data, uint32_t n) {
    uint8_t buf[4096];
    put_be32(buf, n);
    memcpy(buf + 4, type, 4);
    if (n) memcpy(buf + 8, data, n);
    put_be32(buf + 8 + n, crc32_png(buf + 4, n + 4));
    fwrite(buf, 1, n + 12, f);
}
extern unsigned char *stbi_zlib_compress(unsigned char *data, int data_len, int *out_len, int quality);

static void write_png16(const char *path, int w, int h, const uint16_t *px) {
    FILE *f = fopen(path, "wb");
    fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, (uint32_t)w), put_be32(ihdr + 4, (uint32_t)h), ihdr[8] = 16, ihdr[9] = 0;
    png_chunk(f, "IHDR", ihdr, 13);
    uint8_t raw[1024];
    int n = 0;
    for (int y = 0; y < h; y++) {
        raw[n++] = 0; /* filter: none */
        for (int x = 0; x < w; x++) raw[n++] = (uint8_t)(px[y * w + x] >> 8), raw[n++] = (uint8_t)px[y * w + x];
    }
    int zlen = 0;
    unsigned char *z = stbi_zlib_compress(raw, n, &zlen, 8);
    png_chunk(f, "IDAT", z, (uint32_t)zlen);
    free(z);
    png_chunk(f, "IEND", NULL, 0);
    fclose(f);
}

TEST(test_png_jpeg_bmp) {
    char dir[64], p[256];
    make_tmpdir(dir);
    static const int chans[] = {1, 3, 4};
    for (int ci = 0; ci < 3; ci++) {
        Image a, b;
        CpErr e = {{0}};
        make_random(&a, IMG_U8, 19, 23, chans[ci], 5 + (uint64_t)ci);
        path_in(p, sizeof p, dir, "x.tif"); /* wrong extension on purpose: the magic decides */
        CHECKF(image_write_png(p, a.data, a.c, a.h, a.w, &e) == CP_OK, "%s", e.msg);
        CHECKF(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
        CHECKF(same_image(&a, &b), "PNG c=%d differs", chans[ci]);
        image_free(&b);
        int rc = image_read(&b, p, 1, INT64_MAX, &e);
        CHECK_FAILS(rc, e, p, "page 1 requested, file has 1 page");
        image_free(&a);
    }
    uint16_t px16[12];
    for (int i = 0; i < 12; i++) px16[i] = (uint16_t)(i * 5000 + 17);
    path_in(p, sizeof p, dir, "g16.png");
    write_png16(p, 4, 3, px16);
    Image b;
    CpErr e = {{0}};
    CHECKF(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
    CHECK(b.dtype == IMG_U16 && b.c == 1 && b.w == 4 && b.h == 3 && b.data && memcmp(b.data, px16, 24) == 0);
    image_free(&b);
    uint8_t flat[8 * 8 * 3];
    for (int i = 0; i < 8 * 8 * 3; i++) flat[i] = (uint8_t)(i % 3 * 60 + 40);
    path_in(p, sizeof p, dir, "f.jpg");
    CHECK(stbi_write_jpg(p, 8, 8, 3, flat, 95));
    CHECKF(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
    CHECK(b.dtype == IMG_U8 && b.c == 3 && b.w == 8 && b.h == 8 && b.data && abs(((uint8_t *)b.data)[4] - 100) < 8);
    image_free(&b);
    path_in(p, sizeof p, dir, "f.bmp");
    CHECK(stbi_write_bmp(p, 8, 8, 3, flat));
    CHECKF(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
    CHECK(b.dtype == IMG_U8 && b.c == 3 && b.data && memcmp(b.data, flat, sizeof flat) == 0);
    image_free(&b);
    rm_tree(dir);
}

TEST(test_to_f32) {
    for (int d = 0; d < 8; d++) {
        Image a;
        make_random(&a, ALL_DTYPES[d], 3, 5, 2, 11 + (uint64_t)d);
        float out[30];
        image_to_f32(&a, out);
        int bad = 0;
        for (size_t i = 0; i < 30; i++) {
            double v;
            switch (a.dtype) {
            case IMG_U8: v = ((uint8_t *)a.data)[i]; break;
            case IMG_U16: v = ((uint16_t *)a.data)[i]; break;
            case IMG_U32: v = ((uint32_t *)a.data)[i]; break;
            case IMG_I8: v = ((int8_t *)a.data)[i]; break;
            case IMG_I16: v = ((int16_t *)a.data)[i]; break;
            case IMG_I32: v = ((int32_t *)a.data)[i]; break;
            case IMG_F32: v = ((float *)a.data)[i]; break;
            default: v = ((double *)a.data)[i]; break;
            }
            bad += out[i] != (float)v;
        }
        CHECKF(bad == 0, "%s: %d values differ", img_dtype_name(a.dtype), bad);
        image_free(&a);
    }
    Image a = {.h = 1, .w = 2, .c = 1, .dtype = IMG_U32};
    uint32_t big[2] = {16777216u, 16777215u};
    a.data = big;
    float out[2];
    image_to_f32(&a, out);
    CHECK(out[0] == 16777216.0f && out[1] == 16777215.0f);
}

/* ---- malformed inputs ------------------------------------------------------- */

static int try_read(const char *p, int page, int64_t maxpx, CpErr *e) {
    Image b;
    int rc = image_read(&b, p, page, maxpx, e);
    if (rc != CP_OK && (b.data != NULL || b.h != 0)) return 12345; /* must be zeroed on failure */
    image_free(&b);
    return rc;
}

TEST(test_bad_inputs) {
    char dir[64], p[256], q[256];
    make_tmpdir(dir);
    CpErr e = {{0}};
    path_in(p, sizeof p, dir, "missing.tif");
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "No such file");
    CHECK_FAILS(try_read(dir, 0, INT64_MAX, &e), e, dir, "directory");
    path_in(p, sizeof p, dir, "empty.tif");
    write_bytes(p, "", 0);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "empty");
    path_in(p, sizeof p, dir, "text.tif");
    write_bytes(p, "hello world\n", 12);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "not a TIFF, PNG, JPEG or BMP");
    /* garbage behind a TIFF magic */
    uint8_t junk[300] = {'I', 'I', 42, 0};
    uint64_t s = 42;
    for (int i = 4; i < 300; i++) junk[i] = (uint8_t)lcg(&s);
    path_in(p, sizeof p, dir, "junk.tif");
    write_bytes(p, junk, sizeof junk);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "TIFF");
    /* a valid file cut in half (libtiff puts the directory at the end) */
    Image a;
    make_random(&a, IMG_U16, 64, 64, 1, 3);
    path_in(q, sizeof q, dir, "whole.tif");
    CHECKF(image_write_tiff(q, &a, 0, &e) == CP_OK, "%s", e.msg);
    uint8_t *buf;
    size_t len;
    CHECK(cp_read_file(q, 1 << 20, &buf, &len, &e) == CP_OK);
    path_in(p, sizeof p, dir, "half.tif");
    write_bytes(p, buf, len / 2);
    cp_free(buf);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "TIFF");
    /* size limit, checked before decoding */
    CHECK(try_read(q, 0, 64 * 64, &e) == CP_OK);
    CHECK_FAILS(try_read(q, 0, 64 * 64 - 1, &e), e, q, "64x64 pixels exceeds the limit of 4095 pixels (--max-pixels)");
    image_free(&a);
    /* hand-made layouts: directory intact, strip data cut short */
    path_in(p, sizeof p, dir, "short.tif");
    raw_tiff(p, 64, 64, 16, PHOTOMETRIC_MINISBLACK, 8192, 8192);
    CHECKF(try_read(p, 0, INT64_MAX, &e) == CP_OK, "hand-made TIFF unreadable: %s", e.msg);
    raw_tiff(p, 64, 64, 16, PHOTOMETRIC_MINISBLACK, 8192, 100);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "truncated");
    raw_tiff(p, 64, 64, 12, PHOTOMETRIC_MINISBLACK, 6144, 6144);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "12 bits per sample");
    raw_tiff(p, 16, 16, 8, PHOTOMETRIC_PALETTE, 256, 256);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "palette");
    raw_tiff(p, 16, 16, 8, PHOTOMETRIC_SEPARATED, 256, 256);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "CMYK");
    raw_tiff(p, 0, 16, 8, PHOTOMETRIC_MINISBLACK, 256, 256);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "");
    raw_tiff(p, 70000, 70000, 8, PHOTOMETRIC_MINISBLACK, 256, 256);
    CHECK_FAILS(try_read(p, 0, (int64_t)1 << 28, &e), e, p, "70000x70000 pixels exceeds the limit of 268435456");
    rm_tree(dir);
}

TEST(test_bad_floats_and_labels) {
    char dir[64], p[256];
    make_tmpdir(dir);
    CpErr e = {{0}};
    Image a, b;
    make_random(&a, IMG_F32, 6, 9, 2, 1);
    ((float *)a.data)[(3 * 9 + 7) * 2 + 0] = NAN;
    path_in(p, sizeof p, dir, "nan.tif");
    CHECKF(image_write_tiff(p, &a, 1, &e) == CP_OK, "%s", e.msg);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "pixel (y=3, x=7, c=0) is NaN");
    image_free(&a);
    make_random(&a, IMG_F64, 6, 9, 1, 1);
    ((double *)a.data)[2 * 9 + 1] = -INFINITY;
    CHECKF(image_write_tiff(p, &a, 0, &e) == CP_OK, "%s", e.msg);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "pixel (y=2, x=1, c=0) is -Inf");
    image_free(&a);

    uint32_t lab[54];
    make_random(&a, IMG_I16, 6, 9, 1, 1);
    for (int i = 0; i < 54; i++) ((int16_t *)a.data)[i] = (int16_t)(i % 5);
    ((int16_t *)a.data)[4 * 9 + 2] = -1;
    path_in(p, sizeof p, dir, "neg.tif");
    CHECKF(image_write_tiff(p, &a, 0, &e) == CP_OK, "%s", e.msg);
    CHECK(image_read(&b, p, 0, INT64_MAX, &e) == CP_OK);
    CHECK_FAILS(image_to_labels(&b, p, lab, &e), e, p, "label pixel (y=4, x=2) is negative");
    image_free(&a);
    image_free(&b);

    make_random(&a, IMG_F32, 6, 9, 1, 1);
    for (int i = 0; i < 54; i++) ((float *)a.data)[i] = (float)(i % 7);
    CHECK(image_to_labels(&a, "mem", lab, &e) == CP_OK && lab[13] == 6);
    ((float *)a.data)[5] = 2.5f;
    CHECK_FAILS(image_to_labels(&a, "lab.tif", lab, &e), e, "lab.tif", "label pixel (y=0, x=5) is not a whole number");
    image_free(&a);

    make_random(&a, IMG_U8, 6, 9, 3, 1);
    CHECK_FAILS(image_to_labels(&a, "rgb.tif", lab, &e), e, "rgb.tif", "must have 1 channel");
    image_free(&a);
    rm_tree(dir);
}

TEST(test_bad_png) {
    char dir[64], p[256];
    make_tmpdir(dir);
    CpErr e = {{0}};
    Image a;
    make_random(&a, IMG_U8, 40, 50, 3, 9);
    path_in(p, sizeof p, dir, "ok.png");
    CHECKF(image_write_png(p, a.data, 3, 40, 50, &e) == CP_OK, "%s", e.msg);
    CHECK_FAILS(try_read(p, 0, 40 * 50 - 1, &e), e, p, "50x40 pixels exceeds the limit");
    uint8_t *buf;
    size_t len;
    CHECK(cp_read_file(p, 1 << 20, &buf, &len, &e) == CP_OK);
    path_in(p, sizeof p, dir, "cut.png");
    write_bytes(p, buf, len / 2);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "PNG");
    /* a header announcing 70000 x 70000: refused from the header, nothing decoded */
    put_be32(buf + 16, 70000), put_be32(buf + 20, 70000);
    path_in(p, sizeof p, dir, "huge.png");
    write_bytes(p, buf, 33);
    CHECK_FAILS(try_read(p, 0, (int64_t)1 << 28, &e), e, p, "70000x70000 pixels exceeds the limit");
    put_be32(buf + 16, 3000), put_be32(buf + 20, 2000);
    path_in(p, sizeof p, dir, "big.png");
    write_bytes(p, buf, 33);
    CHECK_FAILS(try_read(p, 0, 1000000, &e), e, p, "3000x2000 pixels exceeds the limit of 1000000 pixels");
    uint64_t s = 1;
    for (size_t i = 8; i < len; i++) buf[i] = (uint8_t)lcg(&s);
    path_in(p, sizeof p, dir, "junk.png");
    write_bytes(p, buf, len);
    CHECK_FAILS(try_read(p, 0, INT64_MAX, &e), e, p, "PNG");
    cp_free(buf);
    image_free(&a);
    rm_tree(dir);
}

/* ---- atomic writers ------------------------------------------------------------ */

TEST(test_writers_leave_nothing_on_error) {
    char dir[64], p[256];
    make_tmpdir(dir);
    CpErr e = {{0}};
    Image a;
    make_random(&a, IMG_U8, 4, 5, 1, 1);
    uint32_t lab[20] = {0};
    float f[20] = {0};
    /* destination folder does not exist */
    path_in(p, sizeof p, dir, "nope/out.tif");
    CHECK_FAILS(image_write_tiff(p, &a, 0, &e), e, p, "");
    CHECK_FAILS(image_write_labels_tiff(p, lab, 4, 5, &e), e, p, "");
    CHECK_FAILS(image_write_f32_tiff(p, f, 1, 4, 5, &e), e, p, "");
    CHECK_FAILS(image_write_png(p, a.data, 1, 4, 5, &e), e, p, "");
    CHECK(!file_exists(p));
    CHECK(dir_entries(dir) == 0);
    /* the destination is a directory: everything is written, the rename fails,
     * the temporary file must be gone */
    path_in(p, sizeof p, dir, "taken");
    mkdir(p, 0755);
    CHECK_FAILS(image_write_tiff(p, &a, 0, &e), e, p, "");
    CHECK_FAILS(image_write_labels_tiff(p, lab, 4, 5, &e), e, p, "");
    CHECK_FAILS(image_write_png(p, a.data, 1, 4, 5, &e), e, p, "");
    rmdir(p);
    CHECKF(dir_entries(dir) == 0, "temporary files left in %s", dir);
    /* invalid arguments: refused before anything is created */
    path_in(p, sizeof p, dir, "zero.tif");
    CHECK_FAILS(image_write_labels_tiff(p, lab, 0, 5, &e), e, p, "");
    CHECK_FAILS(image_write_png(p, a.data, 2, 4, 5, &e), e, p, "1, 3 or 4 channels");
    CHECK(dir_entries(dir) == 0);
    image_free(&a);
    rm_tree(dir);
}

/* ---- files for tests/py/test_image_io.py ------------------------------------------ */

static int export_tiff(TestCase *tc, const char *dir, const char *name, const Image *a, int planar, int comp) {
    char p[512];
    CpErr e = {{0}};
    path_in(p, sizeof p, dir, name);
    int rc = image_write_tiff_ex(p, a, planar, comp, &e);
    CHECKF(rc == CP_OK, "%s", e.msg);
    Image b;
    rc = image_read(&b, p, 0, INT64_MAX, &e);
    CHECKF(rc == CP_OK && same_image(a, &b), "%s does not read back: %s", p, e.msg);
    image_free(&b);
    return rc;
}

TEST(test_export_for_python) {
    const char *out = getenv("CP_IMAGE_OUT");
    char tmp[64] = "", dir[512], name[128], p[600];
    if (out && out[0]) {
        snprintf(dir, sizeof dir, "%s", out);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
        CHECKF(system(cmd) == 0, "cannot create %s", dir);
    } else {
        make_tmpdir(tmp); /* still exercise the writers */
        snprintf(dir, sizeof dir, "%s", tmp);
    }
    for (int d = 0; d < 8; d++) {
        const char *dn = img_dtype_name(ALL_DTYPES[d]);
        Image a;
        make_gen(&a, ALL_DTYPES[d], 1);
        snprintf(name, sizeof name, "gen_%s_c1.tif", dn);
        export_tiff(tc, dir, name, &a, 0, 0);
        snprintf(name, sizeof name, "gen_%s_c1_deflate.tif", dn);
        export_tiff(tc, dir, name, &a, 0, 1);
        image_free(&a);
        make_gen(&a, ALL_DTYPES[d], 3);
        snprintf(name, sizeof name, "gen_%s_c3_contig.tif", dn);
        export_tiff(tc, dir, name, &a, 0, 0);
        snprintf(name, sizeof name, "gen_%s_c3_planar.tif", dn);
        export_tiff(tc, dir, name, &a, 1, 0);
        image_free(&a);
    }
    CpErr e = {{0}};
    uint32_t lab[GEN_H * GEN_W];
    for (int k = 0; k < 2; k++) {
        for (int64_t i = 0; i < GEN_H * GEN_W; i++) {
            uint32_t m = (uint32_t)((i / GEN_W) * 131 + (i % GEN_W) * 7) * 40503u;
            lab[i] = k == 0 ? m % 65536 : m + 70000;
        }
        path_in(p, sizeof p, dir, k == 0 ? "labels_u16.tif" : "labels_u32.tif");
        CHECKF(image_write_labels_tiff(p, lab, GEN_H, GEN_W, &e) == CP_OK, "%s", e.msg);
    }
    float chw[3 * GEN_H * GEN_W];
    for (int c = 0; c < 3; c++)
        for (int64_t i = 0; i < GEN_H * GEN_W; i++) chw[c * GEN_H * GEN_W + i] = (float)gen_value(IMG_F32, i / GEN_W, i % GEN_W, c);
    path_in(p, sizeof p, dir, "f32_c1.tif");
    CHECKF(image_write_f32_tiff(p, chw, 1, GEN_H, GEN_W, &e) == CP_OK, "%s", e.msg);
    path_in(p, sizeof p, dir, "f32_c3.tif");
    CHECKF(image_write_f32_tiff(p, chw, 3, GEN_H, GEN_W, &e) == CP_OK, "%s", e.msg);
    static const int pc[] = {1, 3, 4};
    for (int k = 0; k < 3; k++) {
        Image a;
        make_gen(&a, IMG_U8, pc[k]);
        snprintf(name, sizeof name, "png_c%d.png", pc[k]);
        path_in(p, sizeof p, dir, name);
        CHECKF(image_write_png(p, a.data, a.c, a.h, a.w, &e) == CP_OK, "%s", e.msg);
        image_free(&a);
    }
    if (tmp[0]) rm_tree(tmp);
}

TEST_MAIN(T(test_dtype_names), T(test_roundtrip_all_layouts), T(test_roundtrip_many_strips), T(test_tiled),
          T(test_libtiff_codecs), T(test_bilevel), T(test_multipage), T(test_labels_writer), T(test_f32_writer), T(test_png_jpeg_bmp),
          T(test_to_f32), T(test_bad_inputs), T(test_bad_floats_and_labels), T(test_bad_png),
          T(test_writers_leave_nothing_on_error), T(test_export_for_python))
