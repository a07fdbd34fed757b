/* test_vit.c - the Cellpose-SAM ViT against the REAL Cellpose-SAM Transformer
 * (tests/ref/vit.py: pip cellpose 4.0.9 cellpose/vit_sam.py around pip
 * segment-anything 1.0's ImageEncoderViT, Debian's PyTorch), built small
 * (dim 32, 3 blocks, 2 heads, patch 8, 64 x 64 tiles) with cpsam's rel-pos
 * table sizes (27 rows, 127 in the global block), so the table
 * interpolation 27 -> 15 and 127 -> 15 runs in every block; same weights
 * (converted from Cellpose's torch.save by nets/convert_pth.py) and inputs:
 *   - the tensor table: names, shapes and order of Cellpose's file; the
 *     config read back from the file; cpsam's trainable count (CELLPOSE.md 2.6);
 *   - forward output and Cellpose's v4 loss (rdrop 0);
 *   - the step-0 gradient of every parameter, rel_pos_h/w included (per
 *     tensor, printed);
 *   - a 10-step AdamW trajectory: loss per step and the final weights;
 *   - finite differences in double on a few parameters of every kind, with
 *     layer drop active (so the drop path's backward is checked too);
 *   - layer drop: the drawn pattern (never block 0, always the last at
 *     rdrop 1), a pure function of (seed, step); dropped means identity;
 *   - determinism: two runs identical, 1 vs 2 threads identical, a plan for
 *     another batch size re-used, batch independence (sample 0 alone = in a
 *     batch), by SHA-256 / bytes;
 *   - bad model files fail with one line naming the file and the tensor.
 *
 * Relative error of a tensor = max|ours - ref| / max|ref| (printed). Every
 * fp32 comparison is also made against the float64 run of the same PyTorch
 * code, which is the yardstick: our error vs f64 must be at most YARD times
 * PyTorch fp32's own error vs f64, plus FLOOR. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "optest.h"
#include "vit.h"

enum { N = 2, S = 64, STEPS = 10 };
#define LR 1e-3
#define WD 0.1

/* Tolerances (see the header). The forward and loss have no ReLU-like
 * branches, so TOL_FWD holds for them directly; gradients and the trajectory
 * are judged by the yardstick. */
#define TOL_FWD 1e-5
#define YARD 4.0
#define FLOOR 1e-5
#define YARD_TRAJ 10.0
#define FLOOR_TRAJ 1e-4

static const char *ref_path(const char *name) {
    static char buf[1024];
    const char *dir = getenv("CP_REF_DIR");
    snprintf(buf, sizeof buf, "%s/%s", dir && dir[0] ? dir : "build/ref", name);
    return buf;
}

/* The reference net's config, read from its model file (heads from the
 * table width: 32 / 16 = 2). */
static int make_ref_net(TestCase *tc, ViT *net, float rdrop) {
    StFile f;
    CpErr e;
    int ok = st_read(&f, ref_path("vit_init.bin"), &e) == CP_OK;
    CHECKF(ok, "%s (run tests/ref/vit.py)", e.msg);
    if (!ok) return 0;
    ViTConfig c = {0};
    ok = vit_config_from_file(&c, &f, &e) == CP_OK;
    CHECKF(ok, "%s", e.msg);
    c.rdrop = rdrop;
    if (ok) ok = vit_create(net, &c, cp_ops_cpu(), &e) == CP_OK && vit_load_from(net, &f, NULL, &e) == CP_OK;
    CHECKF(ok, "%s", e.msg);
    st_free(&f);
    return ok;
}

static CpCtx vit_ctx(const ViT *net, int threads) {
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, threads, 0);
    cp_ctx_workspace(&ctx, vit_workspace_bytes(net));
    return ctx;
}

static double rel_err(const float *got, const float *ref, int64_t n) {
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return mr > 0 ? md / mr : md;
}

typedef struct {
    int count;
    double worst_ratio, sum_ours, sum_torch;
    char worst[96];
} Yard;

/* ours vs f64 against PyTorch fp32 vs f64, for reference tensors "<name>"
 * and "f64.<name>"; prints one line per tensor when `print`. */
