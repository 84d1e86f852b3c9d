#pragma once
// Many consecutive steps of a schedule at once: what Schedule.curve() computes. Host code.
//
// schedule_lr walks the node tree once per step. A curve walks it once per *segment*: a composite
// splits the range of steps where its children change (a sequential boundary, the end of a
// warmup), and each leaf then fills its stretch in a loop of its own kind, with the kind's switch
// folded away by the compiler. Every value is produced by the same operations, in the same order,
// as schedule_lr(data, step, base_lr) would apply to it (leaf_lr_of_kind is shared; a warmup
// ramps to its target, noise multiplies, the others pass values on), so the curve equals per-step evaluation
// bit for bit; tests/test_schedules.py checks that over random nested schedules. Leaves whose
// value is constant over blocks (step, multistep) or whose cycle is (cosine_restarts) take the
// block's factor or cycle once. Boundaries are whole steps compared as integers, as schedule_lr
// compares them, so pieces switch at the same step even past 2^53.

#include "fusedlr/schedule.h"

#include <cmath>
#include <cstdint>

namespace fusedlr {
namespace detail {

/** Where `base` is the same for every step (`per_step` null) or given per step. */
struct CurveBase {
  double scalar;
  const double* per_step;
  double at(int64_t i) const { return per_step ? per_step[i] : scalar; }
  CurveBase shifted(int64_t i) const { return CurveBase{scalar, per_step ? per_step + i : nullptr}; }
};

template <ScheduleKind K, bool kPerStep>
void leaf_curve_of_kind(const ScheduleData& s, const ScheduleNode& n, int64_t t0, int64_t count, const double* base,
                        double b, double* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = leaf_lr_of_kind(s, n, K, t0 + i, kPerStep ? base[i] : b);
}

template <bool kPerStep>
void leaf_curve(const ScheduleData& s, const ScheduleNode& n, int64_t t0, int64_t count, const double* base, double b,
                double* out) {
  switch (n.kind) {
#define FUSEDLR_LEAF_CURVE_CASE(K) \
  case ScheduleKind::K:            \
    return leaf_curve_of_kind<ScheduleKind::K, kPerStep>(s, n, t0, count, base, b, out);
    // (step, multistep and cosine_restarts have block-wise loops in node_curve.)
    FUSEDLR_LEAF_CURVE_CASE(kConstant)
    FUSEDLR_LEAF_CURVE_CASE(kLinear)
    FUSEDLR_LEAF_CURVE_CASE(kExponential)
    FUSEDLR_LEAF_CURVE_CASE(kInverseTime)
    FUSEDLR_LEAF_CURVE_CASE(kPolynomial)
    FUSEDLR_LEAF_CURVE_CASE(kCosine)
    FUSEDLR_LEAF_CURVE_CASE(kCyclic)
    FUSEDLR_LEAF_CURVE_CASE(kOneCycle)
    FUSEDLR_LEAF_CURVE_CASE(kInverseSqrt)
    FUSEDLR_LEAF_CURVE_CASE(kWsd)
    FUSEDLR_LEAF_CURVE_CASE(kPiecewiseConstant)
    FUSEDLR_LEAF_CURVE_CASE(kPiecewiseLinear)
    FUSEDLR_LEAF_CURVE_CASE(kLinearRemaining)
    FUSEDLR_LEAF_CURVE_CASE(kCyclesCosine)
    FUSEDLR_LEAF_CURVE_CASE(kCyclesCosineRestarts)
    FUSEDLR_LEAF_CURVE_CASE(kPolynomialTo)
    FUSEDLR_LEAF_CURVE_CASE(kReciprocalSqrt)
    FUSEDLR_LEAF_CURVE_CASE(kWsdShaped)
    FUSEDLR_LEAF_CURVE_CASE(kRampRate)
    FUSEDLR_LEAF_CURVE_CASE(kCycles)
    FUSEDLR_LEAF_CURVE_CASE(kStableDecay)
#undef FUSEDLR_LEAF_CURVE_CASE
    default:  // composites never get here; an unknown kind evaluates as leaf_lr does
      for (int64_t i = 0; i < count; ++i) out[i] = leaf_lr(s, n, t0 + i, kPerStep ? base[i] : b);
  }
}

/**
 * out[i] = the value of node `ni` at its local step t0 + i (t0 >= 0) for base.at(i), i < count.
 * Recursion depth is bounded by the nesting depth (at most kMaxScheduleNodes).
 */
inline void node_curve(const ScheduleData& s, int ni, int64_t t0, int64_t count, CurveBase base, double* out) {
  if (count <= 0) return;
  const ScheduleNode& n = s.nodes[ni];
  switch (n.kind) {
    case ScheduleKind::kSequential: {
      // Child i runs for bounds[i-1] <= t < bounds[i] and sees t - bounds[i-1].
      const double* bounds = s.values + n.vfirst;
      int64_t done = 0;
      while (done < count) {
        const int64_t t = t0 + done;
        const int i = count_steps_le(bounds, n.vcount, t);
        const int64_t shift = i == 0 ? 0 : whole_step(bounds[i - 1]);
        const int64_t end = i < n.vcount ? whole_step(bounds[i]) - t0 : count;
        int64_t len = (end < count ? end : count) - done;
        if (len < 1) len = 1;  // sorted boundaries never need this; it guarantees progress
        node_curve(s, s.links[n.cfirst + i], t - shift, len, base.shifted(done), out + done);
        done += len;
      }
      return;
    }
    case ScheduleKind::kWarmup: {
      const int64_t w = whole_step(n.p[0]);
      const int child = s.links[n.cfirst];
      const int64_t ramp_end = w - t0;  // local steps t < w ramp
      const int64_t ramp = ramp_end <= 0 ? 0 : (ramp_end < count ? ramp_end : count);
      if (ramp > 0) {
        // Each step's ramp to its target (schedule_lr's warmup_ramp): the base, or the child at
        // the step where it takes over, taken once when the base is the same for every step.
        const bool to_base = (n.flags & kWarmupToBase) != 0;
        const int64_t at = warmup_child_step(n, 0);
        double target = base.scalar;
        if (!to_base && !base.per_step) node_curve(s, child, at, 1, base, &target);
        for (int64_t i = 0; i < ramp; ++i) {
          if (to_base) target = base.at(i);
          else if (base.per_step) node_curve(s, child, at, 1, base.shifted(i), &target);
          out[i] = warmup_ramp(n, static_cast<double>(t0 + i), target);
        }
      }
      node_curve(s, child, warmup_child_step(n, t0 + ramp), count - ramp, base.shifted(ramp), out + ramp);
      return;
    }
    case ScheduleKind::kNoise: {
      // The child's values times each step's factor (schedule_lr's `value *= mul`).
      node_curve(s, s.links[n.cfirst], t0, count, base, out);
      for (int64_t i = 0; i < count; ++i) out[i] *= noise_factor(n, t0 + i);
      return;
    }
    case ScheduleKind::kChained: {
      // Each child's values are the next one's bases: c_n(t, ... c_2(t, c_1(t, b))).
      node_curve(s, s.links[n.cfirst], t0, count, base, out);
      for (int c = 1; c < n.ccount; ++c) node_curve(s, s.links[n.cfirst + c], t0, count, CurveBase{0.0, out}, out);
      return;
    }
    case ScheduleKind::kStep: {
      // One gamma^k per block of step_size steps (leaf_lr: b * step_factor(t // step_size)).
      int64_t done = 0;
      while (done < count) {
        const int64_t k = step_block(n, t0 + done);
        int64_t end = done + 1;
        if (n.p[0] == std::floor(n.p[0])) {
          const int64_t size = static_cast<int64_t>(n.p[0]), block_end = (k + 1) * size - t0;
          end = block_end < count ? block_end : count;
        } else {
          while (end < count && step_block(n, t0 + end) == k) ++end;  // a fractional step_size
        }
        const double factor = step_factor(n, k);
        for (int64_t i = done; i < end; ++i) out[i] = base.at(i) * factor;
        done = end;
      }
      return;
    }
    case ScheduleKind::kMultiStep: {
      // One gamma^k between consecutive milestones (leaf_lr: b * multistep_factor(#{m <= t})).
      const double* milestones = s.values + n.vfirst;
      int64_t done = 0;
      while (done < count) {
        const int k = count_steps_le(milestones, n.vcount, t0 + done);
        int64_t end = k < n.vcount ? whole_step(milestones[k]) - t0 : count;
        if (end > count) end = count;
        if (end <= done) end = done + 1;  // sorted milestones never need this; it guarantees progress
        const double factor = multistep_factor(n, k);
        for (int64_t i = done; i < end; ++i) out[i] = base.at(i) * factor;
        done = end;
      }
      return;
    }
    case ScheduleKind::kCosineRestarts: {
      // One cycle at a time: restart_cycle gives every step of a cycle the same start and length,
      // and the cycle ends at the first step it would not (past 2^53 a step's double can round
      // into the next cycle: the test is on the step as restart_cycle sees it).
      int64_t done = 0;
      while (done < count) {
        double start, len, next;
        restart_cycle(n.p, t0 + done, start, len, next);
        int64_t end = done + 1;
        if (n.p[1] == 1.0) {
          const int64_t T = whole_step(n.p[0]);
          const int64_t cycle_end = ((t0 + done) / T + 1) * T - t0;  // steps <= 2^62: no overflow
          end = cycle_end < count ? cycle_end : count;
        } else {
          while (end < count && static_cast<double>(t0 + end) < next) ++end;
        }
        for (int64_t i = done; i < end; ++i) out[i] = restart_lr(n, static_cast<double>(t0 + i), start, len, base.at(i));
        done = end;
      }
      return;
    }
    default:
      if (base.per_step) leaf_curve<true>(s, n, t0, count, base.per_step, 0.0, out);
      else leaf_curve<false>(s, n, t0, count, nullptr, base.scalar, out);
  }
}

}  // namespace detail

/**
 * out[i] = schedule_lr(s, start + i, base_lr) for 0 <= i < count, bit for bit, computed a
 * segment at a time (see the top of this file). Host code.
 */
inline void schedule_curve(const ScheduleData& s, int64_t start, int64_t count, double base_lr, double* out) {
  // Steps before 0 count as 0.
  int64_t i = 0;
  if (start < 0 && count > 0) {
    const double at0 = schedule_lr(s, 0, base_lr);
    for (; i < count && start + i < 0; ++i) out[i] = at0;
  }
  detail::node_curve(s, 0, start + i, count - i, detail::CurveBase{base_lr, nullptr}, out + i);
}

}  // namespace fusedlr
