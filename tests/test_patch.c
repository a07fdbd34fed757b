/* test_patch.c - patch embedding (conv, kernel = stride = P, token-major
 * output) and the patch readout (conv-transpose, kernel = stride = P) of
 * kernels/patch_cpu.c: vs PyTorch (tests/ref/patch.py), finite differences,
 * the canonical orders of kernels/patch.h bit for bit, thread counts 1/2/3,
 * poisoned outputs, the += convention, and the identity readout = pixel
 * shuffle exactly.
 *
 * Shapes: inp[N,C,H,W]; embed: w[OC,C,P,P], out[N,T,OC]; readout:
 * w[C,OC,P,P], out[N,OC,H*P,W*P]; b[OC]. dout is the reference probe. */
#include <math.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/patch.h"
#include "optest.h"

/* Tolerances vs PyTorch, declared once. Forward and dinp reduce over at
 * most 768 terms (embed k or readout q at P = 16) of size <= 0.3: worst seen
 * 5e-6 abs (< 10% of the tolerance). dw and db reduce over up to 4440 pixels
 * (r3): each side is then ~2-3e-5 from a float64 reference (measured on
 * r3 dw[7]: ours 1.7e-5, PyTorch 2.9e-5), so they differ by up to ~5e-5;
 * db magnitudes reach ~50 (rtol term). atol 1e-4, rtol 1e-5 keep ~2x margin
 * and stay far below the error of a wrong index or a dropped term. */
#define TOL_FWD 2e-5, 1e-5
#define TOL_DINP 2e-5, 1e-5
#define TOL_DW 1e-4, 1e-5
#define TOL_DB 1e-4, 1e-5
/* Finite differences (the ops are linear in each input: no truncation
 * error, only fp32 rounding of the touched outputs / 2 eps). */
#define FD_EPS 1e-2f
#define TOL_FD 1e-3, 1e-3

typedef void (*PatchFn)(float *, float *, float *, const float *, const float *, const float *, int, int, int,
                        int, int, int, const CpCtx *);
typedef void (*PatchFwdFn)(float *, const float *, const float *, const float *, int, int, int, int, int, int,
                           const CpCtx *);

typedef struct {
    int readout; /* 0: patch embedding, 1: readout */
    int N, C, H, W, OC, P, has_bias;
    int64_t n_inp, n_w, n_out;
    float *inp, *w, *b, *probe, *out, *dinp, *dw, *db; /* reference tensors */
} PCase;

static const char *EMBED[] = {"e0", "e1", "e2", "e3"};
static const char *READOUT[] = {"r0", "r1", "r2", "r3", "rid"};

static void sizes(PCase *c) {
    c->n_inp = (int64_t)c->N * c->C * c->H * c->W;
    c->n_w = (int64_t)c->C * c->OC * c->P * c->P;
    c->n_out = c->readout ? (int64_t)c->N * c->OC * c->H * c->P * c->W * c->P
                          : (int64_t)c->N * (c->H / c->P) * (c->W / c->P) * c->OC;
}

static int case_load(TestCase *tc, const Ref *r, const char *k, PCase *c) {
    char n[64];
#define RI(f) (snprintf(n, sizeof n, "%s_" #f, k), (int)ref_int(tc, r, n))
#define RF(f, len) (snprintf(n, sizeof n, "%s_" #f, k), ref_f32(tc, r, n, (len)))
    c->readout = k[0] == 'r';
    c->N = RI(N), c->C = RI(C), c->H = RI(H), c->W = RI(W), c->OC = RI(OC), c->P = RI(P);
    c->has_bias = c->readout ? RI(bias) : 1;
    sizes(c);
    c->inp = RF(inp, c->n_inp), c->w = RF(w, c->n_w), c->b = RF(b, c->OC), c->probe = RF(probe, c->n_out);
    c->out = RF(out, c->n_out), c->dinp = RF(dinp, c->n_inp), c->dw = RF(dw, c->n_w), c->db = RF(db, c->OC);
#undef RI
#undef RF
    return c->inp && c->w && c->b && c->probe && c->out && c->dinp && c->dw && c->db;
}

static void case_free(PCase *c) {
    float *p[] = {c->inp, c->w, c->b, c->probe, c->out, c->dinp, c->dw, c->db};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) cp_free(p[i]);
}

static const float *bias_of(const PCase *c) { return c->has_bias ? c->b : NULL; }

static void run_fwd(const PCase *c, float *out, const CpCtx *ctx) {
    PatchFwdFn f = c->readout ? conv_transpose_patch_forward_cpu : patch_embed_forward_cpu;
    f(out, c->inp, c->w, bias_of(c), c->N, c->C, c->H, c->W, c->OC, c->P, ctx);
}
static void run_bwd(const PCase *c, float *dinp, float *dw, float *db, const CpCtx *ctx) {
    PatchFn f = c->readout ? conv_transpose_patch_backward_cpu : patch_embed_backward_cpu;
    f(dinp, dw, db, c->probe, c->inp, c->w, c->N, c->C, c->H, c->W, c->OC, c->P, ctx);
}

