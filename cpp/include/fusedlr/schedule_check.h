#pragma once
// The one validator of a ScheduleData, whatever way it comes in: built by a factory
// (fusedlr.schedules.*), restored by Schedule.__setstate__ (a pickle, a loaded optimizer
// state_dict: a file someone sent you), or handed to the op as raw bytes. schedule_lr() and
// schedule_curve() assume what is checked here and check nothing themselves.
//
// A schedule passes when its tree is well formed (counts in range, slices inside their arrays,
// every node but the root the child of exactly one node that comes before it: no cycles, a
// bounded stack), and every node's parameters are in the ranges its formula is defined on:
// steps are whole numbers in [0, kMaxScheduleStep], divisors are > 0, factors finite, derived
// slots equal to what derive_params computes, unused slots zero. Host code (std::string).

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>

#include "fusedlr/schedule.h"

namespace fusedlr {

/**
 * The shortest length (in steps) a schedule may divide by: step / length then stays finite for
 * every step up to kMaxScheduleStep (2^62 / 2^-960 = 2^1022 < DBL_MAX), so no step turns a
 * formula into inf - inf or cos(inf).
 */
constexpr double kMinScheduleLength = 0x1p-960;

/** The name of a kind as the factories spell it ("cosine", "one_cycle", ...). */
inline const char* schedule_kind_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kConstant: return "constant";
    case ScheduleKind::kStep: return "step";
    case ScheduleKind::kMultiStep: return "multistep";
    case ScheduleKind::kLinear: return "linear";
    case ScheduleKind::kExponential: return "exponential";
    case ScheduleKind::kInverseTime: return "inverse_time";
    case ScheduleKind::kPolynomial: return "polynomial";
    case ScheduleKind::kCosine: return "cosine";
    case ScheduleKind::kCosineRestarts: return "cosine_restarts";
    case ScheduleKind::kCyclic: return "cyclic";
    case ScheduleKind::kOneCycle: return "one_cycle";
    case ScheduleKind::kInverseSqrt: return "inverse_sqrt";
    case ScheduleKind::kWsd: return "wsd";
    case ScheduleKind::kPiecewiseConstant: return "piecewise_constant";
    case ScheduleKind::kPiecewiseLinear: return "piecewise_linear";
    case ScheduleKind::kWarmup: return "warmup";
    case ScheduleKind::kSequential: return "sequential";
    case ScheduleKind::kChained: return "chained";
    default: return "<unknown kind>";
  }
}

