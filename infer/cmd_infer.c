/* cmd_infer.c - `infer MODEL IMAGE`: Cellpose v3 inference with a CPnet
 * model, on the CPU, with the canonical steps of DESIGN.md ("One canonical
 * Cellpose"), each tested against the real Cellpose in its own test:
 *   read (any bit depth, channels, page) -> channel selection -> 1/99%
 *   normalization (train/transforms) -> optional --diameter rescale
 *   (bilinear, infer/tiles) -> padding, 224-px tiles with 10% overlap,
 *   CPnet in eval mode on batches of tiles, taper blending (infer/tiles) ->
 *   resize back -> Euler integration and mask assembly (infer/dynamics) ->
 *   flow-error removal, hole filling, min size (infer/cleanup) ->
 *   NAME_cp_masks.tif (+ --save-flows NAME_flows.tif), and one JSON line
 *   (masks, mask SHA-256, timings per stage) on stdout.
 * The masks do not depend on --batch-size, tile order or --threads. */
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "cli.h"
#include "cpnet.h"
#include "dynamics.h"
#include "image.h"
#include "metrics.h"
#include "sha256.h"
#include "tiles.h"
#include "transforms.h"

static CliOpt opts[] = {
    {"out", "DIR", "where results go (default: the image's folder; never over the input)", NULL},
    {"threads", "N", "CPU threads (results do not depend on it)", NULL},
    {"diameter", "D", "cell diameter in pixels: rescale by diam_mean / D (default: the model's diam_labels)", NULL},
    {"channels", "C1,C2", "Cellpose channel selection (default 0,0: grayscale)", NULL},
    {"page", "N", "page of a multi-page TIFF (0-based)", NULL},
    {"cellprob-threshold", "T", "threshold on the cell probability logit (0.0)", NULL},
    {"flow-threshold", "T", "maximum flow error per mask (0.4; 0 disables)", NULL},
    {"niter", "N", "Euler integration steps (default: 200, scaled with --diameter)", NULL},
    {"min-size", "N", "drop masks smaller than N pixels (15)", NULL},
    {"max-size-fraction", "F", "drop masks larger than F of the image (0.4)", NULL},
    {"tile-overlap", "F", "tile overlap fraction (0.1)", NULL},
    {"batch-size", "N", "tiles per forward pass (8; results do not depend on it)", NULL},
    {"save-flows", NULL, "also write NAME_flows.tif (float32: dY, dX, cellprob)", NULL},
    {"save-outlines", NULL, "also write NAME_outlines.png (the image with mask outlines in red)", NULL},
    {"gt", "MASKS", "ground-truth labels: add Cellpose's AP at IoU 0.5/0.75/0.9 to the JSON line", NULL},
};
#define NOPTS ((int)(sizeof opts / sizeof opts[0]))

typedef struct {
    double diameter, cellprob_thr, flow_thr, max_frac, overlap;
    long niter, min_size, batch, page;
    int channels[2];
    const char *out;
} InferArgs;

static int parse_double(const char *name, double lo, double hi, double *out, CpErr *e) {
    const char *v = cli_get(opts, NOPTS, name);
    if (!v) return CP_OK;
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= lo && x <= hi))
        return cp_fail(e, "--%s: expected a number in [%g, %g], got '%s'", name, lo, hi, v);
    *out = x;
    return CP_OK;
}

