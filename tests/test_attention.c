/* test_attention.c - the ViT attention ops (kernels/attention.h,
 * attention_cpu.c): softmax, interp1d, SAM attention with decomposed
 * relative position.
 *  1. vs PyTorch (tests/ref/attention.py): every output and gradient; the
 *     attention cases compose interp1d + attention and check the gradients of
 *     the RAW rel-pos tables (lengths 2*size-1, 5 and 27). interp1d must be
 *     bit-identical to torch 1.13's CPU kernel, forward and backward.
 *  2. finite differences (double loss, CPU only) of every gradient: softmax
 *     input, interp1d input, attention qkv (q, k and v parts), both tables
 *     after interpolation, and both raw tables through interp1d.
 *  3. byte-identical results for 1, 2 and 3 threads, on shapes with partial
 *     tiles everywhere (T, HD not multiples of the tile sizes) and a drel
 *     reduction that crosses an RCHUNK boundary inside a head.
 *  4. bit-identity with an independent, naive transcription of the orders
 *     written in attention.h (the contract the CUDA kernels must meet).
 *  5. poisoned outputs (and a poisoned workspace) are all written / never
 *     read; backward accumulates exactly (one call into G gives G + g bit
 *     for bit, checked as G = g: result 2g); NULL gradients are skipped.
 * Legend: N batch, Hq Wq grid, T = Hq*Wq, NH heads, HD head dim, D = NH*HD;
 * M rows, L row length; Lin Lout table lengths, C table columns. */
#include <math.h>
#include <string.h>

#include "ctx.h"
#include "harness.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "optest.h"
#include "reduce.h"

/* Tolerances (atol, rtol), one place.
 *  - TOL_EXACT: interp1d forward and backward reproduce torch's CPU
 *    arithmetic operation for operation (attention.h): bit-equal.
 *  - TOL_SOFTMAX: y = e / S; cp_expf (<= 0.5 ulp + tiny) vs Sleef (<= 1 ulp),
 *    our chunk-plan sum vs torch's vectorised sum (rows up to 5000 terms of
 *    similar size: a random walk of ~sqrt(L) half-ulps, ~4e-6 relative at
 *    worst, measured 5e-7), division vs torch's multiplication by 1/S (1 ulp).
 *    Outputs are in (0, 1]; atol only matters for outputs below 1e-3.
 *  - TOL_DSOFTMAX: y * (dy - s): s carries the relative error of S times
 *    |dy| <= 1, and dy - s cancels: absolute <= ~1e-6 * y <= 1e-7 for the
 *    y <= 0.1 of these tests (measured 2e-8); rtol for the large entries.
 *  - TOL_ATT_Y: out = att @ v over T = 35 keys, att and out of order 1;
 *    torch uses BLAS matmuls (order and fma use unknown) and Sleef exp:
 *    logits carry ~HD = 8 half-ulps of |q||k| ~ 5 (5e-7 absolute), which the
 *    softmax passes on relative to att, then a 35-term PV sum: ~1e-6
 *    absolute at worst (measured 3e-7 on out, 1.5e-7 on att).
 *  - TOL_ATT_G: dqkv are sums over 35 keys / queries of products of order 1;
 *    the raw-table gradients sum N*NH*T = 210 rows of q times dlogit sums and
 *    then pass through interpolation: values up to ~1, ~sqrt(210) half-ulps
 *    of the running sums ~ 1e-6 (measured 1.4e-6 on draw, 2.4e-7 on dqkv).
 *  - TOL_FD: central differences of a float op with FD_EPS: rounding of the
 *    loss (a double sum of ~1000 float outputs, each with ~1e-7 relative
 *    error) over 2 eps, plus O(eps^2 f''') truncation (measured <= 6e-5). */
static const double TOL_EXACT[2] = {0.0, 0.0};
static const double TOL_SOFTMAX[2] = {1e-8, 2e-6};
static const double TOL_DSOFTMAX[2] = {1e-7, 1e-5};
static const double TOL_ATT_Y[2] = {2e-6, 1e-5};
static const double TOL_ATT_G[2] = {5e-6, 2e-5};
static const double TOL_FD[2] = {5e-4, 5e-3};
#define FD_EPS 1e-2f
#define FD_SAMPLES 48

