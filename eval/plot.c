/* plot.c - see plot.h. Layout: a margin box with the data area inside; ticks
 * at "nice" 1/2/5 x 10^k steps; series colours from a fixed palette; heatmap
 * colours from an 11-point viridis table, linearly interpolated. */
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
    /* legend: top right inside the frame, as wide as its longest label, on a
     * white box so curves under it do not hide the text */
    double lw = 0;
    int nl = 0;
    for (int k = 0; k < ns; k++)
        if (s[k].label) {
            cairo_text_extents_t te;
            cairo_text_extents(cr, s[k].label, &te);
            lw = te.x_advance > lw ? te.x_advance : lw;
            nl++;
        }
    double lx = f->R - 14 - lw - 33; /* line sample at lx .. lx + 25, text at lx + 32 */
    if (lx < f->L + 4) lx = f->L + 4;
    if (nl) {
        cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
        cairo_rectangle(cr, lx - 6, f->T + 6, f->R - 4 - (lx - 6), 18.0 * nl + 4);
        cairo_fill(cr);
    }
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
        if (s[k].label) {
            double ly = f->T + 18 + 18 * k;
            cairo_move_to(cr, lx, ly - 4), cairo_line_to(cr, lx + 25, ly - 4), cairo_stroke(cr);
            cairo_set_source_rgb(cr, 0, 0, 0);
            cairo_move_to(cr, lx + 32, ly), cairo_show_text(cr, s[k].label);
        }
    }
}

