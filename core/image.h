/* image.h - image I/O: TIFF (libtiff) and PNG/JPEG/BMP (stb_image) readers,
 * TIFF and PNG writers, dtype conversions.
 *
 * In memory an image is always chunky (HWC): element (y, x, c) is
 * data[(y * w + x) * c + c], in the file's native pixel type, in the host's
 * byte order. Planar files are interleaved on read.
 *
 * Errors follow common.h: one line naming the file and the problem, no
 * printing. Writers are atomic (temporary file + rename): on any error no
 * file, partial or otherwise, is left at the destination. */
#ifndef CP_IMAGE_H
#define CP_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum { IMG_U8, IMG_U16, IMG_U32, IMG_I8, IMG_I16, IMG_I32, IMG_F32, IMG_F64 } ImgDtype;

typedef struct {
    int64_t h, w;   /* pixels */
    int c;          /* channels (samples per pixel), 1..4 */
    ImgDtype dtype; /* native pixel type as stored in the file */
    void *data;     /* h*w*c elements, chunky (HWC), native endianness, cp_malloc'ed */
    int npages;     /* pages (directories) in the file; 1 for PNG/JPEG/BMP */
    int page;       /* which page was read */
} Image;

/* "uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64"
 * (numpy's names). */
const char *img_dtype_name(ImgDtype d);
size_t img_dtype_size(ImgDtype d);
int img_dtype_is_float(ImgDtype d);
/* Bytes of pixel data: h * w * c * img_dtype_size(dtype). */
size_t image_nbytes(const Image *img);

/* Read page `page` (0-based) of a TIFF, or a PNG/JPEG/BMP (format from the
 * magic bytes, not the extension). Images with more than max_pixels pixels
 * (h * w) are refused before any pixel memory is allocated; max_pixels <= 0
 * refuses every image (pass INT64_MAX for "no limit").
 *
 * TIFF: 8/16/32-bit (un)signed integers, 32/64-bit float, 1-bit bilevel
 * (read as uint8 0/1), 1..4 samples, contiguous or planar, strips or tiles,
 * any compression this libtiff decodes. MINISWHITE is returned as stored
 * (no inversion). YCbCr is accepted only JPEG-compressed (libtiff converts it
 * to RGB). Palette, CMYK and other photometrics are refused.
 * PNG: 8-bit -> uint8, 16-bit -> uint16. JPEG, BMP -> uint8.
 * Float images containing NaN or Inf are refused (naming the pixel).
 * On failure *img is zeroed (nothing to free). */
int image_read(Image *img, const char *path, int page, int64_t max_pixels, CpErr *e);
void image_free(Image *img);

/* Convert to float32 HWC (exact for all integer values up to 2^24; float64 is
 * rounded to nearest). `out` holds h*w*c floats. */
void image_to_f32(const Image *img, float *out);

/* Label image -> uint32 (HW). Must be 1 channel and an integer dtype, or a
 * float dtype holding whole non-negative values; negative, non-integral or
 * too large (> 2^32-1) values are errors naming `path` and the pixel. */
int image_to_labels(const Image *img, const char *path, uint32_t *out, CpErr *e);

/* Writers, all atomic (temporary file + rename, nothing left behind on
 * error). Classic TIFF, or BigTIFF when the pixel data exceeds 2 GiB. */

/* uint16 if max(labels) <= 65535 else uint32; 1 sample, MINISBLACK, deflate
 * (no compression if this libtiff lacks zlib). */
int image_write_labels_tiff(const char *path, const uint32_t *labels, int64_t h, int64_t w, CpErr *e);
/* float32, c samples per pixel, PLANARCONFIG_SEPARATE (tifffile reads shape
 * (c, h, w), or (h, w) when c == 1), uncompressed. `chw` is planar input. */
int image_write_f32_tiff(const char *path, const float *chw, int c, int64_t h, int64_t w, CpErr *e);
/* 8-bit PNG, c in {1, 3, 4}, `hwc` chunky, via stb_image_write. */
int image_write_png(const char *path, const uint8_t *hwc, int c, int64_t h, int64_t w, CpErr *e);

/* Generic TIFF writer: any ImgDtype, img->c samples (1..4), chunky
 * (planar = 0) or planar (planar = 1) on disk, uncompressed, one page.
 * Photometric RGB for 3 or 4 samples, MINISBLACK for 1 or 2; samples beyond
 * those are marked EXTRASAMPLE_UNSPECIFIED (not alpha). */
int image_write_tiff(const char *path, const Image *img, int planar, CpErr *e);
/* Same with deflate compression when compress != 0 (and this libtiff has zlib). */
int image_write_tiff_ex(const char *path, const Image *img, int planar, int compress, CpErr *e);

#endif
