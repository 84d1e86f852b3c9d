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

#include <cmath>
#include <cstdint>
#include <string>

#include "fusedlr/schedule_kinds.h"

namespace fusedlr {

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

  /** Field f of node n, in the range its row names. */
  bool number(const Field& f, const ScheduleNode& n) {
    const double x = n.p[f.slot];
    switch (f.range) {
      case ValueRange::kFinite: return finite(f.name, x);
      case ValueRange::kNonNegative: return non_negative(f.name, x);
      case ValueRange::kPositive: return positive(f.name, x);
      case ValueRange::kAtLeastOne: return arg(std::isfinite(x) && x >= 1.0, f.name, ">= 1", x);
      case ValueRange::kFraction: return arg(x >= 0.0 && x <= 1.0, f.name, "in [0, 1]", x);
      case ValueRange::kLength: return length(f.name, x);
      case ValueRange::kSteps: return steps(f.name, x, 0);
      case ValueRange::kPositiveSteps: return steps(f.name, x, 1);
      case ValueRange::kOptionalSteps: return x == -1.0 || steps(f.name, x, 0);
    }
    return fail(std::string(kind_) + ": " + f.name + " has an unknown range");
  }

  /** The value lists of node n: their lengths (the kind's Values rule), then each list's values. */
  bool value_lists(const KindSpec& k, const ScheduleNode& n) {
    int first_len = n.vcount, second_len = 0;
    switch (k.values) {
      case Values::kNone:
        return no_values(n);
      case Values::kAll:
        break;
      case Values::kPlusOne:
        if (n.vcount % 2 != 1)
          return fail(std::string(kind_) + ": factors must be one longer than boundaries (an odd number of values), got " +
                      std::to_string(n.vcount) + " values");
        first_len = n.vcount / 2, second_len = n.vcount / 2 + 1;
        break;
      case Values::kPairs:
        if (n.vcount < 2 || n.vcount % 2 != 0)
          return fail(std::string(kind_) + ": steps must be non-empty and as long as factors, got " +
                      std::to_string(n.vcount) + " values");
        first_len = second_len = n.vcount / 2;
        break;
      case Values::kOnePerBoundary:
        if (n.vcount != n.ccount - 1)
          return fail(std::string(kind_) + ": boundaries must be one shorter than schedules (" +
                      std::to_string(n.ccount - 1) + " boundaries), got " + std::to_string(n.vcount));
        break;
    }
    int list = 0, offset = 0;
    for (const Field& f : k.fields) {
      if (f.name == nullptr) break;
      if (f.kind != FieldKind::kSteps && f.kind != FieldKind::kFactors) continue;
      const int count = list++ == 0 ? first_len : second_len;
      const bool ok = f.kind == FieldKind::kSteps ? step_list(n, offset, count, f.name, f.strict)
                                                  : factor_list(n, offset, count, f.name);
      if (!ok) return false;
      offset += count;
    }
    return true;
  }

  /** Node i against its kind's row (fusedlr/schedule_kinds.h): children, values, flags, fields, relations. */
  void node(int i) {
    const ScheduleNode& n = s_.nodes[i];
    const KindSpec* k = kind_spec(n.kind);
    if (k == nullptr) {
      fail("node " + std::to_string(i) + ": unknown node kind " + std::to_string(static_cast<int32_t>(n.kind)));
      return;
    }
    kind_ = k->name;
    if (!children(n, k->min_children, k->max_children) || !value_lists(*k, n) || !derived_match(n)) return;
    if ((n.flags & ~k->flag_bits) != 0) {
      fail(std::string(kind_) + ": invalid flags " + std::to_string(n.flags));
      return;
    }
    uint32_t used = k->derived_slots;
    for (const Field& f : k->fields) {
      if (f.name == nullptr) break;
      if (f.kind == FieldKind::kChoice && (((n.flags & f.mask) >> f.shift) >= f.n_choices)) {
        fail(std::string(kind_) + ": invalid flags " + std::to_string(n.flags));
        return;
      }
      if (f.kind != FieldKind::kNumber) continue;
      used |= 1u << f.slot;
      if (field_held(f, n) && !number(f, n)) return;
    }
    for (int slot = 0; slot < kScheduleParams; ++slot)
      if (!(used & (1u << slot)) && n.p[slot] != 0.0) {
        fail(std::string(kind_) + ": unused parameter slot " + std::to_string(slot) + " is not 0");
        return;
      }
    if (k->relation != nullptr) {
      const std::string problem = k->relation(n);
      if (!problem.empty()) fail(std::string(kind_) + ": " + problem);
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
