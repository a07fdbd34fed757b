/* test_conv2d.c - conv2d_forward_cpu / conv2d_backward_cpu (kernels/ops.h).
 *
 *  1. vs PyTorch (tests/ref/conv2d.py): output and every gradient, with the
 *     tolerances declared below.
 *  2. bit-exact vs an independent transcription of the reduction orders of
 *     ops.h (written here from the text, not from kernels/conv2d.h): the
 *     SIMD paths must equal the sequential fmaf chains bit for bit, including
 *     skipped border taps (a -0 survives, an inf weight on a skipped tap does
 *     not leak) and the chunk plan across image and chunk boundaries.
 *  3. finite differences (double loss) for dinp, dw, db.
 *  4. threads 1, 2, 3: identical bytes.
 *  5. poisoned outputs are fully written; gradients accumulate (+=) exactly;
 *     NULL gradients change nothing else.
 *
 * Legend: N batch, C in channels, OC out channels, H W spatial, K kernel. */
#include <math.h>
#include <string.h>

#include "harness.h"
#include "kernels/conv2d.h"
#include "kernels/ops.h"
#include "optest.h"
#include "reduce.h"

/* Tolerances vs PyTorch (its CPU conv sums in another order, blocked GEMM).
 * Forward reduces over C*K*K <= 75 and dinp over OC*K*K <= 315 products of
 * magnitude <= ~0.3: reordering moves a sum by a few ulp of its running
 * magnitude (~1e-7 each), so 1e-5 absolute + 1e-5 relative leaves a margin of
 * ~10x (the worst case printed uses 11%).
 * dw, db reduce over N*H*W up to 4611 positions with terms of magnitude ~1:
 * both sides sum long runs sequentially (ours: 4096-long chunks), whose
 * rounding error random-walks like sqrt(n) * ulp(|partial|) / 2 with partial
 * sums of ~20-60 (ulp 2-4e-6): ~1e-4 per side for 4096 terms. 3e-4 absolute
 * (+ 1e-5 relative) covers two such walks with margin. */
#define TOL_FWD_ATOL 1e-5
#define TOL_FWD_RTOL 1e-5
#define TOL_DINP_ATOL 1e-5
#define TOL_DINP_RTOL 1e-5
#define TOL_DW_ATOL 3e-4
#define TOL_DW_RTOL 1e-5
/* Finite differences: the op is linear in each of inp, w, b, so central
 * differences have no truncation error; what remains is float rounding of
 * the perturbed outputs (~1e-7 * |out| each, ~OC*K*K of them) divided by
 * 2*eps, plus the rounding of x +- eps. 1e-3 + 1e-3 relative is ~10x that. */
#define FD_EPS 1e-2f
#define FD_ATOL 1e-3
#define FD_RTOL 1e-3
#define FD_SAMPLES 48

typedef struct {
    int N, C, H, W, OC, K;
} Shape;

static int64_t n_inp(Shape s) { return (int64_t)s.N * s.C * s.H * s.W; }
static int64_t n_out(Shape s) { return (int64_t)s.N * s.OC * s.H * s.W; }
static int64_t n_w(Shape s) { return (int64_t)s.OC * s.C * s.K * s.K; }

/* ---- the contract, transcribed independently (slow, obvious) ---- */
static int inside(int y, int x, Shape s) { return y >= 0 && y < s.H && x >= 0 && x < s.W; }

static void naive_forward(float *out, const float *inp, const float *w, const float *b, Shape s) {
    int pad = s.K / 2;
    for (int n = 0; n < s.N; n++)
        for (int co = 0; co < s.OC; co++)
            for (int y = 0; y < s.H; y++)
                for (int x = 0; x < s.W; x++) {
                    float acc = 0.0f;
                    for (int ci = 0; ci < s.C; ci++)
                        for (int ky = 0; ky < s.K; ky++)
                            for (int kx = 0; kx < s.K; kx++) {
                                int yy = y + ky - pad, xx = x + kx - pad;
                                if (!inside(yy, xx, s)) continue;
                                acc = fmaf(inp[(((int64_t)n * s.C + ci) * s.H + yy) * s.W + xx],
                                           w[(((int64_t)co * s.C + ci) * s.K + ky) * s.K + kx], acc);
                            }
                    out[(((int64_t)n * s.OC + co) * s.H + y) * s.W + x] = b ? acc + b[co] : acc;
                }
}

