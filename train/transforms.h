/* transforms.h - Cellpose v3 input preparation for training (and inference):
 * channel selection (`transforms.convert_image` + `transforms.reshape`),
 * per-channel 1st/99th percentile normalization (`transforms.normalize_img`
 * -> `normalize99`), numpy's linear-interpolation percentile, and the
 * learning-rate schedule built in `train.train_seg`. CELLPOSE.md 4.2, 4.8, 5.2,
 * 5.4, 10.7, 10.9.
 *
 * Dimension legend: C channels, H W spatial; images here are planar
 * [C, H, W] float32 (CPnet's layout), except the Image input (chunky HWC).
 *
 * Parity: every function reproduces the float arithmetic of Cellpose
 * 3.1.1.3 running on numpy 1.24 (the version the parity test runs), bit for
 * bit, including numpy's type rules:
 *  - np.percentile on float32 ('linear'): q = p / 100, v = (n - 1) * q,
 *    i = floor(v), g = v - i (double); a, b = sorted[i], sorted[i + 1];
 *    d = b - a rounded to float32; result (double) = a + d * g if g < 0.5,
 *    else b - d * (1 - g). v >= n - 1 -> the maximum.
 *  - normalize99's `X -= x01; X /= (x99 - x01)` runs in float32 under numpy 1
 *    value-based casting: x = (x - (float)p1) / (float)(p99 - p1).
 *    (NumPy >= 2 (NEP 50) would compute both steps in double and also returns
 *    a float32 percentile; cellpose.c follows the numpy 1 arithmetic.)
 *  - channel mean (grayscale, channels[0] = 0): sequential float32 sum
 *    ((c0 + c1) + c2) + c3, then / (float)C - numpy's order for axis -1.
 *
 * Determinism: percentiles come from a full LSD radix sort of the values
 * (a function of the data only: IEEE total order, -0 before +0; numpy's
 * partition leaves the order of -0/+0 ties unspecified, which can only change
 * the sign of a zero). Element-wise loops run on ctx->threads threads, each
 * element owned by one iteration, so results are identical for any thread
 * count. */
#ifndef CP_TRAIN_TRANSFORMS_H
#define CP_TRAIN_TRANSFORMS_H

#include <stdint.h>

#include "common.h"
#include "ctx.h"
#include "image.h"

/* normalize99(downsample=True): channels with more than 224^3 elements get
 * their percentiles from the subsample X[::max(1, H/224), ::max(1, W/224)]. */
#define TFM_SUBSAMPLE_ELEMS ((int64_t)224 * 224 * 224)
#define TFM_SUBSAMPLE_SIDE 224
/* normalize99: p99 - p1 must exceed this (double) or the channel becomes 0. */
#define TFM_MIN_RANGE 1e-3

/* numpy.percentile(sorted, p) with method='linear' on an ascending float32
 * array of n >= 1 values; p in [0, 100]. Returned as numpy's float64. */
double tfm_percentile_sorted(const float *sorted, int64_t n, double p);

/* numpy.percentile(x[::stride][:n], p): sorts a copy. scratch: [2n] words.
 * Fails on n < 1, p outside [0, 100], or a non-finite value. */
int tfm_percentile(double *out, const float *x, int64_t n, int64_t stride, double p, uint32_t *scratch,
                   CpErr *e);

/* Scratch words that tfm_normalize_img needs for an H x W channel. */
int64_t tfm_normalize_scratch(int64_t H, int64_t W);

/* Cellpose v3 normalize_img(img, normalize=True, axis=0) on planar
 * img [C, H, W], in place, percentiles (lo, hi) = (1, 99) by default:
 * per channel, if max > min (np.ptp > 0) then normalize99(downsample=True):
 *   p_lo, p_hi = percentiles (of the subsample for > 224^3 elements);
 *   if p_hi - p_lo > 1e-3: x = (x - (float)p_lo) / (float)(p_hi - p_lo)
 *   else: x = 0.
 * Constant channels (max == min) are left untouched, exactly as v3 does
 * (e.g. the zero second channel of a grayscale image, or a constant image:
 * its value stays as it was; Cellpose raises nothing). NaN/Inf pixels fail
 * with "<name>: channel c pixel (y, x) is not finite". scratch: [tfm_normalize_
 * scratch(H, W)] words. plo/phi (may be NULL): [C] percentiles used, NAN for
 * untouched channels. */
int tfm_normalize_img(float *img, int C, int64_t H, int64_t W, double lo, double hi, uint32_t *scratch,
                      double *plo, double *phi, const CpCtx *ctx, const char *name, CpErr *e);

/* Cellpose v3 convert_image(img, channels) + reshape (+ transpose to
 * channels-first) as train_seg's _reshape_norm does, into out [2, H, W]:
 *  - 1-channel image: out = (image, 0) whatever `channels` says (v3 ignores
 *    channels for single-channel images);
 *  - more channels, channels[0] == 0: out = (mean over all channels, 0);
 *  - otherwise out[0] = channel channels[0] - 1, out[1] = channel
 *    channels[1] - 1 if channels[1] > 0 else 0.
 * Pixels are converted to float32 as numpy's astype (image_to_f32).
 * Errors (one line naming `path`): channels outside 0..4, a requested channel
 * the image does not have (v3: IndexError), images narrower or lower than 8
 * pixels (v3's reshape and move_min_dim misread those as channels-first). */
int tfm_select_channels(float *out, const Image *img, const int channels[2], const char *path, CpErr *e);

/* train_seg's LR array, epoch e uses lr[e], e in [0, n_epochs):
 *   LR = linspace(0, base_lr, 10) ++ [base_lr] * max(0, n_epochs - 10);
 *   n_epochs > 300: drop the last 100, then 10 x (10 copies of LR[-1] / 2);
 *   else n_epochs > 100 (v3; > 99 for v4): drop the last 50, then
 *   10 x (5 copies of LR[-1] / 2).
 * linspace is numpy's: LR[i] = i * (base_lr / 9) + 0 for i < 9, LR[9] = base_lr.
 * Epoch 0 has lr 0. cellpose_version: 3 or 4 (only the 100/99 threshold
 * differs). Fails on n_epochs < 1, base_lr negative or not finite. */
int tfm_lr_schedule(double *lr, double base_lr, int n_epochs, int cellpose_version, CpErr *e);

#endif