static void yard(TestCase *tc, Yard *y, const Ref *r, const char *name, const float *ours, int64_t n, double k,
                 double floor, int print) {
    char b[200];
    snprintf(b, sizeof b, "f64.%s", name);
    float *t32 = ref_f32(tc, r, name, n), *t64 = ref_f32(tc, r, b, n);
    if (t32 && t64) {
        double eo = rel_err(ours, t64, n), et = rel_err(t32, t64, n), ev = rel_err(ours, t32, n);
        int ok = eo <= k * et + floor;
        if (print || !ok)
            printf("  %-44s vs torch fp32 %.2e | vs f64: ours %.2e, torch fp32 %.2e\n", name, ev, eo, et);
        CHECKF(ok, "%s: ours vs f64 %.2e > %.0f x torch fp32 vs f64 %.2e + %.0e", name, eo, k, et, floor);
        double ratio = eo / (et + floor);
        y->count++, y->sum_ours += eo, y->sum_torch += et;
        if (!(ratio <= y->worst_ratio)) y->worst_ratio = ratio, snprintf(y->worst, sizeof y->worst, "%s", name);
    }
    cp_free(t32), cp_free(t64);
}

static void yard_print(const char *what, const Yard *y) {
    printf("  %s, %d tensors: mean rel err vs float64: ours %.2e, PyTorch fp32 %.2e; worst ratio %.2f (%s)\n", what,
           y->count, y->sum_ours / (y->count ? y->count : 1), y->sum_torch / (y->count ? y->count : 1),
           y->worst_ratio, y->worst);
}

TEST(test_tensor_table) {
    ViT net;
    if (!make_ref_net(tc, &net, 0)) return;
    StFile f;
    CpErr e;
    CHECK(st_read(&f, ref_path("vit_init.bin"), &e) == CP_OK);
    printf("  %d state_dict entries, %lld trainable values, %lld frozen; rel-pos rows per block:", net.ntensors,
           (long long)net.nparams, (long long)net.nfrozen);
    for (int i = 0; i < net.cfg.depth; i++) printf(" %d", net.cfg.rel_rows[i]);
    printf(" (heads %d, mlp %d, neck %d)\n", net.cfg.heads, net.cfg.mlp, net.cfg.neck);
    CHECK(net.cfg.depth == 3 && net.cfg.heads == 2 && net.cfg.rel_rows[0] == 27 && net.cfg.rel_rows[1] == 127);
    CHECK(net.cfg.img_size == 64 && net.cfg.patch == 8 && net.cfg.mlp == 128 && net.cfg.neck == 256);
    CHECK(f.n == net.ntensors);
    for (int i = 0; i < f.n && i < net.ntensors; i++) {
        CHECKF(strcmp(f.tensors[i].name, net.tensors[i].name) == 0, "entry %d: %s vs ours %s", i, f.tensors[i].name,
               net.tensors[i].name);
        CHECK(f.tensors[i].numel == net.tensors[i].numel);
    }
    st_free(&f);
    vit_free(&net);
    /* cpsam and vit_b (configs/): the counts of CELLPOSE.md 2.6, table only */
    static const struct {
        const char *path;
        int entries;
        int64_t trainable;
    } want[] = {{"configs/cpsam.yaml", 350, 304592064}, {"configs/vit_b.yaml", 182, 86918592}};
    for (int k = 0; k < 2; k++) {
        CpConfig cfg;
        ViTConfig vc;
        CHECKF(config_load(&cfg, want[k].path, &e) == CP_OK && vit_config_from(&vc, &cfg.net, &e) == CP_OK, "%s",
               e.msg);
        CHECKF(vit_create_table(&net, &vc, &e) == CP_OK, "%s", e.msg);
        printf("  %s: %d entries, %lld trainable, %lld frozen\n", want[k].path, net.ntensors, (long long)net.nparams,
               (long long)net.nfrozen);
        CHECK(net.ntensors == want[k].entries && net.nparams == want[k].trainable && net.nfrozen == 36866);
        vit_free(&net);
    }
}

