// attention.cu - CUDA twin of kernels/attention_cpu.c: softmax over rows,
// interp1d (the rel-pos table resampling) and SAM global attention with
// decomposed relative position, forward and backward. Every formula and
// reduction order is stated once in kernels/attention.h; the CP_HD helpers
// there are the ones called here.
//
// Legend: N batch, Hq Wq token grid, T = Hq*Wq, NH heads, HD head dim,
// D = NH*HD, qkv[N,T,3D]; M rows, L row length; Lin Lout table lengths, C
// columns. Global attention row index m = (n*NH + h)*T + i.
//
// Determinism: one thread per output element, each running that element's
// canonical chain (dot products sequential in their k from 0; softmax sums
// and the row dots by the chunk plan, sequentially in one thread per row).
// Backwards are gathers: dk/dv sum over queries, dq over keys, interp1d's
// input rows over the output rows that read them, drelh/drelw over the rows m
// by the chunk plan (one block per table element, plan_block_sum; rows whose
// key coordinate falls outside the grid are skipped but still count in the
// chunk boundaries, as on the CPU). No atomics.
// Scratch (backward): g[N*NH*T,T] (dL/dlogits), gh[N*NH*T,Hq], gw[N*NH*T,Wq]
// from the reserved workspace (cp_cuda_attention_workspace_bytes).
#include <stdint.h>

#include "kernels/attention.h"
#include "kernels/ops_cuda.h"

#define GRID_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// ---- softmax (one thread per row; attention.h order) ----
__device__ inline void softmax_row(float *y, const float *x, int64_t L) {
    float m = x[0];
    for (int64_t j = 1; j < L; j++) m = x[j] > m ? x[j] : m;
    for (int64_t j = 0; j < L; j++) y[j] = softmax_exp(x[j], m);
    float sum = 0.0f;
    for (int64_t c = 0; c < rplan_nchunks(L); c++) sum += rplan_chunk_sum(y, rplan_chunk_lo(c), rplan_chunk_hi(c, L));
    for (int64_t j = 0; j < L; j++) y[j] = y[j] / sum;
}
// s = plan over j of fmaf(a_j, b_j, .)
__device__ inline float plan_dot(const float *a, const float *b, int64_t L) {
    float tot = 0.0f;
    for (int64_t c = 0; c < rplan_nchunks(L); c++) tot += rplan_chunk_dot(a, b, rplan_chunk_lo(c), rplan_chunk_hi(c, L));
    return tot;
}

__global__ void k_softmax_fwd(float *out, const float *inp, int64_t M, int L) {
    GRID_LOOP(r, M) softmax_row(out + r * L, inp + r * L, L);
}
__global__ void k_softmax_bwd(float *dinp, const float *dout, const float *out, int64_t M, int L) {
    GRID_LOOP(r, M) {
        const float *y = out + r * L, *dy = dout + r * L;
        float s = plan_dot(dy, y, L);
        for (int j = 0; j < L; j++) dinp[r * L + j] += softmax_grad(y[j], dy[j], s); // PyTorch: _softmax_backward_data
    }
}

// ---- interp1d ----
__global__ void k_interp_fwd(float *out, const float *inp, int Lin, int Lout, int C) {
    GRID_LOOP(e, (int64_t)Lout * C) {
        int i = (int)(e / C), c = (int)(e % C);
        Interp1dTap t = interp1d_tap(Lin, Lout, i);
        out[e] = interp1d_mix(inp[(int64_t)t.i0 * C + c], inp[(int64_t)t.i1 * C + c], t);
    }
}
// Gather: input row r visits the output rows in increasing order.
__global__ void k_interp_bwd(float *dinp, const float *dout, int Lin, int Lout, int C) {
    GRID_LOOP(e, (int64_t)Lin * C) {
        int r = (int)(e / C), c = (int)(e % C);
        float acc = 0.0f;
        for (int i = 0; i < Lout; i++) {
            Interp1dTap t = interp1d_tap(Lin, Lout, i);
            if (t.i0 > r) break;
            const float g = dout[(int64_t)i * C + c];
            if (t.i0 == r) acc = fmaf(t.w0, g, acc);
            if (t.i1 == r) acc = fmaf(t.w1, g, acc);
        }
        dinp[e] += acc;
    }
}

// ---- attention forward ----
typedef struct {
    int Hq, Wq, NH, HD;
    int64_t T, D, ld; /* tokens, model dim, qkv row stride 3D */
    float scale;
} AttShapeCu;

