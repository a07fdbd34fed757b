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
 * (net.type, net.nbase), duplicate keys, wrong types, out-of-range values and
 * NaN/Inf are errors with file:line:column. Every other key has Cellpose v3's
 * `train_seg` default (CELLPOSE.md 4.1). */
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
    /* ViT keys (patch size, depth, heads, ...) go here, with their schema
     * rows in config.c, when the ViT net lands. */
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
/* Every key's range, then cross-field checks (nbase length 2..6, bsize
 * divisible by 2^(n_nbase-2), odd kernel, two channels, ...). */
int config_validate(const CpConfig *cfg, CpErr *e);
/* {"net": {...}, "train": {...}}, enums as strings; caller json_decref()s. */
json_t *config_to_json(const CpConfig *cfg);
/* One "section.key: value" line per key, after a "# config: path" line. */
void config_print(const CpConfig *cfg, FILE *f);

#endif
