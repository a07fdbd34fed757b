/* test_philox.c - Philox4x32 against the Random123 known-answer vectors, and
 * the derived helpers (uniform floats, unbiased integer ranges, normals,
 * permutations) for range and basic statistics. Everything here is
 * deterministic, so the statistical checks cannot flake: they either hold for
 * this generator or they do not. */
#include <math.h>

#include "harness.h"
#include "philox.h"

typedef struct {
    int rounds;
    uint32_t ctr[4], key[2], out[4];
} Kat;

/* Random123 kat_vectors, philox4x32 with 7 and 10 rounds. */
static const Kat kats[] = {
    {7, {0, 0, 0, 0}, {0, 0}, {0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48}},
    {7, {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
     {0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662}},
    {7, {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
     {0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a}},
    {10, {0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {10, {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {10, {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

TEST(test_known_answers) {
    for (size_t i = 0; i < sizeof kats / sizeof kats[0]; i++) {
        CpU32x4 c = {{kats[i].ctr[0], kats[i].ctr[1], kats[i].ctr[2], kats[i].ctr[3]}};
        CpU32x4 r = philox4x32_r(c, kats[i].key[0], kats[i].key[1], kats[i].rounds);
        for (int w = 0; w < 4; w++)
            CHECKF(r.v[w] == kats[i].out[w], "vector %zu word %d: got %08x want %08x", i, w, r.v[w],
                   kats[i].out[w]);
    }
    /* cp_rng_block is philox4x32_10 on (step, sample, element, draw) with key (seed, stream). */
    CpU32x4 r = cp_rng_block(cp_rng_key(0xa4093822, 0x299f31d0), 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344);
    CHECK(r.v[0] == 0xd16cfe09 && r.v[3] == 0x24126ea1);
}

TEST(test_uniform_floats) {
    CHECK(cp_u01(0) == 0.0f);
    CHECK(cp_u01(0xffffffffu) < 1.0f);
    CHECK(cp_u01(0xffffffffu) == 1.0f - 0x1p-24f);
    CHECK(cp_u01_open(0) > 0.0f);
    CHECK(cp_u01_open(0xffffffffu) < 1.0f);
    CpRngKey key = cp_rng_key(42, 1);
    double sum = 0;
    int n = 1 << 20;
    for (int i = 0; i < n; i++) sum += cp_u01(cp_rng_block(key, 0, 0, (uint32_t)i, 0).v[0]);
    CHECKF(fabs(sum / n - 0.5) < 2e-3, "mean %f", sum / n);
}

TEST(test_below_unbiased) {
    CpRngKey key = cp_rng_key(7, 3);
    /* Chi-square over 10 bins, 200k draws: 9 degrees of freedom, 99.99th
     * percentile is 33.7. */
    int counts[10] = {0}, n = 200000;
    for (int i = 0; i < n; i++) {
        uint32_t v = cp_rng_below(key, 1, 2, (uint32_t)i, 10);
        CHECKF(v < 10, "value %u", v);
        if (v < 10) counts[v]++;
    }
    double chi2 = 0, expect = n / 10.0;
    for (int b = 0; b < 10; b++) chi2 += (counts[b] - expect) * (counts[b] - expect) / expect;
    CHECKF(chi2 < 33.7, "chi2 %f", chi2);
    /* n = 2^31 + 1 rejects almost half of all words: still in range. */
    uint32_t big = 0x80000001u, hi = 0;
    for (int i = 0; i < 10000; i++) {
        uint32_t v = cp_rng_below(key, 0, 0, (uint32_t)i, big);
        CHECK(v < big);
        if (v > hi) hi = v;
    }
    CHECKF(hi > 0x7f000000u, "max %u suspiciously small", hi);
    CHECK(cp_rng_below(key, 0, 0, 0, 1) == 0);
}

TEST(test_normal_moments) {
    CpRngKey key = cp_rng_key(123, 9);
    int n = 1 << 20;
    double s = 0, s2 = 0, s4 = 0;
    for (int i = 0; i < n; i++) {
        double x = cp_rng_normal(key, 0, 0, (uint32_t)i);
        CHECK(isfinite(x));
        s += x;
        s2 += x * x;
        s4 += x * x * x * x;
    }
    double mean = s / n, var = s2 / n - mean * mean, kurt = s4 / n;
    CHECKF(fabs(mean) < 0.005, "mean %f", mean);
    CHECKF(fabs(var - 1.0) < 0.01, "variance %f", var);
    CHECKF(fabs(kurt - 3.0) < 0.05, "fourth moment %f (normal: 3)", kurt);
}

TEST(test_permutation) {
    enum { N = 1000 };
    uint32_t p[N], q[N], r[N];
    int seen[N] = {0};
    cp_rng_permutation(p, N, cp_rng_key(42, 0), 5, 0);
    cp_rng_permutation(q, N, cp_rng_key(42, 0), 5, 0);
    cp_rng_permutation(r, N, cp_rng_key(43, 0), 5, 0);
    int fixed = 0, same_q = 1, same_r = 1;
    for (int i = 0; i < N; i++) {
        CHECK(p[i] < N);
        if (p[i] < N) seen[p[i]]++;
        fixed += p[i] == (uint32_t)i;
        same_q &= p[i] == q[i];
        same_r &= p[i] == r[i];
    }
    for (int i = 0; i < N; i++) CHECKF(seen[i] == 1, "index %d appears %d times", i, seen[i]);
    CHECK(same_q);  /* same key and counter: same permutation */
    CHECK(!same_r); /* another seed: another permutation */
    CHECKF(fixed < 10, "%d fixed points (expected about 1)", fixed);
    uint32_t one[1];
    cp_rng_permutation(one, 1, cp_rng_key(1, 1), 0, 0);
    CHECK(one[0] == 0);
}

TEST_MAIN(T(test_known_answers), T(test_uniform_floats), T(test_below_unbiased), T(test_normal_moments),
          T(test_permutation))
