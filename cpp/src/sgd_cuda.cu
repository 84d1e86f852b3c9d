// CUDA implementation of fusedlr::sgd_: multi-tensor apply over all tensors of one dtype per
// launch (few launches for very long lists), then one small launch advancing the step counters.
// No host synchronisation: lr_tensor, grad_scale and found_inf are read on the device.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <vector>

#include "fusedlr/grad_norm.h"
#include "fusedlr/lars.h"
#include "fusedlr/schedule.h"
#include "fusedlr/schedule_free.h"
#include "fusedlr/sgd_update.h"
#include "multi_tensor_apply.cuh"
#include "sgd_check.h"

namespace fusedlr::cuda {
namespace {

template <typename T>
struct MathType {
  using type = float;
};
template <>
struct MathType<double> {
  using type = double;
};

/** A one-element tensor of float or double read on the device (nullptr: absent). */
struct DeviceScalar {
  const void* ptr = nullptr;
  bool is_double = false;
  __device__ double load() const {
    return is_double ? *static_cast<const double*>(ptr) : static_cast<double>(*static_cast<const float*>(ptr));
  }
};

DeviceScalar device_scalar(const std::optional<at::Tensor>& t) {
  if (!t.has_value()) return {};
  return {t->const_data_ptr(), t->scalar_type() == at::kDouble};
}

/**
 * A one-element scalar on `device` for DeviceScalar: given on the CPU or another GPU (GradScaler's
 * found_inf, handed to every device's split) it is copied, once per call; half and bfloat16 ones
 * become float32, which DeviceScalar reads. The result must live until the kernel that reads it
 * has been launched.
 */
std::optional<at::Tensor> scalar_on(const std::optional<at::Tensor>& t, c10::Device device) {
  if (!t.has_value()) return t;
  const bool half = t->scalar_type() == at::kHalf || t->scalar_type() == at::kBFloat16;
  if (t->device() == device && !half) return t;
  return t->to(device, half ? at::kFloat : t->scalar_type(), /*non_blocking=*/true);
}

/** Elements each thread loads per stream before it computes (apex's ILP). */
constexpr int kIlp = 4;

/** kIlp elements of one stream, loaded and stored as one vector. */
template <typename T, int N>
struct alignas(sizeof(T) * N) Packed {
  T v[N];
};

/** Whether ptr is aligned to N elements of its type (a vector load of them is legal). */
template <int N, typename T>
__device__ FUSEDLR_INLINE bool is_aligned(const T* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % (sizeof(T) * N) == 0;
}

/**
 * One block updates one chunk of one tensor.
 *   meta.addresses[0|1|2][t]: param, grad, momentum buffer (null when momentum == 0) of tensor t
 *   meta.addresses[3][t]: its LARS trust ratio (a double; null without)
 *   meta.counter[t]: its step counter; 0 means the buffer takes its first step now
 *   coeffs: hyper-parameters in the math type (float for float/half/bfloat16)
 *   lr: when present, read instead of coeffs.neg_lr; grad_scale: grads are divided by it and
 *   written back; found_inf: non-zero skips the whole step; grad_clip: the (unscaled) grads are
 *   multiplied by it in the update, not in memory.
 */
template <typename scalar_t>
__global__ void __launch_bounds__(kBlockSize)
    sgd_kernel(TensorListMeta<4> meta, SgdCoeffs<typename MathType<scalar_t>::type> coeffs, DeviceScalar lr,
               DeviceScalar grad_scale, DeviceScalar found_inf, DeviceScalar grad_clip) {
  using math_t = typename MathType<scalar_t>::type;
  if (found_inf.ptr != nullptr && found_inf.load() != 0.0) return;
  if (lr.ptr != nullptr) coeffs.neg_lr = static_cast<math_t>(-lr.load());
  const math_t scale = grad_scale.ptr != nullptr ? static_cast<math_t>(grad_scale.load()) : math_t(1);
  const math_t clip = grad_clip.ptr != nullptr ? static_cast<math_t>(grad_clip.load()) : math_t(1);

  const int t = meta.block_to_tensor[blockIdx.x];
  const int64_t begin = static_cast<int64_t>(meta.block_to_chunk[blockIdx.x]) * kChunkSize;
  const int64_t end = min(meta.numel[t], begin + kChunkSize);
  auto* param = static_cast<scalar_t*>(meta.addresses[0][t]);
  auto* grad = static_cast<scalar_t*>(meta.addresses[1][t]);
  auto* buf = static_cast<scalar_t*>(meta.addresses[2][t]);
  const bool first = coeffs.has_momentum && *meta.counter[t] == 0.f;
  const auto* ratio_ptr = static_cast<const double*>(meta.addresses[3][t]);
  const math_t ratio = ratio_ptr != nullptr ? static_cast<math_t>(*ratio_ptr) : math_t(1);

  // kIlp elements per stream per thread are loaded into registers before any is computed or
  // stored, so a thread keeps kIlp loads of each stream in flight (one element at a time, the
  // loads wait behind the previous element's stores). With every pointer aligned to kIlp
  // elements, each stream's kIlp elements are one vector load (16 bytes for float); otherwise
  // (a sliced view) they are kIlp scalar loads, kBlockSize apart, as apex's multi_tensor_apply does.
  auto update = [&](math_t& p, math_t g, math_t& b) {
    if (grad_clip.ptr != nullptr) g = g * clip;
    sgd_update(p, g, b, coeffs, first, ratio);
  };
  const bool momentum = coeffs.has_momentum, unscale = grad_scale.ptr != nullptr;
  const int64_t n = end - begin;
  scalar_t* pp = param + begin;
  scalar_t* gp = grad + begin;
  scalar_t* bp = momentum ? buf + begin : nullptr;
  if (is_aligned<kIlp>(pp) && is_aligned<kIlp>(gp) && (!momentum || is_aligned<kIlp>(bp))) {
    using Pack = Packed<scalar_t, kIlp>;
    const int64_t packs = n / kIlp;
    for (int64_t k = threadIdx.x; k < packs; k += kBlockSize) {
      Pack pv = reinterpret_cast<const Pack*>(pp)[k], gv = reinterpret_cast<const Pack*>(gp)[k], bv{};
      if (momentum) bv = reinterpret_cast<const Pack*>(bp)[k];
#pragma unroll
      for (int j = 0; j < kIlp; ++j) {
        math_t p = static_cast<math_t>(pv.v[j]), g = static_cast<math_t>(gv.v[j]);
        math_t b = momentum ? static_cast<math_t>(bv.v[j]) : math_t(0);
        if (unscale) {
          g = g / scale;
          gv.v[j] = static_cast<scalar_t>(g);
        }
        update(p, g, b);
        pv.v[j] = static_cast<scalar_t>(p);
        bv.v[j] = static_cast<scalar_t>(b);
      }
      reinterpret_cast<Pack*>(pp)[k] = pv;
      if (unscale) reinterpret_cast<Pack*>(gp)[k] = gv;
      if (momentum) reinterpret_cast<Pack*>(bp)[k] = bv;
    }
    // The last n % kIlp elements, one per thread.
    for (int64_t i = packs * kIlp + threadIdx.x; i < n; i += kBlockSize) {
      math_t p = static_cast<math_t>(pp[i]), g = static_cast<math_t>(gp[i]);
      math_t b = momentum ? static_cast<math_t>(bp[i]) : math_t(0);
      if (unscale) {
        g = g / scale;
        gp[i] = static_cast<scalar_t>(g);
      }
      update(p, g, b);
      pp[i] = static_cast<scalar_t>(p);
      if (momentum) bp[i] = static_cast<scalar_t>(b);
    }
    return;
  }
  for (int64_t base = 0; base < n; base += int64_t{kBlockSize} * kIlp) {
    math_t p[kIlp], g[kIlp], b[kIlp];
#pragma unroll
    for (int j = 0; j < kIlp; ++j) {
      const int64_t i = base + threadIdx.x + j * kBlockSize;
      p[j] = g[j] = b[j] = math_t(0);
      if (i < n) {
        p[j] = static_cast<math_t>(pp[i]);
        g[j] = static_cast<math_t>(gp[i]);
        if (momentum) b[j] = static_cast<math_t>(bp[i]);
      }
    }
#pragma unroll
    for (int j = 0; j < kIlp; ++j) {
      const int64_t i = base + threadIdx.x + j * kBlockSize;
      if (i >= n) continue;
      if (unscale) {
        g[j] = g[j] / scale;
        gp[i] = static_cast<scalar_t>(g[j]);
      }
      update(p[j], g[j], b[j]);
      pp[i] = static_cast<scalar_t>(p[j]);
      if (momentum) bp[i] = static_cast<scalar_t>(b[j]);
    }
  }
}

/**
 * The learning rate of this step, on the device: state = [step, lr, factor];
 * lr = schedule_lr(data, step, base) * factor, with base = the lr tensor if given, else base_lr.
 * One thread; it runs before the update kernel on the same stream, which reads state[1].
 */
__global__ void advance_schedule(ScheduleData data, double* state, DeviceScalar base_tensor, double base_lr) {
  const double base = base_tensor.ptr != nullptr ? base_tensor.load() : base_lr;
  state[1] = schedule_lr(data, schedule_counter_step(state[0]), base) * state[2];
  state[0] += 1.0;
}

constexpr int kMaxCounters = 480;
struct CounterList {
  float* ptr[kMaxCounters];
};

/** steps[i] += 1 for every counter, unless found_inf says the step was skipped. */
__global__ void advance_counters(CounterList list, int count, DeviceScalar found_inf) {
  if (found_inf.ptr != nullptr && found_inf.load() != 0.0) return;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) *list.ptr[i] += 1.f;
}

/**
 * Blocks per launch for the current GPU: whole waves of its multiprocessors, two of our 512-thread
 * blocks resident on each (ptxas: at most 66 registers a thread, so 2 x 512 x 66 fit in 64K).
 */
int launch_blocks() {
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, c10::cuda::current_device()));
  return blocks_per_launch(sms, 2);
}

