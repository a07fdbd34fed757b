/* tensors.c - the tensor table's file I/O and hash; see tensors.h. */
#include "tensors.h"

#include <math.h>
#include <string.h>

#include "philox.h"
#include "sha256.h"

void nt_init_param(float *p, const CpTensorInfo *t, int index, uint32_t seed) {
    if (t->fan_in <= 0) {
        float v = t->fan_in == 0 && strstr(t->name, ".weight") ? 1.0f : 0.0f;
        for (int64_t j = 0; j < t->numel; j++) p[j] = v;
        return;
    }
    float bound = 1.0f / sqrtf((float)t->fan_in);
    CpRngKey key = cp_rng_key(seed, 1000u + (uint32_t)index);
    for (int64_t j = 0; j < t->numel; j++)
        p[j] = bound * (2.0f * cp_u01(cp_rng_block(key, 0, 0, (uint32_t)j, 0).v[0]) - 1.0f);
}

int nt_write_list(StWriteTensor *w, const CpTensorInfo *t, int n, NtDataFn data, const void *net) {
    for (int i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].name = t[i].name;
        w[i].ndim = t[i].ndim;
        for (int d = 0; d < t[i].ndim; d++) w[i].shape[d] = t[i].shape[d];
        w[i].data = data(net, &t[i], &w[i].dtype);
    }
    return n;
}

int nt_save(const char *path, const CpTensorInfo *t, int n, NtDataFn data, const void *net, const char *const *meta,
            int n_meta, CpErr *e) {
    StWriteTensor *w = cp_calloc((size_t)n, sizeof(StWriteTensor));
    int rc = st_write(path, w, nt_write_list(w, t, n, data, net), meta, n_meta, e);
    cp_free(w);
    return rc;
}

int nt_load_from(void *net, const CpTensorInfo *t, int n, NtDataFn data, const StFile *f, const char *extra_prefix,
                 const char *what, const char *missing_hint, const char *shape_hint, CpErr *e) {
    const char *path = f->path;
    int rc = CP_OK;
    for (int i = 0; i < n && rc == CP_OK; i++) {
        const StTensor *s = st_find(f, t[i].name);
        StDtype dt;
        void *dst = (void *)data(net, &t[i], &dt);
        char want[128], got[128];
        StTensor as_st = {0}; /* only to format the expected shape */
        as_st.ndim = t[i].ndim;
        memcpy(as_st.shape, t[i].shape, sizeof t[i].shape);
        st_shape_str(&as_st, want, sizeof want);
        if (!s) return cp_fail(e, "%s: tensor '%s' %s is missing (%s)", path, t[i].name, want, missing_hint);
        int same = s->ndim == t[i].ndim;
        for (int d = 0; same && d < t[i].ndim; d++) same = s->shape[d] == t[i].shape[d];
        if (!same)
            return cp_fail(e, "%s: tensor '%s' has shape %s, the config needs %s (%s)", path, t[i].name,
                           st_shape_str(s, got, sizeof got), want, shape_hint);
        rc = st_copy(f, s, dt, dst, t[i].numel, e);
    }
    for (int i = 0; i < f->n && rc == CP_OK; i++) {
        const char *name = f->tensors[i].name;
        int known = extra_prefix && strncmp(name, extra_prefix, strlen(extra_prefix)) == 0;
        for (int j = 0; j < n && !known; j++) known = strcmp(name, t[j].name) == 0;
        if (!known) rc = cp_fail(e, "%s: unexpected tensor '%s' (not part of this %s)", path, name, what);
    }
    return rc;
}

void nt_hash(char hex[65], const CpTensorInfo *t, int n, NtDataFn data, const void *net) {
    CpSha256 s;
    sha256_init(&s);
    for (int i = 0; i < n; i++) {
        StDtype dt;
        const void *p = data(net, &t[i], &dt);
        sha256_update(&s, p, (size_t)t[i].numel * st_dtype_size(dt));
    }
    sha256_final_hex(&s, hex);
}
