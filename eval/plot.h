/* plot.h - plots as PNG (cairo), each with axes, axis labels and a title:
 *   plot_lines_png       line plots with a legend (loss curves, run comparisons);
 *   plot_heatmap_png     a matrix as coloured cells with a colour bar
 *                        (similarity matrices, sweep agreement);
 *   plot_histograms_png  several distributions, one panel each in a grid
 *                        (per-layer weight distributions).
 * Output is written atomically (a failed write leaves no file). Drawing is not
 * part of any value path; the PNG bytes may differ between cairo versions. */
#ifndef CP_PLOT_H
#define CP_PLOT_H

#include <stdint.h>

#include "common.h"

typedef struct {
    const char *label;  /* legend entry */
    const double *x, *y;
    int n;              /* points; NaN y values are gaps */
} PlotSeries;

typedef struct {
    const char *title, *xlabel, *ylabel;
    int width, height;  /* pixels; 0 = 800 x 500 */
    int log_y;          /* logarithmic y axis (positive values only) */
} PlotSpec;

int plot_lines_png(const char *path, const PlotSpec *spec, const PlotSeries *s, int ns, CpErr *e);

typedef struct {
    const char *title, *xlabel, *ylabel; /* axis labels */
    const char *value_label;             /* colour bar label */
    int width, height;                   /* 0 = automatic */
    int annotate;                        /* print each cell's value */
    double vmin, vmax;                   /* colour range; vmin == vmax: data range */
} HeatSpec;
/* v: [nrows, ncols] row-major; NaN cells drawn grey. Labels may be NULL.
 * Row 0 is drawn at the top, column 0 at the left. Colours: a viridis-like
 * ramp (dark purple = vmin, yellow = vmax); values outside [vmin, vmax] are
 * clamped to the ends. */
int plot_heatmap_png(const char *path, const HeatSpec *spec, const double *v, int nrows, int ncols,
                     const char *const *row_labels, const char *const *col_labels, CpErr *e);

typedef struct {
    const char *label; /* panel title (e.g. the tensor name) */
    const double *v;   /* values; non-finite ones are skipped (and counted in the panel) */
    int64_t n;
} HistSeries;

typedef struct {
    const char *title;  /* figure title */
    const char *xlabel; /* under every panel; NULL = "value" */
    int bins;           /* 0 = 40 */
    int cols;           /* panels per row; 0 = 4 */
    int panel_w, panel_h; /* pixels; 0 = 300 x 200 */
    int log_y;          /* counts on a log10(1 + count) axis */
} HistSpec;
/* One panel per series, laid out row by row: bars of `bins` equal bins over
 * that series' own [min, max], y = count, the panel title and n, mean, std. */
int plot_histograms_png(const char *path, const HistSpec *spec, const HistSeries *s, int ns, CpErr *e);

#endif
