/* test_linear.c - Linear forward/backward (kernels/linear_cpu.c) against
 * PyTorch (tests/ref/linear.py), finite differences, the canonical
 * reduction orders bit for bit, thread counts 1/2/3, poisoned outputs and
 * the += gradient convention.
 *
 * Shapes: inp[M,IN], w[OUT,IN], b[OUT], out[M,OUT]; dout is the reference
 * probe (loss = sum(out * probe)). */
#include <math.h>
#include <string.h>

#include "kernels/linear.h"
#include "kernels/ops.h"
#include "optest.h"

/* Tolerances vs PyTorch, declared once. PyTorch sums in its own blocked
 * order, we sum sequentially: both are fp32 sums whose rounding error grows
 * like sqrt(K) * 2^-24 * sum|terms|. Forward and dinp reduce over <= 300
 * terms (worst seen 4e-6 abs, < 10% of the tolerance). dw and db reduce over
 * up to M = 4406 rows (c3): there each side is ~2-3e-5 away from a float64
 * reference (measured), so their difference reaches ~5e-5 at |ref| ~ 0.3
 * and 1.6e-4 at |ref| ~ 10; atol 1e-4 (dw) / 5e-5 (db, whose rtol term
 * dominates) and rtol 1e-5 keep >= 3x margin, still far below the error of
 * a wrong index or a dropped term (>= 1e-2 here). */
#define TOL_FWD 2e-5, 1e-5
#define TOL_DINP 2e-5, 1e-5
#define TOL_DW 1e-4, 1e-5
#define TOL_DB 5e-5, 1e-5
/* Finite differences: the op is linear in each input, so the central
 * difference has no truncation error; what remains is fp32 rounding of the
 * outputs an element touches, divided by 2*eps (~1e-4 with eps 1e-2). */
#define FD_EPS 1e-2f
#define TOL_FD 1e-3, 1e-3

static const char *CASES[] = {"c0", "c1", "c2", "c3"};
#define NCASES (int)(sizeof CASES / sizeof CASES[0])

typedef struct {
    int64_t M;
    int IN, OUT, has_bias;
    float *inp, *w, *b, *probe, *out, *dinp, *dw, *db; /* reference tensors */
} LinCase;

static int case_load(TestCase *tc, const Ref *r, const char *k, LinCase *c) {
    char n[64];
#define RI(f) (snprintf(n, sizeof n, "%s_" #f, k), ref_int(tc, r, n))
#define RF(f, len) (snprintf(n, sizeof n, "%s_" #f, k), ref_f32(tc, r, n, (len)))
    c->M = RI(M);
    c->IN = (int)RI(IN);
    c->OUT = (int)RI(OUT);
    c->has_bias = (int)RI(bias);
    int64_t mi = c->M * c->IN, mo = c->M * c->OUT, wo = (int64_t)c->OUT * c->IN;
    c->inp = RF(inp, mi);
    c->w = RF(w, wo);
    c->b = RF(b, c->OUT);
    c->probe = RF(probe, mo);
    c->out = RF(out, mo);
    c->dinp = RF(dinp, mi);
    c->dw = RF(dw, wo);
    c->db = RF(db, c->OUT);
#undef RI
#undef RF
    return c->inp && c->w && c->b && c->probe && c->out && c->dinp && c->dw && c->db;
}

static void case_free(LinCase *c) {
    float *p[] = {c->inp, c->w, c->b, c->probe, c->out, c->dinp, c->dw, c->db};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) cp_free(p[i]);
}

static const float *bias_of(const LinCase *c) { return c->has_bias ? c->b : NULL; }

/* Backward into zeroed buffers (g->dinp etc. allocated here). */
typedef struct {
    float *dinp, *dw, *db;
} Grads;
static Grads grads_run(const LinCase *c, const CpCtx *ctx) {
    Grads g = {alloc_f32(c->M * c->IN), alloc_f32((int64_t)c->OUT * c->IN), alloc_f32(c->OUT)};
    memset(g.dinp, 0, sizeof(float) * (size_t)(c->M * c->IN));
    memset(g.dw, 0, sizeof(float) * (size_t)c->OUT * (size_t)c->IN);
    memset(g.db, 0, sizeof(float) * (size_t)c->OUT);
    linear_backward_cpu(g.dinp, g.dw, g.db, c->probe, c->inp, c->w, c->M, c->IN, c->OUT, ctx);
    return g;
}
static void grads_free(Grads *g) {
    cp_free(g->dinp);
    cp_free(g->dw);
    cp_free(g->db);
}

