/* featmaps.c - layer feature maps as a PCA-coloured PNG; see featmaps.h. */
#include "featmaps.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tiles.h"

/* "down3" -> kind 'd', k 3; "output" -> 'o'. */
static int parse_layer(const char *layer, char *kind, int *k) {
    if (strcmp(layer, "output") == 0) return *kind = 'o', *k = 0, 1;
    const char *num = NULL;
    if (strncmp(layer, "down", 4) == 0) *kind = 'd', num = layer + 4;
    else if (strncmp(layer, "up", 2) == 0) *kind = 'u', num = layer + 2;
    if (!num || *num < '0' || *num > '9' || num[1]) return 0;
    *k = *num - '0';
    return 1;
}

int feat_check_layer(const char *layer, CpErr *e) {
    char kind;
    int k;
    if (!parse_layer(layer, &kind, &k))
        return cp_fail(e, "unknown layer '%s'; layers are down0..down3, up0..up3 (levels of the model) and output",
                       layer);
    return CP_OK;
}

/* Eigen-decomposition of the symmetric n x n matrix a (destroyed) by cyclic
 * Jacobi rotations: evals[n], evecs[n x n] with eigenvector j in column j. */
static void jacobi_eigen(double *a, double *evals, double *v, int n) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) v[i * n + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int p = 0; p < n; p++) {
            diag += a[p * n + p] * a[p * n + p];
            for (int q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
        }
        if (off <= 1e-30 * diag || off == 0) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (apq == 0) continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) {
                    double vkp = v[k * n + p], vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < n; i++) evals[i] = a[i * n + i];
}

void feat_pca3(double *proj, double evals[3], const float *f, int C, int64_t n) {
    int64_t stride = (n + FEAT_PCA_SAMPLES - 1) / FEAT_PCA_SAMPLES, m = (n + stride - 1) / stride;
    double *mean = cp_malloc(sizeof(double) * (size_t)C), *cov = cp_malloc(sizeof(double) * (size_t)C * C);
    double *ev = cp_malloc(sizeof(double) * (size_t)C), *vec = cp_malloc(sizeof(double) * (size_t)C * C);
    for (int a = 0; a < C; a++) {
        double s = 0;
        for (int64_t i = 0; i < n; i += stride) s += f[a * n + i];
        mean[a] = s / (double)m;
    }
#pragma omp parallel for schedule(dynamic)
    for (int a = 0; a < C; a++)
        for (int b = a; b < C; b++) {
            double s = 0;
            for (int64_t i = 0; i < n; i += stride) s += ((double)f[a * n + i] - mean[a]) * ((double)f[b * n + i] - mean[b]);
            cov[a * C + b] = cov[b * C + a] = s / (double)(m > 1 ? m - 1 : 1);
        }
    jacobi_eigen(cov, ev, vec, C);
    for (int k = 0; k < 3; k++) {
        double *pk = proj + k * n;
        if (k >= C) {
            memset(pk, 0, sizeof(double) * (size_t)n);
            evals[k] = 0;
            continue;
        }
        /* pick the largest unused eigenvalue */
        int best = -1;
        for (int j = 0; j < C; j++) {
            if (ev[j] == -INFINITY) continue;
            if (best < 0 || ev[j] > ev[best]) best = j;
        }
        evals[k] = ev[best];
        ev[best] = -INFINITY;
        int big = 0;
        for (int a = 1; a < C; a++)
            if (fabs(vec[a * C + best]) > fabs(vec[big * C + best])) big = a;
        double sign = vec[big * C + best] < 0 ? -1.0 : 1.0;
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int a = 0; a < C; a++) s += sign * vec[a * C + best] * ((double)f[a * n + i] - mean[a]);
            pk[i] = s;
        }
    }
    cp_free(mean), cp_free(cov), cp_free(ev), cp_free(vec);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy.percentile (linear) of n sorted values. */
static double pct_sorted(const double *s, int64_t n, double q) {
    double pos = q / 100.0 * (double)(n - 1);
    int64_t i = (int64_t)pos;
    if (i >= n - 1) return s[n - 1];
    return s[i] + (pos - (double)i) * (s[i + 1] - s[i]);
}

