/* metrics.h - Cellpose's segmentation metrics (cellpose/metrics.py of
 * v3.1.1.3, CELLPOSE.md 6): label overlap, IoU, optimal IoU matching,
 * "average precision" TP / (TP + FP + FN), mask_ious and the aggregated
 * Jaccard index as Cellpose defines them.
 *
 * Layouts: gt, pred (H, W) uint32 row-major label images, 0 = background;
 * labels need not be consecutive: like v3, the number of masks is the
 * maximum label (absent labels in 1..max count as unmatched masks).
 * The overlap matrix is dense, (max(gt)+1) x (max(pred)+1) int64; images
 * whose matrix would exceed 2^28 entries are refused.
 *
 * Matching: the cost -(iou >= th) - iou / (2 * n_min) (n_min = min(#gt,
 * #pred)) minimised by met_lsap, a transcription of the algorithm of
 * scipy.optimize.linear_sum_assignment (shortest augmenting paths, Crouse
 * 2016, same visiting order and tie-breaks), so the assignment - not only
 * its cost - equals scipy's. TP = assigned pairs with iou >= th.
 *
 * Determinism: integer counting, then float64 arithmetic in a fixed serial
 * order; no threads. AP is computed in float32 exactly as Cellpose stores it
 * (its ap/tp/fp/fn arrays are float32), then widened to double. */
#ifndef CP_EVAL_METRICS_H
#define CP_EVAL_METRICS_H

#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rectangular linear sum assignment (scipy semantics, minimisation).
 *   col_of_row: (nr) out, the column assigned to each row or -1 (when
 *               nr > nc, nr - nc rows stay unassigned)
 *   cost:       (nr, nc) row-major float64 in; NaN or -inf is refused
 * Returns CP_OK, or fails for an invalid or infeasible matrix. */
int met_lsap(int64_t *col_of_row, const double *cost, int64_t nr, int64_t nc, CpErr *e);

/* Cellpose metrics.average_precision(gt, pred, thresholds) for one image:
 *   ap, tp, fp, fn: (nthr) out; ap = tp / (tp + fp + fn) in float32
 *                   (NaN when both images are empty, as Cellpose)
 *   gt, pred:       (H, W) in;  thresholds: (nthr) IoU thresholds */
int met_average_precision(double *ap, int64_t *tp, int64_t *fp, int64_t *fn, const uint32_t *gt,
                          const uint32_t *pred, int64_t H, int64_t W, const double *thresholds, int nthr,
                          CpErr *e);

/* Cellpose metrics.mask_ious(gt, pred): the matching at threshold 0.5;
 *   iout:  (max(gt)) out float64, cp_malloc'ed: IoU of each true mask with
 *          its assigned prediction, 0 if unassigned
 *   preds: (max(gt)) out int64, cp_malloc'ed: the assigned predicted label,
 *          0 if unassigned (note: an assignment may have IoU 0)
 *   ntrue: out, max(gt). Both pointers are NULL when max(gt) is 0. */
int met_mask_ious(double **iout, int64_t **preds, int64_t *ntrue, const uint32_t *gt, const uint32_t *pred,
                  int64_t H, int64_t W, CpErr *e);

/* Cellpose metrics.aggregated_jaccard_index for one image: the pixel
 * overlaps of every (true, assigned prediction) pair of met_mask_ious,
 * summed, over the number of pixels foreground in gt or pred (NaN when
 * both are empty). Not the standard AJI (CELLPOSE.md 6). */
int met_aggregated_jaccard(double *aji, const uint32_t *gt, const uint32_t *pred, int64_t H, int64_t W, CpErr *e);

/* Mean matched IoU (ours, for reports): the mean of met_mask_ious' iout
 * over the true masks whose assigned IoU is >= 0.5 (the TP of AP@0.5);
 * 0 when there are none. nmatched: out, that number. */
int met_mean_matched_iou(double *miou, int64_t *nmatched, const uint32_t *gt, const uint32_t *pred, int64_t H,
                         int64_t W, CpErr *e);

#ifdef __cplusplus
}
#endif

#endif
