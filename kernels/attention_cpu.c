/* attention_cpu.c - CPU implementation of the ViT attention ops of ops.h:
 * softmax over rows, interp1d (the rel-pos table resampling), and SAM global
 * attention with decomposed relative position, forward and backward.
 *
 * Layouts and the arithmetic (every formula and every reduction order) are
 * stated once in attention.h; this file only schedules that arithmetic:
 *  - OpenMP splits loops whose iterations own distinct outputs (rows, query
 *    blocks, key blocks, table rows); no output is written by two threads,
 *    and which thread computes an output never changes how it is computed.
 *  - The dot products go through one micro-kernel (mk_tile): MR x NR outputs,
 *    each a sequential fmaf chain over k from 0. The compiler vectorizes
 *    ACROSS the NR outputs of a row (independent lanes), never across k, so
 *    the bits do not depend on the SIMD width. Tails are handled by padding
 *    operand tiles with zeros or by repeating the last valid row and dropping
 *    the extra results: a padded lane never feeds a kept output.
 *  - Heads are processed one after the other, threads share the work inside
 *    a head: k (forward) or v (backward) of the head is first transposed into
 *    the workspace so that the dot products over head dims have keys as
 *    contiguous SIMD columns, with key tiles aligned to grid rows (one kh,
 *    consecutive kw) so the rel-pos epilogue is vectorized too.
 *  - No allocation: fixed-size stack tiles (limits CP_ATT_MAX_SIDE,
 *    CP_ATT_MAX_HD in attention.h) and per-head scratch from ctx->workspace,
 *    sized by the caller with cp_ctx_workspace(ctx,
 *    attention_{forward,backward}_workspace_bytes(Hq, Wq, HD)).
 *
 * Dimension legend: N batch, Hq Wq token grid, T = Hq*Wq, NH heads, HD head
 * dim, D = NH*HD; M rows, L row length; Lin Lout table lengths, C columns. */
#include <string.h>

#include "attention.h"
#include "common.h"
#include "ops.h"
#include "reduce.h"

#define MR 8  /* micro-kernel rows: outputs that share a B row */
#define NR 32 /* micro-kernel columns: 2 x 16 (AVX-512) or 4 x 8 (AVX2) float lanes */
#define QB NR /* query rows per task: the transposed query tile is NR wide */
#define KB 16 /* keys per dk/dv task (two MR groups sharing cache lines) */

#if defined(__GNUC__) && !defined(__clang__)
#define UNROLL_MR _Pragma("GCC unroll 8") /* keeps the MR x NR accumulators in registers */
#else
#define UNROLL_MR
#endif

/* The interleaved-row chains below (softmax max and sum, plan dots) are MR
 * independent scalar chains; GCC's vectorizer would turn them into gathers
 * across rows, which are slower than the scalar chains (and change no bit
 * either way: each lane is one row's own chain). */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_VEC __attribute__((optimize("no-tree-vectorize")))
#else
#define NO_VEC
#endif

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- micro-kernel -------------------------------------------------------- */

/* c[r][x] = sum over k < K of a[r][k * sak] * b[k * ldb + x], r < MR, x < NR:
 * every output one sequential fmaf chain in increasing k from 0 (the
 * dot-like order of core/reduce.h). */
static void mk_full(float c[MR][NR], const float *const a[MR], int64_t sak, const float *b, int64_t ldb,
                    int64_t K) {
    float acc[MR][NR];
    for (int r = 0; r < MR; r++)
        for (int x = 0; x < NR; x++) acc[r][x] = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        const float *bk = b + k * ldb;
        UNROLL_MR
        for (int r = 0; r < MR; r++) {
            const float av = a[r][k * sak];
            for (int x = 0; x < NR; x++) acc[r][x] = fmaf(av, bk[x], acc[r][x]);
        }
    }
    memcpy(c, acc, sizeof acc);
}

/* The same for the first nc <= NR columns (column tails); same chains. */
static void mk_tile(float c[MR][NR], const float *const a[MR], int64_t sak, const float *b, int64_t ldb,
                    int64_t K, int nc) {
    if (nc == NR) {
        mk_full(c, a, sak, b, ldb, K);
        return;
    }
    float acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < K; k++) {
        const float *bk = b + k * ldb;
        for (int r = 0; r < MR; r++) {
            const float av = a[r][k * sak];
            for (int x = 0; x < nc; x++) acc[r][x] = fmaf(av, bk[x], acc[r][x]);
        }
    }
    memcpy(c, acc, sizeof acc);
}

/* ---- softmax ---------------------------------------------------------------- */

