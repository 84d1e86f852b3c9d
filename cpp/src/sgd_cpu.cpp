// CPU implementation of fusedlr::sgd_: one pass over all tensors of the call.
//
// Work is split by elements, not by tensors: the tensors are laid end to end as one virtual
// array of N elements and at::parallel_for hands each thread one contiguous range of it, which
// may cross many tensors. 2000 tiny tensors are then shared between cores just like one huge
// tensor. Each (tensor, range) piece goes to the SIMD kernel of the level chosen at run time.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/Version.h>
#include <c10/util/SmallVector.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "fusedlr/grad_norm.h"
#include "fusedlr/lars.h"
#include "fusedlr/schedule.h"
#include "fusedlr/schedule_free.h"
#include "sgd_check.h"
#include "sgd_cpu.h"
#include "sgd_cpu_kernel.h"

namespace fusedlr::cpu {
namespace {

using SpanFn = void (*)(c10::ScalarType, void*, void*, void*, c10::ScalarType, int64_t, const StepArgs&, bool, double);
using StreamFn = void (*)(float*, const float*, float*, int64_t);
using NormFn = double (*)(c10::ScalarType, const void*, int64_t, NormKind, double);
using SumSquares2Fn = void (*)(c10::ScalarType, const void*, const void*, int64_t, double&, double&);
using SfFn = void (*)(c10::ScalarType, void*, const void*, void*, int64_t, const SfCoeffs<double>&);
using LerpFn = void (*)(c10::ScalarType, void*, const void*, int64_t, double);

struct Level {
  SpanFn fn;
  const char* name;
  StreamFn stream;
  NormFn norm;
  SumSquares2Fn sum_squares2;
  SfFn sf;
  LerpFn lerp;
};

/** SIMD levels, lowest first; a kernel compiled for one runs on any CPU that has it. */
enum class SimdLevel : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

const char* level_name(SimdLevel level) {
  return level == SimdLevel::kAvx512 ? "AVX512" : level == SimdLevel::kAvx2 ? "AVX2" : "DEFAULT";
}

SimdLevel parse_level(const std::string& name) {
  if (name == "AVX512") return SimdLevel::kAvx512;
  if (name == "AVX2") return SimdLevel::kAvx2;
  return SimdLevel::kDefault;
}

/**
 * The best level this CPU and its operating system can run, asked of the CPU itself (cpuid, and
 * xgetbv for the OS's vector state, through the compiler's CPU model). Each level needs every
 * instruction set its kernel object is compiled with (FUSEDLR_FLAGS_<level> in CMakeLists.txt).
 */
SimdLevel cpu_max_level() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi") &&
                    __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("lzcnt");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return avx512 ? SimdLevel::kAvx512 : avx2 ? SimdLevel::kAvx2 : SimdLevel::kDefault;
#else
  return SimdLevel::kDefault;
#endif
}

/** The highest level compiled into this build that is at most `wanted`. */
Level compiled_level_at_most(SimdLevel wanted) {
#ifdef FUSEDLR_HAVE_AVX512
  if (wanted >= SimdLevel::kAvx512) return {&AVX512::sgd_span, "AVX512", &AVX512::stream_span, &AVX512::norm_span,
                                              &AVX512::sum_squares2, &AVX512::sf_span, &AVX512::lerp_span};
#endif
#ifdef FUSEDLR_HAVE_AVX2
  if (wanted >= SimdLevel::kAvx2) return {&AVX2::sgd_span, "AVX2", &AVX2::stream_span, &AVX2::norm_span, &AVX2::sum_squares2,
                                          &AVX2::sf_span, &AVX2::lerp_span};
#endif
  return {&DEFAULT::sgd_span, "DEFAULT", &DEFAULT::stream_span, &DEFAULT::norm_span, &DEFAULT::sum_squares2,
          &DEFAULT::sf_span, &DEFAULT::lerp_span};
}

// The level torch itself runs at (at::get_cpu_capability honours ATEN_CPU_CAPABILITY), but never
// above what the CPU has: torch believes ATEN_CPU_CAPABILITY=avx512 on an AVX2-only CPU, and
// our AVX-512 kernel would then die of SIGILL.
const Level& level() {
  static const Level chosen = compiled_level_at_most(
      std::min(parse_level(at::get_cpu_capability()), cpu_max_level()));
  return chosen;
}

// Below this many elements in the whole call one thread does the work: forking the pool
// costs more than it saves.
constexpr int64_t kGrainElements = 16384;

/** One tensor of the call, as flat memory: where it starts in the virtual concatenation. */
struct Piece {
  c10::ScalarType dtype;
  char* param;
  char* grad;
  char* buf;
  int64_t numel;
  int64_t start;
  int64_t itemsize;
  c10::ScalarType buf_dtype;  // dtype, or Float for half types' float32 momentum
  int64_t buf_itemsize;
  bool first;
  int staged;   // its index in the staged copies; -1: none (flat and alike), kToStage: not made yet
  float* step;  // its step counter (with momentum), counted up where the piece's last element is stepped
  double ratio;  // its LARS trust ratio (1 without)
};
constexpr int kToStage = -2;

// A call that moves more bytes than this (reads and writes) streams from beyond the cores' L2
// caches (2 MiB each on the Xeon, 512 KiB on Zen 2): its kernels prefetch ahead (see
// sgd_cpu_kernel.cpp); a smaller one is likely cache-resident, where prefetches only cost.
constexpr int64_t kPrefetchAboveBytes = int64_t{4} << 20;

/**
 * Prefetch the first kShortSpanBytes of a piece's streams: all of a short piece (whose kernel
 * does not prefetch), the start of a long one (whose kernel prefetches the rest as it goes).
 */
inline void prefetch_start(const Piece& pc) {
  const int64_t elements = std::min(pc.numel, kShortSpanBytes / pc.itemsize);
  for (int64_t o = 0; o < elements * pc.itemsize; o += 64) {
    __builtin_prefetch(pc.param + o, 1);
    __builtin_prefetch(pc.grad + o, 0);
  }
  if (pc.buf != nullptr)
    for (int64_t o = 0; o < elements * pc.buf_itemsize; o += 64) __builtin_prefetch(pc.buf + o, 1);
}

}  // namespace

