/* image.c - image I/O: read TIFF (libtiff) and PNG/JPEG/BMP (stb_image) into
 * a chunky (HWC) native-endian buffer; write TIFF and PNG atomically.
 *
 * Reading. The format comes from the first bytes (II*, MM*, BigTIFF, PNG,
 * JPEG, BM), never from the extension. TIFF: the requested directory is
 * decoded strip by strip or tile by tile with TIFFReadEncoded{Strip,Tile}
 * (libtiff undoes compression, predictors and byte order) and copied into
 * place; planar (PLANARCONFIG_SEPARATE) planes are interleaved. 1-bit
 * bilevel files become uint8 0/1. MINISWHITE is returned as stored (no
 * inversion: pixel values are data, not display intensities). The size limit
 * is checked from the header, before any pixel memory is allocated; for
 * PNG/JPEG/BMP with stbi_info before decoding. Float images with NaN/Inf are
 * refused, naming the first bad pixel.
 *
 * Writing. TIFF writers share one strip writer (about 1 MiB strips, BigTIFF
 * above 2 GiB of pixels); PNG goes through stbi_write_png_to_func. All write
 * to a temporary file next to the destination and rename it into place
 * (cp_atomic_*); on any error the temporary file is removed.
 *
 * Errors: one line "path: problem" in CpErr; libtiff's own messages are
 * captured through per-handle handlers (TIFFOpenOptions, libtiff >= 4.5) and
 * the first one is quoted in that line.
 *
 * Global state: the only one is libtiff's process-wide error and warning
 * handlers, set once (pthread_once) to NULL so that libtiff never prints to
 * stderr, even from code paths that bypass the per-handle handlers. stb_image
 * keeps its failure reason in a thread-local. */
#include "image.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

#include <stb_image.h>
#include <stb_image_write.h>
#include <tiffio.h>

/* ---- dtypes ------------------------------------------------------------ */

const char *img_dtype_name(ImgDtype d) {
    static const char *const names[] = {"uint8", "uint16", "uint32", "int8",
                                        "int16", "int32",  "float32", "float64"};
    return (unsigned)d < 8 ? names[d] : "unknown";
}

size_t img_dtype_size(ImgDtype d) {
    static const size_t sizes[] = {1, 2, 4, 1, 2, 4, 4, 8};
    return (unsigned)d < 8 ? sizes[d] : 0;
}

int img_dtype_is_float(ImgDtype d) { return d == IMG_F32 || d == IMG_F64; }

size_t image_nbytes(const Image *img) {
    return (size_t)img->h * (size_t)img->w * (size_t)img->c * img_dtype_size(img->dtype);
}

void image_free(Image *img) {
    if (!img) return;
    cp_free(img->data);
    memset(img, 0, sizeof *img);
}

/* ---- libtiff plumbing --------------------------------------------------- */

typedef struct {
    char msg[400]; /* first libtiff error, one line */
    int nerr;
} TiffMsg;

static int tiff_on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif, (void)module;
    TiffMsg *m = user;
    if (m && m->nerr++ == 0) {
        vsnprintf(m->msg, sizeof m->msg, fmt, ap);
        for (char *p = m->msg; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
    }
    return 1; /* handled: do not call the global handler */
}

static int tiff_on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif, (void)user, (void)module, (void)fmt, (void)ap;
    return 1; /* warnings are dropped */
}

static pthread_once_t tiff_once = PTHREAD_ONCE_INIT;
static void tiff_silence_globals(void) {
    TIFFSetErrorHandler(NULL);
    TIFFSetWarningHandler(NULL);
}

static TIFF *tiff_open(const char *path, const char *mode, TiffMsg *m) {
    pthread_once(&tiff_once, tiff_silence_globals);
    memset(m, 0, sizeof *m);
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    TIFFOpenOptionsSetErrorHandlerExtR(opts, tiff_on_error, m);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, tiff_on_warning, NULL);
    TIFF *tif = TIFFOpenExt(path, mode, opts);
    TIFFOpenOptionsFree(opts);
    return tif;
}

static const char *tiff_why(const TiffMsg *m, const char *fallback) {
    return m->nerr && m->msg[0] ? m->msg : fallback;
}

/* ---- TIFF reading ------------------------------------------------------ */

typedef struct {
    TIFF *tif;
    const char *path;
    TiffMsg *m;
    uint32_t w, h;
    uint16_t spp, bps, fmt, planar, photo, comp;
    int page;
} TiffIn;

