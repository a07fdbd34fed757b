/* augment.h - training augmentation: Cellpose's random_rotate_and_resize
 * (cellpose/transforms.py, v3.1.1.3; CELLPOSE.md 4.4) with Philox draws and
 * our own bilinear affine warp.
 *
 * Legend: C image channels, h w input height/width, B = bsize (output crop
 * is B x B), y x pixel row/column. Layouts are planar, row-major:
 *   img  [C, h, w]   normalised image channels
 *   lbl  [3, h, w]   training labels: cellprob (or mask ids), dY flow, dX flow
 *   out  [C, B, B] and [3, B, B]
 *
 * What Cellpose does, per image (and what we do):
 *  1. draws, in order, flip = rand() > 0.5, theta = 2*pi*rand(),
 *     scale = (1 - sr/2) + sr*rand() (sr = scale_range clipped to [0, 2]),
 *     scale *= 1/rescale, dxy = (rand(2) - 0.5) * max(0, (w*scale - B,
 *     h*scale - B)) (x first). aug_draw makes the same draws in the same
 *     distributions from Philox (DESIGN.md rule 6, deliberate difference to
 *     numpy's MT19937): key (seed, stream), counter (epoch, image, element =
 *     AUG_EL_*, draw 0), word 0, u = cp_u01 (24-bit uniform in [0, 1)). Each
 *     quantity has its own counter, so the evaluation order never matters.
 *  2. builds the affine map (OpenCV x, y convention)
 *        dst = scale * R(theta) * (src - cc) + cc1,
 *        cc = (w/2, h/2), cc1 = (B/2, B/2) + dxy, R = [[c, -s], [s, c]]
 *     and warps with cv2.warpAffine (border constant 0): INTER_LINEAR for
 *     the image and the flows, INTER_NEAREST for label channel 0.
 *     We evaluate the inverse map src = R^T (dst - cc1) / scale + cc per
 *     output pixel in float and sample exactly (aug_sample_bilinear) instead
 *     of OpenCV's fixed-point 1/32-pixel bilinear (deliberate difference).
 *  3. flip (before the warp): the x axis of image and labels is reversed and
 *     the X flow negated. We never materialise the flipped image: the
 *     sampler reads column w-1-x instead of x, which is the same arithmetic.
 *  4. rotates the flow vectors by theta after the warp:
 *        dY' = vx*s + vy*c,   dX' = vx*c - vy*s   (no renormalisation).
 *
 * Determinism: every output pixel is a pure function of the inputs and the
 * parameters, written by exactly one iteration; the per-pixel math is the
 * CP_HD functions below (one definition for CPU and a future CUDA kernel),
 * no fma, products summed in a fixed order. cos/sin come from core/dmath.h.
 * Results are byte-identical for any thread count. */
#ifndef CP_AUGMENT_H
#define CP_AUGMENT_H

#include <stdint.h>

#include "ctx.h"
#include "dmath.h"
#include "hd.h"
#include "philox.h"

/* Suggested Philox stream for augmentation: key = cp_rng_key(seed, AUG_STREAM). */
#define AUG_STREAM 0x61756731u /* "aug1" */

/* Philox counter element of each drawn quantity (counter = (epoch, image, element, 0)). */
enum { AUG_EL_FLIP = 0, AUG_EL_THETA = 1, AUG_EL_SCALE = 2, AUG_EL_DX = 3, AUG_EL_DY = 4 };

typedef struct {
    int flip;      /* 1: reverse the x axis (and negate dX) before the warp */
    float theta;   /* rotation, radians, in [0, 2*pi) */
    float scale;   /* zoom, includes the 1/rescale factor */
    float dxy[2];  /* translation of the crop centre, (x, y), pixels of the output */
} AugParams;

/* The inverse affine map of one image, precomputed once per image:
 *   src_x = m[0]*x + m[1]*y + m[2],  src_y = m[3]*x + m[4]*y + m[5]
 * with (x, y) output pixel coordinates and src in the (flipped) input, plus
 * cos/sin of theta for the flow rotation. */
typedef struct {
    float m[6];
    float cos_t, sin_t;
} AugWarp;

/* Builds the inverse map of dst = scale*R(theta)*(src - cc) + cc1 in float,
 * in this fixed order: c = cos, s = sin (dmath), a = c/scale, b = s/scale,
 * m = [a, b, cx - (a*cx1 + b*cy1); -b, a, cy - (-b*cx1 + a*cy1)]. */
CP_HD static inline AugWarp aug_warp(const AugParams *p, int64_t h, int64_t w, int bsize) {
    AugWarp wp;
    float c = cp_cosf(p->theta), s = cp_sinf(p->theta);
    float a = c / p->scale, b = s / p->scale;
    float cx = 0.5f * (float)w, cy = 0.5f * (float)h;            /* cc  = (Lx/2, Ly/2) */
    float cx1 = 0.5f * (float)bsize + p->dxy[0];                /* cc1 = (B/2, B/2) + dxy */
    float cy1 = 0.5f * (float)bsize + p->dxy[1];
    wp.m[0] = a;
    wp.m[1] = b;
    wp.m[2] = cx - (a * cx1 + b * cy1);
    wp.m[3] = -b;
    wp.m[4] = a;
    wp.m[5] = cy - (-b * cx1 + a * cy1);
    wp.cos_t = c;
    wp.sin_t = s;
    return wp;
}

