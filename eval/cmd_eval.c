/* cmd_eval.c - the `eval` program: how good are masks, against ground truth?
 *
 *   eval --pred DIR --gt DIR            score predicted masks (Cellpose naming)
 *   eval --baseline METHOD|all --images DIR --gt DIR [--pred DIR]
 *                                       classical baselines (eval/baseline.h),
 *                                       scored the same way, plus the model
 *   eval --sweep --model M --images DIR --gt DIR --out DIR [--cellprob-threshold -1,0,1 ...]
 *                                       infer over a grid (eval/sweep.h)
 *
 * Naming: ground truth NAME_masks.{tif,tiff,png}; predictions
 * NAME_cp_masks.{tif,tiff,png}, or NAME_masks.* in a prediction folder
 * that is not the ground-truth folder when NAME has no _cp_masks file;
 * images NAME.{tif,tiff,png,jpg,jpeg,bmp} (not *_masks, *_flows, *_outlines).
 * Images present on one side only are named; that is an error unless
 * --allow-missing. Scores and means: eval/report.h. Output: a Markdown table
 * on stdout (--json: JSON instead), a CSV (--csv FILE, or OUT/eval.csv with
 * --out), baseline masks in OUT/METHOD/NAME_cp_masks.tif, sweep results in
 * OUT/sweep.csv, OUT/sweep_agreement.{csv,png} (rows: the reference setting,
 * columns: the scored setting; the PNG's colour range is [min rounded down
 * to 0.1, 1]) and each setting's masks in OUT/sweep_runs/sNN/ (sNN = the
 * setting's row in the table). Setting p runs `infer MODEL IMAGE --out
 * OUT/sweep_runs/sNN --AXIS VALUE ...` (plus --diameter, --channels,
 * --threads when given), one process per image, in table order.
 * Any error: one line on stderr, exit 1 (2 for usage), and every file this
 * run wrote is removed again (all outputs are written atomically). */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "baseline.h"
#include "cli.h"
#include "image.h"
#include "plot.h"
#include "progress.h"
#include "report.h"
#include "sweep.h"

static CliOpt opts[] = {
    {"pred", "DIR", "predicted masks (NAME_cp_masks.tif)", NULL},
    {"gt", "DIR", "ground-truth masks (NAME_masks.tif or .png)", NULL},
    {"images", "DIR", "images (NAME.tif), for --baseline and --sweep", NULL},
    {"baseline", "NAME", "binary | otsu | gaussian-otsu | adaptive | all", NULL},
    {"channels", "C1,C2", "channel selection as infer (default 0,0: grayscale)", NULL},
    {"threshold", "T", "binary: foreground = normalized image > T (0.5)", NULL},
    {"sigma", "S", "gaussian-otsu: Gaussian sigma in pixels (2)", NULL},
    {"block-size", "N", "adaptive: odd local-mean window in pixels (51)", NULL},
    {"offset", "T", "adaptive: foreground = image > local mean + T (0.05)", NULL},
    {"connectivity", "N", "baselines: 4 or 8 (8)", NULL},
    {"min-size", "N", "baselines: drop masks under N pixels, as Cellpose (15)", NULL},
    {"sweep", NULL, "run infer over a parameter grid (needs --model, --images, --gt, --out)", NULL},
    {"model", "FILE", "model.bin, for --sweep", NULL},
    {"cellprob-threshold", "LIST", "sweep axis, e.g. -1,0,1", NULL},
    {"flow-threshold", "LIST", "sweep axis, e.g. 0.4,0.6", NULL},
    {"tile-overlap", "LIST", "sweep axis, e.g. 0.1,0.3", NULL},
    {"niter", "LIST", "sweep axis, e.g. 100,200", NULL},
    {"bsize", "LIST", "sweep axis (tile size), e.g. 224,256", NULL},
    {"diameter", "D", "sweep: passed to every infer run", NULL},
    {"threads", "N", "sweep: passed to every infer run", NULL},
    {"allow-missing", NULL, "score the images present on both sides; name the others", NULL},
    {"csv", "FILE", "write the table as CSV", NULL},
    {"json", NULL, "machine-readable output (JSON on stdout instead of Markdown)", NULL},
    {"out", "DIR", "where the CSV, baseline masks and sweep results go", NULL},
};
#define NOPTS ((int)(sizeof opts / sizeof opts[0]))
#define GET(name) cli_get(opts, NOPTS, name)

/* ---- files: name matching ---- */

typedef struct {
    char name[256];   /* NAME */
    char path[4096];
} Entry;

