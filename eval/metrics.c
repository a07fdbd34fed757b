/* metrics.c - Cellpose v3.1.1.3 metrics (cellpose/metrics.py): overlap,
 * IoU, optimal matching, AP, mask_ious, aggregated Jaccard. Contract,
 * layouts and determinism notes: metrics.h. H W spatial; NT = max(gt),
 * NP = max(pred). */
#include "metrics.h"

#include <math.h>
#include <string.h>

/* ---- linear sum assignment (scipy rectangular_lsap, Crouse 2016) ---- */

typedef struct {
    int64_t nr, nc;        /* nr <= nc */
    const double *cost;    /* (nr, nc) */
    double *u, *v, *spc;   /* (nr), (nc), shortest path costs (nc) */
    int64_t *path, *col4row, *row4col, *remaining; /* (nc), (nr), (nc), (nc) */
    uint8_t *SR, *SC;      /* (nr), (nc) */
} Lsap;

/* One shortest augmenting path from row i; returns the sink column or -1
 * (infeasible) and the path length in *min_val. Same visiting order as
 * scipy: the remaining columns are scanned from the back of a list that
 * is compacted by moving the last element into the chosen slot; ties go to
 * an unassigned column. */
static int64_t augmenting_path(Lsap *s, int64_t i, double *min_val) {
    int64_t nc = s->nc, num_rem = nc, sink = -1;
    double mv = 0;
    for (int64_t it = 0; it < nc; it++) s->remaining[it] = nc - it - 1;
    memset(s->SR, 0, (size_t)s->nr);
    memset(s->SC, 0, (size_t)nc);
    for (int64_t j = 0; j < nc; j++) s->spc[j] = INFINITY;
    while (sink == -1) {
        int64_t index = -1;
        double lowest = INFINITY;
        s->SR[i] = 1;
        for (int64_t it = 0; it < num_rem; it++) {
            int64_t j = s->remaining[it];
            double r = mv + s->cost[i * nc + j] - s->u[i] - s->v[j];
            if (r < s->spc[j]) {
                s->path[j] = i;
                s->spc[j] = r;
            }
            if (s->spc[j] < lowest || (s->spc[j] == lowest && s->row4col[j] == -1)) {
                lowest = s->spc[j];
                index = it;
            }
        }
        mv = lowest;
        if (mv == INFINITY) return -1;
        int64_t j = s->remaining[index];
        if (s->row4col[j] == -1)
            sink = j;
        else
            i = s->row4col[j];
        s->SC[j] = 1;
        s->remaining[index] = s->remaining[--num_rem];
    }
    *min_val = mv;
    return sink;
}

/* The solver on a matrix with nr <= nc; col4row filled (all rows assigned). */
static int lsap_solve(Lsap *s, CpErr *e) {
    int64_t nr = s->nr, nc = s->nc;
    for (int64_t r = 0; r < nr; r++) s->col4row[r] = -1, s->u[r] = 0;
    for (int64_t c = 0; c < nc; c++) s->row4col[c] = -1, s->path[c] = -1, s->v[c] = 0;
    for (int64_t cur = 0; cur < nr; cur++) {
        double mv = 0;
        int64_t sink = augmenting_path(s, cur, &mv);
        if (sink < 0) return cp_fail(e, "metrics: assignment cost matrix is infeasible");
        s->u[cur] += mv; /* update the dual variables */
        for (int64_t i = 0; i < nr; i++)
            if (s->SR[i] && i != cur) s->u[i] += mv - s->spc[s->col4row[i]];
        for (int64_t j = 0; j < nc; j++)
            if (s->SC[j]) s->v[j] -= mv - s->spc[j];
        for (int64_t j = sink;;) { /* augment along the path */
            int64_t i = s->path[j];
            s->row4col[j] = i;
            int64_t t = s->col4row[i];
            s->col4row[i] = j;
            j = t;
            if (i == cur) break;
        }
    }
    return CP_OK;
}

