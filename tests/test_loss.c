/* test_loss.c - the losses of kernels/ops.h (mse, bce_logits, cellpose_loss)
 * on the CPU:
 *  (a) vs PyTorch (tests/ref/loss.py): loss values and gradients, odd shapes,
 *      logits in [-30, 30], targets with exact 0/1, 0.5 and soft values;
 *  (b) finite differences of every gradient, in double, independent of torch;
 *  (c) threads 1, 2, 3 give identical bytes (sizes past one LOSS_GROUP of
 *      chunk partials, so the scratch-free plan folding is exercised);
 *  (d) gradients accumulate: a pre-filled buffer ends at exactly fill + grad,
 *      and dy = NULL leaves the loss unchanged; plus the plan itself: every
 *      mean equals rplan_sum_cpu over the materialized terms in the stated
 *      logical order, and the Cellpose loss equals mse/bce on contiguous
 *      copies of its channels, bit for bit.
 * The forward outputs are returned scalars (nothing to poison); gradients
 * accumulate (+=) into every element they own, so (d) replaces poisoning. */
#include <math.h>
#include <string.h>

#include "ctx.h"
#include "harness.h"
#include "kernels/loss.h"
#include "kernels/ops.h"
#include "optest.h"
#include "reduce.h"

/* ---- tolerances, all in one place: pass iff |got - ref| <= atol + rtol*|ref| ----
 * Loss values: PyTorch sums with its own (vectorized cascade) order, we with
 * the chunk plan; n <= 19398 fp32 terms of one sign, each order's error is a
 * few 1e-7 relative in practice (bound n*2^-24 ~ 1e-3 never approached).
 * MSE gradients: the same float expression as PyTorch's kernel -> exact; the
 * tolerance only admits 1 ulp.
 * BCE gradients: PyTorch's sigmoid differs from cp_sigmoidf by ~1 ulp of
 * sigmoid(x) (<= 6e-8 absolute), then * dloss / n: atol 2e-7 * 2/n covers
 * it (dloss <= 2), including cancellation in sigmoid(x) - t.
 * FD: the op returns a float loss (ulp 2.4e-7 .. 1.9e-6 here); a central
 * difference divides that noise by 2*eps (eps 0.05 .. 0.1 -> <= 2e-5), plus
 * the truncation eps^2/6 * max|f'''| / n <= 3e-6 of the BCE terms (the MSE
 * terms are quadratic: exact). Gradients are 1e-3 .. 1e-1: atol 1e-4, rtol 1e-3. */
#define TOL_LOSS_ATOL 0.0
#define TOL_LOSS_RTOL 1e-5
#define TOL_MSE_GRAD_ATOL 0.0
#define TOL_MSE_GRAD_RTOL 1.2e-7
#define TOL_BCE_GRAD_RTOL 1e-6
#define TOL_BCE_GRAD_ATOL(n) (4e-7 / (double)(n))
#define TOL_FD_ATOL 1e-4
#define TOL_FD_RTOL 1e-3

static int same_float(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void ctx_threads(CpCtx *ctx, int threads) { cp_ctx_init(ctx, CP_BACKEND_CPU, threads, 0); }

/* Count of elements whose bits differ (reported beside the tolerance lines). */
static int64_t count_diff_bits(const float *a, const float *b, int64_t n) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) c += !same_float(a[i], b[i]);
    return c;
}

/* ---- (a) vs PyTorch ---- */

typedef float (*FlatFwd)(const float *, const float *, int64_t, const CpCtx *);
typedef void (*FlatBwd)(float *, const float *, const float *, int64_t, float, const CpCtx *);