/* m[r] = max_j x[r][j] for MR rows (one compare chain per row). */
NO_VEC static void rows_max(float m[MR], const float *const x[MR], int64_t L) {
    for (int r = 0; r < MR; r++) m[r] = x[r][0];
    for (int64_t j = 1; j < L; j++) {
        UNROLL_MR
        for (int r = 0; r < MR; r++) m[r] = x[r][j] > m[r] ? x[r][j] : m[r];
    }
}

/* sum[r] = sum_j x[r][j] for MR rows by the chunk plan. */
NO_VEC static void rows_plan_sum(float sum[MR], const float *const x[MR], int64_t L) {
    float part[MR];
    for (int r = 0; r < MR; r++) sum[r] = 0.0f;
    for (int64_t c = 0; c < rplan_nchunks(L); c++) { /* partials combined in chunk order */
        for (int r = 0; r < MR; r++) part[r] = 0.0f;
        for (int64_t j = rplan_chunk_lo(c); j < rplan_chunk_hi(c, L); j++) {
            UNROLL_MR
            for (int r = 0; r < MR; r++) part[r] += x[r][j];
        }
        for (int r = 0; r < MR; r++) sum[r] += part[r];
    }
}

/* y[r] = softmax(x[r]) over L entries for nr <= MR rows (y[r] may alias
 * x[r]). PyTorch: torch.softmax(x, -1). Each row's arithmetic is the order of
 * attention.h (max, exp, chunk-plan sum, division); the rows' sequential
 * chains (max, sum) are interleaved only to overlap their latencies: those
 * read-only passes run on MR rows, rows >= nr repeating row nr-1. */
static void softmax_rows(float *const y[MR], const float *const x[MR], int nr, int64_t L) {
    const float *xs[MR], *ys[MR];
    float m[MR], sum[MR];
    for (int r = 0; r < MR; r++) xs[r] = x[r < nr ? r : nr - 1], ys[r] = y[r < nr ? r : nr - 1];
    rows_max(m, xs, L);
    for (int r = 0; r < nr; r++) {
        const float *xr = x[r];
        float *yr = y[r];
        for (int64_t j = 0; j < L; j++) yr[j] = softmax_exp(xr[j], m[r]);
    }
    rows_plan_sum(sum, ys, L);
    for (int r = 0; r < nr; r++) {
        float *yr = y[r];
        for (int64_t j = 0; j < L; j++) yr[j] = yr[j] / sum[r];
    }
}

/* s[r] = sum_j a[r][j] b[r][j] by the chunk plan (fmaf inside a chunk) for
 * nr <= MR rows, chains interleaved as in softmax_rows. */
NO_VEC static void plan_dot_rows(float s[MR], const float *const a[MR], const float *const b[MR], int nr, int64_t L) {
    const float *as[MR], *bs[MR];
    float part[MR], tot[MR];
    for (int r = 0; r < MR; r++) as[r] = a[r < nr ? r : nr - 1], bs[r] = b[r < nr ? r : nr - 1], tot[r] = 0.0f;
    for (int64_t c = 0; c < rplan_nchunks(L); c++) {
        for (int r = 0; r < MR; r++) part[r] = 0.0f;
        for (int64_t j = rplan_chunk_lo(c); j < rplan_chunk_hi(c, L); j++) {
            UNROLL_MR
            for (int r = 0; r < MR; r++) part[r] = fmaf(as[r][j], bs[r][j], part[r]);
        }
        for (int r = 0; r < MR; r++) tot[r] += part[r];
    }
    for (int r = 0; r < nr; r++) s[r] = tot[r];
}

/* out[M,L], inp[M,L]; tasks of MR rows */
void softmax_forward_cpu(float *out, const float *inp, int64_t M, int L, const CpCtx *ctx) {
    if (L <= 0) return;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t i0 = 0; i0 < M; i0 += MR) {
        const int nr = (int)min64(MR, M - i0);
        float *y[MR];
        const float *x[MR];
        for (int r = 0; r < nr; r++) y[r] = out + (i0 + r) * L, x[r] = inp + (i0 + r) * L;
        softmax_rows(y, x, nr, L);
    }
}

