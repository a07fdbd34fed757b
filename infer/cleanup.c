/* cleanup.c - flow-error removal, hole filling and small-mask removal
 * (Cellpose v3.1.1.3 dynamics.remove_bad_flow_masks, metrics.flow_error,
 * utils.fill_holes_and_remove_small_masks). Contract, layouts and
 * determinism notes: cleanup.h. H W spatial; masks (H, W) uint32. */
#include "cleanup.h"

#include <math.h>
#include <string.h>

#include "flows.h"

/* Largest label, and a size check shared by both entry points. */
static int check_shape(const char *fn, int64_t H, int64_t W, CpErr *e) {
    if (H <= 0 || W <= 0 || H > ((int64_t)1 << 31) || W > ((int64_t)1 << 31) || H * W > ((int64_t)1 << 40))
        return cp_fail(e, "cleanup: %s: invalid mask size %lld x %lld", fn, (long long)H, (long long)W);
    return CP_OK;
}

static uint32_t max_label(const uint32_t *m, int64_t n) {
    uint32_t mx = 0;
    for (int64_t i = 0; i < n; i++) mx = m[i] > mx ? m[i] : mx;
    return mx;
}

int cln_flow_errors(double **err, int64_t *nlab, const uint32_t *masks, const float *dP_net, int64_t H, int64_t W,
                    const CpCtx *ctx, CpErr *e) {
    *err = NULL;
    *nlab = 0;
    if (check_shape("flow_errors", H, W, e)) return CP_EFAIL;
    int64_t npix = H * W;
    uint32_t n = max_label(masks, npix);
    if (n == 0) return CP_OK; /* masks_to_flows: "empty masks!", zero errors */
    if (n > 0x7fffffffu) return cp_fail(e, "cleanup: label %u too large for flow errors (max 2^31-1)", n);
    /* mu = masks_to_flows(masks): (3, H, W) = cellprob, dY, dX */
    float *fl = (float *)cp_malloc(sizeof(float) * 3 * (size_t)npix);
    if (flows_from_labels(fl, masks, H, W, (int)n, ctx, e)) {
        cp_free(fl);
        return CP_EFAIL;
    }
    /* scipy.ndimage.mean(sq, masks, index=1..n): per-label float64 sums in
     * row-major pixel order (np.bincount), divided by the pixel count. */
    double *sy = (double *)cp_calloc((size_t)n + 1, sizeof(double));
    double *sx = (double *)cp_calloc((size_t)n + 1, sizeof(double));
    int64_t *cnt = (int64_t *)cp_calloc((size_t)n + 1, sizeof(int64_t));
    const float *muy = fl + npix, *mux = fl + 2 * npix;
    for (int64_t p = 0; p < npix; p++) {
        uint32_t l = masks[p];
        if (!l) continue;
        sy[l] += cln_flow_sq_err(muy[p], dP_net[p]);
        sx[l] += cln_flow_sq_err(mux[p], dP_net[npix + p]);
        cnt[l]++;
    }
    double *out = (double *)cp_malloc(sizeof(double) * (size_t)n);
    for (uint32_t l = 1; l <= n; l++) /* flow_errors = (0 + mean_y) + mean_x */
        out[l - 1] = (0.0 + sy[l] / (double)cnt[l]) + sx[l] / (double)cnt[l];
    cp_free(sy);
    cp_free(sx);
    cp_free(cnt);
    cp_free(fl);
    *err = out;
    *nlab = n;
    return CP_OK;
}

int cln_flow_error_remove(uint32_t *masks, const float *dP_net, int64_t H, int64_t W, float flow_threshold,
                          const CpCtx *ctx, CpErr *e) {
    if (check_shape("flow_error_remove", H, W, e)) return CP_EFAIL;
    if (!(flow_threshold > 0)) return CP_OK; /* flow_threshold 0 / None: no check */
    double *err;
    int64_t n;
    if (cln_flow_errors(&err, &n, masks, dP_net, H, W, ctx, e)) return CP_EFAIL;
    if (n == 0) return CP_OK;
    /* badi = 1 + (merrors > threshold).nonzero(); masks[isin(masks, badi)] = 0.
     * The threshold is a Python float (float32 widened exactly here). */
    uint8_t *bad = (uint8_t *)cp_calloc((size_t)n + 1, 1);
    for (int64_t l = 1; l <= n; l++) bad[l] = err[l - 1] > (double)flow_threshold; /* NaN: kept */
    for (int64_t p = 0; p < H * W; p++)
        if (bad[masks[p]]) masks[p] = 0;
    cp_free(bad);
    cp_free(err);
    return CP_OK;
}

/* ---- fill_holes_and_remove_small_masks ---- */

/* Cellpose's size filter: counts = fastremap.unique(masks, return_counts)[1][1:];
 * masks = fastremap.mask(masks, nonzero(counts < min_size)[0] + 1), i.e. the
 * k-th distinct value's count (sorted values, first one dropped) below
 * min_size zeroes the VALUE k+1; then renumber in scan order. */
