/* cpnet.c - CPnet forward/backward against the op table, tensor table in
 * Cellpose's state_dict order, init, model files. See cpnet.h.
 *
 * Memory: cpnet_plan runs the forward once in "measuring" mode (no op is
 * called, take() only counts floats) to size the activation arena exactly;
 * the real forward then takes the same slices in the same order. Gradients
 * of activations live in a twin arena at the same offsets (G(t) below), so a
 * tensor's gradient is found from the tensor itself.
 *
 * Backward accumulates into G() of every consumer's inputs (ops.h
 * convention), visiting consumers before producers, always in the same order:
 * a tensor that feeds several layers (a block input feeds proj and conv_0;
 * the deepest map feeds res_up's input, its skip and the style) sums its
 * gradients in that fixed order. */
#include "cpnet.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "sha256.h"

/* ---- tensor table ---- */

static __attribute__((format(printf, 5, 6))) int64_t add_tensor(CPnet *net, CpTensorKind kind, int ndim, const int64_t *shape, const char *fmt, ...) {
    if (net->ntensors % 64 == 0)
        net->tensors = realloc(net->tensors, sizeof(CpTensorInfo) * (size_t)(net->ntensors + 64));
    CP_ASSERT(net->tensors);
    CpTensorInfo *t = &net->tensors[net->ntensors++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->kind = kind;
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->numel *= shape[d];
    }
    switch (kind) {
    case T_PARAM: t->offset = net->nparams; net->nparams += t->numel; break;
    case T_RUNNING_MEAN:
    case T_RUNNING_VAR: t->offset = net->nstats; net->nstats += t->numel; break;
    case T_NBT: t->offset = net->nnbt++; break;
    case T_FROZEN: t->offset = net->nfrozen++; break;
    }
    return t->offset;
}

/* BatchNorm keys of a unit at prefix P: P.0.{weight,bias,running_mean,running_var,num_batches_tracked} */
static void add_bn(CPnet *net, CpUnit *u, const char *p) {
    int64_t c[1] = {u->cin};
    u->bn_w = add_tensor(net, T_PARAM, 1, c, "%s.0.weight", p);
    u->bn_b = add_tensor(net, T_PARAM, 1, c, "%s.0.bias", p);
    u->rm = add_tensor(net, T_RUNNING_MEAN, 1, c, "%s.0.running_mean", p);
    u->rv = add_tensor(net, T_RUNNING_VAR, 1, c, "%s.0.running_var", p);
    u->nbt = (int)add_tensor(net, T_NBT, 0, c, "%s.0.num_batches_tracked", p);
}

/* batchconv (relu = 1: BN, ReLU, conv at index 2) or batchconv0 (relu = 0:
 * BN, conv at index 1). */
static void add_unit(CPnet *net, CpUnit *u, int cin, int cout, int k, int relu, const char *p) {
    memset(u, 0, sizeof *u);
    u->cin = cin, u->cout = cout, u->k = k, u->relu = relu;
    add_bn(net, u, p);
    int64_t ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    u->w = add_tensor(net, T_PARAM, 4, ws, "%s.%d.weight", p, relu ? 2 : 1);
    net->tensors[net->ntensors - 1].fan_in = (int64_t)cin * k * k;
    u->b = add_tensor(net, T_PARAM, 1, bs, "%s.%d.bias", p, relu ? 2 : 1);
    net->tensors[net->ntensors - 1].fan_in = (int64_t)cin * k * k;
}

/* batchconvstyle at prefix P: P.conv.* (a batchconv) then P.full.{weight,bias} */
static void add_style_unit(CPnet *net, CpUnit *u, int c, int style_ch, int k, const char *p) {
    char q[128];
    snprintf(q, sizeof q, "%.100s.conv", p);
    add_unit(net, u, c, c, k, 1, q);
    u->style = 1;
    int64_t ws[2] = {c, style_ch}, bs[1] = {c};
    u->full_w = add_tensor(net, T_PARAM, 2, ws, "%s.full.weight", p);
    net->tensors[net->ntensors - 1].fan_in = style_ch;
    u->full_b = add_tensor(net, T_PARAM, 1, bs, "%s.full.bias", p);
    net->tensors[net->ntensors - 1].fan_in = style_ch;
}

