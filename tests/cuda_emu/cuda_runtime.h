/* cuda_runtime.h (tests/cuda_emu) - a host emulation of the part of the CUDA
 * runtime that cellpose.c uses, so that kernels/<op>.cu and tests/cuda_ops.cu
 * build with g++ and run on the CPU in every CI, without nvcc or a GPU.
 * tests/cuda_emu.sh puts this folder first on the include path and rewrites
 * each launch `k<<<grid, block, shmem, stream>>>(args)` into
 * `emu_launch("k", k, emu_cfg(grid, block, shmem, stream), args)`.
 *
 * How a launch runs: the blocks of the grid one after another; the threads of
 * a block are fibers (ucontext) on the one host thread, each on its own stack.
 * A fiber runs until it calls __syncthreads() or returns. When every live
 * thread of the block has done one or the other (a "phase"), the waiting ones
 * are resumed for the next phase. A thread that has returned no longer counts
 * at barriers (as on the GPU). __shared__ is a function-local static: one copy,
 * owned by each block in turn. Built-ins (threadIdx, blockIdx, blockDim,
 * gridDim) are globals that the scheduler sets before it resumes a fiber.
 *
 * What it checks (tests/cuda_ops.cu compares every CUDA op to its CPU twin,
 * byte for byte, on odd shapes):
 *  - indexing: which thread computes which output, grid-stride loops, tails
 *    and guards (an output no thread writes keeps the test's poison NaN);
 *  - each output's summation order and the chunk-plan combine order: the
 *    kernels' sums run in exactly the order their code states, in IEEE
 *    float/double without contraction (-ffp-contract=off), the arithmetic of
 *    the CPU reference, so any other order shows as different bytes;
 *  - block and barrier logic: __syncthreads() waits for every live thread of
 *    the block, and all waiting threads must be at the same __syncthreads()
 *    (a divergent barrier, undefined on the GPU, aborts here with the kernel
 *    and both source lines);
 *  - races, partly: CP_EMU_ORDER=reverse runs the blocks of each grid and the
 *    threads of each phase in reverse order, CP_EMU_ORDER=shuffle in a fixed
 *    scrambled order (default forward). A result that depends on the order of
 *    threads between two barriers, or of blocks in a grid (two writers of one
 *    element), is a race on the GPU and here usually gives other bytes in one
 *    of the orders;
 *  - launch configurations the GPU refuses (an empty grid or block, more than
 *    1024 threads per block, grid.y or grid.z over 65535): the launch does not
 *    run and cudaGetLastError() returns cudaErrorInvalidConfiguration, so
 *    CUDA_CHECK_LAUNCH() aborts as it would on the GPU;
 *  - memory roles: every pointer argument of a launch must be NULL or point
 *    into a cudaMalloc block; cudaMemcpy / cudaMemsetAsync ranges must lie
 *    inside one cudaMalloc block on the device side and outside all of them on
 *    the host side; cudaFree takes only cudaMalloc pointers;
 *  - out-of-bounds accesses, with CP_EMU_SAN=1 (tests/cuda_emu.sh builds the
 *    kernels with ASan+UBSan): a cudaMalloc block is exactly its size, so a
 *    kernel reading or writing past it, or past a __shared__ array, stops.
 *
 * What it cannot check:
 *  - the GPU's arithmetic and compiler: nvcc's code, its honouring of
 *    --fmad=false -prec-div=true -prec-sqrt=true -ftz=false, the hardware's
 *    rounding (tests/cuda_gate.sh reads the PTX/SASS; tests/cuda_ops.cu on a
 *    GPU compares the real bits);
 *  - the memory model: no warps, no lockstep, no caches, no visibility delays;
 *    a missing __syncthreads() between a write and another thread's read
 *    shows only when one of the orders runs the reader first; a missing
 *    __threadfence or volatile cannot show;
 *  - races the serial schedule hides: an order-dependent result that happens
 *    to be equal in forward, reverse and shuffled order; stale shared memory
 *    (a block reading __shared__ it never wrote sees the previous block's
 *    values here, garbage on the GPU);
 *  - host code that dereferences a device pointer (here both are host memory);
 *  - speed, occupancy, register and shared-memory limits, __launch_bounds__
 *    (ignored), dynamic shared memory (aborts), streams (all run in order).
 * Only the subset of CUDA this project uses exists: a kernel that uses warp
 * intrinsics, atomics or events does not compile here.
 *
 * CP_EMU_STATS=1 prints launches, blocks, threads and barrier phases at exit
 * (stderr). The emulator is single-threaded: launch only from one thread. */
