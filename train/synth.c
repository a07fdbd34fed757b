/* synth.c - seeded synthetic cells; see synth.h for the model and the
 * randomness layout.
 *
 * Steps (all sequential, fixed order):
 *   1. draw the cell count and each cell's shape, intensity and texture
 *      (Philox counter (index, cell, 0..1, 0));
 *   2. place cells one by one: a touching cell at 0.7 * (r_k + r_j) from an
 *      earlier cell j (every ellipse contains the disc of radius
 *      r * sqrt(aspect) >= 0.77 r, so the two overlap), an isolated cell where
 *      no ellipse can reach it (centre distance >= (r_k + r_m) / sqrt(min_aspect)
 *      + 2); attempt t uses counter (index, cell, 2, t); a cell with no valid
 *      spot after SYNTH_ATTEMPTS attempts is left out;
 *   3. rasterise in placement order (later cells overwrite: they win shared
 *      pixels), keep each cell's largest 4-connected piece, drop pieces under
 *      min_area, renumber 1..n in row-major first-appearance order;
 *   4. paint background + textured cells, blur, add noise, clamp to [0, 1].
 *
 * Legend: H W image size, K drawn cells. Coordinates: pixel (y, x) has its
 * centre at (y, x); a pixel belongs to an ellipse when its centre is inside. */
#include "synth.h"

#include <math.h>
#include <string.h>

#include "dmath.h"
#include "philox.h"

#define SYNTH_ATTEMPTS 100
#define SYNTH_TWO_PI 6.28318530717958647692f
#define SYNTH_ALL 0xFFFFFFFFu /* "cell" counter value for per-image draws */

typedef struct {
    float cx, cy;      /* centre (x, y) in pixels */
    float a, b;        /* semi-axes, a >= b */
    float cs, sn;      /* cos, sin of the orientation */
    float r;           /* equivalent radius sqrt(a * b) */
    float level;       /* intensity above background */
    float fx, fy;      /* texture angular frequencies along the axes */
    float phx, phy;    /* texture phases */
    int touch;         /* placed touching an earlier cell */
    int placed;        /* found a spot */
} SynthCell;

void synth_default_params(SynthParams *p, int64_t H, int64_t W, float diameter) {
    memset(p, 0, sizeof *p);
    p->diameter = diameter;
    double area = 3.14159265358979 * (double)diameter * (double)diameter / 4.0;
    double n = 0.3 * (double)H * (double)W / area;
    p->max_cells = n < 1.0 ? 1 : n > 10000.0 ? 10000 : (int)n;
    p->min_cells = p->max_cells / 2 > 1 ? p->max_cells / 2 : 1;
    p->size_jitter = 0.25f;
    p->min_aspect = 0.65f;
    p->touch_frac = 0.5f;
    p->min_area = (int)(area / 8.0) > 4 ? (int)(area / 8.0) : 4;
    p->bg_level = 0.1f;
    p->bg_gradient = 0.1f;
    p->cell_level = 0.5f;
    p->texture = 0.2f;
    p->noise = 0.03f;
    p->blur = 1.0f;
}

static int in_range(float v, float lo, float hi) { return v >= lo && v <= hi; } /* false for NaN */

int synth_check_params(const SynthParams *p, int64_t H, int64_t W, CpErr *e) {
    if (H < 16 || W < 16 || H > 16384 || W > 16384)
        return cp_fail(e, "synth: image size %lldx%lld outside 16..16384", (long long)H, (long long)W);
    float dmax = (float)(H < W ? H : W) / 2.0f;
    if (!in_range(p->diameter, 4.0f, dmax))
        return cp_fail(e, "synth: diameter %g outside 4..%g (half the smaller image side)", p->diameter, dmax);
    if (p->min_cells < 0 || p->max_cells < p->min_cells || p->max_cells > 100000)
        return cp_fail(e, "synth: cell count range [%d, %d] invalid (0 <= min <= max <= 100000)", p->min_cells,
                       p->max_cells);
    double cover = (double)p->max_cells * 3.14159265358979 * (double)p->diameter * (double)p->diameter / 4.0;
    if (cover > 0.5 * (double)H * (double)W)
        return cp_fail(e, "synth: %d cells of diameter %g cover more than half of %lldx%lld; lower the count",
                       p->max_cells, p->diameter, (long long)H, (long long)W);
    if (!in_range(p->size_jitter, 0.0f, 0.9f)) return cp_fail(e, "synth: size_jitter %g outside 0..0.9", p->size_jitter);
    if (!in_range(p->min_aspect, 0.3f, 1.0f)) return cp_fail(e, "synth: min_aspect %g outside 0.3..1", p->min_aspect);
    if (!in_range(p->touch_frac, 0.0f, 1.0f)) return cp_fail(e, "synth: touch_frac %g outside 0..1", p->touch_frac);
    if (p->min_area < 1) return cp_fail(e, "synth: min_area %d must be >= 1", p->min_area);
    if (!in_range(p->bg_level, 0.0f, 1.0f) || !in_range(p->bg_gradient, 0.0f, 1.0f) ||
        !in_range(p->cell_level, 0.0f, 1.0f) || !in_range(p->texture, 0.0f, 1.0f))
        return cp_fail(e, "synth: bg_level, bg_gradient, cell_level and texture must lie in 0..1");
    if (!in_range(p->noise, 0.0f, 1.0f)) return cp_fail(e, "synth: noise %g outside 0..1", p->noise);
    if (!in_range(p->blur, 0.0f, 20.0f)) return cp_fail(e, "synth: blur %g outside 0..20", p->blur);
    return CP_OK;
}

