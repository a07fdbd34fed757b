/* manifest.c - see manifest.h. */
#include "manifest.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <yaml.h>

#include "version.h"

/* First "model name" line of /proc/cpuinfo, or "unknown". */
static void cpu_name(char *buf, size_t n) {
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && c) {
            snprintf(buf, n, "%s", c + 2);
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    }
    fclose(f);
}

static json_t *environment(const CpCtx *ctx) {
    char cpu[256], tiff[128];
    cpu_name(cpu, sizeof cpu);
    snprintf(tiff, sizeof tiff, "%s", TIFFGetVersion());
    tiff[strcspn(tiff, "\n")] = 0;
    return json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:{s:s, s:s, s:s, s:s}}", "cellpose_c", cp_version(),
                     "git_commit", cp_git_commit(), "backend", cp_backend_name(ctx->backend), "threads",
                     ctx->threads, "device", cpu, "compiler", "gcc " __VERSION__ ", -ffp-contract=off", "libraries",
                     "libtiff", tiff, "jansson", JANSSON_VERSION, "openssl", OpenSSL_version(OPENSSL_VERSION),
                     "libyaml", yaml_get_version_string());
}

void manifest_init(Manifest *m, const CpConfig *cfg, const CpCtx *ctx, int argc, char **argv) {
    m->root = json_object();
    json_t *args = json_array();
    for (int i = 0; i < argc; i++) json_array_append_new(args, json_string(argv[i]));
    json_object_set_new(m->root, "command", args);
    json_object_set_new(m->root, "seed", json_integer(ctx->seed));
    json_object_set_new(m->root, "environment", environment(ctx));
    json_object_set_new(m->root, "config", cfg ? config_to_json(cfg) : json_null());
    m->inputs = json_array();
    m->epochs = json_array();
    json_object_set(m->root, "inputs", m->inputs);
    json_object_set(m->root, "epochs", m->epochs);
}

void manifest_add_input(Manifest *m, const char *file, const char *sha256_hex) {
    json_array_append_new(m->inputs, json_pack("{s:s, s:s}", "file", file, "sha256", sha256_hex));
}

void manifest_add_epoch(Manifest *m, int epoch, double lr, double train_loss, double test_loss,
                        const char *params_sha256, double wall_s) {
    json_array_append_new(m->epochs, json_pack("{s:i, s:f, s:f, s:o, s:s, s:f}", "epoch", epoch, "lr", lr,
                                               "train_loss", train_loss, "test_loss",
                                               test_loss < 0 ? json_null() : json_real(test_loss),
                                               "params_sha256", params_sha256, "wall_s", wall_s));
}

void manifest_set(Manifest *m, const char *key, json_t *value) { json_object_set_new(m->root, key, value); }

int manifest_write(const Manifest *m, const char *path, CpErr *e) {
    char *text = json_dumps(m->root, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    CP_ASSERT(text);
    CpAtomicFile af;
    int rc = cp_atomic_open(&af, path, e);
    if (rc == CP_OK) rc = cp_fwrite_all(text, strlen(text), af.f, path, e);
    if (rc == CP_OK) rc = cp_fwrite_all("\n", 1, af.f, path, e);
    free(text);
    if (rc != CP_OK) {
        cp_atomic_abort(&af);
        return CP_EFAIL;
    }
    return cp_atomic_commit(&af, e);
}

int manifest_read(Manifest *m, const char *path, CpErr *e) {
    memset(m, 0, sizeof *m);
    json_error_t je;
    m->root = json_load_file(path, 0, &je);
    if (!m->root) return cp_fail(e, "%s: not a readable manifest: %s (line %d)", path, je.text, je.line);
    m->inputs = json_object_get(m->root, "inputs");
    m->epochs = json_object_get(m->root, "epochs");
    if (!json_is_array(m->inputs) || !json_is_array(m->epochs)) {
        json_decref(m->root);
        m->root = NULL;
        return cp_fail(e, "%s: not a cellpose.c manifest (no inputs/epochs lists)", path);
    }
    json_incref(m->inputs);
    json_incref(m->epochs);
    return CP_OK;
}

void manifest_free(Manifest *m) {
    json_decref(m->inputs);
    json_decref(m->epochs);
    json_decref(m->root);
    memset(m, 0, sizeof *m);
}
