/* cmd_synth.c - the `synth` program: writes a seeded synthetic training
 * folder (train/synth.h) in Cellpose's layout:
 *
 *   synth --out DIR --n 20 --size 256 --seed 1 [--diameter 30]
 *     DIR/synth_000.tif        uint16 image, round(value * 65535)
 *     DIR/synth_000_masks.tif  labels (uint16, uint32 above 65535 labels)
 *
 * Every file is written atomically (image.h writers). The folder is a pure
 * function of the arguments: same arguments, same bytes.
 * Exit codes: 0 done, 1 runtime error (one line), 2 usage error (one line). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "image.h"
#include "progress.h"
#include "train/synth.h"

/* Float option in [lo, hi]; *out unchanged when absent. */
static int get_float(const CliOpt *opts, int nopts, const char *name, double lo, double hi, double *out,
                     CpErr *e) {
    const char *s = cli_get(opts, nopts, name);
    if (!s) return CP_OK;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return cp_fail(e, "--%s: '%s' is not a number in %g..%g", name, s, lo, hi);
    *out = v;
    return CP_OK;
}

/* Write image `i` and its mask into dir. img [S, S] in [0, 1]. */
static int write_pair(const char *dir, const char *prefix, long i, const float *img, const uint32_t *lab, long S,
                      uint16_t *u16, CpErr *e) {
    char path[4096];
    for (long p = 0; p < S * S; p++) u16[p] = (uint16_t)(img[p] * 65535.0f + 0.5f);
    Image im = {S, S, 1, IMG_U16, u16, 1, 0};
    snprintf(path, sizeof path, "%s/%s_%03ld.tif", dir, prefix, i);
    if (image_write_tiff(path, &im, 0, e)) return CP_EFAIL;
    snprintf(path, sizeof path, "%s/%s_%03ld_masks.tif", dir, prefix, i);
    return image_write_labels_tiff(path, lab, S, S, e);
}

static int run(const char *dir, const char *prefix, long n, long S, uint32_t seed, double diam, CpErr *e) {
    SynthParams p;
    synth_default_params(&p, S, S, (float)diam);
    if (synth_check_params(&p, S, S, e)) return CP_EFAIL;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return cp_fail(e, "%s: cannot create folder (%s)", dir, strerror(errno));
    float *img = (float *)cp_malloc(sizeof(float) * (size_t)(S * S));
    uint32_t *lab = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)(S * S));
    uint16_t *u16 = (uint16_t *)cp_malloc(sizeof(uint16_t) * (size_t)(S * S));
    CpProgress pr;
    progress_init(&pr, "synth", "img", n);
    int rc = CP_OK;
    long total = 0;
    char tail[64];
    for (long i = 0; i < n && rc == CP_OK; i++) {
        int nc = 0;
        rc = synth_image(img, lab, S, S, &p, seed, (uint32_t)i, &nc, e);
        if (rc == CP_OK) rc = write_pair(dir, prefix, i, img, lab, S, u16, e);
        total += nc;
        snprintf(tail, sizeof tail, "%ld cells", total);
        progress_update(&pr, i + 1, tail);
    }
    if (rc == CP_OK) progress_end(&pr, n, tail);
    cp_free(img);
    cp_free(lab);
    cp_free(u16);
    return rc;
}

int main(int argc, char **argv) {
    CliOpt opts[] = {
        {"out", "DIR", "output folder (created if missing)", NULL},
        {"n", "N", "number of images (default 20)", NULL},
        {"size", "S", "image side in pixels, 16..4096 (default 256)", NULL},
        {"seed", "N", "data set seed, 0..4294967295 (default 1)", NULL},
        {"diameter", "D", "mean cell diameter in pixels (default 30)", NULL},
        {"prefix", "NAME", "file name prefix (default synth)", NULL},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]);
    const char *pos[1];
    int npos = 0;
    int rc = cli_main_head("synth", "synth --out DIR [--n 20 --size 256 --seed 1 --diameter 30]",
                           "Write a seeded synthetic training folder (NAME.tif + NAME_masks.tif).", opts, nopts,
                           argc, argv, pos, &npos, 0, 0);
    if (rc >= 0) return rc;
    CpErr e;
    long n = 20, S = 256, seed = 1;
    double diam = 30.0;
    const char *out = cli_get(opts, nopts, "out");
    const char *prefix = cli_get(opts, nopts, "prefix");
    if (!prefix) prefix = "synth";
    if (!out) {
        fprintf(stderr, "synth: --out DIR is required (see --help)\n");
        return 2;
    }
    if (cli_get_int(opts, nopts, "n", 1, 100000, &n, &e) || cli_get_int(opts, nopts, "size", 16, 4096, &S, &e) ||
        cli_get_int(opts, nopts, "seed", 0, 4294967295L, &seed, &e) ||
        get_float(opts, nopts, "diameter", 4.0, 2048.0, &diam, &e) ||
        (!prefix[0] || strchr(prefix, '/') ? cp_fail(&e, "--prefix: '%s' must be a plain file name", prefix) : 0)) {
        fprintf(stderr, "synth: %s\n", e.msg);
        return 2;
    }
    if (run(out, prefix, n, S, (uint32_t)seed, diam, &e)) {
        fprintf(stderr, "synth: %s\n", e.msg);
        return 1;
    }
    return 0;
}
