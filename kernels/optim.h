/* optim.h - AdamW and SGD-with-momentum steps with PyTorch 1.13's CPU
 * arithmetic (torch.optim.AdamW / torch.optim.SGD, single-tensor path, the
 * default), shared by the CPU loops (optim_cpu.c) and the future CUDA
 * kernels (DESIGN.md rule 2). Contracts of the ops: kernels/ops.h.
 *
 * Layout: param, grad and the state (AdamW m, v; SGD buf) are flat [n]
 * float32 buffers in the same order.
 *
 * Two halves:
 *  1. the step's scalars (adamw_coef, sgd_coef): computed on the host in
 *     double exactly as PyTorch's Python code does (`1 - lr * weight_decay`,
 *     `1 - beta1 ** step`, `lr / bias_correction1`, `math.sqrt(...)`), then
 *     rounded to float where PyTorch's CPU kernels round a Python scalar
 *     (Scalar.to<float>()). beta ** step is a double-double binary power,
 *     rounded once: the correctly rounded double (Python calls glibc pow,
 *     which is correctly rounded but for results within ~2^-68 relative of a
 *     rounding midpoint). No libm pow (rule 5).
 *  2. the per-element update (adamw_update, sgd_update): PyTorch's sequence
 *     of in-place tensor ops, one rounding per op, with the fused
 *     multiply-adds that PyTorch's AVX2 kernels execute (measured against
 *     torch 1.13 on this machine): add_(x, alpha=a) is fma(x, a, self)
 *     (vec::fmadd); addcmul_(t1, t2, value=s) is fma(s * t1, t2, self) (GCC
 *     contracts the vector mul+add); addcdiv_(t1, t2, value=s) is
 *     self + (s * t1) / t2 (a division cannot be contracted).
 * Result: bit-identical to torch 1.13 CPU AdamW/SGD when the hyperparameters
 * are given as the same doubles (use the *_f64 entry points; the ops.h
 * signatures take float hyperparameters, and e.g. (double)0.9f != 0.9).
 *
 * Determinism: purely elementwise, each element written by one thread; the
 * results do not depend on thread count or SIMD width. */
#ifndef CP_OPTIM_H
#define CP_OPTIM_H

#include <math.h>
#include <stdint.h>

#include "hd.h"

/* ---- step scalars (host, double) ---- */

/* AdamW scalars of one step, as the float values PyTorch's kernels use. */
typedef struct {
    float decay;           /* float(1 - lr*wd)            param.mul_(1 - lr * weight_decay) */
    float beta1;           /* float(beta1)                exp_avg.mul_(beta1) */
    float one_minus_beta1; /* float(1 - beta1)            .add_(grad, alpha=1 - beta1) */
    float beta2;           /* float(beta2)                exp_avg_sq.mul_(beta2) */
    float one_minus_beta2; /* float(1 - beta2)            .addcmul_(grad, grad, value=1 - beta2) */
    float bc2_sqrt;        /* float(sqrt(1 - beta2**t))   exp_avg_sq.sqrt() / bias_correction2_sqrt */
    float eps;             /* float(eps)                  .add_(eps) */
    float neg_step_size;   /* float(-(lr / (1 - beta1**t)))  param.addcdiv_(..., value=-step_size) */
} AdamwCoef;

/* SGD scalars. Branches follow PyTorch's `if weight_decay != 0` and
 * `if momentum != 0` on the Python doubles. */
typedef struct {
    int use_wd;       /* weight_decay != 0 */
    float wd;         /* float(weight_decay)   d_p = d_p.add(param, alpha=weight_decay) */
    int use_momentum; /* momentum != 0 */
    float momentum;   /* float(momentum)       buf.mul_(momentum).add_(d_p, alpha=1) */
    float neg_lr;     /* float(-lr)            param.add_(d_p, alpha=-lr) */
} SgdCoef;

/* b ** t for an integer t >= 0 and 0 <= b <= 1: binary powering in
 * double-double (hi + lo, products made exact with fma), rounded once at the
 * end. Correctly rounded (except within ~2^-100 relative of a rounding
 * midpoint) for results >= 2^-969; below that the low word underflows and a
 * last-bit error is possible, which cannot matter here: 1 - b**t is exactly
 * 1 for every b**t < 2^-54. */
