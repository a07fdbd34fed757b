/* linear.h - Linear layer math (out = inp @ w^T + b) and the CPU GEMM engine
 * that linear, patch embedding and the patch readout share.
 *
 * Dimension legend: M rows (tokens x batch), IN input features, OUT output
 * features. inp[M,IN], w[OUT,IN] (PyTorch layout), b[OUT], out[M,OUT].
 *
 * Reduction orders (kernels/ops.h, DESIGN.md rule 1), the contract that the
 * CPU engine and the future CUDA kernels both implement:
 *   out[m,o]  = (sequential fmaf over k = 0..IN-1 of inp[m,k]*w[o,k], from 0) + b[o]
 *   dinp[m,k] += sequential fmaf over o = 0..OUT-1 of dout[m,o]*w[o,k], from 0
 *   dw[o,k]   += chunk plan over m (core/reduce.h) of dout[m,o]*inp[m,k]:
 *                per chunk of RCHUNK rows a sequential fmaf from 0, chunk
 *                partials summed in chunk order from 0, the total added once
 *   db[o]     += chunk plan over m of dout[m,o] (sequential adds)
 * Without a bias the forward output is the dot product itself (no "+ 0").
 *
 * The per-element definitions below (CP_HD, nvcc-clean) ARE those orders:
 * the CPU engine's scalar path calls cp_mac/cp_add_bias, its SIMD paths do
 * the same IEEE operation per lane (one vfmadd per lane = one fmaf), and a
 * CUDA kernel may call the reference element functions directly.
 *
 * CPU engine (below the __CUDACC__ guard): a cache-blocked GEMM
 *   C(i,j) = sum_r A(i,r) * B(r,j)      (sum = the orders above)
 * over "separable views": element (x,y) of each operand lives at
 * p[off_x(x) + off_y(y)], which covers row-major and transposed matrices,
 * the patch im2col gather and the readout pixel shuffle without copies.
 * SIMD vectors run ACROSS outputs j; each output keeps its own sequential
 * order in r, so results never depend on tile sizes, SIMD width or thread
 * count. Blocking changes only where a partial sum waits between r-blocks
 * (a float in memory: exact). */
#ifndef CP_LINEAR_H
#define CP_LINEAR_H

#include <math.h>
#include <stdint.h>

#include "hd.h"
#include "reduce.h"

/* One step of a dot-like reduction: acc = fmaf(a, b, acc). */
CP_HD static inline float cp_mac(float acc, float a, float b) { return fmaf(a, b, acc); }
/* Forward output: the finished dot product, then the bias. */
CP_HD static inline float cp_add_bias(float acc, float b) { return acc + b; }

/* Reference element functions (the canonical orders, used by CUDA and tests). */
/* out[m,o] for one row inp_row[IN] and one weight row w_row[IN]; b may be NULL. */
CP_HD static inline float linear_fwd_elem(const float *inp_row, const float *w_row, const float *b, int o, int IN) {
    float acc = 0.0f;
    for (int k = 0; k < IN; k++) acc = cp_mac(acc, inp_row[k], w_row[k]);
    return b ? cp_add_bias(acc, b[o]) : acc;
}
/* The value added to dinp[m,k]: dout_row[OUT] of row m, w[OUT,IN]. */
CP_HD static inline float linear_dinp_elem(const float *dout_row, const float *w, int k, int IN, int OUT) {
    float acc = 0.0f;
    for (int o = 0; o < OUT; o++) acc = cp_mac(acc, dout_row[o], w[(int64_t)o * IN + k]);
    return acc;
}
/* One chunk [lo, hi) of the dw[o,k] plan: dout[M,OUT], inp[M,IN]. */
CP_HD static inline float linear_dw_chunk(const float *dout, const float *inp, int o, int k, int IN, int OUT,
                                          int64_t lo, int64_t hi) {
    float acc = 0.0f;
    for (int64_t m = lo; m < hi; m++) acc = cp_mac(acc, dout[m * OUT + o], inp[m * IN + k]);
    return acc;
}
/* One chunk [lo, hi) of the db[o] plan. */
CP_HD static inline float linear_db_chunk(const float *dout, int o, int OUT, int64_t lo, int64_t hi) {
    float acc = 0.0f;
    for (int64_t m = lo; m < hi; m++) acc += dout[m * OUT + o];
    return acc;
}

#ifndef __CUDACC__
#include "ctx.h"

/* ---- CPU GEMM engine (kernels/linear_cpu.c) ---- */

/* One axis of a separable view: offset(idx) = fn ? fn(prm, idx) : idx * prm[0]. */
typedef int64_t (*CpOffFn)(const int64_t *prm, int64_t idx);
typedef struct {
    CpOffFn fn;      /* NULL: affine, stride prm[0] */
    int64_t prm[6];  /* the stride, or the geometry fn needs */
} CpAxis;

static inline CpAxis cp_axis_stride(int64_t s) {
    CpAxis a = {0, {s, 0, 0, 0, 0, 0}};
    return a;
}

typedef enum {
    CP_GEMM_STORE,         /* C = acc (+ bias[j / bias_div]); C is overwritten */
    CP_GEMM_ACCUM,         /* C += acc (r reduced in one sequential pass) */
    CP_GEMM_ACCUM_CHUNKED, /* C += chunk plan over r (weight gradients) */
} CpGemmMode;

/* C(i,j) for i < M, j < N over r < K. A(i,r) = a[a_i(i) + a_r(r)],
 * B(r,j) = b[b_r(r) + b_j(j)], C(i,j) = c[c_i(i) + c_j(j)]. The map (i,j) ->
 * c offset must be injective (each output written by one task). */
typedef struct {
    int64_t M, N, K;
    const float *a;
    CpAxis a_i, a_r;
    const float *b;
    CpAxis b_r, b_j;
    float *c;
    CpAxis c_i, c_j;
    CpGemmMode mode;
    const float *bias; /* STORE only; NULL = none */
    int64_t bias_div;  /* bias index = j / bias_div (>= 1) */
} CpGemm;

/* Runs the GEMM with ctx->threads threads. No heap: each thread keeps its
 * panels on its stack (at most CP_GEMM_STACK_BYTES). */
void cp_gemm_cpu(const CpGemm *g, const CpCtx *ctx);
#define CP_GEMM_STACK_BYTES (240 * 1024)

/* out[j - j0] = chunk-plan sum over rows i < M of d[row(i) + col(j)], for
 * j in [j0, j1) (j1 - j0 <= 256). One thread: callers parallelize. */
void cp_colsum_plan(float *out, const float *d, const CpAxis *row, const CpAxis *col, int64_t M, int64_t j0,
                    int64_t j1);
/* db[j] += chunk-plan sum over i < M of d[i*ld + j], j < N, in parallel. */
void cp_colsum_accum_cpu(float *db, const float *d, int64_t M, int64_t N, int64_t ld, const CpCtx *ctx);
#endif

#endif