typedef struct {
    float *dinp, *dw, *db;
} Grads;
static Grads grads_run(const PCase *c, const CpCtx *ctx) {
    Grads g = {alloc_f32(c->n_inp), alloc_f32(c->n_w), alloc_f32(c->OC)};
    memset(g.dinp, 0, sizeof(float) * (size_t)c->n_inp);
    memset(g.dw, 0, sizeof(float) * (size_t)c->n_w);
    memset(g.db, 0, sizeof(float) * (size_t)c->OC);
    run_bwd(c, g.dinp, g.dw, g.db, ctx);
    return g;
}
static void grads_free(Grads *g) {
    cp_free(g->dinp);
    cp_free(g->dw);
    cp_free(g->db);
}

/* Calls fn(tc, case, ctx) for every case of the reference file. */
typedef void (*CaseFn)(TestCase *tc, PCase *c, const CpCtx *ctx);
static void for_cases(TestCase *tc, CaseFn fn, int threads, int print) {
    Ref r;
    if (!ref_load(tc, &r, "patch")) return;
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, threads, 0);
    const char *names[sizeof EMBED / sizeof EMBED[0] + sizeof READOUT / sizeof READOUT[0]];
    int nn = 0;
    for (size_t i = 0; i < sizeof EMBED / sizeof EMBED[0]; i++) names[nn++] = EMBED[i];
    for (size_t i = 0; i < sizeof READOUT / sizeof READOUT[0]; i++) names[nn++] = READOUT[i];
    for (int i = 0; i < nn; i++) {
        PCase c;
        if (case_load(tc, &r, names[i], &c)) {
            if (print)
                printf("  %s %s: N=%d C=%d H=%d W=%d OC=%d P=%d bias=%d\n", c.readout ? "readout" : "embed",
                       names[i], c.N, c.C, c.H, c.W, c.OC, c.P, c.has_bias);
            fn(tc, &c, &ctx);
        }
        case_free(&c);
    }
    ref_free(&r);
}

/* ---- (a) vs PyTorch ---- */
static void vs_torch(TestCase *tc, PCase *c, const CpCtx *ctx) {
    float *out = alloc_f32(c->n_out);
    run_fwd(c, out, ctx);
    check_close(tc, "out", out, c->out, c->n_out, TOL_FWD);
    Grads g = grads_run(c, ctx);
    check_close(tc, "dinp", g.dinp, c->dinp, c->n_inp, TOL_DINP);
    check_close(tc, "dw", g.dw, c->dw, c->n_w, TOL_DW);
    if (c->has_bias) check_close(tc, "db", g.db, c->db, c->OC, TOL_DB);
    grads_free(&g);
    cp_free(out);
}
TEST(test_patch_vs_torch) { for_cases(tc, vs_torch, 2, 1); }

/* The identity readout is a pixel shuffle: exactly, not within a tolerance. */
TEST(test_readout_identity_is_pixel_shuffle) {
    Ref r;
    if (!ref_load(tc, &r, "patch")) return;
    PCase c;
    if (case_load(tc, &r, "rid", &c)) {
        float *want = ref_f32(tc, &r, "rid_shuffle", c.n_out), *out = alloc_f32(c.n_out);
        CpCtx ctx;
        cp_ctx_init(&ctx, CP_BACKEND_CPU, 2, 0);
        run_fwd(&c, out, &ctx);
        if (want) check_same_bytes(tc, "readout(eye) == pixel_shuffle", out, want, sizeof(float) * (size_t)c.n_out);
        cp_free(want);
        cp_free(out);
    }
    case_free(&c);
    ref_free(&r);
}

