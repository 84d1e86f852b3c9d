// fusedlr._C.Schedule: building and evaluating the schedules of fusedlr/schedule.h from Python.
// Every schedule that is built or restored here passes schedule_error() (fusedlr/schedule_check.h)
// before Python sees it; schedule_lr() behind this boundary assumes valid data.

#include "schedule_bindings.h"
#include "fusedlr/schedule_check.h"
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

using Kind = ScheduleKind;

// Below this many steps a curve is computed on one thread: forking the pool costs more.
constexpr int64_t kCurveGrain = 32768;

// --- validation: argument-level checks only; values are checked by schedule_error() ----------

[[noreturn]] void invalid(const char* fn, const char* arg, const std::string& must, const std::string& got) {
  throw py::value_error(std::string(fn) + ": " + arg + " must be " + must + ", got " + got);
}

void fits(const char* fn, int nodes, int values) {
  if (nodes > kMaxScheduleNodes)
    throw py::value_error(std::string(fn) + ": the schedule would have " + std::to_string(nodes) +
                          " nodes, more than kMaxScheduleNodes = " + std::to_string(kMaxScheduleNodes));
  if (values > kMaxScheduleValues)
    throw py::value_error(std::string(fn) + ": the schedule would hold " + std::to_string(values) +
                          " milestones/breakpoints, more than kMaxScheduleValues = " +
                          std::to_string(kMaxScheduleValues));
}

/** `d` as a Schedule once the one validator (fusedlr/schedule_check.h) passes it; ValueError otherwise. */
Schedule validated(const ScheduleData& d, const char* context = nullptr) {
  const std::string error = schedule_error(d);
  if (!error.empty()) throw py::value_error(context ? std::string(context) + ": " + error : error);
  return Schedule(d);
}

// --- building ---------------------------------------------------------------------------------

ScheduleData empty() {
  ScheduleData d;
  std::memset(&d, 0, sizeof d);  // also zeroes padding: equal schedules are equal bytes
  return d;
}

Schedule leaf(const char* fn, Kind kind, std::initializer_list<double> params, int32_t flags = 0,
              const std::vector<double>& values = {}) {
  fits(fn, 1, static_cast<int>(values.size()));
  ScheduleData d = empty();
  ScheduleNode& n = d.nodes[0];
  n.kind = kind;
  n.flags = flags;
  int i = 0;
  for (double p : params) n.p[i++] = p;
  derive_params(n);
  n.vfirst = 0;
  n.vcount = static_cast<int16_t>(values.size());
  std::copy(values.begin(), values.end(), d.values);
  d.n_nodes = 1;
  d.n_values = static_cast<int32_t>(values.size());
  return validated(d);
}

/** A composite node as the root, the children's nodes appended after it (their indices relocated). */
Schedule composite(const char* fn, Kind kind, const std::vector<const Schedule*>& children,
                   const std::vector<double>& values, std::initializer_list<double> params = {}, int32_t flags = 0) {
  int nodes = 1, nvalues = static_cast<int>(values.size());
  for (const Schedule* c : children) {
    nodes += c->data().n_nodes;
    nvalues += c->data().n_values;
  }
  fits(fn, nodes, nvalues);
  ScheduleData d = empty();
  ScheduleNode& root = d.nodes[0];
  root.kind = kind;
  root.flags = flags;
  int i = 0;
  for (double p : params) root.p[i++] = p;
  derive_params(root);
  root.vfirst = 0;
  root.vcount = static_cast<int16_t>(values.size());
  std::copy(values.begin(), values.end(), d.values);
  d.n_values = static_cast<int32_t>(values.size());
  root.cfirst = 0;
  root.ccount = static_cast<int16_t>(children.size());
  d.n_links = static_cast<int32_t>(children.size());
  d.n_nodes = 1;
  for (size_t c = 0; c < children.size(); ++c) {
    const ScheduleData& s = children[c]->data();
    const int node0 = d.n_nodes, value0 = d.n_values, link0 = d.n_links;
    d.links[c] = static_cast<int16_t>(node0);
    for (int k = 0; k < s.n_nodes; ++k) {
      ScheduleNode n = s.nodes[k];
      n.vfirst = static_cast<int16_t>(n.vfirst + value0);
      n.cfirst = static_cast<int16_t>(n.cfirst + link0);
      d.nodes[node0 + k] = n;
    }
    for (int k = 0; k < s.n_values; ++k) d.values[value0 + k] = s.values[k];
    for (int k = 0; k < s.n_links; ++k) d.links[link0 + k] = static_cast<int16_t>(s.links[k] + node0);
    d.n_nodes += s.n_nodes;
    d.n_values += s.n_values;
    d.n_links += s.n_links;
  }
  return validated(d);
}

