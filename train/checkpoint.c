/* checkpoint.c - see checkpoint.h. */
#include "checkpoint.h"

#include <string.h>

int ckpt_save(const char *path, const CPnet *net, const TrainState *st, const char *const *meta, int n_meta,
              CpErr *e) {
    int n = net->ntensors;
    StWriteTensor *w = cp_calloc((size_t)n + 4, sizeof(StWriteTensor));
    cpnet_write_list(net, w);
    StWriteTensor extra[4] = {
        {"optimizer.m", ST_F32, 1, {net->nparams}, st->m},
        {"optimizer.v", ST_F32, 1, {net->nparams}, st->v},
        {"optimizer.step", ST_I64, 0, {0}, &st->step},
        {"optimizer.epoch", ST_I64, 0, {0}, &st->epoch},
    };
    memcpy(w + n, extra, sizeof extra);
    int rc = st_write(path, w, n + 4, meta, n_meta, e);
    cp_free(w);
    return rc;
}

static int load_vec(const StFile *f, const char *name, StDtype dt, void *dst, int64_t n, CpErr *e) {
    const StTensor *t = st_find(f, name);
    if (!t) return cp_fail(e, "%s: not a checkpoint: tensor '%s' is missing", f->path, name);
    return st_copy(f, t, dt, dst, n, e);
}

int ckpt_load(const char *path, CPnet *net, TrainState *st, CpErr *e) {
    StFile f;
    if (st_read(&f, path, e) != CP_OK) return CP_EFAIL;
    int rc = cpnet_load_from(net, &f, "optimizer.", e);
    if (rc == CP_OK) rc = load_vec(&f, "optimizer.m", ST_F32, st->m, net->nparams, e);
    if (rc == CP_OK) rc = load_vec(&f, "optimizer.v", ST_F32, st->v, net->nparams, e);
    if (rc == CP_OK) rc = load_vec(&f, "optimizer.step", ST_I64, &st->step, 1, e);
    if (rc == CP_OK) rc = load_vec(&f, "optimizer.epoch", ST_I64, &st->epoch, 1, e);
    if (rc == CP_OK && (st->step < 0 || st->epoch < 0))
        rc = cp_fail(e, "%s: negative optimizer step or epoch; corrupt checkpoint?", path);
    st_free(&f);
    return rc;
}
