/* eltwise.h - per-element math of the elementwise ops (kernels/ops.h
 * "elementwise"): ReLU, exact GELU, add, the CPnet style-bias broadcast.
 *
 * DESIGN.md rule 2: these CP_HD functions are the ONE arithmetic definition;
 * kernels/eltwise_cpu.c calls them in its loops and the CUDA kernels will call
 * the same functions. Only IEEE add/sub/mul/div, explicit fmaf and the
 * deterministic core/dmath.h functions appear here (rule 5); nothing in this
 * header is C-only or OpenMP, so nvcc compiles it unchanged.
 *
 * Dimension legend: N batch, C channels, HW = H*W pixels, n flat length.
 *
 * Operation order is written out exactly (the host compiles with
 * -ffp-contract=off, the device with --fmad=false), so each expression rounds
 * the same way on every device.
 *
 * Reduction (add_bias_hw backward, dbias[n,c] = sum_hw dout[n,c,hw]): the long
 * reduction of core/reduce.h over hw: chunks of RCHUNK, each chunk summed
 * sequentially from 0, chunk partials summed sequentially in chunk order. */
#ifndef CP_ELTWISE_H
#define CP_ELTWISE_H

#include "dmath.h"
#include "hd.h"

/* 1/sqrt(2) and sqrt(2/pi)/2 = 1/sqrt(2 pi), rounded to float: the constants
 * PyTorch's CPU GELU kernel uses (kAlpha = M_SQRT1_2, kBeta =
 * M_2_SQRTPI * M_SQRT1_2 * 0.5). */
#define CP_GELU_ALPHA 0.70710678118654752440f
#define CP_GELU_BETA 0.39894228040143267794f

/* ReLU. A NaN passes through unchanged (PyTorch's clamp_min keeps NaN); the
 * NaN is returned as-is, never produced by arithmetic.
 * PyTorch: torch.relu(x) */
CP_HD static inline float relu_fwd(float x) { return (x > 0.0f || x != x) ? x : 0.0f; }

/* ReLU gradient of one element: dout where the forward output is positive.
 * PyTorch's threshold_backward writes `out <= 0 ? 0 : dout`, which differs
 * from dout * (out > 0) only for a NaN `out` (PyTorch passes dout): we follow
 * PyTorch. PyTorch: torch.ops.aten.threshold_backward(dout, out, 0) */
CP_HD static inline float relu_grad(float dout, float out) { return out <= 0.0f ? 0.0f : dout; }

/* Exact GELU: (x * 0.5) * (1 + erf(x * (1/sqrt 2))), PyTorch's CPU order.
 * PyTorch: F.gelu(x, approximate='none') */
CP_HD static inline float gelu_fwd(float x) { return (x * 0.5f) * (1.0f + cp_erff(x * CP_GELU_ALPHA)); }

/* GELU gradient of one element:
 *   cdf = 0.5 * (1 + erf(x / sqrt 2)),  pdf = exp(-x^2 / 2) / sqrt(2 pi),
 *   dinp = dout * (cdf + x * pdf)
 * PyTorch: GeluBackward (approximate='none'), same operation order. */
CP_HD static inline float gelu_grad(float dout, float x) {
    float cdf = 0.5f * (1.0f + cp_erff(x * CP_GELU_ALPHA));
    float pdf = CP_GELU_BETA * cp_expf((x * x) * -0.5f);
    return dout * (cdf + x * pdf);
}

/* Plain add. PyTorch: a + b */
CP_HD static inline float add_fwd(float a, float b) { return a + b; }

/* ---- CPU helper shared by eltwise_cpu.c and pool_cpu.c ---- */
#ifndef __CUDACC__
#include <stdint.h>
/* Row sums by the core/reduce.h plan for up to 8 rows at once:
 * sum[j] = plan-sum over i in [0, HW) of x[(r0 + j) * HW + i], j < nr <= 8.
 * Each row has its own accumulators (chunk partial from 0, then partials
 * summed in chunk order), so the bits equal rplan_chunk_sum/rplan_combine
 * applied to that row alone; the 8 rows only run in lockstep for speed. */
void rows_plan_sum8_cpu(float *sum, const float *x, int64_t r0, int nr, int64_t HW);
#endif

#endif
