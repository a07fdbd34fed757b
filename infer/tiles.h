/* tiles.h - running a network over an image of any size: Cellpose v3's
 * padding, overlapping tiles, sigmoid-taper blending (CELLPOSE.md 5.5), and
 * the bilinear resize used for the diameter rescale and for resampling the
 * outputs back (5.3, 5.6).
 *
 * Legend: C input channels, NOUT output channels, H W image, Hp Wp padded
 * image, BY BX tile (min(bsize, Hp), min(bsize, Wp)), NT = ny * nx tiles.
 * Layouts: images and outputs planar [C, H, W]; a batch of tiles
 * [n, C, BY, BX]; all tile outputs [NT, NOUT, BY, BX].
 *
 * What Cellpose does (core.run_net, transforms.get_pad_yx/make_tiles/
 * average_tiles/_taper_mask), reproduced here:
 *  - pad with zeros per axis: Lpad = 16*ceil(L/16) - L, before 8 + Lpad/2,
 *    after 8 + Lpad - Lpad/2 (get_pad_yx, div 16, extra 1, no min_size);
 *  - overlap clipped to [0.05, 0.5]; tile side b = min(bsize, Lp); n = 1 if
 *    Lp <= bsize else ceil((1 + 2 overlap) Lp / bsize) (double); starts
 *    trunc(linspace(0, Lp - b, n)) exactly as numpy computes linspace;
 *    tile t = j * nx + i (row-major over (ystart[j], xstart[i]));
 *  - taper: B = max(224, BY, BX), m_k = 1 / (1 + exp((|k - (B-1)/2| -
 *    (B/2 - 20)) / sig)), mask[r, s] = m[B/2 - BY/2 + r] * m[B/2 - BX/2 + s];
 *  - blend: out = sum_t y_t * mask / sum_t mask over the tiles covering a
 *    pixel, then crop the padding away.
 *
 * Arithmetic (chosen to equal Cellpose's numpy float64/float32 mix): the
 * taper is computed in double (numpy float64; exp from core/dmath.h), the
 * weighted sum is kept in float32 but every update is done in double and
 * rounded, num = (float)((double)num + (double)y * mask), the weight sum is
 * double, and out = (float)((double)num / den) - exactly numpy's
 * `yf[...] += y[j] * mask` (float32 += float64), `Navg += mask` (float64) and
 * `yf /= Navg`. Only exp may differ from numpy's (in the last double bit).
 *
 * Determinism (DESIGN.md B and T): blending is a gather. Each output pixel
 * has one writer that sums its covering tiles in tile-index order, so the
 * result does not depend on the batch size, the order in which tiles were
 * run through the network, or the thread count. The price: the outputs of
 * all NT tiles are held at once (NT * NOUT * BY * BX floats; ~21 MB for a
 * 1024 x 1024 image with bsize 224). TODO(when images beyond ~8k x 8k are
 * run with little memory): stream over bands of tile rows, blending the rows
 * of output whose covering tiles are all done.
 *
 * Augment mode (Cellpose's `augment=True`, make_tiles/unaugment_tiles): the
 * padded image is further zero-padded at the end to at least bsize per axis
 * (Ht = max(Hp, bsize)); tiles are always bsize x bsize, ny = max(2,
 * ceil(2 Hp / bsize)) (half overlap), starts trunc(linspace(0, Ht - bsize,
 * ny)); tile (j, i) is fed to the network flipped along rows when i is odd
 * and along columns when j is odd, and its output is flipped back with dY
 * (channel 0) negated for a row flip and dX (channel 1) for a column flip.
 * The taper and blend are the same (B = max(224, bsize)).
 *
 * v4 mode (Cellpose v4's run_net, for the ViT, whose tiles are always
 * bsize x bsize): an axis shorter than bsize is padded as get_pad_yx(min_size
 * = (bsize, bsize)) pads it - lpad = max(0, bsize - L - 16), before 8 +
 * lpad/2, after 8 + lpad - lpad/2, so Lp = max(L + 16, bsize) - then tiled
 * as above with tile side bsize; longer axes keep the v3 plan.
 *
 * Not here: the v3 style vector (sum of tile styles; it does not affect
 * masks). */
#ifndef CP_TILES_H
#define CP_TILES_H

#include <stdint.h>

#include "common.h"
#include "ctx.h"
#include "hd.h"

