/* tiles.c - Cellpose v3 tiling, taper blending and bilinear resize; see
 * tiles.h for the layouts, the exact Cellpose rules and the determinism
 * argument (blending is a gather in tile-index order). */
#include "tiles.h"

#include <math.h>
#include <string.h>

#include "dmath.h"

/* Tiles per axis and tile side for a padded length lp (make_tiles). */
static int tiles_axis(int64_t lp, int bsize, double overlap, int *b) {
    *b = lp < bsize ? (int)lp : bsize;
    if (lp <= bsize) return 1;
    /* int(np.ceil((1. + 2 * tile_overlap) * Ly / bsize)) */
    return (int)ceil((1.0 + 2.0 * overlap) * (double)lp / (double)bsize);
}

void tiles_taper_1d(double *m, int l, int B, double sig) {
    double centre = (double)(B - 1) / 2.0;            /* xm.mean() of arange(B) */
    double half = (double)B / 2.0 - TILES_TAPER_EDGE; /* bsize / 2 - 20 */
    int first = B / 2 - l / 2;
    for (int r = 0; r < l; r++) {
        double d = fabs((double)(first + r) - centre);
        double a = (d - half) / sig;
        if (a > 708.0) a = 708.0; /* cp_dm_expd's range; exp(-708) is 0 next to 1 */
        if (a < -708.0) a = -708.0;
        m[r] = 1.0 / (1.0 + cp_dm_expd(a));
    }
}

void tiles_taper(float *mask, int ly, int lx, double sig) {
    int B = TILES_TAPER_MIN;
    if (ly > B) B = ly;
    if (lx > B) B = lx;
    double *my = (double *)cp_malloc(sizeof(double) * (size_t)ly);
    double *mx = (double *)cp_malloc(sizeof(double) * (size_t)lx);
    tiles_taper_1d(my, ly, B, sig);
    tiles_taper_1d(mx, lx, B, sig);
    for (int r = 0; r < ly; r++)
        for (int s = 0; s < lx; s++) mask[(int64_t)r * lx + s] = (float)(mx[s] * my[r]);
    cp_free(my);
    cp_free(mx);
}

/* Augment mode per axis: padded length lp, extent lt = max(lp, bsize). */
static int tiles_axis_augment(int64_t lp, int bsize, int *b) {
    *b = bsize;
    int n = (int)ceil(2.0 * (double)lp / (double)bsize); /* max(2, int(np.ceil(2. * Ly / bsize))) */
    return n < 2 ? 2 : n;
}

int tiles_plan(TilePlan *t, int64_t H, int64_t W, int bsize, double overlap, int augment, CpErr *e) {
    memset(t, 0, sizeof *t);
    if (H < 1 || W < 1) return cp_fail(e, "tiles: image is %lldx%lld; need at least 1x1", (long long)H, (long long)W);
    if (H > ((int64_t)1 << 40) || W > ((int64_t)1 << 40))
        return cp_fail(e, "tiles: image %lldx%lld is absurdly large", (long long)H, (long long)W);
    if (bsize < 1) return cp_fail(e, "tiles: tile size %d; need >= 1", bsize);
    if (!isfinite(overlap)) return cp_fail(e, "tiles: tile overlap is not a finite number");
    overlap = overlap < 0.05 ? 0.05 : overlap > 0.5 ? 0.5 : overlap; /* make_tiles' clip */
    t->H = H, t->W = W, t->bsize = bsize, t->augment = augment != 0;
    tiles_pad_1d(H, &t->pad_y1, &t->pad_y2);
    tiles_pad_1d(W, &t->pad_x1, &t->pad_x2);
    t->Hp = H + t->pad_y1 + t->pad_y2;
    t->Wp = W + t->pad_x1 + t->pad_x2;
    /* tile origins span [0, Lt - b], Lt = max(Lp, bsize) in augment mode */
    int64_t Ht = t->Hp, Wt = t->Wp;
    if (t->augment) {
        t->ny = tiles_axis_augment(t->Hp, bsize, &t->by);
        t->nx = tiles_axis_augment(t->Wp, bsize, &t->bx);
        Ht = Ht < bsize ? bsize : Ht, Wt = Wt < bsize ? bsize : Wt;
    } else {
        t->ny = tiles_axis(t->Hp, bsize, overlap, &t->by);
        t->nx = tiles_axis(t->Wp, bsize, overlap, &t->bx);
    }
    t->ystart = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)t->ny);
    t->xstart = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)t->nx);
    for (int j = 0; j < t->ny; j++) t->ystart[j] = tiles_linspace_int(Ht - t->by, t->ny, j);
    for (int i = 0; i < t->nx; i++) t->xstart[i] = tiles_linspace_int(Wt - t->bx, t->nx, i);
    int B = TILES_TAPER_MIN;
    if (t->by > B) B = t->by;
    if (t->bx > B) B = t->bx;
    t->my = (double *)cp_malloc(sizeof(double) * (size_t)t->by);
    t->mx = (double *)cp_malloc(sizeof(double) * (size_t)t->bx);
    tiles_taper_1d(t->my, t->by, B, TILES_TAPER_SIG);
    tiles_taper_1d(t->mx, t->bx, B, TILES_TAPER_SIG);
    return CP_OK;
}

