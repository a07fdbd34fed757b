/* vit.c - the Cellpose-SAM Transformer against the op table: tensor table in
 * Cellpose's state_dict order, init, model files, forward, backward. See
 * vit.h for the layout and the forward in PyTorch terms.
 *
 * Memory: vit_plan runs the forward once in "measuring" mode (no op is
 * called; take() only counts floats) to size the activation arena; the real
 * forward takes the same slices in the same order. A training forward keeps
 * every activation; an eval forward keeps none (ping-pong block outputs, one
 * shared block scratch), so inference holds one block's N x NH x T x T
 * attention matrix (cpsam, batch 8: 0.5 GiB instead of 12.9 GiB). Gradients
 * of activations live in a twin arena at the same offsets (G(t)), zeroed
 * once per backward.
 *
 * Two layout changes are done with ops, not copies:
 *  - neck.0 (1x1 conv, no bias) reads the tokens [T,D] of sample n and must
 *    write NCHW [K,T]: that is linear(inp = neck.0 weight [K,D], w = tokens
 *    [T,D]) -> [K,T], per sample; the sum over d is the conv's sequential
 *    fmaf over input channels. Its backward gives the weight gradient per
 *    sample (summed over tokens by the linear input-gradient order), added
 *    sample by sample in order.
 *  - the readout conv-transpose with the identity W2 is the pixel shuffle
 *    (conv_transpose_patch with W2, no weight gradient: W2 is frozen).
 *
 * Layer drop (training, rdrop > 0), as Cellpose's x*mask + blk(x)*(1-mask):
 * the block runs for every sample; a dropped sample's output is then its
 * input (x*1 + y*0 == x exactly for finite y), and in backward its output
 * gradient goes to the input unchanged while the block sees a zero gradient
 * for that sample (the (1-mask) factor). The copies and zero fills are host
 * memcpy/memset on the arena, as cpnet's gradient zeroing is. */
#include "vit.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention.h"
#include "philox.h"
#include "sha256.h"

/* ---- tensor table ---- */

/* fan_in > 0: U(+-1/sqrt(fan_in)) at init; 0: LayerNorm (weight 1, bias 0); -1: zeros. */
static __attribute__((format(printf, 6, 7))) int64_t add_tensor(ViT *net, CpTensorKind kind, int64_t fan_in, int ndim,
                                                                 const int64_t *shape, const char *fmt, ...) {
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
    t->fan_in = fan_in;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d], t->numel *= shape[d];
    int64_t *count = kind == T_PARAM ? &net->nparams : &net->nfrozen;
    t->offset = *count;
    *count += t->numel;
    return t->offset;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define PARAM(fan, nd, shp, ...) add_tensor(net, T_PARAM, fan, nd, shp, __VA_ARGS__)

/* Linear(in, out) at prefix p: p.weight (out, in), p.bias (out) */
static void add_linear(ViT *net, int64_t *w, int64_t *b, int in, int out, const char *p) {
    *w = PARAM(in, 2, SHAPE(out, in), "%s.weight", p);
    *b = PARAM(in, 1, SHAPE(out), "%s.bias", p);
}

