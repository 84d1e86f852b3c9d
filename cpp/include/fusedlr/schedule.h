#pragma once
// Every learning-rate schedule formula of fusedlr, once, as closed-form math on plain data.
//
// A schedule is a ScheduleData: a small, fixed-size, trivially copyable array of nodes that a
// CUDA kernel can take by value. schedule_lr(data, step, base_lr) computes the learning rate of
// any step directly: no recursion, no state carried from the previous step, so the CPU and CUDA
// builds share this code and a resumed run sees exactly the values of an uninterrupted one.
//
// The value of a node is a learning rate, a function of the step t >= 0 and of the base
// learning rate b it is given (the optimizer group's initial lr; 1.0 reads as a factor).
// Multiplicative schedules scale b (step, exponential, cosine's b - eta_min, ...); the ones torch
// defines by absolute learning rates (cyclic, one-cycle) ignore b. Composites:
//   SEQUENTIAL  child i (counted from 0) runs from boundary[i-1] on and sees t - boundary[i-1];
//   CHAINED     feeds b through the children in order: c_n(t, ... c_2(t, c_1(t, b))), which is
//               the product of their factors when they are multiplicative;
//   WARMUP      for t < W a ramp to its target: child(0, b) (child(W, b) when it overlaps the
//               child, b when it ramps to the base), from start_factor * target or from an
//               absolute start_lr; then child(t - W, b) (child(t, b) when it overlaps).
// Node 0 is the root. Nesting is evaluated with an explicit stack of at most kMaxScheduleNodes
// frames, which keeps device code free of recursion.

#include "fusedlr/macros.h"
#include "fusedlr/schedule_math.h"

#include <cmath>
#include <cstdint>