template <typename scalar_t>
void launch_sgd(const std::vector<int64_t>& index, std::vector<at::Tensor>& params,
                std::vector<at::Tensor>& grads, std::vector<at::Tensor>& bufs, at::TensorList steps,
                const SgdCoeffs<double>& c, DeviceScalar lr, DeviceScalar grad_scale, DeviceScalar found_inf,
                DeviceScalar grad_clip, const double* ratios, cudaStream_t stream) {
  using math_t = typename MathType<scalar_t>::type;
  const SgdCoeffs<math_t> coeffs = broadcast<math_t>(c);
  const bool has_momentum = c.has_momentum;
  multi_tensor_apply<4>(
      static_cast<int64_t>(index.size()),
      [&](TensorListMeta<4>& meta, int slot, int64_t k) -> int64_t {
        const int64_t i = index[k];
        meta.addresses[0][slot] = params[i].data_ptr();
        meta.addresses[1][slot] = grads[i].data_ptr();
        meta.addresses[2][slot] = has_momentum ? bufs[i].data_ptr() : nullptr;
        meta.addresses[3][slot] = ratios != nullptr ? const_cast<double*>(ratios + i) : nullptr;
        meta.counter[slot] = has_momentum ? steps[i].mutable_data_ptr<float>() : nullptr;
        return params[i].numel();
      },
      [&](const TensorListMeta<4>& meta, int blocks) {
        sgd_kernel<scalar_t><<<blocks, kBlockSize, 0, stream>>>(meta, coeffs, lr, grad_scale, found_inf, grad_clip);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      },
      launch_blocks());
}

