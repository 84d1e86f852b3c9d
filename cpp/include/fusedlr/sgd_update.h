#pragma once
// The SGD-momentum update of one element (or one SIMD vector of elements), in one place.
//
// The equations are torch.optim.SGD's (torch/optim/sgd.py, _single_tensor_sgd):
//
//   g  = -grad if maximize else grad
//   g  = g + wd * p                                   (when wd != 0)
//   g  = g * r                                        (LARS: the tensor's trust ratio r, when given)
//   b  = g                                            (first step of this buffer)
//   b  = momentum * b + (1 - dampening) * g           (later steps)
//   g  = g + momentum * b  if nesterov  else  b       (when momentum != 0)
//   p  = p - lr * g
//
// Each line rounds where torch's tensor ops round: `x.add(y, alpha=a)` is one fused multiply-add
// fma(y, a, x) in ATen's vectorised kernels, and `buf.mul_(momentum)` rounds before the add. The
// same template serves scalars (CUDA, CPU tails) and ATen Vectorized<T> (CPU SIMD), so the CPU
// and CUDA results agree with torch and with each other. Before these lines the kernels divide
// the gradient by AMP's scale and multiply it by the global-norm clip coefficient (when given).
//
// LARS (timm.optim.Lars, arXiv:1708.03888) is this update with the weight decay folded into the
// gradient before the layer's trust ratio multiplies it (fusedlr/lars.h computes r), which is
// the order timm applies them in: (grad + wd p) * r, then momentum.

#include "fusedlr/macros.h"

#include <cmath>

namespace fusedlr {

/** Scalar fused multiply-add a*b + c with one rounding; Vectorized<T> finds at::vec::fmadd by ADL. */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE float fmadd(float a, float b, float c) { return fmaf(a, b, c); }
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double fmadd(double a, double b, double c) { return fma(a, b, c); }

/**
 * Hyper-parameters of one step in the math type T of the update: float for float, half and
 * bfloat16 storage (half types are computed in float), double for double storage; T may also
 * be a SIMD vector of those with every lane equal.
 */
template <typename T>
struct SgdCoeffs {
  T neg_lr;               // -lr of this step
  T momentum;             // momentum factor
  T one_minus_dampening;  // (1 - dampening), rounded from double like torch's alpha
  T weight_decay;         // L2 penalty factor
  T grad_sign;            // -1 when maximize, else +1
  bool maximize;
  bool has_weight_decay;  // weight_decay != 0 (torch skips the add when it is exactly 0)
  bool has_momentum;      // momentum != 0: there is a buffer
  bool nesterov;
  bool has_ratio;         // LARS: multiply by the tensor's trust ratio after the weight decay
};

/** The hyper-parameters of one fusedlr::sgd_ call, as the op's schema gives them (ops.cpp). */
struct SgdHyper {
  double lr;  // the lr argument (an lr tensor or an in-kernel schedule may decide the step's lr instead)
  double momentum;
  double dampening;
  double weight_decay;
  bool nesterov;
  bool maximize;
  FUSEDLR_HOST_DEVICE bool has_momentum() const { return momentum != 0.0; }
};

/** The coefficients of a step with learning rate `lr` (the step's, whatever decided it), in math type T. */
template <typename T>
FUSEDLR_HOST_DEVICE SgdCoeffs<T> sgd_coeffs(const SgdHyper& h, double lr) {
  return SgdCoeffs<T>{static_cast<T>(-lr),          static_cast<T>(h.momentum),  static_cast<T>(1.0 - h.dampening),
                      static_cast<T>(h.weight_decay), h.maximize ? T(-1) : T(1), h.maximize,
                      h.weight_decay != 0.0,        h.momentum != 0.0,           h.nesterov,
                      false};
}

/** Broadcast the coefficients of scalar type S into another type V (e.g. a SIMD vector). */
template <typename V, typename S>
FUSEDLR_HOST_DEVICE SgdCoeffs<V> broadcast(const SgdCoeffs<S>& c) {
  return SgdCoeffs<V>{V(c.neg_lr),      V(c.momentum),         V(c.one_minus_dampening),
                      V(c.weight_decay), V(c.grad_sign),        c.maximize,
                      c.has_weight_decay, c.has_momentum,       c.nesterov,
                      c.has_ratio};
}

/**
 * Update one parameter element `param` (and its momentum buffer `buf`) from its gradient.
 * `first` is true on the first step that actually runs for this buffer: the buffer is then
 * set to the (decayed) gradient instead of being blended, whatever it held before.
 */
template <typename T>
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE void sgd_update(T& param, T grad, T& buf, const SgdCoeffs<T>& c,
                                                   bool first, const T& ratio = T(1)) {
  if (c.maximize) grad = grad * c.grad_sign;  // exact: a sign flip that keeps -0.0 as torch does
  if (c.has_weight_decay) grad = fmadd(param, c.weight_decay, grad);
  if (c.has_ratio) grad = grad * ratio;
  if (c.has_momentum) {
    buf = first ? grad : fmadd(grad, c.one_minus_dampening, buf * c.momentum);
    grad = c.nesterov ? fmadd(buf, c.momentum, grad) : buf;
  }
  param = fmadd(grad, c.neg_lr, param);
}

}  // namespace fusedlr
