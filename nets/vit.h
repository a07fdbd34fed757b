/* vit.h - the Cellpose-SAM `Transformer` (CELLPOSE.md section 2): SAM's image
 * encoder with global attention in every block, then the neck, the 1x1
 * readout and the fixed pixel-shuffle conv-transpose. Written once against
 * the op table (kernels/ops.h); the API mirrors CPnet's (nets/cpnet.h).
 *
 * Dimension legend: N batch, C in_chans, H W image (= img_size), P patch,
 * Hq Wq token grid (H/P, W/P), T = Hq*Wq tokens, D embed dim, NH heads,
 * HD = D/NH, F MLP hidden, M = N*T rows, K neck channels, R table rows.
 *
 * Layout: input x[N, C, H, W], output y[N, nout, H, W] in Cellpose's
 * 3-channel convention (dY, dX, cellprob logit). Tokens are token-major,
 * channels-last [N, T, D] through the blocks (SAM's (B, H, W, C)); the neck
 * and the readout are NCHW.
 *
 * Forward (PyTorch equivalent in brackets):
 *   x0 = patch_embed(x) [N,T,D]            (proj(x).permute(0,2,3,1))
 *   x  = x0 + pos_embed                    (pos_embed (1,Hq,Wq,D) broadcast)
 *   per block: a = x + proj(attn(LN1(x)))  (LayerNorm eps 1e-6; tables
 *              interpolated from R rows to 2Hq-1 / 2Wq-1 when R differs)
 *              x = a + lin2(GELU(lin1(LN2(a))))
 *              training with rdrop > 0: x = dropped ? x_in : x (per sample)
 *   z  = neck.0(x) as NCHW [N,K,Hq,Wq]     (1x1 conv, no bias)
 *   z  = LN2d(neck.3(conv3x3(LN2d(z))))    (neck.1, neck.2 no bias, neck.3)
 *   y  = conv_transpose(out(z), W2, P)     (W2 = identity: a pixel shuffle)
 *
 * Tensors follow the Cellpose-SAM state_dict: names, shapes and order
 * (W2, diam_labels, diam_mean, encoder.pos_embed, encoder.patch_embed.proj,
 * encoder.blocks.i.{norm1, attn.rel_pos_h, attn.rel_pos_w, attn.qkv,
 * attn.proj, norm2, mlp.lin1, mlp.lin2}, encoder.neck.{0,1,2,3}, out).
 * Storage is one buffer per role: params (trainable, state_dict order;
 * grads: same layout), frozen (W2, diam_labels, diam_mean), act / dact (the
 * activations of one forward and their gradients, same offsets).
 * Nothing is allocated inside forward or backward.
 *
 * Determinism: every op follows its own fixed reduction order (ops.h); the
 * net adds the batch's contributions to pos_embed's gradient sample by
 * sample in order, and the layer-drop draws are Philox keyed by (seed,
 * VIT_DROP_STREAM) with counter (step, sample, layer), so a run's result is
 * a function of (weights, data, seed, step) only. */
#ifndef CP_VIT_H
#define CP_VIT_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "cpnet.h" /* CpTensorInfo, CpTensorKind (T_PARAM, T_FROZEN) */
#include "ctx.h"
#include "kernels/ops.h"
#include "safetensors.h"

#define VIT_MAX_DEPTH 64
#define VIT_LN_EPS 1e-6f
/* Philox stream of the layer-drop draws: key (seed, VIT_DROP_STREAM),
 * counter (step low 32 bits, sample, layer, step high 32 bits). */
#define VIT_DROP_STREAM 0x6c647270u /* "ldrp" */

typedef struct {
    int in_chans, patch, img_size; /* C, P, H = W */
    int dim, depth, heads, mlp;    /* D, blocks, NH, F (hidden, = mlp_ratio * D) */
    int neck, nout;                /* K, output channels */
    int rel_rows[VIT_MAX_DEPTH];   /* R of block i's rel_pos_h and rel_pos_w, as loaded */
    float rdrop;                   /* layer-drop maximum probability (training) */
    float diam_mean;
} ViTConfig;

typedef struct {
    int64_t n1w, n1b, relh, relw, qkvw, qkvb, projw, projb, n2w, n2b, l1w, l1b, l2w, l2b; /* offsets in params */
    int rows; /* R */
    /* activations of the last forward (arena) */
    const float *in;             /* [M,D] block input */
    float *ln1, *mean1, *rstd1;  /* [M,D], [M], [M] */
    float *qkv;                  /* [M,3D] */
    float *th, *tw;              /* [2Hq-1,HD], [2Wq-1,HD] interpolated tables */
    float *att;                  /* [N,NH,T,T] softmax */
    float *ao;                   /* [M,D] attention output (before proj) */
    float *pr;                   /* [M,D] proj output */
    float *x1;                   /* [M,D] in + pr */
    float *ln2, *mean2, *rstd2;  /* [M,D], [M], [M] */
    float *h, *g;                /* [M,F] lin1 output, GELU output */
    float *m;                    /* [M,D] lin2 output */
    float *out;                  /* [M,D] block output (x1 + m, or in for dropped samples) */
} ViTBlock;

