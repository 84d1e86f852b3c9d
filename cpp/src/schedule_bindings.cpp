// fusedlr._C.Schedule: building and evaluating the schedules of fusedlr/schedule.h from Python.
// Every schedule that is built or restored here passes schedule_error() (fusedlr/schedule_check.h)
// before Python sees it; schedule_lr() behind this boundary assumes valid data.

#include "schedule_bindings.h"
#include "fusedlr/schedule_build.h"
#include "fusedlr/schedule_curve.h"

#include <ATen/Parallel.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace py = pybind11;

namespace fusedlr {
namespace {

// Below this many steps a curve is computed on one thread: forking the pool costs more.
constexpr int64_t kCurveGrain = 32768;

[[noreturn]] void invalid(const char* fn, const char* arg, const std::string& must, const std::string& got) {
  throw py::value_error(std::string(fn) + ": " + arg + " must be " + must + ", got " + got);
}

// --- Python values <-> the arguments of a kind's row (fusedlr/schedule_build.h) ---------------

/** Python's name for the type of `o` ("str", "list"). */
std::string type_name(py::handle o) { return Py_TYPE(o.ptr())->tp_name; }

double as_number(py::handle o, const std::string& what) {
  const double x = PyFloat_AsDouble(o.ptr());
  if (x == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::type_error(what + " must be a number, got " + type_name(o));
  }
  return x;
}

/** One factory argument from Python, as field `f` takes it; None is "not given". */
ScheduleArg from_python(const char* fn, const Field& f, py::handle o) {
  const std::string what = std::string(fn) + ": " + f.name;
  ScheduleArg a;
  a.given = !o.is_none();
  if (!a.given) return a;
  switch (f.kind) {
    case FieldKind::kNumber:
      a.number = as_number(o, what);
      break;
    case FieldKind::kBool: {
      const int truth = PyObject_IsTrue(o.ptr());
      if (truth < 0) throw py::error_already_set();
      a.number = truth;
      break;
    }
    case FieldKind::kChoice:
      if (!py::isinstance<py::str>(o)) throw py::type_error(what + " must be a string, got " + type_name(o));
      a.text = o.cast<std::string>();
      break;
    case FieldKind::kSteps:
    case FieldKind::kFactors:
      if (!py::isinstance<py::sequence>(o) || py::isinstance<py::str>(o))
        throw py::type_error(what + " must be a sequence of numbers, got " + type_name(o));
      for (py::handle x : py::reinterpret_borrow<py::sequence>(o)) a.list.push_back(as_number(x, what + " items"));
      break;
    case FieldKind::kChild:
      if (!py::isinstance<Schedule>(o)) throw py::type_error(what + " must be a Schedule, got " + type_name(o));
      a.children.push_back(o.cast<const Schedule&>().data());
      break;
    case FieldKind::kChildren:
      if (!py::isinstance<py::sequence>(o) || py::isinstance<py::str>(o))
        throw py::type_error(what + " must be a sequence of Schedules, got " + type_name(o));
      for (py::handle x : py::reinterpret_borrow<py::sequence>(o)) {
        if (!py::isinstance<Schedule>(x)) throw py::type_error(what + " must hold Schedules, got " + type_name(x));
        a.children.push_back(x.cast<const Schedule&>().data());
      }
      break;
  }
  return a;
}

/** The schedule of kind `kind` from keyword arguments named as its row's fields (absent: None). */
Schedule make(const std::string& kind, const py::dict& kwargs) {
  const KindSpec* k = kind_spec(kind);
  if (k == nullptr) {
    std::string names;
    for (const KindSpec& row : kinds::kKinds) names += (names.empty() ? "'" : ", '") + std::string(row.name) + "'";
    invalid("Schedule.make", "kind", "one of " + names, "'" + kind + "'");
  }
  const int nf = field_count(*k);
  for (auto item : kwargs) {
    const std::string name = py::str(item.first);
    bool known = false;
    for (int i = 0; i < nf; ++i) known = known || name == k->fields[i].name;
    if (!known) throw py::type_error(std::string(k->name) + "() got an unexpected keyword argument '" + name + "'");
  }
  std::vector<ScheduleArg> args;
  for (int i = 0; i < nf; ++i) {
    const char* name = k->fields[i].name;
    const py::object value = kwargs.contains(name) ? py::object(kwargs[name]) : py::object(py::none());
    args.push_back(from_python(k->name, k->fields[i], value));
  }
  ScheduleData d;
  const std::string problem = build_schedule(kind, args, d);
  if (!problem.empty()) throw py::value_error(problem);
  return Schedule(d);
}

/** Field `f`'s argument as Python shows it; children through `child` (a Schedule, or its state). */
template <typename ChildFn>
py::object to_python(const Field& f, const ScheduleArg& a, ChildFn child) {
  auto numbers = [](const std::vector<double>& v, bool as_int) {
    py::list out;
    for (double x : v) {
      if (as_int) out.append(py::int_(static_cast<long long>(x)));
      else out.append(x);
    }
    return out;
  };
  switch (f.kind) {
    case FieldKind::kNumber:
      if (!a.given) return py::none();
      if (counts_steps(f) && a.number == std::floor(a.number)) return py::int_(static_cast<long long>(a.number));
      return py::float_(a.number);
    case FieldKind::kBool: return py::bool_(a.number != 0.0);
    case FieldKind::kChoice: return py::str(a.text);
    case FieldKind::kSteps: return numbers(a.list, true);
    case FieldKind::kFactors: return numbers(a.list, false);
    case FieldKind::kChild: return child(a.children.at(0));
    case FieldKind::kChildren: {
      py::list out;
      for (const ScheduleData& c : a.children) out.append(child(c));
      return out;
    }
  }
  return py::none();
}

/** The root's arguments by field name; children through `child`. */
template <typename ChildFn>
py::dict arguments(const ScheduleData& d, ChildFn child) {
  const KindSpec* k = kind_spec(d.nodes[0].kind);
  const std::vector<ScheduleArg> args = schedule_arguments(d, 0);
  py::dict out;
  for (size_t i = 0; i < args.size(); ++i) out[k->fields[i].name] = to_python(k->fields[i], args[i], child);
  return out;
}

// --- pickling: the factory arguments (format 2), checked on the way back in ----------------------

py::tuple get_state(const ScheduleData& d) {
  return py::make_tuple(2, schedule_kind_name(d.nodes[0].kind),
                        arguments(d, [](const ScheduleData& c) -> py::object { return get_state(c); }));
}

Schedule set_state(const py::tuple& state, int depth = 0);

/** Format 1 (fusedlr 0.1): node slots as numbers, derived slots recomputed, cyclic/wsd moved. */
Schedule set_state_format1(const py::tuple& state, const char* ctx) {
  auto bad = [ctx](const std::string& why) { throw py::value_error(std::string(ctx) + ": " + why); };
  ScheduleData d = empty_schedule();
  const auto nodes = state[1].cast<py::sequence>();
  const auto values = state[2].cast<std::vector<double>>();
  const auto links = state[3].cast<std::vector<int64_t>>();
  if (nodes.size() < 1 || nodes.size() > static_cast<size_t>(kMaxScheduleNodes))
    bad("a schedule has 1 to " + std::to_string(kMaxScheduleNodes) + " nodes, got " + std::to_string(nodes.size()));
  if (values.size() > static_cast<size_t>(kMaxScheduleValues))
    bad("a schedule holds at most " + std::to_string(kMaxScheduleValues) + " values, got " +
        std::to_string(values.size()));
  if (links.size() > static_cast<size_t>(kMaxScheduleNodes))
    bad("a schedule has at most " + std::to_string(kMaxScheduleNodes) + " child links, got " +
        std::to_string(links.size()));
  d.n_nodes = static_cast<int32_t>(nodes.size());
  d.n_values = static_cast<int32_t>(values.size());
  d.n_links = static_cast<int32_t>(links.size());
  std::copy(values.begin(), values.end(), d.values);
  for (size_t i = 0; i < links.size(); ++i) {
    if (links[i] <= 0 || links[i] >= d.n_nodes) bad("child index out of range: " + std::to_string(links[i]));
    d.links[i] = static_cast<int16_t>(links[i]);
  }
  for (int i = 0; i < d.n_nodes; ++i) {
    const auto t = nodes[static_cast<size_t>(i)].cast<py::sequence>();
    if (t.size() != 7) bad("node " + std::to_string(i) + " must be (kind, flags, vfirst, vcount, cfirst, ccount, params)");
    ScheduleNode& n = d.nodes[i];
    const int64_t kind = t[0].cast<int64_t>();
    if (kind < 0 || kind >= static_cast<int64_t>(ScheduleKind::kCount)) bad("unknown node kind " + std::to_string(kind));
    n.kind = static_cast<ScheduleKind>(kind);
    n.flags = t[1].cast<int32_t>();
    n.vfirst = t[2].cast<int16_t>();
    n.vcount = t[3].cast<int16_t>();
    n.cfirst = t[4].cast<int16_t>();
    n.ccount = t[5].cast<int16_t>();
    const auto params = t[6].cast<std::vector<double>>();
    if (params.size() != kScheduleParams) bad("node " + std::to_string(i) + " must have 6 parameters");
    std::copy(params.begin(), params.end(), n.p);
    upgrade_format1_params(n);
    derive_params(n);  // never trusted from outside
  }
  const std::string error = schedule_error(d);
  if (!error.empty()) bad(error);
  return Schedule(d);
}

/**
 * The inverse of get_state, for a state from anywhere (a pickle, a loaded state_dict: a file
 * someone sent): parsed, never evaluated, and built by the same factory path (format 2) or put
 * through the one validator (format 1). Any bad state raises TypeError/ValueError.
 */
Schedule set_state(const py::tuple& state, int depth) {
  static const char* ctx = "Schedule.__setstate__";
  // A schedule nests at most kMaxScheduleNodes deep: deeper states are refused before they recurse.
  if (depth >= kMaxScheduleNodes)
    throw py::value_error(std::string(ctx) + ": a schedule has at most " + std::to_string(kMaxScheduleNodes) + " nodes");
  try {
    const int64_t format = state.size() > 0 ? state[0].cast<int64_t>() : 0;
    if (format == 1 && state.size() == 4) return set_state_format1(state, ctx);
    if (format != 2 || state.size() != 3)
      throw py::value_error(std::string(ctx) + ": unknown state format (expected (2, kind, arguments))");
    const std::string kind = state[1].cast<std::string>();
    const py::dict given = state[2].cast<py::dict>();
    const KindSpec* k = kind_spec(kind);
    if (k == nullptr) throw py::value_error(std::string(ctx) + ": unknown schedule kind '" + kind + "'");
    py::dict kwargs;
    for (auto item : given) {
      const std::string name = py::str(item.first);
      py::object value = py::reinterpret_borrow<py::object>(item.second);
      for (int i = 0; i < field_count(*k); ++i) {
        const Field& f = k->fields[i];
        if (name != f.name) continue;
        auto child = [&](py::handle c) {
          if (!py::isinstance<py::tuple>(c))
            throw py::type_error(std::string(ctx) + ": malformed state (" + f.name + " must hold child states, got " +
                                 type_name(c) + ")");
          return py::cast(set_state(py::reinterpret_borrow<py::tuple>(c), depth + 1));
        };
        if (f.kind == FieldKind::kChild) value = child(value);
        if (f.kind == FieldKind::kChildren) {
          if (!py::isinstance<py::sequence>(value))
            throw py::type_error(std::string(ctx) + ": malformed state (" + f.name + " must be a list, got " +
                                 type_name(value) + ")");
          py::list children;
          for (py::handle c : py::reinterpret_borrow<py::sequence>(value)) children.append(child(c));
          value = children;
        }
      }
      kwargs[py::str(name)] = value;
    }
    try {
      return make(kind, kwargs);
    } catch (py::value_error& e) {
      throw py::value_error(std::string(ctx) + ": " + e.what());
    }
  } catch (const py::cast_error& e) {
    throw py::type_error(std::string(ctx) + ": malformed state (" + e.what() + ")");
  }
}

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
 * The cycle of a cosine_restarts schedule (its root) that holds the real step x >= 0: whole steps
 * as the schedule computes them (in int64), fractional ones (torch's fractional epochs) in doubles.
 */
void restart_cycle_at(const ScheduleData& d, double x, const char* ctx, double& start, double& len) {
  if (d.nodes[0].kind != ScheduleKind::kCosineRestarts) invalid(ctx, "schedule", "a cosine_restarts schedule", schedule_repr(d));
  if (!(x >= 0.0 && x <= static_cast<double>(kMaxScheduleStep))) invalid(ctx, "step", "a step in [0, 2**62]", format_number(x));
  const double* p = d.nodes[0].p;
  double next;
  if (x == std::floor(x)) {
    detail::restart_cycle(p, static_cast<int64_t>(x), start, len, next);
  } else if (p[1] == 1.0) {
    start = std::floor(x / p[0]) * p[0];
    len = p[0];
  } else {
    detail::restart_cycle_growing(p, x, start, len, next);
  }
}

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

void bind_schedules(py::module_& m) {
  m.add_object("step_schedules", py::reinterpret_steal<py::object>(
                                     PyCFunction_NewEx(&step_schedules_def, nullptr, m.attr("__name__").ptr())));
  m.def("_cos_pi", &smath::cos_pi, py::arg("x"),
        R"pbdoc(cos(pi * x) as the schedules compute it (fusedlr/schedule_math.h); for tests.)pbdoc");
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

  py::class_<Schedule> cls(m, "Schedule", R"pbdoc(A closed-form learning-rate schedule (fusedlr/schedule.h).

``s(step, base_lr=1.0)`` is the learning rate of ``step`` for an optimizer group whose initial
learning rate is ``base_lr``; with the default 1.0 it reads as a factor. Any step is computed
directly from the schedule's parameters: there is no state. Create schedules with the static
factories (or with :mod:`fusedlr.schedules`); compose them with ``warmup``, ``sequential`` and
``chained``.)pbdoc");

  cls.def("__call__", &Schedule::operator(), py::arg("step"), py::arg("base_lr") = 1.0,
          R"pbdoc(The learning rate at ``step`` (steps below 0 count as 0) for base learning rate ``base_lr``.)pbdoc")
      .def(
          "lrs",
          [](const Schedule& s, int64_t step, const std::vector<double>& bases) {
            std::vector<double> out(bases.size());
            for (size_t i = 0; i < bases.size(); ++i) out[i] = s(step, bases[i]);
            return out;
          },
          py::arg("step"), py::arg("base_lrs"),
          R"pbdoc(The learning rates at ``step`` for each of ``base_lrs`` (one call for all param groups).)pbdoc")
      .def(
          "restart_cycle",
          [](const Schedule& s, double step) {
            double start, len;
            restart_cycle_at(s.data(), step, "Schedule.restart_cycle", start, len);
            return py::make_tuple(start, len);
          },
          py::arg("step"),
          R"pbdoc(The restart cycle of a ``cosine_restarts`` schedule that holds ``step``: ``(first step, length)``.

torch's ``CosineAnnealingWarmRestarts`` calls them ``last_epoch - T_cur`` and ``T_i``. ``step`` may be
fractional (torch's ``step(epoch)`` takes fractional epochs).)pbdoc")
      .def(
          "restart_value",
          [](const Schedule& s, double step, double base_lr) {
            const ScheduleData d = s.data();
            double start, len;
            restart_cycle_at(d, step, "Schedule.restart_value", start, len);
            return detail::restart_lr(d.nodes[0], step, start, len, base_lr);
          },
          py::arg("step"), py::arg("base_lr") = 1.0,
          R"pbdoc(A ``cosine_restarts`` schedule at a real ``step`` (fractional epochs, as torch's
``CosineAnnealingWarmRestarts.step(epoch)``); equal to ``s(step, base_lr)`` at whole steps.)pbdoc")
      .def(
          "curve",
          [](const Schedule& s, int64_t n, int64_t start, double base_lr) {
            if (n < 0) invalid("Schedule.curve", "n", "a number of steps >= 0", std::to_string(n));
            // A curve stops at the last step a schedule names, so its block arithmetic cannot overflow.
            if (n > 0 && start > kMaxScheduleStep - (n - 1))
              invalid("Schedule.curve", "start", "such that start + n - 1 <= 2**62", std::to_string(start));
            py::array_t<double> out(n);
            double* o = out.mutable_data();
            const ScheduleData d = s.data();
            {
              py::gil_scoped_release release;
              // Steps are independent (closed form), so the curve splits across torch's threads.
              at::parallel_for(0, n, kCurveGrain, [&](int64_t lo, int64_t hi) {
                schedule_curve(d, start + lo, hi - lo, base_lr, o + lo);
              });
            }
            return out;
          },
          py::arg("n"), py::arg("start") = 0, py::arg("base_lr") = 1.0,
          R"pbdoc(The learning rates of steps ``start, ..., start + n - 1`` as a float64 numpy array, computed in C++.)pbdoc")
      .def_property_readonly(
          "kind",
          [](const Schedule& s) { return schedule_kind_name(s.data().nodes[0].kind); },
          R"pbdoc(The name of the outermost schedule, e.g. ``"cosine"`` or ``"sequential"``.)pbdoc")
      .def_property_readonly(
          "num_nodes", [](const Schedule& s) { return s.data().n_nodes; },
          R"pbdoc(How many nodes (leaves and composites) the schedule uses, at most ``max_nodes``.)pbdoc")
      .def(
          "to_bytes",
          [](const Schedule& s) {
            return py::bytes(reinterpret_cast<const char*>(&s.data()), sizeof(ScheduleData));
          },
          R"pbdoc(The raw ScheduleData a kernel receives (layout of this build; not a storage format).)pbdoc")
      .def_readonly_static("max_nodes", &kMaxScheduleNodes)
      .def_readonly_static("max_values", &kMaxScheduleValues)
      .def_readonly_static("max_step", &kMaxScheduleStep)
      .def_property_readonly_static(
          "nbytes", [](py::object) { return sizeof(ScheduleData); },
          R"pbdoc(sizeof(ScheduleData): what a kernel launch copies.)pbdoc")
      .def_property_readonly(
          "arguments",
          [](const Schedule& s) { return arguments(s.data(), [](const ScheduleData& c) { return py::cast(Schedule(c)); }); },
          R"pbdoc(The arguments of the outermost schedule's factory, by name (children as Schedules): what ``repr`` shows.)pbdoc")
      .def("__repr__", [](const Schedule& s) { return schedule_repr(s.data()); })
      .def("__eq__", [](const Schedule& a, const Schedule& b) { return same_schedule(a.data(), b.data()); },
           py::is_operator())
      .def("__hash__", [](const Schedule& s) {
        const ScheduleData canonical = subtree(s.data(), 0);  // equal schedules, equal hashes
        return py::hash(py::bytes(reinterpret_cast<const char*>(&canonical), sizeof(ScheduleData)));
      })
      .def(py::pickle([](const Schedule& s) { return get_state(s.data()); }, [](const py::tuple& t) { return set_state(t); }))
      .def("__copy__", [](const Schedule& s) { return s; })
      .def("__deepcopy__", [](const Schedule& s, py::dict) { return s; }, py::arg("memo"));

  // --- the one factory: a kind's row (fusedlr/schedule_kinds.h) says what it takes --------------
  cls.def_static(
      "make",
      [](const std::string& kind, const py::kwargs& arguments) { return make(kind, arguments); }, py::arg("kind"),
      R"pbdoc(The schedule of kind ``kind`` ("cosine", "warmup", ...) from its arguments by name.

The functions of :mod:`fusedlr.schedules` call this with every argument of theirs; an argument left
out counts as None. Every schedule is checked here: ``ValueError`` names the argument at fault.)pbdoc");
}

}  // namespace fusedlr