/* ---- (a) vs PyTorch ---- */
TEST(test_linear_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "linear")) return;
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 2, 0);
    for (int ci = 0; ci < NCASES; ci++) {
        LinCase c;
        if (!case_load(tc, &r, CASES[ci], &c)) continue;
        printf("  case %s: M=%lld IN=%d OUT=%d bias=%d\n", CASES[ci], (long long)c.M, c.IN, c.OUT, c.has_bias);
        float *out = alloc_f32(c.M * c.OUT);
        linear_forward_cpu(out, c.inp, c.w, bias_of(&c), c.M, c.IN, c.OUT, &ctx);
        check_close(tc, "out", out, c.out, c.M * c.OUT, TOL_FWD);
        Grads g = grads_run(&c, &ctx);
        check_close(tc, "dinp", g.dinp, c.dinp, c.M * c.IN, TOL_DINP);
        check_close(tc, "dw", g.dw, c.dw, (int64_t)c.OUT * c.IN, TOL_DW);
        if (c.has_bias) check_close(tc, "db", g.db, c.db, c.OUT, TOL_DB);
        grads_free(&g);
        cp_free(out);
        case_free(&c);
    }
    ref_free(&r);
}

/* ---- the canonical orders (linear.h), bit for bit ---- */
static void canonical(const LinCase *c, float *out, float *dinp, float *dw, float *db) {
    for (int64_t m = 0; m < c->M; m++)
        for (int o = 0; o < c->OUT; o++)
            out[m * c->OUT + o] = linear_fwd_elem(c->inp + m * c->IN, c->w + (int64_t)o * c->IN, bias_of(c), o, c->IN);
    for (int64_t m = 0; m < c->M; m++)
        for (int k = 0; k < c->IN; k++)
            dinp[m * c->IN + k] = 0.0f + linear_dinp_elem(c->probe + m * c->OUT, c->w, k, c->IN, c->OUT);
    for (int o = 0; o < c->OUT; o++) {
        for (int k = 0; k < c->IN; k++) {
            float total = 0.0f;
            for (int64_t ch = 0; ch < rplan_nchunks(c->M); ch++)
                total += linear_dw_chunk(c->probe, c->inp, o, k, c->IN, c->OUT, rplan_chunk_lo(ch),
                                         rplan_chunk_hi(ch, c->M));
            dw[(int64_t)o * c->IN + k] = 0.0f + total;
        }
        float total = 0.0f;
        for (int64_t ch = 0; ch < rplan_nchunks(c->M); ch++)
            total += linear_db_chunk(c->probe, o, c->OUT, rplan_chunk_lo(ch), rplan_chunk_hi(ch, c->M));
        db[o] = 0.0f + total;
    }
}

static void check_canonical(TestCase *tc, const LinCase *c, const CpCtx *ctx) {
    float *out = alloc_f32(c->M * c->OUT), *want_out = alloc_f32(c->M * c->OUT);
    float *dinp = alloc_f32(c->M * c->IN), *dw = alloc_f32((int64_t)c->OUT * c->IN), *db = alloc_f32(c->OUT);
    canonical(c, want_out, dinp, dw, db);
    linear_forward_cpu(out, c->inp, c->w, bias_of(c), c->M, c->IN, c->OUT, ctx);
    Grads g = grads_run(c, ctx);
    check_same_bytes(tc, "out == canonical order", out, want_out, sizeof(float) * (size_t)(c->M * c->OUT));
    check_same_bytes(tc, "dinp == canonical order", g.dinp, dinp, sizeof(float) * (size_t)(c->M * c->IN));
    check_same_bytes(tc, "dw == canonical order", g.dw, dw, sizeof(float) * (size_t)c->OUT * (size_t)c->IN);
    check_same_bytes(tc, "db == canonical order", g.db, db, sizeof(float) * (size_t)c->OUT);
    grads_free(&g);
    cp_free(out);
    cp_free(want_out);
    cp_free(dinp);
    cp_free(dw);
    cp_free(db);
}

