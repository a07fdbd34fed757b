/* conv2d_cpu.c - "same" 2-D convolution on the CPU: forward, input gradient,
 * weight and bias gradients (kernels/ops.h), bit-identical to the per-output
 * reference in kernels/conv2d.h for any thread count and any SIMD width.
 *
 * Legend: N batch, C input channels, OC output channels, H W spatial
 * (HW = H*W), K kernel (odd), KK = K*K, pad = K/2, VL SIMD lanes.
 * Layouts: NCHW contiguous; w[OC,C,K,K]; b[OC].
 *
 * How it is fast and still exact:
 *  - Forward and input gradient are one "direct conv" kernel. A register
 *    tile is COB output channels x TILE_PV image rows x one vector of VL
 *    consecutive columns; each lane is one output. For each reduced channel
 *    j and tap (ky, kx), in the canonical order, the shifted input row vector
 *    is loaded and FMA-ed into the COB accumulators with a broadcast weight,
 *    so every lane runs exactly the sequential fmaf chain of conv2d.h.
 *    Taps outside the image are SKIPPED, never replaced by padded zeros:
 *    columns by masked FMAs (a masked lane keeps its accumulator; K masks per
 *    tile, held in mask registers), rows by leaving the FMA out at compile
 *    time: interior rows go in bands of TILE_PV (all tap rows exist), the
 *    first and last image rows and leftovers in single-row tiles specialized
 *    for "no row above / below" (runtime row checks cost 3-4x). The input
 *    gradient is the same kernel with flipped taps (pad - ky, pad - kx) and
 *    transposed weight strides (co <-> ci), then dinp += acc. The input
 *    planes are prefetched TILE_PF channels ahead (+15% measured).
 *  - Weight gradient: a group owns dw[co-block of CB = DW_V*VL channels (the
 *    lanes), up to DW_CIB input channels, all taps]. It walks the chunk plan
 *    (core/reduce.h) over i = n*HW + p in order; within a chunk, pieces of
 *    DW_P positions of dout are transposed into a stack buffer
 *    [position][channel], and for each input channel the 9 (K = 3) or 1
 *    (K = 1) tap accumulators take fmaf(dout, inp, acc) position by position
 *    (ascending i; taps outside the image skipped: image-edge columns and
 *    rows take separate code paths). At a chunk end total += partial; at the
 *    end dw += total. db rides along in the first input-channel block. Big
 *    groups matter (each group re-reads its dout): 64 input channels per
 *    group. Stack: ~165 KB per thread (partials, totals, the piece; thread
 *    stacks are >= 2 MB on Linux); no heap, no atomics, one writer per output.
 *  - Grouping and tiling may depend on the thread count, for speed only:
 *    every output's arithmetic is fixed by its own order, whoever runs it.
 *  - SIMD: AVX-512 (16 lanes, mask registers), AVX2+FMA (8 lanes, blends) or
 *    a scalar build (1 lane, fmaf): fused multiply-add is exactly rounded on
 *    all three, so all give the same bits (tests/test_conv2d.c checks each
 *    against an independent transcription). Kernel sizes other than 1 and 3
 *    run the scalar reference functions of conv2d.h directly. */
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#include "kernels/conv2d.h"
#include "kernels/ops.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- SIMD layer: vf = VL floats, vm = a lane mask. v_fmam(a, b, c, m) is
 * fmaf(a, b, c) in lanes where m is set and c (untouched) elsewhere. ---- */
