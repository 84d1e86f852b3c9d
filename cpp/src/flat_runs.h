#pragma once
// Flat runs: parameters laid out back to back in one storage, with their gradients, momentum
// buffers and step counters laid out the same way (what fusedlr.SGD(flat=True) arranges, and
// what survives a deepcopy or torch.save of it), stepped as one tensor per run. A step of 2000
// small tensors then costs what a step of one large tensor costs, plus a check of each
// tensor's place (a few loads of metadata the gradient gather reads anyway), instead of the
// op's per-tensor checks, overlap check and per-tensor work split.
//
// Nothing is assumed: the runs are found from the tensors themselves when a group is held, and
// every step checks, tensor by tensor, that each parameter and gradient is still where its run
// expects it (a `p.data = ...`, a `model.to(...)`, a `model.zero_grad()` that let autograd
// allocate new gradients). When one is not, the group is stepped tensor by tensor, as any other.

#include <ATen/core/Tensor.h>

#include <vector>

namespace fusedlr {

/** Whether `next` starts where `prev` ends, in the same storage: same dtype, both contiguous. */
bool follows(const at::Tensor& prev, const at::Tensor& next);

class FlatRuns {
 public:
  FlatRuns() = default;

  /**
   * The runs among `params` (and `buffers`, `steps`: one each per param, or both empty without
   * momentum). A run is a sequence of parameters, in group order but not necessarily adjacent in
   * it, each starting where the one before ends; their buffers and counters must follow each
   * other the same way. A parameter that cannot join one (not dense, no buffer yet) is a run of
   * its own, stepped as itself when it has a gradient and skipped when it has none. Empty when
   * no run has two members (nothing to gain).
   *
   * One counter stands for a run in the op, so the first step of a run's buffers must be the
   * same step for all of them: fusedlr.SGD lays out the buffers of one creation round (or of a
   * loaded state, past its first step) and gives later ones their own memory (optim.py).
   */
  FlatRuns(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& buffers,
           const std::vector<at::Tensor>& steps);

  bool empty() const { return runs_.empty(); }

  /**
   * Whether parameter i and `grad` are still in place: param i follows the run member before
   * it, and so does its grad (the grads' run may be anywhere). Reads only metadata; called by
   * the gradient gather, on torch's threads. The buffers and counters are the optimizer's own:
   * their place is checked when the runs are found, and replacing one in the optimizer's state
   * makes the group be held again (_group_cache.State counts such changes).
   */
  bool holds(size_t i, const std::vector<at::Tensor>& params, const at::Tensor& grad) const;

  /**
   * After holds() was true for every parameter: one tensor per run in `p`, `g`, `b`, `s` (the
   * op's lists; `b`, `s` left empty without momentum; the gradients read from `params`). False
   * (lists unspecified) when the gradients do not span their run exactly.
   */
  bool lists(const std::vector<at::Tensor>& params, std::vector<at::Tensor>& p, std::vector<at::Tensor>& g,
             std::vector<at::Tensor>& b, std::vector<at::Tensor>& s) const;

  /**
   * Whether every run's parameters are still where the runs were found (checked when a step
   * could not take the runs: if not, the runs are gone for good, as after `model.to(...)`).
   */
  bool params_in_place(const std::vector<at::Tensor>& params) const;

  /** Drops the run gradients kept from the last step (a step that could not take the runs: the
   * gradients moved, and their old storage must not be kept alive). */
  void forget_grads() const;

  /** Only the run gradients (for the clipping norm), as lists() makes them. */
  bool grads(const std::vector<at::Tensor>& params, std::vector<at::Tensor>& out) const;

  /**
   * After a step: every counter of a run takes the value of its first member's, which the op
   * advanced (one counter stands for the run in the op's call).
   */
  void sync_steps() const;

 private:
  struct Run {
    size_t first = 0, last = 0, size = 0;  // parameter indices; how many members
    int64_t numel = 0;
    at::Tensor param, buffer, step;        // one tensor over the run (step: the first member's counter)
    at::Tensor rest_steps;                 // the counters of the other members, one tensor
    mutable at::Tensor grad;               // the run's gradient of the last step (kept while it does not move)
  };
  static constexpr int64_t kFirst = -1;
  std::vector<Run> runs_;
  bool momentum_ = false;
  std::vector<int64_t> prev_;      // the run member before parameter i, or kFirst
  std::vector<uint32_t> run_of_;   // the run of parameter i
};

/**
 * torch.optim.Optimizer.zero_grad's rule for one parameter: its .grad dropped (`set_to_none`), or
 * detached from any graph and zeroed in place. Nothing happens to a parameter without a .grad.
 */
void zero_grad_as_torch(const at::Tensor& param, bool set_to_none);

/**
 * The gradients of a flat layout (fusedlr.SGD(flat=True)): one tensor `grad`, each parameter's
 * .grad a view of it (`views[i]`), so that autograd accumulates into the run in place.
 */
class FlatGrads {
 public:
  FlatGrads(std::vector<at::Tensor> params, std::vector<at::Tensor> views, at::Tensor grad);

  /**
   * optimizer.zero_grad(): `grad` = 0, one write, and each parameter's .grad its view again
   * (after a model.zero_grad() let autograd allocate new ones; a parameter whose .data no longer
   * matches its view keeps torch's behaviour: set to None, or zeroed). A parameter that no longer
   * requires grad (frozen since) is treated as torch would too, so it is not stepped; so is one
   * whose view itself was moved (`model.to(...)` sets `p.grad.data`). Returns how many parameters
   * still have their view (0: the layout is gone).
   */
  int64_t zero(bool set_to_none);

 private:
  std::vector<at::Tensor> params_, views_;
  at::Tensor grad_;
};

}  // namespace fusedlr
