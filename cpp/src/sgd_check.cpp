#include "sgd_check.h"

#include <ATen/MemoryOverlap.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "fusedlr/schedule_check.h"

namespace fusedlr {

const char* sgd_hyperparameter_problem(const SgdHyper& h) {
  if (!(std::isfinite(h.lr) && h.lr >= 0.0)) return "lr";
  if (!(std::isfinite(h.momentum) && h.momentum >= 0.0)) return "momentum";
  if (!std::isfinite(h.dampening)) return "dampening";
  if (!(std::isfinite(h.weight_decay) && h.weight_decay >= 0.0)) return "weight_decay";
  if (h.nesterov && !(h.momentum > 0.0 && h.dampening == 0.0)) return "nesterov";
  return nullptr;
}

const std::vector<c10::ScalarType>& supported_dtypes() {
  static const std::vector<c10::ScalarType> dtypes{at::kFloat, at::kDouble, at::kHalf, at::kBFloat16};
  return dtypes;
}

bool is_supported_dtype(c10::ScalarType dtype) {
  for (const c10::ScalarType d : supported_dtypes())
    if (d == dtype) return true;
  return false;
}

std::string dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kComplexHalf: return "complex32";
    case at::kComplexFloat: return "complex64";
    case at::kComplexDouble: return "complex128";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: {
      std::string name = c10::toString(dtype);  // e.g. Float8_e4m3fn: torch.float8_e4m3fn
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return name;
    }
  }
}

namespace {

/** A dtype as Python prints it: "torch.float32". */
std::string py_dtype(c10::ScalarType dtype) { return "torch." + dtype_name(dtype); }

/** A shape as Python prints a torch.Size's tuple: "(5,)", "(2, 3)", "()". */
std::string py_shape(at::IntArrayRef sizes) {
  std::string out = "(";
  for (size_t d = 0; d < sizes.size(); ++d) out += (d ? ", " : "") + std::to_string(sizes[d]);
  return out + (sizes.size() == 1 ? ",)" : ")");
}

/** "torch.float32, torch.float64, ...": the dtypes the kernels step. */
std::string supported_list() {
  std::string out;
  for (const c10::ScalarType d : supported_dtypes()) out += (out.empty() ? "" : ", ") + py_dtype(d);
  return out;
}

void check_scalar_tensor(const std::optional<at::Tensor>& t, const char* name, c10::Device device) {
  if (!t.has_value()) return;
  TORCH_CHECK(t->numel() == 1, "fusedlr.sgd_: ", name, " must have one element, got ", t->numel());
  TORCH_CHECK(at::isFloatingType(t->scalar_type()), "fusedlr.sgd_: ", name, " must be floating point, got ",
              t->scalar_type());
  // A CPU scalar can serve a CUDA step, and a scalar on another GPU too (GradScaler hands one
  // found_inf to every device's split, as torch's fused optimizers take it): the CUDA step copies
  // it. On the CPU a scalar must be on the CPU.
  TORCH_CHECK(t->device() == device || t->device().is_cpu() || (device.is_cuda() && t->device().is_cuda()),
              "fusedlr.sgd_: ", name, " is on ", t->device(), " but the parameters are on ", device);
}

}  // namespace

namespace {

/** Dense tensors of the fused dtypes, all on one device of `device_type` (the device; CPU when empty). */
c10::Device check_dense_list(const char* op, const char* name, at::TensorList list, c10::DeviceType device_type) {
  const c10::Device device = list.empty() ? c10::Device(device_type) : list[0].device();
  TORCH_CHECK(device.type() == device_type, op, ": the ", name, " are on ", device, ", expected ",
              c10::DeviceTypeName(device_type));
  for (size_t i = 0; i < list.size(); ++i) {
    const at::Tensor& t = list[i];
    TORCH_CHECK_VALUE(t.layout() == at::kStrided, op, ": ", name, "[", i, "] must be dense (strided)");
    TORCH_CHECK_TYPE(is_supported_dtype(t.scalar_type()), op, ": ", name, "[", i, "] has dtype ",
                     py_dtype(t.scalar_type()), "; supported: ", supported_list());
    TORCH_CHECK_VALUE(t.device() == device, op, ": ", name, "[", i, "] is on ", t.device(), " but ", name,
                      "[0] is on ", device, "; one call takes tensors of one device");
  }
  return device;
}

}  // namespace

