/* transforms.c - Cellpose v3 channel selection, percentile normalization and
 * LR schedule (contract, numpy arithmetic and determinism notes in
 * transforms.h). Layouts: planar [C, H, W] float32 images; Image input is
 * chunky HWC (core/image.h).
 *
 * Percentiles: values are mapped to order-preserving uint32 keys (IEEE total
 * order) and sorted with a 4-pass LSD radix sort (8 bits per pass): O(n), no
 * comparisons, the output a function of the values only. Only the order
 * statistics that numpy's 'linear' method reads are decoded back to float. */
#include "train/transforms.h"

#include <math.h>
#include <string.h>

/* ---- keys: float bits <-> order-preserving unsigned ---- */

static inline uint32_t f2key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u ^ 0x80000000u);
}

static inline float key2f(uint32_t k) {
    uint32_t u = (k & 0x80000000u) ? (k ^ 0x80000000u) : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Sort keys k[0..n) ascending; tmp: [n] words. Four stable counting passes,
 * even count, so the result ends in k. A pass whose byte is the same for all
 * keys is skipped (it would be the identity permutation). */
static void sort_keys(uint32_t *k, uint32_t *tmp, int64_t n) {
    uint32_t *src = k, *dst = tmp;
    for (int shift = 0; shift < 32; shift += 8) {
        int64_t count[256] = {0};
        for (int64_t i = 0; i < n; i++) count[(src[i] >> shift) & 0xffu]++;
        if (count[(src[0] >> shift) & 0xffu] == n) continue; /* all in one bucket */
        int64_t pos = 0;
        for (int b = 0; b < 256; b++) {
            int64_t c = count[b];
            count[b] = pos;
            pos += c;
        }
        for (int64_t i = 0; i < n; i++) dst[count[(src[i] >> shift) & 0xffu]++] = src[i];
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != k) memcpy(k, src, sizeof(uint32_t) * (size_t)n);
}

/* ---- numpy 1.24 percentile, method 'linear' (function_base._quantile) ---- */

/* Indices and weight: q = p / 100; v = (n - 1) * q; i = floor(v), j = i + 1;
 * v >= n - 1 -> i = j = n - 1 with gamma computed against numpy's -1 index;
 * v < 0 -> 0 (cannot happen for p >= 0). */
static void np_index(int64_t n, double p, int64_t *i, int64_t *j, double *gamma) {
    double q = p / 100.0;
    double v = (double)(n - 1) * q;
    double fl = floor(v);
    double prev = fl; /* numpy keeps the float index for gamma, after fixing bounds */
    *i = (int64_t)fl;
    *j = *i + 1;
    if (v >= (double)(n - 1)) {
        *i = *j = n - 1;
        prev = -1.0; /* previous_indexes[above] = -1 before gamma = v - prev */
    }
    if (v < 0) {
        *i = *j = 0;
        prev = 0.0;
    }
    *gamma = v - prev;
}

/* numpy _lerp on float32 a, b (0-d) with float64 t: diff_b_a = b - a is a
 * float32 subtraction; the rest is float64 (0-d operands promote normally). */
static double np_lerp(float a, float b, double t) {
    float d = b - a;
    if (t >= 0.5) return (double)b - (double)d * (1.0 - t);
    return (double)a + (double)d * t;
}

double tfm_percentile_sorted(const float *sorted, int64_t n, double p) {
    int64_t i, j;
    double g;
    np_index(n, p, &i, &j, &g);
    return np_lerp(sorted[i], sorted[j], g);
}

static double percentile_keys(const uint32_t *keys, int64_t n, double p) {
    int64_t i, j;
    double g;
    np_index(n, p, &i, &j, &g);
    return np_lerp(key2f(keys[i]), key2f(keys[j]), g);
}

int tfm_percentile(double *out, const float *x, int64_t n, int64_t stride, double p, uint32_t *scratch,
                   CpErr *e) {
    if (n < 1) return cp_fail(e, "percentile: empty input");
    if (!(p >= 0.0 && p <= 100.0)) return cp_fail(e, "percentile: p = %g is outside [0, 100]", p);
    for (int64_t i = 0; i < n; i++) {
        float v = x[i * stride];
        if (!isfinite(v)) return cp_fail(e, "percentile: element %lld is not finite", (long long)i);
        scratch[i] = f2key(v);
    }
    sort_keys(scratch, scratch + n, n);
    *out = percentile_keys(scratch, n, p);
    return CP_OK;
}

/* ---- normalize_img / normalize99 ---- */

int64_t tfm_normalize_scratch(int64_t H, int64_t W) { return 2 * H * W; }

/* First non-finite pixel of plane x [H, W], or -1. */
static int64_t first_nonfinite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* Percentiles of one channel x [H, W] as normalize99(downsample=True) takes
 * them: the whole plane, or X[::sy, ::sx] when H*W > 224^3. */
static void channel_percentiles(const float *x, int64_t H, int64_t W, double lo, double hi, uint32_t *scratch,
                                double *plo, double *phi) {
    int64_t sy = 1, sx = 1;
    if (H * W > TFM_SUBSAMPLE_ELEMS) {
        /* nskip = [max(1, X.shape[i] // 224)]; slice(0, L, nskip) */
        sy = H / TFM_SUBSAMPLE_SIDE > 1 ? H / TFM_SUBSAMPLE_SIDE : 1;
        sx = W / TFM_SUBSAMPLE_SIDE > 1 ? W / TFM_SUBSAMPLE_SIDE : 1;
    }
    int64_t m = 0;
    for (int64_t y = 0; y < H; y += sy)
        for (int64_t xx = 0; xx < W; xx += sx) scratch[m++] = f2key(x[y * W + xx]);
    sort_keys(scratch, scratch + m, m);
    *plo = percentile_keys(scratch, m, lo);
    *phi = percentile_keys(scratch, m, hi);
}

/* x = (x - a) / s in float32 (numpy 1 in-place ops with a float64 scalar),
 * or x = 0 when the percentile range is too small. */
static void channel_apply(float *x, int64_t H, int64_t W, double p_lo, double p_hi, const CpCtx *ctx) {
    int zero = !(p_hi - p_lo > TFM_MIN_RANGE);
    float a = (float)p_lo;            /* X -= x01  (x01 cast to float32) */
    float s = (float)(p_hi - p_lo);   /* X /= (x99 - x01): double difference, cast */
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t y = 0; y < H; y++) {
        float *row = x + y * W;
        for (int64_t i = 0; i < W; i++) {
            float t = row[i] - a;
            row[i] = zero ? 0.0f : t / s;
        }
    }
}