#if defined(__AVX512F__)
#define CV_VL 16
#define CV_SIMD "avx512"
typedef __m512 vf;
typedef __mmask16 vm;
ALWAYS_INLINE vf v_zero(void) { return _mm512_setzero_ps(); }
ALWAYS_INLINE vf v_set1(float a) { return _mm512_set1_ps(a); }
ALWAYS_INLINE vf v_load(const float *p) { return _mm512_loadu_ps(p); }
ALWAYS_INLINE vf v_loadz(vm m, const float *p) { return _mm512_maskz_loadu_ps(m, p); }
ALWAYS_INLINE void v_store(float *p, vf a) { _mm512_storeu_ps(p, a); }
ALWAYS_INLINE void v_storem(float *p, vm m, vf a) { _mm512_mask_storeu_ps(p, m, a); }
ALWAYS_INLINE vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
ALWAYS_INLINE vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
ALWAYS_INLINE vf v_fmam(vf a, vf b, vf c, vm m) { return _mm512_mask3_fmadd_ps(a, b, c, m); }
ALWAYS_INLINE vm v_mask(uint32_t bits) { return (vm)bits; }
#elif defined(__AVX2__) && defined(__FMA__)
#define CV_VL 8
#define CV_SIMD "avx2"
typedef __m256 vf;
typedef __m256i vm;
ALWAYS_INLINE vf v_zero(void) { return _mm256_setzero_ps(); }
ALWAYS_INLINE vf v_set1(float a) { return _mm256_set1_ps(a); }
ALWAYS_INLINE vf v_load(const float *p) { return _mm256_loadu_ps(p); }
ALWAYS_INLINE vf v_loadz(vm m, const float *p) { return _mm256_maskload_ps(p, m); }
ALWAYS_INLINE void v_store(float *p, vf a) { _mm256_storeu_ps(p, a); }
ALWAYS_INLINE void v_storem(float *p, vm m, vf a) { _mm256_maskstore_ps(p, m, a); }
ALWAYS_INLINE vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
ALWAYS_INLINE vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
ALWAYS_INLINE vf v_fmam(vf a, vf b, vf c, vm m) {
    return _mm256_blendv_ps(c, _mm256_fmadd_ps(a, b, c), _mm256_castsi256_ps(m));
}
ALWAYS_INLINE vm v_mask(uint32_t bits) {
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), lane), lane);
}
#else
#define CV_VL 1
#define CV_SIMD "scalar"
typedef float vf;
typedef int vm;
ALWAYS_INLINE vf v_zero(void) { return 0.0f; }
ALWAYS_INLINE vf v_set1(float a) { return a; }
ALWAYS_INLINE vf v_load(const float *p) { return *p; }
ALWAYS_INLINE vf v_loadz(vm m, const float *p) { return m ? *p : 0.0f; }
ALWAYS_INLINE void v_store(float *p, vf a) { *p = a; }
ALWAYS_INLINE void v_storem(float *p, vm m, vf a) {
    if (m) *p = a;
}
ALWAYS_INLINE vf v_add(vf a, vf b) { return a + b; }
ALWAYS_INLINE vf v_fma(vf a, vf b, vf c) { return fmaf(a, b, c); }
ALWAYS_INLINE vf v_fmam(vf a, vf b, vf c, vm m) { return m ? fmaf(a, b, c) : c; }
ALWAYS_INLINE vm v_mask(uint32_t bits) { return (int)(bits & 1u); }
#endif

/* Register tiles (measured best on Zen 5): direct conv TILE_COB channels x
 * TILE_PV rows of one vector (AVX-512: 8 x 3 = 24 accumulators of the 32
 * registers). Weight gradient: DW_V vectors of output channels per group
 * (AVX-512: 9 taps x 2 = 18 accumulators). */
#if CV_VL == 16
#define TILE_COB 8
#define TILE_PV 3
#define DW_V 2
#elif CV_VL == 8
#define TILE_COB 6 /* 12 accumulators of the 16 registers */
#define TILE_PV 2
#define DW_V 1
#else
#define TILE_COB 4
#define TILE_PV 4
#define DW_V 1
#endif
#define TILE_PF 2   /* prefetch the input planes this many channels ahead */
#define TILE_XV 32  /* x-vectors whose masks are kept at once */
#define DW_CB (DW_V * CV_VL) /* output channels (lanes) per weight-gradient group */
#define DW_CIB 64            /* input channels per weight-gradient group, at most */
#define DW_P 128             /* positions per transposed dout piece */

/* ======================= forward / input gradient ======================= */

/* One "direct conv": dst[n,o,p] (=|+=) sum_j sum_t src[n,j,p+off(t)] * w[o*wso + j*wsj + t]. */
typedef struct {
    const float *src;  /* [N, J, HW]: inp (forward) or dout (input gradient) */
    const float *w;    /* weights, addressed by the strides below; taps contiguous */
    int64_t wso, wsj;  /* weight stride of the output channel o and of the reduced channel j */
    const float *bias; /* [O] or NULL: added after the sum (forward) */
    float *dst;        /* [N, O, HW] */
    int accumulate;    /* 0: dst = acc (+ bias); 1: dst += acc (input gradient) */
    int N, J, O, H, W;
} DConv;

/* Tiles are PV image rows y0.. (PV = TILE_PV, or 1) x one vector of VL
 * columns x0.. (the lanes), for COB output channels. Column masks mk[kx]:
 * lanes whose tap column x + dx(kx) is inside (and x < W); mst: lanes with
 * x < W. Rows: multi-row tiles only cover rows whose tap rows all exist;
 * single-row tiles may lack the row above (NOUP) and/or below (NODOWN). */
