#pragma once
// The vectorised CPU SGD kernel, compiled once per SIMD level (see CMakeLists.txt). This header
// is what the dispatcher in sgd_cpu.cpp and each compiled level agree on.

#include <c10/core/ScalarType.h>

#include <cstdint>

#include "fusedlr/grad_norm.h"
#include "fusedlr/schedule_free.h"
#include "fusedlr/sgd_update.h"

namespace fusedlr::cpu {

/**
 * How far ahead of the element being updated a span prefetches each stream (when its call moves
 * more than the caches near the core hold, StepArgs::prefetch). The hardware prefetcher alone
 * leaves memory idle while the core converts and computes: 2 KiB ahead took one 128M-element
 * bfloat16 step from 35 to 47 GB/s on the AVX-512 Xeon (the streaming reference: 52), 256 B gave 42.
 */
constexpr int64_t kPrefetchBytes = 2048;

/**
 * How far ahead the read-only passes (the grads' norm, LARS's norms of params and grads) prefetch.
 * Against none, 2 KiB took one 64M-element float32 norm from 18 to 26 GB/s on the AVX-512 Xeon;
 * on a Zen 4 EPYC, resnet50's grads in three in-process sweeps (2 threads): 2 KiB 20.9 / 20.9 /
 * 21.8 GB/s, 8 KiB 32.2 / 22.6 / 30.4 (the norms of params and grads read together: 23.7 / 21.6
 * / 21.9 against 24.6 / 21.4 / 24.6). Farther ahead was never slower.
 */
constexpr int64_t kNormPrefetchBytes = 8192;

/**
 * A span at most this long per stream does not prefetch ahead (the lines ahead would be another
 * tensor's); the caller prefetches it whole before its turn (sgd_cpu.cpp).
 */
constexpr int64_t kShortSpanBytes = 2 * kPrefetchBytes;

/** Everything a span needs besides its pointers; built once per op call. */
struct StepArgs {
  SgdCoeffs<float> coeffs_f;   // for float, half and bfloat16 storage
  SgdCoeffs<double> coeffs_d;  // for double storage
  bool unscale;                // grad /= grad_scale, and the unscaled grad is written back
  double grad_scale;
  bool clip;                   // grad *= grad_clip (global-norm clipping; not written back)
  double grad_clip;
  bool prefetch;               // prefetch ahead: the call's memory is larger than the caches near the core
};

// sgd_span: update n contiguous elements of one tensor. `buf` is null when momentum == 0;
// `buf_dtype` is its dtype: `dtype`, or Float for Half and BFloat16 params whose momentum is
// kept in float32 (fusedlr.SGD(momentum_dtype=torch.float32)); `first` says the buffer is on its
// first step; `ratio` is the tensor's LARS trust ratio (used when args' coefficients have
// has_ratio). One pass over memory: read param, grad, buf; write param, buf (and grad only when
// unscaling).
//
// norm_span: the norm terms of n contiguous elements of one tensor, accumulated in double
// (fusedlr/grad_norm.h): their sum, or their max for the inf-norm. sum_squares2: the sums of
// squares of two arrays of n elements (a parameter and its gradient, for LARS) in one loop.
//
// sf_span: the schedule-free step (fusedlr/schedule_free.h) over n elements of one tensor: read
// y, g, z; write y, z. lerp_span: y = lerp(y, z, w), the train/eval switch.
//
// stream_span: the memory roofline's reference (bench/roofline.py): n float32 words of p and g
// (and b when not null) read, p (and b) written, one add each: an SGD step's memory traffic at
// the same SIMD level and threads, and nothing else.
#define FUSEDLR_DECLARE_SGD_SPAN(LEVEL)                                                        \
  namespace LEVEL {                                                                             \
  void sgd_span(c10::ScalarType dtype, void* param, void* grad, void* buf, c10::ScalarType buf_dtype, \
                int64_t n, const StepArgs& args, bool first, double ratio);                     \
  double norm_span(c10::ScalarType dtype, const void* x, int64_t n, NormKind kind, double p);   \
  void sum_squares2(c10::ScalarType dtype, const void* x, const void* y, int64_t n, double& sx, double& sy); \
  void sf_span(c10::ScalarType dtype, void* y, const void* g, void* z, int64_t n, const SfCoeffs<double>& k); \
  void lerp_span(c10::ScalarType dtype, void* y, const void* z, int64_t n, double w);          \
  void stream_span(float* p, const float* g, float* b, int64_t n);                              \
  }

FUSEDLR_DECLARE_SGD_SPAN(DEFAULT)
FUSEDLR_DECLARE_SGD_SPAN(AVX2)
FUSEDLR_DECLARE_SGD_SPAN(AVX512)

#undef FUSEDLR_DECLARE_SGD_SPAN

}  // namespace fusedlr::cpu
