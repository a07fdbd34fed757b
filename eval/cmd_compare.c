/* cmd_compare.c - the `compare` program: how far two (or more) models, two
 * mask images (or folders of them) or two train runs are apart.
 *
 *   compare a.bin b.bin [c.bin ...]   models (safetensors: model.bin, checkpoint.bin)
 *   compare A_cp_masks.tif B_cp_masks.tif | dirA dirB   label images, A = reference
 *   compare run_a/ run_b/              train run folders (manifest.json [, trace.jsonl])
 *
 * The kind of each input is found from its content (eval/compare.h
 * cmp_kind); all inputs must be of one kind. Figures are defined in
 * eval/compare.h and eval/compare_runs.h. Output: a table on stdout (models:
 * only differing tensors unless --all), or one JSON document with --json.
 * With --out DIR: models -> similarity matrices (CSV + PNG heatmaps), a
 * statistics CSV and per-layer weight histograms per model; masks -> a diff
 * PNG per pair (legend CMP_LEGEND); runs -> loss_overlay.png. Inputs are
 * never written. Exit status as cmp: 0 identical, 1 different, 2 error (one
 * line on stderr). Models and runs write --out only after every input was
 * read; mask folders write each pair's PNG as the pair is compared. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "compare.h"
#include "compare_runs.h"
#include "image.h"
#include "manifest.h"
#include "plot.h"

#define MAX_IN 64

typedef struct {
    int json, all;
    const char *out;
} Opts;

/* ---- small helpers ---- */

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }
static json_t *jcount(uint64_t x) { return x <= (uint64_t)INT64_MAX ? json_integer((json_int_t)x) : json_real((double)x); }

static int make_out(const char *dir, CpErr *e) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return cp_fail(e, "%s: cannot create: %s", dir, strerror(errno));
    return CP_OK;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static json_t *stats_json(const CmpStats *s) {
    return json_pack("{s:b, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "identical", s->identical, "numel",
                     (json_int_t)s->numel, "ndiff", (json_int_t)s->ndiff, "nonfinite", (json_int_t)s->nonfinite,
                     "l2_diff", jnum(s->l2_diff), "rel_l2", jnum(s->rel_l2), "cosine", jnum(s->cosine), "max_abs",
                     jnum(s->max_abs), "max_ulp", jcount(s->max_ulp), "l2_a", jnum(s->l2_a));
}

static void stats_row(const char *name, const char *shape, const CmpStats *s) {
    printf("%-58s %-16s %10lld %11.4g %10.3g %10.7f %10.4g %12llu\n", name, shape, (long long)s->ndiff, s->l2_diff,
           s->rel_l2, s->cosine, s->max_abs, (unsigned long long)s->max_ulp);
}

/* ---- models ---- */

/* Pairs a's tensors with b's by name. Fills `all` (overall figures of the
 * comparable pairs); per-tensor rows into `rows` (JSON) when not NULL and
 * printed when `print`. Returns 1 when anything differs. */
static int compare_pair(const StFile *a, const StFile *b, CmpStats *all, json_t *rows, int print, int show_all) {
    int differ = 0;
    cmp_begin(all);
    char sa[96];
    for (int i = 0; i < a->n; i++) {
        const StTensor *x = &a->tensors[i], *y = st_find(b, x->name);
        if (!y) {
            differ = 1;
            if (rows) json_array_append_new(rows, json_pack("{s:s, s:s}", "name", x->name, "status", "only in A"));
            if (print) printf("%-58s only in %s\n", x->name, a->path);
            continue;
        }
        CmpStats s; /* same dtype and shape: checked by comparable() */
        cmp_tensor(&s, x->dtype, x->data, y->data, x->numel);
        cmp_accumulate(all, &s, x->dtype);
        differ |= !s.identical;
        if (!s.identical || show_all) {
            st_shape_str(x, sa, sizeof sa);
            if (rows) {
                json_t *r = stats_json(&s);
                json_object_set_new(r, "name", json_string(x->name));
                json_object_set_new(r, "shape", json_string(sa));
                json_object_set_new(r, "status", json_string(s.identical ? "identical" : "different"));
                json_array_append_new(rows, r);
            }
            if (print) stats_row(x->name, sa, &s);
        }
    }
    for (int i = 0; i < b->n; i++)
        if (!st_find(a, b->tensors[i].name)) {
            differ = 1;
            if (rows) json_array_append_new(rows, json_pack("{s:s, s:s}", "name", b->tensors[i].name, "status", "only in B"));
            if (print) printf("%-58s only in %s\n", b->tensors[i].name, b->path);
        }
    cmp_finish(all);
    return differ;
}

/* Tensors of one name must agree in dtype and shape: models of different
 * architectures are not compared (an error, before any output). */