/* Step 1: shape, intensity and texture of cell k. */
static void draw_cell(SynthCell *c, const SynthParams *p, CpRngKey key, uint32_t index, uint32_t k) {
    CpU32x4 b0 = cp_rng_block(key, index, k, 0, 0);
    CpU32x4 b1 = cp_rng_block(key, index, k, 1, 0);
    float s = 1.0f + p->size_jitter * (2.0f * cp_u01(b0.v[0]) - 1.0f);
    float aspect = p->min_aspect + (1.0f - p->min_aspect) * cp_u01(b0.v[1]);
    float theta = SYNTH_TWO_PI * cp_u01(b0.v[2]);
    c->r = 0.5f * p->diameter * s;        /* area pi a b = pi r^2 */
    c->a = c->r / sqrtf(aspect);
    c->b = c->r * sqrtf(aspect);
    c->cs = cp_cosf(theta);
    c->sn = cp_sinf(theta);
    c->level = p->cell_level * (0.6f + 0.8f * cp_u01(b0.v[3]));
    float wave = 0.6f * p->diameter;      /* texture wavelength ~ the diameter */
    c->fx = SYNTH_TWO_PI / (wave * (0.8f + 0.4f * cp_u01(b1.v[0])));
    c->fy = SYNTH_TWO_PI / (wave * (0.8f + 0.4f * cp_u01(b1.v[1])));
    c->phx = SYNTH_TWO_PI * cp_u01(b1.v[2]);
    c->phy = SYNTH_TWO_PI * cp_u01(b1.v[3]);
    c->touch = 0;
    c->placed = 0;
}

static float dist2(float x0, float y0, float x1, float y1) {
    float dx = x0 - x1, dy = y0 - y1;
    return dx * dx + dy * dy;
}

/* May cell k sit at (x, y)? Touching cells keep 0.7 (r_k + r_m) from every
 * placed cell (their partner included); isolated cells stay out of reach. */
static int spot_ok(const SynthCell *cells, int k, float x, float y, int touching, float reach) {
    for (int m = 0; m < k; m++) {
        if (!cells[m].placed) continue;
        float rr = cells[k].r + cells[m].r;
        float need = touching ? 0.7f * rr - 0.01f : rr * reach + 2.0f;
        if (dist2(x, y, cells[m].cx, cells[m].cy) < need * need) return 0;
    }
    return 1;
}

/* Step 2: find a spot for cell k (touching with probability touch_frac). */
static void place_cell(SynthCell *cells, int k, const SynthParams *p, CpRngKey key, uint32_t index, int64_t H,
                       int64_t W) {
    SynthCell *c = &cells[k];
    int nplaced = 0;
    for (int m = 0; m < k; m++) nplaced += cells[m].placed;
    CpU32x4 bt = cp_rng_block(key, index, (uint32_t)k, 3, 0);
    int touching = nplaced > 0 && cp_u01(bt.v[0]) < p->touch_frac;
    float reach = 1.0f / sqrtf(p->min_aspect); /* semi-major axis <= r * reach */
    for (uint32_t t = 0; t < SYNTH_ATTEMPTS; t++) {
        CpU32x4 b = cp_rng_block(key, index, (uint32_t)k, 2, t);
        float x, y;
        if (touching) {
            int j = (int)(((uint64_t)b.v[0] * (uint64_t)nplaced) >> 32); /* j-th placed cell */
            int m = 0;
            for (;; m++)
                if (cells[m].placed && j-- == 0) break;
            float ang = SYNTH_TWO_PI * cp_u01(b.v[1]);
            float d = 0.7f * (c->r + cells[m].r);
            x = cells[m].cx + d * cp_cosf(ang);
            y = cells[m].cy + d * cp_sinf(ang);
        } else {
            x = cp_u01(b.v[2]) * (float)(W - 1);
            y = cp_u01(b.v[3]) * (float)(H - 1);
        }
        if (x < 0.0f || y < 0.0f || x > (float)(W - 1) || y > (float)(H - 1)) continue;
        if (!spot_ok(cells, k, x, y, touching, reach)) continue;
        c->cx = x;
        c->cy = y;
        c->touch = touching;
        c->placed = 1;
        return;
    }
}

