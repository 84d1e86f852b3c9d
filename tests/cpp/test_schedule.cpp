// The schedule headers on their own: plain C++17, no torch, no pybind11; composites nested by hand
// evaluate as the formulas say. Built and run by tests/test_schedules.py.

#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "fusedlr/schedule.h"
#include "fusedlr/schedule_build.h"
#include "fusedlr/schedule_curve.h"
#include "fusedlr/schedule_kinds.h"

using namespace fusedlr;

static_assert(std::is_trivially_copyable_v<ScheduleData>, "a kernel takes ScheduleData by value");
static_assert(std::is_standard_layout_v<ScheduleData>, "plain data");
static_assert(sizeof(ScheduleData) <= 2048, "small enough for kernel arguments (CUDA takes 4 KB of them)");

static int failures = 0;
#define CHECK_NEAR(a, b)                                                                  \
  do {                                                                                    \
    const double x_ = (a), y_ = (b);                                                      \
    if (!(std::fabs(x_ - y_) <= 1e-12 * std::fmax(1.0, std::fabs(y_)))) {                 \
      std::printf("FAIL %s:%d: %s = %.17g, expected %.17g\n", __FILE__, __LINE__, #a, x_, y_); \
      ++failures;                                                                         \
    }                                                                                     \
  } while (0)

static ScheduleNode node(ScheduleKind kind, std::initializer_list<double> p, int flags = 0) {
  ScheduleNode n;
  std::memset(&n, 0, sizeof n);
  n.kind = kind;
  n.flags = flags;
  int i = 0;
  for (double v : p) n.p[i++] = v;
  derive_params(n);
  return n;
}

static ScheduleArg num(double x) {
  ScheduleArg a;
  a.given = true;
  a.number = x;
  return a;
}
static ScheduleArg text(const char* s) {
  ScheduleArg a;
  a.given = true;
  a.text = s;
  return a;
}
static ScheduleArg list(std::vector<double> v) {
  ScheduleArg a;
  a.given = true;
  a.list = std::move(v);
  return a;
}
static ScheduleArg kids(std::vector<ScheduleData> v) {
  ScheduleArg a;
  a.given = true;
  a.children = std::move(v);
  return a;
}
static ScheduleData build(const char* kind, std::vector<ScheduleArg> args) {
  ScheduleData d = empty_schedule();
  const std::string problem = build_schedule(kind, args, d);
  if (!problem.empty()) {
    std::printf("FAIL build %s: %s\n", kind, problem.c_str());
    ++failures;
  }
  return d;
}
static void expect_error(const char* kind, std::vector<ScheduleArg> args, const std::string& message) {
  ScheduleData d = empty_schedule();
  const std::string problem = build_schedule(kind, args, d);
  if (problem != message) {
    std::printf("FAIL build %s: got \"%s\", expected \"%s\"\n", kind, problem.c_str(), message.c_str());
    ++failures;
  }
}

int main() {
  const double pi = 3.14159265358979323846;
  // chained(warmup(sequential([step(10, 0.5), cosine(100)], [30]), 5), exponential(0.99))
  ScheduleData d;
  std::memset(&d, 0, sizeof d);
  d.nodes[0] = node(ScheduleKind::kChained, {});
  d.nodes[0].cfirst = 0, d.nodes[0].ccount = 2;
  d.nodes[1] = node(ScheduleKind::kWarmup, {5, 0.2});
  d.nodes[1].cfirst = 2, d.nodes[1].ccount = 1;
  d.nodes[2] = node(ScheduleKind::kSequential, {});
  d.nodes[2].cfirst = 3, d.nodes[2].ccount = 2, d.nodes[2].vfirst = 0, d.nodes[2].vcount = 1;
  d.nodes[3] = node(ScheduleKind::kStep, {10, 0.5});
  d.nodes[4] = node(ScheduleKind::kCosine, {100, 0.0});
  d.nodes[5] = node(ScheduleKind::kExponential, {0.99, 0.0});
  d.values[0] = 30;
  const int16_t links[] = {1, 5, 2, 3, 4};
  std::memcpy(d.links, links, sizeof links);
  d.n_nodes = 6, d.n_values = 1, d.n_links = 5;

  for (int64_t t = 0; t < 300; ++t) {
    double inner;
    if (t < 5) {
      inner = (0.2 + 0.8 * t / 5.0) * 1.0;  // warmup of the step schedule's value at 0
    } else {
      const int64_t u = t - 5;
      inner = u < 30 ? std::pow(0.5, static_cast<double>(u / 10))
                     : (1 + std::cos(pi * std::fmin(static_cast<double>(u - 30), 100.0) / 100)) / 2;
    }
    CHECK_NEAR(schedule_lr(d, t, 0.1), 0.1 * inner * std::pow(0.99, static_cast<double>(t)));
  }
  CHECK_NEAR(schedule_lr(d, -3, 1.0), schedule_lr(d, 0, 1.0));  // steps before 0 count as 0

  // A copy (what a kernel launch makes) evaluates the same.
  const ScheduleData copy = d;
  CHECK_NEAR(schedule_lr(copy, 123, 0.3), schedule_lr(d, 123, 0.3));

  // schedule_curve gives schedule_lr's values bit for bit, from any start (steps before 0 too).
  ScheduleData restarts;
  std::memset(&restarts, 0, sizeof restarts);
  restarts.nodes[0] = node(ScheduleKind::kCosineRestarts, {7, 2, 0.01});
  restarts.n_nodes = 1;
  for (const ScheduleData* sd : {&d, &restarts}) {
    for (int64_t start : {-4, 0, 3, 29, 250}) {
      double curve[400];
      schedule_curve(*sd, start, 400, 0.7, curve);
      for (int i = 0; i < 400; ++i) {
        const double expected = schedule_lr(*sd, start + i, 0.7);
        if (std::memcmp(&curve[i], &expected, sizeof expected) != 0) {
          std::printf("FAIL curve[%d] from %lld = %.17g, schedule_lr gives %.17g\n", i,
                      static_cast<long long>(start), curve[i], expected);
          ++failures;
        }
      }
    }
  }

  // round_even is nearbyint (ties to even, signed zeros) without the libm call, for any double.
  for (double x : {0.5, 1.5, 2.5, -0.5, -2.5, -0.0, 0.0, 0.49999999999999994, 1e15 + 0.5, -3e15 - 0.5,
                   2251799813685249.0, 2251799813685248.5, 4503599627370495.5, 9007199254740993.0, -1e300, 7.25}) {
    const double got = smath::round_even(x), expected = std::nearbyint(x);
    if (std::memcmp(&got, &expected, sizeof got) != 0) {
      std::printf("FAIL round_even(%.17g) = %.17g, nearbyint gives %.17g\n", x, got, expected);
      ++failures;
    }
  }

  // The kinds' rows: building by argument name gives the hand-built tree above, bit for bit.
  {
    const ScheduleData inner = build("sequential", {kids({build("step", {num(10), num(0.5)}),
                                                         build("cosine", {num(100), num(0.0), num(0)})}),
                                                   list({30})});
    const ScheduleData built = build("chained", {kids({build("warmup", {kids({inner}), num(5), num(0.2), text("linear"), ScheduleArg(),
                                                                        ScheduleArg(), ScheduleArg()}),
                                                       build("exponential", {num(0.99), ScheduleArg()})})});
    for (int64_t t = 0; t < 300; t += 7) CHECK_NEAR(schedule_lr(built, t, 0.1), schedule_lr(d, t, 0.1));
    const std::string repr = schedule_repr(built);
    const std::string expected =
        "chained([warmup(sequential([step(step_size=10, gamma=0.5), cosine(T_max=100, eta_min=0.0, periodic=False)], "
        "boundaries=[30]), steps=5, start_factor=0.2, mode='linear'), exponential(gamma=0.99)])";
    if (repr != expected) {
      std::printf("FAIL repr: %s\n", repr.c_str());
      ++failures;
    }
    // The arguments of a node build it again.
    for (int i = 0; i < built.n_nodes; ++i) {
      const ScheduleData sub = subtree(built, i);
      ScheduleData again = empty_schedule();
      const std::string problem = build_schedule(schedule_kind_name(sub.nodes[0].kind), schedule_arguments(sub), again);
      if (!problem.empty() || !same_schedule(sub, again)) {
        std::printf("FAIL arguments of node %d do not rebuild it (%s)\n", i, problem.c_str());
        ++failures;
      }
    }
  }
  // Every kind's defaults and checks come from its row: None where the row allows it, the ranges.
  CHECK_NEAR(schedule_lr(build("cyclic", {num(0.0), num(1.0), num(2), ScheduleArg(), text("triangular"), num(1.0),
                                          num(0)}), 3, 1.0), 0.5);  // step_size_down None: as step_size_up
  CHECK_NEAR(schedule_lr(build("wsd", {num(100), num(0), ScheduleArg(), text("linear"), num(0.0), num(0.0)}), 95, 1.0),
             0.5);  // decay_steps None: 10 of 100
  expect_error("step", {num(0), num(0.5)}, "step: step_size must be > 0, got 0.0");
  expect_error("step", {num(3), ScheduleArg()}, "step: gamma must be a number, got None");
  expect_error("exponential", {ScheduleArg(), ScheduleArg()}, "exponential: give exactly one of gamma and rate");
  expect_error("cosine", {num(10), num(0.0), num(0), num(1)}, "cosine: takes 3 arguments, got 4");
  expect_error("cyclic", {num(0.0), num(1.0), num(2), num(2), text("sawtooth"), num(1.0), num(0)},
               "cyclic: mode must be one of 'triangular', 'triangular2', 'exp_range', got 'sawtooth'");
  expect_error("wsd", {num(10), num(5), num(6), text("linear"), num(0.0), num(0.0)},
               "wsd: decay_steps must be <= total_steps - warmup_steps = 5, got 6");
  expect_error("piecewise_constant", {list({1}), list({1.0, 2.0, 3.0})},
               "piecewise_constant: factors must be one longer than boundaries (2 values), got 3 values");
  expect_error("one_cycle", {num(10), num(0.1), num(1.0), num(0.0), num(0.1), text("cos"), num(0)},
               "one_cycle: pct_start must be such that pct_start * total_steps != 1 (a first phase of no length), "
               "total_steps = 10, got 0.1");
  expect_error("spline", {}, "unknown schedule kind 'spline'");
  // noise: 1 + a hashed draw inside [start, end), exactly the child outside; the curve as the calls.
  {
    const ScheduleData noisy = build("noise", {kids({build("cosine", {num(100), num(0.0), num(0)})}), num(10), num(60),
                                               num(0.3), num(1.0), num(42), text("normal")});
    double curve[100];
    schedule_curve(noisy, 0, 100, 2.0, curve);
    for (int64_t t = 0; t < 100; ++t) {
      const double plain = 2.0 * (1.0 + std::cos(pi * static_cast<double>(t) / 100.0)) / 2.0;
      const double v = schedule_lr(noisy, t, 2.0);
      const bool inside = t >= 10 && t < 60;
      if ((inside && !(std::fabs(v / plain - 1.0) < 0.3)) || std::memcmp(&v, &curve[t], sizeof v) != 0) {
        std::printf("FAIL noise at %lld: %.17g (plain %.17g, curve %.17g)\n", static_cast<long long>(t), v, plain,
                    curve[t]);
        ++failures;
      }
      if (!inside) CHECK_NEAR(v, plain);
    }
    expect_error("noise", {kids({build("constant", {num(1.0), ScheduleArg()})}), num(5), num(5), num(0.3), num(1.0),
                           num(1), text("normal")},
                 "noise: end must be > start = 5 (or None), got 5");
  }
  // A node the validator refuses: a slot no field of the kind uses must be zero.
  {
    ScheduleData bad = build("step", {num(3), num(0.5)});
    bad.nodes[0].p[4] = 1.0;
    const std::string problem = schedule_error(bad);
    if (problem != "step: unused parameter slot 4 is not 0") {
      std::printf("FAIL unused slot: %s\n", problem.c_str());
      ++failures;
    }
  }

  if (failures) return 1;
  std::printf("ok\n");
  return 0;
}