static int parse_args(InferArgs *a, CpErr *e) {
    *a = (InferArgs){.cellprob_thr = 0.0, .flow_thr = 0.4, .max_frac = 0.4, .overlap = 0.1, .min_size = 15,
                     .batch = 8, .niter = 0};
    a->out = cli_get(opts, NOPTS, "out");
    const char *ch = cli_get(opts, NOPTS, "channels");
    if (ch && sscanf(ch, "%d,%d", &a->channels[0], &a->channels[1]) != 2)
        return cp_fail(e, "--channels: expected two integers like 2,3, got '%s'", ch);
    if (parse_double("diameter", 0, 1e6, &a->diameter, e) || parse_double("cellprob-threshold", -1e3, 1e3, &a->cellprob_thr, e) ||
        parse_double("flow-threshold", 0, 1e6, &a->flow_thr, e) || parse_double("max-size-fraction", 0, 1, &a->max_frac, e) ||
        parse_double("tile-overlap", 0, 1, &a->overlap, e) ||
        cli_get_int(opts, NOPTS, "niter", 0, 100000, &a->niter, e) || cli_get_int(opts, NOPTS, "min-size", -1, 1L << 40, &a->min_size, e) ||
        cli_get_int(opts, NOPTS, "batch-size", 1, 1024, &a->batch, e) || cli_get_int(opts, NOPTS, "page", 0, 1000000, &a->page, e))
        return CP_EFAIL;
    return CP_OK;
}

typedef struct {
    CPnet *net;
    const CpCtx *ctx;
} Fwd;

/* tiles_run's network callback: CPnet eval forward on n tiles. */
static int forward_tiles(void *p, float *y, const float *x, int n, int by, int bx, CpErr *e) {
    Fwd *f = p;
    if (cpnet_plan(f->net, n, by, bx, 0, e) != CP_OK) return CP_EFAIL;
    const float *out = cpnet_forward(f->net, x, 0, f->ctx, e);
    if (!out) return CP_EFAIL;
    memcpy(y, out, sizeof(float) * (size_t)n * (size_t)f->net->cfg.nout * (size_t)by * (size_t)bx);
    return CP_OK;
}

static int load_model(CPnet *net, const char *path, CpErr *e) {
    StFile f;
    CPnetConfig c;
    if (st_read(&f, path, e) != CP_OK) return CP_EFAIL;
    int rc = cpnet_config_from_file(&c, &f, e);
    if (rc == CP_OK && c.nout != 3) rc = cp_fail(e, "%s: %d outputs; infer needs Cellpose's 3 (dY, dX, cellprob)", path, c.nout);
    if (rc == CP_OK) rc = cpnet_create(net, &c, cp_ops_cpu(), e);
    if (rc == CP_OK) rc = cpnet_load_from(net, &f, NULL, e);
    st_free(&f);
    return rc;
}

/* The normalized first channel as gray, mask boundaries (a labelled pixel
 * with a 4-neighbour of another label) in red. x: [H, W] in ~[0, 1]. */