static int comparable(const StFile *a, const StFile *b, CpErr *e) {
    char sa[96], sb[96];
    for (int i = 0; i < a->n; i++) {
        const StTensor *x = &a->tensors[i], *y = st_find(b, x->name);
        if (!y || (x->dtype == y->dtype && x->ndim == y->ndim &&
                   memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim) == 0))
            continue;
        return cp_fail(e, "%s: tensor %s is %s %s but %s %s in %s; models of different shapes are not compared",
                       b->path, x->name, st_dtype_name(y->dtype), st_shape_str(y, sb, sizeof sb),
                       st_dtype_name(x->dtype), st_shape_str(x, sa, sizeof sa), a->path);
    }
    return CP_OK;
}

static void table_head(void) {
    printf("%-58s %-16s %10s %11s %10s %10s %10s %12s\n", "tensor", "shape", "ndiff", "L2(a-b)", "rel L2", "cosine",
           "max|a-b|", "max ulp");
}

/* CSV of an n x n matrix with model names. */
static int write_matrix_csv(const char *path, const double *m, int n, const char *const *names, CpErr *e) {
    CpAtomicFile af;
    if (cp_atomic_open(&af, path, e) != CP_OK) return CP_EFAIL;
    fprintf(af.f, "model");
    for (int j = 0; j < n; j++) fprintf(af.f, ",%s", names[j]);
    fprintf(af.f, "\n");
    for (int i = 0; i < n; i++) {
        fprintf(af.f, "%s", names[i]);
        for (int j = 0; j < n; j++) fprintf(af.f, ",%.17g", m[i * n + j]);
        fprintf(af.f, "\n");
    }
    if (ferror(af.f)) {
        cp_atomic_abort(&af);
        return cp_fail(e, "%s: write failed", path);
    }
    return cp_atomic_commit(&af, e);
}

/* Per-layer weight distributions of one model: float tensors with >= 2
 * dimensions (conv and linear weights), one panel each. */
static int write_histograms(const char *path, const StFile *f, CpErr *e) {
    HistSeries *s = cp_calloc((size_t)f->n, sizeof(HistSeries));
    int ns = 0;
    for (int t = 0; t < f->n; t++) {
        const StTensor *x = &f->tensors[t];
        if (!cmp_is_float(x->dtype) || x->ndim < 2 || strncmp(x->name, "optimizer.", 10) == 0) continue;
        double *v = cp_malloc(sizeof(double) * (size_t)x->numel);
        for (int64_t i = 0; i < x->numel; i++) v[i] = cmp_value(x->dtype, x->data, i);
        s[ns++] = (HistSeries){x->name, v, x->numel};
    }
    char title[512];
    snprintf(title, sizeof title, "Weight distributions per layer: %s", f->path);
    HistSpec sp = {title, "weight", 40, 5, 340, 200, 0};
    int rc = ns ? plot_histograms_png(path, &sp, s, ns, e) : CP_OK;
    for (int i = 0; i < ns; i++) cp_free((void *)s[i].v);
    cp_free(s);
    return rc;
}

/* Matrices (CSV + heatmap), statistics CSV, histograms for k models. */
static int model_reports(const Opts *o, StFile *f, int k, const double *mats[3], const ModelStats *ms, CpErr *e) {
    static const char *const what[3] = {"l2", "cosine", "maxabs"};
    static const char *const title[3] = {"L2 norm of the difference ||a - b||", "Cosine similarity <a,b> / (|a| |b|)",
                                         "Max |a - b| over all elements"};
    const char *names[MAX_IN];
    char path[4200];
    for (int i = 0; i < k; i++) names[i] = f[i].path;
    if (make_out(o->out, e) != CP_OK) return CP_EFAIL;
    for (int m = 0; m < 3; m++) {
        snprintf(path, sizeof path, "%s/similarity_%s.csv", o->out, what[m]);
        if (write_matrix_csv(path, mats[m], k, names, e) != CP_OK) return CP_EFAIL;
        HeatSpec hs = {title[m], "model B", "model A", what[m], 0, 0, k <= 12, 0, 0};
        snprintf(path, sizeof path, "%s/similarity_%s.png", o->out, what[m]);
        if (plot_heatmap_png(path, &hs, mats[m], k, k, names, names, e) != CP_OK) return CP_EFAIL;
    }
    snprintf(path, sizeof path, "%s/model_stats.csv", o->out);
    CpAtomicFile af;
    if (cp_atomic_open(&af, path, e) != CP_OK) return CP_EFAIL;
    fprintf(af.f, "model,n_params,l2,mean,std,min,max,params_sha256\n");
    for (int i = 0; i < k; i++)
        fprintf(af.f, "%s,%lld,%.17g,%.17g,%.17g,%.17g,%.17g,%s\n", names[i], (long long)ms[i].nparams, ms[i].l2,
                ms[i].mean, ms[i].std, ms[i].min, ms[i].max, ms[i].sha256);
    if (cp_atomic_commit(&af, e) != CP_OK) return CP_EFAIL;
    for (int i = 0; i < k; i++) {
        snprintf(path, sizeof path, "%s/weights_%d.png", o->out, i);
        if (write_histograms(path, &f[i], e) != CP_OK) return CP_EFAIL;
    }
    return CP_OK;
}

