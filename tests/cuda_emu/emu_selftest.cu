// emu_selftest.cu - the CUDA emulator's own tests (tests/cuda_emu/cuda_runtime.h),
// built and run by tests/cuda_emu.sh: if the emulator got block/thread indices,
// barriers, launch errors or its memory checks wrong, the byte-equality of
// tests/cuda_ops.cu under it would prove nothing. Each expectation below is
// what the CUDA programming guide specifies, computed on the host here:
//  - every (block, thread) runs once with its own indices, in every order;
//  - __syncthreads() makes all writes before it visible to all threads after
//    it; a thread that returned early does not block the others;
//  - a racy kernel (no barrier between a write and a neighbour's read; two
//    blocks writing one element) gives different bytes in forward and reverse
//    order: the order modes can expose a race;
//  - invalid launch configurations give cudaErrorInvalidConfiguration and run
//    nothing; a divergent barrier, a host pointer passed to a kernel and an
//    out-of-range cudaMemcpy abort with one line naming the problem;
//  - the ctx plumbing: with kernels/ops_cuda.cu linked the CUDA backend is
//    available and cp_ctx_free() releases the ctx's device workspace.
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "kernels/ops_cuda.h" /* and ctx.h, with C linkage */

static const int orders[3] = {EMU_FORWARD, EMU_REVERSE, EMU_SHUFFLE};
static const char *order_names[3] = {"forward", "reverse", "shuffle"};

// ---- kernels ----
// out[global linear thread id] = id + 1, plus the dims each thread saw.
__global__ void k_ids(int *out, int *dims_ok) {
    const int nt = blockDim.x * blockDim.y * blockDim.z;
    const int b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const int t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    out[b * nt + t] += b * nt + t + 1; /* += : a second run of one thread shows */
    if (gridDim.x != 3 || gridDim.y != 2 || gridDim.z != 2 || blockDim.x != 5 || blockDim.y != 3 || blockDim.z != 2)
        dims_ok[0] = 0;
}

// Two barrier rounds through shared memory: y[t] = 2 (x[t-1] + x[t+1]) + x[t+2] (cyclic).
#define BAR_N 64
__global__ void k_barrier(float *y, const float *x) {
    __shared__ float s[BAR_N];
    const int t = threadIdx.x;
    s[t] = x[t];
    __syncthreads();
    float v = s[(t + BAR_N - 1) % BAR_N] + s[(t + 1) % BAR_N];
    __syncthreads(); /* everyone has read s before it is overwritten */
    s[t] = 2.0f * v;
    __syncthreads();
    y[t] = s[t] + x[(t + 2) % BAR_N];
}

// The same first step without the barrier: a race.
__global__ void k_racy(float *y, const float *x) {
    __shared__ float s[BAR_N];
    const int t = threadIdx.x;
    s[t] = x[t];
    y[t] = s[(t + 1) % BAR_N];
}

// Every block writes out[0]: a race between blocks.
__global__ void k_racy_blocks(int *out) {
    if (threadIdx.x == 0) out[0] = (int)blockIdx.x;
}

// Threads >= live return at once; the rest sum through shared memory.
__global__ void k_early_exit(float *out, int live) {
    __shared__ float s[128];
    const int t = threadIdx.x;
    if (t >= live) return;
    s[t] = (float)(t + 1);
    __syncthreads();
    if (t == 0) {
        float acc = 0.0f;
        for (int i = 0; i < live; i++) acc += s[i];
        out[0] = acc;
    }
}

__global__ void k_divergent(float *out) {
    if (threadIdx.x % 2)
        __syncthreads();
    else
        __syncthreads();
    out[threadIdx.x] = 1.0f;
}

__global__ void k_touch(float *out) { out[threadIdx.x] = 1.0f; }

// ---- helpers ----
/* Runs fn in a child process; passes if the child aborts and its stderr
 * holds `needle` (the emulator's one-line message). */
