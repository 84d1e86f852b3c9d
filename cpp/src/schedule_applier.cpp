// fusedlr._C.ScheduleApplier and step_schedules: a twin scheduler's step() in C++. It runs every
// step, so it talks to CPython directly (a pybind11 method call costs about a third of the step).

#include "schedule_bindings.h"
#include "fusedlr/schedule_build.h"

#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

namespace py = pybind11;

namespace fusedlr {
namespace {

/**
 * Writes schedules[g](step, base_lrs[g]) into param_groups[g][key] for every group and returns
 * the values: the body of a twin scheduler's step(). Built once per scheduler (schedules copied,
 * key interned); it runs every step, so it talks to CPython directly. A tensor value is filled in
 * place (as torch does for tensor learning rates); key "betas" replaces the first of the pair.
 *
 * All values are computed (every base converted) before the first write, so a bad argument
 * leaves the groups untouched. Writes can run Python code (a tensor's fill_, a replaced value's
 * __del__), so each group is re-read from the sequence, bounds-checked and held while in use.
 */
class ScheduleApplier {
 public:
  ScheduleApplier(const std::vector<const Schedule*>& schedules, const std::string& key)
      : key_(key), betas_(key == "betas") {
    if (schedules.empty()) invalid("ScheduleApplier", "schedules", "at least one schedule", "[]");
    for (const Schedule* s : schedules) schedules_.push_back(*s);
  }

  /** Set ``param_groups[g][key] = schedule_g(step, base_lrs[g])`` for every group; the values as a list. */
  py::list apply(int64_t step, py::handle base_lrs, py::handle param_groups) const {
    return py::reinterpret_borrow<py::list>(apply_if(step, base_lrs, param_groups, py::none()));
  }

  /**
   * apply(), provided every group's value still equals ``expected[g]`` (what this applier wrote
   * last; None: no check). Otherwise something else changed a group's value since: nothing is
   * written and None is returned (the twin then follows the change, see lr_scheduler.py).
   */
  py::object apply_if(int64_t step, py::handle base_lrs, py::handle param_groups, py::handle expected,
                      const ScheduleApplier* other = nullptr, py::handle other_bases = py::handle()) const {
    const Groups groups(param_groups);
    if (!expected.is_none() && !unchanged(groups, expected)) return py::none();
    Values lrs(groups.size()), more(groups.size());
    values(step, base_lrs, "base_lrs", lrs);
    if (other != nullptr) other->values(step, other_bases, "other_bases", more);
    py::list out(static_cast<py::ssize_t>(lrs.size));
    store(lrs, groups, out.ptr());
    if (other != nullptr) other->store(more, groups, nullptr);
    return std::move(out);
  }

 private:
  /** The param groups as a list or tuple (PySequence_Fast of the argument), held for one call. */
  struct Groups {
    py::object seq;
    explicit Groups(py::handle h) {
      PyObject* fast = PySequence_Fast(h.ptr(), "ScheduleApplier: param_groups must be a sequence of dicts");
      if (fast == nullptr) throw py::error_already_set();
      seq = py::reinterpret_steal<py::object>(fast);
    }
    size_t size() const { return static_cast<size_t>(PySequence_Fast_GET_SIZE(seq.ptr())); }
    /** Group g, re-read now (the sequence may have changed while Python code ran), as a new reference. */
    py::dict at(size_t g) const {
      if (g >= size()) throw py::value_error("ScheduleApplier: param_groups changed size during the call");
      PyObject* group = PySequence_Fast_ITEMS(seq.ptr())[g];
      if (!PyDict_Check(group)) throw py::type_error("ScheduleApplier: param_groups must hold dicts");
      return py::reinterpret_borrow<py::dict>(group);
    }
  };

  /** Schedule values for n groups; inline storage for the usual handful. */
  struct Values {
    double inline_[8];
    std::vector<double> heap;
    double* data;
    size_t size;
    explicit Values(size_t n) : data(inline_), size(n) {
      if (n > 8) {
        heap.resize(n);
        data = heap.data();
      }
    }
    Values(const Values&) = delete;  // data may point into the object itself
  };

