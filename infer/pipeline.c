/* pipeline.c - one image through Cellpose v3 (CPnet) or v4 (ViT) inference;
 * see pipeline.h. */
#include "pipeline.h"

#include <math.h>
#include <string.h>

#include "cleanup.h"
#include "dynamics.h"
#include "sha256.h"
#include "tiles.h"
#include "transforms.h"

InferParams infer_params_default(void) {
    return (InferParams){.cellprob_thr = 0.0, .flow_thr = 0.4, .max_frac = 0.4, .overlap = 0.1, .niter = 0,
                         .min_size = 15, .batch = 8, .bsize = 0, .augment = 0, .channels = {0, 0}};
}

#define INFER_BSIZE_V3 224 /* Cellpose v3's bsize (the ViT's is its img_size) */

int infer_load_model(Net *net, const char *path, CpCtx *ctx, CpErr *e) {
    if (net_open(net, path, cp_ops_cpu(), e) != CP_OK) return CP_EFAIL;
    int rc = CP_OK;
    if (net->nout != 3) rc = cp_fail(e, "%s: %d outputs; infer needs Cellpose's 3 (dY, dX, cellprob)", path, net->nout);
    else if (net->in_chans < 2)
        rc = cp_fail(e, "%s: the net takes %d input channel(s); infer feeds Cellpose's 2 (zero-padded beyond)", path,
                     net->in_chans);
    if (rc != CP_OK) {
        net_free(net);
        return rc;
    }
    cp_ctx_workspace(ctx, net_workspace_bytes(net));
    return CP_OK;
}

typedef struct {
    Net *net;
    const CpCtx *ctx;
    float *xc; /* [batch, in_chans, by, bx] when in_chans > 2: the 2 channels, then zeros */
} Fwd;

/* tiles_run's network callback: eval forward on n tiles x [n, 2, by, bx].
 * The CPnet arena is planned once for the full batch (a shorter last batch
 * runs inside it); a net with in_chans > 2 gets the tiles zero-padded. */
static int forward_tiles(void *p, float *y, const float *x, int n, int by, int bx, CpErr *e) {
    Fwd *f = p;
    int64_t plane = (int64_t)by * bx, cin = f->net->in_chans;
    if (net_plan(f->net, n, by, bx, 0, e) != CP_OK) return CP_EFAIL;
    if (cin > 2) { /* channels 2 .. cin-1 of xc are zero from allocation */
        for (int k = 0; k < n; k++)
            memcpy(f->xc + k * cin * plane, x + k * 2 * plane, sizeof(float) * (size_t)(2 * plane));
        x = f->xc;
    }
    const float *out = net_forward(f->net, x, 0, f->ctx, e);
    if (!out) return CP_EFAIL;
    memcpy(y, out, sizeof(float) * (size_t)n * (size_t)f->net->nout * (size_t)plane);
    return CP_OK;
}

void infer_result_free(InferResult *r) {
    cp_free(r->x), cp_free(r->flows), cp_free(r->masks);
    memset(r, 0, sizeof *r);
}

void infer_input_free(InferInput *in) {
    if (in->xs != in->x) cp_free(in->xs);
    cp_free(in->x);
    memset(in, 0, sizeof *in);
}

/* What infer_prepare needs of a net: v4 (ViT) rescale rules or v3's. */
typedef struct {
    int v4;
    float diam_mean;                 /* the config's (CPnet: cfg.diam_mean) */
    float file_mean, diam_labels;    /* the frozen tensors of the model file */
} PrepNet;

