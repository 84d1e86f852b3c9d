#include "sgd_group.h"

#include <c10/util/Exception.h>

#include <atomic>

#include "flat_runs.h"
#include "sgd_check.h"

namespace fusedlr {

namespace {

enum GradProblem : int { kGradMissing = 1, kGradSparse = 2 };

/**
 * What reading params[j].grad() touches, prefetched in stages ahead of a loop at i over [.., hi)
 * (as prefetch_sgd_ahead): the parameter's TensorImpl (and those of `also`'s tensors)
 * 2 * kMetadataAhead places ahead, its AutogradMeta kMetadataAhead ahead, its grad half as far.
 */
void prefetch_grads_ahead(const std::vector<at::Tensor>& params, int64_t i, int64_t hi,
                          std::initializer_list<const std::vector<at::Tensor>*> also = {}) {
  constexpr int64_t kAhead = kMetadataAhead;
  if (i + 2 * kAhead < hi) {
    prefetch_metadata(params[i + 2 * kAhead]);
    for (const std::vector<at::Tensor>* list : also)
      if (list->size() == params.size()) prefetch_metadata((*list)[i + 2 * kAhead]);
  }
  if (i + kAhead < hi) prefetch_autograd_meta(params[i + kAhead]);
  if (i + kAhead / 2 < hi) prefetch_grad(params[i + kAhead / 2]);
}

/**
 * g[i] = params[i].grad() for every i, read on torch's threads when there are many parameters
 * (reading each .grad is a chain of cache misses: the parameter, its autograd metadata, the
 * gradient; prefetched in stages). The GradProblem bits seen: a missing gradient, a sparse one.
 * The TensorImpls of `also` (the momentum buffers and counters, when given) are prefetched on the
 * way: the dispatcher reads every tensor's dispatch keys next, one cache miss after another.
 */
int gather_grads(const std::vector<at::Tensor>& params, std::vector<at::Tensor>& g,
                 std::initializer_list<const std::vector<at::Tensor>*> also = {}) {
  g.resize(params.size());
  std::atomic<int> problems{0};
  for_tensor_ranges(params.size(), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      prefetch_grads_ahead(params, i, hi, also);
      // (TensorImpl::grad: Tensor::grad would also ask whether the parameter is a leaf, for a
      // warning about non-leaf tensors that the Python path, taken when a grad is missing, gives)
      const at::Tensor& grad = params[i].unsafeGetTensorImpl()->grad();
      if (!grad.defined()) problems.fetch_or(kGradMissing, std::memory_order_relaxed);
      else if (grad.layout() != at::kStrided) problems.fetch_or(kGradSparse, std::memory_order_relaxed);
      g[i] = grad;
    }
  });
  return problems.load();
}

/** Drop the references to the gathered gradients, so zero_grad(set_to_none=True) really frees them. */
void drop_grads(std::vector<at::Tensor>& g) {
  for_tensor_ranges(g.size(), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) g[i].reset();
  });
}

}  // namespace

SgdGroup::SgdGroup(std::vector<at::Tensor> params, const std::vector<std::optional<at::Tensor>>& momentum_buffers,
                   const std::vector<std::optional<at::Tensor>>& steps)
    : params_(std::move(params)) {
  for (const std::optional<at::Tensor>& b : momentum_buffers) buffers_.push_back(b.value_or(at::Tensor()));
  for (const std::optional<at::Tensor>& s : steps) steps_.push_back(s.value_or(at::Tensor()));
  TORCH_CHECK(buffers_.empty() || buffers_.size() == params_.size(), "SgdGroup: got ", params_.size(),
              " params but ", buffers_.size(), " momentum_buffers");
  TORCH_CHECK(steps_.size() == buffers_.size(), "SgdGroup: got ", buffers_.size(), " momentum_buffers but ",
              steps_.size(), " steps");
  runs_ = FlatRuns(params_, buffers_, steps_);
}

bool SgdGroup::runs_in_place() {
  // As gather_grads reads the gradients, but nothing is kept (no reference count touched), and
  // the buffers' and counters' metadata is not read at all.
  std::atomic<bool> in_place{true};
  for_tensor_ranges(params_.size(), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi && in_place.load(std::memory_order_relaxed); ++i) {
      prefetch_grads_ahead(params_, i, hi);
      const at::Tensor& grad = params_[i].unsafeGetTensorImpl()->grad();
      if ((grad.defined() && grad.layout() != at::kStrided) || !runs_.holds(static_cast<size_t>(i), params_, grad))
        in_place.store(false, std::memory_order_relaxed);
    }
  });
  return in_place.load();
}

bool SgdGroup::step_runs(const SgdHyper& hyper, const std::optional<at::Tensor>& lr_tensor,
                         const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf,
                         const std::optional<at::Tensor>& schedule, const std::optional<at::Tensor>& schedule_state,
                         const std::optional<at::Tensor>& grad_clip) {
  bool stepped = false;
  if (runs_.lists(params_, p_, rg_, b_, s_)) {
    try {
      call_sgd_op(SgdArgs{p_, rg_, b_, s_, hyper, lr_tensor, grad_scale, found_inf, schedule, schedule_state,
                          grad_clip, std::nullopt});
      stepped = true;
    } catch (const c10::Error&) {
      // (the op checks every tensor before it writes any: the tensor-by-tensor call that follows
      // names the parameter at fault, as without runs)
    }
  }
  if (stepped) last_step_tensors_ = static_cast<int64_t>(rg_.size());
  rg_.clear();
  p_.clear();
  b_.clear();
  s_.clear();
  if (stepped) runs_.sync_steps();
  return stepped;
}