const char* kernel_level() { return level().name; }

const char* cpu_level() { return level_name(cpu_max_level()); }

const char* choose_level(const std::string& torch_level, const std::string& cpu_level) {
  return compiled_level_at_most(std::min(parse_level(torch_level), parse_level(cpu_level))).name;
}

void stream_reference(const at::Tensor& p, const at::Tensor& g, const std::optional<at::Tensor>& b) {
  auto fits = [&](const at::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() && t.numel() == p.numel();
  };
  TORCH_CHECK_VALUE(fits(p) && fits(g) && (!b.has_value() || fits(*b)),
                    "stream_reference: p, g (and b) must be contiguous float32 CPU tensors of one size");
  float* pp = p.data_ptr<float>();
  const float* gp = g.const_data_ptr<float>();
  float* bp = b.has_value() ? b->data_ptr<float>() : nullptr;
  const StreamFn stream = level().stream;
  at::parallel_for(0, p.numel(), kGrainElements, [&](int64_t lo, int64_t hi) {
    stream(pp + lo, gp + lo, bp ? bp + lo : nullptr, hi - lo);
  });
}

namespace {

void sgd_cpu_(const SgdArgs& a) {
  // The step is not differentiable: its own tensor ops (staging copies) must not be recorded, or
  // refused as in-place ops on leaves, whatever the caller's grad mode.
  const at::NoGradGuard no_grad;
  const c10::Device device = check_sgd_call(a, c10::DeviceType::CPU);
  const at::TensorList params = a.params, grads = a.grads, momentum_buffers = a.momentum_buffers, steps = a.steps;
  const size_t n = params.size();
  const bool has_momentum = a.hyper.has_momentum();

  // Every tensor is checked, then becomes a flat piece of the virtual concatenation (through a
  // contiguous copy, made below, when it is not flat and alike). `first` (the buffer's first step)
  // is read for every tensor before any is stepped, so a parameter listed twice sees the same
  // counter both times, as in torch's loop. Nothing is written before every check has passed.
  thread_local std::vector<Piece> pieces_tl;
  thread_local std::vector<AddressRange> memory_tl;  // params', grads', buffers' memory, list by list
  std::vector<Piece>& pieces = pieces_tl;            // (the worker threads below use the caller's vectors)
  std::vector<AddressRange>& memory = memory_tl;
  pieces.resize(n);
  memory.assign(3 * n, AddressRange{0, 0});
  const double* ratios = a.grad_ratios.has_value() ? a.grad_ratios->const_data_ptr<double>() : nullptr;
  auto prepare = [&](size_t i) {
    check_sgd_tensor(a, i, device);
    const at::Tensor& param = params[i];
    const at::Tensor& grad = grads[i];
    const at::Tensor* buf = has_momentum ? &momentum_buffers[i] : nullptr;
    Piece& pc = pieces[i];
    pc = Piece{param.scalar_type(), nullptr, nullptr, nullptr, param.numel(), 0,
               static_cast<int64_t>(param.element_size()), buf ? buf->scalar_type() : param.scalar_type(),
               static_cast<int64_t>(buf ? buf->element_size() : param.element_size()), false, -1,
               has_momentum ? static_cast<float*>(steps[i].data_ptr()) : nullptr, ratios ? ratios[i] : 1.0};
    if (pc.numel == 0) return;
    pc.first = has_momentum && *pc.step == 0.f;
    AddressRange* m[3] = {&memory[i], &memory[n + i], &memory[2 * n + i]};
    if (is_flat_alike(param, grad, buf)) {
      pc.param = static_cast<char*>(param.data_ptr());
      pc.grad = static_cast<char*>(grad.data_ptr());
      pc.buf = buf ? static_cast<char*>(buf->data_ptr()) : nullptr;
      // Flat and alike: param and grad each span exactly numel * itemsize bytes, the buffer
      // numel * its own itemsize.
      const auto bytes = static_cast<uintptr_t>(pc.numel * pc.itemsize);
      *m[0] = {reinterpret_cast<uintptr_t>(pc.param), reinterpret_cast<uintptr_t>(pc.param) + bytes};
      *m[1] = {reinterpret_cast<uintptr_t>(pc.grad), reinterpret_cast<uintptr_t>(pc.grad) + bytes};
      if (pc.buf)
        *m[2] = {reinterpret_cast<uintptr_t>(pc.buf),
                 reinterpret_cast<uintptr_t>(pc.buf) + static_cast<uintptr_t>(pc.numel * pc.buf_itemsize)};
    } else {
      pc.staged = kToStage;
      *m[0] = address_range(param);
      *m[1] = address_range(grad);
      if (buf != nullptr) *m[2] = address_range(*buf);
    }
  };
  // Each tensor's check and piece, on torch's threads when there are many. The error raised is the
  // first bad tensor's in list order, as a serial loop would raise it.
  std::mutex mutex;
  size_t bad_index = n;
  std::exception_ptr bad;
  for_tensor_ranges(n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      prefetch_sgd_ahead(a, static_cast<size_t>(i), static_cast<size_t>(hi));
      try {
        prepare(static_cast<size_t>(i));
      } catch (...) {
        const std::lock_guard<std::mutex> lock(mutex);
        if (static_cast<size_t>(i) < bad_index) bad_index = static_cast<size_t>(i), bad = std::current_exception();
        return;
      }
    }
  });
  if (bad) std::rethrow_exception(bad);

  // On the CPU these reads are plain loads, not device synchronisations.
  double step_lr = a.lr_tensor.has_value() ? a.lr_tensor->item<double>() : a.hyper.lr;
  if (a.schedule.has_value()) {
    ScheduleData data;
    read_schedule(*a.schedule, &data);
    double* state = static_cast<double*>(a.schedule_state->data_ptr());  // [step, lr, factor]
    step_lr = schedule_lr(data, schedule_counter_step(state[0]), step_lr) * state[2];
    state[1] = step_lr;
    state[0] += 1.0;
  }
  if (n == 0) return;
  if (a.found_inf.has_value() && a.found_inf->item<double>() != 0.0) return;

  StepArgs args{};
  args.coeffs_f = sgd_coeffs<float>(a.hyper, step_lr);
  args.coeffs_d = sgd_coeffs<double>(a.hyper, step_lr);
  args.coeffs_f.has_ratio = args.coeffs_d.has_ratio = ratios != nullptr;
  args.unscale = a.grad_scale.has_value();
  args.grad_scale = args.unscale ? a.grad_scale->item<double>() : 1.0;
  args.clip = a.grad_clip.has_value();
  args.grad_clip = args.clip ? a.grad_clip->item<double>() : 1.0;

  // Contiguous copies for the pieces that need them, and where each piece starts.
  c10::SmallVector<Staged, 4> staged;
  int64_t total = 0, bytes = 0;
  bool empty_pieces = false;  // (no thread steps their last element: their counters are counted after)
  for (size_t i = 0; i < n; ++i) {
    Piece& pc = pieces[i];
    empty_pieces = empty_pieces || pc.numel == 0;
    if (pc.staged == kToStage) {
      staged.emplace_back(params[i], grads[i], has_momentum ? &momentum_buffers[i] : nullptr);
      const Staged& st = staged.back();
      pc.param = static_cast<char*>(st.param_c.data_ptr());
      pc.grad = static_cast<char*>(st.grad_c.data_ptr());
      pc.buf = has_momentum ? static_cast<char*>(st.buf_c.data_ptr()) : nullptr;
      pc.staged = static_cast<int>(staged.size()) - 1;
    }
    pc.start = total;
    total += pc.numel;
    bytes += pc.numel * (pc.itemsize * 3 + (has_momentum ? 2 * pc.buf_itemsize : 0));
  }
  args.prefetch = bytes > kPrefetchAboveBytes;
  const SpanFn span = level().fn;

  if (ranges_may_overlap(memory)) {
    // Tensors of the call share memory: parallel pieces would race on it. Step one tensor after
    // another, in list order, on this thread, as torch's for-loop does (deterministic). A staged
    // copy is refreshed first, since the tensors before it may have changed its memory.
    for (const Piece& pc : pieces) {
      if (pc.numel == 0) continue;
      Staged* st = pc.staged >= 0 ? &staged[pc.staged] : nullptr;
      if (st != nullptr) st->refresh();
      span(pc.dtype, pc.param, pc.grad, pc.buf, pc.buf_dtype, pc.numel, args, pc.first, pc.ratio);
      if (st != nullptr) st->copy_back(args.unscale);
    }
    for (const Piece& pc : pieces)
      if (pc.step != nullptr) *pc.step += 1.f;
  } else {
    at::parallel_for(0, total, kGrainElements, [&](int64_t begin, int64_t end) {
      // The first piece that ends after `begin`.
      auto it = std::upper_bound(pieces.begin(), pieces.end(), begin,
                                 [](int64_t pos, const Piece& p) { return pos < p.start + p.numel; });
      for (; it != pieces.end() && it->start < end; ++it) {
        if (it->numel == 0) continue;
        // The kernel prefetches ahead within a piece; the start of the next one would come cold.
        if (args.prefetch && it + 1 != pieces.end() && (it + 1)->start < end) prefetch_start(*(it + 1));
        const int64_t lo = std::max(begin, it->start) - it->start;
        const int64_t hi = std::min(end, it->start + it->numel) - it->start;
        const int64_t off = lo * it->itemsize;
        span(it->dtype, it->param + off, it->grad + off, it->buf ? it->buf + lo * it->buf_itemsize : nullptr,
             it->buf_dtype, hi - lo, args, it->first, it->ratio);
        // The thread that steps a piece's last element counts its step (the counter was read as
        // `first` for every piece before any was stepped): no pass of its own over the counters.
        if (hi == it->numel && it->step != nullptr) *it->step += 1.f;
      }
    });
    for (Staged& st : staged) st.copy_back(args.unscale);
    if (empty_pieces) {
      for (const Piece& pc : pieces)
        if (pc.numel == 0 && pc.step != nullptr) *pc.step += 1.f;
    }
  }
}