/* One flat loss case "<op><k>_*" of the reference: value and gradient. */
static void flat_vs_torch(TestCase *tc, const Ref *r, const char *op, int k, const char *xname, FlatFwd fwd,
                          FlatBwd bwd, int is_bce) {
    char nm[5][64];
    snprintf(nm[0], 64, "%s%d_n", op, k);
    int64_t n = ref_int(tc, r, nm[0]);
    snprintf(nm[1], 64, "%s%d_%s", op, k, xname);
    snprintf(nm[2], 64, "%s%d_target", op, k);
    snprintf(nm[3], 64, "%s%d_loss", op, k);
    snprintf(nm[4], 64, "%s%d_dloss", op, k);
    float *x = ref_f32(tc, r, nm[1], n), *t = ref_f32(tc, r, nm[2], n);
    float *loss = ref_f32(tc, r, nm[3], 1), *dloss = ref_f32(tc, r, nm[4], 1);
    snprintf(nm[0], 64, "%s%d_d%s", op, k, xname);
    float *dref = ref_f32(tc, r, nm[0], n);
    if (!x || !t || !loss || !dloss || !dref) return;
    CpCtx ctx;
    ctx_threads(&ctx, 2);
    float got = fwd(x, t, n, &ctx);
    char what[96];
    snprintf(what, sizeof what, "%s%d loss (n=%lld)", op, k, (long long)n);
    check_close(tc, what, &got, loss, 1, TOL_LOSS_ATOL, TOL_LOSS_RTOL);
    float *dx = alloc_f32(n);
    memset(dx, 0, sizeof(float) * (size_t)n);
    bwd(dx, x, t, n, dloss[0], &ctx);
    snprintf(what, sizeof what, "%s%d d%s", op, k, xname);
    if (is_bce)
        check_close(tc, what, dx, dref, n, TOL_BCE_GRAD_ATOL(n), TOL_BCE_GRAD_RTOL);
    else
        check_close(tc, what, dx, dref, n, TOL_MSE_GRAD_ATOL, TOL_MSE_GRAD_RTOL);
    printf("    %s: %lld of %lld elements differ from PyTorch in bits\n", what, (long long)count_diff_bits(dx, dref, n),
           (long long)n);
    cp_free(x), cp_free(t), cp_free(loss), cp_free(dloss), cp_free(dref), cp_free(dx);
}

TEST(test_mse_bce_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "loss")) return;
    for (int k = 0; k < 2; k++) {
        flat_vs_torch(tc, &r, "mse", k, "pred", mse_forward_cpu, mse_backward_cpu, 0);
        flat_vs_torch(tc, &r, "bce", k, "logit", bce_logits_forward_cpu, bce_logits_backward_cpu, 1);
    }
    ref_free(&r);
}

TEST(test_cellpose_vs_torch) {
    Ref r;
    if (!ref_load(tc, &r, "loss")) return;
    for (int k = 0; k < 2; k++) {
        char nm[4][32];
        snprintf(nm[0], 32, "cp%d_N", k);
        snprintf(nm[1], 32, "cp%d_H", k);
        snprintf(nm[2], 32, "cp%d_W", k);
        int N = (int)ref_int(tc, &r, nm[0]);
        int64_t HW = ref_int(tc, &r, nm[1]) * ref_int(tc, &r, nm[2]), n = (int64_t)N * 3 * HW;
        snprintf(nm[0], 32, "cp%d_y", k);
        snprintf(nm[1], 32, "cp%d_lbl", k);
        snprintf(nm[2], 32, "cp%d_loss", k);
        snprintf(nm[3], 32, "cp%d_dy", k);
        float *y = ref_f32(tc, &r, nm[0], n), *lbl = ref_f32(tc, &r, nm[1], n);
        float *loss = ref_f32(tc, &r, nm[2], 1), *dref = ref_f32(tc, &r, nm[3], n);
        if (!y || !lbl || !loss || !dref) break;
        CpCtx ctx;
        ctx_threads(&ctx, 2);
        float *dy = alloc_f32(n);
        memset(dy, 0, sizeof(float) * (size_t)n);
        float got = cellpose_loss_cpu(dy, y, lbl, N, HW, &ctx);
        char what[96];
        snprintf(what, sizeof what, "cellpose%d loss (N=%d HW=%lld)", k, N, (long long)HW);
        check_close(tc, what, &got, loss, 1, TOL_LOSS_ATOL, TOL_LOSS_RTOL);
        /* flow channels 0, 1: MSE gradients; channel 2: BCE gradients */
        for (int c = 0; c < 3; c++) {
            for (int s = 0; s < N; s++) {
                const float *g = dy + ((int64_t)s * 3 + c) * HW, *rf = dref + ((int64_t)s * 3 + c) * HW;
                snprintf(what, sizeof what, "cellpose%d dy[%d,%d]", k, s, c);
                if (c < 2)
                    check_close(tc, what, g, rf, HW, TOL_MSE_GRAD_ATOL, TOL_MSE_GRAD_RTOL);
                else
                    check_close(tc, what, g, rf, HW, TOL_BCE_GRAD_ATOL((int64_t)N * HW), TOL_BCE_GRAD_RTOL);
            }
        }
        printf("    cellpose%d dy: %lld of %lld elements differ from PyTorch in bits\n", k,
               (long long)count_diff_bits(dy, dref, n), (long long)n);
        cp_free(y), cp_free(lbl), cp_free(loss), cp_free(dref), cp_free(dy);
    }
    ref_free(&r);
}

