/* ops.h - the op table: every layer CPnet and the ViT need, as forward /
 * backward pairs with ONE signature on every backend (STYLE.md "Ops").
 * The nets call ops only through a CpOps table that the backend fills
 * (cpu: kernels/ops_cpu.c; cuda: later), so each net is written once.
 *
 * Dimension legend: N batch, C channels, OC output channels, H W spatial
 * (HW = H*W), K kernel, P patch (kernel = stride), M rows (N*T or N),
 * T tokens, D model dim, NH heads, HD head dim (D = NH*HD), L length.
 * All tensors are contiguous float32, NCHW for images, row-major otherwise.
 *
 * Argument order: outputs, then saved-for-backward buffers, then inputs,
 * then shape ints and scalars, then the context. Inputs are const.
 *
 * Gradient convention (stated once, here): every backward ACCUMULATES (+=)
 * into every gradient it writes, parameters and inputs alike. Callers zero
 * gradient buffers once (parameters: at the optimizer step; activations:
 * before the backward pass). A NULL gradient pointer means "not needed".
 *
 * Reduction orders (DESIGN.md rule 1, core/reduce.h), per op:
 *  - conv/linear forward and input gradient: per output, sequential fmaf
 *    over k in the canonical order (conv forward: k = (ci, ky, kx) row-major;
 *    conv input-gradient: k = (co, ky, kx); linear: k = in-feature, resp.
 *    out-feature), from 0, bias added after. Taps outside the image are
 *    skipped (they would add an exact 0).
 *  - weight/bias gradients, BN statistics, pooling means, loss means: the
 *    chunk plan over the reduced index in batch-major order
 *    (i = n*HW + y*W + x for images, i = row for matrices).
 *  - the result of a plan reduction is then added (+=) to the gradient once.
 */
#ifndef CP_OPS_H
#define CP_OPS_H

#include <stdint.h>

#include "ctx.h"

/* ---- convolutions ---- */
/* "same" conv, stride 1, zero padding K/2, K odd (1 or 3 in CPnet).
 * out[N,OC,H,W], inp[N,C,H,W], w[OC,C,K,K], b[OC] or NULL */
void conv2d_forward_cpu(float *out, const float *inp, const float *w, const float *b, int N, int C, int H, int W,
                        int OC, int K, const CpCtx *ctx);
void conv2d_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         int N, int C, int H, int W, int OC, int K, const CpCtx *ctx);

/* Patch embedding: conv with kernel = stride = P, no padding (ViT). Output is
 * token-major channels-last, the layout the ViT blocks use:
 * out[N, (H/P)*(W/P), OC], inp[N,C,H,W] (H, W divisible by P), w[OC,C,P,P], b[OC] */
void patch_embed_forward_cpu(float *out, const float *inp, const float *w, const float *b, int N, int C, int H,
                             int W, int OC, int P, const CpCtx *ctx);
void patch_embed_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                              const float *w, int N, int C, int H, int W, int OC, int P, const CpCtx *ctx);

/* Transposed conv with kernel = stride = P, no padding (the ViT readout):
 * out[n, o, P*i+a, P*j+c] = sum_ci inp[n,ci,i,j] * w[ci,o,a,c] (+ b[o]).
 * out[N,OC,H*P,W*P], inp[N,C,H,W], w[C,OC,P,P], b[OC] or NULL */
void conv_transpose_patch_forward_cpu(float *out, const float *inp, const float *w, const float *b, int N, int C,
                                      int H, int W, int OC, int P, const CpCtx *ctx);
void conv_transpose_patch_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                       const float *w, int N, int C, int H, int W, int OC, int P,
                                       const CpCtx *ctx);

/* ---- linear ---- */
/* out[M,OUT] = inp[M,IN] @ w[OUT,IN]^T + b[OUT] (b may be NULL) */
void linear_forward_cpu(float *out, const float *inp, const float *w, const float *b, int64_t M, int IN, int OUT,
                        const CpCtx *ctx);