static void build_table(ViT *net) {
    const ViTConfig *c = &net->cfg;
    int q = c->img_size / c->patch, hd = c->dim / c->heads, r = c->nout * c->patch * c->patch;
    /* Transformer's own parameters first (PyTorch saves a module's parameters before its children) */
    net->w2 = add_tensor(net, T_FROZEN, 0, 4, SHAPE(r, c->nout, c->patch, c->patch), "W2");
    net->diam_labels = add_tensor(net, T_FROZEN, 0, 1, SHAPE(1), "diam_labels");
    net->diam_mean = add_tensor(net, T_FROZEN, 0, 1, SHAPE(1), "diam_mean");
    net->pos = PARAM(-1, 4, SHAPE(1, q, q, c->dim), "encoder.pos_embed");
    /* SAM's 16x16 kernel (fan_in C*256) subsampled to PxP by Cellpose; new bias: fan_in C*P*P */
    net->pew = PARAM((int64_t)c->in_chans * 256, 4, SHAPE(c->dim, c->in_chans, c->patch, c->patch),
                     "encoder.patch_embed.proj.weight");
    net->peb = PARAM((int64_t)c->in_chans * c->patch * c->patch, 1, SHAPE(c->dim), "encoder.patch_embed.proj.bias");
    char p[96];
    for (int i = 0; i < c->depth; i++) {
        ViTBlock *b = &net->blk[i];
        b->rows = c->rel_rows[i];
        b->n1w = PARAM(0, 1, SHAPE(c->dim), "encoder.blocks.%d.norm1.weight", i);
        b->n1b = PARAM(0, 1, SHAPE(c->dim), "encoder.blocks.%d.norm1.bias", i);
        b->relh = PARAM(-1, 2, SHAPE(b->rows, hd), "encoder.blocks.%d.attn.rel_pos_h", i);
        b->relw = PARAM(-1, 2, SHAPE(b->rows, hd), "encoder.blocks.%d.attn.rel_pos_w", i);
        snprintf(p, sizeof p, "encoder.blocks.%d.attn.qkv", i);
        add_linear(net, &b->qkvw, &b->qkvb, c->dim, 3 * c->dim, p);
        snprintf(p, sizeof p, "encoder.blocks.%d.attn.proj", i);
        add_linear(net, &b->projw, &b->projb, c->dim, c->dim, p);
        b->n2w = PARAM(0, 1, SHAPE(c->dim), "encoder.blocks.%d.norm2.weight", i);
        b->n2b = PARAM(0, 1, SHAPE(c->dim), "encoder.blocks.%d.norm2.bias", i);
        snprintf(p, sizeof p, "encoder.blocks.%d.mlp.lin1", i);
        add_linear(net, &b->l1w, &b->l1b, c->dim, c->mlp, p);
        snprintf(p, sizeof p, "encoder.blocks.%d.mlp.lin2", i);
        add_linear(net, &b->l2w, &b->l2b, c->mlp, c->dim, p);
    }
    net->neck0 = PARAM(c->dim, 4, SHAPE(c->neck, c->dim, 1, 1), "encoder.neck.0.weight");
    net->neck1w = PARAM(0, 1, SHAPE(c->neck), "encoder.neck.1.weight");
    net->neck1b = PARAM(0, 1, SHAPE(c->neck), "encoder.neck.1.bias");
    net->neck2 = PARAM((int64_t)c->neck * 9, 4, SHAPE(c->neck, c->neck, 3, 3), "encoder.neck.2.weight");
    net->neck3w = PARAM(0, 1, SHAPE(c->neck), "encoder.neck.3.weight");
    net->neck3b = PARAM(0, 1, SHAPE(c->neck), "encoder.neck.3.bias");
    net->outw = PARAM(c->neck, 4, SHAPE(r, c->neck, 1, 1), "out.weight");
    net->outb = PARAM(c->neck, 1, SHAPE(r), "out.bias");
}

int vit_config_from(ViTConfig *c, const NetConfig *net, CpErr *e) {
    memset(c, 0, sizeof *c);
    if (net->type != NET_VIT) return cp_fail(e, "config: net.type is not vit");
    if (net->depth < 1 || net->depth > VIT_MAX_DEPTH)
        return cp_fail(e, "config: net.depth %d is outside 1..%d", net->depth, VIT_MAX_DEPTH);
    c->in_chans = net->in_chans, c->patch = net->patch_size, c->img_size = net->img_size;
    c->dim = net->embed_dim, c->depth = net->depth, c->heads = net->heads, c->mlp = net->mlp_ratio * net->embed_dim;
    c->neck = net->neck_chans, c->nout = net->nout;
    for (int i = 0; i < c->depth; i++) c->rel_rows[i] = net->rel_pos_rows;
    for (int j = 0; j < net->n_global_blocks; j++)
        if (net->global_blocks[j] < c->depth) c->rel_rows[net->global_blocks[j]] = net->rel_pos_rows_global;
    c->rdrop = (float)net->rdrop;
    c->diam_mean = (float)net->diam_mean;
    return CP_OK;
}

