/* layernorm_cpu.c - LayerNorm over the last dim (ViT) and LayerNorm2d over the
 * channels of NCHW (SAM neck), forward and backward on the CPU. The
 * arithmetic, its order and the PyTorch mapping are written once in
 * kernels/layernorm.h; this file only walks the data.
 *
 * Legend: M rows, D features (x[M,D], w[D], b[D], mean[M], rstd[M]);
 * N batch, C channels, HW = H*W (x[N,C,HW], w[C], b[C], mean[N,HW], rstd[N,HW]).
 *
 * Determinism (DESIGN.md rule 1, T): every sum is the chunk plan of
 * core/reduce.h, walked by one thread chunk after chunk: the chunk partial
 * from 0.0f in index order, then added to the total (from 0.0f) in chunk
 * order, exactly rplan_combine's order, so no scratch is needed.
 * Several independent sums run side by side, one accumulator each (lanes
 * across outputs, never across the reduced index): LN_G rows (LayerNorm
 * statistics and dinp), LN_B consecutive features (LayerNorm dw/db, over the
 * rows) or pixels (LayerNorm2d, over the channels), LN_G channels (LayerNorm2d
 * dw/db, over the batch-major pixel index i = n*HW + hw). Lanes change no bit;
 * they hide add latency and let the compiler use SIMD across outputs.
 * Threads own whole row groups, feature blocks, pixel blocks or channel
 * groups: every output has exactly one writer. No atomics, no allocation.
 * Outputs and gradients must not alias the inputs (the elementwise loops are
 * restrict-qualified so -O2 vectorizes them). */
#include "layernorm.h"

#include "common.h"
#include "ops.h"
#include "reduce.h"

#define LN_G 8  /* rows (or channels) reduced side by side, strided lanes: the
                 * lane loops are unrolled, one register per lane, no gathers */
#define LN_B 32 /* contiguous features or pixels reduced side by side */
#define LN_V 16 /* elementwise row loops run in fixed blocks of LN_V: a fixed
                 * trip count is what lets -O2 vectorize them */

/* Inlined into each caller, so the nb == LN_B call compiles with a constant
 * trip count (vectorized across lanes); the tail call uses the same code. */
#define LN_INLINE static inline __attribute__((always_inline))

static inline int64_t ln_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* ================= LayerNorm over the last dim: x[M,D] ================= */

/* Row pointers of the group starting at r0 (lanes past M repeat row M-1:
 * computed and discarded). Returns the number of valid lanes. */
static int ln_row_lanes(const float *p[LN_G], const float *x, int64_t r0, int64_t M, int D) {
    for (int l = 0; l < LN_G; l++) p[l] = x + ln_min(r0 + l, M - 1) * D;
    return (int)ln_min(M - r0, LN_G);
}

/* s[l] = plan-sum_d p[l][d] (PyTorch: x.sum(-1)). */
static void ln_rows_sum(float s[LN_G], const float *const p[LN_G], int D) {
    for (int l = 0; l < LN_G; l++) s[l] = 0.0f;
    for (int64_t ch = 0; ch < rplan_nchunks(D); ch++) {
        float part[LN_G] = {0.0f};
        for (int64_t d = rplan_chunk_lo(ch); d < rplan_chunk_hi(ch, D); d++)
#pragma GCC unroll 8
            for (int l = 0; l < LN_G; l++) part[l] += p[l][d];
        for (int l = 0; l < LN_G; l++) s[l] += part[l];
    }
}

/* s[l] = plan-sum_d (p[l][d] - mu[l])^2 (ln_sqdev). */
static void ln_rows_sqdev(float s[LN_G], const float *const p[LN_G], const float mu[LN_G], int D) {
    for (int l = 0; l < LN_G; l++) s[l] = 0.0f;
    for (int64_t ch = 0; ch < rplan_nchunks(D); ch++) {
        float part[LN_G] = {0.0f};
        for (int64_t d = rplan_chunk_lo(ch); d < rplan_chunk_hi(ch, D); d++)
#pragma GCC unroll 8
            for (int l = 0; l < LN_G; l++) part[l] = ln_sqdev(part[l], p[l][d], mu[l]);
        for (int l = 0; l < LN_G; l++) s[l] += part[l];
    }
}