/* Ellipse value ((u/a)^2 + (v/b)^2) of pixel (y, x) for cell c; u, v are the
 * coordinates along the axes. <= 1 inside. */
static float ellipse_q(const SynthCell *c, float x, float y, float *u, float *v) {
    float dx = x - c->cx, dy = y - c->cy;
    *u = dx * c->cs + dy * c->sn;
    *v = dy * c->cs - dx * c->sn;
    float qu = *u / c->a, qv = *v / c->b;
    return qu * qu + qv * qv;
}

/* Step 3a: owner[p] = 1 + cell index of the last cell covering p, else 0. */
static void rasterise(uint32_t *owner, const SynthCell *cells, int K, int64_t H, int64_t W) {
    memset(owner, 0, sizeof(uint32_t) * (size_t)(H * W));
    for (int k = 0; k < K; k++) {
        const SynthCell *c = &cells[k];
        if (!c->placed) continue;
        int64_t y0 = (int64_t)floorf(c->cy - c->a) - 1, y1 = (int64_t)ceilf(c->cy + c->a) + 1;
        int64_t x0 = (int64_t)floorf(c->cx - c->a) - 1, x1 = (int64_t)ceilf(c->cx + c->a) + 1;
        if (y0 < 0) y0 = 0;
        if (x0 < 0) x0 = 0;
        if (y1 > H - 1) y1 = H - 1;
        if (x1 > W - 1) x1 = W - 1;
        for (int64_t y = y0; y <= y1; y++)
            for (int64_t x = x0; x <= x1; x++) {
                float u, v;
                if (ellipse_q(c, (float)x, (float)y, &u, &v) <= 1.0f) owner[y * W + x] = (uint32_t)k + 1;
            }
    }
}

/* Step 3b: keep each cell's largest 4-connected piece (ties: the first in
 * row-major order), drop pieces under min_area, renumber 1..n by first
 * appearance. owner [H, W] in (1 + cell index), labels [H, W] out. Returns n. */
static int clean_labels(uint32_t *labels, const uint32_t *owner, int K, int min_area, int64_t H, int64_t W) {
    int64_t n = H * W;
    int32_t *comp = (int32_t *)cp_malloc(sizeof(int32_t) * (size_t)n);  /* piece id per pixel, -1 = bg */
    int32_t *queue = (int32_t *)cp_malloc(sizeof(int32_t) * (size_t)n);
    int64_t *best = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)(K + 1)); /* best size per cell */
    int32_t *best_id = (int32_t *)cp_malloc(sizeof(int32_t) * (size_t)(K + 1));
    for (int k = 0; k <= K; k++) best[k] = 0, best_id[k] = -1;
    for (int64_t i = 0; i < n; i++) comp[i] = -1;
    int32_t npieces = 0;
    for (int64_t s = 0; s < n; s++) {
        if (!owner[s] || comp[s] >= 0) continue;
        uint32_t o = owner[s];
        int64_t head = 0, tail = 0;
        comp[s] = npieces;
        queue[tail++] = (int32_t)s;
        while (head < tail) { /* breadth-first flood fill of one piece */
            int64_t q = queue[head++], y = q / W, x = q % W;
            int64_t nb[4] = {y > 0 ? q - W : -1, y < H - 1 ? q + W : -1, x > 0 ? q - 1 : -1, x < W - 1 ? q + 1 : -1};
            for (int t = 0; t < 4; t++)
                if (nb[t] >= 0 && owner[nb[t]] == o && comp[nb[t]] < 0) {
                    comp[nb[t]] = npieces;
                    queue[tail++] = (int32_t)nb[t];
                }
        }
        if (tail > best[o]) best[o] = tail, best_id[o] = npieces;
        npieces++;
    }
    uint32_t *newlab = (uint32_t *)cp_calloc((size_t)(K + 1), sizeof(uint32_t));
    uint32_t next = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t o = owner[i];
        labels[i] = 0;
        if (!o || comp[i] != best_id[o] || best[o] < min_area) continue;
        if (!newlab[o]) newlab[o] = ++next;
        labels[i] = newlab[o];
    }
    cp_free(comp);
    cp_free(queue);
    cp_free(best);
    cp_free(best_id);
    cp_free(newlab);
    return (int)next;
}