/* ---- (b) finite differences ---- */

typedef struct {
    int which; /* 0 mse, 1 bce, 2 cellpose */
    float *x, *t;
    int64_t n; /* flat: elements; cellpose: HW */
    int N;
    float dloss;
    CpCtx ctx;
} FdState;

static double fd_loss(void *sp) {
    FdState *s = (FdState *)sp;
    if (s->which == 0) return (double)mse_forward_cpu(s->x, s->t, s->n, &s->ctx) * s->dloss;
    if (s->which == 1) return (double)bce_logits_forward_cpu(s->x, s->t, s->n, &s->ctx) * s->dloss;
    return (double)cellpose_loss_cpu(NULL, s->x, s->t, s->N, s->n, &s->ctx);
}

TEST(test_fd) {
    const int64_t n = 37;
    float *x = alloc_f32(n), *t = alloc_f32(n), *g = alloc_f32(n);
    FdState s = {0, x, t, n, 1, 1.3f, {0}};
    ctx_threads(&s.ctx, 1);
    /* MSE: quadratic, so the central difference is exact up to rounding */
    fill_uniform(x, n, 1, -3.0f, 3.0f);
    fill_uniform(t, n, 2, -3.0f, 3.0f);
    memset(g, 0, sizeof(float) * (size_t)n);
    mse_backward_cpu(g, x, t, n, s.dloss, &s.ctx);
    check_fd(tc, "mse dpred", g, x, n, fd_loss, &s, 5e-2f, (int)n, TOL_FD_ATOL, TOL_FD_RTOL);
    /* BCE: logits in [-6, 6] (curvature where the gradient varies), soft and hard targets */
    s.which = 1;
    fill_uniform(x, n, 3, -6.0f, 6.0f);
    fill_uniform(t, n, 4, 0.0f, 1.0f);
    t[0] = 0.0f, t[1] = 1.0f, t[2] = 1.0f, x[3] = 0.0f;
    memset(g, 0, sizeof(float) * (size_t)n);
    bce_logits_backward_cpu(g, x, t, n, s.dloss, &s.ctx);
    check_fd(tc, "bce dlogit", g, x, n, fd_loss, &s, 5e-2f, (int)n, TOL_FD_ATOL, TOL_FD_RTOL);
    cp_free(x), cp_free(t), cp_free(g);

    /* Cellpose loss on y, lbl [2,3,5,7]: every element of y */
    const int N = 2;
    const int64_t HW = 35, m = N * 3 * HW;
    float *y = alloc_f32(m), *lbl = alloc_f32(m), *dy = alloc_f32(m);
    fill_uniform(y, m, 5, -4.0f, 4.0f);
    fill_uniform(lbl, m, 6, -1.0f, 1.0f);
    for (int64_t i = 0; i < N * HW; i++) { /* cellprob: 0, 1, 0.5 and soft values */
        int64_t at = (i / HW) * 3 * HW + i % HW;
        lbl[at] = (i % 4 == 0) ? 0.0f : (i % 4 == 1) ? 1.0f : (i % 4 == 2) ? 0.5f : lbl[at] * 0.5f + 0.5f;
    }
    memset(dy, 0, sizeof(float) * (size_t)m);
    FdState c = {2, y, lbl, HW, N, 1.0f, {0}};
    ctx_threads(&c.ctx, 1);
    cellpose_loss_cpu(dy, y, lbl, N, HW, &c.ctx);
    check_fd(tc, "cellpose dy", dy, y, m, fd_loss, &c, 1e-1f, (int)m, TOL_FD_ATOL, TOL_FD_RTOL);
    cp_free(y), cp_free(lbl), cp_free(dy);
}

/* ---- (c) thread counts ---- */

/* Cellpose-like inputs: flows, logits in [-30, 30], cellprob 0/1/soft. */
static void fill_cellpose(float *y, float *lbl, int N, int64_t HW) {
    fill_uniform(y, (int64_t)N * 3 * HW, 11, -6.0f, 6.0f);
    fill_uniform(lbl, (int64_t)N * 3 * HW, 12, -1.0f, 1.0f);
    for (int s = 0; s < N; s++) {
        fill_uniform(y + ((int64_t)s * 3 + 2) * HW, HW, 13 + (uint32_t)s, -30.0f, 30.0f);
        float *p = lbl + (int64_t)s * 3 * HW;
        for (int64_t i = 0; i < HW; i++) p[i] = p[i] > 0.3f ? 1.0f : p[i] < -0.3f ? 0.0f : p[i] + 0.5f;
    }
}