void linear_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         int64_t M, int IN, int OUT, const CpCtx *ctx);

/* ---- normalization ---- */
/* BatchNorm2d, training mode: batch mean and biased variance over (N, HW)
 * normalize; running stats updated in place with momentum (PyTorch
 * convention: running = (1 - momentum) * running + momentum * batch, the
 * running variance takes the unbiased batch variance).
 * out[N,C,HW]; saved mean[C], rstd[C] = 1/sqrt(var_biased + eps) */
void batchnorm_forward_train_cpu(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                 const float *inp, const float *weight, const float *bias, int N, int C, int64_t HW,
                                 float eps, float momentum, const CpCtx *ctx);
void batchnorm_forward_eval_cpu(float *out, const float *inp, const float *weight, const float *bias,
                                const float *running_mean, const float *running_var, int N, int C, int64_t HW,
                                float eps, const CpCtx *ctx);
void batchnorm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *mean, const float *rstd, const float *weight, int N, int C, int64_t HW,
                            const CpCtx *ctx);

/* LayerNorm over the last dim: out[M,D], saved mean[M], rstd[M]; w[D], b[D] */
void layernorm_forward_cpu(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int64_t M, int D, float eps, const CpCtx *ctx);
void layernorm_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *mean, const float *rstd, const float *w, int64_t M, int D,
                            const CpCtx *ctx);
/* LayerNorm2d (SAM neck): per pixel over channels of NCHW: out[N,C,HW],
 * saved mean[N,HW], rstd[N,HW]; w[C], b[C] */
void layernorm2d_forward_cpu(float *out, float *mean, float *rstd, const float *inp, const float *w,
                             const float *b, int N, int C, int64_t HW, float eps, const CpCtx *ctx);
void layernorm2d_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                              const float *mean, const float *rstd, const float *w, int N, int C, int64_t HW,
                              const CpCtx *ctx);

/* ---- elementwise ---- */
void relu_forward_cpu(float *out, const float *inp, int64_t n, const CpCtx *ctx);
/* dinp += dout * (out > 0); `out` is the forward output (or input: same sign) */
void relu_backward_cpu(float *dinp, const float *dout, const float *out, int64_t n, const CpCtx *ctx);
/* exact GELU: x * 0.5 * (1 + erf(x / sqrt(2))) */
void gelu_forward_cpu(float *out, const float *inp, int64_t n, const CpCtx *ctx);
void gelu_backward_cpu(float *dinp, const float *dout, const float *inp, int64_t n, const CpCtx *ctx);
/* out = a + b (out may alias a or b) */
void add_forward_cpu(float *out, const float *a, const float *b, int64_t n, const CpCtx *ctx);
/* out[n,c,hw] = inp[n,c,hw] + bias[n,c] (the CPnet style feature, broadcast over HW) */
void add_bias_hw_forward_cpu(float *out, const float *inp, const float *bias, int N, int C, int64_t HW,
                             const CpCtx *ctx);
/* dinp += dout; dbias[n,c] += sum_hw dout[n,c,hw] (chunk plan over hw) */
void add_bias_hw_backward_cpu(float *dinp, float *dbias, const float *dout, int N, int C, int64_t HW,
                              const CpCtx *ctx);

/* ---- pooling / resampling ---- */
/* MaxPool2d(2, stride 2), floor mode: out[N,C,H/2,W/2]; saved arg[N,C,H/2,W/2]
 * = position 0..3 (dy*2+dx) of the first maximum in scan order (NaN wins) */
void maxpool2x2_forward_cpu(float *out, uint8_t *arg, const float *inp, int N, int C, int H, int W,
                            const CpCtx *ctx);
void maxpool2x2_backward_cpu(float *dinp, const float *dout, const uint8_t *arg, int N, int C, int H, int W,
                             const CpCtx *ctx);