int tfm_normalize_img(float *img, int C, int64_t H, int64_t W, double lo, double hi, uint32_t *scratch,
                      double *plo, double *phi, const CpCtx *ctx, const char *name, CpErr *e) {
    if (C < 1 || H < 1 || W < 1)
        return cp_fail(e, "%s: cannot normalize an empty image (%d x %lld x %lld)", name, C, (long long)H,
                       (long long)W);
    if (!(lo >= 0.0 && lo < hi && hi <= 100.0))
        return cp_fail(e, "%s: percentiles (%g, %g) must satisfy 0 <= lo < hi <= 100", name, lo, hi);
    int64_t hw = H * W;
    for (int c = 0; c < C; c++) { /* refuse before touching anything */
        int64_t bad = first_nonfinite(img + (int64_t)c * hw, hw);
        if (bad >= 0)
            return cp_fail(e, "%s: channel %d pixel (%lld, %lld) is not finite", name, c, (long long)(bad / W),
                           (long long)(bad % W));
    }
    for (int c = 0; c < C; c++) {
        float *x = img + (int64_t)c * hw;
        float mn = x[0], mx = x[0];
        for (int64_t i = 1; i < hw; i++) {
            mn = x[i] < mn ? x[i] : mn;
            mx = x[i] > mx ? x[i] : mx;
        }
        if (plo) plo[c] = NAN;
        if (phi) phi[c] = NAN;
        if (!(mx > mn)) continue; /* np.ptp == 0: v3 leaves the channel as it is */
        double p_lo, p_hi;
        channel_percentiles(x, H, W, lo, hi, scratch, &p_lo, &p_hi);
        channel_apply(x, H, W, p_lo, p_hi, ctx);
        if (plo) plo[c] = p_lo;
        if (phi) phi[c] = p_hi;
    }
    return CP_OK;
}

/* ---- convert_image + reshape ---- */

/* Minimum side of a multi-channel image: below 8 rows v3's reshape
 * transposes an HWC image as if it were CHW, and move_min_dim can take a
 * narrow side for the channel axis. A one-channel image has no channel axis
 * to confuse, so any size from 1 x 1 up is taken. */
#define TFM_MIN_SIDE 8