/**
 * fn(tensor index, element offset, count) over every element of `sizes`, the tensors laid end to
 * end and split across torch's threads like the step (a range may cross many tensors).
 */
template <typename Fn>
void for_virtual_ranges(const std::vector<int64_t>& sizes, const Fn& fn) {
  std::vector<int64_t> start(sizes.size() + 1, 0);
  for (size_t i = 0; i < sizes.size(); ++i) start[i + 1] = start[i] + sizes[i];
  at::parallel_for(0, start.back(), kGrainElements, [&](int64_t begin, int64_t end) {
    size_t i = static_cast<size_t>(std::upper_bound(start.begin(), start.end(), begin) - start.begin()) - 1;
    for (; i < sizes.size() && start[i] < end; ++i) {
      const int64_t lo = std::max(begin, start[i]) - start[i], hi = std::min(end, start[i + 1]) - start[i];
      if (hi > lo) fn(i, lo, hi - lo);
    }
  });
}

/**
 * The accumulated norm terms of the grads (fusedlr/grad_norm.h) on the CPU: over their virtual
 * concatenation (for_virtual_ranges), each thread accumulates its pieces (norm_span, in double),
 * and the threads' partial results are joined in thread order.
 */
double grad_norm_terms_value(at::TensorList grads, NormKind kind, double norm_type) {
  std::vector<at::Tensor> dense;  // the grads, or contiguous copies of those that are not dense (the order is free)
  std::vector<int64_t> sizes;
  dense.reserve(grads.size());
  for (const at::Tensor& g : grads) {
    dense.push_back(g.is_non_overlapping_and_dense() ? g : g.contiguous());
    sizes.push_back(g.numel());
  }
  const NormFn norm = level().norm;
  std::vector<double> partial(static_cast<size_t>(at::get_num_threads()), 0.0);
  for_virtual_ranges(sizes, [&](size_t i, int64_t off, int64_t n) {
    const at::Tensor& t = dense[i];
    double& mine = partial[static_cast<size_t>(at::get_thread_num())];
    mine = norm_join(mine, norm(t.scalar_type(), static_cast<const char*>(t.const_data_ptr()) + off * t.element_size(),
                                n, kind, norm_type), kind);
  });
  double acc = 0.0;
  for (const double x : partial) acc = norm_join(acc, x, kind);
  return acc;
}