typedef struct {
    Entry *v;
    int n, cap;
} List;

enum { K_GT, K_PRED_CP, K_PRED_MASKS, K_IMAGE };

static void list_free(List *l) { cp_free(l->v), memset(l, 0, sizeof *l); }

static const char *EXT_MASK[] = {".tif", ".tiff", ".png", NULL};
static const char *EXT_IMG[] = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", NULL};
static const char *NOT_IMG[] = {"_masks", "_flows", "_outlines", "_seg", NULL};

/* If fname is STEM + ext (ext from exts, case-insensitive), the length of STEM. */
static int stem_len(const char *fname, const char **exts) {
    size_t n = strlen(fname);
    for (int i = 0; exts[i]; i++)
        if (n > strlen(exts[i]) && cp_ends_with_ci(fname, exts[i])) return (int)(n - strlen(exts[i]));
    return -1;
}

/* The NAME of fname for kind k, or 0 when the file is not of that kind. */
static int entry_name(char *name, size_t cap, const char *fname, int k) {
    int s = stem_len(fname, k == K_IMAGE ? EXT_IMG : EXT_MASK);
    if (s <= 0 || (size_t)s >= cap) return 0;
    memcpy(name, fname, (size_t)s);
    name[s] = 0;
    if (k == K_IMAGE) {
        for (int i = 0; NOT_IMG[i]; i++)
            if (cp_ends_with_ci(name, NOT_IMG[i])) return 0;
        return 1;
    }
    const char *suf = k == K_PRED_CP ? "_cp_masks" : "_masks";
    size_t ls = strlen(suf);
    if ((size_t)s <= ls || strcmp(name + s - ls, suf) != 0) return 0;
    if (k != K_PRED_CP && s >= 9 && strcmp(name + s - 9, "_cp_masks") == 0) return 0; /* not a gt file */
    name[s - ls] = 0;
    return name[0] != 0;
}

static int cmp_entry(const void *a, const void *b) { return strcmp(((const Entry *)a)->name, ((const Entry *)b)->name); }

/* The files of kind k in dir, sorted by NAME; two files for one NAME fail. */
static int list_dir(List *l, const char *dir, int k, CpErr *e) {
    memset(l, 0, sizeof *l);
    DIR *d = opendir(dir);
    if (!d) return cp_fail(e, "%s: cannot open folder (%s)", dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char name[256];
        if (de->d_name[0] == '.' || !entry_name(name, sizeof name, de->d_name, k)) continue;
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 64;
            Entry *nv = cp_malloc(sizeof(Entry) * (size_t)l->cap);
            if (l->n) memcpy(nv, l->v, sizeof(Entry) * (size_t)l->n);
            cp_free(l->v);
            l->v = nv;
        }
        Entry *en = &l->v[l->n++];
        snprintf(en->name, sizeof en->name, "%s", name);
        snprintf(en->path, sizeof en->path, "%s/%s", dir, de->d_name);
    }
    closedir(d);
    if (l->n) qsort(l->v, (size_t)l->n, sizeof(Entry), cmp_entry);
    for (int i = 1; i < l->n; i++)
        if (strcmp(l->v[i].name, l->v[i - 1].name) == 0) {
            CpErr tmp;
            snprintf(tmp.msg, sizeof tmp.msg, "%.400s and %.400s", l->v[i - 1].path, l->v[i].path);
            list_free(l);
            return cp_fail(e, "%s: two files for one image (%s); keep one", dir, tmp.msg);
        }
    return CP_OK;
}

static const Entry *list_find(const List *l, const char *name) {
    Entry key;
    snprintf(key.name, sizeof key.name, "%s", name);
    return l->n ? bsearch(&key, l->v, (size_t)l->n, sizeof(Entry), cmp_entry) : NULL;
}

