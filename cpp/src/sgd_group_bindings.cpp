// The only translation unit that converts torch tensors between Python and C++ (torch's own
// pybind11 casters, libtorch_python); the rest of the module needs no torch Python headers.

#include "sgd_group_bindings.h"

#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>

#include <memory>

#include "sgd_cpu.h"
#include "sgd_group.h"

namespace py = pybind11;

namespace fusedlr {
namespace {

/**
 * An SgdGroup and the Python objects of its parameters. Each step first checks, with the GIL,
 * that the group's param list still holds exactly these objects (an in-place `params[i] = q`
 * keeps the list's identity and length, so nothing else would notice); then steps without it.
 */
/** The tensors of a tuple of Python tensors. */
std::vector<at::Tensor> tensors(const py::tuple& objects) {
  std::vector<at::Tensor> out;
  out.reserve(objects.size());
  for (const py::handle o : objects) out.push_back(o.cast<at::Tensor>());
  return out;
}

/** Whether the list `params` holds exactly the objects of `objects`, in order. */
bool holds(const py::tuple& objects, const py::handle& params) {
  if (!PyList_Check(params.ptr())) return false;
  const Py_ssize_t n = PyList_GET_SIZE(params.ptr());
  if (n != PyTuple_GET_SIZE(objects.ptr())) return false;
  for (Py_ssize_t i = 0; i < n; ++i)
    if (PyList_GET_ITEM(params.ptr(), i) != PyTuple_GET_ITEM(objects.ptr(), i)) return false;
  return true;
}

class BoundSgdGroup {
 public:
  BoundSgdGroup(const py::sequence& params, const std::vector<std::optional<at::Tensor>>& momentum_buffers,
                const std::vector<std::optional<at::Tensor>>& steps)
      : objects_(params), group_(std::make_unique<SgdGroup>(tensors(objects_), momentum_buffers, steps)) {}

  /** SgdGroup::step for the group's current param list; -1 (nothing done) when it no longer holds our params. */
  int64_t step(const py::handle& params, double lr, double momentum, double dampening, double weight_decay,
               bool nesterov, bool maximize, const std::optional<at::Tensor>& lr_tensor,
               const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf,
               const std::optional<at::Tensor>& schedule, const std::optional<at::Tensor>& schedule_state,
               const std::optional<at::Tensor>& grad_clip,
               const std::optional<std::tuple<double, double, bool>>& lars) {
    if (!holds_our_params(params)) return -1;
    std::optional<LarsArgs> lars_args;
    // lars: (trust_coeff, eps, trust_clip); the weight decay is the group's (applied before the ratio).
    if (lars) lars_args = LarsArgs{weight_decay, std::get<0>(*lars), std::get<1>(*lars), std::get<2>(*lars)};
    py::gil_scoped_release release;
    return group_->step(SgdHyper{lr, momentum, dampening, weight_decay, nesterov, maximize}, lr_tensor, grad_scale,
                        found_inf, schedule, schedule_state, grad_clip, lars_args);
  }

  int64_t size() const { return group_->size(); }
  int64_t last_step_tensors() const { return group_->last_step_tensors(); }

  /** SgdGroup::drop_param_grads (the caller has checked that the group's list holds our params). */
  bool drop_param_grads() { return group_->drop_param_grads(); }

  /** SgdGroup::append_grads for the group's current param list; false when it no longer holds our params. */
  bool append_grads(const py::handle& params, std::vector<at::Tensor>& out) {
    return holds_our_params(params) && group_->append_grads(out);
  }

  /** Whether the group's list `params` still holds exactly our parameter objects. */
  bool holds_our_params(const py::handle& params) const { return holds(objects_, params); }

 private:
  py::tuple objects_;
  std::unique_ptr<SgdGroup> group_;  // holds a mutex: not movable
};

/** A SfGroup and the Python objects of its parameters (checked each step, as BoundSgdGroup's). */
class BoundSfGroup {
 public:
  BoundSfGroup(const py::sequence& params, const std::vector<at::Tensor>& z)
      : objects_(params), group_(std::make_unique<SfGroup>(tensors(objects_), z)) {}

  int64_t step(const py::handle& params, const at::Tensor& state, double lr, double momentum, double weight_decay,
               double warmup_steps, double r, double weight_lr_power) {
    if (!holds(objects_, params)) return -1;
    py::gil_scoped_release release;
    return group_->step(state, SfHyper{lr, momentum, weight_decay, warmup_steps, r, weight_lr_power});
  }

