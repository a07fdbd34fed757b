/* test_featmaps.c - infer/featmaps.c's PCA against numpy (tests/ref/featmaps.py:
 * np.cov + np.linalg.eigh, sign rule, projections), on two feature tensors
 * with a clear spectrum (one subsampled), and its determinism across thread
 * counts. The PNG itself is checked by tests/py/test_infer.py. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "featmaps.h"
#include "optest.h"

TEST(test_pca_vs_numpy) {
    Ref r;
    if (!ref_load(tc, &r, "featmaps")) return;
    const int C[2] = {12, 5};
    const int64_t N[2] = {40 * 50, 200 * 100};
    for (int k = 0; k < 2; k++) {
        char nm[32];
        snprintf(nm, sizeof nm, "c%d_f", k);
        float *f = ref_f32(tc, &r, nm, C[k] * N[k]);
        int64_t np_ = 0, ne = 0;
        snprintf(nm, sizeof nm, "c%d_proj", k);
        double *ref = ref_f64v(tc, &r, nm, &np_);
        snprintf(nm, sizeof nm, "c%d_evals", k);
        double *rev = ref_f64v(tc, &r, nm, &ne);
        if (!f || !ref || !rev) {
            cp_free(f), cp_free(ref), cp_free(rev);
            continue;
        }
        CHECK(np_ == 3 * N[k] && ne == 3);
        double *proj = cp_malloc(sizeof(double) * (size_t)(3 * N[k])), ev[3];
        feat_pca3(proj, ev, f, C[k], N[k]);
        double maxd = 0, scale = 0, maxe = 0;
        for (int64_t i = 0; i < 3 * N[k]; i++) {
            maxd = fmax(maxd, fabs(proj[i] - ref[i]));
            scale = fmax(scale, fabs(ref[i]));
        }
        for (int q = 0; q < 3; q++) maxe = fmax(maxe, fabs(ev[q] - rev[q]) / rev[q]);
        printf("  case %d (C %d, %lld px): projections max |diff| %.2e of max %.2f; eigenvalues max rel %.2e\n", k,
               C[k], (long long)N[k], maxd, scale, maxe);
        CHECKF(maxd <= 1e-9 * scale, "case %d: projections differ from numpy by %g", k, maxd);
        CHECKF(maxe <= 1e-10, "case %d: eigenvalues differ from numpy by %g (relative)", k, maxe);
        /* same bits on 1 and 3 threads */
        double *p1 = cp_malloc(sizeof(double) * (size_t)(3 * N[k])), e1[3];
        omp_set_num_threads(1);
        feat_pca3(p1, e1, f, C[k], N[k]);
        omp_set_num_threads(3);
        feat_pca3(proj, ev, f, C[k], N[k]);
        CHECK(memcmp(p1, proj, sizeof(double) * (size_t)(3 * N[k])) == 0 && memcmp(e1, ev, sizeof ev) == 0);
        cp_free(f), cp_free(ref), cp_free(rev), cp_free(proj), cp_free(p1);
    }
    ref_free(&r);
}

TEST(test_layer_names) {
    CpErr e;
    CHECK(feat_check_layer("down0", &e) == CP_OK && feat_check_layer("up3", &e) == CP_OK);
    CHECK(feat_check_layer("output", &e) == CP_OK);
    CHECK(feat_check_layer("down", &e) != CP_OK && strstr(e.msg, "down"));
    CHECK(feat_check_layer("up12", &e) != CP_OK && feat_check_layer("", &e) != CP_OK);
}

TEST_MAIN(T(test_pca_vs_numpy), T(test_layer_names))