static int same_dir(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Predictions: NAME_cp_masks first, NAME_masks where NAME has none (and the
 * folder is not the ground-truth folder). */
static int list_pred(List *l, const char *dir, const char *gt_dir, CpErr *e) {
    List cp, m = {0};
    if (list_dir(&cp, dir, K_PRED_CP, e)) return CP_EFAIL;
    if (!same_dir(dir, gt_dir) && list_dir(&m, dir, K_PRED_MASKS, e)) return list_free(&cp), CP_EFAIL;
    for (int i = 0; i < m.n; i++)
        if (!list_find(&cp, m.v[i].name)) {
            if (cp.n == cp.cap) {
                cp.cap = cp.cap ? 2 * cp.cap : 64;
                Entry *nv = cp_malloc(sizeof(Entry) * (size_t)cp.cap);
                if (cp.n) memcpy(nv, cp.v, sizeof(Entry) * (size_t)cp.n);
                cp_free(cp.v);
                cp.v = nv;
            }
            cp.v[cp.n++] = m.v[i];
        }
    list_free(&m);
    if (cp.n) qsort(cp.v, (size_t)cp.n, sizeof(Entry), cmp_entry);
    *l = cp;
    return CP_OK;
}

/* Append up to 4 names of `a` missing from `b` to buf; returns the count. */
static int missing_names(char *buf, size_t cap, const List *a, const List *b) {
    int n = 0;
    for (int i = 0; i < a->n; i++)
        if (!list_find(b, a->v[i].name)) {
            size_t u = strlen(buf);
            if (n < 4) snprintf(buf + u, cap - u, "%s%s", n ? ", " : "", a->v[i].name);
            else if (n == 4) snprintf(buf + u, cap - u, ", ...");
            n++;
        }
    return n;
}

/* The names scored: gt names present in every other list. Missing names are
 * an error unless allow; then they are listed on stderr. names: gt indices. */
static int match_lists(int **idx, int *nidx, const List *gt, const List *const *others, const char *const *what,
                       int nothers, int allow, CpErr *e) {
    char msg[900] = "";
    int bad = 0;
    for (int o = 0; o < nothers; o++) {
        char a[400] = "", b[400] = "";
        int na = missing_names(a, sizeof a, gt, others[o]), nb = missing_names(b, sizeof b, others[o], gt);
        size_t u = strlen(msg);
        if (na) snprintf(msg + u, sizeof msg - u, "%sno %s for %d ground-truth image(s) (%s)", bad ? "; " : "", what[o], na, a), bad++;
        u = strlen(msg);
        if (nb) snprintf(msg + u, sizeof msg - u, "%sno ground truth for %d %s (%s)", bad ? "; " : "", nb, what[o], b), bad++;
    }
    *idx = cp_malloc(sizeof(int) * (size_t)(gt->n + 1));
    *nidx = 0;
    for (int i = 0; i < gt->n; i++) {
        int ok = 1;
        for (int o = 0; o < nothers; o++) ok = ok && list_find(others[o], gt->v[i].name);
        if (ok) (*idx)[(*nidx)++] = i;
    }
    if (*nidx == 0 || (bad && !allow)) {
        cp_free(*idx);
        *idx = NULL;
        if (*nidx == 0)
            return cp_fail(e, "no image has both ground truth (NAME_masks.tif) and %s (%s)", what[0],
                           strcmp(what[0], "image") == 0 ? "NAME.tif" : "NAME_cp_masks.tif");
        return cp_fail(e, "%s; use --allow-missing to score the rest", msg);
    }
    if (bad) fprintf(stderr, "eval: warning: %s; scoring the rest\n", msg);
    return CP_OK;
}

/* Labels of one file into *out (cp_malloc'ed), with its size; when H, W > 0
 * on entry the size must match (ref names the other file). */
static int read_labels(uint32_t **out, int64_t *H, int64_t *W, const char *path, const char *ref, CpErr *e) {
    Image img;
    *out = NULL;
    if (image_read(&img, path, 0, CP_DEFAULT_MAX_PIXELS, e)) return CP_EFAIL;
    int rc = CP_OK;
    if (*H > 0 && (img.h != *H || img.w != *W))
        rc = cp_fail(e, "%s: %lld x %lld masks, but %s is %lld x %lld", path, (long long)img.h, (long long)img.w,
                     ref, (long long)*H, (long long)*W);
    if (rc == CP_OK) {
        *out = cp_malloc(sizeof(uint32_t) * (size_t)(img.h * img.w));
        rc = image_to_labels(&img, path, *out, e);
        if (rc) cp_free(*out), *out = NULL;
        *H = img.h, *W = img.w;
    }
    image_free(&img);
    return rc;
}

/* ---- outputs: everything written is removed again on failure ---- */

typedef struct {
    char (*v)[4096];
    int n, cap;
} PathList;

typedef struct {
    PathList files, dirs; /* written files; folders created (removed when empty) */
} Outputs;

static void paths_add(PathList *l, const char *path) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        char(*nv)[4096] = cp_malloc(sizeof *nv * (size_t)l->cap);
        if (l->n) memcpy(nv, l->v, sizeof *nv * (size_t)l->n);
        cp_free(l->v);
        l->v = nv;
    }
    snprintf(l->v[l->n++], 4096, "%s", path);
}

