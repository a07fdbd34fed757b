/* checkpoint.c - see checkpoint.h. */
#include "checkpoint.h"

#include <string.h>

/* The net's tensors w[0 .. n) followed by the optimizer state. */
static int write_ckpt(const char *path, StWriteTensor *w, int n, int64_t nparams, const TrainState *st,
                      const char *const *meta, int n_meta, CpErr *e) {
    StWriteTensor extra[4] = {
        {"optimizer.m", ST_F32, 1, {nparams}, st->m},
        {"optimizer.v", ST_F32, 1, {nparams}, st->v},
        {"optimizer.step", ST_I64, 0, {0}, &st->step},
        {"optimizer.epoch", ST_I64, 0, {0}, &st->epoch},
    };
    memcpy(w + n, extra, sizeof extra);
    return st_write(path, w, n + 4, meta, n_meta, e);
}

int ckpt_save_net(const char *path, const Net *net, const TrainState *st, const char *const *meta, int n_meta,
                  CpErr *e) {
    StWriteTensor *w = cp_calloc((size_t)net->ntensors + 4, sizeof(StWriteTensor));
    int n = net_write_list(net, w);
    int rc = write_ckpt(path, w, n, net->nparams, st, meta, n_meta, e);
    cp_free(w);
    return rc;
}

static int load_vec(const StFile *f, const char *name, StDtype dt, void *dst, int64_t n, CpErr *e) {
    const StTensor *t = st_find(f, name);
    if (!t) return cp_fail(e, "%s: not a checkpoint: tensor '%s' is missing", f->path, name);
    return st_copy(f, t, dt, dst, n, e);
}

/* The optimizer state of an open checkpoint whose net tensors are loaded. */
static int load_state(const StFile *f, int64_t nparams, TrainState *st, CpErr *e) {
    int rc = load_vec(f, "optimizer.m", ST_F32, st->m, nparams, e);
    if (rc == CP_OK) rc = load_vec(f, "optimizer.v", ST_F32, st->v, nparams, e);
    if (rc == CP_OK) rc = load_vec(f, "optimizer.step", ST_I64, &st->step, 1, e);
    if (rc == CP_OK) rc = load_vec(f, "optimizer.epoch", ST_I64, &st->epoch, 1, e);
    if (rc == CP_OK && (st->step < 0 || st->epoch < 0))
        rc = cp_fail(e, "%s: negative optimizer step or epoch; corrupt checkpoint?", f->path);
    return rc;
}

int ckpt_load_net(const char *path, Net *net, TrainState *st, CpErr *e) {
    StFile f;
    if (st_read(&f, path, e) != CP_OK) return CP_EFAIL;
    int rc = CP_OK;
    if ((st_find(&f, "W2") != NULL) != (net->type == NET_VIT))
        rc = cp_fail(e, "%s: holds a %s, the config is a %s", path, net->type == NET_VIT ? "cpnet" : "vit",
                     net_type_name(net));
    if (rc == CP_OK) rc = net_load_from(net, &f, "optimizer.", e);
    if (rc == CP_OK) rc = load_state(&f, net->nparams, st, e);
    st_free(&f);
    return rc;
}