c10::Device check_grad_norm_call(at::TensorList grads, double norm_type, double max_norm,
                                 const std::optional<at::Tensor>& grad_scale, c10::DeviceType device_type) {
  TORCH_CHECK_VALUE(norm_type == INFINITY || (norm_type > 0.0 && std::isfinite(norm_type)),
                    "fusedlr.grad_norm: norm_type must be > 0 or inf, got ", format_number(norm_type));
  TORCH_CHECK_VALUE(max_norm >= 0.0, "fusedlr.grad_norm: max_norm must be >= 0, got ", format_number(max_norm));
  const c10::Device device = check_dense_list("fusedlr.grad_norm", "grads", grads, device_type);
  if (grad_scale.has_value()) {
    TORCH_CHECK(grad_scale->numel() == 1 && at::isFloatingType(grad_scale->scalar_type()) &&
                    (grad_scale->device() == device || grad_scale->device().is_cpu()),
                "fusedlr.grad_norm: grad_scale must be a one-element floating tensor on ", device, " or the CPU");
  }
  return device;
}

void check_lars_ratios_call(at::TensorList params, at::TensorList grads, double weight_decay, double trust_coeff,
                            double eps, double lr, const std::optional<at::Tensor>& lr_tensor,
                            const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& grad_clip,
                            c10::DeviceType device_type) {
  TORCH_CHECK(grads.size() == params.size(), "fusedlr.lars_ratios: got ", params.size(), " params but ",
              grads.size(), " grads");
  TORCH_CHECK_VALUE(std::isfinite(weight_decay) && std::isfinite(trust_coeff) && std::isfinite(eps) &&
                        std::isfinite(lr),
                    "fusedlr.lars_ratios: weight_decay, trust_coeff, eps and lr must be finite");
  const c10::Device device = check_dense_list("fusedlr.lars_ratios", "params", params, device_type);
  check_dense_list("fusedlr.lars_ratios", "grads", grads, device_type);
  for (size_t i = 0; i < params.size(); ++i) {
    TORCH_CHECK_VALUE(params[i].sizes() == grads[i].sizes() && grads[i].device() == device,
                      "fusedlr.lars_ratios: grads[", i, "] has shape ", grads[i].sizes(), " on ", grads[i].device(),
                      " but params[", i, "] has shape ", params[i].sizes(), " on ", params[i].device());
  }
  for (const auto& [t, name] : {std::pair{&lr_tensor, "lr_tensor"}, std::pair{&grad_scale, "grad_scale"},
                                 std::pair{&grad_clip, "grad_clip"}}) {
    TORCH_CHECK(!t->has_value() || ((*t)->numel() == 1 && at::isFloatingType((*t)->scalar_type())),
                "fusedlr.lars_ratios: ", name, " must be a one-element floating tensor");
  }
}

void check_clip_coefficient_call(const at::Tensor& terms, double norm_type, double max_norm,
                                 const std::optional<at::Tensor>& grad_scale, at::ScalarType dtype,
                                 c10::DeviceType device_type) {
  TORCH_CHECK(terms.device().type() == device_type && terms.scalar_type() == at::kDouble && terms.numel() == 1,
              "fusedlr.clip_coefficient: terms must be a one-element float64 tensor (grad_norm_terms'), got ",
              terms.numel(), " ", terms.scalar_type(), " on ", terms.device());
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble, "fusedlr.clip_coefficient: dtype must be ",
                    "torch.float32 or torch.float64, got ", py_dtype(dtype));
  check_grad_norm_call({}, norm_type, max_norm, std::nullopt, device_type);
  if (grad_scale.has_value()) {
    TORCH_CHECK(grad_scale->numel() == 1 && at::isFloatingType(grad_scale->scalar_type()) &&
                    (grad_scale->device() == terms.device() || grad_scale->device().is_cpu()),
                "fusedlr.clip_coefficient: grad_scale must be a one-element floating tensor on ", terms.device(),
                " or the CPU");
  }
}