/* dinp[M,L] += out * (dout - sum(dout * out)); dout, out [M,L]; tasks of MR rows */
void softmax_backward_cpu(float *dinp, const float *dout, const float *out, int64_t M, int L, const CpCtx *ctx) {
    if (!dinp || L <= 0) return;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t i0 = 0; i0 < M; i0 += MR) {
        const int nr = (int)min64(MR, M - i0);
        const float *y[MR], *dy[MR];
        float s[MR];
        for (int r = 0; r < nr; r++) y[r] = out + (i0 + r) * L, dy[r] = dout + (i0 + r) * L;
        plan_dot_rows(s, dy, y, nr, L);
        for (int r = 0; r < nr; r++) {
            float *dx = dinp + (i0 + r) * L;
            // PyTorch: torch._softmax_backward_data
            for (int j = 0; j < L; j++) dx[j] += softmax_grad(y[r][j], dy[r][j], s[r]);
        }
    }
}

/* ---- interp1d --------------------------------------------------------------- */

/* out[Lout,C], inp[Lin,C]. PyTorch: F.interpolate(inp.T[None], size=Lout,
 * mode="linear", align_corners=False)[0].T */
void interp1d_forward_cpu(float *out, const float *inp, int Lin, int Lout, int C, const CpCtx *ctx) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int i = 0; i < Lout; i++) {
        Interp1dTap t = interp1d_tap(Lin, Lout, i);
        const float *a0 = inp + (int64_t)t.i0 * C, *a1 = inp + (int64_t)t.i1 * C;
        float *o = out + (int64_t)i * C;
        for (int c = 0; c < C; c++) o[c] = interp1d_mix(a0[c], a1[c], t);
    }
}

/* dinp[Lin,C] += ..., dout[Lout,C]. A gather: input row r visits the output
 * rows in increasing order; taps are monotone in i, so the scan stops at the
 * first output whose i0 passes r. Columns go in stack blocks of 64. */
void interp1d_backward_cpu(float *dinp, const float *dout, int Lin, int Lout, int C, const CpCtx *ctx) {
    if (!dinp) return;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int r = 0; r < Lin; r++) {
        for (int c0 = 0; c0 < C; c0 += 64) {
            const int nc = C - c0 < 64 ? C - c0 : 64;
            float acc[64];
            for (int c = 0; c < nc; c++) acc[c] = 0.0f;
            for (int i = 0; i < Lout; i++) {
                Interp1dTap t = interp1d_tap(Lin, Lout, i);
                if (t.i0 > r) break;
                const float *g = dout + (int64_t)i * C + c0;
                if (t.i0 == r)
                    for (int c = 0; c < nc; c++) acc[c] = fmaf(t.w0, g[c], acc[c]);
                if (t.i1 == r)
                    for (int c = 0; c < nc; c++) acc[c] = fmaf(t.w1, g[c], acc[c]);
            }
            float *d = dinp + (int64_t)r * C + c0;
            for (int c = 0; c < nc; c++) d[c] += acc[c];
        }
    }
}

/* ---- attention: shared pieces ------------------------------------------------ */

typedef struct {
    int Hq, Wq, NH, HD;
    int64_t T, D, ld; /* tokens, model dim, qkv row stride 3D */
    float scale;
} AttShape;

static AttShape att_shape(int Hq, int Wq, int NH, int HD) {
    CP_ASSERT(Hq >= 1 && Wq >= 1 && NH >= 1 && HD >= 1);
    CP_ASSERT(Hq <= CP_ATT_MAX_SIDE && Wq <= CP_ATT_MAX_SIDE && HD <= CP_ATT_MAX_HD);
    AttShape s = {Hq, Wq, NH, HD, (int64_t)Hq * Wq, (int64_t)NH * HD, 3 * (int64_t)NH * HD, att_scale(HD)};
    return s;
}

/* Coordinate of token t on the H axis (axis_h) or the W axis. */
static inline int tok_coord(int64_t t, int Wq, int axis_h) { return axis_h ? (int)(t / Wq) : (int)(t % Wq); }

/* xT[d * T + j] = x[j * ldx + d] for keys j0 .. j0+nj-1: one head's k (or v)
 * transposed to [HD, T], the B operand whose columns are keys. */
static void transpose_keys(float *xT, const float *x, int64_t ldx, int64_t j0, int64_t nj, int64_t T, int HD) {
    for (int64_t j = j0; j < j0 + nj; j++)
        for (int d = 0; d < HD; d++) xT[d * T + j] = x[j * ldx + d];
}

/* rel[jj * CP_ATT_MAX_SIDE + kc] = dot(q_(i0+jj), table[qc - kc + size - 1])
 * for the nq queries of a block, qT[d * NR + jj] their transposed (unscaled)
 * q. The micro-kernel computes P[r][jj] = dot(table[r], q_jj) for every table
 * row r, and each P lands in the one (jj, kc) it defines.
 * PyTorch: einsum("bhwc,hkc->bhwk", q, Rh) (and "bhwc,wkc->bhwk" for W) */