int vit_create_table(ViT *net, const ViTConfig *cfg, CpErr *e) {
    memset(net, 0, sizeof *net);
    net->cfg = *cfg;
    const ViTConfig *c = cfg;
    int q = c->patch > 0 ? c->img_size / c->patch : 0;
    if (c->depth < 1 || c->depth > VIT_MAX_DEPTH || c->heads < 1 || c->dim < 1 || c->dim % c->heads ||
        c->dim / c->heads > CP_ATT_MAX_HD || c->patch < 1 || c->img_size % c->patch || q < 1 || q > CP_ATT_MAX_SIDE ||
        c->in_chans < 1 || c->mlp < 1 || c->neck < 1 || c->nout < 1 || !(c->rdrop >= 0 && c->rdrop <= 1))
        return cp_fail(e, "vit: bad config (depth %d, dim %d, heads %d, patch %d, img_size %d, mlp %d, neck %d)",
                       c->depth, c->dim, c->heads, c->patch, c->img_size, c->mlp, c->neck);
    for (int i = 0; i < c->depth; i++)
        if (c->rel_rows[i] < 1) return cp_fail(e, "vit: block %d has %d rel-pos rows", i, c->rel_rows[i]);
    build_table(net);
    return CP_OK;
}

int vit_create(ViT *net, const ViTConfig *cfg, const CpOps *ops, CpErr *e) {
    if (vit_create_table(net, cfg, e) != CP_OK) return CP_EFAIL;
    const ViTConfig *c = cfg;
    net->ops = ops;
    net->params = cp_calloc((size_t)net->nparams, sizeof(float));
    net->grads = cp_calloc((size_t)net->nparams, sizeof(float));
    net->frozen = cp_calloc((size_t)net->nfrozen, sizeof(float));
    int r = c->nout * c->patch * c->patch;
    for (int i = 0; i < r; i++) net->frozen[net->w2 + (int64_t)i * r + i] = 1.0f; /* eye(r).reshape(r, nout, P, P) */
    net->frozen[net->diam_labels] = net->frozen[net->diam_mean] = c->diam_mean;
    return CP_OK;
}

void vit_free(ViT *net) {
    free(net->tensors);
    cp_free(net->params);
    cp_free(net->grads);
    cp_free(net->frozen);
    cp_free(net->act);
    cp_free(net->dact);
    cp_free(net->drop);
    memset(net, 0, sizeof *net);
}

void vit_init_random(ViT *net, uint32_t seed) {
    for (int i = 0; i < net->ntensors; i++) {
        const CpTensorInfo *t = &net->tensors[i];
        if (t->kind == T_PARAM) nt_init_param(net->params + t->offset, t, i, seed); /* LayerNorm 1/0; pos_embed, tables 0 */
    }
    const ViTConfig *c = &net->cfg;
    int r = c->nout * c->patch * c->patch;
    memset(net->frozen + net->w2, 0, sizeof(float) * (size_t)r * (size_t)r);
    for (int i = 0; i < r; i++) net->frozen[net->w2 + (int64_t)i * r + i] = 1.0f;
    net->frozen[net->diam_labels] = net->frozen[net->diam_mean] = c->diam_mean;
}

/* ---- model files ---- */

static float *tensor_data(const ViT *net, const CpTensorInfo *t) {
    return (t->kind == T_PARAM ? net->params : net->frozen) + t->offset;
}

static const void *table_data(const void *net, const CpTensorInfo *t, StDtype *dt) {
    *dt = ST_F32;
    return tensor_data((const ViT *)net, t);
}

int vit_write_list(const ViT *net, StWriteTensor *w) {
    return nt_write_list(w, net->tensors, net->ntensors, table_data, net);
}

int vit_save(const ViT *net, const char *path, const char *const *meta, int n_meta, CpErr *e) {
    return nt_save(path, net->tensors, net->ntensors, table_data, net, meta, n_meta, e);
}

int vit_load_from(ViT *net, const StFile *f, const char *extra_prefix, CpErr *e) {
    return nt_load_from(net, net->tensors, net->ntensors, table_data, f, extra_prefix, "ViT",
                        "is this a Cellpose-SAM ViT of the config's depth?", "wrong dims, patch or tile size?", e);
}

int vit_load(ViT *net, const char *path, CpErr *e) {
    StFile f;
    if (st_read(&f, path, e) != CP_OK) return CP_EFAIL;
    int rc = vit_load_from(net, &f, NULL, e);
    st_free(&f);
    return rc;
}

void vit_hash(const ViT *net, char hex[65]) { nt_hash(hex, net->tensors, net->ntensors, table_data, net); }