static void tile_colmasks(vm *mk, vm *mst, int *masked, int x0, int W, int K, int flip) {
    const int pad = K / 2;
    uint32_t all = 0, st = 0;
    *masked = 0;
    for (int l = 0; l < CV_VL; l++) all |= 1u << l;
    for (int l = 0; l < CV_VL; l++) st |= (uint32_t)(x0 + l < W) << l;
    *mst = v_mask(st);
    for (int kx = 0; kx < K; kx++) {
        int dx = flip ? pad - kx : kx - pad;
        uint32_t bits = 0;
        for (int l = 0; l < CV_VL; l++) bits |= (uint32_t)(x0 + l < W && x0 + l + dx >= 0 && x0 + l + dx < W) << l;
        mk[kx] = v_mask(bits);
        *masked |= bits != all;
    }
}

#define ROW_NOUP 1   /* the row above the tile does not exist */
#define ROW_NODOWN 2 /* the row below the tile does not exist */

/* Row tile r of an image of H rows: returns its row count PV and sets y0 and
 * the ROW_ flags. K = 3: row 0, bands of TILE_PV interior rows, leftover
 * interior rows one by one, row H-1. K = 1: bands, then leftover rows. */
static int row_tile(int r, int H, int K, int *y0, int *flags) {
    *flags = 0;
    if (K == 1) {
        int nb = H / TILE_PV;
        *y0 = r < nb ? r * TILE_PV : nb * TILE_PV + (r - nb);
        return r < nb ? TILE_PV : 1;
    }
    if (H == 1) {
        *y0 = 0, *flags = ROW_NOUP | ROW_NODOWN;
        return 1;
    }
    int nb = (H - 2) / TILE_PV, rem = (H - 2) % TILE_PV;
    if (r == 0) *y0 = 0, *flags = ROW_NOUP;
    else if (r <= nb) *y0 = 1 + (r - 1) * TILE_PV;
    else if (r <= nb + rem) *y0 = 1 + nb * TILE_PV + (r - nb - 1);
    else *y0 = H - 1, *flags = ROW_NODOWN;
    return r >= 1 && r <= nb ? TILE_PV : 1;
}

static int row_tiles(int H, int K) {
    if (K == 1) return H / TILE_PV + H % TILE_PV;
    return H == 1 ? 1 : (H - 2) / TILE_PV + (H - 2) % TILE_PV + 2;
}

/* COB output channels o0.. x PV rows y0.. x the vector at x0, image n. All
 * flags are compile-time: FLIP (input-gradient taps), MASKED (column masks),
 * NOUP / NODOWN (taps of the missing row are skipped). Per lane: the
 * conv2d.h chain over (j, ky, kx). */
ALWAYS_INLINE void dconv_tile(const DConv *d, const int COB, const int PV, const int K, const int FLIP,
                              const int MASKED, const int NOUP, const int NODOWN, int n, int o0, int y0, int x0,
                              const vm *mk, vm mst) {
    const int pad = K / 2, W = d->W;
    const int64_t HW = (int64_t)d->H * W;
    vf acc[TILE_COB][TILE_PV];
#pragma GCC unroll 16
    for (int c = 0; c < COB; c++)
#pragma GCC unroll 16
        for (int v = 0; v < PV; v++) acc[c][v] = v_zero();
    const float *src = d->src + (int64_t)n * d->J * HW + (int64_t)y0 * W + x0;
    const float *wo = d->w + (int64_t)o0 * d->wso;
    for (int j = 0; j < d->J; j++, src += HW) {
        const float *wj = wo + (int64_t)j * d->wsj;
        if (j + TILE_PF < d->J) /* the rows of plane j + TILE_PF: a cache hint, no access */
#pragma GCC unroll 8
            for (int r = -pad; r < PV + pad; r++) {
                __builtin_prefetch(src + TILE_PF * HW + (int64_t)r * W - pad, 0, 3);
                __builtin_prefetch(src + TILE_PF * HW + (int64_t)r * W + CV_VL - 1 + pad, 0, 3);
            }
#pragma GCC unroll 3
        for (int ky = 0; ky < K; ky++) {
            const int dy = FLIP ? pad - ky : ky - pad;
            if ((NOUP && dy < 0) || (NODOWN && dy > 0)) continue; /* skipped row of taps */
#pragma GCC unroll 3
            for (int kx = 0; kx < K; kx++) {
                const int dx = FLIP ? pad - kx : kx - pad, t = ky * K + kx;
                vf xv[TILE_PV];
#pragma GCC unroll 16
                for (int v = 0; v < PV; v++) { /* masked lanes are never read */
                    const float *xp = src + (int64_t)(v + dy) * W + dx;
                    xv[v] = MASKED ? v_loadz(mk[kx], xp) : v_load(xp);
                }
#pragma GCC unroll 16
                for (int c = 0; c < COB; c++) {
                    vf wv = v_set1(wj[c * d->wso + t]);
#pragma GCC unroll 16
                    for (int v = 0; v < PV; v++)
                        acc[c][v] = MASKED ? v_fmam(xv[v], wv, acc[c][v], mk[kx]) : v_fma(xv[v], wv, acc[c][v]);
                }
            }
        }
    }
    float *dst = d->dst + ((int64_t)n * d->O + o0) * HW + (int64_t)y0 * W + x0;
#pragma GCC unroll 16
    for (int c = 0; c < COB; c++)
#pragma GCC unroll 16
        for (int v = 0; v < PV; v++) {
            float *q = dst + c * HW + (int64_t)v * W;
            vf r = acc[c][v];
            if (d->accumulate)
                r = v_add(MASKED ? v_loadz(mst, q) : v_load(q), r); /* PyTorch: grad_input += ... */
            else if (d->bias)
                r = v_add(r, v_set1(d->bias[o0 + c])); /* bias after the sum */
            if (MASKED)
                v_storem(q, mst, r);
            else
                v_store(q, r);
        }
}

