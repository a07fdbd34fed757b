/* dynamics.c - follow_flows (Euler integration) and get_masks (histogram,
 * seeds, growth) of Cellpose v3.1.1.3's CPU path. Contract, layouts and the
 * determinism argument: dynamics.h.
 *
 * Legend: H W image, N foreground pixels, HP = H + 2*DYN_RPAD, WP = W + 2*DYN_RPAD. */
#include "dynamics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- niter */

uint32_t dyn_niter_default(double diameter, double diam_mean, int resample) {
    if (!resample || !(diameter > 0)) return 200;
    double rescale = diam_mean / diameter;       /* models.py: self.diam_mean / diameter */
    double niter = 1.0 / rescale * 200.0;        /* niter0 = (1 / rescale * 200) */
    if (!(niter >= 0) || niter >= 4294967296.0) return 200;
    return (uint32_t)niter;                      /* np.uint32(niter): truncation */
}

/* ------------------------------------------------------- follow_flows */

int64_t dyn_flow_field(float *F, int64_t *idx, const float *dP, const float *cellprob, int64_t H, int64_t W,
                       float threshold, const CpCtx *ctx) {
    const int64_t HW = H * W;
    /* dP * (cellprob > thr) / 5.: float32 multiply by 0 or 1, then float32 divide */
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t i = 0; i < HW; i++) {
        float m = cellprob[i] > threshold ? 1.0f : 0.0f;
        F[i] = dP[i] * m / 5.0f;
        F[HW + i] = dP[HW + i] * m / 5.0f;
    }
    int64_t n = 0; /* np.nonzero order: row-major */
    for (int64_t i = 0; i < HW; i++) {
        if (cellprob[i] > threshold) {
            if (idx) idx[n] = i;
            n++;
        }
    }
    return n;
}

int dyn_follow_flows(float *pos, const float *F, const int64_t *idx, int64_t N, int64_t H, int64_t W,
                     uint32_t niter, const CpCtx *ctx, CpErr *e) {
    if (H < 1 || W < 1 || N < 0 || N > H * W)
        return cp_fail(e, "dynamics.c: follow_flows shape H %lld W %lld N %lld is invalid", (long long)H,
                       (long long)W, (long long)N);
    if (H > (1 << 24) || W > (1 << 24))
        return cp_fail(e, "dynamics.c: image side over 2^24 cannot be tracked exactly in float32");
    /* Each pixel's trajectory only reads F: run all niter steps per pixel
     * (Cellpose loops steps outside and pixels inside; the arithmetic per
     * pixel is the same), stopping early on a fixed point / 2-cycle. */
#pragma omp parallel for num_threads(ctx->threads) schedule(static, 1024)
    for (int64_t n = 0; n < N; n++) {
        float py = (float)(idx[n] / W), px = (float)(idx[n] % W);
        dyn_trajectory(F, H, W, niter, &py, &px);
        pos[n] = py;
        pos[N + n] = px;
    }
    return CP_OK;
}

/* ------------------------------------------- torch CPU argsort (libstdc++) */
/* torch's CPU sort (stable=False) calls std::sort on (value, index) pairs with
 * comparator value_a < value_b. This is libstdc++'s introsort, step for step:
 * introsort loop (threshold 16, depth 2*floor(log2 n), median of
 * (first+1, mid, last-1) moved to first, unguarded Hoare partition), heap sort
 * when the depth runs out, then the final insertion sort. */
typedef struct {
    int32_t k;
    int64_t i;
} KV;

#define KV_LESS(a, b) ((a).k < (b).k)
#define SORT_THRESHOLD 16

static void kv_swap(KV *a, KV *b) {
    KV t = *a;
    *a = *b;
    *b = t;
}

