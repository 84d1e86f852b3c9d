#pragma once
// Everything about a schedule kind except its formula: one row per kind (KindSpec) that the
// builder, the validator, repr and pickling all read (fusedlr/schedule_build.h,
// fusedlr/schedule_check.h). The formula is in fusedlr/schedule.h; a node's parameter slots and
// flag bits are named here, in the row, and nowhere else outside the formula. Host code.
//
// Adding a kind: its formula in schedule.h (an enum value and a case of leaf_lr_of_kind), its row
// in kKinds below, its function in python/fusedlr/schedules.py (docs/schedules.md, "Adding a kind").

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>

#include "fusedlr/schedule.h"

namespace fusedlr {

/** The range a number must be in (checked by schedule_check.h, which words the message). */
enum class ValueRange : uint8_t {
  kFinite,        // any finite number
  kNonNegative,   // finite, >= 0
  kPositive,      // finite, > 0
  kAtLeastOne,    // finite, >= 1
  kFraction,      // in [0, 1]
  kLength,        // a length in steps, may be fractional: > 0 (at least kMinScheduleLength)
  kSteps,         // a whole number of steps in [0, kMaxScheduleStep]
  kPositiveSteps, // a whole number of steps in [1, kMaxScheduleStep]
  kOptionalSteps, // kSteps, or -1 for "None" (left out of repr)
};

/** What a factory argument is and where the node holds it. */
enum class FieldKind : uint8_t {
  kNumber,    // p[slot], in `range`
  kBool,      // the flag bits `mask`
  kChoice,    // (flags & mask) indexes `choices`
  kSteps,     // a list of whole steps in the node's values (non-decreasing; strictly when `strict`)
  kFactors,   // a list of finite numbers in the node's values
  kChild,     // the one child schedule (printed first, unnamed)
  kChildren,  // the list of child schedules (printed first, unnamed)
};

/** How many values each value list holds, given the node's values and children. */
enum class Values : uint8_t {
  kNone,
  kAll,             // one list: every value (multistep's milestones)
  kPlusOne,         // k steps, then k + 1 factors (piecewise_constant)
  kPairs,           // k steps, then k factors, k >= 1 (piecewise_linear)
  kOnePerBoundary,  // one step per boundary between children: ccount - 1 (sequential)
};

struct Field {
  const char* name;
  FieldKind kind;
  int8_t slot = -1;               // kNumber
  ValueRange range = ValueRange::kFinite;   // kNumber
  int32_t mask = 0;               // kBool, kChoice
  const char* const* choices = nullptr;  // kChoice: n_choices names
  int8_t n_choices = 0;
  int8_t shift = 0;                      // kChoice: the choice's index is (flags & mask) >> shift
  int8_t only_if_flag = 0;        // kNumber: +b held and shown only when flags & b, -b only when not
  bool strict = false;            // kSteps: strictly increasing
  bool hide_false = false;        // kBool: left out of repr when false
  bool optional = false;          // kNumber: may be None (the kind's `fill` says what None means)
};

/** A node of `kind` as the arguments gave it: `given[i]` tells whether field i was not None. */
using FillFn = const char* (*)(ScheduleNode& n, const bool* given);
/** A check between fields (one field's range is in its Field); a message, or empty. */
using RelationFn = std::string (*)(const ScheduleNode& n);
/** Fills the slots derived from the others (logarithms taken once, when built). */
using DeriveFn = void (*)(ScheduleNode& n);

constexpr int kMaxKindFields = 10;

struct KindSpec {
  ScheduleKind kind;
  const char* name;
  Field fields[kMaxKindFields];    // in the order of the factory's arguments; unused ones have no name
  int32_t flag_bits = 0;         // every flag bit the kind uses (kBool/kChoice masks and internal ones)
  Values values = Values::kNone;
  int min_children = 0, max_children = 0;
  uint32_t derived_slots = 0;    // bit k: p[k] is filled by `derive`
  FillFn fill = nullptr;
  RelationFn relation = nullptr;
  DeriveFn derive = nullptr;
};

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

/**
 * The shortest length (in steps) a schedule may divide by: step / length then stays finite for
 * every step up to kMaxScheduleStep (2^62 / 2^-960 = 2^1022 < DBL_MAX), so no step turns a
 * formula into inf - inf or cos(inf).
 */
constexpr double kMinScheduleLength = 0x1p-960;

namespace kinds {

inline const char* const kCyclicModes[] = {"triangular", "triangular2", "exp_range"};
inline const char* const kAnneal[] = {"cos", "linear"};
inline const char* const kWsdShapes[] = {"linear", "cosine", "sqrt"};
inline const char* const kWarmupModes[] = {"linear", "exponential", "cosine", "1-sqrt"};  // WarmupMode
inline const char* const kNoiseDistributions[] = {"normal", "uniform"};
inline const char* const kTransformersShapes[] = {"linear", "cosine", "1-sqrt"};
inline const char* const kCycleShapes[] = {"cosine", "poly", "tanh"};
inline const char* const kStableFns[] = {"constant", "rsqrt", "power"};
inline const char* const kDecayFns[] = {"linear", "1-sqrt", "cosine", "power", "exp"};

constexpr Field number(const char* name, int slot, ValueRange range, int only_if_flag = 0) {
  Field f{name, FieldKind::kNumber};
  f.slot = static_cast<int8_t>(slot);
  f.range = range;
  f.only_if_flag = static_cast<int8_t>(only_if_flag);
  return f;
}
constexpr Field optional_number(const char* name, int slot, ValueRange range, int only_if_flag = 0) {
  Field f = number(name, slot, range, only_if_flag);
  f.optional = true;
  return f;
}
constexpr Field flag(const char* name, int32_t bit, bool hide_false = false) {
  Field f{name, FieldKind::kBool};
  f.mask = bit;
  f.hide_false = hide_false;
  return f;
}
template <int N>
constexpr Field choice(const char* name, int32_t mask, const char* const (&choices)[N]) {
  Field f{name, FieldKind::kChoice};
  f.mask = mask;
  f.choices = choices;
  f.n_choices = static_cast<int8_t>(N);
  while (f.shift < 31 && !((mask >> f.shift) & 1)) ++f.shift;
  return f;
}
constexpr Field steps(const char* name, bool strict) {
  Field f{name, FieldKind::kSteps};
  f.strict = strict;
  return f;
}
constexpr Field factors(const char* name) { return Field{name, FieldKind::kFactors}; }
constexpr Field child(const char* name) { return Field{name, FieldKind::kChild}; }
constexpr Field children(const char* name) { return Field{name, FieldKind::kChildren}; }

// -- what a kind does with None, and checks between its fields -----------------------------------

inline const char* constant_fill(ScheduleNode& n, const bool* given) {
  if (!given[1]) n.p[1] = -1.0;  // total_steps None: every step
  return nullptr;
}

inline const char* exponential_fill(ScheduleNode& n, const bool* given) {
  if (given[0] == given[1]) return "give exactly one of gamma and rate";
  if (given[1]) n.flags |= 1;  // built from the rate; gamma is derived (and the other way round)
  return nullptr;
}
inline void exponential_derive(ScheduleNode& n) {
  if (n.flags & 1) n.p[0] = std::exp(-n.p[1]);
  else n.p[1] = -std::log(n.p[0]);
}

inline void restarts_derive(ScheduleNode& n) { n.p[3] = std::log(n.p[1]); }

inline const char* cyclic_fill(ScheduleNode& n, const bool* given) {
  if (!given[3]) n.p[3] = n.p[2];  // step_size_down None: as step_size_up (torch's CyclicLR)
  return nullptr;
}
inline std::string cyclic_relation(const ScheduleNode& n) {
  // (torch's CyclicLR divides by up + down and by up / (up + down): both must be lengths.)
  const double total = n.p[2] + n.p[3];
  if (!(total >= kMinScheduleLength && std::isfinite(total)))
    return "step_size_up + step_size_down must be a finite length >= 2**-960, got " + format_number(total);
  if (!(n.p[2] / total >= kMinScheduleLength))
    return "step_size_up / (step_size_up + step_size_down) must be >= 2**-960";
  return {};
}
inline void cyclic_derive(ScheduleNode& n) { n.p[5] = std::log(n.p[4]); }

inline std::string one_cycle_relation(const ScheduleNode& n) {
  // The first phase ends at pct_start * total - 1 (torch's OneCycleLR); at 0 it would be a phase
  // of no length that step 0 falls in (0 / 0; torch raises ZeroDivisionError). Every other phase
  // a step falls in has a positive length.
  double e1, e2;
  detail::one_cycle_phase_ends(n, e1, e2);
  if (e1 == 0.0)
    return "pct_start must be such that pct_start * total_steps != 1 (a first phase of no length), total_steps = " +
           format_number(n.p[4], true) + ", got " + format_number(n.p[3]);
  return {};
}


inline const char* wsd_fill(ScheduleNode& n, const bool* given) {
  if (!given[2]) n.p[2] = std::max(1.0, std::nearbyint(0.1 * n.p[1]));  // decay_steps None: 10% of total_steps
  return nullptr;
}
inline std::string wsd_relation(const ScheduleNode& n) {
  if (!(n.p[2] <= n.p[1] - n.p[0]))
    return "decay_steps must be <= total_steps - warmup_steps = " + format_number(n.p[1] - n.p[0], true) +
           ", got " + format_number(n.p[2], true);
  return {};
}

inline void wsd_derive(ScheduleNode& n) { n.p[5] = n.p[1] - n.p[2]; }

inline const char* warmup_fill(ScheduleNode& n, const bool* given) {
  if (given[4]) n.flags |= kWarmupStartLr;  // from an absolute lr: start_factor is not held
  return nullptr;
}
inline std::string warmup_relation(const ScheduleNode& n) {
  const int mode = n.flags & kWarmupModeMask;
  if (mode != kWarmupLinear && (n.flags & kWarmupStartLr))
    return "start_lr takes mode 'linear' (the other shapes start from start_factor)";
  if (mode == kWarmupExponential && !(n.p[1] > 0))
    return "start_factor must be > 0 (mode 'exponential' takes its logarithm), got " + format_number(n.p[1]);
  return {};
}

inline void warmup_derive(ScheduleNode& n) {
  n.p[2] = (n.flags & kWarmupModeMask) == kWarmupExponential ? std::log(n.p[1]) : 0.0;
}

inline std::string cycles_relation(const ScheduleNode& n) {
  if ((n.flags & 3) == kCycleTanh && !(n.p[5] < n.p[6]))
    return "lb must be < ub, got lb=" + format_number(n.p[5]) + ", ub=" + format_number(n.p[6]);
  return {};
}

inline const char* stable_decay_fill(ScheduleNode& n, const bool* given) {
  if ((n.flags & 3) != 0 && !given[4]) return "stable_fn 'rsqrt' and 'power' need a stable_timescale, got None";
  return nullptr;
}
inline std::string stable_decay_relation(const ScheduleNode& n) {
  if (!(n.p[1] <= n.p[0]))
    return "decay_t must be <= t_initial = " + format_number(n.p[0], true) + ", got " + format_number(n.p[1], true);
  if (!(n.p[6] > 0.0 && n.p[6] < 1.0)) return "decay_ratio must be in (0, 1), got " + format_number(n.p[6]);
  return {};
}

inline const char* noise_fill(ScheduleNode& n, const bool* given) {
  if (!given[2]) n.p[1] = -1.0;  // end None: noise from start on, for ever
  return nullptr;
}
inline std::string noise_relation(const ScheduleNode& n) {
  if (n.p[1] >= 0.0 && !(n.p[1] > n.p[0]))
    return "end must be > start = " + format_number(n.p[0], true) + " (or None), got " + format_number(n.p[1], true);
  return {};
}

inline std::string polynomial_to_relation(const ScheduleNode& n) {
  if (n.p[0] == 0.0) return "decay_steps must not be 0 (transformers divides by it), got 0";
  if (n.p[0] != std::floor(n.p[0])) return "decay_steps must be a whole number, got " + format_number(n.p[0]);
  if (!(n.p[1] > n.p[2])) return "lr_end must be smaller than lr_init, got " + format_number(n.p[2]);
  return {};
}

inline const char* ramp_rate_fill(ScheduleNode& n, const bool* given) {
  if (given[1]) n.flags |= 1;  // the rate is given: r + (1 - r) t / max(1, W - 1); else (t + 1) / max(1, W)
  return nullptr;
}

inline std::string wsd_shaped_relation(const ScheduleNode& n) {
  if (n.p[1] != std::floor(n.p[1])) return "stable_steps must be a whole number, got " + format_number(n.p[1]);
  return {};
}

// -- the rows: fields in the order of the factory's arguments (python/fusedlr/schedules.py) ------

inline const KindSpec kKinds[] = {
    {ScheduleKind::kConstant, "constant",
     {number("factor", 0, ValueRange::kNonNegative), optional_number("total_steps", 1, ValueRange::kOptionalSteps)},
     0, Values::kNone, 0, 0, 0, constant_fill},
    {ScheduleKind::kStep, "step",
     {number("step_size", 0, ValueRange::kLength), number("gamma", 1, ValueRange::kPositive)}},
    {ScheduleKind::kMultiStep, "multistep",
     {steps("milestones", false), number("gamma", 0, ValueRange::kPositive)}, 0, Values::kAll},
    {ScheduleKind::kLinear, "linear",
     {number("start_factor", 0, ValueRange::kNonNegative), number("end_factor", 1, ValueRange::kNonNegative),
      number("total_steps", 2, ValueRange::kLength)}},
    {ScheduleKind::kExponential, "exponential",
     {optional_number("gamma", 0, ValueRange::kPositive, -1), optional_number("rate", 1, ValueRange::kFinite, +1)},
     1, Values::kNone, 0, 0, 0, exponential_fill, nullptr, exponential_derive},
    {ScheduleKind::kInverseTime, "inverse_time",
     {number("rate", 0, ValueRange::kNonNegative), number("decay_steps", 1, ValueRange::kLength), flag("staircase", 1)}, 1},
    {ScheduleKind::kPolynomial, "polynomial",
     {number("total_steps", 0, ValueRange::kLength), number("power", 1, ValueRange::kNonNegative),
      number("end_factor", 2, ValueRange::kNonNegative)}},
    {ScheduleKind::kCosine, "cosine",
     {number("T_max", 0, ValueRange::kLength), number("eta_min", 1, ValueRange::kFinite), flag("periodic", 1)}, 1},
    {ScheduleKind::kCosineRestarts, "cosine_restarts",
     {number("T_0", 0, ValueRange::kPositiveSteps), number("T_mult", 1, ValueRange::kAtLeastOne),
      number("eta_min", 2, ValueRange::kFinite), flag("reach_min", 1)},
     1, Values::kNone, 0, 0, 1u << 3, nullptr, nullptr, restarts_derive},
    // (max_lr may be below base_lr, as torch's CyclicLR allows: the cycle then runs downwards.)
    {ScheduleKind::kCyclic, "cyclic",
     {number("base_lr", 0, ValueRange::kNonNegative), number("max_lr", 1, ValueRange::kFinite),
      number("step_size_up", 2, ValueRange::kLength), optional_number("step_size_down", 3, ValueRange::kNonNegative),
      choice("mode", 3, kCyclicModes), number("gamma", 4, ValueRange::kPositive), flag("inverted", 4, true)},
     7, Values::kNone, 0, 0, 1u << 5, cyclic_fill, cyclic_relation, cyclic_derive},
    {ScheduleKind::kOneCycle, "one_cycle",
     {number("total_steps", 4, ValueRange::kPositiveSteps), number("initial", 0, ValueRange::kFinite),
      number("peak", 1, ValueRange::kFinite), number("final", 2, ValueRange::kFinite), number("pct_start", 3, ValueRange::kFraction),
      choice("anneal_strategy", 1, kAnneal), flag("three_phase", 2)},
     3, Values::kNone, 0, 0, 0, nullptr, one_cycle_relation},
    {ScheduleKind::kInverseSqrt, "inverse_sqrt", {number("timescale", 0, ValueRange::kLength)}},
    {ScheduleKind::kWsd, "wsd",
     {number("total_steps", 1, ValueRange::kPositiveSteps), number("warmup_steps", 0, ValueRange::kSteps),
      optional_number("decay_steps", 2, ValueRange::kPositiveSteps), choice("decay", 3, kWsdShapes),
      number("min_factor", 3, ValueRange::kNonNegative), number("warmup_start_factor", 4, ValueRange::kNonNegative)},
     3, Values::kNone, 0, 0, 1u << 5, wsd_fill, wsd_relation, wsd_derive},
    {ScheduleKind::kPiecewiseConstant, "piecewise_constant", {steps("boundaries", true), factors("factors")},
     0, Values::kPlusOne},
    {ScheduleKind::kPiecewiseLinear, "piecewise_linear", {steps("steps", true), factors("factors")},
     0, Values::kPairs},
    {ScheduleKind::kWarmup, "warmup",
     {child("schedule"), number("steps", 0, ValueRange::kSteps),
      optional_number("start_factor", 1, ValueRange::kNonNegative, -kWarmupStartLr), choice("mode", kWarmupModeMask, kWarmupModes),
      optional_number("start_lr", 3, ValueRange::kNonNegative, +kWarmupStartLr), flag("to_base", kWarmupToBase, true),
      flag("overlap", kWarmupOverlap, true)},
     31, Values::kNone, 1, 1, 1u << 2, warmup_fill, warmup_relation, warmup_derive},
    {ScheduleKind::kSequential, "sequential", {children("schedules"), steps("boundaries", false)},
     0, Values::kOnePerBoundary, 1, kMaxScheduleNodes},
    {ScheduleKind::kChained, "chained", {children("schedules")}, 0, Values::kNone, 1, kMaxScheduleNodes},
    {ScheduleKind::kNoise, "noise",
     {child("schedule"), number("start", 0, ValueRange::kSteps), optional_number("end", 1, ValueRange::kOptionalSteps),
      number("pct", 2, ValueRange::kPositive), number("std", 3, ValueRange::kPositive),
      number("seed", 4, ValueRange::kSteps), choice("distribution", 1, kNoiseDistributions)},
     1, Values::kNone, 1, 1, 0, noise_fill, noise_relation},
    // transformers' decays after their warmup (python/fusedlr/transformers.py puts the warmup in front)
    {ScheduleKind::kLinearRemaining, "linear_remaining",
     {number("remaining", 0, ValueRange::kFinite), number("length", 1, ValueRange::kLength)}},
    {ScheduleKind::kCyclesCosine, "cycles_cosine",
     {number("length", 0, ValueRange::kLength), number("num_cycles", 1, ValueRange::kFinite),
      number("min_rate", 2, ValueRange::kFinite), number("shift", 3, ValueRange::kSteps)}},
    {ScheduleKind::kCyclesCosineRestarts, "cycles_cosine_restarts",
     {number("length", 0, ValueRange::kLength), number("num_cycles", 1, ValueRange::kFinite)}},
    // (decay_steps may be negative: transformers' T < W, where every step past the warmup holds lr_end.)
    {ScheduleKind::kPolynomialTo, "polynomial_to",
     {number("decay_steps", 0, ValueRange::kFinite), number("lr_init", 1, ValueRange::kPositive),
      number("lr_end", 2, ValueRange::kNonNegative), number("power", 3, ValueRange::kNonNegative)},
     0, Values::kNone, 0, 0, 0, nullptr, polynomial_to_relation},
    {ScheduleKind::kReciprocalSqrt, "reciprocal_sqrt", {number("timescale", 0, ValueRange::kPositiveSteps)}},
    // (stable_steps may be negative: transformers' num_training_steps < warmup + decay.)
    {ScheduleKind::kRampRate, "ramp_rate",
     {number("steps", 0, ValueRange::kSteps), optional_number("rate", 1, ValueRange::kFinite, +1)},
     1, Values::kNone, 0, 0, 0, ramp_rate_fill},
    {ScheduleKind::kWsdShaped, "wsd_shaped",
     {number("warmup_steps", 0, ValueRange::kSteps), number("stable_steps", 1, ValueRange::kFinite),
      number("decay_steps", 2, ValueRange::kSteps), choice("warmup_type", 3, kTransformersShapes),
      choice("decay_type", 12, kTransformersShapes), number("min_lr_ratio", 3, ValueRange::kFinite),
      number("num_cycles", 4, ValueRange::kFinite)},
     15, Values::kNone, 0, 0, 0, nullptr, wsd_shaped_relation},
    // timm's decays after their warmup (python/fusedlr/timm.py puts the warmup in front or under them)
    {ScheduleKind::kCycles, "cycles",
     {number("t_initial", 0, ValueRange::kLength), choice("shape", 3, kCycleShapes),
      number("lr_min", 1, ValueRange::kNonNegative), number("cycle_mul", 2, ValueRange::kPositive),
      number("cycle_decay", 3, ValueRange::kFinite), number("cycle_limit", 4, ValueRange::kSteps),
      number("k_decay", 5, ValueRange::kPositive, -kCycleTanh), number("power", 6, ValueRange::kFinite, +kCyclePoly),
      number("lb", 5, ValueRange::kFinite, +kCycleTanh), number("ub", 6, ValueRange::kFinite, +kCycleTanh)},
     3, Values::kNone, 0, 0, 0, nullptr, cycles_relation},
    {ScheduleKind::kStableDecay, "stable_decay",
     {number("t_initial", 0, ValueRange::kLength), number("decay_t", 1, ValueRange::kLength),
      number("lr_min", 2, ValueRange::kNonNegative), choice("stable_fn", 3, kStableFns),
      optional_number("stable_timescale", 3, ValueRange::kPositive, 3), number("stable_power", 4, ValueRange::kPositive),
      choice("decay_fn", 28, kDecayFns), number("decay_power", 5, ValueRange::kPositive),
      number("decay_ratio", 6, ValueRange::kFinite)},
     31, Values::kNone, 0, 0, 0, stable_decay_fill, stable_decay_relation},
};

}  // namespace kinds

/** The row of `kind`, or nullptr for a kind this build does not know. */
inline const KindSpec* kind_spec(ScheduleKind kind) {
  for (const KindSpec& k : kinds::kKinds)
    if (k.kind == kind) return &k;
  return nullptr;
}

/** The row named `name` ("cosine", "one_cycle", ...), or nullptr. */
inline const KindSpec* kind_spec(const std::string& name) {
  for (const KindSpec& k : kinds::kKinds)
    if (name == k.name) return &k;
  return nullptr;
}

/** The name of a kind as the factories spell it. */
inline const char* schedule_kind_name(ScheduleKind kind) {
  const KindSpec* k = kind_spec(kind);
  return k ? k->name : "<unknown kind>";
}

/** Whether field `f` of node `n` is held (a field of exponential is held only for one source). */
inline bool field_held(const Field& f, const ScheduleNode& n) {
  if (f.only_if_flag > 0) return (n.flags & f.only_if_flag) != 0;
  if (f.only_if_flag < 0) return (n.flags & -f.only_if_flag) == 0;
  return true;
}

/** Fills the slots a node derives from the others; called last by whoever fills a node. */
inline void derive_params(ScheduleNode& n) {
  const KindSpec* k = kind_spec(n.kind);
  if (k && k->derive) k->derive(n);
}

}  // namespace fusedlr