static void build_table(CPnet *net) {
    const CPnetConfig *c = &net->cfg;
    int64_t one[1] = {1};
    add_tensor(net, T_FROZEN, 1, one, "diam_mean");
    add_tensor(net, T_FROZEN, 1, one, "diam_labels");
    char p[96];
    for (int n = 0; n < c->nlev; n++) { /* downsample.down.res_down_n */
        CpBlock *b = &net->down[n];
        b->cin = c->nbase[n], b->cout = c->nbase[n + 1];
        for (int t = 0; t < 4; t++) {
            snprintf(p, sizeof p, "downsample.down.res_down_%d.conv.conv_%d", n, t);
            add_unit(net, &b->conv[t], t ? b->cout : b->cin, b->cout, c->k, 1, p);
        }
        snprintf(p, sizeof p, "downsample.down.res_down_%d.proj", n);
        add_unit(net, &b->proj, b->cin, b->cout, 1, 0, p);
    }
    int style_ch = c->nbase[c->nlev];
    for (int m = 0; m < c->nlev; m++) { /* upsample.up.res_up_m: nbaseup[m+1] -> nbaseup[m] */
        CpBlock *b = &net->up[m];
        b->cin = m + 2 <= c->nlev ? c->nbase[m + 2] : c->nbase[c->nlev];
        b->cout = c->nbase[m + 1];
        snprintf(p, sizeof p, "upsample.up.res_up_%d.conv.conv_0", m);
        add_unit(net, &b->conv[0], b->cin, b->cout, c->k, 1, p);
        for (int t = 1; t < 4; t++) {
            snprintf(p, sizeof p, "upsample.up.res_up_%d.conv.conv_%d", m, t);
            add_style_unit(net, &b->conv[t], b->cout, style_ch, c->k, p);
        }
        snprintf(p, sizeof p, "upsample.up.res_up_%d.proj", m);
        add_unit(net, &b->proj, b->cin, b->cout, 1, 0, p);
    }
    add_unit(net, &net->output, c->nbase[1], c->nout, 1, 1, "output");
}

int cpnet_config_from(CPnetConfig *c, const NetConfig *net, CpErr *e) {
    memset(c, 0, sizeof *c);
    if (net->type != NET_CPNET) return cp_fail(e, "config: net.type is not cpnet");
    if (net->n_nbase < 2 || net->n_nbase > CPNET_MAX_LEVELS + 1)
        return cp_fail(e, "config: net.nbase needs 2..%d entries", CPNET_MAX_LEVELS + 1);
    for (int i = 0; i < net->n_nbase; i++) c->nbase[i] = net->nbase[i];
    c->nlev = net->n_nbase - 1;
    c->nout = net->nout;
    c->k = net->kernel_size;
    c->diam_mean = (float)net->diam_mean;
    return CP_OK;
}

int cpnet_create(CPnet *net, const CPnetConfig *cfg, const CpOps *ops, CpErr *e) {
    memset(net, 0, sizeof *net);
    net->cfg = *cfg;
    net->ops = ops;
    if (cfg->nlev < 1 || cfg->nlev > CPNET_MAX_LEVELS || cfg->nout < 1 || cfg->k < 1 || cfg->k % 2 == 0)
        return cp_fail(e, "cpnet: bad config (levels %d, nout %d, kernel %d)", cfg->nlev, cfg->nout, cfg->k);
    build_table(net);
    net->params = cp_calloc((size_t)net->nparams, sizeof(float));
    net->grads = cp_calloc((size_t)net->nparams, sizeof(float));
    net->stats = cp_calloc((size_t)net->nstats, sizeof(float));
    net->nbt = cp_calloc((size_t)net->nnbt + 1, sizeof(int64_t));
    net->frozen[0] = net->frozen[1] = cfg->diam_mean;
    return CP_OK;
}

void cpnet_free(CPnet *net) {
    free(net->tensors);
    cp_free(net->params);
    cp_free(net->grads);
    cp_free(net->stats);
    cp_free(net->nbt);
    cp_free(net->act);
    cp_free(net->dact);
    memset(net, 0, sizeof *net);
}