#define TILES_DIV 16         /* get_pad_yx div */
#define TILES_TAPER_MIN 224  /* _taper_mask: B = max(224, ly, lx) */
#define TILES_TAPER_SIG 7.5  /* _taper_mask sig */
#define TILES_TAPER_EDGE 20  /* half-height 20 px inside B/2 */

typedef struct {
    int64_t H, W;                       /* image */
    int64_t pad_y1, pad_y2, pad_x1, pad_x2;
    int64_t Hp, Wp;                     /* padded: H + pad_y1 + pad_y2, ... */
    int bsize;                          /* requested tile side */
    int augment;                        /* flipped half-overlapping tiles (see above) */
    int by, bx;                         /* tile side: min(bsize, Hp), min(bsize, Wp) */
    int ny, nx;                         /* tiles per axis; NT = ny * nx */
    int64_t *ystart;                    /* [ny] tile origins in padded rows, ascending */
    int64_t *xstart;                    /* [nx] */
    double *my, *mx;                    /* [by], [bx] taper factors (mask = my[r] * mx[s]) */
} TilePlan;

/* Cellpose's get_pad_yx for one axis (div 16, extra 1). */
CP_HD static inline void tiles_pad_1d(int64_t L, int64_t *before, int64_t *after) {
    int64_t lpad = (L + TILES_DIV - 1) / TILES_DIV * TILES_DIV - L;
    *before = TILES_DIV / 2 + lpad / 2;
    *after = TILES_DIV / 2 + lpad - lpad / 2;
}

/* numpy's linspace(0, stop, n)[k] truncated to int (astype(int)):
 * k * (stop / (n - 1)) in double, the last element exactly stop. */
CP_HD static inline int64_t tiles_linspace_int(int64_t stop, int n, int k) {
    if (n <= 1 || k == n - 1) return k == 0 && n <= 1 ? 0 : stop;
    double step = (double)stop / (double)(n - 1);
    return (int64_t)((double)k * step);
}

/* Plan tiles for an H x W image: padding, tile sides, counts, origins and
 * the taper. overlap is clipped to [0.05, 0.5] (make_tiles; unused when
 * augment is set). Fails on H, W < 1, bsize < 1 or a non-finite overlap.
 * Free with tiles_plan_free. */
int tiles_plan(TilePlan *t, int64_t H, int64_t W, int bsize, double overlap, int augment, CpErr *e);
/* The same with Cellpose v4's padding of short axes and bsize tiles (above). */
int tiles_plan_v4(TilePlan *t, int64_t H, int64_t W, int bsize, double overlap, int augment, CpErr *e);
/* Augment mode flips of tile t: rows when its column index i is odd,
 * columns when its row index j is odd (0 and 0 without augment). */
static inline void tiles_flips(const TilePlan *t, int tile_index, int *flip_rows, int *flip_cols) {
    *flip_rows = t->augment && (tile_index % t->nx) % 2 == 1;
    *flip_cols = t->augment && (tile_index / t->nx) % 2 == 1;
}
void tiles_plan_free(TilePlan *t);
static inline int tiles_count(const TilePlan *t) { return t->ny * t->nx; }

/* _taper_mask 1-D factors for a tile side l (B = max(224, ly, lx) given):
 * m[r] = v[B/2 - l/2 + r], v_k = 1 / (1 + exp((|k - (B-1)/2| - (B/2 - 20)) / sig)),
 * in double like numpy. m: [l]. */
void tiles_taper_1d(double *m, int l, int B, double sig);
/* The 2-D mask [ly, lx] as float (for inspection and tests): (float)(my[r] * mx[s]). */
void tiles_taper(float *mask, int ly, int lx, double sig);

/* Tile t of the image, zero-padded as planned:
 * tile[c, r, s] = img[c, ystart - pad_y1 + r', xstart - pad_x1 + s'] or 0
 * outside, r' = r (by - 1 - r with a row flip), s' likewise. tile: [C, by,
 * bx]; img: [C, H, W] (unpadded). */
void tiles_extract(float *tile, const TilePlan *t, const float *img, int C, int tile_index);
/* The network's output for tile t back in image orientation (unaugment_tiles):
 * dst[c, r, s] = sign_c * src[c, r', s'] with r', s' as in tiles_extract and
 * sign -1 for channel 0 under a row flip and channel 1 under a column flip.
 * Without flips a copy. dst, src: [nout, by, bx], not overlapping. */
