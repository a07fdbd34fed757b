/* cleanup.h - the mask clean-up that follows mask assembly in Cellpose
 * inference (CELLPOSE.md 5.11, 5.12): flow-error removal of masks whose
 * flows disagree with the network, then hole filling and small-mask removal.
 *
 * One canonical Cellpose (DESIGN.md): Cellpose v3.1.1.3's CPU path.
 *  - cln_flow_error_remove = dynamics.remove_bad_flow_masks ->
 *    metrics.flow_error with the masks' flows recomputed by
 *    flows_from_labels (train/flows.h, v3's numba masks_to_flows_cpu).
 *  - cln_fill_holes_remove_small = utils.fill_holes_and_remove_small_masks
 *    (the fill_voids version of v3.1.1.3), including its quirks (below).
 *
 * Layouts: masks (H, W) uint32 row-major, 0 = background, modified in place;
 * dP_net (2, H, W) float32 planes [0] dY, [1] dX: the RAW network flow output
 * at the masks' resolution (about 5x unit vectors, not masked by cellprob),
 * exactly the `dP` that compute_masks passes; the division by 5 happens here.
 *
 * Determinism: the flows are those of flows_from_labels (byte-identical for
 * any thread count); the per-label error sums run over pixels in row-major
 * order in float64 (scipy.ndimage.mean's bincount order), serially; hole
 * filling and renumbering are integer-only and serial. Results are therefore
 * independent of ctx->threads. */
#ifndef CP_INFER_CLEANUP_H
#define CP_INFER_CLEANUP_H

#include <stdint.h>

#include "common.h"
#include "ctx.h"
#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-label flow error of Cellpose's metrics.flow_error:
 *   err[l-1] = mean_{masks == l} (mu_y - dPy/5)^2 + mean_{masks == l} (mu_x - dPx/5)^2
 * for l = 1..max(masks); NaN for a label with no pixels (0/0, as scipy).
 * mu = flows_from_labels(masks) (unit vectors, float32; Cellpose keeps them
 * in float64 - a difference below 1e-7 relative, see tests/test_cleanup.c).
 *   err:    (max(masks)) float64 out, cp_malloc'ed (NULL when max is 0)
 *   nlab:   out, max(masks)
 *   masks:  (H, W) in;  dP_net: (2, H, W) in */
int cln_flow_errors(double **err, int64_t *nlab, const uint32_t *masks, const float *dP_net, int64_t H, int64_t W,
                    const CpCtx *ctx, CpErr *e);

/* remove_bad_flow_masks(masks, dP_net, threshold): labels with
 * err > flow_threshold become 0 (no renumbering). flow_threshold <= 0 or
 * an empty mask image: nothing happens (compute_masks' guard).
 *   masks (H, W) in/out; dP_net (2, H, W) raw network flows (see above).
 * Returns CP_OK or fails on absurd sizes / labels above 2^31 - 1. */
int cln_flow_error_remove(uint32_t *masks, const float *dP_net, int64_t H, int64_t W, float flow_threshold,
                          const CpCtx *ctx, CpErr *e);

/* fill_holes_and_remove_small_masks(masks, min_size), v3.1.1.3:
 *  1. if min_size > 0: size filter, then renumber in row-major first-
 *     appearance order (fastremap.renumber);
 *  2. for each label i = 1..max in increasing order that has a bounding box
 *     (taken once, before filling): in the box, the pixels equal to i now,
 *     plus every background component (pixels != i) not 4-connected to the
 *     box border, get the value j+1 (j counts labels with a box);
 *  3. if min_size > 0: size filter and renumber again.
 * The size filter is Cellpose's index-based one: counts of the sorted
 * distinct values with the first entry dropped (assumed background); the
 * k-th remaining count (k from 0) below min_size removes the VALUE k+1.
 * (Equal to "remove labels smaller than min_size" whenever 0 is present and
 * labels are 1..n, which is the case after step 1.)
 *   masks (H, W) in/out. */
int cln_fill_holes_remove_small(uint32_t *masks, int64_t H, int64_t W, int min_size, CpErr *e);

#ifdef __cplusplus
}
#endif

/* ---- per-pixel math shared with a future CUDA path ---- */

/* One pixel's squared flow error term, as numpy computes
 * (dP_masks[c] - dP_net[c] / 5.)**2 with dP_net float32 (the division stays
 * float32 under numpy's value-based casting) and the mask flow widened to
 * float64. */
CP_HD static inline double cln_flow_sq_err(float mu, float dp_net) {
    float q = dp_net / 5.0f;
    double d = (double)mu - (double)q;
    return d * d;
}

#endif
