#include "flat_runs.h"

#include <ATen/ops/empty.h>

#include <unordered_map>

namespace fusedlr {

namespace {

const c10::StorageImpl* storage_of(const c10::TensorImpl* t) { return t->unsafe_storage().unsafeGetStorageImpl(); }

/** Whether t starts where `view` starts, in the same storage. */
bool same_place(const at::Tensor& t, const at::Tensor& view) {
  const c10::TensorImpl* a = t.unsafeGetTensorImpl();
  const c10::TensorImpl* b = view.unsafeGetTensorImpl();
  return a->layout() == at::kStrided && storage_of(a) == storage_of(b) && a->storage_offset() == b->storage_offset() &&
         a->dtype() == b->dtype() && a->is_contiguous();
}

/** Whether the last of `t` (contiguous) is the last element of `view` (a run tensor). */
bool ends_with(const at::Tensor& t, const at::Tensor& view) {
  return t.storage_offset() + t.numel() == view.storage_offset() + view.numel();
}

/** A 1-D tensor of `numel` elements over first's storage, from first's offset (no autograd, no dispatch). */
at::Tensor run_view(const at::Tensor& first, int64_t numel) {
  at::Tensor out = at::empty({0}, first.options());
  c10::TensorImpl* impl = out.unsafeGetTensorImpl();
  impl->set_storage_keep_dtype(first.unsafeGetTensorImpl()->unsafe_storage());
  const int64_t size[] = {numel}, stride[] = {1};
  impl->set_sizes_and_strides(c10::IntArrayRef(size), c10::IntArrayRef(stride), first.storage_offset());
  return out;
}

bool dense(const at::Tensor& t) { return t.defined() && t.layout() == at::kStrided && t.is_contiguous(); }

}  // namespace

bool follows(const at::Tensor& prev, const at::Tensor& next) {
  if (!prev.defined() || !next.defined()) return false;
  const c10::TensorImpl* a = prev.unsafeGetTensorImpl();
  const c10::TensorImpl* b = next.unsafeGetTensorImpl();
  return a->layout() == at::kStrided && b->layout() == at::kStrided && storage_of(a) != nullptr &&
         storage_of(a) == storage_of(b) && a->dtype() == b->dtype() && a->is_contiguous() && b->is_contiguous() &&
         b->storage_offset() == a->storage_offset() + a->numel();
}

FlatRuns::FlatRuns(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& buffers,
                   const std::vector<at::Tensor>& steps) {
  const size_t n = params.size();
  const bool momentum = !buffers.empty();
  if (momentum && (buffers.size() != n || steps.size() != n)) return;
  // A parameter that cannot join a run (not dense, no buffer yet, ...) is a run of its own.
  auto joinable = [&](size_t i) {
    return dense(params[i]) && (!momentum || (dense(buffers[i]) && dense(steps[i]) && steps[i].numel() == 1));
  };
  std::vector<Run> runs;
  std::vector<size_t> second;
  std::unordered_map<const c10::StorageImpl*, std::vector<size_t>> by_storage;  // the runs in each storage
  prev_.assign(n, kFirst);
  run_of_.assign(n, 0);
  bool any = false;
  for (size_t i = 0; i < n; ++i) {
    size_t r = runs.size();
    std::vector<size_t>* candidates = nullptr;
    if (joinable(i)) {
      candidates = &by_storage[storage_of(params[i].unsafeGetTensorImpl())];
      for (const size_t k : *candidates) {
        const size_t last = runs[k].last;
        if (follows(params[last], params[i]) &&
            (!momentum || (follows(buffers[last], buffers[i]) && follows(steps[last], steps[i])))) {
          r = k;
          break;
        }
      }
    }
    if (r == runs.size()) {
      runs.push_back(Run{i, i, 0, 0, {}, {}, {}, {}});
      second.push_back(i);
      if (candidates != nullptr) candidates->push_back(r);
    } else {
      prev_[i] = static_cast<int64_t>(runs[r].last);
      if (runs[r].size == 1) second[r] = i;
      any = true;
    }
    Run& run = runs[r];
    run.last = i;
    run.size += 1;
    run.numel += params[i].numel();
    run_of_[i] = static_cast<uint32_t>(r);
  }
  if (!any) {
    prev_.clear();
    run_of_.clear();
    return;
  }
  for (size_t r = 0; r < runs.size(); ++r) {
    Run& run = runs[r];
    const bool single = run.size == 1;
    run.param = single ? params[run.first] : run_view(params[run.first], run.numel);
    if (momentum) {
      run.buffer = single ? buffers[run.first] : run_view(buffers[run.first], run.numel);
      run.step = steps[run.first];
      if (!single) run.rest_steps = run_view(steps[second[r]], static_cast<int64_t>(run.size) - 1);
    }
  }
  momentum_ = momentum;
  runs_ = std::move(runs);
}

bool FlatRuns::holds(size_t i, const std::vector<at::Tensor>& params, const at::Tensor& grad) const {
  const Run& run = runs_[run_of_[i]];
  if (run.size == 1) return true;  // stepped as itself when it has a gradient (the op checks it)
  const at::Tensor& p = params[i];
  // (numel, not sizes: the sizes live in another cache line, and a gradient of another shape cannot
  // be set on a parameter in the first place)
  if (!grad.defined() || grad.layout() != at::kStrided || grad.numel() != p.numel()) return false;
  const int64_t j = prev_[i];
  if (j == kFirst) return same_place(p, run.param) && grad.is_contiguous();
  const at::Tensor& prev = params[static_cast<size_t>(j)];
  return follows(prev, p) && follows(prev.unsafeGetTensorImpl()->grad(), grad) && (i != run.last || ends_with(p, run.param));
}

bool FlatRuns::grads(const std::vector<at::Tensor>& params, std::vector<at::Tensor>& out) const {
  const auto grad_of = [&](size_t i) -> const at::Tensor& { return params[i].unsafeGetTensorImpl()->grad(); };
  for (const Run& run : runs_) {
    const at::Tensor& first = grad_of(run.first);
    const at::Tensor& last = grad_of(run.last);
    if (run.size > 1 && last.storage_offset() + last.numel() != first.storage_offset() + run.numel) return false;
  }
  for (const Run& run : runs_) {
    const at::Tensor& first = grad_of(run.first);
    if (run.size == 1) {
      if (first.defined()) out.push_back(first);  // (none: not stepped, as torch skips it)
      continue;
    }
    // (the view of the last step when the gradients have not moved: no allocation, no dispatch)
    if (!run.grad.defined() || !same_place(first, run.grad)) run.grad = run_view(first, run.numel);
    out.push_back(run.grad);
  }
  return true;
}

bool FlatRuns::lists(const std::vector<at::Tensor>& params, std::vector<at::Tensor>& p, std::vector<at::Tensor>& g,
                     std::vector<at::Tensor>& b, std::vector<at::Tensor>& s) const {
  p.clear();
  g.clear();
  b.clear();
  s.clear();
  if (!this->grads(params, g)) return false;
  for (const Run& run : runs_) {
    if (run.size == 1 && !params[run.first].unsafeGetTensorImpl()->grad().defined()) continue;
    if (momentum_ && !run.buffer.defined()) return false;  // (a gradient without a buffer yet: the group is held again)
    p.push_back(run.param);
    if (momentum_) {
      b.push_back(run.buffer);
      s.push_back(run.step);
    }
  }
  return true;
}

bool FlatRuns::params_in_place(const std::vector<at::Tensor>& params) const {
  for (size_t i = 0; i < params.size(); ++i) {
    const Run& run = runs_[run_of_[i]];
    if (run.size == 1) continue;
    const int64_t j = prev_[i];
    if (j == kFirst ? !same_place(params[i], run.param) : !follows(params[static_cast<size_t>(j)], params[i])) return false;
    if (i == run.last && !ends_with(params[i], run.param)) return false;
  }
  return true;
}

void FlatRuns::forget_grads() const {
  for (const Run& run : runs_) run.grad.reset();
}

void FlatRuns::sync_steps() const {
  for (const Run& run : runs_)
    if (run.rest_steps.defined()) run.rest_steps.copy_(run.step);
}

FlatGrads::FlatGrads(std::vector<at::Tensor> params, std::vector<at::Tensor> views, at::Tensor grad)
    : params_(std::move(params)), views_(std::move(views)), grad_(std::move(grad)) {
  TORCH_CHECK_VALUE(params_.size() == views_.size(), "FlatGrads: got ", params_.size(), " params but ", views_.size(),
                    " views");
}

int64_t FlatGrads::zero(bool set_to_none) {
  grad_.zero_();
  const c10::StorageImpl* home = storage_of(grad_.unsafeGetTensorImpl());
  int64_t in_layout = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& p = params_[i];
    const at::Tensor& view = views_[i];
    at::Tensor& grad = p.mutable_grad();
    // A view whose own storage moved (model.to(...) sets `p.grad.data`, which is the view) is no
    // longer part of the layout, for good.
    const bool view_home = storage_of(view.unsafeGetTensorImpl()) == home;
    if (view_home && p.requires_grad()) {
      if (grad.unsafeGetTensorImpl() == view.unsafeGetTensorImpl()) {
        ++in_layout;
        continue;
      }
      if (p.dtype() == view.dtype() && p.device() == view.device() && p.sizes() == view.sizes()) {
        grad = view;
        ++in_layout;
        continue;
      }
    }
    zero_grad_as_torch(p, set_to_none);
  }
  return in_layout;
}

void zero_grad_as_torch(const at::Tensor& param, bool set_to_none) {
  c10::TensorImpl* impl = param.unsafeGetTensorImpl();
  if (impl->autograd_meta() == nullptr) return;  // no .grad (and none is made up by asking)
  at::Tensor& grad = impl->mutable_grad();
  if (!grad.defined()) return;
  if (set_to_none) {
    grad.reset();
  } else {
    if (grad.grad_fn()) grad.detach_();
    else grad.requires_grad_(false);
    grad.zero_();
  }
}

}  // namespace fusedlr