/* o[d] = ln_affine(ln_xhat(x[d], mu, rs), w[d], b[d]) over one row. */
static void ln_affine_row(float *restrict o, const float *restrict x, const float *restrict w,
                          const float *restrict b, float mu, float rs, int D) {
    int d = 0;
    for (; d + LN_V <= D; d += LN_V)
        for (int j = 0; j < LN_V; j++) o[d + j] = ln_affine(ln_xhat(x[d + j], mu, rs), w[d + j], b[d + j]);
    for (; d < D; d++) o[d] = ln_affine(ln_xhat(x[d], mu, rs), w[d], b[d]);
}

/* Statistics and output of the rows r0..r0+LN_G-1. */
static void ln_rows_forward(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b,
                            int64_t r0, int64_t M, int D, float eps) {
    const float *p[LN_G];
    int nl = ln_row_lanes(p, x, r0, M, D);
    float s1[LN_G], s2[LN_G], mu[LN_G];
    ln_rows_sum(s1, p, D);
    for (int l = 0; l < LN_G; l++) mu[l] = ln_mean(s1[l], D);
    ln_rows_sqdev(s2, p, mu, D);
    for (int l = 0; l < nl; l++) {
        float rs = ln_rstd(ln_mean(s2[l], D), eps);
        mean[r0 + l] = mu[l];
        rstd[r0 + l] = rs;
        ln_affine_row(out + (r0 + l) * D, p[l], w, b, mu[l], rs, D);
    }
}

/* out[M,D], mean[M], rstd[M]; inp[M,D], w[D], b[D]. */
void layernorm_forward_cpu(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int64_t M, int D, float eps, const CpCtx *ctx) {
    int64_t ngroups = (M + LN_G - 1) / LN_G;
    /* PyTorch: F.layer_norm(inp, (D,), w, b, eps) */
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t g = 0; g < ngroups; g++) ln_rows_forward(out, mean, rstd, inp, w, b, g * LN_G, M, D, eps);
}

/* dr[d] += ln_dinp(ln_dxhat(g[d], w[d]), xhat[d], rs, m1, m2) over one row. */
static void ln_dinp_row(float *restrict dr, const float *restrict g, const float *restrict x,
                        const float *restrict w, float mu, float rs, float m1, float m2, int D) {
    int d = 0;
    for (; d + LN_V <= D; d += LN_V)
        for (int j = 0; j < LN_V; j++)
            dr[d + j] += ln_dinp(ln_dxhat(g[d + j], w[d + j]), ln_xhat(x[d + j], mu, rs), rs, m1, m2);
    for (; d < D; d++) dr[d] += ln_dinp(ln_dxhat(g[d], w[d]), ln_xhat(x[d], mu, rs), rs, m1, m2);
}

/* dinp of the rows r0..r0+LN_G-1 (this thread is their only writer). */
static void ln_rows_backward(float *dinp, const float *dout, const float *x, const float *mean, const float *rstd,
                             const float *w, int64_t r0, int64_t M, int D) {
    const float *px[LN_G], *pg[LN_G];
    int nl = ln_row_lanes(px, x, r0, M, D);
    ln_row_lanes(pg, dout, r0, M, D);
    float mu[LN_G], rs[LN_G], t1[LN_G] = {0.0f}, t2[LN_G] = {0.0f};
    for (int l = 0; l < LN_G; l++) {
        int64_t r = ln_min(r0 + l, M - 1);
        mu[l] = mean[r];
        rs[l] = rstd[r];
    }
    for (int64_t ch = 0; ch < rplan_nchunks(D); ch++) {
        float q1[LN_G] = {0.0f}, q2[LN_G] = {0.0f};
        for (int64_t d = rplan_chunk_lo(ch); d < rplan_chunk_hi(ch, D); d++)
#pragma GCC unroll 8
            for (int l = 0; l < LN_G; l++) {
                float g = ln_dxhat(pg[l][d], w[d]);
                q1[l] += g;
                q2[l] = fmaf(g, ln_xhat(px[l][d], mu[l], rs[l]), q2[l]);
            }
        for (int l = 0; l < LN_G; l++) t1[l] += q1[l], t2[l] += q2[l];
    }
    for (int l = 0; l < nl; l++) {
        float m1 = ln_mean(t1[l], D), m2 = ln_mean(t2[l], D);
        ln_dinp_row(dinp + (r0 + l) * D, pg[l], px[l], w, mu[l], rs[l], m1, m2, D);
    }
}