/* A 4-D/2-D tensor of the file, or NULL with the error set. */
static const StTensor *need(const StFile *f, const char *name, int ndim, CpErr *e) {
    const StTensor *t = st_find(f, name);
    if (!t || t->ndim != ndim) {
        cp_fail(e, "%s: not a Cellpose-SAM model file (tensor '%s' with %d dims is missing)", f->path, name, ndim);
        return NULL;
    }
    return t;
}

int vit_config_from_file(ViTConfig *c, const StFile *f, CpErr *e) {
    int heads_in = c->heads;
    memset(c, 0, sizeof *c);
    const StTensor *pos = need(f, "encoder.pos_embed", 4, e);
    const StTensor *pe = pos ? need(f, "encoder.patch_embed.proj.weight", 4, e) : NULL;
    const StTensor *nk = pe ? need(f, "encoder.neck.0.weight", 4, e) : NULL, *w2 = nk ? need(f, "W2", 4, e) : NULL;
    const StTensor *dm = w2 ? need(f, "diam_mean", 1, e) : NULL;
    if (!dm) return CP_EFAIL;
    c->dim = (int)pe->shape[0], c->in_chans = (int)pe->shape[1], c->patch = (int)pe->shape[2];
    c->img_size = (int)pos->shape[1] * c->patch, c->neck = (int)nk->shape[0], c->nout = (int)w2->shape[1];
    char name[96];
    for (int i = 0; i <= VIT_MAX_DEPTH; i++) {
        snprintf(name, sizeof name, "encoder.blocks.%d.attn.rel_pos_h", i);
        const StTensor *t = st_find(f, name);
        if (!t) break;
        if (i == VIT_MAX_DEPTH || t->ndim != 2)
            return cp_fail(e, "%s: tensor '%s' is not a ViT rel-pos table (or more than %d blocks)", f->path, name,
                           VIT_MAX_DEPTH);
        c->rel_rows[i] = (int)t->shape[0];
        c->heads = heads_in > 0 ? heads_in : (int)(c->dim / t->shape[1]); /* tables are (R, head dim) */
        c->depth = i + 1;
    }
    snprintf(name, sizeof name, "encoder.blocks.0.mlp.lin1.weight");
    const StTensor *l1 = c->depth ? need(f, name, 2, e) : NULL;
    if (!l1) return c->depth ? CP_EFAIL : cp_fail(e, "%s: not a Cellpose-SAM model file (no encoder blocks)", f->path);
    c->mlp = (int)l1->shape[0];
    c->rdrop = 0.4f; /* not stored in the file: Cellpose-SAM's default */
    return st_copy(f, dm, ST_F32, &c->diam_mean, 1, e);
}

/* ---- activation arena ---- */

/* Arena slices and gradient twins (nets/tensors.h). */
static float *take(ViT *net, int64_t n, int64_t *used) { return nt_take(net->act, n, used); }
static float *G(const ViT *net, const float *t) { return nt_grad(net->act, net->dact, net->act_floats, t); }

#define RUN(call)                                                              \
    do {                                                                       \
        if (net->act) call;                                                    \
    } while (0)

typedef struct {
    int N, q, T, hd, lt; /* batch, grid side, tokens, head dim, interpolated table rows (2q-1) */
    int64_t M;           /* N*T */
} Dims;

static Dims dims(const ViT *net, int N) {
    Dims d;
    d.N = N, d.q = net->cfg.img_size / net->cfg.patch, d.T = d.q * d.q, d.hd = net->cfg.dim / net->cfg.heads;
    d.lt = 2 * d.q - 1, d.M = (int64_t)N * d.T;
    return d;
}

/* One block; its output goes to `out` when given (eval: ping-pong buffers),
 * else to a new arena slice (training keeps every activation). */