  /** Whether every group's value equals expected[g] (both NaN counts as equal). Reads only. */
  bool unchanged(const Groups& groups, py::handle expected) const {
    PyObject* fast = PySequence_Fast(expected.ptr(), "ScheduleApplier: expected must be a sequence of numbers or None");
    if (fast == nullptr) throw py::error_already_set();
    const py::object seq = py::reinterpret_steal<py::object>(fast);
    const size_t n = groups.size();
    if (static_cast<size_t>(PySequence_Fast_GET_SIZE(fast)) != n) return false;  // groups added or removed
    for (size_t g = 0; g < n; ++g) {
      const py::dict group = groups.at(g);
      PyObject* found = PyDict_GetItemWithError(group.ptr(), key_.ptr());
      if (found == nullptr) {
        if (PyErr_Occurred()) throw py::error_already_set();
        return false;
      }
      const py::object current = py::reinterpret_borrow<py::object>(found);  // __float__ may run Python code
      const double now = PyFloat_CheckExact(found) ? PyFloat_AS_DOUBLE(found) : PyFloat_AsDouble(found);
      if (now == -1.0 && PyErr_Occurred()) throw py::error_already_set();
      if (g >= static_cast<size_t>(PySequence_Fast_GET_SIZE(fast)))
        throw py::value_error("ScheduleApplier: expected changed size during the call");
      const py::object item = py::reinterpret_borrow<py::object>(PySequence_Fast_ITEMS(fast)[g]);
      const double was = PyFloat_AsDouble(item.ptr());
      if (was == -1.0 && PyErr_Occurred()) throw py::error_already_set();
      if (!(now == was || (std::isnan(now) && std::isnan(was)))) return false;
    }
    return true;
  }

  /** out.data[g] = schedule_g(step, bases[g]) for the out.size groups; nothing is written to any group. */
  void values(int64_t step, py::handle bases_arg, const char* what, Values& out) const {
    const size_t n = out.size;
    if (schedules_.size() != n && schedules_.size() != 1)
      invalid("ScheduleApplier", "schedules", "one per param group (" + std::to_string(n) + ") or one for all",
              std::to_string(schedules_.size()));
    PyObject* fast = PySequence_Fast(bases_arg.ptr(), "ScheduleApplier: the bases must be a sequence of numbers");
    if (fast == nullptr) throw py::error_already_set();
    const py::object seq = py::reinterpret_steal<py::object>(fast);
    const size_t count = static_cast<size_t>(PySequence_Fast_GET_SIZE(fast));
    if (count != n) invalid("ScheduleApplier", what, "one per param group (" + std::to_string(n) + ")", std::to_string(count));
    for (size_t g = 0; g < n; ++g) {
      // Re-read: a number's __float__ is Python code that could change the sequence.
      if (g >= static_cast<size_t>(PySequence_Fast_GET_SIZE(fast)))
        throw py::value_error(std::string("ScheduleApplier: ") + what + " changed size during the call");
      const py::object item = py::reinterpret_borrow<py::object>(PySequence_Fast_ITEMS(fast)[g]);
      const double base = PyFloat_AsDouble(item.ptr());
      if (base == -1.0 && PyErr_Occurred()) throw py::error_already_set();
      out.data[g] = schedules_[schedules_.size() == 1 ? 0 : g](step, base);
    }
  }

  void store(const Values& values, const Groups& groups, PyObject* out) const {
    for (size_t g = 0; g < values.size; ++g) {
      const py::dict group = groups.at(g);
      py::object value = py::reinterpret_steal<py::object>(PyFloat_FromDouble(values.data[g]));
      if (!value) throw py::error_already_set();
      PyObject* found = PyDict_GetItemWithError(group.ptr(), key_.ptr());  // borrowed; null when absent
      if (found == nullptr && PyErr_Occurred()) throw py::error_already_set();
      const py::object current = py::reinterpret_borrow<py::object>(found);  // held while Python code runs
      if (betas_) {
        if (!current) throw py::key_error("ScheduleApplier: param group has no \"betas\"");
        PyObject* old = PySequence_Fast(current.ptr(), "ScheduleApplier: param group \"betas\" must be a sequence");
        if (old == nullptr) throw py::error_already_set();
        const py::object held = py::reinterpret_steal<py::object>(old);
        const Py_ssize_t k = PySequence_Fast_GET_SIZE(old);
        if (k < 1) throw py::value_error("ScheduleApplier: param group \"betas\" is empty");
        py::tuple pair(k);
        pair[0] = value;
        for (Py_ssize_t i = 1; i < k; ++i) pair[i] = py::reinterpret_borrow<py::object>(PySequence_Fast_ITEMS(old)[i]);
        if (PyDict_SetItem(group.ptr(), key_.ptr(), pair.ptr()) != 0) throw py::error_already_set();
      } else if (current && !current.is_none() && !PyFloat_CheckExact(current.ptr()) && py::hasattr(current, "fill_")) {
        current.attr("fill_")(value);  // a tensor lr: in place; the value returned is the one it holds
        const double held = PyFloat_AsDouble(current.ptr());
        if (held == -1.0 && PyErr_Occurred()) {
          PyErr_Clear();  // a tensor-like object that is not a number: report the value written
        } else {
          value = py::reinterpret_steal<py::object>(PyFloat_FromDouble(held));
          if (!value) throw py::error_already_set();
        }
      } else if (PyDict_SetItem(group.ptr(), key_.ptr(), value.ptr()) != 0) {
        throw py::error_already_set();
      }
      if (out != nullptr) PyList_SET_ITEM(out, static_cast<Py_ssize_t>(g), value.release().ptr());
    }
  }

