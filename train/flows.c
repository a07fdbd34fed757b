/* flows.c - labels -> (cellprob, dY, dX) training targets, renumbering and
 * the image diameter, exactly as Cellpose v3.1.1.3's CPU path (the contract
 * and the arithmetic are written out in flows.h).
 *
 * Layouts: labels (H, W) uint32 row-major; flows (3, H, W) float32 planes.
 * Per-mask scratch (local to one call): for each thread a padded box of the
 * largest mask, ly * lx doubles twice (Jacobi ping-pong) + ly * lx bytes
 * (membership), index (yy, xx) -> yy * lx + xx, row/column 0 and ly-1/lx-1
 * are the zero padding.
 *
 * Determinism: masks run in parallel, one mask per task, each writing only
 * its own pixels; the only sums are exact int64 coordinate sums and the
 * fixed 9-term order of flows_diffuse_px, so the bytes do not depend on the
 * thread count or schedule. No long floating-point reduction is involved,
 * hence no use of the reduction plan (core/reduce.h). */
#include "flows.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ---- distinct values ---- */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sorted distinct values of lab[0..npix) and their pixel counts (both
 * cp_malloc'ed, caller frees); returns how many. A counting table when the
 * largest value is small (all real label images), a sorted copy otherwise;
 * both give the same result. */
static int64_t distinct_values(const uint32_t *lab, int64_t npix, uint32_t **vals, int64_t **counts) {
    uint32_t maxv = 0;
    for (int64_t i = 0; i < npix; i++) maxv = lab[i] > maxv ? lab[i] : maxv;
    int64_t nu = 0;
    if (npix > 0 && (int64_t)maxv <= 2 * npix + 65536) {
        int64_t *tab = (int64_t *)cp_calloc((size_t)maxv + 1, sizeof(int64_t));
        for (int64_t i = 0; i < npix; i++) tab[lab[i]]++;
        for (int64_t v = 0; v <= (int64_t)maxv; v++) nu += tab[v] > 0;
        *vals = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)nu);
        *counts = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)nu);
        for (int64_t v = 0, k = 0; v <= (int64_t)maxv; v++)
            if (tab[v] > 0) {
                (*vals)[k] = (uint32_t)v;
                (*counts)[k++] = tab[v];
            }
        cp_free(tab);
        return nu;
    }
    uint32_t *s = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)(npix > 0 ? npix : 1));
    if (npix > 0) memcpy(s, lab, sizeof(uint32_t) * (size_t)npix);
    qsort(s, (size_t)npix, sizeof(uint32_t), cmp_u32);
    *vals = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)(npix > 0 ? npix : 1));
    *counts = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)(npix > 0 ? npix : 1));
    for (int64_t i = 0; i < npix; i++) {
        if (i == 0 || s[i] != s[i - 1]) {
            (*vals)[nu] = s[i];
            (*counts)[nu++] = 0;
        }
        (*counts)[nu - 1]++;
    }
    cp_free(s);
    return nu;
}

