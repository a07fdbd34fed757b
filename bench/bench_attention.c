/* bench_attention.c - SAM global attention with decomposed relative position
 * as Cellpose-SAM runs it, forward and backward, printed as
 * `BENCH <key> <ms>` (bench/run_bench.sh; the PyTorch side is
 * bench/peer_attention.py with the same keys and the same composition).
 *
 * Shapes: one 256 x 256 tile at patch 8 -> a 32 x 32 token grid (T = 1024),
 * N = 1, head dim 64, NH = 12 (ViT-B) and 16 (ViT-L). The raw rel-pos tables
 * have 27 rows (windowed-block parameters) and are resampled to 63 in every
 * call, as in Cellpose:
 *   fwd = interp1d(relh) + interp1d(relw) + attention_forward
 *   bwd = attention_backward + interp1d_backward(relh) + interp1d_backward(relw)
 * Gradients accumulate across repetitions (ops.h convention): buffers are
 * zeroed once; the time per call is unaffected. The backward workspace is
 * sized once, outside the timed calls. */
#include <stdio.h>
#include <string.h>

#include "bench_util.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "philox.h"

static float *make(int64_t n, uint32_t stream, float lo, float hi) {
    float *p = cp_malloc(sizeof(float) * (size_t)n);
    CpRngKey key = cp_rng_key(7, stream);
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * cp_u01(cp_rng_block(key, 0, 0, (uint32_t)i, 0).v[0]);
    return p;
}

static void bench_attention(int N, int S, int NH, int HD, int L, CpCtx *ctx) {
    const int64_t T = (int64_t)S * S, D = (int64_t)NH * HD, R = 2 * S - 1;
    float *qkv = make(N * T * 3 * D, 1, -1.0f, 1.0f), *raw_h = make(L * HD, 2, -0.1f, 0.1f);
    float *raw_w = make(L * HD, 3, -0.1f, 0.1f), *tab_h = make(R * HD, 4, 0, 0), *tab_w = make(R * HD, 5, 0, 0);
    float *out = make(N * T * D, 6, 0, 0), *att = make((int64_t)N * NH * T * T, 7, 0, 0);
    float *dout = make(N * T * D, 8, -1.0f, 1.0f), *dqkv = make(N * T * 3 * D, 9, 0, 0);
    float *dtab_h = make(R * HD, 10, 0, 0), *dtab_w = make(R * HD, 11, 0, 0);
    float *draw_h = make(L * HD, 12, 0, 0), *draw_w = make(L * HD, 13, 0, 0);
    cp_ctx_workspace(ctx, attention_backward_workspace_bytes(S, S, HD));
    char key[96];
    snprintf(key, sizeof key, "attention_fwd_n%d_%dx%d_h%d_d%d", N, S, S, NH, HD);
    BENCH_RUN(key, 5, {
        interp1d_forward_cpu(tab_h, raw_h, L, (int)R, HD, ctx);
        interp1d_forward_cpu(tab_w, raw_w, L, (int)R, HD, ctx);
        attention_forward_cpu(out, att, qkv, tab_h, tab_w, N, S, S, NH, HD, ctx);
    });
    snprintf(key, sizeof key, "attention_bwd_n%d_%dx%d_h%d_d%d", N, S, S, NH, HD);
    BENCH_RUN(key, 5, {
        attention_backward_cpu(dqkv, dtab_h, dtab_w, dout, att, qkv, tab_h, tab_w, N, S, S, NH, HD, ctx);
        interp1d_backward_cpu(draw_h, dtab_h, L, (int)R, HD, ctx);
        interp1d_backward_cpu(draw_w, dtab_w, L, (int)R, HD, ctx);
    });
    float *all[] = {qkv, raw_h, raw_w, tab_h, tab_w, out, att, dout, dqkv, dtab_h, dtab_w, draw_h, draw_w};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cp_free(all[i]);
}

int main(int argc, char **argv) {
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, bench_threads(argc, argv), 0);
    bench_attention(1, 32, 12, 64, 27, &ctx);
    bench_attention(1, 32, 16, 64, 27, &ctx);
    cp_ctx_free(&ctx);
    return 0;
}