int32_t choose(const char* fn, const char* arg, const std::string& value, std::initializer_list<const char*> options) {
  int32_t i = 0;
  std::string list;
  for (const char* o : options) {
    if (value == o) return i;
    list += (i ? ", '" : "'") + std::string(o) + "'";
    ++i;
  }
  invalid(fn, arg, "one of " + list, "'" + value + "'");
}

// --- repr ---------------------------------------------------------------------------------------

std::string num(double x) { return format_number(x); }
/** A length or a step: printed as an integer when it is a whole number (lengths may be fractional). */
std::string count(double x) { return format_number(x, true); }

std::string node_repr(const ScheduleData& d, int i) {
  const ScheduleNode& n = d.nodes[i];
  const double* p = n.p;
  auto vals = [&](int first, int count, bool as_int) {
    std::string out = "[";
    for (int k = 0; k < count; ++k) {
      const double v = d.values[n.vfirst + first + k];
      out += (k ? ", " : "") + format_number(v, as_int);
    }
    return out + "]";
  };
  auto kids = [&]() {
    std::string out = "[";
    for (int k = 0; k < n.ccount; ++k) out += (k ? ", " : "") + node_repr(d, d.links[n.cfirst + k]);
    return out + "]";
  };
  switch (n.kind) {
    case Kind::kConstant:
      return "constant(factor=" + num(p[0]) + (p[1] < 0 ? std::string() : ", total_steps=" + count(p[1])) + ")";
    case Kind::kStep:
      return "step(step_size=" + count(p[0]) + ", gamma=" + num(p[1]) + ")";
    case Kind::kMultiStep:
      return "multistep(milestones=" + vals(0, n.vcount, true) + ", gamma=" + num(p[0]) + ")";
    case Kind::kLinear:
      return "linear(start_factor=" + num(p[0]) + ", end_factor=" + num(p[1]) + ", total_steps=" + count(p[2]) + ")";
    case Kind::kExponential:
      return (n.flags & 1) ? "exponential(rate=" + num(p[1]) + ")" : "exponential(gamma=" + num(p[0]) + ")";
    case Kind::kInverseTime:
      return "inverse_time(rate=" + num(p[0]) + ", decay_steps=" + count(p[1]) +
             ", staircase=" + ((n.flags & 1) ? "True" : "False") + ")";
    case Kind::kPolynomial:
      return "polynomial(total_steps=" + count(p[0]) + ", power=" + num(p[1]) + ", end_factor=" + num(p[2]) + ")";
    case Kind::kCosine:
      return "cosine(T_max=" + count(p[0]) + ", eta_min=" + num(p[1]) +
             ", periodic=" + ((n.flags & 1) ? "True" : "False") + ")";
    case Kind::kCosineRestarts:
      return "cosine_restarts(T_0=" + count(p[0]) + ", T_mult=" + num(p[1]) + ", eta_min=" + num(p[2]) +
             ", reach_min=" + ((n.flags & 1) ? "True" : "False") + ")";
    case Kind::kCyclic: {
      static const char* modes[] = {"'triangular'", "'triangular2'", "'exp_range'"};
      // p2 = up + down, p3 = up / p2: recover up, snapping the product's rounding error to a whole step.
      double up = p[2] * p[3];
      if (std::fabs(up - std::round(up)) <= 1e-9 * std::fmax(1.0, up)) up = std::round(up);
      return "cyclic(base_lr=" + num(p[0]) + ", max_lr=" + num(p[1]) + ", step_size_up=" + count(up) +
             ", step_size_down=" + count(p[2] - up) + ", mode=" + modes[n.flags & 3] + ", gamma=" + num(p[4]) +
             ((n.flags & 4) ? ", inverted=True" : "") + ")";
    }
    case Kind::kOneCycle:
      return "one_cycle(total_steps=" + count(p[4]) + ", initial=" + num(p[0]) + ", peak=" + num(p[1]) +
             ", final=" + num(p[2]) + ", pct_start=" + num(p[3]) + ", anneal_strategy=" +
             ((n.flags & 1) ? "'linear'" : "'cos'") + ", three_phase=" + ((n.flags & 2) ? "True" : "False") + ")";
    case Kind::kInverseSqrt:
      return "inverse_sqrt(timescale=" + num(p[0]) + ")";
    case Kind::kWsd: {
      static const char* shapes[] = {"'linear'", "'cosine'", "'sqrt'"};
      return "wsd(total_steps=" + count(p[1] + p[2]) + ", warmup_steps=" + count(p[0]) + ", decay_steps=" +
             count(p[2]) + ", decay=" + shapes[n.flags] + ", min_factor=" + num(p[3]) +
             ", warmup_start_factor=" + num(p[4]) + ")";
    }
    case Kind::kPiecewiseConstant: {
      const int k = n.vcount / 2;
      return "piecewise_constant(boundaries=" + vals(0, k, true) + ", factors=" + vals(k, k + 1, false) + ")";
    }
    case Kind::kPiecewiseLinear: {
      const int k = n.vcount / 2;
      return "piecewise_linear(steps=" + vals(0, k, true) + ", factors=" + vals(k, k, false) + ")";
    }
    case Kind::kWarmup:
      return "warmup(" + node_repr(d, d.links[n.cfirst]) + ", steps=" + count(p[0]) + ", start_factor=" + num(p[1]) +
             ", mode=" + ((n.flags & 1) ? "'exponential'" : "'linear'") + ")";
    case Kind::kSequential:
      return "sequential(" + kids() + ", boundaries=" + vals(0, n.vcount, true) + ")";
    case Kind::kChained:
      return "chained(" + kids() + ")";
    default:
      return "<invalid schedule node>";
  }
}