int met_lsap(int64_t *col_of_row, const double *cost, int64_t nr, int64_t nc, CpErr *e) {
    if (nr < 0 || nc < 0) return cp_fail(e, "metrics: negative assignment matrix size");
    for (int64_t i = 0; i < nr; i++) col_of_row[i] = -1;
    if (nr == 0 || nc == 0) return CP_OK;
    for (int64_t k = 0; k < nr * nc; k++)
        if (isnan(cost[k]) || cost[k] == -INFINITY) return cp_fail(e, "metrics: cost matrix has NaN or -inf");
    int transpose = nc < nr; /* scipy solves the transposed problem: rows <= columns */
    Lsap s = {.nr = transpose ? nc : nr, .nc = transpose ? nr : nc};
    double *t = NULL;
    if (transpose) {
        t = (double *)cp_malloc(sizeof(double) * (size_t)(nr * nc));
        for (int64_t i = 0; i < nr; i++)
            for (int64_t j = 0; j < nc; j++) t[j * nr + i] = cost[i * nc + j];
    }
    s.cost = transpose ? t : cost;
    s.u = (double *)cp_malloc(sizeof(double) * (size_t)s.nr);
    s.v = (double *)cp_malloc(sizeof(double) * (size_t)s.nc);
    s.spc = (double *)cp_malloc(sizeof(double) * (size_t)s.nc);
    s.path = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)s.nc);
    s.col4row = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)s.nr);
    s.row4col = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)s.nc);
    s.remaining = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)s.nc);
    s.SR = (uint8_t *)cp_malloc((size_t)s.nr);
    s.SC = (uint8_t *)cp_malloc((size_t)s.nc);
    int rc = lsap_solve(&s, e);
    if (rc == CP_OK)
        for (int64_t r = 0; r < s.nr; r++) {
            if (transpose)
                col_of_row[s.col4row[r]] = r;
            else
                col_of_row[r] = s.col4row[r];
        }
    cp_free(t);
    cp_free(s.u), cp_free(s.v), cp_free(s.spc), cp_free(s.path), cp_free(s.col4row);
    cp_free(s.row4col), cp_free(s.remaining), cp_free(s.SR), cp_free(s.SC);
    return rc;
}

/* ---- overlap and IoU ---- */

typedef struct {
    int64_t nt, np;   /* max(gt), max(pred) */
    int64_t *ov;      /* (nt+1, np+1) _label_overlap */
    double *iou;      /* (nt, np) _intersection_over_union[1:, 1:] */
} Overlap;

static uint32_t max_u32(const uint32_t *m, int64_t n) {
    uint32_t mx = 0;
    for (int64_t i = 0; i < n; i++) mx = m[i] > mx ? m[i] : mx;
    return mx;
}

static int overlap_init(Overlap *o, const uint32_t *gt, const uint32_t *pred, int64_t H, int64_t W, CpErr *e) {
    memset(o, 0, sizeof *o);
    if (H <= 0 || W <= 0 || H > ((int64_t)1 << 31) || W > ((int64_t)1 << 31) || H * W > ((int64_t)1 << 40))
        return cp_fail(e, "metrics: invalid image size %lld x %lld", (long long)H, (long long)W);
    int64_t npix = H * W;
    o->nt = max_u32(gt, npix);
    o->np = max_u32(pred, npix);
    if ((double)(o->nt + 1) * (double)(o->np + 1) > (double)((int64_t)1 << 28))
        return cp_fail(e, "metrics: %lld true x %lld predicted labels is too large for the overlap matrix; "
                          "renumber the labels",
                       (long long)o->nt, (long long)o->np);
    int64_t ld = o->np + 1;
    o->ov = (int64_t *)cp_calloc((size_t)((o->nt + 1) * ld), sizeof(int64_t));
    for (int64_t p = 0; p < npix; p++) o->ov[(int64_t)gt[p] * ld + pred[p]]++;
    /* areas are the row/column sums of the overlap (background included) */
    int64_t *at = (int64_t *)cp_calloc((size_t)o->nt + 1, sizeof(int64_t));
    int64_t *ap = (int64_t *)cp_calloc((size_t)o->np + 1, sizeof(int64_t));
    for (int64_t i = 0; i <= o->nt; i++)
        for (int64_t j = 0; j <= o->np; j++) at[i] += o->ov[i * ld + j], ap[j] += o->ov[i * ld + j];
    o->iou = (double *)cp_malloc(sizeof(double) * (size_t)(o->nt * o->np > 0 ? o->nt * o->np : 1));
    for (int64_t i = 1; i <= o->nt; i++)
        for (int64_t j = 1; j <= o->np; j++) {
            int64_t ov = o->ov[i * ld + j], un = ap[j] + at[i] - ov;
            o->iou[(i - 1) * o->np + (j - 1)] = un == 0 ? 0.0 : (double)ov / (double)un; /* NaN -> 0 */
        }
    cp_free(at);
    cp_free(ap);
    return CP_OK;
}

static void overlap_free(Overlap *o) {
    cp_free(o->ov);
    cp_free(o->iou);
}

/* The matching at threshold th: col_of_row (nt) out, -1 unassigned.
 * cost = -(iou >= th) - iou / (2 * n_min), as Cellpose's _true_positive. */
static int match(int64_t *col_of_row, const Overlap *o, double th, CpErr *e) {
    int64_t n = o->nt * o->np, n_min = o->nt < o->np ? o->nt : o->np;
    if (n == 0) {
        for (int64_t i = 0; i < o->nt; i++) col_of_row[i] = -1;
        return CP_OK;
    }
    double *cost = (double *)cp_malloc(sizeof(double) * (size_t)n);
    double den = (double)(2 * n_min);
    for (int64_t k = 0; k < n; k++) cost[k] = -(o->iou[k] >= th ? 1.0 : 0.0) - o->iou[k] / den;
    int rc = met_lsap(col_of_row, cost, o->nt, o->np, e);
    cp_free(cost);
    return rc;
}

