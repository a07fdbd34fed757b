/* loss.h - per-element math of the training losses (MSE, BCE-with-logits and
 * Cellpose's segmentation loss), shared by the CPU loops (loss_cpu.c) and the
 * future CUDA kernels (DESIGN.md rule 2). Contracts of the ops: kernels/ops.h.
 *
 * Legend: N batch, HW = H*W pixels, n number of elements averaged.
 * Layouts: y[N,3,H,W] = (dY, dX, cellprob logit), lbl[N,3,H,W] = (cellprob,
 * Y flow, X flow), both contiguous NCHW float32.
 *
 * Exact expression order (every op below is one IEEE float operation, no
 * fused multiply-add unless written as fmaf; -ffp-contract=off / --fmad=false):
 *   MSE term      d = p - t;  d * d
 *   MSE gradient  (s * (p - t)) * dloss,   s = (float)(2.0 / (double)n)
 *                 PyTorch 1.13 mse_loss_backward: norm * (input - target) * grad,
 *                 norm = 2./numel in double, rounded to float by the kernel.
 *   BCE term      (max(x, 0) - x * t) + log1p(exp(-|x|))   (cp_log1pf, cp_expf)
 *   BCE gradient  ((sigmoid(x) - t) * dloss) / (float)n     (cp_sigmoidf)
 *                 PyTorch 1.13 binary_cross_entropy_with_logits_backward:
 *                 (input.sigmoid() - target) * grad, then / numel.
 *   mean          (chunk-plan sum of the terms) / (float)n  (PyTorch: sum().div_(numel))
 *   Cellpose      target flow = 5.0f * lbl, target prob = (lbl > 0.5f) ? 1 : 0;
 *                 loss = (flow_mean / 2.0f) + prob_mean; the flow gradient is
 *                 the MSE gradient with dloss = 0.5f (the backward of `/ 2`),
 *                 the prob gradient the BCE gradient with dloss = 1.
 * We follow PyTorch's backward expression order (not a shorter algebraic one)
 * so the MSE gradients equal PyTorch's bit for bit; the BCE gradients differ
 * only by PyTorch's sigmoid rounding.
 *
 * Determinism: the means are long reductions (core/reduce.h): the logical
 * element index i in [0, n) is cut into RCHUNK chunks, each summed
 * sequentially (acc += term) from 0.0f, the partials summed in chunk order.
 * For the Cellpose loss the logical index is batch-major: flow
 * i = (n*2 + c)*HW + hw over channels c = 0, 1; prob i = n*HW + hw. */
#ifndef CP_LOSS_H
#define CP_LOSS_H

#include <math.h>
#include <stdint.h>

#include "dmath.h"
#include "hd.h"

/* ---- MSE ---- */
/* PyTorch: (input - target).pow(2) */
CP_HD static inline float mse_term(float p, float t) {
    float d = p - t;
    return d * d;
}
/* The gradient factor 2/n: PyTorch computes 2./numel in double and the kernel
 * rounds it to float. */
CP_HD static inline float mse_grad_scale(int64_t n) { return (float)(2.0 / (double)n); }
/* PyTorch: mse_loss_backward: norm * (input - target) * grad_output */
CP_HD static inline float mse_grad(float p, float t, float scale, float dloss) { return (scale * (p - t)) * dloss; }

/* ---- BCE with logits ---- */
/* The stable form max(x,0) - x*t + log1p(exp(-|x|)); PyTorch 1.13 evaluates
 * the same function as (1-t)*x + max(-x,0) + log(exp(-m) + exp(-x-m)). */
CP_HD static inline float bce_term(float x, float t) {
    float pos = x > 0.0f ? x : 0.0f;
    return (pos - x * t) + cp_log1pf(cp_expf(-fabsf(x)));
}
/* PyTorch: (input.sigmoid() - target) * grad, then / numel (nf = (float)n) */
CP_HD static inline float bce_grad(float x, float t, float dloss, float nf) {
    return ((cp_sigmoidf(x) - t) * dloss) / nf;
}

/* ---- Cellpose v3 _loss_fn_seg targets ---- */
/* PyTorch: veci = 5. * lbl[:, 1:] */
CP_HD static inline float cp_flow_target(float l) { return 5.0f * l; }
/* PyTorch: (lbl[:, 0] > 0.5).float() */
CP_HD static inline float cp_prob_target(float l) { return l > 0.5f ? 1.0f : 0.0f; }
/* Backward of `flow_loss /= 2.`: the MSE part receives dloss = 1/2. */
#define CP_FLOW_DLOSS 0.5f

#endif