// logits: att[m, j] = att_logit(qs_i . k_j, q_i . relh[.], q_i . relw[.])
__global__ void k_att_logits(float *att, const float *qkv, const float *relh, const float *relw, AttShapeCu s,
                             int64_t total) {
    GRID_LOOP(e, total) {
        const int64_t m = e / s.T, j = e % s.T, i = m % s.T, nh = m / s.T, n = nh / s.NH, h = nh % s.NH;
        const float *q = qkv + (n * s.T + i) * s.ld + h * s.HD, *k = qkv + (n * s.T + j) * s.ld + s.D + h * s.HD;
        const int qh = (int)(i / s.Wq), qw = (int)(i % s.Wq), kh = (int)(j / s.Wq), kw = (int)(j % s.Wq);
        const float *th = relh + (int64_t)att_rel_row(qh, kh, s.Hq) * s.HD, *tw = relw + (int64_t)att_rel_row(qw, kw, s.Wq) * s.HD;
        float qk = 0.0f, rh = 0.0f, rw = 0.0f;
        for (int d = 0; d < s.HD; d++) qk = fmaf(q[d] * s.scale, k[d], qk); /* (q * scale) @ k.T */
        for (int d = 0; d < s.HD; d++) rh = fmaf(th[d], q[d], rh);          /* einsum bhwc,hkc */
        for (int d = 0; d < s.HD; d++) rw = fmaf(tw[d], q[d], rw);          /* einsum bhwc,wkc */
        att[e] = att_logit(qk, rh, rw);
    }
}
// out[n, i, h*HD + d] = seq over j of att[m, j] * v_j[d]
__global__ void k_att_out(float *out, const float *att, const float *qkv, AttShapeCu s, int64_t total) {
    GRID_LOOP(e, total) { /* e over [N, T, D] */
        const int64_t n = e / (s.T * s.D), i = (e / s.D) % s.T, hd = e % s.D, h = hd / s.HD, d = hd % s.HD;
        const float *a = att + ((n * s.NH + h) * s.T + i) * s.T, *v = qkv + n * s.T * s.ld + 2 * s.D + h * s.HD + d;
        float acc = 0.0f;
        for (int64_t j = 0; j < s.T; j++) acc = fmaf(a[j], v[j * s.ld], acc);
        out[e] = acc;
    }
}

