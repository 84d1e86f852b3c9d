// The schedule headers on their own: plain C++17, no torch, no pybind11; composites nested by hand
// evaluate as the formulas say. Built and run by tests/test_schedules.py.

#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#include "fusedlr/schedule.h"
#include "fusedlr/schedule_curve.h"

using namespace fusedlr;

static_assert(std::is_trivially_copyable_v<ScheduleData>, "a kernel takes ScheduleData by value");
static_assert(std::is_standard_layout_v<ScheduleData>, "plain data");
static_assert(sizeof(ScheduleData) <= 1200, "small enough for kernel arguments");

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

  if (failures) return 1;
  std::printf("ok\n");
  return 0;
}