/* Writes the finished surface to `path` atomically and destroys it. */
static int write_png(cairo_surface_t *surf, const char *path, CpErr *e) {
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

static cairo_t *blank(cairo_surface_t *surf) {
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    return cr;
}

int plot_lines_png(const char *path, const PlotSpec *spec, const PlotSeries *s, int ns, CpErr *e) {
    int W = spec->width > 0 ? spec->width : 800, H = spec->height > 0 ? spec->height : 500;
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = blank(surf);
    Frame f = {.L = 80, .R = W - 20.0, .T = 40, .B = H - 50.0, .log_y = spec->log_y};
    range(s, ns, spec->log_y, &f);
    axes(cr, &f, spec, W, H);
    series(cr, &f, s, ns);
    cairo_destroy(cr);
    return write_png(surf, path, e);
}

/* ---- heatmap ---- */

static const double viridis[11][3] = {
    {0.267, 0.005, 0.329}, {0.283, 0.141, 0.458}, {0.254, 0.265, 0.530}, {0.207, 0.372, 0.553},
    {0.164, 0.471, 0.558}, {0.128, 0.567, 0.551}, {0.135, 0.659, 0.518}, {0.267, 0.749, 0.441},
    {0.478, 0.821, 0.318}, {0.741, 0.873, 0.150}, {0.993, 0.906, 0.144}};

/* t in [0, 1] -> rgb */
static void ramp(double t, double rgb[3]) {
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double p = t * 10.0;
    int i = (int)p;
    if (i > 9) i = 9;
    double w = p - i;
    for (int c = 0; c < 3; c++) rgb[c] = (1 - w) * viridis[i][c] + w * viridis[i + 1][c];
}

/* Width in pixels of the widest label at the current font size. */
static double max_text_w(cairo_t *cr, const char *const *lab, int n) {
    double m = 0;
    for (int i = 0; lab && i < n; i++) {
        if (!lab[i]) continue;
        cairo_text_extents_t te;
        cairo_text_extents(cr, lab[i], &te);
        m = fmax(m, te.x_advance);
    }
    return m;
}

static double text_w(cairo_t *cr, const char *t) {
    cairo_text_extents_t te;
    cairo_text_extents(cr, t, &te);
    return te.x_advance;
}

/* Colour bar: a vertical strip [x, x+18] x [top, bot] from vmin (bottom) to vmax. */
static void colour_bar(cairo_t *cr, double x, double top, double bot, double vmin, double vmax, const char *label) {
    double rgb[3];
    for (int py = (int)top; py < (int)bot; py++) {
        ramp((bot - py) / (bot - top), rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_rectangle(cr, x, py, 18, 1);
        cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, x, top, 18, bot - top);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 11);
    char buf[64];
    double st = nice_step(vmin, vmax, 5);
    for (double v = ceil(vmin / st) * st; v <= vmax + 1e-9 * st; v += st) {
        double py = bot - (v - vmin) / (vmax - vmin) * (bot - top);
        snprintf(buf, sizeof buf, "%.4g", fabs(v) < 1e-12 * st ? 0.0 : v);
        cairo_move_to(cr, x + 18, py), cairo_line_to(cr, x + 23, py), cairo_stroke(cr);
        cairo_move_to(cr, x + 26, py + 4), cairo_show_text(cr, buf);
    }
    if (label) {
        cairo_set_font_size(cr, 12);
        cairo_save(cr);
        cairo_move_to(cr, x + 82, (top + bot) / 2 + text_w(cr, label) / 2);
        cairo_rotate(cr, -M_PI / 2);
        cairo_show_text(cr, label);
        cairo_restore(cr);
    }
}

/* The data range of the finite cells (0..1 when there are none). */
static void heat_range(const HeatSpec *sp, const double *v, int64_t n, double *lo, double *hi) {
    *lo = sp->vmin, *hi = sp->vmax;
    if (sp->vmin == sp->vmax) {
        *lo = INFINITY, *hi = -INFINITY;
        for (int64_t i = 0; i < n; i++)
            if (isfinite(v[i])) *lo = fmin(*lo, v[i]), *hi = fmax(*hi, v[i]);
        if (!isfinite(*lo)) *lo = 0, *hi = 1;
    }
    if (*hi <= *lo) { /* one value: centre it */
        double d = *lo != 0 ? fabs(*lo) * 0.5 : 0.5;
        *lo -= d, *hi += d;
    }
}

static void heat_cells(cairo_t *cr, const HeatSpec *sp, const double *v, int nr, int nc, double L, double T, double cw,
                       double ch, double lo, double hi) {
    char buf[64];
    double rgb[3];
    cairo_set_font_size(cr, fmin(12, fmax(7, fmin(cw / 5.5, ch / 2.2))));
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) {
            double x = v[(int64_t)r * nc + c];
            if (isnan(x)) rgb[0] = rgb[1] = rgb[2] = 0.6;
            else ramp((x - lo) / (hi - lo), rgb);
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            cairo_rectangle(cr, L + c * cw, T + r * ch, cw, ch);
            cairo_fill(cr);
            if (!sp->annotate) continue;
            snprintf(buf, sizeof buf, isnan(x) ? "NaN" : "%.3g", x);
            double lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
            cairo_set_source_rgb(cr, lum < 0.5 ? 1 : 0, lum < 0.5 ? 1 : 0, lum < 0.5 ? 1 : 0);
            cairo_move_to(cr, L + c * cw + cw / 2 - text_w(cr, buf) / 2, T + r * ch + ch / 2 + 4);
            cairo_show_text(cr, buf);
        }
}

/* Row labels left of the cells, column labels below (rotated when wider than a cell). */
static void heat_labels(cairo_t *cr, const char *const *rl, const char *const *cl, int nr, int nc, double L, double T,
                        double cw, double ch, int rot) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_font_size(cr, 12);
    for (int r = 0; rl && r < nr; r++)
        if (rl[r]) cairo_move_to(cr, L - 6 - text_w(cr, rl[r]), T + r * ch + ch / 2 + 4), cairo_show_text(cr, rl[r]);
    double B = T + nr * ch;
    for (int c = 0; cl && c < nc; c++) {
        if (!cl[c]) continue;
        double w = text_w(cr, cl[c]);
        if (rot) {
            cairo_save(cr);
            cairo_move_to(cr, L + c * cw + cw / 2 + 4, B + 8 + w);
            cairo_rotate(cr, -M_PI / 2);
            cairo_show_text(cr, cl[c]);
            cairo_restore(cr);
        } else {
            cairo_move_to(cr, L + c * cw + cw / 2 - w / 2, B + 18), cairo_show_text(cr, cl[c]);
        }
    }
}

