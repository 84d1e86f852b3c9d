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

/** The root of `d`, which must be a cyclic node, for a step in [0, 2^62]. */
const ScheduleNode& cyclic_root(const ScheduleData& d, double step, const char* ctx) {
  if (d.nodes[0].kind != ScheduleKind::kCyclic) invalid(ctx, "schedule", "a cyclic schedule", schedule_repr(d));
  if (!(step >= 0.0 && step <= static_cast<double>(kMaxScheduleStep)))
    invalid(ctx, "step", "a step in [0, 2**62]", format_number(step));
  return d.nodes[0];
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
    constexpr size_t kFormat1Params = 6;  // the slots a node had then (the rest are 0)
    if (params.size() != kFormat1Params) bad("node " + std::to_string(i) + " must have 6 parameters");
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

}  // namespace

void bind_schedules(py::module_& m) {
  m.def("_cos_pi", &smath::cos_pi, py::arg("x"),
        R"pbdoc(cos(pi * x) as the schedules compute it (fusedlr/schedule_math.h); for tests.)pbdoc");
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
          "cycle",
          [](const Schedule& s, double step) {
            const ScheduleNode& n = cyclic_root(s.data(), step, "Schedule.cycle");
            return detail::cyclic_cycle(n, step);
          },
          py::arg("step"),
          R"pbdoc(The cycle of a ``cyclic`` schedule that holds ``step``, counted from 1 (what torch's
``CyclicLR`` hands a ``scale_fn`` with ``scale_mode="cycle"``).)pbdoc")
      .def(
          "cyclic_value",
          [](const Schedule& s, double step, double scale) {
            const ScheduleNode& n = cyclic_root(s.data(), step, "Schedule.cyclic_value");
            return detail::cyclic_lr(n, step, detail::cyclic_cycle(n, step), scale);
          },
          py::arg("step"), py::arg("scale"),
          R"pbdoc(A ``cyclic`` schedule at ``step`` with the amplitude ``scale`` in place of its mode's (torch's
``CyclicLR`` with a custom ``scale_fn``: ``scale = scale_fn(s.cycle(step))`` or ``scale_fn(step)``).)pbdoc")
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
