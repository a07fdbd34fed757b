/* dynamics.h - Euler integration of the flows and mask assembly (CELLPOSE.md
 * 5.7-5.10): Cellpose v3.1.1.3's CPU path, the one canonical definition
 * (DESIGN.md "One canonical Cellpose").
 *
 * Legend: H W image rows/cols, N foreground pixels (cellprob > threshold, in
 * row-major order), HP = H + 40, WP = W + 40 the padded histogram.
 *
 * Pipeline (dyn_compute_masks):
 *   1. F = dP * fg / 5                 float32, [2, H, W] (dY, dX), zero outside fg
 *   2. pos = follow_flows(F, fg)       niter steps of p <- clamp(p + F(p), 0, L-1)
 *      with Cellpose's numba `map_coordinates` bilinear sample at exactly p
 *      (edge clamped corners, the exact float32/float64 mix numba compiles to,
 *      see dyn_bilinear)
 *   3. masks = get_masks(int(pos))     histogram, 5x5 local maxima with count >
 *      10, 5 growth steps over bins with count > 2 (seeds in torch's CPU
 *      argsort order, later seeds overwrite), max_size_fraction removal,
 *      renumbering by first appearance in a row-major scan.
 * NOT here (infer/cleanup.c): remove_bad_flow_masks (flow_threshold) and
 * fill_holes_and_remove_small_masks (min_size); call those after.
 *
 * Determinism: every pixel's trajectory is independent (parallel over pixels,
 * one writer each); the histogram is integer counts; seeds, their order and
 * label writes are sequential. Results are identical for any thread count. */
#ifndef CP_DYNAMICS_H
#define CP_DYNAMICS_H

#include <stdint.h>

#include "common.h"
#include "ctx.h"
#include "hd.h"

/* Histogram padding of get_masks_torch (rpad). */
#define DYN_RPAD 20

/* Bilinear sample of one channel G [H, W] at (y, x), 0 <= y <= H-1, 0 <= x <= W-1,
 * exactly as numba compiles cellpose.dynamics.map_coordinates for float32:
 * corners floor(p) and floor(p)+1 clamped to the image; fy, fx float32;
 * (1 - fy), (1 - fx) and the first two products in double, the last two
 * products formed in float32 first (numba's float32*float32 -> float32),
 * summed in double left to right, rounded once to float32. */
CP_HD static inline float dyn_bilinear(const float *G, int64_t H, int64_t W, int64_t y0, int64_t x0,
                                       int64_t y1, int64_t x1, float fy, float fx) {
    double a = 1.0 - (double)fy, b = 1.0 - (double)fx;
    double s = ((double)G[y0 * W + x0] * a) * b;
    s = s + ((double)G[y0 * W + x1] * a) * (double)fx;
    s = s + (double)(G[y1 * W + x0] * fy) * b;
    s = s + (double)((G[y1 * W + x1] * fy) * fx);
    (void)H;
    return (float)s;
}

/* One Euler step of one pixel (steps_interp CPU branch):
 *   d = map_coordinates(F, p);  p[k] = min(L_k - 1, max(0, p[k] + d[k]))   float32.
 * F: [2, H, W] integration field (dY, dX). */
CP_HD static inline void dyn_step(const float *F, int64_t H, int64_t W, float *py, float *px) {
    int64_t yi = (int64_t)(int32_t)*py, xi = (int64_t)(int32_t)*px; /* astype(int32): truncation */
    float fy = *py - (float)yi, fx = *px - (float)xi;                /* exact */
    int64_t y0 = yi < 0 ? 0 : (yi > H - 1 ? H - 1 : yi);
    int64_t x0 = xi < 0 ? 0 : (xi > W - 1 ? W - 1 : xi);
    int64_t y1 = y0 + 1 > H - 1 ? H - 1 : y0 + 1;
    int64_t x1 = x0 + 1 > W - 1 ? W - 1 : x0 + 1;
    float dy = dyn_bilinear(F, H, W, y0, x0, y1, x1, fy, fx);
    float dx = dyn_bilinear(F + H * W, H, W, y0, x0, y1, x1, fy, fx);
    float ny = *py + dy, nx = *px + dx;
    ny = ny < 0.0f ? 0.0f : ny; /* np.maximum(0, .) then np.minimum(L-1, .) */
    ny = ny > (float)(H - 1) ? (float)(H - 1) : ny;
    nx = nx < 0.0f ? 0.0f : nx;
    nx = nx > (float)(W - 1) ? (float)(W - 1) : nx;
    *py = ny;
    *px = nx;
}