/** x as Python's repr prints a float (shortest round trip; "2.0", "nan", "1e-05"), or as an integer. */
inline std::string format_number(double x, bool as_integer = false) {
  if (as_integer && std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 9.2e18) {
    return std::to_string(static_cast<long long>(x));
  }
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[40];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

namespace detail {

/** Collects the first problem found; every check below is a no-op once one is recorded. */
class ScheduleChecker {
 public:
  explicit ScheduleChecker(const ScheduleData& s) : s_(s) {}

  std::string run() {
    if (!structure()) return error_;
    for (int i = 0; i < s_.n_nodes && error_.empty(); ++i) node(i);
    return error_;
  }

 private:
  const ScheduleData& s_;
  std::string error_;
  const char* kind_ = "";

  bool fail(const std::string& what) {
    if (error_.empty()) error_ = what;
    return false;
  }
  bool arg(bool ok, const char* name, const std::string& must, double got, bool as_integer = false) {
    return ok || fail(std::string(kind_) + ": " + name + " must be " + must + ", got " + format_number(got, as_integer));
  }

  // -- the tree --------------------------------------------------------------------------------
  bool structure() {
    if (s_.n_nodes < 1 || s_.n_nodes > kMaxScheduleNodes)
      return fail("a schedule has 1 to " + std::to_string(kMaxScheduleNodes) + " nodes, got " +
                  std::to_string(s_.n_nodes));
    if (s_.n_values < 0 || s_.n_values > kMaxScheduleValues)
      return fail("a schedule holds 0 to " + std::to_string(kMaxScheduleValues) + " values, got " +
                  std::to_string(s_.n_values));
    if (s_.n_links < 0 || s_.n_links > kMaxScheduleNodes)
      return fail("a schedule has 0 to " + std::to_string(kMaxScheduleNodes) + " child links, got " +
                  std::to_string(s_.n_links));
    int parents[kMaxScheduleNodes] = {};
    for (int i = 0; i < s_.n_nodes; ++i) {
      const ScheduleNode& n = s_.nodes[i];
      const std::string where = "node " + std::to_string(i);
      if (static_cast<int32_t>(n.kind) < 0 || n.kind >= ScheduleKind::kCount)
        return fail(where + ": unknown node kind " + std::to_string(static_cast<int32_t>(n.kind)));
      if (n.vfirst < 0 || n.vcount < 0 || n.vfirst + n.vcount > s_.n_values)
        return fail(where + ": values slice out of range");
      if (n.cfirst < 0 || n.ccount < 0 || n.cfirst + n.ccount > s_.n_links)
        return fail(where + ": children slice out of range");
      for (int c = 0; c < n.ccount; ++c) {
        const int child = s_.links[n.cfirst + c];
        // A child always comes after its parent, which rules out cycles (and unbounded stacks).
        if (child <= i || child >= s_.n_nodes) return fail(where + ": child index out of range");
        ++parents[child];
      }
    }
    for (int i = 1; i < s_.n_nodes; ++i)
      if (parents[i] != 1) return fail("node " + std::to_string(i) + " is the child of " +
                                       std::to_string(parents[i]) + " nodes, not of exactly one");
    return true;
  }

  // -- the parameters of one node ----------------------------------------------------------------
  bool finite(const char* name, double x) { return arg(std::isfinite(x), name, "a finite number", x); }
  bool positive(const char* name, double x) { return arg(std::isfinite(x) && x > 0, name, "> 0", x); }
  bool non_negative(const char* name, double x) { return arg(std::isfinite(x) && x >= 0, name, ">= 0", x); }
  /** A length in steps that may be fractional: > 0 (at least kMinScheduleLength), finite. */
  bool length(const char* name, double x) {
    return positive(name, x) && arg(x >= kMinScheduleLength, name, ">= 2**-960 (a length in steps)", x);
  }
  /** A whole number of steps in [lo, kMaxScheduleStep]. */
  bool steps(const char* name, double x, double lo) {
    const bool whole = std::isfinite(x) && x == std::floor(x);
    return arg(whole && x >= lo && x <= static_cast<double>(kMaxScheduleStep), name,
               "a whole number of steps in [" + format_number(lo, true) + ", 2**62]", x, whole);
  }
  bool flags_in(int32_t flags, int32_t allowed_bits_or_max, bool is_max = false) {
    const bool ok = is_max ? (flags >= 0 && flags <= allowed_bits_or_max) : (flags & ~allowed_bits_or_max) == 0;
    return ok || fail(std::string(kind_) + ": invalid flags " + std::to_string(flags));
  }
  /** Slots [from, kScheduleParams) unused by this kind must be zero; derived ones must be what derive_params gives. */
  bool unused_from(const ScheduleNode& n, int from) {
    for (int k = from; k < kScheduleParams; ++k)
      if (n.p[k] != 0.0) return fail(std::string(kind_) + ": unused parameter slot " + std::to_string(k) + " is not 0");
    return true;
  }
  bool derived_match(const ScheduleNode& n) {
    ScheduleNode d = n;
    derive_params(d);
    for (int k = 0; k < kScheduleParams; ++k)
      if (!(d.p[k] == n.p[k] || (std::isnan(d.p[k]) && std::isnan(n.p[k]))))
        return fail(std::string(kind_) + ": derived parameter slot " + std::to_string(k) +
                    " does not match the others (computed when the schedule is built)");
    return true;
  }
  bool children(const ScheduleNode& n, int lo, int hi) {
    return (n.ccount >= lo && n.ccount <= hi) ||
           fail(std::string(kind_) + ": has " + std::to_string(n.ccount) + " children, expected " +
                (lo == hi ? std::to_string(lo) : "at least " + std::to_string(lo)));
  }
  bool no_values(const ScheduleNode& n) {
    return n.vcount == 0 || fail(std::string(kind_) + ": holds " + std::to_string(n.vcount) + " values, expected none");
  }
  /** values[first, first + count) of node n: whole steps, increasing (strictly or not). */
  bool step_list(const ScheduleNode& n, int first, int count, const char* name, bool strictly) {
    const double* v = s_.values + n.vfirst + first;
    for (int k = 0; k < count; ++k) {
      if (!steps(name, v[k], 0)) return false;
      if (k > 0 && (strictly ? v[k] <= v[k - 1] : v[k] < v[k - 1]))
        return fail(std::string(kind_) + ": " + name + " must be " + (strictly ? "strictly increasing" : "non-decreasing") +
                    ", got " + format_number(v[k - 1], true) + " then " + format_number(v[k], true));
    }
    return true;
  }
  bool factor_list(const ScheduleNode& n, int first, int count, const char* name) {
    const double* v = s_.values + n.vfirst + first;
    for (int k = 0; k < count; ++k)
      if (!finite(name, v[k])) return false;
    return true;
  }

  void node(int i) {
    const ScheduleNode& n = s_.nodes[i];
    const double* p = n.p;
    kind_ = schedule_kind_name(n.kind);
    const bool leaf = n.kind != ScheduleKind::kWarmup && n.kind != ScheduleKind::kSequential &&
                      n.kind != ScheduleKind::kChained;
    if (leaf && !children(n, 0, 0)) return;
    const bool has_values = n.kind == ScheduleKind::kMultiStep || n.kind == ScheduleKind::kPiecewiseConstant ||
                            n.kind == ScheduleKind::kPiecewiseLinear || n.kind == ScheduleKind::kSequential;
    if (!has_values && !no_values(n)) return;
    if (!derived_match(n)) return;
    switch (n.kind) {
      case ScheduleKind::kConstant:
        flags_in(n.flags, 0) && non_negative("factor", p[0]) &&
            (p[1] == -1.0 || steps("total_steps", p[1], 0)) && unused_from(n, 2);
        return;
      case ScheduleKind::kStep:
        flags_in(n.flags, 0) && steps("step_size", p[0], 1) && positive("gamma", p[1]) && unused_from(n, 2);
        return;
      case ScheduleKind::kMultiStep:
        flags_in(n.flags, 0) && positive("gamma", p[0]) && unused_from(n, 1) &&
            step_list(n, 0, n.vcount, "milestones", false);
        return;
      case ScheduleKind::kLinear:
        flags_in(n.flags, 0) && non_negative("start_factor", p[0]) && non_negative("end_factor", p[1]) &&
            length("total_steps", p[2]) && unused_from(n, 3);
        return;
      case ScheduleKind::kExponential:
        // flags 1: built from the rate (p1), p0 = exp(-rate) derived; else from gamma (p0), p1 derived.
        flags_in(n.flags, 1) && ((n.flags & 1) ? finite("rate", p[1]) : positive("gamma", p[0])) && unused_from(n, 2);
        return;
      case ScheduleKind::kInverseTime:
        flags_in(n.flags, 1) && non_negative("rate", p[0]) && length("decay_steps", p[1]) && unused_from(n, 2);
        return;
      case ScheduleKind::kPolynomial:
        flags_in(n.flags, 0) && length("total_steps", p[0]) && non_negative("power", p[1]) &&
            non_negative("end_factor", p[2]) && unused_from(n, 3);
        return;
      case ScheduleKind::kCosine:
        flags_in(n.flags, 1) && length("T_max", p[0]) && finite("eta_min", p[1]) && unused_from(n, 2);
        return;
      case ScheduleKind::kCosineRestarts:
        flags_in(n.flags, 1) && steps("T_0", p[0], 1) &&
            arg(std::isfinite(p[1]) && p[1] >= 1.0, "T_mult", ">= 1", p[1]) && finite("eta_min", p[2]) &&
            unused_from(n, 4);
        return;
      case ScheduleKind::kCyclic: {
        if (!(flags_in(n.flags, 7) && flags_in(n.flags & 3, kExpRange, true))) return;
        // (max_lr may be below base_lr, as torch's CyclicLR allows: the cycle then runs downwards.)
        if (!(non_negative("base_lr", p[0]) && finite("max_lr", p[1]))) return;
        // p2 = step_size_up + step_size_down, p3 = step_size_up / p2 (as torch's CyclicLR keeps them).
        length("step_size_up + step_size_down", p[2]) &&
            arg(p[3] >= kMinScheduleLength && p[3] <= 1, "step_size_up / (step_size_up + step_size_down)", "in (0, 1]", p[3]) &&
            positive("gamma", p[4]) && unused_from(n, 6);
        return;
      }
      case ScheduleKind::kOneCycle: {
        if (!(flags_in(n.flags, 3) && finite("initial", p[0]) && finite("peak", p[1]) && finite("final", p[2]) &&
              arg(p[3] >= 0 && p[3] <= 1, "pct_start", "in [0, 1]", p[3]) && steps("total_steps", p[4], 1) &&
              unused_from(n, 5)))
          return;
        // The first phase ends at pct_start * total - 1 (torch's OneCycleLR); at 0 it would be a
        // phase of no length that step 0 falls in (0 / 0; torch raises ZeroDivisionError). Every
        // other phase that a step falls in has a positive length.
        arg(p[3] * p[4] - 1.0 != 0.0, "pct_start",
            "such that pct_start * total_steps != 1 (a first phase of no length), total_steps = " +
                format_number(p[4], true),
            p[3]);
        return;
      }
      case ScheduleKind::kInverseSqrt:
        flags_in(n.flags, 0) && length("timescale", p[0]) && unused_from(n, 1);
        return;
      case ScheduleKind::kWsd:
        // p0 warmup, p1 = total - decay (where the decay starts), p2 decay.
        if (!(flags_in(n.flags, kWsdSqrt, true) && steps("warmup_steps", p[0], 0) && steps("decay_steps", p[2], 1) &&
              steps("total_steps - decay_steps", p[1], 0) && steps("total_steps", p[1] + p[2], 1)))
          return;
        arg(p[1] >= p[0], "decay_steps",
            "<= total_steps - warmup_steps = " + format_number(p[1] + p[2] - p[0], true), p[2], true) &&
            non_negative("min_factor", p[3]) && non_negative("warmup_start_factor", p[4]) && unused_from(n, 5);
        return;
      case ScheduleKind::kPiecewiseConstant: {
        if (!(flags_in(n.flags, 0) && unused_from(n, 0))) return;
        if (n.vcount % 2 != 1) {
          fail("piecewise_constant: factors must be one longer than boundaries (an odd number of values), got " +
               std::to_string(n.vcount) + " values");
          return;
        }
        const int k = n.vcount / 2;
        step_list(n, 0, k, "boundaries", true) && factor_list(n, k, k + 1, "factors");
        return;
      }
      case ScheduleKind::kPiecewiseLinear: {
        if (!(flags_in(n.flags, 0) && unused_from(n, 0))) return;
        if (n.vcount < 2 || n.vcount % 2 != 0) {
          fail("piecewise_linear: steps must be non-empty and as long as factors, got " + std::to_string(n.vcount) +
               " values");
          return;
        }
        const int k = n.vcount / 2;
        step_list(n, 0, k, "steps", true) && factor_list(n, k, k, "factors");
        return;
      }
      case ScheduleKind::kWarmup:
        flags_in(n.flags, 1) && children(n, 1, 1) && steps("steps", p[0], 0) &&
            ((n.flags & 1) ? positive("start_factor", p[1]) : non_negative("start_factor", p[1])) &&
            unused_from(n, 3);
        return;
      case ScheduleKind::kSequential:
        if (!(flags_in(n.flags, 0) && unused_from(n, 0) && children(n, 1, kMaxScheduleNodes))) return;
        if (n.vcount != n.ccount - 1) {
          fail("sequential: boundaries must be one shorter than schedules (" + std::to_string(n.ccount - 1) +
               " boundaries), got " + std::to_string(n.vcount));
          return;
        }
        step_list(n, 0, n.vcount, "boundaries", false);
        return;
      case ScheduleKind::kChained:
        flags_in(n.flags, 0) && unused_from(n, 0) && children(n, 1, kMaxScheduleNodes);
        return;
      default:
        fail("unknown node kind");
    }
  }
};

}  // namespace detail

/**
 * What is wrong with `s`, as one sentence naming the schedule kind and the parameter
 * ("cosine: T_max must be > 0, got 0.0"); empty when every check passes. Host code.
 */
inline std::string schedule_error(const ScheduleData& s) { return detail::ScheduleChecker(s).run(); }

}  // namespace fusedlr