  std::vector<Schedule> schedules_;
  py::str key_;
  bool betas_;

 public:
  /** Same schedules (in order) and key: two twins in the same state hold equal appliers. */
  bool operator==(const ScheduleApplier& o) const {
    if (schedules_.size() != o.schedules_.size() || !key_.equal(o.key_)) return false;
    for (size_t i = 0; i < schedules_.size(); ++i)
      if (!same_schedule(schedules_[i].data(), o.schedules_[i].data())) return false;
    return true;
  }
};

/**
 * step_schedules(applier, step, base_lrs, param_groups, expected[, other, other_bases]):
 * applier.apply_if(...) (then other's, e.g. momentum, unchecked) as a METH_FASTCALL builtin. A twin
 * scheduler calls it once per step(); a pybind11 method call costs ~300 ns more here (bound
 * method, argument tuple, dispatch), a third of the whole step.
 */
PyObject* step_schedules(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  try {
    if (nargs != 5 && nargs != 7)
      throw py::type_error("step_schedules(applier, step, base_lrs, param_groups, expected[, other, other_bases]): "
                           "got " + std::to_string(nargs) + " arguments");
    auto as_applier = [](PyObject* o, const char* what) -> const ScheduleApplier& {
      if (!py::isinstance<ScheduleApplier>(o))
        throw py::type_error(std::string("step_schedules: ") + what + " must be a ScheduleApplier, got " +
                             Py_TYPE(o)->tp_name);
      return py::cast<const ScheduleApplier&>(py::handle(o));
    };
    const ScheduleApplier& applier = as_applier(args[0], "applier");
    const long long step = PyLong_AsLongLong(args[1]);
    if (step == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (nargs == 5) return applier.apply_if(step, args[2], args[3], args[4]).release().ptr();
    const ScheduleApplier& other = as_applier(args[5], "other");
    return applier.apply_if(step, args[2], args[3], args[4], &other, args[6]).release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (py::builtin_exception& e) {  // value_error, type_error, cast_error
    e.set_error();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

PyMethodDef step_schedules_def = {
    "step_schedules", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&step_schedules)), METH_FASTCALL,
    "step_schedules(applier, step, base_lrs, param_groups, expected[, other, other_bases])\n--\n\n"
    "ScheduleApplier.apply (then other.apply with other_bases: lr, then momentum) in one fast call;\n"
    "returns the values of `applier`, or None (nothing written) when a group's value differs from\n"
    "expected[g] (None: no check). The body of a twin scheduler's step()."};

}  // namespace

void bind_schedule_applier(py::module_& m) {
  m.add_object("step_schedules", py::reinterpret_steal<py::object>(
                                     PyCFunction_NewEx(&step_schedules_def, nullptr, m.attr("__name__").ptr())));
  py::class_<ScheduleApplier>(m, "ScheduleApplier", R"pbdoc(Writes ``schedules[g](step, base_lrs[g])`` into each param group's ``key`` (a twin's step).

One schedule serves all groups when ``schedules`` has one entry. Tensor values are filled in place;
``key="betas"`` replaces beta1 of the pair.)pbdoc")
      .def(py::init<const std::vector<const Schedule*>&, const std::string&>(), py::arg("schedules"),
           py::arg("key") = "lr")
      .def("apply", &ScheduleApplier::apply, py::arg("step"), py::arg("base_lrs"), py::arg("param_groups"),
           R"pbdoc(Set ``param_groups[g][key] = schedules[g](step, base_lrs[g])``; return the values.

A twin scheduler calls ``step_schedules`` instead: the same, plus momentum, as one fast call.)pbdoc")
      .def("__eq__", [](const ScheduleApplier& a, const ScheduleApplier& b) { return a == b; }, py::is_operator())
      .def("__eq__", [](const ScheduleApplier&, const py::object&) { return false; });

}

}  // namespace fusedlr