void cpnet_init_random(CPnet *net, uint32_t seed) {
    /* PyTorch's reset_parameters: kaiming_uniform_(a=sqrt(5)) gives
     * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for conv/linear weights, the same
     * bound for their biases; BN weight 1, bias 0, running mean 0, var 1.
     * One Philox stream per tensor index, element index as counter. */
    for (int i = 0; i < net->ntensors; i++) {
        const CpTensorInfo *t = &net->tensors[i];
        if (t->kind == T_RUNNING_MEAN || t->kind == T_RUNNING_VAR)
            for (int64_t j = 0; j < t->numel; j++) net->stats[t->offset + j] = t->kind == T_RUNNING_VAR;
        if (t->kind == T_NBT) net->nbt[t->offset] = 0;
        if (t->kind == T_PARAM) nt_init_param(net->params + t->offset, t, i, seed); /* BN affine: fan_in 0 */
    }
    net->frozen[0] = net->frozen[1] = net->cfg.diam_mean;
}

/* ---- model files ---- */

static const void *tensor_data(const CPnet *net, const CpTensorInfo *t, StDtype *dt) {
    *dt = ST_F32;
    switch (t->kind) {
    case T_PARAM: return net->params + t->offset;
    case T_RUNNING_MEAN:
    case T_RUNNING_VAR: return net->stats + t->offset;
    case T_FROZEN: return &net->frozen[t->offset];
    case T_NBT: *dt = ST_I64; return &net->nbt[t->offset];
    }
    return NULL;
}

static const void *table_data(const void *net, const CpTensorInfo *t, StDtype *dt) {
    return tensor_data((const CPnet *)net, t, dt);
}

int cpnet_write_list(const CPnet *net, StWriteTensor *w) {
    return nt_write_list(w, net->tensors, net->ntensors, table_data, net);
}

int cpnet_save(const CPnet *net, const char *path, const char *const *meta, int n_meta, CpErr *e) {
    return nt_save(path, net->tensors, net->ntensors, table_data, net, meta, n_meta, e);
}

int cpnet_load_from(CPnet *net, const StFile *f, const char *extra_prefix, CpErr *e) {
    return nt_load_from(net, net->tensors, net->ntensors, table_data, f, extra_prefix, "CPnet",
                        "is this a CPnet with nbase of the config?", "wrong nbase or nout?", e);
}

int cpnet_load(CPnet *net, const char *path, CpErr *e) {
    StFile f;
    if (st_read(&f, path, e) != CP_OK) return CP_EFAIL;
    int rc = cpnet_load_from(net, &f, NULL, e);
    st_free(&f);
    return rc;
}

void cpnet_hash(const CPnet *net, char hex[65]) { nt_hash(hex, net->tensors, net->ntensors, table_data, net); }

/* ---- activation arena ---- */

/* Arena slices and gradient twins (nets/tensors.h). */
static float *take(CPnet *net, int64_t n, int64_t *used) { return nt_take(net->act, n, used); }
static float *G(const CPnet *net, const float *t) { return nt_grad(net->act, net->dact, net->act_floats, t); }

#define RUN(call)                                                              \
    do {                                                                       \
        if (net->act) call;                                                    \
    } while (0)

/* Eval arenas reuse memory (a forward that no backward follows): block
 * outputs (the skips), the style vectors, y and the unit outputs asked to
 * persist are kept in the first region; everything inside a block (unit
 * inputs after BN, conv outputs, sums, pooled/upsampled inputs) lives in a
 * transient region after it that the next block overwrites. A training
 * arena keeps every activation (backward reads them). Same ops on the same
 * values: the output bytes do not depend on the layout. */
typedef struct {
    CPnet *net;
    const CpCtx *ctx;
    int64_t used;           /* persistent region (everything, without reuse) */
    int64_t used_t, max_t;  /* transient region: current block, the largest block */
    int reuse, transient, out_persist;
    int N, train;
} Fwd;

