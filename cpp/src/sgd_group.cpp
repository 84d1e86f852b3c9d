#include "sgd_group.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

namespace fusedlr {

SgdGroup::SgdGroup(std::vector<at::Tensor> params, const c10::List<std::optional<at::Tensor>>& momentum_buffers,
                   const c10::List<std::optional<at::Tensor>>& steps)
    : params_(std::move(params)) {
  for (const std::optional<at::Tensor>& b : momentum_buffers) buffers_.push_back(b.value_or(at::Tensor()));
  for (const std::optional<at::Tensor>& s : steps) steps_.push_back(s.value_or(at::Tensor()));
  TORCH_CHECK(buffers_.empty() || buffers_.size() == params_.size(), "SgdGroup: got ", params_.size(),
              " params but ", buffers_.size(), " momentum_buffers");
  TORCH_CHECK(steps_.size() == buffers_.size(), "SgdGroup: got ", buffers_.size(), " momentum_buffers but ",
              steps_.size(), " steps");
}

int64_t SgdGroup::step(double lr, double momentum, double dampening, double weight_decay, bool nesterov,
                       bool maximize, const std::optional<at::Tensor>& lr_tensor,
                       const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf) {
  const bool has_momentum = momentum != 0.0;
  if (has_momentum && buffers_.empty() && !params_.empty()) return -1;
  p_.clear();
  g_.clear();
  b_.clear();
  s_.clear();
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& grad = params_[i].grad();
    if (!grad.defined()) continue;
    if (grad.layout() != at::kStrided) return -1;
    if (has_momentum) {
      if (!buffers_[i].defined()) return -1;
      b_.push_back(buffers_[i]);
      s_.push_back(steps_[i]);
    }
    p_.push_back(params_[i]);
    g_.push_back(grad);
  }
  if (p_.empty()) return 0;
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fusedlr::sgd_", "")
                             .typed<void(at::TensorList, at::TensorList, at::TensorList, at::TensorList, double,
                                         double, double, double, bool, bool, const std::optional<at::Tensor>&,
                                         const std::optional<at::Tensor>&, const std::optional<at::Tensor>&)>();
  op.call(p_, g_, b_, s_, lr, momentum, dampening, weight_decay, nesterov, maximize, lr_tensor, grad_scale,
          found_inf);
  const auto stepped = static_cast<int64_t>(p_.size());
  // Drop the references so the grads can be freed by zero_grad(set_to_none=True).
  g_.clear();
  return stepped;
}

}  // namespace fusedlr
