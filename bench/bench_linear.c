/* bench_linear.c - the GEMM-like ops at ViT (Cellpose-SAM) shapes: Linear
 * forward and backward (dinp + dw + db) with M = 1024 tokens (one 32x32-token
 * image), the patch embedding (3x256x256 image, P = 8, 1024 channels) and
 * the 192 -> 3 x 8 x 8 readout. Peer: bench/peer_linear.py (same keys).
 *
 *   build/bench/bench_linear [--threads N]     prints BENCH <key> <ms> */
#include <stdio.h>

#include "bench_util.h"
#include "kernels/ops.h"
#include "philox.h"

static float *rand_buf(int64_t n, uint32_t stream, float scale) {
    float *p = cp_malloc(sizeof(float) * (size_t)n);
    CpRngKey key = cp_rng_key(7u, stream);
    for (int64_t i = 0; i < n; i++) p[i] = scale * (2.0f * cp_u01(cp_rng_block(key, 0, 0, (uint32_t)i, 0).v[0]) - 1.0f);
    return p;
}

/* Linear IN -> OUT on M rows: forward, then backward with all three gradients. */
static void bench_linear(const CpCtx *ctx, int64_t M, int IN, int OUT) {
    float *inp = rand_buf(M * IN, 1, 1.0f), *w = rand_buf((int64_t)OUT * IN, 2, 0.03f), *b = rand_buf(OUT, 3, 1.0f);
    float *out = rand_buf(M * OUT, 4, 1.0f), *dout = rand_buf(M * OUT, 5, 1.0f);
    float *dinp = rand_buf(M * IN, 6, 0.0f), *dw = rand_buf((int64_t)OUT * IN, 7, 0.0f), *db = rand_buf(OUT, 8, 0.0f);
    char key[96];
    for (int pass = 0; pass < 2; pass++) {
        /* pass 1 repeats the timings under the keys of the peer's oneDNN rows
         * (torch's F.linear here runs a generic reference BLAS) */
        const char *sfx = pass ? "_vs_onednn" : "";
        snprintf(key, sizeof key, "linear_fwd_M%lld_%dx%d%s", (long long)M, IN, OUT, sfx);
        BENCH_RUN(key, 5, linear_forward_cpu(out, inp, w, b, M, IN, OUT, ctx));
        snprintf(key, sizeof key, "linear_bwd_M%lld_%dx%d%s", (long long)M, IN, OUT, sfx);
        BENCH_RUN(key, 5, linear_backward_cpu(dinp, dw, db, dout, inp, w, M, IN, OUT, ctx));
    }
    float *p[] = {inp, w, b, out, dout, dinp, dw, db};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) cp_free(p[i]);
}

/* Patch embedding: forward, backward of the parameters only (the image needs no gradient). */
static void bench_patch_embed(const CpCtx *ctx, int N, int C, int H, int W, int OC, int P) {
    int64_t T = (int64_t)(H / P) * (W / P), nw = (int64_t)OC * C * P * P;
    float *inp = rand_buf((int64_t)N * C * H * W, 11, 1.0f), *w = rand_buf(nw, 12, 0.05f), *b = rand_buf(OC, 13, 1.0f);
    float *out = rand_buf(N * T * OC, 14, 1.0f), *dout = rand_buf(N * T * OC, 15, 1.0f);
    float *dw = rand_buf(nw, 16, 0.0f), *db = rand_buf(OC, 17, 0.0f);
    char key[96];
    snprintf(key, sizeof key, "patch_embed_fwd_N%d_C%d_%dx%d_P%d_OC%d", N, C, H, W, P, OC);
    BENCH_RUN(key, 5, patch_embed_forward_cpu(out, inp, w, b, N, C, H, W, OC, P, ctx));
    snprintf(key, sizeof key, "patch_embed_bwd_wb_N%d_C%d_%dx%d_P%d_OC%d", N, C, H, W, P, OC);
    BENCH_RUN(key, 5, patch_embed_backward_cpu(NULL, dw, db, dout, inp, w, N, C, H, W, OC, P, ctx));
    float *p[] = {inp, w, b, out, dout, dw, db};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) cp_free(p[i]);
}

/* Readout conv-transpose: forward, backward with all three gradients. */
static void bench_readout(const CpCtx *ctx, int N, int C, int H, int W, int OC, int P) {
    int64_t ni = (int64_t)N * C * H * W, nw = (int64_t)C * OC * P * P, no = (int64_t)N * OC * H * P * W * P;
    float *inp = rand_buf(ni, 21, 1.0f), *w = rand_buf(nw, 22, 0.05f), *b = rand_buf(OC, 23, 1.0f);
    float *out = rand_buf(no, 24, 1.0f), *dout = rand_buf(no, 25, 1.0f);
    float *dinp = rand_buf(ni, 26, 0.0f), *dw = rand_buf(nw, 27, 0.0f), *db = rand_buf(OC, 28, 0.0f);
    char key[96];
    snprintf(key, sizeof key, "readout_fwd_N%d_C%d_%dx%d_P%d_OC%d", N, C, H, W, P, OC);
    BENCH_RUN(key, 5, conv_transpose_patch_forward_cpu(out, inp, w, b, N, C, H, W, OC, P, ctx));
    snprintf(key, sizeof key, "readout_bwd_N%d_C%d_%dx%d_P%d_OC%d", N, C, H, W, P, OC);
    BENCH_RUN(key, 5, conv_transpose_patch_backward_cpu(dinp, dw, db, dout, inp, w, N, C, H, W, OC, P, ctx));
    float *p[] = {inp, w, b, out, dout, dinp, dw, db};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) cp_free(p[i]);
}

int main(int argc, char **argv) {
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, bench_threads(argc, argv), 0);
    bench_linear(&ctx, 1024, 768, 2304);  /* ViT-B qkv */
    bench_linear(&ctx, 1024, 1024, 3072); /* ViT-L qkv */
    bench_linear(&ctx, 1024, 1024, 4096); /* ViT-L MLP up */
    bench_linear(&ctx, 1024, 4096, 1024); /* ViT-L MLP down */
    bench_patch_embed(&ctx, 1, 3, 256, 256, 1024, 8);
    bench_readout(&ctx, 1, 192, 32, 32, 3, 8);
    cp_ctx_free(&ctx);
    return 0;
}
