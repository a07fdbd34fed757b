/* test_dynamics.c - infer/dynamics.c against Cellpose v3.1.1.3's own CPU path
 * (tests/ref/dynamics.py): final positions of follow_flows (bitwise), masks of
 * compute_masks without flow-error removal / hole filling (label for label
 * after matching by maximum overlap, then the exact label ids), torch's CPU
 * argsort order on ties, the niter diameter rule, thread identity 1/2/3 and
 * small hand-made cases (no foreground, a single pixel, 1-row image).
 *
 * Cases: dsbfluo (519x253, dsbfluo_000), bbbc039 (520x696, bbbc039_000),
 * usiigaci (1022x1024, usiigaci_000, timed against Cellpose), synth (131x97,
 * a label over 40% of the image plus noisy Voronoi cells, threshold 0.5). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dynamics.h"
#include "optest.h"

/* I64 tensor `name` with exactly numel elements (cp_malloc'ed), NULL + failed check otherwise. */
static int64_t *ref_i64(TestCase *tc, const Ref *r, const char *name, int64_t numel) {
    const StTensor *t = r->ok ? st_find(&r->f, name) : NULL;
    CHECKF(t != NULL, "reference tensor '%s' missing", name);
    if (!t) return NULL;
    int64_t *p = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)(numel > 0 ? numel : 1));
    CpErr e;
    if (st_copy(&r->f, t, ST_I64, p, numel, &e) != CP_OK) {
        CHECKF(0, "%s", e.msg);
        cp_free(p);
        return NULL;
    }
    return p;
}

/* Masks agreement: match each of our labels to the reference label it overlaps
 * most; print pixel agreement under that matching and under identity. */
static void check_masks(TestCase *tc, const char *what, const uint32_t *got, const int64_t *ref, int64_t HW) {
    int64_t ng = 0, nr = 0;
    for (int64_t i = 0; i < HW; i++) {
        ng = got[i] > (uint32_t)ng ? got[i] : ng;
        nr = ref[i] > nr ? ref[i] : nr;
    }
    /* overlap counts per (got label) with its best reference label, via a sparse pass */
    int64_t *best = (int64_t *)cp_calloc((size_t)ng + 1, sizeof(int64_t));
    int64_t *bestn = (int64_t *)cp_calloc((size_t)ng + 1, sizeof(int64_t));
    int64_t *cnt = (int64_t *)cp_calloc((size_t)nr + 1, sizeof(int64_t));
    for (uint32_t l = 1; l <= (uint32_t)ng; l++) { /* O(HW * labels) is fine at these sizes */
        memset(cnt, 0, sizeof(int64_t) * (size_t)(nr + 1));
        for (int64_t i = 0; i < HW; i++)
            if (got[i] == l) cnt[ref[i]]++;
        for (int64_t r = 0; r <= nr; r++)
            if (cnt[r] > bestn[l]) bestn[l] = cnt[r], best[l] = r;
    }
    int64_t agree = 0, same = 0;
    for (int64_t i = 0; i < HW; i++) {
        agree += (got[i] == 0 ? 0 : best[got[i]]) == ref[i];
        same += (int64_t)got[i] == ref[i];
    }
    printf("  %-10s labels %lld vs Cellpose %lld; pixel agreement after matching %.4f%% (%lld of %lld differ); "
           "identical ids %.4f%%\n",
           what, (long long)ng, (long long)nr, 100.0 * (double)agree / (double)HW, (long long)(HW - agree),
           (long long)HW, 100.0 * (double)same / (double)HW);
    CHECKF(ng == nr, "%s: %lld labels vs %lld", what, (long long)ng, (long long)nr);
    CHECKF(same == HW, "%s: %lld pixels with a different label", what, (long long)(HW - same));
    cp_free(best);
    cp_free(bestn);
    cp_free(cnt);
}

