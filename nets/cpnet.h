/* cpnet.h - Cellpose's CPnet U-Net (CELLPOSE.md section 1), written once
 * against the op table (kernels/ops.h), so every backend runs the same net.
 *
 * Layout: input x[N, nbase[0], H, W] (H, W divisible by 2^(levels-1)),
 * output y[N, nout, H, W] (dY, dX, cellprob logit), style[N, nbase[last]].
 *
 * Tensors follow Cellpose's PyTorch state_dict exactly: names, shapes and
 * order (313 entries for nbase [2,32,64,128,256]): trainable parameters,
 * BatchNorm running statistics, num_batches_tracked (int64) and the frozen
 * diam_mean/diam_labels scalars. Storage is one buffer per role:
 *   params   trainable floats, state_dict order      (grads: same layout)
 *   stats    BN running_mean / running_var floats
 *   nbt      BN num_batches_tracked (int64)
 *   act      activations of one forward pass (planned by a measuring pass;
 *            an eval-only plan keeps block outputs, style and y, and reuses
 *            one block-sized region for everything inside a block)
 *   dact     their gradients, same offsets as act (training only)
 * Nothing is allocated inside forward or backward. */
#ifndef CP_CPNET_H
#define CP_CPNET_H

#include <stdint.h>

#include "config.h"
#include "ctx.h"
#include "kernels/ops.h"
#include "tensors.h"

#define CPNET_MAX_LEVELS 6
#define CPNET_BN_EPS 1e-5f
#define CPNET_BN_MOMENTUM 0.05f

/* CpTensorInfo, CpTensorKind: nets/tensors.h (fan_in 0 = BN weight 1 / bias 0) */

/* One BatchNorm (+ReLU) + conv unit = PyTorch's batchconv / batchconv0, or
 * batchconvstyle when `style` is set (skip add, style Linear, then the unit). */
typedef struct {
    int cin, cout, k, relu, style;
    int64_t bn_w, bn_b, w, b, full_w, full_b; /* offsets in params */
    int64_t rm, rv;                           /* offsets in stats */
    int nbt;                                  /* index in nbt */
    /* activations of the last forward (pointers into the arena) */
    const float *x;      /* unit input (before the style add) */
    const float *skip;   /* skip tensor added first (style units), or NULL */
    float *xsum;         /* x + skip (style units with skip) */
    float *feat;         /* [N, cout] style feature */
    float *bnin;         /* BN input: x, or (x [+ skip]) + feat */
    float *bn;           /* BN (+ReLU) output = conv input */
    float *mean, *rstd;  /* [cin] */
    float *out;          /* conv output [N, cout, H, W] */
    int H, W;
} CpUnit;

typedef struct {
    CpUnit conv[4], proj;
    int cin, cout;
    const float *in;    /* block input */
    float *x1, *out;    /* proj + conv_1 path, block output */
    float *up;          /* upsampled input (res_up blocks below the deepest) */
    uint8_t *arg;       /* maxpool argmax (res_down blocks > 0) */
    float *pooled_in;   /* maxpool output = block input (res_down blocks > 0) */
    int H, W;
} CpBlock;

typedef struct {
    int nbase[CPNET_MAX_LEVELS + 1];
    int nlev; /* number of res_down blocks = len(nbase) - 1 */
    int nout, k;
    float diam_mean;
} CPnetConfig;

typedef struct {
    CPnetConfig cfg;
    const CpOps *ops;
    CpTensorInfo *tensors;
    int ntensors;
    int64_t nparams, nstats;
    int nnbt, nfrozen;
    float *params, *grads, *stats;
    int64_t *nbt;
    float frozen[2]; /* diam_mean, diam_labels */
    CpBlock down[CPNET_MAX_LEVELS], up[CPNET_MAX_LEVELS];
    CpUnit output;
    /* style */
    float *style_pooled, *style_norm, *style;
    /* activation arena for one (N, H, W, training) plan */
    float *act, *dact, *scratch;
    int64_t act_floats, scratch_floats;
    int plan_n, plan_h, plan_w, plan_train;
    int plan_cap; /* batch the arena was sized for (>= plan_n) */
    int64_t plan_persist; /* eval arenas: floats kept across blocks; the rest is reused per block */
    const float *input;
    float *y; /* output [N, nout, H, W] */
} CPnet;

int cpnet_config_from(CPnetConfig *c, const NetConfig *net, CpErr *e);
/* Builds the tensor table and allocates params/grads/stats (zeroed: call
 * cpnet_init_random or cpnet_load next). */
int cpnet_create(CPnet *net, const CPnetConfig *cfg, const CpOps *ops, CpErr *e);
void cpnet_free(CPnet *net);
/* PyTorch's default init from a seed (Philox): conv/linear weight and bias
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BN weight 1, bias 0, running mean 0,
 * var 1, counters 0; diam_mean = diam_labels = cfg.diam_mean. */
void cpnet_init_random(CPnet *net, uint32_t seed);

/* Model files (safetensors, state_dict names). Loading checks every name,
 * shape and dtype and names what is missing, extra or mis-shaped. */
int cpnet_save(const CPnet *net, const char *path, const char *const *meta, int n_meta, CpErr *e);
int cpnet_load(CPnet *net, const char *path, CpErr *e);
/* The pieces, for files that carry more (checkpoints: optimizer state):
 * fill w[0..ntensors) with the net's tensors in state_dict order; load from
 * an open file, accepting extra tensors whose names start with extra_prefix. */
#include "safetensors.h"
int cpnet_write_list(const CPnet *net, StWriteTensor *w);
int cpnet_load_from(CPnet *net, const StFile *f, const char *extra_prefix, CpErr *e);
/* The net a model file describes (nbase and kernel from the conv shapes,
 * nout, diam_mean), for programs given only a model.bin. */
int cpnet_config_from_file(CPnetConfig *c, const StFile *f, CpErr *e);

/* Size the activation arena for batch N at H x W (training keeps gradients).
 * An arena sized for a larger batch at the same H x W is reused (offsets
 * shrink with N), so a short last batch neither reallocates nor re-measures.
 * Prints nothing; cpnet_memory_report says what each role takes. */
int cpnet_plan(CPnet *net, int N, int H, int W, int training, CpErr *e);
void cpnet_memory_report(const CPnet *net, FILE *f);

/* Forward: training (batch statistics, running stats updated) or eval.
 * Returns the output y[N, nout, H, W] (inside the arena). Fails if a style
 * norm is 0 (Cellpose would produce NaN). */
float *cpnet_forward(CPnet *net, const float *x, int training, const CpCtx *ctx, CpErr *e);
/* Backward of the last training forward: grads += d(loss)/d(params) given
 * dy = d(loss)/dy. */
void cpnet_backward(CPnet *net, const float *dy, const CpCtx *ctx);

/* One training pass over the planned batch, as train/ runs it: forward in
 * training mode, the Cellpose loss against lbl [N, 3, H, W], gradients zeroed
 * then filled by backward; the caller applies its optimizer. dy: scratch
 * [N, nout, H, W]. *loss = the batch loss. Fails only when the forward does
 * (a zero style norm). */
int cpnet_loss_backward(CPnet *net, const float *x, const float *lbl, float *dy, float *loss, const CpCtx *ctx,
                        CpErr *e);

/* SHA-256 of the parameters (params, stats, nbt, frozen in state_dict order
 * as written to the model file). */
void cpnet_hash(const CPnet *net, char hex[65]);

#endif