/* ---- the canonical orders of patch.h, bit for bit ---- */
static void canonical_embed(const PCase *c, float *out, float *dinp, float *dw, float *db) {
    int64_t tt = (int64_t)(c->H / c->P) * (c->W / c->P), m = c->N * tt, kp = (int64_t)c->C * c->P * c->P;
    for (int64_t x = 0; x < m; x++)
        for (int oc = 0; oc < c->OC; oc++)
            out[x * c->OC + oc] = patch_embed_fwd_elem(c->inp, c->w, bias_of(c), x, oc, c->C, c->H, c->W, c->P);
    for (int64_t x = 0; x < m; x++)
        for (int64_t k = 0; k < kp; k++)
            dinp[patch_tok_off(x, c->C, c->H, c->W, c->P) + patch_k_off(k, c->H, c->W, c->P)] =
                0.0f + patch_embed_dinp_elem(c->probe, c->w, x, k, c->C, c->OC, c->P);
    for (int oc = 0; oc < c->OC; oc++) {
        for (int64_t k = 0; k < kp; k++) {
            float total = 0.0f;
            for (int64_t ch = 0; ch < rplan_nchunks(m); ch++) {
                float p = 0.0f;
                for (int64_t x = rplan_chunk_lo(ch); x < rplan_chunk_hi(ch, m); x++)
                    p = fmaf(c->probe[x * c->OC + oc],
                             c->inp[patch_tok_off(x, c->C, c->H, c->W, c->P) + patch_k_off(k, c->H, c->W, c->P)], p);
                total += p;
            }
            dw[oc * kp + k] = 0.0f + total;
        }
        float total = 0.0f;
        for (int64_t ch = 0; ch < rplan_nchunks(m); ch++)
            total += linear_db_chunk(c->probe, oc, c->OC, rplan_chunk_lo(ch), rplan_chunk_hi(ch, m));
        db[oc] = 0.0f + total;
    }
}

/* chunk plan over pixels x of f(x) = a[aoff(x)] * b[boff(x)] (a == NULL: b alone) */
static float readout_plan(const PCase *c, const float *a, int ci, int64_t q) {
    int64_t hw = (int64_t)c->H * c->W, m = c->N * hw;
    float total = 0.0f;
    for (int64_t ch = 0; ch < rplan_nchunks(m); ch++) {
        float p = 0.0f;
        for (int64_t x = rplan_chunk_lo(ch); x < rplan_chunk_hi(ch, m); x++) {
            float d = c->probe[readout_pix_off(x, c->OC, c->H, c->W, c->P) + readout_q_off(q, c->H, c->W, c->P)];
            p = a ? fmaf(a[nchw_pix_off(x, c->C, hw) + ci * hw], d, p) : p + d;
        }
        total += p;
    }
    return total;
}

static void canonical_readout(const PCase *c, float *out, float *dinp, float *dw, float *db) {
    int64_t hw = (int64_t)c->H * c->W, m = c->N * hw, pp = (int64_t)c->P * c->P, qq = c->OC * pp;
    for (int64_t x = 0; x < m; x++)
        for (int64_t q = 0; q < qq; q++)
            out[readout_pix_off(x, c->OC, c->H, c->W, c->P) + readout_q_off(q, c->H, c->W, c->P)] =
                readout_fwd_elem(c->inp, c->w, bias_of(c), x, q, c->C, c->H, c->W, c->OC, c->P);
    for (int64_t x = 0; x < m; x++)
        for (int ci = 0; ci < c->C; ci++)
            dinp[nchw_pix_off(x, c->C, hw) + ci * hw] =
                0.0f + readout_dinp_elem(c->probe, c->w, x, ci, c->H, c->W, c->OC, c->P);
    for (int ci = 0; ci < c->C; ci++)
        for (int64_t q = 0; q < qq; q++) dw[ci * qq + q] = 0.0f + readout_plan(c, c->inp, ci, q);
    for (int o = 0; o < c->OC; o++) {
        float acc = 0.0f;
        for (int64_t ac = 0; ac < pp; ac++) acc += readout_plan(c, NULL, 0, o * pp + ac);
        db[o] = 0.0f + acc;
    }
}

static void canonical(TestCase *tc, PCase *c, const CpCtx *ctx) {
    float *out = alloc_f32(c->n_out), *want = alloc_f32(c->n_out);
    Grads w = {alloc_f32(c->n_inp), alloc_f32(c->n_w), alloc_f32(c->OC)};
    (c->readout ? canonical_readout : canonical_embed)(c, want, w.dinp, w.dw, w.db);
    run_fwd(c, out, ctx);
    Grads g = grads_run(c, ctx);
    check_same_bytes(tc, "out == canonical order", out, want, sizeof(float) * (size_t)c->n_out);
    check_same_bytes(tc, "dinp == canonical order", g.dinp, w.dinp, sizeof(float) * (size_t)c->n_inp);
    check_same_bytes(tc, "dw == canonical order", g.dw, w.dw, sizeof(float) * (size_t)c->n_w);
    check_same_bytes(tc, "db == canonical order", g.db, w.db, sizeof(float) * (size_t)c->OC);
    grads_free(&g);
    grads_free(&w);
    cp_free(out);
    cp_free(want);
}
TEST(test_patch_canonical_order) { for_cases(tc, canonical, 3, 0); }