/* take() from the region the forward is in. */
static float *ftake(Fwd *f, int64_t n) {
    if (!f->reuse || !f->transient) return take(f->net, n, &f->used);
    int64_t at = f->used_t;
    f->used_t += (n + 15) & ~(int64_t)15;
    if (f->used_t > f->max_t) f->max_t = f->used_t;
    if (!f->net->act) return (float *)(uintptr_t)(64 + 4 * ((int64_t)1 << 40) + 4 * at);
    return f->net->act + f->net->plan_persist + at;
}

/* Start a block: its internals reuse the transient region. */
static void block_begin(Fwd *f) { f->transient = 1, f->used_t = 0; }

/* BN (+ReLU) + conv of one unit; style units first add the skip and the
 * style feature: bn_in = (x + skip) + full(style) broadcast over H, W. */
static void unit_forward(Fwd *f, CpUnit *u, const float *x, const float *skip, int H, int W) {
    CPnet *net = f->net;
    const CpOps *ops = net->ops;
    const float *P = net->params;
    int N = f->N;
    int64_t HW = (int64_t)H * W, n_in = (int64_t)N * u->cin * HW;
    u->x = x, u->skip = skip, u->H = H, u->W = W;
    u->bnin = (float *)x;
    if (u->style) {
        const float *cur = x;
        if (skip) {
            u->xsum = ftake(f, n_in);
            RUN(ops->add_forward(u->xsum, x, skip, n_in, f->ctx));
            cur = u->xsum;
        }
        u->feat = ftake(f, (int64_t)N * u->cout);
        RUN(ops->linear_forward(u->feat, net->style, P + u->full_w, P + u->full_b, N,
                                net->cfg.nbase[net->cfg.nlev], u->cout, f->ctx));
        u->bnin = ftake(f, n_in);
        RUN(ops->add_bias_hw_forward(u->bnin, cur, u->feat, N, u->cin, HW, f->ctx));
    }
    if (!net->act && n_in > net->scratch_floats) net->scratch_floats = n_in;
    u->bn = ftake(f, n_in);
    u->mean = ftake(f, u->cin);
    u->rstd = ftake(f, u->cin);
    if (f->train) {
        RUN(ops->batchnorm_forward_train(u->bn, u->mean, u->rstd, net->stats + u->rm, net->stats + u->rv, u->bnin,
                                         P + u->bn_w, P + u->bn_b, N, u->cin, HW, CPNET_BN_EPS, CPNET_BN_MOMENTUM,
                                         f->ctx));
        if (net->act) net->nbt[u->nbt] += 1;
    } else {
        RUN(ops->batchnorm_forward_eval(u->bn, u->bnin, P + u->bn_w, P + u->bn_b, net->stats + u->rm,
                                        net->stats + u->rv, N, u->cin, HW, CPNET_BN_EPS, f->ctx));
    }
    if (u->relu) RUN(ops->relu_forward(u->bn, u->bn, n_in, f->ctx)); /* in place, as nn.ReLU(inplace=True) */
    int t = f->transient;
    f->transient = t && !f->out_persist;
    u->out = ftake(f, (int64_t)N * u->cout * HW);
    f->transient = t;
    RUN(ops->conv2d_forward(u->out, u->bn, P + u->w, P + u->b, N, u->cin, H, W, u->cout, u->k, f->ctx));
}

/* resdown / resup body: x1 = proj(in) + conv_1(conv_0(in) [, skip]);
 * out = x1 + conv_3(conv_2(x1)). */
static void block_forward(Fwd *f, CpBlock *b, const float *in, const float *skip, int H, int W) {
    CPnet *net = f->net;
    int64_t n_out = (int64_t)f->N * b->cout * H * W;
    b->in = in, b->H = H, b->W = W;
    unit_forward(f, &b->proj, in, NULL, H, W);
    unit_forward(f, &b->conv[0], in, NULL, H, W);
    unit_forward(f, &b->conv[1], b->conv[0].out, skip, H, W);
    b->x1 = ftake(f, n_out);
    RUN(net->ops->add_forward(b->x1, b->proj.out, b->conv[1].out, n_out, f->ctx));
    unit_forward(f, &b->conv[2], b->x1, NULL, H, W);
    unit_forward(f, &b->conv[3], b->conv[2].out, NULL, H, W);
    f->transient = 0; /* the block's output persists (skip / next block's input) */
    b->out = ftake(f, n_out);
    f->transient = 1;
    RUN(net->ops->add_forward(b->out, b->x1, b->conv[3].out, n_out, f->ctx));
}