/* nearest x2: out[N,C,2H,2W], out[y][x] = inp[y/2][x/2]; backward is a gather:
 * dinp[y][x] += dout[2y][2x] + dout[2y][2x+1] + dout[2y+1][2x] + dout[2y+1][2x+1] in that order */
void upsample2x_forward_cpu(float *out, const float *inp, int N, int C, int H, int W, const CpCtx *ctx);
void upsample2x_backward_cpu(float *dinp, const float *dout, int N, int C, int H, int W, const CpCtx *ctx);

/* CPnet style: global average pool then divide by the L2 norm (no epsilon,
 * as Cellpose). out[N,C]; saved pooled[N,C], norm[N]. Returns the number of
 * samples whose norm is 0 (their style is NaN, as in Cellpose): callers
 * report it. */
int style_forward_cpu(float *out, float *pooled, float *norm, const float *inp, int N, int C, int64_t HW,
                      const CpCtx *ctx);
void style_backward_cpu(float *dinp, const float *dout, const float *out, const float *norm, int N, int C,
                        int64_t HW, const CpCtx *ctx);

/* ---- attention (ViT) ---- */
/* softmax over the last dim: out[M,L] */
void softmax_forward_cpu(float *out, const float *inp, int64_t M, int L, const CpCtx *ctx);
void softmax_backward_cpu(float *dinp, const float *dout, const float *out, int64_t M, int L, const CpCtx *ctx);

/* 1-D linear resampling of a table along its rows, as PyTorch's
 * F.interpolate(mode="linear", align_corners=False) on (1, C, Lin) -> Lout:
 * src = max(0, (i + 0.5) * Lin / Lout - 0.5), i0 = floor(src),
 * i1 = min(i0 + 1, Lin - 1), out[i] = (1 - l) * inp[i0] + l * inp[i1], l = src - i0.
 * out[Lout, C], inp[Lin, C]. Backward is a gather: each input row sums its
 * contributions in increasing output order (no atomics anywhere). */
void interp1d_forward_cpu(float *out, const float *inp, int Lin, int Lout, int C, const CpCtx *ctx);
void interp1d_backward_cpu(float *dinp, const float *dout, int Lin, int Lout, int C, const CpCtx *ctx);

/* SAM global attention with decomposed relative position, on a Hq x Wq token
 * grid (T = Hq*Wq). qkv[N,T,3D] is the qkv Linear output, features ordered
 * [q | k | v], each head-major (head h uses features h*HD..h*HD+HD-1).
 * relh[2Hq-1, HD], relw[2Wq-1, HD] are the tables AFTER interpolation.
 * logit(i,j) = (dot(q_i * HD^-0.5, k_j) + dot(q_i, relh[qh-kh+Hq-1]))
 *              + dot(q_i, relw[qw-kw+Wq-1])        (q_i unscaled in the rel terms)
 * out[N,T,D] (heads concatenated head-major, before proj);
 * saved att[N,NH,T,T] = softmax(logits) over j. */
void attention_forward_cpu(float *out, float *att, const float *qkv, const float *relh, const float *relw, int N,
                           int Hq, int Wq, int NH, int HD, const CpCtx *ctx);
/* dqkv[N,T,3D] +=, drelh[2Hq-1,HD] +=, drelw[2Wq-1,HD] += */
void attention_backward_cpu(float *dqkv, float *drelh, float *drelw, const float *dout, const float *att,
                            const float *qkv, const float *relh, const float *relw, int N, int Hq, int Wq, int NH,
                            int HD, const CpCtx *ctx);

/* ---- losses (each returns the mean loss; gradients are scaled by dloss) ---- */
float mse_forward_cpu(const float *pred, const float *target, int64_t n, const CpCtx *ctx);
void mse_backward_cpu(float *dpred, const float *pred, const float *target, int64_t n, float dloss,
                      const CpCtx *ctx);