static double dot_d(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* An attention problem: shapes, inputs (raw tables optional), outputs. */
typedef struct {
    int N, Hq, Wq, NH, HD, Lh, Lw; /* Lh, Lw: raw table lengths */
    int64_t T, D, nqkv, natt, nout, nth, ntw;
    float *qkv, *raw_h, *raw_w, *tab_h, *tab_w, *probe; /* inputs; probe = dL/dout */
    float *out, *att;                                    /* outputs */
    CpCtx ctx;
} Att;

static void att_init(Att *a, int N, int Hq, int Wq, int NH, int HD, int Lh, int Lw, int threads) {
    memset(a, 0, sizeof *a);
    a->N = N, a->Hq = Hq, a->Wq = Wq, a->NH = NH, a->HD = HD, a->Lh = Lh, a->Lw = Lw;
    a->T = (int64_t)Hq * Wq, a->D = (int64_t)NH * HD;
    a->nqkv = N * a->T * 3 * a->D, a->natt = (int64_t)N * NH * a->T * a->T, a->nout = N * a->T * a->D;
    a->nth = (int64_t)(2 * Hq - 1) * HD, a->ntw = (int64_t)(2 * Wq - 1) * HD;
    a->qkv = alloc_f32(a->nqkv), a->raw_h = alloc_f32((int64_t)Lh * HD), a->raw_w = alloc_f32((int64_t)Lw * HD);
    a->tab_h = alloc_f32(a->nth), a->tab_w = alloc_f32(a->ntw), a->probe = alloc_f32(a->nout);
    a->out = alloc_f32(a->nout), a->att = alloc_f32(a->natt);
    a->ctx = ctx_with(threads);
    /* sized once, before any pass; the backward size covers the forward's */
    cp_ctx_workspace(&a->ctx, attention_backward_workspace_bytes(Hq, Wq, HD));
}
static void att_fill(Att *a, uint32_t seed) {
    fill_uniform(a->qkv, a->nqkv, seed, -1.5f, 1.5f);
    fill_uniform(a->raw_h, (int64_t)a->Lh * a->HD, seed + 1, -0.5f, 0.5f);
    fill_uniform(a->raw_w, (int64_t)a->Lw * a->HD, seed + 2, -0.5f, 0.5f);
    fill_uniform(a->probe, a->nout, seed + 3, -1.0f, 1.0f);
}
static void att_free(Att *a) {
    FREE_ALL(a->qkv, a->raw_h, a->raw_w, a->tab_h, a->tab_w, a->probe, a->out, a->att);
    cp_ctx_free(&a->ctx);
}
/* raw tables -> interp1d -> attention forward */
static void att_forward(Att *a) {
    interp1d_forward_cpu(a->tab_h, a->raw_h, a->Lh, 2 * a->Hq - 1, a->HD, &a->ctx);
    interp1d_forward_cpu(a->tab_w, a->raw_w, a->Lw, 2 * a->Wq - 1, a->HD, &a->ctx);
    attention_forward_cpu(a->out, a->att, a->qkv, a->tab_h, a->tab_w, a->N, a->Hq, a->Wq, a->NH, a->HD, &a->ctx);
}
/* Gradients of sum(out * probe), accumulated into the given buffers. */
static void att_backward(Att *a, float *dqkv, float *dtab_h, float *dtab_w, float *draw_h, float *draw_w) {
    attention_backward_cpu(dqkv, dtab_h, dtab_w, a->probe, a->att, a->qkv, a->tab_h, a->tab_w, a->N, a->Hq, a->Wq,
                           a->NH, a->HD, &a->ctx);
    if (draw_h) interp1d_backward_cpu(draw_h, dtab_h, a->Lh, 2 * a->Hq - 1, a->HD, &a->ctx);
    if (draw_w) interp1d_backward_cpu(draw_w, dtab_w, a->Lw, 2 * a->Wq - 1, a->HD, &a->ctx);
}

/* ---- 1. vs PyTorch ---- */
TEST(test_softmax_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "attention")) return;
    const char *cases[] = {"sm0", "sm1"};
    CpCtx ctx = ctx_with(2);
    for (int c = 0; c < 2; c++) {
        char nm[64], what[64];
#define NAME(s) (snprintf(nm, sizeof nm, "%s_%s", cases[c], s), nm)
#define WHAT(s) (snprintf(what, sizeof what, "softmax %s %s", cases[c], s), what)
        int64_t M = ref_int(tc, &r, NAME("M")), L = ref_int(tc, &r, NAME("L")), n = M * L;
        float *x = ref_f32(tc, &r, NAME("x"), n), *probe = ref_f32(tc, &r, NAME("probe"), n);
        float *y_r = ref_f32(tc, &r, NAME("y"), n), *dx_r = ref_f32(tc, &r, NAME("dx"), n);
        if (tc->failures) break;
        float *y = alloc_f32(n), *dx = alloc_f32(n);
        poison(y, n);
        softmax_forward_cpu(y, x, M, (int)L, &ctx);
        check_written(tc, WHAT("y"), y, n);
        check_close(tc, WHAT("y"), y, y_r, n, TOL_SOFTMAX[0], TOL_SOFTMAX[1]);
        zero(dx, n);
        softmax_backward_cpu(dx, probe, y, M, (int)L, &ctx);
        check_close(tc, WHAT("dinp"), dx, dx_r, n, TOL_DSOFTMAX[0], TOL_DSOFTMAX[1]);
        FREE_ALL(x, probe, y_r, dx_r, y, dx);
#undef NAME
#undef WHAT
    }
    ref_free(&r);
}