/** [total, coef] from accumulated terms (grad_norm's and clip_coefficient's result), on the CPU. */
at::Tensor finish_grad_norm(double acc, NormKind kind, double norm_type, double max_norm,
                            const std::optional<at::Tensor>& grad_scale, at::ScalarType dtype) {
  double value = norm_finish(acc, kind, norm_type);
  if (grad_scale.has_value()) value /= grad_scale->item<double>();
  at::Tensor out = at::empty({2}, at::TensorOptions().dtype(dtype));
  if (dtype == at::kDouble) {
    double* o = out.data_ptr<double>();
    o[0] = value;
    o[1] = clip_coefficient<double>(value, max_norm);
  } else {
    float* o = out.data_ptr<float>();
    o[0] = static_cast<float>(value);
    o[1] = clip_coefficient<float>(o[0], max_norm);
  }
  return out;
}

at::Tensor grad_norm_cpu(at::TensorList grads, double norm_type, double max_norm,
                         const std::optional<at::Tensor>& grad_scale) {
  const at::NoGradGuard no_grad;
  check_grad_norm_call(grads, norm_type, max_norm, grad_scale, c10::DeviceType::CPU);
  const NormKind kind = norm_kind(norm_type);
  return finish_grad_norm(grad_norm_terms_value(grads, kind, norm_type), kind, norm_type, max_norm, grad_scale,
                          grad_norm_dtype(grads));
}