/* Instantiations: COB in {TILE_COB, 4, 2, 1} (remainder channels) x
 * {band, interior or column-masked; single row (masked), by row flags}. */
#define DCONV_COB(COB, K, FLIP)                                                                        \
    do {                                                                                               \
        if (pv == TILE_PV && masked)                                                                   \
            dconv_tile(d, COB, TILE_PV, K, FLIP, 1, 0, 0, n, o0, y0, x0, mk, mst);                     \
        else if (pv == TILE_PV)                                                                        \
            dconv_tile(d, COB, TILE_PV, K, FLIP, 0, 0, 0, n, o0, y0, x0, mk, mst);                     \
        else if (flags == (ROW_NOUP | ROW_NODOWN))                                                     \
            dconv_tile(d, COB, 1, K, FLIP, 1, 1, 1, n, o0, y0, x0, mk, mst);                           \
        else if (flags == ROW_NOUP)                                                                    \
            dconv_tile(d, COB, 1, K, FLIP, 1, 1, 0, n, o0, y0, x0, mk, mst);                           \
        else if (flags == ROW_NODOWN)                                                                  \
            dconv_tile(d, COB, 1, K, FLIP, 1, 0, 1, n, o0, y0, x0, mk, mst);                           \
        else                                                                                           \
            dconv_tile(d, COB, 1, K, FLIP, 1, 0, 0, n, o0, y0, x0, mk, mst);                           \
    } while (0)
#define DCONV_VARIANT(NAME, K, FLIP)                                                                   \
    static void NAME(const DConv *d, int n, int o0, int cob, int y0, int pv, int flags, int x0,        \
                     const vm *mk, vm mst, int masked) {                                               \
        if (cob == TILE_COB)                                                                           \
            DCONV_COB(TILE_COB, K, FLIP);                                                              \
        else if (cob >= 4)                                                                             \
            DCONV_COB(4, K, FLIP);                                                                     \
        else if (cob >= 2)                                                                             \
            DCONV_COB(2, K, FLIP);                                                                     \
        else                                                                                           \
            DCONV_COB(1, K, FLIP);                                                                     \
    }
DCONV_VARIANT(dconv_k1, 1, 0)
DCONV_VARIANT(dconv_k3, 3, 0)
DCONV_VARIANT(dconv_k3_flip, 3, 1)

typedef void (*DconvTileFn)(const DConv *, int, int, int, int, int, int, int, const vm *, vm, int);

/* Runs every tile of a direct conv. Work items are (image, row tile);
 * inside, x-vectors then output-channel blocks. K is 1 or 3. */
static void dconv_run(const DConv *d, int K, int flip, const CpCtx *ctx) {
    const int nrt = row_tiles(d->H, K), nxv = (d->W + CV_VL - 1) / CV_VL;
    DconvTileFn tile = K == 1 ? dconv_k1 : flip ? dconv_k3_flip : dconv_k3;
#pragma omp parallel for num_threads(ctx->threads) schedule(dynamic, 1)
    for (int64_t item = 0; item < (int64_t)d->N * nrt; item++) {
        int n = (int)(item / nrt), y0, flags;
        int pv = row_tile((int)(item % nrt), d->H, K, &y0, &flags);
        for (int xv0 = 0; xv0 < nxv; xv0 += TILE_XV) { /* x-vectors in groups: masks once per group */
            const int nx = nxv - xv0 < TILE_XV ? nxv - xv0 : TILE_XV;
            vm mk[TILE_XV][3], mst[TILE_XV];
            int masked[TILE_XV];
            for (int i = 0; i < nx; i++) tile_colmasks(mk[i], &mst[i], &masked[i], (xv0 + i) * CV_VL, d->W, K, flip);
            for (int o0 = 0; o0 < d->O;) { /* weights of a channel block stay in L1 across x */
                int cob = d->O - o0 >= TILE_COB ? TILE_COB : d->O - o0 >= 4 ? 4 : d->O - o0 >= 2 ? 2 : 1;
                for (int i = 0; i < nx; i++)
                    tile(d, n, o0, cob, y0, pv, flags, (xv0 + i) * CV_VL, mk[i], mst[i], masked[i]);
                o0 += cob;
            }
        }
    }
}

