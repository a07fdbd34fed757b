/* eltwise_cpu.c - CPU loops of the elementwise ops (kernels/ops.h):
 * relu, gelu, add, add_bias_hw. The math is in kernels/eltwise.h.
 *
 * Layouts: flat float arrays of n elements; add_bias_hw works on NCHW seen as
 * rows (n, c) of HW contiguous pixels, bias[N,C].
 *
 * Determinism: every loop owns distinct outputs (one writer per element), so
 * the OpenMP schedule decides only who computes an element, never its value.
 * Gradients ACCUMULATE (+=, ops.h convention): each gradient element is read
 * and written once per call, in one statement. The only reduction,
 * dbias[n,c] = sum_hw dout[n,c,hw], follows core/reduce.h: chunks of RCHUNK
 * over hw, each summed sequentially from 0, partials summed in chunk order.
 * Rows are summed 8 at a time with one accumulator per row (latency hiding
 * ACROSS outputs); each row keeps its own sequential order, so the bits equal
 * rplan_chunk_sum + rplan_combine row by row.
 * Elementwise loops carry `omp simd`: every lane computes its own element
 * with the same IEEE operations, so SIMD width never changes a bit. */
#include <stdint.h>

#include "eltwise.h"
#include "kernels/ops.h"
#include "reduce.h"

/* Elements per OpenMP work item for flat loops: big enough that the fork is
 * amortised, small enough to balance 2-16 threads on a few-MB tensor. */
#define ELT_BLOCK 16384

void relu_forward_cpu(float *out, const float *inp, int64_t n, const CpCtx *ctx) {
    /* out[n], inp[n]. PyTorch: torch.relu(inp) */
#pragma omp parallel for simd num_threads(ctx->threads) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = relu_fwd(inp[i]);
}

void relu_backward_cpu(float *dinp, const float *dout, const float *out, int64_t n, const CpCtx *ctx) {
    /* dinp[n] +=, dout[n], out[n] (forward output or input). */
    if (!dinp) return;
#pragma omp parallel for simd num_threads(ctx->threads) schedule(static)
    for (int64_t i = 0; i < n; i++) dinp[i] += relu_grad(dout[i], out[i]);
}

void gelu_forward_cpu(float *out, const float *inp, int64_t n, const CpCtx *ctx) {
    /* out[n], inp[n]. PyTorch: F.gelu(inp, approximate='none')
     * (cp_erff's range branches keep this loop scalar today; `omp simd` lets
     * a branch-free dmath vectorise it, lane by lane, with the same bits) */
    int64_t nb = (n + ELT_BLOCK - 1) / ELT_BLOCK;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        int64_t hi = (b + 1) * ELT_BLOCK < n ? (b + 1) * ELT_BLOCK : n;
#pragma omp simd
        for (int64_t i = b * ELT_BLOCK; i < hi; i++) out[i] = gelu_fwd(inp[i]);
    }
}

void gelu_backward_cpu(float *dinp, const float *dout, const float *inp, int64_t n, const CpCtx *ctx) {
    /* dinp[n] +=, dout[n], inp[n] (the forward input). */
    if (!dinp) return;
    int64_t nb = (n + ELT_BLOCK - 1) / ELT_BLOCK;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        int64_t hi = (b + 1) * ELT_BLOCK < n ? (b + 1) * ELT_BLOCK : n;
#pragma omp simd
        for (int64_t i = b * ELT_BLOCK; i < hi; i++) dinp[i] += gelu_grad(dout[i], inp[i]);
    }
}

void add_forward_cpu(float *out, const float *a, const float *b, int64_t n, const CpCtx *ctx) {
    /* out[n] = a[n] + b[n]; out may alias a or b (each element is read before
     * it is written, by the same iteration). PyTorch: a + b */
#pragma omp parallel for simd num_threads(ctx->threads) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = add_fwd(a[i], b[i]);
}

void add_bias_hw_forward_cpu(float *out, const float *inp, const float *bias, int N, int C, int64_t HW,
                             const CpCtx *ctx) {
    /* out[N,C,HW] = inp[N,C,HW] + bias[N,C]. PyTorch: inp + bias[:, :, None, None] */
    int64_t rows = (int64_t)N * C;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *x = inp + r * HW;
        float *y = out + r * HW;
        float bv = bias[r];
#pragma omp simd
        for (int64_t i = 0; i < HW; i++) y[i] = add_fwd(x[i], bv);
    }
}

/* Declared in eltwise.h: rows r0 .. r0+nr-1 (nr <= 8) of x[rows, HW].
 * Eight NAMED accumulators per stage on purpose: with arrays, GCC turns the
 * eight adds into gathers through the stack (10x slower). Idle lanes
 * (nr < 8) re-read row r0 and are dropped. */
void rows_plan_sum8_cpu(float *sum, const float *x, int64_t r0, int nr, int64_t HW) {
#define ROW(j) (x + (r0 + ((j) < nr ? (j) : 0)) * HW)
    const float *p0 = ROW(0), *p1 = ROW(1), *p2 = ROW(2), *p3 = ROW(3);
    const float *p4 = ROW(4), *p5 = ROW(5), *p6 = ROW(6), *p7 = ROW(7);
#undef ROW
    float t0 = 0, t1 = 0, t2 = 0, t3 = 0, t4 = 0, t5 = 0, t6 = 0, t7 = 0; /* rplan_combine */
    for (int64_t c = 0; c < rplan_nchunks(HW); c++) {
        int64_t lo = rplan_chunk_lo(c), hi = rplan_chunk_hi(c, HW);
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0; /* rplan_chunk_sum */
        for (int64_t i = lo; i < hi; i++) {
            a0 += p0[i], a1 += p1[i], a2 += p2[i], a3 += p3[i];
            a4 += p4[i], a5 += p5[i], a6 += p6[i], a7 += p7[i];
        }
        t0 += a0, t1 += a1, t2 += a2, t3 += a3, t4 += a4, t5 += a5, t6 += a6, t7 += a7;
    }
    const float t[8] = {t0, t1, t2, t3, t4, t5, t6, t7};
    for (int j = 0; j < nr; j++) sum[j] = t[j];
}

void add_bias_hw_backward_cpu(float *dinp, float *dbias, const float *dout, int N, int C, int64_t HW,
                              const CpCtx *ctx) {
    /* dinp[N,C,HW] += dout[N,C,HW]; dbias[N,C] += sum_hw dout[n,c,hw] (plan over hw).
     * PyTorch: autograd of inp + bias[:, :, None, None] (dbias = dout.sum((2, 3))) */
    int64_t rows = (int64_t)N * C;
    if (dinp) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            float *d = dinp + r * HW;
            const float *g = dout + r * HW;
#pragma omp simd
            for (int64_t i = 0; i < HW; i++) d[i] += g[i];
        }
    }
    if (dbias) {
        int64_t groups = (rows + 7) / 8;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
        for (int64_t gi = 0; gi < groups; gi++) {
            float s[8];
            int nr = rows - gi * 8 < 8 ? (int)(rows - gi * 8) : 8;
            rows_plan_sum8_cpu(s, dout, gi * 8, nr, HW);
            for (int j = 0; j < nr; j++) dbias[gi * 8 + j] += s[j];
        }
    }
}