static void out_add(Outputs *o, const char *path) { paths_add(&o->files, path); }

static int out_mkdir(Outputs *o, const char *dir, CpErr *e) {
    struct stat st;
    if (stat(dir, &st) == 0) return S_ISDIR(st.st_mode) ? CP_OK : cp_fail(e, "%s: exists and is not a folder", dir);
    if (mkdir(dir, 0777) != 0) return cp_fail(e, "%s: cannot create folder (%s)", dir, strerror(errno));
    paths_add(&o->dirs, dir);
    return CP_OK;
}

/* On failure: remove what this run wrote, newest first. */
static void out_rollback(Outputs *o) {
    for (int i = o->files.n - 1; i >= 0; i--) unlink(o->files.v[i]);
    for (int i = o->dirs.n - 1; i >= 0; i--) rmdir(o->dirs.v[i]);
}

/* ---- the report (stdout + CSV) ---- */

/* extra (may be NULL, reference stolen): more keys for the JSON object. */
static int finish(const EvRun *runs, int nruns, Outputs *o, const char *default_csv, json_t *extra, CpErr *e) {
    const char *csv = GET("csv"), *out = GET("out");
    char path[4200];
    if (!csv && out) snprintf(path, sizeof path, "%s/%s", out, default_csv), csv = path;
    if (csv) {
        if (ev_write_csv(csv, runs, nruns, e)) return json_decref(extra), CP_EFAIL;
        out_add(o, csv);
    }
    if (GET("json")) {
        json_t *j = ev_json(runs, nruns);
        if (extra) json_object_update(j, extra);
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(j);
    } else {
        ev_print_markdown(stdout, runs, nruns);
    }
    json_decref(extra);
    return CP_OK;
}

static void runs_free(EvRun *runs, int n) {
    for (int r = 0; r < n; r++) cp_free(runs[r].img);
}

/* ev_score, its error naming the ground-truth file rather than the image. */
static int score_named(EvScore *s, const Entry *g, const uint32_t *gl, const uint32_t *pl, int64_t H, int64_t W,
                       CpErr *e) {
    if (ev_score(s, g->name, gl, pl, H, W, e) == CP_OK) return CP_OK;
    CpErr inner = *e;
    return cp_fail(e, "%s%s", g->path, inner.msg + strlen(g->name));
}

/* ---- mode 1: --pred --gt ---- */

/* Score pred files against gt files for the matched names. run->img filled. */
static int score_pred(EvRun *run, const List *gt, const List *pred, const int *idx, int n, CpErr *e) {
    run->img = cp_calloc((size_t)n, sizeof(EvScore));
    run->nimg = n;
    for (int i = 0; i < n; i++) {
        const Entry *g = &gt->v[idx[i]], *p = list_find(pred, g->name);
        uint32_t *gl = NULL, *pl = NULL;
        int64_t H = 0, W = 0;
        int rc = read_labels(&gl, &H, &W, g->path, "", e);
        if (rc == CP_OK) rc = read_labels(&pl, &H, &W, p->path, g->path, e);
        if (rc == CP_OK) rc = score_named(&run->img[i], g, gl, pl, H, W, e);
        cp_free(gl), cp_free(pl);
        if (rc) return CP_EFAIL;
    }
    ev_mean(&run->mean, run->img, n);
    return CP_OK;
}

static int mode_pred(Outputs *o, CpErr *e) {
    const char *gdir = GET("gt"), *pdir = GET("pred");
    List gt, pred;
    if (list_dir(&gt, gdir, K_GT, e)) return CP_EFAIL;
    if (list_pred(&pred, pdir, gdir, e)) return list_free(&gt), CP_EFAIL;
    int *idx = NULL, n = 0;
    const List *others[1] = {&pred};
    const char *what[1] = {"prediction"};
    EvRun run;
    memset(&run, 0, sizeof run);
    run.label = "pred";
    int rc = match_lists(&idx, &n, &gt, others, what, 1, GET("allow-missing") != NULL, e);
    if (rc == CP_OK) rc = score_pred(&run, &gt, &pred, idx, n, e);
    if (rc == CP_OK) rc = finish(&run, 1, o, "eval.csv", NULL, e);
    runs_free(&run, 1);
    cp_free(idx);
    list_free(&gt), list_free(&pred);
    return rc;
}

/* ---- mode 2: --baseline ---- */

static int parse_num(const char *name, double lo, double hi, double *out, CpErr *e) {
    return cli_get_double(opts, NOPTS, name, lo, hi, out, e);
}

