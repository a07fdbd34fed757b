/* bench_util.h - timing helpers for bench/bench_<stem>.c: best-of-r wall
 * time of a call, printed in the protocol of bench/run_bench.sh:
 *   BENCH <key> <milliseconds>
 * Timings never appear in tests (STYLE.md): they are reported here only. */
#ifndef CP_BENCH_UTIL_H
#define CP_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ctx.h"

/* --threads N from argv (default: all CPUs). */
static inline int bench_threads(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--threads") == 0) return atoi(argv[i + 1]);
    return 0;
}

/* Run `body` once to warm up, then `reps` times; print the best time. */
#define BENCH_RUN(key, reps, body)                                                     \
    do {                                                                               \
        body;                                                                          \
        double best_ = 1e30;                                                           \
        for (int r_ = 0; r_ < (reps); r_++) {                                          \
            double t0_ = cp_time_sec();                                                \
            body;                                                                      \
            double dt_ = cp_time_sec() - t0_;                                          \
            if (dt_ < best_) best_ = dt_;                                              \
        }                                                                              \
        printf("BENCH %s %.4f\n", (key), 1e3 * best_);                                 \
        fflush(stdout);                                                                \
    } while (0)

#endif
