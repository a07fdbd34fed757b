/* featmaps.h - `infer --dump-features LAYER`: what a CPnet layer sees, as a
 * PNG whose red, green and blue are the first three principal components of
 * the layer's feature maps.
 *
 * Layers (Cellpose's module names in brackets): down0 .. down{L-1}
 * (downsample.down.res_down_k), up0 .. up{L-1} (upsample.up.res_up_k), output
 * (the 1x1 readout: dY, dX, cellprob) - the output of each block, C channels
 * at 1 / 2^k of the (rescaled) image's resolution.
 *
 * The network runs once, in eval mode, on the whole rescaled image padded as
 * Cellpose pads it (no tiling, so the style vector is the whole image's: the
 * maps can differ slightly from the tiled run near tile borders), or on its
 * central 512 x 512 crop when the image is larger than 768 x 768 (memory).
 *
 * PCA (feat_pca3): per-channel means and the C x C covariance (ddof 1) in
 * double over the pixels (every k-th pixel in scan order when there are more
 * than FEAT_PCA_SAMPLES), eigenvectors by cyclic Jacobi rotations (sqrt and
 * division only), sorted by eigenvalue descending, each signed so that its
 * largest-magnitude entry is positive; the projections of every pixel are
 * scaled per component from its 1st to 99th percentile onto 0..255. All
 * sums in a fixed order: same PNG on every machine and thread count. */
#ifndef CP_INFER_FEATURES_H
#define CP_INFER_FEATURES_H

#include <stdint.h>

#include "pipeline.h"

#define FEAT_PCA_SAMPLES 16384
#define FEAT_MAX_WHOLE (768 * 768)
#define FEAT_CROP 512

/* Is `layer` a layer name (down<k>, up<k>, output)? k is checked later
 * against the model. */
int feat_check_layer(const char *layer, CpErr *e);

/* Principal components of f [C, n]: proj [3, n] (component k of pixel i at
 * k * n + i; components beyond C are 0), evals [3] (variance along each).
 * C >= 1, n >= 2. */
void feat_pca3(double *proj, double evals[3], const float *f, int C, int64_t n);

/* Runs the net on img (prepared as pipeline.h does) and writes the PNG. */
int feat_dump_png(const char *path, CPnet *net, const Image *img, const char *name, const InferParams *p,
                  const char *layer, const CpCtx *ctx, CpErr *e);

#endif