void check_sf_call(at::TensorList params, at::TensorList grads, at::TensorList z,
                   const std::optional<at::Tensor>& state, c10::DeviceType device_type) {
  const char* op = state.has_value() ? "fusedlr.sf_sgd_" : "fusedlr.sf_lerp_";
  const c10::Device device = check_dense_list(op, "params", params, device_type);
  TORCH_CHECK(z.size() == params.size() && (grads.empty() || grads.size() == params.size()), op, ": got ",
              params.size(), " params, ", grads.size(), " grads and ", z.size(), " z");
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    for (const auto& [name, t] : {std::pair<const char*, const at::Tensor*>{"z", &z[i]},
                                  {"grads", grads.empty() ? nullptr : &grads[i]}}) {
      if (t == nullptr) continue;
      TORCH_CHECK_VALUE(t->sizes() == p.sizes() && t->scalar_type() == p.scalar_type() && t->device() == device,
                        op, ": ", name, "[", i, "] must match params[", i, "] (shape ", p.sizes(), ", ",
                        py_dtype(p.scalar_type()), ", ", device, "), got ", t->sizes(), ", ",
                        py_dtype(t->scalar_type()), ", ", t->device());
    }
    TORCH_CHECK_VALUE(is_flat_alike(p, grads.empty() ? p : grads[i], &z[i]), op, ": params[", i, "], its grad and ",
                      "its z must be dense and laid out alike (a view of a larger tensor is not supported)");
  }
  if (state.has_value()) {
    TORCH_CHECK(state->scalar_type() == at::kDouble && state->numel() == 4 && state->is_contiguous() &&
                    state->device() == device,
                op, ": state must be a contiguous float64 tensor [k, weight_sum, lr_max, scheduled_lr] on ", device);
  }
}

at::ScalarType grad_norm_dtype(at::TensorList grads) {
  for (const at::Tensor& g : grads)
    if (g.scalar_type() == at::kDouble) return at::kDouble;
  return at::kFloat;
}

c10::Device check_sgd_call(const SgdArgs& args, c10::DeviceType device_type) {
  const at::TensorList params = args.params, grads = args.grads, momentum_buffers = args.momentum_buffers;
  const at::TensorList steps = args.steps;
  const double lr = args.hyper.lr, momentum = args.hyper.momentum, dampening = args.hyper.dampening;
  const double weight_decay = args.hyper.weight_decay;
  const auto& grad_scale = args.grad_scale;
  const auto& schedule = args.schedule;
  const auto& schedule_state = args.schedule_state;
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n, "fusedlr.sgd_: got ", n, " params but ", grads.size(), " grads");
  if (const char* bad = sgd_hyperparameter_problem(args.hyper)) {
    const std::string what = bad;
    TORCH_CHECK_VALUE(what != "lr", "fusedlr.sgd_: Invalid learning rate: ", format_number(lr));
    TORCH_CHECK_VALUE(what != "momentum", "fusedlr.sgd_: Invalid momentum value: ", format_number(momentum));
    TORCH_CHECK_VALUE(what != "dampening", "fusedlr.sgd_: Invalid dampening value: ", format_number(dampening));
    TORCH_CHECK_VALUE(what != "weight_decay", "fusedlr.sgd_: Invalid weight_decay value: ",
                      format_number(weight_decay));
    TORCH_CHECK_VALUE(false, "fusedlr.sgd_: Nesterov momentum requires a momentum and zero dampening");
  }
  if (momentum == 0.0) {
    TORCH_CHECK(momentum_buffers.empty() && steps.empty(),
                "fusedlr.sgd_: momentum is 0, so momentum_buffers and steps must be empty");
  } else {
    TORCH_CHECK(momentum_buffers.size() == n, "fusedlr.sgd_: got ", n, " params but ", momentum_buffers.size(),
                " momentum_buffers");
    TORCH_CHECK(steps.size() == n, "fusedlr.sgd_: got ", n, " params but ", steps.size(), " steps");
  }
  const c10::Device device = n > 0                        ? params[0].device()
                             : schedule_state.has_value() ? schedule_state->device()
                                                          : c10::Device(device_type);
  TORCH_CHECK(device.type() == device_type, "fusedlr.sgd_: the tensors are on ", device, ", expected ",
              c10::DeviceTypeName(device_type));
  check_scalar_tensor(args.lr_tensor, "lr_tensor", device);
  check_scalar_tensor(grad_scale, "grad_scale", device);
  check_scalar_tensor(args.found_inf, "found_inf", device);
  check_scalar_tensor(args.grad_clip, "grad_clip", device);
  if (args.grad_ratios.has_value()) {
    const at::Tensor& r = *args.grad_ratios;
    TORCH_CHECK(r.scalar_type() == at::kDouble && r.dim() == 1 && r.numel() == static_cast<int64_t>(n) &&
                    r.is_contiguous() && r.device() == device,
                "fusedlr.sgd_: grad_ratios must be a contiguous float64 tensor of ", n, " elements (one per param) on ",
                device, ", got ", r.numel(), " ", r.scalar_type(), " on ", r.device());
  }
  TORCH_CHECK(schedule.has_value() == schedule_state.has_value(),
              "fusedlr.sgd_: schedule and schedule_state come together");
  if (schedule.has_value()) {
    TORCH_CHECK(schedule->device().is_cpu() && schedule->scalar_type() == at::kByte && schedule->is_contiguous() &&
                    schedule->numel() == static_cast<int64_t>(sizeof(ScheduleData)),
                "fusedlr.sgd_: schedule must be a contiguous CPU uint8 tensor of ", sizeof(ScheduleData),
                " bytes (Schedule.to_bytes() of this build), got ", schedule->numel(), " ",
                schedule->scalar_type(), " on ", schedule->device());
    ScheduleData data;
    read_schedule(*schedule, &data);
    // The same validator as Schedule's factories and __setstate__: bytes from anywhere.
    const std::string problem = schedule_error(data);
    TORCH_CHECK_VALUE(problem.empty(), "fusedlr.sgd_: schedule: ", problem);
    TORCH_CHECK(schedule_state->device() == device && schedule_state->scalar_type() == at::kDouble &&
                    schedule_state->numel() == 3 && schedule_state->is_contiguous(),
                "fusedlr.sgd_: schedule_state must be a contiguous float64 tensor [step, lr, factor] on ", device,
                ", got ", schedule_state->numel(), " ", schedule_state->scalar_type(), " on ",
                schedule_state->device());
  }
  return device;
}

