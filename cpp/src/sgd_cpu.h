#pragma once

#include <string>

namespace fusedlr::cpu {

/** The SIMD level the CPU kernel runs at in this process: "AVX512", "AVX2" or "DEFAULT". */
const char* kernel_level();

/** The best SIMD level this CPU (and OS) supports, asked of the CPU: "AVX512", "AVX2" or "DEFAULT". */
const char* cpu_level();

/** The level the kernel runs at when torch runs at `torch_level` on a CPU whose best is `cpu_level`. */
const char* choose_level(const std::string& torch_level, const std::string& cpu_level);

}  // namespace fusedlr::cpu