/* The whole forward; with net->act == NULL it only measures the arena. */
static int forward_all(CPnet *net, const float *x, int N, int H, int W, int train, int reuse, const CpCtx *ctx) {
    const CPnetConfig *c = &net->cfg;
    Fwd f = {.net = net, .ctx = ctx, .reuse = reuse && !train, .N = N, .train = train};
    int h = H, w = W, L = c->nlev;
    net->input = x;
    for (int n = 0; n < L; n++) { /* PyTorch: xd[n] = res_down_n(maxpool(xd[n-1])) */
        CpBlock *b = &net->down[n];
        const float *in = x;
        block_begin(&f);
        if (n > 0) {
            const CpBlock *prev = &net->down[n - 1];
            int64_t np = (int64_t)N * prev->cout * (h / 2) * (w / 2);
            b->pooled_in = ftake(&f, np);
            b->arg = (uint8_t *)ftake(&f, (np + 3) / 4);
            RUN(net->ops->maxpool2x2_forward(b->pooled_in, b->arg, prev->out, N, prev->cout, h, w, ctx));
            h /= 2, w /= 2;
            in = b->pooled_in;
        }
        block_forward(&f, b, in, NULL, h, w);
    }
    const CpBlock *deep = &net->down[L - 1];
    int S = c->nbase[L];
    f.transient = 0;
    net->style_pooled = ftake(&f, (int64_t)N * S);
    net->style_norm = ftake(&f, N);
    net->style = ftake(&f, (int64_t)N * S);
    block_begin(&f);
    int zero = 0;
    RUN(zero = net->ops->style_forward(net->style, net->style_pooled, net->style_norm, deep->out, N, S,
                                       (int64_t)h * w, ctx));
    block_forward(&f, &net->up[L - 1], deep->out, deep->out, h, w); /* res_up_last(xd[-1], xd[-1]) */
    for (int m = L - 2; m >= 0; m--) {
        CpBlock *b = &net->up[m];
        const CpBlock *prev = &net->up[m + 1];
        block_begin(&f);
        b->up = ftake(&f, (int64_t)N * prev->cout * (2 * h) * (2 * w));
        RUN(net->ops->upsample2x_forward(b->up, prev->out, N, prev->cout, h, w, ctx));
        h *= 2, w *= 2;
        block_forward(&f, b, b->up, net->down[m].out, h, w);
    }
    block_begin(&f);
    f.out_persist = 1; /* y */
    unit_forward(&f, &net->output, net->up[0].out, NULL, h, w);
    f.out_persist = 0;
    net->y = net->output.out;
    f.transient = 0;
    net->scratch = f.reuse ? NULL : ftake(&f, net->scratch_floats); /* backward only */
    if (!net->act) net->plan_persist = f.used, net->act_floats = f.used + f.max_t;
    return zero;
}

int cpnet_plan(CPnet *net, int N, int H, int W, int training, CpErr *e) {
    int div = 1 << (net->cfg.nlev - 1);
    if (N < 1 || H < div || W < div || H % div || W % div)
        return cp_fail(e, "cpnet: input %d x %d x %d must be positive multiples of %d", N, H, W, div);
    if (net->act && N <= net->plan_cap && net->plan_h == H && net->plan_w == W && net->plan_train >= training) {
        net->plan_n = N; /* every take() is monotonic in N: the smaller plan fits */
        return CP_OK;
    }
    cp_free(net->act);
    cp_free(net->dact);
    net->act = net->dact = NULL;
    net->scratch_floats = 0; /* the measuring pass finds the largest BN input (ReLU gradient scratch) */
    forward_all(net, NULL, N, H, W, training, !training, NULL); /* measure */
    net->act = cp_malloc(sizeof(float) * (size_t)net->act_floats);
    if (training) net->dact = cp_malloc(sizeof(float) * (size_t)net->act_floats);
    net->plan_n = net->plan_cap = N, net->plan_h = H, net->plan_w = W, net->plan_train = training;
    return CP_OK;
}

