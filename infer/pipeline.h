/* pipeline.h - Cellpose inference of one image with a CPnet (v3) or the
 * Cellpose-SAM ViT (v4), as a library
 * (the `infer` program and `eval --sweep` call it), in the canonical order of
 * DESIGN.md ("One canonical Cellpose"), each step tested against the real
 * Cellpose in its own test:
 *   channel selection and 1/99 % normalization (train/transforms) ->
 *   rescale by diam_mean / diameter (bilinear, infer/tiles) -> padding,
 *   bsize tiles (10 % overlap, or Cellpose's flipped augment tiles), CPnet in
 *   eval mode on batches of tiles, taper blending (infer/tiles) -> resize
 *   back -> Euler integration and mask assembly (infer/dynamics) -> flow-error
 *   removal, hole filling, min size (infer/cleanup).
 *
 * Parameters and defaults are Cellpose's CellposeModel.eval (v3.1.1.3):
 * cellprob_threshold 0, flow_threshold 0.4, min_size 15, max_size_fraction
 * 0.4, tile_overlap 0.1, bsize 224 (CPnet), batch_size 8, augment off; rescale =
 * diam_mean / diameter when a diameter is given, else diam_mean / diam_labels
 * of the model file; niter = 200 / rescale unless given.
 *
 * With a ViT (nets/net.h) the steps are the same, with Cellpose v4's rules
 * where v4 differs (CELLPOSE.md 5.1-5.7, cellpose 4.0.9 core.run_net):
 *  - input: the 2 channels above followed by zero channels up to in_chans
 *    (net.h: v4's (img, 0, 0) for grayscale images);
 *  - tiles always img_size x img_size (bsize 0 = that; any other is an
 *    error), padded with v4's get_pad_yx(min_size = (bsize, bsize)): an axis
 *    L < bsize gets Lpad = max(0, bsize - L - 16), before 8 + Lpad/2, after
 *    8 + Lpad - Lpad/2 (padded size max(L + 16, bsize)); L >= bsize as v3;
 *  - rescale = diam_mean / diameter (v4: 30 / diameter; diam_mean is 30)
 *    only when a diameter is given - no diameter, no rescale (v4 ignores
 *    diam_labels); niter = int(200 / rescale) (v4.0.6+), 200 without;
 *  - order: normalize, then resize (v3 and v4 HEAD; v4.0.9 resizes the raw
 *    image first, which differs by interpolation rounding only).
 *
 * Determinism: the result depends on the image, the weights and the
 * parameters only - not on batch, tile order (blending is a gather) or the
 * thread count (ctx). */
#ifndef CP_INFER_PIPELINE_H
#define CP_INFER_PIPELINE_H

#include <stdint.h>

#include "cpnet.h"
#include "ctx.h"
#include "image.h"
#include "net.h"

typedef struct {
    double diameter;     /* pixels; 0 = the model's diam_labels */
    double cellprob_thr; /* on the cellprob logit */
    double flow_thr;     /* max flow error per mask; 0 = keep all */
    double max_frac;     /* drop masks larger than this fraction of the image */
    double overlap;      /* tile_overlap */
    long niter;          /* Euler steps; 0 = 200 / rescale */
    long min_size;       /* pixels; -1 = keep all */
    int batch;           /* tiles per forward */
    int bsize;           /* tile side, a multiple of 16; 0 = the model's (CPnet 224, ViT img_size) */
    int augment;         /* Cellpose's augment (flipped, half-overlapping tiles) */
    int channels[2];     /* Cellpose v3 channels */
} InferParams;

/* Cellpose's defaults (above). */
InferParams infer_params_default(void);

/* Seconds per stage of the last run. */
enum { INF_T_NORMALIZE, INF_T_NETWORK, INF_T_DYNAMICS, INF_T_CLEANUP, INF_T_N };

typedef struct {
    int64_t H, W;
    float *x;         /* [2, H, W] the normalized network input (outlines) */
    float *flows;     /* [3, H, W] dY, dX, cellprob logit at the image's size */
    uint32_t *masks;  /* [H, W] labels 1..nmask in scan order, 0 background */
    uint32_t nmask;
    uint32_t niter;   /* Euler steps used */
    double rescale;   /* diam_mean / diameter used (1 = none) */
    double seconds[INF_T_N];
    char masks_sha256[65];
} InferResult;

/* The network's input: channels selected, normalized, rescaled. */
typedef struct {
    int64_t H, W;            /* image */
    int64_t Hs, Ws;          /* after the diameter rescale */
    float *x;                /* [2, H, W] normalized */
    float *xs;               /* [2, Hs, Ws] rescaled (== x when rescale is 1) */
    double rescale;          /* diam_mean / diameter (1 = none) */
    uint32_t niter_default;  /* 200 / rescale, Cellpose's precision */
} InferInput;
int infer_prepare_net(InferInput *in, const Net *net, const Image *img, const char *name, const InferParams *p,
                      const CpCtx *ctx, CpErr *e);
/* The same for a bare CPnet (featmaps). */
int infer_prepare(InferInput *in, const CPnet *net, const Image *img, const char *name, const InferParams *p,
                  const CpCtx *ctx, CpErr *e);
void infer_input_free(InferInput *in);

/* A model file -> CPnet or ViT (by its tensors) on the CPU ops, 3 outputs
 * and >= 2 input channels required; the ctx workspace is grown for it. */
int infer_load_model(Net *net, const char *path, CpCtx *ctx, CpErr *e);

/* Segment `img` (read by image_read; `name` is used in error messages).
 * Fills *r (free with infer_result_free; zeroed on failure). */
int infer_image(InferResult *r, Net *net, const Image *img, const char *name, const InferParams *p,
                const CpCtx *ctx, CpErr *e);
void infer_result_free(InferResult *r);

/* PNG of the normalized first channel as gray with mask boundaries (a
 * labelled pixel with a 4-neighbour of another label) in red. */
int infer_write_outlines(const char *path, const float *x, const uint32_t *m, int64_t H, int64_t W, CpErr *e);

#endif
