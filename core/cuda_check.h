/* cuda_check.h - CUDA error checking (STYLE.md "Errors"): every runtime call
 * and every launch is checked; a failure prints the call as text, file:line
 * and the CUDA error string, then aborts (a broken device is not a user
 * input error). CP_CUDA_SYNC_CHECK=1 at compile time (the debug build)
 * synchronizes after each launch so errors point at the right kernel. */
#ifndef CP_CUDA_CHECK_H
#define CP_CUDA_CHECK_H

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CUDA_CHECK(call)                                                                        \
    do {                                                                                        \
        cudaError_t err_ = (call);                                                              \
        if (err_ != cudaSuccess) {                                                              \
            fprintf(stderr, "CUDA error: %s at %s:%d: %s\n", #call, __FILE__, __LINE__,         \
                    cudaGetErrorString(err_));                                                  \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

#ifdef CP_CUDA_SYNC_CHECK
#define CUDA_CHECK_LAUNCH()                                                                     \
    do {                                                                                        \
        CUDA_CHECK(cudaGetLastError());                                                         \
        CUDA_CHECK(cudaDeviceSynchronize());                                                    \
    } while (0)
#else
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
#endif

/* Is a usable GPU present? Never aborts: no driver / no device -> 0 and the
 * reason in `why` (for the SKIPPED line). */
static inline int cp_cuda_available(char *why, size_t n) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        snprintf(why, n, "no CUDA device (%s)", cudaGetErrorString(err));
        cudaGetLastError(); /* clear the sticky error */
        return 0;
    }
    if (count == 0) {
        snprintf(why, n, "no CUDA device");
        return 0;
    }
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    snprintf(why, n, "%s, sm_%d%d, %d SMs, driver %d, runtime %d", p.name, p.major, p.minor,
             p.multiProcessorCount, driver, runtime);
    return 1;
}

#endif