TEST(test_vs_cellpose) {
    Ref r;
    if (!ref_load(tc, &r, "vit")) return;
    ViT net;
    if (!make_ref_net(tc, &net, 0)) goto out;
    CpErr e;
    CpCtx ctx = vit_ctx(&net, 0);
    CHECKF(vit_plan(&net, N, S, S, 1, &e) == CP_OK, "%s", e.msg);
    vit_memory_report(&net, stdout);
    int64_t nx = (int64_t)N * 3 * S * S, ny = nx;
    float *x = ref_f32(tc, &r, "x", nx), *lbl = ref_f32(tc, &r, "lbl", ny), *ry = ref_f32(tc, &r, "y", ny);
    float *rl = ref_f32(tc, &r, "loss", 1), *dy = alloc_f32(ny);
    if (x && lbl && ry && rl) {
        float loss;
        CHECKF(vit_loss_backward(&net, x, lbl, dy, &loss, &ctx, &e) == CP_OK, "%s", e.msg);
        double ey = rel_err(net.y, ry, ny), el = rel_err(&loss, rl, 1);
        printf("  forward y: max rel err vs Cellpose fp32 %.2e (tol %.0e); loss %.7f vs %.7f, rel err %.2e\n", ey,
               TOL_FWD, loss, rl[0], el);
        CHECK(ey <= TOL_FWD && el <= TOL_FWD);
        Yard yf = {0}, yg = {0};
        yard(tc, &yf, &r, "y", net.y, ny, YARD, FLOOR, 1);
        for (int i = 0; i < net.ntensors; i++) {
            const CpTensorInfo *t = &net.tensors[i];
            if (t->kind != T_PARAM) continue;
            char name[160];
            snprintf(name, sizeof name, "grad.%s", t->name);
            yard(tc, &yg, &r, name, net.grads + t->offset, t->numel, YARD, FLOOR, 1);
        }
        yard_print("step-0 gradients", &yg);
    }
    cp_free(x), cp_free(lbl), cp_free(ry), cp_free(rl), cp_free(dy);
    cp_ctx_free(&ctx);
    vit_free(&net);
out:
    ref_free(&r);
}

TEST(test_trajectory_vs_cellpose) {
    Ref r;
    if (!ref_load(tc, &r, "vit")) return;
    ViT net;
    if (!make_ref_net(tc, &net, 0)) goto out;
    CpErr e;
    CpCtx ctx = vit_ctx(&net, 0);
    CHECKF(vit_plan(&net, N, S, S, 1, &e) == CP_OK, "%s", e.msg);
    int steps = test_quick() ? 2 : STEPS;
    int64_t nx = (int64_t)N * 3 * S * S;
    float *xs = ref_f32(tc, &r, "traj.x", STEPS * nx), *ls = ref_f32(tc, &r, "traj.lbl", STEPS * nx);
    float *losses = ref_f32(tc, &r, "traj.loss", STEPS), *ours = alloc_f32(STEPS), *dy = alloc_f32(nx);
    float *m = cp_calloc((size_t)net.nparams, sizeof(float)), *v = cp_calloc((size_t)net.nparams, sizeof(float));
    if (xs && ls && losses) {
        for (int s = 0; s < steps; s++) {
            CHECKF(vit_loss_backward(&net, xs + s * nx, ls + s * nx, dy, &ours[s], &ctx, &e) == CP_OK, "%s", e.msg);
            adamw_step_cpu(net.params, m, v, net.grads, net.nparams, LR, 0.9, 0.999, 1e-8, WD, s + 1, &ctx);
            printf("  step %2d  loss %.7f  cellpose fp32 %.7f\n", s, ours[s], losses[s]);
        }
        if (steps == STEPS) {
            Yard yl = {0}, yw = {0};
            yard(tc, &yl, &r, "traj.loss", ours, STEPS, YARD, FLOOR, 1);
            for (int i = 0; i < net.ntensors; i++) {
                const CpTensorInfo *t = &net.tensors[i];
                if (t->kind != T_PARAM) continue;
                char name[160];
                snprintf(name, sizeof name, "final.%s", t->name);
                yard(tc, &yw, &r, name, net.params + t->offset, t->numel, YARD_TRAJ, FLOOR_TRAJ,
                     getenv("CP_VERBOSE") != NULL);
            }
            yard_print("weights after 10 AdamW steps", &yw);
        }
    }
    FREE_ALL(xs, ls, losses, ours, dy, m, v);
    cp_ctx_free(&ctx);
    vit_free(&net);
out:
    ref_free(&r);
}

