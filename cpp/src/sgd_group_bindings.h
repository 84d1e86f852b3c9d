#pragma once

#include <pybind11/pybind11.h>

namespace fusedlr {

/** Bind fusedlr._C.SgdGroup (sgd_group.h): the eager fast path of fusedlr.SGD. */
void bind_sgd_group(pybind11::module_& m);

}  // namespace fusedlr
