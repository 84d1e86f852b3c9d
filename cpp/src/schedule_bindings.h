#pragma once
// The Python side of fusedlr/schedule.h: the fusedlr._C.Schedule class (schedule_bindings.cpp) and a
// twin scheduler's step (schedule_applier.cpp).

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

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

/** "fn: arg must be `must`, got `got`" as a Python ValueError. */
[[noreturn]] inline void invalid(const char* fn, const char* arg, const std::string& must, const std::string& got) {
  throw pybind11::value_error(std::string(fn) + ": " + arg + " must be " + must + ", got " + got);
}

/** Add the Schedule class (built through the kinds' rows) to the module. */
void bind_schedules(pybind11::module_& m);

/** Add ScheduleApplier and step_schedules (a twin scheduler's step) to the module. */
void bind_schedule_applier(pybind11::module_& m);

}  // namespace fusedlr
