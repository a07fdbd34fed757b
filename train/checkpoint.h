/* checkpoint.h - training checkpoints: everything a resumed run needs to end
 * with the same bits as an uninterrupted one (DESIGN.md level R).
 *
 * A checkpoint is a model file (safetensors, the net's state_dict tensors
 * first, so `inspect` and Cellpose's loader see an ordinary model) plus:
 *   optimizer.m, optimizer.v   F32 [nparams]  AdamW moments (SGD: m is the
 *                                             momentum buffer, v unused)
 *   optimizer.step             I64 []         optimizer steps taken
 *   optimizer.epoch            I64 []         epochs completed
 * Written atomically (temp file, fsync, rename): a run killed mid-write
 * leaves the previous checkpoint intact. Randomness needs no state: Philox
 * counters are (epoch, image, ...) and the ViT's layer drop is keyed by the
 * optimizer step, so the step alone resumes every stream. The same layout
 * serves the CPnet and the ViT (nets/net.h); the net's tensors tell which. */
#ifndef CP_CHECKPOINT_H
#define CP_CHECKPOINT_H

#include "net.h"

typedef struct {
    float *m, *v;  /* [nparams] each */
    int64_t step;  /* optimizer steps taken */
    int64_t epoch; /* epochs completed */
} TrainState;

/* Any net (nets/net.h). */
int ckpt_save_net(const char *path, const Net *net, const TrainState *st, const char *const *meta, int n_meta,
                  CpErr *e);
/* Loads into an already created net of the same config and allocated st->m / st->v. */
int ckpt_load_net(const char *path, Net *net, TrainState *st, CpErr *e);

#endif