 private:
  py::tuple objects_;
  std::unique_ptr<SfGroup> group_;  // holds a mutex: not movable
};

}  // namespace

/**
 * zero_grad(set_to_none=True) over held groups (`groups[i]` holding the param list `params[i]`):
 * false when one no longer holds its list (nothing changed) or is being stepped on another thread
 * (the groups before it done); the caller then runs torch's loop.
 */
bool held_zero_grad(const py::list& groups, const py::list& params) {
  std::vector<BoundSgdGroup*> held;
  for (size_t i = 0; i < groups.size(); ++i) {
    held.push_back(&groups[i].cast<BoundSgdGroup&>());
    if (!held.back()->holds_our_params(params[i])) return false;
  }
  // (with the GIL, on this thread: a gradient that has a Python object is freed with it; a group
  // being stepped on another thread makes the caller finish with torch's loop)
  for (BoundSgdGroup* group : held)
    if (!group->drop_param_grads()) return false;
  return true;
}

/**
 * grad_norm over the gradients of held groups (`groups[i]` holding the param list `params[i]`),
 * read in C++: no Python list of 2000 gradients, no per-tensor conversion. None when a group
 * no longer holds its list, a gradient is sparse, or the gradients are on several devices (the
 * caller then takes the Python path).
 */
py::object held_grad_norm(const py::list& groups, const py::list& params, double norm_type, double max_norm,
                          const std::optional<at::Tensor>& grad_scale) {
  std::vector<at::Tensor> grads;
  for (size_t i = 0; i < groups.size(); ++i) {
    auto& group = groups[i].cast<BoundSgdGroup&>();
    if (!group.append_grads(params[i], grads)) return py::none();
  }
  for (const at::Tensor& g : grads)
    if (g.device() != grads[0].device()) return py::none();
  if (grads.empty()) return py::none();
  at::Tensor out;
  {
    py::gil_scoped_release release;
    out = call_grad_norm_op(grads, norm_type, max_norm, grad_scale);
    grads.clear();  // (the references, dropped without the GIL too)
  }
  return py::cast(out);
}

void bind_sgd_group(py::module_& m) {
  m.def("_stream_reference", &cpu::stream_reference, py::arg("p"), py::arg("g"), py::arg("b") = py::none(),
        py::call_guard<py::gil_scoped_release>(),
        R"pbdoc(The memory roofline's reference kernel: ``p += g`` (and ``b += g``) on contiguous float32 CPU
tensors, with the SGD step's threads and SIMD level (bench/roofline.py).)pbdoc");
  py::class_<BoundSgdGroup>(m, "SgdGroup", R"pbdoc(A param group's tensors held in C++ between steps.

Built by fusedlr.SGD from a group's params and their momentum buffers and step counters (None
where a parameter has none yet); step(params, ...) checks that ``params`` (the group's list)
still holds the same parameter objects, gathers the gradients and runs torch.ops.fusedlr.sgd_.)pbdoc")
      .def(py::init<const py::sequence&, const std::vector<std::optional<at::Tensor>>&,
                    const std::vector<std::optional<at::Tensor>>&>(),
           py::arg("params"), py::arg("momentum_buffers"), py::arg("steps"))
      .def("step", &BoundSgdGroup::step, py::arg("params"), py::arg("lr"), py::arg("momentum"), py::arg("dampening"),
           py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"), py::arg("lr_tensor"),
           py::arg("grad_scale"), py::arg("found_inf"), py::arg("schedule"), py::arg("schedule_state"),
           py::arg("grad_clip"), py::arg("lars") = py::none(),
           R"pbdoc(Step every parameter that has a gradient; returns how many, or -1 (nothing done) when
the group must be rebuilt: ``params`` no longer holds the same parameter objects, a gradient has
no momentum buffer yet, or a gradient is sparse. Several threads may call it at once (they take turns).)pbdoc")
      .def("__len__", &BoundSgdGroup::size)
      .def_property_readonly("last_step_tensors", &BoundSgdGroup::last_step_tensors,
                             "How many tensors the last step handed the op per list: one per flat run and per "
                             "parameter outside the runs when the flat runs were stepped, else one per parameter stepped.");
  py::class_<BoundSfGroup>(m, "SfGroup", R"pbdoc(A schedule-free SGD group's params and z held in C++ between steps.

step(params, state, lr, momentum, weight_decay, warmup_steps, r, weight_lr_power) checks that
``params`` still holds the same parameter objects, gathers the gradients and runs
torch.ops.fusedlr.sf_sgd_; it returns how many it stepped, or -1 (nothing done) when the group's
list changed or a parameter has no gradient (or a sparse one).)pbdoc")
      .def(py::init<const py::sequence&, const std::vector<at::Tensor>&>(), py::arg("params"), py::arg("z"))
      .def("step", &BoundSfGroup::step, py::arg("params"), py::arg("state"), py::arg("lr"), py::arg("momentum"),
           py::arg("weight_decay"), py::arg("warmup_steps"), py::arg("r"), py::arg("weight_lr_power"));
  py::class_<FlatGrads>(m, "FlatGrads", R"pbdoc(The gradients of a flat layout (fusedlr.SGD(flat=True)).

FlatGrads(params, views, grad): each parameter's .grad is views[i], a view of the one tensor
``grad``; zero(set_to_none) zeroes ``grad`` and gives each parameter its view again (torch's
zero_grad for a parameter that no longer fits its view or no longer requires grad), and returns
how many still have their view (0: the layout is gone).)pbdoc")
      .def(py::init<std::vector<at::Tensor>, std::vector<at::Tensor>, at::Tensor>(), py::arg("params"),
           py::arg("views"), py::arg("grad"))
      .def("zero", &FlatGrads::zero, py::arg("set_to_none"));
  m.def(
      "_zero_grads",
      [](const std::vector<at::Tensor>& params, bool set_to_none) {
        for (const at::Tensor& p : params) zero_grad_as_torch(p, set_to_none);
      },
      py::arg("params"), py::arg("set_to_none"),
      R"pbdoc(torch.optim.Optimizer.zero_grad's rule for each of ``params``: .grad set to None, or detached and zeroed.)pbdoc");
  m.def("_held_zero_grad", &held_zero_grad, py::arg("groups"), py::arg("params"),
        R"pbdoc(zero_grad(set_to_none=True) over held SgdGroups (``groups[i]`` holding the param list ``params[i]``):
each parameter's .grad dropped in C++; False when one no longer holds its list (nothing changed) or
is being stepped on another thread (the groups before it done): the caller runs torch's loop.)pbdoc");
  m.def("_held_grad_norm", &held_grad_norm, py::arg("groups"), py::arg("params"), py::arg("norm_type"),
        py::arg("max_norm"), py::arg("grad_scale"),
        R"pbdoc(torch.ops.fusedlr.grad_norm over the gradients of held SgdGroups (``groups[i]`` holding the param
list ``params[i]``), gathered in C++; None when the Python path must take it.)pbdoc");
}

}  // namespace fusedlr