void sgd_cuda_(const SgdArgs& a) {
  // The step is not differentiable: its own tensor ops (staging copies) must not be recorded, or
  // refused as in-place ops on leaves, whatever the caller's grad mode.
  const at::NoGradGuard no_grad;
  check_sgd_args(a, c10::DeviceType::CUDA);
  const at::TensorList params = a.params, grads = a.grads, momentum_buffers = a.momentum_buffers, steps = a.steps;
  const std::optional<at::Tensor>& schedule = a.schedule;
  const std::optional<at::Tensor>& schedule_state = a.schedule_state;
  const size_t n = params.size();
  if (n == 0 && !schedule.has_value()) return;
  const c10::Device device = n > 0 ? params[0].device() : schedule_state->device();
  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool has_momentum = a.hyper.has_momentum();

  // The scalars on this device (scalar_on), read in-kernel.
  std::optional<at::Tensor> lr_d = scalar_on(a.lr_tensor, device);
  const std::optional<at::Tensor> scale_d = scalar_on(a.grad_scale, device), inf_d = scalar_on(a.found_inf, device),
                                  clip_d = scalar_on(a.grad_clip, device);
  if (schedule.has_value()) {
    // The schedule's bytes are host memory: read here, passed by value (no copy to the device).
    ScheduleData data;
    read_schedule(*schedule, &data);
    auto* state = static_cast<double*>(schedule_state->data_ptr());
    advance_schedule<<<1, 1, 0, stream>>>(data, state, device_scalar(lr_d), a.hyper.lr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    lr_d = schedule_state->select(0, 1);  // the update reads the lr the schedule just wrote
  }
  if (n == 0) return;

  // Tensors that are not flat and alike are stepped through contiguous copies, copied back after.
  std::vector<at::Tensor> p(params.begin(), params.end()), g(grads.begin(), grads.end());
  std::vector<at::Tensor> b = has_momentum ? std::vector<at::Tensor>(momentum_buffers.begin(), momentum_buffers.end())
                                           : std::vector<at::Tensor>(n);
  std::vector<Staged> staged;
  for (size_t i = 0; i < n; ++i) {
    if (!is_flat_alike(p[i], g[i], has_momentum ? &b[i] : nullptr)) {
      staged.emplace_back(p[i], g[i], has_momentum ? &b[i] : nullptr);
      p[i] = staged.back().param_c;
      g[i] = staged.back().grad_c;
      if (has_momentum) b[i] = staged.back().buf_c;
    }
  }

  // (hyper.lr here; the kernel reads the lr tensor, or the schedule's lr, instead when there is one.)
  SgdCoeffs<double> coeffs = sgd_coeffs<double>(a.hyper, a.hyper.lr);
  coeffs.has_ratio = a.grad_ratios.has_value();
  const double* ratios = a.grad_ratios.has_value() ? a.grad_ratios->const_data_ptr<double>() : nullptr;
  const DeviceScalar lr_s = device_scalar(lr_d), scale_s = device_scalar(scale_d), inf_s = device_scalar(inf_d),
                     clip_s = device_scalar(clip_d);
  auto launch = [&](at::ScalarType dtype, const std::vector<int64_t>& index) {
    switch (dtype) {
      case at::kFloat: launch_sgd<float>(index, p, g, b, steps, coeffs, lr_s, scale_s, inf_s, clip_s, ratios, stream); break;
      case at::kDouble: launch_sgd<double>(index, p, g, b, steps, coeffs, lr_s, scale_s, inf_s, clip_s, ratios, stream); break;
      case at::kHalf: launch_sgd<c10::Half>(index, p, g, b, steps, coeffs, lr_s, scale_s, inf_s, clip_s, ratios, stream); break;
      default: launch_sgd<c10::BFloat16>(index, p, g, b, steps, coeffs, lr_s, scale_s, inf_s, clip_s, ratios, stream); break;
    }
  };
  if (call_tensors_may_overlap(params, grads, momentum_buffers)) {
    // Tensors of the call share memory (a parameter listed twice, a buffer shared by two params):
    // blocks of one launch would race on it. One launch per tensor, in list order; the stream runs
    // them one after another.
    for (size_t i = 0; i < n; ++i) launch(p[i].scalar_type(), {static_cast<int64_t>(i)});
  } else {
    // One launch per dtype present (mixed dtypes in one group are allowed).
    for (const at::ScalarType dtype : supported_dtypes()) {
      std::vector<int64_t> index;
      for (size_t i = 0; i < n; ++i)
        if (p[i].scalar_type() == dtype) index.push_back(static_cast<int64_t>(i));
      if (!index.empty()) launch(dtype, index);
    }
  }
  for (Staged& st : staged) st.copy_back(a.grad_scale.has_value());
  if (has_momentum) {
    for (size_t start = 0; start < n; start += kMaxCounters) {
      CounterList list{};
      const int count = static_cast<int>(std::min<size_t>(kMaxCounters, n - start));
      for (int k = 0; k < count; ++k) list.ptr[k] = steps[start + k].mutable_data_ptr<float>();
      advance_counters<<<(count + 255) / 256, 256, 0, stream>>>(list, count, inf_s);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
}

/** A block's join of its threads' accumulations (norm_join, fixed tree order). */
__device__ double block_norm_join(double acc, NormKind kind) {
  __shared__ double part[kBlockSize];
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) part[threadIdx.x] = norm_join(part[threadIdx.x], part[threadIdx.x + s], kind);
    __syncthreads();
  }
  return part[0];
}

/** One block accumulates one chunk of one grad into partials[first + blockIdx.x]. */
template <typename scalar_t>
__global__ void __launch_bounds__(kBlockSize)
    norm_kernel(TensorListMeta<1> meta, double* partials, int64_t first, NormKind kind, double p) {
  const int t = meta.block_to_tensor[blockIdx.x];
  const int64_t begin = static_cast<int64_t>(meta.block_to_chunk[blockIdx.x]) * kChunkSize;
  const int64_t end = min(meta.numel[t], begin + kChunkSize);
  const auto* x = static_cast<const scalar_t*>(meta.addresses[0][t]);
  double acc = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kBlockSize)
    acc = norm_join(acc, norm_term(static_cast<double>(static_cast<typename MathType<scalar_t>::type>(x[i])), kind, p),
                    kind);
  const double block = block_norm_join(acc, kind);
  if (threadIdx.x == 0) partials[first + blockIdx.x] = block;
}