TEST(test_interp1d_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "attention")) return;
    int64_t ncase = ref_int(tc, &r, "n_interp");
    CpCtx ctx = ctx_with(2);
    for (int64_t c = 0; c < ncase && !tc->failures; c++) {
        char nm[64], what[64];
#define NAME(s) (snprintf(nm, sizeof nm, "interp%lld_%s", (long long)c, s), nm)
        int Lin = (int)ref_int(tc, &r, NAME("Lin")), Lout = (int)ref_int(tc, &r, NAME("Lout"));
        int C = (int)ref_int(tc, &r, NAME("C"));
        float *x = ref_f32(tc, &r, NAME("x"), (int64_t)Lin * C), *y_r = ref_f32(tc, &r, NAME("y"), (int64_t)Lout * C);
        float *probe = ref_f32(tc, &r, NAME("probe"), (int64_t)Lout * C);
        float *dx_r = ref_f32(tc, &r, NAME("dx"), (int64_t)Lin * C);
#undef NAME
        if (tc->failures) break;
        float *y = alloc_f32((int64_t)Lout * C), *dx = alloc_f32((int64_t)Lin * C);
        poison(y, (int64_t)Lout * C);
        interp1d_forward_cpu(y, x, Lin, Lout, C, &ctx);
        snprintf(what, sizeof what, "interp1d %d->%d C=%d y", Lin, Lout, C);
        check_written(tc, what, y, (int64_t)Lout * C);
        check_close(tc, what, y, y_r, (int64_t)Lout * C, TOL_EXACT[0], TOL_EXACT[1]);
        zero(dx, (int64_t)Lin * C);
        interp1d_backward_cpu(dx, probe, Lin, Lout, C, &ctx);
        snprintf(what, sizeof what, "interp1d %d->%d C=%d dinp", Lin, Lout, C);
        check_close(tc, what, dx, dx_r, (int64_t)Lin * C, TOL_EXACT[0], TOL_EXACT[1]);
        FREE_ALL(x, y_r, probe, dx_r, y, dx);
    }
    ref_free(&r);
}

/* One reference case: interp1d + attention forward and backward vs torch. */
static void check_att_case(TestCase *tc, const Ref *r, const char *k) {
    char nm[64], what[64];
#define NAME(s) (snprintf(nm, sizeof nm, "%s_%s", k, s), nm)
#define WHAT(s) (snprintf(what, sizeof what, "attention %s %s", k, s), what)
    Att a;
    att_init(&a, (int)ref_int(tc, r, NAME("N")), (int)ref_int(tc, r, "Hq"), (int)ref_int(tc, r, "Wq"),
             (int)ref_int(tc, r, "NH"), (int)ref_int(tc, r, "HD"), (int)ref_int(tc, r, NAME("Lh")),
             (int)ref_int(tc, r, NAME("Lw")), 2);
    float *in[] = {ref_f32(tc, r, NAME("qkv"), a.nqkv), ref_f32(tc, r, NAME("raw_h"), (int64_t)a.Lh * a.HD),
                   ref_f32(tc, r, NAME("raw_w"), (int64_t)a.Lw * a.HD), ref_f32(tc, r, NAME("probe"), a.nout)};
    float *want[] = {ref_f32(tc, r, NAME("out"), a.nout),      ref_f32(tc, r, NAME("att"), a.natt),
                     ref_f32(tc, r, NAME("tab_h"), a.nth),     ref_f32(tc, r, NAME("tab_w"), a.ntw),
                     ref_f32(tc, r, NAME("dqkv"), a.nqkv),     ref_f32(tc, r, NAME("draw_h"), (int64_t)a.Lh * a.HD),
                     ref_f32(tc, r, NAME("draw_w"), (int64_t)a.Lw * a.HD)};
    if (!tc->failures) {
        memcpy(a.qkv, in[0], sizeof(float) * (size_t)a.nqkv);
        memcpy(a.raw_h, in[1], sizeof(float) * (size_t)a.Lh * (size_t)a.HD);
        memcpy(a.raw_w, in[2], sizeof(float) * (size_t)a.Lw * (size_t)a.HD);
        memcpy(a.probe, in[3], sizeof(float) * (size_t)a.nout);
        poison(a.out, a.nout);
        poison(a.att, a.natt);
        att_forward(&a);
        check_written(tc, WHAT("out"), a.out, a.nout);
        check_written(tc, WHAT("att"), a.att, a.natt);
        check_close(tc, WHAT("tab_h (interp)"), a.tab_h, want[2], a.nth, TOL_EXACT[0], TOL_EXACT[1]);
        check_close(tc, WHAT("tab_w (interp)"), a.tab_w, want[3], a.ntw, TOL_EXACT[0], TOL_EXACT[1]);
        check_close(tc, WHAT("out"), a.out, want[0], a.nout, TOL_ATT_Y[0], TOL_ATT_Y[1]);
        check_close(tc, WHAT("att"), a.att, want[1], a.natt, TOL_ATT_Y[0], TOL_ATT_Y[1]);
        float *dqkv = alloc_f32(a.nqkv), *dth = alloc_f32(a.nth), *dtw = alloc_f32(a.ntw);
        float *drh = alloc_f32((int64_t)a.Lh * a.HD), *drw = alloc_f32((int64_t)a.Lw * a.HD);
        zero(dqkv, a.nqkv), zero(dth, a.nth), zero(dtw, a.ntw);
        zero(drh, (int64_t)a.Lh * a.HD), zero(drw, (int64_t)a.Lw * a.HD);
        att_backward(&a, dqkv, dth, dtw, drh, drw);
        check_close(tc, WHAT("dqkv"), dqkv, want[4], a.nqkv, TOL_ATT_G[0], TOL_ATT_G[1]);
        check_close(tc, WHAT("draw_h"), drh, want[5], (int64_t)a.Lh * a.HD, TOL_ATT_G[0], TOL_ATT_G[1]);
        check_close(tc, WHAT("draw_w"), drw, want[6], (int64_t)a.Lw * a.HD, TOL_ATT_G[0], TOL_ATT_G[1]);
        FREE_ALL(dqkv, dth, dtw, drh, drw);
    }
    FREE_ALL(in[0], in[1], in[2], in[3], want[0], want[1], want[2], want[3], want[4], want[5], want[6]);
    att_free(&a);
#undef NAME
#undef WHAT
}