static void rel_block(float *rel, const float *table, int size, const float *qT, int HD, int64_t i0, int nq, int Wq,
                      int axis_h) {
    const int R = 2 * size - 1;
    for (int r0 = 0; r0 < R; r0 += MR) {
        const float *a[MR];
        for (int r = 0; r < MR; r++) a[r] = table + (int64_t)(r0 + r < R ? r0 + r : R - 1) * HD;
        float c[MR][NR];
        mk_full(c, a, 1, qT, NR, HD);
        for (int r = 0; r < MR && r0 + r < R; r++)
            for (int jj = 0; jj < nq; jj++) {
                int kc = tok_coord(i0 + jj, Wq, axis_h) - (r0 + r) + size - 1;
                if (kc >= 0 && kc < size) rel[jj * CP_ATT_MAX_SIDE + kc] = c[r][jj];
            }
    }
}

/* rows[r][j] = dot(a[r], column j of xT) over HD for the nr <= MR rows and
 * all T keys, key tiles aligned to grid rows (keys kh*Wq + kw0 .. + nc) so
 * that the epilogue sees one kh and consecutive kw. With rh == NULL the dots
 * are stored as they are (datt); otherwise they are logits:
 * att_logit(dot, rh[r][kh], rw[r][kw]) (rh, rw rows of CP_ATT_MAX_SIDE). */
static void rows_times_keys(float *const rows[MR], int nr, const float *const a[MR], const float *xT,
                            const AttShape *s, const float *rh, const float *rw) {
    for (int kh = 0; kh < s->Hq; kh++)
        for (int kw0 = 0; kw0 < s->Wq; kw0 += NR) {
            const int nc = s->Wq - kw0 < NR ? s->Wq - kw0 : NR;
            const int64_t j0 = (int64_t)kh * s->Wq + kw0;
            float c[MR][NR];
            mk_tile(c, a, 1, xT + j0, s->T, s->HD, nc);
            for (int r = 0; r < nr; r++) {
                float *row = rows[r] + j0;
                if (rh) {
                    const float rhv = rh[r * CP_ATT_MAX_SIDE + kh], *rwv = rw + r * CP_ATT_MAX_SIDE + kw0;
                    for (int x = 0; x < nc; x++) row[x] = att_logit(c[r][x], rhv, rwv[x]);
                } else {
                    for (int x = 0; x < nc; x++) row[x] = c[r][x];
                }
            }
        }
}

/* ---- attention forward ---------------------------------------------------- */

/* One task: queries i0 .. i0+nq-1 of head h of sample n; kT = this head's k
 * transposed. Logits go straight into the head's att rows, are softmaxed
 * there and multiplied by v. */
static void fwd_block(float *out, float *att, const float *kT, const float *qkv, const float *relh,
                      const float *relw, const AttShape *s, int n, int h, int64_t i0) {
    const int HD = s->HD;
    const int64_t T = s->T, ld = s->ld;
    const int nq = (int)min64(QB, T - i0);
    const float *q = qkv + (int64_t)n * T * ld + (int64_t)h * HD, *v = q + 2 * s->D;
    float *A = att + ((int64_t)n * s->NH + h) * T * T; /* [T,T] of this head */
    float qT[CP_ATT_MAX_HD * NR], qs[QB * CP_ATT_MAX_HD];
    float rh[QB * CP_ATT_MAX_SIDE], rw[QB * CP_ATT_MAX_SIDE];
    for (int d = 0; d < HD; d++)
        for (int jj = 0; jj < NR; jj++) qT[d * NR + jj] = jj < nq ? q[(i0 + jj) * ld + d] : 0.0f;
    for (int jj = 0; jj < nq; jj++)
        for (int d = 0; d < HD; d++) qs[jj * CP_ATT_MAX_HD + d] = q[(i0 + jj) * ld + d] * s->scale; // q * scale
    rel_block(rh, relh, s->Hq, qT, HD, i0, nq, s->Wq, 1);
    rel_block(rw, relw, s->Wq, qT, HD, i0, nq, s->Wq, 0);
    for (int r0 = 0; r0 < nq; r0 += MR) {
        /* PyTorch: (q * scale) @ k.T, + rel_h[..., None], + rel_w[..., None, :] */
        const float *a[MR];
        float *rows[MR];
        for (int r = 0; r < MR; r++) {
            const int rr = r0 + r < nq ? r0 + r : nq - 1;
            a[r] = qs + rr * CP_ATT_MAX_HD;
            rows[r] = A + (i0 + rr) * T;
        }
        const int nr = nq - r0 < MR ? nq - r0 : MR;
        rows_times_keys(rows, nr, a, kT, s, rh + r0 * CP_ATT_MAX_SIDE, rw + r0 * CP_ATT_MAX_SIDE);
        softmax_rows(rows, (const float *const *)rows, nr, T);
        /* out = att @ v: micro-kernel rows are queries, columns head dims */
        for (int d0 = 0; d0 < HD; d0 += NR) {
            const int nc = HD - d0 < NR ? HD - d0 : NR;
            float c[MR][NR];
            mk_tile(c, (const float *const *)rows, 1, v + d0, ld, T, nc);
            for (int r = 0; r < nr; r++) {
                float *o = out + ((int64_t)n * T + i0 + r0 + r) * s->D + (int64_t)h * HD + d0;
                for (int x = 0; x < nc; x++) o[x] = c[r][x];
            }
        }
    }
}