static int tiff_dtype(const TiffIn *t, ImgDtype *dt, CpErr *e) {
    int b = t->bps;
    if (t->fmt == SAMPLEFORMAT_UINT && (b == 1 || b == 8 || b == 16 || b == 32)) {
        if (b == 1 && t->spp != 1)
            return cp_fail(e, "%s: unsupported TIFF layout: 1-bit images with %d samples per pixel", t->path,
                           t->spp);
        *dt = b <= 8 ? IMG_U8 : b == 16 ? IMG_U16 : IMG_U32;
    } else if (t->fmt == SAMPLEFORMAT_INT && (b == 8 || b == 16 || b == 32)) {
        *dt = b == 8 ? IMG_I8 : b == 16 ? IMG_I16 : IMG_I32;
    } else if (t->fmt == SAMPLEFORMAT_IEEEFP && (b == 32 || b == 64)) {
        *dt = b == 32 ? IMG_F32 : IMG_F64;
    } else {
        static const char *const fmts[] = {"?", "unsigned integer", "signed integer", "float",
                                           "void", "complex integer", "complex float"};
        return cp_fail(e,
                       "%s: unsupported TIFF layout: %d bits per sample with sample format %s (supported: "
                       "1/8/16/32-bit unsigned, 8/16/32-bit signed, 32/64-bit float)",
                       t->path, b, t->fmt <= 6 ? fmts[t->fmt] : "unknown");
    }
    return CP_OK;
}

static int tiff_check_photometric(TiffIn *t, CpErr *e) {
    switch (t->photo) {
    case PHOTOMETRIC_MINISBLACK: case PHOTOMETRIC_MINISWHITE: case PHOTOMETRIC_RGB: return CP_OK;
    case PHOTOMETRIC_PALETTE:
        return cp_fail(e, "%s: unsupported TIFF layout: palette (colormap) images are not supported; "
                          "convert to grayscale or RGB", t->path);
    case PHOTOMETRIC_SEPARATED:
        return cp_fail(e, "%s: unsupported TIFF layout: photometric separated (CMYK); convert to RGB", t->path);
    case PHOTOMETRIC_YCBCR:
        if (t->comp == COMPRESSION_JPEG) { /* let libtiff's JPEG codec hand out RGB */
            TIFFSetField(t->tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
            t->photo = PHOTOMETRIC_RGB;
            return CP_OK;
        }
        return cp_fail(e, "%s: unsupported TIFF layout: photometric YCbCr without JPEG compression", t->path);
    default:
        return cp_fail(e, "%s: unsupported TIFF layout: photometric interpretation %d (supported: "
                          "minisblack, miniswhite, rgb)", t->path, t->photo);
    }
}

/* Fill t from the current directory and check everything but the size. */
static int tiff_layout(TiffIn *t, ImgDtype *dt, CpErr *e) {
    TIFF *tif = t->tif;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &t->w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &t->h))
        return cp_fail(e, "%s: corrupt TIFF: page %d has no image width/length", t->path, t->page);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &t->spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &t->bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &t->fmt);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &t->planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &t->comp);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &t->photo)) t->photo = PHOTOMETRIC_MINISBLACK;
    if (t->spp < 1 || t->spp > 4)
        return cp_fail(e, "%s: unsupported TIFF layout: %d samples per pixel (supported: 1 to 4)", t->path,
                       t->spp);
    if (t->planar != PLANARCONFIG_CONTIG && t->planar != PLANARCONFIG_SEPARATE)
        return cp_fail(e, "%s: corrupt TIFF: planar configuration %d", t->path, t->planar);
    if (!TIFFIsCODECConfigured(t->comp))
        return cp_fail(e, "%s: unsupported TIFF layout: compression %d is not available in this libtiff",
                       t->path, t->comp);
    if (tiff_dtype(t, dt, e) != CP_OK) return CP_EFAIL;
    return tiff_check_photometric(t, e);
}

#define COPY_STRIDED(T)                                                                           \
    for (uint32_t x = 0; x < cols; x++) ((T *)drow)[(size_t)x * c] = ((const T *)srow)[x];

/* Copy a decoded block (rows x cols pixels at y0, x0; src rows src_row bytes
 * apart) into img. plane < 0: chunky block with all samples; else one sample. */