TEST(test_attention_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "attention")) return;
    check_att_case(tc, &r, "c0"); /* N = 1, no interpolation */
    check_att_case(tc, &r, "c1"); /* N = 2, tables 5 -> 9 and 5 -> 13 */
    check_att_case(tc, &r, "c2"); /* N = 2, tables 27 -> 9 and 27 -> 13 */
    ref_free(&r);
}

/* ---- 2. finite differences ---- */
typedef struct {
    float *x, *y, *probe;
    int64_t M;
    int L, Lin, Lout;
    CpCtx ctx;
} FdSimple;
static double loss_softmax(void *p) {
    FdSimple *s = p;
    softmax_forward_cpu(s->y, s->x, s->M, s->L, &s->ctx);
    return dot_d(s->y, s->probe, s->M * s->L);
}
static double loss_interp(void *p) {
    FdSimple *s = p;
    interp1d_forward_cpu(s->y, s->x, s->Lin, s->Lout, s->L, &s->ctx);
    return dot_d(s->y, s->probe, (int64_t)s->Lout * s->L);
}

TEST(test_softmax_interp_fd) {
    FdSimple s = {0};
    s.ctx = ctx_with(2);
    s.M = 5, s.L = 11;
    int64_t n = s.M * s.L;
    s.x = alloc_f32(n), s.y = alloc_f32(n), s.probe = alloc_f32(n);
    float *dx = alloc_f32(n);
    fill_uniform(s.x, n, 11, -3.0f, 3.0f);
    fill_uniform(s.probe, n, 12, -1.0f, 1.0f);
    loss_softmax(&s);
    zero(dx, n);
    softmax_backward_cpu(dx, s.probe, s.y, s.M, s.L, &s.ctx);
    check_fd(tc, "softmax dinp", dx, s.x, n, loss_softmax, &s, FD_EPS, FD_SAMPLES, TOL_FD[0], TOL_FD[1]);
    FREE_ALL(s.x, s.y, s.probe, dx);
    const int sizes[][2] = {{27, 63}, {127, 63}, {5, 13}};
    for (int c = 0; c < 3; c++) {
        s.Lin = sizes[c][0], s.Lout = sizes[c][1], s.L = 7;
        s.x = alloc_f32((int64_t)s.Lin * s.L), s.y = alloc_f32((int64_t)s.Lout * s.L);
        s.probe = alloc_f32((int64_t)s.Lout * s.L), dx = alloc_f32((int64_t)s.Lin * s.L);
        fill_uniform(s.x, (int64_t)s.Lin * s.L, 13, -1.0f, 1.0f);
        fill_uniform(s.probe, (int64_t)s.Lout * s.L, 14, -1.0f, 1.0f);
        zero(dx, (int64_t)s.Lin * s.L);
        interp1d_backward_cpu(dx, s.probe, s.Lin, s.Lout, s.L, &s.ctx);
        char what[64];
        snprintf(what, sizeof what, "interp1d %d->%d dinp", s.Lin, s.Lout);
        check_fd(tc, what, dx, s.x, (int64_t)s.Lin * s.L, loss_interp, &s, FD_EPS, FD_SAMPLES, TOL_FD[0],
                 TOL_FD[1]);
        FREE_ALL(s.x, s.y, s.probe, dx);
    }
}

/* Loss of the composed op; `raw` selects whether the tables are recomputed
 * from the raw tables (raw FD) or taken as they are (table FD). */
typedef struct {
    Att *a;
    int raw;
} FdAtt;
static double loss_att(void *p) {
    FdAtt *f = p;
    if (f->raw) att_forward(f->a);
    else
        attention_forward_cpu(f->a->out, f->a->att, f->a->qkv, f->a->tab_h, f->a->tab_w, f->a->N, f->a->Hq,
                              f->a->Wq, f->a->NH, f->a->HD, &f->a->ctx);
    return dot_d(f->a->out, f->a->probe, f->a->nout);
}

TEST(test_attention_fd) {
    Att a;
    att_init(&a, 2, 4, 5, 2, 6, 27, 5, 2); /* Hq != Wq, HD = 6, tables 27 -> 7, 5 -> 9 */
    att_fill(&a, 40);
    att_forward(&a);
    float *dqkv = alloc_f32(a.nqkv), *dth = alloc_f32(a.nth), *dtw = alloc_f32(a.ntw);
    float *drh = alloc_f32((int64_t)a.Lh * a.HD), *drw = alloc_f32((int64_t)a.Lw * a.HD);
    zero(dqkv, a.nqkv), zero(dth, a.nth), zero(dtw, a.ntw);
    zero(drh, (int64_t)a.Lh * a.HD), zero(drw, (int64_t)a.Lw * a.HD);
    att_backward(&a, dqkv, dth, dtw, drh, drw);
    FdAtt f = {&a, 0};
    /* 3D = 36 features per token: 96 samples with stride nqkv / 96 = 15 visit
     * q, k and v features of many tokens and both heads */
    check_fd(tc, "attention dqkv", dqkv, a.qkv, a.nqkv, loss_att, &f, FD_EPS, 2 * FD_SAMPLES, TOL_FD[0], TOL_FD[1]);
    check_fd(tc, "attention drelh", dth, a.tab_h, a.nth, loss_att, &f, FD_EPS, FD_SAMPLES, TOL_FD[0], TOL_FD[1]);
    check_fd(tc, "attention drelw", dtw, a.tab_w, a.ntw, loss_att, &f, FD_EPS, FD_SAMPLES, TOL_FD[0], TOL_FD[1]);
    f.raw = 1;
    check_fd(tc, "attention draw_h (via interp1d)", drh, a.raw_h, (int64_t)a.Lh * a.HD, loss_att, &f, FD_EPS,
             FD_SAMPLES, TOL_FD[0], TOL_FD[1]);
    check_fd(tc, "attention draw_w (via interp1d)", drw, a.raw_w, (int64_t)a.Lw * a.HD, loss_att, &f, FD_EPS,
             FD_SAMPLES, TOL_FD[0], TOL_FD[1]);
    FREE_ALL(dqkv, dth, dtw, drh, drw);
    att_free(&a);
}

