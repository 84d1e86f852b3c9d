#pragma once
// SgdGroup: the tensors of one param group, held on the C++ side between steps.
//
// Calling an op with Python lists converts every tensor of every list on every call (about a
// quarter of a microsecond per tensor, i.e. ~2 ms per step for 2000 parameters with momentum).
// fusedlr.SGD instead hands the lists over once; each step then passes only scalars, and the
// group reads each parameter's .grad here, then runs fusedlr::sgd_ through the dispatcher (so
// the CPU and CUDA kernels are the same ones the op uses). Bound with pybind11 (sgd_group_bindings.cpp):
// a call costs well under a microsecond, a TorchScript custom-class call about ten.

#include <ATen/core/Tensor.h>

#include <mutex>
#include <optional>
#include <vector>

#include "flat_runs.h"
#include "fusedlr/schedule_free.h"
#include "sgd_args.h"

namespace fusedlr {

struct SgdGroup {
  /**
   * params: the group's parameters (real floating dtypes, dense, one device).
   * momentum_buffers, steps: their buffers and step counters (one each per param when the
   * group has momentum, else empty). A buffer is None for a parameter that has had no
   * gradient yet: step() then returns -1 when that parameter gets one.
   */
  SgdGroup(std::vector<at::Tensor> params, const std::vector<std::optional<at::Tensor>>& momentum_buffers,
           const std::vector<std::optional<at::Tensor>>& steps);

  /**
   * One step of every parameter that has a gradient. Returns how many were stepped, or -1
   * (nothing changed) when the Python side must rebuild the group: a parameter with a gradient
   * has no momentum buffer yet, or a gradient is sparse. With `lars`, the stepped tensors'
   * trust ratios are computed first (fusedlr::lars_ratios) and the step takes them.
   */
  int64_t step(const SgdHyper& hyper, const std::optional<at::Tensor>& lr_tensor,
               const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf,
               const std::optional<at::Tensor>& schedule, const std::optional<at::Tensor>& schedule_state,
               const std::optional<at::Tensor>& grad_clip, const std::optional<LarsArgs>& lars = std::nullopt);

  int64_t size() const { return static_cast<int64_t>(params_.size()); }

  /** How many tensors the last step handed the op per list (fewer than size() when flat runs were stepped). */
  int64_t last_step_tensors() const { return last_step_tensors_; }

  /**
   * Append the gradients of the group's parameters that have one to `out` (read on torch's
   * threads when there are many, as step() reads them). False, with `out` as it was, when a
   * gradient is sparse (the caller takes the Python path, which says so).
   */
  bool append_grads(std::vector<at::Tensor>& out);

  /** optimizer.zero_grad(set_to_none=True): every parameter's .grad dropped, in one C++ loop
   * (torch's Python loop adds ~0.5 us per parameter to the freeing itself). Called with the GIL;
   * false, nothing done, while another thread is stepping the group. */
  bool drop_param_grads();

 private:
  int64_t release_grads(int64_t result);
  /** Whether every parameter and gradient of the flat runs is in place (FlatRuns::holds, on torch's threads). */
  bool runs_in_place();
  /** Steps the flat runs as one tensor each; false (nothing changed) when they cannot be. */
  bool step_runs(const SgdHyper& hyper, const std::optional<at::Tensor>& lr_tensor,
                 const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf,
                 const std::optional<at::Tensor>& schedule, const std::optional<at::Tensor>& schedule_state,
                 const std::optional<at::Tensor>& grad_clip);

  std::vector<at::Tensor> params_, buffers_, steps_;
  FlatRuns runs_;  // parameters laid out back to back (fusedlr.SGD(flat=True)): flat_runs.h
  int64_t last_step_tensors_ = 0;
  // Scratch lists reused across steps (no allocation once they have grown). step() runs without
  // the GIL, so two Python threads can step one optimizer at once: a user error, but it must not
  // crash. The mutex makes such steps take turns (uncontended, it costs ~20 ns).
  std::mutex mutex_;
  std::vector<at::Tensor> p_, g_, b_, s_, rg_;
};

/** A schedule-free SGD group's params and z held between steps (ScheduleFreeSGD's eager fast path). */
struct SfGroup {
  SfGroup(std::vector<at::Tensor> params, std::vector<at::Tensor> z);

  /**
   * One step (fusedlr::sf_sgd_) of every parameter, the group's state advanced. Returns how many
   * were stepped, or -1 (nothing changed) when a parameter has no gradient or a sparse one: the
   * Python side then steps the group with lists.
   */
  int64_t step(const at::Tensor& state, const SfHyper& hyper);

 private:
  std::vector<at::Tensor> params_, z_, g_;
  std::mutex mutex_;
};

}  // namespace fusedlr