static void tiff_copy_block(const TiffIn *t, Image *img, const uint8_t *src, size_t src_row, uint32_t y0,
                            uint32_t x0, uint32_t rows, uint32_t cols, int plane) {
    size_t es = img_dtype_size(img->dtype), c = (size_t)img->c;
    for (uint32_t r = 0; r < rows; r++) {
        const uint8_t *srow = src + r * src_row;
        uint8_t *drow = (uint8_t *)img->data + (((size_t)(y0 + r) * (size_t)img->w + x0) * c) * es;
        if (plane >= 0) drow += (size_t)plane * es;
        if (t->bps == 1) {
            for (uint32_t x = 0; x < cols; x++) drow[(size_t)x * c] = (srow[x >> 3] >> (7 - (x & 7))) & 1;
        } else if (plane < 0 || c == 1) {
            memcpy(drow, srow, (size_t)cols * c * es);
        } else if (es == 1) {
            COPY_STRIDED(uint8_t)
        } else if (es == 2) {
            COPY_STRIDED(uint16_t)
        } else if (es == 4) {
            COPY_STRIDED(uint32_t)
        } else {
            COPY_STRIDED(uint64_t)
        }
    }
}

/* Bytes of one decoded row of `cols` pixels, as this reader lays them out. */
static uint64_t tiff_row_bytes(const TiffIn *t, const Image *img, uint64_t cols) {
    if (t->bps == 1) return (cols + 7) / 8;
    return cols * (t->planar == PLANARCONFIG_SEPARATE ? 1 : (uint64_t)t->spp) * img_dtype_size(img->dtype);
}

static int tiff_read_strips(const TiffIn *t, Image *img, CpErr *e) {
    uint32_t rps = 0;
    TIFFGetFieldDefaulted(t->tif, TIFFTAG_ROWSPERSTRIP, &rps);
    if (rps == 0 || rps > t->h) rps = t->h;
    int planes = t->planar == PLANARCONFIG_SEPARATE ? t->spp : 1;
    uint64_t row = TIFFScanlineSize64(t->tif);
    uint64_t per_plane = (t->h + (uint64_t)rps - 1) / rps;
    if (row != tiff_row_bytes(t, img, t->w) || TIFFNumberOfStrips(t->tif) < per_plane * (uint64_t)planes)
        return cp_fail(e, "%s: corrupt TIFF: page %d: %s", t->path, t->page,
                       tiff_why(t->m, "strip layout does not match the image size"));
    uint8_t *buf = cp_malloc((size_t)(row * rps));
    for (int p = 0; p < planes; p++) {
        for (uint64_t s = 0; s < per_plane; s++) {
            uint32_t y0 = (uint32_t)(s * rps), rows = t->h - y0 < rps ? t->h - y0 : rps;
            tmsize_t need = (tmsize_t)(row * rows);
            tmsize_t got = TIFFReadEncodedStrip(t->tif, (uint32_t)(p * per_plane + s), buf, need);
            if (got < need) {
                cp_free(buf);
                return cp_fail(e, "%s: corrupt or truncated TIFF: page %d, strip %" PRIu64 ": %s", t->path,
                               t->page, p * per_plane + s, tiff_why(t->m, "short strip"));
            }
            tiff_copy_block(t, img, buf, (size_t)row, y0, 0, rows, t->w, planes > 1 ? p : -1);
        }
    }
    cp_free(buf);
    return CP_OK;
}

