/* report.c - per-image scores, means and tables for `eval`. Definitions and
 * determinism: report.h. H W spatial. */
#include "report.h"

#include <string.h>

#include "metrics.h"

void ev_thresholds10(double th[EV_NTH10]) {
    /* numpy's arange fill: delta = (start + step) - start, v[i] = start + i * delta */
    double delta = (0.5 + 0.05) - 0.5;
    for (int i = 0; i < EV_NTH10; i++) th[i] = 0.5 + (double)i * delta;
}

int ev_score(EvScore *s, const char *name, const uint32_t *gt, const uint32_t *pred, int64_t H, int64_t W,
             CpErr *e) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    uint32_t mg = 0, mp = 0;
    for (int64_t i = 0; i < H * W; i++) mg = gt[i] > mg ? gt[i] : mg, mp = pred[i] > mp ? pred[i] : mp;
    if (mg == 0) return cp_fail(e, "%s: the ground truth has no object (empty label image)", name);
    s->n_gt = mg, s->n_pred = mp;
    static const double th3[3] = {0.5, 0.75, 0.9};
    double th10[EV_NTH10];
    ev_thresholds10(th10);
    int64_t tp[EV_NTH10], fp[EV_NTH10], fn[EV_NTH10], nm;
    if (met_average_precision(s->ap10, tp, fp, fn, gt, pred, H, W, th10, EV_NTH10, e) ||
        met_average_precision(s->ap, tp, fp, fn, gt, pred, H, W, th3, 3, e) ||
        met_mean_matched_iou(&s->miou, &nm, gt, pred, H, W, e) || met_aggregated_jaccard(&s->aji, gt, pred, H, W, e)) {
        CpErr inner = *e;
        return cp_fail(e, "%s: %s", name, inner.msg);
    }
    double sum = 0;
    for (int i = 0; i < EV_NTH10; i++) sum += s->ap10[i];
    s->ap_mean = sum / EV_NTH10;
    s->tp = tp[0], s->fp = fp[0], s->fn = fn[0];
    s->precision = s->tp + s->fp > 0 ? (double)s->tp / (double)(s->tp + s->fp) : 0.0;
    s->recall = (double)s->tp / (double)(s->tp + s->fn);
    s->f1 = 2.0 * (double)s->tp / (double)(2 * s->tp + s->fp + s->fn);
    return CP_OK;
}

void ev_mean(EvScore *m, const EvScore *s, int n) {
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "mean");
    for (int i = 0; i < n; i++) { /* sequential, in image order */
        m->n_gt += s[i].n_gt, m->n_pred += s[i].n_pred, m->tp += s[i].tp, m->fp += s[i].fp, m->fn += s[i].fn;
        for (int k = 0; k < 3; k++) m->ap[k] += s[i].ap[k];
        for (int k = 0; k < EV_NTH10; k++) m->ap10[k] += s[i].ap10[k];
        m->ap_mean += s[i].ap_mean, m->precision += s[i].precision, m->recall += s[i].recall;
        m->f1 += s[i].f1, m->miou += s[i].miou, m->aji += s[i].aji;
    }
    if (n < 1) return;
    double d = (double)n;
    for (int k = 0; k < 3; k++) m->ap[k] /= d;
    for (int k = 0; k < EV_NTH10; k++) m->ap10[k] /= d;
    m->ap_mean /= d, m->precision /= d, m->recall /= d, m->f1 /= d, m->miou /= d, m->aji /= d;
}

/* ---- tables ---- */

static void md_row(FILE *f, const char *first, const EvScore *s) {
    fprintf(f, "| %s | %lld | %lld | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", first,
            (long long)s->n_gt, (long long)s->n_pred, s->ap[0], s->ap[1], s->ap[2], s->ap_mean, s->miou,
            s->precision, s->recall, s->f1, s->aji);
}