static int prepare(InferInput *in, const PrepNet *net, const Image *img, const char *name, const InferParams *p,
                   const CpCtx *ctx, CpErr *e) {
    memset(in, 0, sizeof *in);
    int64_t H = img->h, W = img->w;
    in->H = in->Hs = H, in->W = in->Ws = W;
    in->x = in->xs = cp_malloc(sizeof(float) * (size_t)(2 * H * W));
    uint32_t *scratch = cp_malloc(sizeof(uint32_t) * (size_t)tfm_normalize_scratch(H, W));
    int rc = tfm_select_channels(in->x, img, p->channels, name, e);
    if (rc == CP_OK) rc = tfm_normalize_img(in->x, 2, H, W, 1.0, 99.0, scratch, NULL, NULL, ctx, name, e);
    cp_free(scratch);
    /* Cellpose v3 eval: rescale = diam_mean / diameter (a Python float: double)
     * when a diameter is given, else diam_mean / diam_labels from the model
     * file (float32 / float32); niter defaults to 1 / rescale * 200 in the
     * same precision. */
    double rsz = 1.0;
    in->niter_default = 200;
    if (net->v4) { /* v4: image_scaling = 30 / diameter, niter = int(200 / image_scaling); none without a diameter */
        if (p->diameter > 0) {
            rsz = (double)net->diam_mean / p->diameter;
            in->niter_default = (uint32_t)(200.0 / rsz);
        }
    } else if (p->diameter > 0) {
        rsz = net->diam_mean / p->diameter;
        in->niter_default = dyn_niter_default(p->diameter, net->diam_mean, 1);
    } else if (net->diam_labels > 0) {
        float q = net->file_mean / net->diam_labels;
        rsz = q;
        in->niter_default = (uint32_t)((1.0f / q) * 200.0f);
    }
    in->rescale = rsz;
    if (rc == CP_OK && rsz != 1.0) {
        int64_t Hs = tiles_rescaled_size(H, rsz), Ws = tiles_rescaled_size(W, rsz);
        if (Hs < 1 || Ws < 1 || Hs * Ws > ctx->max_pixels) {
            rc = cp_fail(e, "%s: diameter rescaling (x%g) gives a %lld x %lld image", name, rsz, (long long)Hs,
                         (long long)Ws);
        } else {
            in->Hs = Hs, in->Ws = Ws;
            in->xs = cp_malloc(sizeof(float) * (size_t)(2 * Hs * Ws));
            img_resize_bilinear(in->xs, Hs, Ws, in->x, H, W, 2, ctx);
        }
    }
    if (rc != CP_OK) infer_input_free(in);
    return rc;
}

int infer_prepare(InferInput *in, const CPnet *net, const Image *img, const char *name, const InferParams *p,
                  const CpCtx *ctx, CpErr *e) {
    PrepNet pn = {0, net->cfg.diam_mean, net->frozen[0], net->frozen[1]};
    return prepare(in, &pn, img, name, p, ctx, e);
}

int infer_prepare_net(InferInput *in, const Net *net, const Image *img, const char *name, const InferParams *p,
                      const CpCtx *ctx, CpErr *e) {
    PrepNet pn = {net->type == NET_VIT, net->diam_mean, net->type == NET_VIT ? net->diam_mean : net->cp.frozen[0],
                  net_diam_labels(net)};
    return prepare(in, &pn, img, name, p, ctx, e);
}