static void block_forward(ViT *net, ViTBlock *b, const float *in, float *out, const Dims *d, int64_t *used, int train,
                          const CpCtx *ctx) {
    const CpOps *ops = net->ops;
    const float *P = net->params;
    const ViTConfig *c = &net->cfg;
    int D = c->dim, F = c->mlp;
    int64_t M = d->M;
    b->in = in;
    b->ln1 = take(net, M * D, used), b->mean1 = take(net, M, used), b->rstd1 = take(net, M, used);
    RUN(ops->layernorm_forward(b->ln1, b->mean1, b->rstd1, in, P + b->n1w, P + b->n1b, M, D, VIT_LN_EPS, ctx));
    b->qkv = take(net, M * 3 * D, used);
    RUN(ops->linear_forward(b->qkv, b->ln1, P + b->qkvw, P + b->qkvb, M, D, 3 * D, ctx));
    /* SAM get_rel_pos: F.interpolate(table (1, HD, R), size 2q-1, mode="linear") when R != 2q-1 */
    b->th = take(net, (int64_t)d->lt * d->hd, used), b->tw = take(net, (int64_t)d->lt * d->hd, used);
    RUN(ops->interp1d_forward(b->th, P + b->relh, b->rows, d->lt, d->hd, ctx));
    RUN(ops->interp1d_forward(b->tw, P + b->relw, b->rows, d->lt, d->hd, ctx));
    b->att = take(net, (int64_t)d->N * c->heads * d->T * d->T, used);
    b->ao = take(net, M * D, used);
    RUN(ops->attention_forward(b->ao, b->att, b->qkv, b->th, b->tw, d->N, d->q, d->q, c->heads, d->hd, ctx));
    b->pr = take(net, M * D, used);
    RUN(ops->linear_forward(b->pr, b->ao, P + b->projw, P + b->projb, M, D, D, ctx));
    b->x1 = take(net, M * D, used);
    RUN(ops->add_forward(b->x1, in, b->pr, M * D, ctx)); /* x = shortcut + attn(norm1(x)) */
    b->ln2 = take(net, M * D, used), b->mean2 = take(net, M, used), b->rstd2 = take(net, M, used);
    RUN(ops->layernorm_forward(b->ln2, b->mean2, b->rstd2, b->x1, P + b->n2w, P + b->n2b, M, D, VIT_LN_EPS, ctx));
    b->h = take(net, M * F, used), b->g = take(net, M * F, used);
    RUN(ops->linear_forward(b->h, b->ln2, P + b->l1w, P + b->l1b, M, D, F, ctx));
    RUN(ops->gelu_forward(b->g, b->h, M * F, ctx));
    b->m = take(net, M * D, used);
    RUN(ops->linear_forward(b->m, b->g, P + b->l2w, P + b->l2b, M, F, D, ctx));
    b->out = out ? out : take(net, M * D, used);
    RUN(ops->add_forward(b->out, b->x1, b->m, M * D, ctx)); /* x = x + mlp(norm2(x)) */
    if (!net->act || !train) return;
    int i = (int)(b - net->blk);
    int64_t per = (int64_t)d->T * D;
    for (int n = 0; n < d->N; n++) /* Cellpose: x * mask + blk(x) * (1 - mask) */
        if (net->drop[n * c->depth + i]) memcpy(b->out + n * per, in + n * per, sizeof(float) * (size_t)per);
}

/* The layer-drop flags of this training forward (vit_set_step). */
static void draw_drops(ViT *net, int N) {
    const ViTConfig *c = &net->cfg;
    CpRngKey key = cp_rng_key(net->drop_seed, VIT_DROP_STREAM);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < c->depth; i++) {
            /* torch.linspace(0, rdrop, depth)[i], in double then rounded once */
            float p = c->depth > 1 ? (float)((double)c->rdrop * i / (c->depth - 1)) : 0.0f;
            CpU32x4 r = cp_rng_block(key, (uint32_t)net->drop_step, (uint32_t)n, (uint32_t)i,
                                     (uint32_t)(net->drop_step >> 32));
            net->drop[n * c->depth + i] = c->rdrop > 0 && cp_u01(r.v[0]) < p;
        }
}

