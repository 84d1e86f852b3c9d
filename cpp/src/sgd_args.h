#pragma once
// The arguments of fusedlr::sgd_, unpacked once. The schema (ops.cpp) has 17; the dispatcher calls
// an implementation with them one by one, and sgd_op<Impl> packs them into SgdArgs, which the
// checks (sgd_check.cpp), the CPU and CUDA implementations and SgdGroup take.

#include <ATen/core/Tensor.h>

#include <optional>

#include "fusedlr/schedule_free.h"
#include "fusedlr/sgd_update.h"

namespace fusedlr {

struct SgdArgs {
  at::TensorList params, grads, momentum_buffers, steps;
  SgdHyper hyper;
  const std::optional<at::Tensor>& lr_tensor;       // read instead of hyper.lr when given
  const std::optional<at::Tensor>& grad_scale;      // grads are divided by it (and written back)
  const std::optional<at::Tensor>& found_inf;       // non-zero: nothing is updated
  const std::optional<at::Tensor>& schedule;        // an in-kernel schedule's bytes (CPU uint8)
  const std::optional<at::Tensor>& schedule_state;  // its float64 [step, lr, factor] on the device
  const std::optional<at::Tensor>& grad_clip;       // grads are multiplied by it in the update (not in memory)
  const std::optional<at::Tensor>& grad_ratios;     // LARS: float64 [n], grad i * ratios[i] after its weight decay
};

/** LARS's own hyper-parameters (fusedlr/lars.h): what lars_ratios takes besides the tensors and lr. */
struct LarsArgs {
  double weight_decay;
  double trust_coeff;
  double eps;
  bool trust_clip;
};

/** The op's C++ signature, argument for argument as its schema in ops.cpp. */
using SgdOpSignature = void(at::TensorList, at::TensorList, at::TensorList, at::TensorList, double, double, double,
                            double, bool, bool, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                            const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                            const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                            const std::optional<at::Tensor>&);

/** An implementation of fusedlr::sgd_ as the dispatcher calls it, over one that takes SgdArgs. */
template <void (*Impl)(const SgdArgs&)>
void sgd_op(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers, at::TensorList steps,
            double lr, double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
            const std::optional<at::Tensor>& lr_tensor, const std::optional<at::Tensor>& grad_scale,
            const std::optional<at::Tensor>& found_inf, const std::optional<at::Tensor>& schedule,
            const std::optional<at::Tensor>& schedule_state, const std::optional<at::Tensor>& grad_clip,
            const std::optional<at::Tensor>& grad_ratios) {
  Impl(SgdArgs{params, grads, momentum_buffers, steps, SgdHyper{lr, momentum, dampening, weight_decay, nesterov, maximize},
               lr_tensor, grad_scale, found_inf, schedule, schedule_state, grad_clip, grad_ratios});
}

/** Runs fusedlr::sgd_ through the dispatcher (the backend of the tensors decides the kernel). */
void call_sgd_op(const SgdArgs& args);

/** Runs fusedlr::lars_ratios through the dispatcher: float64 [n] trust ratios. */
at::Tensor call_lars_ratios_op(at::TensorList params, at::TensorList grads, const LarsArgs& lars, double lr,
                               const std::optional<at::Tensor>& lr_tensor, const std::optional<at::Tensor>& grad_scale,
                               const std::optional<at::Tensor>& grad_clip);

/** Runs fusedlr::sf_sgd_ (schedule-free SGD) through the dispatcher. */
void call_sf_sgd_op(at::TensorList params, at::TensorList grads, at::TensorList z, const at::Tensor& state,
                    const SfHyper& hyper);

/** Runs fusedlr::grad_norm through the dispatcher: [total norm, clip coefficient]. */
at::Tensor call_grad_norm_op(at::TensorList grads, double norm_type, double max_norm,
                             const std::optional<at::Tensor>& grad_scale);

}  // namespace fusedlr