/* One reference case: positions and masks vs Cellpose, thread identity, timing. */
static void run_case(TestCase *tc, const char *name, int threads_max) {
    Ref r;
    if (!ref_load(tc, &r, "dynamics")) return;
    char key[128];
    snprintf(key, sizeof key, "%s/cellprob", name);
    const StTensor *tcp = st_find(&r.f, key);
    snprintf(key, sizeof key, "%s/pos", name);
    const StTensor *tpos = st_find(&r.f, key);
    CHECKF(tcp && tpos && tcp->ndim == 2 && tpos->ndim == 2, "%s: reference shapes missing", name);
    if (!tcp || !tpos) { ref_free(&r); return; }
    const int64_t H = tcp->shape[0], W = tcp->shape[1], HW = H * W, NR = tpos->shape[1];
    snprintf(key, sizeof key, "%s/dP", name);
    float *dP = ref_f32(tc, &r, key, 2 * HW);
    snprintf(key, sizeof key, "%s/cellprob", name);
    float *cp = ref_f32(tc, &r, key, HW);
    snprintf(key, sizeof key, "%s/thr", name);
    float *thr = ref_f32(tc, &r, key, 1);
    snprintf(key, sizeof key, "%s/pos", name);
    float *pref = ref_f32(tc, &r, key, 2 * NR);
    snprintf(key, sizeof key, "%s/masks", name);
    int64_t *mref = ref_i64(tc, &r, key, HW);
    snprintf(key, sizeof key, "%s/niter", name);
    uint32_t niter = (uint32_t)ref_int(tc, &r, key);
    if (!dP || !cp || !thr || !pref || !mref) goto out;

    CpErr e;
    CpCtx c1 = ctx_with(1);
    float *F = alloc_f32(2 * HW);
    int64_t *idx = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)HW);
    int64_t N = dyn_flow_field(F, idx, dP, cp, H, W, thr[0], &c1);
    CHECKF(N == NR, "%s: %lld foreground pixels vs Cellpose %lld", name, (long long)N, (long long)NR);
    if (N == NR) {
        float *pos = alloc_f32(2 * N);
        poison(pos, 2 * N);
        double t0 = harness_now();
        CHECK(dyn_follow_flows(pos, F, idx, N, H, W, niter, &c1, &e) == CP_OK);
        double t1 = harness_now();
        check_written(tc, "pos", pos, 2 * N);
        int64_t nbit = 0;
        for (int64_t i = 0; i < 2 * N; i++) nbit += memcmp(&pos[i], &pref[i], 4) != 0;
        printf("  %-10s %lldx%lld N %lld niter %u: positions bitwise-different %lld of %lld\n", name,
               (long long)H, (long long)W, (long long)N, niter, (long long)nbit, (long long)(2 * N));
        snprintf(key, sizeof key, "%s final positions", name);
        check_close(tc, key, pos, pref, 2 * N, 0.0, 0.0);
        cp_free(pos);
        /* whole compute_masks path, threads 1, 2, 3 */
        uint32_t *m[3];
        double tm[3];
        for (int t = 0; t < threads_max; t++) {
            CpCtx ct = ctx_with(t + 1);
            m[t] = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)HW);
            double a = harness_now();
            CHECK(dyn_compute_masks(m[t], dP, cp, H, W, thr[0], niter, 0.4, &ct, &e) == CP_OK);
            tm[t] = harness_now() - a;
            cp_ctx_free(&ct);
        }
        check_masks(tc, name, m[0], mref, HW);
        for (int t = 1; t < threads_max; t++) {
            snprintf(key, sizeof key, "%s masks, %d vs 1 threads", name, t + 1);
            check_same_bytes(tc, key, m[0], m[t], sizeof(uint32_t) * (size_t)HW);
        }
        printf("  %-10s time: follow_flows %.3f s (1 thread); compute_masks %.3f s (1 thr) %.3f s (%d thr)\n",
               name, t1 - t0, tm[0], tm[threads_max - 1], threads_max);
        snprintf(key, sizeof key, "%s/t_compute_us", name);
        if (st_find(&r.f, key)) {
            double tcp_s = 1e-6 * (double)ref_int(tc, &r, key);
            snprintf(key, sizeof key, "%s/t_follow_us", name);
            double tfp_s = 1e-6 * (double)ref_int(tc, &r, key);
            printf("  %-10s Cellpose CPU (numba + torch, 1 thread): follow_flows %.3f s, compute_masks %.3f s\n",
                   name, tfp_s, tcp_s);
        }
        for (int t = 0; t < threads_max; t++) cp_free(m[t]);
    }
    cp_free(F);
    cp_free(idx);
    cp_ctx_free(&c1);
out:
    FREE_ALL(dP, cp, thr, pref);
    cp_free(mref);
    ref_free(&r);
}

TEST(test_dsbfluo) { run_case(tc, "dsbfluo", 3); }
TEST(test_bbbc039) { run_case(tc, "bbbc039", 3); }
TEST(test_usiigaci) {
    if (test_quick()) SKIP("1022x1024 case under CP_TEST_QUICK");
    run_case(tc, "usiigaci", 3);
}
TEST(test_synth) { run_case(tc, "synth", 3); }