/* Step 4a: background + textured cells. cell_of[label] = cell index. */
static void paint(float *img, const uint32_t *labels, const uint32_t *owner, const SynthCell *cells,
                  const SynthParams *p, CpRngKey key, uint32_t index, int64_t H, int64_t W) {
    CpU32x4 bg = cp_rng_block(key, index, SYNTH_ALL, 1, 0);
    float ang = SYNTH_TWO_PI * cp_u01(bg.v[0]);
    float gx = p->bg_gradient * cp_cosf(ang), gy = p->bg_gradient * cp_sinf(ang);
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
            float fy = (float)y / (float)(H - 1) - 0.5f, fx = (float)x / (float)(W - 1) - 0.5f;
            float v = p->bg_level + (fx * gx + fy * gy);
            int64_t i = y * W + x;
            if (labels[i]) { /* owner is the surviving cell of this label */
                const SynthCell *c = &cells[owner[i] - 1];
                float u, w;
                float q = ellipse_q(c, (float)x, (float)y, &u, &w);
                float tex = cp_sinf(c->fx * u + c->phx) * cp_cosf(c->fy * w + c->phy);
                v += c->level * (1.0f + p->texture * tex) * (1.0f - 0.3f * q); /* dimmer at the rim */
            }
            img[i] = v;
        }
}

/* Step 4b: separable Gaussian blur, radius ceil(3 sigma), replicated edges,
 * normalised weights, each output summed in tap order -R..R. */
static void blur(float *img, int64_t H, int64_t W, float sigma) {
    int R = (int)ceilf(3.0f * sigma);
    if (R < 1) return;
    float *wt = (float *)cp_malloc(sizeof(float) * (size_t)(2 * R + 1));
    float sum = 0.0f;
    for (int i = -R; i <= R; i++) {
        wt[i + R] = cp_expf(-(float)(i * i) / (2.0f * sigma * sigma));
        sum += wt[i + R];
    }
    for (int i = 0; i <= 2 * R; i++) wt[i] /= sum;
    float *tmp = (float *)cp_malloc(sizeof(float) * (size_t)(H * W));
    for (int64_t y = 0; y < H; y++) /* along x: img -> tmp */
        for (int64_t x = 0; x < W; x++) {
            float acc = 0.0f;
            for (int i = -R; i <= R; i++) {
                int64_t xx = x + i < 0 ? 0 : x + i > W - 1 ? W - 1 : x + i;
                acc += wt[i + R] * img[y * W + xx];
            }
            tmp[y * W + x] = acc;
        }
    for (int64_t y = 0; y < H; y++) /* along y: tmp -> img */
        for (int64_t x = 0; x < W; x++) {
            float acc = 0.0f;
            for (int i = -R; i <= R; i++) {
                int64_t yy = y + i < 0 ? 0 : y + i > H - 1 ? H - 1 : y + i;
                acc += wt[i + R] * tmp[yy * W + x];
            }
            img[y * W + x] = acc;
        }
    cp_free(tmp);
    cp_free(wt);
}

int synth_image(float *img, uint32_t *labels, int64_t H, int64_t W, const SynthParams *p, uint32_t seed,
                uint32_t index, int *ncells, CpErr *e) {
    if (synth_check_params(p, H, W, e)) return CP_EFAIL;
    CpRngKey lay = cp_rng_key(seed, SYNTH_STREAM_LAYOUT);
    CpRngKey noise = cp_rng_key(seed, SYNTH_STREAM_NOISE);
    int K = p->min_cells + (int)cp_rng_below(lay, index, SYNTH_ALL, 0, (uint32_t)(p->max_cells - p->min_cells + 1));
    SynthCell *cells = (SynthCell *)cp_calloc((size_t)(K > 0 ? K : 1), sizeof(SynthCell));
    for (int k = 0; k < K; k++) {
        draw_cell(&cells[k], p, lay, index, (uint32_t)k);
        place_cell(cells, k, p, lay, index, H, W);
    }
    uint32_t *owner = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)(H * W));
    rasterise(owner, cells, K, H, W);
    int n = clean_labels(labels, owner, K, p->min_area, H, W);
    paint(img, labels, owner, cells, p, lay, index, H, W);
    if (p->blur > 0.0f) blur(img, H, W, p->blur);
    for (int64_t i = 0; i < H * W; i++) { /* camera noise, then the [0, 1] range */
        float v = img[i] + p->noise * cp_rng_normal(noise, index, 0, (uint32_t)i);
        img[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
    cp_free(owner);
    cp_free(cells);
    if (ncells) *ncells = n;
    return CP_OK;
}
