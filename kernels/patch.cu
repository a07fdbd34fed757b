// patch.cu - CUDA twin of kernels/patch_cpu.c: patch embedding (conv,
// kernel = stride = P) and the patch readout (conv-transpose, kernel =
// stride = P), as GEMMs on the shared engine of kernels/linear.cu over the
// separable views of kernels/patch.h (no im2col buffer).
//
// Layouts and orders: kernels/patch.h. The mapping to C(i,j) = sum_r A B is
// the CPU's, view for view (patch_cpu.c), so every output has the same
// sequential (or chunk-plan) order:
//   patch fwd   i = token, j = oc, r = k        patch dinp  i = token, j = k, r = oc
//   patch dw    i = k, j = oc, r = token (chunked)
//   readout fwd i = pixel, j = q, r = ci        readout dinp i = pixel, j = ci, r = q
//   readout dw  i = ci, j = q, r = pixel (chunked)
// Bias gradients: column sums by the chunk plan; the readout's db[o] then sums
// its P*P window sums sequentially from 0 (one thread per o).
// Each output has one writer: each pixel lies in exactly one patch.
#include <stdint.h>

#include "kernels/ops_cuda.h"
#include "kernels/patch.h"

// ---- patch embedding ----
/* out[N,T,OC], inp[N,C,H,W], w[OC,C,P,P], b[OC] or NULL.
 * PyTorch: conv2d(inp, w, b, stride=P).flatten(2).transpose(1, 2) */
void patch_embed_forward_cuda(float *out, const float *inp, const float *w, const float *b, int N, int C, int H,
                              int W, int OC, int P, const CpCtx *ctx) {
    int64_t tt = (int64_t)(H / P) * (W / P), kp = (int64_t)C * P * P;
    GemmCuda g = {N * tt, OC, kp, inp, gv_map(GV_PATCH_TOK, C, H, W, P), gv_map(GV_PATCH_K, H, W, P, 0),
                  w, gv_stride(1), gv_stride(kp), /* B(k,oc) = w[oc,k] */
                  out, gv_stride(OC), gv_stride(1), GM_STORE, b, 1};
    cp_gemm_cuda(&g, ctx);
}

/* dinp[N,C,H,W] +=, dw[OC,C,P,P] +=, db[OC] += (each may be NULL); dout[N,T,OC] */
void patch_embed_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, int N, int C, int H, int W, int OC, int P, const CpCtx *ctx) {
    int64_t tt = (int64_t)(H / P) * (W / P), kp = (int64_t)C * P * P, m = N * tt;
    if (dinp) { /* PyTorch: conv2d's input gradient */
        GemmCuda g = {m, kp, OC, dout, gv_stride(OC), gv_stride(1), w, gv_stride(kp), gv_stride(1),
                      dinp, gv_map(GV_PATCH_TOK, C, H, W, P), gv_map(GV_PATCH_K, H, W, P, 0), GM_ACCUM, NULL, 1};
        cp_gemm_cuda(&g, ctx);
    }
    if (dw) { /* PyTorch: conv2d's weight gradient, tokens by the chunk plan */
        GemmCuda g = {kp, OC, m, inp, gv_map(GV_PATCH_K, H, W, P, 0), gv_map(GV_PATCH_TOK, C, H, W, P),
                      dout, gv_stride(OC), gv_stride(1), dw, gv_stride(1), gv_stride(kp), GM_ACCUM_CHUNKED, NULL, 1};
        cp_gemm_cuda(&g, ctx);
    }
    if (db) cp_colsum_accum_cuda(db, dout, gv_stride(OC), gv_stride(1), m, OC, ctx); /* db += dout.sum((0, 1)) */
}

// ---- readout: conv-transpose, kernel = stride = P ----
/* out[N,OC,H*P,W*P], inp[N,C,H,W], w[C,OC,P,P], b[OC] or NULL.
 * PyTorch: conv_transpose2d(inp, w, b, stride=P) */
void conv_transpose_patch_forward_cuda(float *out, const float *inp, const float *w, const float *b, int N, int C,
                                       int H, int W, int OC, int P, const CpCtx *ctx) {
    int64_t hw = (int64_t)H * W, qq = (int64_t)OC * P * P;
    GemmCuda g = {N * hw, qq, C, inp, gv_map(GV_NCHW_PIX, C, hw, 0, 0), gv_stride(hw),
                  w, gv_stride(qq), gv_stride(1), /* B(ci,q) = w[ci,q] */
                  out, gv_map(GV_READOUT_PIX, OC, H, W, P), gv_map(GV_READOUT_Q, H, W, P, 0), GM_STORE, b,
                  (int64_t)P * P};
    cp_gemm_cuda(&g, ctx);
}

// db[o] += sum over q in o's window, in order from 0, of S[q] (the chunk-plan
// column sums of dout, computed first into S = workspace-free: dS below).
__global__ void k_readout_db(float *db, const float *S, int OC, int64_t pp) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) return;
    float acc = 0.0f;
    for (int64_t q = o * pp; q < (o + 1) * pp; q++) acc += S[q]; /* (a, c) row-major, from 0 */
    db[o] += acc;
}

/* dinp[N,C,H,W] +=, dw[C,OC,P,P] +=, db[OC] += (each may be NULL); dout[N,OC,H*P,W*P].
 * db needs OC*P*P floats of workspace (cp_cuda_readout_workspace_bytes). */
void conv_transpose_patch_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                        const float *w, int N, int C, int H, int W, int OC, int P,
                                        const CpCtx *ctx) {
    int64_t hw = (int64_t)H * W, qq = (int64_t)OC * P * P;
    GView pix_out = gv_map(GV_READOUT_PIX, OC, H, W, P), q_out = gv_map(GV_READOUT_Q, H, W, P, 0);
    if (dinp) { /* PyTorch: conv_transpose2d's input gradient = conv2d(dout, w, stride=P) */
        GemmCuda g = {N * hw, C, qq, dout, pix_out, q_out, w, gv_stride(1), gv_stride(qq),
                      dinp, gv_map(GV_NCHW_PIX, C, hw, 0, 0), gv_stride(hw), GM_ACCUM, NULL, 1};
        cp_gemm_cuda(&g, ctx);
    }
    if (dw) { /* PyTorch: conv_transpose2d's weight gradient, pixels by the chunk plan */
        GemmCuda g = {C, qq, N * hw, inp, gv_stride(hw), gv_map(GV_NCHW_PIX, C, hw, 0, 0), dout, pix_out, q_out,
                      dw, gv_stride(qq), gv_stride(1), GM_ACCUM_CHUNKED, NULL, 1};
        cp_gemm_cuda(&g, ctx);
    }
    if (db && OC > 0) { /* PyTorch: db += dout.sum((0, 2, 3)) */
        float *S = (float *)cp_cuda_workspace(ctx, sizeof(float) * (size_t)qq);
        CUDA_CHECK(cudaMemsetAsync(S, 0, sizeof(float) * (size_t)qq, cp_stream(ctx))); /* S = 0 + plan sum: exact */
        cp_colsum_accum_cuda(S, dout, pix_out, q_out, N * hw, qq, ctx);
        k_readout_db<<<(OC + 63) / 64, 64, 0, cp_stream(ctx)>>>(db, S, OC, (int64_t)P * P);
        CUDA_CHECK_LAUNCH();
    }
}