// ---- attention backward ----
// g[m, j] = datt = seq over d of dout_i[d] * v_j[d]
__global__ void k_att_datt(float *g, const float *dout, const float *qkv, AttShapeCu s, int64_t total) {
    GRID_LOOP(e, total) {
        const int64_t m = e / s.T, j = e % s.T, i = m % s.T, nh = m / s.T, n = nh / s.NH, h = nh % s.NH;
        const float *dO = dout + (n * s.T + i) * s.D + h * s.HD, *v = qkv + (n * s.T + j) * s.ld + 2 * s.D + h * s.HD;
        float acc = 0.0f;
        for (int d = 0; d < s.HD; d++) acc = fmaf(dO[d], v[d], acc);
        g[e] = acc;
    }
}
// Per row m: g = softmax_grad(att, datt, plan-dot(datt, att)); gh, gw sums.
__global__ void k_att_grow(float *g, float *gh, float *gw, const float *att, AttShapeCu s, int64_t rows) {
    GRID_LOOP(m, rows) {
        float *gr = g + m * s.T;
        const float *y = att + m * s.T;
        const float sd = plan_dot(gr, y, s.T);
        for (int64_t j = 0; j < s.T; j++) gr[j] = softmax_grad(y[j], gr[j], sd);
        for (int kh = 0; kh < s.Hq; kh++) { /* gh[kh]: sequential over kw */
            float acc = 0.0f;
            for (int kw = 0; kw < s.Wq; kw++) acc += gr[(int64_t)kh * s.Wq + kw];
            gh[m * s.Hq + kh] = acc;
        }
        for (int kw = 0; kw < s.Wq; kw++) { /* gw[kw]: sequential over kh */
            float acc = 0.0f;
            for (int kh = 0; kh < s.Hq; kh++) acc += gr[(int64_t)kh * s.Wq + kw];
            gw[m * s.Wq + kw] = acc;
        }
    }
}
// dq[n, i, h*HD + d] += att_dq(scale, seq_j g k, seq_kh gh relh, seq_kw gw relw)
__global__ void k_att_dq(float *dqkv, const float *g, const float *gh, const float *gw, const float *qkv,
                         const float *relh, const float *relw, AttShapeCu s, int64_t total) {
    GRID_LOOP(e, total) { /* e over [N, T, D] */
        const int64_t n = e / (s.T * s.D), i = (e / s.D) % s.T, hd = e % s.D, h = hd / s.HD, d = hd % s.HD;
        const int64_t m = (n * s.NH + h) * s.T + i;
        const float *gr = g + m * s.T, *k = qkv + n * s.T * s.ld + s.D + h * s.HD + d;
        float a = 0.0f, bh = 0.0f, bw = 0.0f;
        for (int64_t j = 0; j < s.T; j++) a = fmaf(gr[j], k[j * s.ld], a); /* dlogits @ k */
        const int qh = (int)(i / s.Wq), qw = (int)(i % s.Wq);
        for (int kh = 0; kh < s.Hq; kh++) bh = fmaf(gh[m * s.Hq + kh], relh[(int64_t)att_rel_row(qh, kh, s.Hq) * s.HD + d], bh);
        for (int kw = 0; kw < s.Wq; kw++) bw = fmaf(gw[m * s.Wq + kw], relw[(int64_t)att_rel_row(qw, kw, s.Wq) * s.HD + d], bw);
        dqkv[(n * s.T + i) * s.ld + hd] += att_dq(s.scale, a, bh, bw);
    }
}
// dk[j] += scale * seq_i g_ij q_i[d];  dv[j] += seq_i att_ij dout_i[d]
__global__ void k_att_dkdv(float *dqkv, const float *g, const float *att, const float *dout, const float *qkv,
                           AttShapeCu s, int64_t total) {
    GRID_LOOP(e, total) { /* e over [N, T, D]: key j */
        const int64_t n = e / (s.T * s.D), j = (e / s.D) % s.T, hd = e % s.D, h = hd / s.HD, d = hd % s.HD;
        const int64_t m0 = (n * s.NH + h) * s.T;
        const float *q = qkv + n * s.T * s.ld + h * s.HD + d, *dO = dout + n * s.T * s.D + h * s.HD + d;
        float ck = 0.0f, cv = 0.0f;
        for (int64_t i = 0; i < s.T; i++) ck = fmaf(g[(m0 + i) * s.T + j], q[i * s.ld], ck); /* dlogits.T @ q */
        for (int64_t i = 0; i < s.T; i++) cv = fmaf(att[(m0 + i) * s.T + j], dO[i * s.D], cv); /* att.T @ dout */
        float *dk = dqkv + (n * s.T + j) * s.ld + s.D + hd;
        dk[0] += s.scale * ck;
        dk[s.D] += cv;
    }
}
// One block per table element (r, d) of one axis: drel += plan over m.
__global__ void k_att_drel(float *drel, const float *grel, const float *qkv, AttShapeCu s, int axis_h, int64_t rows) {
    const int size = axis_h ? s.Hq : s.Wq;
    const int r = (int)(blockIdx.x / s.HD), d = (int)(blockIdx.x % s.HD);
    float tot = plan_block_sum<float>(rplan_nchunks(rows), [&](int64_t c) {
        float acc = 0.0f;
        for (int64_t m = rplan_chunk_lo(c); m < rplan_chunk_hi(c, rows); m++) {
            const int64_t i = m % s.T, nh = m / s.T, n = nh / s.NH, h = nh % s.NH;
            const int qc = axis_h ? (int)(i / s.Wq) : (int)(i % s.Wq), kc = qc - r + size - 1;
            if (kc < 0 || kc >= size) continue; /* skipped row */
            acc = fmaf(grel[m * size + kc], qkv[(n * s.T + i) * s.ld + h * s.HD + d], acc);
        }
        return acc;
    });
    if (threadIdx.x == 0) drel[blockIdx.x] += tot;
}

// ---- launchers ----
static AttShapeCu att_shape_cu(int Hq, int Wq, int NH, int HD) {
    CP_ASSERT(Hq >= 1 && Wq >= 1 && NH >= 1 && HD >= 1);
    AttShapeCu s = {Hq, Wq, NH, HD, (int64_t)Hq * Wq, (int64_t)NH * HD, 3 * (int64_t)NH * HD, att_scale(HD)};
    return s;
}