at::Tensor grad_norm_terms_cpu(at::TensorList grads, double norm_type) {
  const at::NoGradGuard no_grad;
  check_grad_norm_call(grads, norm_type, 0.0, std::nullopt, c10::DeviceType::CPU);
  at::Tensor out = at::empty({1}, at::TensorOptions().dtype(at::kDouble));
  out.data_ptr<double>()[0] = grad_norm_terms_value(grads, norm_kind(norm_type), norm_type);
  return out;
}

at::Tensor clip_coefficient_cpu(const at::Tensor& terms, double norm_type, double max_norm,
                                const std::optional<at::Tensor>& grad_scale, at::ScalarType dtype) {
  check_clip_coefficient_call(terms, norm_type, max_norm, grad_scale, dtype, c10::DeviceType::CPU);
  const NormKind kind = norm_kind(norm_type);
  return finish_grad_norm(terms.item<double>(), kind, norm_type, max_norm, grad_scale, dtype);
}

/**
 * lars_ratios on the CPU: each tensor's 2-norms of param and grad (norm_span, float64 terms),
 * rounded to the tensor's math type, then lars_trust_ratio. Many tensors are shared between
 * torch's threads; a large one is split across them itself.
 */
at::Tensor lars_ratios_cpu(at::TensorList params, at::TensorList grads, double weight_decay, double trust_coeff,
                           double eps, bool trust_clip, double lr, const std::optional<at::Tensor>& lr_tensor,
                           const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& grad_clip) {
  const at::NoGradGuard no_grad;
  check_lars_ratios_call(params, grads, weight_decay, trust_coeff, eps, lr, lr_tensor, grad_scale, grad_clip,
                         c10::DeviceType::CPU);
  const size_t n = params.size();
  const double step_lr = lr_tensor.has_value() ? lr_tensor->item<double>() : lr;
  // The gradient the update applies: unscaled (GradScaler), then clipped.
  const double grad_factor = (grad_clip.has_value() ? grad_clip->item<double>() : 1.0) /
                             (grad_scale.has_value() ? grad_scale->item<double>() : 1.0);
  at::Tensor out = at::empty({static_cast<int64_t>(n)}, at::TensorOptions().dtype(at::kDouble));
  double* r = out.data_ptr<double>();
  const SumSquares2Fn sum_squares2 = level().sum_squares2;
  // The sums of squares of param i and grad i, read together (two streams per core), split
  // across torch's threads for a large tensor.
  auto ratio = [&](size_t i, bool split) {
    const at::Tensor p = params[i].is_non_overlapping_and_dense() && params[i].strides() == grads[i].strides()
                             ? params[i]
                             : params[i].contiguous();
    const at::Tensor g = p.strides() == grads[i].strides() ? grads[i] : grads[i].contiguous();
    const auto* pd = static_cast<const char*>(p.const_data_ptr());
    const auto* gd = static_cast<const char*>(g.const_data_ptr());
    const int64_t size = p.element_size();
    double sp = 0.0, sg = 0.0;
    if (!split) {
      sum_squares2(p.scalar_type(), pd, gd, p.numel(), sp, sg);
    } else {
      std::vector<double> partial(2 * static_cast<size_t>(at::get_num_threads()), 0.0);
      at::parallel_for(0, p.numel(), kGrainElements, [&](int64_t lo, int64_t hi) {
        double a = 0.0, b = 0.0;
        sum_squares2(p.scalar_type(), pd + lo * size, gd + lo * size, hi - lo, a, b);
        const size_t t = 2 * static_cast<size_t>(at::get_thread_num());
        partial[t] += a;
        partial[t + 1] += b;
      });
      for (size_t t = 0; t < partial.size(); t += 2) sp += partial[t], sg += partial[t + 1];
    }
    const double w = std::sqrt(sp), gn = std::sqrt(sg) * grad_factor;
    if (params[i].scalar_type() == at::kDouble) {
      r[i] = lars_trust_ratio<double>(w, gn, trust_coeff, weight_decay, eps, trust_clip, step_lr);
    } else {
      r[i] = lars_trust_ratio<float>(static_cast<float>(w), static_cast<float>(gn), trust_coeff, weight_decay, eps,
                                     trust_clip, step_lr);
    }
  };
  // Tensors large enough to share between threads first, each split; then the rest, shared out.
  constexpr int64_t kSplitAbove = 1 << 18;
  for (size_t i = 0; i < n; ++i)
    if (params[i].numel() > kSplitAbove) ratio(i, true);
  for_tensor_ranges(n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      if (params[i].numel() <= kSplitAbove) ratio(static_cast<size_t>(i), false);
  });
  return out;
}