namespace {
/** Whether elements of `t` share memory (an expand()ed tensor); a dense tensor is answered at once. */
bool may_overlap_itself(const at::Tensor& t) {
  return !t.is_non_overlapping_and_dense() && at::has_internal_overlap(t) == at::MemOverlap::Yes;
}
}  // namespace

void check_sgd_tensor(const SgdArgs& args, size_t i, c10::Device device) {
  // Each problem with one tensor names it as list[i] (params[i], grads[i], momentum_buffers[i],
  // steps[i]): fusedlr.SGD translates that into "param group g, params[j]" and nothing else.
  const bool has_momentum = args.hyper.has_momentum();
  const at::Tensor& p = args.params[i];
  const at::Tensor& g = args.grads[i];
  TORCH_CHECK_VALUE(p.layout() == at::kStrided && g.layout() == at::kStrided, "fusedlr.sgd_: params[", i,
                    "] and grads[", i, "] must be dense (strided); sparse gradients are not supported by the "
                    "fused kernel");
  TORCH_CHECK_TYPE(is_supported_dtype(p.scalar_type()), "fusedlr.sgd_: params[", i, "] has dtype ",
                   py_dtype(p.scalar_type()), "; supported: ", supported_list());
  TORCH_CHECK_VALUE(p.device() == device, "fusedlr.sgd_: params[", i, "] is on ", p.device(),
                    " but params[0] is on ", device, "; one call takes tensors of one device");
  TORCH_CHECK_VALUE(g.device() == device, "fusedlr.sgd_: grads[", i, "] is on ", g.device(), " but params[", i,
                    "] is on ", device);
  TORCH_CHECK_TYPE(g.scalar_type() == p.scalar_type(), "fusedlr.sgd_: grads[", i, "] has dtype ",
                   py_dtype(g.scalar_type()), " but params[", i, "] has dtype ", py_dtype(p.scalar_type()));
  TORCH_CHECK_VALUE(g.sizes() == p.sizes(), "fusedlr.sgd_: grads[", i, "] has shape ", py_shape(g.sizes()),
                    " but params[", i, "] has shape ", py_shape(p.sizes()));
  // Tensors the step writes must not alias themselves (an expand()ed tensor does): the staged
  // copy-back after the kernel would throw half-way, leaving earlier tensors stepped and the
  // step counters not advanced. Refuse before anything is written.
  TORCH_CHECK_VALUE(!may_overlap_itself(p), "fusedlr.sgd_: params[", i,
                    "] has elements that share memory (e.g. an expanded tensor) and cannot be updated in place");
  TORCH_CHECK_VALUE(!args.grad_scale.has_value() || !may_overlap_itself(g),
                    "fusedlr.sgd_: grads[", i, "] has elements that share memory (e.g. an expanded tensor), so "
                    "the unscaled gradient cannot be written back; clone() it");
  if (has_momentum) {
    const at::Tensor& b = args.momentum_buffers[i];
    const at::Tensor& s = args.steps[i];
    // The buffer has its parameter's dtype, or float32 for a half or bfloat16 parameter
    // (fusedlr.SGD(momentum_dtype=torch.float32)), which only the CPU kernel takes so far.
    const bool half_param = p.scalar_type() == at::kHalf || p.scalar_type() == at::kBFloat16;
    const bool float_buf = half_param && b.scalar_type() == at::kFloat;
    TORCH_CHECK_VALUE(b.layout() == at::kStrided && b.device() == device &&
                          (b.scalar_type() == p.scalar_type() || float_buf) && b.sizes() == p.sizes(),
                      "fusedlr.sgd_: momentum_buffers[", i, "] does not match params[", i, "] (shape ",
                      py_shape(b.sizes()), ", ", py_dtype(b.scalar_type()), ", ", b.device(), " against shape ",
                      py_shape(p.sizes()), ", ", py_dtype(p.scalar_type()), ", ", device,
                      "); was the parameter's .data replaced?");
    TORCH_CHECK_NOT_IMPLEMENTED(!float_buf || device.is_cpu(), "fusedlr.sgd_: momentum_buffers[", i,
                                "] is float32 for a ", py_dtype(p.scalar_type()), " parameter on ", device,
                                ": float32 momentum for half types (momentum_dtype=torch.float32) is implemented "
                                "on the CPU only; on CUDA the buffer takes its parameter's dtype");
    TORCH_CHECK_VALUE(!may_overlap_itself(b), "fusedlr.sgd_: momentum_buffers[", i,
                      "] has elements that share memory and cannot be updated in place");
    TORCH_CHECK_VALUE(s.numel() == 1 && s.scalar_type() == at::kFloat && s.device() == device, "fusedlr.sgd_: steps[",
                      i, "] must be a one-element float32 tensor on ", device, ", got ", s.numel(), " elements of ",
                      py_dtype(s.scalar_type()), " on ", s.device());
  }
}

