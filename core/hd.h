/* hd.h - the host+device qualifier shared by every header whose inline math
 * must be compiled identically by the C compiler (CPU path) and by nvcc (CUDA
 * path). DESIGN.md rule 2: one arithmetic definition per op.
 *
 * CP_HD marks a function callable from both sides; under a plain C compiler it
 * expands to nothing. Such functions must be `static inline` and may use only
 * IEEE add/sub/mul/div/sqrt, fma/fmaf and integer bit operations (rule 5). */
#ifndef CP_HD_H
#define CP_HD_H

#if defined(__CUDACC__)
#define CP_HD __host__ __device__
#else
#define CP_HD
#endif

#endif