/** [total, coef] from the joined terms (grad_norm's and clip_coefficient's result), one thread. */
template <typename out_t>
__device__ void write_norm_and_coef(double joined, NormKind kind, double p, DeviceScalar grad_scale, double max_norm,
                                    out_t* out) {
  double value = norm_finish(joined, kind, p);
  if (grad_scale.ptr != nullptr) value /= grad_scale.load();
  const out_t total = static_cast<out_t>(value);
  out[0] = total;
  out[1] = clip_coefficient<out_t>(total, max_norm);
}

/**
 * One block joins the partials in order, then writes [total, coef] (grad_norm), or, with
 * `terms_only`, the joined terms themselves (grad_norm_terms, into out_terms).
 */
template <typename out_t>
__global__ void __launch_bounds__(kBlockSize)
    norm_finish_kernel(const double* partials, int64_t count, NormKind kind, double p, DeviceScalar grad_scale,
                       double max_norm, out_t* out, double* out_terms) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kBlockSize) acc = norm_join(acc, partials[i], kind);
  const double joined = block_norm_join(acc, kind);
  if (threadIdx.x != 0) return;
  if (out_terms != nullptr) *out_terms = joined;
  else write_norm_and_coef<out_t>(joined, kind, p, grad_scale, max_norm, out);
}