static void naive_dinp(float *dinp, const float *dout, const float *w, Shape s) {
    int pad = s.K / 2;
    for (int n = 0; n < s.N; n++)
        for (int ci = 0; ci < s.C; ci++)
            for (int y = 0; y < s.H; y++)
                for (int x = 0; x < s.W; x++) {
                    float acc = 0.0f;
                    for (int co = 0; co < s.OC; co++)
                        for (int ky = 0; ky < s.K; ky++)
                            for (int kx = 0; kx < s.K; kx++) {
                                int yy = y - ky + pad, xx = x - kx + pad;
                                if (!inside(yy, xx, s)) continue;
                                acc = fmaf(dout[(((int64_t)n * s.OC + co) * s.H + yy) * s.W + xx],
                                           w[(((int64_t)co * s.C + ci) * s.K + ky) * s.K + kx], acc);
                            }
                    dinp[(((int64_t)n * s.C + ci) * s.H + y) * s.W + x] += acc;
                }
}

/* dw (ci >= 0) or db (ci < 0) of one output by the chunk plan over i = n*HW + y*W + x */
static float naive_plan(const float *dout, const float *inp, Shape s, int co, int ci, int ky, int kx) {
    int64_t HW = (int64_t)s.H * s.W, total_n = s.N * HW;
    int pad = s.K / 2;
    float total = 0.0f;
    for (int64_t lo = 0; lo < total_n; lo += RCHUNK) {
        float part = 0.0f;
        for (int64_t i = lo; i < total_n && i < lo + RCHUNK; i++) {
            int64_t n = i / HW;
            int y = (int)(i % HW / s.W), x = (int)(i % s.W);
            float d = dout[(n * s.OC + co) * HW + (int64_t)y * s.W + x];
            if (ci < 0) {
                part += d;
                continue;
            }
            int yy = y + ky - pad, xx = x + kx - pad;
            if (!inside(yy, xx, s)) continue;
            part = fmaf(d, inp[(n * s.C + ci) * HW + (int64_t)yy * s.W + xx], part);
        }
        total += part;
    }
    return total;
}

static void naive_dw_db(float *dw, float *db, const float *dout, const float *inp, Shape s) {
    for (int co = 0; co < s.OC; co++) {
        for (int ci = 0; ci < s.C; ci++)
            for (int ky = 0; ky < s.K; ky++)
                for (int kx = 0; kx < s.K; kx++)
                    dw[(((int64_t)co * s.C + ci) * s.K + ky) * s.K + kx] += naive_plan(dout, inp, s, co, ci, ky, kx);
        if (db) db[co] += naive_plan(dout, inp, s, co, -1, 0, 0);
    }
}

/* ---- a problem with its buffers ---- */
typedef struct {
    Shape s;
    float *inp, *w, *b, *probe; /* inputs; b may be NULL */
    float *out, *dinp, *dw, *db;
    CpCtx ctx;
} Prob;

static void prob_init(Prob *p, Shape s, int bias, uint32_t seed, int threads) {
    memset(p, 0, sizeof *p);
    p->s = s;
    p->inp = alloc_f32(n_inp(s));
    p->w = alloc_f32(n_w(s));
    p->b = bias ? alloc_f32(s.OC) : NULL;
    p->probe = alloc_f32(n_out(s));
    p->out = alloc_f32(n_out(s));
    p->dinp = alloc_f32(n_inp(s));
    p->dw = alloc_f32(n_w(s));
    p->db = alloc_f32(s.OC);
    fill_uniform(p->inp, n_inp(s), seed, -1.0f, 1.0f);
    fill_uniform(p->w, n_w(s), seed + 1, -0.3f, 0.3f);
    if (p->b) fill_uniform(p->b, s.OC, seed + 2, -1.0f, 1.0f);
    fill_uniform(p->probe, n_out(s), seed + 3, -1.0f, 1.0f);
    cp_ctx_init(&p->ctx, CP_BACKEND_CPU, threads, 0);
}

