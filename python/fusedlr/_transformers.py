"""transformers' learning-rate schedule functions, with their names and signatures, as closed forms.

``from fusedlr.lr_scheduler import get_cosine_schedule_with_warmup`` in place of
``from transformers import get_cosine_schedule_with_warmup``: the same arguments and defaults,
the same learning rates (their formulas, in their order of operations: to ~1e-16), returning a
:class:`fusedlr.lr_scheduler.ScheduleLR` instead of a ``LambdaLR`` (stepped, saved and resumed the
same way; ``state_dict()`` holds the schedule, not a lambda).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from torch.optim import Optimizer

from . import schedules as S
from .lr_scheduler import ReduceLROnPlateau, ScheduleLR, _improves, _reduce_lr, _set

__all__ = [
    "GreedyLR",
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
    "get_greedy_schedule",
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


class _RollingMean:
    """The mean of the last ``window_size`` values, kept as transformers keeps it (a running sum:
    the same rounding, so a smoothed GreedyLR decides as transformers' does)."""

    def __init__(self, window_size: int) -> None:
        self.window_size = window_size
        self.values: list[float] = []
        self.sum = 0.0

    def add(self, value: float) -> float:
        self.values.append(value)
        self.sum += value
        if len(self.values) > self.window_size:
            self.sum -= self.values.pop(0)
        return self.sum / len(self.values)

    def state_dict(self) -> dict[str, Any]:
        return {"window_size": self.window_size, "values": list(self.values), "sum": self.sum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window_size = state.get("window_size", self.window_size)
        self.values = list(state.get("values", []))
        self.sum = state.get("sum", 0.0)


def _per_group(name: str, value: Any, optimizer: Optimizer) -> list[float]:
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"expected {n} {name}s, got {len(value)}")
        return list(value)
    return [value] * n


class GreedyLR:
    r"""transformers' ``GreedyLR`` (arXiv:2512.14527): a metric-driven state machine, like
    ``ReduceLROnPlateau`` but in both directions.

    After more than ``patience`` steps that improve the metric (by ``threshold``), each group's lr
    is divided by ``factor`` (not above ``max_lr``) and ``warmup`` steps are skipped; after more
    than ``patience`` steps that do not, it is multiplied by ``factor`` (not below ``min_lr``; the
    change applied only when larger than ``eps``) and ``cooldown`` steps are skipped. When every
    group sits at its ``min_lr`` for ``reset_start`` reductions, the lrs, the best metric and the
    counters start over. ``smooth`` averages the metric over the last ``window_size`` steps.

    The same arguments, decisions and ``state_dict`` keys as transformers' (a checkpoint written by
    either loads into the other); no closed form exists (the lr depends on the metrics), so it runs
    on the host. A ``fusedlr.SGD`` group with an in-kernel schedule takes each change as a scale of
    the rest of its schedule, as with ``ReduceLROnPlateau``.
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.95, patience: int = 10,
                 threshold: float = 1e-6, threshold_mode: str = "abs", cooldown: int = 0, warmup: int = 0,
                 min_lr: float | list[float] = 1e-3, max_lr: float | list[float] = 1.0, eps: float = 1e-8,
                 verbose: bool = False, smooth: bool = False, window_size: int = 50, reset_start: int = 500) -> None:
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        self.factor, self.patience, self.verbose = factor, patience, verbose
        self.cooldown, self.warmup = cooldown, warmup
        self.cooldown_counter = self.warmup_counter = 0
        self.mode, self.threshold, self.threshold_mode, self.eps = mode, threshold, threshold_mode, eps
        self.smooth, self.window_size = smooth, window_size
        self.reset_start = self.reset_start_original = reset_start
        self.last_epoch = 0
        self.min_lrs = _per_group("min_lr", min_lr, optimizer)
        self.max_lrs = _per_group("max_lr", max_lr, optimizer)
        self._init_lrs = [group["lr"] for group in optimizer.param_groups]
        self._last_lr = list(self._init_lrs)
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode} is unknown!")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {threshold_mode} is unknown!")
        self._start_over()

    def _start_over(self) -> None:
        """The best metric, the counters and the smoothing window as at the start."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = self.num_good_epochs = 0
        self.cooldown_counter = self.warmup_counter = 0
        self.reset_start = self.reset_start_original
        self._streaming_avg = _RollingMean(self.window_size) if self.smooth else None

    def _say(self, epoch: int, i: int, verb: str, lr: float) -> None:
        if self.verbose:
            print(f"GreedyLR, epoch {epoch}: {verb} the learning rate of group {i} to {lr:.4e}.")

    def step(self, metrics: float, epoch: int | None = None) -> None:
        """Record the metric of this step and move the lrs when it has improved (or not) for long enough."""
        current = float(metrics)
        if self._streaming_avg is not None:
            current = self._streaming_avg.add(current)
        self.last_epoch = epoch = self.last_epoch + 1 if epoch is None else epoch
        if self.cooldown_counter > 0 or self.warmup_counter > 0:
            # Waiting after a change: count down (the cooldown first), judge nothing.
            if self.cooldown_counter > 0:
                self.cooldown_counter -= 1
            else:
                self.warmup_counter -= 1
            self.num_bad_epochs = self.num_good_epochs = 0
        else:
            if _improves(current, self.best, self.mode, self.threshold_mode, self.threshold):
                self.best = current
                self.num_bad_epochs, self.num_good_epochs = 0, self.num_good_epochs + 1
            else:
                self.num_bad_epochs, self.num_good_epochs = self.num_bad_epochs + 1, 0
            if self.num_good_epochs > self.patience:
                self._raise(epoch)
                self.warmup_counter, self.num_good_epochs = self.warmup, 0
            elif self.num_bad_epochs > self.patience:
                self._lower(epoch)
                self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _raise(self, epoch: int) -> None:
        for i, group in enumerate(self.optimizer.param_groups):
            old = float(group["lr"])
            new = min(old / self.factor, self.max_lrs[i])
            if new - old > self.eps:
                _set(group, "lr", new)
                self._say(epoch, i, "raising", new)
        self.reset_start = self.reset_start_original

    def _lower(self, epoch: int) -> None:
        for i, group in enumerate(self.optimizer.param_groups):
            before = float(group["lr"])
            _reduce_lr(group, self.factor, self.min_lrs[i], self.eps)
            if float(group["lr"]) != before:
                self._say(epoch, i, "lowering", float(group["lr"]))
        if all(float(g["lr"]) <= m for g, m in zip(self.optimizer.param_groups, self.min_lrs)):
            self.reset_start -= 1
            if self.reset_start <= 0:
                for group, lr in zip(self.optimizer.param_groups, self._init_lrs):
                    _set(group, "lr", lr)
                self._start_over()
                if self.verbose:
                    print("GreedyLR: every group stayed at its min_lr; starting over from the initial lrs.")

    def get_last_lr(self) -> list[float]:
        """The lrs after the last step."""
        return self._last_lr

    # The state transformers' GreedyLR saves, under its keys.
    _STATE = ("factor", "min_lrs", "max_lrs", "patience", "verbose", "cooldown", "warmup", "cooldown_counter",
              "warmup_counter", "mode", "threshold", "threshold_mode", "best", "num_bad_epochs", "num_good_epochs",
              "eps", "last_epoch", "smooth", "window_size", "reset_start", "reset_start_original", "_last_lr",
              "_init_lrs")

    def state_dict(self) -> dict[str, Any]:
        state = {key: getattr(self, key) for key in self._STATE}
        if self._streaming_avg is not None:
            state["_streaming_avg"] = self._streaming_avg.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The state (missing keys keep their values); the optimizer's lrs become the saved last ones."""
        for key in self._STATE:
            setattr(self, key, state_dict.get(key, getattr(self, key)))
        if "_streaming_avg" in state_dict:
            if self._streaming_avg is None:
                self._streaming_avg = _RollingMean(self.window_size)
            self._streaming_avg.load_state_dict(state_dict["_streaming_avg"])
        if "_last_lr" in state_dict:
            for group, lr in zip(self.optimizer.param_groups, self._last_lr):
                _set(group, "lr", lr)


def get_greedy_schedule(optimizer: Optimizer, **kwargs: Any) -> GreedyLR:
    """``GreedyLR(optimizer, **kwargs)`` (transformers' function; fusedlr's twin)."""
    return GreedyLR(optimizer, **kwargs)


# transformers' SchedulerType names and the functions get_scheduler calls for them.
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
    "greedy": get_greedy_schedule,
}


def get_scheduler(name: Any, optimizer: Optimizer, num_warmup_steps: int | None = None,
                  num_training_steps: int | None = None, scheduler_specific_kwargs: dict | None = None) -> Any:
    """transformers' ``get_scheduler``: the schedule function of ``name`` (a string or transformers'
    ``SchedulerType``) with the arguments it needs, and transformers' errors when one is missing."""
    key = getattr(name, "value", name)
    if key not in _BY_NAME:
        raise ValueError(f"{name!r} is not a scheduler fusedlr has a twin of; choose one of {sorted(_BY_NAME)}")
    schedule_func = _BY_NAME[key]
    if key == "constant":
        return schedule_func(optimizer)
    kwargs = dict(scheduler_specific_kwargs or {})
    if key in ("reduce_lr_on_plateau", "greedy"):
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
