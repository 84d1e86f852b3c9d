// Every schema of the fusedlr op library, in one place. Implementations register beside their
// kernels: sgd_cpu.cpp (CPU), sgd_cuda.cu (CUDA); python/fusedlr/ops.py registers the fake
// (meta) implementations that torch.compile traces with.

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "sgd_args.h"

TORCH_LIBRARY(fusedlr, m) {
  // One SGD-momentum step over every tensor of the lists, in one call. Mutates params,
  // momentum_buffers and steps (and grads, which are unscaled in place when grad_scale is
  // given, as torch's fused optimizers do). steps[i] counts the steps momentum_buffers[i] has
  // taken: 0 means the next step that runs initialises the buffer. When found_inf is non-zero
  // nothing changes, steps included. lr_tensor, when given, is read instead of lr.
  //
  // grad_clip, when given, multiplies every (unscaled) gradient in the update, not in memory:
  // global-norm clipping with grad_norm's coefficient. grad_ratios (float64, one per tensor),
  // when given, multiplies tensor i's gradient after its weight decay: LARS (lars_ratios).
  //
  // In-kernel schedule: `schedule` holds a ScheduleData (fusedlr/schedule.h) as CPU bytes and
  // `schedule_state` is a float64 [step, lr, factor] tensor on the params' device. The step
  // then uses lr = schedule_lr(data, step, base) * factor, with base = lr (or lr_tensor), writes
  // it to schedule_state[1] and advances schedule_state[0], all on the device, even when
  // found_inf skips the update (as torch's schedulers step whatever the scaler decided).
  m.def(
      "sgd_(Tensor(a!)[] params, Tensor(b!)[] grads, Tensor(c!)[] momentum_buffers, Tensor(d!)[] steps, "
      "float lr, float momentum, float dampening, float weight_decay, bool nesterov, bool maximize, "
      "Tensor? lr_tensor=None, Tensor? grad_scale=None, Tensor? found_inf=None, Tensor? schedule=None, "
      "Tensor(e!)? schedule_state=None, Tensor? grad_clip=None, Tensor? grad_ratios=None) -> ()");

  // The global norm of the gradients for clipping (fusedlr/grad_norm.h): a new tensor [total,
  // coef] with total = the norm_type-norm of every element of grads (divided by grad_scale when
  // given: the norm of the unscaled grads) and coef = min(max_norm / (total + 1e-6), 1), torch's
  // clip_grad_norm_ coefficient; float64 when a grad is float64, else float32. One read of the
  // grads; no host synchronisation. sgd_(..., grad_clip=out[1]) then steps with grad * coef.
  m.def("grad_norm(Tensor[] grads, float norm_type, float max_norm, Tensor? grad_scale=None) -> Tensor");
  // grad_norm in two halves, for gradients sharded across processes (DTensor): the accumulated
  // terms of the local grads (float64 [1]: the sum of |x|^p, or max |x| for p = inf), which the
  // caller all-reduces (sum, or max), then [total, coef] from the reduced terms, in `dtype`.
  m.def("grad_norm_terms(Tensor[] grads, float norm_type) -> Tensor");
  m.def("clip_coefficient(Tensor terms, float norm_type, float max_norm, Tensor? grad_scale=None, "
        "ScalarType dtype=float) -> Tensor");

  // LARS / LARC trust ratios (fusedlr/lars.h), one per tensor, as a new float64 tensor [n]: from
  // the 2-norms of params[i] and grads[i], read in one pass. The step's lr (lr, or lr_tensor when
  // given) matters only for trust_clip. sgd_(..., grad_ratios=out) then steps with
  // (grad + weight_decay * p) * out[i].
  // Schedule-free SGD (fusedlr/schedule_free.h): one step of a group, its float64 state [k,
  // weight_sum, lr_max, scheduled_lr] advanced on the params' device, then y (params) and z
  // updated from the grads (which are read, not written); and the train/eval switch, y = lerp(y, z, weight).
  m.def("sf_sgd_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] z, Tensor(c!) state, float lr, float momentum, "
        "float weight_decay, float warmup_steps, float r, float weight_lr_power) -> ()");
  m.def("sf_lerp_(Tensor(a!)[] params, Tensor[] z, float weight) -> ()");

  m.def("lars_ratios(Tensor[] params, Tensor[] grads, float weight_decay, float trust_coeff, float eps, "
        "bool trust_clip, float lr, Tensor? lr_tensor=None, Tensor? grad_scale=None, Tensor? grad_clip=None) -> Tensor");
}

// sgd_ is an optimizer update: it is never differentiated through. Without this, the
// dispatcher's boxed "autograd not implemented" fallback would box every call, converting
// each tensor of each list to an IValue and back (~0.5 us per parameter per step).
TORCH_LIBRARY_IMPL(fusedlr, Autograd, m) {
  m.impl("sgd_", torch::CppFunction::makeFallthrough());
  m.impl("grad_norm", torch::CppFunction::makeFallthrough());
  m.impl("grad_norm_terms", torch::CppFunction::makeFallthrough());
  m.impl("clip_coefficient", torch::CppFunction::makeFallthrough());
  m.impl("lars_ratios", torch::CppFunction::makeFallthrough());
  m.impl("sf_sgd_", torch::CppFunction::makeFallthrough());
  m.impl("sf_lerp_", torch::CppFunction::makeFallthrough());
}

namespace fusedlr {

void call_sgd_op(const SgdArgs& a) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("fusedlr::sgd_", "").typed<SgdOpSignature>();
  const SgdHyper& h = a.hyper;
  op.call(a.params, a.grads, a.momentum_buffers, a.steps, h.lr, h.momentum, h.dampening, h.weight_decay, h.nesterov,
          h.maximize, a.lr_tensor, a.grad_scale, a.found_inf, a.schedule, a.schedule_state, a.grad_clip,
          a.grad_ratios);
}

at::Tensor call_grad_norm_op(at::TensorList grads, double norm_type, double max_norm,
                             const std::optional<at::Tensor>& grad_scale) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fusedlr::grad_norm", "")
                             .typed<at::Tensor(at::TensorList, double, double, const std::optional<at::Tensor>&)>();
  return op.call(grads, norm_type, max_norm, grad_scale);
}

void call_sf_sgd_op(at::TensorList params, at::TensorList grads, at::TensorList z, const at::Tensor& state,
                    const SfHyper& h) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fusedlr::sf_sgd_", "")
                             .typed<void(at::TensorList, at::TensorList, at::TensorList, const at::Tensor&, double,
                                         double, double, double, double, double)>();
  op.call(params, grads, z, state, h.lr, h.momentum, h.weight_decay, h.warmup_steps, h.r, h.weight_lr_power);
}

at::Tensor call_lars_ratios_op(at::TensorList params, at::TensorList grads, const LarsArgs& lars, double lr,
                               const std::optional<at::Tensor>& lr_tensor, const std::optional<at::Tensor>& grad_scale,
                               const std::optional<at::Tensor>& grad_clip) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fusedlr::lars_ratios", "")
                             .typed<at::Tensor(at::TensorList, at::TensorList, double, double, double, bool, double,
                                               const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                                               const std::optional<at::Tensor>&)>();
  return op.call(params, grads, lars.weight_decay, lars.trust_coeff, lars.eps, lars.trust_clip, lr, lr_tensor,
                 grad_scale, grad_clip);
}

}  // namespace fusedlr