static void prob_free(Prob *p) {
    float *bufs[] = {p->inp, p->w, p->b, p->probe, p->out, p->dinp, p->dw, p->db};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cp_free(bufs[i]);
    cp_ctx_free(&p->ctx);
}

static void prob_forward(Prob *p) {
    Shape s = p->s;
    conv2d_forward_cpu(p->out, p->inp, p->w, p->b, s.N, s.C, s.H, s.W, s.OC, s.K, &p->ctx);
}

/* gradients of sum(out * probe), on zeroed buffers */
static void prob_backward(Prob *p) {
    Shape s = p->s;
    memset(p->dinp, 0, sizeof(float) * (size_t)n_inp(s));
    memset(p->dw, 0, sizeof(float) * (size_t)n_w(s));
    memset(p->db, 0, sizeof(float) * (size_t)s.OC);
    conv2d_backward_cpu(p->dinp, p->dw, p->b ? p->db : NULL, p->probe, p->inp, p->w, s.N, s.C, s.H, s.W, s.OC, s.K,
                        &p->ctx);
}

/* ---- 1. vs PyTorch ---- */
static const char *ref_cases[] = {"k3_n3", "k3_n1", "k1_n3", "k1_n1", "k3_h1_nobias", "k3_w1", "k5_n3", "k3_chunks"};

static void check_case_vs_torch(TestCase *tc, const Ref *r, const char *c) {
    char nm[64];
#define RI(field) (snprintf(nm, sizeof nm, "%s_%s", c, field), (int)ref_int(tc, r, nm))
#define RF(field, n) (snprintf(nm, sizeof nm, "%s_%s", c, field), ref_f32(tc, r, nm, n))
    Shape s = {RI("N"), RI("C"), RI("H"), RI("W"), RI("OC"), RI("K")};
    int bias = RI("bias");
    float *inp = RF("inp", n_inp(s)), *w = RF("w", n_w(s)), *probe = RF("probe", n_out(s));
    float *out = RF("out", n_out(s)), *dinp = RF("dinp", n_inp(s)), *dw = RF("dw", n_w(s));
    float *b = bias ? RF("b", s.OC) : NULL, *db = bias ? RF("db", s.OC) : NULL;
    if (inp && w && probe && out && dinp && dw && (!bias || (b && db))) {
        Prob p;
        prob_init(&p, s, bias, 1, 2);
        memcpy(p.inp, inp, sizeof(float) * (size_t)n_inp(s));
        memcpy(p.w, w, sizeof(float) * (size_t)n_w(s));
        memcpy(p.probe, probe, sizeof(float) * (size_t)n_out(s));
        if (bias) memcpy(p.b, b, sizeof(float) * (size_t)s.OC);
        poison(p.out, n_out(s));
        prob_forward(&p);
        char what[96];
        snprintf(what, sizeof what, "%s out", c);
        check_written(tc, what, p.out, n_out(s));
        check_close(tc, what, p.out, out, n_out(s), TOL_FWD_ATOL, TOL_FWD_RTOL);
        prob_backward(&p);
        snprintf(what, sizeof what, "%s dinp", c);
        check_close(tc, what, p.dinp, dinp, n_inp(s), TOL_DINP_ATOL, TOL_DINP_RTOL);
        snprintf(what, sizeof what, "%s dw", c);
        check_close(tc, what, p.dw, dw, n_w(s), TOL_DW_ATOL, TOL_DW_RTOL);
        if (bias) {
            snprintf(what, sizeof what, "%s db", c);
            check_close(tc, what, p.db, db, s.OC, TOL_DW_ATOL, TOL_DW_RTOL);
        }
        prob_free(&p);
    }
    float *all[] = {inp, w, probe, out, dinp, dw, b, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cp_free(all[i]);
#undef RI
#undef RF
}

TEST(test_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "conv2d")) return;
    for (size_t i = 0; i < sizeof ref_cases / sizeof ref_cases[0]; i++) check_case_vs_torch(tc, &r, ref_cases[i]);
    ref_free(&r);
}

