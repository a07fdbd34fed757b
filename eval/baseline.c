/* baseline.c - classical baselines: threshold, connected components,
 * Cellpose's clean-up. Definitions, layouts and determinism: baseline.h.
 * H W spatial. */
#include "baseline.h"

#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "dmath.h"
#include "transforms.h"

static const char *NAMES[BL_NMETHODS] = {"binary", "otsu", "gaussian-otsu", "adaptive"};

void bl_params_default(BlParams *p) {
    *p = (BlParams){.threshold = 0.5, .sigma = 2.0, .block = 51, .offset = 0.05, .connectivity = 8, .min_size = 15};
}

const char *bl_method_name(BlMethod m) { return m >= 0 && m < BL_NMETHODS ? NAMES[m] : "?"; }

int bl_method_parse(const char *s, BlMethod *m, CpErr *e) {
    for (int i = 0; i < BL_NMETHODS; i++)
        if (strcmp(s, NAMES[i]) == 0) {
            *m = (BlMethod)i;
            return CP_OK;
        }
    return cp_fail(e, "--baseline: unknown method '%s' (binary, otsu, gaussian-otsu, adaptive or all)", s);
}

int bl_prepare(float *x, const Image *img, const int channels[2], const CpCtx *ctx, const char *path, CpErr *e) {
    int64_t H = img->h, W = img->w;
    if (H < 1 || W < 1) return cp_fail(e, "%s: empty image", path);
    float *two = (float *)cp_malloc(sizeof(float) * (size_t)(2 * H * W)); /* [2, H, W] */
    uint32_t *scratch = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)tfm_normalize_scratch(H, W));
    int rc = tfm_select_channels(two, img, channels, path, e);
    /* normalize_img on the first channel only: the second is not used here */
    if (rc == CP_OK) rc = tfm_normalize_img(two, 1, H, W, 1.0, 99.0, scratch, NULL, NULL, ctx, path, e);
    if (rc == CP_OK) memcpy(x, two, sizeof(float) * (size_t)(H * W));
    cp_free(two);
    cp_free(scratch);
    return rc;
}

/* ---- Gaussian blur ---- */

/* cv2's borderInterpolate for BORDER_REFLECT_101 ("gfedcb|abcdefgh|gfedcba"),
 * folding as often as needed for kernels wider than the image. */
