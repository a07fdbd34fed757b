/* batchnorm.h - BatchNorm2d: the per-element arithmetic shared by the CPU loop
 * (kernels/batchnorm_cpu.c) and the CUDA kernel (kernels/batchnorm.cu, later).
 * DESIGN.md rule 2: one arithmetic definition per op. Compiles as C11 and as
 * CUDA C++: only IEEE add/sub/mul/div/sqrt and explicit fmaf.
 *
 * Legend: N batch, C channels, HW = H*W pixels; tensors NCHW, [N,C,HW].
 * Per channel c the reduced index is batch-major, i = n*HW + hw in [0, count),
 * count = N*HW, and every sum over it follows the chunk plan of core/reduce.h
 * (chunks of RCHUNK consecutive i, each summed sequentially from 0, the
 * chunk partials summed sequentially in chunk order from 0). The sums are
 * accumulated in DOUBLE (as PyTorch's CPU BatchNorm does, acc_type) and
 * rounded to float once at the end: a BN gradient sum of thousands of terms
 * that nearly cancel lost ~1e-4 relative in fp32, which then leaked into
 * every upstream gradient (tests/test_cpnet.c measures it against float64).
 *
 * Forward, training (PyTorch: nn.BatchNorm2d(C, eps, momentum).train()):
 *   s1[c]    = (float) plan-sum_i x   in double   (acc += (double)x)
 *   mean[c]  = s1 / (float)count                  bn_mean
 *   s2[c]    = (float) plan-sum_i (x - mean)^2    bn_sqdev: acc = fma(d, d, acc) in double, d = x - mean (float)
 *   var      = s2 / (float)count   (biased)       bn_mean
 *   rstd[c]  = 1 / sqrtf(var + eps)               bn_rstd
 *   xhat     = (x - mean) * rstd                  bn_xhat
 *   out      = fmaf(xhat, weight[c], bias[c])     bn_affine
 *   running_mean = (1 - momentum) * running_mean + momentum * mean   bn_running
 *   running_var  = (1 - momentum) * running_var  + momentum * s2 / (float)(count - 1)
 *                  (unbiased variance, bn_unbiased; count must be > 1, as in
 *                  PyTorch, which refuses training BN with one value per channel;
 *                  NULL running buffers are not tracked, as track_running_stats=False)
 * Forward, eval: rstd = bn_rstd(running_var, eps), xhat = bn_xhat(x,
 *   running_mean, rstd), out = bn_affine(xhat, weight, bias).
 *
 * Backward (batch statistics; xhat recomputed with bn_xhat from the saved
 * mean/rstd, bit-identical to the forward's):
 *   sb[c] = (float) plan-sum_i dout               (acc += (double)dout, double)
 *   sw[c] = (float) plan-sum_i dout * xhat        (acc = fma(dout, xhat, acc), double)
 *   dbias[c]   += sb,  dweight[c] += sw
 *   k  = weight[c] * rstd[c],  mb = sb / (float)count,  mw = sw / (float)count
 *   dinp += k * ((dout - mb) - xhat * mw)        bn_dinp, each op rounded
 *                                                 separately, in this order */
#ifndef CP_BATCHNORM_H
#define CP_BATCHNORM_H

#include <math.h>
#include <stdint.h>

#include "hd.h"

/* sum / count: a mean (or the biased variance from the sum of squares). */
CP_HD static inline float bn_mean(float sum, int64_t count) { return sum / (float)count; }

/* One step of the sum of squared deviations in double: acc + (x - mean)^2,
 * d = x - mean rounded to float first (the value the forward normalizes). */
CP_HD static inline double bn_sqdev(double acc, float x, float mean) {
    double d = (double)(x - mean);
    return fma(d, d, acc);
}

/* 1 / sqrt(var + eps); IEEE sqrt and division, correctly rounded everywhere. */
CP_HD static inline float bn_rstd(float var, float eps) { return 1.0f / sqrtf(var + eps); }

/* Unbiased variance from the sum of squared deviations (count > 1). */
CP_HD static inline float bn_unbiased(float sumsq, int64_t count) { return sumsq / (float)(count - 1); }

/* PyTorch running-stat update: (1 - momentum) * running + momentum * batch. */
CP_HD static inline float bn_running(float running, float batch, float momentum) {
    return (1.0f - momentum) * running + momentum * batch;
}

/* Normalized value. */
CP_HD static inline float bn_xhat(float x, float mean, float rstd) { return (x - mean) * rstd; }

/* Affine output. */
CP_HD static inline float bn_affine(float xhat, float weight, float bias) { return fmaf(xhat, weight, bias); }

/* Input gradient of one element (before the += into dinp).
 * k = weight * rstd, mb = sum(dout) / count, mw = sum(dout * xhat) / count. */
CP_HD static inline float bn_dinp(float dout, float xhat, float k, float mb, float mw) {
    return k * ((dout - mb) - xhat * mw);
}

#endif