static int run_models(const Opts *o, const char **in, int k, CpErr *e) {
    StFile f[MAX_IN];
    memset(f, 0, sizeof f);
    int rc = CP_OK, nread = 0;
    for (; nread < k && rc == CP_OK; nread++) rc = st_read(&f[nread], in[nread], e);
    for (int i = 1; i < k && rc == CP_OK; i++) rc = comparable(&f[0], &f[i], e);
    if (rc != CP_OK) {
        for (int i = 0; i < nread; i++) st_free(&f[i]);
        return -1;
    }
    ModelStats ms[MAX_IN];
    for (int i = 0; i < k; i++) cmp_model_stats(&ms[i], &f[i]);
    double *mat = cp_malloc(sizeof(double) * 3 * (size_t)(k * k));
    const double *mats[3] = {mat, mat + k * k, mat + 2 * k * k};
    json_t *doc = json_pack("{s:s}", "mode", "models"), *rows = json_array();
    int differ = 0;
    if (!o->json && k == 2) table_head();
    for (int i = 0; i < k; i++)
        for (int j = i; j < k; j++) {
            CmpStats all;
            int d = compare_pair(&f[i], &f[j], &all, k == 2 && i == 0 && j == 1 ? rows : NULL,
                                 k == 2 && i == 0 && j == 1 && !o->json, o->all);
            differ |= d;
            double v[3] = {all.l2_diff, all.cosine, all.max_abs};
            for (int m = 0; m < 3; m++) mat[m * k * k + i * k + j] = mat[m * k * k + j * k + i] = v[m];
            if (k == 2 && i == 0 && j == 1) {
                json_object_set_new(doc, "overall", stats_json(&all));
                if (!o->json) {
                    stats_row("(overall)", "", &all);
                    printf("%s\n", d ? "different" : "identical");
                }
            }
        }
    json_object_set_new(doc, "tensors", rows);
    json_t *js = json_array();
    for (int i = 0; i < k; i++)
        json_array_append_new(js, json_pack("{s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:s}", "model", in[i], "n_params",
                                            (json_int_t)ms[i].nparams, "l2", jnum(ms[i].l2), "mean", jnum(ms[i].mean),
                                            "std", jnum(ms[i].std), "min", jnum(ms[i].min), "max", jnum(ms[i].max),
                                            "params_sha256", ms[i].sha256));
    json_object_set_new(doc, "models", js);
    if (k > 2) {
        static const char *const mk[3] = {"l2", "cosine", "max_abs"};
        for (int m = 0; m < 3; m++) {
            json_t *rowsm = json_array();
            for (int i = 0; i < k; i++) {
                json_t *r = json_array();
                for (int j = 0; j < k; j++) json_array_append_new(r, jnum(mats[m][i * k + j]));
                json_array_append_new(rowsm, r);
            }
            json_object_set_new(doc, mk[m], rowsm);
        }
    }
    json_object_set_new(doc, "identical", json_boolean(!differ));
    if (!o->json) {
        printf("\n%-40s %12s %12s %12s %12s %12s %12s  %s\n", "model", "n params", "L2 norm", "mean", "std", "min",
               "max", "params sha256");
        for (int i = 0; i < k; i++)
            printf("%-40s %12lld %12.6g %12.4g %12.4g %12.4g %12.4g  %.16s\n", in[i], (long long)ms[i].nparams,
                   ms[i].l2, ms[i].mean, ms[i].std, ms[i].min, ms[i].max, ms[i].sha256);
        if (k > 2) {
            static const char *const mt[3] = {"L2 norm of the difference", "cosine similarity", "max |a - b|"};
            for (int m = 0; m < 3; m++) {
                printf("\n%s (row = model A, column = model B, in argument order)\n", mt[m]);
                for (int i = 0; i < k; i++, printf("\n"))
                    for (int j = 0; j < k; j++) printf(" %12.6g", mats[m][i * k + j]);
            }
            printf("%s\n", differ ? "different" : "identical");
        }
    }
    rc = o->out ? model_reports(o, f, k, mats, ms, e) : CP_OK;
    if (rc == CP_OK && o->json) {
        char *t = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
        printf("%s\n", t);
        free(t);
    }
    json_decref(doc);
    cp_free(mat);
    for (int i = 0; i < k; i++) st_free(&f[i]);
    return rc != CP_OK ? -1 : differ;
}

/* ---- masks ---- */

static int read_labels(uint32_t **lab, int64_t *h, int64_t *w, const char *path, CpErr *e) {
    Image img;
    if (image_read(&img, path, 0, INT64_MAX, e) != CP_OK) return CP_EFAIL;
    *h = img.h, *w = img.w;
    *lab = cp_malloc(sizeof(uint32_t) * (size_t)(img.h * img.w));
    int rc = image_to_labels(&img, path, *lab, e);
    image_free(&img);
    if (rc != CP_OK) cp_free(*lab), *lab = NULL;
    return rc;
}