static void expect_abort(TestCase *tc, const char *what, void (*fn)(void), const char *needle) {
    int fd[2];
    CHECKF(pipe(fd) == 0, "pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        fn();
        _exit(0); /* not aborted: the check failed */
    }
    close(fd[1]);
    char msg[1024] = {0};
    size_t got = 0;
    ssize_t r;
    while (got < sizeof msg - 1 && (r = read(fd[0], msg + got, sizeof msg - 1 - got)) > 0) got += (size_t)r;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    char *nl = strchr(msg, '\n');
    if (nl) *nl = 0;
    printf("  %-26s -> %s\n", what, msg[0] ? msg : "(no message)");
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: the child was not aborted (status %d)", what, status);
    CHECKF(strstr(msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, msg, needle);
}

// ---- tests ----
TEST(test_indices_every_thread_once) {
    const int nt = 5 * 3 * 2, n = 3 * 2 * 2 * nt;
    int *d, *dok, h[360], ok;
    CUDA_CHECK(cudaMalloc(&d, sizeof h));
    CUDA_CHECK(cudaMalloc(&dok, sizeof(int)));
    for (int o = 0; o < 3; o++) {
        emu_state.order = orders[o];
        ok = 1;
        CUDA_CHECK(cudaMemset(d, 0, sizeof h));
        CUDA_CHECK(cudaMemcpy(dok, &ok, sizeof ok, cudaMemcpyHostToDevice));
        k_ids<<<dim3(3, 2, 2), dim3(5, 3, 2)>>>(d, dok);
        CUDA_CHECK_LAUNCH();
        CUDA_CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(&ok, dok, sizeof ok, cudaMemcpyDeviceToHost));
        int bad = 0;
        for (int i = 0; i < n; i++) bad += h[i] != i + 1;
        printf("  %-8s %d threads, %d wrong\n", order_names[o], n, bad);
        CHECKF(bad == 0 && ok, "%s: %d of %d threads wrong, dims ok %d", order_names[o], bad, n, ok);
    }
    emu_state.order = -1;
    CUDA_CHECK(cudaFree(d));
    CUDA_CHECK(cudaFree(dok));
}

TEST(test_barrier_orders_writes) {
    float x[BAR_N], y[BAR_N], want[BAR_N], *dx, *dy;
    for (int i = 0; i < BAR_N; i++) x[i] = (float)(i * i % 17) - 3.0f;
    for (int t = 0; t < BAR_N; t++)
        want[t] = 2.0f * (x[(t + BAR_N - 1) % BAR_N] + x[(t + 1) % BAR_N]) + x[(t + 2) % BAR_N];
    CUDA_CHECK(cudaMalloc(&dx, sizeof x));
    CUDA_CHECK(cudaMalloc(&dy, sizeof y));
    CUDA_CHECK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
    for (int o = 0; o < 3; o++) {
        emu_state.order = orders[o];
        k_barrier<<<1, BAR_N>>>(dy, dx);
        CUDA_CHECK_LAUNCH();
        CUDA_CHECK(cudaMemcpy(y, dy, sizeof y, cudaMemcpyDeviceToHost));
        CHECKF(memcmp(y, want, sizeof y) == 0, "%s: two barrier rounds give the wrong values", order_names[o]);
    }
    float *dout, sum;
    CUDA_CHECK(cudaMalloc(&dout, sizeof(float)));
    for (int o = 0; o < 3; o++) {
        emu_state.order = orders[o];
        k_early_exit<<<1, 128>>>(dout, 37);
        CUDA_CHECK_LAUNCH();
        CUDA_CHECK(cudaMemcpy(&sum, dout, sizeof sum, cudaMemcpyDeviceToHost));
        CHECKF(sum == 37.0f * 38.0f / 2.0f, "%s: early exit: sum %g", order_names[o], sum);
    }
    emu_state.order = -1;
    CUDA_CHECK(cudaFree(dx));
    CUDA_CHECK(cudaFree(dy));
    CUDA_CHECK(cudaFree(dout));
}

TEST(test_orders_expose_races) {
    float x[BAR_N], p[BAR_N], y[3][BAR_N], *dx, *dp, *dy;
    for (int i = 0; i < BAR_N; i++) x[i] = (float)(i + 1), p[i] = -1.0f;
    CUDA_CHECK(cudaMalloc(&dx, sizeof x));
    CUDA_CHECK(cudaMalloc(&dp, sizeof x));
    CUDA_CHECK(cudaMalloc(&dy, sizeof x));
    CUDA_CHECK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(dp, p, sizeof x, cudaMemcpyHostToDevice));
    int *dw, w[3];
    CUDA_CHECK(cudaMalloc(&dw, sizeof(int)));
    for (int o = 0; o < 3; o++) {
        emu_state.order = orders[o];
        k_racy<<<1, BAR_N>>>(dy, dp); /* shared memory := -1, then the measured run */
        k_racy<<<1, BAR_N>>>(dy, dx);
        CUDA_CHECK_LAUNCH();
        CUDA_CHECK(cudaMemcpy(y[o], dy, sizeof x, cudaMemcpyDeviceToHost));
        k_racy_blocks<<<7, 32>>>(dw);
        CUDA_CHECK_LAUNCH();
        CUDA_CHECK(cudaMemcpy(&w[o], dw, sizeof(int), cudaMemcpyDeviceToHost));
    }
    emu_state.order = -1;
    int differ = 0;
    for (int i = 0; i < BAR_N; i++) differ += y[0][i] != y[1][i];
    printf("  racy shared read: %d of %d values differ forward vs reverse; racy block writes (last writer): %d %d %d\n",
           differ, BAR_N, w[0], w[1], w[2]);
    CHECKF(differ > 0, "the barrier-less kernel gave the same bytes in forward and reverse order");
    CHECKF(w[0] != w[1], "two blocks writing one element gave the same value in forward and reverse order");
    CUDA_CHECK(cudaFree(dx));
    CUDA_CHECK(cudaFree(dp));
    CUDA_CHECK(cudaFree(dy));
    CUDA_CHECK(cudaFree(dw));
}