static int tiff_read_tiles(const TiffIn *t, Image *img, CpErr *e) {
    uint32_t tw = 0, th = 0;
    TIFFGetField(t->tif, TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(t->tif, TIFFTAG_TILELENGTH, &th);
    int planes = t->planar == PLANARCONFIG_SEPARATE ? t->spp : 1;
    uint64_t tsize = TIFFTileSize64(t->tif), trow = TIFFTileRowSize64(t->tif);
    uint64_t ntiles = ((t->w + (uint64_t)tw - 1) / (tw ? tw : 1)) * ((t->h + (uint64_t)th - 1) / (th ? th : 1));
    /* A tile far larger than the image is a corrupt (or hostile) header. */
    uint64_t limit = 4 * (uint64_t)image_nbytes(img) + ((uint64_t)1 << 26);
    if (tw == 0 || th == 0 || trow != tiff_row_bytes(t, img, tw) || tsize != trow * th || tsize > limit ||
        TIFFNumberOfTiles(t->tif) < ntiles * (uint64_t)planes)
        return cp_fail(e, "%s: corrupt TIFF: page %d: %s", t->path, t->page,
                       tiff_why(t->m, "tile layout does not match the image size"));
    uint8_t *buf = cp_malloc((size_t)tsize);
    for (int p = 0; p < planes; p++) {
        for (uint64_t ty = 0; ty < t->h; ty += th) {
            for (uint64_t tx = 0; tx < t->w; tx += tw) {
                uint32_t idx = TIFFComputeTile(t->tif, (uint32_t)tx, (uint32_t)ty, 0, (uint16_t)p);
                if (TIFFReadEncodedTile(t->tif, idx, buf, (tmsize_t)tsize) < (tmsize_t)tsize) {
                    cp_free(buf);
                    return cp_fail(e, "%s: corrupt or truncated TIFF: page %d, tile %u: %s", t->path, t->page,
                                   idx, tiff_why(t->m, "short tile"));
                }
                uint32_t rows = (uint32_t)(t->h - ty < th ? t->h - ty : th);
                uint32_t cols = (uint32_t)(t->w - tx < tw ? t->w - tx : tw);
                tiff_copy_block(t, img, buf, (size_t)trow, (uint32_t)ty, (uint32_t)tx, rows, cols,
                                planes > 1 ? p : -1);
            }
        }
    }
    cp_free(buf);
    return CP_OK;
}

static int check_size(const char *path, int64_t w, int64_t h, int64_t max_pixels, CpErr *e) {
    if (w <= 0 || h <= 0)
        return cp_fail(e, "%s: image has zero size (%" PRId64 "x%" PRId64 " pixels)", path, w, h);
    if ((uint64_t)w * (uint64_t)h > (uint64_t)(max_pixels > 0 ? max_pixels : 0))
        return cp_fail(e, "%s: %" PRId64 "x%" PRId64 " pixels exceeds the limit of %" PRId64
                          " pixels (--max-pixels)", path, w, h, max_pixels > 0 ? max_pixels : 0);
    return CP_OK;
}

static int tiff_read_page(Image *img, TiffIn *t, int64_t max_pixels, CpErr *e) {
    ImgDtype dt = IMG_U8;
    if (tiff_layout(t, &dt, e) != CP_OK) return CP_EFAIL;
    if (check_size(t->path, t->w, t->h, max_pixels, e) != CP_OK) return CP_EFAIL;
    img->w = t->w;
    img->h = t->h;
    img->c = t->spp;
    img->dtype = dt;
    img->data = cp_malloc(image_nbytes(img));
    return TIFFIsTiled(t->tif) ? tiff_read_tiles(t, img, e) : tiff_read_strips(t, img, e);
}

static int read_tiff(Image *img, const char *path, int page, int64_t max_pixels, CpErr *e) {
    TiffMsg m;
    TIFF *tif = tiff_open(path, "r", &m);
    if (!tif) return cp_fail(e, "%s: corrupt or truncated TIFF: %s", path, tiff_why(&m, "cannot open"));
    int rc = CP_EFAIL;
    tdir_t n = TIFFNumberOfDirectories(tif);
    if (n == 0 || n > INT32_MAX) {
        cp_fail(e, "%s: corrupt TIFF: %s", path, tiff_why(&m, "no readable directory"));
    } else if (page < 0 || (tdir_t)page >= n) {
        cp_fail(e, "%s: page %d requested, file has %u page%s", path, page, n, n == 1 ? "" : "s");
    } else if (!TIFFSetDirectory(tif, (tdir_t)page)) {
        cp_fail(e, "%s: corrupt TIFF: cannot read page %d: %s", path, page, tiff_why(&m, "bad directory"));
    } else {
        TiffIn t = {.tif = tif, .path = path, .m = &m, .page = page};
        img->npages = (int)n;
        img->page = page;
        rc = tiff_read_page(img, &t, max_pixels, e);
    }
    TIFFClose(tif);
    return rc;
}

/* ---- PNG / JPEG / BMP (stb_image) ---------------------------------------- */

static int read_stb(Image *img, const char *path, const char *kind, int64_t max_pixels, CpErr *e) {
    FILE *f = cp_fopen(path, "rb", e);
    if (!f) return CP_EFAIL;
    int w = 0, h = 0, n = 0;
    uint8_t hd[24];
    if (kind[1] == 'N' && fread(hd, 1, 24, f) == 24 && memcmp(hd + 12, "IHDR", 4) == 0) {
        /* PNG: check the size from IHDR first (stb_image calls images over 2^30 bytes corrupt) */
        int64_t pw = (int64_t)hd[16] << 24 | hd[17] << 16 | hd[18] << 8 | hd[19];
        int64_t ph = (int64_t)hd[20] << 24 | hd[21] << 16 | hd[22] << 8 | hd[23];
        if (check_size(path, pw, ph, max_pixels, e) != CP_OK) {
            fclose(f);
            return CP_EFAIL;
        }
    }
    rewind(f);
    if (!stbi_info_from_file(f, &w, &h, &n)) {
        fclose(f);
        return cp_fail(e, "%s: corrupt %s header: %s", path, kind, stbi_failure_reason());
    }
    if (check_size(path, w, h, max_pixels, e) != CP_OK) {
        fclose(f);
        return CP_EFAIL;
    }
    int is16 = strcmp(kind, "PNG") == 0 && stbi_is_16_bit_from_file(f);
    void *pix = is16 ? (void *)stbi_load_from_file_16(f, &w, &h, &n, 0) : (void *)stbi_load_from_file(f, &w, &h, &n, 0);
    fclose(f);
    if (!pix) return cp_fail(e, "%s: corrupt or truncated %s: %s", path, kind, stbi_failure_reason());
    if (n < 1 || n > 4 || check_size(path, w, h, max_pixels, e) != CP_OK) {
        stbi_image_free(pix);
        return n < 1 || n > 4 ? cp_fail(e, "%s: unsupported %s with %d channels", path, kind, n) : CP_EFAIL;
    }
    img->w = w;
    img->h = h;
    img->c = n;
    img->dtype = is16 ? IMG_U16 : IMG_U8;
    img->npages = 1;
    img->page = 0;
    img->data = cp_malloc(image_nbytes(img));
    memcpy(img->data, pix, image_nbytes(img));
    stbi_image_free(pix);
    return CP_OK;
}

/* ---- image_read --------------------------------------------------------- */

#define FIND_NONFINITE(T)                                                                         \
    do {                                                                                          \
        const T *p = img->data;                                                                   \
        for (size_t i = 0; i < n; i++)                                                            \
            if (!isfinite(p[i])) {                                                                \
                bad = i;                                                                          \
                val = (double)p[i];                                                               \
                break;                                                                            \
            }                                                                                     \
    } while (0)

static int check_finite(const Image *img, const char *path, CpErr *e) {
    if (!img_dtype_is_float(img->dtype)) return CP_OK;
    size_t n = (size_t)img->h * (size_t)img->w * (size_t)img->c, bad = SIZE_MAX;
    double val = 0;
    if (img->dtype == IMG_F32)
        FIND_NONFINITE(float);
    else
        FIND_NONFINITE(double);
    if (bad == SIZE_MAX) return CP_OK;
    size_t px = bad / (size_t)img->c;
    char where[48] = "";
    if (img->npages > 1) snprintf(where, sizeof where, " on page %d", img->page);
    return cp_fail(e, "%s: pixel (y=%zu, x=%zu, c=%zu) is %s%s; float images must be finite", path,
                   px / (size_t)img->w, px % (size_t)img->w, bad % (size_t)img->c,
                   isnan(val) ? "NaN" : val > 0 ? "+Inf" : "-Inf", where);
}

int image_read(Image *img, const char *path, int page, int64_t max_pixels, CpErr *e) {
    memset(img, 0, sizeof *img);
    FILE *f = cp_fopen(path, "rb", e);
    if (!f) return CP_EFAIL;
    uint8_t mg[8] = {0};
    size_t got = fread(mg, 1, sizeof mg, f);
    fclose(f);
    if (got == 0) return cp_fail(e, "%s: file is empty", path);
    const char *kind = NULL;
    if (got >= 4 && ((mg[0] == 'I' && mg[1] == 'I' && (mg[2] == 42 || mg[2] == 43) && mg[3] == 0) ||
                     (mg[0] == 'M' && mg[1] == 'M' && mg[2] == 0 && (mg[3] == 42 || mg[3] == 43))))
        kind = "TIFF";
    else if (got == 8 && memcmp(mg, "\x89PNG\r\n\x1a\n", 8) == 0)
        kind = "PNG";
    else if (got >= 3 && mg[0] == 0xFF && mg[1] == 0xD8 && mg[2] == 0xFF)
        kind = "JPEG";
    else if (got >= 2 && mg[0] == 'B' && mg[1] == 'M')
        kind = "BMP";
    if (!kind)
        return cp_fail(e, "%s: not a TIFF, PNG, JPEG or BMP file (first bytes %02x %02x %02x %02x)", path, mg[0],
                       mg[1], mg[2], mg[3]);
    int rc;
    if (kind[0] == 'T') {
        rc = read_tiff(img, path, page, max_pixels, e);
    } else if (page != 0) {
        rc = cp_fail(e, "%s: page %d requested, file has 1 page", path, page);
    } else {
        rc = read_stb(img, path, kind, max_pixels, e);
    }
    if (rc == CP_OK) rc = check_finite(img, path, e);
    if (rc != CP_OK) image_free(img);
    return rc;
}

/* ---- conversions --------------------------------------------------------- */

#define TO_F32(T)                                                                                 \
    do {                                                                                          \
        const T *p = img->data;                                                                   \
        for (size_t i = 0; i < n; i++) out[i] = (float)p[i];                                      \
    } while (0)

void image_to_f32(const Image *img, float *out) {
    size_t n = (size_t)img->h * (size_t)img->w * (size_t)img->c;
    switch (img->dtype) {
    case IMG_U8: TO_F32(uint8_t); break;
    case IMG_U16: TO_F32(uint16_t); break;
    case IMG_U32: TO_F32(uint32_t); break;
    case IMG_I8: TO_F32(int8_t); break;
    case IMG_I16: TO_F32(int16_t); break;
    case IMG_I32: TO_F32(int32_t); break;
    case IMG_F32: memcpy(out, img->data, n * sizeof(float)); break;
    case IMG_F64: TO_F32(double); break;
    }
}

/* Value of element i as a double (exact for every supported dtype but
 * float64's own rounding, which is the value itself). */
static double elem_f64(const Image *img, size_t i) {
    switch (img->dtype) {
    case IMG_U8: return ((const uint8_t *)img->data)[i];
    case IMG_U16: return ((const uint16_t *)img->data)[i];
    case IMG_U32: return ((const uint32_t *)img->data)[i];
    case IMG_I8: return ((const int8_t *)img->data)[i];
    case IMG_I16: return ((const int16_t *)img->data)[i];
    case IMG_I32: return ((const int32_t *)img->data)[i];
    case IMG_F32: return ((const float *)img->data)[i];
    case IMG_F64: return ((const double *)img->data)[i];
    }
    return 0;
}

int image_to_labels(const Image *img, const char *path, uint32_t *out, CpErr *e) {
    if (img->c != 1)
        return cp_fail(e, "%s: a label image must have 1 channel, this one has %d", path, img->c);
    size_t n = (size_t)img->h * (size_t)img->w;
    if (img->dtype == IMG_U32) {
        memcpy(out, img->data, n * sizeof(uint32_t));
        return CP_OK;
    }
    for (size_t i = 0; i < n; i++) {
        double v = elem_f64(img, i);
        const char *why = NULL;
        if (isnan(v)) why = "is NaN";
        else if (v < 0) why = "is negative";
        else if (v > 4294967295.0) why = "is larger than 4294967295";
        else if (v != floor(v)) why = "is not a whole number";
        if (why)
            return cp_fail(e, "%s: label pixel (y=%zu, x=%zu) %s (%.17g); labels must be non-negative integers",
                           path, i / (size_t)img->w, i % (size_t)img->w, why, v);
        out[i] = (uint32_t)v;
    }
    return CP_OK;
}

/* ---- TIFF writing --------------------------------------------------------- */

typedef struct TiffOut TiffOut;
struct TiffOut {
    const void *src;
    int64_t h, w;
    int c, planar, compress;
    ImgDtype dt;
    /* fill one file row: sample `plane` (planar) or all samples (chunky) of row y */
    void (*row)(const TiffOut *o, int plane, int64_t y, uint8_t *dst);
};

static int tiff_set_fields(TIFF *tif, const TiffOut *o, uint32_t rps) {
    static const uint16_t fmt[] = {SAMPLEFORMAT_UINT, SAMPLEFORMAT_UINT, SAMPLEFORMAT_UINT, SAMPLEFORMAT_INT,
                                   SAMPLEFORMAT_INT,  SAMPLEFORMAT_INT,  SAMPLEFORMAT_IEEEFP, SAMPLEFORMAT_IEEEFP};
    int rgb = o->c >= 3;
    int ok = TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, (uint32_t)o->w) &&
             TIFFSetField(tif, TIFFTAG_IMAGELENGTH, (uint32_t)o->h) &&
             TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)o->c) &&
             TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, (uint16_t)(8 * img_dtype_size(o->dt))) &&
             TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, fmt[o->dt]) &&
             TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, rgb ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK) &&
             TIFFSetField(tif, TIFFTAG_PLANARCONFIG, o->planar ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG) &&
             TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, rps);
    int extra = o->c - (rgb ? 3 : 1);
    if (ok && extra > 0) {
        uint16_t kinds[3] = {EXTRASAMPLE_UNSPECIFIED, EXTRASAMPLE_UNSPECIFIED, EXTRASAMPLE_UNSPECIFIED};
        ok = TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, (uint16_t)extra, kinds);
    }
    int deflate = o->compress && TIFFIsCODECConfigured(COMPRESSION_ADOBE_DEFLATE);
    if (ok) ok = TIFFSetField(tif, TIFFTAG_COMPRESSION, deflate ? COMPRESSION_ADOBE_DEFLATE : COMPRESSION_NONE);
    return ok;
}