/* Source coordinate of output pixel (x, y): (m0*x + m1*y) + m2, no fma. */
CP_HD static inline void aug_src_coord(const AugWarp *wp, int x, int y, float *sx, float *sy) {
    float fx = (float)x, fy = (float)y;
    *sx = (wp->m[0] * fx + wp->m[1] * fy) + wp->m[2];
    *sy = (wp->m[3] * fx + wp->m[4] * fy) + wp->m[5];
}

/* Pixel (row yi, column xi) of the possibly flipped plane, 0 outside
 * (cv2.BORDER_CONSTANT, value 0). flip reads column w-1-xi. */
CP_HD static inline float aug_pixel(const float *src, int64_t h, int64_t w, int64_t yi, int64_t xi, int flip) {
    if (yi < 0 || yi >= h || xi < 0 || xi >= w) return 0.0f;
    return src[yi * w + (flip ? w - 1 - xi : xi)];
}

/* Bilinear sample of plane src [h, w] at (sx, sy) (pixel centres at integer
 * coordinates, like OpenCV). x0 = floor(sx), fx = sx - x0 (exact); the four
 * neighbours outside the plane count as 0; weights
 *   w00 = (1-fx)(1-fy), w01 = fx(1-fy), w10 = (1-fx)fy, w11 = fx*fy
 * and the sum ((v00*w00 + v01*w01) + v10*w10) + v11*w11 in this order.
 * A coordinate with no neighbour inside (or NaN) gives 0. */
CP_HD static inline float aug_sample_bilinear(const float *src, int64_t h, int64_t w, float sx, float sy, int flip) {
    if (!(sx > -1.0f && sx < (float)w && sy > -1.0f && sy < (float)h)) return 0.0f;
    float x0f = floorf(sx), y0f = floorf(sy);
    float fx = sx - x0f, fy = sy - y0f;
    int64_t x0 = (int64_t)x0f, y0 = (int64_t)y0f;
    float gx = 1.0f - fx, gy = 1.0f - fy;
    float w00 = gx * gy, w01 = fx * gy, w10 = gx * fy, w11 = fx * fy;
    float v00 = aug_pixel(src, h, w, y0, x0, flip), v01 = aug_pixel(src, h, w, y0, x0 + 1, flip);
    float v10 = aug_pixel(src, h, w, y0 + 1, x0, flip), v11 = aug_pixel(src, h, w, y0 + 1, x0 + 1, flip);
    return ((v00 * w00 + v01 * w01) + v10 * w10) + v11 * w11;
}

/* Nearest-neighbour sample: index floor(s + 0.5), i.e. ties (a coordinate
 * exactly half-way between two pixels) go to the larger index, as OpenCV's
 * INTER_NEAREST rounding of its fixed-point coordinate does. Outside -> 0. */
CP_HD static inline float aug_sample_nearest(const float *src, int64_t h, int64_t w, float sx, float sy, int flip) {
    float rx = floorf(sx + 0.5f), ry = floorf(sy + 0.5f);
    if (!(rx >= 0.0f && rx < (float)w && ry >= 0.0f && ry < (float)h)) return 0.0f;
    return aug_pixel(src, h, w, (int64_t)ry, (int64_t)rx, flip);
}

/* Flow rotation (Cellpose: dY' = -vx*sin(-t) + vy*cos(-t), dX' = vx*cos(-t) + vy*sin(-t)),
 * vx already negated when flipped. */
CP_HD static inline void aug_rotate_flow(const AugWarp *wp, float vy, float vx, float *dy, float *dx) {
    *dy = vx * wp->sin_t + vy * wp->cos_t;
    *dx = vx * wp->cos_t - vy * wp->sin_t;
}

/* Draws the parameters of sample `image` (its position in the epoch's order,
 * so that an image drawn twice in one epoch gets two augmentations) of
 * `epoch`, for an input of h x w pixels and a B x B crop. rescale > 0 (Cellpose:
 * diam / diam_mean when rescaling, else 1); scale_range is clipped to [0, 2];
 * do_flip = 0 forces flip = 0. */
void aug_draw(AugParams *p, CpRngKey key, uint32_t epoch, uint32_t image, int64_t h, int64_t w, int bsize,
              float rescale, float scale_range, int do_flip);

/* Warps one image and its labels into the B x B crop.
 *   img_out [C, B, B], img [C, h, w]: bilinear
 *   lbl_out [3, B, B], lbl [3, h, w]: channel 0 nearest (cellprob or mask
 *     ids), channels 1, 2 = dY, dX bilinear, dX negated on flip, then the
 *     vectors rotated by theta. lbl and lbl_out may both be NULL (image only).
 * Parallel over output rows with ctx->threads; bytes independent of it. */
void aug_apply(float *img_out, float *lbl_out, const float *img, const float *lbl, int C, int64_t h, int64_t w,
               int bsize, const AugParams *p, const CpCtx *ctx);

#endif