static float *att_workspace(const CpCtx *ctx, size_t need) {
    CP_ASSERT(ctx->workspace_bytes >= need &&
              "size ctx->workspace with cp_ctx_workspace(ctx, attention_*_workspace_bytes(...)) first");
    return (float *)ctx->workspace;
}

/* out[N,T,D], att[N,NH,T,T], qkv[N,T,3D], relh[2Hq-1,HD], relw[2Wq-1,HD].
 * Heads one after the other; inside a head, threads share the key
 * transposition, then the query blocks. */
void attention_forward_cpu(float *out, float *att, const float *qkv, const float *relh, const float *relw, int N,
                           int Hq, int Wq, int NH, int HD, const CpCtx *ctx) {
    const AttShape s = att_shape(Hq, Wq, NH, HD);
    float *kT = att_workspace(ctx, attention_forward_workspace_bytes(Hq, Wq, HD));
    const int64_t nblk = (s.T + QB - 1) / QB;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NH; h++) {
            const float *k = qkv + (int64_t)n * s.T * s.ld + s.D + (int64_t)h * HD;
#pragma omp parallel num_threads(ctx->threads)
            {
#pragma omp for schedule(static)
                for (int64_t j0 = 0; j0 < s.T; j0 += 64) transpose_keys(kT, k, s.ld, j0, min64(64, s.T - j0), s.T, HD);
#pragma omp for schedule(dynamic, 1)
                for (int64_t b = 0; b < nblk; b++) fwd_block(out, att, kT, qkv, relh, relw, &s, n, h, b * QB);
            }
        }
}

/* ---- attention backward ------------------------------------------------------ */

typedef struct {
    float *g;        /* [T,T]  dL/dlogits of the current head */
    float *vT;       /* [HD,T] v of the current head, transposed */
    float *gh, *gw;  /* [T,Hq], [T,Wq]: g summed over kw, resp. kh */
    float *ph, *th;  /* [2Hq-1,HD]: drelh chunk partial and running total */
    float *pw, *tw;  /* [2Wq-1,HD]: the same for drelw */
} AttWork;

static AttWork att_work(const CpCtx *ctx, const AttShape *s) {
    AttWork w;
    w.g = att_workspace(ctx, attention_backward_workspace_bytes(s->Hq, s->Wq, s->HD));
    w.vT = w.g + s->T * s->T;
    w.gh = w.vT + s->T * s->HD;
    w.gw = w.gh + s->T * s->Hq;
    w.ph = w.gw + s->T * s->Wq;
    w.th = w.ph + (int64_t)(2 * s->Hq - 1) * s->HD;
    w.pw = w.th + (int64_t)(2 * s->Hq - 1) * s->HD;
    w.tw = w.pw + (int64_t)(2 * s->Wq - 1) * s->HD;
    return w;
}

/* acc[x] = sum over kc of grow[kc] * table[qc - kc + size - 1][d0 + x], x < nc:
 * the relative-position part of dq (sequential fmaf over kc). */
static void rel_dq(float *acc, const float *grow, const float *table, int qc, int size, int HD, int d0, int nc) {
    float a[NR];
    for (int x = 0; x < NR; x++) a[x] = 0.0f;
    for (int kc = 0; kc < size; kc++) {
        const float gv = grow[kc], *t = table + (int64_t)att_rel_row(qc, kc, size) * HD + d0;
        if (nc == NR) /* constant trip count: the accumulators stay in registers */
            for (int x = 0; x < NR; x++) a[x] = fmaf(gv, t[x], a[x]);
        else
            for (int x = 0; x < nc; x++) a[x] = fmaf(gv, t[x], a[x]);
    }
    for (int x = 0; x < nc; x++) acc[x] = a[x];
}

