/* patch_cpu.c - patch embedding and the patch readout (conv-transpose) on the
 * CPU, as GEMMs on the shared engine (kernels/linear.h) over separable views
 * (kernels/patch.h): no im2col buffer, no heap.
 *
 * Layouts and orders: see kernels/patch.h. Mapping to C(i,j) = sum_r A(i,r)B(r,j):
 *   patch fwd   i = token, j = oc, r = k          (B = w^T, packed)
 *   patch dinp  i = token, j = k,  r = oc         (B = w rows in place)
 *   patch dw    i = k,     j = oc, r = token      (B = dout rows in place; chunked)
 *   readout fwd  i = pixel, j = q,  r = ci        (B = w rows in place)
 *   readout dinp i = pixel, j = ci, r = q         (B = w^T, packed)
 *   readout dw   i = ci,    j = q,  r = pixel     (B = dout gather, packed; chunked)
 * Each output has one writer; the sums run in the orders of patch.h whatever
 * the tiling, so results do not depend on the thread count. */
#include "common.h"
#include "kernels/ops.h"
#include "kernels/patch.h"

/* ---- axis callbacks for the engine (prm as filled below) ---- */
static int64_t ax_patch_tok(const int64_t *p, int64_t x) {
    return patch_tok_off(x, (int)p[0], (int)p[1], (int)p[2], (int)p[3]);
}
static int64_t ax_patch_k(const int64_t *p, int64_t k) { return patch_k_off(k, (int)p[0], (int)p[1], (int)p[2]); }
static int64_t ax_nchw_pix(const int64_t *p, int64_t x) { return nchw_pix_off(x, (int)p[0], p[1]); }
static int64_t ax_readout_pix(const int64_t *p, int64_t x) {
    return readout_pix_off(x, (int)p[0], (int)p[1], (int)p[2], (int)p[3]);
}
static int64_t ax_readout_q(const int64_t *p, int64_t q) {
    return readout_q_off(q, (int)p[0], (int)p[1], (int)p[2]);
}

static CpAxis axis_fn(CpOffFn fn, int64_t p0, int64_t p1, int64_t p2, int64_t p3) {
    CpAxis a = {fn, {p0, p1, p2, p3, 0, 0}};
    return a;
}

/* ---- patch embedding ---- */

/* out[N,T,OC], inp[N,C,H,W], w[OC,C,P,P], b[OC] or NULL */
void patch_embed_forward_cpu(float *out, const float *inp, const float *w, const float *b, int N, int C, int H,
                             int W, int OC, int P, const CpCtx *ctx) {
    /* PyTorch: conv2d(inp, w, b, stride=P).flatten(2).transpose(1, 2) */
    int64_t tt = (int64_t)(H / P) * (W / P), kp = (int64_t)C * P * P;
    CpGemm g = {.M = N * tt, .N = OC, .K = kp,
                .a = inp, .a_i = axis_fn(ax_patch_tok, C, H, W, P), .a_r = axis_fn(ax_patch_k, H, W, P, 0),
                .b = w, .b_r = cp_axis_stride(1), .b_j = cp_axis_stride(kp), /* B(k,oc) = w[oc,k] */
                .c = out, .c_i = cp_axis_stride(OC), .c_j = cp_axis_stride(1),
                .mode = CP_GEMM_STORE, .bias = b, .bias_div = 1};
    cp_gemm_cpu(&g, ctx);
}

/* dinp[N,C,H,W] +=, dw[OC,C,P,P] +=, db[OC] += (each may be NULL); dout[N,T,OC] */
void patch_embed_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                              const float *w, int N, int C, int H, int W, int OC, int P, const CpCtx *ctx) {
    int64_t tt = (int64_t)(H / P) * (W / P), kp = (int64_t)C * P * P, m = N * tt;
    if (dinp) { /* PyTorch: conv2d's input gradient (each pixel in one patch) */
        CpGemm g = {.M = m, .N = kp, .K = OC,
                    .a = dout, .a_i = cp_axis_stride(OC), .a_r = cp_axis_stride(1),   /* A(t,oc) = dout[t,oc] */
                    .b = w, .b_r = cp_axis_stride(kp), .b_j = cp_axis_stride(1),      /* B(oc,k) = w[oc,k] */
                    .c = dinp, .c_i = axis_fn(ax_patch_tok, C, H, W, P), .c_j = axis_fn(ax_patch_k, H, W, P, 0),
                    .mode = CP_GEMM_ACCUM, .bias_div = 1};
        cp_gemm_cpu(&g, ctx);
    }
    if (dw) { /* PyTorch: conv2d's weight gradient, tokens by the chunk plan */
        CpGemm g = {.M = kp, .N = OC, .K = m,
                    .a = inp, .a_i = axis_fn(ax_patch_k, H, W, P, 0), .a_r = axis_fn(ax_patch_tok, C, H, W, P),
                    .b = dout, .b_r = cp_axis_stride(OC), .b_j = cp_axis_stride(1),   /* B(t,oc) = dout[t,oc] */
                    .c = dw, .c_i = cp_axis_stride(1), .c_j = cp_axis_stride(kp),     /* C(k,oc) = dw[oc,k] */
                    .mode = CP_GEMM_ACCUM_CHUNKED, .bias_div = 1};
        cp_gemm_cpu(&g, ctx);
    }
    if (db) cp_colsum_accum_cpu(db, dout, m, OC, OC, ctx); /* PyTorch: db += dout.sum((0, 1)) */
}

