"""Types of the private native module fusedlr._C (built from cpp/src/bindings.cpp)."""

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from torch import Tensor

__version__: str
with_cuda: bool
"""True when the CUDA kernels were compiled into this build."""
supported_dtypes: tuple[str, ...]
"""The storage dtypes the SGD kernels step, as torch names them ("float32", ...): the one list."""
cpu_levels_compiled: str
"""Comma-separated SIMD levels compiled into the CPU kernel, e.g. "DEFAULT,AVX2,AVX512"."""

def cpu_kernel_level() -> str:
    """The SIMD level of the CPU SGD kernel in this process: "AVX512", "AVX2" or "DEFAULT"."""

def _cos_pi(x: float) -> float:
    """cos(pi * x) as the schedules compute it (fusedlr/schedule_math.h); for tests."""

class Schedule:
    """A closed-form learning-rate schedule (cpp/include/fusedlr/schedule.h; src: schedule_bindings.cpp).

    ``s(step, base_lr=1.0)`` is the learning rate of ``step`` for a param group whose initial
    learning rate is ``base_lr`` (1.0: a factor). Plain data, no state: picklable, comparable
    with ``==``, hashable. Build with the static factories or with :mod:`fusedlr.schedules`.
    """

    max_nodes: ClassVar[int]
    """Most nodes (leaves and composites) in one schedule (kMaxScheduleNodes)."""
    max_values: ClassVar[int]
    """Most milestones/boundaries/breakpoints in one schedule (kMaxScheduleValues)."""
    max_step: ClassVar[int]
    """The last step a schedule names, 2**62 (kMaxScheduleStep): boundaries, lengths, counters, curves."""
    nbytes: ClassVar[int]
    """sizeof(ScheduleData): what a kernel launch copies."""

    def __call__(self, step: int, base_lr: float = 1.0) -> float:
        """The learning rate at ``step`` (steps below 0 count as 0)."""
    def lrs(self, step: int, base_lrs: Sequence[float]) -> list[float]:
        """The learning rates at ``step`` for each of ``base_lrs``."""
    def restart_cycle(self, step: float) -> tuple[float, float]:
        """The cosine_restarts cycle holding ``step`` (may be fractional): ``(first step, length)``."""
    def restart_value(self, step: float, base_lr: float = 1.0) -> float:
        """A cosine_restarts schedule at a real step (torch's fractional epochs)."""
    def curve(self, n: int, start: int = 0, base_lr: float = 1.0) -> npt.NDArray[np.float64]:
        """The learning rates of steps ``start .. start + n - 1``, computed in C++."""
    @property
    def kind(self) -> str:
        """The outermost schedule's name, e.g. ``"cosine"``."""
    @property
    def num_nodes(self) -> int:
        """Nodes used (at most ``max_nodes``)."""
    def to_bytes(self) -> bytes:
        """The raw ScheduleData of this build (not a storage format)."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...
    def __getstate__(self) -> tuple: ...
    def __setstate__(self, state: tuple) -> None: ...
    @property
    def arguments(self) -> dict[str, Any]:
        """The arguments of the outermost schedule's factory, by name (children as Schedules)."""
    @staticmethod
    def make(kind: str, /, **arguments: Any) -> Schedule:
        """The schedule of kind ``kind`` from its arguments by name (fusedlr/schedule_kinds.h says which)."""


def step_schedules(applier: ScheduleApplier, step: int, base_lrs: Sequence[float], param_groups: Sequence[dict],
                   expected: Sequence[float] | None, other: ScheduleApplier = ...,
                   other_bases: Sequence[float] = ..., /) -> list[float] | None:
    """``applier.apply`` (then ``other.apply`` with ``other_bases``) as one METH_FASTCALL call: a twin's step().

    With ``expected`` (the values the twin wrote last), nothing is written and None is returned
    when a group's value has been changed since by something else.
    """

class ScheduleApplier:
    """Writes ``schedules[g](step, base_lrs[g])`` into each param group's ``key``: what a twin holds.

    One schedule serves all groups when ``schedules`` has one entry. Tensor values are filled in
    place; ``key="betas"`` replaces beta1 of the pair.
    """

    def __init__(self, schedules: Sequence[Schedule], key: str = "lr") -> None: ...
    def apply(self, step: int, base_lrs: Sequence[float], param_groups: list[dict]) -> list[float]:
        """Set ``param_groups[g][key] = schedules[g](step, base_lrs[g])``; return the values."""
    def __eq__(self, other: object) -> bool:
        """Same schedules and key."""

class SgdGroup:
    """A param group's tensors held in C++ between steps (fusedlr.SGD's eager fast path)."""

    def __init__(self, params: list[Tensor], momentum_buffers: list[Tensor | None],
                 steps: list[Tensor | None]) -> None: ...
    def step(self, params: list[Tensor], lr: float, momentum: float, dampening: float, weight_decay: float,
             nesterov: bool, maximize: bool, lr_tensor: Tensor | None, grad_scale: Tensor | None,
             found_inf: Tensor | None, schedule: Tensor | None, schedule_state: Tensor | None,
             grad_clip: Tensor | None) -> int:
        """Step every parameter with a gradient; the count, or -1 when the group must be rebuilt."""
    def __len__(self) -> int: ...
    @property
    def last_step_tensors(self) -> int:
        """How many tensors the last step handed the op per list (one per flat run when they were stepped)."""

class FlatGrads:
    """The gradients of a flat layout (fusedlr.SGD(flat=True)): ``grad`` and each parameter's view of it."""

    def __init__(self, params: list[Tensor], views: list[Tensor], grad: Tensor) -> None: ...
    def zero(self, set_to_none: bool) -> int:
        """``grad`` = 0 and each parameter's .grad its view again (torch's zero_grad where it no longer
        fits); how many parameters still have their view."""

def _zero_grads(params: list[Tensor], set_to_none: bool) -> None:
    """torch.optim.Optimizer.zero_grad's rule for each parameter: .grad set to None, or detached and zeroed."""

def _held_zero_grad(groups: list[SgdGroup], params: list[list[Tensor]]) -> bool:
    """zero_grad(set_to_none=True) over the held groups, in C++; False (nothing done): take torch's loop."""

def _held_grad_norm(groups: list[SgdGroup], params: list[list[Tensor]], norm_type: float, max_norm: float,
                    grad_scale: Tensor | None) -> Tensor | None:
    """torch.ops.fusedlr.grad_norm over the held groups' gradients, read in C++; None: take the Python path."""
