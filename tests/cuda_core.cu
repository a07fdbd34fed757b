// cuda_core.cu - core's host+device code gives the same bits on the GPU as on
// the CPU: every deterministic math function over 4M inputs (random bit
// patterns plus each function's working range) and the Philox stream.
// Without a GPU every test prints SKIPPED and the binary exits 0.
#include <string.h>

#include "common.h"
#include "cuda_check.h"
#include "dmath.h"
#include "harness.h"
#include "philox.h"

enum { F_EXP, F_EXPM1, F_LOG, F_LOG1P, F_TANH, F_ERF, F_SIGMOID, F_SIN, F_COS, F_POW, F_COUNT };
static const char *fname[F_COUNT] = {"exp", "expm1", "log", "log1p", "tanh", "erf", "sigmoid", "sin", "cos", "pow"};

__host__ __device__ static inline float apply(int f, float x, float y) {
    switch (f) {
    case F_EXP: return cp_expf(x);
    case F_EXPM1: return cp_expm1f(x);
    case F_LOG: return cp_logf(x);
    case F_LOG1P: return cp_log1pf(x);
    case F_TANH: return cp_tanhf(x);
    case F_ERF: return cp_erff(x);
    case F_SIGMOID: return cp_sigmoidf(x);
    case F_SIN: return cp_sinf(x);
    case F_COS: return cp_cosf(x);
    default: return cp_powf(x, y);
    }
}

__global__ void k_apply(float *out, const float *x, const float *y, int f, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = apply(f, x[i], y[i]);
}

__global__ void k_philox(uint32_t *out, uint32_t seed, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        CpRngKey key = cp_rng_key(seed, 3);
        CpU32x4 b = cp_rng_block(key, 11, 2, (uint32_t)i, 0);
        for (int w = 0; w < 4; w++) out[4 * i + w] = b.v[w];
        float z = cp_rng_normal(key, 1, 0, (uint32_t)i);
        memcpy(&out[4 * n + i], &z, 4);
    }
}

TEST(test_dmath_gpu_equals_cpu) {
    char why[256];
    if (!cp_cuda_available(why, sizeof why)) SKIP("%s", why);
    printf("  device: %s\n", why);
    const int n = 1 << 22;
    float *x = (float *)cp_malloc(sizeof(float) * n), *y = (float *)cp_malloc(sizeof(float) * n);
    float *gpu = (float *)cp_malloc(sizeof(float) * n);
    CpRngKey key = cp_rng_key(99, 0);
    float *dx, *dy, *dout;
    CUDA_CHECK(cudaMalloc(&dx, sizeof(float) * n));
    CUDA_CHECK(cudaMalloc(&dy, sizeof(float) * n));
    CUDA_CHECK(cudaMalloc(&dout, sizeof(float) * n));
    for (int f = 0; f < F_COUNT; f++) {
        for (int i = 0; i < n; i++) {
            CpU32x4 b = cp_rng_block(key, (uint32_t)f, 0, (uint32_t)i, 0);
            if (i % 2) memcpy(&x[i], &b.v[0], 4); /* any bit pattern, NaN/Inf included */
            else x[i] = (cp_u01(b.v[0]) - 0.5f) * 40.0f;
            y[i] = (cp_u01(b.v[1]) - 0.5f) * 16.0f;
        }
        CUDA_CHECK(cudaMemcpy(dx, x, sizeof(float) * n, cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(dy, y, sizeof(float) * n, cudaMemcpyHostToDevice));
        k_apply<<<(n + 255) / 256, 256>>>(dout, dx, dy, f, n);
        CUDA_CHECK_LAUNCH();
        CUDA_CHECK(cudaMemcpy(gpu, dout, sizeof(float) * n, cudaMemcpyDeviceToHost));
        int64_t diff = 0;
        for (int i = 0; i < n; i++) {
            float c = apply(f, x[i], y[i]);
            diff += memcmp(&c, &gpu[i], 4) != 0;
        }
        printf("  %-8s %d inputs, %lld differ\n", fname[f], n, (long long)diff);
        CHECKF(diff == 0, "%s: %lld of %d results differ between CPU and GPU", fname[f], (long long)diff, n);
    }
    CUDA_CHECK(cudaFree(dx));
    CUDA_CHECK(cudaFree(dy));
    CUDA_CHECK(cudaFree(dout));
    cp_free(x);
    cp_free(y);
    cp_free(gpu);
}

TEST(test_philox_gpu_equals_cpu) {
    char why[256];
    if (!cp_cuda_available(why, sizeof why)) SKIP("%s", why);
    const int n = 1 << 20;
    uint32_t *gpu = (uint32_t *)cp_malloc(sizeof(uint32_t) * 5 * n), *d;
    CUDA_CHECK(cudaMalloc(&d, sizeof(uint32_t) * 5 * n));
    k_philox<<<(n + 255) / 256, 256>>>(d, 42, n);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaMemcpy(gpu, d, sizeof(uint32_t) * 5 * n, cudaMemcpyDeviceToHost));
    int64_t diff = 0;
    CpRngKey key = cp_rng_key(42, 3);
    for (int i = 0; i < n; i++) {
        CpU32x4 b = cp_rng_block(key, 11, 2, (uint32_t)i, 0);
        for (int w = 0; w < 4; w++) diff += b.v[w] != gpu[4 * i + w];
        float z = cp_rng_normal(key, 1, 0, (uint32_t)i);
        diff += memcmp(&z, &gpu[4 * n + i], 4) != 0;
    }
    CHECKF(diff == 0, "%lld words differ", (long long)diff);
    CUDA_CHECK(cudaFree(d));
    cp_free(gpu);
}

TEST_MAIN(T(test_dmath_gpu_equals_cpu), T(test_philox_gpu_equals_cpu))
