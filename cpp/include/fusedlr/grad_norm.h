#pragma once
// The global gradient norm and the clipping coefficient, in one place (CPU and CUDA).
//
// torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type) computes
//
//   total = || (||g_1||_p, ..., ||g_n||_p) ||_p      (the p-norm of every gradient element)
//   coef  = min(max_norm / (total + 1e-6), 1)         (clamped: NaN stays NaN)
//   g_i   = g_i * coef
//
// fusedlr accumulates the elements' terms (|x|^p, or max |x| for p = inf) in double over all
// tensors at once, then finishes the norm: the same norm to rounding, in one read of the grads.
// Under AMP the grads are scaled: the norm of the unscaled grads is the scaled norm / scale
// (a p-norm is homogeneous). The coefficient is computed in the norm's dtype (float for float,
// half and bfloat16 grads; double for double), as torch computes it in the norm tensor's dtype.

#include "fusedlr/macros.h"

#include <cmath>

namespace fusedlr {

/** Which p-norm: the common ones have their own accumulation (no pow per element). */
enum class NormKind : int { kTwo = 0, kOne = 1, kInf = 2, kP = 3 };

/** The kind of norm_type p (inf, 1, 2, any other p > 0). */
FUSEDLR_HOST_DEVICE inline NormKind norm_kind(double p) {
  if (p == INFINITY) return NormKind::kInf;
  if (p == 2.0) return NormKind::kTwo;
  if (p == 1.0) return NormKind::kOne;
  return NormKind::kP;
}

/** One element's term: x^2, |x|, |x| (for a max) or |x|^p. */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double norm_term(double x, NormKind kind, double p) {
  switch (kind) {
    case NormKind::kTwo: return x * x;
    case NormKind::kOne:
    case NormKind::kInf: return fabs(x);
    default: return pow(fabs(x), p);
  }
}

/** Two partial accumulations joined: a sum, or a max that keeps NaN (as torch's inf-norm does). */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double norm_join(double a, double b, NormKind kind) {
  if (kind != NormKind::kInf) return a + b;
  return (b > a || b != b) ? b : a;
}

/** The norm of everything accumulated: sqrt, as is, or the p-th root. */
FUSEDLR_HOST_DEVICE inline double norm_finish(double acc, NormKind kind, double p) {
  switch (kind) {
    case NormKind::kTwo: return sqrt(acc);
    case NormKind::kOne:
    case NormKind::kInf: return acc;
    default: return pow(acc, 1.0 / p);
  }
}

/** torch's clip coefficient in the norm's type T: min(max_norm / (total + 1e-6), 1), NaN kept. */
template <typename T>
FUSEDLR_HOST_DEVICE inline T clip_coefficient(T total, double max_norm) {
  const T coef = static_cast<T>(max_norm) / (total + static_cast<T>(1e-6));
  return coef > T(1) ? T(1) : coef;
}

}  // namespace fusedlr
