/* test_compare.c - the parts of eval/compare.h the Python test cannot reach
 * easily: ulp distances for F32/F64/F16/BF16 built from neighbours that
 * libm's nextafter produces (1 ulp apart, across +-0, NaN rules), integer
 * tensors, zero-norm conventions; split/merge counts on label images built
 * so that the answer is known by construction; input kinds by content. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "eval/compare.h"
#include "harness.h"

TEST(test_ulp_f32) {
    float a[6], b[6];
    a[0] = 1.0f, b[0] = nextafterf(1.0f, 2.0f);                 /* 1 ulp */
    a[1] = -nextafterf(0.0f, 1.0f), b[1] = nextafterf(0.0f, 1.0f); /* -min sub to +min sub: 2 */
    a[2] = 0.0f, b[2] = -0.0f;                                  /* bits differ, distance 0 */
    a[3] = 3.0f, b[3] = 3.0f;
    a[4] = 1.0f, b[4] = 1.0f;
    a[5] = 2.0f, b[5] = 2.0f;
    for (int k = 0; k < 5; k++) b[5] = nextafterf(b[5], 0.0f); /* 5 ulps down */
    CmpStats s;
    cmp_tensor(&s, ST_F32, a, b, 6);
    printf("  f32: ndiff %lld, max ulp %llu, max|d| %g\n", (long long)s.ndiff, (unsigned long long)s.max_ulp, s.max_abs);
    CHECK(s.ndiff == 4 && s.max_ulp == 5 && !s.identical && s.nonfinite == 0);
    CHECK(s.max_abs == 2.0 - (double)b[5]);
    cmp_tensor(&s, ST_F32, a, b, 3);
    CHECK(s.max_ulp == 2);
    /* NaN against a number: 2^32; two NaNs (same bits): 0 and identical */
    float n1[2] = {NAN, 1.0f}, n2[2] = {0.0f, 1.0f};
    cmp_tensor(&s, ST_F32, n1, n2, 2);
    CHECK(s.max_ulp == (uint64_t)1 << 32 && s.nonfinite == 1 && s.ndiff == 1 && s.l2_diff == 0);
    cmp_tensor(&s, ST_F32, n1, n1, 2);
    CHECK(s.identical && s.max_ulp == 0 && s.ndiff == 0);
    /* zero norms: cosine 1 when both are 0, 0 when one is; rel L2 inf when only a is 0 */
    float z[2] = {0, 0}, o[2] = {1, 0};
    cmp_tensor(&s, ST_F32, z, z, 2);
    CHECK(s.cosine == 1.0 && s.rel_l2 == 0.0);
    cmp_tensor(&s, ST_F32, z, o, 2);
    CHECK(s.cosine == 0.0 && isinf(s.rel_l2) && s.l2_diff == 1.0);
}

TEST(test_ulp_other_dtypes) {
    double a[2] = {1.0, -2.0}, b[2] = {nextafter(1.0, 0.0), -2.0};
    for (int k = 0; k < 3; k++) b[1] = nextafter(b[1], -3.0);
    CmpStats s;
    cmp_tensor(&s, ST_F64, a, b, 2);
    CHECK(s.max_ulp == 3 && s.ndiff == 2);
    /* half: 0x3c00 = 1.0, 0x3c01 next; 0x8001 = -min subnormal vs 0x0001 */
    uint16_t h1[3] = {0x3c00, 0x8001, 0x7e00}, h2[3] = {0x3c01, 0x0001, 0x3c00};
    cmp_tensor(&s, ST_F16, h1, h2, 2);
    CHECK(s.max_ulp == 2 && fabs(s.max_abs - ldexp(1.0, -10)) == 0);
    cmp_tensor(&s, ST_F16, h1, h2, 3);
    CHECK(s.max_ulp == (uint64_t)1 << 16 && s.nonfinite == 1); /* 0x7e00 is a NaN */
    uint16_t b1[1] = {0x3f80}, b2[1] = {0x3f82};              /* bf16 1.0 and 2 ulps up */
    cmp_tensor(&s, ST_BF16, b1, b2, 1);
    CHECK(s.max_ulp == 2 && s.max_abs == ldexp(1.0, -6));
    int64_t i1[3] = {5, -7, 1}, i2[3] = {5, 10, 1};
    cmp_tensor(&s, ST_I64, i1, i2, 3);
    CHECK(s.max_ulp == 17 && s.ndiff == 1 && s.max_abs == 17);
    /* overall: integer tensors count in ndiff only */
    CmpStats all;
    cmp_begin(&all);
    cmp_accumulate(&all, &s, ST_I64);
    cmp_finish(&all);
    CHECK(all.ndiff == 1 && !all.identical && all.l2_diff == 0 && all.max_ulp == 0);
}

