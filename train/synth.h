/* synth.h - seeded synthetic training data: fluorescence-like images of
 * touching and isolated cells with exact instance labels.
 *
 * One image is a pure function of (params, seed, index, H, W):
 *   - cells: ellipses with random size (equivalent diameter
 *     diameter * U[1 - size_jitter, 1 + size_jitter]), aspect b/a in
 *     [min_aspect, 1] and orientation; a fraction `touch_frac` is placed
 *     overlapping an earlier cell (they touch; the later cell wins the shared
 *     pixels), the rest isolated (no other cell within reach);
 *   - each label is then cut to its largest 4-connected piece, labels smaller
 *     than min_area are dropped, and the rest renumbered 1..n in order of
 *     first appearance in a row-major scan;
 *   - image = background (level + linear gradient) + per-cell intensity
 *     times a smooth texture (product of two sinusoids of random phase,
 *     wavelength ~ the diameter), optionally Gaussian-blurred, plus Gaussian
 *     noise, clamped to [0, 1].
 *
 * Randomness: Philox only (core/philox.h), key (seed, stream) with the
 * SYNTH_STREAM_* streams below, counter (index, cell, element, draw).
 * Transcendentals from core/dmath.h only; sums in a fixed order. The result
 * is identical on every machine and thread count (the generator is
 * single-threaded; a caller may run images in parallel).
 *
 * Layouts: img float32 [H, W] in [0, 1]; labels uint32 [H, W], 0 = background. */
#ifndef CP_SYNTH_H
#define CP_SYNTH_H

#include <stdint.h>

#include "common.h"

/* Philox streams (key word 1). */
#define SYNTH_STREAM_LAYOUT 0x53590001u /* cell count, sizes, positions, intensities */
#define SYNTH_STREAM_NOISE 0x53590002u  /* per-pixel noise: counter (index, 0, pixel) */

typedef struct {
    float diameter;    /* mean equivalent diameter in pixels (Cellpose's diameter) */
    int min_cells;     /* cell count drawn uniformly from [min_cells, max_cells] */
    int max_cells;
    float size_jitter; /* relative spread of the diameter, 0..0.9 */
    float min_aspect;  /* smallest minor/major axis ratio, 0.3..1 */
    float touch_frac;  /* fraction of cells placed touching an earlier one, 0..1 */
    int min_area;      /* labels with fewer pixels are dropped, >= 1 */
    float bg_level;    /* background intensity */
    float bg_gradient; /* background change across the image */
    float cell_level;  /* mean cell intensity above background */
    float texture;     /* relative amplitude of the smooth texture, 0..1 */
    float noise;       /* standard deviation of the additive Gaussian noise */
    float blur;        /* Gaussian blur sigma in pixels, 0 = none */
} SynthParams;

/* Defaults for an H x W image of cells of `diameter` pixels: the count range
 * covers about 15-30 % of the area with cells. */
void synth_default_params(SynthParams *p, int64_t H, int64_t W, float diameter);

/* Checks the parameters against the image size (one line naming the bad
 * field). Called by synth_image. */
int synth_check_params(const SynthParams *p, int64_t H, int64_t W, CpErr *e);

/* Generate image `index` of the data set `seed`.
 * img [H, W] float32, labels [H, W] uint32; *ncells (may be NULL) gets the
 * number of labels. H, W in 16..16384. */
int synth_image(float *img, uint32_t *labels, int64_t H, int64_t W, const SynthParams *p, uint32_t seed,
                uint32_t index, int *ncells, CpErr *e);

#endif