typedef struct {
    ViTConfig cfg;
    const CpOps *ops;
    CpTensorInfo *tensors;
    int ntensors;
    int64_t nparams, nfrozen;
    float *params, *grads, *frozen;
    /* offsets: frozen */
    int64_t w2, diam_labels, diam_mean;
    /* offsets: params */
    int64_t pos, pew, peb, neck0, neck1w, neck1b, neck2, neck3w, neck3b, outw, outb;
    ViTBlock blk[VIT_MAX_DEPTH];
    /* activations outside the blocks */
    float *x0;                    /* [M,D] patch embed output */
    float *xp;                    /* [M,D] + pos_embed */
    float *z0, *z1, *z1m, *z1r;   /* neck: [N,K,T] 1x1 conv, LN2d out, mean/rstd [N,T] */
    float *z2, *z3, *z3m, *z3r;   /* 3x3 conv, LN2d out, mean/rstd */
    float *r;                     /* [N, nout*P*P, T] readout */
    float *y;                     /* [N, nout, H, W] */
    /* layer drop of the current step (training, rdrop > 0): drop[n*depth + i] */
    uint8_t *drop;
    uint32_t drop_seed;
    uint64_t drop_step;
    /* activation arena for one (N, training) plan */
    float *act, *dact;
    int64_t act_floats;
    int plan_n, plan_train;
    const float *input;
} ViT;

/* net.type vit -> ViTConfig (rows per block from rel_pos_rows,
 * rel_pos_rows_global and global_blocks). */
int vit_config_from(ViTConfig *c, const NetConfig *net, CpErr *e);
/* Builds the tensor table, allocates params/grads/frozen (params zeroed;
 * W2 = identity, diam_* = cfg.diam_mean: call vit_init_random or vit_load). */
int vit_create(ViT *net, const ViTConfig *cfg, const CpOps *ops, CpErr *e);
/* The tensor table only (names, shapes, offsets, nparams, nfrozen), no
 * buffers: to list or count a config's tensors (cpsam: 304,592,064
 * trainable values) without allocating them. vit_free releases it. */
int vit_create_table(ViT *net, const ViTConfig *cfg, CpErr *e);
void vit_free(ViT *net);
/* PyTorch-default-like init from Philox: key (seed, 1000 + tensor index),
 * counter (0, 0, element): Linear/conv weights and biases
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform a = sqrt(5); the patch
 * embed weight uses SAM's 16x16 fan_in 3*256 since Cellpose subsamples it,
 * its bias the 8x8 fan_in); LayerNorm weight 1, bias 0; pos_embed and the
 * rel-pos tables 0 (SAM's zero init); W2 identity, diam_* = cfg.diam_mean. */
void vit_init_random(ViT *net, uint32_t seed);

/* Model files (safetensors, Cellpose-SAM state_dict names); loading checks
 * every name, shape and dtype and names what is missing, extra or mis-shaped. */
int vit_save(const ViT *net, const char *path, const char *const *meta, int n_meta, CpErr *e);
int vit_load(ViT *net, const char *path, CpErr *e);
int vit_write_list(const ViT *net, StWriteTensor *w);
int vit_load_from(ViT *net, const StFile *f, const char *extra_prefix, CpErr *e);
/* The net a model file describes (dims, depth, patch, tile size, neck, nout,
 * table rows per block from the shapes; heads are not in the file: SAM's
 * head dim 64 is assumed unless *c has heads set on entry (> 0)). */
int vit_config_from_file(ViTConfig *c, const StFile *f, CpErr *e);

/* Size the activation arena for batch N at img_size x img_size (training
 * keeps gradients). H and W are checked against img_size: the pos_embed
 * fixes the tile (Cellpose-SAM accepts only bsize x bsize inputs). */
int vit_plan(ViT *net, int N, int H, int W, int training, CpErr *e);
/* Bytes of ctx workspace the attention ops need (forward and backward);
 * size it with cp_ctx_workspace(ctx, vit_workspace_bytes(net)) once. */
size_t vit_workspace_bytes(const ViT *net);
void vit_memory_report(const ViT *net, FILE *f);

/* The layer-drop draws of the next training forwards: sample n of the batch
 * drops block i iff u < rdrop * i / (depth - 1), u = cp_u01 of word 0 of
 * Philox(key (seed, VIT_DROP_STREAM), counter (step, n, i, step >> 32))
 * (Cellpose: torch.rand(B, depth) < linspace(0, rdrop, depth)). */
void vit_set_step(ViT *net, uint32_t seed, uint64_t step);

/* Forward, training (layer drop when rdrop > 0) or eval. Returns the output
 * y[N, nout, H, W] (inside the arena), or NULL when the ctx workspace is too
 * small. */
float *vit_forward(ViT *net, const float *x, int training, const CpCtx *ctx, CpErr *e);
/* Backward of the last training forward: grads += d(loss)/d(params). */
void vit_backward(ViT *net, const float *dy, const CpCtx *ctx);
/* Forward (training), the Cellpose loss against lbl [N,3,H,W], gradients
 * zeroed then filled by backward (as cpnet_loss_backward). dy: scratch
 * [N, nout, H, W]. */
int vit_loss_backward(ViT *net, const float *x, const float *lbl, float *dy, float *loss, const CpCtx *ctx,
                      CpErr *e);
/* SHA-256 of every tensor in state_dict order, as written to the model file. */
void vit_hash(const ViT *net, char hex[65]);

#endif