/* =========================== weight gradient ============================ */

#if CV_VL == 16
/* In-register transpose of a 16 x 16 block: r[i] lane j -> r[j] lane i. */
ALWAYS_INLINE void tr16x16(__m512 r[16]) {
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* r[4i+k]: rows 4i..4i+3 of columns k, k+4, k+8, k+12 */
        r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        t[k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
        t[4 + k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
        t[8 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
        t[12 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
        r[4 + k] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xDD);
        r[12 + k] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0xDD);
    }
}
#endif

/* dT[q][c] = dout[n, co0 + c, q0 + q] for q < len, c < DW_CB (0 beyond OC).
 * Data movement only: any method gives the same bits. */
static void dw_transpose(float *dT, const float *dout_n, int64_t HW, int co0, int OC, int64_t q0, int len) {
#if CV_VL == 16
    for (int v = 0; v < DW_V; v++)
        for (int qb = 0; qb < len; qb += 16) {
            int nq = len - qb < 16 ? len - qb : 16;
            __mmask16 m = (__mmask16)((1u << nq) - 1u);
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                int co = co0 + v * 16 + i;
                r[i] = co < OC ? _mm512_maskz_loadu_ps(m, dout_n + (int64_t)co * HW + q0 + qb) : _mm512_setzero_ps();
            }
            tr16x16(r);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                if (i < nq) _mm512_store_ps(dT + (qb + i) * DW_CB + v * 16, r[i]);
        }
#else
    for (int c = 0; c < DW_CB; c++) {
        if (co0 + c < OC) {
            const float *s = dout_n + (int64_t)(co0 + c) * HW + q0;
            for (int q = 0; q < len; q++) dT[q * DW_CB + c] = s[q];
        } else {
            for (int q = 0; q < len; q++) dT[q * DW_CB + c] = 0.0f;
        }
    }
#endif
}

/* K = 3, one position x of row y: acc[t] += inp[tap t] * dout for the taps
 * inside the image. ROW0 / ROW2: the row above / below exists; SKIP0 / SKIP2:
 * the column left / right of x does not (x = 0 / x = W-1). rK + x + kx
 * addresses inp[y + K - 1][x + kx - 1]; skipped taps are never read. */
ALWAYS_INLINE void dw_k3_step(vf acc[9][DW_V], const int ROW0, const int ROW2, const int SKIP0, const int SKIP2,
                              const float *r0, const float *r1, const float *r2, int x, const float *dq) {
    vf dv[DW_V];
#pragma GCC unroll 2
    for (int v = 0; v < DW_V; v++) dv[v] = v_load(dq + v * CV_VL);
#pragma GCC unroll 3
    for (int kx = 0; kx < 3; kx++) {
        if ((kx == 0 && SKIP0) || (kx == 2 && SKIP2)) continue; /* skipped column of taps */
        vf b0 = ROW0 ? v_set1(r0[x + kx]) : v_zero(), b1 = v_set1(r1[x + kx]);
        vf b2 = ROW2 ? v_set1(r2[x + kx]) : v_zero();
#pragma GCC unroll 2
        for (int v = 0; v < DW_V; v++) {
            if (ROW0) acc[kx][v] = v_fma(b0, dv[v], acc[kx][v]);
            acc[3 + kx][v] = v_fma(b1, dv[v], acc[3 + kx][v]);
            if (ROW2) acc[6 + kx][v] = v_fma(b2, dv[v], acc[6 + kx][v]);
        }
    }
}

/* K = 3, one input channel, image row y, positions x in [x0, x1) in order,
 * image-edge columns included. part[t][c] (tap t = ky*3 + kx) is held in
 * registers for the row; dT0 + x*DW_CB is dout at x, channels as lanes. */