/* ---- finite differences: loss = sum(y * probe) in double ---- */
typedef struct {
    ViT *net;
    const float *x, *probe;
    CpCtx *ctx;
} FdState;

static double fd_loss(void *p) {
    FdState *s = p;
    CpErr e;
    const float *y = vit_forward(s->net, s->x, 1, s->ctx, &e);
    int64_t ny = (int64_t)s->net->plan_n * s->net->cfg.nout * s->net->cfg.img_size * s->net->cfg.img_size;
    double acc = 0, acc2 = 0;
    for (int64_t i = 0; i < ny; i++) acc += (double)y[i] * s->probe[i];
    for (int64_t i = ny; i-- > 0;) acc2 += (double)y[i] * s->probe[i]; /* the same sum backwards: double-checked */
    CP_ASSERT(fabs(acc - acc2) <= 1e-9 * (fabs(acc) + 1));
    return acc;
}

/* Fourth-order central differences, (8(f(h) - f(-h)) - (f(2h) - f(-2h))) / 12h,
 * for `ns` elements spread over the tensor. The forward is fp32: the loss
 * (2.5e4 terms of sum(y * probe)) carries rounding noise of ~1e-5 absolute,
 * so h must be large (FD_H); the fourth-order stencil keeps the truncation
 * error (h^4 f''''') below that noise. Tolerance: |ana - fd| <= FD_ATOL +
 * FD_RTOL |fd|, FD_ATOL ~ 3 x the noise / h. */
#define FD_H 4e-2f
#define FD_ATOL 2e-3
#define FD_RTOL 1e-2
static void check_fd4(TestCase *tc, const char *what, const float *grad, float *p, int64_t n, FdState *st, int ns) {
    float num[8], ana[8];
    for (int s = 0; s < ns; s++) {
        int64_t i = (int64_t)((double)s * (double)n / (double)ns);
        float keep = p[i];
        double f[4];
        const float off[4] = {-2 * FD_H, -FD_H, FD_H, 2 * FD_H};
        for (int k = 0; k < 4; k++) {
            p[i] = keep + off[k];
            f[k] = fd_loss(st);
        }
        p[i] = keep;
        num[s] = (float)((8.0 * (f[2] - f[1]) - (f[3] - f[0])) / (12.0 * (double)FD_H));
        ana[s] = grad[i];
    }
    char label[160];
    snprintf(label, sizeof label, "%s (fd4, h %.0e)", what, (double)FD_H);
    check_close(tc, label, ana, num, ns, FD_ATOL, FD_RTOL);
}

/* A training step whose draws drop some blocks, but no block in every
 * sample (so each block's parameters still get a gradient to check). */
static uint64_t step_with_drops(ViT *net, const float *x, CpCtx *ctx, int *ndrop) {
    CpErr e;
    int B = net->plan_n, D = net->cfg.depth;
    for (uint64_t step = 0; step < 256; step++) {
        vit_set_step(net, 7, step);
        vit_forward(net, x, 1, ctx, &e);
        int d = 0, all = 0;
        for (int i = 0; i < D; i++) {
            int c = 0;
            for (int n = 0; n < B; n++) c += net->drop[n * D + i];
            d += c, all += c == B;
        }
        if (d > 0 && !all) return *ndrop = d, step;
    }
    return *ndrop = 0, 0;
}

