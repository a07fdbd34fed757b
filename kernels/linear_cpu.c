/* linear_cpu.c - Linear forward/backward on the CPU, and the cache-blocked
 * GEMM engine (cp_gemm_cpu) that the patch ops reuse (kernels/linear.h).
 *
 * Layouts: inp[M,IN], w[OUT,IN], b[OUT], out[M,OUT], all row-major.
 *
 * Engine structure (BLIS-like, vectorized ACROSS outputs):
 *  - micro-kernel: GK_MR rows x GK_NR columns of C held in registers; for each
 *    r in order it loads GK_NV vectors of B(r, j..j+NR), broadcasts A(i,r) for
 *    each row and does one fused multiply-add per lane. Every lane is one
 *    output with its own sequential fmaf chain: identical bits for any SIMD
 *    width (AVX-512, AVX2 or the scalar fallback).
 *  - r is cut into blocks of GK_KC; between blocks a partial sum is stored as
 *    a float and reloaded (exact), so blocking never changes a result.
 *  - B blocks are packed into a GK_KC x GK_NB stack panel, zero-padded (row
 *    copies, the w^T transpose, or gathers); a task too short to share the
 *    panel reads B in place when its j axis is contiguous.
 *  - C: a STORE with contiguous rows uses the output itself as accumulator
 *    (bias added on the last r-block); every other case reduces into a
 *    GK_MB x GK_NB stack tile and finishes with an epilogue that adds (+=) or
 *    stores into the output view. The chunked mode (weight gradients) runs the
 *    r range chunk by chunk (core/reduce.h) and sums the chunk tiles in order.
 *  - threads take whole (i-block, j-block) tasks: each output has one writer,
 *    no atomics; the task split may depend on the thread count, results not.
 * No heap use; per-thread stack below CP_GEMM_STACK_BYTES. */
#include <string.h>

#include "common.h"
#include "kernels/linear.h"
#include "kernels/ops.h"

