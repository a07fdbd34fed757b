/* compare_masks.c - see compare.h: two label images, A the reference.
 * Matching and AP come from eval/metrics.h; the split/merge counts use the
 * pixel overlaps of (A label, B label) pairs, counted by sorting the pairs
 * (no dense matrix, so any label range works). Integer counting only;
 * serial; deterministic. */
#include "compare.h"

#include <stdlib.h>
#include <string.h>

#include "metrics.h"

const double CMP_THRESHOLDS[3] = {0.5, 0.75, 0.9};

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static int cmp_u32(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

/* Objects of `outer` that have >= 2 objects of `inner` mostly (> 50% of the
 * inner object's pixels) inside them. */
static int64_t count_multi(const uint32_t *outer, const uint32_t *inner, int64_t n) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) m += inner[i] != 0;
    if (m == 0) return 0;
    uint64_t *k = cp_malloc(sizeof(uint64_t) * (size_t)m); /* (inner << 32) | outer, per inner pixel */
    for (int64_t i = 0, j = 0; i < n; i++)
        if (inner[i]) k[j++] = (uint64_t)inner[i] << 32 | outer[i];
    qsort(k, (size_t)m, sizeof(uint64_t), cmp_u64);
    /* owners[r]: the outer label owning the r-th inner object (0: none) */
    uint32_t *owners = cp_malloc(sizeof(uint32_t) * (size_t)m);
    int64_t nown = 0;
    for (int64_t s = 0; s < m;) {
        uint32_t in = (uint32_t)(k[s] >> 32);
        int64_t e = s, best = 0, area;
        uint32_t own = 0;
        while (e < m && (uint32_t)(k[e] >> 32) == in) e++;
        area = e - s;
        for (int64_t r = s; r < e;) { /* runs of equal outer labels */
            int64_t q = r;
            while (q < e && k[q] == k[r]) q++;
            if ((uint32_t)k[r] != 0 && 2 * (q - r) > area && q - r > best) best = q - r, own = (uint32_t)k[r];
            r = q;
        }
        if (own) owners[nown++] = own;
        s = e;
    }
    /* outer labels that own >= 2 inner objects */
    qsort(owners, (size_t)nown, sizeof(uint32_t), cmp_u32);
    int64_t count = 0;
    for (int64_t s = 0; s < nown;) {
        int64_t e = s;
        while (e < nown && owners[e] == owners[s]) e++;
        count += e - s >= 2;
        s = e;
    }
    cp_free(k);
    cp_free(owners);
    return count;
}

static uint32_t max_label(const uint32_t *x, int64_t n) {
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

int cmp_masks(MaskCmp *m, const uint32_t *a, const uint32_t *b, int64_t h, int64_t w, int64_t **match_b, CpErr *e) {
    memset(m, 0, sizeof *m);
    int64_t n = h * w;
    m->h = h, m->w = w, m->na = max_label(a, n), m->nb = max_label(b, n);
    m->identical = memcmp(a, b, sizeof(uint32_t) * (size_t)n) == 0;
    if (met_average_precision(m->ap, m->tp, m->fp, m->fn, a, b, h, w, CMP_THRESHOLDS, 3, e) != CP_OK) return CP_EFAIL;
    int64_t nm = 0;
    if (met_mean_matched_iou(&m->mean_iou, &nm, a, b, h, w, e) != CP_OK) return CP_EFAIL;
    m->unmatched_a = m->fn[0], m->unmatched_b = m->fp[0];
    m->split = count_multi(a, b, n);
    m->merged = count_multi(b, a, n);
    /* the B label matched to each A label at IoU >= 0.5 (Cellpose's mask_ious matching) */
    double *iou = NULL;
    int64_t *preds = NULL, ntrue = 0;
    if (met_mask_ious(&iou, &preds, &ntrue, a, b, h, w, e) != CP_OK) return CP_EFAIL;
    int64_t *mb = cp_calloc((size_t)m->na + 1, sizeof(int64_t));
    for (int64_t t = 0; t < ntrue; t++) mb[t + 1] = iou[t] >= 0.5 ? preds[t] : 0;
    cp_free(iou), cp_free(preds);
    for (int64_t i = 0; i < n; i++) {
        if ((a[i] != 0) != (b[i] != 0)) m->px_fg++;
        else if (a[i] && mb[a[i]] != (int64_t)b[i]) m->px_assign++;
    }
    if (match_b) *match_b = mb;
    else cp_free(mb);
    return CP_OK;
}

/* Foreground pixel with a 4-neighbour inside the image of another label. */
static int outline(const uint32_t *x, int64_t h, int64_t w, int64_t y, int64_t c) {
    uint32_t v = x[y * w + c];
    if (!v) return 0;
    return (y > 0 && x[(y - 1) * w + c] != v) || (y + 1 < h && x[(y + 1) * w + c] != v) ||
           (c > 0 && x[y * w + c - 1] != v) || (c + 1 < w && x[y * w + c + 1] != v);
}

void cmp_masks_diff_rgb(uint8_t *rgb, const uint32_t *a, const uint32_t *b, int64_t h, int64_t w,
                        const int64_t *match_b) {
    static const uint8_t col[8][3] = {{255, 255, 255}, {0, 200, 255}, {255, 60, 60},   {0, 170, 0},
                                      {200, 0, 200},   {230, 160, 0}, {110, 110, 110}, {0, 0, 0}};
    for (int64_t y = 0; y < h; y++)
        for (int64_t c = 0; c < w; c++) {
            int64_t i = y * w + c;
            int oa = outline(a, h, w, y, c), ob = outline(b, h, w, y, c), k;
            if (oa && ob) k = 0;
            else if (oa) k = 1;
            else if (ob) k = 2;
            else if (a[i] && !b[i]) k = 3;
            else if (!a[i] && b[i]) k = 4;
            else if (a[i]) k = match_b[a[i]] == (int64_t)b[i] ? 6 : 5;
            else k = 7;
            memcpy(rgb + 3 * i, col[k], 3);
        }
}