int met_average_precision(double *ap, int64_t *tp, int64_t *fp, int64_t *fn, const uint32_t *gt,
                          const uint32_t *pred, int64_t H, int64_t W, const double *thresholds, int nthr,
                          CpErr *e) {
    Overlap o;
    if (overlap_init(&o, gt, pred, H, W, e)) {
        overlap_free(&o);
        return CP_EFAIL;
    }
    int64_t *c4r = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)(o.nt > 0 ? o.nt : 1));
    int rc = CP_OK;
    for (int k = 0; k < nthr && rc == CP_OK; k++) {
        int64_t t = 0;
        if (o.np > 0) { /* Cellpose: tp stays 0 without predictions */
            rc = match(c4r, &o, thresholds[k], e);
            for (int64_t i = 0; rc == CP_OK && i < o.nt; i++)
                t += c4r[i] >= 0 && o.iou[i * o.np + c4r[i]] >= thresholds[k];
        }
        tp[k] = t;
        fp[k] = o.np - t;
        fn[k] = o.nt - t;
        /* float32 arrays in Cellpose: ap = tp / (tp + fp + fn), 0/0 = NaN */
        float ft = (float)t, fsum = ((float)t + (float)fp[k]) + (float)fn[k];
        ap[k] = (double)(ft / fsum);
    }
    cp_free(c4r);
    overlap_free(&o);
    return rc;
}

/* mask_ious on a built overlap: iout (nt), preds (nt). */
static int mask_ious_o(double *iout, int64_t *preds, const Overlap *o, CpErr *e) {
    int64_t *c4r = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)(o->nt > 0 ? o->nt : 1));
    int rc = match(c4r, o, 0.5, e);
    for (int64_t i = 0; i < o->nt; i++) {
        int64_t j = rc == CP_OK ? c4r[i] : -1;
        iout[i] = j >= 0 ? o->iou[i * o->np + j] : 0.0;
        preds[i] = j >= 0 ? j + 1 : 0;
    }
    cp_free(c4r);
    return rc;
}

int met_mask_ious(double **iout, int64_t **preds, int64_t *ntrue, const uint32_t *gt, const uint32_t *pred,
                  int64_t H, int64_t W, CpErr *e) {
    *iout = NULL;
    *preds = NULL;
    *ntrue = 0;
    Overlap o;
    int rc = overlap_init(&o, gt, pred, H, W, e);
    if (rc == CP_OK && o.nt > 0) {
        double *io = (double *)cp_malloc(sizeof(double) * (size_t)o.nt);
        int64_t *pr = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)o.nt);
        rc = mask_ious_o(io, pr, &o, e);
        if (rc == CP_OK) {
            *iout = io, *preds = pr, *ntrue = o.nt;
        } else {
            cp_free(io), cp_free(pr);
        }
    }
    overlap_free(&o);
    return rc;
}

int met_aggregated_jaccard(double *aji, const uint32_t *gt, const uint32_t *pred, int64_t H, int64_t W, CpErr *e) {
    Overlap o;
    int rc = overlap_init(&o, gt, pred, H, W, e);
    int64_t inter = 0, uni = 0;
    if (rc == CP_OK && o.nt > 0) {
        double *io = (double *)cp_malloc(sizeof(double) * (size_t)o.nt);
        int64_t *pr = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)o.nt);
        rc = mask_ious_o(io, pr, &o, e);
        for (int64_t i = 0; rc == CP_OK && i < o.nt; i++) /* overlap[inds[preds>0]+1, preds[preds>0]] */
            if (pr[i] > 0) inter += o.ov[(i + 1) * (o.np + 1) + pr[i]];
        cp_free(io), cp_free(pr);
    }
    for (int64_t p = 0; rc == CP_OK && p < H * W; p++) uni += gt[p] > 0 || pred[p] > 0;
    *aji = (double)inter / (double)uni; /* 0/0 = NaN as numpy */
    overlap_free(&o);
    return rc;
}

int met_mean_matched_iou(double *miou, int64_t *nmatched, const uint32_t *gt, const uint32_t *pred, int64_t H,
                         int64_t W, CpErr *e) {
    double *io;
    int64_t *pr, nt;
    *miou = 0;
    *nmatched = 0;
    if (met_mask_ious(&io, &pr, &nt, gt, pred, H, W, e)) return CP_EFAIL;
    double s = 0;
    int64_t m = 0;
    for (int64_t i = 0; i < nt; i++) /* sequential, in true-label order */
        if (io[i] >= 0.5) s += io[i], m++;
    *miou = m > 0 ? s / (double)m : 0.0;
    *nmatched = m;
    cp_free(io);
    cp_free(pr);
    return CP_OK;
}