TEST(test_linear_canonical_order) {
    Ref r;
    if (!ref_load(tc, &r, "linear")) return;
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 2, 0);
    for (int ci = 0; ci < NCASES; ci++) {
        LinCase c;
        if (case_load(tc, &r, CASES[ci], &c)) check_canonical(tc, &c, &ctx);
        case_free(&c);
    }
    ref_free(&r);
}

/* A ViT-sized layer (no PyTorch needed): every blocking path at once. */
TEST(test_linear_large_canonical) {
    LinCase c = {0};
    c.M = test_quick() ? 70 : 397;
    c.IN = test_quick() ? 300 : 1030;
    c.OUT = test_quick() ? 200 : 771;
    c.has_bias = 1;
    c.inp = alloc_f32(c.M * c.IN);
    c.w = alloc_f32((int64_t)c.OUT * c.IN);
    c.b = alloc_f32(c.OUT);
    c.probe = alloc_f32(c.M * c.OUT);
    fill_uniform(c.inp, c.M * c.IN, 1, -1, 1);
    fill_uniform(c.w, (int64_t)c.OUT * c.IN, 2, -0.1f, 0.1f);
    fill_uniform(c.b, c.OUT, 3, -1, 1);
    fill_uniform(c.probe, c.M * c.OUT, 4, -1, 1);
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 3, 0);
    check_canonical(tc, &c, &ctx);
    cp_free(c.inp);
    cp_free(c.w);
    cp_free(c.b);
    cp_free(c.probe);
}

/* ---- (b) finite differences, double loss, independent of PyTorch ---- */
typedef struct {
    LinCase *c;
    float *out;
    const CpCtx *ctx;
} FdState;

static double fd_loss(void *s) {
    FdState *st = s;
    LinCase *c = st->c;
    linear_forward_cpu(st->out, c->inp, c->w, bias_of(c), c->M, c->IN, c->OUT, st->ctx);
    double l = 0;
    for (int64_t i = 0; i < c->M * c->OUT; i++) l += (double)st->out[i] * (double)c->probe[i];
    return l;
}

TEST(test_linear_fd) {
    Ref r;
    if (!ref_load(tc, &r, "linear")) return;
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 2, 0);
    for (int ci = 0; ci < 3; ci++) {
        LinCase c;
        if (!case_load(tc, &r, CASES[ci], &c)) continue;
        printf("  case %s\n", CASES[ci]);
        FdState st = {&c, alloc_f32(c.M * c.OUT), &ctx};
        Grads g = grads_run(&c, &ctx);
        check_fd(tc, "dinp", g.dinp, c.inp, c.M * c.IN, fd_loss, &st, FD_EPS, 40, TOL_FD);
        check_fd(tc, "dw", g.dw, c.w, (int64_t)c.OUT * c.IN, fd_loss, &st, FD_EPS, 40, TOL_FD);
        if (c.has_bias) check_fd(tc, "db", g.db, c.b, c.OUT, fd_loss, &st, FD_EPS, 40, TOL_FD);
        grads_free(&g);
        cp_free(st.out);
        case_free(&c);
    }
    ref_free(&r);
}

/* ---- (c) thread counts 1, 2, 3: identical bytes ---- */
TEST(test_linear_threads) {
    Ref r;
    if (!ref_load(tc, &r, "linear")) return;
    for (int ci = 0; ci < NCASES; ci++) {
        LinCase c;
        if (!case_load(tc, &r, CASES[ci], &c)) continue;
        int64_t no = c.M * c.OUT;
        float *out[3];
        Grads g[3];
        for (int t = 0; t < 3; t++) {
            CpCtx ctx;
            cp_ctx_init(&ctx, CP_BACKEND_CPU, t + 1, 0);
            out[t] = alloc_f32(no);
            linear_forward_cpu(out[t], c.inp, c.w, bias_of(&c), c.M, c.IN, c.OUT, &ctx);
            g[t] = grads_run(&c, &ctx);
        }
        for (int t = 1; t < 3; t++) {
            check_same_bytes(tc, "out", out[0], out[t], sizeof(float) * (size_t)no);
            check_same_bytes(tc, "dinp", g[0].dinp, g[t].dinp, sizeof(float) * (size_t)(c.M * c.IN));
            check_same_bytes(tc, "dw", g[0].dw, g[t].dw, sizeof(float) * (size_t)c.OUT * (size_t)c.IN);
            check_same_bytes(tc, "db", g[0].db, g[t].db, sizeof(float) * (size_t)c.OUT);
        }
        for (int t = 0; t < 3; t++) {
            cp_free(out[t]);
            grads_free(&g[t]);
        }
        case_free(&c);
    }
    ref_free(&r);
}

