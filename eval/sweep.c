/* sweep.c - parameter grids, running `infer` as a child process, and the
 * agreement matrix between settings. Contract: sweep.h. H W spatial. */
#include "sweep.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"

int sw_grid_add(SwGrid *g, const char *flag, const char *key, const char *list, int integer, CpErr *e) {
    if (g->naxes >= SW_MAXAXES) return cp_fail(e, "--%s: too many sweep axes (at most %d)", flag, SW_MAXAXES);
    SwAxis *a = &g->axes[g->naxes];
    memset(a, 0, sizeof *a);
    a->flag = flag, a->key = key;
    const char *s = list;
    while (1) {
        size_t len = strcspn(s, ",");
        if (a->n >= SW_MAXVALS) return cp_fail(e, "--%s: at most %d values", flag, SW_MAXVALS);
        if (len == 0 || len >= sizeof a->vals[0]) return cp_fail(e, "--%s: bad list '%s' (expected numbers like 0.1,0.3)", flag, list);
        memcpy(a->vals[a->n], s, len);
        a->vals[a->n][len] = 0;
        char *end;
        double v = strtod(a->vals[a->n], &end);
        if (*end || !isfinite(v) || (integer && v != floor(v)))
            return cp_fail(e, "--%s: '%s' is not %s", flag, a->vals[a->n], integer ? "an integer" : "a number");
        for (int i = 0; i < a->n; i++)
            if (strtod(a->vals[i], NULL) == v) return cp_fail(e, "--%s: value %s given twice", flag, a->vals[a->n]);
        a->n++;
        if (!s[len]) break;
        s += len + 1;
    }
    g->naxes++;
    return CP_OK;
}

int64_t sw_npoints(const SwGrid *g) {
    int64_t n = 1;
    for (int a = 0; a < g->naxes; a++) n *= g->axes[a].n;
    return n;
}

const char *sw_value(const SwGrid *g, int64_t p, int a) {
    int64_t stride = 1;
    for (int b = g->naxes - 1; b > a; b--) stride *= g->axes[b].n;
    return g->axes[a].vals[(p / stride) % g->axes[a].n];
}

void sw_label(const SwGrid *g, int64_t p, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int a = 0; a < g->naxes && used < n; a++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s=%s", a ? " " : "", g->axes[a].key, sw_value(g, p, a));
    if (g->naxes == 0) snprintf(buf, n, "default");
}

int sw_find_infer(char *path, size_t n, CpErr *e) {
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = 0;
        snprintf(path, n, "%s/infer", dirname(self));
        if (access(path, X_OK) == 0) return CP_OK;
    }
    const char *bin = getenv("CP_BIN");
    if (bin && bin[0]) {
        snprintf(path, n, "%s/infer", bin);
        if (access(path, X_OK) == 0) return CP_OK;
    }
    return cp_fail(e, "eval --sweep: the infer program is not next to eval (nor in $CP_BIN); build it with make");
}

/* Read both pipes to the end (poll: neither can fill up and block the child). */
static void drain(int fo, int fe, char **out, size_t *no, char **err, size_t *ne) {
    size_t co = 4096, ce = 4096;
    *out = cp_malloc(co), *err = cp_malloc(ce);
    *no = *ne = 0;
    struct pollfd pf[2] = {{fo, POLLIN, 0}, {fe, POLLIN, 0}};
    int open_n = 2;
    while (open_n > 0) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int k = 0; k < 2; k++) {
            if (pf[k].fd < 0 || !(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char **buf = k ? err : out;
            size_t *len = k ? ne : no, *cap = k ? &ce : &co;
            if (*cap - *len < 4096) {
                char *nb = cp_malloc(*cap * 2);
                memcpy(nb, *buf, *len);
                cp_free(*buf);
                *buf = nb, *cap *= 2;
            }
            ssize_t r = read(pf[k].fd, *buf + *len, *cap - *len - 1);
            if (r > 0) {
                *len += (size_t)r;
            } else if (r == 0 || errno != EINTR) {
                close(pf[k].fd);
                pf[k].fd = -1;
                open_n--;
            }
        }
    }
    (*out)[*no] = 0, (*err)[*ne] = 0;
}

int sw_run_capture(char **out, char *const *argv, CpErr *e) {
    *out = NULL;
    int po[2], pe[2];
    if (pipe(po) != 0) return cp_fail(e, "%s: pipe failed (%s)", argv[0], strerror(errno));
    if (pipe(pe) != 0) {
        close(po[0]), close(po[1]);
        return cp_fail(e, "%s: pipe failed (%s)", argv[0], strerror(errno));
    }
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return cp_fail(e, "%s: fork failed (%s)", argv[0], strerror(errno));
    }
    if (pid == 0) { /* child: stdout and stderr into the pipes, then exec */
        dup2(po[1], 1), dup2(pe[1], 2);
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        execv(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]), close(pe[1]);
    char *o, *err;
    size_t no, ne;
    drain(po[0], pe[0], &o, &no, &err, &ne);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    int rc = CP_OK;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        while (ne > 0 && (err[ne - 1] == '\n' || err[ne - 1] == '\r')) err[--ne] = 0;
        char *last = strrchr(err, '\n');
        rc = cp_fail(e, "%s failed (%s %d): %s", argv[0], WIFEXITED(status) ? "exit" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), last ? last + 1 : err);
        cp_free(o);
    } else {
        *out = o;
    }
    cp_free(err);
    return rc;
}

int sw_infer_has_flag(const char *infer, const char *flag) {
    char *argv[] = {(char *)infer, "--help", NULL}, *out;
    CpErr e;
    if (sw_run_capture(&out, argv, &e) != CP_OK) return -1;
    char want[96];
    snprintf(want, sizeof want, "--%s ", flag);
    int has = strstr(out, want) != NULL;
    cp_free(out);
    return has;
}

int sw_agreement(double *A, const uint32_t *const *masks, int np, int64_t H, int64_t W, CpErr *e) {
    static const double th = 0.5;
    for (int i = 0; i < np; i++)
        for (int j = 0; j < np; j++) {
            double ap;
            int64_t tp, fp, fn;
            if (met_average_precision(&ap, &tp, &fp, &fn, masks[i], masks[j], H, W, &th, 1, e)) return CP_EFAIL;
            A[i * np + j] = tp + fp + fn == 0 ? 1.0 : ap; /* both empty: they agree */
        }
    return CP_OK;
}
