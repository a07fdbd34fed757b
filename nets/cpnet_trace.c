/* cpnet_trace.c - see cpnet_trace.h. Walks the CPnet struct (blocks, units,
 * tensor table) read-only; names come from the tensor table, so they are the
 * PyTorch state_dict module paths. */
#include "cpnet_trace.h"

#include <string.h>

#include "sha256.h"

/* Module path of a unit: its conv weight's name without ".<i>.weight", and
 * without the ".conv" that batchconvstyle units add. */
static void unit_name(char *out, size_t n, const CPnet *net, const CpUnit *u) {
    snprintf(out, n, "?");
    for (int i = 0; i < net->ntensors; i++) {
        const CpTensorInfo *t = &net->tensors[i];
        if (t->kind != T_PARAM || t->offset != u->w) continue;
        snprintf(out, n, "%s", t->name);
        for (int cut = 0; cut < 2; cut++) { /* drop "weight", then the index */
            char *d = strrchr(out, '.');
            if (d) *d = 0;
        }
        size_t l = strlen(out);
        if (u->style && l > 5 && strcmp(out + l - 5, ".conv") == 0) out[l - 5] = 0;
        return;
    }
}

static void entry(FILE *f, int *first, const char *name, const char *suffix, const void *p, size_t bytes) {
    char hex[CP_SHA256_HEX];
    sha256_hex(p, bytes, hex);
    fprintf(f, "%s[\"%s%s\", \"%s\"]", *first ? "" : ", ", name, suffix, hex);
    *first = 0;
}

static void unit_entry(FILE *f, int *first, const CPnet *net, const CpUnit *u) {
    char name[128];
    unit_name(name, sizeof name, net, u);
    entry(f, first, name, ":out", u->out, sizeof(float) * (size_t)net->plan_n * u->cout * u->H * u->W);
}

static void block_entries(FILE *f, int *first, const CPnet *net, const CpBlock *b) {
    unit_entry(f, first, net, &b->proj);
    for (int t = 0; t < 4; t++) unit_entry(f, first, net, &b->conv[t]);
    char name[128];
    unit_name(name, sizeof name, net, &b->proj);
    char *d = strrchr(name, '.'); /* "<block>.proj" -> "<block>" */
    if (d) *d = 0;
    entry(f, first, name, ":out", b->out, sizeof(float) * (size_t)net->plan_n * b->cout * b->H * b->W);
}

int cpnet_trace_step(FILE *f, const CPnet *net, int64_t step, int64_t epoch, float loss, const char *path, CpErr *e) {
    int first = 1, L = net->cfg.nlev;
    fprintf(f, "{\"step\": %lld, \"epoch\": %lld, \"loss\": %.9g, \"entries\": [", (long long)step, (long long)epoch,
            (double)loss);
    for (int n = 0; n < L; n++) block_entries(f, &first, net, &net->down[n]);
    entry(f, &first, "style", ":out", net->style, sizeof(float) * (size_t)net->plan_n * net->cfg.nbase[L]);
    for (int m = L - 1; m >= 0; m--) block_entries(f, &first, net, &net->up[m]);
    unit_entry(f, &first, net, &net->output);
    entry(f, &first, "loss", "", &loss, sizeof loss);
    for (int i = net->ntensors - 1; i >= 0; i--) {
        const CpTensorInfo *t = &net->tensors[i];
        if (t->kind == T_PARAM) entry(f, &first, "grad:", t->name, net->grads + t->offset, sizeof(float) * (size_t)t->numel);
    }
    char hex[CP_SHA256_HEX];
    cpnet_hash(net, hex);
    fprintf(f, ", [\"params\", \"%s\"]]}\n", hex);
    if (fflush(f) != 0 || ferror(f)) return cp_fail(e, "%s: could not write the trace", path);
    return CP_OK;
}