/* dq of queries i0 .. i0+nq-1 (their g, gh, gw rows are complete). */
static void bwd_dq(float *dqkv, const AttWork *w, const float *qkv, const float *relh, const float *relw,
                   const AttShape *s, int n, int h, int64_t i0, int nq) {
    const int HD = s->HD;
    const int64_t T = s->T, ld = s->ld;
    const float *k = qkv + (int64_t)n * T * ld + s->D + (int64_t)h * HD;
    for (int r0 = 0; r0 < nq; r0 += MR) {
        const float *a[MR];
        for (int r = 0; r < MR; r++) a[r] = w->g + (i0 + (r0 + r < nq ? r0 + r : nq - 1)) * T;
        for (int d0 = 0; d0 < HD; d0 += NR) {
            const int nc = HD - d0 < NR ? HD - d0 : NR;
            float c[MR][NR], bh[NR], bw[NR];
            mk_tile(c, a, 1, k + d0, ld, T, nc); /* PyTorch: dlogits @ k */
            for (int r = 0; r < MR && r0 + r < nq; r++) {
                const int64_t i = i0 + r0 + r;
                rel_dq(bh, w->gh + i * s->Hq, relh, (int)(i / s->Wq), s->Hq, HD, d0, nc);
                rel_dq(bw, w->gw + i * s->Wq, relw, (int)(i % s->Wq), s->Wq, HD, d0, nc);
                float *dq = dqkv + ((int64_t)n * T + i) * ld + (int64_t)h * HD + d0;
                for (int x = 0; x < nc; x++) dq[x] += att_dq(s->scale, c[r][x], bh[x], bw[x]);
            }
        }
    }
}

/* g rows i0 .. i0+nr-1 (nr <= MR) from their datt rows (in place), then
 * their gh, gw rows. */
static void bwd_logit_grad_rows(const AttWork *w, const float *A, const AttShape *s, int64_t i0, int nr) {
    const int Hq = s->Hq, Wq = s->Wq;
    const float *g_[MR], *y_[MR];
    float sdot[MR];
    for (int r = 0; r < nr; r++) g_[r] = w->g + (i0 + r) * s->T, y_[r] = A + (i0 + r) * s->T;
    plan_dot_rows(sdot, g_, y_, nr, s->T);
    for (int r = 0; r < nr; r++) {
        const int64_t i = i0 + r;
        float *g = w->g + i * s->T, *gh = w->gh + i * Hq, *gw = w->gw + i * Wq;
        const float *y = y_[r];
        for (int64_t j = 0; j < s->T; j++) g[j] = softmax_grad(y[j], g[j], sdot[r]); // PyTorch: softmax backward
        /* gh[kh]: sequential over kw; gw[kw]: sequential over kh */
        for (int kh0 = 0; kh0 < Hq; kh0 += 8) { /* 8 kh chains interleaved */
            const int nb = Hq - kh0 < 8 ? Hq - kh0 : 8;
            float acc[8] = {0};
            for (int kw = 0; kw < Wq; kw++) {
                const float *gc = g + (int64_t)kh0 * Wq + kw;
                if (nb == 8)
                    for (int b = 0; b < 8; b++) acc[b] += gc[(int64_t)b * Wq];
                else
                    for (int b = 0; b < nb; b++) acc[b] += gc[(int64_t)b * Wq];
            }
            for (int b = 0; b < nb; b++) gh[kh0 + b] = acc[b];
        }
        for (int kw = 0; kw < Wq; kw++) gw[kw] = 0.0f;
        for (int kh = 0; kh < Hq; kh++)
            for (int kw = 0; kw < Wq; kw++) gw[kw] += g[(int64_t)kh * Wq + kw];
    }
}

/* Phase 1 task: query rows i0 .. i0+nq-1 of head (n, h): datt, g, gh, gw rows
 * into the workspace, then dq of these rows. */