/** The schedule-free SGD step on the CPU (fusedlr/schedule_free.h): the group's scalars advanced once, then every element. */
void sf_sgd_cpu_(at::TensorList params, at::TensorList grads, at::TensorList z, const at::Tensor& state, double lr,
                 double momentum, double weight_decay, double warmup_steps, double r, double weight_lr_power) {
  const at::NoGradGuard no_grad;
  check_sf_call(params, grads, z, state, c10::DeviceType::CPU);
  const SfCoeffs<double> k = sf_advance(state.data_ptr<double>(),
                                        SfHyper{lr, momentum, weight_decay, warmup_steps, r, weight_lr_power});
  std::vector<int64_t> sizes;
  for (const at::Tensor& p : params) sizes.push_back(p.numel());
  const SfFn sf = level().sf;
  for_virtual_ranges(sizes, [&](size_t i, int64_t off, int64_t n) {
    const int64_t b = off * params[i].element_size();
    sf(params[i].scalar_type(), static_cast<char*>(params[i].data_ptr()) + b,
       static_cast<const char*>(grads[i].const_data_ptr()) + b, static_cast<char*>(z[i].data_ptr()) + b, n, k);
  });
}

/** params[i] = lerp(params[i], z[i], weight) on the CPU: schedule-free SGD's train/eval switch. */
void sf_lerp_cpu_(at::TensorList params, at::TensorList z, double weight) {
  const at::NoGradGuard no_grad;
  check_sf_call(params, {}, z, std::nullopt, c10::DeviceType::CPU);
  std::vector<int64_t> sizes;
  for (const at::Tensor& p : params) sizes.push_back(p.numel());
  const LerpFn lerp = level().lerp;
  for_virtual_ranges(sizes, [&](size_t i, int64_t off, int64_t n) {
    const int64_t b = off * params[i].element_size();
    lerp(params[i].scalar_type(), static_cast<char*>(params[i].data_ptr()) + b,
         static_cast<const char*>(z[i].const_data_ptr()) + b, n, weight);
  });
}

void sgd_sparse_(const SgdArgs&) {
  TORCH_CHECK(false, "fusedlr.sgd_: sparse gradients are not supported by the fused kernel; fusedlr.SGD steps "
                     "parameters with sparse gradients through torch's reference implementation");
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedlr, CPU, m) {
  m.impl("sgd_", &sgd_op<sgd_cpu_>);
  m.impl("grad_norm", &grad_norm_cpu);
  m.impl("grad_norm_terms", &grad_norm_terms_cpu);
  m.impl("clip_coefficient", &clip_coefficient_cpu);
  m.impl("lars_ratios", &lars_ratios_cpu);
  m.impl("sf_sgd_", &sf_sgd_cpu_);
  m.impl("sf_lerp_", &sf_lerp_cpu_);
}

// Without this a sparse gradient would meet the dispatcher's generic "could not run with
// arguments from the SparseCPU backend".
TORCH_LIBRARY_IMPL(fusedlr, SparseCPU, m) { m.impl("sgd_", &sgd_op<sgd_sparse_>); }

}  // namespace fusedlr::cpu