/* dw[d0+l] += plan-sum_m dout[m,d0+l] * xhat[m,d0+l], db likewise, l < nb. */
LN_INLINE void ln_cols_grad(float *dw, float *db, const float *dout, const float *x, const float *mean,
                            const float *rstd, int64_t M, int D, int64_t d0, int nb) {
    float tw[LN_B] = {0.0f}, tb[LN_B] = {0.0f};
    for (int64_t ch = 0; ch < rplan_nchunks(M); ch++) {
        float pw[LN_B] = {0.0f}, pb[LN_B] = {0.0f};
        for (int64_t m = rplan_chunk_lo(ch); m < rplan_chunk_hi(ch, M); m++) {
            const float *g = dout + m * D + d0, *p = x + m * D + d0;
            float mu = mean[m], rs = rstd[m];
            for (int l = 0; l < nb; l++) {
                pb[l] += g[l];
                pw[l] = fmaf(g[l], ln_xhat(p[l], mu, rs), pw[l]);
            }
        }
        for (int l = 0; l < nb; l++) tw[l] += pw[l], tb[l] += pb[l];
    }
    for (int l = 0; l < nb; l++) {
        if (dw) dw[d0 + l] += tw[l];
        if (db) db[d0 + l] += tb[l];
    }
}

/* dinp[M,D] +=, dw[D] +=, db[D] += (each may be NULL); dout[M,D], inp[M,D],
 * mean[M], rstd[M] from the forward, w[D]. */
void layernorm_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *mean, const float *rstd, const float *w, int64_t M, int D,
                            const CpCtx *ctx) {
    /* PyTorch: aten.native_layer_norm_backward */
    if (dinp) {
        int64_t ngroups = (M + LN_G - 1) / LN_G;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
        for (int64_t g = 0; g < ngroups; g++) ln_rows_backward(dinp, dout, inp, mean, rstd, w, g * LN_G, M, D);
    }
    if (dw || db) {
        int64_t nblocks = ((int64_t)D + LN_B - 1) / LN_B;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
        for (int64_t k = 0; k < nblocks; k++) {
            int nb = (int)ln_min(D - k * LN_B, LN_B);
            if (nb == LN_B) ln_cols_grad(dw, db, dout, inp, mean, rstd, M, D, k * LN_B, LN_B);
            else ln_cols_grad(dw, db, dout, inp, mean, rstd, M, D, k * LN_B, nb);
        }
    }
}

/* ============ LayerNorm2d over the channels: x[N,C,HW] ============ */

/* s[l] = plan-sum_c xb[c*HW + l], l < nb (the pixels of one block). With
 * mu != NULL the summand is (x - mu[l])^2 (ln_sqdev). */
LN_INLINE void ln2d_pix_sum(float s[LN_B], const float *xb, const float *mu, int C, int64_t HW, int nb) {
    for (int l = 0; l < LN_B; l++) s[l] = 0.0f;
    for (int64_t ch = 0; ch < rplan_nchunks(C); ch++) {
        float part[LN_B] = {0.0f};
        for (int64_t c = rplan_chunk_lo(ch); c < rplan_chunk_hi(ch, C); c++) {
            const float *row = xb + c * HW;
            if (mu)
                for (int l = 0; l < nb; l++) part[l] = ln_sqdev(part[l], row[l], mu[l]);
            else
                for (int l = 0; l < nb; l++) part[l] += row[l];
        }
        for (int l = 0; l < nb; l++) s[l] += part[l];
    }
}

/* o[l] = ln_affine(ln_xhat(x[l], mu[l], rs[l]), w, b), l < nb: one channel of a
 * pixel block (restrict: lets -O2 vectorize across pixels). */