/* name without _cp_masks.EXT / _masks.EXT / .EXT */
static void stem_of(char *out, size_t n, const char *path) {
    snprintf(out, n, "%s", base_name(path));
    char *dot = strrchr(out, '.');
    if (dot) *dot = 0;
    size_t l = strlen(out);
    if (l > 9 && strcmp(out + l - 9, "_cp_masks") == 0) out[l - 9] = 0;
    else if (l > 6 && strcmp(out + l - 6, "_masks") == 0) out[l - 6] = 0;
}

static json_t *mask_json(const MaskCmp *m) {
    json_t *ap = json_array(), *tp = json_array(), *fp = json_array(), *fn = json_array(), *th = json_array();
    for (int i = 0; i < 3; i++) {
        json_array_append_new(th, json_real(CMP_THRESHOLDS[i]));
        json_array_append_new(ap, jnum(m->ap[i]));
        json_array_append_new(tp, json_integer(m->tp[i]));
        json_array_append_new(fp, json_integer(m->fp[i]));
        json_array_append_new(fn, json_integer(m->fn[i]));
    }
    return json_pack("{s:b, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
                     "identical", m->identical, "height", (json_int_t)m->h, "width", (json_int_t)m->w, "masks_a",
                     (json_int_t)m->na, "masks_b", (json_int_t)m->nb, "thresholds", th, "ap", ap, "tp", tp, "fp", fp,
                     "fn", fn, "mean_matched_iou", jnum(m->mean_iou), "unmatched_a", (json_int_t)m->unmatched_a,
                     "unmatched_b", (json_int_t)m->unmatched_b, "split", (json_int_t)m->split, "merged",
                     (json_int_t)m->merged, "pixels_fg_disagree", (json_int_t)m->px_fg, "pixels_assign_disagree",
                     (json_int_t)m->px_assign, "pixels_disagree", (json_int_t)(m->px_fg + m->px_assign),
                     "fraction_disagree", jnum((double)(m->px_fg + m->px_assign) / (double)(m->h * m->w)));
}

/* One pair: figures (+ diff PNG into out_png when not NULL). */
static int mask_pair(MaskCmp *m, const char *pa, const char *pb, const char *out_png, CpErr *e) {
    uint32_t *a = NULL, *b = NULL;
    int64_t ha, wa, hb, wb, *mb = NULL;
    int rc = read_labels(&a, &ha, &wa, pa, e);
    if (rc == CP_OK) rc = read_labels(&b, &hb, &wb, pb, e);
    if (rc == CP_OK && (ha != hb || wa != wb))
        rc = cp_fail(e, "%s: %lld x %lld pixels, but %s is %lld x %lld", pb, (long long)hb, (long long)wb, pa,
                     (long long)ha, (long long)wa);
    if (rc == CP_OK) rc = cmp_masks(m, a, b, ha, wa, &mb, e);
    if (rc == CP_OK && out_png) {
        uint8_t *rgb = cp_malloc((size_t)(3 * ha * wa));
        cmp_masks_diff_rgb(rgb, a, b, ha, wa, mb);
        rc = image_write_png(out_png, rgb, 3, ha, wa, e);
        cp_free(rgb);
    }
    cp_free(a), cp_free(b), cp_free(mb);
    return rc;
}

static void mask_text(const MaskCmp *m, const char *pa, const char *pb) {
    printf("A (reference) %s: %lld masks\nB %s: %lld masks, %lld x %lld pixels\n", pa, (long long)m->na, pb,
           (long long)m->nb, (long long)m->h, (long long)m->w);
    for (int i = 0; i < 3; i++)
        printf("AP@%.2f %.4f  (TP %lld, FP %lld, FN %lld)\n", CMP_THRESHOLDS[i], m->ap[i], (long long)m->tp[i],
               (long long)m->fp[i], (long long)m->fn[i]);
    printf("mean matched IoU %.4f\nunmatched in A %lld, in B %lld\nsplit (A objects >= 2 B objects mostly cover) "
           "%lld, merged (B objects covering >= 2 A objects) %lld\n",
           m->mean_iou, (long long)m->unmatched_a, (long long)m->unmatched_b, (long long)m->split, (long long)m->merged);
    int64_t n = m->h * m->w;
    printf("pixels disagreeing: %lld of %lld (%.4f%%): foreground/background %lld, assignment %lld\n%s\n",
           (long long)(m->px_fg + m->px_assign), (long long)n, 100.0 * (double)(m->px_fg + m->px_assign) / (double)n,
           (long long)m->px_fg, (long long)m->px_assign, m->identical ? "identical" : "different");
}

