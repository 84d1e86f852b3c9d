"""transformers' learning-rate schedule functions, with their names and signatures, as closed forms.

``from fusedlr.lr_scheduler import get_cosine_schedule_with_warmup`` in place of
``from transformers import get_cosine_schedule_with_warmup``: the same arguments and defaults,
the same learning rates (their formulas, in their order of operations: to ~1e-16), returning a
:class:`fusedlr.lr_scheduler.ScheduleLR` instead of a ``LambdaLR`` (stepped, saved and resumed the
same way; ``state_dict()`` holds the schedule, not a lambda).
"""

from __future__ import annotations

import warnings
from typing import Any

from torch.optim import Optimizer

from . import schedules as S
from .lr_scheduler import ReduceLROnPlateau, ScheduleLR

__all__ = [
    "get_constant_schedule",
    "get_cosine_with_hard_restarts_schedule_with_warmup",
    "get_inverse_sqrt_schedule",
    "get_polynomial_decay_schedule_with_warmup",
    "get_reduce_on_plateau_schedule",
    "get_scheduler",
    "get_wsd_schedule",
    "get_constant_schedule_with_warmup",
    "get_cosine_schedule_with_warmup",
    "get_cosine_with_min_lr_schedule_with_warmup",
    "get_cosine_with_min_lr_schedule_with_warmup_lr_rate",
    "get_linear_schedule_with_warmup",
]


def _with_warmup(optimizer: Optimizer, decay: S.Schedule, num_warmup_steps: int, last_epoch: int,
                 ramp: S.Schedule | None = None) -> ScheduleLR:
    """``decay`` (seeing ``t - W``) after transformers' warmup ``ramp`` for ``t < W`` (by default its
    linear ``t / max(1, W)``). A sequence, not :func:`fusedlr.schedules.warmup`: transformers' ramp
    does not scale the decay's first value, which differs from 1 when ``T < W``.

    A negative ``num_warmup_steps`` is refused: transformers takes it and moves its decay by
    ``-W`` steps, which these closed forms (each decay sees ``t - W`` from ``W`` on) do not."""
    if num_warmup_steps < 0:
        raise ValueError(f"num_warmup_steps must be >= 0, got {num_warmup_steps}")
    if num_warmup_steps == 0:
        return ScheduleLR(optimizer, decay, last_epoch)
    if ramp is None:
        ramp = S.linear(0.0, 1.0, num_warmup_steps)  # t / W exactly: (1 - 0) * t / W
    return ScheduleLR(optimizer, S.sequential([ramp, decay], [num_warmup_steps]), last_epoch)


def _min_lr_rate(optimizer: Optimizer, min_lr: float | None, min_lr_rate: float | None) -> float:
    """transformers' floor as a fraction of the optimizer's default lr, from exactly one of the two."""
    if min_lr is not None and min_lr_rate is not None:
        raise ValueError("Only one of min_lr or min_lr_rate should be set")
    if min_lr is not None:
        return min_lr / optimizer.defaults["lr"]
    if min_lr_rate is None:
        raise ValueError("One of min_lr or min_lr_rate should be set through the `lr_scheduler_kwargs`")
    return min_lr_rate


def get_constant_schedule(optimizer: Optimizer, last_epoch: int = -1) -> ScheduleLR:
    """A constant learning rate (transformers' ``get_constant_schedule``)."""
    return ScheduleLR(optimizer, S.constant(), last_epoch)


def get_constant_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, last_epoch: int = -1) -> ScheduleLR:
    r"""Linear warmup over ``num_warmup_steps``, then constant (transformers' function).

    .. math:: \eta_t = \eta_0 \, t / W \; (t < W), \qquad \eta_0 \; (t \ge W)
    """
    return _with_warmup(optimizer, S.constant(), num_warmup_steps, last_epoch)


def get_linear_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                    last_epoch: int = -1) -> ScheduleLR:
    r"""Linear warmup, then linear decay to 0 at ``num_training_steps`` (transformers' function).

    .. math:: \eta_t = \eta_0 \max\left(0, \frac{T - t}{\max(1, T - W)}\right) \; (t \ge W)
    """
    remaining = num_training_steps - num_warmup_steps
    return _with_warmup(optimizer, S.linear_remaining(remaining, max(1, remaining)), num_warmup_steps, last_epoch)