#ifndef CP_CUDA_EMU_RUNTIME_H
#define CP_CUDA_EMU_RUNTIME_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <map>
#include <type_traits>
#include <vector>

// ---- keywords and built-ins ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __syncthreads() emu_syncthreads(__FILE__, __LINE__)

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

// ---- runtime types (the values of the real enum) ----
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
} cudaError_t;
typedef struct CUstream_st *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount;
};

// ---- emulator state ----
enum { EMU_READY, EMU_WAIT, EMU_DONE };
enum { EMU_FORWARD, EMU_REVERSE, EMU_SHUFFLE };
#define EMU_MAX_THREADS 1024
#define EMU_STACK_BYTES ((size_t)256 << 10) /* per fiber, plus one guard page */

typedef struct {
    ucontext_t uc;
    char *stack; /* mmap: guard page, then EMU_STACK_BYTES */
    int state;
    const char *file; /* the __syncthreads() it waits at */
    int line;
} EmuFiber;

typedef struct {
    std::map<uintptr_t, size_t> allocs; /* cudaMalloc blocks: start -> bytes */
    cudaError_t last_error = cudaSuccess;
    int order = -1; /* EMU_FORWARD / EMU_REVERSE / EMU_SHUFFLE, -1 = not read yet */
    int stats_read = 0; /* CP_EMU_STATS looked at */
    EmuFiber fibers[EMU_MAX_THREADS] = {};
    ucontext_t sched = {};
    int in_kernel = 0;
    unsigned current = 0; /* the running fiber */
    const char *kernel = NULL;
    void (*body)(void *) = NULL; /* runs the kernel with its arguments */
    void *body_arg = NULL;
    uint64_t launches = 0, blocks = 0, threads = 0, phases = 0;
} EmuState;
inline EmuState emu_state;