/* ---- SIMD layer: the only ISA-specific code ---- */
#if defined(__AVX512F__)
#include <immintrin.h>
#define GK_MR 6
#define GK_VL 16
#define GK_NV 4
typedef __m512 gk_vec;
typedef __mmask16 gk_mask;
static inline gk_mask gk_mask_n(int n) {
    return n >= GK_VL ? (gk_mask)0xFFFF : n <= 0 ? (gk_mask)0 : (gk_mask)((1u << n) - 1u);
}
static inline gk_vec gk_zero(void) { return _mm512_setzero_ps(); }
static inline gk_vec gk_load(const float *p, gk_mask m) { return _mm512_maskz_loadu_ps(m, p); }
static inline void gk_store(float *p, gk_mask m, gk_vec v) { _mm512_mask_storeu_ps(p, m, v); }
static inline gk_vec gk_bcast(float x) { return _mm512_set1_ps(x); }
static inline gk_vec gk_fma(gk_vec a, gk_vec b, gk_vec acc) { return _mm512_fmadd_ps(a, b, acc); }
static inline gk_vec gk_add(gk_vec a, gk_vec b) { return _mm512_add_ps(a, b); }
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GK_MR 6
#define GK_VL 8
#define GK_NV 2
typedef __m256 gk_vec;
typedef __m256i gk_mask;
static inline gk_mask gk_mask_n(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline gk_vec gk_zero(void) { return _mm256_setzero_ps(); }
static inline gk_vec gk_load(const float *p, gk_mask m) { return _mm256_maskload_ps(p, m); }
static inline void gk_store(float *p, gk_mask m, gk_vec v) { _mm256_maskstore_ps(p, m, v); }
static inline gk_vec gk_bcast(float x) { return _mm256_set1_ps(x); }
static inline gk_vec gk_fma(gk_vec a, gk_vec b, gk_vec acc) { return _mm256_fmadd_ps(a, b, acc); }
static inline gk_vec gk_add(gk_vec a, gk_vec b) { return _mm256_add_ps(a, b); }
#else /* portable scalar path: one "vector" = one float */
#define GK_MR 4
#define GK_VL 1
#define GK_NV 4
typedef float gk_vec;
typedef int gk_mask;
static inline gk_mask gk_mask_n(int n) { return n > 0; }
static inline gk_vec gk_zero(void) { return 0.0f; }
static inline gk_vec gk_load(const float *p, gk_mask m) { return m ? *p : 0.0f; }
static inline void gk_store(float *p, gk_mask m, gk_vec v) {
    if (m) *p = v;
}
static inline gk_vec gk_bcast(float x) { return x; }
static inline gk_vec gk_fma(gk_vec a, gk_vec b, gk_vec acc) { return cp_mac(acc, a, b); }
static inline gk_vec gk_add(gk_vec a, gk_vec b) { return cp_add_bias(a, b); }
#endif

#define GK_NR (GK_VL * GK_NV) /* columns per micro-tile */
#define GK_KC 256             /* r per block */
#define GK_NB 128             /* columns per task (multiple of GK_NR) */
#define GK_MB (16 * GK_MR)    /* rows per task when reducing into a stack tile */
#define GK_PACK_ROWS (4 * GK_MR) /* tasks this tall pack even contiguous B */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t cdiv64(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* C[ii, 0..nr) (row stride ldc) = (first ? 0 : C) + sum over r < kc of
 * A(ii, r) * B(r, .), A(ii, r) = ap[ii][aoff[r]], B(r, j) = b[boff[r] + j];
 * rows >= mr are computed from clamped pointers and never stored. With bias
 * (last r-block of a STORE), C = acc + bias[j]. */
static void gk_micro(int kc, const float *const *ap, const int64_t *aoff, const float *b, const int64_t *boff,
                     int nr, float *c, int64_t ldc, int mr, int first, const float *bias) {
    gk_mask m[GK_NV];
    gk_vec acc[GK_MR][GK_NV];
    const float *a[GK_MR];
#pragma GCC unroll 16
    for (int v = 0; v < GK_NV; v++) m[v] = gk_mask_n(nr - v * GK_VL);
#pragma GCC unroll 16
    for (int ii = 0; ii < GK_MR; ii++) {
        a[ii] = ap[ii];
#pragma GCC unroll 16
        for (int v = 0; v < GK_NV; v++)
            acc[ii][v] = (first || ii >= mr) ? gk_zero() : gk_load(c + ii * ldc + v * GK_VL, m[v]);
    }
    for (int r = 0; r < kc; r++) {
        const float *br = b + boff[r];
        const int64_t ao = aoff[r];
        gk_vec bv[GK_NV];
#pragma GCC unroll 16
        for (int v = 0; v < GK_NV; v++) bv[v] = gk_load(br + v * GK_VL, m[v]);
#pragma GCC unroll 16
        for (int ii = 0; ii < GK_MR; ii++) {
            gk_vec av = gk_bcast(a[ii][ao]);
#pragma GCC unroll 16
            for (int v = 0; v < GK_NV; v++) acc[ii][v] = gk_fma(av, bv[v], acc[ii][v]); /* fmaf(A, B, acc) */
        }
    }
    if (bias) {
#pragma GCC unroll 16
        for (int v = 0; v < GK_NV; v++) {
            gk_vec bb = gk_load(bias + v * GK_VL, m[v]);
#pragma GCC unroll 16
            for (int ii = 0; ii < GK_MR; ii++) acc[ii][v] = gk_add(acc[ii][v], bb); /* acc + b */
        }
    }
#pragma GCC unroll 16
    for (int ii = 0; ii < GK_MR; ii++)
        if (ii < mr) {
#pragma GCC unroll 16
            for (int v = 0; v < GK_NV; v++) gk_store(c + ii * ldc + v * GK_VL, m[v], acc[ii][v]);
        }
}

/* ---- views ---- */
static inline int64_t ax_off(const CpAxis *ax, int64_t idx) { return ax->fn ? ax->fn(ax->prm, idx) : idx * ax->prm[0]; }
static void ax_fill(const CpAxis *ax, int64_t start, int64_t n, int64_t *out) {
    if (ax->fn)
        for (int64_t k = 0; k < n; k++) out[k] = ax->fn(ax->prm, start + k);
    else
        for (int64_t k = 0; k < n; k++) out[k] = (start + k) * ax->prm[0];
}
static inline int ax_unit(const CpAxis *ax) { return !ax->fn && ax->prm[0] == 1; }
static int offs_unit(const int64_t *o, int64_t n) {
    for (int64_t k = 1; k < n; k++)
        if (o[k] != o[0] + k) return 0;
    return 1;
}

/* pb[r*GK_NB + jj] = B(rb + r, j0 + jj) for r < kc, jj < nb; zero up to the
 * next multiple of GK_NR. br[kc], bj[nb]: the B offsets of the block. */
static void gk_pack_b(float *pb, const float *b, const int64_t *br, int kc, const int64_t *bj, int nb) {
    int npad = (int)cdiv64(nb, GK_NR) * GK_NR;
    if (offs_unit(bj, nb)) { /* rows contiguous in j (w, inp, dout rows): copies */
        for (int r = 0; r < kc; r++) memcpy(pb + r * GK_NB, b + br[r] + bj[0], sizeof(float) * (size_t)nb);
    } else if (offs_unit(br, kc)) { /* contiguous in r (w^T): 16 source columns at a time */
        for (int j0 = 0; j0 < nb; j0 += 16) {
            int jn = (int)min64(16, nb - j0);
            for (int r = 0; r < kc; r++)
                for (int jj = 0; jj < jn; jj++) pb[r * GK_NB + j0 + jj] = b[bj[j0 + jj] + br[0] + r];
        }
    } else { /* gathers (im2col, pixel shuffle) */
        for (int r = 0; r < kc; r++) {
            const float *src = b + br[r];
            for (int jj = 0; jj < nb; jj++) pb[r * GK_NB + jj] = src[bj[jj]];
        }
    }
    for (int r = 0; r < kc; r++)
        for (int jj = nb; jj < npad; jj++) pb[r * GK_NB + jj] = 0.0f;
}

/* Everything one r-block needs: offsets and where B comes from. */
typedef struct {
    int64_t aoff[GK_KC], boff[GK_KC];
    const float *bbase; /* B(r, j0 + jj) = bbase[boff[r] + jj] */
} GkBlock;

/* Prepare r-block [rb, rb+kc) of a task with `rows` rows: A and B offsets;
 * B read in place (contiguous j, few rows to share it) or packed into pb. */
static void gk_block(GkBlock *blk, const CpGemm *g, int64_t rb, int kc, int64_t j0, int nb, const int64_t *bj,
                     float *pb, int64_t rows) {
    ax_fill(&g->a_r, rb, kc, blk->aoff);
    ax_fill(&g->b_r, rb, kc, blk->boff);
    if (ax_unit(&g->b_j) && rows < GK_PACK_ROWS) {
        blk->bbase = g->b + ax_off(&g->b_j, j0);
    } else {
        gk_pack_b(pb, g->b, blk->boff, kc, bj, nb);
        for (int r = 0; r < kc; r++) blk->boff[r] = (int64_t)r * GK_NB;
        blk->bbase = pb;
    }
}

/* Rows [i, i + mr) of A as pointers (rows past mr clamped to the last). */
static void gk_rows(const CpGemm *g, int64_t i, int mr, const float **ap) {
    for (int ii = 0; ii < GK_MR; ii++) ap[ii] = g->a + ax_off(&g->a_i, i + (ii < mr ? ii : mr - 1));
}

/* Task with the output as accumulator: STORE, c_i affine, c_j contiguous,
 * bias contiguous. Rows [i0, i1), columns [j0, j1). */
static void gk_task_direct(const CpGemm *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    _Alignas(64) float pb[GK_KC * GK_NB];
    int64_t bj[GK_NB];
    GkBlock blk;
    int nb = (int)(j1 - j0);
    int64_t ldc = g->c_i.prm[0];
    ax_fill(&g->b_j, j0, nb, bj);
    int64_t rb = 0;
    do {
        int kc = (int)min64(GK_KC, g->K - rb);
        gk_block(&blk, g, rb, kc, j0, nb, bj, pb, i1 - i0);
        int first = rb == 0, last = rb + kc >= g->K;
        for (int64_t i = i0; i < i1; i += GK_MR) {
            int mr = (int)min64(GK_MR, i1 - i);
            const float *ap[GK_MR];
            gk_rows(g, i, mr, ap);
            float *crow = g->c + i * ldc + ax_off(&g->c_j, j0);
            for (int jg = 0; jg < nb; jg += GK_NR) {
                const float *bias = (last && g->bias) ? g->bias + j0 + jg : NULL;
                gk_micro(kc, ap, blk.aoff, blk.bbase + jg, blk.boff, (int)min64(GK_NR, nb - jg), crow + jg, ldc, mr,
                         first, bias);
            }
        }
        rb += kc;
    } while (rb < g->K);
}

/* tile[ii*GK_NB + jj] = sum over r in [lo, hi) for rows [i0, i1), columns
 * [j0, j0 + nb), starting from 0 (an empty range gives zeros). */
static void gk_reduce_tile(const CpGemm *g, float *tile, float *pb, const int64_t *bj, int64_t i0, int64_t i1,
                           int64_t j0, int nb, int64_t lo, int64_t hi) {
    GkBlock blk;
    int64_t rb = lo;
    do {
        int kc = (int)min64(GK_KC, hi - rb);
        gk_block(&blk, g, rb, kc, j0, nb, bj, pb, i1 - i0);
        for (int64_t i = i0; i < i1; i += GK_MR) {
            int mr = (int)min64(GK_MR, i1 - i);
            const float *ap[GK_MR];
            gk_rows(g, i, mr, ap);
            float *crow = tile + (i - i0) * GK_NB;
            for (int jg = 0; jg < nb; jg += GK_NR)
                gk_micro(kc, ap, blk.aoff, blk.bbase + jg, blk.boff, (int)min64(GK_NR, nb - jg), crow + jg, GK_NB,
                         mr, rb == lo, NULL);
        }
        rb += kc;
    } while (rb < hi);
}

/* Write a finished tile into the output view (STORE with bias, or +=). */
static void gk_epilogue(const CpGemm *g, const float *tile, int64_t i0, int mi, int64_t j0, int nb) {
    int64_t cj[GK_NB];
    ax_fill(&g->c_j, j0, nb, cj);
    int unit = offs_unit(cj, nb);
    for (int ii = 0; ii < mi; ii++) {
        float *crow = g->c + ax_off(&g->c_i, i0 + ii);
        const float *t = tile + ii * GK_NB;
        if (g->mode == CP_GEMM_STORE) {
            for (int jj = 0; jj < nb; jj++)
                crow[cj[jj]] = g->bias ? cp_add_bias(t[jj], g->bias[(j0 + jj) / g->bias_div]) : t[jj];
        } else if (unit) {
            float *cr = crow + cj[0];
            for (int jj = 0; jj < nb; jj++) cr[jj] += t[jj]; /* the gradient convention: += once */
        } else {
            for (int jj = 0; jj < nb; jj++) crow[cj[jj]] += t[jj];
        }
    }
}

/* Task through a stack tile: rows [i0, i1) (<= GK_MB), columns [j0, j1). */
static void gk_task_tile(const CpGemm *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    _Alignas(64) float tile[GK_MB * GK_NB];
    _Alignas(64) float pb[GK_KC * GK_NB];
    int64_t bj[GK_NB];
    int nb = (int)(j1 - j0), mi = (int)(i1 - i0);
    ax_fill(&g->b_j, j0, nb, bj);
    if (g->mode != CP_GEMM_ACCUM_CHUNKED) {
        gk_reduce_tile(g, tile, pb, bj, i0, i1, j0, nb, 0, g->K);
        gk_epilogue(g, tile, i0, mi, j0, nb);
        return;
    }
    /* chunk plan over r: total = 0; total += chunk partial, in chunk order */
    _Alignas(64) float total[GK_MB * GK_NB];
    for (int ii = 0; ii < mi; ii++)
        for (int jj = 0; jj < nb; jj++) total[ii * GK_NB + jj] = 0.0f;
    int64_t nchunks = rplan_nchunks(g->K);
    for (int64_t ch = 0; ch < nchunks; ch++) {
        gk_reduce_tile(g, tile, pb, bj, i0, i1, j0, nb, rplan_chunk_lo(ch), rplan_chunk_hi(ch, g->K));
        for (int ii = 0; ii < mi; ii++)
            for (int jj = 0; jj < nb; jj++) total[ii * GK_NB + jj] += tile[ii * GK_NB + jj];
    }
    gk_epilogue(g, total, i0, mi, j0, nb);
}

void cp_gemm_cpu(const CpGemm *g, const CpCtx *ctx) {
    if (g->M <= 0 || g->N <= 0) return;
    int direct = g->mode == CP_GEMM_STORE && !g->c_i.fn && ax_unit(&g->c_j) && g->bias_div == 1;
    int64_t njb = cdiv64(g->N, GK_NB), mb;
    if (direct) { /* few, tall tasks: B is packed once per task; split rows only to feed every thread */
        int64_t nmb = min64(cdiv64(4 * (int64_t)ctx->threads, njb), cdiv64(g->M, GK_MR));
        mb = cdiv64(cdiv64(g->M, nmb), GK_MR) * GK_MR;
    } else {
        mb = GK_MB;
    }
    int64_t nmb = cdiv64(g->M, mb), ntask = njb * nmb;
    /* dynamic: a thread descheduled on a busy machine holds back at most one
     * task; which thread computes a task never changes a bit */
#pragma omp parallel for num_threads(ctx->threads) schedule(dynamic, 1)
    for (int64_t t = 0; t < ntask; t++) {
        int64_t jb = t / nmb, ib = t % nmb; /* consecutive tasks share B columns */
        int64_t i0 = ib * mb, i1 = min64(i0 + mb, g->M), j0 = jb * GK_NB, j1 = min64(j0 + GK_NB, g->N);
        if (direct)
            gk_task_direct(g, i0, i1, j0, j1);
        else
            gk_task_tile(g, i0, i1, j0, j1);
    }
}

/* ---- column sums by the chunk plan (bias gradients) ---- */
#define CS_NB 256

void cp_colsum_plan(float *out, const float *d, const CpAxis *row, const CpAxis *col, int64_t M, int64_t j0,
                    int64_t j1) {
    float part[CS_NB], total[CS_NB];
    int64_t cj[CS_NB];
    int nb = (int)(j1 - j0);
    ax_fill(col, j0, nb, cj);
    for (int jj = 0; jj < nb; jj++) total[jj] = 0.0f;
    int64_t nchunks = rplan_nchunks(M);
    for (int64_t ch = 0; ch < nchunks; ch++) {
        for (int jj = 0; jj < nb; jj++) part[jj] = 0.0f;
        for (int64_t i = rplan_chunk_lo(ch); i < rplan_chunk_hi(ch, M); i++) {
            const float *src = d + ax_off(row, i);
            for (int jj = 0; jj < nb; jj++) part[jj] += src[cj[jj]]; /* lanes = columns, i sequential */
        }
        for (int jj = 0; jj < nb; jj++) total[jj] += part[jj];
    }
    for (int jj = 0; jj < nb; jj++) out[jj] = total[jj];
}

void cp_colsum_accum_cpu(float *db, const float *d, int64_t M, int64_t N, int64_t ld, const CpCtx *ctx) {
    CpAxis row = cp_axis_stride(ld), col = cp_axis_stride(1);
    int64_t nblk = cdiv64(N, CS_NB);
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t blk = 0; blk < nblk; blk++) {
        float s[CS_NB];
        int64_t j0 = blk * CS_NB, j1 = min64(j0 + CS_NB, N);
        cp_colsum_plan(s, d, &row, &col, M, j0, j1);
        for (int64_t j = j0; j < j1; j++) db[j] += s[j - j0];
    }
}