/* v4's get_pad_yx(min_size = (b, b)) and tile axis for one axis of length L
 * < b (L >= b keeps v3's plan): pads, padded size, tile count, starts. */
static void v4_axis(int64_t L, int b, double ov, int augment, int64_t *p1, int64_t *p2, int64_t *Lp, int *n,
                    int64_t **start) {
    int64_t lpad = b - L - TILES_DIV > 0 ? b - L - TILES_DIV : 0;
    *p1 = TILES_DIV / 2 + lpad / 2, *p2 = TILES_DIV / 2 + lpad - lpad / 2;
    *Lp = L + *p1 + *p2; /* max(L + 16, b) >= b: tiles are always b */
    if (augment) {        /* n = max(2, ceil(2 Lp / b)) */
        int64_t q = (2 * *Lp + b - 1) / b;
        *n = (int)(q < 2 ? 2 : q);
    } else { /* n = 1 if Lp <= b else ceil((1 + 2 ov) Lp / b), in double as numpy */
        *n = *Lp <= b ? 1 : (int)ceil((1.0 + 2.0 * ov) * (double)*Lp / (double)b);
    }
    cp_free(*start);
    *start = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)*n);
    for (int k = 0; k < *n; k++) (*start)[k] = tiles_linspace_int(*Lp - b, *n, k);
}

int tiles_plan_v4(TilePlan *t, int64_t H, int64_t W, int bsize, double overlap, int augment, CpErr *e) {
    if (tiles_plan(t, H, W, bsize, overlap, augment, e) != CP_OK) return CP_EFAIL;
    double ov = overlap < 0.05 ? 0.05 : overlap > 0.5 ? 0.5 : overlap; /* make_tiles' clip */
    if (H < bsize) v4_axis(H, bsize, ov, augment, &t->pad_y1, &t->pad_y2, &t->Hp, &t->ny, &t->ystart);
    if (W < bsize) v4_axis(W, bsize, ov, augment, &t->pad_x1, &t->pad_x2, &t->Wp, &t->nx, &t->xstart);
    if (t->by != bsize || t->bx != bsize) { /* the taper of bsize x bsize tiles */
        int B = bsize > TILES_TAPER_MIN ? bsize : TILES_TAPER_MIN;
        t->by = t->bx = bsize;
        cp_free(t->my), cp_free(t->mx);
        t->my = (double *)cp_malloc(sizeof(double) * (size_t)bsize);
        t->mx = (double *)cp_malloc(sizeof(double) * (size_t)bsize);
        tiles_taper_1d(t->my, bsize, B, TILES_TAPER_SIG);
        tiles_taper_1d(t->mx, bsize, B, TILES_TAPER_SIG);
    }
    return CP_OK;
}

