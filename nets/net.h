/* net.h - one handle for the two networks cellpose.c trains and runs: the
 * Cellpose v3 CPnet (nets/cpnet.h) and the Cellpose-SAM ViT (nets/vit.h), so
 * `train` and `infer` call one API. Each function forwards to the net's own
 * (cpnet_* / vit_*) with nothing added: a CPnet behind a Net computes the
 * same bits as a bare CPnet.
 *
 * Legend: N batch, C = in_chans, H W input, NOUT outputs.
 * Layouts: input x[N, C, H, W]; output y[N, NOUT, H, W] (dY, dX, cellprob
 * logit); params / grads: the net's trainable floats in state_dict order.
 *
 * Input channels. Our data path (train/dataset, infer/pipeline) builds
 * Cellpose v3's 2 channels (channel selection, 1/99 % normalization). A net
 * with in_chans > 2 (the ViT: 3, Cellpose v4) gets those 2 channels
 * followed by zero channels. For a single-channel image (or --channels 0,0 on
 * any image: the grayscale mean) this is exactly what v4's convert_image
 * builds, (img, 0, 0); v4 instead keeps the first 3 channels of a
 * multi-channel image, which this path does not (pick 2 with --channels).
 *
 * Tiles. A CPnet takes any H, W divisible by 2^(levels - 1); the ViT exactly
 * img_size x img_size (net_tile). */
#ifndef CP_NET_H
#define CP_NET_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "cpnet.h"
#include "ctx.h"
#include "safetensors.h"
#include "vit.h"

typedef struct {
    int type;              /* NET_CPNET or NET_VIT (core/config.h) */
    CPnet cp;              /* type NET_CPNET */
    ViT vit;               /* type NET_VIT */
    /* views of the active net */
    float *params, *grads; /* [nparams] trainable, state_dict order */
    int64_t nparams;
    int ntensors;          /* tensors in a model file (write_list entries) */
    int in_chans, nout;    /* C, NOUT */
    int tile;              /* fixed tile side (ViT img_size), 0 = any */
    float diam_mean;
} Net;

/* A net of config `net` on `ops` (weights zeroed: init_random or load next). */
int net_create(Net *n, const NetConfig *net, const CpOps *ops, CpErr *e);
/* The net a model file describes (a ViT when it holds "W2", else a CPnet),
 * created on `ops` and loaded from the file. */
int net_create_from_file(Net *n, const StFile *f, const CpOps *ops, CpErr *e);
/* As net_create_from_file, opening `path`. */
int net_open(Net *n, const char *path, const CpOps *ops, CpErr *e);
void net_free(Net *n);
const char *net_type_name(const Net *n); /* "cpnet" | "vit" */

void net_init_random(Net *n, uint32_t seed);
/* Model files: the net's state_dict as safetensors (cpnet_save / vit_save). */
int net_save(const Net *n, const char *path, const char *const *meta, int n_meta, CpErr *e);
int net_load(Net *n, const char *path, CpErr *e);
/* Checkpoint pieces: w[0 .. ntensors) in state_dict order; load from an open
 * file accepting extra tensors named extra_prefix* (optimizer state). */
int net_write_list(const Net *n, StWriteTensor *w);
int net_load_from(Net *n, const StFile *f, const char *extra_prefix, CpErr *e);
void net_hash(const Net *n, char hex[65]);

/* diam_labels (frozen): Cellpose sets it to the mean training diameter. */
float net_diam_labels(const Net *n);
void net_set_diam_labels(Net *n, float d);

/* Bytes of ctx workspace forward/backward need (0 for the CPnet): call
 * cp_ctx_workspace(ctx, net_workspace_bytes(n)) once after creating. */
size_t net_workspace_bytes(const Net *n);
int net_plan(Net *n, int N, int H, int W, int training, CpErr *e);
void net_memory_report(const Net *n, FILE *f);
/* Training randomness of the next step (ViT layer drop; no-op for the CPnet). */
void net_set_step(Net *n, uint32_t seed, uint64_t step);
float *net_forward(Net *n, const float *x, int training, const CpCtx *ctx, CpErr *e);
/* Forward (training), Cellpose loss vs lbl [N,3,H,W], grads zeroed then
 * filled (cpnet_loss_backward / vit_loss_backward). dy: scratch [N,NOUT,H,W]. */
int net_loss_backward(Net *n, const float *x, const float *lbl, float *dy, float *loss, const CpCtx *ctx, CpErr *e);

#endif