void prefetch_sgd_ahead(const SgdArgs& args, size_t i, size_t end) {
  const bool momentum = args.hyper.has_momentum();
  if (const size_t far = i + 2 * kMetadataAhead; far < end) {
    prefetch_metadata(args.params[far]);
    prefetch_metadata(args.grads[far]);
    if (momentum) prefetch_metadata(args.momentum_buffers[far]), prefetch_metadata(args.steps[far]);
  }
  if (const size_t near = i + kMetadataAhead; near < end) {
    prefetch_storage(args.params[near]);
    prefetch_storage(args.grads[near]);
    if (momentum) prefetch_storage(args.momentum_buffers[near]), prefetch_storage(args.steps[near]);
  }
  if (const size_t next = i + kMetadataAhead / 2; momentum && next < end) prefetch_data(args.steps[next]);
}

void check_sgd_args(const SgdArgs& args, c10::DeviceType device_type) {
  const c10::Device device = check_sgd_call(args, device_type);
  const size_t n = args.params.size();
  for (size_t i = 0; i < n; ++i) {
    prefetch_sgd_ahead(args, i, n);
    check_sgd_tensor(args, i, device);
  }
}

void read_schedule(const at::Tensor& schedule, ScheduleData* out) {
  std::memcpy(out, schedule.const_data_ptr(), sizeof(ScheduleData));
}