TEST(test_finite_differences) {
    ViT net;
    if (!make_ref_net(tc, &net, 0.9f)) return; /* drop probabilities 0, 0.45, 0.9 */
    CpErr e;
    CpCtx ctx = vit_ctx(&net, 0);
    CHECKF(vit_plan(&net, N, S, S, 1, &e) == CP_OK, "%s", e.msg);
    int64_t nx = (int64_t)N * 3 * S * S;
    float *x = alloc_f32(nx), *probe = alloc_f32(nx);
    fill_uniform(x, nx, 1, -0.5f, 1.5f);
    fill_uniform(probe, nx, 2, -1, 1);
    int ndrop;
    uint64_t step = step_with_drops(&net, x, &ctx, &ndrop);
    printf("  layer drop active: step %llu drops %d of %d (sample, block) pairs\n", (unsigned long long)step, ndrop,
           N * net.cfg.depth);
    CHECK(ndrop > 0);
    vit_set_step(&net, 7, step);
    vit_forward(&net, x, 1, &ctx, &e);
    memset(net.grads, 0, sizeof(float) * (size_t)net.nparams);
    vit_backward(&net, probe, &ctx);
    float *g = alloc_f32(net.nparams);
    copy(g, net.grads, net.nparams);
    FdState st = {&net, x, probe, &ctx};
    static const char *names[] = {"encoder.blocks.0.attn.rel_pos_h", "encoder.blocks.1.attn.rel_pos_w",
                                  "encoder.pos_embed", "encoder.patch_embed.proj.bias",
                                  "encoder.blocks.2.attn.qkv.weight",
                                  "encoder.blocks.1.mlp.lin1.weight", "encoder.neck.0.weight", "encoder.neck.3.weight",
                                  "out.bias", "encoder.blocks.2.norm1.weight"};
    size_t nnames = test_quick() ? 3 : sizeof names / sizeof names[0]; /* sanitizer run: a sample */
    for (size_t k = 0; k < nnames; k++)
        for (int i = 0; i < net.ntensors; i++) {
            const CpTensorInfo *t = &net.tensors[i];
            if (strcmp(t->name, names[k])) continue;
            check_fd4(tc, t->name, g + t->offset, net.params + t->offset, t->numel, &st, test_quick() ? 1 : 4);
        }
    FREE_ALL(x, probe, g);
    cp_ctx_free(&ctx);
    vit_free(&net);
}

/* Drops follow (seed, step) only; block 0 never drops, at rdrop 1 the last
 * always does; a dropped block passes its input through unchanged; eval
 * mode never drops. */
TEST(test_layer_drop) {
    ViT net;
    if (!make_ref_net(tc, &net, 1.0f)) return;
    CpErr e;
    CpCtx ctx = vit_ctx(&net, 0);
    int B = 8, D = net.cfg.depth;
    CHECKF(vit_plan(&net, B, S, S, 1, &e) == CP_OK, "%s", e.msg);
    int64_t nx = (int64_t)B * 3 * S * S, tok = (int64_t)(S / 8) * (S / 8) * net.cfg.dim;
    float *x = alloc_f32(nx);
    fill_uniform(x, nx, 3, -0.5f, 1.5f);
    uint8_t a[64], b[64];
    vit_set_step(&net, 11, 5);
    vit_forward(&net, x, 1, &ctx, &e);
    memcpy(a, net.drop, (size_t)(B * D));
    int first = 0, last = 0, passed = 1;
    for (int n = 0; n < B; n++) {
        first += a[n * D], last += a[n * D + D - 1];
        for (int i = 0; i < D; i++)
            if (a[n * D + i])
                passed &= memcmp(net.blk[i].out + n * tok, net.blk[i].in + n * tok, sizeof(float) * (size_t)tok) == 0;
    }
    CHECKF(first == 0 && last == B, "block 0 dropped %d times, last block %d of %d", first, last, B);
    CHECKF(passed, "a dropped block changed its input");
    vit_set_step(&net, 11, 5);
    vit_forward(&net, x, 1, &ctx, &e);
    CHECK(memcmp(a, net.drop, (size_t)(B * D)) == 0);
    int differs = 0;
    for (uint64_t s = 6; s < 10 && !differs; s++) {
        vit_set_step(&net, 11, s);
        vit_forward(&net, x, 1, &ctx, &e);
        memcpy(b, net.drop, (size_t)(B * D));
        differs = memcmp(a, b, (size_t)(B * D)) != 0;
    }
    CHECKF(differs, "the drop pattern does not change with the step");
    /* eval: no drop; equals a net with rdrop 0 */
    float *y1 = alloc_f32(nx);
    copy(y1, vit_forward(&net, x, 0, &ctx, &e), nx);
    ViT ref;
    if (make_ref_net(tc, &ref, 0)) {
        CHECKF(vit_plan(&ref, B, S, S, 0, &e) == CP_OK, "%s", e.msg);
        /* also: an eval plan (ping-pong block buffers) gives the bytes of an eval
         * forward in a training plan, in a smaller arena */
        CHECK(memcmp(y1, vit_forward(&ref, x, 0, &ctx, &e), sizeof(float) * (size_t)nx) == 0);
        printf("  arena floats: training plan %lld, eval plan %lld\n", (long long)net.act_floats,
               (long long)ref.act_floats);
        CHECK(ref.act_floats < net.act_floats);
        vit_free(&ref);
    }
    FREE_ALL(x, y1);
    cp_ctx_free(&ctx);
    vit_free(&net);
}

