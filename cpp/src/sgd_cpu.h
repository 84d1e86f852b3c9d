#pragma once

namespace fusedlr::cpu {

/** The SIMD level the CPU kernel runs at in this process: "AVX512", "AVX2" or "DEFAULT". */
const char* kernel_level();

}  // namespace fusedlr::cpu