TEST(test_invalid_launches) {
    int *d, h = 0;
    CUDA_CHECK(cudaMalloc(&d, 1024 * sizeof(float)));
    const dim3 grids[4] = {dim3(0), dim3(1), dim3(1, 65536), dim3(1)};
    const dim3 blocks[4] = {dim3(32), dim3(1025), dim3(32), dim3(0)};
    for (int k = 0; k < 4; k++) {
        CUDA_CHECK(cudaMemset(d, 0, sizeof(float)));
        k_touch<<<grids[k], blocks[k]>>>((float *)d);
        cudaError_t e = cudaGetLastError();
        CUDA_CHECK(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost));
        CHECKF(e == cudaErrorInvalidConfiguration && h == 0, "config %d: error %d, ran %d", k, (int)e, h != 0);
        CHECKF(cudaGetLastError() == cudaSuccess, "config %d: the error is not cleared", k);
    }
    k_touch<<<1, 1024>>>((float *)d);
    CHECKF(cudaGetLastError() == cudaSuccess, "1024 threads refused");
    CUDA_CHECK(cudaFree(d));
}

static void run_divergent(void) {
    float *d = NULL;
    CUDA_CHECK(cudaMalloc(&d, 64 * sizeof(float)));
    k_divergent<<<1, 64>>>(d);
}
static void run_host_pointer(void) {
    static float host[64];
    k_touch<<<1, 64>>>(host);
}
static void run_copy_past_end(void) {
    float *d = NULL, h[65] = {0};
    CUDA_CHECK(cudaMalloc(&d, 64 * sizeof(float)));
    volatile size_t n = sizeof h; /* opaque: g++ would refuse the overflow it is meant to test */
    cudaMemcpy(d, h, n, cudaMemcpyHostToDevice);
}
static void run_wrong_kind(void) {
    float *d = NULL, h[64] = {0};
    CUDA_CHECK(cudaMalloc(&d, sizeof h));
    cudaMemcpy(h, d, sizeof h, cudaMemcpyHostToDevice); /* arguments swapped */
}
TEST(test_misuse_aborts) {
    expect_abort(tc, "divergent __syncthreads", run_divergent, "different __syncthreads");
    expect_abort(tc, "host pointer to a kernel", run_host_pointer, "is not device memory");
    expect_abort(tc, "cudaMemcpy past the end", run_copy_past_end, "not inside one cudaMalloc block");
    expect_abort(tc, "cudaMemcpy wrong kind", run_wrong_kind, "not inside one cudaMalloc block");
}

TEST(test_ctx_cuda_plumbing) {
    CHECKF(strcmp(cp_ops_cuda()->backend, "cuda") == 0, "the CUDA op table is not linked");
    CHECKF(cp_backend_available(CP_BACKEND_CUDA) == 1, "CUDA backend linked but not available");
    CHECKF(cp_backend_available(CP_BACKEND_CPU) == 1, "CPU backend not available");
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CUDA, 1, 7);
    CHECKF(ctx.stream == NULL && ctx.dev_workspace == NULL && ctx.dev_workspace_bytes == 0,
           "cp_ctx_init leaves device fields set");
    CUDA_CHECK(cudaMalloc(&ctx.dev_workspace, 1000)); /* as cp_cuda_workspace_reserve does */
    ctx.dev_workspace_bytes = 1000;
    void *w = ctx.dev_workspace;
    cp_ctx_free(&ctx);
    CHECKF(ctx.dev_workspace == NULL && ctx.dev_workspace_bytes == 0, "cp_ctx_free left the device workspace set");
    CHECKF(!emu_is_device(w), "cp_ctx_free did not cudaFree the device workspace");
}

TEST_MAIN(T(test_indices_every_thread_once), T(test_barrier_orders_writes), T(test_orders_expose_races),
          T(test_invalid_launches), T(test_misuse_aborts), T(test_ctx_cuda_plumbing))
