/* test_masks_pipeline.c - flows -> masks, every step at once, against the
 * REAL Cellpose's dynamics.compute_masks (tests/ref/masks_pipeline.py):
 * given identical dP and cellprob, infer's chain (dyn_compute_masks, then
 * cln_flow_error_remove at 0.4, then cln_fill_holes_remove_small with
 * min_size 15) must give the same label image, pixel for pixel and label
 * for label, on three bundled real images with network-like noise. */
#include <string.h>

#include "cleanup.h"
#include "dynamics.h"
#include "optest.h"

TEST(test_same_masks_as_cellpose) {
    Ref r;
    if (!ref_load(tc, &r, "masks_pipeline")) return;
    int n = (int)ref_int(tc, &r, "n_cases");
    CpCtx ctx = ctx_with(2);
    for (int k = 0; k < n; k++) {
        char name[64];
        snprintf(name, sizeof name, "c%d.cellprob", k);
        const StTensor *t = st_find(&r.f, name);
        if (!t) {
            CHECKF(0, "%s missing", name);
            break;
        }
        int64_t H = t->shape[0], W = t->shape[1], HW = H * W;
        float *cp = ref_f32(tc, &r, name, HW);
        snprintf(name, sizeof name, "c%d.dP", k);
        float *dP = ref_f32(tc, &r, name, 2 * HW);
        snprintf(name, sizeof name, "c%d.masks", k);
        int64_t nm = 0;
        const StTensor *mt = st_find(&r.f, name);
        int64_t *want = cp_malloc(sizeof(int64_t) * (size_t)HW);
        CpErr e;
        CHECK(mt && st_copy(&r.f, mt, ST_I64, want, HW, &e) == CP_OK);
        uint32_t *m = cp_malloc(sizeof(uint32_t) * (size_t)HW);
        CHECKF(dyn_compute_masks(m, dP, cp, H, W, 0.0f, 200, 0.4, &ctx, &e) == CP_OK, "%s", e.msg);
        CHECKF(cln_flow_error_remove(m, dP, H, W, 0.4f, &ctx, &e) == CP_OK, "%s", e.msg);
        CHECKF(cln_fill_holes_remove_small(m, H, W, 15, &e) == CP_OK, "%s", e.msg);
        int64_t diff = 0, maxw = 0, maxo = 0;
        for (int64_t i = 0; i < HW; i++) {
            diff += (int64_t)m[i] != want[i];
            nm += m[i] > 0;
            maxw = want[i] > maxw ? want[i] : maxw;
            maxo = m[i] > maxo ? m[i] : maxo;
        }
        printf("  case %d (%lld x %lld): Cellpose %lld masks, ours %lld; %lld of %lld pixels differ (%lld foreground)\n",
               k, (long long)H, (long long)W, (long long)maxw, (long long)maxo, (long long)diff, (long long)HW,
               (long long)nm);
        CHECKF(diff == 0 && maxw == maxo, "case %d: %lld pixels differ", k, (long long)diff);
        CHECK(maxw > 10); /* a real comparison: many masks survive */
        cp_free(cp), cp_free(dP), cp_free(want), cp_free(m);
    }
    ref_free(&r);
}

TEST_MAIN(T(test_same_masks_as_cellpose))