TEST(test_threads_identical) {
    /* flow n = N*2*HW = 1,080,294 > LOSS_GROUP*RCHUNK: two groups of partials */
    const int N = 3;
    const int64_t HW = 401 * 449, m = N * 3 * HW;
    float *y = alloc_f32(m), *lbl = alloc_f32(m), *dy[3], loss[3], lm[3], lb[3];
    fill_cellpose(y, lbl, N, HW);
    for (int t = 0; t < 3; t++) {
        CpCtx ctx;
        ctx_threads(&ctx, t + 1);
        dy[t] = alloc_f32(m);
        fill_uniform(dy[t], m, 20, -1.0f, 1.0f);
        loss[t] = cellpose_loss_cpu(dy[t], y, lbl, N, HW, &ctx);
        /* flat ops over the whole y / lbl buffers (n = m, 264 chunks) */
        lm[t] = mse_forward_cpu(y, lbl, m, &ctx);
        mse_backward_cpu(dy[t], y, lbl, m, 0.7f, &ctx);
        lb[t] = bce_logits_forward_cpu(y, lbl, m, &ctx);
        bce_logits_backward_cpu(dy[t], y, lbl, m, 1.3f, &ctx);
    }
    for (int t = 1; t < 3; t++) {
        char what[64];
        snprintf(what, sizeof what, "threads 1 vs %d: losses", t + 1);
        check_same_bytes(tc, what, &loss[0], &loss[t], sizeof loss[0]);
        check_same_bytes(tc, what, &lm[0], &lm[t], sizeof lm[0]);
        check_same_bytes(tc, what, &lb[0], &lb[t], sizeof lb[0]);
        snprintf(what, sizeof what, "threads 1 vs %d: gradients", t + 1);
        check_same_bytes(tc, what, dy[0], dy[t], sizeof(float) * (size_t)m);
    }
    printf("  threads 1/2/3: cellpose loss %.9g, mse %.9g, bce %.9g and %lld gradients byte-identical\n",
           (double)loss[0], (double)lm[0], (double)lb[0], (long long)m);
    cp_free(y), cp_free(lbl);
    for (int t = 0; t < 3; t++) cp_free(dy[t]);
}

/* ---- (d) the plan, accumulation, dy = NULL ---- */

/* Cellpose loss == (mse(flow copy) / 2 + bce(prob copy)); dy == their
 * backwards scattered back; both equal rplan_sum_cpu over the terms. */
static void cellpose_decomposed(TestCase *tc, const float *y, const float *lbl, int N, int64_t HW,
                                const CpCtx *ctx) {
    int64_t nf = (int64_t)N * 2 * HW, np = (int64_t)N * HW, m = (int64_t)N * 3 * HW;
    float *fy = alloc_f32(nf), *ft = alloc_f32(nf), *py = alloc_f32(np), *pt = alloc_f32(np);
    float *term = alloc_f32(nf), *part = alloc_f32(rplan_nchunks(nf));
    for (int64_t i = 0; i < nf; i++) { /* logical order (n, c, hw) */
        int64_t s = i / (2 * HW), c = (i / HW) % 2, hw = i % HW;
        fy[i] = y[(s * 3 + c) * HW + hw];
        ft[i] = cp_flow_target(lbl[(s * 3 + c + 1) * HW + hw]);
        term[i] = mse_term(fy[i], ft[i]);
    }
    for (int64_t i = 0; i < np; i++) {
        py[i] = y[((i / HW) * 3 + 2) * HW + i % HW];
        pt[i] = cp_prob_target(lbl[(i / HW) * 3 * HW + i % HW]);
    }
    float flow_plan = rplan_sum_cpu(ctx, term, nf, part) / (float)nf;
    for (int64_t i = 0; i < np; i++) term[i] = bce_term(py[i], pt[i]);
    float prob_plan = rplan_sum_cpu(ctx, term, np, part) / (float)np;
    float flow = mse_forward_cpu(fy, ft, nf, ctx), prob = bce_logits_forward_cpu(py, pt, np, ctx);
    CHECKF(same_float(flow, flow_plan), "mse %.9g vs rplan_sum_cpu of the terms %.9g", flow, flow_plan);
    CHECKF(same_float(prob, prob_plan), "bce %.9g vs rplan_sum_cpu of the terms %.9g", prob, prob_plan);
    float *dy = alloc_f32(m), *dfy = alloc_f32(nf), *dpy = alloc_f32(np);
    memset(dy, 0, sizeof(float) * (size_t)m);
    memset(dfy, 0, sizeof(float) * (size_t)nf);
    memset(dpy, 0, sizeof(float) * (size_t)np);
    float loss = cellpose_loss_cpu(dy, y, lbl, N, HW, ctx);
    float want = flow / 2.0f + prob;
    CHECKF(same_float(loss, want), "cellpose %.9g vs mse/2 + bce on copies %.9g", loss, want);
    mse_backward_cpu(dfy, fy, ft, nf, CP_FLOW_DLOSS, ctx);
    bce_logits_backward_cpu(dpy, py, pt, np, 1.0f, ctx);
    int64_t bad = 0;
    for (int64_t i = 0; i < nf; i++) bad += !same_float(dy[((i / (2 * HW)) * 3 + (i / HW) % 2) * HW + i % HW], dfy[i]);
    for (int64_t i = 0; i < np; i++) bad += !same_float(dy[((i / HW) * 3 + 2) * HW + i % HW], dpy[i]);
    CHECKF(bad == 0, "cellpose dy: %lld elements differ from mse/bce backward on copies", (long long)bad);
    printf("  N=%d HW=%lld: cellpose loss == mse/2 + bce on copies == plan over terms (bitwise), dy too\n", N,
           (long long)HW);
    cp_free(fy), cp_free(ft), cp_free(py), cp_free(pt), cp_free(term), cp_free(part);
    cp_free(dy), cp_free(dfy), cp_free(dpy);
}

