/* augment.c - CPU implementation of train/augment.h: Philox parameter draws
 * and the warp of one image + labels into a B x B training crop.
 *
 * Layouts (planar, row-major): img [C, h, w], lbl [3, h, w] (cellprob or mask
 * ids, dY, dX), img_out [C, B, B], lbl_out [3, B, B].
 *
 * Determinism: aug_draw is a pure function of (key, epoch, image, sizes,
 * settings); aug_apply's output rows are independent (one writer per output
 * element), each computed by the CP_HD per-pixel functions of augment.h, so
 * the bytes do not depend on ctx->threads. */
#include "augment.h"

#include <math.h>

#include "common.h"

/* One uniform in [0, 1) for quantity `el` of (epoch, image). */
static float aug_u01(CpRngKey key, uint32_t epoch, uint32_t image, uint32_t el) {
    return cp_u01(cp_rng_block(key, epoch, image, el, 0).v[0]);
}

void aug_draw(AugParams *p, CpRngKey key, uint32_t epoch, uint32_t image, int64_t h, int64_t w, int bsize,
              float rescale, float scale_range, int do_flip) {
    CP_ASSERT(p && h > 0 && w > 0 && bsize > 0 && rescale > 0.0f);
    /* scale_range = max(0, min(2, float(scale_range))) */
    float sr = scale_range > 2.0f ? 2.0f : (scale_range > 0.0f ? scale_range : 0.0f);
    /* flip = np.random.rand() > .5 (drawn even when do_flip is off, as Cellpose) */
    int flip = aug_u01(key, epoch, image, AUG_EL_FLIP) > 0.5f;
    p->flip = do_flip ? flip : 0;
    /* theta = np.random.rand() * np.pi * 2 */
    p->theta = aug_u01(key, epoch, image, AUG_EL_THETA) * 6.28318530717958647692f;
    /* scale = (1 - scale_range/2) + scale_range * rand(); scale *= 1/rescale */
    float scale = (1.0f - 0.5f * sr) + sr * aug_u01(key, epoch, image, AUG_EL_SCALE);
    p->scale = scale * (1.0f / rescale);
    /* dxy = (rand(2) - .5) * max(0, [Lx*scale - xy[1], Ly*scale - xy[0]]) */
    float rx = (float)w * p->scale - (float)bsize, ry = (float)h * p->scale - (float)bsize;
    rx = rx > 0.0f ? rx : 0.0f;
    ry = ry > 0.0f ? ry : 0.0f;
    p->dxy[0] = (aug_u01(key, epoch, image, AUG_EL_DX) - 0.5f) * rx;
    p->dxy[1] = (aug_u01(key, epoch, image, AUG_EL_DY) - 0.5f) * ry;
}

/* Output row y of every plane. */
static void aug_row(float *img_out, float *lbl_out, const float *img, const float *lbl, int C, int64_t h,
                    int64_t w, int bsize, const AugWarp *wp, int flip, int y) {
    const int64_t plane_in = h * w, plane_out = (int64_t)bsize * bsize;
    for (int x = 0; x < bsize; x++) {
        float sx, sy;
        aug_src_coord(wp, x, y, &sx, &sy);
        int64_t o = (int64_t)y * bsize + x;
        /* cv2.warpAffine(img[k], M, (B, B), flags=INTER_LINEAR) */
        for (int k = 0; k < C; k++)
            img_out[k * plane_out + o] = aug_sample_bilinear(img + k * plane_in, h, w, sx, sy, flip);
        if (!lbl) continue;
        /* channel 0 INTER_NEAREST, flows INTER_LINEAR; labels[-1] = -labels[-1] on flip */
        lbl_out[o] = aug_sample_nearest(lbl, h, w, sx, sy, flip);
        float vy = aug_sample_bilinear(lbl + plane_in, h, w, sx, sy, flip);
        float vx = aug_sample_bilinear(lbl + 2 * plane_in, h, w, sx, sy, flip);
        if (flip) vx = -vx;
        aug_rotate_flow(wp, vy, vx, &lbl_out[plane_out + o], &lbl_out[2 * plane_out + o]);
    }
}

void aug_apply(float *img_out, float *lbl_out, const float *img, const float *lbl, int C, int64_t h, int64_t w,
               int bsize, const AugParams *p, const CpCtx *ctx) {
    CP_ASSERT(img_out && img && p && ctx && C >= 0 && h > 0 && w > 0 && bsize > 0);
    CP_ASSERT((lbl == NULL) == (lbl_out == NULL));
    AugWarp wp = aug_warp(p, h, w, bsize);
    int threads = ctx->threads > 0 ? ctx->threads : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int y = 0; y < bsize; y++) aug_row(img_out, lbl_out, img, lbl, C, h, w, bsize, &wp, p->flip, y);
}
