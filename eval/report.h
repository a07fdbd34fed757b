/* report.h - the scores `eval` reports for one image and their means, and
 * the tables it writes (Markdown on stdout, CSV, JSON).
 *
 * Per image (gt = ground truth labels, pred = predicted labels, both
 * (H, W) uint32, 0 = background; eval/metrics.h, Cellpose 3.1.1.3):
 *   n_gt, n_pred   max(gt), max(pred): Cellpose's object counts
 *   ap[3]          metrics.average_precision at [0.5, 0.75, 0.9]:
 *                  TP / (TP + FP + FN) after optimal IoU matching (float32
 *                  as Cellpose, widened)
 *   ap10[10]       the same at np.arange(0.5, 1.0, 0.05) (numpy's values:
 *                  0.5 + i * ((0.5 + 0.05) - 0.5));  ap_mean = their mean
 *   tp, fp, fn     at IoU 0.5
 *   precision      TP / (TP + FP) at 0.5 (0 when there is no prediction)
 *   recall         TP / (TP + FN) at 0.5
 *   f1             2 TP / (2 TP + FP + FN) at 0.5
 *   miou           mean IoU of the matched pairs with IoU >= 0.5 (0 if none)
 *   aji            metrics.aggregated_jaccard_index
 * The ground truth must hold at least one object, so no value is NaN.
 *
 * The mean row (EvRun.mean): the mean over images of each per-image value
 * (the figure Cellpose's papers report: average_precision's per-image AP
 * array averaged over images; Cellpose itself returns per-image values
 * only); n_gt, n_pred, tp, fp, fn are totals over images.
 *
 * Determinism: per-image values come from integer counts and serial float64
 * arithmetic; means are sequential sums in image (name) order. */
#ifndef CP_EVAL_REPORT_H
#define CP_EVAL_REPORT_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"

#define EV_NTH10 10

typedef struct {
    char name[256];  /* image NAME (or "mean") */
    int64_t n_gt, n_pred, tp, fp, fn;
    double ap[3], ap10[EV_NTH10], ap_mean;
    double precision, recall, f1, miou, aji;
} EvScore;

typedef struct {
    const char *label; /* method or setting: "pred", "otsu", "cp=0,ft=0.4" */
    EvScore *img;      /* (nimg) per image, in name order */
    int nimg;
    EvScore mean;      /* ev_mean of img */
} EvRun;

/* The ten thresholds of np.arange(0.5, 1.0, 0.05). */
void ev_thresholds10(double th[EV_NTH10]);

/* Score pred against gt. Fails (naming `name`) when gt has no object. */
int ev_score(EvScore *s, const char *name, const uint32_t *gt, const uint32_t *pred, int64_t H, int64_t W,
             CpErr *e);

/* The mean row of n >= 1 scores (see above). */
void ev_mean(EvScore *m, const EvScore *s, int n);

/* Markdown: one run -> a row per image plus the mean row; several runs ->
 * one row per run (the mean figures). */
void ev_print_markdown(FILE *f, const EvRun *runs, int nruns);

/* CSV with a header line: every run's per-image rows and its mean row
 * (image "mean"), column "method" = the run's label. Written atomically. */
int ev_write_csv(const char *path, const EvRun *runs, int nruns, CpErr *e);

/* {"runs": [{"method", "images": [...], "mean": {...}}]} (new reference). */
json_t *ev_json(const EvRun *runs, int nruns);

#endif