/* niter Euler steps of one pixel from (py, px). The step is a function of
 * the position alone, so once a position repeats after one or two steps
 * (a fixed point or a 2-cycle, common at cell centres) the rest of the
 * trajectory is known: the loop stops and picks the element of the cycle
 * that step niter would reach. Bitwise the same as running every step. */
CP_HD static inline void dyn_trajectory(const float *F, int64_t H, int64_t W, uint32_t niter, float *py,
                                        float *px) {
    float y2 = -1.0f, x2 = -1.0f, y1 = *py, x1 = *px, y = y1, x = x1; /* p(t-2), p(t-1), p(t) */
    for (uint32_t t = 0; t < niter; t++) {
        dyn_step(F, H, W, &y, &x); /* y, x = p(t+1) */
        if (y == y2 && x == x2) {  /* p(t+1) == p(t-1): period 2 (or 1) from t-1 on */
            uint32_t left = niter - (t + 1); /* steps still to run from p(t+1) */
            if (left & 1u) y = y1, x = x1;    /* odd: lands on p(t) */
            break;
        }
        y2 = y1, x2 = x1, y1 = y, x1 = x;
    }
    *py = y;
    *px = x;
}

/* v3 default niter (models.py eval): rescale = diam_mean / diameter (double),
 * niter = uint32(1 / rescale * 200) when resample, else 200. diameter <= 0
 * means "no diameter": 200. */
uint32_t dyn_niter_default(double diameter, double diam_mean, int resample);

/* fg[H*W] = cellprob > threshold; F [2, H, W] = dP * fg / 5 (float32, the
 * field Cellpose integrates); returns N, the foreground count. idx (may be
 * NULL) [N] receives the flat indices y*W + x of foreground pixels, row-major.
 * dP: [2, H, W] raw network flows (dY, dX), NOT divided by 5. */
int64_t dyn_flow_field(float *F, int64_t *idx, const float *dP, const float *cellprob, int64_t H, int64_t W,
                       float threshold, const CpCtx *ctx);

/* pos [2, N] (row 0: y, row 1: x, float32) = final positions after niter
 * Euler steps starting at the pixels idx [N] (flat y*W + x).
 * F [2, H, W]: the integration field (dY, dX), already masked and divided by 5
 * (dyn_flow_field). */
int dyn_follow_flows(float *pos, const float *F, const int64_t *idx, int64_t N, int64_t H, int64_t W,
                     uint32_t niter, const CpCtx *ctx, CpErr *e);

/* masks [H, W] labels 0 (background), 1..K from the final positions pos [2, N]
 * of the pixels idx [N] (get_masks_torch). max_size_fraction: labels with more
 * than max_size_fraction * H * W pixels are removed (Cellpose default 0.4). */
int dyn_get_masks(uint32_t *masks, const float *pos, const int64_t *idx, int64_t N, int64_t H, int64_t W,
                  double max_size_fraction, const CpCtx *ctx, CpErr *e);

/* compute_masks up to (not including) flow-error removal and hole filling:
 * masks [H, W] from dP [2, H, W] (raw network flows, dY dX) and cellprob
 * [H, W]. niter 0 means 200. Non-finite dP or cellprob is an error. */
int dyn_compute_masks(uint32_t *masks, const float *dP, const float *cellprob, int64_t H, int64_t W,
                      float cellprob_threshold, uint32_t niter, double max_size_fraction, const CpCtx *ctx,
                      CpErr *e);

/* order [n] = torch.argsort(key) on the CPU for int32 keys: libstdc++'s
 * std::sort (introsort, not stable) on (key, index) pairs, which is what
 * torch's CPU sort runs; ties come out in that algorithm's order. */
void dyn_argsort_torch(int64_t *order, const int32_t *key, int64_t n);

#endif
