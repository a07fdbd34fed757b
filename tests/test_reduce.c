/* test_reduce.c - the reduction plan (core/reduce.h): results are
 * byte-identical for every thread count, equal to an independent sequential
 * transcription of the plan, and close to a double-precision sum. */
#include <math.h>
#include <string.h>

#include "ctx.h"
#include "harness.h"
#include "philox.h"
#include "reduce.h"

static void fill(float *x, int64_t n, uint32_t stream) {
    CpRngKey key = cp_rng_key(1234, stream);
    for (int64_t i = 0; i < n; i++) x[i] = cp_u01(cp_rng_block(key, 0, 0, (uint32_t)i, 0).v[0]) * 2.0f - 0.7f;
}

/* The plan, transcribed independently: chunks of RCHUNK, sequential within,
 * sequential across. */
static float plan_by_hand(const float *x, int64_t n) {
    float total = 0.0f;
    for (int64_t lo = 0; lo < n; lo += RCHUNK) {
        float part = 0.0f;
        for (int64_t i = lo; i < n && i < lo + RCHUNK; i++) part += x[i];
        total += part;
    }
    return total;
}

static const int thread_counts[] = {1, 2, 3, 8};

TEST(test_sum_thread_independent) {
    const int64_t sizes[] = {0, 1, RCHUNK - 1, RCHUNK, RCHUNK + 1, 3 * RCHUNK + 17, 1000003};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        float *x = cp_malloc(sizeof(float) * (size_t)(n + 1));
        float *part = cp_malloc(sizeof(float) * (size_t)(rplan_nchunks(n) + 1));
        fill(x, n, (uint32_t)s);
        float want = plan_by_hand(x, n);
        double dsum = 0;
        for (int64_t i = 0; i < n; i++) dsum += x[i];
        for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
            CpCtx ctx;
            cp_ctx_init(&ctx, CP_BACKEND_CPU, thread_counts[t], 0);
            float got = rplan_sum_cpu(&ctx, x, n, part);
            CHECKF(memcmp(&got, &want, sizeof got) == 0, "n=%lld threads=%d: %.9g vs plan %.9g", (long long)n,
                   thread_counts[t], got, want);
        }
        CHECKF(fabs(want - dsum) <= 1e-5 * (fabs(dsum) + n), "n=%lld: %.9g vs double %.9g", (long long)n, want,
               dsum);
        cp_free(x);
        cp_free(part);
    }
}

TEST(test_dot_thread_independent) {
    int64_t n = 5 * RCHUNK + 123;
    float *a = cp_malloc(sizeof(float) * (size_t)n), *b = cp_malloc(sizeof(float) * (size_t)n);
    float *part = cp_malloc(sizeof(float) * (size_t)rplan_nchunks(n));
    fill(a, n, 1);
    fill(b, n, 2);
    float want = 0.0f;
    for (int64_t lo = 0; lo < n; lo += RCHUNK) {
        float p = 0.0f;
        for (int64_t i = lo; i < n && i < lo + RCHUNK; i++) p = fmaf(a[i], b[i], p);
        want += p;
    }
    for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
        CpCtx ctx;
        cp_ctx_init(&ctx, CP_BACKEND_CPU, thread_counts[t], 0);
        float got = rplan_dot_cpu(&ctx, a, b, n, part);
        CHECKF(memcmp(&got, &want, sizeof got) == 0, "threads=%d: %.9g vs %.9g", thread_counts[t], got, want);
    }
    /* rplan_dot: the dot-like order, sequential fmaf from 0 with strides. */
    float seq = 0.0f;
    for (int64_t k = 0; k < 100; k++) seq = fmaf(a[2 * k], b[3 * k], seq);
    float got = rplan_dot(a, 2, b, 3, 100);
    CHECK(memcmp(&got, &seq, sizeof got) == 0);
    cp_free(a);
    cp_free(b);
    cp_free(part);
}

TEST(test_sum_nchw) {
    /* Odd shape: chunks straddle image boundaries (HW = 3001 is not a divisor of RCHUNK). */
    int64_t N = 3, C = 5, HW = 3001;
    float *x = cp_malloc(sizeof(float) * (size_t)(N * C * HW));
    fill(x, N * C * HW, 7);
    float *part = cp_malloc(sizeof(float) * (size_t)(C * rplan_nchunks(N * HW)));
    float *flat = cp_malloc(sizeof(float) * (size_t)(N * HW));
    float want[5], got[5];
    for (int64_t c = 0; c < C; c++) { /* gather channel c in batch-major order, then the plan by hand */
        for (int64_t n = 0; n < N; n++) memcpy(flat + n * HW, x + (n * C + c) * HW, sizeof(float) * (size_t)HW);
        want[c] = plan_by_hand(flat, N * HW);
    }
    for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
        CpCtx ctx;
        cp_ctx_init(&ctx, CP_BACKEND_CPU, thread_counts[t], 0);
        memset(got, 0xff, sizeof got); /* poison: every channel must be written */
        rplan_sum_nchw_cpu(&ctx, got, x, N, C, HW, part);
        CHECKF(memcmp(got, want, sizeof got) == 0, "threads=%d", thread_counts[t]);
    }
    cp_free(x);
    cp_free(part);
    cp_free(flat);
}

TEST_MAIN(T(test_sum_thread_independent), T(test_dot_thread_independent), T(test_sum_nchw))