static int is_mask_name(const char *n) {
    size_t l = strlen(n);
    return (l > 10 && strcmp(n + l - 10, "_masks.tif") == 0) || (l > 11 && strcmp(n + l - 11, "_masks.tiff") == 0) ||
           (l > 10 && strcmp(n + l - 10, "_masks.png") == 0);
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

/* Sorted mask file names of a folder (cp_malloc'ed array of strdup'ed names). */
static int list_masks(char ***names, int *n, const char *dir, CpErr *e) {
    DIR *d = opendir(dir);
    if (!d) return cp_fail(e, "%s: %s", dir, strerror(errno));
    int cap = 16;
    *n = 0, *names = cp_malloc(sizeof(char *) * (size_t)cap);
    for (struct dirent *de; (de = readdir(d));) {
        if (!is_mask_name(de->d_name)) continue;
        if (*n == cap) {
            char **g = cp_malloc(sizeof(char *) * (size_t)cap * 2);
            memcpy(g, *names, sizeof(char *) * (size_t)cap);
            cp_free(*names), *names = g, cap *= 2;
        }
        (*names)[(*n)++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(*names, (size_t)*n, sizeof(char *), cmp_str);
    if (*n == 0) return cp_fail(e, "%s: no *_masks.tif / *_cp_masks.tif files", dir);
    return CP_OK;
}

static void free_names(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    cp_free(v);
}

static int run_mask_dirs(const Opts *o, const char *da, const char *db, CpErr *e);

static int run_masks(const Opts *o, const char **in, int k, int dirs, CpErr *e) {
    if (k != 2) return cp_fail(e, "masks compare two at a time (got %d inputs)", k), -1;
    if (dirs) return run_mask_dirs(o, in[0], in[1], e);
    char png[4400], stem[256];
    stem_of(stem, sizeof stem, in[0]);
    snprintf(png, sizeof png, "%s/%s_diff.png", o->out ? o->out : ".", stem);
    if (o->out && make_out(o->out, e) != CP_OK) return -1;
    MaskCmp m;
    if (mask_pair(&m, in[0], in[1], o->out ? png : NULL, e) != CP_OK) return -1;
    if (o->json) {
        json_t *doc = mask_json(&m);
        json_object_set_new(doc, "mode", json_string("masks"));
        json_object_set_new(doc, "a", json_string(in[0]));
        json_object_set_new(doc, "b", json_string(in[1]));
        if (o->out) json_object_set_new(doc, "diff_png", json_string(png)), json_object_set_new(doc, "legend", json_string(CMP_LEGEND));
        char *t = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
        printf("%s\n", t);
        free(t), json_decref(doc);
    } else {
        mask_text(&m, in[0], in[1]);
        if (o->out) printf("diff picture %s: %s\n", png, CMP_LEGEND);
    }
    return !m.identical;
}

static int run_mask_dirs(const Opts *o, const char *da, const char *db, CpErr *e) {
    char **na = NULL, **nb = NULL;
    int ka = 0, kb = 0;
    if (list_masks(&na, &ka, da, e) != CP_OK || list_masks(&nb, &kb, db, e) != CP_OK) {
        if (na) free_names(na, ka);
        if (nb) free_names(nb, kb);
        return -1;
    }
    int rc = o->out ? make_out(o->out, e) : CP_OK, differ = 0, npairs = 0;
    json_t *doc = json_pack("{s:s, s:s, s:s}", "mode", "mask folders", "a", da, "b", db), *pairs = json_array(),
           *only = json_array();
    double sum_ap[3] = {0, 0, 0}, sum_iou = 0;
    if (!o->json)
        printf("%-32s %8s %8s %8s %8s %6s %6s %6s %6s %6s %10s\n", "image", "AP@0.5", "AP@0.75", "AP@0.9", "mIoU",
               "nA", "nB", "unmA", "unmB", "split", "px diff");
    for (int i = 0; i < ka && rc == CP_OK; i++) {
        char sa[256], sb[256], pa[4400], pb[4400], png[4400];
        stem_of(sa, sizeof sa, na[i]);
        int j = 0;
        for (; j < kb; j++) {
            stem_of(sb, sizeof sb, nb[j]);
            if (strcmp(sa, sb) == 0) break;
        }
        if (j == kb) {
            json_array_append_new(only, json_pack("{s:s, s:s}", "file", na[i], "only_in", "A")), differ = 1;
            continue;
        }
        snprintf(pa, sizeof pa, "%s/%s", da, na[i]), snprintf(pb, sizeof pb, "%s/%s", db, nb[j]);
        snprintf(png, sizeof png, "%s/%s_diff.png", o->out ? o->out : ".", sa);
        MaskCmp m;
        if ((rc = mask_pair(&m, pa, pb, o->out ? png : NULL, e)) != CP_OK) break;
        npairs++, differ |= !m.identical, sum_iou += m.mean_iou;
        for (int t = 0; t < 3; t++) sum_ap[t] += m.ap[t];
        json_t *r = mask_json(&m);
        json_object_set_new(r, "image", json_string(sa));
        json_array_append_new(pairs, r);
        if (!o->json)
            printf("%-32s %8.4f %8.4f %8.4f %8.4f %6lld %6lld %6lld %6lld %6lld %10lld\n", sa, m.ap[0], m.ap[1],
                   m.ap[2], m.mean_iou, (long long)m.na, (long long)m.nb, (long long)m.unmatched_a,
                   (long long)m.unmatched_b, (long long)m.split, (long long)(m.px_fg + m.px_assign));
    }
    for (int j = 0; j < kb && rc == CP_OK; j++) {
        char sa[256], sb[256];
        stem_of(sb, sizeof sb, nb[j]);
        int i = 0;
        for (; i < ka; i++) {
            stem_of(sa, sizeof sa, na[i]);
            if (strcmp(sa, sb) == 0) break;
        }
        if (i == ka) json_array_append_new(only, json_pack("{s:s, s:s}", "file", nb[j], "only_in", "B")), differ = 1;
    }
    if (rc == CP_OK) {
        double d = npairs ? npairs : 1;
        json_object_set_new(doc, "pairs", pairs), pairs = NULL;
        json_object_set_new(doc, "unpaired", json_incref(only));
        json_object_set_new(doc, "mean", json_pack("{s:[o, o, o], s:o, s:i}", "ap", jnum(sum_ap[0] / d),
                                                   jnum(sum_ap[1] / d), jnum(sum_ap[2] / d), "mean_matched_iou",
                                                   jnum(sum_iou / d), "n_pairs", npairs));
        if (o->json) {
            char *t = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
            printf("%s\n", t);
            free(t);
        } else {
            printf("%-32s %8.4f %8.4f %8.4f %8.4f  (%d pairs)\n", "(mean)", sum_ap[0] / d, sum_ap[1] / d,
                   sum_ap[2] / d, sum_iou / d, npairs);
            for (size_t i = 0; i < json_array_size(only); i++) {
                json_t *x = json_array_get(only, i);
                printf("%s: only in %s\n", json_string_value(json_object_get(x, "file")),
                       json_string_value(json_object_get(x, "only_in")));
            }
            if (o->out) printf("diff pictures %s/*_diff.png: %s\n", o->out, CMP_LEGEND);
            printf("%s\n", differ ? "different" : "identical");
        }
    }
    json_decref(pairs), json_decref(only), json_decref(doc);
    free_names(na, ka), free_names(nb, kb);
    return rc != CP_OK ? -1 : differ;
}

/* ---- runs ---- */

/* model.bin of a run folder into buf, else checkpoint.bin; 0 if neither exists. */
static int run_model(char buf[4200], const char *dir) {
    static const char *const names[2] = {"model.bin", "checkpoint.bin"};
    struct stat sb;
    for (int i = 0; i < 2; i++) {
        snprintf(buf, 4200, "%s/%s", dir, names[i]);
        if (stat(buf, &sb) == 0) return 1;
    }
    return 0;
}

/* Loss curves of both runs in one plot: train loss (and test loss where recorded). */
static int loss_overlay(const char *path, json_t *ma, json_t *mb, const char *la, const char *lb, CpErr *e) {
    json_t *ep[2] = {json_object_get(ma, "epochs"), json_object_get(mb, "epochs")};
    const char *lab[2] = {la, lb};
    double *buf[2][3];
    char names[4][300];
    PlotSeries s[4];
    int ns = 0;
    for (int r = 0; r < 2; r++) {
        size_t n = json_array_size(ep[r]);
        int has_test = 0;
        for (int q = 0; q < 3; q++) buf[r][q] = cp_malloc(sizeof(double) * (n + 1));
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_array_get(ep[r], i), *t = json_object_get(x, "test_loss");
            buf[r][0][i] = (double)json_integer_value(json_object_get(x, "epoch"));
            buf[r][1][i] = json_number_value(json_object_get(x, "train_loss"));
            buf[r][2][i] = json_is_number(t) ? json_number_value(t) : NAN;
            has_test |= json_is_number(t);
        }
        snprintf(names[ns], sizeof names[ns], "train %s", lab[r]);
        s[ns] = (PlotSeries){names[ns], buf[r][0], buf[r][1], (int)n}, ns++;
        if (has_test) {
            snprintf(names[ns], sizeof names[ns], "test %s", lab[r]);
            s[ns] = (PlotSeries){names[ns], buf[r][0], buf[r][2], (int)n}, ns++;
        }
    }
    PlotSpec sp = {"Training loss of two runs", "epoch", "loss (flow MSE/2 + BCE)", 800, 500, 0};
    int rc = plot_lines_png(path, &sp, s, ns, e);
    for (int r = 0; r < 2; r++)
        for (int q = 0; q < 3; q++) cp_free(buf[r][q]);
    return rc;
}

static void runs_text(json_t *doc) {
    json_t *set = json_object_get(doc, "settings"), *ep = json_object_get(doc, "epochs");
    printf("settings that differ: %zu\n", json_array_size(set));
    for (size_t i = 0; i < json_array_size(set); i++) {
        json_t *x = json_array_get(set, i);
        char *a = json_dumps(json_object_get(x, "a"), JSON_ENCODE_ANY | JSON_COMPACT),
             *b = json_dumps(json_object_get(x, "b"), JSON_ENCODE_ANY | JSON_COMPACT);
        printf("  %-28s %s vs %s\n", json_string_value(json_object_get(x, "key")), a ? a : "(absent)",
               b ? b : "(absent)");
        free(a), free(b);
    }
    json_t *fe = json_object_get(ep, "first_divergence");
    printf("epochs: %lld vs %lld; ", (long long)json_integer_value(json_object_get(ep, "a")),
           (long long)json_integer_value(json_object_get(ep, "b")));
    if (json_is_null(fe)) printf("parameter SHA-256 equal at every epoch\n");
    else printf("parameter SHA-256 first differs at epoch %lld (the hash after that epoch)\n",
                (long long)json_integer_value(fe));
    json_t *tr = json_object_get(doc, "trace");
    if (json_is_object(tr)) {
        json_t *st = json_object_get(tr, "first_step");
        if (json_is_null(st))
            printf("trace: %lld steps, every hash equal\n", (long long)json_integer_value(json_object_get(tr, "steps")));
        else
            printf("trace: first difference at step %lld (epoch %lld), entry %lld \"%s\": %.16s vs %.16s\n",
                   (long long)json_integer_value(st), (long long)json_integer_value(json_object_get(tr, "epoch")),
                   (long long)json_integer_value(json_object_get(tr, "entry_index")),
                   json_string_value(json_object_get(tr, "entry")), json_string_value(json_object_get(tr, "a")),
                   json_string_value(json_object_get(tr, "b")));
    } else if (json_is_string(tr)) {
        printf("trace: %s\n", json_string_value(tr));
    }
}

/* Differing tensors of the two run models into doc["models"]. Returns 1 if
 * they differ, -1 on error (nothing printed). */
static int runs_models(json_t *doc, const char *pa, const char *pb, CpErr *e) {
    StFile f[2];
    memset(f, 0, sizeof f);
    if (st_read(&f[0], pa, e) != CP_OK) return -1;
    if (st_read(&f[1], pb, e) != CP_OK || comparable(&f[0], &f[1], e) != CP_OK) {
        st_free(&f[0]), st_free(&f[1]);
        return -1;
    }
    CmpStats all;
    json_t *rows = json_array();
    int d = compare_pair(&f[0], &f[1], &all, rows, 0, 0);
    json_object_set_new(doc, "models", json_pack("{s:s, s:s, s:b, s:o, s:o}", "a", pa, "b", pb, "identical", !d,
                                                 "overall", stats_json(&all), "tensors", rows));
    st_free(&f[0]), st_free(&f[1]);
    return d;
}

/* The models part of the text: summary, then the 10 tensors with the largest relative L2. */
static void models_text(json_t *m) {
    if (!m) return;
    json_t *rows = json_object_get(m, "tensors"), *all = json_object_get(m, "overall");
    size_t n = json_array_size(rows);
    printf("models %s vs %s: %s, %zu tensors differ; overall rel L2 %.4g, cosine %.7f, max|a-b| %.4g\n",
           json_string_value(json_object_get(m, "a")), json_string_value(json_object_get(m, "b")),
           json_is_true(json_object_get(m, "identical")) ? "identical" : "different", n,
           json_number_value(json_object_get(all, "rel_l2")), json_number_value(json_object_get(all, "cosine")),
           json_number_value(json_object_get(all, "max_abs")));
    int *used = cp_calloc(n + 1, sizeof(int));
    for (int t = 0; t < 10 && t < (int)n; t++) {
        int best = -1;
        double bv = -1;
        for (size_t i = 0; i < n; i++) {
            double v = json_number_value(json_object_get(json_array_get(rows, i), "rel_l2"));
            if (!used[i] && v > bv) bv = v, best = (int)i;
        }
        if (best < 0) break;
        used[best] = 1;
        json_t *x = json_array_get(rows, (size_t)best);
        printf("  %-58s rel L2 %.4g  max|a-b| %.4g  ndiff %lld\n", json_string_value(json_object_get(x, "name")), bv,
               json_number_value(json_object_get(x, "max_abs")), (long long)json_integer_value(json_object_get(x, "ndiff")));
    }
    cp_free(used);
}

static int run_runs(const Opts *o, const char **in, int k, CpErr *e) {
    if (k != 2) return cp_fail(e, "runs compare two at a time (got %d run folders)", k), -1;
    Manifest ma, mb;
    char path[4200], pa[4200], pb[4200];
    snprintf(path, sizeof path, "%s/manifest.json", in[0]);
    if (manifest_read(&ma, path, e) != CP_OK) return -1;
    snprintf(path, sizeof path, "%s/manifest.json", in[1]);
    if (manifest_read(&mb, path, e) != CP_OK) {
        manifest_free(&ma);
        return -1;
    }
    json_t *doc = json_pack("{s:s, s:s, s:s}", "mode", "runs", "a", in[0], "b", in[1]);
    json_object_set_new(doc, "settings", cmp_run_settings(ma.root, mb.root));
    RunEpochs re;
    cmp_run_epochs(&re, ma.root, mb.root);
    json_object_set_new(doc, "epochs", json_pack("{s:I, s:I, s:o}", "a", (json_int_t)re.na, "b", (json_int_t)re.nb,
                                                 "first_divergence", re.first < 0 ? json_null() : json_integer(re.first)));
    int differ = re.first >= 0, rc = CP_OK;
    struct stat sb;
    snprintf(pa, sizeof pa, "%s/trace.jsonl", in[0]), snprintf(pb, sizeof pb, "%s/trace.jsonl", in[1]);
    int ta = stat(pa, &sb) == 0, tb = stat(pb, &sb) == 0;
    if (ta && tb) {
        RunTrace t;
        rc = cmp_run_traces(&t, pa, pb, e);
        if (rc == CP_OK) {
            differ |= t.step >= 0 || t.extra;
            json_object_set_new(doc, "trace", json_pack("{s:I, s:o, s:I, s:I, s:s, s:s, s:s, s:b}", "steps",
                                                        (json_int_t)t.nsteps, "first_step",
                                                        t.step < 0 ? json_null() : json_integer(t.step), "epoch",
                                                        (json_int_t)t.epoch, "entry_index", (json_int_t)t.index,
                                                        "entry", t.entry, "a", t.hash_a, "b", t.hash_b,
                                                        "one_trace_longer", t.extra));
        }
    } else if (ta || tb) {
        json_object_set_new(doc, "trace", json_string(ta ? "only run A was traced" : "only run B was traced"));
    }
    int xa = run_model(pa, in[0]), xb = run_model(pb, in[1]);
    if (rc == CP_OK && xa && xb) {
        int d = runs_models(doc, pa, pb, e);
        if (d < 0) rc = CP_EFAIL;
        else differ |= d;
    }
    if (!o->json && rc == CP_OK) runs_text(doc), models_text(json_object_get(doc, "models"));
    if (rc == CP_OK && o->out) {
        snprintf(path, sizeof path, "%s/loss_overlay.png", o->out);
        rc = make_out(o->out, e);
        if (rc == CP_OK) rc = loss_overlay(path, ma.root, mb.root, in[0], in[1], e);
        if (rc == CP_OK && !o->json) printf("loss curves: %s\n", path);
        if (rc == CP_OK) json_object_set_new(doc, "loss_png", json_string(path));
    }
    json_object_set_new(doc, "identical", json_boolean(!differ));
    if (rc == CP_OK && o->json) {
        char *t = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
        printf("%s\n", t);
        free(t);
    } else if (rc == CP_OK) {
        printf("%s\n", differ ? "different" : "identical");
    }
    json_decref(doc);
    manifest_free(&ma), manifest_free(&mb);
    return rc != CP_OK ? -1 : differ;
}

/* ---- main ---- */

static CliOpt opts[] = {
    {"json", NULL, "machine-readable output (one JSON document on stdout)", NULL},
    {"out", "DIR", "write CSV/PNG reports here (created; inputs are never written)", NULL},
    {"all", NULL, "models: list every tensor, not only the differing ones", NULL},
};
#define NOPTS ((int)(sizeof opts / sizeof opts[0]))

int main(int argc, char **argv) {
    const char *pos[MAX_IN];
    int npos = 0;
    int rc = cli_main_head("compare", "compare A B [C ...]",
                           "Compare models (model.bin, checkpoint.bin), label images (*_cp_masks.tif) or folders of "
                           "them, or train run folders. Exit status: 0 identical, 1 different, 2 error.",
                           opts, NOPTS, argc, argv, pos, &npos, MAX_IN, 2);
    if (rc >= 0) return rc;
    Opts o = {cli_get(opts, NOPTS, "json") != NULL, cli_get(opts, NOPTS, "all") != NULL, cli_get(opts, NOPTS, "out")};
    CpErr e;
    CmpKind kind[MAX_IN];
    for (int i = 0; i < npos; i++) {
        if (cmp_kind(&kind[i], pos[i], &e) != CP_OK) {
            fprintf(stderr, "compare: %s\n", e.msg);
            return 2;
        }
        if (kind[i] != kind[0]) {
            fprintf(stderr, "compare: %s is a %s but %s is a %s; compare like with like\n", pos[i],
                    cmp_kind_name(kind[i]), pos[0], cmp_kind_name(kind[0]));
            return 2;
        }
    }
    int r;
    if (kind[0] == CMP_MODEL) r = run_models(&o, pos, npos, &e);
    else if (kind[0] == CMP_RUN) r = run_runs(&o, pos, npos, &e);
    else r = run_masks(&o, pos, npos, kind[0] == CMP_MASK_DIR, &e);
    if (r < 0) {
        fprintf(stderr, "compare: %s\n", e.msg);
        return 2;
    }
    return r;
}