void cpnet_memory_report(const CPnet *net, FILE *f) {
    double mib = 1.0 / (1024.0 * 1024.0);
    fprintf(f, "cpnet memory: params %.1f MiB, grads %.1f MiB, bn stats %.2f MiB, activations %.1f MiB, "
               "activation grads %.1f MiB (batch %d, %d x %d)\n",
            4.0 * (double)net->nparams * mib, 4.0 * (double)net->nparams * mib, 4.0 * (double)net->nstats * mib,
            4.0 * (double)net->act_floats * mib, net->dact ? 4.0 * (double)net->act_floats * mib : 0.0,
            net->plan_n, net->plan_h, net->plan_w);
}

float *cpnet_forward(CPnet *net, const float *x, int training, const CpCtx *ctx, CpErr *e) {
    CP_ASSERT(net->act && (!training || net->dact));
    int zero = forward_all(net, x, net->plan_n, net->plan_h, net->plan_w, training, !net->plan_train, ctx);
    if (zero) {
        cp_fail(e, "cpnet: %d sample(s) have an all-zero deepest feature map: the style vector is 0/0 (NaN), "
                   "as in Cellpose", zero);
        return NULL;
    }
    return net->y;
}

/* ---- backward ---- */

static void unit_backward(CPnet *net, CpUnit *u, const float *dout, const CpCtx *ctx) {
    const CpOps *ops = net->ops;
    const float *P = net->params;
    float *D = net->grads;
    int N = net->plan_n;
    int64_t HW = (int64_t)u->H * u->W, n_in = (int64_t)N * u->cin * HW;
    float *dbn = G(net, u->bn);
    ops->conv2d_backward(dbn, D + u->w, D + u->b, dout, u->bn, P + u->w, N, u->cin, u->H, u->W, u->cout, u->k, ctx);
    const float *dpre = dbn;
    if (u->relu) { /* gradient before the in-place ReLU, in scratch */
        memset(net->scratch, 0, sizeof(float) * (size_t)n_in);
        ops->relu_backward(net->scratch, dbn, u->bn, n_in, ctx);
        dpre = net->scratch;
    }
    float *dbnin = G(net, u->bnin);
    ops->batchnorm_backward(dbnin, D + u->bn_w, D + u->bn_b, dpre, u->bnin, u->mean, u->rstd, P + u->bn_w, N,
                            u->cin, HW, ctx);
    if (!u->style) return;
    /* bn_in = cur + feat: d(cur) += d(bn_in); d(feat) = sum over HW */
    const float *cur = u->skip ? u->xsum : u->x;
    float *dcur = G(net, cur), *dfeat = G(net, u->feat);
    ops->add_bias_hw_backward(dcur, dfeat, dbnin, N, u->cin, HW, ctx);
    int S = net->cfg.nbase[net->cfg.nlev];
    ops->linear_backward(G(net, net->style), D + u->full_w, D + u->full_b, dfeat, net->style, P + u->full_w, N, S,
                         u->cout, ctx);
    if (u->skip) { /* xsum = x + skip */
        float *dx = G(net, u->x), *ds = G(net, u->skip);
        if (dx) ops->add_forward(dx, dx, dcur, n_in, ctx);
        if (ds) ops->add_forward(ds, ds, dcur, n_in, ctx);
    }
}

static void block_backward(CPnet *net, CpBlock *b, const CpCtx *ctx) {
    int64_t n_out = (int64_t)net->plan_n * b->cout * b->H * b->W;
    float *dout = G(net, b->out), *dx1 = G(net, b->x1);
    /* out = x1 + conv_3(conv_2(x1)): conv_3's output feeds only this add, so
     * dout is its gradient; x1 collects dout, then conv_2's contribution. */
    net->ops->add_forward(dx1, dx1, dout, n_out, ctx);
    unit_backward(net, &b->conv[3], dout, ctx);
    unit_backward(net, &b->conv[2], G(net, b->conv[2].out), ctx);
    /* x1 = proj(in) + conv_1(conv_0(in)): both feed only this add */
    unit_backward(net, &b->conv[1], dx1, ctx);
    unit_backward(net, &b->conv[0], G(net, b->conv[0].out), ctx);
    unit_backward(net, &b->proj, dx1, ctx);
}

