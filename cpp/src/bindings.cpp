// The Python module fusedlr._C. Importing it also registers the fusedlr::* torch ops, whose
// registrations live in ops.cpp and beside each kernel.

#include <pybind11/pybind11.h>

#include "schedule_bindings.h"
#include "sgd_cpu.h"
#include "sgd_group_bindings.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = R"pbdoc(Private native module of fusedlr: op registration and schedule objects.)pbdoc";
  m.attr("__version__") = FUSEDLR_VERSION;
#ifdef FUSEDLR_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.attr("cpu_levels_compiled") = FUSEDLR_CPU_LEVELS;
  m.def("cpu_kernel_level", &fusedlr::cpu::kernel_level,
        R"pbdoc(The SIMD level of the CPU SGD kernel in this process: "AVX512", "AVX2" or "DEFAULT".

It follows the level torch runs at, so ATEN_CPU_CAPABILITY=default|avx2|avx512 selects it too.)pbdoc");
  fusedlr::bind_schedules(m);
  fusedlr::bind_sgd_group(m);
}
