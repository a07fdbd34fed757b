/* cmd_infer.c - `infer MODEL IMAGE [IMAGE ...]` or `infer MODEL --dir DIR`:
 * Cellpose v3 inference with a CPnet model, or v4 inference with a
 * Cellpose-SAM ViT model (told apart by the file's tensors), on the CPU
 * (infer/pipeline.h has the steps, defaults, the v4 differences and the
 * determinism argument). --dump-features shows CPnet layers only. Per image it writes
 * NAME_cp_masks.tif (+ --save-flows NAME_flows.tif, --save-outlines
 * NAME_outlines.png, --dump-features NAME_features_LAYER.png) into --out
 * (default: the image's folder) and prints one JSON line (masks, mask
 * SHA-256, seconds per stage); --json FILE also collects the lines in a file.
 * Outputs never replace an input: names ending in _cp_masks/_flows/_masks
 * are not taken as images, and an output path equal to an input is refused.
 * A folder run goes on after a bad image (one line naming it) and exits 1 at
 * the end if any failed. */
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "dataset.h"
#include "featmaps.h"
#include "metrics.h"
#include "pipeline.h"
#include "progress.h"

static CliOpt opts[] = {
    {"dir", "DIR", "segment every image of a folder (Cellpose's file rules: masks and outputs skipped)", NULL},
    {"out", "DIR", "where results go (default: the image's folder; never over the input)", NULL},
    {"json", "FILE", "also write the JSON lines of all images to FILE", NULL},
    {"threads", "N", "CPU threads (results do not depend on it)", NULL},
    {"diameter", "D", "cell diameter in pixels: rescale by diam_mean / D (default: the model's diam_labels)", NULL},
    {"channels", "C1,C2", "Cellpose channel selection (default 0,0: grayscale)", NULL},
    {"page", "N", "page of a multi-page TIFF (0-based)", NULL},
    {"cellprob-threshold", "T", "threshold on the cell probability logit (0.0)", NULL},
    {"flow-threshold", "T", "maximum flow error per mask (0.4; 0 disables)", NULL},
    {"niter", "N", "Euler integration steps (default: 200, scaled with --diameter)", NULL},
    {"min-size", "N", "drop masks smaller than N pixels (15; -1 keeps all)", NULL},
    {"max-size-fraction", "F", "drop masks larger than F of the image (0.4)", NULL},
    {"bsize", "N", "tile side in pixels, a multiple of 16 (CPnet 224; a ViT takes only its img_size)", NULL},
    {"tile-overlap", "F", "tile overlap fraction (0.1)", NULL},
    {"augment", NULL, "Cellpose's test-time augmentation: flipped, half-overlapping tiles", NULL},
    {"batch-size", "N", "tiles per forward pass (8; results do not depend on it)", NULL},
    {"save-flows", NULL, "also write NAME_flows.tif (float32: dY, dX, cellprob)", NULL},
    {"save-outlines", NULL, "also write NAME_outlines.png (the image with mask outlines in red)", NULL},
    {"dump-features", "LAYER", "write NAME_features_LAYER.png: 3 principal components of a layer's feature maps as RGB "
                               "(layers: down0.., up0.., output; 'list' prints them)", NULL},
    {"gt", "MASKS", "ground-truth labels: add Cellpose's AP at IoU 0.5/0.75/0.9 to the JSON line (one image)", NULL},
};
#define NOPTS ((int)(sizeof opts / sizeof opts[0]))

typedef struct {
    InferParams p;
    long page;
    const char *out, *gt, *features;
    int save_flows, save_outlines;
} InferArgs;

static int parse_double(const char *name, double lo, double hi, double *out, CpErr *e) {
    return cli_get_double(opts, NOPTS, name, lo, hi, out, e);
}