/* The whole forward; with net->act == NULL it only measures the arena. */
static void forward_all(ViT *net, const float *x, int N, int train, const CpCtx *ctx) {
    const ViTConfig *c = &net->cfg;
    const CpOps *ops = net->ops;
    const float *P = net->params;
    Dims d = dims(net, N);
    int D = c->dim, K = c->neck, R = c->nout * c->patch * c->patch, S = c->img_size;
    int64_t used = 0, TD = (int64_t)d.T * D;
    net->input = x;
    if (net->act && train) draw_drops(net, N);
    net->x0 = take(net, d.M * D, &used);
    RUN(ops->patch_embed_forward(net->x0, x, P + net->pew, P + net->peb, N, c->in_chans, S, S, D, c->patch, ctx));
    for (int n = 0; n < N; n++) /* x = x + pos_embed (broadcast over the batch), in place */
        RUN(ops->add_forward(net->x0 + n * TD, net->x0 + n * TD, P + net->pos, TD, ctx));
    /* Eval keeps no activations for a backward: the blocks write their
     * outputs to two ping-pong buffers and share one scratch region, so an
     * inference plan holds one block's attention matrix, not depth of them. */
    float *pp[2] = {NULL, NULL};
    int64_t mark = 0, peak = 0;
    if (!train) {
        pp[0] = take(net, d.M * D, &used), pp[1] = take(net, d.M * D, &used);
        mark = peak = used;
    }
    const float *cur = net->x0;
    for (int i = 0; i < c->depth; i++) {
        block_forward(net, &net->blk[i], cur, pp[i & 1], &d, &used, train, ctx);
        cur = net->blk[i].out;
        if (!train) peak = used > peak ? used : peak, used = mark;
    }
    if (!train) used = peak;
    /* neck.0: NCHW z0[n] [K,T] = W [K,D] @ tokens[n]^T (see the header) */
    net->z0 = take(net, (int64_t)N * K * d.T, &used);
    for (int n = 0; n < N; n++)
        RUN(ops->linear_forward(net->z0 + (int64_t)n * K * d.T, P + net->neck0, cur + n * TD, NULL, K, D, d.T, ctx));
    net->z1 = take(net, (int64_t)N * K * d.T, &used);
    net->z1m = take(net, d.M, &used), net->z1r = take(net, d.M, &used);
    RUN(ops->layernorm2d_forward(net->z1, net->z1m, net->z1r, net->z0, P + net->neck1w, P + net->neck1b, N, K, d.T,
                                 VIT_LN_EPS, ctx));
    net->z2 = take(net, (int64_t)N * K * d.T, &used);
    RUN(ops->conv2d_forward(net->z2, net->z1, P + net->neck2, NULL, N, K, d.q, d.q, K, 3, ctx));
    net->z3 = take(net, (int64_t)N * K * d.T, &used);
    net->z3m = take(net, d.M, &used), net->z3r = take(net, d.M, &used);
    RUN(ops->layernorm2d_forward(net->z3, net->z3m, net->z3r, net->z2, P + net->neck3w, P + net->neck3b, N, K, d.T,
                                 VIT_LN_EPS, ctx));
    net->r = take(net, (int64_t)N * R * d.T, &used);
    RUN(ops->conv2d_forward(net->r, net->z3, P + net->outw, P + net->outb, N, K, d.q, d.q, R, 1, ctx));
    net->y = take(net, (int64_t)N * c->nout * S * S, &used);
    /* F.conv_transpose2d(x1, W2, stride=ps): the pixel shuffle */
    RUN(ops->conv_transpose_patch_forward(net->y, net->r, net->frozen + net->w2, NULL, N, R, d.q, d.q, c->nout,
                                          c->patch, ctx));
    if (!net->act) net->act_floats = used;
}

int vit_plan(ViT *net, int N, int H, int W, int training, CpErr *e) {
    const ViTConfig *c = &net->cfg;
    if (N < 1 || H != c->img_size || W != c->img_size)
        return cp_fail(e, "vit: input %d x %d x %d: the net takes exactly %d x %d tiles (pos_embed: %d x %d tokens)", N,
                       H, W, c->img_size, c->img_size, c->img_size / c->patch, c->img_size / c->patch);
    if (net->act && net->plan_n == N && net->plan_train >= training) return CP_OK;
    cp_free(net->act);
    cp_free(net->dact);
    cp_free(net->drop);
    net->act = net->dact = NULL;
    forward_all(net, NULL, N, 0, NULL); /* measure the eval layout */
    int64_t eval_floats = net->act_floats;
    if (training) { /* a training plan also runs eval forwards (test loss): room for both layouts */
        forward_all(net, NULL, N, 1, NULL);
        if (eval_floats > net->act_floats) net->act_floats = eval_floats;
    }
    net->act = cp_malloc(sizeof(float) * (size_t)net->act_floats);
    if (training) net->dact = cp_malloc(sizeof(float) * (size_t)net->act_floats);
    net->drop = cp_calloc((size_t)N * (size_t)c->depth, 1);
    net->plan_n = N, net->plan_train = training;
    return CP_OK;
}

