/* backend_cpu_only.c - the other half of test_ctx_cuda_plumbing
 * (emu_selftest.cu): a program linked against libcellpose.a alone, without
 * the CUDA library, reports the CUDA backend as unavailable (the weak
 * cp_cuda_ctx_free in core/ctx.c is NULL) and cp_ctx_free still works.
 * Built with cc by tests/cuda_emu.sh. */
#include "ctx.h"
#include "harness.h"

TEST(test_cuda_unavailable_without_library) {
    CHECKF(cp_backend_available(CP_BACKEND_CPU) == 1, "CPU backend not available");
    CHECKF(cp_backend_available(CP_BACKEND_CUDA) == 0, "CUDA reported available without the CUDA library linked");
    CHECKF(cp_backend_available(CP_BACKEND_CUDNN) == 0, "cuDNN reported available");
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 1, 1);
    cp_ctx_workspace(&ctx, 64);
    cp_ctx_free(&ctx);
    CHECK(ctx.workspace == NULL && ctx.dev_workspace == NULL);
}

TEST_MAIN(T(test_cuda_unavailable_without_library))
