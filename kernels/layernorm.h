/* layernorm.h - LayerNorm (last dim) and LayerNorm2d (SAM neck, over the
 * channels of NCHW): the per-element arithmetic shared by the CPU loops
 * (kernels/layernorm_cpu.c) and the CUDA kernels (kernels/layernorm.cu,
 * later). DESIGN.md rule 2. Compiles as C11 and as CUDA C++: only IEEE
 * add/sub/mul/div/sqrt and explicit fmaf.
 *
 * Legend: M rows, D normalized dim (LayerNorm: x[M,D]); N batch, C channels,
 * HW = H*W (LayerNorm2d: x[N,C,HW], normalized over C at each (n, hw)).
 * "The group" below is one row (LayerNorm) or one pixel (LayerNorm2d) and L
 * its length (D, resp. C); its elements are taken in increasing d (resp. c).
 * Every sum follows the chunk plan of core/reduce.h over that index (one
 * chunk when L <= RCHUNK; the chunk partial is still added to a total that
 * starts at 0.0f, so a -0.0f partial becomes +0.0f, as rplan_combine does).
 *
 * Forward (PyTorch: F.layer_norm(x, (D,), w, b, eps); SAM LayerNorm2d:
 *   u = x.mean(1); s = (x - u).pow(2).mean(1); y = (x - u) / sqrt(s + eps);
 *   y = w[:, None, None] * y + b[:, None, None]):
 *   s1    = plan-sum x                       (acc += x)
 *   mean  = s1 / (float)L                    ln_mean
 *   s2    = plan-sum (x - mean)^2            ln_sqdev: acc = fmaf(d, d, acc)
 *   rstd  = 1 / sqrtf(s2 / (float)L + eps)   ln_rstd(ln_mean(s2, L), eps)
 *   xhat  = (x - mean) * rstd                ln_xhat
 *   out   = fmaf(xhat, w, b)                 ln_affine (w, b of element d / c)
 *
 * Backward (xhat recomputed with ln_xhat from the saved mean/rstd):
 *   dxhat = dout * w                         ln_dxhat
 *   t1    = plan-sum dxhat                   (acc += dxhat)
 *   t2    = plan-sum dxhat * xhat            (acc = fmaf(dxhat, xhat, acc))
 *   dinp += rstd * ((dxhat - t1 / L) - xhat * (t2 / L))   ln_dinp, each op
 *                                            rounded separately, in this order
 *   db[j] += plan-sum dout, dw[j] += plan-sum dout * xhat (fmaf), per feature
 *   j (d, resp. c), over the rows m (LayerNorm) or the batch-major pixel index
 *   i = n*HW + hw (LayerNorm2d). */
#ifndef CP_LAYERNORM_H
#define CP_LAYERNORM_H

#include <math.h>
#include <stdint.h>

#include "hd.h"

/* sum / L: the mean, or the biased variance from the sum of squares. */
CP_HD static inline float ln_mean(float sum, int64_t len) { return sum / (float)len; }

/* One step of the sum of squared deviations: acc + (x - mean)^2, one rounding. */
CP_HD static inline float ln_sqdev(float acc, float x, float mean) {
    float d = x - mean;
    return fmaf(d, d, acc);
}

/* 1 / sqrt(var + eps); IEEE sqrt and division, correctly rounded everywhere. */
CP_HD static inline float ln_rstd(float var, float eps) { return 1.0f / sqrtf(var + eps); }

/* Normalized value. */
CP_HD static inline float ln_xhat(float x, float mean, float rstd) { return (x - mean) * rstd; }

/* Affine output. */
CP_HD static inline float ln_affine(float xhat, float w, float b) { return fmaf(xhat, w, b); }

/* Gradient with respect to xhat. */
CP_HD static inline float ln_dxhat(float dout, float w) { return dout * w; }

/* Input gradient of one element (before the += into dinp).
 * m1 = t1 / L, m2 = t2 / L (see the header). */
CP_HD static inline float ln_dinp(float dxhat, float xhat, float rstd, float m1, float m2) {
    return rstd * ((dxhat - m1) - xhat * m2);
}

#endif
