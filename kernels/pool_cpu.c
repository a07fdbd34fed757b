/* pool_cpu.c - CPU loops of the pooling / resampling ops (kernels/ops.h):
 * maxpool2x2, upsample2x, style. The math is in kernels/pool.h.
 *
 * Layouts: NCHW float32, seen as N*C planes of H rows of W pixels; maxpool's
 * saved arg[N,C,H/2,W/2] is uint8 (window position 0..3); style's pooled[N,C],
 * norm[N], out[N,C].
 *
 * Determinism: each parallel loop owns distinct output rows (one writer per
 * element), so threads change only who computes a value, never the value.
 * The backwards are gathers (DESIGN.md rule 3): an input-gradient element
 * reads the output element(s) it fed and adds their sum, once, in the order
 * of pool.h. Gradients ACCUMULATE (+=, ops.h convention). The style pooling
 * sums each (n, c) row by the core/reduce.h plan over hw, 8 rows in lockstep
 * with separate accumulators (rows_plan_sum8_cpu, eltwise.h).
 * Inner loops carry `omp simd` over outputs only (each lane its own output,
 * the same IEEE operations in the same order), so SIMD width never changes a
 * bit; maxpool's selects are branch-free (pool_select) so that the scalar
 * tail of short rows does not mispredict on real data. */
#include <stdint.h>
#include <string.h>

#include "eltwise.h"
#include "kernels/ops.h"
#include "pool.h"

/* ---- MaxPool2d(2, 2), floor mode ---- */
/* The uint8 arg makes GCC pick 64-lane vectors, so rows with Wo < 64 (every
 * CPnet level but the first) would run scalar; 16 lanes cover Wo >= 16. */
#define MAXPOOL_SIMDLEN 16

void maxpool2x2_forward_cpu(float *out, uint8_t *arg, const float *inp, int N, int C, int H, int W,
                            const CpCtx *ctx) {
    /* out[N,C,Ho,Wo], arg[N,C,Ho,Wo], inp[N,C,H,W]; Ho = H/2, Wo = W/2 (the last
     * row / column of an odd H / W is dropped). PyTorch: F.max_pool2d(inp, 2, 2) */
    int Ho = H / 2, Wo = W / 2;
    int64_t rows = (int64_t)N * C * Ho; /* one task = one output row */
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t plane = r / Ho, oy = r % Ho;
        const float *x0 = inp + (plane * H + 2 * oy) * W, *x1 = x0 + W;
        float *y = out + r * Wo;
        uint8_t *a = arg + r * Wo;
#pragma omp simd simdlen(MAXPOOL_SIMDLEN)
        for (int ox = 0; ox < Wo; ox++)
            y[ox] = maxpool2x2_window(x0[2 * ox], x0[2 * ox + 1], x1[2 * ox], x1[2 * ox + 1], &a[ox]);
    }
}

void maxpool2x2_backward_cpu(float *dinp, const float *dout, const uint8_t *arg, int N, int C, int H, int W,
                             const CpCtx *ctx) {
    /* dinp[N,C,H,W] +=, dout[N,C,Ho,Wo], arg[N,C,Ho,Wo]. Gather: input (y, x)
     * inside the pooled area reads output (y/2, x/2) and adds dout there only if
     * arg picked it; the dropped last row / column of odd H / W get nothing.
     * PyTorch: max_pool2d_with_indices_backward */
    if (!dinp) return;
    int Ho = H / 2, Wo = W / 2;
    int64_t rows = (int64_t)N * C * 2 * Ho; /* one task = one input row y < 2*Ho */
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t plane = r / (2 * Ho), y = r % (2 * Ho);
        float *d = dinp + (plane * H + y) * W;
        const float *g = dout + (plane * Ho + y / 2) * Wo;
        const uint8_t *a = arg + (plane * Ho + y / 2) * Wo;
        uint8_t pos0 = (uint8_t)((y & 1) * 2); /* window position of even x; odd x is pos0 + 1 */
#pragma omp simd simdlen(MAXPOOL_SIMDLEN)
        for (int ox = 0; ox < Wo; ox++) {
            d[2 * ox] = maxpool2x2_grad(d[2 * ox], g[ox], a[ox], pos0);
            d[2 * ox + 1] = maxpool2x2_grad(d[2 * ox + 1], g[ox], a[ox], (uint8_t)(pos0 + 1));
        }
    }
}