/* Two AdamW steps with layer drop from a random init -> SHA-256. */
static void train_hash(TestCase *tc, int threads, int N0, char hex[65]) {
    CpConfig cfg;
    CpErr e;
    ViTConfig vc;
    ViT net;
    CHECKF(config_load(&cfg, "configs/vit_tiny.yaml", &e) == CP_OK && vit_config_from(&vc, &cfg.net, &e) == CP_OK,
           "%s", e.msg);
    CHECKF(vit_create(&net, &vc, cp_ops_cpu(), &e) == CP_OK, "%s", e.msg);
    vit_init_random(&net, 42);
    CpCtx ctx = vit_ctx(&net, threads);
    int n = vc.img_size;
    if (N0 > 0) { /* plan (and run) another batch size first: the re-plan must not matter */
        CHECK(vit_plan(&net, N0, n, n, 1, &e) == CP_OK);
        float *x0 = alloc_f32((int64_t)N0 * 3 * n * n);
        fill_uniform(x0, (int64_t)N0 * 3 * n * n, 9, 0, 1);
        vit_forward(&net, x0, 1, &ctx, &e);
        cp_free(x0);
    }
    CHECK(vit_plan(&net, 2, n, n, 1, &e) == CP_OK);
    int64_t nx = (int64_t)2 * 3 * n * n;
    float *x = alloc_f32(nx), *lbl = alloc_f32(nx), *dy = alloc_f32(nx);
    fill_uniform(x, nx, 4, -0.5f, 1.5f);
    fill_uniform(lbl, nx, 5, -1, 1);
    float *m = cp_calloc((size_t)net.nparams, sizeof(float)), *v = cp_calloc((size_t)net.nparams, sizeof(float));
    for (int s = 1; s <= 2; s++) {
        float loss;
        vit_set_step(&net, 42, (uint64_t)s);
        CHECKF(vit_loss_backward(&net, x, lbl, dy, &loss, &ctx, &e) == CP_OK, "%s", e.msg);
        adamw_step_cpu(net.params, m, v, net.grads, net.nparams, 5e-4, 0.9, 0.999, 1e-8, 0.1, s, &ctx);
    }
    vit_hash(&net, hex);
    FREE_ALL(x, lbl, dy, m, v);
    cp_ctx_free(&ctx);
    vit_free(&net);
}

TEST(test_determinism) {
    char h[4][65];
    train_hash(tc, 1, 0, h[0]);
    train_hash(tc, 1, 0, h[1]);
    train_hash(tc, 2, 0, h[2]);
    train_hash(tc, 2, 3, h[3]);
    printf("  vit_tiny, 2 AdamW steps with layer drop: run 1 %s\n  run 2 %s\n  2 threads %s\n"
           "  2 threads after a batch-3 plan %s\n", h[0], h[1], h[2], h[3]);
    CHECK(!strcmp(h[0], h[1]) && !strcmp(h[0], h[2]) && !strcmp(h[0], h[3]));
    /* batch independence (eval): sample 1 alone == sample 1 of a batch of 2 */
    ViT net;
    if (!make_ref_net(tc, &net, 0)) return;
    CpErr e;
    CpCtx ctx = vit_ctx(&net, 0);
    int64_t per = (int64_t)3 * S * S;
    float *x = alloc_f32(2 * per), *y2 = alloc_f32(2 * per);
    fill_uniform(x, 2 * per, 6, -0.5f, 1.5f);
    CHECK(vit_plan(&net, 2, S, S, 0, &e) == CP_OK);
    copy(y2, vit_forward(&net, x, 0, &ctx, &e), 2 * per);
    CHECK(vit_plan(&net, 1, S, S, 0, &e) == CP_OK);
    CHECKF(memcmp(y2 + per, vit_forward(&net, x + per, 0, &ctx, &e), sizeof(float) * (size_t)per) == 0,
           "sample 1 differs between batch 2 and batch 1");
    FREE_ALL(x, y2);
    cp_ctx_free(&ctx);
    vit_free(&net);
}

