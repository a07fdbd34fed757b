/* safetensors.h - model files in the safetensors layout (DESIGN.md "Formats").
 *
 * Layout: u64 little-endian N | N bytes of JSON header | data section.
 * The header maps tensor names to {"dtype", "shape", "data_offsets": [begin,
 * end]} (offsets relative to the data section) and may hold "__metadata__",
 * a string -> string map. Readable by `safetensors.torch.load_file`.
 *
 * The reader trusts nothing: header length vs file size, JSON syntax, known
 * dtype, shape vs byte range, offsets inside the data section, no overlaps,
 * no unindexed bytes (holes or trailing data). Every failure is one line
 * naming the file, the tensor and the problem.
 *
 * The writer lays tensors out in the order given (state_dict order for our
 * nets), pads the header with spaces to a multiple of 8 bytes, and writes
 * atomically (temp file, fsync, rename). */
#ifndef CP_SAFETENSORS_H
#define CP_SAFETENSORS_H

#include <stdint.h>

#include "common.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MiB, as the reference library */

typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_U16, ST_I16, ST_F16, ST_BF16,
    ST_U32, ST_I32, ST_F32, ST_U64, ST_I64, ST_F64,
    ST_NDTYPES
} StDtype;

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;  /* byte range inside the data section */
    const uint8_t *data;  /* points into StFile.buf; may be unaligned: use st_copy_* */
} StTensor;

typedef struct {
    char *path;
    uint8_t *buf; /* whole file */
    size_t size;
    StTensor *tensors; /* in header order */
    int n;
    char **meta_key, **meta_val;
    int n_meta;
} StFile;

const char *st_dtype_name(StDtype d);
size_t st_dtype_size(StDtype d);

int st_read(StFile *f, const char *path, CpErr *e);
void st_free(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);
const char *st_meta(const StFile *f, const char *key); /* NULL if absent */

/* Copy a tensor into dst after checking dtype and element count. */
int st_copy(const StFile *f, const StTensor *t, StDtype want, void *dst, int64_t numel, CpErr *e);
/* "[3, 32, 1, 1]" into buf. */
const char *st_shape_str(const StTensor *t, char *buf, size_t n);

typedef struct {
    const char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; /* numel * dtype size bytes, little-endian */
} StWriteTensor;

/* meta: n_meta key/value pairs as meta[2i], meta[2i+1]; may be NULL. */
int st_write(const char *path, const StWriteTensor *t, int n, const char *const *meta, int n_meta, CpErr *e);

#endif