/* ---- 2. bit-exact vs the transcribed contract ---- */
static void check_exact(TestCase *tc, Prob *p, const char *label) {
    Shape s = p->s;
    float *out = alloc_f32(n_out(s)), *dinp = alloc_f32(n_inp(s)), *dw = alloc_f32(n_w(s)), *db = alloc_f32(s.OC);
    naive_forward(out, p->inp, p->w, p->b, s);
    memset(dinp, 0, sizeof(float) * (size_t)n_inp(s));
    memset(dw, 0, sizeof(float) * (size_t)n_w(s));
    memset(db, 0, sizeof(float) * (size_t)s.OC);
    naive_dinp(dinp, p->probe, p->w, s);
    naive_dw_db(dw, p->b ? db : NULL, p->probe, p->inp, s);
    poison(p->out, n_out(s));
    prob_forward(p);
    prob_backward(p);
    int ok = memcmp(out, p->out, sizeof(float) * (size_t)n_out(s)) == 0;
    CHECKF(ok, "%s: forward differs from the contract's fmaf chain", label);
    ok = memcmp(dinp, p->dinp, sizeof(float) * (size_t)n_inp(s)) == 0;
    CHECKF(ok, "%s: dinp differs from the contract's fmaf chain", label);
    ok = memcmp(dw, p->dw, sizeof(float) * (size_t)n_w(s)) == 0;
    CHECKF(ok, "%s: dw differs from the contract's chunk plan", label);
    ok = !p->b || memcmp(db, p->db, sizeof(float) * (size_t)s.OC) == 0;
    CHECKF(ok, "%s: db differs from the contract's chunk plan", label);
    cp_free(out), cp_free(dinp), cp_free(dw), cp_free(db);
}

TEST(test_exact_order) {
    /* N C H W OC K: tile/lane remainders, 1-wide images, chunk boundaries
     * inside an image (N*H*W > RCHUNK), every generic-K path */
    const Shape shapes[] = {
        {3, 5, 13, 11, 7, 3},  {1, 3, 9, 23, 17, 3}, {2, 19, 7, 5, 37, 3}, {3, 6, 7, 15, 5, 1},
        {1, 19, 5, 9, 37, 1},  {3, 4, 1, 7, 3, 3},   {1, 3, 6, 1, 5, 3},   {2, 2, 2, 2, 33, 3},
        {3, 3, 29, 53, 35, 3}, {2, 9, 33, 71, 3, 1}, {3, 3, 6, 9, 4, 5},   {1, 2, 3, 17, 1, 3},
        {2, 21, 11, 17, 9, 3}, {1, 35, 6, 7, 5, 3},  /* C > 32: several input-channel groups */
        {1, 3, 70, 65, 5, 3},                        /* H*W > RCHUNK: chunks inside one image */
        {1, 2, 4, 530, 3, 3},                        /* W > 32 vectors: mask groups */
        {2, 1, 2, 1, 2, 1},    {1, 4, 3, 3, 2, 7},   /* tiny; K = 7 */
        {1, 70, 5, 6, 3, 3},                         /* C > 64: input-channel groups capped */
    };
    printf("  SIMD path: %s\n", conv2d_cpu_simd());
    const int quick = test_quick();
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        if (quick && n_inp(shapes[i]) * shapes[i].OC > 2000000) continue;
        for (int bias = 0; bias < 2; bias++) {
            Prob p;
            prob_init(&p, shapes[i], bias, 10 + (uint32_t)i, 2);
            char label[96];
            Shape s = p.s;
            snprintf(label, sizeof label, "N%d C%d %dx%d OC%d K%d bias%d", s.N, s.C, s.H, s.W, s.OC, s.K, bias);
            check_exact(tc, &p, label);
            prob_free(&p);
        }
    }
}

