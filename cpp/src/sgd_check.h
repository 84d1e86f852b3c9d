#pragma once
// Argument checks at the op boundary, shared by the CPU and CUDA implementations of
// fusedlr::sgd_. Kernels behind the boundary assume what is checked here.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sgd_args.h"

namespace fusedlr {

/**
 * The one check of SGD's hyper-parameters (torch.optim.SGD's, plus finiteness: torch's `lr < 0`
 * is false for NaN, and a NaN or infinite value turns every weight into NaN): which one is out
 * of range, in torch's order of checking, or nullptr. "lr", "momentum", "dampening",
 * "weight_decay" or "nesterov" (which needs momentum > 0 and dampening 0). The op reports it
 * itself; fusedlr.SGD asks it (fusedlr._C.sgd_hyperparameter_problem) and words it as torch does.
 */
const char* sgd_hyperparameter_problem(const SgdHyper& h);

/** The storage dtypes the kernels are compiled for: the one list (Python reads it as _C.supported_dtypes). */
const std::vector<c10::ScalarType>& supported_dtypes();
bool is_supported_dtype(c10::ScalarType dtype);

/** A dtype as torch names it in Python, without "torch." ("float32", "bfloat16", "int64"). */
std::string dtype_name(c10::ScalarType dtype);

/**
 * Check the lists and scalars of one sgd_ call: equal lengths, and per parameter the same
 * shape, dtype and device for param, grad and momentum buffer; a one-element float32 step
 * counter per buffer; every tensor on `device_type`; hyper-parameters in range. It is
 * check_sgd_call, then check_sgd_tensor for every tensor (which the CPU step runs on its threads).
 */
void check_sgd_args(const SgdArgs& args, c10::DeviceType device_type);

/**
 * Check one grad_norm call: norm_type > 0 or inf, max_norm >= 0, dense grads of the fused dtypes
 * on one device of `device_type`, a one-element grad_scale. The device.
 */
c10::Device check_grad_norm_call(at::TensorList grads, double norm_type, double max_norm,
                                 const std::optional<at::Tensor>& grad_scale, c10::DeviceType device_type);

/**
 * Check one lars_ratios call: equal lists of the fused dtypes, alike, on one device; finite
 * hyper-parameters; lr_tensor, grad_scale and grad_clip one-element floating tensors when given.
 */
void check_lars_ratios_call(at::TensorList params, at::TensorList grads, double weight_decay, double trust_coeff,
                            double eps, double lr, const std::optional<at::Tensor>& lr_tensor,
                            const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& grad_clip,
                            c10::DeviceType device_type);

/** Check one clip_coefficient call: one float64 term on `device_type`, a float32/64 dtype, the norm's checks. */
void check_clip_coefficient_call(const at::Tensor& terms, double norm_type, double max_norm,
                                 const std::optional<at::Tensor>& grad_scale, at::ScalarType dtype,
                                 c10::DeviceType device_type);

/** Check one sf_sgd_ (with `state`) or sf_lerp_ call: params, grads, z alike and dense, one device; the state. */
void check_sf_call(at::TensorList params, at::TensorList grads, at::TensorList z,
                   const std::optional<at::Tensor>& state, c10::DeviceType device_type);

/** The dtype of grad_norm's result: float64 when a grad is float64, else float32. */
at::ScalarType grad_norm_dtype(at::TensorList grads);

/** What concerns the call as a whole: lengths, hyper-parameters, scalar tensors, the schedule. The device. */
c10::Device check_sgd_call(const SgdArgs& args, c10::DeviceType device_type);

/** What concerns tensor i of the call (params[i], grads[i], momentum_buffers[i], steps[i]). */
void check_sgd_tensor(const SgdArgs& args, size_t i, c10::Device device);

/**
 * Prefetch ahead of tensor i of a loop over [.., end) of a call's tensors (see prefetch_metadata):
 * the TensorImpls of tensor i + 2 * kMetadataAhead's params, grads, buffers and counters, and the
 * StorageImpls of tensor i + kMetadataAhead's (and the counter's data, read as `first`).
 */
void prefetch_sgd_ahead(const SgdArgs& args, size_t i, size_t end);

/** The ScheduleData held by `schedule` (checked by check_sgd_args), copied out. */
struct ScheduleData;
void read_schedule(const at::Tensor& schedule, ScheduleData* out);

/** The bytes [begin, end) a tensor spans in memory. */
struct AddressRange {
  uintptr_t begin, end;
  bool operator==(const AddressRange& o) const { return begin == o.begin && end == o.end; }
};

/** The range `t` spans (from its first to one past its last element); empty for no elements. */
AddressRange address_range(const at::Tensor& t);

/**
 * True when two of `ranges` overlap (empty ranges are ignored). `ranges` are the memory of every
 * tensor of an sgd_ call (params, grads, momentum buffers): a parameter listed twice, two
 * parameters given one momentum buffer by a loaded state_dict, a grad that is a view of another
 * parameter, overlapping or interleaved views. The kernels then step the tensors one after another,
 * in list order, as torch's for-loop does, instead of in parallel pieces that would race on the
 * shared memory.
 *
 * An optimizer passes the same tensors step after step: each thread remembers its last few calls'
 * ranges and answers (a few: one per param group), so a repeated call costs one comparison pass.
 * A new call walks the runs already in address order as one merge when there are few (list the
 * ranges list by list, all params, then all grads, ..., so that each list's allocation order is
 * one run), and sorts a copy otherwise.
 */
bool ranges_may_overlap(const std::vector<AddressRange>& ranges);

/** ranges_may_overlap of every tensor of an sgd_ call; `momentum_buffers` may be empty. */
bool call_tensors_may_overlap(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers);

/**
 * Start loading the metadata of `t` into the cache. A step over thousands of small tensors is
 * bound by these loads: each is a cache miss that depends on the one before (a tensor, the
 * StorageImpl it points to, the data; a parameter, its AutogradMeta, its grad), so loops over a
 * call's tensors prefetch in stages: the TensorImpls 2 * kMetadataAhead places ahead, then,
 * once those have arrived, what they point to kMetadataAhead places ahead (prefetch_storage,
 * prefetch_grad). With the metadata of 2000 tensors pushed out of the caches (as a step's own
 * traffic does), the staged prefetches with the rest of that change took a step's cost per
 * tensor from ~380 to ~270 ns on a Zen 4 EPYC (bench/README.md, "fixed cost per tensor").
 */
inline void prefetch_metadata(const at::Tensor& t) {
  const char* impl = reinterpret_cast<const char*>(t.unsafeGetTensorImpl());
  for (size_t line = 0; line < sizeof(c10::TensorImpl); line += 64) __builtin_prefetch(impl + line);
}
/** The StorageImpl of `t` (its data pointer); `t`'s TensorImpl should be cached by now. */
inline void prefetch_storage(const at::Tensor& t) {
  const c10::StorageImpl* storage = t.unsafeGetTensorImpl()->unsafe_storage().unsafeGetStorageImpl();
  if (storage != nullptr) __builtin_prefetch(storage);
}
/**
 * The first line of the data of `t` (a step counter: one element); its StorageImpl should be
 * cached by now. A hint only: it runs before `t` is checked, so where the address cannot be had
 * (a storage whose data may not be read, e.g. a fake tensor's) nothing is prefetched.
 */
inline void prefetch_data(const at::Tensor& t) noexcept {
  const c10::StorageImpl* storage = t.unsafeGetTensorImpl()->unsafe_storage().unsafeGetStorageImpl();
  if (storage == nullptr) return;
  try {
    const char* data = static_cast<const char*>(storage->data());
    if (data != nullptr) __builtin_prefetch(data + t.storage_offset() * static_cast<int64_t>(t.element_size()));
  } catch (...) {
  }
}
/** The AutogradMeta of parameter `t` (where its .grad is held); `t`'s TensorImpl should be cached by now. */
inline void prefetch_autograd_meta(const at::Tensor& t) {
  const char* meta = reinterpret_cast<const char*>(t.unsafeGetTensorImpl()->autograd_meta());
  if (meta != nullptr) __builtin_prefetch(meta), __builtin_prefetch(meta + 64);
}
/** The TensorImpl of parameter `t`'s .grad; its AutogradMeta should be cached by now. */
inline void prefetch_grad(const at::Tensor& t) {
  if (t.unsafeGetTensorImpl()->autograd_meta() != nullptr) prefetch_metadata(t.unsafeGetTensorImpl()->grad());
}

/** How many tensors ahead a loop over a call's tensors prefetches their metadata. */
constexpr size_t kMetadataAhead = 8;

/** From this many tensors on, per-tensor work runs on torch's threads, in ranges of kTensorGrain. */
constexpr size_t kParallelTensors = 256;
constexpr int64_t kTensorGrain = 128;

/**
 * fn(lo, hi) over the tensor indices [0, n): split across torch's threads when there are many
 * tensors (their metadata loads are cache misses, each waiting for the one before), on this
 * thread otherwise (or when already inside a parallel region).
 */
template <typename Fn>
void for_tensor_ranges(size_t n, const Fn& fn) {
  if (n >= kParallelTensors && at::get_num_threads() > 1 && !at::in_parallel_region()) {
    at::parallel_for(0, static_cast<int64_t>(n), kTensorGrain, fn);
  } else {
    fn(int64_t{0}, static_cast<int64_t>(n));
  }
}

/** True when param, grad and buffer can be walked as one flat array: dense, and laid out alike. */
bool is_flat_alike(const at::Tensor& param, const at::Tensor& grad, const at::Tensor* buf);

/**
 * Contiguous stand-ins for a param, its grad and its buffer that are not flat and alike: the
 * kernels (CPU and CUDA) step the copies, then copy_back() writes the results where they belong.
 */
struct Staged {
  at::Tensor param, grad, buf;        // the originals (buf undefined without momentum)
  at::Tensor param_c, grad_c, buf_c;  // their contiguous copies

  Staged(const at::Tensor& p, const at::Tensor& g, const at::Tensor* b);
  /** Copies the originals in again (tensors stepped before may have changed their memory). */
  void refresh();
  /** Writes the stepped copies back: param and buffer, and the grad when it was unscaled. */
  void copy_back(bool unscaled);
};

}  // namespace fusedlr
