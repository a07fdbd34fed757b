/* bench_cpnet.c - one CPnet training step (forward in training mode, the
 * Cellpose loss, backward, AdamW) and one eval forward, at Cellpose's
 * training shape: batch 8, 224 x 224, nbase [2,32,64,128,256] (cyto). Peer:
 * bench/peer_cpnet.py runs the real Cellpose CPnet the same way.
 * Prints BENCH lines (bench/run_bench.sh) and images/s. */
#include "bench_util.h"
#include "cpnet.h"
#include "tests/optest.h"

int main(int argc, char **argv) {
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, bench_threads(argc, argv), 0);
    CPnetConfig c = {.nbase = {2, 32, 64, 128, 256}, .nlev = 4, .nout = 3, .k = 3, .diam_mean = 30.0f};
    CPnet net;
    CpErr e;
    const int N = 8, H = 224, W = 224;
    if (cpnet_create(&net, &c, cp_ops_cpu(), &e) != CP_OK || cpnet_plan(&net, N, H, W, 1, &e) != CP_OK) {
        fprintf(stderr, "bench_cpnet: %s\n", e.msg);
        return 1;
    }
    cpnet_init_random(&net, 1);
    cpnet_memory_report(&net, stderr);
    int64_t nx = (int64_t)N * 2 * H * W, ny = (int64_t)N * 3 * H * W;
    float *x = alloc_f32(nx), *lbl = alloc_f32(ny), *dy = alloc_f32(ny);
    float *m = cp_calloc((size_t)net.nparams, sizeof(float)), *v = cp_calloc((size_t)net.nparams, sizeof(float));
    fill_uniform(x, nx, 1, -0.5f, 1.5f);
    fill_uniform(lbl, ny, 2, -1.0f, 1.0f);
    int64_t step = 0;
#define TRAIN_STEP                                                                                           \
    {                                                                                                        \
        float loss_;                                                                                         \
        cpnet_loss_backward(&net, x, lbl, dy, &loss_, &ctx, &e);                                             \
        adamw_step_cpu(net.params, m, v, net.grads, net.nparams, 0.005, 0.9, 0.999, 1e-8, 1e-5, ++step, &ctx); \
    }
    BENCH_RUN("cpnet_train_step_n8_224", 3, TRAIN_STEP);
    double t0 = cp_time_sec();
    TRAIN_STEP;
    TRAIN_STEP;
    fprintf(stderr, "cpnet training: %.2f images/s (batch 8, 224x224, %d threads, 2 steps after warm-up)\n",
            2.0 * N / (cp_time_sec() - t0), ctx.threads);
    BENCH_RUN("cpnet_eval_fwd_n8_224", 3, cpnet_forward(&net, x, 0, &ctx, &e));
    cp_free(x), cp_free(lbl), cp_free(dy), cp_free(m), cp_free(v);
    cpnet_free(&net);
    return 0;
}