int infer_image(InferResult *r, Net *net, const Image *img, const char *name, const InferParams *p,
                const CpCtx *ctx, CpErr *e) {
    memset(r, 0, sizeof *r);
    int bsize = p->bsize ? p->bsize : net->tile ? net->tile : INFER_BSIZE_V3;
    if (bsize < 16 || bsize % 16) return cp_fail(e, "%s: tile size %d; need a positive multiple of 16", name, bsize);
    if (net->tile && bsize != net->tile)
        return cp_fail(e, "%s: tile size %d; this ViT takes exactly %d x %d tiles (leave --bsize out)", name, bsize,
                       net->tile, net->tile);
    if (p->batch < 1) return cp_fail(e, "%s: batch size %d; need >= 1", name, p->batch);
    double t0 = cp_time_sec(), t1;
    InferInput in;
    float *ys = NULL;
    int rc = infer_prepare_net(&in, net, img, name, p, ctx, e);
    if (rc != CP_OK) return rc;
    int64_t H = in.H, W = in.W, Hs = in.Hs, Ws = in.Ws;
    r->H = H, r->W = W, r->rescale = in.rescale;
    t1 = cp_time_sec();
    r->seconds[INF_T_NORMALIZE] = t1 - t0, t0 = t1;
    ys = cp_malloc(sizeof(float) * (size_t)(3 * Hs * Ws));
    Fwd fwd = {net, ctx, NULL};
    TileRunOpts to = {bsize, p->overlap, p->batch, NULL, p->augment, net->type == NET_VIT};
    if (net->in_chans > 2) /* [batch, in_chans, bsize, bsize], channels >= 2 stay 0 */
        fwd.xc = cp_calloc((size_t)p->batch * (size_t)net->in_chans * (size_t)bsize * (size_t)bsize, sizeof(float));
    rc = tiles_run(ys, in.xs, 2, Hs, Ws, 3, &to, forward_tiles, &fwd, ctx, e);
    cp_free(fwd.xc);
    if (rc != CP_OK) goto done;
    if (Hs != H || Ws != W) { /* back to the image's size */
        r->flows = cp_malloc(sizeof(float) * (size_t)(3 * H * W));
        img_resize_bilinear(r->flows, H, W, ys, Hs, Ws, 3, ctx);
    } else {
        r->flows = ys, ys = NULL;
    }
    t1 = cp_time_sec();
    r->seconds[INF_T_NETWORK] = t1 - t0, t0 = t1;
    r->masks = cp_malloc(sizeof(uint32_t) * (size_t)(H * W));
    r->niter = p->niter > 0 ? (uint32_t)p->niter : in.niter_default;
    rc = dyn_compute_masks(r->masks, r->flows, r->flows + 2 * H * W, H, W, (float)p->cellprob_thr, r->niter,
                           p->max_frac, ctx, e);
    t1 = cp_time_sec();
    r->seconds[INF_T_DYNAMICS] = t1 - t0, t0 = t1;
    if (rc == CP_OK && p->flow_thr > 0) rc = cln_flow_error_remove(r->masks, r->flows, H, W, (float)p->flow_thr, ctx, e);
    if (rc == CP_OK) rc = cln_fill_holes_remove_small(r->masks, H, W, (int)p->min_size, e);
    if (rc != CP_OK) goto done;
    r->seconds[INF_T_CLEANUP] = cp_time_sec() - t0;
    for (int64_t i = 0; i < H * W; i++) r->nmask = r->masks[i] > r->nmask ? r->masks[i] : r->nmask;
    sha256_hex(r->masks, sizeof(uint32_t) * (size_t)(H * W), r->masks_sha256);
    /* keep the normalized input for outlines */
    if (in.xs != in.x) cp_free(in.xs);
    r->x = in.x;
    in.x = in.xs = NULL;
done:
    infer_input_free(&in);
    cp_free(ys);
    if (rc != CP_OK) infer_result_free(r);
    return rc;
}

int infer_write_outlines(const char *path, const float *x, const uint32_t *m, int64_t H, int64_t W, CpErr *e) {
    uint8_t *rgb = cp_malloc((size_t)(3 * H * W));
    for (int64_t y = 0; y < H; y++)
        for (int64_t c = 0; c < W; c++) {
            int64_t i = y * W + c;
            float v = x[i] < 0 ? 0 : x[i] > 1 ? 1 : x[i];
            uint8_t g = (uint8_t)(v * 255.0f + 0.5f);
            uint32_t l = m[i];
            int edge = l && ((y > 0 && m[i - W] != l) || (y + 1 < H && m[i + W] != l) || (c > 0 && m[i - 1] != l) ||
                             (c + 1 < W && m[i + 1] != l));
            rgb[3 * i] = edge ? 255 : g, rgb[3 * i + 1] = edge ? 0 : g, rgb[3 * i + 2] = edge ? 0 : g;
        }
    int rc = image_write_png(path, rgb, 3, H, W, e);
    cp_free(rgb);
    return rc;
}