/* Index of v in the sorted array vals[0..nu) (v is present). */
static int64_t find_value(const uint32_t *vals, int64_t nu, uint32_t v) {
    int64_t lo = 0, hi = nu - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (vals[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int flows_renumber(uint32_t *labels, int64_t h, int64_t w) {
    int64_t npix = h * w;
    uint32_t *vals;
    int64_t *counts;
    int64_t nu = distinct_values(labels, npix, &vals, &counts);
    uint32_t *newid = (uint32_t *)cp_calloc((size_t)(nu > 0 ? nu : 1), sizeof(uint32_t));
    uint32_t next = 1, last_v = 0, last_id = 0;
    for (int64_t i = 0; i < npix; i++) { /* row-major scan: first appearance order */
        uint32_t v = labels[i];
        if (v == 0) continue;
        if (v != last_v) {
            int64_t k = find_value(vals, nu, v);
            if (newid[k] == 0) newid[k] = next++;
            last_v = v;
            last_id = newid[k];
        }
        labels[i] = last_id;
    }
    cp_free(newid);
    cp_free(vals);
    cp_free(counts);
    return (int)(next - 1);
}

double flows_diameter(const uint32_t *labels, int64_t h, int64_t w) { return flows_diameter_count(labels, h, w, NULL); }

double flows_diameter_count(const uint32_t *labels, int64_t h, int64_t w, int64_t *nmasks) {
    uint32_t *vals;
    int64_t *counts;
    int64_t nu = distinct_values(labels, h * w, &vals, &counts);
    double md = 0.0;
    int64_t m = nu - 1; /* Cellpose: counts[1:], the smallest value is dropped */
    if (nmasks) *nmasks = m > 0 ? m : 0;
    if (m > 0) {
        int64_t *a = counts + 1;
        qsort(a, (size_t)m, sizeof(int64_t), cmp_i64); /* sqrt is monotone */
        if (m % 2) md = sqrt((double)a[m / 2]);
        else md = (sqrt((double)a[m / 2 - 1]) + sqrt((double)a[m / 2])) / 2.0; /* np.median */
    }
    cp_free(vals);
    cp_free(counts);
    /* md /= (np.pi ** 0.5) / 2; the divisor is the double 0x1.c5bf891b4ef6ap-1 */
    return md / 0x1.c5bf891b4ef6ap-1;
}

/* ---- flows ---- */

typedef struct {
    int64_t y0, y1, x0, x1; /* bounding box [y0, y1) x [x0, x1); y0 = -1 when absent */
} Box;

/* Diffuse mask `id` over its padded box and write its dY, dX pixels.
 * T, U: ly * lx doubles, m: ly * lx bytes (scratch of one thread). */
static void flows_one_mask(float *dyp, float *dxp, const uint32_t *labels, int64_t w, uint32_t id, Box b,
                           double *T, double *U, uint8_t *m) {
    int64_t bh = b.y1 - b.y0, bw = b.x1 - b.x0, ly = bh + 2, lx = bw + 2;
    memset(T, 0, sizeof(double) * (size_t)(ly * lx));
    memset(U, 0, sizeof(double) * (size_t)(ly * lx));
    memset(m, 0, (size_t)(ly * lx));
    /* membership and the exact coordinate sums, padded coordinates (+1) as
     * Cellpose's y, x = np.nonzero(...) + 1 */
    int64_t sy = 0, sx = 0, cnt = 0;
    for (int64_t y = 1; y <= bh; y++)
        for (int64_t x = 1; x <= bw; x++)
            if (labels[(b.y0 + y - 1) * w + b.x0 + x - 1] == id) {
                m[y * lx + x] = 1;
                sy += y;
                sx += x;
                cnt++;
            }
    /* centre: argmin of (x - xmean)^2 + (y - ymean)^2, first on ties */
    double ymean = (double)sy / (double)cnt, xmean = (double)sx / (double)cnt, best = INFINITY;
    int64_t c = 0;
    for (int64_t y = 1; y <= bh; y++)
        for (int64_t x = 1; x <= bw; x++) {
            if (!m[y * lx + x]) continue;
            double ex = (double)x - xmean, ey = (double)y - ymean, d = ex * ex + ey * ey;
            if (d < best) {
                best = d;
                c = y * lx + x;
            }
        }
    /* Jacobi iterations; non-mask pixels stay 0 in both buffers */
    int32_t niter = 2 * (int32_t)(ly + lx);
    for (int32_t t = 0; t < niter; t++) {
        T[c] += 1.0;
        for (int64_t y = 1; y <= bh; y++)
            for (int64_t p = y * lx + 1; p <= y * lx + bw; p++) U[p] = m[p] ? flows_diffuse_px(T, p, lx) : 0.0;
        double *tmp = T;
        T = U;
        U = tmp;
    }
    /* gradient on the per-mask field, normalised, written at the mask pixels */
    for (int64_t y = 1; y <= bh; y++)
        for (int64_t x = 1; x <= bw; x++) {
            int64_t p = y * lx + x;
            if (!m[p]) continue;
            int64_t o = (b.y0 + y - 1) * w + b.x0 + x - 1;
            flows_unit(T[p + lx] - T[p - lx], T[p + 1] - T[p - 1], &dyp[o], &dxp[o]);
        }
}

/* cellprob plane, zeroed flow planes, per-label boxes (boxes[1..n]). */
static int flows_scan(float *flows, Box *boxes, const uint32_t *labels, int64_t h, int64_t w, int n, CpErr *e) {
    int64_t npix = h * w;
    for (int i = 0; i <= n; i++) boxes[i] = (Box){-1, -1, -1, -1};
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            uint32_t v = labels[y * w + x];
            flows[y * w + x] = v > 0 ? 1.0f : 0.0f;
            flows[npix + y * w + x] = 0.0f;
            flows[2 * npix + y * w + x] = 0.0f;
            if (v == 0) continue;
            if (v > (uint32_t)n)
                return cp_fail(e, "flows_from_labels: label %u at (y %lld, x %lld) exceeds the mask count %d; "
                                  "renumber the labels first (flows_renumber)",
                               v, (long long)y, (long long)x, n);
            Box *b = &boxes[v];
            if (b->y0 < 0) *b = (Box){y, y + 1, x, x + 1};
            b->y1 = y + 1; /* rows arrive in order */
            b->x0 = x < b->x0 ? x : b->x0;
            b->x1 = x + 1 > b->x1 ? x + 1 : b->x1;
        }
    return CP_OK;
}

typedef struct {
    int64_t cost; /* stencil updates: n_iter * ly * lx */
    int id;
} Task;

/* Decreasing cost, ties by increasing id: a total order, so any qsort gives
 * the same schedule (which in any case never changes a value). */
static int cmp_task(const void *a, const void *b) {
    const Task *x = (const Task *)a, *y = (const Task *)b;
    if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

int flows_from_labels(float *flows, const uint32_t *labels, int64_t h, int64_t w, int n, const CpCtx *ctx,
                      CpErr *e) {
    if (h < 0 || w < 0 || n < 0)
        return cp_fail(e, "flows_from_labels: bad shape h %lld w %lld n %d", (long long)h, (long long)w, n);
    Box *boxes = (Box *)cp_malloc(sizeof(Box) * ((size_t)n + 1));
    if (flows_scan(flows, boxes, labels, h, w, n, e) != CP_OK) {
        cp_free(boxes);
        return CP_EFAIL;
    }
    int64_t area = 0; /* largest padded box: the scratch size, fixed up front */
    for (int i = 1; i <= n; i++)
        if (boxes[i].y0 >= 0) {
            int64_t a = (boxes[i].y1 - boxes[i].y0 + 2) * (boxes[i].x1 - boxes[i].x0 + 2);
            area = a > area ? a : area;
        }
    /* largest work first (load balance only: each mask's result is independent
     * of when and where it runs) */
    Task *tasks = (Task *)cp_malloc(sizeof(Task) * ((size_t)n + 1));
    for (int i = 1; i <= n; i++) {
        const Box *b = &boxes[i];
        int64_t ly = b->y1 - b->y0 + 2, lx = b->x1 - b->x0 + 2;
        tasks[i - 1] = (Task){b->y0 < 0 ? 0 : 2 * (ly + lx) * ly * lx, i};
    }
    qsort(tasks, (size_t)n, sizeof(Task), cmp_task);
    int nt = ctx->threads > 0 ? ctx->threads : 1;
    size_t per = ((size_t)area * (2 * sizeof(double) + 1) + 63) / 64 * 64; /* keeps doubles aligned */
    uint8_t *scratch = (uint8_t *)cp_malloc(per * (size_t)nt + 1);
    float *dyp = flows + h * w, *dxp = flows + 2 * h * w;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int k = 0; k < n; k++) {
        int i = tasks[k].id;
        if (boxes[i].y0 < 0) continue; /* label absent: find_objects gives None */
        uint8_t *s = scratch + per * (size_t)omp_get_thread_num();
        double *T = (double *)s, *U = T + area;
        flows_one_mask(dyp, dxp, labels, w, (uint32_t)i, boxes[i], T, U, (uint8_t *)(U + area));
    }
    cp_free(scratch);
    cp_free(tasks);
    cp_free(boxes);
    return CP_OK;
}
