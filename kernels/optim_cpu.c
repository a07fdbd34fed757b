/* optim_cpu.c - CPU loops of the optimizer steps (kernels/ops.h): AdamW and
 * SGD with momentum over flat parameter buffers. Per-element math and the
 * PyTorch correspondence: kernels/optim.h.
 *
 * Layout: param, grad, m, v, buf are flat [n] float32 buffers.
 * Determinism: elementwise, each element written by exactly one thread; the
 * loops vectorize across elements (each lane does the same scalar sequence),
 * so neither thread count nor SIMD width changes a bit. */
#include "optim.h"

#include "ops.h"

/* restrict: the buffers never alias, which lets the compiler vectorize. */
void adamw_apply_cpu(float *restrict param, float *restrict m, float *restrict v, const float *restrict grad,
                     int64_t n, const AdamwCoef *c, const CpCtx *ctx) {
    AdamwCoef k = *c;
#pragma omp parallel for simd num_threads(ctx->threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float p = param[i], mi = m[i], vi = v[i];
        adamw_update(&p, &mi, &vi, grad[i], &k);
        param[i] = p;
        m[i] = mi;
        v[i] = vi;
    }
}

void sgd_apply_cpu(float *restrict param, float *restrict buf, const float *restrict grad, int64_t n,
                   const SgdCoef *c, int first, const CpCtx *ctx) {
    SgdCoef k = *c;
    if (!k.use_momentum) { /* PyTorch: no momentum buffer at all */
#pragma omp parallel for simd num_threads(ctx->threads) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            float p = param[i], b = 0.0f;
            sgd_update(&p, &b, grad[i], first, &k);
            param[i] = p;
        }
        return;
    }
#pragma omp parallel for simd num_threads(ctx->threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float p = param[i], b = first ? 0.0f : buf[i]; /* step 1: buf is output only */
        sgd_update(&p, &b, grad[i], first, &k);
        param[i] = p;
        buf[i] = b;
    }
}

/* PyTorch: torch.optim.AdamW(params, lr, betas=(beta1, beta2), eps, weight_decay).step() */
void adamw_step_cpu(float *param, float *m, float *v, const float *grad, int64_t n, double lr, double beta1,
                        double beta2, double eps, double weight_decay, int64_t step, const CpCtx *ctx) {
    AdamwCoef c = adamw_coef(lr, beta1, beta2, eps, weight_decay, step);
    adamw_apply_cpu(param, m, v, grad, n, &c, ctx);
}

/* PyTorch: torch.optim.SGD(params, lr, momentum, weight_decay=weight_decay).step() */
void sgd_step_cpu(float *param, float *buf, const float *grad, int64_t n, double lr, double momentum,
                      double weight_decay, int64_t step, const CpCtx *ctx) {
    SgdCoef c = sgd_coef(lr, momentum, weight_decay);
    sgd_apply_cpu(param, buf, grad, n, &c, step == 1, ctx);
}