/* Load -> save is byte-identical (the copy goes to $CP_TEST_OUT/vit/
 * roundtrip.bin for tests/py/test_vit_interop.py: strict load_state_dict
 * into Cellpose's Transformer); bad files name the file and the tensor. */
TEST(test_model_files) {
    ViT net;
    if (!make_ref_net(tc, &net, 0)) return;
    CpErr e;
    char dir[] = "/tmp/cp_vit_XXXXXX", path[128], keep[1100];
    CP_ASSERT(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.bin", dir);
    CHECKF(vit_save(&net, path, NULL, 0, &e) == CP_OK, "%s", e.msg);
    const char *out = getenv("CP_TEST_OUT");
    if (out && out[0]) {
        snprintf(keep, sizeof keep, "%s/vit", out);
        mkdir(keep, 0777);
        snprintf(keep, sizeof keep, "%s/vit/roundtrip.bin", out);
        const char *meta[] = {"net", "vit"};
        CHECKF(vit_save(&net, keep, meta, 1, &e) == CP_OK, "%s", e.msg);
    }
    StFile a, b;
    CHECK(st_read(&a, ref_path("vit_init.bin"), &e) == CP_OK && st_read(&b, path, &e) == CP_OK);
    int same = a.n == b.n;
    for (int i = 0; same && i < a.n; i++)
        same = !strcmp(a.tensors[i].name, b.tensors[i].name) &&
               a.tensors[i].end - a.tensors[i].begin == b.tensors[i].end - b.tensors[i].begin &&
               !memcmp(a.tensors[i].data, b.tensors[i].data, a.tensors[i].end - a.tensors[i].begin);
    CHECKF(same, "load -> save changed a tensor");
    st_free(&a), st_free(&b);
    /* wrong shape: a net of another tile size; missing / extra tensors */
    ViTConfig c = net.cfg;
    c.img_size = 128;
    ViT other;
    CHECK(vit_create(&other, &c, cp_ops_cpu(), &e) == CP_OK);
    CHECK(vit_load(&other, path, &e) == CP_EFAIL);
    printf("  wrong tile: %s\n", e.msg);
    CHECK(strstr(e.msg, path) && strstr(e.msg, "encoder.pos_embed") && strstr(e.msg, "has shape"));
    vit_free(&other);
    StWriteTensor *w = cp_calloc((size_t)net.ntensors + 1, sizeof(StWriteTensor));
    for (int variant = 0; variant < 2; variant++) {
        int n = vit_write_list(&net, w);
        if (variant == 0) memmove(&w[7], &w[8], sizeof(StWriteTensor) * (size_t)(--n - 7));
        else w[n].name = "extra.weight", w[n].dtype = ST_F32, w[n].ndim = 1, w[n].shape[0] = 1,
             w[n].data = net.params, n++;
        CHECK(st_write(path, w, n, NULL, 0, &e) == CP_OK);
        CHECK(vit_load(&net, path, &e) == CP_EFAIL);
        printf("  variant %d: %s\n", variant, e.msg);
        CHECK(strstr(e.msg, path) && !strchr(e.msg, '\n'));
        CHECK(strstr(e.msg, variant ? "unexpected tensor 'extra.weight'" : "is missing"));
    }
    cp_free(w);
    unlink(path);
    rmdir(dir);
    vit_free(&net);
}

TEST_MAIN(T(test_tensor_table), T(test_vs_cellpose), T(test_trajectory_vs_cellpose), T(test_finite_differences),
          T(test_layer_drop), T(test_determinism), T(test_model_files))