TEST(test_plan_and_decomposition) {
    CpCtx ctx;
    ctx_threads(&ctx, 2);
    const int Ns[2] = {3, 1};
    const int64_t HWs[2] = {test_quick() ? 61 * 53 : 401 * 449, 37 * 29};
    for (int k = 0; k < 2; k++) {
        int64_t m = (int64_t)Ns[k] * 3 * HWs[k];
        float *y = alloc_f32(m), *lbl = alloc_f32(m);
        fill_cellpose(y, lbl, Ns[k], HWs[k]);
        cellpose_decomposed(tc, y, lbl, Ns[k], HWs[k], &ctx);
        cp_free(y), cp_free(lbl);
    }
}

TEST(test_accumulate_and_null) {
    const int N = 3;
    const int64_t HW = 61 * 53, m = N * 3 * HW;
    float *y = alloc_f32(m), *lbl = alloc_f32(m), *g = alloc_f32(m), *acc = alloc_f32(m), *fill = alloc_f32(m);
    fill_cellpose(y, lbl, N, HW);
    fill_uniform(fill, m, 30, -2.0f, 2.0f);
    CpCtx ctx;
    ctx_threads(&ctx, 3);
    int64_t bad[3] = {0, 0, 0};
    for (int op = 0; op < 3; op++) {
        memset(g, 0, sizeof(float) * (size_t)m);
        memcpy(acc, fill, sizeof(float) * (size_t)m);
        if (op == 0) {
            mse_backward_cpu(g, y, lbl, m, 0.7f, &ctx);
            mse_backward_cpu(acc, y, lbl, m, 0.7f, &ctx);
        } else if (op == 1) {
            bce_logits_backward_cpu(g, y, lbl, m, 0.7f, &ctx);
            bce_logits_backward_cpu(acc, y, lbl, m, 0.7f, &ctx);
        } else {
            float l0 = cellpose_loss_cpu(g, y, lbl, N, HW, &ctx);
            float l1 = cellpose_loss_cpu(acc, y, lbl, N, HW, &ctx);
            float l2 = cellpose_loss_cpu(NULL, y, lbl, N, HW, &ctx);
            CHECKF(same_float(l0, l1) && same_float(l0, l2), "loss depends on dy: %.9g %.9g %.9g", l0, l1, l2);
        }
        for (int64_t i = 0; i < m; i++) bad[op] += !same_float(acc[i], fill[i] + g[i]);
    }
    CHECKF(bad[0] == 0, "mse_backward: %lld elements != fill + grad", (long long)bad[0]);
    CHECKF(bad[1] == 0, "bce_logits_backward: %lld elements != fill + grad", (long long)bad[1]);
    CHECKF(bad[2] == 0, "cellpose_loss: %lld elements != fill + grad", (long long)bad[2]);
    printf("  pre-filled gradients end at exactly fill + grad (mse, bce, cellpose; %lld elements each)\n",
           (long long)m);
    cp_free(y), cp_free(lbl), cp_free(g), cp_free(acc), cp_free(fill);
}

TEST_MAIN(T(test_mse_bce_vs_torch), T(test_cellpose_vs_torch), T(test_fd), T(test_threads_identical),
          T(test_plan_and_decomposition), T(test_accumulate_and_null))