static inline double optim_powi(double b, int64_t t) {
    double rh = 1.0, rl = 0.0, bh = b, bl = 0.0;
    while (t > 0) {
        if (t & 1) { /* r *= b */
            double p = rh * bh, e = fma(rh, bh, -p);
            e += rh * bl + rl * bh;
            rh = p + e;
            rl = e - (rh - p);
        }
        t >>= 1;
        if (t > 0) { /* b *= b */
            double p = bh * bh, e = fma(bh, bh, -p);
            e += 2.0 * (bh * bl);
            bh = p + e;
            bl = e - (bh - p);
        }
    }
    return rh; /* rh = fl(p + e) and rh + rl = p + e: rh is the rounded value */
}

/* PyTorch _single_tensor_adamw, step t (state['step'] after += 1, t >= 1). */
static inline AdamwCoef adamw_coef(double lr, double beta1, double beta2, double eps, double weight_decay,
                                   int64_t step) {
    AdamwCoef c;
    double bias_correction1 = 1.0 - optim_powi(beta1, step);
    double bias_correction2 = 1.0 - optim_powi(beta2, step);
    double step_size = lr / bias_correction1;
    c.decay = (float)(1.0 - lr * weight_decay);
    c.beta1 = (float)beta1;
    c.one_minus_beta1 = (float)(1.0 - beta1);
    c.beta2 = (float)beta2;
    c.one_minus_beta2 = (float)(1.0 - beta2);
    c.bc2_sqrt = (float)sqrt(bias_correction2); /* IEEE sqrt: correctly rounded, as math.sqrt */
    c.eps = (float)eps;
    c.neg_step_size = (float)(-step_size);
    return c;
}

/* PyTorch _single_tensor_sgd (dampening 0, nesterov False). */
static inline SgdCoef sgd_coef(double lr, double momentum, double weight_decay) {
    SgdCoef c;
    c.use_wd = weight_decay != 0.0;
    c.wd = (float)weight_decay;
    c.use_momentum = momentum != 0.0;
    c.momentum = (float)momentum;
    c.neg_lr = (float)(-lr);
    return c;
}

/* ---- per-element updates (host + device) ---- */

/* One AdamW element: p, m, v updated in place from gradient g. */
CP_HD static inline void adamw_update(float *p, float *m, float *v, float g, const AdamwCoef *c) {
    float pd = *p * c->decay;                         /* PyTorch: param.mul_(1 - lr * weight_decay) */
    float m1 = fmaf(g, c->one_minus_beta1, *m * c->beta1); /* exp_avg.mul_(beta1).add_(grad, alpha=1-beta1) */
    float v1 = fmaf(c->one_minus_beta2 * g, g, *v * c->beta2); /* exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2) */
    float denom = sqrtf(v1) / c->bc2_sqrt + c->eps;   /* (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps) */
    *p = pd + (c->neg_step_size * m1) / denom;        /* param.addcdiv_(exp_avg, denom, value=-step_size) */
    *m = m1;
    *v = v1;
}

/* One SGD element: p and the momentum buffer b updated in place; `first`
 * (step 1) sets b instead of reading it (b may be garbage then). b is
 * untouched when momentum is 0. */
CP_HD static inline void sgd_update(float *p, float *b, float g, int first, const SgdCoef *c) {
    float d = c->use_wd ? fmaf(*p, c->wd, g) : g; /* PyTorch: d_p = d_p.add(param, alpha=weight_decay) */
    if (c->use_momentum) {
        d = first ? d : *b * c->momentum + d; /* buf = clone(d_p) | buf.mul_(momentum).add_(d_p) */
        *b = d;
    }
    *p = fmaf(d, c->neg_lr, *p); /* param.add_(d_p, alpha=-lr) */
}

/* ---- CPU entry points (optim_cpu.c); adamw_step_cpu/sgd_step_cpu are the
 * ops.h signatures (double hyperparameters, as PyTorch's Python) ---- */
#ifndef __CUDACC__
#include "ctx.h"

/* param[n], m[n], v[n] updated in place from grad[n] */
void adamw_apply_cpu(float *param, float *m, float *v, const float *grad, int64_t n, const AdamwCoef *c,
                     const CpCtx *ctx);
/* param[n], buf[n] (NULL if momentum is 0) updated in place from grad[n];
 * first = (step == 1) */
void sgd_apply_cpu(float *param, float *buf, const float *grad, int64_t n, const SgdCoef *c, int first,
                   const CpCtx *ctx);
/* Bit-exact with torch.optim.AdamW / SGD given the same Python doubles. */
void adamw_step_cpu(float *param, float *m, float *v, const float *grad, int64_t n, double lr, double beta1,
                    double beta2, double eps, double weight_decay, int64_t step, const CpCtx *ctx);
void sgd_step_cpu(float *param, float *buf, const float *grad, int64_t n, double lr, double momentum,
                  double weight_decay, int64_t step, const CpCtx *ctx);
#endif

#endif
