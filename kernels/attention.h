/* attention.h - the shared arithmetic of the ViT attention ops (softmax,
 * 1-D linear table resampling, SAM global attention with decomposed relative
 * position): every per-element formula the CPU loops (attention_cpu.c) and
 * the future CUDA kernels compute, written once (DESIGN.md rule 2). Compiles
 * as C11 and as CUDA C++: no OpenMP, no C-only constructs.
 *
 * Dimension legend: N batch, Hq Wq token grid, T = Hq*Wq tokens, NH heads,
 * HD head dim, D = NH*HD, M rows, L row length, Lin Lout table lengths,
 * C table columns. qkv[N,T,3D] holds [q | k | v], each head-major: head h of
 * token t uses qkv[n, t, part*D + h*HD + d].
 *
 * Reduction orders (DESIGN.md rule 1), fixed by the shapes only. "seq fmaf
 * over k" means acc = 0; for k in increasing order: acc = fmaf(a_k, b_k, acc).
 * "plan" means core/reduce.h: chunks of RCHUNK consecutive indices, each
 * summed sequentially from 0, chunk partials summed sequentially from 0.
 *
 * softmax (rows of length L):
 *   m = max_j x_j;  e_j = cp_expf(x_j - m);  S = plan sum over j of e_j;
 *   y_j = e_j / S.
 *   backward: s = plan over j of fmaf(dy_j, y_j, .);  dx_j += y_j * (dy_j - s).
 *
 * interp1d (PyTorch F.interpolate(mode="linear", align_corners=False) on
 * (1, C, Lin) -> Lout, CPU kernel of torch 1.13): interp1d_tap() below;
 *   out[i][c] = fmaf(inp[i0][c], w0, inp[i1][c] * w1)   (bit-identical to torch)
 *   backward (gather): for input row r, acc = 0; for i = 0..Lout-1 in order:
 *   if i0(i) == r: acc = fmaf(w0, g[i], acc); if i1(i) == r: acc = fmaf(w1,
 *   g[i], acc); then dinp[r] += acc   (bit-identical to torch's scatter loop).
 *
 * attention, per (n, head h), query i = (qh, qw), key j = (kh, kw), scale =
 * att_scale(HD), qs = q * scale elementwise (rounded, as torch's q * scale):
 *   qk_ij  = seq fmaf over d of qs_i[d] * k_j[d]
 *   rh_i,kh = seq fmaf over d of q_i[d] * relh[qh - kh + Hq - 1][d]   (unscaled q)
 *   rw_i,kw = seq fmaf over d of q_i[d] * relw[qw - kw + Wq - 1][d]
 *   logit_ij = (qk_ij + rh_i,kh) + rw_i,kw;   att_i = softmax over j (above)
 *   out_i[d] = seq fmaf over j of att_ij * v_j[d]
 * backward (dout = dL/dout):
 *   datt_ij = seq fmaf over d of dout_i[d] * v_j[d]
 *   s_i     = plan over j of fmaf(datt_ij, att_ij, .)
 *   g_ij    = att_ij * (datt_ij - s_i)                       (dL/dlogit)
 *   gh_i,kh = seq sum over kw of g_i,(kh,kw);  gw_i,kw = seq sum over kh of g_i,(kh,kw)
 *   dq_i[d] = (scale * A + Bh) + Bw,  A = seq fmaf over j of g_ij * k_j[d],
 *             Bh = seq fmaf over kh of gh_i,kh * relh[qh-kh+Hq-1][d],
 *             Bw = seq fmaf over kw of gw_i,kw * relw[qw-kw+Wq-1][d]
 *   dk_j[d] = scale * (seq fmaf over i of g_ij * q_i[d])
 *   dv_j[d] = seq fmaf over i of att_ij * dout_i[d]
 *   drelh[r][d] += plan over the row index m = (n*NH + h)*T + i (batch-major,
 *             all heads) of fmaf(gh_m,kh, q_m[d]) with kh = qh - r + Hq - 1;
 *             rows m whose kh falls outside [0, Hq) contribute nothing (they
 *             are skipped, but still count in the chunk boundaries). drelw
 *             the same with (qw, kw, Wq).
 * How scale enters: the logits use qs = fl(q * scale); the gradient flows
 * back through that product as in autograd, i.e. the sums over keys (for dq)
 * and over queries (for dk) are taken unscaled and multiplied by scale once,
 * after the sum; the relative-position terms never see scale.
 * Every gradient is a gather: each element of dqkv, drelh, drelw has exactly
 * one writer, which adds (+=) its finished sum once (ops.h convention). */
#ifndef CP_ATTENTION_H
#define CP_ATTENTION_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "dmath.h"
#include "hd.h"
#include "reduce.h"

