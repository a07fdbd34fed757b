/* ctx.h - the context passed explicitly to every op, net and program step.
 *
 * No hidden globals (STYLE.md "Memory"): the backend, the CPU thread count,
 * the shared scratch workspace, the RNG key, the input size limits and the
 * CUDA backend's stream and device workspace all travel in this struct.
 * The device fields are plain pointers (no CUDA headers here); only
 * kernels/ops_cuda.cu allocates or reads them (cp_cuda_workspace_reserve). */
#ifndef CP_CTX_H
#define CP_CTX_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum {
    CP_BACKEND_CPU = 0, /* deterministic reference */
    CP_BACKEND_CUDA,    /* deterministic CUDA, bitwise equal to CPU */
    CP_BACKEND_CUDNN,   /* vendor: cuDNN/cuBLAS, fast, not deterministic */
} CpBackend;

/* Default refusal limit for images: 2^28 pixels (16384 x 16384). */
#define CP_DEFAULT_MAX_PIXELS ((int64_t)1 << 28)

typedef struct {
    CpBackend backend;
    int threads;              /* CPU worker threads (>= 1); results never depend on it */
    uint32_t seed;            /* Philox key word 0 (DESIGN.md rule 6) */
    void *workspace;          /* shared scratch, sized up front, owned by the ctx */
    size_t workspace_bytes;
    int64_t max_pixels;       /* images with more pixels are refused */
    /* CUDA backend only (kernels/ops_cuda.h); NULL / 0 on the CPU */
    void *stream;             /* the cudaStream_t every CUDA op launches on; NULL = default stream */
    void *dev_workspace;      /* device scratch, reserved up front, owned by the ctx */
    size_t dev_workspace_bytes;
} CpCtx;

/* threads <= 0 means "all online CPUs". */
void cp_ctx_init(CpCtx *ctx, CpBackend backend, int threads, uint32_t seed);
/* Grow the workspace to at least `bytes` (done before forward/backward, never inside). */
void *cp_ctx_workspace(CpCtx *ctx, size_t bytes);
/* Frees the workspace, and the device workspace when the CUDA backend is linked.
 * The stream is the caller's: not destroyed. */
void cp_ctx_free(CpCtx *ctx);

const char *cp_backend_name(CpBackend b);
/* Parse "cpu" / "cuda" / "cudnn"; fails with a line listing the choices. */
int cp_backend_parse(const char *s, CpBackend *out, CpErr *e);
/* Is the backend linked into this binary? cpu: always; cuda: when the program
 * links kernels/ops_cuda.cu (libcellpose_cuda.a); cudnn: not yet. Says
 * nothing about a GPU being present (cuda_check.h cp_cuda_available). */
int cp_backend_available(CpBackend b);

#endif