ALWAYS_INLINE void dw_k3_row(float *part, const int ROW0, const int ROW2, const float *plane, int W, int y, int x0,
                             int x1, const float *dT0) {
    const float *r1 = plane + (int64_t)y * W - 1;
    const float *r0 = ROW0 ? r1 - W : r1, *r2 = ROW2 ? r1 + W : r1; /* a missing row is never read */
    vf acc[9][DW_V];
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++)
#pragma GCC unroll 2
        for (int v = 0; v < DW_V; v++) acc[t][v] = v_load(part + t * DW_CB + v * CV_VL);
    int x = x0;
    if (x == 0 && W == 1) dw_k3_step(acc, ROW0, ROW2, 1, 1, r0, r1, r2, 0, dT0), x++;
    else if (x == 0) dw_k3_step(acc, ROW0, ROW2, 1, 0, r0, r1, r2, 0, dT0), x++;
    const int xb = x1 < W - 1 ? x1 : W - 1;
    for (; x < xb; x++) {
        /* hide the row pointers from the optimizer: it would otherwise carry
         * input values across iterations in registers and spill accumulators */
        __asm__("" : "+r"(r0), "+r"(r1), "+r"(r2));
        dw_k3_step(acc, ROW0, ROW2, 0, 0, r0, r1, r2, x, dT0 + (int64_t)x * DW_CB);
    }
    if (x < x1) dw_k3_step(acc, ROW0, ROW2, 0, 1, r0, r1, r2, x, dT0 + (int64_t)x * DW_CB); /* x = W-1 */
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++)
#pragma GCC unroll 2
        for (int v = 0; v < DW_V; v++) v_store(part + t * DW_CB + v * CV_VL, acc[t][v]);
}

/* K = 3: adds positions [q0, q0+len) of image plane `plane` (one input
 * channel) to that channel's 9 x DW_CB partials, in increasing position. */
static void dw_k3_piece(float *part, const float *dT, const float *plane, int H, int W, int64_t q0, int len) {
    for (int64_t q = q0; q < q0 + len;) {
        int y = (int)(q / W), x0 = (int)(q % W);
        int x1 = (int)(q0 + len - q + x0 < W ? q0 + len - q + x0 : W); /* this row: x in [x0, x1) */
        const float *dT0 = dT + (q - q0 - x0) * DW_CB;                  /* dT row of x = 0 */
        int row0 = y > 0, row2 = y < H - 1;
        if (row0 && row2)
            dw_k3_row(part, 1, 1, plane, W, y, x0, x1, dT0);
        else if (row2)
            dw_k3_row(part, 0, 1, plane, W, y, x0, x1, dT0);
        else if (row0)
            dw_k3_row(part, 1, 0, plane, W, y, x0, x1, dT0);
        else
            dw_k3_row(part, 0, 0, plane, W, y, x0, x1, dT0);
        q += x1 - x0;
    }
}