static void bwd_rows(float *dqkv, const AttWork *w, const float *dout, const float *att, const float *qkv,
                     const float *relh, const float *relw, const AttShape *s, int n, int h, int64_t i0) {
    const int64_t T = s->T;
    const int nq = (int)min64(QB, T - i0);
    const float *dO = dout + (int64_t)n * T * s->D + (int64_t)h * s->HD;
    const float *A = att + ((int64_t)n * s->NH + h) * T * T;
    for (int r0 = 0; r0 < nq; r0 += MR) { /* datt = dout @ v.T. PyTorch: dout @ v.transpose(-2, -1) */
        const float *a[MR];
        float *rows[MR];
        for (int r = 0; r < MR; r++) {
            const int64_t i = i0 + (r0 + r < nq ? r0 + r : nq - 1);
            a[r] = dO + i * s->D;
            rows[r] = w->g + i * T;
        }
        rows_times_keys(rows, nq - r0 < MR ? nq - r0 : MR, a, w->vT, s, NULL, NULL);
    }
    for (int r0 = 0; r0 < nq; r0 += MR) bwd_logit_grad_rows(w, A, s, i0 + r0, nq - r0 < MR ? nq - r0 : MR);
    if (dqkv) bwd_dq(dqkv, w, qkv, relh, relw, s, n, h, i0, nq);
}

/* Phase 2 task: dk and dv of keys j0 .. j0+KB-1 (gathers over all queries). */
static void bwd_cols(float *dqkv, const AttWork *w, const float *dout, const float *att, const float *qkv,
                     const AttShape *s, int n, int h, int64_t j0) {
    const int HD = s->HD;
    const int64_t T = s->T, ld = s->ld;
    const int nk = (int)min64(KB, T - j0);
    const float *q = qkv + (int64_t)n * T * ld + (int64_t)h * HD;
    const float *dO = dout + (int64_t)n * T * s->D + (int64_t)h * HD;
    const float *A = att + ((int64_t)n * s->NH + h) * T * T;
    for (int jb = 0; jb < nk; jb += MR) {
        const float *ag[MR], *aa[MR]; /* column j of g / att, stepping down the rows i */
        for (int r = 0; r < MR; r++) {
            const int64_t j = j0 + (jb + r < nk ? jb + r : nk - 1);
            ag[r] = w->g + j;
            aa[r] = A + j;
        }
        for (int d0 = 0; d0 < HD; d0 += NR) {
            const int nc = HD - d0 < NR ? HD - d0 : NR;
            float ck[MR][NR], cv[MR][NR];
            mk_tile(ck, ag, T, q + d0, ld, T, nc);    /* PyTorch: dlogits.T @ q (times scale) */
            mk_tile(cv, aa, T, dO + d0, s->D, T, nc); /* PyTorch: att.T @ dout */
            for (int r = 0; r < MR && jb + r < nk; r++) {
                float *dk = dqkv + ((int64_t)n * T + j0 + jb + r) * ld + s->D + (int64_t)h * HD + d0;
                float *dv = dk + s->D;
                for (int x = 0; x < nc; x++) dk[x] += s->scale * ck[r][x];
                for (int x = 0; x < nc; x++) dv[x] += cv[r][x];
            }
        }
    }
}

/* Phase 2 task: continue the chunk plan of drel[r] (table of one axis)
 * through the rows m = m0 .. m0+T-1 of the current head. p, tot: [HD], the
 * open chunk's partial and the running total. Only the tokens whose kc is
 * in range are visited (in increasing t); every chunk boundary in the head
 * is still crossed exactly once (a flush: tot += p; p = 0). */
static void bwd_rel_row(float *p, float *tot, const float *grel, const float *q, const AttShape *s, int r,
                        int axis_h, int64_t m0) {
    const int size = axis_h ? s->Hq : s->Wq, HD = s->HD;
    const int clo = r - size + 1 > 0 ? r - size + 1 : 0, chi = r < size - 1 ? r : size - 1; /* valid qc */
    float acc[CP_ATT_MAX_HD], sum[CP_ATT_MAX_HD];
    memcpy(acc, p, sizeof(float) * (size_t)HD);
    memcpy(sum, tot, sizeof(float) * (size_t)HD);
    /* the next chunk boundary after the rows already visited (m0 - 1) */
    int64_t next = m0 > 0 ? rplan_chunk_lo((m0 - 1) / RCHUNK + 1) : RCHUNK;
    for (int qh = axis_h ? clo : 0; qh <= (axis_h ? chi : s->Hq - 1); qh++)
        for (int qw = axis_h ? 0 : clo; qw <= (axis_h ? s->Wq - 1 : chi); qw++) {
            const int64_t t = (int64_t)qh * s->Wq + qw;
            for (; next <= m0 + t; next += RCHUNK)
                for (int d = 0; d < HD; d++) sum[d] += acc[d], acc[d] = 0.0f;
            const int kc = (axis_h ? qh : qw) - r + size - 1;
            const float gv = grel[t * size + kc], *qt = q + t * s->ld;
            int d0 = 0;
            for (; d0 + NR <= HD; d0 += NR) /* constant trip count: vectorized */
                for (int x = 0; x < NR; x++) acc[d0 + x] = fmaf(gv, qt[d0 + x], acc[d0 + x]);
            for (int d = d0; d < HD; d++) acc[d] = fmaf(gv, qt[d], acc[d]);
        }
    for (; next <= m0 + s->T - 1; next += RCHUNK)
        for (int d = 0; d < HD; d++) sum[d] += acc[d], acc[d] = 0.0f;
    memcpy(p, acc, sizeof(float) * (size_t)HD);
    memcpy(tot, sum, sizeof(float) * (size_t)HD);
}