static int tiff_write_strips(TIFF *tif, const TiffOut *o, uint32_t rps) {
    int planes = o->planar ? o->c : 1;
    size_t row = (size_t)o->w * (size_t)(o->planar ? 1 : o->c) * img_dtype_size(o->dt);
    uint64_t per_plane = ((uint64_t)o->h + rps - 1) / rps;
    uint8_t *buf = cp_malloc(row * rps);
    int ok = 1;
    for (int p = 0; ok && p < planes; p++) {
        for (uint64_t s = 0; ok && s < per_plane; s++) {
            int64_t y0 = (int64_t)(s * rps), rows = o->h - y0 < rps ? o->h - y0 : rps;
            for (int64_t r = 0; r < rows; r++) o->row(o, p, y0 + r, buf + (size_t)r * row);
            ok = TIFFWriteEncodedStrip(tif, (uint32_t)(p * per_plane + s), buf, (tmsize_t)(row * (size_t)rows)) >= 0;
        }
    }
    cp_free(buf);
    return ok;
}

static int tiff_write(const char *path, const TiffOut *o, CpErr *e) {
    if (o->h <= 0 || o->w <= 0 || o->h > UINT32_MAX || o->w > UINT32_MAX)
        return cp_fail(e, "%s: cannot write a %" PRId64 "x%" PRId64 " (width x height) image", path, o->w, o->h);
    if (o->c < 1 || o->c > 4) return cp_fail(e, "%s: cannot write %d channels (1 to 4)", path, o->c);
    size_t es = img_dtype_size(o->dt);
    size_t row = (size_t)o->w * (size_t)(o->planar ? 1 : o->c) * es;
    uint64_t total = (uint64_t)o->h * (uint64_t)o->w * (uint64_t)o->c * es;
    uint32_t rps = (uint32_t)(((size_t)1 << 20) / row);
    if (rps < 1) rps = 1;
    if (rps > o->h) rps = (uint32_t)o->h;

    CpAtomicFile af;
    if (cp_atomic_reserve(&af, path, e) != CP_OK) return CP_EFAIL;
    TiffMsg m;
    TIFF *tif = tiff_open(af.tmp_path, total > ((uint64_t)1 << 31) ? "w8" : "w", &m);
    if (!tif) {
        cp_atomic_abort(&af);
        return cp_fail(e, "%s: cannot create TIFF: %s", path, tiff_why(&m, "open failed"));
    }
    int ok = tiff_set_fields(tif, o, rps) && tiff_write_strips(tif, o, rps) && TIFFFlush(tif);
    TIFFClose(tif);
    if (!ok || m.nerr) {
        cp_atomic_abort(&af);
        return cp_fail(e, "%s: writing TIFF failed: %s", path, tiff_why(&m, "libtiff error (disk full?)"));
    }
    return cp_atomic_commit(&af, e);
}