bool same(const ScheduleData& a, const ScheduleData& b) {
  if (a.n_nodes != b.n_nodes || a.n_values != b.n_values || a.n_links != b.n_links) return false;
  for (int i = 0; i < a.n_nodes; ++i) {
    const ScheduleNode &x = a.nodes[i], &y = b.nodes[i];
    if (x.kind != y.kind || x.flags != y.flags || x.vfirst != y.vfirst || x.vcount != y.vcount ||
        x.cfirst != y.cfirst || x.ccount != y.ccount)
      return false;
    for (int k = 0; k < kScheduleParams; ++k)
      if (x.p[k] != y.p[k]) return false;
  }
  for (int i = 0; i < a.n_values; ++i)
    if (a.values[i] != b.values[i]) return false;
  for (int i = 0; i < a.n_links; ++i)
    if (a.links[i] != b.links[i]) return false;
  return true;
}

// --- pickling: a tuple of plain numbers, checked on the way back in ----------------------------

py::tuple get_state(const Schedule& s) {
  const ScheduleData& d = s.data();
  py::list nodes, values, links;
  for (int i = 0; i < d.n_nodes; ++i) {
    const ScheduleNode& n = d.nodes[i];
    py::list params;
    for (double p : n.p) params.append(p);
    nodes.append(py::make_tuple(static_cast<int32_t>(n.kind), n.flags, n.vfirst, n.vcount, n.cfirst, n.ccount,
                                py::tuple(params)));
  }
  for (int i = 0; i < d.n_values; ++i) values.append(d.values[i]);
  for (int i = 0; i < d.n_links; ++i) links.append(d.links[i]);
  return py::make_tuple(1, py::tuple(nodes), py::tuple(values), py::tuple(links));
}

/**
 * The inverse of get_state, for a state from anywhere (a pickle, a loaded state_dict: a file
 * someone sent): only the shape of the tuple is parsed here; the derived slots are recomputed and
 * every value then goes through the one validator. Any bad state raises TypeError/ValueError.
 */
Schedule set_state(const py::tuple& state) {
  static const char* ctx = "Schedule.__setstate__";
  auto bad = [](const std::string& why) { throw py::value_error(std::string(ctx) + ": " + why); };
  ScheduleData d = empty();
  try {
    if (state.size() != 4 || state[0].cast<int64_t>() != 1)
      bad("unknown state format (expected (1, nodes, values, links))");
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
      if (kind < 0 || kind >= static_cast<int64_t>(Kind::kCount)) bad("unknown node kind " + std::to_string(kind));
      n.kind = static_cast<Kind>(kind);
      n.flags = t[1].cast<int32_t>();
      n.vfirst = t[2].cast<int16_t>();
      n.vcount = t[3].cast<int16_t>();
      n.cfirst = t[4].cast<int16_t>();
      n.ccount = t[5].cast<int16_t>();
      const auto params = t[6].cast<std::vector<double>>();
      if (params.size() != kScheduleParams) bad("node " + std::to_string(i) + " must have 6 parameters");
      std::copy(params.begin(), params.end(), n.p);
      derive_params(n);  // never trusted from outside
    }
  } catch (const py::cast_error& e) {
    throw py::type_error(std::string(ctx) + ": malformed state (" + e.what() + ")");
  }
  return validated(d, ctx);
}

