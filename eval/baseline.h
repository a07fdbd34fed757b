/* baseline.h - classical segmentation baselines for `eval --baseline`:
 * a threshold on the normalized image, connected components, then
 * Cellpose's hole filling and small-mask removal. They answer "how much
 * better than classical computer vision is the model?" on the same table.
 *
 * Layouts: H W spatial; images (H, W) float32 row-major, the output of
 * bl_prepare (the selected channel after Cellpose's 1/99 percentile
 * normalization, ~[0, 1]); foreground (H, W) uint8 0/1; labels (H, W)
 * uint32, 0 = background.
 *
 * The methods (foreground = the pixels the test selects):
 *   binary         x > threshold (default 0.5 of the normalized image;
 *                  cv2.threshold THRESH_BINARY's strict ">").
 *   otsu           x > t, t = Otsu's threshold on the EXACT histogram of x:
 *                  the candidate splits are between consecutive distinct
 *                  values v_k (class 0 = values <= v_k); the between-class
 *                  variance n0 n1 (m0 - m1)^2 (counts int64, class sums
 *                  float64 summed in ascending value order) is maximised,
 *                  the first (lowest) split wins ties, t = v_k. The split
 *                  depends only on the order of the values, so Otsu on the
 *                  normalized image selects the same pixels as Otsu on the
 *                  raw image (a monotone map); on uint8 images this is
 *                  cv2.threshold(THRESH_OTSU)'s 256-bin histogram (tested),
 *                  up to floating-point near-ties. An image with one
 *                  distinct value has no split: no foreground.
 *   gaussian-otsu  Otsu (as above) of the Gaussian-blurred image:
 *                  sigma 2 (--sigma), kernel size cvRound(8 sigma + 1) | 1
 *                  (17 for sigma 2: cv2.GaussianBlur's choice for float
 *                  images), weights exp(-k^2 / (2 sigma^2)) from core/dmath
 *                  normalised to sum 1, separable (rows, then columns),
 *                  accumulated in float64, the result rounded to float32;
 *                  edge mode reflect-101 (cv2's BORDER_DEFAULT: "gfedcb|
 *                  abcdefgh|gfedcba").
 *   adaptive       x > m + offset, m = the mean of x over the block x block
 *                  window centred on the pixel (block odd, default 51 px,
 *                  about two nucleus diameters; offset default 0.05 of the
 *                  normalized range), edge mode replicate (cv2's
 *                  adaptiveThreshold uses BORDER_REPLICATE), from a float64
 *                  integral image of the padded image. cv2 rounds the local
 *                  mean of a uint8 image to uint8 and thresholds
 *                  src > mean - C; here the mean is not rounded and
 *                  offset = -C.
 * Then: connected components of the foreground (8-connectivity by default,
 * cv2.connectedComponents' default; --connectivity 4 for scipy.ndimage.
 * label's), numbered 1..N in raster order of each component's first pixel,
 * then Cellpose's fill_holes_and_remove_small_masks(min_size = 15)
 * (infer/cleanup.h), which fills holes and drops components under
 * min_size pixels.
 *
 * Determinism: every step is serial integer or float64 arithmetic in a
 * fixed order (no threads), so the masks depend on nothing but the image
 * and the parameters. No libm transcendental (the Gaussian uses cp_dm_expd). */
#ifndef CP_EVAL_BASELINE_H
#define CP_EVAL_BASELINE_H

#include <stdint.h>

#include "common.h"
#include "ctx.h"
#include "image.h"

typedef enum { BL_BINARY = 0, BL_OTSU, BL_GAUSSIAN_OTSU, BL_ADAPTIVE, BL_NMETHODS } BlMethod;

typedef struct {
    double threshold;  /* binary: foreground x > threshold (0.5) */
    double sigma;      /* gaussian-otsu: Gaussian sigma in pixels (2) */
    int block;         /* adaptive: odd window side in pixels (51) */
    double offset;     /* adaptive: foreground x > local mean + offset (0.05) */
    int connectivity;  /* 4 or 8 (8) */
    int min_size;      /* Cellpose's min_size (15); <= 0 keeps every component */
} BlParams;

void bl_params_default(BlParams *p);
/* "binary", "otsu", "gaussian-otsu", "adaptive". */
const char *bl_method_name(BlMethod m);
int bl_method_parse(const char *s, BlMethod *m, CpErr *e);

/* The image a baseline sees: Cellpose's channel selection (channels as
 * `infer --channels`; grayscale 0,0 = the mean of the channels, a 1-channel
 * image as is) and normalize_img's 1/99 percentile normalization of that
 * channel (train/transforms.h), exactly what infer feeds the network.
 *   x: (H, W) out, img->h * img->w floats. Fails (naming `path`) like
 *   infer does: bad channels, images under 8 px, NaN pixels. */
int bl_prepare(float *x, const Image *img, const int channels[2], const CpCtx *ctx, const char *path, CpErr *e);

/* Gaussian blur as defined above. out, in: (H, W); out != in. */
int bl_gaussian_blur(float *out, const float *in, int64_t H, int64_t W, double sigma, CpErr *e);

/* Otsu's threshold on the exact histogram of x (n values). Returns 1 and
 * *t when a split exists, 0 (and *t = the single value) when all values are
 * equal or n < 2. */
int bl_otsu_threshold(double *t, const float *x, int64_t n);

/* Local mean over a block x block window, edge mode replicate.
 * mean: (H, W) float64 out; block odd >= 1. */
int bl_box_mean(double *mean, const float *in, int64_t H, int64_t W, int block, CpErr *e);

/* Connected components of fg (4 or 8 connectivity), labels 1..N in raster
 * order of first pixels. Returns N, or -1 (and e) on a bad connectivity. */
int64_t bl_label(uint32_t *labels, const uint8_t *fg, int64_t H, int64_t W, int connectivity, CpErr *e);

/* The foreground of method m on the normalized image x. fg: (H, W) out. */
int bl_foreground(uint8_t *fg, const float *x, int64_t H, int64_t W, BlMethod m, const BlParams *p, CpErr *e);

/* The whole baseline: foreground -> bl_label -> fill_holes_and_remove_small.
 * masks: (H, W) out. */
int bl_segment(uint32_t *masks, const float *x, int64_t H, int64_t W, BlMethod m, const BlParams *p, CpErr *e);

#endif
