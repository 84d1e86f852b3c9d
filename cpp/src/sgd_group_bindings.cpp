// The only translation unit that converts torch tensors between Python and C++ (torch's own
// pybind11 casters, libtorch_python); the rest of the module needs no torch Python headers.

#include "sgd_group_bindings.h"

#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>

#include "sgd_group.h"

namespace py = pybind11;

namespace fusedlr {

void bind_sgd_group(py::module_& m) {
  py::class_<SgdGroup>(m, "SgdGroup", R"pbdoc(A param group's tensors held in C++ between steps.

Built by fusedlr.SGD from a group's params and their momentum buffers and step counters (None
where a parameter has none yet); step() gathers the gradients and runs torch.ops.fusedlr.sgd_.)pbdoc")
      .def(py::init<std::vector<at::Tensor>, const std::vector<std::optional<at::Tensor>>&,
                    const std::vector<std::optional<at::Tensor>>&>(),
           py::arg("params"), py::arg("momentum_buffers"), py::arg("steps"))
      .def("step", &SgdGroup::step, py::arg("lr"), py::arg("momentum"), py::arg("dampening"),
           py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"), py::arg("lr_tensor"),
           py::arg("grad_scale"), py::arg("found_inf"), py::arg("schedule"), py::arg("schedule_state"),
           py::call_guard<py::gil_scoped_release>(),
           R"pbdoc(Step every parameter that has a gradient; returns how many, or -1 (nothing done) when
the group must be rebuilt (a gradient without a momentum buffer yet, or a sparse gradient).)pbdoc")
      .def("__len__", &SgdGroup::size);
}

}  // namespace fusedlr