/* torch.argsort on the CPU for tie-heavy int32 keys, n from 5 to 70000. */
TEST(test_argsort_torch) {
    Ref r;
    if (!ref_load(tc, &r, "dynamics")) return;
    const int ns[] = {5, 17, 40, 300, 5000, 70000};
    for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++) {
        int64_t n = ns[j];
        char key[64];
        snprintf(key, sizeof key, "sort%lld/keys", (long long)n);
        const StTensor *t = st_find(&r.f, key);
        CHECKF(t != NULL, "%s missing", key);
        if (!t) continue;
        int32_t *k = (int32_t *)cp_malloc(sizeof(int32_t) * (size_t)n);
        CpErr e;
        CHECK(st_copy(&r.f, t, ST_I32, k, n, &e) == CP_OK);
        snprintf(key, sizeof key, "sort%lld/order", (long long)n);
        int64_t *want = ref_i64(tc, &r, key, n);
        int64_t *got = (int64_t *)cp_malloc(sizeof(int64_t) * (size_t)n);
        dyn_argsort_torch(got, k, n);
        int64_t bad = 0;
        for (int64_t i = 0; want && i < n; i++) bad += got[i] != want[i];
        printf("  argsort n=%-6lld positions differing from torch: %lld\n", (long long)n, (long long)bad);
        CHECKF(want && bad == 0, "argsort n=%lld: %lld positions differ", (long long)n, (long long)bad);
        cp_free(k);
        cp_free(want);
        cp_free(got);
    }
    ref_free(&r);
}

TEST(test_niter_rule) {
    Ref r;
    if (!ref_load(tc, &r, "dynamics")) return;
    const StTensor *t = st_find(&r.f, "niter/diam");
    CHECK(t != NULL);
    if (t) {
        int64_t n = t->shape[0];
        double *d = (double *)cp_malloc(sizeof(double) * (size_t)n);
        CpErr e;
        CHECK(st_copy(&r.f, t, ST_F64, d, n, &e) == CP_OK);
        int64_t *want = ref_i64(tc, &r, "niter/niter", n);
        for (int64_t i = 0; want && i < n; i++) {
            uint32_t got = dyn_niter_default(d[i], 30.0, 1);
            CHECKF(got == (uint32_t)want[i], "diameter %g: niter %u vs Cellpose %lld", d[i], got,
                   (long long)want[i]);
        }
        CHECK(dyn_niter_default(17.0, 30.0, 0) == 200);
        CHECK(dyn_niter_default(0.0, 30.0, 1) == 200);
        cp_free(d);
        cp_free(want);
    }
    ref_free(&r);
}

/* Hand-made edge cases: no foreground, one pixel, a 1-row image, NaN input. */
TEST(test_edges) {
    CpCtx c = ctx_with(2);
    CpErr e;
    enum { H = 1, W = 40 };
    float dP[2 * H * W], cp[H * W];
    uint32_t m[H * W];
    for (int i = 0; i < H * W; i++) dP[i] = 0.0f, dP[H * W + i] = 5.0f, cp[i] = -1.0f;
    memset(m, 0xff, sizeof m);
    CHECK(dyn_compute_masks(m, dP, cp, H, W, 0.0f, 0, 0.4, &c, &e) == CP_OK);
    int nz = 0;
    for (int i = 0; i < H * W; i++) nz += m[i] != 0;
    CHECKF(nz == 0, "no foreground: %d labelled pixels", nz);
    /* 12 foreground pixels all flowing right: pile up at x = 11 (count 12 > 10)
     * -> one label of 12 pixels (12 < 0.4 * 40) */
    for (int i = 0; i < 12; i++) cp[i] = 1.0f;
    CHECK(dyn_compute_masks(m, dP, cp, H, W, 0.0f, 30, 0.4, &c, &e) == CP_OK);
    int ones = 0;
    for (int i = 0; i < H * W; i++) ones += m[i] == 1 && i < 12, nz += m[i] > 1 || (m[i] && i >= 12);
    CHECKF(ones == 12 && nz == 0, "1-row pile-up: %d pixels with label 1, %d wrong", ones, nz);
    /* same with max_size_fraction 0.25 (12 > 10 pixels): removed */
    CHECK(dyn_compute_masks(m, dP, cp, H, W, 0.0f, 30, 0.25, &c, &e) == CP_OK);
    nz = 0;
    for (int i = 0; i < H * W; i++) nz += m[i] != 0;
    CHECKF(nz == 0, "big mask not removed: %d labelled pixels", nz);
    cp[3] = NAN;
    CHECK(dyn_compute_masks(m, dP, cp, H, W, 0.0f, 30, 0.4, &c, &e) != CP_OK);
    CHECKF(strstr(e.msg, "dynamics.c") != NULL, "error names the file: %s", e.msg);
    cp_ctx_free(&c);
}

TEST_MAIN(T(test_dsbfluo), T(test_bbbc039), T(test_usiigaci), T(test_synth), T(test_argsort_torch),
          T(test_niter_rule), T(test_edges))
