/* progress.c - see progress.h. */
#include "progress.h"

#include <string.h>
#include <unistd.h>

#include "common.h"

void progress_init(CpProgress *p, const char *label, const char *unit, int64_t total) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit ? unit : "it";
    p->total = total;
    p->out = stderr;
    p->tty = isatty(fileno(stderr));
    p->plain_every = 10.0;
    p->t0 = p->last = cp_time_sec();
}

static void fmt_hms(double s, char *buf, size_t n) {
    if (s < 0 || s > 1e8) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void progress_format(const CpProgress *p, int64_t done, double now, const char *tail, char *buf, size_t n) {
    double el = now - p->t0;
    double rate = el > 0 ? (double)done / el : 0.0;
    char eta[32], elapsed[32], bar[32];
    fmt_hms(el, elapsed, sizeof elapsed);
    size_t k;
    if (p->total > 0) {
        int width = 20, fill = (int)((double)width * (double)done / (double)p->total);
        if (fill > width) fill = width;
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[width] = 0;
        fmt_hms(rate > 0 ? (double)(p->total - done) / rate : -1, eta, sizeof eta);
        k = (size_t)snprintf(buf, n, "%s [%s] %lld/%lld %3.0f%% | %.2f %s/s | %s elapsed, ETA %s", p->label, bar,
                             (long long)done, (long long)p->total, 100.0 * (double)done / (double)p->total, rate,
                             p->unit, elapsed, eta);
    } else {
        k = (size_t)snprintf(buf, n, "%s %lld | %.2f %s/s | %s elapsed", p->label, (long long)done, rate, p->unit,
                             elapsed);
    }
    if (tail && tail[0] && k < n) snprintf(buf + k, n - k, " | %s", tail);
}

static void emit(CpProgress *p, int64_t done, const char *tail, double now, int final) {
    char line[512];
    progress_format(p, done, now, tail, line, sizeof line);
    if (p->tty) fprintf(p->out, "\r\033[K%s%s", line, final ? "\n" : "");
    else fprintf(p->out, "%s\n", line);
    fflush(p->out);
    p->last = now;
}

void progress_update(CpProgress *p, int64_t done, const char *tail) {
    double now = cp_time_sec();
    if (now - p->last >= (p->tty ? 0.1 : p->plain_every)) emit(p, done, tail, now, 0);
}

void progress_end(CpProgress *p, int64_t done, const char *tail) { emit(p, done, tail, cp_time_sec(), 1); }
