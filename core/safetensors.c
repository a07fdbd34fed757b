/* safetensors.c - validating reader and atomic writer (see safetensors.h). */
#include "safetensors.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

static const char *const dtype_names[ST_NDTYPES] = {"BOOL", "U8",  "I8",  "U16", "I16", "F16", "BF16",
                                                     "U32",  "I32", "F32", "U64", "I64", "F64"};
static const uint8_t dtype_sizes[ST_NDTYPES] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};

const char *st_dtype_name(StDtype d) { return (unsigned)d < ST_NDTYPES ? dtype_names[d] : "?"; }
size_t st_dtype_size(StDtype d) { return (unsigned)d < ST_NDTYPES ? dtype_sizes[d] : 0; }

static int dtype_parse(const char *s, StDtype *out) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (strcmp(s, dtype_names[i]) == 0) {
            *out = (StDtype)i;
            return 1;
        }
    return 0;
}

const char *st_shape_str(const StTensor *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %" PRId64 : "%" PRId64, t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

void st_free(StFile *f) {
    for (int i = 0; i < f->n; i++) cp_free(f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        cp_free(f->meta_key[i]);
        cp_free(f->meta_val[i]);
    }
    cp_free(f->tensors);
    cp_free(f->meta_key);
    cp_free(f->meta_val);
    cp_free(f->buf);
    cp_free(f->path);
    memset(f, 0, sizeof *f);
}

/* Non-negative JSON integer, else 0 with *ok cleared. */
static int64_t json_nonneg(json_t *v, int *ok) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        *ok = 0;
        return 0;
    }
    return (int64_t)json_integer_value(v);
}

static int parse_metadata(StFile *f, json_t *meta, CpErr *e) {
    if (!json_is_object(meta)) return cp_fail(e, "%s: __metadata__ must be an object of strings", f->path);
    size_t n = json_object_size(meta);
    f->meta_key = cp_calloc(n + 1, sizeof(char *));
    f->meta_val = cp_calloc(n + 1, sizeof(char *));
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return cp_fail(e, "%s: __metadata__ value of '%s' is not a string", f->path, k);
        f->meta_key[f->n_meta] = cp_strdup(k);
        f->meta_val[f->n_meta] = cp_strdup(json_string_value(v));
        f->n_meta++;
    }
    return CP_OK;
}

/* Fill t from its header entry; checks dtype, shape, offsets, sizes. */
static int parse_tensor(StFile *f, const char *name, json_t *v, uint64_t data_size, StTensor *t, CpErr *e) {
    const char *p = f->path;
    if (!json_is_object(v)) return cp_fail(e, "%s: tensor '%s': header entry is not an object", p, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!jd || !js || !jo || json_object_size(v) != 3)
        return cp_fail(e, "%s: tensor '%s': entry must have exactly dtype, shape and data_offsets", p, name);
    if (!json_is_string(jd) || !dtype_parse(json_string_value(jd), &t->dtype))
        return cp_fail(e, "%s: tensor '%s': unknown dtype %s", p, name,
                       json_is_string(jd) ? json_string_value(jd) : "(not a string)");
    if (!json_is_array(js) || json_array_size(js) > ST_MAX_DIMS)
        return cp_fail(e, "%s: tensor '%s': shape must be a list of at most %d sizes", p, name, ST_MAX_DIMS);
    t->ndim = (int)json_array_size(js);
    int ok = 1;
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        t->shape[d] = json_nonneg(json_array_get(js, (size_t)d), &ok);
        if (!ok) return cp_fail(e, "%s: tensor '%s': shape entry %d is not a non-negative integer", p, name, d);
        if (t->shape[d] && numel > UINT64_MAX / 16 / (uint64_t)t->shape[d])
            return cp_fail(e, "%s: tensor '%s': shape is absurdly large", p, name);
        numel *= (uint64_t)t->shape[d];
    }
    t->numel = (int64_t)numel;
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return cp_fail(e, "%s: tensor '%s': data_offsets must be [begin, end]", p, name);
    t->begin = (uint64_t)json_nonneg(json_array_get(jo, 0), &ok);
    t->end = (uint64_t)json_nonneg(json_array_get(jo, 1), &ok);
    if (!ok || t->end < t->begin)
        return cp_fail(e, "%s: tensor '%s': data_offsets must be non-negative with begin <= end", p, name);
    uint64_t want = numel * st_dtype_size(t->dtype);
    if (t->end - t->begin != want) {
        char sh[128];
        return cp_fail(e, "%s: tensor '%s': %s %s needs %" PRIu64 " bytes but data_offsets span %" PRIu64, p,
                       name, st_dtype_name(t->dtype), st_shape_str(t, sh, sizeof sh), want, t->end - t->begin);
    }
    if (t->end > data_size)
        return cp_fail(e, "%s: tensor '%s': bytes %" PRIu64 "-%" PRIu64 " run past the end of the data (%" PRIu64
                          " bytes); truncated file?", p, name, t->begin, t->end, data_size);
    t->name = cp_strdup(name);
    return CP_OK;
}