static int64_t reflect101(int64_t i, int64_t n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

/* cvRound: round half to even. */
static int64_t round_half_even(double v) {
    double f = (double)(int64_t)v; /* truncation toward zero; v >= 0 here */
    double d = v - f;
    int64_t i = (int64_t)f;
    if (d > 0.5 || (d == 0.5 && (i & 1))) i++;
    return i;
}

int bl_gaussian_blur(float *out, const float *in, int64_t H, int64_t W, double sigma, CpErr *e) {
    if (!(sigma > 0 && sigma <= 100)) return cp_fail(e, "--sigma: expected a number in (0, 100], got %g", sigma);
    int64_t ks = round_half_even(sigma * 8.0 + 1.0) | 1, r = ks / 2;
    double *w = (double *)cp_malloc(sizeof(double) * (size_t)ks);
    double sum = 0, s2 = -0.5 / (sigma * sigma);
    for (int64_t k = 0; k < ks; k++) { /* cv2.getGaussianKernel(ks, sigma, CV_64F) */
        double d = (double)(k - r);
        w[k] = cp_dm_expd(s2 * d * d);
        sum += w[k];
    }
    for (int64_t k = 0; k < ks; k++) w[k] = w[k] / sum;
    double *tmp = (double *)cp_malloc(sizeof(double) * (size_t)(H * W));
    for (int64_t y = 0; y < H; y++) /* rows: tmp = in (*) w along x */
        for (int64_t x = 0; x < W; x++) {
            double acc = 0;
            for (int64_t k = 0; k < ks; k++) acc += w[k] * (double)in[y * W + reflect101(x + k - r, W)];
            tmp[y * W + x] = acc;
        }
    for (int64_t y = 0; y < H; y++) /* columns: out = tmp (*) w along y */
        for (int64_t x = 0; x < W; x++) {
            double acc = 0;
            for (int64_t k = 0; k < ks; k++) acc += w[k] * tmp[reflect101(y + k - r, H) * W + x];
            out[y * W + x] = (float)acc;
        }
    cp_free(tmp);
    cp_free(w);
    return CP_OK;
}

/* ---- Otsu ---- */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int bl_otsu_threshold(double *t, const float *x, int64_t n) {
    *t = n > 0 ? (double)x[0] : 0.0;
    if (n < 2) return 0;
    float *v = (float *)cp_malloc(sizeof(float) * (size_t)n);
    memcpy(v, x, sizeof(float) * (size_t)n);
    qsort(v, (size_t)n, sizeof(float), cmp_float);
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += (double)v[i]; /* ascending order */
    double s0 = 0, best = -1;
    int found = 0;
    for (int64_t i = 0; i < n - 1; i++) {
        s0 += (double)v[i];
        if (v[i + 1] == v[i]) continue; /* split only between distinct values */
        double n0 = (double)(i + 1), n1 = (double)(n - i - 1);
        double m0 = s0 / n0, m1 = (total - s0) / n1, d = m0 - m1;
        double sig = n0 * n1 * d * d;
        if (sig > best) { /* strict: the first maximum wins (cv2) */
            best = sig;
            *t = (double)v[i];
            found = 1;
        }
    }
    cp_free(v);
    return found;
}

/* ---- local mean (adaptive) ---- */

int bl_box_mean(double *mean, const float *in, int64_t H, int64_t W, int block, CpErr *e) {
    if (block < 1 || block % 2 == 0 || block > 100001)
        return cp_fail(e, "--block-size: expected an odd number of pixels >= 1, got %d", block);
    int64_t h = block / 2, PH = H + 2 * h + 1, PW = W + 2 * h + 1;
    /* I[(y+1) * PW + (x+1)] = sum of the replicate-padded image over [0, y] x [0, x] */
    double *I = (double *)cp_calloc((size_t)(PH * PW), sizeof(double));
    for (int64_t y = 0; y < PH - 1; y++) {
        int64_t sy = y - h < 0 ? 0 : y - h >= H ? H - 1 : y - h;
        double row = 0;
        for (int64_t x = 0; x < PW - 1; x++) {
            int64_t sx = x - h < 0 ? 0 : x - h >= W ? W - 1 : x - h;
            row += (double)in[sy * W + sx];
            I[(y + 1) * PW + (x + 1)] = I[y * PW + (x + 1)] + row;
        }
    }
    double area = (double)block * (double)block;
    for (int64_t y = 0; y < H; y++) /* the window of pixel (y, x) is padded [y, y+block) x [x, x+block) */
        for (int64_t x = 0; x < W; x++) {
            int64_t y1 = y + block, x1 = x + block;
            double s = I[y1 * PW + x1] - I[y * PW + x1] - I[y1 * PW + x] + I[y * PW + x];
            mean[y * W + x] = s / area;
        }
    cp_free(I);
    return CP_OK;
}

/* ---- connected components ---- */

int64_t bl_label(uint32_t *labels, const uint8_t *fg, int64_t H, int64_t W, int connectivity, CpErr *e) {
    if (connectivity != 4 && connectivity != 8) {
        cp_fail(e, "--connectivity: expected 4 or 8, got %d", connectivity);
        return -1;
    }
    static const int dy[8] = {-1, 1, 0, 0, -1, -1, 1, 1}, dx[8] = {0, 0, -1, 1, -1, 1, -1, 1};
    memset(labels, 0, sizeof(uint32_t) * (size_t)(H * W));
    int64_t *stack = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)(H * W));
    uint32_t n = 0;
    for (int64_t p0 = 0; p0 < H * W; p0++) { /* raster order: first pixels get 1, 2, ... */
        if (!fg[p0] || labels[p0]) continue;
        labels[p0] = ++n;
        int64_t top = 0;
        stack[top++] = p0;
        while (top > 0) { /* flood fill (depth first; the order does not change the set) */
            int64_t p = stack[--top], y = p / W, x = p % W;
            for (int k = 0; k < connectivity; k++) {
                int64_t yy = y + dy[k], xx = x + dx[k];
                if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                int64_t q = yy * W + xx;
                if (fg[q] && !labels[q]) labels[q] = n, stack[top++] = q;
            }
        }
    }
    cp_free(stack);
    return (int64_t)n;
}

/* ---- methods ---- */

int bl_foreground(uint8_t *fg, const float *x, int64_t H, int64_t W, BlMethod m, const BlParams *p, CpErr *e) {
    int64_t n = H * W;
    double t;
    switch (m) {
    case BL_BINARY:
        for (int64_t i = 0; i < n; i++) fg[i] = (double)x[i] > p->threshold;
        return CP_OK;
    case BL_OTSU:
        if (!bl_otsu_threshold(&t, x, n)) return memset(fg, 0, (size_t)n), CP_OK;
        for (int64_t i = 0; i < n; i++) fg[i] = (double)x[i] > t;
        return CP_OK;
    case BL_GAUSSIAN_OTSU: {
        float *b = (float *)cp_malloc(sizeof(float) * (size_t)n);
        int rc = bl_gaussian_blur(b, x, H, W, p->sigma, e), found = 0;
        if (rc == CP_OK) found = bl_otsu_threshold(&t, b, n);
        for (int64_t i = 0; rc == CP_OK && i < n; i++) fg[i] = found && (double)b[i] > t;
        cp_free(b);
        return rc;
    }
    case BL_ADAPTIVE: {
        double *mean = (double *)cp_malloc(sizeof(double) * (size_t)n);
        int rc = bl_box_mean(mean, x, H, W, p->block, e);
        for (int64_t i = 0; rc == CP_OK && i < n; i++) fg[i] = (double)x[i] > mean[i] + p->offset;
        cp_free(mean);
        return rc;
    }
    default:
        return cp_fail(e, "baseline: unknown method %d", (int)m);
    }
}

int bl_segment(uint32_t *masks, const float *x, int64_t H, int64_t W, BlMethod m, const BlParams *p, CpErr *e) {
    uint8_t *fg = (uint8_t *)cp_malloc((size_t)(H * W));
    int rc = bl_foreground(fg, x, H, W, m, p, e);
    if (rc == CP_OK && bl_label(masks, fg, H, W, p->connectivity, e) < 0) rc = CP_EFAIL;
    if (rc == CP_OK) rc = cln_fill_holes_remove_small(masks, H, W, p->min_size, e);
    cp_free(fg);
    return rc;
}