void cpnet_backward(CPnet *net, const float *dy, const CpCtx *ctx) {
    CP_ASSERT(net->dact);
    const CPnetConfig *c = &net->cfg;
    int N = net->plan_n, L = c->nlev;
    memset(net->dact, 0, sizeof(float) * (size_t)net->act_floats);
    unit_backward(net, &net->output, dy, ctx);
    int h = net->plan_h, w = net->plan_w;
    for (int m = 0; m < L; m++) {
        CpBlock *b = &net->up[m];
        block_backward(net, b, ctx);
        if (m < L - 1) { /* b->in is the upsampled output of up[m+1] */
            const CpBlock *prev = &net->up[m + 1];
            net->ops->upsample2x_backward(G(net, prev->out), G(net, b->up), N, prev->cout, h / 2, w / 2, ctx);
            h /= 2, w /= 2;
        }
    }
    CpBlock *deep = &net->down[L - 1];
    net->ops->style_backward(G(net, deep->out), G(net, net->style), net->style, net->style_norm, N, c->nbase[L],
                             (int64_t)h * w, ctx);
    for (int n = L - 1; n >= 0; n--) {
        CpBlock *b = &net->down[n];
        block_backward(net, b, ctx);
        if (n > 0) {
            const CpBlock *prev = &net->down[n - 1];
            net->ops->maxpool2x2_backward(G(net, prev->out), G(net, b->pooled_in), b->arg, N, prev->cout, h * 2,
                                          w * 2, ctx);
            h *= 2, w *= 2;
        }
    }
}

int cpnet_config_from_file(CPnetConfig *c, const StFile *f, CpErr *e) {
    memset(c, 0, sizeof *c);
    char name[96];
    for (int n = 0; n <= CPNET_MAX_LEVELS; n++) { /* nbase from the res_down conv_0 weights */
        snprintf(name, sizeof name, "downsample.down.res_down_%d.conv.conv_0.2.weight", n);
        const StTensor *t = st_find(f, name);
        if (!t) break;
        if (t->ndim != 4 || n >= CPNET_MAX_LEVELS)
            return cp_fail(e, "%s: tensor '%s' is not a CPnet conv weight", f->path, name);
        if (n == 0) c->nbase[0] = (int)t->shape[1], c->k = (int)t->shape[2];
        c->nbase[n + 1] = (int)t->shape[0];
        c->nlev = n + 1;
    }
    const StTensor *o = st_find(f, "output.2.weight"), *d = st_find(f, "diam_mean");
    if (c->nlev < 1 || !o || o->ndim != 4 || !d || d->numel != 1)
        return cp_fail(e, "%s: not a CPnet model file (no res_down / output / diam_mean tensors)", f->path);
    c->nout = (int)o->shape[0];
    float dm;
    if (st_copy(f, d, ST_F32, &dm, 1, e) != CP_OK) return CP_EFAIL;
    c->diam_mean = dm;
    return CP_OK;
}

int cpnet_loss_backward(CPnet *net, const float *x, const float *lbl, float *dy, float *loss, const CpCtx *ctx,
                        CpErr *e) {
    int64_t HW = (int64_t)net->plan_h * net->plan_w, ny = (int64_t)net->plan_n * net->cfg.nout * HW;
    const float *y = cpnet_forward(net, x, 1, ctx, e);
    if (!y) return CP_EFAIL;
    memset(dy, 0, sizeof(float) * (size_t)ny);
    *loss = net->ops->cellpose_loss(dy, y, lbl, net->plan_n, HW, ctx);
    memset(net->grads, 0, sizeof(float) * (size_t)net->nparams);
    cpnet_backward(net, dy, ctx);
    return CP_OK;
}