static int parse_channels(int ch[2], CpErr *e) {
    const char *c = GET("channels");
    ch[0] = ch[1] = 0;
    if (c && sscanf(c, "%d,%d", &ch[0], &ch[1]) != 2)
        return cp_fail(e, "--channels: expected two integers like 2,3, got '%s'", c);
    return CP_OK;
}

static int parse_baseline(BlParams *p, BlMethod *m, int *nm, CpErr *e) {
    bl_params_default(p);
    long bs = p->block, conn = p->connectivity, ms = p->min_size;
    if (parse_num("threshold", -1e6, 1e6, &p->threshold, e) || parse_num("sigma", 1e-3, 100, &p->sigma, e) ||
        parse_num("offset", -1e6, 1e6, &p->offset, e) || cli_get_int(opts, NOPTS, "block-size", 1, 100001, &bs, e) ||
        cli_get_int(opts, NOPTS, "connectivity", 4, 8, &conn, e) ||
        cli_get_int(opts, NOPTS, "min-size", -1, INT_MAX, &ms, e))
        return CP_EFAIL;
    if (bs % 2 == 0) return cp_fail(e, "--block-size: expected an odd number, got %ld", bs);
    if (conn != 4 && conn != 8) return cp_fail(e, "--connectivity: expected 4 or 8, got %ld", conn);
    p->block = (int)bs, p->connectivity = (int)conn, p->min_size = (int)ms;
    const char *b = GET("baseline");
    if (strcmp(b, "all") == 0) {
        for (int i = 0; i < BL_NMETHODS; i++) m[i] = (BlMethod)i;
        *nm = BL_NMETHODS;
        return CP_OK;
    }
    *nm = 1;
    return bl_method_parse(b, &m[0], e);
}

/* One image through every method: read, prepare, segment, score, write. */
static int baseline_image(EvRun *runs, int i, const BlMethod *m, int nm, const BlParams *p, const int ch[2],
                          const Entry *im, const Entry *g, Outputs *o, const CpCtx *ctx, CpErr *e) {
    Image img;
    if (image_read(&img, im->path, 0, ctx->max_pixels, e)) return CP_EFAIL;
    int64_t H = img.h, W = img.w;
    float *x = cp_malloc(sizeof(float) * (size_t)(H * W));
    uint32_t *gl = NULL, *masks = cp_malloc(sizeof(uint32_t) * (size_t)(H * W));
    int rc = bl_prepare(x, &img, ch, ctx, im->path, e);
    image_free(&img);
    if (rc == CP_OK) rc = read_labels(&gl, &H, &W, g->path, im->path, e);
    const char *out = GET("out");
    for (int k = 0; rc == CP_OK && k < nm; k++) {
        rc = bl_segment(masks, x, H, W, m[k], p, e);
        if (rc == CP_OK) rc = score_named(&runs[k].img[i], g, gl, masks, H, W, e);
        if (rc == CP_OK && out) {
            char dir[4200], path[4500];
            snprintf(dir, sizeof dir, "%s/%s", out, bl_method_name(m[k]));
            rc = out_mkdir(o, dir, e);
            snprintf(path, sizeof path, "%s/%s_cp_masks.tif", dir, im->name);
            if (rc == CP_OK) rc = image_write_labels_tiff(path, masks, H, W, e);
            if (rc == CP_OK) out_add(o, path);
        }
    }
    cp_free(x), cp_free(gl), cp_free(masks);
    return rc;
}