/* Two 8 x 8 label images: A has one big object (1) covering columns 0..5 and a
 * small one (2) at column 7; B covers A's object 1 with two objects (1, 2)
 * and covers both A objects' columns 6..7 with one object (3) that holds all
 * of A's object 2 -> split 1 (A1 holds B1, B2), merged 0 (B3 holds only A2
 * mostly: A1 has 0 pixels there). Then the reverse pair: merged 1, split 0.
 * Then a B object exactly half inside an A object (not "mostly"). */
TEST(test_split_merge) {
    enum { H = 8, W = 8 };
    uint32_t a[H * W], b[H * W];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            a[y * W + x] = x <= 5 ? 1 : x == 7 ? 2 : 0;
            b[y * W + x] = x <= 2 ? 1 : x <= 5 ? 2 : 3;
        }
    MaskCmp m;
    CpErr e;
    int64_t *mb = NULL;
    CHECKF(cmp_masks(&m, a, b, H, W, &mb, &e) == CP_OK, "%s", e.msg);
    printf("  split %lld merged %lld, px_fg %lld, px_assign %lld, AP@0.5 %.3f\n", (long long)m.split,
           (long long)m.merged, (long long)m.px_fg, (long long)m.px_assign, m.ap[0]);
    CHECK(m.split == 1 && m.merged == 0 && m.na == 2 && m.nb == 3);
    CHECK(m.px_fg == H); /* column 6: background in A, object 3 in B */
    /* A2 (8 px) vs B3 (16 px): IoU 0.5 -> matched; A1 (48 px) vs B1 or B2 (24 px): IoU 0.5 -> one of them */
    CHECK(mb[2] == 3 && (mb[1] == 1 || mb[1] == 2));
    CHECK(m.px_assign == 24); /* the half of A1 under the unmatched one of B1, B2 */
    cp_free(mb);
    CHECKF(cmp_masks(&m, b, a, H, W, NULL, &e) == CP_OK, "%s", e.msg);
    CHECK(m.split == 0 && m.merged == 1);
    CHECKF(cmp_masks(&m, a, a, H, W, NULL, &e) == CP_OK, "%s", e.msg);
    CHECK(m.identical && m.px_fg == 0 && m.px_assign == 0 && m.ap[0] == 1.0 && m.split == 0);
    /* exactly half is not "mostly": A1 = columns 0..3; B2 = columns 0..1 (all inside A1),
     * B1 = columns 2..5 (half inside) -> A1 holds one B object mostly: no split */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) a[y * W + x] = x <= 3 ? 1 : 0, b[y * W + x] = x <= 1 ? 2 : x <= 5 ? 1 : 0;
    CHECKF(cmp_masks(&m, a, b, H, W, NULL, &e) == CP_OK, "%s", e.msg);
    CHECK(m.split == 0 && m.merged == 0);
    for (int y = 0; y < H; y++) b[y * W + 4] = 0; /* B1 now 12 px, 8 inside A1: mostly -> split */
    CHECKF(cmp_masks(&m, a, b, H, W, NULL, &e) == CP_OK, "%s", e.msg);
    CHECK(m.split == 1 && m.merged == 0);
}

TEST(test_kinds) {
    const char *out = getenv("CP_TEST_OUT");
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", out && out[0] ? out : "/tmp");
    CmpKind k;
    CpErr e;
    snprintf(path, sizeof path, "%s/kind_test.tif", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    fwrite("II*\0\x08\0\0\0", 1, 8, f);
    fclose(f);
    CHECK(cmp_kind(&k, path, &e) == CP_OK && k == CMP_MASK);
    f = fopen(path, "wb");
    fwrite("\x10\0\0\0\0\0\0\0{}", 1, 10, f);
    fclose(f);
    CHECK(cmp_kind(&k, path, &e) == CP_OK && k == CMP_MODEL);
    unlink(path);
    CHECK(cmp_kind(&k, dir, &e) == CP_OK && k == CMP_MASK_DIR);
    CHECK(cmp_kind(&k, "/nonexistent_cp/x.bin", &e) == CP_EFAIL && strstr(e.msg, "/nonexistent_cp/x.bin"));
}

TEST_MAIN(T(test_ulp_f32), T(test_ulp_other_dtypes), T(test_split_merge), T(test_kinds))
