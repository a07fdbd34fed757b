/* compare_runs.c - see compare_runs.h: two train run folders, from their
 * manifests and traces. */
#include "compare_runs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends {key, a, b} when a and b differ (NULL = absent). */
static void diff_value(json_t *out, const char *key, json_t *a, json_t *b) {
    if (a && b && json_equal(a, b)) return;
    json_array_append_new(out, json_pack("{s:s, s:O?, s:O?}", "key", key, "a", a, "b", b));
}

/* Two levels: objects are walked key by key (a's keys in order, then b's
 * keys missing from a); anything else is compared as a whole. */
static void diff_tree(json_t *out, const char *prefix, json_t *a, json_t *b, int depth) {
    if (depth == 0 || !json_is_object(a) || !json_is_object(b)) {
        diff_value(out, prefix, a, b);
        return;
    }
    const char *k;
    json_t *v;
    char key[256];
    json_object_foreach(a, k, v) {
        snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", k);
        diff_tree(out, key, v, json_object_get(b, k), depth - 1);
    }
    json_object_foreach(b, k, v) {
        if (json_object_get(a, k)) continue;
        snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", k);
        diff_value(out, key, NULL, v);
    }
}

json_t *cmp_run_settings(json_t *ma, json_t *mb) {
    json_t *out = json_array();
    diff_value(out, "seed", json_object_get(ma, "seed"), json_object_get(mb, "seed"));
    diff_tree(out, "config", json_object_get(ma, "config"), json_object_get(mb, "config"), 2);
    static const char *const env[] = {"backend", "threads", "device", "compiler", "git_commit", "cellpose_c"};
    json_t *ea = json_object_get(ma, "environment"), *eb = json_object_get(mb, "environment");
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "environment.%s", env[i]);
        diff_value(out, key, json_object_get(ea, env[i]), json_object_get(eb, env[i]));
    }
    /* inputs: by sha256 only (paths may differ between machines) */
    json_t *ia = json_object_get(ma, "inputs"), *ib = json_object_get(mb, "inputs");
    size_t na = json_array_size(ia), nb = json_array_size(ib), nd = na > nb ? na - nb : nb - na;
    for (size_t i = 0; i < na && i < nb; i++)
        nd += !json_equal(json_object_get(json_array_get(ia, i), "sha256"),
                          json_object_get(json_array_get(ib, i), "sha256"));
    if (nd) {
        char v[96];
        snprintf(v, sizeof v, "%zu of %zu vs %zu input files differ (by SHA-256)", nd, na, nb);
        json_array_append_new(out, json_pack("{s:s, s:s, s:n}", "key", "inputs", "a", v, "b"));
    }
    return out;
}

void cmp_run_epochs(RunEpochs *r, json_t *ma, json_t *mb) {
    json_t *ea = json_object_get(ma, "epochs"), *eb = json_object_get(mb, "epochs");
    r->na = (int64_t)json_array_size(ea), r->nb = (int64_t)json_array_size(eb);
    r->first = -1;
    int64_t n = r->na < r->nb ? r->na : r->nb;
    for (int64_t i = 0; i < n && r->first < 0; i++)
        if (!json_equal(json_object_get(json_array_get(ea, (size_t)i), "params_sha256"),
                        json_object_get(json_array_get(eb, (size_t)i), "params_sha256")))
            r->first = i;
    if (r->first < 0 && r->na != r->nb) r->first = n; /* one run went on */
}

/* One trace line -> its "entries" array (borrowed from *doc). */
static int parse_line(json_t **doc, json_t **ent, const char *line, const char *path, int64_t lineno, CpErr *e) {
    json_error_t je;
    *doc = json_loads(line, 0, &je);
    *ent = *doc ? json_object_get(*doc, "entries") : NULL;
    if (!*doc || !json_is_array(*ent)) {
        int rc = cp_fail(e, "%s: line %lld is not a trace record (%s)", path, (long long)lineno,
                         *doc ? "no entries list" : je.text);
        if (*doc) json_decref(*doc);
        *doc = NULL;
        return rc;
    }
    return CP_OK;
}

/* First differing entry of two records (same order expected); -1 if none. */
static int64_t first_entry(json_t *ea, json_t *eb) {
    size_t n = json_array_size(ea) < json_array_size(eb) ? json_array_size(ea) : json_array_size(eb);
    for (size_t i = 0; i < n; i++)
        if (!json_equal(json_array_get(ea, i), json_array_get(eb, i))) return (int64_t)i;
    return json_array_size(ea) != json_array_size(eb) ? (int64_t)n : -1;
}

static void note_divergence(RunTrace *t, json_t *da, json_t *ea, json_t *eb, int64_t k) {
    t->step = json_integer_value(json_object_get(da, "step"));
    t->epoch = json_integer_value(json_object_get(da, "epoch"));
    json_t *x = json_array_get(ea, (size_t)k), *y = json_array_get(eb, (size_t)k);
    json_t *ex = x ? x : y;
    snprintf(t->entry, sizeof t->entry, "%s", json_string_value(json_array_get(ex, 0)));
    snprintf(t->hash_a, sizeof t->hash_a, "%s", x ? json_string_value(json_array_get(x, 1)) : "(absent)");
    snprintf(t->hash_b, sizeof t->hash_b, "%s", y ? json_string_value(json_array_get(y, 1)) : "(absent)");
    t->index = k;
}

int cmp_run_traces(RunTrace *t, const char *pa, const char *pb, CpErr *e) {
    memset(t, 0, sizeof *t);
    t->step = -1;
    FILE *fa = fopen(pa, "r"), *fb = fopen(pb, "r");
    if (!fa || !fb) {
        int rc = cp_fail(e, "%s: %s", fa ? pb : pa, strerror(errno));
        if (fa) fclose(fa);
        if (fb) fclose(fb);
        return rc;
    }
    char *la = NULL, *lb = NULL;
    size_t ca = 0, cb = 0;
    int rc = CP_OK;
    for (int64_t line = 1; rc == CP_OK; line++) {
        ssize_t ra = getline(&la, &ca, fa), rb = getline(&lb, &cb, fb);
        if (ra < 0 || rb < 0) {
            if (ra >= 0 || rb >= 0) t->extra = 1; /* one trace is longer */
            break;
        }
        t->nsteps++;
        json_t *da, *db, *ea, *eb;
        if ((rc = parse_line(&da, &ea, la, pa, line, e)) != CP_OK) break;
        if ((rc = parse_line(&db, &eb, lb, pb, line, e)) != CP_OK) {
            json_decref(da);
            break;
        }
        int64_t k = first_entry(ea, eb);
        if (k >= 0) note_divergence(t, da, ea, eb, k);
        json_decref(da), json_decref(db);
        if (k >= 0) break;
    }
    free(la), free(lb);
    fclose(fa), fclose(fb);
    return rc;
}
