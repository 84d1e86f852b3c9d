#pragma once

// One definition of the per-element math serves the CPU and CUDA builds: under nvcc the
// functions are __host__ __device__, in a plain C++ build the macro is empty, so the CPU
// build needs no CUDA headers at all.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define FUSEDLR_HOST_DEVICE __host__ __device__
#else
#define FUSEDLR_HOST_DEVICE
#endif

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FUSEDLR_INLINE __forceinline__
#else
#define FUSEDLR_INLINE inline __attribute__((always_inline))
#endif