/* ---- 4. the orders of attention.h, transcribed naively ---- */
static float naive_plan_sum(const float *x, int64_t n) {
    float total = 0.0f;
    for (int64_t lo = 0; lo < n; lo += RCHUNK) {
        float part = 0.0f;
        for (int64_t i = lo; i < n && i < lo + RCHUNK; i++) part += x[i];
        total += part;
    }
    return total;
}
static float naive_plan_dot(const float *a, const float *b, int64_t n) {
    float total = 0.0f;
    for (int64_t lo = 0; lo < n; lo += RCHUNK) {
        float part = 0.0f;
        for (int64_t i = lo; i < n && i < lo + RCHUNK; i++) part = fmaf(a[i], b[i], part);
        total += part;
    }
    return total;
}
static void naive_softmax(float *y, int64_t L) {
    float m = y[0];
    for (int64_t j = 1; j < L; j++) m = y[j] > m ? y[j] : m;
    for (int64_t j = 0; j < L; j++) y[j] = cp_expf(y[j] - m);
    float sum = naive_plan_sum(y, L);
    for (int64_t j = 0; j < L; j++) y[j] = y[j] / sum;
}

/* q (part 0), k (1) or v (2) of token t, head h, sample n */
#define QKV(a, n, t, part, h)                                                                                  \
    ((a)->qkv + ((int64_t)(n) * (a)->T + (t)) * 3 * (a)->D + (part) * (a)->D + (int64_t)(h) * (a)->HD)

static void naive_forward(const Att *a, float *out, float *att) {
    const float scale = att_scale(a->HD);
    for (int n = 0; n < a->N; n++)
        for (int h = 0; h < a->NH; h++)
            for (int64_t i = 0; i < a->T; i++) {
                const float *q = QKV(a, n, i, 0, h);
                const int qh = (int)(i / a->Wq), qw = (int)(i % a->Wq);
                float rh[CP_ATT_MAX_SIDE], rw[CP_ATT_MAX_SIDE], *row = att + ((n * a->NH + h) * a->T + i) * a->T;
                for (int kh = 0; kh < a->Hq; kh++) {
                    rh[kh] = 0.0f;
                    for (int d = 0; d < a->HD; d++)
                        rh[kh] = fmaf(q[d], a->tab_h[(qh - kh + a->Hq - 1) * a->HD + d], rh[kh]);
                }
                for (int kw = 0; kw < a->Wq; kw++) {
                    rw[kw] = 0.0f;
                    for (int d = 0; d < a->HD; d++)
                        rw[kw] = fmaf(q[d], a->tab_w[(qw - kw + a->Wq - 1) * a->HD + d], rw[kw]);
                }
                for (int64_t j = 0; j < a->T; j++) {
                    const float *k = QKV(a, n, j, 1, h);
                    float qk = 0.0f;
                    for (int d = 0; d < a->HD; d++) qk = fmaf(q[d] * scale, k[d], qk);
                    row[j] = (qk + rh[j / a->Wq]) + rw[j % a->Wq];
                }
                naive_softmax(row, a->T);
                for (int d = 0; d < a->HD; d++) {
                    float acc = 0.0f;
                    for (int64_t j = 0; j < a->T; j++) acc = fmaf(row[j], QKV(a, n, j, 2, h)[d], acc);
                    out[((int64_t)n * a->T + i) * a->D + (int64_t)h * a->HD + d] = acc;
                }
            }
}

