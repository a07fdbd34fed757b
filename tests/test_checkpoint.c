/* test_checkpoint.c - a checkpoint restores the net (parameters, BN stats,
 * counters), the optimizer moments and the step bit for bit, and continuing
 * from it gives the same hash as never stopping (level R on one machine);
 * a plain model file or a truncated checkpoint is refused with one line. */
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "optest.h"

static const int NB[5] = {2, 8, 16, 32, 64};
enum { N = 2, H = 16, W = 24 };

static void make(Net *net, TrainState *st) {
    NetConfig c = {.type = NET_CPNET, .n_nbase = 5, .nout = 3, .kernel_size = 3, .diam_mean = 30.0};
    for (int i = 0; i < 5; i++) c.nbase[i] = NB[i];
    CpErr e;
    CP_ASSERT(net_create(net, &c, cp_ops_cpu(), &e) == CP_OK);
    CP_ASSERT(net_plan(net, N, H, W, 1, &e) == CP_OK);
    st->m = cp_calloc((size_t)net->nparams, sizeof(float));
    st->v = cp_calloc((size_t)net->nparams, sizeof(float));
    st->step = st->epoch = 0;
}

static void unmake(Net *net, TrainState *st) {
    cp_free(st->m), cp_free(st->v);
    net_free(net);
}

/* One AdamW step on batch number `b` (deterministic data). */
static void step(Net *net, TrainState *st, int b, const CpCtx *ctx) {
    int64_t nx = N * 2 * H * W, ny = N * 3 * H * W;
    float *x = alloc_f32(nx), *lbl = alloc_f32(ny), *dy = alloc_f32(ny);
    fill_uniform(x, nx, 100 + (uint32_t)b, -1, 2);
    fill_uniform(lbl, ny, 200 + (uint32_t)b, -1, 1);
    CpErr e;
    float loss;
    CP_ASSERT(net_loss_backward(net, x, lbl, dy, &loss, ctx, &e) == CP_OK);
    adamw_step_cpu(net->params, st->m, st->v, net->grads, net->nparams, 5e-3, 0.9, 0.999, 1e-8, 1e-5, ++st->step,
                   ctx);
    FREE_ALL(x, lbl, dy);
}

TEST(test_resume_equals_uninterrupted) {
    CpCtx ctx = ctx_with(2);
    CpErr e;
    char dir[] = "/tmp/cp_ckpt_XXXXXX", path[128];
    CP_ASSERT(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ckpt.bin", dir);
    char straight[65], resumed[65];
    Net a;
    TrainState sa;
    make(&a, &sa);
    net_init_random(&a, 7);
    for (int b = 0; b < 4; b++) step(&a, &sa, b, &ctx);
    net_hash(&a, straight);
    unmake(&a, &sa);

    make(&a, &sa);
    net_init_random(&a, 7);
    for (int b = 0; b < 2; b++) step(&a, &sa, b, &ctx);
    sa.epoch = 1;
    CHECKF(ckpt_save_net(path, &a, &sa, NULL, 0, &e) == CP_OK, "%s", e.msg);
    unmake(&a, &sa);

    Net r;
    TrainState sr;
    make(&r, &sr);
    CHECKF(ckpt_load_net(path, &r, &sr, &e) == CP_OK, "%s", e.msg);
    CHECK(sr.step == 2 && sr.epoch == 1);
    for (int b = 2; b < 4; b++) step(&r, &sr, b, &ctx);
    net_hash(&r, resumed);
    printf("  uninterrupted %s\n  resumed       %s\n", straight, resumed);
    CHECK(strcmp(straight, resumed) == 0);
    /* a checkpoint is also a model file: the plain loader rejects only the extras */
    CHECK(net_load(&r, path, &e) == CP_EFAIL && strstr(e.msg, "optimizer."));
    unmake(&r, &sr);
    unlink(path);
    rmdir(dir);
}

TEST(test_bad_checkpoints) {
    CpErr e;
    char dir[] = "/tmp/cp_ckpt_XXXXXX", path[128], model[128];
    CP_ASSERT(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ckpt.bin", dir);
    snprintf(model, sizeof model, "%s/model.bin", dir);
    Net a;
    TrainState sa;
    make(&a, &sa);
    net_init_random(&a, 1);
    CHECK(net_save(&a, model, NULL, 0, &e) == CP_OK);
    CHECK(ckpt_load_net(model, &a, &sa, &e) == CP_EFAIL && strstr(e.msg, "not a checkpoint") && strstr(e.msg, model));
    printf("  %s\n", e.msg);
    CHECK(ckpt_save_net(path, &a, &sa, NULL, 0, &e) == CP_OK);
    CHECK(truncate(path, 1000) == 0);
    CHECK(ckpt_load_net(path, &a, &sa, &e) == CP_EFAIL && strstr(e.msg, path));
    printf("  %s\n", e.msg);
    unmake(&a, &sa);
    unlink(path), unlink(model);
    rmdir(dir);
}

TEST_MAIN(T(test_resume_equals_uninterrupted), T(test_bad_checkpoints))