[[noreturn]] inline void emu_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("cuda emu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

inline void emu_print_stats(void) {
    EmuState *s = &emu_state;
    fprintf(stderr, "cuda emu: %llu launches, %llu blocks, %llu threads, %llu barrier phases\n",
            (unsigned long long)s->launches, (unsigned long long)s->blocks, (unsigned long long)s->threads,
            (unsigned long long)s->phases);
}

inline int emu_order(void) {
    EmuState *s = &emu_state;
    if (s->order < 0) {
        const char *o = getenv("CP_EMU_ORDER");
        if (!o || !*o || strcmp(o, "forward") == 0) s->order = EMU_FORWARD;
        else if (strcmp(o, "reverse") == 0) s->order = EMU_REVERSE;
        else if (strcmp(o, "shuffle") == 0) s->order = EMU_SHUFFLE;
        else emu_fail("CP_EMU_ORDER=%s: choose forward, reverse or shuffle", o);
    }
    if (!s->stats_read) {
        const char *st = getenv("CP_EMU_STATS");
        if (st && *st && *st != '0') atexit(emu_print_stats);
        s->stats_read = 1;
    }
    return s->order;
}

// ---- device memory: host memory, every block registered ----
/* The cudaMalloc block holding [p, p + n), or NULL. n = 0 asks for p itself
 * (one past the end allowed, as pointer arithmetic allows). */
inline const std::pair<const uintptr_t, size_t> *emu_block_of(const void *p, size_t n) {
    const std::map<uintptr_t, size_t> &a = emu_state.allocs;
    uintptr_t q = (uintptr_t)p;
    auto it = a.upper_bound(q);
    if (it == a.begin()) return NULL;
    --it;
    if (q - it->first + n <= it->second) return &*it;
    return NULL;
}
inline int emu_is_device(const void *p) { return emu_block_of(p, 0) != NULL; }

template <typename T> inline cudaError_t cudaMalloc(T **p, size_t n) {
    /* cudaMalloc's 256-byte alignment, but exactly n bytes: under
     * CP_EMU_SAN=1 a read past the end is caught even where the GPU's
     * allocation granularity would hide it */
    void *m = NULL;
    if (posix_memalign(&m, 256, n ? n : 1) != 0) return cudaErrorMemoryAllocation;
    emu_state.allocs[(uintptr_t)m] = n;
    *p = (T *)m;
    return cudaSuccess;
}
inline cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    auto it = emu_state.allocs.find((uintptr_t)p);
    if (it == emu_state.allocs.end()) emu_fail("cudaFree(%p): not a cudaMalloc pointer", p);
    emu_state.allocs.erase(it);
    free(p);
    return cudaSuccess;
}
/* The device side of a copy must lie in one block, the host side in none. */
inline void emu_check_range(const char *what, const void *p, size_t n, int device) {
    if (n == 0) return;
    if (device && !emu_block_of(p, n))
        emu_fail("%s: device range [%p, +%zu) is not inside one cudaMalloc block", what, p, n);
    if (!device && (emu_is_device(p) || emu_is_device((const char *)p + n - 1)))
        emu_fail("%s: host range [%p, +%zu) points into device memory (wrong cudaMemcpyKind?)", what, p, n);
}
inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k) {
    if (k != cudaMemcpyHostToDevice && k != cudaMemcpyDeviceToHost && k != cudaMemcpyDeviceToDevice)
        emu_fail("cudaMemcpy: kind %d not emulated", (int)k);
    emu_check_range("cudaMemcpy destination", d, n, k != cudaMemcpyDeviceToHost);
    emu_check_range("cudaMemcpy source", s, n, k != cudaMemcpyHostToDevice);
    memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t = 0) {
    return cudaMemcpy(d, s, n, k);
}
inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t = 0) {
    emu_check_range("cudaMemsetAsync", d, n, 1);
    memset(d, v, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemset(void *d, int v, size_t n) { return cudaMemsetAsync(d, v, n); }

// ---- device queries and errors ----
inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    }
    return "unknown error";
}
inline cudaError_t cudaGetLastError(void) {
    cudaError_t e = emu_state.last_error;
    emu_state.last_error = cudaSuccess;
    return e;
}
inline cudaError_t cudaPeekAtLastError(void) { return emu_state.last_error; }
inline cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int *c) {
    *c = 1;
    return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "host emulation (tests/cuda_emu, order %s)",
             emu_order() == EMU_FORWARD ? "forward" : emu_order() == EMU_REVERSE ? "reverse" : "shuffle");
    p->major = 9, p->minor = 0, p->multiProcessorCount = 1;
    return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int *v) {
    *v = 0;
    return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int *v) {
    *v = 0;
    return cudaSuccess;
}

// ---- the scheduler ----
inline uint64_t emu_gcd(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t r = a % b;
        a = b, b = r;
    }
    return a;
}

/* Position k of n in the run order; `salt` varies the shuffle per phase. */
inline uint64_t emu_perm(uint64_t k, uint64_t n, uint64_t salt) {
    switch (emu_order()) {
    case EMU_FORWARD: return k;
    case EMU_REVERSE: return n - 1 - k;
    }
    /* shuffle: k -> (a k + c) mod n, a bijection as gcd(a, n) = 1; a near
     * 0.618 n scatters neighbours, c shifts per salt */
    uint64_t a = (n * 0x9E3779B9ull >> 32) | 1, c = (salt * 0x632BE59BD9B4E019ull >> 17) % n;
    while (emu_gcd(a, n) != 1) a++;
    uint64_t r = (uint64_t)((unsigned __int128)a * k % n) + c;
    return r >= n ? r - n : r;
}

inline void emu_fiber_main(void) {
    EmuState *s = &emu_state;
    s->body(s->body_arg);
    s->fibers[s->current].state = EMU_DONE; /* returning resumes the scheduler (uc_link) */
}

inline void emu_syncthreads(const char *file, int line) {
    EmuState *s = &emu_state;
    EmuFiber *f = &s->fibers[s->current];
    if (!s->in_kernel) emu_fail("__syncthreads() outside a kernel (%s:%d)", file, line);
    f->state = EMU_WAIT, f->file = file, f->line = line;
    if (swapcontext(&f->uc, &s->sched) != 0) emu_fail("swapcontext failed");
}

inline void emu_set_thread(unsigned t, dim3 block) {
    threadIdx = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
}