static void row_image(const TiffOut *o, int plane, int64_t y, uint8_t *dst) {
    size_t es = img_dtype_size(o->dt), c = (size_t)o->c, w = (size_t)o->w;
    const uint8_t *src = (const uint8_t *)o->src + (size_t)y * w * c * es;
    if (!o->planar) {
        memcpy(dst, src, w * c * es);
        return;
    }
    src += (size_t)plane * es;
    for (size_t x = 0; x < w; x++) memcpy(dst + x * es, src + x * c * es, es);
}

static void row_labels(const TiffOut *o, int plane, int64_t y, uint8_t *dst) {
    (void)plane;
    const uint32_t *src = (const uint32_t *)o->src + (size_t)y * (size_t)o->w;
    if (o->dt == IMG_U32) {
        memcpy(dst, src, (size_t)o->w * sizeof(uint32_t));
        return;
    }
    uint16_t *d16 = (uint16_t *)dst;
    for (int64_t x = 0; x < o->w; x++) d16[x] = (uint16_t)src[x];
}

static void row_chw(const TiffOut *o, int plane, int64_t y, uint8_t *dst) {
    const float *src = (const float *)o->src + ((size_t)plane * (size_t)o->h + (size_t)y) * (size_t)o->w;
    memcpy(dst, src, (size_t)o->w * sizeof(float));
}