static int cmp_begin(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : (x->end > y->end);
}

/* Every byte of the data section belongs to exactly one tensor. */
static int check_coverage(StFile *f, uint64_t data_size, CpErr *e) {
    StTensor **s = cp_malloc(sizeof(StTensor *) * (size_t)(f->n + 1));
    for (int i = 0; i < f->n; i++) s[i] = &f->tensors[i];
    qsort(s, (size_t)f->n, sizeof *s, cmp_begin);
    uint64_t at = 0;
    int rc = CP_OK;
    for (int i = 0; i < f->n && rc == CP_OK; i++) {
        if (s[i]->begin < at)
            rc = cp_fail(e, "%s: tensors '%s' and '%s' overlap (bytes %" PRIu64 "-%" PRIu64 " and %" PRIu64
                            "-%" PRIu64 ")", f->path, s[i - 1]->name, s[i]->name, s[i - 1]->begin, s[i - 1]->end,
                         s[i]->begin, s[i]->end);
        else if (s[i]->begin > at)
            rc = cp_fail(e, "%s: data bytes %" PRIu64 "-%" PRIu64 " belong to no tensor (a hole before '%s')",
                         f->path, at, s[i]->begin, s[i]->name);
        if (s[i]->end > at) at = s[i]->end;
    }
    if (rc == CP_OK && at != data_size)
        rc = cp_fail(e, "%s: %" PRIu64 " bytes after the last tensor belong to no tensor", f->path, data_size - at);
    cp_free(s);
    return rc;
}

static int parse_header(StFile *f, const char *json_text, size_t len, CpErr *e) {
    json_error_t je;
    json_t *root = json_loadb(json_text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return cp_fail(e, "%s: header is not valid JSON: %s (at byte %d)", f->path, je.text, je.position);
    int rc = CP_OK;
    uint64_t data_size = f->size - 8 - len;
    if (!json_is_object(root)) {
        rc = cp_fail(e, "%s: header is JSON but not an object", f->path);
        goto done;
    }
    size_t n = json_object_size(root);
    f->tensors = cp_calloc(n + 1, sizeof(StTensor));
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "__metadata__") == 0) rc = parse_metadata(f, v, e);
        else if ((rc = parse_tensor(f, k, v, data_size, &f->tensors[f->n], e)) == CP_OK)
            f->n++;
        if (rc != CP_OK) goto done;
    }
    rc = check_coverage(f, data_size, e);
    for (int i = 0; i < f->n; i++) f->tensors[i].data = f->buf + 8 + len + f->tensors[i].begin;
done:
    json_decref(root);
    return rc;
}