static int parse_args(InferArgs *a, CpErr *e) {
    *a = (InferArgs){.p = infer_params_default()};
    InferParams *p = &a->p;
    a->out = cli_get(opts, NOPTS, "out");
    a->gt = cli_get(opts, NOPTS, "gt");
    a->features = cli_get(opts, NOPTS, "dump-features");
    a->save_flows = cli_get(opts, NOPTS, "save-flows") != NULL;
    a->save_outlines = cli_get(opts, NOPTS, "save-outlines") != NULL;
    p->augment = cli_get(opts, NOPTS, "augment") != NULL;
    const char *ch = cli_get(opts, NOPTS, "channels");
    char tail;
    if (ch && (sscanf(ch, "%d,%d%c", &p->channels[0], &p->channels[1], &tail) != 2 || p->channels[0] < 0 ||
               p->channels[0] > 3 || p->channels[1] < 0 || p->channels[1] > 3))
        return cp_fail(e, "--channels: expected two integers in 0..3 like 2,3, got '%s'", ch);
    long batch = p->batch, bsize = p->bsize;
    if (parse_double("diameter", 0, 1e6, &p->diameter, e) || parse_double("cellprob-threshold", -1e3, 1e3, &p->cellprob_thr, e) ||
        parse_double("flow-threshold", 0, 1e6, &p->flow_thr, e) || parse_double("max-size-fraction", 0, 1, &p->max_frac, e) ||
        parse_double("tile-overlap", 0, 1, &p->overlap, e) ||
        cli_get_int(opts, NOPTS, "niter", 0, 100000, &p->niter, e) || cli_get_int(opts, NOPTS, "min-size", -1, 1L << 40, &p->min_size, e) ||
        cli_get_int(opts, NOPTS, "batch-size", 1, 1024, &batch, e) || cli_get_int(opts, NOPTS, "bsize", 16, 4096, &bsize, e) ||
        cli_get_int(opts, NOPTS, "page", 0, 1000000, &a->page, e))
        return CP_EFAIL;
    if (bsize % 16) return cp_fail(e, "--bsize: %ld is not a multiple of 16", bsize);
    p->batch = (int)batch, p->bsize = (int)bsize;
    return CP_OK;
}

/* "dir/name.tif" -> "OUT/name<suffix>" (OUT = the image's folder by default) */
static void out_path(char *buf, size_t n, const char *out, const char *image, const char *suffix) {
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s", image);
    snprintf(b, sizeof b, "%s", image);
    char *base = basename(a), *dot = strrchr(base, '.');
    if (dot && dot != base) *dot = 0;
    snprintf(buf, n, "%s/%s%s", out ? out : dirname(b), base, suffix);
}

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Cellpose's average_precision against --gt as a JSON object. */
static int gt_scores(json_t **out, const char *gt, const uint32_t *masks, int64_t H, int64_t W, const CpCtx *ctx,
                     CpErr *e) {
    Image g = {0};
    uint32_t *gl = NULL;
    double th[3] = {0.5, 0.75, 0.9}, ap[3];
    int64_t tp[3], fp[3], fn[3];
    int rc = image_read(&g, gt, 0, ctx->max_pixels, e);
    if (rc == CP_OK && (g.h != H || g.w != W))
        rc = cp_fail(e, "%s: %lld x %lld labels for a %lld x %lld image", gt, (long long)g.h, (long long)g.w,
                     (long long)H, (long long)W);
    if (rc == CP_OK) gl = cp_malloc(sizeof(uint32_t) * (size_t)(H * W)), rc = image_to_labels(&g, gt, gl, e);
    if (rc == CP_OK) rc = met_average_precision(ap, tp, fp, fn, gl, masks, H, W, th, 3, e);
    if (rc == CP_OK)
        *out = json_pack("{s:f, s:f, s:f, s:I, s:I, s:I}", "ap50", ap[0], "ap75", ap[1], "ap90", ap[2], "tp50",
                         (json_int_t)tp[0], "fp50", (json_int_t)fp[0], "fn50", (json_int_t)fn[0]);
    cp_free(gl);
    image_free(&g);
    return rc;
}