namespace fusedlr {

/** Most nodes in one schedule (leaves and composites together); checked when it is built. */
constexpr int kMaxScheduleNodes = 16;
/** Most numbers (milestones, boundaries, breakpoints) one schedule holds; checked when built. */
constexpr int kMaxScheduleValues = 40;
/** Fixed parameters per node. */
constexpr int kScheduleParams = 8;
/**
 * The last step a schedule names (a boundary, a length, a counter, the end of a curve): 2^62, so
 * int64 arithmetic on steps (t - boundary, (k + 1) * step_size) never overflows. Checked when built.
 */
constexpr int64_t kMaxScheduleStep = INT64_C(1) << 62;

// The kinds (values are stored in saved states: append, never reorder). What each parameter slot
// p[k] and flag bit holds is named in the kind's row of fusedlr/schedule_kinds.h (kKinds); the
// formulas below read the slots as that row lays them out. The formulas in words: the docstrings
// of python/fusedlr/schedules.py.
enum class ScheduleKind : int32_t {
  kConstant = 0,
  kStep,
  kMultiStep,
  kLinear,
  kExponential,
  kInverseTime,
  kPolynomial,
  kCosine,
  kCosineRestarts,
  kCyclic,
  kOneCycle,
  kInverseSqrt,
  kWsd,
  kPiecewiseConstant,
  kPiecewiseLinear,
  kWarmup,      // composite: a ramp, then its one child
  kSequential,  // composite: n children between n - 1 boundaries
  kChained,     // composite: n children, each one's value the next one's base
  kNoise,       // composite: its one child, times 1 + a seeded draw of the step in a range of steps
  kLinearRemaining,  // transformers' linear decay, in its order of operations
  kCyclesCosine,     // transformers' cosine decay over num_cycles, in its order of operations
  kCyclesCosineRestarts,  // transformers' cosine with hard restarts
  kPolynomialTo,          // transformers' polynomial decay to an absolute end lr
  kReciprocalSqrt,        // transformers' inverse square root, 1 / sqrt((t + timescale) / timescale)
  kWsdShaped,             // transformers' warmup-stable-decay, its warmup and decay shapes
  kRampRate,              // transformers' warmup of its "_warmup_lr_rate" cosine
  kCycles,                // timm's cycles: cosine, poly or tanh annealing, real cycle_mul, cycle_decay, k-decay, limit
  kStableDecay,           // timm's WSD: a stable function (constant, rsqrt, power), then a decay shape to lr_min
  kCount
};

enum CyclicMode : int32_t { kTriangular = 0, kTriangular2 = 1, kExpRange = 2 };
enum WsdDecay : int32_t { kWsdLinear = 0, kWsdCosine = 1, kWsdSqrt = 2 };
enum CycleShape : int32_t { kCycleCosine = 0, kCyclePoly = 1, kCycleTanh = 2 };
/** warmup's ramp shapes (flags & kWarmupModeMask). */
enum WarmupMode : int32_t { kWarmupLinear = 0, kWarmupExponential = 1, kWarmupCosine = 2, kWarmupSqrt = 3 };
/** warmup's other flag bits: where its ramp goes, whether the child starts under it, an absolute start. */
enum WarmupFlags : int32_t { kWarmupModeMask = 3, kWarmupToBase = 4, kWarmupOverlap = 8, kWarmupStartLr = 16 };

struct ScheduleNode {
  ScheduleKind kind;
  int32_t flags;
  int16_t vfirst, vcount;  // slice of ScheduleData::values
  int16_t cfirst, ccount;  // slice of ScheduleData::links (children's node indices)
  double p[kScheduleParams];
};

/** A whole schedule, plain data (about 1 KB): copy it into a kernel's arguments by value. */
struct ScheduleData {
  ScheduleNode nodes[kMaxScheduleNodes];
  double values[kMaxScheduleValues];
  int16_t links[kMaxScheduleNodes];
  int32_t n_nodes;
  int32_t n_values;
  int32_t n_links;
};

namespace detail {

/**
 * Number of steps values[i], i < n, with values[i] <= t (values sorted whole steps, at most 2^62:
 * checked by schedule_check.h): bisect_right, compared as integers, so a step past 2^53 (which a
 * double no longer holds exactly) is never taken for its neighbour.
 */
FUSEDLR_HOST_DEVICE inline int count_steps_le(const double* values, int n, int64_t t) {
  int k = 0;
  while (k < n && static_cast<int64_t>(values[k]) <= t) ++k;
  return k;
}

/** A whole step held in a double (a boundary, a warmup length; at most 2^62) as the int64 it is. */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE int64_t whole_step(double x) { return static_cast<int64_t>(x); }

/** step: gamma^k for block k = t // step_size. */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double step_factor(const ScheduleNode& n, int64_t k) {
  return smath::pow_fast_cases(n.p[1], static_cast<double>(k));
}

/** multistep: gamma^k after k milestones. */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double multistep_factor(const ScheduleNode& n, int k) {
  return smath::pow_fast_cases(n.p[0], static_cast<double>(k));
}

/**
 * warmup: the ramp factor at local step t < W, from start_factor s0 to 1: linear, geometric
 * (s0^(1 - t/W), p2 = log s0 built in), a half cosine or 1 - sqrt(1 - t/W) (transformers' shapes).
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double warmup_factor(const ScheduleNode& n, double t) {
  const double w = n.p[0], s0 = n.p[1];
  switch (n.flags & kWarmupModeMask) {
    case kWarmupExponential: return exp((1.0 - t / w) * n.p[2]);
    case kWarmupCosine: return s0 + (1.0 - s0) * (0.5 * (1.0 - smath::cos_pi(t / w)));
    case kWarmupSqrt: return s0 + (1.0 - s0) * (1.0 - sqrt(1.0 - t / w));
    default: return s0 + (1.0 - s0) * t / w;
  }
}

/**
 * warmup: the value at local step t < W of a ramp that reaches `target` at W. From an absolute
 * start_lr a (p3): a + t ((target - a) / W), timm's order of operations; else target times the
 * ramp factor.
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double warmup_ramp(const ScheduleNode& n, double t, double target) {
  if (n.flags & kWarmupStartLr) return n.p[3] + t * ((target - n.p[3]) / n.p[0]);
  return target * warmup_factor(n, t);
}

/** warmup: the step its child sees at (or, during the ramp, for its target at) local step t. */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE int64_t warmup_child_step(const ScheduleNode& n, int64_t t) {
  const int64_t w = static_cast<int64_t>(n.p[0]);
  if (n.flags & kWarmupOverlap) return t < w ? w : t;
  return t < w ? 0 : t - w;
}

/**
 * Python's float floor division t // d (d > 0), as CPython computes it: from fmod, so a quotient
 * that t / d would round up to a whole number is not taken for it.
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double py_floordiv(double t, double d) {
  const double mod = fmod(t, d);
  const double div = (t - mod) / d;
  if (div == 0.0) return 0.0;
  double q = floor(div);
  if (div - q > 0.5) q += 1.0;
  return q;
}

/** step: the block that holds step t, t // step_size (in whole steps when step_size is whole). */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE int64_t step_block(const ScheduleNode& n, int64_t step) {
  const double size = n.p[0];
  if (size == floor(size)) return step / static_cast<int64_t>(size);
  return static_cast<int64_t>(fmin(py_floordiv(static_cast<double>(step), size), 4.0e18));  // (size >= 2^-960)
}

/**
 * cycles (timm's CosineLRScheduler, PolyLRScheduler, TanhLRScheduler after their warmup), in
 * timm's order of operations. Slots: p0 t_initial T, p1 lr_min, p2 cycle_mul m, p3 cycle_decay,
 * p4 cycle_limit, p5 k_decay (tanh: lb), p6 power (tanh: ub). Cycle i of length T m^i holds t;
 * its peak is b * cycle_decay^i; from cycle cycle_limit on the value is lr_min. For m < 1 the
 * cycles add up to T / (1 - m) steps: past that (where timm's logarithm raises) it is lr_min.
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double cycles_lr(const ScheduleNode& n, double t, double b) {
  constexpr double kPi = 3.141592653589793;  // math.pi
  const double* p = n.p;
  const double T = p[0], m = p[2], lr_min = p[1];
  double i, t_i, t_curr;
  if (m != 1.0) {
    const double arg = 1.0 - t / T * (1.0 - m);
    if (!(arg > 0.0)) return lr_min;
    i = floor(log(arg) / log(m));  // math.log(arg, m)
    const double mi = pow(m, i);
    t_i = mi * T;
    t_curr = t - (1.0 - mi) / (1.0 - m) * T;
  } else {
    i = py_floordiv(t, T);
    t_i = T;
    t_curr = t - T * i;
  }
  if (!(i < p[4])) return lr_min;
  const double lr_max = b * pow(p[3], i);
  const int shape = n.flags & 3;
  if (shape == kCycleTanh) {
    const double tr = t_curr / t_i;
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 - tanh(p[5] * (1.0 - tr) + p[6] * tr));
  }
  const double k = p[5];
  if (shape == kCyclePoly) return lr_min + (lr_max - lr_min) * pow(1.0 - pow(t_curr, k) / pow(t_i, k), p[6]);
  return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + cos(kPi * pow(t_curr, k) / pow(t_i, k)));
}

/**
 * stable_decay (timm's WSDLRScheduler after its warmup), in timm's order of operations, at local
 * step t. Slots: p0 t_initial T, p1 decay_t D, p2 lr_min, p3 stable timescale, p4 stable power,
 * p5 decay power, p6 decay ratio r; flags: stable function | decay shape << 2.
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double stable_decay_lr(const ScheduleNode& n, double t, double b) {
  constexpr double kPi = 3.141592653589793;  // math.pi
  const double* p = n.p;
  const int stable = n.flags & 3, shape = (n.flags >> 2) & 7;
  double factor = 1.0;
  if (stable != 0) factor = pow(1.0 + t / p[3], -(stable == 1 ? 0.5 : p[4]));
  const double lr = fmax(b * factor, p[2]);
  const double t_decay = t - (p[0] - p[1]);
  if (t_decay <= 0.0) return lr;
  const double frac = fmin(t_decay / p[1], 1.0);
  double d;
  switch (shape) {
    case 0: d = 1.0 - frac; break;                                   // linear
    case 1: d = 1.0 - sqrt(frac); break;                             // 1-sqrt
    case 2: d = 0.5 * (1.0 + cos(kPi * frac)); break;                // cosine
    case 3: d = 1.0 - pow(frac, p[5]); break;                        // power
    default: d = (pow(p[6], frac) - p[6]) / (1.0 - p[6]); break;     // exp
  }
  return p[2] + (lr - p[2]) * d;
}

/** Boundary i of cosine_restarts (node parameters p): round(T_0 (T_mult^i - 1) / (T_mult - 1)), T_mult > 1. */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double restart_boundary(const double* p, int64_t i) {
  return smath::round_even(p[0] * (smath::pow_fast_cases(p[1], static_cast<double>(i)) - 1.0) / (p[1] - 1.0));
}

/**
 * restart_cycle for T_mult > 1 at a step t held in a double (whole, or fractional for torch's
 * CosineAnnealingWarmRestarts.step(epoch) with a fractional epoch).
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE void restart_cycle_growing(const double* p, double t, double& start, double& len,
                                                              double& next) {
  const double T0 = p[0], m = p[1];
  // p[3] = log(T_mult), computed once when the schedule is built. For a huge T_mult the argument
  // of the logarithm overflows: log(t/T0 (m-1) + 1) is then log(t/T0) + log(m-1) to the last bit.
  const double arg = t / T0 * (m - 1.0) + 1.0;
  const double lg = arg < INFINITY ? log(arg) : log(t / T0) + log(m - 1.0);
  double estimate = floor(lg / p[3]);
  // (NaN or huge only for absurd T_mult / steps; keep the cast defined.)
  int64_t i = estimate >= 0 ? static_cast<int64_t>(fmin(estimate, 4.0e18)) : 0;
  // The logarithm can be off by one near a boundary: settle the cycle exactly.
  start = restart_boundary(p, i);
  if (start > t) start = restart_boundary(p, --i);
  next = restart_boundary(p, i + 1);
  if (next <= t) {
    start = next;
    next = restart_boundary(p, ++i + 1);
  }
  len = next - start;
}

/**
 * The cosine_restarts cycle that holds `step`: its first step, its length and the next cycle's
 * first step. Cycle i is T_0 * T_mult^i steps long and starts at boundary i (i * T_0 when
 * T_mult == 1); torch's CosineAnnealingWarmRestarts for integer T_mult. Every step of a cycle gets
 * the same three numbers (boundaries come from one formula), which lets a curve take them once per
 * cycle: the steps whose double is below `next` (all steps below (k + 1) T_0 when T_mult == 1).
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE void restart_cycle(const double* p, int64_t step, double& start, double& len,
                                                      double& next) {
  const double T0 = p[0], m = p[1];
  if (m == 1.0) {
    // In whole steps (T_0 <= 2^62, checked): exact past 2^53, where t / T_0 in doubles is not.
    const int64_t T = whole_step(T0);
    const int64_t first = step / T * T;
    start = static_cast<double>(first);
    len = T0;
    next = static_cast<double>(first + T);
    return;
  }
  restart_cycle_growing(p, static_cast<double>(step), start, len, next);
}

/** cosine_restarts at step t of the cycle [start, start + len). */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double restart_lr(const ScheduleNode& n, double t, double start, double len,
                                                     double b) {
  const double* p = n.p;
  const double cur = t - start;
  const double frac = (n.flags & 1) ? (len > 1.0 ? cur / (len - 1.0) : 0.0) : cur / len;
  return p[2] + (b - p[2]) * (1.0 + smath::cos_pi(frac)) / 2.0;
}

/** cyclic: the cycle that holds step t, counted from 1 (torch's CyclicLR: floor(1 + t / (up + down))). */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double cyclic_cycle(const ScheduleNode& n, double t) {
  return floor(1.0 + t / (n.p[2] + n.p[3]));  // p2 + p3: torch's total_size = up + down
}

/** cyclic: the amplitude scale of its mode at step t of `cycle`: 1, 1 / 2^(cycle - 1) or gamma^t. */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double cyclic_mode_scale(const ScheduleNode& n, double t, double cycle) {
  const int mode = n.flags & 3;
  if (mode == kTriangular2) return 1.0 / smath::pow_fast_cases(2.0, cycle - 1.0);
  if (mode == kExpRange) return exp(n.p[5] * t);  // gamma^t, p5 = log(gamma) built in
  return 1.0;
}

/**
 * cyclic at step t of `cycle` with amplitude `scale` (its mode's, or a user's scale_fn): torch's
 * CyclicLR.get_lr, same order of operations. Inverted: from hi down towards lo, as torch cycles
 * momentum against the lr.
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double cyclic_lr(const ScheduleNode& n, double t, double cycle, double scale) {
  const double* p = n.p;
  const double total = p[2] + p[3];   // torch's total_size = up + down
  const double ratio = p[2] / total;  // torch's step_ratio = up / total_size
  const double x = 1.0 + t / total - cycle;
  const double sf = x <= ratio ? x / ratio : (x - 1.0) / (ratio - 1.0);
  const double height = (p[1] - p[0]) * sf;
  return (n.flags & 4) ? p[1] - height * scale : p[0] + height * scale;
}

/** splitmix64's finaliser: a bijection of 64-bit words whose output bits all depend on every input bit. */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  x *= UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/**
 * Draw k of step t for `seed`, uniform in [0, 1) in steps of 2^-53: a counter-based hash, so a
 * step's draw is a pure function of (seed, t, k), the same on the CPU and in a CUDA kernel.
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double noise_unit(uint64_t seed, int64_t t, uint64_t k) {
  const uint64_t h = mix64(mix64(seed * UINT64_C(0x9e3779b97f4a7c15) + static_cast<uint64_t>(t)) +
                           (k + 1) * UINT64_C(0xd1b54a32d192ed03));
  return static_cast<double>(h >> 11) * 0x1p-53;
}

/** Draws a noise node makes for one step before it gives up (the noise is then 0): see noise_draw. */
constexpr int kMaxNoiseDraws = 64;

/**
 * noise: the relative noise of step t (timm's scheduler noise, drawn from a hash instead of a
 * seeded generator). Uniform: 2 (u - 1/2) pct. Normal: std times a standard normal (Box-Muller
 * from two draws), drawn again while |noise| >= pct, as timm does; after kMaxNoiseDraws out of
 * range (for pct >= 0.67 std, a chance below 1e-19) the noise is 0. Slots: p2 pct, p3 std, p4 seed.
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double noise_draw(const ScheduleNode& n, int64_t t) {
  const uint64_t seed = static_cast<uint64_t>(n.p[4]);
  if (n.flags & 1) return 2.0 * (noise_unit(seed, t, 0) - 0.5) * n.p[2];
  for (int k = 0; k < kMaxNoiseDraws; ++k) {
    const double u1 = 1.0 - noise_unit(seed, t, 2 * k);  // in (0, 1]: a finite logarithm
    const double u2 = noise_unit(seed, t, 2 * k + 1);
    const double z = sqrt(-2.0 * log(u1)) * smath::cos_pi(2.0 * u2) * n.p[3];
    if (fabs(z) < n.p[2]) return z;
  }
  return 0.0;
}

/**
 * noise: what the child's value is multiplied by at step t: 1 + noise in the range of steps
 * [start, end) (p0, p1; p1 = -1: no end), exactly 1 outside it.
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double noise_factor(const ScheduleNode& n, int64_t t) {
  if (t < whole_step(n.p[0]) || (n.p[1] >= 0.0 && t >= whole_step(n.p[1]))) return 1.0;
  return 1.0 + noise_draw(n, t);
}

/**
 * The ends of one_cycle's first two phases (torch's OneCycleLR): e1 = pct_start * total - 1,
 * e2 = 2 pct_start * total - 2 (three-phase) or total - 1.
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE void one_cycle_phase_ends(const ScheduleNode& n, double& e1, double& e2) {
  const double total = n.p[4];
  e1 = n.p[3] * total - 1.0;
  e2 = (n.flags & 2) ? 2.0 * n.p[3] * total - 2.0 : total - 1.0;
}

/**
 * The value of leaf `n`, of kind `kind` (its n.kind), at step t (t >= 0) for base lr b. Always
 * inlined, so a caller that passes a constant kind (a loop over one leaf's steps) gets the
 * switch folded away.
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double leaf_lr_of_kind(const ScheduleData& s, const ScheduleNode& n,
                                                          ScheduleKind kind, int64_t step, double b) {
  const double* p = n.p;
  const double t = static_cast<double>(step);
  switch (kind) {
    case ScheduleKind::kConstant:
      return (p[1] < 0 || step < whole_step(p[1])) ? b * p[0] : b;
    case ScheduleKind::kStep:  // torch StepLR: base_lr * gamma ** (last_epoch // step_size)
      return b * step_factor(n, step_block(n, step));
    case ScheduleKind::kMultiStep:
      return b * multistep_factor(n, count_steps_le(s.values + n.vfirst, n.vcount, step));
    case ScheduleKind::kLinear:  // torch LinearLR's closed form
      return b * (p[0] + (p[1] - p[0]) * fmin(t, p[2]) / p[2]);
    case ScheduleKind::kExponential:
      return b * exp(-p[1] * t);  // gamma^t = e^(-rate t), rate = -log(gamma) built in
    case ScheduleKind::kInverseTime: {
      const double u = (n.flags & 1) ? floor(t / p[1]) : t / p[1];
      return b / (1.0 + p[0] * u);
    }
    case ScheduleKind::kPolynomial: {  // torch PolynomialLR, with an optional floor e = b*end_factor
      const double e = b * p[2];
      const double x = 1.0 - fmin(t, p[0]) / p[0];
      return (b - e) * smath::pow_fast_cases(x, p[1]) + e;
    }
    case ScheduleKind::kCosine: {  // torch CosineAnnealingLR._get_closed_form_lr (SGDR eq. 5)
      const double tc = (n.flags & 1) ? t : fmin(t, p[0]);
      return p[1] + (b - p[1]) * (1.0 + smath::cos_pi(tc / p[0])) / 2.0;
    }
    case ScheduleKind::kCosineRestarts: {
      double start, len, next;
      restart_cycle(p, step, start, len, next);
      return restart_lr(n, t, start, len, b);
    }
    case ScheduleKind::kCyclic: {
      const double cycle = cyclic_cycle(n, t);
      return cyclic_lr(n, t, cycle, cyclic_mode_scale(n, t, cycle));
    }
    case ScheduleKind::kOneCycle: {  // torch OneCycleLR.get_lr; holds `end` from total-1 on
      const double total = p[4];
      const double tt = fmin(t, total - 1.0);
      const bool three = (n.flags & 2) != 0;
      double e1, e2;
      one_cycle_phase_ends(n, e1, e2);
      double from, to, lo, hi;
      if (tt <= e1) {
        from = p[0], to = p[1], lo = 0.0, hi = e1;
      } else if (!three) {
        from = p[1], to = p[2], lo = e1, hi = e2;
      } else if (tt <= e2) {
        from = p[1], to = p[0], lo = e1, hi = e2;
      } else {
        from = p[0], to = p[2], lo = e2, hi = total - 1.0;
      }
      const double pct = (tt - lo) / (hi - lo);
      if (n.flags & 1) return (to - from) * pct + from;
      return to + (from - to) / 2.0 * (smath::cos_pi(pct) + 1.0);
    }
    case ScheduleKind::kInverseSqrt:
      return b / sqrt(1.0 + t / p[0]);
    case ScheduleKind::kWsd: {
      if (step < whole_step(p[0])) return b * (p[4] + (1.0 - p[4]) * t / p[0]);
      if (step < whole_step(p[5])) return b;  // p5 = total - decay, where the decay starts
      const double q = fmin((t - p[5]) / p[2], 1.0);
      double g;
      if (n.flags == kWsdCosine) g = (1.0 + smath::cos_pi(q)) / 2.0;
      else if (n.flags == kWsdSqrt) g = 1.0 - sqrt(q);
      else g = 1.0 - q;
      return b * (p[3] + (1.0 - p[3]) * g);
    }
    case ScheduleKind::kPiecewiseConstant: {
      const int k = n.vcount / 2;
      const double* v = s.values + n.vfirst;
      return b * v[k + count_steps_le(v, k, step)];
    }
    case ScheduleKind::kPiecewiseLinear: {
      const int k = n.vcount / 2;
      const double* x = s.values + n.vfirst;
      const double* y = x + k;
      const int i = count_steps_le(x, k, step);
      if (i == 0) return b * y[0];
      if (i == k) return b * y[k - 1];
      return b * (y[i - 1] + (y[i] - y[i - 1]) * (t - x[i - 1]) / (x[i] - x[i - 1]));
    }
    case ScheduleKind::kLinearRemaining:  // transformers: max(0, float(T - t) / float(max(1, T - W)))
      return b * fmax(0.0, (p[0] - t) / p[1]);
    case ScheduleKind::kCyclesCosine: {  // transformers' _get_cosine_schedule_with_warmup_lr_lambda
      const double progress = (t + p[3]) / p[0];  // p3: 0, or 1 for the "_warmup_lr_rate" variant
      const double f = 0.5 * (1.0 + cos(3.141592653589793 * p[1] * 2.0 * progress));  // math.pi, math.cos
      return b * fmax(0.0, f * (1.0 - p[2]) + p[2]);
    }
    case ScheduleKind::kCyclesCosineRestarts: {  // _get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda
      const double progress = t / p[0];
      if (progress >= 1.0) return b * 0.0;
      double r = fmod(p[1] * progress, 1.0);  // Python's x % 1.0: the sign of the divisor
      if (r < 0.0) r += 1.0;
      return b * fmax(0.0, 0.5 * (1.0 + cos(3.141592653589793 * r)));
    }
    case ScheduleKind::kPolynomialTo: {  // _get_polynomial_decay_schedule_with_warmup_lr_lambda
      // p0 decay steps, p1 lr_init, p2 lr_end, p3 power.
      if (t > p[0]) return b * (p[2] / p[1]);
      const double pct_remaining = 1.0 - t / p[0];
      return b * (((p[1] - p[2]) * pow(pct_remaining, p[3]) + p[2]) / p[1]);
    }
    case ScheduleKind::kReciprocalSqrt:  // _get_inverse_sqrt_schedule_lr_lambda: 1 / sqrt((t + shift) / timescale)
      return b * (1.0 / sqrt((t + p[0]) / p[0]));
    case ScheduleKind::kWsdShaped: {  // transformers' _get_wsd_scheduler_lambda
      // p0 warmup W, p1 stable S, p2 decay D, p3 min_lr_ratio, p4 num_cycles; flags: warmup shape | decay shape << 2.
      constexpr double kPi = 3.141592653589793;  // math.pi
      const double m = p[3];
      double f;
      if (t < p[0]) {
        const double progress = t / fmax(1.0, p[0]);
        const int shape = n.flags & 3;
        f = shape == 0 ? progress : shape == 1 ? 0.5 * (1.0 - cos(kPi * progress)) : 1.0 - sqrt(1.0 - progress);
      } else if (t < p[0] + p[1]) {
        return b * 1.0;
      } else if (t < p[0] + p[1] + p[2]) {
        const double progress = (t - p[0] - p[1]) / fmax(1.0, p[2]);
        const int shape = (n.flags >> 2) & 3;
        f = shape == 0 ? 1.0 - progress
            : shape == 1 ? 0.5 * (1.0 + cos(kPi * p[4] * 2.0 * progress))
                         : 1.0 - sqrt(progress);
      } else {
        return b * m;
      }
      return b * fmax(0.0, f * (1.0 - m) + m);
    }
    case ScheduleKind::kRampRate:  // _get_cosine_with_min_lr_schedule_with_warmup_lr_rate_lambda, t < W
      // p0 W, p1 warmup_lr_rate; flags 1: the rate is given.
      if (!(n.flags & 1)) return b * ((t + 1.0) / fmax(1.0, p[0]));
      return b * (p[1] + (1.0 - p[1]) * t / fmax(1.0, p[0] - 1.0));
    case ScheduleKind::kCycles:
      return cycles_lr(n, t, b);
    case ScheduleKind::kStableDecay:
      return stable_decay_lr(n, t, b);
    default:
      return b;
  }
}

/** The value of leaf `n` at step t (t >= 0) for base lr b. */
FUSEDLR_HOST_DEVICE inline double leaf_lr(const ScheduleData& s, const ScheduleNode& n, int64_t step, double b) {
  return leaf_lr_of_kind(s, n, n.kind, step, b);
}

}  // namespace detail

/**
 * The step an in-kernel counter names: the op keeps it as a double (schedule_state[0]) on the
 * device, where it cannot be checked without a synchronisation. A counter below 0 or NaN counts
 * as step 0 and one beyond 2^62 as step 2^62, so a tampered state can give an unexpected learning
 * rate but never an undefined conversion.
 */
FUSEDLR_HOST_DEVICE inline int64_t schedule_counter_step(double counter) {
  if (!(counter >= 0.0)) return 0;
  return counter < static_cast<double>(kMaxScheduleStep) ? static_cast<int64_t>(counter) : kMaxScheduleStep;
}

/**
 * The learning rate of `step` (steps before 0 count as 0) for base learning rate `base_lr`.
 * A loop over an explicit stack replaces recursion into composites.
 */
FUSEDLR_HOST_DEVICE inline double schedule_lr(const ScheduleData& s, int64_t step, double base_lr) {
  if (step < 0) step = 0;
  if (s.n_nodes == 1) return detail::leaf_lr(s, s.nodes[0], step, base_lr);  // no composite: no stack
  struct Frame {
    int node;
    int next_child;  // CHAINED: the next child to run
    int64_t t;       // the step this node sees
  };
  Frame st[kMaxScheduleNodes];
  int sp = 0;
  st[0] = Frame{0, 0, step};
  double value = base_lr;  // entering a node: its base; leaving it: its value
  for (;;) {
    // Enter frames until a leaf (or a warmup ramping to its base) has produced a value.
    for (;;) {
      Frame& f = st[sp];
      const ScheduleNode& n = s.nodes[f.node];
      if (n.kind == ScheduleKind::kSequential) {
        const double* bounds = s.values + n.vfirst;
        const int i = detail::count_steps_le(bounds, n.vcount, f.t);
        const int64_t shift = i == 0 ? 0 : detail::whole_step(bounds[i - 1]);
        st[++sp] = Frame{s.links[n.cfirst + i], 0, f.t - shift};
      } else if (n.kind == ScheduleKind::kWarmup) {
        if ((n.flags & kWarmupToBase) && f.t < detail::whole_step(n.p[0])) {
          value = detail::warmup_ramp(n, static_cast<double>(f.t), value);
          break;  // the ramp's target is the base: no child to ask
        }
        st[++sp] = Frame{s.links[n.cfirst], 0, detail::warmup_child_step(n, f.t)};
      } else if (n.kind == ScheduleKind::kNoise) {
        st[++sp] = Frame{s.links[n.cfirst], 0, f.t};
      } else if (n.kind == ScheduleKind::kChained) {
        f.next_child = 1;
        st[sp + 1] = Frame{s.links[n.cfirst], 0, f.t};
        ++sp;
      } else {
        value = detail::leaf_lr(s, n, f.t, value);
        break;
      }
    }
    // Leave frames until one has more work (a CHAINED node with children left) or the root is done:
    // a warmup turns its child's value into the ramp's, a noise node multiplies it by 1 + noise.
    for (;;) {
      if (sp == 0) return value;
      Frame& parent = st[sp - 1];
      const ScheduleNode& pn = s.nodes[parent.node];
      if (pn.kind == ScheduleKind::kChained && parent.next_child < pn.ccount) {
        st[sp] = Frame{s.links[pn.cfirst + parent.next_child], 0, parent.t};
        ++parent.next_child;
        break;  // enter the next child with `value` as its base
      }
      if (pn.kind == ScheduleKind::kWarmup && parent.t < detail::whole_step(pn.p[0])) {
        value = detail::warmup_ramp(pn, static_cast<double>(parent.t), value);
      } else if (pn.kind == ScheduleKind::kNoise) {
        value *= detail::noise_factor(pn, parent.t);
      }
      --sp;
    }
  }
}

}  // namespace fusedlr
