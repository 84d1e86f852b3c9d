#pragma once
// LARS / LARC's layer-wise trust ratio (You et al., arXiv:1708.03888; timm.optim.Lars, apex LARC),
// in one place for the CPU and CUDA ops.
//
// For a tensor with weight norm w = ||p||_2 and gradient norm g = ||grad||_2:
//
//   r = trust_coeff * w / (g + w * weight_decay + eps)     (1 when w or g is not > 0)
//   r = min(r / lr, 1)                                     (LARC: trust_clip; NaN stays NaN)
//
// and the update steps with (grad + weight_decay * p) * r (fusedlr/sgd_update.h). T is the type
// the norms are rounded to and r is computed in, in timm's order of operations: float for float,
// half and bfloat16 parameters (timm: the parameter's dtype; float is the more accurate for the
// half types), double for double.

#include "fusedlr/macros.h"

namespace fusedlr {

template <typename T>
FUSEDLR_HOST_DEVICE inline T lars_trust_ratio(T w_norm, T g_norm, double trust_coeff, double weight_decay, double eps,
                                              bool trust_clip, double lr) {
  T r = static_cast<T>(trust_coeff) * w_norm / (g_norm + w_norm * static_cast<T>(weight_decay) + static_cast<T>(eps));
  if (!(w_norm > T(0)) || !(g_norm > T(0))) r = T(1);
  if (trust_clip) {
    r = r / static_cast<T>(lr);
    r = r > T(1) ? T(1) : r;
  }
  return r;
}

}  // namespace fusedlr