/* Limits of the CPU path's fixed-size stack tiles: grid sides up to 64 (SAM
 * global attention on 64 x 64 tokens; Cellpose uses 32 x 32), head dim up to
 * 128 (SAM / Cellpose: 64). */
#define CP_ATT_MAX_SIDE 64
#define CP_ATT_MAX_HD 128

/* HD^-0.5 rounded once to float (torch: q * head_dim**-0.5, the Python double
 * rounded to float when it multiplies a float tensor). */
CP_HD static inline float att_scale(int HD) { return (float)(1.0 / sqrt((double)HD)); }

/* ---- softmax ---- */
CP_HD static inline float softmax_exp(float x, float rowmax) { return cp_expf(x - rowmax); } // PyTorch: exp(x - max)
/* dL/dx_j = y_j * (dy_j - sum_k dy_k y_k); s is that sum. */
CP_HD static inline float softmax_grad(float y, float dy, float s) { return y * (dy - s); }

/* ---- interp1d: index and weights of output row i ---- */
typedef struct {
    int i0, i1;   /* the two input rows read */
    float w0, w1; /* their weights, w0 = 1 - w1 */
} Interp1dTap;

/* PyTorch 1.13 CPU (ATen/native/UpSample.h, compute_source_index_and_lambda):
 * scale = (float)Lin / Lout in float; src = scale * (i + 0.5) - 0.5 in double,
 * clamped at 0; i0 = (int)src; i1 = i0 + (i0 < Lin - 1); w1 = (float)(src - i0)
 * and w0 = 1 - w1 in float. Lin == Lout is an exact copy. */
CP_HD static inline Interp1dTap interp1d_tap(int Lin, int Lout, int i) {
    Interp1dTap t;
    if (Lin == Lout) {
        t.i0 = i;
        t.i1 = i;
        t.w0 = 1.0f;
        t.w1 = 0.0f;
        return t;
    }
    float scale = (float)Lin / (float)Lout;
    double src = (double)scale * ((double)i + 0.5);
    src = src - 0.5;
    if (src < 0.0) src = 0.0;
    t.i0 = (int)src;
    t.i1 = t.i0 < Lin - 1 ? t.i0 + 1 : t.i0;
    t.w1 = (float)(src - (double)t.i0);
    t.w0 = 1.0f - t.w1;
    return t;
}

/* out = inp[i0] * w0 + inp[i1] * w1, with the one fused multiply-add the
 * torch 1.13 CPU build performs (measured bit-identical). */
CP_HD static inline float interp1d_mix(float a0, float a1, Interp1dTap t) { return fmaf(a0, t.w0, a1 * t.w1); }

/* ---- attention ---- */
/* Row of the relative-position table for query coordinate qc and key
 * coordinate kc on an axis of `size` tokens: (q - k) + (size - 1). */
CP_HD static inline int att_rel_row(int qc, int kc, int size) { return qc - kc + size - 1; }

/* logit = (q.k scaled + rel_h) + rel_w, in that addition order (SAM). */
CP_HD static inline float att_logit(float qk, float rh, float rw) { return (qk + rh) + rw; }

/* dq = (scale * sum_j g k + sum_kh gh relh) + sum_kw gw relw. */
CP_HD static inline float att_dq(float scale, float a, float bh, float bw) {
    float t = scale * a;
    t = t + bh;
    return t + bw;
}

/* Scratch of the attention ops, in floats, taken from ctx->workspace: the
 * caller sizes it with cp_ctx_workspace(ctx, bytes) before the pass (no
 * allocation inside an op). It depends on the shapes only, never on the
 * thread count, and is reused head after head.
 *  forward:  kT[HD,T]   (k of the current head, transposed)
 *  backward: g[T,T] (dL/dlogits), vT[HD,T], gh[T,Hq], gw[T,Wq], then the
 *            running chunk-plan state of drelh and drelw: partial and total,
 *            (2Hq-1)*HD and (2Wq-1)*HD each.
 * The backward size is the larger one. */
CP_HD static inline int64_t attention_forward_workspace_floats(int Hq, int Wq, int HD) {
    return (int64_t)Hq * Wq * HD;
}
CP_HD static inline int64_t attention_backward_workspace_floats(int Hq, int Wq, int HD) {
    int64_t T = (int64_t)Hq * Wq;
    return T * T + T * HD + T * Hq + T * Wq + 2 * (int64_t)(2 * Hq - 1) * HD + 2 * (int64_t)(2 * Wq - 1) * HD;
}
CP_HD static inline size_t attention_forward_workspace_bytes(int Hq, int Wq, int HD) {
    return sizeof(float) * (size_t)attention_forward_workspace_floats(Hq, Wq, HD);
}
CP_HD static inline size_t attention_backward_workspace_bytes(int Hq, int Wq, int HD) {
    return sizeof(float) * (size_t)attention_backward_workspace_floats(Hq, Wq, HD);
}

#endif
