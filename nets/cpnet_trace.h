/* cpnet_trace.h - per-step hashes of a CPnet training step (`train --trace`),
 * for finding the first op where two runs part (`compare run_a run_b`).
 *
 * One JSON line per optimizer step:
 *   {"step": S, "epoch": E, "entries": [[name, sha256], ...]}
 * with the entries in this fixed order:
 *   1. forward, in execution order: for each res_down block n
 *      "<block>.proj:out", "<block>.conv.conv_t:out" (t = 0..3), "<block>:out";
 *      then "style:out"; then the res_up blocks from the deepest up, the same
 *      way; then "output:out". <block> is the PyTorch module path
 *      (downsample.down.res_down_0, upsample.up.res_up_2, ...); an op's
 *      output is its conv output [N, cout, H, W] (float32 bytes).
 *   2. "loss": the 4 bytes of the float32 batch loss.
 *   3. "grad:<tensor>" for each trainable tensor in reverse state_dict order
 *      (the output layer first, about the order backward produces them).
 *   4. "params": cpnet_hash after the optimizer step (equal to the manifest's
 *      params_sha256 after the epoch's last step).
 * The hashes read memory the step already holds (activations of the last
 * training forward, gradients, parameters); nothing is recomputed. Cost: one
 * SHA-256 pass over the activations, gradients and parameters per step. */
#ifndef CP_CPNET_TRACE_H
#define CP_CPNET_TRACE_H

#include <stdio.h>

#include "cpnet.h"

/* Writes the record of the step just taken (after cpnet_loss_backward and
 * the optimizer step) as one line to f. */
int cpnet_trace_step(FILE *f, const CPnet *net, int64_t step, int64_t epoch, float loss, const char *path, CpErr *e);

#endif