/* Phase 2, one task: a key block (dk, dv) or a table row (drel plan state). */
static void bwd_phase2_task(float *dqkv, const AttWork *w, const float *dout, const float *att, const float *qkv,
                            const AttShape *s, int n, int h, int64_t task, int64_t nkb, int Rh) {
    const int64_t m0 = ((int64_t)n * s->NH + h) * s->T;
    const float *q = qkv + (int64_t)n * s->T * s->ld + (int64_t)h * s->HD;
    if (task < nkb) {
        bwd_cols(dqkv, w, dout, att, qkv, s, n, h, task * KB);
    } else if (task < nkb + Rh) {
        const int r = (int)(task - nkb);
        bwd_rel_row(w->ph + (int64_t)r * s->HD, w->th + (int64_t)r * s->HD, w->gh, q, s, r, 1, m0);
    } else {
        const int r = (int)(task - nkb - Rh);
        bwd_rel_row(w->pw + (int64_t)r * s->HD, w->tw + (int64_t)r * s->HD, w->gw, q, s, r, 0, m0);
    }
}

/* One head: v transposed, then phase 1 over query blocks, then phase 2 over
 * key blocks (dk, dv) and table rows (drelh, drelw plan state). */
static void bwd_head(float *dqkv, int want_rh, int want_rw, const AttWork *w, const float *dout, const float *att,
                     const float *qkv, const float *relh, const float *relw, const AttShape *s, int n, int h,
                     const CpCtx *ctx) {
    const int64_t nblk = (s->T + QB - 1) / QB, nkb = dqkv ? (s->T + KB - 1) / KB : 0;
    const int Rh = want_rh ? 2 * s->Hq - 1 : 0, Rw = want_rw ? 2 * s->Wq - 1 : 0;
    const float *v = qkv + (int64_t)n * s->T * s->ld + 2 * s->D + (int64_t)h * s->HD;
#pragma omp parallel num_threads(ctx->threads)
    {
#pragma omp for schedule(static)
        for (int64_t j0 = 0; j0 < s->T; j0 += 64)
            transpose_keys(w->vT, v, s->ld, j0, min64(64, s->T - j0), s->T, s->HD);
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nblk; b++) bwd_rows(dqkv, w, dout, att, qkv, relh, relw, s, n, h, b * QB);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < nkb + Rh + Rw; task++)
            bwd_phase2_task(dqkv, w, dout, att, qkv, s, n, h, task, nkb, Rh);
    }
}

/* drel[i] += total + last partial (the final chunk of the plan). */
static void rel_finish(float *drel, const float *p, const float *tot, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float t = tot[i] + p[i];
        drel[i] += t;
    }
}

/* dqkv[N,T,3D] +=, drelh[2Hq-1,HD] +=, drelw[2Wq-1,HD] += (each may be NULL) */
void attention_backward_cpu(float *dqkv, float *drelh, float *drelw, const float *dout, const float *att,
                            const float *qkv, const float *relh, const float *relw, int N, int Hq, int Wq, int NH,
                            int HD, const CpCtx *ctx) {
    if (!dqkv && !drelh && !drelw) return;
    const AttShape s = att_shape(Hq, Wq, NH, HD);
    const AttWork w = att_work(ctx, &s);
    const int64_t nh_ = (int64_t)(2 * Hq - 1) * HD, nw_ = (int64_t)(2 * Wq - 1) * HD;
    memset(w.ph, 0, sizeof(float) * (size_t)(2 * nh_ + 2 * nw_)); /* ph, th, pw, tw */
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NH; h++)
            bwd_head(dqkv, drelh != NULL, drelw != NULL, &w, dout, att, qkv, relh, relw, &s, n, h, ctx);
    if (drelh) rel_finish(drelh, w.ph, w.th, nh_);
    if (drelw) rel_finish(drelw, w.pw, w.tw, nw_);
}
