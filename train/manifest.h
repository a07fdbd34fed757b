/* manifest.h - the run manifest (DESIGN.md rule 8): one JSON file per run
 * holding everything needed to compare two runs: resolved config, seed,
 * backend, thread count, device, compiler and library versions, git commit,
 * the SHA-256 of every input file, and per epoch the learning rate, losses,
 * SHA-256 of all parameters and wall time. Rewritten atomically after every
 * epoch, so a killed run leaves a valid manifest of the epochs it finished. */
#ifndef CP_MANIFEST_H
#define CP_MANIFEST_H

#include <jansson.h>

#include "config.h"
#include "ctx.h"

typedef struct {
    json_t *root;   /* the document */
    json_t *inputs; /* [{file, sha256}] */
    json_t *epochs; /* [{epoch, lr, train_loss, test_loss, params_sha256, wall_s}] */
} Manifest;

/* `argv` is recorded verbatim (argc entries). */
void manifest_init(Manifest *m, const CpConfig *cfg, const CpCtx *ctx, int argc, char **argv);
void manifest_add_input(Manifest *m, const char *file, const char *sha256_hex);
/* test_loss < 0: no test set / not evaluated this epoch (written as null) */
void manifest_add_epoch(Manifest *m, int epoch, double lr, double train_loss, double test_loss,
                        const char *params_sha256, double wall_s);
void manifest_set(Manifest *m, const char *key, json_t *value); /* steals value */
int manifest_write(const Manifest *m, const char *path, CpErr *e);
/* Read a manifest back (compare, resume checks). */
int manifest_read(Manifest *m, const char *path, CpErr *e);
void manifest_free(Manifest *m);

#endif