/* Skipped taps are skipped, not zero-padded: a -0 accumulator stays -0 and an
 * inf weight on a tap outside the image does not turn the border into NaN. */
TEST(test_skipped_taps) {
    Prob p;
    prob_init(&p, (Shape){1, 1, 1, 1, 1, 3}, 0, 5, 1);
    memset(p.w, 0, sizeof(float) * 9);
    p.inp[0] = -1e-30f;
    p.w[4] = 1e-30f; /* centre tap: fmaf(-1e-30, 1e-30, +0) rounds to -0 */
    p.w[0] = INFINITY;
    prob_forward(&p);
    uint32_t bits;
    memcpy(&bits, &p.out[0], 4);
    CHECKF(bits == 0x80000000u, "1x1 image: out bits %08x, want -0 (80000000)", bits);
    prob_free(&p);

    prob_init(&p, (Shape){2, 3, 6, 7, 5, 3}, 1, 6, 2);
    for (int i = 0; i < 15; i++) p.w[i * 9] = INFINITY; /* tap (0,0): outside for y = 0 or x = 0 */
    prob_forward(&p);
    int finite_border = 1;
    for (int n = 0; n < 2; n++)
        for (int co = 0; co < 5; co++)
            for (int x = 0; x < 7; x++) finite_border &= isfinite(p.out[((n * 5 + co) * 6 + 0) * 7 + x]);
    CHECKF(finite_border, "row 0 has a non-finite output: a skipped inf tap leaked");
    check_exact(tc, &p, "inf weights");
    prob_free(&p);
}

/* ---- 3. finite differences ---- */
typedef struct {
    Prob *p;
    float *out;
} FdState;

static double fd_loss(void *state) {
    FdState *st = state;
    Shape s = st->p->s;
    conv2d_forward_cpu(st->out, st->p->inp, st->p->w, st->p->b, s.N, s.C, s.H, s.W, s.OC, s.K, &st->p->ctx);
    double l = 0;
    for (int64_t i = 0; i < n_out(s); i++) l += (double)st->out[i] * (double)st->p->probe[i];
    return l;
}

TEST(test_finite_differences) {
    const Shape shapes[] = {{2, 5, 9, 11, 7, 3}, {3, 6, 7, 5, 9, 1}, {1, 3, 5, 6, 2, 5}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        Prob p;
        prob_init(&p, shapes[i], 1, 40 + (uint32_t)i, 1); /* many small calls: no thread start-up */
        prob_backward(&p);
        FdState st = {&p, alloc_f32(n_out(p.s))};
        char what[64];
        snprintf(what, sizeof what, "K%d dinp", p.s.K);
        check_fd(tc, what, p.dinp, p.inp, n_inp(p.s), fd_loss, &st, FD_EPS, FD_SAMPLES, FD_ATOL, FD_RTOL);
        snprintf(what, sizeof what, "K%d dw", p.s.K);
        check_fd(tc, what, p.dw, p.w, n_w(p.s), fd_loss, &st, FD_EPS, FD_SAMPLES, FD_ATOL, FD_RTOL);
        snprintf(what, sizeof what, "K%d db", p.s.K);
        check_fd(tc, what, p.db, p.b, p.s.OC, fd_loss, &st, FD_EPS, FD_SAMPLES, FD_ATOL, FD_RTOL);
        cp_free(st.out);
        prob_free(&p);
    }
}