/* ---- (b) finite differences ---- */
typedef struct {
    PCase *c;
    float *out;
    const CpCtx *ctx;
} FdState;
static double fd_loss(void *s) {
    FdState *st = s;
    run_fwd(st->c, st->out, st->ctx);
    double l = 0;
    for (int64_t i = 0; i < st->c->n_out; i++) l += (double)st->out[i] * (double)st->c->probe[i];
    return l;
}
static void fd(TestCase *tc, PCase *c, const CpCtx *ctx) {
    if (c->n_out > 100000 && test_quick()) return; /* the large cases only in full runs */
    FdState st = {c, alloc_f32(c->n_out), ctx};
    Grads g = grads_run(c, ctx);
    check_fd(tc, "dinp", g.dinp, c->inp, c->n_inp, fd_loss, &st, FD_EPS, 30, TOL_FD);
    check_fd(tc, "dw", g.dw, c->w, c->n_w, fd_loss, &st, FD_EPS, 30, TOL_FD);
    if (c->has_bias) check_fd(tc, "db", g.db, c->b, c->OC, fd_loss, &st, FD_EPS, 30, TOL_FD);
    grads_free(&g);
    cp_free(st.out);
}
TEST(test_patch_fd) { for_cases(tc, fd, 2, 1); }

/* ---- (c) thread counts 1, 2, 3 ---- */
static void threads(TestCase *tc, PCase *c, const CpCtx *unused) {
    float *out[3];
    Grads g[3];
    for (int t = 0; t < 3; t++) {
        CpCtx ctx;
        cp_ctx_init(&ctx, CP_BACKEND_CPU, t + 1, 0);
        out[t] = alloc_f32(c->n_out);
        run_fwd(c, out[t], &ctx);
        g[t] = grads_run(c, &ctx);
    }
    for (int t = 1; t < 3; t++) {
        check_same_bytes(tc, "out", out[0], out[t], sizeof(float) * (size_t)c->n_out);
        check_same_bytes(tc, "dinp", g[0].dinp, g[t].dinp, sizeof(float) * (size_t)c->n_inp);
        check_same_bytes(tc, "dw", g[0].dw, g[t].dw, sizeof(float) * (size_t)c->n_w);
        check_same_bytes(tc, "db", g[0].db, g[t].db, sizeof(float) * (size_t)c->OC);
    }
    for (int t = 0; t < 3; t++) {
        cp_free(out[t]);
        grads_free(&g[t]);
    }
}
TEST(test_patch_threads) { for_cases(tc, threads, 1, 0); }

/* ---- (d) poisoned outputs, += into pre-filled gradients, NULL gradients ---- */
static void check_accumulates(TestCase *tc, const char *what, const float *pre, const float *got,
                              const float *g0, int64_t n) {
    float *want = alloc_f32(n);
    for (int64_t i = 0; i < n; i++) want[i] = pre[i] + g0[i]; /* g0 = 0 + g: one += of the same g */
    CHECKF(memcmp(want, got, sizeof(float) * (size_t)n) == 0, "%s: pre-filled gradient is not pre + g", what);
    cp_free(want);
}
static void poison_accum(TestCase *tc, PCase *c, const CpCtx *ctx) {
    float *out = alloc_f32(c->n_out);
    poison(out, c->n_out);
    run_fwd(c, out, ctx);
    check_written(tc, "out", out, c->n_out);
    Grads g0 = grads_run(c, ctx);
    const float *g0p[3] = {g0.dinp, g0.dw, g0.db};
    int64_t len[3] = {c->n_inp, c->n_w, c->OC};
    const char *name[3] = {"dinp", "dw", "db"};
    float *pre[3], *acc[3];
    for (int i = 0; i < 3; i++) {
        pre[i] = alloc_f32(len[i]), acc[i] = alloc_f32(len[i]);
        fill_uniform(pre[i], len[i], 20 + i, -3, 3);
        memcpy(acc[i], pre[i], sizeof(float) * (size_t)len[i]);
    }
    run_bwd(c, acc[0], acc[1], acc[2], ctx);
    for (int i = 0; i < 3; i++) check_accumulates(tc, name[i], pre[i], acc[i], g0p[i], len[i]);
    for (int i = 0; i < 3; i++) { /* each gradient alone, the others NULL */
        memcpy(acc[i], pre[i], sizeof(float) * (size_t)len[i]);
        run_bwd(c, i == 0 ? acc[0] : NULL, i == 1 ? acc[1] : NULL, i == 2 ? acc[2] : NULL, ctx);
        check_accumulates(tc, name[i], pre[i], acc[i], g0p[i], len[i]);
    }
    for (int i = 0; i < 3; i++) {
        cp_free(pre[i]);
        cp_free(acc[i]);
    }
    grads_free(&g0);
    cp_free(out);
}
TEST(test_patch_poison_accumulate) { for_cases(tc, poison_accum, 2, 0); }

TEST_MAIN(T(test_patch_vs_torch), T(test_readout_identity_is_pixel_shuffle), T(test_patch_canonical_order),
          T(test_patch_fd), T(test_patch_threads), T(test_patch_poison_accumulate))