size_t vit_workspace_bytes(const ViT *net) {
    int q = net->cfg.img_size / net->cfg.patch, hd = net->cfg.dim / net->cfg.heads;
    size_t f = attention_forward_workspace_bytes(q, q, hd), b = attention_backward_workspace_bytes(q, q, hd);
    return f > b ? f : b;
}

void vit_memory_report(const ViT *net, FILE *f) {
    double mib = 1.0 / (1024.0 * 1024.0);
    fprintf(f, "vit memory: params %.1f MiB, grads %.1f MiB, frozen %.2f MiB, activations %.1f MiB, "
               "activation grads %.1f MiB, attention workspace %.1f MiB (batch %d, %d x %d)\n",
            4.0 * (double)net->nparams * mib, 4.0 * (double)net->nparams * mib, 4.0 * (double)net->nfrozen * mib,
            4.0 * (double)net->act_floats * mib, net->dact ? 4.0 * (double)net->act_floats * mib : 0.0,
            (double)vit_workspace_bytes(net) * mib, net->plan_n, net->cfg.img_size, net->cfg.img_size);
}

void vit_set_step(ViT *net, uint32_t seed, uint64_t step) {
    net->drop_seed = seed;
    net->drop_step = step;
}

float *vit_forward(ViT *net, const float *x, int training, const CpCtx *ctx, CpErr *e) {
    CP_ASSERT(net->act && (!training || net->dact));
    size_t need_ws = training ? vit_workspace_bytes(net)
                              : attention_forward_workspace_bytes(net->cfg.img_size / net->cfg.patch,
                                                                  net->cfg.img_size / net->cfg.patch,
                                                                  net->cfg.dim / net->cfg.heads);
    if (ctx->workspace_bytes < need_ws) {
        cp_fail(e, "vit: the context workspace has %zu bytes, attention needs %zu; call "
                   "cp_ctx_workspace(ctx, vit_workspace_bytes(net)) first", ctx->workspace_bytes, need_ws);
        return NULL;
    }
    forward_all(net, x, net->plan_n, training, ctx);
    return net->y;
}

/* ---- backward ---- */

static void block_backward(ViT *net, ViTBlock *b, const Dims *d, const CpCtx *ctx) {
    const CpOps *ops = net->ops;
    const float *P = net->params;
    float *Dg = net->grads;
    const ViTConfig *c = &net->cfg;
    int D = c->dim, F = c->mlp, i = (int)(b - net->blk);
    int64_t M = d->M, per = (int64_t)d->T * D;
    float *dout = G(net, b->out), *din = G(net, b->in), *dx1 = G(net, b->x1);
    for (int n = 0; n < d->N; n++) /* dropped: d(in) += d(out); the block sees 0 (the (1 - mask) factor) */
        if (net->drop[n * c->depth + i]) {
            ops->add_forward(din + n * per, din + n * per, dout + n * per, per, ctx);
            memset(dout + n * per, 0, sizeof(float) * (size_t)per);
        }
    /* out = x1 + m */
    ops->add_forward(dx1, dx1, dout, M * D, ctx);
    ops->linear_backward(G(net, b->g), Dg + b->l2w, Dg + b->l2b, dout, b->g, P + b->l2w, M, F, D, ctx);
    ops->gelu_backward(G(net, b->h), G(net, b->g), b->h, M * F, ctx);
    ops->linear_backward(G(net, b->ln2), Dg + b->l1w, Dg + b->l1b, G(net, b->h), b->ln2, P + b->l1w, M, D, F, ctx);
    ops->layernorm_backward(dx1, Dg + b->n2w, Dg + b->n2b, G(net, b->ln2), b->x1, b->mean2, b->rstd2, P + b->n2w, M,
                            D, ctx);
    /* x1 = in + pr */
    ops->add_forward(din, din, dx1, M * D, ctx);
    ops->linear_backward(G(net, b->ao), Dg + b->projw, Dg + b->projb, dx1, b->ao, P + b->projw, M, D, D, ctx);
    ops->attention_backward(G(net, b->qkv), G(net, b->th), G(net, b->tw), G(net, b->ao), b->att, b->qkv, b->th,
                            b->tw, d->N, d->q, d->q, c->heads, d->hd, ctx);
    /* the interpolation's backward is a gather: no atomics (kernels/attention.h) */
    ops->interp1d_backward(Dg + b->relh, G(net, b->th), b->rows, d->lt, d->hd, ctx);
    ops->interp1d_backward(Dg + b->relw, G(net, b->tw), b->rows, d->lt, d->hd, ctx);
    ops->linear_backward(G(net, b->ln1), Dg + b->qkvw, Dg + b->qkvb, G(net, b->qkv), b->ln1, P + b->qkvw, M, D, 3 * D,
                         ctx);
    ops->layernorm_backward(din, Dg + b->n1w, Dg + b->n1b, G(net, b->ln1), b->in, b->mean1, b->rstd1, P + b->n1w, M,
                            D, ctx);
}