static int mode_baseline(Outputs *o, CpErr *e) {
    BlParams p;
    BlMethod m[BL_NMETHODS];
    int nm = 0, ch[2];
    if (parse_baseline(&p, m, &nm, e) || parse_channels(ch, e)) return CP_EFAIL;
    const char *gdir = GET("gt"), *idir = GET("images"), *pdir = GET("pred"), *out = GET("out");
    if (!idir) return cp_fail(e, "--baseline needs --images DIR (and --gt DIR)");
    if (out && out_mkdir(o, out, e)) return CP_EFAIL;
    List gt, im, pred = {0};
    if (list_dir(&gt, gdir, K_GT, e)) return CP_EFAIL;
    if (list_dir(&im, idir, K_IMAGE, e)) return list_free(&gt), CP_EFAIL;
    if (pdir && list_pred(&pred, pdir, gdir, e)) return list_free(&gt), list_free(&im), CP_EFAIL;
    const List *others[2] = {&im, &pred};
    const char *what[2] = {"image", "prediction"};
    int *idx = NULL, n = 0, nruns = nm + (pdir != NULL);
    EvRun runs[BL_NMETHODS + 1];
    memset(runs, 0, sizeof runs);
    int rc = match_lists(&idx, &n, &gt, others, what, pdir ? 2 : 1, GET("allow-missing") != NULL, e);
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 1, 0);
    for (int k = 0; k < nm; k++) runs[k].label = bl_method_name(m[k]), runs[k].nimg = n;
    for (int k = 0; rc == CP_OK && k < nm; k++) runs[k].img = cp_calloc((size_t)n, sizeof(EvScore));
    CpProgress pg;
    progress_init(&pg, "baseline", "img", n);
    for (int i = 0; rc == CP_OK && i < n; i++) {
        const Entry *g = &gt.v[idx[i]];
        rc = baseline_image(runs, i, m, nm, &p, ch, list_find(&im, g->name), g, o, &ctx, e);
        progress_update(&pg, i + 1, g->name);
    }
    if (rc == CP_OK) progress_end(&pg, n, NULL);
    for (int k = 0; rc == CP_OK && k < nm; k++) ev_mean(&runs[k].mean, runs[k].img, n);
    if (rc == CP_OK && pdir) runs[nm].label = "model", rc = score_pred(&runs[nm], &gt, &pred, idx, n, e);
    if (rc == CP_OK) rc = finish(runs, nruns, o, "eval.csv", NULL, e);
    runs_free(runs, nruns);
    cp_ctx_free(&ctx);
    cp_free(idx);
    list_free(&gt), list_free(&im), list_free(&pred);
    return rc;
}

/* ---- mode 3: --sweep ---- */

typedef struct {
    SwGrid grid;
    char infer[4096];
    const char *model, *out;
    int64_t np;
} Sweep;

static int sweep_setup(Sweep *s, CpErr *e) {
    static const struct {
        const char *flag, *key;
        int integer;
    } AX[] = {{"cellprob-threshold", "cp", 0}, {"flow-threshold", "ft", 0}, {"tile-overlap", "ov", 0},
              {"niter", "ni", 1}, {"bsize", "bs", 1}};
    memset(s, 0, sizeof *s);
    s->model = GET("model"), s->out = GET("out");
    if (!s->model || !GET("images") || !s->out)
        return cp_fail(e, "--sweep needs --model FILE, --images DIR, --gt DIR and --out DIR");
    if (sw_find_infer(s->infer, sizeof s->infer, e)) return CP_EFAIL;
    for (size_t a = 0; a < sizeof AX / sizeof AX[0]; a++) {
        const char *v = GET(AX[a].flag);
        if (!v) continue;
        if (sw_grid_add(&s->grid, AX[a].flag, AX[a].key, v, AX[a].integer, e)) return CP_EFAIL;
        if (sw_infer_has_flag(s->infer, AX[a].flag) != 1)
            return cp_fail(e, "--%s: %s has no --%s option (yet); leave this axis out", AX[a].flag, s->infer, AX[a].flag);
    }
    s->np = sw_npoints(&s->grid);
    if (s->np > 1000) return cp_fail(e, "--sweep: %lld settings; at most 1000", (long long)s->np);
    return CP_OK;
}

/* infer MODEL IMAGE --out DIR [axis values] [--diameter --channels --threads] */
static int sweep_run_one(const Sweep *s, int64_t p, const char *image, const char *dir, Outputs *o, CpErr *e) {
    char *argv[40], vals[SW_MAXAXES][48];
    int a = 0;
    argv[a++] = (char *)s->infer, argv[a++] = (char *)s->model, argv[a++] = (char *)image;
    argv[a++] = "--out", argv[a++] = (char *)dir;
    for (int k = 0; k < s->grid.naxes; k++) {
        snprintf(vals[k], sizeof vals[k], "--%s", s->grid.axes[k].flag);
        argv[a++] = vals[k], argv[a++] = (char *)sw_value(&s->grid, p, k);
    }
    static const char *PASS[] = {"diameter", "channels", "threads"};
    char pass[3][24];
    for (int k = 0; k < 3; k++)
        if (GET(PASS[k])) snprintf(pass[k], sizeof pass[k], "--%s", PASS[k]), argv[a++] = pass[k], argv[a++] = (char *)GET(PASS[k]);
    argv[a] = NULL;
    char *stdout_text;
    if (sw_run_capture(&stdout_text, argv, e)) return CP_EFAIL;
    json_error_t je;
    json_t *j = json_loads(stdout_text, JSON_DISABLE_EOF_CHECK, &je);
    const char *mf = j ? json_string_value(json_object_get(j, "masks_file")) : NULL;
    int rc = mf ? CP_OK : cp_fail(e, "%s: no JSON line with masks_file on stdout for %s", s->infer, image);
    if (mf) out_add(o, mf);
    json_decref(j);
    cp_free(stdout_text);
    return rc;
}

