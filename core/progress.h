/* progress.h - progress line on stderr for long loops: label, count, rate,
 * ETA and a caller-supplied tail (loss, lr...). On a terminal the line is
 * redrawn in place at most 10 times a second; otherwise (logs, CI) a plain
 * line is printed every `plain_every` seconds and at the end. Timing never
 * feeds a computed value. */
#ifndef CP_PROGRESS_H
#define CP_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *label;
    const char *unit;   /* "img", "it", "tile" */
    int64_t total;      /* 0 = unknown */
    double t0, last;    /* start, last print */
    double plain_every; /* seconds between lines when not a terminal */
    int tty;
    FILE *out;
} CpProgress;

void progress_init(CpProgress *p, const char *label, const char *unit, int64_t total);
/* `tail` may be NULL. Prints only when due. */
void progress_update(CpProgress *p, int64_t done, const char *tail);
/* Final line (always printed) with the total time. */
void progress_end(CpProgress *p, int64_t done, const char *tail);
/* Format the progress line into buf (used by update/end; exposed for tests). */
void progress_format(const CpProgress *p, int64_t done, double now, const char *tail, char *buf, size_t n);

#endif