/* g = dL/dlogits, gh, gw for every head: G[N*NH*T, T], GH[N*NH*T, Hq], GW[N*NH*T, Wq] */
static void naive_logit_grads(const Att *a, float *G, float *GH, float *GW) {
    for (int n = 0; n < a->N; n++)
        for (int h = 0; h < a->NH; h++)
            for (int64_t i = 0; i < a->T; i++) {
                const int64_t m = ((int64_t)n * a->NH + h) * a->T + i;
                const float *dO = a->probe + ((int64_t)n * a->T + i) * a->D + (int64_t)h * a->HD;
                const float *y = a->att + m * a->T;
                float *g = G + m * a->T, *gh = GH + m * a->Hq, *gw = GW + m * a->Wq;
                for (int64_t j = 0; j < a->T; j++) {
                    float acc = 0.0f;
                    for (int d = 0; d < a->HD; d++) acc = fmaf(dO[d], QKV(a, n, j, 2, h)[d], acc);
                    g[j] = acc;
                }
                const float s = naive_plan_dot(g, y, a->T);
                for (int64_t j = 0; j < a->T; j++) g[j] = y[j] * (g[j] - s);
                for (int kh = 0; kh < a->Hq; kh++) {
                    gh[kh] = 0.0f;
                    for (int kw = 0; kw < a->Wq; kw++) gh[kh] += g[kh * a->Wq + kw];
                }
                for (int kw = 0; kw < a->Wq; kw++) {
                    gw[kw] = 0.0f;
                    for (int kh = 0; kh < a->Hq; kh++) gw[kw] += g[kh * a->Wq + kw];
                }
            }
}

static void naive_dqkv(const Att *a, const float *G, const float *GH, const float *GW, float *dqkv) {
    const float scale = att_scale(a->HD);
    for (int n = 0; n < a->N; n++)
        for (int h = 0; h < a->NH; h++)
            for (int64_t i = 0; i < a->T; i++) /* i: the query for dq, the key for dk, dv */
                for (int d = 0; d < a->HD; d++) {
                    const int64_t m0 = ((int64_t)n * a->NH + h) * a->T, qh = i / a->Wq, qw = i % a->Wq;
                    float A = 0.0f, bh = 0.0f, bw = 0.0f, K = 0.0f, V = 0.0f;
                    for (int64_t j = 0; j < a->T; j++) A = fmaf(G[(m0 + i) * a->T + j], QKV(a, n, j, 1, h)[d], A);
                    for (int kh = 0; kh < a->Hq; kh++)
                        bh = fmaf(GH[(m0 + i) * a->Hq + kh], a->tab_h[(qh - kh + a->Hq - 1) * a->HD + d], bh);
                    for (int kw = 0; kw < a->Wq; kw++)
                        bw = fmaf(GW[(m0 + i) * a->Wq + kw], a->tab_w[(qw - kw + a->Wq - 1) * a->HD + d], bw);
                    for (int64_t j = 0; j < a->T; j++) { /* j: the query */
                        K = fmaf(G[(m0 + j) * a->T + i], QKV(a, n, j, 0, h)[d], K);
                        const float dO = a->probe[((int64_t)n * a->T + j) * a->D + h * a->HD + d];
                        V = fmaf(a->att[(m0 + j) * a->T + i], dO, V);
                    }
                    float *dq = dqkv + ((int64_t)n * a->T + i) * 3 * a->D + (int64_t)h * a->HD + d;
                    dq[0] += ((scale * A) + bh) + bw;
                    dq[a->D] += scale * K;
                    dq[2 * a->D] += V;
                }
}

/* drel[r][d] += plan over m = (n*NH + h)*T + t of fmaf(grel[m][kc], q_m[d], .) */
static void naive_drel(const Att *a, const float *grel, int axis_h, float *drel) {
    const int size = axis_h ? a->Hq : a->Wq;
    const int64_t M = (int64_t)a->N * a->NH * a->T;
    for (int r = 0; r < 2 * size - 1; r++)
        for (int d = 0; d < a->HD; d++) {
            float total = 0.0f;
            for (int64_t lo = 0; lo < M; lo += RCHUNK) {
                float part = 0.0f;
                for (int64_t m = lo; m < M && m < lo + RCHUNK; m++) {
                    const int64_t t = m % a->T, nh = m / a->T;
                    const int kc = (axis_h ? (int)(t / a->Wq) : (int)(t % a->Wq)) - r + size - 1;
                    if (kc < 0 || kc >= size) continue;
                    part = fmaf(grel[m * size + kc], QKV(a, nh / a->NH, t, 0, nh % a->NH)[d], part);
                }
                total += part;
            }
            drel[(int64_t)r * a->HD + d] += total;
        }
}

/* The test shape: partial tiles everywhere (T = 437 = 13*32 + 21 queries,
 * 54*8 + 5 keys; HD = 40 = 32 + 8) and N*NH*T = 4370 > RCHUNK, so the drel
 * plan closes a chunk inside head (n=1, h=4). Quick mode: a smaller one. */
static void big_shape(Att *a, int threads) {
    if (test_quick()) att_init(a, 2, 9, 11, 3, 40, 27, 21, threads);
    else att_init(a, 2, 23, 19, 5, 40, 27, 127, threads);
    att_fill(a, 70);
}

typedef struct {
    float *out, *att, *dqkv, *dth, *dtw;
} AttResult;
static AttResult run_big(Att *a) {
    AttResult r = {alloc_f32(a->nout), alloc_f32(a->natt), alloc_f32(a->nqkv), alloc_f32(a->nth), alloc_f32(a->ntw)};
    poison(a->out, a->nout);
    poison(a->att, a->natt);
    /* scratch is never read before it is written */
    poison((float *)a->ctx.workspace, (int64_t)(a->ctx.workspace_bytes / sizeof(float)));
    att_forward(a);
    memcpy(r.out, a->out, sizeof(float) * (size_t)a->nout);
    memcpy(r.att, a->att, sizeof(float) * (size_t)a->natt);
    zero(r.dqkv, a->nqkv), zero(r.dth, a->nth), zero(r.dtw, a->ntw);
    att_backward(a, r.dqkv, r.dth, r.dtw, NULL, NULL);
    return r;
}
static void free_result(AttResult *r) { FREE_ALL(r->out, r->att, r->dqkv, r->dth, r->dtw); }

