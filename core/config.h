/* config.h - the run configuration: YAML file -> CpConfig, checks, overrides,
 * and the resolved config as JSON (manifest) and as text (printed at start).
 *
 * A config file has two sections, each a mapping of keys:
 *
 *   net:   {type: cpnet, nbase: [2, 32, 64, 128, 256], nout: 3, ...}
 *   train: {optimizer: adamw, learning_rate: 0.005, ...}
 *
 * Every key is listed once in a schema table in config.c (type, field, range,
 * default, help). Unknown keys and sections, missing required keys
 * (net.type; net.nbase for cpnet), duplicate keys, wrong types, out-of-range
 * values and NaN/Inf are errors with file:line:column, and so is a key of the
 * other net type (net.nbase in a vit file, net.depth in a cpnet file). Every
 * other key has Cellpose v3's `train_seg` default (CELLPOSE.md 4.1); when
 * net.type is vit, the training keys the file leaves out take Cellpose v4's
 * defaults instead (lr 1e-5, weight decay 0.1, 100 epochs, batch 1, bsize
 * 256, rescale false) and the ViT keys Cellpose-SAM's (vit_l, patch 8). */
#ifndef CP_CONFIG_H
#define CP_CONFIG_H

#include <jansson.h>
#include <stdio.h>

#include "common.h"

typedef enum { NET_CPNET = 0, NET_VIT = 1 } NetType;
typedef enum { OPT_ADAMW = 0, OPT_SGD = 1 } OptimizerType;

/* The network. CPnet (CELLPOSE.md 1): nbase[0] = input channels, nbase[1..]
 * = channels per resolution level (one maxpool between levels). */
typedef struct {
    NetType type;
    int nbase[8];     /* [n_nbase] channel counts, e.g. 2 32 64 128 256 */
    int n_nbase;      /* 2..6 (0 = not set) */
    int nout;         /* output channels: dY, dX, cellprob logit */
    int kernel_size;  /* conv kernel (odd), padding kernel_size/2 */
    double diam_mean; /* pixels: mean object diameter the net is trained at */
    /* ViT (Cellpose-SAM `Transformer`, CELLPOSE.md 2; net.type: vit): a SAM
     * image encoder whose blocks all use global attention on the token grid
     * img_size/patch_size squared, then the neck and the pixel-shuffle readout. */
    int in_chans;            /* image channels (Cellpose-SAM: 3) */
    int patch_size;          /* ps: patch-embed kernel = stride (Cellpose-SAM: 8) */
    int img_size;            /* tile side the net is built for (pos_embed grid = img_size/ps) */
    int embed_dim;           /* D */
    int depth;               /* number of blocks */
    int heads;               /* attention heads (head dim = D / heads) */
    int mlp_ratio;           /* MLP hidden = mlp_ratio * D */
    int neck_chans;          /* neck / readout input channels (SAM out_chans: 256) */
    int rel_pos_rows;        /* rows of a windowed-built block's rel-pos tables (SAM: 2*14-1 = 27) */
    int rel_pos_rows_global; /* rows of a global-built block's tables (SAM at 1024/16: 2*64-1 = 127) */
    int global_blocks[8];    /* [n_global_blocks] blocks built global in SAM (vit_l: 5 11 17 23) */
    int n_global_blocks;
    double rdrop;            /* layer-drop maximum probability, training only (Cellpose-SAM: 0.4) */
} NetConfig;

typedef struct {
    OptimizerType optimizer;
    double learning_rate; /* peak LR of Cellpose's warmup/decay schedule */
    double weight_decay;  /* decoupled (AdamW) or L2 (SGD), as torch.optim */
    double momentum;      /* SGD only */
    int n_epochs;
    int batch_size;       /* images per step */
    int bsize;            /* square crop side, pixels */
    int rescale;          /* 0/1: rescale crops to diam_mean by diameter */
    double scale_range;   /* random zoom range (Cellpose: 0.5 if rescale else 1.0) */
    int min_train_masks;  /* images with fewer masks are dropped */
    int nimg_per_epoch;   /* 0 = all images */
    int save_every;       /* epochs between checkpoints */
    int normalize;        /* 0/1: 1st/99th percentile per channel */
    int channels[2];      /* Cellpose v3 channels: 0 gray, 1 R, 2 G, 3 B */
    int n_channels;       /* always 2 once valid */
} TrainConfig;

typedef struct {
    char path[1024]; /* file it was loaded from ("" = defaults only) */
    NetConfig net;
    TrainConfig train;
} CpConfig;

/* File -> struct with all checks (syntax, schema, required keys, then
 * config_validate). *cfg is written only on success. */
int config_load(CpConfig *cfg, const char *path, CpErr *e);
/* Every key at its default; the required keys are left unset, so the result
 * does not pass config_validate until they are set. */
int config_defaults(CpConfig *cfg, CpErr *e);
/* CLI override: `dotted_key` like "train.learning_rate", `value` in YAML
 * ("0.01", "sgd", "[2, 8, 16]"). Same per-key checks as a file; *cfg is
 * unchanged on failure. Call config_validate after the last override. */
int config_set(CpConfig *cfg, const char *dotted_key, const char *value, CpErr *e);
/* Every key's range, then cross-field checks (cpnet: nbase length 2..6,
 * bsize divisible by 2^(n_nbase-2), odd kernel, two channels, ...; vit: heads
 * divide embed_dim, head dim <= 128, img_size divisible by patch_size, token
 * grid side <= 64, global_blocks < depth, train.bsize == img_size). */
int config_validate(const CpConfig *cfg, CpErr *e);
/* {"net": {...}, "train": {...}}, enums as strings, only the net keys of
 * net.type; caller json_decref()s. */
json_t *config_to_json(const CpConfig *cfg);
/* One "section.key: value" line per key of net.type, after a "# config: path" line. */
void config_print(const CpConfig *cfg, FILE *f);

#endif