LN_INLINE void ln2d_affine_run(float *restrict o, const float *restrict x, float w, float b,
                               const float *restrict mu, const float *restrict rs, int nb) {
    for (int l = 0; l < nb; l++) o[l] = ln_affine(ln_xhat(x[l], mu[l], rs[l]), w, b);
}

/* Statistics and output of the pixels hw0..hw0+nb-1 of image n. */
LN_INLINE void ln2d_block_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                                  const float *b, int64_t n, int64_t hw0, int nb, int C, int64_t HW, float eps) {
    const float *xb = x + n * C * HW + hw0;
    float *ob = out + n * C * HW + hw0;
    float s[LN_B], mu[LN_B] = {0.0f}, rs[LN_B] = {0.0f};
    ln2d_pix_sum(s, xb, NULL, C, HW, nb);
    for (int l = 0; l < nb; l++) mu[l] = ln_mean(s[l], C);
    ln2d_pix_sum(s, xb, mu, C, HW, nb);
    for (int l = 0; l < nb; l++) {
        rs[l] = ln_rstd(ln_mean(s[l], C), eps);
        mean[n * HW + hw0 + l] = mu[l];
        rstd[n * HW + hw0 + l] = rs[l];
    }
    for (int64_t c = 0; c < C; c++) ln2d_affine_run(ob + c * HW, xb + c * HW, w[c], b[c], mu, rs, nb);
}

/* out[N,C,HW], mean[N,HW], rstd[N,HW]; inp[N,C,HW], w[C], b[C]. */
void layernorm2d_forward_cpu(float *out, float *mean, float *rstd, const float *inp, const float *w,
                             const float *b, int N, int C, int64_t HW, float eps, const CpCtx *ctx) {
    int64_t nblocks = (HW + LN_B - 1) / LN_B;
    /* PyTorch (SAM LayerNorm2d): u = x.mean(1, keepdim=True); s = (x - u).pow(2).mean(1, keepdim=True);
     * x = (x - u) / torch.sqrt(s + eps); x = w[:, None, None] * x + b[:, None, None] */
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t u = 0; u < (int64_t)N * nblocks; u++) {
        int64_t n = u / nblocks, hw0 = (u % nblocks) * LN_B;
        int nb = (int)ln_min(HW - hw0, LN_B);
        if (nb == LN_B) ln2d_block_forward(out, mean, rstd, inp, w, b, n, hw0, LN_B, C, HW, eps);
        else ln2d_block_forward(out, mean, rstd, inp, w, b, n, hw0, nb, C, HW, eps);
    }
}

/* d[l] += ln_dinp(ln_dxhat(g[l], w), xhat, rs[l], m1[l], m2[l]), l < nb: one
 * channel of a pixel block (restrict: lets -O2 vectorize across pixels). */
LN_INLINE void ln2d_dinp_run(float *restrict d, const float *restrict g, const float *restrict x, float w,
                             const float *restrict mu, const float *restrict rs, const float *restrict m1,
                             const float *restrict m2, int nb) {
    for (int l = 0; l < nb; l++) d[l] += ln_dinp(ln_dxhat(g[l], w), ln_xhat(x[l], mu[l], rs[l]), rs[l], m1[l], m2[l]);
}

/* dinp of the pixels hw0..hw0+nb-1 of image n (this thread is their only writer). */
LN_INLINE void ln2d_block_backward(float *dinp, const float *dout, const float *x, const float *mean,
                                   const float *rstd, const float *w, int64_t n, int64_t hw0, int nb, int C,
                                   int64_t HW) {
    int64_t off = n * C * HW + hw0;
    const float *xb = x + off, *gb = dout + off;
    float *db = dinp + off;
    float mu[LN_B] = {0.0f}, rs[LN_B] = {0.0f}, t1[LN_B] = {0.0f}, t2[LN_B] = {0.0f};
    for (int l = 0; l < nb; l++) mu[l] = mean[n * HW + hw0 + l], rs[l] = rstd[n * HW + hw0 + l];
    for (int64_t ch = 0; ch < rplan_nchunks(C); ch++) {
        float q1[LN_B] = {0.0f}, q2[LN_B] = {0.0f};
        for (int64_t c = rplan_chunk_lo(ch); c < rplan_chunk_hi(ch, C); c++)
            for (int l = 0; l < nb; l++) {
                float g = ln_dxhat(gb[c * HW + l], w[c]);
                q1[l] += g;
                q2[l] = fmaf(g, ln_xhat(xb[c * HW + l], mu[l], rs[l]), q2[l]);
            }
        for (int l = 0; l < nb; l++) t1[l] += q1[l], t2[l] += q2[l];
    }
    for (int l = 0; l < nb; l++) t1[l] = ln_mean(t1[l], C), t2[l] = ln_mean(t2[l], C); /* now m1, m2 */
    for (int64_t c = 0; c < C; c++) ln2d_dinp_run(db + c * HW, gb + c * HW, xb + c * HW, w[c], mu, rs, t1, t2, nb);
}