/* ---- Linear ---- */

/* out[M,OUT] = inp[M,IN] @ w[OUT,IN]^T (+ b[OUT]) */
void linear_forward_cpu(float *out, const float *inp, const float *w, const float *b, int64_t M, int IN, int OUT,
                        const CpCtx *ctx) {
    /* PyTorch: out = torch.nn.functional.linear(inp, w, b) */
    CpGemm g = {.M = M, .N = OUT, .K = IN,
                .a = inp, .a_i = cp_axis_stride(IN), .a_r = cp_axis_stride(1),         /* A(m,k) = inp[m,k] */
                .b = w, .b_r = cp_axis_stride(1), .b_j = cp_axis_stride(IN),           /* B(k,o) = w[o,k] */
                .c = out, .c_i = cp_axis_stride(OUT), .c_j = cp_axis_stride(1),
                .mode = CP_GEMM_STORE, .bias = b, .bias_div = 1};
    cp_gemm_cpu(&g, ctx);
}

/* dinp[M,IN] +=, dw[OUT,IN] +=, db[OUT] += (each may be NULL);
 * dout[M,OUT], inp[M,IN], w[OUT,IN] */
void linear_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         int64_t M, int IN, int OUT, const CpCtx *ctx) {
    if (dinp) { /* PyTorch: dinp += dout @ w */
        CpGemm g = {.M = M, .N = IN, .K = OUT,
                    .a = dout, .a_i = cp_axis_stride(OUT), .a_r = cp_axis_stride(1),  /* A(m,o) = dout[m,o] */
                    .b = w, .b_r = cp_axis_stride(IN), .b_j = cp_axis_stride(1),      /* B(o,k) = w[o,k] */
                    .c = dinp, .c_i = cp_axis_stride(IN), .c_j = cp_axis_stride(1),
                    .mode = CP_GEMM_ACCUM, .bias_div = 1};
        cp_gemm_cpu(&g, ctx);
    }
    if (dw) { /* PyTorch: dw += dout^T @ inp, rows m by the chunk plan */
        CpGemm g = {.M = OUT, .N = IN, .K = M,
                    .a = dout, .a_i = cp_axis_stride(1), .a_r = cp_axis_stride(OUT),  /* A(o,m) = dout[m,o] */
                    .b = inp, .b_r = cp_axis_stride(IN), .b_j = cp_axis_stride(1),    /* B(m,k) = inp[m,k] */
                    .c = dw, .c_i = cp_axis_stride(IN), .c_j = cp_axis_stride(1),
                    .mode = CP_GEMM_ACCUM_CHUNKED, .bias_div = 1};
        cp_gemm_cpu(&g, ctx);
    }
    if (db) cp_colsum_accum_cpu(db, dout, M, OUT, OUT, ctx); /* PyTorch: db += dout.sum(0) */
}