static void kv_push_heap(KV *f, int64_t hole, int64_t top, KV v) {
    int64_t parent = (hole - 1) / 2;
    while (hole > top && KV_LESS(f[parent], v)) {
        f[hole] = f[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    f[hole] = v;
}

static void kv_adjust_heap(KV *f, int64_t hole, int64_t len, KV v) {
    const int64_t top = hole;
    int64_t child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (KV_LESS(f[child], f[child - 1])) child--;
        f[hole] = f[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        f[hole] = f[child - 1];
        hole = child - 1;
    }
    kv_push_heap(f, hole, top, v);
}

static void kv_heap_sort(KV *f, int64_t len) { /* __make_heap + __sort_heap */
    if (len < 2) return;
    for (int64_t parent = (len - 2) / 2;; parent--) {
        kv_adjust_heap(f, parent, len, f[parent]);
        if (parent == 0) break;
    }
    for (int64_t last = len - 1; last > 0; last--) { /* __pop_heap(first, last, last) */
        KV v = f[last];
        f[last] = f[0];
        kv_adjust_heap(f, 0, last, v);
    }
}

static void kv_median_to_first(KV *r, KV *a, KV *b, KV *c) {
    if (KV_LESS(*a, *b)) {
        if (KV_LESS(*b, *c)) kv_swap(r, b);
        else if (KV_LESS(*a, *c)) kv_swap(r, c);
        else kv_swap(r, a);
    } else if (KV_LESS(*a, *c)) kv_swap(r, a);
    else if (KV_LESS(*b, *c)) kv_swap(r, c);
    else kv_swap(r, b);
}

static KV *kv_partition_pivot(KV *first, KV *last) {
    KV *mid = first + (last - first) / 2;
    kv_median_to_first(first, first + 1, mid, last - 1);
    KV *lo = first + 1, *hi = last;
    for (;;) { /* __unguarded_partition(first + 1, last, first) */
        while (KV_LESS(*lo, *first)) lo++;
        hi--;
        while (KV_LESS(*first, *hi)) hi--;
        if (!(lo < hi)) return lo;
        kv_swap(lo, hi);
        lo++;
    }
}

static void kv_introsort_loop(KV *first, KV *last, int64_t depth) {
    while (last - first > SORT_THRESHOLD) {
        if (depth == 0) {
            kv_heap_sort(first, last - first); /* __partial_sort(first, last, last) */
            return;
        }
        depth--;
        KV *cut = kv_partition_pivot(first, last);
        kv_introsort_loop(cut, last, depth);
        last = cut;
    }
}

static void kv_linear_insert(KV *last) { /* __unguarded_linear_insert */
    KV v = *last;
    KV *next = last - 1;
    while (KV_LESS(v, *next)) {
        *last = *next;
        last = next;
        next--;
    }
    *last = v;
}

static void kv_insertion_sort(KV *first, KV *last) {
    if (first == last) return;
    for (KV *i = first + 1; i != last; i++) {
        if (KV_LESS(*i, *first)) {
            KV v = *i;
            memmove(first + 1, first, (size_t)(i - first) * sizeof(KV));
            *first = v;
        } else {
            kv_linear_insert(i);
        }
    }
}

void dyn_argsort_torch(int64_t *order, const int32_t *key, int64_t n) {
    if (n <= 0) return;
    KV *a = (KV *)cp_malloc(sizeof(KV) * (size_t)n);
    for (int64_t i = 0; i < n; i++) a[i] = (KV){key[i], i};
    int64_t lg = 0;
    while (((int64_t)1 << (lg + 1)) <= n) lg++; /* std::__lg(n) */
    kv_introsort_loop(a, a + n, 2 * lg);
    if (n > SORT_THRESHOLD) { /* __final_insertion_sort */
        kv_insertion_sort(a, a + SORT_THRESHOLD);
        for (KV *i = a + SORT_THRESHOLD; i != a + n; i++) kv_linear_insert(i);
    } else {
        kv_insertion_sort(a, a + n);
    }
    for (int64_t i = 0; i < n; i++) order[i] = a[i].i;
    cp_free(a);
}

/* ----------------------------------------------------------- get_masks */

/* hmax [HP, WP] = max of h over the 5x5 window (out-of-range ignored):
 * max_pool_nd(h, 5), separable along rows then columns. tmp: [HP, WP]. */
static void max_filter5(int32_t *hmax, int32_t *tmp, const int32_t *h, int64_t HP, int64_t WP, const CpCtx *ctx) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t y = 0; y < HP; y++) { /* along axis 1 (y) */
        int64_t ya = y - 2 < 0 ? 0 : y - 2, yb = y + 2 > HP - 1 ? HP - 1 : y + 2;
        for (int64_t x = 0; x < WP; x++) {
            int32_t m = h[ya * WP + x];
            for (int64_t yy = ya + 1; yy <= yb; yy++) m = h[yy * WP + x] > m ? h[yy * WP + x] : m;
            tmp[y * WP + x] = m;
        }
    }
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t y = 0; y < HP; y++) { /* along axis 2 (x) */
        const int32_t *r = tmp + y * WP;
        for (int64_t x = 0; x < WP; x++) {
            int64_t xa = x - 2 < 0 ? 0 : x - 2, xb = x + 2 > WP - 1 ? WP - 1 : x + 2;
            int32_t m = r[xa];
            for (int64_t xx = xa + 1; xx <= xb; xx++) m = r[xx] > m ? r[xx] : m;
            hmax[y * WP + x] = m;
        }
    }
}

