/* plot.c - see plot.h. Layout: a margin box with the data area inside; ticks
 * at "nice" 1/2/5 x 10^k steps; series colours from a fixed palette. */
#include "plot.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const double palette[6][3] = {{0.12, 0.47, 0.71}, {0.89, 0.10, 0.11}, {0.20, 0.63, 0.17},
                                     {1.00, 0.50, 0.00}, {0.42, 0.24, 0.60}, {0.55, 0.34, 0.29}};

/* A 1/2/5 x 10^k step giving about `target` ticks over [lo, hi]. */
static double nice_step(double lo, double hi, int target) {
    double raw = (hi - lo) / target, p = pow(10.0, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0) * p;
}

typedef struct {
    double x0, x1, y0, y1; /* data range */
    double L, R, T, B;     /* pixel box of the data area */
    int log_y;
} Frame;

static double fx(const Frame *f, double x) { return f->L + (x - f->x0) / (f->x1 - f->x0) * (f->R - f->L); }
static double fy(const Frame *f, double y) {
    double v = f->log_y ? log10(y) : y;
    return f->B - (v - f->y0) / (f->y1 - f->y0) * (f->B - f->T);
}

static void range(const PlotSeries *s, int ns, int log_y, Frame *f) {
    f->x0 = f->y0 = INFINITY, f->x1 = f->y1 = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double y = s[k].y[i];
            if (!isfinite(y) || (log_y && y <= 0)) continue;
            if (log_y) y = log10(y);
            f->x0 = fmin(f->x0, s[k].x[i]), f->x1 = fmax(f->x1, s[k].x[i]);
            f->y0 = fmin(f->y0, y), f->y1 = fmax(f->y1, y);
        }
    if (!isfinite(f->x0)) f->x0 = 0, f->x1 = 1, f->y0 = 0, f->y1 = 1;
    if (f->x1 <= f->x0) f->x1 = f->x0 + 1;
    if (f->y1 <= f->y0) f->y1 = f->y0 + 1;
    double pad = 0.05 * (f->y1 - f->y0);
    f->y0 -= pad, f->y1 += pad;
}

static void axes(cairo_t *cr, const Frame *f, const PlotSpec *sp, int W, int H) {
    char buf[64];
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, f->L, f->T, f->R - f->L, f->B - f->T);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 12);
    double st = nice_step(f->x0, f->x1, 8);
    for (double v = ceil(f->x0 / st) * st; v <= f->x1 + 1e-9 * st; v += st) {
        double px = fx(f, v);
        cairo_move_to(cr, px, f->B), cairo_line_to(cr, px, f->B + 5), cairo_stroke(cr);
        snprintf(buf, sizeof buf, "%g", v);
        cairo_move_to(cr, px - 3.0 * (double)strlen(buf), f->B + 18), cairo_show_text(cr, buf);
    }
    st = nice_step(f->y0, f->y1, 6);
    for (double v = ceil(f->y0 / st) * st; v <= f->y1 + 1e-9 * st; v += st) {
        double py = f->B - (v - f->y0) / (f->y1 - f->y0) * (f->B - f->T);
        cairo_move_to(cr, f->L - 5, py), cairo_line_to(cr, f->L, py), cairo_stroke(cr);
        snprintf(buf, sizeof buf, sp->log_y ? "1e%g" : "%g", v);
        cairo_move_to(cr, f->L - 8 - 6.5 * (double)strlen(buf), py + 4), cairo_show_text(cr, buf);
    }
    cairo_set_font_size(cr, 14);
    if (sp->xlabel) cairo_move_to(cr, (f->L + f->R) / 2 - 3.5 * (double)strlen(sp->xlabel), H - 12),
        cairo_show_text(cr, sp->xlabel);
    if (sp->ylabel) {
        cairo_save(cr);
        cairo_move_to(cr, 18, (f->T + f->B) / 2 + 3.5 * (double)strlen(sp->ylabel));
        cairo_rotate(cr, -M_PI / 2);
        cairo_show_text(cr, sp->ylabel);
        cairo_restore(cr);
    }
    cairo_set_font_size(cr, 16);
    if (sp->title) cairo_move_to(cr, W / 2.0 - 4.0 * (double)strlen(sp->title), 24), cairo_show_text(cr, sp->title);
}

static void series(cairo_t *cr, const Frame *f, const PlotSeries *s, int ns) {
    cairo_set_line_width(cr, 2.0);
    cairo_set_font_size(cr, 12);
    for (int k = 0; k < ns; k++) {
        cairo_set_source_rgb(cr, palette[k % 6][0], palette[k % 6][1], palette[k % 6][2]);
        int pen = 0;
        for (int i = 0; i < s[k].n; i++) {
            double y = s[k].y[i];
            if (!isfinite(y) || (f->log_y && y <= 0)) {
                pen = 0;
                continue;
            }
            if (pen) cairo_line_to(cr, fx(f, s[k].x[i]), fy(f, y));
            else cairo_move_to(cr, fx(f, s[k].x[i]), fy(f, y));
            pen = 1;
        }
        cairo_stroke(cr);
        /* points between gaps (a test loss every few epochs) get markers */
        for (int i = 0; i < s[k].n; i++) {
            double y = s[k].y[i];
            int prev = i > 0 && isfinite(s[k].y[i - 1]), next = i + 1 < s[k].n && isfinite(s[k].y[i + 1]);
            if (!isfinite(y) || (f->log_y && y <= 0) || (prev && next)) continue;
            cairo_new_sub_path(cr);
            cairo_arc(cr, fx(f, s[k].x[i]), fy(f, y), 3.5, 0, 2 * M_PI);
            cairo_fill(cr);
        }
        if (s[k].label) { /* legend, top right inside the frame */
            double ly = f->T + 18 + 18 * k;
            cairo_move_to(cr, f->R - 150, ly - 4), cairo_line_to(cr, f->R - 125, ly - 4), cairo_stroke(cr);
            cairo_set_source_rgb(cr, 0, 0, 0);
            cairo_move_to(cr, f->R - 118, ly), cairo_show_text(cr, s[k].label);
        }
    }
}

int plot_lines_png(const char *path, const PlotSpec *spec, const PlotSeries *s, int ns, CpErr *e) {
    int W = spec->width > 0 ? spec->width : 800, H = spec->height > 0 ? spec->height : 500;
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    Frame f = {.L = 80, .R = W - 20.0, .T = 40, .B = H - 50.0, .log_y = spec->log_y};
    range(s, ns, spec->log_y, &f);
    axes(cr, &f, spec, W, H);
    series(cr, &f, s, ns);
    cairo_destroy(cr);
    CpAtomicFile af;
    int rc = cp_atomic_reserve(&af, path, e);
    if (rc == CP_OK && cairo_surface_write_to_png(surf, af.tmp_path) != CAIRO_STATUS_SUCCESS) {
        cp_atomic_abort(&af);
        rc = cp_fail(e, "%s: could not write the PNG", path);
    } else if (rc == CP_OK) {
        rc = cp_atomic_commit(&af, e);
    }
    cairo_surface_destroy(surf);
    return rc;
}
