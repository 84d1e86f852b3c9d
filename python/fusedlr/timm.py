"""timm's learning-rate schedulers, with their names, arguments and protocol, as closed forms.

``from fusedlr.timm import CosineLRScheduler`` in place of ``from timm.scheduler import
CosineLRScheduler``: the same constructor arguments and defaults, the same ``step(epoch, metric)`` /
``step_update(num_updates, metric)`` protocol, the same learning rates (timm's formulas in its order
of operations, evaluated in C++: to ~1e-16), and ``state_dict()`` / ``load_state_dict()`` that
interchange with timm's (a checkpoint written by either loads into the other). Each scheduler's
curve is a :class:`fusedlr.schedules.Schedule` (``scheduler.schedule``): plot it, preview it, or
give it to ``fusedlr.SGD(schedule=...)`` to run in the fused step.

Where fusedlr differs, on purpose:

- noise (``noise_range_t``, ``noise_pct``, ``noise_std``, ``noise_seed``) is a counter-based hash of
  ``(seed, t)`` (:func:`fusedlr.schedules.noise`), not a torch generator's draw: the same noisy steps,
  distribution and bounds, not the same numbers, and a pure function of ``t`` (exact resume);
- ``cycle_mul < 1``: past the end of the (converging) cycles timm's logarithm raises ``ValueError``;
  here the rate is ``lr_min`` there;
- ``t`` must be a whole number of epochs or updates (a schedule is a function of whole steps);
- ``WSDLRScheduler(decay_fn=callable)`` is refused (a Python callable has no closed form in C++);
- ``PlateauLRScheduler`` saves its whole plateau state (timm saves ``best`` and ``last_epoch``
  only) and loads timm's two keys too; it is not deprecated here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from torch.optim import Optimizer

from . import schedules as S
from .lr_scheduler import ReduceLROnPlateau

__all__ = [
    "CosineLRScheduler",
    "MultiStepLRScheduler",
    "PlateauLRScheduler",
    "PolyLRScheduler",
    "Scheduler",
    "StepLRScheduler",
    "TanhLRScheduler",
    "WSDLRScheduler",
]


def _whole(t: Any, what: str) -> int:
    """``t`` as an int: timm's epochs and update counts, which fusedlr's schedules take whole."""
    if isinstance(t, numbers.Integral):
        return int(t)
    if isinstance(t, numbers.Real) and math.isfinite(t) and float(t).is_integer():
        return int(t)
    raise ValueError(f"{what} must be a whole number of steps (fusedlr's timm schedulers are closed forms "
                     f"of whole epochs or updates), got {t!r}")


def _noise_range(noise_range_t: Any) -> tuple[int, int | None] | None:
    """timm's ``noise_range_t`` (an int: from that step on; a pair: [start, end)) as (start, end), or
    None when no step is noisy."""
    if noise_range_t is None:
        return None
    if isinstance(noise_range_t, (list, tuple)):
        if len(noise_range_t) != 2:
            raise ValueError(f"noise_range_t must be an int or a pair (start, end), got {noise_range_t!r}")
        start, end = (_whole(x, "noise_range_t") for x in noise_range_t)
        if end <= max(start, 0):
            return None
        return max(start, 0), end
    return max(_whole(noise_range_t, "noise_range_t"), 0), None


class Scheduler:
    """timm's ``Scheduler`` protocol over a closed-form schedule of ``t`` (epochs or updates).

    Subclasses give ``_decay()``, the schedule after (or under) the warmup, and ``_warmup()``
    arguments; this class adds the warmup and noise, and sets ``param_group[field]`` to the value
    for the group's initial value (times the group's ``lr_scale``, as timm does).
    """

    # Attributes that are fusedlr's, not timm's: left out of state_dict().
    _private = ("optimizer", "_schedule", "_noise")

    def __init__(self, optimizer: Optimizer, param_group_field: str, t_in_epochs: bool = True,
                 noise_range_t: Any = None, noise_type: str = "normal", noise_pct: float = 0.67,
                 noise_std: float = 1.0, noise_seed: int | None = None, initialize: bool = True) -> None:
        self.optimizer = optimizer
        self.param_group_field = param_group_field
        self._initial_param_group_field = f"initial_{param_group_field}"
        if initialize:
            for i, group in enumerate(optimizer.param_groups):
                if param_group_field not in group:
                    raise KeyError(f"{param_group_field} missing from param_groups[{i}]")
                group.setdefault(self._initial_param_group_field, group[param_group_field])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if self._initial_param_group_field not in group:
                    raise KeyError(f"{self._initial_param_group_field} missing from param_groups[{i}]")
        self.base_values = [group[self._initial_param_group_field] for group in optimizer.param_groups]
        self.metric = None
        self.t_in_epochs = t_in_epochs
        self.noise_range_t = noise_range_t
        self.noise_pct = noise_pct
        self.noise_type = noise_type
        self.noise_std = noise_std
        self.noise_seed = noise_seed if noise_seed is not None else 42
        self.update_groups(self.base_values)

    # -- the closed form -----------------------------------------------------------------------

    def _decay(self) -> S.Schedule:
        raise NotImplementedError

    def _warmup(self) -> dict[str, bool]:
        """How the warmup meets the decay: :func:`fusedlr.schedules.warmup`'s to_base / overlap."""
        prefix = getattr(self, "warmup_prefix", True)
        return {"to_base": True, "overlap": not prefix}

    def _with_noise(self, schedule: S.Schedule) -> S.Schedule:
        span = _noise_range(self.noise_range_t)
        if span is None:
            return schedule
        return S.noise(schedule, start=span[0], end=span[1], pct=self.noise_pct, std=self.noise_std,
                       seed=self.noise_seed, distribution="normal" if self.noise_type == "normal" else "uniform")

    def _build(self) -> None:
        schedule = self._decay()
        if self.warmup_t:
            schedule = S.warmup(schedule, steps=self.warmup_t, start_lr=self.warmup_lr_init, **self._warmup())
        self._schedule = self._with_noise(schedule)

    def _set_warmup(self, warmup_t: int, warmup_lr_init: float, warmup_prefix: bool | None = None) -> None:
        """The warmup's arguments as timm keeps them (``warmup_prefix`` only for the classes that
        take it), the closed form built, timm's ``warmup_steps`` (kept for its state_dict), and the
        lr at construction."""
        self.warmup_t = warmup_t
        self.warmup_lr_init = warmup_lr_init
        if warmup_prefix is not None:
            self.warmup_prefix = warmup_prefix
        self._build()
        if self.warmup_t:
            ramp = self._warmup()
            ends = (self.base_values if ramp["to_base"]
                    else [self._decay()(self.warmup_t, v) for v in self.base_values])
            self.warmup_steps = [(v - self.warmup_lr_init) / self.warmup_t for v in ends]
            self.update_groups(self.warmup_lr_init)
        else:
            self.warmup_steps = [1 for _ in self.base_values]

    @property
    def schedule(self) -> S.Schedule:
        """The learning rate as a function of ``t`` (noise included): ``schedule(t, base_lr)``."""
        return self._schedule

    def _get_lr(self, t: int) -> list[float]:
        return self._schedule.lrs(_whole(t, "t"), [float(v) for v in self.base_values])

    # -- timm's protocol -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key not in self._private}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """timm's keys (a state from timm or from here); a state whose schedule the validator
        refuses (ValueError naming the argument) leaves the scheduler as it was."""
        before = dict(self.__dict__)
        self.__dict__.update({k: v for k, v in state_dict.items() if k not in self._private})
        try:
            self._build()
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def _get_values(self, t: int, on_epoch: bool = True) -> list[float] | None:
        proceed = (on_epoch and self.t_in_epochs) or (not on_epoch and not self.t_in_epochs)
        return self._get_lr(t) if proceed else None

    def step(self, epoch: int, metric: float | None = None) -> None:
        """At the end of epoch ``epoch``: the value for epoch ``epoch`` (when ``t_in_epochs``)."""
        self.metric = metric
        values = self._get_values(epoch, on_epoch=True)
        if values is not None:
            self.update_groups(values)

    def step_update(self, num_updates: int, metric: float | None = None) -> None:
        """After update ``num_updates``: its value (when not ``t_in_epochs``)."""
        self.metric = metric
        values = self._get_values(num_updates, on_epoch=False)
        if values is not None:
            self.update_groups(values)

    def update_groups(self, values: float | Sequence[float]) -> None:
        if not isinstance(values, (list, tuple)):
            values = [values] * len(self.optimizer.param_groups)
        for group, value in zip(self.optimizer.param_groups, values):
            group[self.param_group_field] = value * group["lr_scale"] if "lr_scale" in group else value

    def get_cycle_length(self, cycles: int = 0) -> int:
        """Steps of ``cycles`` cycles (default ``cycle_limit``), with a prefix warmup (timm's rule)."""
        cycles = max(1, cycles or self.cycle_limit)
        if self.cycle_mul == 1.0:
            t = self.t_initial * cycles
        else:
            t = int(math.floor(-self.t_initial * (self.cycle_mul ** cycles - 1) / (1 - self.cycle_mul)))
        return t + self.warmup_t if self.warmup_prefix else t


class _Cycles(Scheduler):
    """Cosine, poly and tanh cycles: :func:`fusedlr.schedules.cycles` under timm's warmup."""

    _shape = "cosine"

    def __init__(self, optimizer: Optimizer, t_initial: int, lr_min: float = 0.0, cycle_mul: float = 1.0,
                 cycle_decay: float = 1.0, cycle_limit: int = 1, warmup_t: int = 0, warmup_lr_init: float = 0.0,
                 warmup_prefix: bool = False, t_in_epochs: bool = True, noise_range_t: Any = None,
                 noise_pct: float = 0.67, noise_std: float = 1.0, noise_seed: int = 42, initialize: bool = True,
                 **shape: float) -> None:
        super().__init__(optimizer, "lr", t_in_epochs=t_in_epochs, noise_range_t=noise_range_t,
                         noise_pct=noise_pct, noise_std=noise_std, noise_seed=noise_seed, initialize=initialize)
        self.t_initial = t_initial
        self.lr_min = lr_min
        self.cycle_mul = cycle_mul
        self.cycle_decay = cycle_decay
        self.cycle_limit = cycle_limit
        self.__dict__.update(shape)
        self._set_warmup(warmup_t, warmup_lr_init, warmup_prefix)

    def _decay(self) -> S.Schedule:
        shape = {k: getattr(self, k) for k in ("k_decay", "power", "lb", "ub") if hasattr(self, k)}
        return S.cycles(self.t_initial, shape=self._shape, lr_min=self.lr_min, cycle_mul=self.cycle_mul,
                        cycle_decay=self.cycle_decay, cycle_limit=self.cycle_limit, **shape)


class CosineLRScheduler(_Cycles):
    """timm's cosine decay with restarts (SGDR, arXiv:1608.03983) and k-decay (arXiv:2004.05909).

    :func:`fusedlr.schedules.cycles` with ``shape="cosine"``, after timm's linear warmup from
    ``warmup_lr_init`` (``warmup_prefix=False``, timm's default: the cosine runs from step 0 under
    the warmup). Arguments as timm's.
    """

    _shape = "cosine"

    def __init__(self, optimizer: Optimizer, t_initial: int, lr_min: float = 0.0, cycle_mul: float = 1.0,
                 cycle_decay: float = 1.0, cycle_limit: int = 1, warmup_t: int = 0, warmup_lr_init: float = 0.0,
                 warmup_prefix: bool = False, t_in_epochs: bool = True, noise_range_t: Any = None,
                 noise_pct: float = 0.67, noise_std: float = 1.0, noise_seed: int = 42, k_decay: float = 1.0,
                 initialize: bool = True) -> None:
        super().__init__(optimizer, t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, warmup_t, warmup_lr_init,
                         warmup_prefix, t_in_epochs, noise_range_t, noise_pct, noise_std, noise_seed, initialize,
                         k_decay=k_decay)


class PolyLRScheduler(_Cycles):
    """timm's polynomial decay with restarts and k-decay: :func:`fusedlr.schedules.cycles` with
    ``shape="poly"`` after timm's warmup. Arguments as timm's."""

    _shape = "poly"

    def __init__(self, optimizer: Optimizer, t_initial: int, power: float = 0.5, lr_min: float = 0.0,
                 cycle_mul: float = 1.0, cycle_decay: float = 1.0, cycle_limit: int = 1, warmup_t: int = 0,
                 warmup_lr_init: float = 0.0, warmup_prefix: bool = False, t_in_epochs: bool = True,
                 noise_range_t: Any = None, noise_pct: float = 0.67, noise_std: float = 1.0, noise_seed: int = 42,
                 k_decay: float = 1.0, initialize: bool = True) -> None:
        super().__init__(optimizer, t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, warmup_t, warmup_lr_init,
                         warmup_prefix, t_in_epochs, noise_range_t, noise_pct, noise_std, noise_seed, initialize,
                         power=power, k_decay=k_decay)


class TanhLRScheduler(_Cycles):
    """timm's hyperbolic-tangent decay with restarts (arXiv:1806.01593): :func:`fusedlr.schedules.cycles`
    with ``shape="tanh"``. Without ``warmup_prefix`` timm's warmup ramps to the tanh's value at
    ``warmup_t`` (the others ramp to the base rate). Arguments as timm's."""

    _shape = "tanh"

    def __init__(self, optimizer: Optimizer, t_initial: int, lb: float = -7.0, ub: float = 3.0, lr_min: float = 0.0,
                 cycle_mul: float = 1.0, cycle_decay: float = 1.0, cycle_limit: int = 1, warmup_t: int = 0,
                 warmup_lr_init: float = 0.0, warmup_prefix: bool = False, t_in_epochs: bool = True,
                 noise_range_t: Any = None, noise_pct: float = 0.67, noise_std: float = 1.0, noise_seed: int = 42,
                 initialize: bool = True) -> None:
        if warmup_t < 0 or warmup_lr_init < 0:
            raise ValueError(f"warmup_t and warmup_lr_init must be >= 0, got {warmup_t}, {warmup_lr_init}")
        super().__init__(optimizer, t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, warmup_t, warmup_lr_init,
                         warmup_prefix, t_in_epochs, noise_range_t, noise_pct, noise_std, noise_seed, initialize,
                         lb=lb, ub=ub)

    def _warmup(self) -> dict[str, bool]:
        return {"to_base": self.warmup_prefix, "overlap": not self.warmup_prefix}


class _Stepped(Scheduler):
    """Step and multi-step decays after timm's warmup (``warmup_prefix=True`` by default)."""

    def __init__(self, optimizer: Optimizer, decay_t: Any, decay_rate: float, warmup_t: int, warmup_lr_init: float,
                 warmup_prefix: bool, t_in_epochs: bool, noise_range_t: Any, noise_pct: float, noise_std: float,
                 noise_seed: int, initialize: bool) -> None:
        super().__init__(optimizer, "lr", t_in_epochs=t_in_epochs, noise_range_t=noise_range_t,
                         noise_pct=noise_pct, noise_std=noise_std, noise_seed=noise_seed, initialize=initialize)
        self.decay_t = decay_t
        self.decay_rate = decay_rate
        self._set_warmup(warmup_t, warmup_lr_init, warmup_prefix)


class StepLRScheduler(_Stepped):
    """timm's step decay: ``decay_rate ** (t // decay_t)`` (``decay_t`` may be fractional, as in
    timm's EfficientNet recipe's 2.4 epochs): :func:`fusedlr.schedules.step`. Arguments as timm's."""

    def __init__(self, optimizer: Optimizer, decay_t: float, decay_rate: float = 1.0, warmup_t: int = 0,
                 warmup_lr_init: float = 0.0, warmup_prefix: bool = True, t_in_epochs: bool = True,
                 noise_range_t: Any = None, noise_pct: float = 0.67, noise_std: float = 1.0, noise_seed: int = 42,
                 initialize: bool = True) -> None:
        super().__init__(optimizer, decay_t, decay_rate, warmup_t, warmup_lr_init, warmup_prefix, t_in_epochs,
                         noise_range_t, noise_pct, noise_std, noise_seed, initialize)

    def _decay(self) -> S.Schedule:
        return S.step(self.decay_t, gamma=self.decay_rate)


class MultiStepLRScheduler(_Stepped):
    """timm's multi-step decay. timm counts milestone ``m`` from ``t = m - 1`` (its documented
    convention, unlike torch's ``MultiStepLR``): :func:`fusedlr.schedules.multistep` at
    ``max(ceil(m) - 1, 0)``. ``decay_t`` must be sorted, as timm assumes. Arguments as timm's."""

    def __init__(self, optimizer: Optimizer, decay_t: list[int], decay_rate: float = 1.0, warmup_t: int = 0,
                 warmup_lr_init: float = 0.0, warmup_prefix: bool = True, t_in_epochs: bool = True,
                 noise_range_t: Any = None, noise_pct: float = 0.67, noise_std: float = 1.0, noise_seed: int = 42,
                 initialize: bool = True) -> None:
        if list(decay_t) != sorted(decay_t):
            raise ValueError(f"decay_t must be sorted (timm bisects it), got {list(decay_t)}")
        super().__init__(optimizer, decay_t, decay_rate, warmup_t, warmup_lr_init, warmup_prefix, t_in_epochs,
                         noise_range_t, noise_pct, noise_std, noise_seed, initialize)

    def _decay(self) -> S.Schedule:
        return S.multistep([max(math.ceil(m) - 1, 0) for m in self.decay_t], gamma=self.decay_rate)


class WSDLRScheduler(Scheduler):
    """timm's warmup-stable-decay: its linear warmup, then :func:`fusedlr.schedules.stable_decay`.
    Arguments as timm's; ``decay_fn`` one of its names (a callable has no closed form: refused)."""

    def __init__(self, optimizer: Optimizer, t_initial: int, decay_t: int, lr_min: float = 0.0,
                 stable_fn: str = "constant", stable_timescale: float | None = None, stable_power: float = 0.5,
                 decay_fn: str = "1-sqrt", decay_power: float = 0.5, decay_ratio: float = 0.1, warmup_t: int = 0,
                 warmup_lr_init: float = 0.0, t_in_epochs: bool = True, noise_range_t: Any = None,
                 noise_pct: float = 0.67, noise_std: float = 1.0, noise_seed: int = 42,
                 initialize: bool = True) -> None:
        if callable(decay_fn):
            raise TypeError("fusedlr.timm.WSDLRScheduler: decay_fn must be one of 'linear', '1-sqrt', 'cosine', "
                            "'power', 'exp'; a Python callable has no closed form for the C++ schedule")
        super().__init__(optimizer, "lr", t_in_epochs=t_in_epochs, noise_range_t=noise_range_t,
                         noise_pct=noise_pct, noise_std=noise_std, noise_seed=noise_seed, initialize=initialize)
        if stable_fn != "constant" and stable_timescale is None:
            stable_timescale = warmup_t
        self.t_initial = t_initial
        self.decay_t = decay_t
        self.lr_min = lr_min
        self.stable_fn = stable_fn
        self.stable_timescale = stable_timescale
        self.stable_power = stable_power
        self.decay_fn = decay_fn
        self.decay_power = decay_power
        self.decay_ratio = decay_ratio
        self._set_warmup(warmup_t, warmup_lr_init)

    def _decay(self) -> S.Schedule:
        return S.stable_decay(self.t_initial, self.decay_t, lr_min=self.lr_min, stable_fn=self.stable_fn,
                              stable_timescale=self.stable_timescale, stable_power=self.stable_power,
                              decay_fn=self.decay_fn, decay_power=self.decay_power, decay_ratio=self.decay_ratio)

    def get_cycle_length(self, cycles: int = 0) -> int:
        return self.warmup_t + self.t_initial


class PlateauLRScheduler(Scheduler):
    """timm's plateau decay: fusedlr's :class:`~fusedlr.lr_scheduler.ReduceLROnPlateau` (torch's
    rule) after timm's warmup (``epoch <= warmup_t``), with timm's noise on top. Stepped per epoch
    with a metric; ``step_update`` does nothing, as in timm. Arguments as timm's."""

    _private = Scheduler._private + ("lr_scheduler",)

    def __init__(self, optimizer: Optimizer, decay_rate: float = 0.1, patience_t: int = 10, threshold: float = 1e-4,
                 cooldown_t: int = 0, warmup_t: int = 0, warmup_lr_init: float = 0.0, lr_min: float = 0.0,
                 mode: str = "max", noise_range_t: Any = None, noise_type: str = "normal", noise_pct: float = 0.67,
                 noise_std: float = 1.0, noise_seed: int | None = None, initialize: bool = True) -> None:
        super().__init__(optimizer, "lr", noise_range_t=noise_range_t, noise_type=noise_type, noise_pct=noise_pct,
                         noise_std=noise_std, noise_seed=noise_seed, initialize=initialize)
        self.lr_scheduler = ReduceLROnPlateau(optimizer, patience=patience_t, factor=decay_rate, threshold=threshold,
                                              cooldown=cooldown_t, mode=mode, min_lr=lr_min)
        self._set_warmup(warmup_t, warmup_lr_init)  # (to the base rate: timm's plateau ramp)
        self.restore_lr = None

    def _build(self) -> None:
        # timm's ramp: from warmup_lr_init to the base rate, which epoch warmup_t reaches; and the noise.
        self._schedule = S.warmup(S.constant(), steps=self.warmup_t, start_lr=self.warmup_lr_init, to_base=True)
        self._noise = self._with_noise(S.constant())

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.lr_scheduler.best, "last_epoch": self.lr_scheduler.last_epoch,
                "plateau": self.lr_scheduler.state_dict(), "restore_lr": self.restore_lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "plateau" in state_dict:
            self.lr_scheduler.load_state_dict(state_dict["plateau"])
            self.restore_lr = state_dict.get("restore_lr")
        self.lr_scheduler.best = state_dict["best"]
        if "last_epoch" in state_dict:
            self.lr_scheduler.last_epoch = state_dict["last_epoch"]

    def step(self, epoch: int, metric: float | None = None) -> None:
        epoch = _whole(epoch, "epoch")
        if epoch <= self.warmup_t:
            if self.warmup_t == 0:  # timm's epoch 0 without a warmup: warmup_lr_init + 0 * 1
                self.update_groups(self.warmup_lr_init)
            else:
                self.update_groups(self._schedule.lrs(epoch, [float(v) for v in self.base_values]))
            return
        if self.restore_lr is not None:
            # the lr from before the last noise, for the plateau rule
            for group, lr in zip(self.optimizer.param_groups, self.restore_lr):
                group["lr"] = lr
            self.restore_lr = None
        if metric is not None:
            self.lr_scheduler.step(metric)
        span = _noise_range(self.noise_range_t)
        if span is not None and span[0] <= epoch and (span[1] is None or epoch < span[1]):
            factor = self._noise(epoch)
            self.restore_lr = [float(group["lr"]) for group in self.optimizer.param_groups]
            for group, lr in zip(self.optimizer.param_groups, self.restore_lr):
                group["lr"] = lr * factor

    def step_update(self, num_updates: int, metric: float | None = None) -> None:
        return None

    def _get_lr(self, t: int) -> list[float]:
        raise RuntimeError("PlateauLRScheduler is stepped with step(epoch, metric)")