int st_read(StFile *f, const char *path, CpErr *e) {
    memset(f, 0, sizeof *f);
    f->path = cp_strdup(path);
    if (cp_read_file(path, (size_t)1 << 40, &f->buf, &f->size, e) != CP_OK) goto fail;
    if (f->size < 8) {
        cp_fail(e, "%s: truncated: %zu bytes, a safetensors file has at least 8", path, f->size);
        goto fail;
    }
    uint64_t hlen;
    memcpy(&hlen, f->buf, 8);
    if (hlen == 0) {
        cp_fail(e, "%s: header length 0; was it written by an interrupted run?", path);
        goto fail;
    }
    if (hlen > ST_MAX_HEADER) {
        cp_fail(e, "%s: header length %" PRIu64 " is over 100 MiB; not a safetensors file?", path, hlen);
        goto fail;
    }
    if (hlen > f->size - 8) {
        cp_fail(e, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes); truncated?", path,
                hlen, f->size);
        goto fail;
    }
    if (parse_header(f, (const char *)f->buf + 8, (size_t)hlen, e) != CP_OK) goto fail;
    return CP_OK;
fail:
    st_free(f);
    return CP_EFAIL;
}

const StTensor *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

int st_copy(const StFile *f, const StTensor *t, StDtype want, void *dst, int64_t numel, CpErr *e) {
    if (t->dtype != want)
        return cp_fail(e, "%s: tensor '%s' has dtype %s, expected %s", f->path, t->name, st_dtype_name(t->dtype),
                       st_dtype_name(want));
    if (t->numel != numel)
        return cp_fail(e, "%s: tensor '%s' has %" PRId64 " elements, expected %" PRId64, f->path, t->name, t->numel,
                       numel);
    memcpy(dst, t->data, (size_t)(t->end - t->begin));
    return CP_OK;
}

/* ---- writer ---- */

static json_t *header_json(const StWriteTensor *t, int n, const char *const *meta, int n_meta, CpErr *e,
                           const char *path) {
    json_t *root = json_object();
    if (n_meta > 0) {
        json_t *m = json_object();
        for (int i = 0; i < n_meta; i++) json_object_set_new(m, meta[2 * i], json_string(meta[2 * i + 1]));
        json_object_set_new(root, "__metadata__", m);
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        if ((unsigned)t[i].dtype >= ST_NDTYPES || t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS ||
            json_object_get(root, t[i].name)) {
            json_decref(root);
            cp_fail(e, "%s: cannot write tensor '%s': bad dtype/ndim or duplicate name", path, t[i].name);
            return NULL;
        }
        json_t *shape = json_array();
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            json_array_append_new(shape, json_integer(t[i].shape[d]));
            numel *= (uint64_t)t[i].shape[d];
        }
        uint64_t nb = numel * st_dtype_size(t[i].dtype);
        json_t *ent = json_object();
        json_object_set_new(ent, "dtype", json_string(st_dtype_name(t[i].dtype)));
        json_object_set_new(ent, "shape", shape);
        json_object_set_new(ent, "data_offsets", json_pack("[II]", (json_int_t)at, (json_int_t)(at + nb)));
        json_object_set_new(root, t[i].name, ent);
        at += nb;
    }
    return root;
}

int st_write(const char *path, const StWriteTensor *t, int n, const char *const *meta, int n_meta, CpErr *e) {
    json_t *root = header_json(t, n, meta, n_meta, e, path);
    if (!root) return CP_EFAIL;
    char *text = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(root);
    CP_ASSERT(text != NULL);
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    CpAtomicFile af;
    if (cp_atomic_open(&af, path, e) != CP_OK) {
        free(text);
        return CP_EFAIL;
    }
    uint64_t hlen = padded;
    int rc = cp_fwrite_all(&hlen, 8, af.f, path, e);
    if (rc == CP_OK) rc = cp_fwrite_all(text, len, af.f, path, e);
    for (size_t i = len; rc == CP_OK && i < padded; i++) rc = cp_fwrite_all(" ", 1, af.f, path, e);
    free(text);
    for (int i = 0; rc == CP_OK && i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (uint64_t)t[i].shape[d];
        rc = cp_fwrite_all(t[i].data, numel * st_dtype_size(t[i].dtype), af.f, path, e);
    }
    if (rc != CP_OK) {
        cp_atomic_abort(&af);
        return CP_EFAIL;
    }
    return cp_atomic_commit(&af, e);
}