void softmax_forward_cuda(float *out, const float *inp, int64_t M, int L, const CpCtx *ctx) {
    if (L <= 0 || M <= 0) return;
    k_softmax_fwd<<<cp_flat_blocks(M), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, inp, M, L);
    CUDA_CHECK_LAUNCH();
}
void softmax_backward_cuda(float *dinp, const float *dout, const float *out, int64_t M, int L, const CpCtx *ctx) {
    if (!dinp || L <= 0 || M <= 0) return;
    k_softmax_bwd<<<cp_flat_blocks(M), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dinp, dout, out, M, L);
    CUDA_CHECK_LAUNCH();
}
void interp1d_forward_cuda(float *out, const float *inp, int Lin, int Lout, int C, const CpCtx *ctx) {
    if ((int64_t)Lout * C <= 0) return;
    k_interp_fwd<<<cp_flat_blocks((int64_t)Lout * C), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, inp, Lin, Lout, C);
    CUDA_CHECK_LAUNCH();
}
void interp1d_backward_cuda(float *dinp, const float *dout, int Lin, int Lout, int C, const CpCtx *ctx) {
    if (!dinp || (int64_t)Lin * C <= 0) return;
    k_interp_bwd<<<cp_flat_blocks((int64_t)Lin * C), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dinp, dout, Lin, Lout, C);
    CUDA_CHECK_LAUNCH();
}

/* out[N,T,D], att[N,NH,T,T], qkv[N,T,3D], relh[2Hq-1,HD], relw[2Wq-1,HD] */
void attention_forward_cuda(float *out, float *att, const float *qkv, const float *relh, const float *relw, int N,
                            int Hq, int Wq, int NH, int HD, const CpCtx *ctx) {
    const AttShapeCu s = att_shape_cu(Hq, Wq, NH, HD);
    const int64_t rows = (int64_t)N * NH * s.T, nlog = rows * s.T, nout = (int64_t)N * s.T * s.D;
    if (rows <= 0) return;
    k_att_logits<<<cp_flat_blocks(nlog), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(att, qkv, relh, relw, s, nlog);
    CUDA_CHECK_LAUNCH();
    k_softmax_fwd<<<cp_flat_blocks(rows), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(att, att, rows, (int)s.T);
    CUDA_CHECK_LAUNCH();
    k_att_out<<<cp_flat_blocks(nout), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(out, att, qkv, s, nout);
    CUDA_CHECK_LAUNCH();
}

/* dqkv[N,T,3D] +=, drelh[2Hq-1,HD] +=, drelw[2Wq-1,HD] += (each may be NULL) */
void attention_backward_cuda(float *dqkv, float *drelh, float *drelw, const float *dout, const float *att,
                             const float *qkv, const float *relh, const float *relw, int N, int Hq, int Wq, int NH,
                             int HD, const CpCtx *ctx) {
    if (!dqkv && !drelh && !drelw) return;
    const AttShapeCu s = att_shape_cu(Hq, Wq, NH, HD);
    const int64_t rows = (int64_t)N * NH * s.T, nlog = rows * s.T, nout = (int64_t)N * s.T * s.D;
    if (rows <= 0) return;
    float *g = (float *)cp_cuda_workspace(ctx, cp_cuda_attention_workspace_bytes(N, Hq, Wq, NH));
    float *gh = g + nlog, *gw = gh + rows * Hq;
    k_att_datt<<<cp_flat_blocks(nlog), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(g, dout, qkv, s, nlog);
    CUDA_CHECK_LAUNCH();
    k_att_grow<<<cp_flat_blocks(rows), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(g, gh, gw, att, s, rows);
    CUDA_CHECK_LAUNCH();
    if (dqkv) {
        k_att_dq<<<cp_flat_blocks(nout), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dqkv, g, gh, gw, qkv, relh, relw, s, nout);
        CUDA_CHECK_LAUNCH();
        k_att_dkdv<<<cp_flat_blocks(nout), CP_FLAT_THREADS, 0, cp_stream(ctx)>>>(dqkv, g, att, dout, qkv, s, nout);
        CUDA_CHECK_LAUNCH();
    }
    if (drelh) {
        k_att_drel<<<(unsigned)((2 * Hq - 1) * HD), CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(drelh, gh, qkv, s, 1, rows);
        CUDA_CHECK_LAUNCH();
    }
    if (drelw) {
        k_att_drel<<<(unsigned)((2 * Wq - 1) * HD), CP_PLAN_THREADS, 0, cp_stream(ctx)>>>(drelw, gw, qkv, s, 0, rows);
        CUDA_CHECK_LAUNCH();
    }
}
