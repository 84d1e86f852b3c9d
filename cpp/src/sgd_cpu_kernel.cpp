// SIMD body of the CPU SGD step. Compiled once per CPU_CAPABILITY (DEFAULT, AVX2, AVX512) with
// the matching -m flags; ATen's Vectorized<T> is then 1, 8 or 16 floats wide. Only raw pointers
// cross this file's boundary, so no ATen tensor code is compiled with ISA flags.

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "sgd_cpu_kernel.h"

namespace fusedlr::cpu {
namespace CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

/** float / double storage: the math type is the storage type. */
template <typename T>
void span_same_type(T* param, T* grad, T* buf, int64_t n, const SgdCoeffs<T>& c, const StepArgs& args,
                    bool first) {
  using Vec = Vectorized<T>;
  const SgdCoeffs<Vec> cv = broadcast<Vec>(c);
  const Vec scale(static_cast<T>(args.grad_scale));
  // The tail runs through the same vector code with partial loads and stores, so every
  // element sees exactly the same sequence of roundings.
  auto body = [&](int64_t i, int64_t count) {
    Vec p = Vec::loadu(param + i, count);
    Vec g = Vec::loadu(grad + i, count);
    Vec b = c.has_momentum ? Vec::loadu(buf + i, count) : Vec(T(0));
    if (args.unscale) {
      g = g / scale;
      g.store(grad + i, count);
    }
    sgd_update(p, g, b, cv, first);
    p.store(param + i, count);
    if (c.has_momentum) b.store(buf + i, count);
  };
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) body(i, Vec::size());
  if (i < n) body(i, n - i);
}

/** half / bfloat16 storage: loaded as one reduced-precision vector, computed as two float vectors. */
template <typename T>
void span_reduced(T* param, T* grad, T* buf, int64_t n, const SgdCoeffs<float>& c, const StepArgs& args,
                  bool first) {
  using RVec = Vectorized<T>;
  using FVec = Vectorized<float>;
  const SgdCoeffs<FVec> cv = broadcast<FVec>(c);
  const FVec scale(static_cast<float>(args.grad_scale));
  auto body = [&](int64_t i, int64_t count) {
    auto [p0, p1] = at::vec::convert_to_float<T>(RVec::loadu(param + i, count));
    auto [g0, g1] = at::vec::convert_to_float<T>(RVec::loadu(grad + i, count));
    FVec b0(0.f), b1(0.f);
    if (c.has_momentum) std::tie(b0, b1) = at::vec::convert_to_float<T>(RVec::loadu(buf + i, count));
    if (args.unscale) {
      g0 = g0 / scale;
      g1 = g1 / scale;
      at::vec::convert_from_float<T>(g0, g1).store(grad + i, count);
    }
    sgd_update(p0, g0, b0, cv, first);
    sgd_update(p1, g1, b1, cv, first);
    at::vec::convert_from_float<T>(p0, p1).store(param + i, count);
    if (c.has_momentum) at::vec::convert_from_float<T>(b0, b1).store(buf + i, count);
  };
  int64_t i = 0;
  for (; i + RVec::size() <= n; i += RVec::size()) body(i, RVec::size());
  if (i < n) body(i, n - i);
}

}  // namespace

void sgd_span(c10::ScalarType dtype, void* param, void* grad, void* buf, int64_t n, const StepArgs& args,
              bool first) {
  switch (dtype) {
    case c10::ScalarType::Float:
      return span_same_type(static_cast<float*>(param), static_cast<float*>(grad), static_cast<float*>(buf), n,
                            args.coeffs_f, args, first);
    case c10::ScalarType::Double:
      return span_same_type(static_cast<double*>(param), static_cast<double*>(grad), static_cast<double*>(buf),
                            n, args.coeffs_d, args, first);
    case c10::ScalarType::BFloat16:
      return span_reduced(static_cast<c10::BFloat16*>(param), static_cast<c10::BFloat16*>(grad),
                          static_cast<c10::BFloat16*>(buf), n, args.coeffs_f, args, first);
    case c10::ScalarType::Half:
      return span_reduced(static_cast<c10::Half*>(param), static_cast<c10::Half*>(grad),
                          static_cast<c10::Half*>(buf), n, args.coeffs_f, args, first);
    default:
      // The op boundary (sgd_check.cpp) admits only the four dtypes above.
      return;
  }
}

void stream_span(float* p, const float* g, float* b, int64_t n) {
  using Vec = Vectorized<float>;
  int64_t i = 0;
  if (b != nullptr) {
    for (; i + Vec::size() <= n; i += Vec::size()) {
      const Vec gv = Vec::loadu(g + i);
      (Vec::loadu(p + i) + gv).store(p + i);
      (Vec::loadu(b + i) + gv).store(b + i);
    }
    for (; i < n; ++i) p[i] += g[i], b[i] += g[i];
  } else {
    for (; i + Vec::size() <= n; i += Vec::size()) (Vec::loadu(p + i) + Vec::loadu(g + i)).store(p + i);
    for (; i < n; ++i) p[i] += g[i];
  }
}

}  // namespace CPU_CAPABILITY
}  // namespace fusedlr::cpu