int image_write_tiff_ex(const char *path, const Image *img, int planar, int compress, CpErr *e) {
    TiffOut o = {img->data, img->h, img->w, img->c, planar ? 1 : 0, compress, img->dtype, row_image};
    if (img_dtype_size(img->dtype) == 0) return cp_fail(e, "%s: cannot write unknown dtype %d", path, img->dtype);
    return tiff_write(path, &o, e);
}

int image_write_tiff(const char *path, const Image *img, int planar, CpErr *e) {
    return image_write_tiff_ex(path, img, planar, 0, e);
}

int image_write_labels_tiff(const char *path, const uint32_t *labels, int64_t h, int64_t w, CpErr *e) {
    uint32_t mx = 0;
    if (h > 0 && w > 0)
        for (size_t i = 0, n = (size_t)h * (size_t)w; i < n; i++) mx = labels[i] > mx ? labels[i] : mx;
    TiffOut o = {labels, h, w, 1, 0, 1, mx <= 65535 ? IMG_U16 : IMG_U32, row_labels};
    return tiff_write(path, &o, e);
}

int image_write_f32_tiff(const char *path, const float *chw, int c, int64_t h, int64_t w, CpErr *e) {
    TiffOut o = {chw, h, w, c, c > 1, 0, IMG_F32, row_chw};
    return tiff_write(path, &o, e);
}