TEST(test_attention_matches_definition) {
    Att a;
    big_shape(&a, 3);
    AttResult got = run_big(&a);
    check_written(tc, "out", got.out, a.nout);
    check_written(tc, "att", got.att, a.natt);
    float *out = alloc_f32(a.nout), *att = alloc_f32(a.natt), *dqkv = alloc_f32(a.nqkv);
    float *dth = alloc_f32(a.nth), *dtw = alloc_f32(a.ntw);
    int64_t nrow = (int64_t)a.N * a.NH * a.T;
    float *G = alloc_f32(nrow * a.T), *GH = alloc_f32(nrow * a.Hq), *GW = alloc_f32(nrow * a.Wq);
    naive_forward(&a, out, att);
    CHECK(check_same_bytes(tc, "out == definition", got.out, out, sizeof(float) * (size_t)a.nout));
    CHECK(check_same_bytes(tc, "att == definition", got.att, att, sizeof(float) * (size_t)a.natt));
    naive_logit_grads(&a, G, GH, GW);
    zero(dqkv, a.nqkv), zero(dth, a.nth), zero(dtw, a.ntw);
    naive_dqkv(&a, G, GH, GW, dqkv);
    naive_drel(&a, GH, 1, dth);
    naive_drel(&a, GW, 0, dtw);
    CHECK(check_same_bytes(tc, "dqkv == definition", got.dqkv, dqkv, sizeof(float) * (size_t)a.nqkv));
    CHECK(check_same_bytes(tc, "drelh == definition", got.dth, dth, sizeof(float) * (size_t)a.nth));
    CHECK(check_same_bytes(tc, "drelw == definition", got.dtw, dtw, sizeof(float) * (size_t)a.ntw));
    printf("  T=%lld NH=%d HD=%d N=%d rows=%lld: out, att, dqkv, drelh, drelw bit-identical to the definition\n",
           (long long)a.T, a.NH, a.HD, a.N, (long long)nrow);
    FREE_ALL(out, att, dqkv, dth, dtw, G, GH, GW);
    free_result(&got);
    att_free(&a);
}

/* ---- 3. thread counts ---- */
TEST(test_thread_identity) {
    static const int threads[] = {1, 2, 3};
    AttResult res[3];
    Att a[3];
    for (int t = 0; t < 3; t++) {
        big_shape(&a[t], threads[t]);
        res[t] = run_big(&a[t]);
    }
    const char *names[] = {"attention out", "attention att", "attention dqkv", "attention drelh", "attention drelw"};
    for (int t = 1; t < 3; t++) {
        const float *x[] = {res[0].out, res[0].att, res[0].dqkv, res[0].dth, res[0].dtw};
        const float *y[] = {res[t].out, res[t].att, res[t].dqkv, res[t].dth, res[t].dtw};
        const int64_t n[] = {a[0].nout, a[0].natt, a[0].nqkv, a[0].nth, a[0].ntw};
        for (int k = 0; k < 5; k++) check_same_bytes(tc, names[k], x[k], y[k], sizeof(float) * (size_t)n[k]);
    }
    for (int t = 0; t < 3; t++) {
        free_result(&res[t]);
        att_free(&a[t]);
    }
    /* softmax (rows of 5000 > RCHUNK) and interp1d (127 -> 63, 64 columns) */
    const int64_t M = 37, L = 5000, n = M * L, Lin = 127, Lout = 63, C = 64;
    float *x = alloc_f32(n), *dy = alloc_f32(n), *tab = alloc_f32(Lin * C), *dtab = alloc_f32(Lout * C);
    fill_uniform(x, n, 80, -6.0f, 6.0f), fill_uniform(dy, n, 81, -1.0f, 1.0f);
    fill_uniform(tab, Lin * C, 82, -1.0f, 1.0f), fill_uniform(dtab, Lout * C, 83, -1.0f, 1.0f);
    float *y[3], *dx[3], *ti[3], *dti[3];
    for (int t = 0; t < 3; t++) {
        CpCtx ctx = ctx_with(threads[t]);
        y[t] = alloc_f32(n), dx[t] = alloc_f32(n), ti[t] = alloc_f32(Lout * C), dti[t] = alloc_f32(Lin * C);
        softmax_forward_cpu(y[t], x, M, (int)L, &ctx);
        zero(dx[t], n);
        softmax_backward_cpu(dx[t], dy, y[t], M, (int)L, &ctx);
        interp1d_forward_cpu(ti[t], tab, (int)Lin, (int)Lout, (int)C, &ctx);
        zero(dti[t], Lin * C);
        interp1d_backward_cpu(dti[t], dtab, (int)Lin, (int)Lout, (int)C, &ctx);
    }
    for (int t = 1; t < 3; t++) {
        check_same_bytes(tc, "softmax y", y[0], y[t], sizeof(float) * (size_t)n);
        check_same_bytes(tc, "softmax dinp", dx[0], dx[t], sizeof(float) * (size_t)n);
        check_same_bytes(tc, "interp1d out", ti[0], ti[t], sizeof(float) * (size_t)(Lout * C));
        check_same_bytes(tc, "interp1d dinp", dti[0], dti[t], sizeof(float) * (size_t)(Lin * C));
    }
    printf("  threads 1, 2, 3: attention (T=%lld), softmax (%lld x %lld), interp1d: identical bytes\n",
           (long long)a[0].T, (long long)M, (long long)L);
    for (int t = 0; t < 3; t++) FREE_ALL(y[t], dx[t], ti[t], dti[t]);
    FREE_ALL(x, dy, tab, dtab);
}