/* ---- nearest upsample x2 ---- */
void upsample2x_forward_cpu(float *out, const float *inp, int N, int C, int H, int W, const CpCtx *ctx) {
    /* out[N,C,2H,2W], inp[N,C,H,W]: out[Y][X] = inp[Y/2][X/2].
     * PyTorch: F.interpolate(inp, scale_factor=2, mode='nearest') */
    int64_t rows = (int64_t)N * C * H; /* one task = one input row -> two output rows */
    int W2 = 2 * W;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *x = inp + r * W;
        float *y0 = out + 2 * r * W2, *y1 = y0 + W2; /* output rows 2y, 2y+1 of the same plane */
#pragma omp simd
        for (int ix = 0; ix < W; ix++) {
            y0[2 * ix] = x[ix];
            y0[2 * ix + 1] = x[ix];
        }
        memcpy(y1, y0, sizeof(float) * (size_t)W2);
    }
}

void upsample2x_backward_cpu(float *dinp, const float *dout, int N, int C, int H, int W, const CpCtx *ctx) {
    /* dinp[N,C,H,W] +=, dout[N,C,2H,2W]. Gather of each 2x2 block in the order
     * of ops.h. PyTorch: upsample_nearest2d_backward */
    if (!dinp) return;
    int64_t rows = (int64_t)N * C * H;
    int W2 = 2 * W;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *d = dinp + r * W;
        const float *g0 = dout + 2 * r * W2, *g1 = g0 + W2;
#pragma omp simd
        for (int ix = 0; ix < W; ix++)
            d[ix] += upsample2x_grad(g0[2 * ix], g0[2 * ix + 1], g1[2 * ix], g1[2 * ix + 1]);
    }
}

/* ---- style: global average pool + L2 normalisation (Cellpose make_style) ---- */
int style_forward_cpu(float *out, float *pooled, float *norm, const float *inp, int N, int C, int64_t HW,
                      const CpCtx *ctx) {
    /* out[N,C], pooled[N,C], norm[N], inp[N,C,HW]. Returns how many samples
     * have a norm that is not > 0 (zero, or NaN from a NaN input): their style
     * is the canonical NaN, as Cellpose's 0/0.
     * PyTorch: p = F.avg_pool2d(inp, (H, W)).flatten(1); out = p / (p**2).sum(1, keepdim=True)**.5 */
    int64_t rows = (int64_t)N * C, groups = (rows + 7) / 8;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t gi = 0; gi < groups; gi++) {
        float s[8];
        int nr = rows - gi * 8 < 8 ? (int)(rows - gi * 8) : 8;
        rows_plan_sum8_cpu(s, inp, gi * 8, nr, HW);
        for (int j = 0; j < nr; j++) pooled[gi * 8 + j] = s[j] / (float)HW; /* the mean */
    }
    int zero = 0;
    for (int n = 0; n < N; n++) { /* N*C work: not worth a fork */
        const float *p = pooled + (int64_t)n * C;
        norm[n] = style_norm(p, C);
        zero += !(norm[n] > 0.0f);
        for (int c = 0; c < C; c++) out[(int64_t)n * C + c] = style_out(p[c], norm[n]);
    }
    return zero;
}

/* Channels per task in style_backward: each task computes dot(y, dy) of its
 * sample once (C flops) and then writes STYLE_CBLK rows of HW pixels. */
#define STYLE_CBLK 16

void style_backward_cpu(float *dinp, const float *dout, const float *out, const float *norm, int N, int C,
                        int64_t HW, const CpCtx *ctx) {
    /* dinp[N,C,HW] +=, dout[N,C], out[N,C] (the forward style y), norm[N]:
     * dinp[n,c,:] += ((dy - y * dot(y, dy)) / norm) / HW; a zero-norm sample
     * gets the canonical NaN stored (style_accum). PyTorch: autograd of make_style */
    if (!dinp) return;
    int cblocks = (C + STYLE_CBLK - 1) / STYLE_CBLK;
    int64_t tasks = (int64_t)N * cblocks;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
        int n = (int)(t / cblocks), c0 = (int)(t % cblocks) * STYLE_CBLK;
        int c1 = c0 + STYLE_CBLK < C ? c0 + STYLE_CBLK : C;
        const float *y = out + (int64_t)n * C, *dy = dout + (int64_t)n * C;
        float dot = style_dot(y, dy, C);
        for (int c = c0; c < c1; c++) {
            float g = style_grad_pixel(dy[c], y[c], dot, norm[n], HW);
            float *d = dinp + ((int64_t)n * C + c) * HW;
#pragma omp simd
            for (int64_t i = 0; i < HW; i++) d[i] = style_accum(d[i], g);
        }
    }
}
