/* sweep.h - `eval --sweep`: a grid of `infer` settings, each run as its own
 * process (fork + exec of the `infer` program next to `eval`), and the
 * agreement between the settings' masks.
 *
 * Grid: up to SW_MAXAXES axes, each an infer flag with a comma-separated
 * list of numbers ("--cellprob-threshold -1,0,1"); the points are the
 * Cartesian product, the LAST axis varying fastest; point p's value on axis
 * a is vals[(p / stride_a) % n_a]. The values are passed to infer as typed,
 * so infer's own parser and range checks apply.
 *
 * Agreement (sw_agreement): for one image, A[i][j] = Cellpose's AP@0.5 of
 * setting j's masks scored against setting i's masks as the reference
 * (TP / (TP + FP + FN)); 1 when both are empty (they agree), 0 when one is.
 * eval reports the mean over images.
 *
 * Determinism: each infer run is deterministic (its masks do not depend on
 * threads or batch size); runs are sequential; the agreement is
 * eval/metrics' serial arithmetic. */
#ifndef CP_EVAL_SWEEP_H
#define CP_EVAL_SWEEP_H

#include <stdint.h>

#include "common.h"

#define SW_MAXAXES 8
#define SW_MAXVALS 32

typedef struct {
    const char *flag;              /* infer's option without "--": "cellprob-threshold" */
    const char *key;               /* short name for labels: "cp" */
    char vals[SW_MAXVALS][32];     /* values as typed */
    int n;
} SwAxis;

typedef struct {
    SwAxis axes[SW_MAXAXES];
    int naxes;
} SwGrid;

/* Add an axis from "v1,v2,...": every value must be a finite number
 * (integer when `integer`); at most SW_MAXVALS values, no duplicates. */
int sw_grid_add(SwGrid *g, const char *flag, const char *key, const char *list, int integer, CpErr *e);
/* Number of points (1 for a grid without axes). */
int64_t sw_npoints(const SwGrid *g);
/* The value of point p on axis a. */
const char *sw_value(const SwGrid *g, int64_t p, int a);
/* "cp=-1 ft=0.4" (the axes' keys and values). */
void sw_label(const SwGrid *g, int64_t p, char *buf, size_t n);

/* The infer program: dirname(/proc/self/exe)/infer, else $CP_BIN/infer. */
int sw_find_infer(char *path, size_t n, CpErr *e);
/* Does `infer --help` list option --flag? (1 yes, 0 no, -1 could not run) */
int sw_infer_has_flag(const char *infer, const char *flag);

/* Run argv (argv[0] = program path, NULL-terminated), wait, and return its
 * stdout (cp_malloc'ed, NUL-terminated) in *out. A non-zero exit fails with
 * the last line the program wrote on stderr. */
int sw_run_capture(char **out, char *const *argv, CpErr *e);

/* One image's agreement matrix: A (np, np) out; masks[i]: (H, W) labels of
 * setting i. */
int sw_agreement(double *A, const uint32_t *const *masks, int np, int64_t H, int64_t W, CpErr *e);

#endif
