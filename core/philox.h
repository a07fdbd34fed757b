/* philox.h - Philox4x32-10 counter-based random numbers, host+device.
 *
 * DESIGN.md rule 6: randomness is a pure function of (key, counter); nothing
 * advances in an order that depends on scheduling. The project-wide layout:
 *
 *   key     = (seed, stream)                 stream: which consumer (data order,
 *                                            crops, init of layer L, layer drop...)
 *   counter = (step, sample, element, draw)  draw: 0, 1, ... when one element
 *                                            needs more than one 128-bit block
 *                                            (rejection sampling)
 *
 * Philox4x32 (Salmon et al., SC'11, "Parallel random numbers: as easy as 1, 2,
 * 3"): 10 rounds of a Feistel-like network with two 32x32->64 multiplies;
 * the key is bumped by the Weyl constants between rounds. Checked against the
 * Random123 known-answer vectors in tests/test_philox.c.
 *
 * Everything here uses integer operations only, except the float helpers at
 * the end, which use core/dmath.h (IEEE ops only), so CPU and GPU agree. */
#ifndef CP_PHILOX_H
#define CP_PHILOX_H

#include <stdint.h>

#include "dmath.h"
#include "hd.h"

typedef struct {
    uint32_t v[4];
} CpU32x4;

typedef struct {
    uint32_t k[2]; /* (seed, stream) */
} CpRngKey;

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

CP_HD static inline CpU32x4 philox4x32_round(CpU32x4 c, uint32_t k0, uint32_t k1) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c.v[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c.v[2];
    CpU32x4 r;
    r.v[0] = (uint32_t)(p1 >> 32) ^ c.v[1] ^ k0;
    r.v[1] = (uint32_t)p1;
    r.v[2] = (uint32_t)(p0 >> 32) ^ c.v[3] ^ k1;
    r.v[3] = (uint32_t)p0;
    return r;
}

/* Philox4x32 with a given number of rounds (7 and 10 have published vectors). */
CP_HD static inline CpU32x4 philox4x32_r(CpU32x4 ctr, uint32_t k0, uint32_t k1, int rounds) {
    for (int i = 0; i < rounds; i++) {
        if (i > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        ctr = philox4x32_round(ctr, k0, k1);
    }
    return ctr;
}

CP_HD static inline CpU32x4 philox4x32_10(CpU32x4 ctr, uint32_t k0, uint32_t k1) {
    return philox4x32_r(ctr, k0, k1, 10);
}

CP_HD static inline CpRngKey cp_rng_key(uint32_t seed, uint32_t stream) {
    CpRngKey key;
    key.k[0] = seed;
    key.k[1] = stream;
    return key;
}

/* The 128-bit block for (step, sample, element, draw). */
CP_HD static inline CpU32x4 cp_rng_block(CpRngKey key, uint32_t step, uint32_t sample, uint32_t element,
                                         uint32_t draw) {
    CpU32x4 c;
    c.v[0] = step;
    c.v[1] = sample;
    c.v[2] = element;
    c.v[3] = draw;
    return philox4x32_10(c, key.k[0], key.k[1]);
}

/* uint32 -> float in [0, 1): the top 24 bits, exactly representable. */
CP_HD static inline float cp_u01(uint32_t u) { return (float)(u >> 8) * 0x1p-24f; }
/* uint32 -> float in (0, 1): never 0, so log() is finite, never 1. The top
 * 23 bits plus one half: (k + 0.5) * 2^-23 needs 24 significant bits, so it
 * is exact (with 24 bits + 0.5 the largest value would round up to 1.0). */
CP_HD static inline float cp_u01_open(uint32_t u) { return ((float)(u >> 9) + 0.5f) * 0x1p-23f; }

/* Uniform integer in [0, n), n >= 1, without modulo bias (Lemire's
 * multiply-shift with rejection). Rejected words are replaced by the next word
 * of the block, then by the blocks draw = 1, 2, ...: a pure function of the
 * counter. The chance that a draw needs a second block is < 4 * n / 2^32. */
CP_HD static inline uint32_t cp_rng_below(CpRngKey key, uint32_t step, uint32_t sample, uint32_t element,
                                          uint32_t n) {
    uint32_t threshold = (uint32_t)(0u - n) % n; /* 2^32 mod n */
    for (uint32_t draw = 0;; draw++) {
        CpU32x4 b = cp_rng_block(key, step, sample, element, draw);
        for (int w = 0; w < 4; w++) {
            uint64_t m = (uint64_t)b.v[w] * n;
            if ((uint32_t)m >= threshold) return (uint32_t)(m >> 32);
        }
    }
}

/* Standard normal (Box-Muller, first output) from words 0 and 1 of the block.
 * Uses the deterministic logf/sinf/cosf of dmath.h. */
CP_HD static inline float cp_rng_normal(CpRngKey key, uint32_t step, uint32_t sample, uint32_t element) {
    CpU32x4 b = cp_rng_block(key, step, sample, element, 0);
    float u1 = cp_u01_open(b.v[0]);
    float u2 = cp_u01(b.v[1]);
    float r = sqrtf(-2.0f * cp_logf(u1));
    return r * cp_cosf(6.28318530717958647692f * u2);
}

/* Fisher-Yates permutation of 0..n-1 keyed by (key, step, sample): from the
 * last index down, j = below(i + 1) drawn at element i. Host only (it writes
 * a whole array); the GPU never needs it. */
static inline void cp_rng_permutation(uint32_t *perm, uint32_t n, CpRngKey key, uint32_t step, uint32_t sample) {
    for (uint32_t i = 0; i < n; i++) perm[i] = i;
    for (uint32_t i = n; i-- > 1;) {
        uint32_t j = cp_rng_below(key, step, sample, i, i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

#endif