/* Sets fiber f to start at emu_fiber_main on its own stack (mapped once, reused). */
__attribute__((noinline)) inline void emu_fiber_init(EmuFiber *f) {
    if (!f->stack) {
        f->stack = (char *)mmap(NULL, EMU_STACK_BYTES + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (f->stack == MAP_FAILED || mprotect(f->stack, 4096, PROT_NONE) != 0) emu_fail("cannot map a fiber stack");
    }
    if (getcontext(&f->uc) != 0) emu_fail("getcontext failed");
    f->uc.uc_stack.ss_sp = f->stack + 4096;
    f->uc.uc_stack.ss_size = EMU_STACK_BYTES;
    f->uc.uc_link = &emu_state.sched;
    makecontext(&f->uc, emu_fiber_main, 0);
    f->state = EMU_READY;
}

/* Runs one block: phases until every thread has returned. */
inline void emu_run_block(dim3 block, uint64_t salt) {
    EmuState *s = &emu_state;
    const unsigned nt = block.x * block.y * block.z;
    for (unsigned t = 0; t < nt; t++) emu_fiber_init(&s->fibers[t]);
    unsigned live = nt;
    for (uint64_t phase = 0; live > 0; phase++) {
        const EmuFiber *first = NULL; /* the first thread that waits this phase */
        for (unsigned k = 0; k < nt; k++) {
            unsigned t = (unsigned)emu_perm(k, nt, salt * 7919 + phase);
            EmuFiber *f = &s->fibers[t];
            if (f->state == EMU_DONE) continue;
            s->current = t;
            emu_set_thread(t, block);
            if (swapcontext(&s->sched, &f->uc) != 0) emu_fail("swapcontext failed");
            if (f->state == EMU_DONE) live--;
            else if (!first) first = f;
            else if (f->line != first->line || strcmp(f->file, first->file) != 0)
                emu_fail("%s: block (%u,%u,%u): threads wait at different __syncthreads(): %s:%d and %s:%d", s->kernel,
                         blockIdx.x, blockIdx.y, blockIdx.z, first->file, first->line, f->file, f->line);
        }
        s->phases++;
    }
    s->threads += nt;
}

/* Checks the configuration as the GPU does, then runs every block. */
inline void emu_run_grid(const char *kernel, dim3 grid, dim3 block, void (*body)(void *), void *arg) {
    EmuState *s = &emu_state;
    const uint64_t nt = (uint64_t)block.x * block.y * block.z, nb = (uint64_t)grid.x * grid.y * grid.z;
    s->launches++;
    if (s->in_kernel) emu_fail("%s: launched from inside %s (dynamic parallelism is not emulated)", kernel, s->kernel);
    if (nt == 0 || nt > EMU_MAX_THREADS || block.z > 64 || nb == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
        grid.z > 65535) {
        s->last_error = cudaErrorInvalidConfiguration;
        return;
    }
    s->kernel = kernel, s->body = body, s->body_arg = arg;
    gridDim = grid, blockDim = block;
    s->in_kernel = 1;
    for (uint64_t k = 0; k < nb; k++) {
        uint64_t b = emu_perm(k, nb, s->launches);
        blockIdx = dim3((unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / ((uint64_t)grid.x * grid.y)));
        emu_run_block(block, s->launches * 1000003 + b);
        s->blocks++;
    }
    s->in_kernel = 0;
}

// ---- launches ----
typedef struct {
    dim3 grid, block;
    size_t shmem;
    cudaStream_t stream;
} EmuCfg;
inline EmuCfg emu_cfg(dim3 grid, dim3 block, size_t shmem = 0, cudaStream_t stream = 0) {
    return EmuCfg{grid, block, shmem, stream};
}

/* A pointer argument must be NULL or device memory (other arguments pass). */
template <typename T> inline void emu_check_arg(const char *kernel, int i, const T &a) {
    if constexpr (std::is_pointer_v<T>)
        if (a && !emu_is_device((const void *)a))
            emu_fail("%s: argument %d (%p) is not device memory (a host pointer passed to a kernel?)", kernel, i, (const void *)a);
}

template <typename K, typename... A> inline void emu_launch(const char *kernel, K fn, EmuCfg cfg, A... args) {
    if (cfg.shmem != 0) emu_fail("%s: dynamic shared memory is not emulated", kernel);
    int i = 0;
    (emu_check_arg(kernel, i++, args), ...);
    auto call = [&]() { fn(args...); };
    emu_run_grid(kernel, cfg.grid, cfg.block, [](void *p) { (*(decltype(call) *)p)(); }, &call);
}

#endif
