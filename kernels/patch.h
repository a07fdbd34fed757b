/* patch.h - patch embedding (conv, kernel = stride = P) and the patch readout
 * (conv-transpose, kernel = stride = P): index maps and per-element math,
 * shared by the CPU path (kernels/patch_cpu.c) and the future CUDA kernels.
 *
 * Dimension legend: N batch, C input channels, OC output channels, H W
 * spatial, P patch; patch embed: Hp = H/P, Wp = W/P, T = Hp*Wp tokens,
 * KP = C*P*P; readout: HO = H*P, WO = W*P, Q = OC*P*P.
 *
 * Patch embedding, out[N,T,OC] (token-major, channels-last), inp[N,C,H,W],
 * w[OC,C,P,P], b[OC]; token t = ty*Wp + tx, kernel index k = (ci*P + ky)*P + kx:
 *   out[n,t,oc] = (sequential fmaf over k of inp[n,ci,ty*P+ky,tx*P+kx]*w[oc,k]) + b[oc]
 *   dinp[n,ci,y,x] += sequential fmaf over oc of dout[n,t,oc]*w[oc,k]
 *                     (each pixel lies in exactly one patch: t, k from y, x)
 *   dw[oc,k], db[oc] += chunk plan over the token index i = n*T + t
 * Pixels past the last whole patch (H, W not multiples of P) are ignored, as
 * conv2d(stride = P) does; ops.h asks callers for multiples of P.
 *
 * Readout, out[N,OC,HO,WO], inp[N,C,H,W], w[C,OC,P,P], b[OC] or NULL;
 * pixel index x = n*H*W + i*W + j of the input grid, q = (o*P + a)*P + c:
 *   out[n,o,P*i+a,P*j+c] = (sequential fmaf over ci of inp[n,ci,i,j]*w[ci,q]) + b[o]
 *   dinp[n,ci,i,j] += sequential fmaf over q of dout[n,o,P*i+a,P*j+c]*w[ci,q]
 *   dw[ci,q] += chunk plan over x of inp[n,ci,i,j]*dout[n,o,P*i+a,P*j+c]
 *   db[o] += sum over (a,c) row-major, from 0, of S[o,a,c], where
 *            S[o,a,c] = chunk plan over x of dout[n,o,P*i+a,P*j+c]
 *            (db is reduced exactly like dw with inp = 1, then over the window)
 *
 * The offset helpers below give every operand as a "separable view": element
 * (row, col) at base[row_off(row) + col_off(col)], which is how the CPU GEMM
 * engine (kernels/linear.h) reads the im2col gather and the pixel shuffle
 * without copies. All index arithmetic is 64-bit. */
#ifndef CP_PATCH_H
#define CP_PATCH_H

#include <stdint.h>

#include "hd.h"
#include "kernels/linear.h"

/* ---- patch embedding index maps ---- */
/* Offset of inp[n, 0, ty*P, tx*P] for token x = n*T + t in inp[N,C,H,W]. */
CP_HD static inline int64_t patch_tok_off(int64_t x, int C, int H, int W, int P) {
    int64_t wp = W / P, tt = (int64_t)(H / P) * wp;
    int64_t n = x / tt, t = x % tt;
    return ((n * C) * H + (t / wp) * P) * (int64_t)W + (t % wp) * P;
}
/* Offset of inp[0, ci, ky, kx] for kernel index k = (ci*P + ky)*P + kx. */
CP_HD static inline int64_t patch_k_off(int64_t k, int H, int W, int P) {
    int64_t pp = (int64_t)P * P, ci = k / pp, ky = (k % pp) / P, kx = k % P;
    return (ci * H + ky) * (int64_t)W + kx;
}

/* ---- readout index maps ---- */
/* Offset of t[n, 0, hw] in an NCHW tensor t[N,C,HW] for pixel x = n*HW + hw. */
CP_HD static inline int64_t nchw_pix_off(int64_t x, int C, int64_t HW) { return (x / HW) * C * HW + x % HW; }
/* Offset of out[n, 0, P*i, P*j] in out[N,OC,H*P,W*P] for pixel x = n*H*W + i*W + j. */
CP_HD static inline int64_t readout_pix_off(int64_t x, int OC, int H, int W, int P) {
    int64_t hw = (int64_t)H * W, n = x / hw, i = (x % hw) / W, j = x % W;
    return ((n * OC) * H * P + i * P) * (int64_t)W * P + j * P;
}
/* Offset of out[0, o, a, c] in out[N,OC,H*P,W*P] for q = (o*P + a)*P + c. */
CP_HD static inline int64_t readout_q_off(int64_t q, int H, int W, int P) {
    int64_t pp = (int64_t)P * P, o = q / pp, a = (q % pp) / P, c = q % P;
    return (o * H * P + a) * (int64_t)W * P + c;
}

/* ---- reference element functions (the canonical orders) ---- */
/* out[n,t,oc] of the patch embedding; b may be NULL. */
CP_HD static inline float patch_embed_fwd_elem(const float *inp, const float *w, const float *b, int64_t x, int oc,
                                               int C, int H, int W, int P) {
    int64_t kp = (int64_t)C * P * P, base = patch_tok_off(x, C, H, W, P);
    float acc = 0.0f;
    for (int64_t k = 0; k < kp; k++) acc = cp_mac(acc, inp[base + patch_k_off(k, H, W, P)], w[oc * kp + k]);
    return b ? cp_add_bias(acc, b[oc]) : acc;
}
/* The value added to dinp at token x, kernel index k; dout[N,T,OC]. */
CP_HD static inline float patch_embed_dinp_elem(const float *dout, const float *w, int64_t x, int64_t k, int C,
                                                int OC, int P) {
    int64_t kp = (int64_t)C * P * P;
    float acc = 0.0f;
    for (int oc = 0; oc < OC; oc++) acc = cp_mac(acc, dout[x * OC + oc], w[oc * kp + k]);
    return acc;
}
/* out[n,o,P*i+a,P*j+c] of the readout at pixel x, q = (o,a,c); b may be NULL. */
CP_HD static inline float readout_fwd_elem(const float *inp, const float *w, const float *b, int64_t x, int64_t q,
                                           int C, int H, int W, int OC, int P) {
    int64_t hw = (int64_t)H * W, qq = (int64_t)OC * P * P, base = nchw_pix_off(x, C, hw);
    float acc = 0.0f;
    for (int ci = 0; ci < C; ci++) acc = cp_mac(acc, inp[base + ci * hw], w[ci * qq + q]);
    return b ? cp_add_bias(acc, b[q / ((int64_t)P * P)]) : acc;
}
/* The value added to dinp[n,ci,i,j] (pixel x) of the readout. */
CP_HD static inline float readout_dinp_elem(const float *dout, const float *w, int64_t x, int ci, int H, int W,
                                            int OC, int P) {
    int64_t qq = (int64_t)OC * P * P, base = readout_pix_off(x, OC, H, W, P);
    float acc = 0.0f;
    for (int64_t q = 0; q < qq; q++) acc = cp_mac(acc, dout[base + readout_q_off(q, H, W, P)], w[ci * qq + q]);
    return acc;
}

#endif