/* mean of max(x,0) - x*t + log1p(exp(-|x|)) */
float bce_logits_forward_cpu(const float *logit, const float *target, int64_t n, const CpCtx *ctx);
void bce_logits_backward_cpu(float *dlogit, const float *logit, const float *target, int64_t n, float dloss,
                             const CpCtx *ctx);
/* Cellpose v3 loss on y[N,3,H,W] (dY, dX, cellprob logit) and lbl[N,3,H,W]
 * (cellprob target, Y flow, X flow):
 * MSE_mean(y[:,0:2], 5*lbl[:,1:3]) / 2 + BCEWithLogits_mean(y[:,2], lbl[:,0] > 0.5).
 * Returns the loss; dy (may be NULL) += gradient of the loss. */
float cellpose_loss_cpu(float *dy, const float *y, const float *lbl, int N, int64_t HW, const CpCtx *ctx);

/* ---- optimizers (PyTorch semantics, one step over a flat buffer) ----
 * Hyperparameters are doubles, as in PyTorch's Python: the step scalars
 * (bias corrections, step size) are computed in double and rounded to float
 * exactly where torch rounds them, which makes both optimizers bit-exact with
 * torch 1.13's CPU implementation (kernels/optim.h has the details). */
/* AdamW: p -= lr*wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
 * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). t = step >= 1. */
void adamw_step_cpu(float *param, float *m, float *v, const float *grad, int64_t n, double lr, double beta1,
                    double beta2, double eps, double weight_decay, int64_t step, const CpCtx *ctx);
/* SGD, momentum, dampening 0, no nesterov, L2 decay added to the gradient:
 * g' = g + wd*p; buf = (step == 1) ? g' : momentum*buf + g'; p -= lr*buf */
void sgd_step_cpu(float *param, float *buf, const float *grad, int64_t n, double lr, double momentum,
                  double weight_decay, int64_t step, const CpCtx *ctx);

/* ---- the op table ----
 * The nets call ops only through this table, so CPnet and the ViT are written
 * once; a backend fills it (cp_ops_cpu() below; the CUDA backend later fills
 * one with device pointers and the same signatures). */