void tiles_plan_free(TilePlan *t) {
    cp_free(t->ystart);
    cp_free(t->xstart);
    cp_free(t->my);
    cp_free(t->mx);
    memset(t, 0, sizeof *t);
}

void tiles_extract(float *tile, const TilePlan *t, const float *img, int C, int tile_index) {
    int64_t oy = t->ystart[tile_index / t->nx] - t->pad_y1; /* image row of tile row 0 */
    int64_t ox = t->xstart[tile_index % t->nx] - t->pad_x1;
    int fr, fc;
    tiles_flips(t, tile_index, &fr, &fc);
    for (int c = 0; c < C; c++)
        for (int r = 0; r < t->by; r++) {
            float *dst = tile + ((int64_t)c * t->by + r) * t->bx;
            int64_t y = oy + (fr ? t->by - 1 - r : r);
            for (int s = 0; s < t->bx; s++) {
                int64_t x = ox + (fc ? t->bx - 1 - s : s);
                int inside = y >= 0 && y < t->H && x >= 0 && x < t->W;
                dst[s] = inside ? img[((int64_t)c * t->H + y) * t->W + x] : 0.0f;
            }
        }
}

void tiles_unaugment(float *dst, const float *src, const TilePlan *t, int nout, int tile_index) {
    int fr, fc;
    tiles_flips(t, tile_index, &fr, &fc);
    for (int c = 0; c < nout; c++) {
        float sign = (c == 0 && fr) || (c == 1 && fc) ? -1.0f : 1.0f;
        for (int r = 0; r < t->by; r++) {
            const float *srow = src + ((int64_t)c * t->by + (fr ? t->by - 1 - r : r)) * t->bx;
            float *drow = dst + ((int64_t)c * t->by + r) * t->bx;
            for (int s = 0; s < t->bx; s++) drow[s] = sign * srow[fc ? t->bx - 1 - s : s];
        }
    }
}

/* Covering tile range [*lo, *hi) along one axis for padded index p: the
 * starts ascend, so the tiles with start <= p < start + b are contiguous. */
static void cover_range(const int64_t *start, int n, int b, int64_t p, int *lo, int *hi) {
    int a = 0;
    while (a < n && start[a] + b <= p) a++;
    int z = a;
    while (z < n && start[z] <= p) z++;
    *lo = a, *hi = z;
}

/* One padded row y of the window: out rows [c, Wo] with stride plane. */
static void average_row(float *out, int64_t plane, const TilePlan *t, const float *ytiles, int nout, int64_t y,
                        int64_t x0, int64_t Wo) {
    int jlo, jhi;
    cover_range(t->ystart, t->ny, t->by, y, &jlo, &jhi);
    int64_t tsz = (int64_t)t->by * t->bx;
    for (int64_t xo = 0; xo < Wo; xo++) {
        int64_t x = x0 + xo;
        int ilo, ihi;
        cover_range(t->xstart, t->nx, t->bx, x, &ilo, &ihi);
        for (int c = 0; c < nout; c++) {
            float num = 0.0f; /* numpy: yf float32, each += done in float64 */
            double den = 0.0; /* numpy: Navg float64 */
            for (int j = jlo; j < jhi; j++) {
                int r = (int)(y - t->ystart[j]);
                for (int i = ilo; i < ihi; i++) {
                    int s = (int)(x - t->xstart[i]);
                    double m = t->mx[s] * t->my[r]; /* mask * mask[:, None] */
                    const float *yt = ytiles + ((int64_t)(j * t->nx + i) * nout + c) * tsz;
                    num = (float)((double)num + (double)yt[(int64_t)r * t->bx + s] * m);
                    den += m;
                }
            }
            out[c * plane + xo] = (float)((double)num / den);
        }
    }
}

void tiles_average(float *out, const TilePlan *t, const float *ytiles, int nout, int64_t y0, int64_t x0,
                   int64_t Ho, int64_t Wo, const CpCtx *ctx) {
    CP_ASSERT(y0 >= 0 && x0 >= 0 && y0 + Ho <= t->Hp && x0 + Wo <= t->Wp);
    int64_t plane = Ho * Wo;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t yo = 0; yo < Ho; yo++) average_row(out + yo * Wo, plane, t, ytiles, nout, y0 + yo, x0, Wo);
}