static void size_filter(uint32_t *m, int64_t H, int64_t W, int min_size) {
    int64_t npix = H * W;
    uint32_t mx = max_label(m, npix); /* <= label_limit (checked by the caller) */
    /* counts per value 0..mx (dense table) */
    int64_t *cnt = (int64_t *)cp_calloc((size_t)mx + 1, sizeof(int64_t));
    for (int64_t p = 0; p < npix; p++) cnt[m[p]]++;
    uint8_t *drop = (uint8_t *)cp_calloc((size_t)mx + 2, 1);
    int64_t k = -1; /* index among the sorted distinct values, after dropping the first */
    for (uint32_t v = 0;; v++) {
        if (cnt[v] > 0) {
            if (k >= 0 && cnt[v] < min_size && (uint64_t)k + 1 <= mx) drop[k + 1] = 1;
            k++;
        }
        if (v == mx) break;
    }
    for (int64_t p = 0; p < npix; p++)
        if (drop[m[p]]) m[p] = 0;
    flows_renumber(m, H, W);
    cp_free(cnt);
    cp_free(drop);
}

typedef struct {
    int64_t y0, y1, x0, x1; /* half-open box; y0 < 0: label absent */
} CBox;

/* find_objects: bounding boxes of values 1..mx (index v-1). */
static CBox *find_boxes(const uint32_t *m, int64_t H, int64_t W, uint32_t mx) {
    CBox *b = (CBox *)cp_malloc(sizeof(CBox) * (size_t)(mx > 0 ? mx : 1));
    for (uint32_t i = 0; i < mx; i++) b[i] = (CBox){-1, -1, -1, -1};
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
            uint32_t v = m[y * W + x];
            if (!v) continue;
            CBox *c = &b[v - 1];
            if (c->y0 < 0) *c = (CBox){y, y + 1, x, x + 1};
            c->y1 = y + 1;
            c->x0 = x < c->x0 ? x : c->x0;
            c->x1 = x + 1 > c->x1 ? x + 1 : c->x1;
        }
    return b;
}

/* fill_voids.fill on the box's binary mask (m == lab): background pixels
 * 4-connected to the box border stay background, all others become `out`.
 * reach: scratch of bh*bw bytes, stack: of bh*bw int64. */
static void fill_box(uint32_t *m, int64_t W, const CBox *b, uint32_t lab, uint32_t out, uint8_t *reach,
                     int64_t *stack) {
    int64_t bh = b->y1 - b->y0, bw = b->x1 - b->x0, top = 0;
    memset(reach, 0, (size_t)(bh * bw));
#define CLN_AT(yy, xx) m[(b->y0 + (yy)) * W + b->x0 + (xx)]
#define CLN_SEED(yy, xx)                                                       \
    do {                                                                       \
        int64_t q_ = (yy) * bw + (xx);                                         \
        if (!reach[q_] && CLN_AT(yy, xx) != lab) {                             \
            reach[q_] = 1;                                                     \
            stack[top++] = q_;                                                 \
        }                                                                      \
    } while (0)
    for (int64_t x = 0; x < bw; x++) {
        CLN_SEED(0, x);
        CLN_SEED(bh - 1, x);
    }
    for (int64_t y = 0; y < bh; y++) {
        CLN_SEED(y, 0);
        CLN_SEED(y, bw - 1);
    }
    while (top > 0) { /* 4-connected flood of the background */
        int64_t q = stack[--top], y = q / bw, x = q % bw;
        if (y > 0) CLN_SEED(y - 1, x);
        if (y < bh - 1) CLN_SEED(y + 1, x);
        if (x > 0) CLN_SEED(y, x - 1);
        if (x < bw - 1) CLN_SEED(y, x + 1);
    }
    for (int64_t y = 0; y < bh; y++)
        for (int64_t x = 0; x < bw; x++)
            if (!reach[y * bw + x]) CLN_AT(y, x) = out;
#undef CLN_SEED
#undef CLN_AT
}

int cln_fill_holes_remove_small(uint32_t *masks, int64_t H, int64_t W, int min_size, CpErr *e) {
    if (check_shape("fill_holes_remove_small", H, W, e)) return CP_EFAIL;
    /* Dense per-label tables (as find_objects' list): refuse ids far above
     * the pixel count instead of allocating gigabytes; renumber first. */
    int64_t limit = H * W > ((int64_t)1 << 24) ? H * W : ((int64_t)1 << 24);
    uint32_t mx = max_label(masks, H * W);
    if ((int64_t)mx > limit)
        return cp_fail(e, "cleanup: label %u exceeds the limit %lld for a %lld x %lld image; renumber the labels "
                          "first (flows_renumber)",
                       mx, (long long)limit, (long long)H, (long long)W);
    if (min_size > 0) size_filter(masks, H, W, min_size);
    mx = max_label(masks, H * W);
    CBox *boxes = find_boxes(masks, H, W, mx);
    int64_t area = 1;
    for (uint32_t i = 0; i < mx; i++)
        if (boxes[i].y0 >= 0) {
            int64_t a = (boxes[i].y1 - boxes[i].y0) * (boxes[i].x1 - boxes[i].x0);
            area = a > area ? a : area;
        }
    uint8_t *reach = (uint8_t *)cp_malloc((size_t)area);
    int64_t *stack = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)area);
    uint32_t j = 0;
    for (uint32_t i = 0; i < mx; i++) { /* labels in increasing id order; boxes from before filling */
        if (boxes[i].y0 < 0) continue;
        fill_box(masks, W, &boxes[i], i + 1, j + 1, reach, stack);
        j++;
    }
    cp_free(stack);
    cp_free(reach);
    cp_free(boxes);
    if (min_size > 0) size_filter(masks, H, W, min_size);
    return CP_OK;
}