/* ---- 4. thread counts ---- */
TEST(test_threads_identical) {
    const Shape shapes[] = {{3, 19, 45, 53, 37, 3}, {2, 40, 30, 31, 70, 1}, {3, 3, 10, 11, 6, 5}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        Shape s = shapes[i];
        if (test_quick() && s.C > 20) s.H = 17; /* still > 1 chunk: N*H*W = 2703+ */
        Prob p[3];
        for (int t = 0; t < 3; t++) {
            prob_init(&p[t], s, 1, 70 + (uint32_t)i, t + 1);
            prob_forward(&p[t]);
            prob_backward(&p[t]);
        }
        for (int t = 1; t < 3; t++) {
            char what[96];
            snprintf(what, sizeof what, "K%d out, %d vs 1 threads", s.K, t + 1);
            check_same_bytes(tc, what, p[0].out, p[t].out, sizeof(float) * (size_t)n_out(s));
            snprintf(what, sizeof what, "K%d dinp, %d vs 1 threads", s.K, t + 1);
            check_same_bytes(tc, what, p[0].dinp, p[t].dinp, sizeof(float) * (size_t)n_inp(s));
            snprintf(what, sizeof what, "K%d dw, %d vs 1 threads", s.K, t + 1);
            check_same_bytes(tc, what, p[0].dw, p[t].dw, sizeof(float) * (size_t)n_w(s));
            snprintf(what, sizeof what, "K%d db, %d vs 1 threads", s.K, t + 1);
            check_same_bytes(tc, what, p[0].db, p[t].db, sizeof(float) * (size_t)s.OC);
        }
        for (int t = 0; t < 3; t++) prob_free(&p[t]);
    }
}

/* ---- 5. coverage and the accumulate convention ---- */
static int same_bits(const float *a, const float *b, int64_t n) { return memcmp(a, b, sizeof(float) * (size_t)n) == 0; }

TEST(test_poison_and_accumulate) {
    const Shape shapes[] = {{3, 5, 13, 11, 7, 3}, {2, 6, 7, 15, 21, 1}, {2, 3, 6, 9, 4, 5}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        Shape s = shapes[i];
        Prob p;
        prob_init(&p, s, 1, 90 + (uint32_t)i, 2);
        poison(p.out, n_out(s));
        prob_forward(&p);
        CHECKF(check_written(tc, "out", p.out, n_out(s)), "K%d", s.K);
        prob_backward(&p); /* fresh gradients g on zeroed buffers */
        /* pre-filled buffers h: the result must be exactly h + g, element by element */
        float *h[3] = {alloc_f32(n_inp(s)), alloc_f32(n_w(s)), alloc_f32(s.OC)};
        float *g[3] = {p.dinp, p.dw, p.db};
        int64_t len[3] = {n_inp(s), n_w(s), s.OC};
        float *want[3];
        for (int k = 0; k < 3; k++) {
            fill_uniform(h[k], len[k], 200 + (uint32_t)k, -2.0f, 2.0f);
            want[k] = alloc_f32(len[k]);
            for (int64_t e = 0; e < len[k]; e++) want[k][e] = h[k][e] + g[k][e];
        }
        conv2d_backward_cpu(h[0], h[1], h[2], p.probe, p.inp, p.w, s.N, s.C, s.H, s.W, s.OC, s.K, &p.ctx);
        const char *names[3] = {"dinp", "dw", "db"};
        for (int k = 0; k < 3; k++)
            CHECKF(same_bits(h[k], want[k], len[k]), "K%d %s: backward did not add exactly once", s.K, names[k]);
        /* each gradient alone (the others NULL) gives the same bits */
        for (int k = 0; k < 3; k++) {
            float *one = alloc_f32(len[k]);
            memset(one, 0, sizeof(float) * (size_t)len[k]);
            conv2d_backward_cpu(k == 0 ? one : NULL, k == 1 ? one : NULL, k == 2 ? one : NULL, p.probe, p.inp, p.w,
                                s.N, s.C, s.H, s.W, s.OC, s.K, &p.ctx);
            CHECKF(same_bits(one, g[k], len[k]), "K%d %s alone differs from %s with the others", s.K, names[k],
                   names[k]);
            cp_free(one);
        }
        for (int k = 0; k < 3; k++) cp_free(h[k]), cp_free(want[k]);
        prob_free(&p);
    }
}

TEST_MAIN(T(test_vs_torch), T(test_exact_order), T(test_skipped_taps), T(test_finite_differences),
          T(test_threads_identical), T(test_poison_and_accumulate))