template <typename out_t>
__global__ void clip_coefficient_kernel(const double* terms, NormKind kind, double p, DeviceScalar grad_scale,
                                        double max_norm, out_t* out) {
  write_norm_and_coef<out_t>(*terms, kind, p, grad_scale, max_norm, out);
}

template <typename scalar_t>
void launch_norm(const std::vector<int64_t>& index, const std::vector<at::Tensor>& grads, double* partials,
                 int64_t& first, NormKind kind, double p, cudaStream_t stream) {
  multi_tensor_apply<1>(
      static_cast<int64_t>(index.size()),
      [&](TensorListMeta<1>& meta, int slot, int64_t k) -> int64_t {
        meta.addresses[0][slot] = const_cast<void*>(grads[index[k]].const_data_ptr());
        meta.counter[slot] = nullptr;
        return grads[index[k]].numel();
      },
      [&](const TensorListMeta<1>& meta, int blocks) {
        norm_kernel<scalar_t><<<blocks, kBlockSize, 0, stream>>>(meta, partials, first, kind, p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        first += blocks;
      });
}

/**
 * The grads' chunks' partial terms on CUDA: one block per chunk of every grad writes its partial
 * accumulation into a new float64 tensor (one launch per dtype present, few for long lists);
 * the number written is the tensor's size.
 */
at::Tensor grad_norm_partials(const std::vector<at::Tensor>& g, NormKind kind, double norm_type, c10::Device device,
                              cudaStream_t stream) {
  int64_t chunks = 0;
  for (const at::Tensor& t : g) chunks += (t.numel() + kChunkSize - 1) / kChunkSize;
  at::Tensor partials = at::empty({chunks}, at::TensorOptions().device(device).dtype(at::kDouble));
  int64_t first = 0;
  for (const at::ScalarType dtype : supported_dtypes()) {
    std::vector<int64_t> index;
    for (size_t i = 0; i < g.size(); ++i)
      if (g[i].scalar_type() == dtype) index.push_back(static_cast<int64_t>(i));
    if (index.empty()) continue;
    double* out = partials.data_ptr<double>();
    switch (dtype) {
      case at::kFloat: launch_norm<float>(index, g, out, first, kind, norm_type, stream); break;
      case at::kDouble: launch_norm<double>(index, g, out, first, kind, norm_type, stream); break;
      case at::kHalf: launch_norm<c10::Half>(index, g, out, first, kind, norm_type, stream); break;
      default: launch_norm<c10::BFloat16>(index, g, out, first, kind, norm_type, stream); break;
    }
  }
  return partials;
}

std::vector<at::Tensor> dense_grads(at::TensorList grads) {
  std::vector<at::Tensor> g;
  g.reserve(grads.size());
  for (const at::Tensor& t : grads) g.push_back(t.is_non_overlapping_and_dense() ? t : t.contiguous());
  return g;
}

/**
 * grad_norm on CUDA: the chunks' partials, then one block joins them in order (deterministic) and
 * writes [total, coef]; no host synchronisation (graph-capturable).
 */
at::Tensor grad_norm_cuda(at::TensorList grads, double norm_type, double max_norm,
                          const std::optional<at::Tensor>& grad_scale) {
  const at::NoGradGuard no_grad;
  const c10::Device device = check_grad_norm_call(grads, norm_type, max_norm, grad_scale, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const NormKind kind = norm_kind(norm_type);
  const at::Tensor partials = grad_norm_partials(dense_grads(grads), kind, norm_type, device, stream);
  const at::ScalarType out_dtype = grad_norm_dtype(grads);
  at::Tensor result = at::empty({2}, at::TensorOptions().device(device).dtype(out_dtype));
  const std::optional<at::Tensor> scale_d = scalar_on(grad_scale, device);  // (alive until the launch)
  const DeviceScalar scale = device_scalar(scale_d);
  const double* part = partials.const_data_ptr<double>();
  if (out_dtype == at::kDouble) {
    norm_finish_kernel<double><<<1, kBlockSize, 0, stream>>>(part, partials.numel(), kind, norm_type, scale, max_norm,
                                                             result.data_ptr<double>(), nullptr);
  } else {
    norm_finish_kernel<float><<<1, kBlockSize, 0, stream>>>(part, partials.numel(), kind, norm_type, scale, max_norm,
                                                            result.data_ptr<float>(), nullptr);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return result;
}

at::Tensor grad_norm_terms_cuda(at::TensorList grads, double norm_type) {
  const at::NoGradGuard no_grad;
  const c10::Device device = check_grad_norm_call(grads, norm_type, 0.0, std::nullopt, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const NormKind kind = norm_kind(norm_type);
  const at::Tensor partials = grad_norm_partials(dense_grads(grads), kind, norm_type, device, stream);
  at::Tensor terms = at::empty({1}, at::TensorOptions().device(device).dtype(at::kDouble));
  norm_finish_kernel<float><<<1, kBlockSize, 0, stream>>>(partials.const_data_ptr<double>(), partials.numel(), kind,
                                                          norm_type, DeviceScalar{}, 0.0, nullptr,
                                                          terms.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return terms;
}

at::Tensor clip_coefficient_cuda(const at::Tensor& terms, double norm_type, double max_norm,
                                 const std::optional<at::Tensor>& grad_scale, at::ScalarType dtype) {
  check_clip_coefficient_call(terms, norm_type, max_norm, grad_scale, dtype, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(terms.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor result = at::empty({2}, at::TensorOptions().device(terms.device()).dtype(dtype));
  const std::optional<at::Tensor> scale_d = scalar_on(grad_scale, terms.device());  // (alive until the launch)
  const DeviceScalar scale = device_scalar(scale_d);
  const NormKind kind = norm_kind(norm_type);
  if (dtype == at::kDouble) {
    clip_coefficient_kernel<double><<<1, 1, 0, stream>>>(terms.const_data_ptr<double>(), kind, norm_type, scale,
                                                         max_norm, result.data_ptr<double>());
  } else {
    clip_coefficient_kernel<float><<<1, 1, 0, stream>>>(terms.const_data_ptr<double>(), kind, norm_type, scale,
                                                        max_norm, result.data_ptr<float>());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return result;
}

/** Schedule-free SGD: the group's scalars advanced on the device, its coefficients written to k[0..3]. */
__global__ void sf_advance_kernel(double* state, SfHyper hyper, double* k) {
  const SfCoeffs<double> c = sf_advance(state, hyper);
  k[0] = c.c, k[1] = c.y_coef, k[2] = c.neg_lr, k[3] = c.weight_decay;
}

/**
 * One block steps one chunk of one tensor: meta.addresses[0|1|2][t] are y (the param), its grad
 * and z; k the coefficients sf_advance_kernel wrote (c, y_coef, -lr, weight_decay).
 */
template <typename scalar_t>
__global__ void __launch_bounds__(kBlockSize) sf_kernel(TensorListMeta<3> meta, const double* k, bool has_weight_decay) {
  using math_t = typename MathType<scalar_t>::type;
  const SfCoeffs<math_t> c{static_cast<math_t>(k[0]), static_cast<math_t>(k[1]), static_cast<math_t>(k[2]),
                           static_cast<math_t>(k[3]), has_weight_decay};
  const bool small = fabs(k[0]) < 0.5;
  const int t = meta.block_to_tensor[blockIdx.x];
  const int64_t begin = static_cast<int64_t>(meta.block_to_chunk[blockIdx.x]) * kChunkSize;
  const int64_t end = min(meta.numel[t], begin + kChunkSize);
  auto* y = static_cast<scalar_t*>(meta.addresses[0][t]);
  const auto* g = static_cast<const scalar_t*>(meta.addresses[1][t]);
  auto* z = static_cast<scalar_t*>(meta.addresses[2][t]);
  for (int64_t i = begin + threadIdx.x; i < end; i += kBlockSize) {
    math_t yv = static_cast<math_t>(y[i]), zv = static_cast<math_t>(z[i]);
    sf_update(yv, static_cast<math_t>(g[i]), zv, c, small);
    y[i] = static_cast<scalar_t>(yv);
    z[i] = static_cast<scalar_t>(zv);
  }
}

/** y = lerp(y, z, w) (meta.addresses[0|2][t]; [1] unused): the train/eval switch. */
template <typename scalar_t>
__global__ void __launch_bounds__(kBlockSize) sf_lerp_kernel(TensorListMeta<3> meta, double w) {
  using math_t = typename MathType<scalar_t>::type;
  const bool small = fabs(w) < 0.5;
  const int t = meta.block_to_tensor[blockIdx.x];
  const int64_t begin = static_cast<int64_t>(meta.block_to_chunk[blockIdx.x]) * kChunkSize;
  const int64_t end = min(meta.numel[t], begin + kChunkSize);
  auto* y = static_cast<scalar_t*>(meta.addresses[0][t]);
  const auto* z = static_cast<const scalar_t*>(meta.addresses[2][t]);
  for (int64_t i = begin + threadIdx.x; i < end; i += kBlockSize)
    y[i] = static_cast<scalar_t>(lerp_torch(static_cast<math_t>(y[i]), static_cast<math_t>(z[i]),
                                            static_cast<math_t>(w), small));
}

/** Launch `kernel<scalar_t>` over (y, g or nothing, z) of every tensor, one dtype at a time. */
template <typename Launch>
void for_each_dtype_sf(at::TensorList y, at::TensorList g, at::TensorList z, Launch&& launch) {
  for (const at::ScalarType dtype : supported_dtypes()) {
    std::vector<int64_t> index;
    for (size_t i = 0; i < y.size(); ++i)
      if (y[i].scalar_type() == dtype) index.push_back(static_cast<int64_t>(i));
    if (index.empty()) continue;
    auto fill = [&](TensorListMeta<3>& meta, int slot, int64_t k) -> int64_t {
      const int64_t i = index[k];
      meta.addresses[0][slot] = y[i].data_ptr();
      meta.addresses[1][slot] = g.empty() ? nullptr : const_cast<void*>(g[i].const_data_ptr());
      meta.addresses[2][slot] = z[i].data_ptr();
      meta.counter[slot] = nullptr;
      return y[i].numel();
    };
    launch(dtype, index, fill);
  }
}

void sf_sgd_cuda_(at::TensorList params, at::TensorList grads, at::TensorList z, const at::Tensor& state, double lr,
                  double momentum, double weight_decay, double warmup_steps, double r, double weight_lr_power) {
  const at::NoGradGuard no_grad;
  check_sf_call(params, grads, z, state, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(state.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor k = at::empty({4}, state.options());
  sf_advance_kernel<<<1, 1, 0, stream>>>(state.data_ptr<double>(),
                                         SfHyper{lr, momentum, weight_decay, warmup_steps, r, weight_lr_power},
                                         k.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const double* kp = k.const_data_ptr<double>();
  const bool has_wd = weight_decay != 0.0;
  for_each_dtype_sf(params, grads, z, [&](at::ScalarType dtype, const std::vector<int64_t>& index, auto& fill) {
    multi_tensor_apply<3>(static_cast<int64_t>(index.size()), fill, [&](const TensorListMeta<3>& meta, int blocks) {
      switch (dtype) {
        case at::kFloat: sf_kernel<float><<<blocks, kBlockSize, 0, stream>>>(meta, kp, has_wd); break;
        case at::kDouble: sf_kernel<double><<<blocks, kBlockSize, 0, stream>>>(meta, kp, has_wd); break;
        case at::kHalf: sf_kernel<c10::Half><<<blocks, kBlockSize, 0, stream>>>(meta, kp, has_wd); break;
        default: sf_kernel<c10::BFloat16><<<blocks, kBlockSize, 0, stream>>>(meta, kp, has_wd); break;
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void sf_lerp_cuda_(at::TensorList params, at::TensorList z, double weight) {
  const at::NoGradGuard no_grad;
  check_sf_call(params, {}, z, std::nullopt, c10::DeviceType::CUDA);
  if (params.empty()) return;
  const c10::cuda::CUDAGuard guard(params[0].device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  for_each_dtype_sf(params, {}, z, [&](at::ScalarType dtype, const std::vector<int64_t>& index, auto& fill) {
    multi_tensor_apply<3>(static_cast<int64_t>(index.size()), fill, [&](const TensorListMeta<3>& meta, int blocks) {
      switch (dtype) {
        case at::kFloat: sf_lerp_kernel<float><<<blocks, kBlockSize, 0, stream>>>(meta, weight); break;
        case at::kDouble: sf_lerp_kernel<double><<<blocks, kBlockSize, 0, stream>>>(meta, weight); break;
        case at::kHalf: sf_lerp_kernel<c10::Half><<<blocks, kBlockSize, 0, stream>>>(meta, weight); break;
        default: sf_lerp_kernel<c10::BFloat16><<<blocks, kBlockSize, 0, stream>>>(meta, weight); break;
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

/** Per tensor: its two norms (0-dim tensors of any fused dtype) in, its trust ratio out. */
constexpr int kMaxRatios = 128;
struct RatioList {
  const void* w[kMaxRatios];
  const void* g[kMaxRatios];
  c10::ScalarType dtype[kMaxRatios];
};

__device__ double load_as_double(const void* p, c10::ScalarType dtype) {
  switch (dtype) {
    case c10::ScalarType::Double: return *static_cast<const double*>(p);
    case c10::ScalarType::Half: return static_cast<float>(*static_cast<const c10::Half*>(p));
    case c10::ScalarType::BFloat16: return static_cast<float>(*static_cast<const c10::BFloat16*>(p));
    default: return *static_cast<const float*>(p);
  }
}

__global__ void lars_ratio_kernel(RatioList list, int count, double* out, double weight_decay, double trust_coeff,
                                  double eps, bool trust_clip, double lr, DeviceScalar lr_tensor,
                                  DeviceScalar grad_scale, DeviceScalar grad_clip) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const double step_lr = lr_tensor.ptr != nullptr ? lr_tensor.load() : lr;
  // The gradient the update applies: unscaled (GradScaler), then clipped.
  const double factor = (grad_clip.ptr != nullptr ? grad_clip.load() : 1.0) /
                        (grad_scale.ptr != nullptr ? grad_scale.load() : 1.0);
  const double w = load_as_double(list.w[i], list.dtype[i]), g = load_as_double(list.g[i], list.dtype[i]) * factor;
  out[i] = list.dtype[i] == c10::ScalarType::Double
               ? lars_trust_ratio<double>(w, g, trust_coeff, weight_decay, eps, trust_clip, step_lr)
               : static_cast<double>(lars_trust_ratio<float>(static_cast<float>(w), static_cast<float>(g), trust_coeff,
                                                             weight_decay, eps, trust_clip, step_lr));
}

/**
 * lars_ratios on CUDA: the tensors' 2-norms by ATen's multi-tensor norm (two launches), then one
 * thread per tensor computes its ratio; no host synchronisation.
 */
at::Tensor lars_ratios_cuda(at::TensorList params, at::TensorList grads, double weight_decay, double trust_coeff,
                            double eps, bool trust_clip, double lr, const std::optional<at::Tensor>& lr_tensor,
                            const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& grad_clip) {
  const at::NoGradGuard no_grad;
  check_lars_ratios_call(params, grads, weight_decay, trust_coeff, eps, lr, lr_tensor, grad_scale, grad_clip,
                         c10::DeviceType::CUDA);
  const size_t n = params.size();
  const c10::Device device = n > 0 ? params[0].device() : c10::Device(c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = at::empty({static_cast<int64_t>(n)}, at::TensorOptions().device(device).dtype(at::kDouble));
  if (n == 0) return out;
  const std::vector<at::Tensor> w = at::_foreach_norm(params, 2), g = at::_foreach_norm(grads, 2);
  const std::optional<at::Tensor> lr_d = scalar_on(lr_tensor, device), scale_d = scalar_on(grad_scale, device),
                                  clip_d = scalar_on(grad_clip, device);
  for (size_t start = 0; start < n; start += kMaxRatios) {
    const int count = static_cast<int>(std::min<size_t>(kMaxRatios, n - start));
    RatioList list{};
    for (int k = 0; k < count; ++k) {
      list.w[k] = w[start + k].const_data_ptr();
      list.g[k] = g[start + k].const_data_ptr();
      list.dtype[k] = w[start + k].scalar_type();
    }
    lars_ratio_kernel<<<(count + 127) / 128, 128, 0, stream>>>(list, count, out.data_ptr<double>() + start,
                                                              weight_decay, trust_coeff, eps, trust_clip, lr,
                                                              device_scalar(lr_d), device_scalar(scale_d),
                                                              device_scalar(clip_d));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedlr, CUDA, m) {
  m.impl("lars_ratios", &lars_ratios_cuda);
  m.impl("sf_sgd_", &sf_sgd_cuda_);
  m.impl("sf_lerp_", &sf_lerp_cuda_);
  m.impl("grad_norm_terms", &grad_norm_terms_cuda);
  m.impl("clip_coefficient", &clip_coefficient_cuda);
  m.impl("sgd_", &sgd_op<sgd_cuda_>);
  m.impl("grad_norm", &grad_norm_cuda);
}

}  // namespace fusedlr::cuda