/* Per image: read gt and every setting's masks; score; agreement. */
static int sweep_score(const Sweep *s, EvRun *runs, double *agree, const List *gt, const List *im, const int *idx,
                       int n, CpErr *e) {
    int np = (int)s->np, rc = CP_OK;
    double *A = cp_malloc(sizeof(double) * (size_t)np * (size_t)np);
    uint32_t **masks = cp_calloc((size_t)np, sizeof(uint32_t *));
    for (int i = 0; rc == CP_OK && i < n; i++) {
        const Entry *g = &gt->v[idx[i]], *img = list_find(im, g->name);
        uint32_t *gl = NULL;
        int64_t H = 0, W = 0;
        rc = read_labels(&gl, &H, &W, g->path, "", e);
        for (int p = 0; rc == CP_OK && p < np; p++) {
            char path[4500];
            snprintf(path, sizeof path, "%s/sweep_runs/s%02d/%s_cp_masks.tif", s->out, p, img->name);
            rc = read_labels(&masks[p], &H, &W, path, g->path, e);
            if (rc == CP_OK) rc = score_named(&runs[p].img[i], g, gl, masks[p], H, W, e);
        }
        if (rc == CP_OK) rc = sw_agreement(A, (const uint32_t *const *)masks, np, H, W, e);
        for (int k = 0; rc == CP_OK && k < np * np; k++) agree[k] += A[k]; /* in image order */
        for (int p = 0; p < np; p++) cp_free(masks[p]), masks[p] = NULL;
        cp_free(gl);
    }
    for (int k = 0; k < np * np; k++) agree[k] /= n;
    for (int p = 0; rc == CP_OK && p < np; p++) ev_mean(&runs[p].mean, runs[p].img, n);
    cp_free(A), cp_free(masks);
    return rc;
}

static int write_agreement(const Sweep *s, const double *agree, char labels[][128], Outputs *o, CpErr *e) {
    int np = (int)s->np;
    char path[4200];
    snprintf(path, sizeof path, "%s/sweep_agreement.csv", s->out);
    CpAtomicFile af;
    if (cp_atomic_open(&af, path, e)) return CP_EFAIL;
    fprintf(af.f, "reference\\masks");
    for (int j = 0; j < np; j++) fprintf(af.f, ",%s", labels[j]);
    fprintf(af.f, "\n");
    for (int i = 0; i < np; i++) {
        fprintf(af.f, "%s", labels[i]);
        for (int j = 0; j < np; j++) fprintf(af.f, ",%.9g", agree[i * np + j]);
        fprintf(af.f, "\n");
    }
    if (cp_atomic_commit(&af, e)) return CP_EFAIL;
    out_add(o, path);
    const char **lab = cp_malloc(sizeof(char *) * (size_t)np);
    for (int i = 0; i < np; i++) lab[i] = labels[i];
    /* colour range [lo, 1], lo = the smallest value rounded down to 0.1: close settings stay distinguishable */
    double lo = 1;
    for (int k = 0; k < np * np; k++) lo = agree[k] < lo ? agree[k] : lo;
    lo = (double)(int)(lo * 10.0) / 10.0;
    HeatSpec hs = {.title = "Agreement between sweep settings (mean AP@0.5 over images)",
                   .xlabel = "masks of setting", .ylabel = "reference setting", .value_label = "AP@0.5",
                   .annotate = np <= 16, .vmin = lo < 1 ? lo : 0.9, .vmax = 1};
    snprintf(path, sizeof path, "%s/sweep_agreement.png", s->out);
    int rc = plot_heatmap_png(path, &hs, agree, np, np, lab, lab, e);
    if (rc == CP_OK) out_add(o, path);
    cp_free(lab);
    return rc;
}

