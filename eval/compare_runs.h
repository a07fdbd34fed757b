/* compare_runs.h - two `train` run folders side by side (the run part of
 * `compare`): settings from manifest.json, the first epoch whose parameter
 * SHA-256 differs, and with `train --trace` the first step and the first
 * traced op or tensor whose hash differs.
 *
 * Trace format (run/trace.jsonl, nets/cpnet_trace.h): one JSON object per
 * optimizer step, {"step", "epoch", "entries": [[name, sha256], ...]}, the
 * entries in a fixed order (forward ops in execution order, the loss, the
 * gradients, the parameters after the step). Two traces are read line by
 * line in step; the first line whose entries differ names the step, and its
 * first differing entry (in that fixed order) names the op or tensor. */
#ifndef CP_EVAL_COMPARE_RUNS_H
#define CP_EVAL_COMPARE_RUNS_H

#include <jansson.h>
#include <stdint.h>

#include "common.h"

/* [{key, a, b}] for every differing setting: seed, config.* (two levels),
 * environment.{backend, threads, device, compiler, git_commit, cellpose_c},
 * and the input files by SHA-256 (one summary entry). New reference. */
json_t *cmp_run_settings(json_t *manifest_a, json_t *manifest_b);

typedef struct {
    int64_t na, nb; /* epochs recorded */
    int64_t first;  /* first epoch whose params_sha256 differs; min(na, nb) when
                       only the number of epochs differs; -1 when identical */
} RunEpochs;
void cmp_run_epochs(RunEpochs *r, json_t *manifest_a, json_t *manifest_b);

typedef struct {
    int64_t nsteps;       /* steps read from both */
    int64_t step, epoch;  /* of the first differing record; step -1 when none */
    int64_t index;        /* of the first differing entry in that record */
    char entry[128];      /* its name */
    char hash_a[72], hash_b[72];
    int extra;            /* one trace has more records after the common ones */
} RunTrace;
int cmp_run_traces(RunTrace *t, const char *path_a, const char *path_b, CpErr *e);

#endif