int feat_dump_png(const char *path, CPnet *net, const Image *img, const char *name, const InferParams *p,
                  const char *layer, const CpCtx *ctx, CpErr *e) {
    char kind;
    int k;
    int L = net->cfg.nlev;
    if (!parse_layer(layer, &kind, &k) || (kind != 'o' && k >= L))
        return cp_fail(e, "%s: --dump-features: no layer '%s' in this model (down0..down%d, up0..up%d, output)", name,
                       layer, L - 1, L - 1);
    InferInput in;
    if (infer_prepare(&in, net, img, name, p, ctx, e) != CP_OK) return CP_EFAIL;
    /* the region: the whole rescaled image, or its central crop */
    int64_t Hr = in.Hs, Wr = in.Ws, y0 = 0, x0 = 0;
    if (Hr * Wr > FEAT_MAX_WHOLE) {
        if (Hr > FEAT_CROP) y0 = (Hr - FEAT_CROP) / 2, Hr = FEAT_CROP;
        if (Wr > FEAT_CROP) x0 = (Wr - FEAT_CROP) / 2, Wr = FEAT_CROP;
    }
    int64_t py1, py2, px1, px2;
    tiles_pad_1d(Hr, &py1, &py2);
    tiles_pad_1d(Wr, &px1, &px2);
    int64_t Hp = Hr + py1 + py2, Wp = Wr + px1 + px2;
    float *xp = cp_calloc((size_t)(2 * Hp * Wp), sizeof(float));
    for (int c = 0; c < 2; c++)
        for (int64_t y = 0; y < Hr; y++)
            memcpy(xp + (c * Hp + py1 + y) * Wp + px1, in.xs + (c * in.Hs + y0 + y) * in.Ws + x0,
                   sizeof(float) * (size_t)Wr);
    int rc = cpnet_plan(net, 1, (int)Hp, (int)Wp, 0, e);
    if (rc == CP_OK && !cpnet_forward(net, xp, 0, ctx, e)) rc = CP_EFAIL;
    if (rc == CP_OK) {
        const float *fm = kind == 'd' ? net->down[k].out : kind == 'u' ? net->up[k].out : net->output.out;
        int C = kind == 'd' ? net->down[k].cout : kind == 'u' ? net->up[k].cout : net->cfg.nout;
        int s = kind == 'o' ? 1 : 1 << k; /* down k and up k are at 1 / 2^k */
        int64_t h = Hp / s, w = Wp / s, cy = py1 / s, cx = px1 / s, ch = Hr / s, cw = Wr / s;
        if (ch < 1) ch = 1;
        if (cw < 1) cw = 1;
        int64_t n = ch * cw;
        float *f = cp_malloc(sizeof(float) * (size_t)(C * n)); /* the crop without padding */
        for (int c = 0; c < C; c++)
            for (int64_t y = 0; y < ch; y++)
                memcpy(f + (c * ch + y) * cw, fm + (c * h + cy + y) * w + cx, sizeof(float) * (size_t)cw);
        double *proj = cp_malloc(sizeof(double) * (size_t)(3 * n)), ev[3];
        double *sorted = cp_malloc(sizeof(double) * (size_t)n), lo[3], hi[3];
        feat_pca3(proj, ev, f, C, n < 2 ? 2 : n);
        for (int q = 0; q < 3; q++) {
            memcpy(sorted, proj + q * n, sizeof(double) * (size_t)n);
            qsort(sorted, (size_t)n, sizeof(double), cmp_double);
            lo[q] = pct_sorted(sorted, n, 1.0), hi[q] = pct_sorted(sorted, n, 99.0);
        }
        int64_t OH = ch * s, OW = cw * s; /* back to the rescaled image's pixels */
        uint8_t *rgb = cp_malloc((size_t)(3 * OH * OW));
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++)
                for (int q = 0; q < 3; q++) {
                    double v = proj[q * n + (y / s) * cw + x / s];
                    double t = hi[q] > lo[q] ? (v - lo[q]) / (hi[q] - lo[q]) : 0.5;
                    t = t < 0 ? 0 : t > 1 ? 1 : t;
                    rgb[(y * OW + x) * 3 + q] = (uint8_t)(t * 255.0 + 0.5);
                }
        rc = image_write_png(path, rgb, 3, OH, OW, e);
        cp_free(rgb), cp_free(proj), cp_free(sorted), cp_free(f);
    }
    cp_free(xp);
    infer_input_free(&in);
    return rc;
}