/* K = 1: NCI input channels (planes HW apart) at once, one tap each. */
ALWAYS_INLINE void dw_k1_rows(float *part, const int NCI, const float *dT, const float *plane, int64_t HW,
                              int64_t q0, int len) {
    vf acc[8][DW_V];
#pragma GCC unroll 16
    for (int r = 0; r < NCI; r++)
#pragma GCC unroll 2
        for (int v = 0; v < DW_V; v++) acc[r][v] = v_load(part + r * DW_CB + v * CV_VL);
    const float *s = plane + q0;
    for (int q = 0; q < len; q++) {
        vf dv[DW_V];
#pragma GCC unroll 2
        for (int v = 0; v < DW_V; v++) dv[v] = v_load(dT + q * DW_CB + v * CV_VL);
#pragma GCC unroll 16
        for (int r = 0; r < NCI; r++) {
            vf b = v_set1(s[r * HW + q]);
#pragma GCC unroll 2
            for (int v = 0; v < DW_V; v++) acc[r][v] = v_fma(b, dv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < NCI; r++)
#pragma GCC unroll 2
        for (int v = 0; v < DW_V; v++) v_store(part + r * DW_CB + v * CV_VL, acc[r][v]);
}

static void dw_k1_piece(float *part, int nci, const float *dT, const float *plane, int64_t HW, int64_t q0,
                        int len) {
    int r = 0;
    for (; r + 8 <= nci; r += 8) dw_k1_rows(part + r * DW_CB, 8, dT, plane + r * HW, HW, q0, len);
    for (; r + 4 <= nci; r += 4) dw_k1_rows(part + r * DW_CB, 4, dT, plane + r * HW, HW, q0, len);
    for (; r < nci; r++) dw_k1_rows(part + r * DW_CB, 1, dT, plane + r * HW, HW, q0, len);
}

/* Problem of a weight-gradient call. */
typedef struct {
    float *dw, *db;           /* [OC,C,K,K] / [OC], either may be NULL */
    const float *dout, *inp;  /* [N,OC,H,W] / [N,C,H,W] */
    int N, C, H, W, OC, K;
} DwProb;

/* db partial of one piece: dbp[c] += dT[q][c] for q in order. */
static void db_piece(float *dbp, const float *dT, int len) {
    vf acc[DW_V];
    for (int v = 0; v < DW_V; v++) acc[v] = v_load(dbp + v * CV_VL);
    for (int q = 0; q < len; q++)
        for (int v = 0; v < DW_V; v++) acc[v] = v_add(acc[v], v_load(dT + q * DW_CB + v * CV_VL));
    for (int v = 0; v < DW_V; v++) v_store(dbp + v * CV_VL, acc[v]);
}

/* One chunk [lo, hi) of the plan for a group: its partials, from 0. */
static void dw_group_chunk(const DwProb *pb, float *part, float *dbp, float *dT, int co0, int ci0, int nci,
                           int do_db, int64_t lo, int64_t hi) {
    const int64_t HW = (int64_t)pb->H * pb->W;
    const int KK = pb->K * pb->K;
    for (int64_t i = lo; i < hi;) {
        int64_t n = i / HW, q0 = i % HW;
        int64_t rest = (hi - i < HW - q0) ? hi - i : HW - q0; /* stay inside image n */
        int len = (int)(rest < DW_P ? rest : DW_P);
        dw_transpose(dT, pb->dout + n * pb->OC * HW, HW, co0, pb->OC, q0, len);
        if (do_db) db_piece(dbp, dT, len);
        const float *plane = pb->inp + (n * pb->C + ci0) * HW;
        if (pb->K == 3)
            for (int c = 0; c < nci; c++) dw_k3_piece(part + c * KK * DW_CB, dT, plane + c * HW, pb->H, pb->W, q0, len);
        else if (nci > 0)
            dw_k1_piece(part, nci, dT, plane, HW, q0, len);
        i += len;
    }
}

/* A group owns dw[co0.., ci0..ci0+nci, :, :] (and db[co0..] when do_db):
 * chunk partials in order, total += partial, then dw += total. */
static void dw_group(const DwProb *pb, int co0, int ci0, int nci, int do_db) {
    const int KK = pb->K * pb->K;
    const int64_t n = (int64_t)pb->N * pb->H * pb->W, nchunks = rplan_nchunks(n);
    float part[DW_CIB * 9 * DW_CB] __attribute__((aligned(64)));
    float total[DW_CIB * 9 * DW_CB] __attribute__((aligned(64)));
    float dT[DW_P * DW_CB] __attribute__((aligned(64)));
    float dbp[DW_CB] __attribute__((aligned(64))), dbt[DW_CB] __attribute__((aligned(64)));
    const int nacc = nci * KK * DW_CB;
    memset(total, 0, sizeof(float) * (size_t)nacc);
    memset(dbt, 0, sizeof dbt);
    for (int64_t c = 0; c < nchunks; c++) {
        memset(part, 0, sizeof(float) * (size_t)nacc);
        memset(dbp, 0, sizeof dbp);
        dw_group_chunk(pb, part, dbp, dT, co0, ci0, nci, do_db, rplan_chunk_lo(c), rplan_chunk_hi(c, n));
        for (int k = 0; k < nacc; k++) total[k] += part[k]; /* partials in chunk order */
        for (int k = 0; k < DW_CB; k++) dbt[k] += dbp[k];
    }
    for (int co = co0; co < co0 + DW_CB && co < pb->OC; co++) {
        if (pb->dw)
            for (int c = 0; c < nci; c++)
                for (int t = 0; t < KK; t++)
                    pb->dw[((int64_t)co * pb->C + ci0 + c) * KK + t] += total[(c * KK + t) * DW_CB + co - co0];
        if (do_db) pb->db[co] += dbt[co - co0];
    }
}

/* Weight and bias gradients, K in {1, 3}: groups in parallel. */
static void dw_run(const DwProb *pb, const CpCtx *ctx) {
    const int ncob = (pb->OC + DW_CB - 1) / DW_CB;
    /* input-channel block: at most DW_CIB, smaller when that gives the
     * threads more groups to share (speed only: each output's order is fixed) */
    int cib = pb->dw ? pb->C : 0;
    if (cib > DW_CIB) cib = DW_CIB;
    int want = (ctx->threads + ncob - 1) / ncob;
    while (cib > 1 && (pb->C + cib - 1) / cib < want) cib = (cib + 1) / 2;
    const int ncib = cib > 0 ? (pb->C + cib - 1) / cib : 1;
#pragma omp parallel for num_threads(ctx->threads) schedule(dynamic, 1)
    for (int g = 0; g < ncob * ncib; g++) {
        int cob = g / ncib, cb = g % ncib;
        int ci0 = cb * cib, nci = cib > 0 ? (pb->C - ci0 < cib ? pb->C - ci0 : cib) : 0;
        dw_group(pb, cob * DW_CB, ci0, nci, pb->db != NULL && cb == 0);
    }
}

/* ================ other kernel sizes: the reference itself ================ */

static void conv2d_forward_ref(float *out, const float *inp, const float *w, const float *b, int N, int C, int H,
                               int W, int OC, int K, const CpCtx *ctx) {
    const int64_t HW = (int64_t)H * W;
#pragma omp parallel for num_threads(ctx->threads) schedule(dynamic, 1)
    for (int64_t nc = 0; nc < (int64_t)N * OC; nc++) {
        int64_t n = nc / OC;
        int co = (int)(nc % OC);
        for (int64_t p = 0; p < HW; p++)
            out[nc * HW + p] = conv2d_fwd_out(
                conv2d_fwd_acc(inp + n * C * HW, w + (int64_t)co * C * K * K, C, H, W, K, (int)(p / W), (int)(p % W)),
                b, co);
    }
}

static void conv2d_backward_ref(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                const float *w, int N, int C, int H, int W, int OC, int K, const CpCtx *ctx) {
    const int64_t HW = (int64_t)H * W, n = (int64_t)N * HW, nchunks = rplan_nchunks(n);
    const int KK = K * K;
    if (dinp) {
#pragma omp parallel for num_threads(ctx->threads) schedule(dynamic, 1)
        for (int64_t nc = 0; nc < (int64_t)N * C; nc++)
            for (int64_t p = 0; p < HW; p++)
                dinp[nc * HW + p] += conv2d_dinp_acc(dout + (nc / C) * OC * HW, w, C, OC, H, W, K, (int)(nc % C),
                                                     (int)(p / W), (int)(p % W));
    }
    if (dw) {
#pragma omp parallel for num_threads(ctx->threads) schedule(dynamic, 1)
        for (int64_t o = 0; o < (int64_t)OC * C * KK; o++) {
            int co = (int)(o / ((int64_t)C * KK)), ci = (int)(o / KK % C), t = (int)(o % KK);
            float total = 0.0f;
            for (int64_t c = 0; c < nchunks; c++)
                total += conv2d_dw_chunk(dout, inp, C, OC, H, W, K, co, ci, t / K, t % K, rplan_chunk_lo(c),
                                         rplan_chunk_hi(c, n));
            dw[o] += total;
        }
    }
    if (db) {
#pragma omp parallel for num_threads(ctx->threads)
        for (int co = 0; co < OC; co++) {
            float total = 0.0f;
            for (int64_t c = 0; c < nchunks; c++)
                total += conv2d_db_chunk(dout, OC, HW, co, rplan_chunk_lo(c), rplan_chunk_hi(c, n));
            db[co] += total;
        }
    }
}

/* =============================== entry points =============================== */

const char *conv2d_cpu_simd(void) { return CV_SIMD; }

/* PyTorch: out = F.conv2d(inp, w, b, stride=1, padding=K//2) */
void conv2d_forward_cpu(float *out, const float *inp, const float *w, const float *b, int N, int C, int H, int W,
                        int OC, int K, const CpCtx *ctx) {
    CP_ASSERT(K >= 1 && K % 2 == 1 && N >= 0 && C >= 0 && H >= 0 && W >= 0 && OC >= 0);
    if ((int64_t)N * OC * H * W == 0) return;
    if (K != 1 && K != 3) {
        conv2d_forward_ref(out, inp, w, b, N, C, H, W, OC, K, ctx);
        return;
    }
    DConv d = {inp, w, (int64_t)C * K * K, (int64_t)K * K, b, out, 0, N, C, OC, H, W};
    dconv_run(&d, K, 0, ctx);
}

/* PyTorch: torch.ops.aten.convolution_backward(...), accumulated (+=) */
void conv2d_backward_cpu(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         int N, int C, int H, int W, int OC, int K, const CpCtx *ctx) {
    CP_ASSERT(K >= 1 && K % 2 == 1 && N >= 0 && C >= 0 && H >= 0 && W >= 0 && OC >= 0);
    if (K != 1 && K != 3) {
        conv2d_backward_ref(dinp, dw, db, dout, inp, w, N, C, H, W, OC, K, ctx);
        return;
    }
    if (dinp && (int64_t)N * C * H * W > 0) {
        /* dinp[n,ci,p] += sum_{co,ky,kx} dout[n,co,p + (pad-ky, pad-kx)] * w[co,ci,ky,kx] */
        DConv d = {dout, w, (int64_t)K * K, (int64_t)C * K * K, NULL, dinp, 1, N, OC, C, H, W};
        dconv_run(&d, K, 1, ctx);
    }
    if ((dw || db) && OC > 0) {
        DwProb pb = {dw, db, dout, inp, N, C, H, W, OC, K};
        dw_run(&pb, ctx);
    }
}
