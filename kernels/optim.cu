// optim.cu - CUDA twins of kernels/optim_cpu.c: AdamW and SGD with momentum
// over flat [n] buffers. The step scalars are computed on the host exactly
// as the CPU path does (adamw_coef / sgd_coef of kernels/optim.h, double,
// rounded to float where PyTorch rounds) and passed by value; the
// per-element update is the CP_HD adamw_update / sgd_update of optim.h.
// Determinism: elementwise, one thread per element.
#include <stdint.h>

#include "kernels/ops_cuda.h"
#include "kernels/optim.h"

#define GRID_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__global__ void k_adamw(float *param, float *m, float *v, const float *grad, int64_t n, AdamwCoef c) {
    GRID_LOOP(i, n) {
        float p = param[i], mi = m[i], vi = v[i];
        adamw_update(&p, &mi, &vi, grad[i], &c);
        param[i] = p;
        m[i] = mi;
        v[i] = vi;
    }
}

// buf is NULL when momentum is 0 (PyTorch keeps no buffer); step 1 never reads it.
__global__ void k_sgd(float *param, float *buf, const float *grad, int64_t n, SgdCoef c, int first) {
    GRID_LOOP(i, n) {
        float p = param[i], b = (c.use_momentum && !first) ? buf[i] : 0.0f;
        sgd_update(&p, &b, grad[i], first, &c);
        param[i] = p;
        if (c.use_momentum) buf[i] = b;
    }
}

/* PyTorch: torch.optim.AdamW(...).step(), bit-exact with adamw_step_cpu */
void adamw_step_cuda(float *param, float *m, float *v, const float *grad, int64_t n, double lr, double beta1,
                     double beta2, double eps, double weight_decay, int64_t step, const CpCtx *ctx) {
    if (n <= 0) return;
    AdamwCoef c = adamw_coef(lr, beta1, beta2, eps, weight_decay, step);
    k_adamw<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(param, m, v, grad, n, c);
    CUDA_CHECK_LAUNCH();
}

/* PyTorch: torch.optim.SGD(...).step(), bit-exact with sgd_step_cpu */
void sgd_step_cuda(float *param, float *buf, const float *grad, int64_t n, double lr, double momentum,
                   double weight_decay, int64_t step, const CpCtx *ctx) {
    if (n <= 0) return;
    SgdCoef c = sgd_coef(lr, momentum, weight_decay);
    k_sgd<<<cp_flat_blocks(n), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(param, buf, grad, n, c, step == 1);
    CUDA_CHECK_LAUNCH();
}
