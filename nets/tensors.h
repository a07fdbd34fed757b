/* tensors.h - what the two nets (nets/cpnet.c, nets/vit.c) share: the tensor
 * table (one entry per state_dict tensor, in state_dict order), model-file
 * I/O over it, the parameter hash, and the activation-arena slicing.
 *
 * A net describes each tensor by a CpTensorInfo and gives the table code a
 * `data` function that returns where the tensor lives (and its dtype: F32,
 * or I64 for BatchNorm's num_batches_tracked). Files are safetensors with the
 * state_dict's names; loading checks every name, shape and dtype and names
 * what is missing, extra or mis-shaped in one line. */
#ifndef CP_NETS_TENSORS_H
#define CP_NETS_TENSORS_H

#include <stdint.h>

#include "common.h"
#include "safetensors.h"

typedef enum { T_PARAM = 0, T_FROZEN, T_RUNNING_MEAN, T_RUNNING_VAR, T_NBT } CpTensorKind;

typedef struct {
    char name[96];
    CpTensorKind kind;
    int ndim;
    int64_t shape[4];
    int64_t numel;
    int64_t offset; /* into the net's buffer for this kind */
    int64_t fan_in; /* init (nt_init_param): > 0 U(+-1/sqrt(fan_in)); 0 a norm's
                       weight 1 / bias 0; < 0 zeros */
} CpTensorInfo;

/* PyTorch's default init of a trainable tensor, from Philox: stream
 * 1000 + `index` (the tensor's place in the table) under `seed`, element j
 * as counter, p[j] = bound * (2 u - 1) with bound = 1 / sqrt(fan_in) in
 * float; the fan_in <= 0 rules above. p: [t->numel]. */
void nt_init_param(float *p, const CpTensorInfo *t, int index, uint32_t seed);

/* Where tensor t of `net` lives, and its dtype. */
typedef const void *(*NtDataFn)(const void *net, const CpTensorInfo *t, StDtype *dt);

/* w[0 .. n) describe the n tensors (for st_write); returns n. */
int nt_write_list(StWriteTensor *w, const CpTensorInfo *t, int n, NtDataFn data, const void *net);
int nt_save(const char *path, const CpTensorInfo *t, int n, NtDataFn data, const void *net, const char *const *meta,
            int n_meta, CpErr *e);
/* Fill the n tensors from an open file. Tensors of the file that are not in
 * the table are errors unless their names start with extra_prefix. `what`
 * names the net in messages ("CPnet"); the hints end the missing-tensor and
 * wrong-shape messages. */
int nt_load_from(void *net, const CpTensorInfo *t, int n, NtDataFn data, const StFile *f, const char *extra_prefix,
                 const char *what, const char *missing_hint, const char *shape_hint, CpErr *e);
/* SHA-256 of the tensors' bytes in table order (what the model file holds). */
void nt_hash(char hex[65], const CpTensorInfo *t, int n, NtDataFn data, const void *net);

/* Arena slices, 16-float aligned. While measuring (act == NULL) it returns
 * distinct fake addresses that are never dereferenced; *used counts floats. */
static inline float *nt_take(float *act, int64_t n, int64_t *used) {
    int64_t at = *used;
    *used += (n + 15) & ~(int64_t)15;
    if (!act) return (float *)(uintptr_t)(64 + 4 * at);
    return act + at;
}

/* Gradient twin of an arena tensor (same offset in dact); NULL for anything
 * outside the arena (the network input) or when there are no gradients. */
static inline float *nt_grad(float *act, float *dact, int64_t act_floats, const float *t) {
    if (!dact || t < act || t >= act + act_floats) return NULL;
    return dact + (t - act);
}

#endif