/* ---- (d) poisoned outputs, += into pre-filled gradients, NULL gradients ---- */
static void check_accumulates(TestCase *tc, const char *what, const float *pre, const float *got,
                              const float *g0, int64_t n) {
    float *want = alloc_f32(n);
    for (int64_t i = 0; i < n; i++) want[i] = pre[i] + g0[i]; /* g0 = 0 + g: one += of the same g */
    CHECKF(memcmp(want, got, sizeof(float) * (size_t)n) == 0, "%s: pre-filled gradient is not pre + g", what);
    cp_free(want);
}

static void check_poison_accum(TestCase *tc, const LinCase *c, const CpCtx *ctx) {
    int64_t no = c->M * c->OUT, ni = c->M * c->IN, nw = (int64_t)c->OUT * c->IN;
    float *out = alloc_f32(no);
    poison(out, no);
    linear_forward_cpu(out, c->inp, c->w, bias_of(c), c->M, c->IN, c->OUT, ctx);
    check_written(tc, "out", out, no);
    Grads g0 = grads_run(c, ctx);
    float *pre[3] = {alloc_f32(ni), alloc_f32(nw), alloc_f32(c->OUT)};
    float *acc[3] = {alloc_f32(ni), alloc_f32(nw), alloc_f32(c->OUT)};
    int64_t len[3] = {ni, nw, c->OUT};
    for (int i = 0; i < 3; i++) {
        fill_uniform(pre[i], len[i], 10 + i, -3, 3);
        memcpy(acc[i], pre[i], sizeof(float) * (size_t)len[i]);
    }
    linear_backward_cpu(acc[0], acc[1], acc[2], c->probe, c->inp, c->w, c->M, c->IN, c->OUT, ctx);
    check_accumulates(tc, "dinp", pre[0], acc[0], g0.dinp, ni);
    check_accumulates(tc, "dw", pre[1], acc[1], g0.dw, nw);
    check_accumulates(tc, "db", pre[2], acc[2], g0.db, c->OUT);
    /* each gradient alone (the others NULL) gives the same bytes */
    for (int i = 0; i < 3; i++) {
        memcpy(acc[i], pre[i], sizeof(float) * (size_t)len[i]);
        linear_backward_cpu(i == 0 ? acc[0] : NULL, i == 1 ? acc[1] : NULL, i == 2 ? acc[2] : NULL, c->probe,
                            c->inp, c->w, c->M, c->IN, c->OUT, ctx);
        check_accumulates(tc, i == 0 ? "dinp alone" : i == 1 ? "dw alone" : "db alone", pre[i], acc[i],
                          i == 0 ? g0.dinp : i == 1 ? g0.dw : g0.db, len[i]);
    }
    for (int i = 0; i < 3; i++) {
        cp_free(pre[i]);
        cp_free(acc[i]);
    }
    grads_free(&g0);
    cp_free(out);
}

TEST(test_linear_poison_accumulate) {
    Ref r;
    if (!ref_load(tc, &r, "linear")) return;
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 2, 0);
    for (int ci = 0; ci < NCASES; ci++) {
        LinCase c;
        if (case_load(tc, &r, CASES[ci], &c)) check_poison_accum(tc, &c, &ctx);
        case_free(&c);
    }
    ref_free(&r);
}

TEST_MAIN(T(test_linear_vs_torch), T(test_linear_canonical_order), T(test_linear_large_canonical),
          T(test_linear_fd), T(test_linear_threads), T(test_linear_poison_accumulate))