def get_cosine_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                    num_cycles: float = 0.5, last_epoch: int = -1) -> ScheduleLR:
    r"""Linear warmup, then ``num_cycles`` cosine periods to ``num_training_steps`` (transformers' function).

    .. math:: \eta_t = \eta_0 \max\left(0, \tfrac12 \left(1 + \cos\left(2\pi c \tfrac{t - W}{\max(1, T - W)}\right)\right)\right)
    """
    length = max(1, num_training_steps - num_warmup_steps)
    return _with_warmup(optimizer, S.cycles_cosine(length, num_cycles), num_warmup_steps, last_epoch)


def get_cosine_with_min_lr_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                                num_cycles: float = 0.5, last_epoch: int = -1,
                                                min_lr: float | None = None,
                                                min_lr_rate: float | None = None) -> ScheduleLR:
    """As :func:`get_cosine_schedule_with_warmup`, decaying to ``min_lr`` (or ``min_lr_rate`` times
    the optimizer's default lr) instead of 0 (transformers' function, its errors)."""
    min_lr_rate = _min_lr_rate(optimizer, min_lr, min_lr_rate)
    length = max(1, num_training_steps - num_warmup_steps)
    return _with_warmup(optimizer, S.cycles_cosine(length, num_cycles, min_lr_rate), num_warmup_steps, last_epoch)


def get_cosine_with_min_lr_schedule_with_warmup_lr_rate(optimizer: Optimizer, num_warmup_steps: int,
                                                        num_training_steps: int, num_cycles: float = 0.5,
                                                        last_epoch: int = -1, min_lr: float | None = None,
                                                        min_lr_rate: float | None = None,
                                                        warmup_lr_rate: float | None = None) -> ScheduleLR:
    """transformers' variant whose warmup starts at ``warmup_lr_rate`` (or ``1 / W``) and whose
    cosine counts from the warmup's last step (its function and errors)."""
    min_lr_rate = _min_lr_rate(optimizer, min_lr, min_lr_rate)
    length = max(1, num_training_steps - num_warmup_steps)
    decay = S.cycles_cosine(length, num_cycles, min_lr_rate, shift=1)
    ramp = S.ramp_rate(num_warmup_steps, warmup_lr_rate) if num_warmup_steps > 0 else None
    return _with_warmup(optimizer, decay, num_warmup_steps, last_epoch, ramp)


def get_cosine_with_hard_restarts_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int,
                                                       num_training_steps: int, num_cycles: int = 1,
                                                       last_epoch: int = -1) -> ScheduleLR:
    """Linear warmup, then ``num_cycles`` cosine decays with hard restarts (transformers' function)."""
    length = max(1, num_training_steps - num_warmup_steps)
    return _with_warmup(optimizer, S.cycles_cosine_restarts(length, num_cycles), num_warmup_steps, last_epoch)


def get_polynomial_decay_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                              lr_end: float = 1e-7, power: float = 1.0,
                                              last_epoch: int = -1) -> ScheduleLR:
    """Linear warmup, then a polynomial decay from the optimizer's default lr to ``lr_end``
    (transformers' function and its error)."""
    lr_init = optimizer.defaults["lr"]
    if not (lr_init > lr_end):
        raise ValueError(f"lr_end ({lr_end}) must be smaller than initial lr ({lr_init})")
    decay = S.polynomial_to(num_training_steps - num_warmup_steps, lr_init, lr_end, power)
    return _with_warmup(optimizer, decay, num_warmup_steps, last_epoch)


def get_inverse_sqrt_schedule(optimizer: Optimizer, num_warmup_steps: int, timescale: int | None = None,
                              last_epoch: int = -1) -> ScheduleLR:
    """Linear warmup, then ``1 / sqrt((t + timescale - W) / timescale)`` (transformers' function;
    ``timescale`` defaults to ``num_warmup_steps or 10_000``)."""
    if timescale is None:
        timescale = num_warmup_steps or 10_000
    return _with_warmup(optimizer, S.reciprocal_sqrt(timescale), num_warmup_steps, last_epoch)


def get_reduce_on_plateau_schedule(optimizer: Optimizer, **kwargs: Any) -> ReduceLROnPlateau:
    """``ReduceLROnPlateau(optimizer, **kwargs)`` (transformers' function; fusedlr's twin)."""
    return ReduceLROnPlateau(optimizer, **kwargs)