namespace {

using Range = AddressRange;

/**
 * True when no two of `ranges` (all non-empty) overlap: in the order of where they begin, each
 * begins where the one before ends or later.
 *
 * A call lists its ranges list by list (params, grads, buffers), and each list is most often
 * allocated in address order or in reverse: a few runs already in order. Those are walked as one
 * merge, in place (no copy, no sort: 6000 ranges sorted took ~100 us on a Zen 4 EPYC, with
 * their scratch copies cold); many runs (a shuffled list) are copied and sorted.
 */
bool disjoint(const std::vector<Range>& ranges) {
  struct Run {
    ptrdiff_t at, end, step;  // the next range of the run, one past its last, +1 or -1
  };
  constexpr size_t kMaxRuns = 8;
  Run runs[kMaxRuns];
  size_t count = 0;
  const Range* r = ranges.data();
  const size_t n = ranges.size();
  for (size_t i = 0; i < n && count <= kMaxRuns;) {
    size_t j = i + 1;
    const bool down = j < n && r[j].begin < r[i].begin;
    while (j < n && (down ? r[j].begin < r[j - 1].begin : r[j].begin >= r[j - 1].begin)) ++j;
    const auto lo = static_cast<ptrdiff_t>(i), hi = static_cast<ptrdiff_t>(j);
    if (count < kMaxRuns) runs[count] = down ? Run{hi - 1, lo - 1, -1} : Run{lo, hi, 1};
    ++count;
    i = j;
  }
  uintptr_t end = 0;  // where the range before (in address order) ends
  if (count <= kMaxRuns) {
    for (;;) {
      Run* next = nullptr;
      for (size_t k = 0; k < count; ++k)
        if (runs[k].at != runs[k].end && (next == nullptr || r[runs[k].at].begin < r[next->at].begin)) next = &runs[k];
      if (next == nullptr) return true;
      if (r[next->at].begin < end) return false;
      end = r[next->at].end;
      next->at += next->step;
    }
  }
  thread_local std::vector<Range> sorted;
  sorted.assign(ranges.begin(), ranges.end());
  std::sort(sorted.begin(), sorted.end(), [](const Range& x, const Range& y) { return x.begin < y.begin; });
  for (const Range& x : sorted) {
    if (x.begin < end) return false;
    end = x.end;
  }
  return true;
}

}  // namespace

AddressRange address_range(const at::Tensor& t) {
  const int64_t numel = t.numel();
  if (numel == 0) return {0, 0};
  const auto begin = reinterpret_cast<uintptr_t>(t.const_data_ptr());
  int64_t span = numel;  // elements from the first to one past the last (strides are never negative)
  if (!t.is_non_overlapping_and_dense()) {
    span = 1;
    for (int64_t d = 0; d < t.dim(); ++d) span += (t.size(d) - 1) * t.stride(d);
  }
  return {begin, begin + static_cast<uintptr_t>(span * t.element_size())};
}

bool ranges_may_overlap(const std::vector<AddressRange>& ranges) {
  // The last few calls' ranges and answers, most recent first: one optimizer with two param
  // groups (decay / no decay) alternates between two lists every step.
  struct Seen {
    std::vector<Range> ranges;
    bool overlap = false;
  };
  constexpr size_t kSeen = 4;
  thread_local Seen seen[kSeen];
  for (size_t k = 0; k < kSeen; ++k) {
    if (seen[k].ranges == ranges) {
      std::rotate(seen, seen + k, seen + k + 1);
      return seen[0].overlap;
    }
  }
  bool overlap;
  if (std::any_of(ranges.begin(), ranges.end(), [](const Range& r) { return r.end <= r.begin; })) {
    thread_local std::vector<Range> nonempty;
    nonempty.clear();
    for (const Range& r : ranges)
      if (r.end > r.begin) nonempty.push_back(r);
    overlap = !disjoint(nonempty);
  } else {
    overlap = !disjoint(ranges);
  }
  std::rotate(seen, seen + kSeen - 1, seen + kSeen);  // the oldest becomes the first, then is replaced
  seen[0].ranges = ranges;
  seen[0].overlap = overlap;
  return overlap;
}

bool call_tensors_may_overlap(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers) {
  thread_local std::vector<Range> ranges;
  ranges.clear();
  for (const at::TensorList list : {params, grads, momentum_buffers})
    for (const at::Tensor& t : list) ranges.push_back(address_range(t));
  return ranges_may_overlap(ranges);
}

bool is_flat_alike(const at::Tensor& param, const at::Tensor& grad, const at::Tensor* buf) {
  if (!param.is_non_overlapping_and_dense()) return false;
  if (grad.strides() != param.strides()) return false;
  return buf == nullptr || buf->strides() == param.strides();
}

Staged::Staged(const at::Tensor& p, const at::Tensor& g, const at::Tensor* b)
    : param(p), grad(g), buf(b ? *b : at::Tensor()), param_c(p.contiguous()), grad_c(g.contiguous()),
      buf_c(b ? b->contiguous() : at::Tensor()) {}

void Staged::refresh() {
  param_c.copy_(param);
  grad_c.copy_(grad);
  if (buf.defined()) buf_c.copy_(buf);
}

void Staged::copy_back(bool unscaled) {
  param.copy_(param_c);
  if (buf.defined()) buf.copy_(buf_c);
  if (unscaled) grad.copy_(grad_c);
}

}  // namespace fusedlr
