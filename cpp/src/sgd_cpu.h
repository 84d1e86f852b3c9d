#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace fusedlr::cpu {

/** The SIMD level the CPU kernel runs at in this process: "AVX512", "AVX2" or "DEFAULT". */
const char* kernel_level();

/** The best SIMD level this CPU (and OS) supports, asked of the CPU: "AVX512", "AVX2" or "DEFAULT". */
const char* cpu_level();

/** The level the kernel runs at when torch runs at `torch_level` on a CPU whose best is `cpu_level`. */
const char* choose_level(const std::string& torch_level, const std::string& cpu_level);

/**
 * The memory roofline's reference kernel (bench/roofline.py): p += g (and b += g) over contiguous
 * float32 tensors, split across torch's threads like the step and at the step's SIMD level: the
 * memory traffic of an SGD step with streams of these sizes, with trivial arithmetic.
 */
void stream_reference(const at::Tensor& p, const at::Tensor& g, const std::optional<at::Tensor>& b);

}  // namespace fusedlr::cpu