static int check_channels(const Image *img, const int channels[2], const char *path, CpErr *e) {
    for (int k = 0; k < 2; k++)
        if (channels[k] < 0 || channels[k] > 4)
            return cp_fail(e, "%s: channels [%d, %d]: each must be 0 (gray/none) or 1..4", path, channels[0],
                           channels[1]);
    if (img->c == 1 || channels[0] == 0) return CP_OK; /* v3 ignores channels here */
    for (int k = 0; k < 2; k++)
        if (channels[k] > img->c)
            return cp_fail(e, "%s: channels [%d, %d] asks for channel %d but the image has %d channel%s", path,
                           channels[0], channels[1], channels[k], img->c, img->c == 1 ? "" : "s");
    return CP_OK;
}

int tfm_select_channels(float *out, const Image *img, const int channels[2], const char *path, CpErr *e) {
    if (img->c > 1 && (img->h < TFM_MIN_SIDE || img->w < TFM_MIN_SIDE))
        return cp_fail(e, "%s: %d-channel image is %lld x %lld; Cellpose needs at least %d x %d pixels to tell "
                       "the channel axis", path, img->c, (long long)img->h, (long long)img->w, TFM_MIN_SIDE,
                       TFM_MIN_SIDE);
    if (img->c < 1 || img->c > 4) return cp_fail(e, "%s: %d channels; expected 1 to 4", path, img->c);
    if (check_channels(img, channels, path, e)) return CP_EFAIL;
    int64_t hw = img->h * img->w;
    int C = img->c;
    float *plane1 = out + hw;
    if (C == 1) { /* reshape: shape[-1] == 1 -> (img, zeros) */
        image_to_f32(img, out);
        memset(plane1, 0, sizeof(float) * (size_t)hw);
        return CP_OK;
    }
    float *hwc = (float *)cp_malloc(sizeof(float) * (size_t)(hw * C));
    image_to_f32(img, hwc);
    if (channels[0] == 0) {
        /* data.mean(axis=-1): float32 sequential sum, then / C in float32 */
        float fc = (float)C;
        for (int64_t i = 0; i < hw; i++) {
            const float *px = hwc + i * C;
            float s = px[0];
            for (int c = 1; c < C; c++) s = s + px[c];
            out[i] = s / fc;
        }
        memset(plane1, 0, sizeof(float) * (size_t)hw);
    } else {
        int c0 = channels[0] - 1, c1 = channels[1] - 1;
        for (int64_t i = 0; i < hw; i++) {
            out[i] = hwc[i * C + c0];
            plane1[i] = c1 >= 0 ? hwc[i * C + c1] : 0.0f;
        }
    }
    cp_free(hwc);
    return CP_OK;
}

/* ---- LR schedule (train_seg) ---- */

/* numpy.linspace(0, lr, 10)[i] followed by lr repeated: the undecayed LR. */
static double lr_base(double lr, int i) {
    if (i >= 9) return lr; /* y[-1] = stop; then lr * ones */
    double step = lr / 9.0;
    if (step == 0.0) return (double)i / 9.0 * lr + 0.0; /* numpy's any_step_zero branch */
    return (double)i * step + 0.0;                     /* y *= step; y += start */
}

int tfm_lr_schedule(double *lr, double base_lr, int n_epochs, int cellpose_version, CpErr *e) {
    if (n_epochs < 1) return cp_fail(e, "lr schedule: n_epochs = %d; must be at least 1", n_epochs);
    if (!isfinite(base_lr) || base_lr < 0)
        return cp_fail(e, "lr schedule: learning rate %g must be finite and >= 0", base_lr);
    if (cellpose_version != 3 && cellpose_version != 4)
        return cp_fail(e, "lr schedule: cellpose_version %d; expected 3 or 4", cellpose_version);
    int mid = cellpose_version == 3 ? 100 : 99;
    int ndecay = 0, block = 0; /* the last ndecay epochs halve every `block` */
    if (n_epochs > 300) {
        ndecay = 100;
        block = 10;
    } else if (n_epochs > mid) {
        ndecay = 50;
        block = 5;
    }
    int nflat = n_epochs - ndecay; /* entries kept from the undecayed array */
    for (int i = 0; i < nflat; i++) lr[i] = lr_base(base_lr, i);
    if (ndecay) {
        double v = lr_base(base_lr, nflat - 1); /* LR[-1] after dropping */
        for (int k = 0; k < 10; k++) {
            v = v / 2.0; /* LR[-1] / 2 * ones: successive halving */
            for (int b = 0; b < block; b++) lr[nflat + k * block + b] = v;
        }
    }
    return CP_OK;
}