int plot_heatmap_png(const char *path, const HeatSpec *spec, const double *v, int nrows, int ncols,
                     const char *const *row_labels, const char *const *col_labels, CpErr *e) {
    if (nrows <= 0 || ncols <= 0) return cp_fail(e, "%s: empty heatmap (%d x %d)", path, nrows, ncols);
    /* measure labels on a scratch surface to size the margins */
    cairo_surface_t *s0 = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    cairo_t *m = blank(s0);
    cairo_set_font_size(m, 12);
    double rw = max_text_w(m, row_labels, nrows), cwl = max_text_w(m, col_labels, ncols);
    cairo_destroy(m);
    cairo_surface_destroy(s0);
    double cell = fmin(80, fmax(spec->annotate ? 48 : 16, 560.0 / (nrows > ncols ? nrows : ncols)));
    double L = 30 + rw + (spec->ylabel ? 24 : 0), T = 44, Rm = 120;
    int rot = col_labels && cwl > cell - 4;
    double Bm = (col_labels ? (rot ? cwl + 14 : 26) : 8) + (spec->xlabel ? 26 : 0) + 8;
    int W = spec->width > 0 ? spec->width : (int)(L + ncols * cell + Rm);
    int H = spec->height > 0 ? spec->height : (int)(T + nrows * cell + Bm);
    double cw = fmax(1, (W - L - Rm) / ncols), ch = fmax(1, (H - T - Bm) / nrows);
    double lo, hi;
    heat_range(spec, v, (int64_t)nrows * ncols, &lo, &hi);
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = blank(surf);
    heat_cells(cr, spec, v, nrows, ncols, L, T, cw, ch, lo, hi);
    heat_labels(cr, row_labels, col_labels, nrows, ncols, L, T, cw, ch, rot);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, L, T, ncols * cw, nrows * ch);
    cairo_stroke(cr);
    colour_bar(cr, L + ncols * cw + 16, T, T + nrows * ch, lo, hi, spec->value_label);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_font_size(cr, 14);
    if (spec->xlabel) cairo_move_to(cr, L + ncols * cw / 2 - text_w(cr, spec->xlabel) / 2, H - 10),
        cairo_show_text(cr, spec->xlabel);
    if (spec->ylabel) {
        cairo_save(cr);
        cairo_move_to(cr, 18, T + nrows * ch / 2 + text_w(cr, spec->ylabel) / 2);
        cairo_rotate(cr, -M_PI / 2);
        cairo_show_text(cr, spec->ylabel);
        cairo_restore(cr);
    }
    cairo_set_font_size(cr, 16);
    if (spec->title) cairo_move_to(cr, fmax(4, W / 2.0 - text_w(cr, spec->title) / 2), 26), cairo_show_text(cr, spec->title);
    cairo_destroy(cr);
    return write_png(surf, path, e);
}

/* ---- histograms ---- */

