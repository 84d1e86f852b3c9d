// The Python module fusedlr._C. Importing it also registers the fusedlr::* torch ops, whose
// registrations live in ops.cpp and beside each kernel.

#include <pybind11/pybind11.h>

#include "schedule_bindings.h"
#include "sgd_check.h"
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

It follows the level torch runs at, so ATEN_CPU_CAPABILITY=default|avx2|avx512 selects it too, but
never goes above what the CPU supports (cpu_level()).)pbdoc");
  m.def("cpu_level", &fusedlr::cpu::cpu_level,
        R"pbdoc(The best SIMD level this CPU and OS support, asked of the CPU (cpuid/xgetbv): "AVX512", "AVX2" or "DEFAULT".)pbdoc");
  m.def("_choose_cpu_level", &fusedlr::cpu::choose_level, py::arg("torch_level"), py::arg("cpu_level"),
        R"pbdoc(The kernel level chosen when torch runs at torch_level on a CPU whose best is cpu_level (for tests).)pbdoc");
  m.def(
      "sgd_hyperparameter_problem",
      [](double lr, double momentum, double dampening, double weight_decay, bool nesterov) {
        return fusedlr::sgd_hyperparameter_problem(
            fusedlr::SgdHyper{lr, momentum, dampening, weight_decay, nesterov, /*maximize=*/false});
      },
      py::arg("lr"), py::arg("momentum"),
        py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
        R"pbdoc(Which SGD hyper-parameter is out of range ("lr", "momentum", "dampening", "weight_decay",
"nesterov"), or None: the check the op makes (finite; lr, momentum, weight_decay >= 0; nesterov
needs momentum > 0 and dampening 0).)pbdoc");
  py::list dtypes;
  for (const c10::ScalarType d : fusedlr::supported_dtypes()) dtypes.append(fusedlr::dtype_name(d));
  m.attr("supported_dtypes") = py::tuple(dtypes);
  fusedlr::bind_schedules(m);
  fusedlr::bind_schedule_applier(m);
  fusedlr::bind_sgd_group(m);
}