static int mode_sweep(Outputs *o, CpErr *e) {
    Sweep s;
    if (sweep_setup(&s, e)) return CP_EFAIL;
    const char *gdir = GET("gt"), *idir = GET("images");
    List gt, im;
    if (list_dir(&gt, gdir, K_GT, e)) return CP_EFAIL;
    if (list_dir(&im, idir, K_IMAGE, e)) return list_free(&gt), CP_EFAIL;
    const List *others[1] = {&im};
    const char *what[1] = {"image"};
    int *idx = NULL, n = 0, np = (int)s.np;
    char(*labels)[128] = cp_malloc(sizeof *labels * (size_t)np);
    EvRun *runs = cp_calloc((size_t)np, sizeof(EvRun));
    double *agree = cp_calloc((size_t)np * (size_t)np, sizeof(double));
    char dir[4300];
    int rc = match_lists(&idx, &n, &gt, others, what, 1, GET("allow-missing") != NULL, e);
    snprintf(dir, sizeof dir, "%s/sweep_runs", s.out);
    if (rc == CP_OK) rc = out_mkdir(o, s.out, e);
    if (rc == CP_OK) rc = out_mkdir(o, dir, e);
    CpProgress pg;
    progress_init(&pg, "sweep", "run", (int64_t)np * n);
    for (int p = 0; rc == CP_OK && p < np; p++) {
        sw_label(&s.grid, p, labels[p], sizeof labels[p]);
        runs[p].label = labels[p], runs[p].nimg = n, runs[p].img = cp_calloc((size_t)n, sizeof(EvScore));
        snprintf(dir, sizeof dir, "%s/sweep_runs/s%02d", s.out, p);
        rc = out_mkdir(o, dir, e);
        for (int i = 0; rc == CP_OK && i < n; i++) {
            rc = sweep_run_one(&s, p, list_find(&im, gt.v[idx[i]].name)->path, dir, o, e);
            progress_update(&pg, (int64_t)p * n + i + 1, labels[p]);
        }
    }
    if (rc == CP_OK) progress_end(&pg, (int64_t)np * n, NULL);
    if (rc == CP_OK) rc = sweep_score(&s, runs, agree, &gt, &im, idx, n, e);
    if (rc == CP_OK) rc = write_agreement(&s, agree, labels, o, e);
    if (rc == CP_OK) { /* JSON: the agreement matrix and where each setting's masks are */
        json_t *A = json_array(), *dirs = json_array();
        for (int i = 0; i < np; i++) {
            json_t *row = json_array();
            for (int j = 0; j < np; j++) json_array_append_new(row, json_real(agree[i * np + j]));
            json_array_append_new(A, row);
            snprintf(dir, sizeof dir, "%s/sweep_runs/s%02d", s.out, i);
            json_array_append_new(dirs, json_string(dir));
        }
        rc = finish(runs, np, o, "sweep.csv", json_pack("{s:o, s:o}", "agreement_ap50", A, "masks_dirs", dirs), e);
    }
    runs_free(runs, np);
    cp_free(runs), cp_free(agree), cp_free(labels), cp_free(idx);
    list_free(&gt), list_free(&im);
    return rc;
}

int main(int argc, char **argv) {
    const char *pos[1];
    int npos = 0;
    int rc = cli_main_head("eval",
                           "eval --pred DIR --gt DIR | eval --baseline METHOD|all --images DIR --gt DIR [--pred DIR] | "
                           "eval --sweep --model M --images DIR --gt DIR --out DIR [--cellprob-threshold LIST ...]",
                           "Score masks against ground truth with Cellpose's metrics (AP at IoU 0.5/0.75/0.9 and "
                           "0.5:0.05:0.95, matched IoU, precision, recall, F1, aggregated Jaccard): predictions, "
                           "classical baselines, or an infer parameter sweep.",
                           opts, NOPTS, argc, argv, pos, &npos, 0, 0);
    if (rc >= 0) return rc;
    CpErr e;
    int modes = (GET("sweep") != NULL) + (GET("baseline") != NULL) + (GET("pred") && !GET("baseline"));
    if (modes != 1 || !GET("gt")) {
        fprintf(stderr, "eval: give --gt DIR and one of --pred DIR, --baseline METHOD or --sweep (see --help)\n");
        return 2;
    }
    const char *dirs[3] = {GET("gt"), GET("pred"), GET("images")};
    for (int i = 0; i < 3; i++) {
        struct stat st;
        if (dirs[i] && (stat(dirs[i], &st) != 0 || !S_ISDIR(st.st_mode))) {
            fprintf(stderr, "eval: %s: not an existing folder\n", dirs[i]);
            return 1;
        }
    }
    Outputs o = {0};
    rc = GET("sweep") ? mode_sweep(&o, &e) : GET("baseline") ? mode_baseline(&o, &e) : mode_pred(&o, &e);
    if (rc != CP_OK) {
        out_rollback(&o);
        fprintf(stderr, "eval: %s\n", e.msg);
    }
    cp_free(o.files.v), cp_free(o.dirs.v);
    return rc == CP_OK ? 0 : 1;
}