/* One panel at (px, py) of size pw x ph. Sums in double, in index order. */
static void hist_panel(cairo_t *cr, const HistSpec *sp, const HistSeries *s, double px, double py, double pw, double ph,
                       int nb, int64_t *cnt) {
    double lo = INFINITY, hi = -INFINITY, sum = 0, sq = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < s->n; i++)
        if (isfinite(s->v[i])) lo = fmin(lo, s->v[i]), hi = fmax(hi, s->v[i]), sum += s->v[i], n++;
    double mean = n ? sum / n : 0;
    for (int64_t i = 0; i < s->n; i++)
        if (isfinite(s->v[i])) sq += (s->v[i] - mean) * (s->v[i] - mean);
    if (!n) lo = 0, hi = 1;
    if (hi <= lo) lo -= 0.5 * (fabs(lo) > 0 ? fabs(lo) : 1), hi = 2 * hi - lo;
    memset(cnt, 0, sizeof(int64_t) * (size_t)nb);
    int64_t cmax = 1;
    for (int64_t i = 0; i < s->n; i++) {
        if (!isfinite(s->v[i])) continue;
        int b = (int)((s->v[i] - lo) / (hi - lo) * nb);
        b = b < 0 ? 0 : b >= nb ? nb - 1 : b;
        if (++cnt[b] > cmax) cmax = cnt[b];
    }
    double L = px + 46, R = px + pw - 10, T = py + 34, B = py + ph - 34;
    double ymax = sp->log_y ? log10(1.0 + cmax) : (double)cmax;
    cairo_set_source_rgb(cr, palette[0][0], palette[0][1], palette[0][2]);
    for (int b = 0; b < nb; b++) {
        double y = sp->log_y ? log10(1.0 + cnt[b]) : (double)cnt[b];
        double h = y / ymax * (B - T);
        cairo_rectangle(cr, L + b * (R - L) / nb, B - h, (R - L) / nb, h);
    }
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, L, T, R - L, B - T);
    cairo_stroke(cr);
    char buf[160];
    cairo_set_font_size(cr, 10);
    Frame f = {.x0 = lo, .x1 = hi, .L = L, .R = R};
    double st = nice_step(lo, hi, 4);
    for (double v = ceil(lo / st) * st; v <= hi + 1e-9 * st; v += st) {
        double x = fx(&f, v);
        snprintf(buf, sizeof buf, "%.3g", fabs(v) < 1e-12 * st ? 0.0 : v);
        cairo_move_to(cr, x, B), cairo_line_to(cr, x, B + 4), cairo_stroke(cr);
        cairo_move_to(cr, x - text_w(cr, buf) / 2, B + 14), cairo_show_text(cr, buf);
    }
    snprintf(buf, sizeof buf, sp->log_y ? "%lld (log)" : "%lld", (long long)cmax);
    cairo_move_to(cr, L - 4 - text_w(cr, buf), T + 8), cairo_show_text(cr, buf);
    cairo_move_to(cr, L - 10, B), cairo_show_text(cr, "0");
    const char *xl = sp->xlabel ? sp->xlabel : "value";
    cairo_move_to(cr, (L + R) / 2 - text_w(cr, xl) / 2, B + 27), cairo_show_text(cr, xl);
    snprintf(buf, sizeof buf, "n=%lld mean=%.3g std=%.3g", (long long)n, mean, n ? sqrt(sq / n) : 0.0);
    if (n < s->n) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " (%lld non-finite)", (long long)(s->n - n));
    cairo_move_to(cr, L, T - 4), cairo_show_text(cr, buf);
    if (s->label) { /* long names shrink to the panel width */
        cairo_set_font_size(cr, 12);
        double tw = text_w(cr, s->label), room = px + pw - 6 - L;
        if (tw > room) cairo_set_font_size(cr, fmax(6, 12 * room / tw));
        cairo_move_to(cr, L, T - 17), cairo_show_text(cr, s->label);
    }
}

int plot_histograms_png(const char *path, const HistSpec *spec, const HistSeries *s, int ns, CpErr *e) {
    if (ns <= 0) return cp_fail(e, "%s: no distributions to plot", path);
    int nb = spec->bins > 0 ? spec->bins : 40, cols = spec->cols > 0 ? spec->cols : 4;
    if (cols > ns) cols = ns;
    int rows = (ns + cols - 1) / cols;
    double pw = spec->panel_w > 0 ? spec->panel_w : 300, ph = spec->panel_h > 0 ? spec->panel_h : 200;
    double T = 40;
    int W = (int)(cols * pw + 20), H = (int)(T + rows * ph + 10);
    if ((double)W * H > 400e6) return cp_fail(e, "%s: %d panels make a %d x %d image; too large", path, ns, W, H);
    int64_t *cnt = cp_malloc(sizeof(int64_t) * (size_t)nb);
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = blank(surf);
    for (int k = 0; k < ns; k++) hist_panel(cr, spec, &s[k], 10 + (k % cols) * pw, T + (k / cols) * ph, pw, ph, nb, cnt);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_font_size(cr, 16);
    if (spec->title) cairo_move_to(cr, fmax(4, W / 2.0 - text_w(cr, spec->title) / 2), 26), cairo_show_text(cr, spec->title);
    cairo_destroy(cr);
    cp_free(cnt);
    return write_png(surf, path, e);
}