/* Grow seed s (flat index in [HP, WP]) for 5 steps inside its 11x11 window:
 * S = 3x3 max filter of S (within the window), S *= (h > 2); then write label
 * into M at every bin of S. */
static void grow_seed(int32_t *M, const int32_t *h, int64_t WP, int64_t s, int32_t label) {
    uint8_t S[11][11], T[11][11];
    const int64_t sy = s / WP - 5, sx = s % WP - 5; /* window origin */
    memset(S, 0, sizeof S);
    S[5][5] = 1;
    for (int it = 0; it < 5; it++) {
        for (int y = 0; y < 11; y++)
            for (int x = 0; x < 11; x++) {
                uint8_t m = 0;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        int yy = y + dy, xx = x + dx;
                        if (yy >= 0 && yy < 11 && xx >= 0 && xx < 11) m |= S[yy][xx];
                    }
                T[y][x] = (uint8_t)(m && h[(sy + y) * WP + sx + x] > 2);
            }
        memcpy(S, T, sizeof S);
    }
    for (int y = 0; y < 11; y++)
        for (int x = 0; x < 11; x++)
            if (S[y][x]) M[(sy + y) * WP + sx + x] = label;
}

/* Remove labels over max_size_fraction * H * W pixels, then renumber 1..K in
 * order of first appearance in a row-major scan (fastremap.mask + renumber). */
static void remove_big_and_renumber(uint32_t *masks, int64_t HW, int64_t nlab, double big) {
    int64_t *count = (int64_t *)cp_calloc((size_t)nlab + 1, sizeof(int64_t));
    for (int64_t i = 0; i < HW; i++) count[masks[i]]++;
    uint32_t *map = (uint32_t *)cp_calloc((size_t)nlab + 1, sizeof(uint32_t));
    uint8_t *seen = (uint8_t *)cp_calloc((size_t)nlab + 1, 1);
    uint32_t next = 1;
    for (int64_t i = 0; i < HW; i++) {
        uint32_t l = masks[i];
        if (l == 0 || (double)count[l] > big) {
            masks[i] = 0;
            continue;
        }
        if (!seen[l]) {
            seen[l] = 1;
            map[l] = next++;
        }
        masks[i] = map[l];
    }
    cp_free(count);
    cp_free(map);
    cp_free(seen);
}