/* ---- PNG writing ------------------------------------------------------------ */

typedef struct {
    FILE *f;
    int failed;
} PngSink;

static void png_sink(void *ctx, void *data, int size) {
    PngSink *s = ctx;
    if (!s->failed && size > 0 && fwrite(data, 1, (size_t)size, s->f) != (size_t)size) s->failed = 1;
}

int image_write_png(const char *path, const uint8_t *hwc, int c, int64_t h, int64_t w, CpErr *e) {
    if (c != 1 && c != 3 && c != 4) return cp_fail(e, "%s: PNG needs 1, 3 or 4 channels, got %d", path, c);
    if (h <= 0 || w <= 0) return cp_fail(e, "%s: cannot write a %" PRId64 "x%" PRId64 " image", path, w, h);
    /* stb_image_write sizes its buffers with int. */
    if (w > INT32_MAX / 8 || h > INT32_MAX || (uint64_t)(w * c + 1) * (uint64_t)h > (uint64_t)INT32_MAX / 2)
        return cp_fail(e, "%s: %" PRId64 "x%" PRId64 " is too large for the PNG writer; write a TIFF", path, w, h);
    CpAtomicFile af;
    if (cp_atomic_open(&af, path, e) != CP_OK) return CP_EFAIL;
    PngSink s = {af.f, 0};
    int ok = stbi_write_png_to_func(png_sink, &s, (int)w, (int)h, c, hwc, (int)(w * c));
    if (!ok || s.failed) {
        cp_atomic_abort(&af);
        return cp_fail(e, "%s: %s", path, ok ? "write failed (disk full?)" : "PNG encoding failed");
    }
    return cp_atomic_commit(&af, e);
}
