/* plot.h - line plots as PNG (cairo): axes with ticks, axis labels, a title
 * and a legend. Used for loss curves (train) and run comparisons (compare).
 * Output is written atomically. Drawing is not part of any value path. */
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

#endif