typedef struct {
    const char *backend;
    void (*conv2d_forward)(float *out, const float *inp, const float *w, const float *b, int N, int C, int H, int W, int OC, int K, const CpCtx *ctx);
    void (*conv2d_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int N, int C, int H, int W, int OC, int K, const CpCtx *ctx);
    void (*patch_embed_forward)(float *out, const float *inp, const float *w, const float *b, int N, int C, int H, int W, int OC, int P, const CpCtx *ctx);
    void (*patch_embed_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int N, int C, int H, int W, int OC, int P, const CpCtx *ctx);
    void (*conv_transpose_patch_forward)(float *out, const float *inp, const float *w, const float *b, int N, int C, int H, int W, int OC, int P, const CpCtx *ctx);
    void (*conv_transpose_patch_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int N, int C, int H, int W, int OC, int P, const CpCtx *ctx);
    void (*linear_forward)(float *out, const float *inp, const float *w, const float *b, int64_t M, int IN, int OUT, const CpCtx *ctx);
    void (*linear_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int64_t M, int IN, int OUT, const CpCtx *ctx);
    void (*batchnorm_forward_train)(float *out, float *mean, float *rstd, float *running_mean, float *running_var, const float *inp, const float *weight, const float *bias, int N, int C, int64_t HW, float eps, float momentum, const CpCtx *ctx);
    void (*batchnorm_forward_eval)(float *out, const float *inp, const float *weight, const float *bias, const float *running_mean, const float *running_var, int N, int C, int64_t HW, float eps, const CpCtx *ctx);
    void (*batchnorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *mean, const float *rstd, const float *weight, int N, int C, int64_t HW, const CpCtx *ctx);
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int64_t M, int D, float eps, const CpCtx *ctx);
    void (*layernorm_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *mean, const float *rstd, const float *w, int64_t M, int D, const CpCtx *ctx);
    void (*layernorm2d_forward)(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int N, int C, int64_t HW, float eps, const CpCtx *ctx);
    void (*layernorm2d_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *mean, const float *rstd, const float *w, int N, int C, int64_t HW, const CpCtx *ctx);
    void (*relu_forward)(float *out, const float *inp, int64_t n, const CpCtx *ctx);
    void (*relu_backward)(float *dinp, const float *dout, const float *out, int64_t n, const CpCtx *ctx);
    void (*gelu_forward)(float *out, const float *inp, int64_t n, const CpCtx *ctx);
    void (*gelu_backward)(float *dinp, const float *dout, const float *inp, int64_t n, const CpCtx *ctx);
    void (*add_forward)(float *out, const float *a, const float *b, int64_t n, const CpCtx *ctx);
    void (*add_bias_hw_forward)(float *out, const float *inp, const float *bias, int N, int C, int64_t HW, const CpCtx *ctx);
    void (*add_bias_hw_backward)(float *dinp, float *dbias, const float *dout, int N, int C, int64_t HW, const CpCtx *ctx);
    void (*maxpool2x2_forward)(float *out, uint8_t *arg, const float *inp, int N, int C, int H, int W, const CpCtx *ctx);
    void (*maxpool2x2_backward)(float *dinp, const float *dout, const uint8_t *arg, int N, int C, int H, int W, const CpCtx *ctx);
    void (*upsample2x_forward)(float *out, const float *inp, int N, int C, int H, int W, const CpCtx *ctx);
    void (*upsample2x_backward)(float *dinp, const float *dout, int N, int C, int H, int W, const CpCtx *ctx);
    int (*style_forward)(float *out, float *pooled, float *norm, const float *inp, int N, int C, int64_t HW, const CpCtx *ctx);
    void (*style_backward)(float *dinp, const float *dout, const float *out, const float *norm, int N, int C, int64_t HW, const CpCtx *ctx);
    void (*softmax_forward)(float *out, const float *inp, int64_t M, int L, const CpCtx *ctx);
    void (*softmax_backward)(float *dinp, const float *dout, const float *out, int64_t M, int L, const CpCtx *ctx);
    void (*interp1d_forward)(float *out, const float *inp, int Lin, int Lout, int C, const CpCtx *ctx);
    void (*interp1d_backward)(float *dinp, const float *dout, int Lin, int Lout, int C, const CpCtx *ctx);
    void (*attention_forward)(float *out, float *att, const float *qkv, const float *relh, const float *relw, int N, int Hq, int Wq, int NH, int HD, const CpCtx *ctx);
    void (*attention_backward)(float *dqkv, float *drelh, float *drelw, const float *dout, const float *att, const float *qkv, const float *relh, const float *relw, int N, int Hq, int Wq, int NH, int HD, const CpCtx *ctx);
    float (*mse_forward)(const float *pred, const float *target, int64_t n, const CpCtx *ctx);
    void (*mse_backward)(float *dpred, const float *pred, const float *target, int64_t n, float dloss, const CpCtx *ctx);
    float (*bce_logits_forward)(const float *logit, const float *target, int64_t n, const CpCtx *ctx);
    void (*bce_logits_backward)(float *dlogit, const float *logit, const float *target, int64_t n, float dloss, const CpCtx *ctx);
    float (*cellpose_loss)(float *dy, const float *y, const float *lbl, int N, int64_t HW, const CpCtx *ctx);
    void (*adamw_step)(float *param, float *m, float *v, const float *grad, int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step, const CpCtx *ctx);
    void (*sgd_step)(float *param, float *buf, const float *grad, int64_t n, double lr, double momentum, double weight_decay, int64_t step, const CpCtx *ctx);
} CpOps;

/* The CPU reference backend (kernels/ops_cpu.c). */
const CpOps *cp_ops_cpu(void);

#endif