void tiles_unaugment(float *dst, const float *src, const TilePlan *t, int nout, int tile_index);

/* Blend all tile outputs into a window of the padded image:
 * out[c, y, x] for padded rows y0 .. y0+Ho-1, cols x0 .. x0+Wo-1.
 * ytiles: [NT, nout, by, bx] in tile-index order; out: [nout, Ho, Wo].
 * The window must lie inside [0, Hp) x [0, Wp). The unpadded result is the
 * window (pad_y1, pad_x1, H, W); the whole padded image is Cellpose's
 * average_tiles. One writer per output pixel, threads over rows. */
void tiles_average(float *out, const TilePlan *t, const float *ytiles, int nout, int64_t y0, int64_t x0,
                   int64_t Ho, int64_t Wo, const CpCtx *ctx);

/* The network on a batch of tiles: y [n, nout, by, bx] from x [n, C, by, bx].
 * n varies (the last batch may be short); it must treat samples
 * independently (CPnet in eval mode does). */
typedef int (*TileForwardFn)(void *fctx, float *y, const float *x, int n, int by, int bx, CpErr *e);

typedef struct {
    int bsize;          /* tile side (Cellpose v3: 224) */
    double overlap;     /* tile_overlap (0.1) */
    int batch;          /* tiles per forward call (8) */
    const int *order;   /* NULL, or a permutation of [0, NT) giving the order in which
                           tiles are sent to the network (tests); never changes a bit */
    int augment;        /* Cellpose's augment: flipped tiles, half overlap */
    int v4;             /* Cellpose v4's plan (tiles_plan_v4): the ViT */
} TileRunOpts;

/* Cellpose's run_net (no resize) for one image: pad, tile, run
 * `fwd` on batches of up to opts->batch tiles, blend, crop.
 * out: [nout, H, W]; img: [C, H, W], normalised. Allocates the tile store. */
int tiles_run(float *out, const float *img, int C, int64_t H, int64_t W, int nout, const TileRunOpts *opts,
              TileForwardFn fwd, void *fctx, const CpCtx *ctx, CpErr *e);

/* ---- bilinear resize (half-pixel centres, edge replicate) ---- */

/* Source coordinate of destination index d for scale = 1 / (dst / src) (in
 * double, as OpenCV): f = (float)((d + 0.5) * scale - 0.5), i0 = floor(f), w = f - i0;
 * below 0 -> (0, 0); at or past the last source index -> (last, 0), as
 * OpenCV's INTER_LINEAR computes its float weights. */
CP_HD static inline void resize_coord(int64_t d, double scale, int64_t n_src, int64_t *i0, float *w) {
    float f = (float)(((double)d + 0.5) * scale - 0.5);
    int64_t i = (int64_t)f;
    if ((float)i > f) i--; /* floor */
    float fw = f - (float)i;
    if (i < 0) i = 0, fw = 0.0f;
    if (i >= n_src - 1) i = n_src - 1, fw = 0.0f;
    *i0 = i;
    *w = fw;
}

/* One output pixel from rows y0, y0 + dy and columns x0, x0 + dx (dy, dx
 * are 1, or 0 at the last index): along x first, then y, each
 * a*(1-w) + b*w in float (no fma), like OpenCV's horizontal-then-vertical
 * passes. */
CP_HD static inline float resize_px(const float *plane, int64_t Wi, int64_t y0, float wy, int64_t x0, float wx,
                                    int64_t dy, int64_t dx) {
    const float *r0 = plane + y0 * Wi, *r1 = plane + (y0 + dy) * Wi;
    float h0 = r0[x0] * (1.0f - wx) + r0[x0 + dx] * wx;
    float h1 = r1[x0] * (1.0f - wx) + r1[x0 + dx] * wx;
    return h0 * (1.0f - wy) + h1 * wy;
}

/* out [C, Ho, Wo] = bilinear resize of in [C, Hi, Wi]. Threads over rows;
 * per-pixel math in resize_coord / resize_px. */
void img_resize_bilinear(float *out, int64_t Ho, int64_t Wo, const float *in, int64_t Hi, int64_t Wi, int C,
                         const CpCtx *ctx);

/* Cellpose's resized size int(L * rsz) (truncation, double). */
static inline int64_t tiles_rescaled_size(int64_t L, double rsz) { return (int64_t)((double)L * rsz); }

#endif