static int write_outlines(const char *path, const float *x, const uint32_t *m, int64_t H, int64_t W, CpErr *e) {
    uint8_t *rgb = cp_malloc((size_t)(3 * H * W));
    for (int64_t y = 0; y < H; y++)
        for (int64_t c = 0; c < W; c++) {
            int64_t i = y * W + c;
            float v = x[i] < 0 ? 0 : x[i] > 1 ? 1 : x[i];
            uint8_t g = (uint8_t)(v * 255.0f + 0.5f);
            uint32_t l = m[i];
            int edge = l && ((y > 0 && m[i - W] != l) || (y + 1 < H && m[i + W] != l) || (c > 0 && m[i - 1] != l) ||
                             (c + 1 < W && m[i + 1] != l));
            rgb[3 * i] = edge ? 255 : g, rgb[3 * i + 1] = edge ? 0 : g, rgb[3 * i + 2] = edge ? 0 : g;
        }
    int rc = image_write_png(path, rgb, 3, H, W, e);
    cp_free(rgb);
    return rc;
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

static int infer_one(const char *model_path, const char *path, const InferArgs *a, const CpCtx *ctx, CpErr *e) {
    double t[8];
    t[0] = cp_time_sec();
    CPnet net = {0};
    Image img = {0};
    float *x = NULL, *xs = NULL, *y = NULL, *ys = NULL;
    uint32_t *masks = NULL, *scratch = NULL;
    int rc = load_model(&net, model_path, e);
    if (rc == CP_OK) rc = image_read(&img, path, (int)a->page, ctx->max_pixels, e);
    if (rc != CP_OK) goto done;
    int64_t H = img.h, W = img.w, Hs = H, Ws = W;
    x = cp_malloc(sizeof(float) * (size_t)(2 * H * W));
    scratch = cp_malloc(sizeof(uint32_t) * (size_t)tfm_normalize_scratch(H, W));
    rc = tfm_select_channels(x, &img, a->channels, path, e);
    if (rc == CP_OK) rc = tfm_normalize_img(x, 2, H, W, 1.0, 99.0, scratch, NULL, NULL, ctx, path, e);
    if (rc != CP_OK) goto done;
    t[1] = cp_time_sec();
    xs = x;
    /* Cellpose v3 eval: rescale = diam_mean / diameter (a Python float: double)
     * when --diameter is given, else diam_mean / diam_labels from the model
     * file (float32 / float32); niter defaults to 1 / rescale * 200 in the
     * same precision. */
    double rsz = 1.0;
    uint32_t niter_default = 200;
    if (a->diameter > 0) {
        rsz = net.cfg.diam_mean / a->diameter;
        niter_default = dyn_niter_default(a->diameter, net.cfg.diam_mean, 1);
    } else if (net.frozen[1] > 0) {
        float r = net.frozen[0] / net.frozen[1];
        rsz = r;
        niter_default = (uint32_t)((1.0f / r) * 200.0f);
    }
    if (rsz != 1.0) {
        Hs = tiles_rescaled_size(H, rsz), Ws = tiles_rescaled_size(W, rsz);
        if (Hs < 1 || Ws < 1 || Hs * Ws > ctx->max_pixels) {
            rc = cp_fail(e, "%s: diameter rescaling (x%g) gives a %lld x %lld image", path, rsz, (long long)Hs,
                         (long long)Ws);
            goto done;
        }
        xs = cp_malloc(sizeof(float) * (size_t)(2 * Hs * Ws));
        img_resize_bilinear(xs, Hs, Ws, x, H, W, 2, ctx);
    }
    ys = cp_malloc(sizeof(float) * (size_t)(3 * Hs * Ws));
    Fwd fwd = {&net, ctx};
    TileRunOpts to = {224, a->overlap, (int)a->batch, NULL};
    rc = tiles_run(ys, xs, 2, Hs, Ws, 3, &to, forward_tiles, &fwd, ctx, e);
    if (rc != CP_OK) goto done;
    y = ys;
    if (Hs != H || Ws != W) { /* back to the image's size */
        y = cp_malloc(sizeof(float) * (size_t)(3 * H * W));
        img_resize_bilinear(y, H, W, ys, Hs, Ws, 3, ctx);
    }
    t[2] = cp_time_sec();
    masks = cp_malloc(sizeof(uint32_t) * (size_t)(H * W));
    uint32_t niter = a->niter > 0 ? (uint32_t)a->niter : niter_default;
    rc = dyn_compute_masks(masks, y, y + 2 * H * W, H, W, (float)a->cellprob_thr, niter, a->max_frac, ctx, e);
    t[3] = cp_time_sec();
    if (rc == CP_OK && a->flow_thr > 0) rc = cln_flow_error_remove(masks, y, H, W, (float)a->flow_thr, ctx, e);
    if (rc == CP_OK) rc = cln_fill_holes_remove_small(masks, H, W, (int)a->min_size, e);
    if (rc != CP_OK) goto done;
    t[4] = cp_time_sec();
    uint32_t nmask = 0;
    for (int64_t i = 0; i < H * W; i++) nmask = masks[i] > nmask ? masks[i] : nmask;
    char mpath[4300], fpath[4300], hex[65];
    out_path(mpath, sizeof mpath, a->out, path, "_cp_masks.tif");
    out_path(fpath, sizeof fpath, a->out, path, "_flows.tif");
    rc = image_write_labels_tiff(mpath, masks, H, W, e);
    if (rc == CP_OK && cli_get(opts, NOPTS, "save-flows")) rc = image_write_f32_tiff(fpath, y, 3, H, W, e);
    if (rc == CP_OK && cli_get(opts, NOPTS, "save-outlines")) {
        char opath[4300];
        out_path(opath, sizeof opath, a->out, path, "_outlines.png");
        rc = write_outlines(opath, x, masks, H, W, e);
    }
    if (rc != CP_OK) goto done;
    sha256_hex(masks, sizeof(uint32_t) * (size_t)(H * W), hex);
    json_t *apj = json_null();
    const char *gt = cli_get(opts, NOPTS, "gt");
    if (gt) { /* Cellpose's average_precision against the given labels */
        Image g = {0};
        uint32_t *gl = NULL;
        double th[3] = {0.5, 0.75, 0.9}, ap[3];
        int64_t tp[3], fp[3], fn[3];
        rc = image_read(&g, gt, 0, ctx->max_pixels, e);
        if (rc == CP_OK && (g.h != H || g.w != W))
            rc = cp_fail(e, "%s: %lld x %lld labels for a %lld x %lld image", gt, (long long)g.h, (long long)g.w,
                         (long long)H, (long long)W);
        if (rc == CP_OK) gl = cp_malloc(sizeof(uint32_t) * (size_t)(H * W)), rc = image_to_labels(&g, gt, gl, e);
        if (rc == CP_OK) rc = met_average_precision(ap, tp, fp, fn, gl, masks, H, W, th, 3, e);
        if (rc == CP_OK) apj = json_pack("{s:f, s:f, s:f, s:I, s:I, s:I}", "ap50", ap[0], "ap75", ap[1], "ap90", ap[2],
                                         "tp50", (json_int_t)tp[0], "fp50", (json_int_t)fp[0], "fn50", (json_int_t)fn[0]);
        cp_free(gl);
        image_free(&g);
        if (rc != CP_OK) goto done;
    }
    t[5] = cp_time_sec();
    json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:i, s:s, s:i, s:f, s:o, s:{s:f, s:f, s:f, s:f, s:f, s:f}}", "image", path,
                          "masks_file", mpath, "height", (json_int_t)H, "width", (json_int_t)W, "masks", (int)nmask,
                          "masks_sha256", hex, "niter", (int)niter, "rescale", rsz, "ap", apj, "seconds", "read_normalize", t[1] - t[0], "network",
                          t[2] - t[1], "dynamics", t[3] - t[2], "cleanup", t[4] - t[3], "write", t[5] - t[4], "total",
                          t[5] - t[0]);
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(j);
done:
    if (xs != x) cp_free(xs);
    if (y != ys) cp_free(y);
    cp_free(x), cp_free(ys), cp_free(masks), cp_free(scratch);
    image_free(&img);
    if (net.tensors) cpnet_free(&net);
    return rc;
}

int main(int argc, char **argv) {
    const char *pos[2];
    int npos = 0;
    int rc = cli_main_head("infer", "infer MODEL IMAGE [options]",
                           "Segment an image with a trained CPnet model (model.bin); writes NAME_cp_masks.tif and "
                           "prints one JSON line (mask count, mask SHA-256, seconds per stage).",
                           opts, NOPTS, argc, argv, pos, &npos, 2, 2);
    if (rc >= 0) return rc;
    InferArgs a;
    CpErr e;
    long threads = 0;
    if (parse_args(&a, &e) != CP_OK || cli_get_int(opts, NOPTS, "threads", 0, 4096, &threads, &e) != CP_OK) {
        fprintf(stderr, "infer: %s\n", e.msg);
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
    if (infer_one(pos[0], pos[1], &a, &ctx, &e) != CP_OK) {
        fprintf(stderr, "infer: %s\n", e.msg);
        return 1;
    }
    return 0;
}
