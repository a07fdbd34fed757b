/* ctx.c - context setup, backend names, which backends are linked. */
#include "ctx.h"

#include <string.h>
#include <unistd.h>

/* Defined in kernels/ops_cuda.cu, the object that holds the CUDA op table:
 * frees a ctx's device workspace. Weak, so that a program without the CUDA
 * library links and sees NULL here; its address says whether CUDA is linked. */
void cp_cuda_ctx_free(CpCtx *ctx) __attribute__((weak));

void cp_ctx_init(CpCtx *ctx, CpBackend backend, int threads, uint32_t seed) {
    memset(ctx, 0, sizeof *ctx);
    ctx->backend = backend;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    ctx->threads = threads;
    ctx->seed = seed;
    ctx->max_pixels = CP_DEFAULT_MAX_PIXELS;
}

void *cp_ctx_workspace(CpCtx *ctx, size_t bytes) {
    if (bytes > ctx->workspace_bytes) {
        cp_free(ctx->workspace);
        ctx->workspace = cp_malloc(bytes);
        ctx->workspace_bytes = bytes;
    }
    return ctx->workspace;
}

void cp_ctx_free(CpCtx *ctx) {
    if (cp_cuda_ctx_free) cp_cuda_ctx_free(ctx);
    cp_free(ctx->workspace);
    ctx->workspace = NULL;
    ctx->workspace_bytes = 0;
}

static const char *const backend_names[] = {"cpu", "cuda", "cudnn"};

const char *cp_backend_name(CpBackend b) {
    return (unsigned)b < 3 ? backend_names[b] : "unknown";
}

int cp_backend_parse(const char *s, CpBackend *out, CpErr *e) {
    for (int i = 0; i < 3; i++)
        if (strcmp(s, backend_names[i]) == 0) {
            *out = (CpBackend)i;
            return CP_OK;
        }
    return cp_fail(e, "unknown backend '%s' (choose cpu, cuda or cudnn)", s);
}

int cp_backend_available(CpBackend b) {
    if (b == CP_BACKEND_CPU) return 1;
    if (b == CP_BACKEND_CUDA) return cp_cuda_ctx_free != NULL;
    return 0; /* cudnn: no vendor backend is built yet */
}