std::vector<const Schedule*> pointers(const std::vector<Schedule>& v) {
  std::vector<const Schedule*> out;
  for (const Schedule& s : v) out.push_back(&s);
  return out;
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
      if (!same(schedules_[i].data(), o.schedules_[i].data())) return false;
    return true;
  }
};

/**
 * The cycle of a cosine_restarts schedule (its root) that holds the real step x >= 0: whole steps
 * as the schedule computes them (in int64), fractional ones (torch's fractional epochs) in doubles.
 */
void restart_cycle_at(const ScheduleData& d, double x, const char* ctx, double& start, double& len) {
  if (d.nodes[0].kind != ScheduleKind::kCosineRestarts) invalid(ctx, "schedule", "a cosine_restarts schedule", node_repr(d, 0));
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
      .def("__repr__", [](const Schedule& s) { return node_repr(s.data(), 0); })
      .def("__eq__", [](const Schedule& a, const Schedule& b) { return same(a.data(), b.data()); }, py::is_operator())
      .def("__hash__", [](const Schedule& s) { return py::hash(get_state(s)); })
      .def(py::pickle(&get_state, &set_state))
      .def("__copy__", [](const Schedule& s) { return s; })
      .def("__deepcopy__", [](const Schedule& s, py::dict) { return s; }, py::arg("memo"));

  // --- factories (names and arguments as in fusedlr.schedules) --------------------------------
  // Each factory only translates its arguments into a node (choices spelled as strings, which of
  // two arguments is given, sorting); the ranges of the values are checked once, by
  // schedule_error(), on the node it builds.

  cls.def_static(
      "constant",
      [](double factor, std::optional<int64_t> total_steps) {
        return leaf("constant", Kind::kConstant, {factor, total_steps ? static_cast<double>(*total_steps) : -1.0});
      },
      py::arg("factor") = 1.0, py::arg("total_steps") = py::none(),
      R"pbdoc(base_lr * factor, for the first total_steps steps (all steps when None), then base_lr.)pbdoc");

  cls.def_static(
      "step",
      [](int64_t step_size, double gamma) {
        return leaf("step", Kind::kStep, {static_cast<double>(step_size), gamma});
      },
      py::arg("step_size"), py::arg("gamma") = 0.1, R"pbdoc(base_lr * gamma ** (step // step_size).)pbdoc");

  cls.def_static(
      "multistep",
      [](std::vector<int64_t> milestones, double gamma) {
        std::sort(milestones.begin(), milestones.end());
        return leaf("multistep", Kind::kMultiStep, {gamma}, 0,
                    std::vector<double>(milestones.begin(), milestones.end()));
      },
      py::arg("milestones"), py::arg("gamma") = 0.1,
      R"pbdoc(base_lr * gamma ** (number of milestones <= step); a repeated milestone counts twice.)pbdoc");

  cls.def_static(
      "linear",
      [](double start_factor, double end_factor, double total_steps) {
        return leaf("linear", Kind::kLinear, {start_factor, end_factor, total_steps});
      },
      py::arg("start_factor") = 1.0 / 3, py::arg("end_factor") = 1.0, py::arg("total_steps") = 5.0,
      R"pbdoc(base_lr * (start + (end - start) * min(step, total_steps) / total_steps); total_steps > 0 may be fractional.)pbdoc");

  cls.def_static(
      "exponential",
      [](std::optional<double> gamma, std::optional<double> rate) {
        if (gamma.has_value() == rate.has_value())
          throw py::value_error("exponential: give exactly one of gamma and rate");
        if (gamma) return leaf("exponential", Kind::kExponential, {*gamma, 0.0}, 0);
        return leaf("exponential", Kind::kExponential, {0.0, *rate}, 1);
      },
      py::arg("gamma") = py::none(), py::arg("rate") = py::none(),
      R"pbdoc(base_lr * gamma ** step, or base_lr * exp(-rate * step).)pbdoc");

  cls.def_static(
      "inverse_time",
      [](double rate, double decay_steps, bool staircase) {
        return leaf("inverse_time", Kind::kInverseTime, {rate, decay_steps}, staircase ? 1 : 0);
      },
      py::arg("rate"), py::arg("decay_steps") = 1.0, py::arg("staircase") = false,
      R"pbdoc(base_lr / (1 + rate * step / decay_steps) (floor of the quotient when staircase).)pbdoc");

  cls.def_static(
      "polynomial",
      [](double total_steps, double power, double end_factor) {
        return leaf("polynomial", Kind::kPolynomial, {total_steps, power, end_factor});
      },
      py::arg("total_steps") = 5.0, py::arg("power") = 1.0, py::arg("end_factor") = 0.0,
      R"pbdoc((base_lr - e) * (1 - min(step, total_steps) / total_steps) ** power + e, e = base_lr * end_factor.)pbdoc");

  cls.def_static(
      "cosine",
      [](double T_max, double eta_min, bool periodic) {
        return leaf("cosine", Kind::kCosine, {T_max, eta_min}, periodic ? 1 : 0);
      },
      py::arg("T_max"), py::arg("eta_min") = 0.0, py::arg("periodic") = false,
      R"pbdoc(eta_min + (base_lr - eta_min) * (1 + cos(pi * step / T_max)) / 2; held at eta_min after T_max unless periodic.)pbdoc");

  cls.def_static(
      "cosine_restarts",
      [](int64_t T_0, double T_mult, double eta_min, bool reach_min) {
        return leaf("cosine_restarts", Kind::kCosineRestarts, {static_cast<double>(T_0), T_mult, eta_min},
                    reach_min ? 1 : 0);
      },
      py::arg("T_0"), py::arg("T_mult") = 1.0, py::arg("eta_min") = 0.0, py::arg("reach_min") = false,
      R"pbdoc(Cosine annealing restarted every cycle; cycle i lasts T_0 * T_mult ** i steps.)pbdoc");

  cls.def_static(
      "cyclic",
      [](double base_lr, double max_lr, double step_size_up, std::optional<double> step_size_down,
         const std::string& mode, double gamma, bool inverted) {
        const int32_t m = choose("cyclic", "mode", mode, {"triangular", "triangular2", "exp_range"});
        if (!(step_size_up > 0)) invalid("cyclic", "step_size_up", "> 0", num(step_size_up));
        const double down = step_size_down.value_or(step_size_up);
        if (!(down >= 0)) invalid("cyclic", "step_size_down", ">= 0", num(down));
        // torch.optim.lr_scheduler.CyclicLR: total_size = up + down, step_ratio = up / total_size
        const double total = step_size_up + down;
        return leaf("cyclic", Kind::kCyclic, {base_lr, max_lr, total, step_size_up / total, gamma},
                    m | (inverted ? 4 : 0));
      },
      py::arg("base_lr"), py::arg("max_lr"), py::arg("step_size_up") = 2000.0, py::arg("step_size_down") = py::none(),
      py::arg("mode") = "triangular", py::arg("gamma") = 1.0, py::arg("inverted") = false,
      R"pbdoc(torch's CyclicLR policy between base_lr and max_lr (absolute: base_lr of the call is ignored).

inverted=True runs from max_lr down to base_lr and back, as torch cycles momentum.)pbdoc");

  cls.def_static(
      "one_cycle",
      [](int64_t total_steps, double initial, double peak, double final_, double pct_start,
         const std::string& anneal_strategy, bool three_phase) {
        const int32_t anneal = choose("one_cycle", "anneal_strategy", anneal_strategy, {"cos", "linear"});
        return leaf("one_cycle", Kind::kOneCycle, {initial, peak, final_, pct_start, static_cast<double>(total_steps)},
                    anneal | (three_phase ? 2 : 0));
      },
      py::arg("total_steps"), py::arg("initial"), py::arg("peak"), py::arg("final"), py::arg("pct_start") = 0.3,
      py::arg("anneal_strategy") = "cos", py::arg("three_phase") = false,
      R"pbdoc(torch's OneCycleLR shape through absolute values initial -> peak (-> initial) -> final; held after.)pbdoc");

  cls.def_static(
      "inverse_sqrt", [](double timescale) { return leaf("inverse_sqrt", Kind::kInverseSqrt, {timescale}); },
      py::arg("timescale") = 1.0, R"pbdoc(base_lr / sqrt(1 + step / timescale).)pbdoc");

  cls.def_static(
      "wsd",
      [](int64_t total_steps, int64_t warmup_steps, int64_t decay_steps, const std::string& decay, double min_factor,
         double warmup_start_factor) {
        const int32_t shape = choose("wsd", "decay", decay, {"linear", "cosine", "sqrt"});
        if (total_steps < 1) invalid("wsd", "total_steps", ">= 1", std::to_string(total_steps));
        return leaf("wsd", Kind::kWsd,
                    {static_cast<double>(warmup_steps), static_cast<double>(total_steps) - static_cast<double>(decay_steps),
                     static_cast<double>(decay_steps), min_factor, warmup_start_factor},
                    shape);
      },
      py::arg("total_steps"), py::arg("warmup_steps"), py::arg("decay_steps"), py::arg("decay") = "linear",
      py::arg("min_factor") = 0.0, py::arg("warmup_start_factor") = 0.0,
      R"pbdoc(Warmup-stable-decay: linear warmup, base_lr, then a linear/cosine/1-sqrt decay over the last decay_steps.)pbdoc");

  cls.def_static(
      "piecewise_constant",
      [](const std::vector<int64_t>& boundaries, const std::vector<double>& factors) {
        if (factors.size() != boundaries.size() + 1)
          invalid("piecewise_constant", "factors", "one longer than boundaries (" + std::to_string(boundaries.size() + 1) +
                  " values)", std::to_string(factors.size()) + " values");
        std::vector<double> v(boundaries.begin(), boundaries.end());
        v.insert(v.end(), factors.begin(), factors.end());
        return leaf("piecewise_constant", Kind::kPiecewiseConstant, {}, 0, v);
      },
      py::arg("boundaries"), py::arg("factors"),
      R"pbdoc(base_lr * factors[i] where i = number of boundaries <= step.)pbdoc");

  cls.def_static(
      "piecewise_linear",
      [](const std::vector<int64_t>& steps, const std::vector<double>& factors) {
        if (steps.empty()) invalid("piecewise_linear", "steps", "non-empty", "[]");
        if (factors.size() != steps.size())
          invalid("piecewise_linear", "factors", "as long as steps (" + std::to_string(steps.size()) + " values)",
                  std::to_string(factors.size()) + " values");
        std::vector<double> v(steps.begin(), steps.end());
        v.insert(v.end(), factors.begin(), factors.end());
        return leaf("piecewise_linear", Kind::kPiecewiseLinear, {}, 0, v);
      },
      py::arg("steps"), py::arg("factors"),
      R"pbdoc(base_lr * the linear interpolation of (steps, factors); held outside [steps[0], steps[-1]].)pbdoc");

  cls.def_static(
      "warmup",
      [](const Schedule& schedule, int64_t steps, double start_factor, const std::string& mode) {
        const int32_t m = choose("warmup", "mode", mode, {"linear", "exponential"});
        return composite("warmup", Kind::kWarmup, {&schedule}, {}, {static_cast<double>(steps), start_factor}, m);
      },
      py::arg("schedule"), py::arg("steps"), py::arg("start_factor") = 0.0, py::arg("mode") = "linear",
      R"pbdoc(Ramp from start_factor * schedule(0) to schedule(0) over `steps` steps, then schedule(step - steps).)pbdoc");

  cls.def_static(
      "sequential",
      [](const std::vector<Schedule>& schedules, const std::vector<int64_t>& boundaries) {
        if (schedules.empty()) invalid("sequential", "schedules", "a non-empty list", "[]");
        if (boundaries.size() + 1 != schedules.size())
          invalid("sequential", "boundaries", "one shorter than schedules (" + std::to_string(schedules.size() - 1) +
                  " boundaries)", std::to_string(boundaries.size()) + " boundaries");
        return composite("sequential", Kind::kSequential, pointers(schedules),
                         std::vector<double>(boundaries.begin(), boundaries.end()));
      },
      py::arg("schedules"), py::arg("boundaries"),
      R"pbdoc(schedules[i] from boundaries[i-1] on, seeing step - boundaries[i-1]; boundary 0 skips a schedule.)pbdoc");

  cls.def_static(
      "chained",
      [](const std::vector<Schedule>& schedules) {
        if (schedules.empty()) invalid("chained", "schedules", "a non-empty list", "[]");
        return composite("chained", Kind::kChained, pointers(schedules), {});
      },
      py::arg("schedules"),
      R"pbdoc(Each schedule's value is the next one's base_lr: the product of multiplicative schedules.)pbdoc");
}

}  // namespace fusedlr