void vit_backward(ViT *net, const float *dy, const CpCtx *ctx) {
    CP_ASSERT(net->dact && ctx->workspace_bytes >= vit_workspace_bytes(net));
    const ViTConfig *c = &net->cfg;
    const CpOps *ops = net->ops;
    const float *P = net->params;
    float *Dg = net->grads;
    int N = net->plan_n, D = c->dim, K = c->neck, R = c->nout * c->patch * c->patch, S = c->img_size;
    Dims d = dims(net, N);
    int64_t TD = (int64_t)d.T * D;
    memset(net->dact, 0, sizeof(float) * (size_t)net->act_floats);
    ops->conv_transpose_patch_backward(G(net, net->r), NULL, NULL, dy, net->r, net->frozen + net->w2, N, R, d.q, d.q,
                                       c->nout, c->patch, ctx); /* W2 is frozen */
    ops->conv2d_backward(G(net, net->z3), Dg + net->outw, Dg + net->outb, G(net, net->r), net->z3, P + net->outw, N, K,
                         d.q, d.q, R, 1, ctx);
    ops->layernorm2d_backward(G(net, net->z2), Dg + net->neck3w, Dg + net->neck3b, G(net, net->z3), net->z2, net->z3m,
                              net->z3r, P + net->neck3w, N, K, d.T, ctx);
    ops->conv2d_backward(G(net, net->z1), Dg + net->neck2, NULL, G(net, net->z2), net->z1, P + net->neck2, N, K, d.q,
                         d.q, K, 3, ctx);
    ops->layernorm2d_backward(G(net, net->z0), Dg + net->neck1w, Dg + net->neck1b, G(net, net->z1), net->z0, net->z1m,
                              net->z1r, P + net->neck1w, N, K, d.T, ctx);
    const float *last = net->blk[c->depth - 1].out;
    for (int n = 0; n < N; n++) /* neck.0 as linear per sample: d(weight) +=, d(tokens) += */
        ops->linear_backward(Dg + net->neck0, G(net, last) + n * TD, NULL, G(net, net->z0) + (int64_t)n * K * d.T,
                             P + net->neck0, last + n * TD, K, D, d.T, ctx);
    for (int i = c->depth - 1; i >= 0; i--) block_backward(net, &net->blk[i], &d, ctx);
    float *dx0 = G(net, net->x0);
    for (int n = 0; n < N; n++) /* pos_embed: the batch's contributions, sample by sample */
        ops->add_forward(Dg + net->pos, Dg + net->pos, dx0 + n * TD, TD, ctx);
    ops->patch_embed_backward(NULL, Dg + net->pew, Dg + net->peb, dx0, net->input, P + net->pew, N, c->in_chans, S, S,
                              D, c->patch, ctx);
}

int vit_loss_backward(ViT *net, const float *x, const float *lbl, float *dy, float *loss, const CpCtx *ctx,
                      CpErr *e) {
    int64_t HW = (int64_t)net->cfg.img_size * net->cfg.img_size, ny = (int64_t)net->plan_n * net->cfg.nout * HW;
    const float *y = vit_forward(net, x, 1, ctx, e);
    if (!y) return CP_EFAIL;
    memset(dy, 0, sizeof(float) * (size_t)ny);
    *loss = net->ops->cellpose_loss(dy, y, lbl, net->plan_n, HW, ctx);
    memset(net->grads, 0, sizeof(float) * (size_t)net->nparams);
    vit_backward(net, dy, ctx);
    return CP_OK;
}
