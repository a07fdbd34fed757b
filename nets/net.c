/* net.c - see net.h. Every function dispatches on n->type to cpnet_* or
 * vit_*; nothing here computes a value of its own. */
#include "net.h"

#include <string.h>

/* The views of net.h, from the active net. */
static void net_views(Net *n) {
    if (n->type == NET_VIT) {
        ViT *v = &n->vit;
        n->params = v->params, n->grads = v->grads, n->nparams = v->nparams, n->ntensors = v->ntensors;
        n->in_chans = v->cfg.in_chans, n->nout = v->cfg.nout, n->tile = v->cfg.img_size;
        n->diam_mean = v->cfg.diam_mean;
    } else {
        CPnet *c = &n->cp;
        n->params = c->params, n->grads = c->grads, n->nparams = c->nparams, n->ntensors = c->ntensors;
        n->in_chans = c->cfg.nbase[0], n->nout = c->cfg.nout, n->tile = 0;
        n->diam_mean = c->cfg.diam_mean;
    }
}

int net_create(Net *n, const NetConfig *net, const CpOps *ops, CpErr *e) {
    memset(n, 0, sizeof *n);
    n->type = net->type;
    if (n->type == NET_VIT) {
        ViTConfig c;
        if (vit_config_from(&c, net, e) != CP_OK || vit_create(&n->vit, &c, ops, e) != CP_OK) return CP_EFAIL;
    } else {
        CPnetConfig c;
        if (cpnet_config_from(&c, net, e) != CP_OK || cpnet_create(&n->cp, &c, ops, e) != CP_OK) return CP_EFAIL;
    }
    net_views(n);
    return CP_OK;
}

int net_create_from_file(Net *n, const StFile *f, const CpOps *ops, CpErr *e) {
    memset(n, 0, sizeof *n);
    int rc;
    if (st_find(f, "W2")) { /* only Cellpose-SAM's Transformer has the conv-transpose weight */
        ViTConfig c = {0};
        n->type = NET_VIT;
        rc = vit_config_from_file(&c, f, e);
        if (rc == CP_OK) rc = vit_create(&n->vit, &c, ops, e);
        if (rc == CP_OK) rc = vit_load_from(&n->vit, f, NULL, e);
    } else {
        CPnetConfig c;
        n->type = NET_CPNET;
        rc = cpnet_config_from_file(&c, f, e);
        if (rc == CP_OK) rc = cpnet_create(&n->cp, &c, ops, e);
        if (rc == CP_OK) rc = cpnet_load_from(&n->cp, f, NULL, e);
    }
    if (rc != CP_OK) {
        net_free(n);
        return CP_EFAIL;
    }
    net_views(n);
    return CP_OK;
}

int net_open(Net *n, const char *path, const CpOps *ops, CpErr *e) {
    StFile f;
    memset(n, 0, sizeof *n);
    if (st_read(&f, path, e) != CP_OK) return CP_EFAIL;
    int rc = net_create_from_file(n, &f, ops, e);
    st_free(&f);
    return rc;
}

void net_free(Net *n) {
    if (n->type == NET_VIT && n->vit.tensors) vit_free(&n->vit);
    if (n->type == NET_CPNET && n->cp.tensors) cpnet_free(&n->cp);
    memset(n, 0, sizeof *n);
}

const char *net_type_name(const Net *n) { return n->type == NET_VIT ? "vit" : "cpnet"; }

void net_init_random(Net *n, uint32_t seed) {
    if (n->type == NET_VIT) vit_init_random(&n->vit, seed);
    else cpnet_init_random(&n->cp, seed);
}

int net_save(const Net *n, const char *path, const char *const *meta, int n_meta, CpErr *e) {
    return n->type == NET_VIT ? vit_save(&n->vit, path, meta, n_meta, e) : cpnet_save(&n->cp, path, meta, n_meta, e);
}

int net_load(Net *n, const char *path, CpErr *e) {
    return n->type == NET_VIT ? vit_load(&n->vit, path, e) : cpnet_load(&n->cp, path, e);
}

int net_write_list(const Net *n, StWriteTensor *w) {
    return n->type == NET_VIT ? vit_write_list(&n->vit, w) : cpnet_write_list(&n->cp, w);
}

int net_load_from(Net *n, const StFile *f, const char *extra_prefix, CpErr *e) {
    return n->type == NET_VIT ? vit_load_from(&n->vit, f, extra_prefix, e)
                              : cpnet_load_from(&n->cp, f, extra_prefix, e);
}

void net_hash(const Net *n, char hex[65]) {
    if (n->type == NET_VIT) vit_hash(&n->vit, hex);
    else cpnet_hash(&n->cp, hex);
}

float net_diam_labels(const Net *n) {
    return n->type == NET_VIT ? n->vit.frozen[n->vit.diam_labels] : n->cp.frozen[1];
}

void net_set_diam_labels(Net *n, float d) {
    if (n->type == NET_VIT) n->vit.frozen[n->vit.diam_labels] = d;
    else n->cp.frozen[1] = d;
}

size_t net_workspace_bytes(const Net *n) { return n->type == NET_VIT ? vit_workspace_bytes(&n->vit) : 0; }

int net_plan(Net *n, int N, int H, int W, int training, CpErr *e) {
    return n->type == NET_VIT ? vit_plan(&n->vit, N, H, W, training, e) : cpnet_plan(&n->cp, N, H, W, training, e);
}

void net_memory_report(const Net *n, FILE *f) {
    if (n->type == NET_VIT) vit_memory_report(&n->vit, f);
    else cpnet_memory_report(&n->cp, f);
}

void net_set_step(Net *n, uint32_t seed, uint64_t step) {
    if (n->type == NET_VIT) vit_set_step(&n->vit, seed, step);
}

float *net_forward(Net *n, const float *x, int training, const CpCtx *ctx, CpErr *e) {
    return n->type == NET_VIT ? vit_forward(&n->vit, x, training, ctx, e) : cpnet_forward(&n->cp, x, training, ctx, e);
}

int net_loss_backward(Net *n, const float *x, const float *lbl, float *dy, float *loss, const CpCtx *ctx, CpErr *e) {
    return n->type == NET_VIT ? vit_loss_backward(&n->vit, x, lbl, dy, loss, ctx, e)
                              : cpnet_loss_backward(&n->cp, x, lbl, dy, loss, ctx, e);
}
