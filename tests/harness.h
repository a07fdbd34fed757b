/* harness.h - the C unit-test harness: a test is a function, a check records a
 * failure and goes on, the run ends with the plain line `N passed, N failed`
 * and a non-zero exit if anything failed.
 *
 *   TEST(test_sum) { CHECK(1 + 1 == 2); CHECKF(x < tol, "x = %g", x); }
 *   TEST_MAIN(T(test_sum), T(test_other))
 *
 * `./test_x name` runs only the tests whose name contains `name`.
 * CP_TEST_QUICK=1 (set by the sanitizer run) asks heavy tests for smaller
 * sizes through test_quick(). A test that cannot run (no GPU) calls SKIP(). */
#ifndef CP_HARNESS_H
#define CP_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *name;
    int failures;
    int skipped;
} TestCase;

typedef void (*TestFn)(TestCase *tc);
typedef struct {
    const char *name;
    TestFn fn;
} TestEntry;

#define TEST(fn) static void fn(TestCase *tc)
#define T(fn) {#fn, fn}

/* Stop printing after this many failed checks per test (the count goes on). */
#define HARNESS_MAX_PRINTED 10

#define CHECKF(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            if (tc->failures < HARNESS_MAX_PRINTED) {                          \
                fprintf(stdout, "  FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond); \
                fprintf(stdout, __VA_ARGS__);                                  \
                fputc('\n', stdout);                                           \
            }                                                                  \
            tc->failures++;                                                    \
        }                                                                      \
    } while (0)
#define CHECK(cond) CHECKF(cond, "%s", "")

#define SKIP(...)                                                              \
    do {                                                                       \
        fprintf(stdout, "  SKIPPED %s: ", tc->name);                           \
        fprintf(stdout, __VA_ARGS__);                                          \
        fputc('\n', stdout);                                                   \
        tc->skipped = 1;                                                       \
        return;                                                                \
    } while (0)

static inline int test_quick(void) {
    const char *q = getenv("CP_TEST_QUICK");
    return q && q[0] && q[0] != '0';
}

static inline double harness_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int harness_run(const TestEntry *tests, int n, int argc, char **argv) {
    int passed = 0, failed = 0, skipped = 0;
    const char *filter = argc > 1 ? argv[1] : NULL;
    for (int i = 0; i < n; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        TestCase tc = {tests[i].name, 0, 0};
        double t0 = harness_now();
        tests[i].fn(&tc);
        double dt = harness_now() - t0;
        if (tc.failures) {
            failed++;
            printf("FAIL %s (%d failed checks, %.2f s)\n", tc.name, tc.failures, dt);
        } else if (tc.skipped) {
            skipped++;
            printf("SKIP %s\n", tc.name);
        } else {
            passed++;
            printf("PASS %s (%.2f s)\n", tc.name, dt);
        }
        fflush(stdout);
    }
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define TEST_MAIN(...)                                                         \
    int main(int argc, char **argv) {                                          \
        static const TestEntry tests_[] = {__VA_ARGS__};                       \
        return harness_run(tests_, (int)(sizeof tests_ / sizeof tests_[0]), argc, argv); \
    }

#endif