/* dw[c0+l] += plan-sum_i dout * xhat, db[c0+l] += plan-sum_i dout, over the
 * batch-major pixel index i = n*HW + hw, for the channels c0..c0+LN_G-1
 * (lanes past C repeat channel C-1, discarded). */
static void ln2d_chan_grad(float *dw, float *db, const float *dout, const float *x, const float *mean,
                           const float *rstd, int64_t c0, int N, int C, int64_t HW) {
    int64_t off[LN_G], count = (int64_t)N * HW;
    int nl = (int)ln_min(C - c0, LN_G);
    for (int l = 0; l < LN_G; l++) off[l] = (ln_min(c0 + l, C - 1) - c0) * HW;
    float tw[LN_G] = {0.0f}, tb[LN_G] = {0.0f};
    for (int64_t ch = 0; ch < rplan_nchunks(count); ch++) {
        int64_t hi = rplan_chunk_hi(ch, count), run;
        float pw[LN_G] = {0.0f}, pb[LN_G] = {0.0f};
        for (int64_t i = rplan_chunk_lo(ch); i < hi; i += run) {
            int64_t n = i / HW, hw = i % HW, base = (n * C + c0) * HW + hw;
            run = ln_min(HW - hw, hi - i); /* stays inside image n */
            for (int64_t k = 0; k < run; k++) {
                float mu = mean[i + k], rs = rstd[i + k];
#pragma GCC unroll 8
                for (int l = 0; l < LN_G; l++) {
                    float g = dout[base + off[l] + k];
                    pb[l] += g;
                    pw[l] = fmaf(g, ln_xhat(x[base + off[l] + k], mu, rs), pw[l]);
                }
            }
        }
        for (int l = 0; l < LN_G; l++) tw[l] += pw[l], tb[l] += pb[l];
    }
    for (int l = 0; l < nl; l++) {
        if (dw) dw[c0 + l] += tw[l];
        if (db) db[c0 + l] += tb[l];
    }
}

/* dinp[N,C,HW] +=, dw[C] +=, db[C] += (each may be NULL); dout[N,C,HW],
 * inp[N,C,HW], mean[N,HW], rstd[N,HW] from the forward, w[C]. */
void layernorm2d_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                              const float *mean, const float *rstd, const float *w, int N, int C, int64_t HW,
                              const CpCtx *ctx) {
    /* PyTorch: autograd of the LayerNorm2d forward above */
    if (dinp) {
        int64_t nblocks = (HW + LN_B - 1) / LN_B;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
        for (int64_t u = 0; u < (int64_t)N * nblocks; u++) {
            int64_t n = u / nblocks, hw0 = (u % nblocks) * LN_B;
            int nb = (int)ln_min(HW - hw0, LN_B);
            if (nb == LN_B) ln2d_block_backward(dinp, dout, inp, mean, rstd, w, n, hw0, LN_B, C, HW);
            else ln2d_block_backward(dinp, dout, inp, mean, rstd, w, n, hw0, nb, C, HW);
        }
    }
    if (dw || db) {
        int64_t ngroups = ((int64_t)C + LN_G - 1) / LN_G;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
        for (int64_t g = 0; g < ngroups; g++) ln2d_chan_grad(dw, db, dout, inp, mean, rstd, g * LN_G, N, C, HW);
    }
}
