/* compare.h - how far two models or two mask images are apart (the library
 * part of the `compare` program, eval/cmd_compare.c).
 *
 * Models (safetensors files: model.bin, checkpoint.bin, any state_dict):
 *   tensors are paired by name; a pair is compared when dtype and shape are
 *   equal, else it is reported as a mismatch. For one pair a, b of n elements:
 *     identical   the tensors' bytes are equal
 *     ndiff       elements whose bit patterns differ (+0 vs -0 differs)
 *     nonfinite   pairs where a or b is NaN or +-Inf; they are left out of
 *                 every sum and of max_abs (their ulp distance still counts)
 *     l2_diff     sqrt(sum (a-b)^2), l2_a = ||a||, l2_b = ||b||, dot = <a, b>
 *     rel_l2      l2_diff / l2_a (0 when both are 0, +inf when only l2_a is)
 *     cosine      dot / (l2_a * l2_b); 1 when both norms are 0, 0 when one is
 *     max_abs     max |a - b|
 *     max_ulp     max distance in units in the last place: each float is
 *                 mapped to an ordered integer (sign-magnitude -> two's
 *                 complement, so +0 and -0 are both 0 and neighbours differ by
 *                 1) and the distance is |ord(a) - ord(b)|. A NaN against a
 *                 non-NaN is 2^(bits) (beyond every finite distance), two NaNs
 *                 are 0. For F32/F64/F16/BF16 with their own widths; for
 *                 integer dtypes it is max |a - b|; for BOOL the count rule.
 *   Values are widened to double (exact for every supported dtype except
 *   64-bit integers beyond 2^53). Sums are double, serial, in element order;
 *   the overall figures add the per-tensor sums in header order of file a.
 *   Overall: numel, ndiff and identical count every tensor; the sums, max_abs,
 *   max_ulp and nonfinite only the floating-point tensors (integer tensors
 *   such as num_batches_tracked or optimizer.step are counters, not weights).
 *   Nothing depends on threads.
 *
 * Masks (label images, 0 = background, A is the reference = "ground truth"):
 *   matching, AP at each threshold, TP/FP/FN and mean matched IoU are eval/
 *   metrics.h's (= cellpose.metrics.average_precision(A, B), mask_ious).
 *   unmatched_a = FN at IoU 0.5, unmatched_b = FP at IoU 0.5.
 *   owner: a B object is "mostly inside" an A object a when more than half of
 *   its pixels carry label a (so it has at most one such a), and vice versa.
 *   split   A objects with >= 2 B objects mostly inside them;
 *   merged  B objects with >= 2 A objects mostly inside them.
 *   px_fg   pixels foreground in exactly one image (A > 0) != (B > 0);
 *   px_assign pixels foreground in both where B's label is not the label
 *           matched to A's label at IoU >= 0.5 (every foreground pixel of an
 *           unmatched A object counts);
 *   identical: the two label images are equal pixel for pixel.
 *
 * Diff picture (cmp_masks_diff_rgb), one RGB pixel per image pixel, in this
 * order of precedence (the legend is CMP_LEGEND):
 *   both outlines white (255,255,255); A outline cyan (0,200,255);
 *   B outline red (255,60,60); A-only foreground green (0,170,0);
 *   B-only foreground magenta (200,0,200); both foreground but not matched
 *   orange (230,160,0); both foreground and matched grey (110,110,110);
 *   both background black. An outline pixel is a foreground pixel with a
 *   4-neighbour (inside the image) of another label. */
#ifndef CP_EVAL_COMPARE_H
#define CP_EVAL_COMPARE_H

#include <stdint.h>

#include "common.h"
#include "safetensors.h"

#define CMP_LEGEND                                                                                              \
    "white = both outlines, cyan = A outline, red = B outline, green = A only, magenta = B only, "               \
    "orange = both foreground but not matched, grey = both foreground and matched, black = both background"

typedef struct {
    int64_t numel, ndiff, nonfinite;
    double ss_diff, ss_a, ss_b, dot; /* raw sums: sum (a-b)^2, a^2, b^2, a*b */
    double l2_diff, l2_a, l2_b, rel_l2, cosine, max_abs; /* derived by cmp_finish */
    uint64_t max_ulp;
    int identical;
} CmpStats;

/* Compares two tensors of equal dtype and numel (raw little-endian bytes). */
void cmp_tensor(CmpStats *s, StDtype dt, const void *a, const void *b, int64_t n);
/* Overall figures: cmp_begin, cmp_accumulate each tensor's, cmp_finish. */
void cmp_begin(CmpStats *s);
void cmp_accumulate(CmpStats *all, const CmpStats *t, StDtype dt);
void cmp_finish(CmpStats *s);

/* Per-model statistics over the floating-point tensors (F32/F64/F16/BF16)
 * that are not optimizer state (names "optimizer.*"). */
typedef struct {
    int64_t nparams;               /* elements */
    double l2, mean, std, min, max; /* std: population (divide by n) */
    int64_t nonfinite;             /* left out of the figures */
    char sha256[65];               /* SHA-256 of all non-optimizer tensors' bytes in header order:
                                      for a cellpose.c CPnet file this is train's params_sha256 */
} ModelStats;
void cmp_model_stats(ModelStats *ms, const StFile *f);

/* A tensor's element i widened to double. */
double cmp_value(StDtype dt, const void *data, int64_t i);
int cmp_is_float(StDtype dt);

/* ---- masks ---- */

typedef struct {
    int64_t h, w, na, nb;        /* size; na, nb = max label of A, B */
    double ap[3];                /* at CMP_THRESHOLDS */
    int64_t tp[3], fp[3], fn[3];
    double mean_iou;             /* over the matches with IoU >= 0.5 */
    int64_t unmatched_a, unmatched_b, split, merged;
    int64_t px_fg, px_assign;    /* see above; px_fg + px_assign = disagreeing pixels */
    int identical;
} MaskCmp;
extern const double CMP_THRESHOLDS[3]; /* 0.5, 0.75, 0.9 */

/* A, B: [h, w] label images. match_b: if not NULL, (na + 1) out, cp_malloc'ed:
 * the B label matched to each A label at IoU >= 0.5, or 0. */
int cmp_masks(MaskCmp *m, const uint32_t *a, const uint32_t *b, int64_t h, int64_t w, int64_t **match_b, CpErr *e);
/* rgb: [h, w, 3] out, the diff picture above; match_b from cmp_masks. */
void cmp_masks_diff_rgb(uint8_t *rgb, const uint32_t *a, const uint32_t *b, int64_t h, int64_t w,
                        const int64_t *match_b);

/* ---- inputs ---- */

typedef enum { CMP_MODEL, CMP_MASK, CMP_RUN, CMP_MASK_DIR, CMP_UNKNOWN } CmpKind;
/* From the content: a folder with manifest.json is a run, any other folder a
 * mask folder; a file starting with TIFF or PNG magic is a label image; any
 * other file is taken as a model (and checked when it is read). Missing or
 * unreadable paths fail with one line. */
int cmp_kind(CmpKind *k, const char *path, CpErr *e);
const char *cmp_kind_name(CmpKind k);

#endif