void ev_print_markdown(FILE *f, const EvRun *runs, int nruns) {
    const char *cols = " | gt | pred | AP@0.5 | AP@0.75 | AP@0.9 | AP@[.5:.95] | mIoU | P@0.5 | R@0.5 | F1@0.5 | AJI |\n"
                       "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    if (nruns == 1) {
        fprintf(f, "| image%s", cols);
        for (int i = 0; i < runs[0].nimg; i++) md_row(f, runs[0].img[i].name, &runs[0].img[i]);
        char mean[64];
        snprintf(mean, sizeof mean, "**mean (%d images)**", runs[0].nimg);
        md_row(f, mean, &runs[0].mean);
    } else {
        fprintf(f, "| method%s", cols);
        for (int r = 0; r < nruns; r++) md_row(f, runs[r].label, &runs[r].mean);
    }
}

static void csv_field(FILE *f, const char *s) { /* quoted when needed (RFC 4180) */
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_row(FILE *f, const char *label, const EvScore *s) {
    csv_field(f, label);
    fputc(',', f);
    csv_field(f, s->name);
    fprintf(f, ",%lld,%lld,%lld,%lld,%lld,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n", (long long)s->n_gt,
            (long long)s->n_pred, (long long)s->tp, (long long)s->fp, (long long)s->fn, s->ap[0], s->ap[1], s->ap[2],
            s->ap_mean, s->miou, s->precision, s->recall, s->f1, s->aji);
}

int ev_write_csv(const char *path, const EvRun *runs, int nruns, CpErr *e) {
    CpAtomicFile af;
    if (cp_atomic_open(&af, path, e)) return CP_EFAIL;
    fprintf(af.f, "method,image,n_gt,n_pred,tp50,fp50,fn50,ap50,ap75,ap90,ap50_95,miou,precision50,recall50,f1_50,aji\n");
    for (int r = 0; r < nruns; r++) {
        for (int i = 0; i < runs[r].nimg; i++) csv_row(af.f, runs[r].label, &runs[r].img[i]);
        csv_row(af.f, runs[r].label, &runs[r].mean);
    }
    if (ferror(af.f)) {
        cp_atomic_abort(&af);
        return cp_fail(e, "%s: write failed", path);
    }
    return cp_atomic_commit(&af, e);
}

static json_t *score_json(const EvScore *s) {
    json_t *a10 = json_array();
    for (int k = 0; k < EV_NTH10; k++) json_array_append_new(a10, json_real(s->ap10[k]));
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:o, s:f, s:f, s:f, s:f, s:f, s:f}", "image",
                     s->name, "n_gt", (json_int_t)s->n_gt, "n_pred", (json_int_t)s->n_pred, "tp50", (json_int_t)s->tp,
                     "fp50", (json_int_t)s->fp, "fn50", (json_int_t)s->fn, "ap50", s->ap[0], "ap75", s->ap[1], "ap90",
                     s->ap[2], "ap_thresholds", a10, "ap50_95", s->ap_mean, "miou", s->miou, "precision50",
                     s->precision, "recall50", s->recall, "f1_50", s->f1, "aji", s->aji);
}

json_t *ev_json(const EvRun *runs, int nruns) {
    json_t *arr = json_array();
    for (int r = 0; r < nruns; r++) {
        json_t *imgs = json_array();
        for (int i = 0; i < runs[r].nimg; i++) json_array_append_new(imgs, score_json(&runs[r].img[i]));
        json_array_append_new(arr, json_pack("{s:s, s:o, s:o}", "method", runs[r].label, "images", imgs, "mean",
                                             score_json(&runs[r].mean)));
    }
    double th[EV_NTH10];
    ev_thresholds10(th);
    json_t *tj = json_array();
    for (int k = 0; k < EV_NTH10; k++) json_array_append_new(tj, json_real(th[k]));
    return json_pack("{s:o, s:o}", "thresholds", tj, "runs", arr);
}