int dyn_get_masks(uint32_t *masks, const float *pos, const int64_t *idx, int64_t N, int64_t H, int64_t W,
                  double max_size_fraction, const CpCtx *ctx, CpErr *e) {
    if (H < 1 || W < 1 || N < 0 || N > H * W)
        return cp_fail(e, "dynamics.c: get_masks shape H %lld W %lld N %lld is invalid", (long long)H,
                       (long long)W, (long long)N);
    const int64_t HP = H + 2 * DYN_RPAD, WP = W + 2 * DYN_RPAD, HWP = HP * WP;
    int64_t *q = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)(N > 0 ? N : 1));
    int32_t *h = (int32_t *)cp_calloc((size_t)HWP, sizeof(int32_t));
    int32_t *hmax = (int32_t *)cp_malloc(sizeof(int32_t) * (size_t)HWP);
    int32_t *M = (int32_t *)cp_malloc(sizeof(int32_t) * (size_t)HWP);
    /* q = clamp(int(pos) + rpad, 0, L + rpad - 1); integer histogram */
    for (int64_t n = 0; n < N; n++) {
        int64_t y = (int64_t)(int32_t)pos[n] + DYN_RPAD, x = (int64_t)(int32_t)pos[N + n] + DYN_RPAD;
        y = y < 0 ? 0 : (y > H + DYN_RPAD - 1 ? H + DYN_RPAD - 1 : y);
        x = x < 0 ? 0 : (x > W + DYN_RPAD - 1 ? W + DYN_RPAD - 1 : x);
        q[n] = y * WP + x;
        h[q[n]]++;
    }
    max_filter5(hmax, M, h, HP, WP, ctx);
    /* seeds: h >= hmax and h > 10, row-major (torch.nonzero) */
    int64_t ns = 0;
    for (int64_t i = 0; i < HWP; i++) ns += h[i] > 10 && h[i] >= hmax[i];
    int64_t *seeds = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)(ns > 0 ? ns : 1));
    int32_t *cnt = (int32_t *)cp_malloc(sizeof(int32_t) * (size_t)(ns > 0 ? ns : 1));
    int64_t *order = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)(ns > 0 ? ns : 1));
    ns = 0;
    for (int64_t i = 0; i < HWP; i++)
        if (h[i] > 10 && h[i] >= hmax[i]) {
            seeds[ns] = i;
            cnt[ns++] = h[i];
        }
    dyn_argsort_torch(order, cnt, ns); /* npts.argsort() */
    memset(M, 0, sizeof(int32_t) * (size_t)HWP);
    for (int64_t k = 0; k < ns; k++) { /* later (larger-count) seeds overwrite */
        int64_t s = seeds[order[k]];
        CP_ASSERT(s / WP >= 5 && s / WP < HP - 5 && s % WP >= 5 && s % WP < WP - 5);
        grow_seed(M, h, WP, s, (int32_t)(k + 1));
    }
    memset(masks, 0, sizeof(uint32_t) * (size_t)(H * W));
    for (int64_t n = 0; n < N; n++) masks[idx[n]] = (uint32_t)M[q[n]];
    if (ns > 0) remove_big_and_renumber(masks, H * W, ns, (double)(H * W) * max_size_fraction);
    cp_free(q);
    cp_free(h);
    cp_free(hmax);
    cp_free(M);
    cp_free(seeds);
    cp_free(cnt);
    cp_free(order);
    return CP_OK;
}

/* ------------------------------------------------------- compute_masks */

int dyn_compute_masks(uint32_t *masks, const float *dP, const float *cellprob, int64_t H, int64_t W,
                      float cellprob_threshold, uint32_t niter, double max_size_fraction, const CpCtx *ctx,
                      CpErr *e) {
    if (H < 1 || W < 1) return cp_fail(e, "dynamics.c: image shape %lld x %lld is empty", (long long)H, (long long)W);
    const int64_t HW = H * W;
    for (int64_t i = 0; i < HW; i++)
        if (!isfinite(dP[i]) || !isfinite(dP[HW + i]) || !isfinite(cellprob[i]))
            return cp_fail(e, "dynamics.c: non-finite flow or cellprob at pixel (%lld, %lld); check the network "
                              "output", (long long)(i / W), (long long)(i % W));
    if (niter == 0) niter = 200;
    float *F = (float *)cp_malloc(sizeof(float) * (size_t)(2 * HW));
    int64_t *idx = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)HW);
    int64_t N = dyn_flow_field(F, idx, dP, cellprob, H, W, cellprob_threshold, ctx);
    int rc = CP_OK;
    if (N == 0) {
        memset(masks, 0, sizeof(uint32_t) * (size_t)HW); /* "No cell pixels found." */
    } else {
        float *pos = (float *)cp_malloc(sizeof(float) * (size_t)(2 * N));
        rc = dyn_follow_flows(pos, F, idx, N, H, W, niter, ctx, e);
        if (rc == CP_OK) rc = dyn_get_masks(masks, pos, idx, N, H, W, max_size_fraction, ctx, e);
        cp_free(pos);
    }
    cp_free(F);
    cp_free(idx);
    return rc;
}