def get_wsd_schedule(optimizer: Optimizer, num_warmup_steps: int, num_decay_steps: int,
                     num_training_steps: int | None = None, num_stable_steps: int | None = None,
                     warmup_type: str = "linear", decay_type: str = "cosine", min_lr_ratio: float = 0,
                     num_cycles: float = 0.5, last_epoch: int = -1) -> ScheduleLR:
    """Warmup, stable, decay with transformers' shapes and arguments (its errors and warning);
    see :func:`fusedlr.schedules.wsd_shaped` for the formula."""
    if num_training_steps is None and num_stable_steps is None:
        raise ValueError("Either num_training_steps or num_stable_steps must be specified.")
    if num_training_steps is not None and num_stable_steps is not None:
        warnings.warn("Both num_training_steps and num_stable_steps are specified. num_stable_steps will be used.")
    if warmup_type not in ["linear", "cosine", "1-sqrt"]:
        raise ValueError(f"Unknown warmup type: {warmup_type}, expected 'linear', 'cosine' or '1-sqrt'")
    if decay_type not in ["linear", "cosine", "1-sqrt"]:
        raise ValueError(f"Unknown decay type: {decay_type}, expected 'linear', 'cosine' or '1-sqrt'")
    if num_stable_steps is None:
        num_stable_steps = num_training_steps - num_warmup_steps - num_decay_steps
    schedule = S.wsd_shaped(num_warmup_steps, num_stable_steps, num_decay_steps, warmup_type, decay_type,
                            min_lr_ratio, num_cycles)
    return ScheduleLR(optimizer, schedule, last_epoch)


# transformers' SchedulerType names and the functions get_scheduler calls for them ("greedy",
# transformers' GreedyLR, a metric-driven state machine, has no fusedlr twin yet).
_BY_NAME = {
    "linear": get_linear_schedule_with_warmup,
    "cosine": get_cosine_schedule_with_warmup,
    "cosine_with_restarts": get_cosine_with_hard_restarts_schedule_with_warmup,
    "polynomial": get_polynomial_decay_schedule_with_warmup,
    "constant": get_constant_schedule,
    "constant_with_warmup": get_constant_schedule_with_warmup,
    "inverse_sqrt": get_inverse_sqrt_schedule,
    "reduce_lr_on_plateau": get_reduce_on_plateau_schedule,
    "cosine_with_min_lr": get_cosine_with_min_lr_schedule_with_warmup,
    "cosine_warmup_with_min_lr": get_cosine_with_min_lr_schedule_with_warmup_lr_rate,
    "warmup_stable_decay": get_wsd_schedule,
}


def get_scheduler(name: Any, optimizer: Optimizer, num_warmup_steps: int | None = None,
                  num_training_steps: int | None = None, scheduler_specific_kwargs: dict | None = None) -> Any:
    """transformers' ``get_scheduler``: the schedule function of ``name`` (a string or transformers'
    ``SchedulerType``) with the arguments it needs, and transformers' errors when one is missing.
    ("greedy" is not available yet.)"""
    key = getattr(name, "value", name)
    if key not in _BY_NAME:
        raise ValueError(f"{name!r} is not a scheduler fusedlr has a twin of; choose one of {sorted(_BY_NAME)}")
    schedule_func = _BY_NAME[key]
    if key == "constant":
        return schedule_func(optimizer)
    kwargs = dict(scheduler_specific_kwargs or {})
    if key == "reduce_lr_on_plateau":
        return schedule_func(optimizer, **kwargs)
    if num_warmup_steps is None:
        raise ValueError(f"{key} requires `num_warmup_steps`, please provide that argument.")
    if key == "constant_with_warmup":
        return schedule_func(optimizer, num_warmup_steps=num_warmup_steps)
    if key == "inverse_sqrt":
        return schedule_func(optimizer, num_warmup_steps=num_warmup_steps, **kwargs)
    if key == "warmup_stable_decay":
        return schedule_func(optimizer, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps,
                             **kwargs)
    if num_training_steps is None:
        raise ValueError(f"{key} requires `num_training_steps`, please provide that argument.")
    return schedule_func(optimizer, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps, **kwargs)