static int infer_one(Net *net, const char *path, const InferArgs *a, const CpCtx *ctx, json_t **line, CpErr *e) {
    double t0 = cp_time_sec();
    Image img = {0};
    InferResult r = {0};
    json_t *apj = json_null();
    char mpath[4300], fpath[4300], opath[4300], dpath[4400];
    out_path(mpath, sizeof mpath, a->out, path, "_cp_masks.tif");
    out_path(fpath, sizeof fpath, a->out, path, "_flows.tif");
    out_path(opath, sizeof opath, a->out, path, "_outlines.png");
    char sfx[160];
    snprintf(sfx, sizeof sfx, "_features_%s.png", a->features ? a->features : "");
    out_path(dpath, sizeof dpath, a->out, path, sfx);
    int rc = CP_OK;
    const char *outs[4] = {mpath, a->save_flows ? fpath : NULL, a->save_outlines ? opath : NULL,
                           a->features ? dpath : NULL};
    for (int k = 0; k < 4 && rc == CP_OK; k++)
        if (outs[k] && same_file(outs[k], path)) rc = cp_fail(e, "%s: refusing to write an output over the input", path);
    if (rc == CP_OK) rc = image_read(&img, path, (int)a->page, ctx->max_pixels, e);
    double t_read = cp_time_sec() - t0;
    if (rc == CP_OK) rc = infer_image(&r, net, &img, path, &a->p, ctx, e);
    if (rc == CP_OK && a->gt) rc = gt_scores(&apj, a->gt, r.masks, r.H, r.W, ctx, e);
    if (rc == CP_OK && a->features) rc = feat_dump_png(dpath, &net->cp, &img, path, &a->p, a->features, ctx, e);
    if (rc != CP_OK) goto done;
    double tw = cp_time_sec();
    rc = image_write_labels_tiff(mpath, r.masks, r.H, r.W, e);
    if (rc == CP_OK && a->save_flows) rc = image_write_f32_tiff(fpath, r.flows, 3, r.H, r.W, e);
    if (rc == CP_OK && a->save_outlines) rc = infer_write_outlines(opath, r.x, r.masks, r.H, r.W, e);
    if (rc != CP_OK) goto done;
    double t_write = cp_time_sec() - tw;
    *line = json_pack("{s:s, s:s, s:I, s:I, s:i, s:s, s:i, s:f, s:b, s:O, s:{s:f, s:f, s:f, s:f, s:f, s:f}}", "image",
                      path, "masks_file", mpath, "height", (json_int_t)r.H, "width", (json_int_t)r.W, "masks",
                      (int)r.nmask, "masks_sha256", r.masks_sha256, "niter", (int)r.niter, "rescale", r.rescale,
                      "augment", a->p.augment, "ap", apj, "seconds", "read_normalize",
                      t_read + r.seconds[INF_T_NORMALIZE], "network", r.seconds[INF_T_NETWORK], "dynamics",
                      r.seconds[INF_T_DYNAMICS], "cleanup", r.seconds[INF_T_CLEANUP], "write", t_write, "total",
                      cp_time_sec() - t0);
done:
    json_decref(apj);
    infer_result_free(&r);
    image_free(&img);
    return rc;
}

static int write_json_file(const char *path, json_t *lines, CpErr *e) {
    CpAtomicFile af;
    if (cp_atomic_open(&af, path, e) != CP_OK) return CP_EFAIL;
    size_t i;
    json_t *v;
    json_array_foreach(lines, i, v) {
        char *s = json_dumps(v, JSON_COMPACT);
        fprintf(af.f, "%s\n", s);
        free(s);
    }
    return cp_atomic_commit(&af, e);
}