int tiles_run(float *out, const float *img, int C, int64_t H, int64_t W, int nout, const TileRunOpts *opts,
              TileForwardFn fwd, void *fctx, const CpCtx *ctx, CpErr *e) {
    if (C < 1 || nout < 1) return cp_fail(e, "tiles: %d input and %d output channels; need >= 1", C, nout);
    if (opts->batch < 1) return cp_fail(e, "tiles: batch size %d; need >= 1", opts->batch);
    TilePlan t;
    int rc = (opts->v4 ? tiles_plan_v4 : tiles_plan)(&t, H, W, opts->bsize, opts->overlap, opts->augment, e);
    if (rc != CP_OK) return CP_EFAIL;
    int nt = tiles_count(&t), nb = opts->batch < nt ? opts->batch : nt;
    int64_t tin = (int64_t)C * t.by * t.bx, tout = (int64_t)nout * t.by * t.bx;
    float *ytiles = (float *)cp_malloc(sizeof(float) * (size_t)(nt * tout)); /* [NT, nout, by, bx] */
    float *xb = (float *)cp_malloc(sizeof(float) * (size_t)(nb * tin));     /* [nb, C, by, bx] */
    float *yb = (float *)cp_malloc(sizeof(float) * (size_t)(nb * tout));    /* [nb, nout, by, bx] */
    for (int k0 = 0; k0 < nt && rc == CP_OK; k0 += nb) {
        int n = nt - k0 < nb ? nt - k0 : nb;
        for (int b = 0; b < n; b++) {
            int ti = opts->order ? opts->order[k0 + b] : k0 + b;
            CP_ASSERT(ti >= 0 && ti < nt);
            tiles_extract(xb + b * tin, &t, img, C, ti);
        }
        rc = fwd(fctx, yb, xb, n, t.by, t.bx, e);
        for (int b = 0; b < n && rc == CP_OK; b++) {
            int ti = opts->order ? opts->order[k0 + b] : k0 + b;
            tiles_unaugment(ytiles + ti * tout, yb + b * tout, &t, nout, ti);
        }
    }
    if (rc == CP_OK) tiles_average(out, &t, ytiles, nout, t.pad_y1, t.pad_x1, H, W, ctx);
    cp_free(ytiles);
    cp_free(xb);
    cp_free(yb);
    tiles_plan_free(&t);
    return rc;
}

/* One output row of one plane. */
static void resize_row(float *dst, int64_t Wo, const float *plane, int64_t Hi, int64_t Wi, int64_t yo,
                       double sy, double sx) {
    int64_t y0, x0;
    float wy, wx;
    resize_coord(yo, sy, Hi, &y0, &wy);
    int64_t dy = y0 < Hi - 1 ? 1 : 0;
    for (int64_t xo = 0; xo < Wo; xo++) {
        resize_coord(xo, sx, Wi, &x0, &wx);
        dst[xo] = resize_px(plane, Wi, y0, wy, x0, wx, dy, x0 < Wi - 1 ? 1 : 0);
    }
}

void img_resize_bilinear(float *out, int64_t Ho, int64_t Wo, const float *in, int64_t Hi, int64_t Wi, int C,
                         const CpCtx *ctx) {
    CP_ASSERT(Ho >= 1 && Wo >= 1 && Hi >= 1 && Wi >= 1 && C >= 1);
    double sy = 1.0 / ((double)Ho / (double)Hi); /* OpenCV: scale = 1 / inv_scale */
    double sx = 1.0 / ((double)Wo / (double)Wi);
    int64_t rows = (int64_t)C * Ho;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t k = 0; k < rows; k++) {
        int64_t c = k / Ho, yo = k % Ho;
        resize_row(out + k * Wo, Wo, in + c * Hi * Wi, Hi, Wi, yo, sy, sx);
    }
}
