"""transformers' learning-rate schedule functions, with their names and signatures, as closed forms.

``from fusedlr.lr_scheduler import get_cosine_schedule_with_warmup`` in place of
``from transformers import get_cosine_schedule_with_warmup``: the same arguments and defaults,
the same learning rates (their formulas, in their order of operations: to ~1e-16), returning a
:class:`fusedlr.lr_scheduler.ScheduleLR` instead of a ``LambdaLR`` (stepped, saved and resumed the
same way; ``state_dict()`` holds the schedule, not a lambda).
"""

from __future__ import annotations

from torch.optim import Optimizer

from . import schedules as S
from .lr_scheduler import ScheduleLR

__all__ = [
    "get_constant_schedule",
    "get_cosine_with_hard_restarts_schedule_with_warmup",
    "get_inverse_sqrt_schedule",
    "get_polynomial_decay_schedule_with_warmup",
    "get_constant_schedule_with_warmup",
    "get_cosine_schedule_with_warmup",
    "get_cosine_with_min_lr_schedule_with_warmup",
    "get_linear_schedule_with_warmup",
]


def _with_warmup(optimizer: Optimizer, decay: S.Schedule, num_warmup_steps: int, last_epoch: int) -> ScheduleLR:
    """``decay`` (seeing ``t - W``) after transformers' linear warmup ``t / max(1, W)`` for ``t < W``.
    (A sequence, not :func:`fusedlr.schedules.warmup`: transformers' ramp does not scale the decay's
    first value, which differs from 1 when ``T < W``.)"""
    if num_warmup_steps <= 0:
        return ScheduleLR(optimizer, decay, last_epoch)
    ramp = S.linear(0.0, 1.0, num_warmup_steps)  # t / W exactly: (1 - 0) * t / W
    return ScheduleLR(optimizer, S.sequential([ramp, decay], [num_warmup_steps]), last_epoch)


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
    if min_lr is not None and min_lr_rate is not None:
        raise ValueError("Only one of min_lr or min_lr_rate should be set")
    if min_lr is not None:
        min_lr_rate = min_lr / optimizer.defaults["lr"]
    elif min_lr_rate is None:
        raise ValueError("One of min_lr or min_lr_rate should be set through the `lr_scheduler_kwargs`")
    length = max(1, num_training_steps - num_warmup_steps)
    return _with_warmup(optimizer, S.cycles_cosine(length, num_cycles, min_lr_rate), num_warmup_steps, last_epoch)


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