int main(int argc, char **argv) {
    const char *pos[4096];
    int npos = 0;
    int rc = cli_main_head("infer", "infer MODEL IMAGE [IMAGE ...] [options] | infer MODEL --dir DIR [options]",
                           "Segment images with a trained CPnet or ViT model (model.bin); writes NAME_cp_masks.tif and "
                           "prints one JSON line per image (mask count, mask SHA-256, seconds per stage).",
                           opts, NOPTS, argc, argv, pos, &npos, 4096, 1);
    if (rc >= 0) return rc;
    InferArgs a;
    CpErr e;
    long threads = 0;
    if (parse_args(&a, &e) != CP_OK || cli_get_int(opts, NOPTS, "threads", 0, 4096, &threads, &e) != CP_OK) {
        fprintf(stderr, "infer: %s\n", e.msg);
        return 2;
    }
    const char *dir = cli_get(opts, NOPTS, "dir"), *json_path = cli_get(opts, NOPTS, "json");
    if ((dir != NULL) == (npos > 1)) {
        fprintf(stderr, "infer: give either image files or --dir DIR (see --help)\n");
        return 2;
    }
    if (a.gt && (dir || npos != 2)) {
        fprintf(stderr, "infer: --gt scores one image; use `eval --pred DIR --gt DIR` for folders\n");
        return 2;
    }
    if (a.features && feat_check_layer(a.features, &e) != CP_OK) {
        fprintf(stderr, "infer: --dump-features: %s\n", e.msg);
        return 2;
    }
    if (a.out) {
        struct stat st;
        if (stat(a.out, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "infer: --out %s: not an existing folder\n", a.out);
            return 2;
        }
    }
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, (int)threads, 0);
    Net net = {0};
    if (infer_load_model(&net, pos[0], &ctx, &e) != CP_OK) {
        fprintf(stderr, "infer: %s\n", e.msg);
        cp_ctx_free(&ctx);
        return 1;
    }
    if (a.features && net.type != NET_CPNET) {
        fprintf(stderr, "infer: %s: --dump-features shows CPnet layers; this model is a %s\n", pos[0],
                net_type_name(&net));
        net_free(&net);
        cp_ctx_free(&ctx);
        return 2;
    }
    /* the image list */
    char **names = NULL;
    int n = npos - 1;
    if (dir) {
        if (dataset_list_images(dir, "_masks", &names, &n, &e) != CP_OK) {
            fprintf(stderr, "infer: %s\n", e.msg);
            net_free(&net);
            cp_ctx_free(&ctx);
            return 1;
        }
        for (int i = 0; i < n; i++) { /* folder + "/" + name */
            size_t len = strlen(dir) + strlen(names[i]) + 2;
            char *p = cp_malloc(len);
            snprintf(p, len, "%s/%s", dir, names[i]);
            cp_free(names[i]);
            names[i] = p;
        }
    }
    json_t *lines = json_array();
    CpProgress pr;
    progress_init(&pr, "infer", "img", n);
    int nfail = 0;
    for (int i = 0; i < n; i++) {
        const char *path = dir ? names[i] : pos[1 + i];
        json_t *line = NULL;
        if (infer_one(&net, path, &a, &ctx, &line, &e) != CP_OK) {
            fprintf(stderr, "infer: %s\n", e.msg);
            nfail++;
        } else {
            char *s = json_dumps(line, JSON_COMPACT);
            printf("%s\n", s);
            fflush(stdout);
            free(s);
            json_array_append_new(lines, line);
        }
        if (n > 1) {
            char tail[64];
            snprintf(tail, sizeof tail, "%d failed", nfail);
            progress_update(&pr, i + 1, tail);
        }
    }
    if (n > 1) progress_end(&pr, n, nfail ? "some images failed" : "all ok");
    if (json_path && json_array_size(lines) > 0 && write_json_file(json_path, lines, &e) != CP_OK) {
        fprintf(stderr, "infer: %s\n", e.msg);
        nfail++;
    }
    if (nfail && n > 1) fprintf(stderr, "infer: %d of %d images failed\n", nfail, n);
    json_decref(lines);
    if (names) dataset_free_names(names, n);
    net_free(&net);
    cp_ctx_free(&ctx);
    return nfail ? 1 : 0;
}
