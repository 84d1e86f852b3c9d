#pragma once
// The Python side of fusedlr/schedule.h: the fusedlr._C.Schedule class and its factories.

#include <pybind11/pybind11.h>

#include <cstdint>

#include "fusedlr/schedule.h"

namespace fusedlr {

/** A validated schedule: what Python holds, and what a kernel launch copies (data()) by value. */
class Schedule {
 public:
  explicit Schedule(const ScheduleData& data) : data_(data) {}
  const ScheduleData& data() const { return data_; }
  double operator()(int64_t step, double base_lr) const { return schedule_lr(data_, step, base_lr); }

 private:
  ScheduleData data_;
};

/** Add the Schedule class (and its factories) to the module. */
void bind_schedules(pybind11::module_& m);

}  // namespace fusedlr