int64_t SgdGroup::step(const SgdHyper& hyper, const std::optional<at::Tensor>& lr_tensor,
                       const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf,
                       const std::optional<at::Tensor>& schedule, const std::optional<at::Tensor>& schedule_state,
                       const std::optional<at::Tensor>& grad_clip, const std::optional<LarsArgs>& lars) {
  const std::lock_guard<std::mutex> lock(mutex_);
  const bool has_momentum = hyper.has_momentum();
  if (has_momentum && buffers_.size() != params_.size()) return -1;
  const size_t n = params_.size();
  // Flat runs, every tensor in place: one tensor per run (LARS takes a ratio per parameter).
  if (!runs_.empty() && !lars) {
    if (runs_in_place() && step_runs(hyper, lr_tensor, grad_scale, found_inf, schedule, schedule_state, grad_clip))
      return static_cast<int64_t>(n);
    runs_.forget_grads();
    // (a parameter moved, as by model.to(...): the runs will not come back; their tensors, which
    // hold the old storage, are let go)
    if (!runs_.params_in_place(params_)) runs_ = FlatRuns();
  }
  // Common case first: every parameter has a gradient and (with momentum) a buffer. The held
  // lists are then passed as they are and only the gradients are gathered.
  const int problems = gather_grads(params_, g_, {&buffers_, &steps_});
  if (problems & kGradSparse) return release_grads(-1);
  bool complete = problems == 0;
  if (complete && has_momentum) {
    for (const at::Tensor& b : buffers_) complete = complete && b.defined();  // (no buffer yet: the partial path says so)
  }
  static const std::vector<at::Tensor> none;
  if (complete) {
    if (n > 0 || schedule.has_value()) {
      const std::optional<at::Tensor> ratios =
          lars ? std::optional<at::Tensor>(call_lars_ratios_op(params_, g_, *lars, hyper.lr, lr_tensor,
                                                                      grad_scale, grad_clip)) : std::nullopt;
      call_sgd_op(SgdArgs{params_, g_, has_momentum ? buffers_ : none, has_momentum ? steps_ : none, hyper, lr_tensor,
                          grad_scale, found_inf, schedule, schedule_state, grad_clip, ratios});
    }
    last_step_tensors_ = static_cast<int64_t>(n);
    return release_grads(static_cast<int64_t>(n));
  }

  // Some parameters have no gradient this step: step the others.
  g_.clear();
  p_.clear();
  b_.clear();
  s_.clear();
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& grad = params_[i].grad();
    if (!grad.defined()) continue;
    if (grad.layout() != at::kStrided) return release_grads(-1);
    if (has_momentum) {
      if (!buffers_[i].defined()) return release_grads(-1);
      b_.push_back(buffers_[i]);
      s_.push_back(steps_[i]);
    }
    p_.push_back(params_[i]);
    g_.push_back(grad);
  }
  // Called even when no parameter has a gradient if a schedule must advance every step.
  if (!p_.empty() || schedule.has_value()) {
    const std::optional<at::Tensor> ratios =
        lars ? std::optional<at::Tensor>(call_lars_ratios_op(p_, g_, *lars, hyper.lr, lr_tensor, grad_scale,
                                                                    grad_clip)) : std::nullopt;
    call_sgd_op(SgdArgs{p_, g_, b_, s_, hyper, lr_tensor, grad_scale, found_inf, schedule, schedule_state, grad_clip,
                        ratios});
  }
  const auto stepped = static_cast<int64_t>(p_.size());
  last_step_tensors_ = stepped;
  p_.clear();
  b_.clear();
  s_.clear();
  return release_grads(stepped);
}

bool SgdGroup::append_grads(std::vector<at::Tensor>& out) {
  const std::lock_guard<std::mutex> lock(mutex_);
  if (!runs_.empty() && runs_in_place() && runs_.grads(params_, out)) return true;  // (one tensor per run)
  const bool sparse = (gather_grads(params_, g_) & kGradSparse) != 0;
  if (!sparse) {
    for (const at::Tensor& g : g_)
      if (g.defined()) out.push_back(g);
  }
  drop_grads(g_);
  return !sparse;
}

bool SgdGroup::drop_param_grads() {
  // (called with the GIL: waiting for a step that may need the GIL would deadlock; a step in
  // flight on another thread means the caller takes torch's loop instead)
  const std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  for (const at::Tensor& p : params_) zero_grad_as_torch(p, /*set_to_none=*/true);
  return true;
}

SfGroup::SfGroup(std::vector<at::Tensor> params, std::vector<at::Tensor> z)
    : params_(std::move(params)), z_(std::move(z)) {
  TORCH_CHECK(z_.size() == params_.size(), "SfGroup: got ", params_.size(), " params but ", z_.size(), " z");
}

int64_t SfGroup::step(const at::Tensor& state, const SfHyper& hyper) {
  const std::lock_guard<std::mutex> lock(mutex_);
  int64_t result = -1;
  if (gather_grads(params_, g_) == 0) {
    call_sf_sgd_op(params_, g_, z_, state, hyper);
    result = static_cast<int64_t>(params_.size());
  }
  drop_grads(g_);
  return result;
}

int64_t SgdGroup::release_grads(int64_t result) {
  drop_grads(g_);
  return result;
}

}  // namespace fusedlr
