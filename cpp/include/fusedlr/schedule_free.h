#pragma once
// Schedule-free SGD (Defazio et al., "The Road Less Scheduled", arXiv:2405.15682), the step of
// schedulefree.SGDScheduleFree, in one place for the CPU and CUDA ops.
//
// A group keeps [k, weight_sum, lr_max, scheduled_lr] (float64, on the params' device) and every
// parameter y (the point the gradient is taken at) a sequence z. Step k:
//
//   lr_k   = lr * min((k + 1) / warmup_steps, 1)           (lr when warmup_steps is 0)
//   lr_max = max(lr_max, lr_k)
//   w_k    = (k + 1)^r * lr_max^weight_lr_power,   weight_sum += w_k,   c = w_k / weight_sum (0 if 0)
//
// and per element, with grad g:
//
//   g = g + weight_decay * y
//   y = lerp(y, z, c)
//   y = y + lr_k (momentum (1 - c) - 1) g
//   z = z - lr_k g
//
// Switching the parameters between the training point y and the averaged point x for evaluation:
// eval: y = lerp(y, z, 1 - 1/momentum); train: y = lerp(y, z, 1 - momentum).

#include "fusedlr/macros.h"
#include "fusedlr/sgd_update.h"

#include <cmath>

namespace fusedlr {

/** The per-element coefficients of one schedule-free step, in math type T (or a SIMD vector of it). */
template <typename T>
struct SfCoeffs {
  T c;             // the averaging weight c_k = w_k / weight_sum
  T y_coef;        // lr_k (momentum (1 - c) - 1)
  T neg_lr;        // -lr_k
  T weight_decay;
  bool has_weight_decay;
};

/** A group's hyper-parameters, as schedulefree.SGDScheduleFree takes them. */
struct SfHyper {
  double lr, momentum, weight_decay, warmup_steps, r, weight_lr_power;
};

/**
 * Advance the group state [k, weight_sum, lr_max, scheduled_lr] by one step, in the reference's
 * order of operations; the coefficients of the step it takes.
 */
FUSEDLR_HOST_DEVICE inline SfCoeffs<double> sf_advance(double* state, const SfHyper& h) {
  const double k = state[0];
  const double sched = k < h.warmup_steps ? (k + 1.0) / h.warmup_steps : 1.0;
  const double lr = h.lr * sched;
  state[3] = lr;
  const double lr_max = state[2] = lr > state[2] ? lr : state[2];
  const double weight = pow(k + 1.0, h.r) * pow(lr_max, h.weight_lr_power);
  const double weight_sum = state[1] = state[1] + weight;
  const double c = weight_sum != 0.0 ? weight / weight_sum : 0.0;
  state[0] = k + 1.0;
  return SfCoeffs<double>{c, lr * (h.momentum * (1.0 - c) - 1.0), -lr, h.weight_decay, h.weight_decay != 0.0};
}

/** torch's lerp: a + w (b - a) for w < 1/2, else b - (1 - w) (b - a), each one fused multiply-add. */
template <typename T, typename W>
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE T lerp_torch(const T& a, const T& b, const W& w, bool small) {
  const T diff = b - a;
  return small ? fmadd(w, diff, a) : fmadd(w - W(1), diff, b);
}

/** One element (or vector) of the schedule-free step: y and z updated from the gradient g. */
template <typename T>
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE void sf_update(T& y, T g, T& z, const SfCoeffs<T>& k, bool c_small) {
  if (k.has_weight_decay) g = fmadd(y, k.weight_decay, g);
  y = lerp_torch(y, z, k.c, c_small);
  y = fmadd(g, k.y_coef, y);
  z = fmadd(g, k.neg_lr, z);
}

}  // namespace fusedlr