/* ---- 5. coverage, accumulation, NULL gradients ---- */
/* got == base + base element for element, bit for bit (x + x is exact). */
static void check_doubled(TestCase *tc, const char *what, const float *got, const float *base, int64_t n) {
    float *want = alloc_f32(n);
    for (int64_t i = 0; i < n; i++) want[i] = base[i] + base[i];
    char label[96];
    snprintf(label, sizeof label, "%s accumulates (+=)", what);
    check_same_bytes(tc, label, got, want, sizeof(float) * (size_t)n);
    cp_free(want);
}
static float *dup(const float *x, int64_t n) {
    float *p = alloc_f32(n);
    memcpy(p, x, sizeof(float) * (size_t)n);
    return p;
}

TEST(test_accumulate_and_null_grads) {
    Att a;
    att_init(&a, 2, 5, 7, 3, 8, 9, 13, 2);
    att_fill(&a, 90);
    att_forward(&a);
    float *g = alloc_f32(a.nqkv), *gh = alloc_f32(a.nth), *gw = alloc_f32(a.ntw);
    zero(g, a.nqkv), zero(gh, a.nth), zero(gw, a.ntw);
    att_backward(&a, g, gh, gw, NULL, NULL);
    float *g2 = dup(g, a.nqkv), *gh2 = dup(gh, a.nth), *gw2 = dup(gw, a.ntw);
    att_backward(&a, g2, gh2, gw2, NULL, NULL);
    check_doubled(tc, "attention dqkv", g2, g, a.nqkv);
    check_doubled(tc, "attention drelh", gh2, gh, a.nth);
    check_doubled(tc, "attention drelw", gw2, gw, a.ntw);
    zero(g2, a.nqkv);
    att_backward(&a, g2, NULL, NULL, NULL, NULL);
    check_same_bytes(tc, "attention dqkv alone (drel NULL)", g2, g, sizeof(float) * (size_t)a.nqkv);
    zero(gh2, a.nth), zero(gw2, a.ntw);
    attention_backward_cpu(NULL, gh2, gw2, a.probe, a.att, a.qkv, a.tab_h, a.tab_w, a.N, a.Hq, a.Wq, a.NH, a.HD,
                           &a.ctx);
    check_same_bytes(tc, "attention drel alone (dqkv NULL)", gh2, gh, sizeof(float) * (size_t)a.nth);
    check_same_bytes(tc, "attention drelw alone (dqkv NULL)", gw2, gw, sizeof(float) * (size_t)a.ntw);
    FREE_ALL(g, gh, gw, g2, gh2, gw2);
    att_free(&a);

    /* softmax: equals the naive plan; accumulates */
    const int64_t M = 3, L = RCHUNK + 905, n = M * L;
    CpCtx ctx = ctx_with(2);
    float *x = alloc_f32(n), *dy = alloc_f32(n), *y = alloc_f32(n), *dx = alloc_f32(n);
    fill_uniform(x, n, 91, -5.0f, 5.0f), fill_uniform(dy, n, 92, -1.0f, 1.0f);
    poison(y, n);
    softmax_forward_cpu(y, x, M, (int)L, &ctx);
    check_written(tc, "softmax y", y, n);
    float *yn = dup(x, n);
    for (int64_t i = 0; i < M; i++) naive_softmax(yn + i * L, L);
    check_same_bytes(tc, "softmax y == definition", y, yn, sizeof(float) * (size_t)n);
    zero(dx, n);
    softmax_backward_cpu(dx, dy, y, M, (int)L, &ctx);
    float *dx2 = dup(dx, n);
    softmax_backward_cpu(dx2, dy, y, M, (int)L, &ctx);
    check_doubled(tc, "softmax dinp", dx2, dx, n);
    softmax_backward_cpu(NULL, dy, y, M, (int)L, &ctx); /* not needed: no-op */
    FREE_ALL(x, dy, y, dx, yn, dx2);

    /* interp1d: accumulates */
    float *gi = alloc_f32(63 * 8), *di = alloc_f32(27 * 8);
    fill_uniform(gi, 63 * 8, 93, -1.0f, 1.0f);
    zero(di, 27 * 8);
    interp1d_backward_cpu(di, gi, 27, 63, 8, &ctx);
    float *di2 = dup(di, 27 * 8);
    interp1d_backward_cpu(di2, gi, 27, 63, 8, &ctx);
    check_doubled(tc, "interp1d dinp", di2, di, 27 * 8);
    FREE_ALL(gi, di, di2);
}

TEST_MAIN(T(test_softmax_vs_torch), T(test_interp1d_vs_torch), T(test_attention_vs_torch), T(test_softmax_interp_fd),
          T(test_attention_fd), T(test_attention_matches_definition), T(test_thread_identity),
          T(test_accumulate_and_null_grads))