/* ---- readout: conv-transpose, kernel = stride = P ---- */

/* out[N,OC,H*P,W*P], inp[N,C,H,W], w[C,OC,P,P], b[OC] or NULL */
void conv_transpose_patch_forward_cpu(float *out, const float *inp, const float *w, const float *b, int N, int C,
                                      int H, int W, int OC, int P, const CpCtx *ctx) {
    /* PyTorch: conv_transpose2d(inp, w, b, stride=P) */
    int64_t hw = (int64_t)H * W, qq = (int64_t)OC * P * P;
    CpGemm g = {.M = N * hw, .N = qq, .K = C,
                .a = inp, .a_i = axis_fn(ax_nchw_pix, C, hw, 0, 0), .a_r = cp_axis_stride(hw),
                .b = w, .b_r = cp_axis_stride(qq), .b_j = cp_axis_stride(1),       /* B(ci,q) = w[ci,q] */
                .c = out, .c_i = axis_fn(ax_readout_pix, OC, H, W, P), .c_j = axis_fn(ax_readout_q, H, W, P, 0),
                .mode = CP_GEMM_STORE, .bias = b, .bias_div = (int64_t)P * P};
    cp_gemm_cpu(&g, ctx);
}

/* db[o] += sum over (a,c) of the chunk-plan column sums of dout (patch.h). */
static void readout_db(float *db, const float *dout, int N, int H, int W, int OC, int P, const CpCtx *ctx) {
    int64_t pp = (int64_t)P * P, npix = (int64_t)N * H * W;
    CpAxis row = axis_fn(ax_readout_pix, OC, H, W, P), col = axis_fn(ax_readout_q, H, W, P, 0);
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int o = 0; o < OC; o++) {
        float s[256], acc = 0.0f;
        for (int64_t q0 = o * pp; q0 < (o + 1) * pp; q0 += 256) {
            int64_t q1 = q0 + 256 < (o + 1) * pp ? q0 + 256 : (o + 1) * pp;
            cp_colsum_plan(s, dout, &row, &col, npix, q0, q1);
            for (int64_t q = q0; q < q1; q++) acc += s[q - q0]; /* (a, c) row-major, from 0 */
        }
        db[o] += acc;
    }
}

/* dinp[N,C,H,W] +=, dw[C,OC,P,P] +=, db[OC] += (each may be NULL); dout[N,OC,H*P,W*P] */
void conv_transpose_patch_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                       const float *w, int N, int C, int H, int W, int OC, int P,
                                       const CpCtx *ctx) {
    int64_t hw = (int64_t)H * W, qq = (int64_t)OC * P * P;
    CpAxis pix_out = axis_fn(ax_readout_pix, OC, H, W, P), q_out = axis_fn(ax_readout_q, H, W, P, 0);
    if (dinp) { /* PyTorch: conv_transpose2d's input gradient = conv2d(dout, w, stride=P) */
        CpGemm g = {.M = N * hw, .N = C, .K = qq,
                    .a = dout, .a_i = pix_out, .a_r = q_out,
                    .b = w, .b_r = cp_axis_stride(1), .b_j = cp_axis_stride(qq),     /* B(q,ci) = w[ci,q] */
                    .c = dinp, .c_i = axis_fn(ax_nchw_pix, C, hw, 0, 0), .c_j = cp_axis_stride(hw),
                    .mode = CP_GEMM_ACCUM, .bias_div = 1};
        cp_gemm_cpu(&g, ctx);
    }
    if (dw) { /* PyTorch: conv_transpose2d's weight gradient, pixels by the chunk plan */
        CpGemm g = {.M = C, .N = qq, .K = N * hw,
                    .a = inp, .a_i = cp_axis_stride(hw), .a_r = axis_fn(ax_nchw_pix, C, hw, 0, 0),
                    .b = dout, .b_r = pix_out, .b_j = q_out,
                    .c = dw, .c_i = cp_axis_stride(qq), .c_j = cp_axis_stride(1),
                    .mode = CP_GEMM_ACCUM_CHUNKED, .bias_div = 1};
        cp_gemm_cpu(&g, ctx);
    }
    if (db) readout_db(db, dout, N, H, W, OC, P, ctx); /* PyTorch: db += dout.sum((0, 2, 3)) */
}
