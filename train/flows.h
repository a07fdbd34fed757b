/* flows.h - label image -> Cellpose training targets (cellprob, dY, dX), the
 * label renumbering that precedes it, and the image diameter.
 *
 * One canonical definition (DESIGN.md "One canonical Cellpose"): Cellpose
 * v3.1.1.3's per-mask CPU path, `dynamics.masks_to_flows_cpu` (CELLPOSE.md
 * 3.2, 3.4), reproduced to the bit:
 *   per mask i (bounding box bh x bw, padded by one zero pixel: ly = bh + 2,
 *   lx = bw + 2; pixel coordinates (y, x) are local to the padded box):
 *   - centre: the mask pixel closest to the float64 mean (ymean, xmean) of
 *     the mask's pixel coordinates, (x - xmean)^2 + (y - ymean)^2, first in
 *     row-major order on ties;
 *   - n_iter = 2 * (ly + lx);
 *   - T = zeros (ly, lx) float64; n_iter times: T[centre] += 1, then
 *     synchronously for every mask pixel
 *       T[p] = (1/9.) * (((((((( T[p] + T[N]) + T[S]) + T[W]) + T[E])
 *                              + T[NW]) + T[NE]) + T[SW]) + T[SE])
 *     (non-mask pixels of the box, other cells included, stay 0);
 *   - dy = T[S] - T[N], dx = T[E] - T[W] on the per-mask T;
 *   - (dy, dx) /= 1e-60 + sqrt(dy*dy + dx*dx), in float64, then rounded to
 *     float32.
 * Cellpose's GPU/torch path (one global field and iteration count) is not
 * reproduced; see CELLPOSE.md 3.3.
 *
 * Layouts: labels (H, W) uint32 row-major, 0 = background; flows
 * (3, H, W) float32 planes: [0] cellprob = (label > 0) as 0/1, [1] dY,
 * [2] dX (unit vectors inside masks, 0 outside) - labels_to_flows'
 * channels [1:].
 *
 * Determinism: every value is a function of one mask's pixels only; masks are
 * processed in parallel (OpenMP, any schedule) but each mask writes only its
 * own pixels, and all sums are either exact integer sums or the fixed 9-term
 * order above, so results are byte-identical for any thread count. The
 * per-pixel arithmetic lives in CP_HD inline functions below for a future
 * CUDA path. */
#ifndef CP_TRAIN_FLOWS_H
#define CP_TRAIN_FLOWS_H

#include <math.h>
#include <stdint.h>

#include "common.h"
#include "ctx.h"
#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Renumber labels in place to 1..n in order of first appearance in a
 * row-major scan, 0 stays 0 (fastremap.renumber(labels, in_place=True),
 * preserve_zero=True). labels: (h, w). Returns n, the number of distinct
 * nonzero labels. */
int flows_renumber(uint32_t *labels, int64_t h, int64_t w);

/* Training targets of a renumbered label image (every value in 0..n; a label
 * in 1..n that does not occur is skipped, as find_objects' None).
 *   flows:  (3, h, w) float32 out: cellprob, dY, dX (all elements written)
 *   labels: (h, w)    in
 * Fails (naming the first offending pixel) if a label exceeds n. Scratch:
 * ctx->threads buffers of 17 bytes per pixel of the largest padded bounding
 * box, allocated once per call. Cost: sum over masks of
 * 2 * (bh + bw + 4) * (bh + 2) * (bw + 2) stencil updates. */
int flows_from_labels(float *flows, const uint32_t *labels, int64_t h, int64_t w, int n, const CpCtx *ctx,
                      CpErr *e);

/* Cellpose utils.diameters(labels)[0] for a label image (h, w) with values
 * below 2^31 (Cellpose casts to int32 first; all renumbered images): the areas
 * of all distinct values except the smallest (assumed background, as
 * Cellpose drops counts[0] even when it is a cell), md = numpy median of
 * sqrt(areas) (mean of the two middle values for an even count),
 * md / (sqrt(pi) / 2); 0 without masks. sqrt is IEEE (correctly rounded),
 * where numpy's int ** 0.5 may differ by 1 ulp (see tests/ref/flows.py). */
double flows_diameter(const uint32_t *labels, int64_t h, int64_t w);
/* The same, also giving the number of areas it took the median of (the
 * distinct values minus the smallest; 0 for an empty image). */
double flows_diameter_count(const uint32_t *labels, int64_t h, int64_t w, int64_t *nmasks);

#ifdef __cplusplus
}
#endif

/* ---- per-pixel math shared with a future CUDA path ---- */

/* One Jacobi update of a mask pixel at offset p of a padded box with row
 * stride lx: Cellpose's 9-term sum, left to right, times the double 1/9.
 * (CPython folds `1 / 9.` to 0.1111111111111111 before the multiply). */
CP_HD static inline double flows_diffuse_px(const double *T, int64_t p, int64_t lx) {
    double s = T[p] + T[p - lx];
    s = s + T[p + lx];
    s = s + T[p - 1];
    s = s + T[p + 1];
    s = s + T[p - lx - 1];
    s = s + T[p - lx + 1];
    s = s + T[p + lx - 1];
    s = s + T[p + lx + 1];
    return (1.0 / 9.0) * s;
}

/* Unit flow from the central differences dy, dx (float64), rounded to
 * float32: numpy's mu /= (1e-60 + (mu**2).sum(axis=0)**0.5). */
CP_HD static inline void flows_unit(double dy, double dx, float *oy, float *ox) {
    double d = 1e-60 + sqrt(dy * dy + dx * dx);
    *oy = (float)(dy / d);
    *ox = (float)(dx / d);
}

#endif
