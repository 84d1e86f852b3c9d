"""The demo's schedules: a name and a few parameters in epochs → a fusedlr.lr_scheduler twin.

Torch's classic epoch-based schedulers (step, multistep, exponential, plateau, constant) step once
per epoch, as in the classic example; every other schedule steps once per batch, with its
lengths converted from epochs to optimizer steps.

The fusedlr classes check their own arguments (ValueError naming the argument); this module checks
only what it adds, the conversion of lengths in epochs to steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from torch.optim import Optimizer


@dataclass
class SchedulerConfig:
    name: str = "step"
    step_size: int = 10
    gamma: float | None = None
    milestones: list[int] = field(default_factory=lambda: [10, 15])
    eta_min: float = 0.0
    t0: int = 5
    t_mult: float = 2.0
    base_lr: float | None = None
    cycle_epochs: float = 4.0
    cyclic_mode: str = "triangular"
    warmup_epochs: float = 1.0
    decay: float = 0.5
    decay_fraction: float = 0.2
    factor: float = 0.1
    patience: int = 2


class Stepper:
    """Steps a scheduler at the right moments: after each batch or after each epoch."""

    def __init__(self, scheduler: Any, per_batch: bool, needs_metric: bool = False) -> None:
        self.scheduler = scheduler
        self.per_batch = per_batch
        self.needs_metric = needs_metric

    def after_batch(self) -> None:
        if self.per_batch:
            self.scheduler.step()

    def after_epoch(self, metric: float) -> None:
        if self.per_batch:
            return
        if self.needs_metric:
            self.scheduler.step(metric)
        else:
            self.scheduler.step()


def _steps(epochs: float, steps_per_epoch: int) -> int:
    steps = epochs * steps_per_epoch
    if not math.isfinite(steps):
        raise ValueError(f"a length of {epochs} epochs is too long")
    return max(1, round(steps))


def _positive_epochs(value: float, what: str) -> float:
    """``value``, refused unless positive: _steps would silently round a zero or negative length up to one step."""
    if not value > 0:
        raise ValueError(f"{what} must be a positive number of epochs, got {value}")
    return value


def make_scheduler(c: SchedulerConfig, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int) -> Stepper:
    from .. import lr_scheduler as L

    lr = optimizer.param_groups[0]["lr"]
    total = epochs * steps_per_epoch

    def warmup() -> int:
        if c.warmup_epochs < 0:
            raise ValueError(f"{c.name}: warmup_epochs must be >= 0, got {c.warmup_epochs}")
        return min(_steps(c.warmup_epochs, steps_per_epoch), total - 1) if c.warmup_epochs > 0 else 0

    def warmup_cosine() -> Stepper:
        w = warmup()
        return Stepper(L.WarmupLR(optimizer, warmup_steps=w,
                                  scheduler=L.CosineAnnealingLR(optimizer, T_max=total - w, eta_min=c.eta_min)),
                       per_batch=True)

    def cyclic() -> Stepper:
        half_cycle = _positive_epochs(c.cycle_epochs, "cyclic: cycle_epochs") / 2
        return Stepper(L.CyclicLR(optimizer, base_lr=c.base_lr if c.base_lr is not None else lr / 10, max_lr=lr,
                                  step_size_up=_steps(half_cycle, steps_per_epoch), mode=c.cyclic_mode),
                       per_batch=True)

    def linear_end_factor() -> float:
        if lr <= 0:
            raise ValueError(f"linear: lr must be > 0 to decay it to eta_min, got {lr}")
        return c.eta_min / lr

    def wsd() -> Stepper:
        if not 0 < c.decay_fraction <= 1:
            raise ValueError(f"wsd: decay_fraction must be in (0, 1], got {c.decay_fraction}")
        decay = min(total, max(1, round(c.decay_fraction * total)))
        return Stepper(L.WSDLR(optimizer, total_steps=total, warmup_steps=min(warmup(), total - decay),
                               decay_steps=decay), per_batch=True)

    # gamma: `is None`, not `or`: an explicit 0 must reach the class, which refuses it.
    def gamma(default: float) -> float:
        return default if c.gamma is None else c.gamma

    builders: dict[str, Callable[[], Stepper]] = {
        "constant": lambda: Stepper(L.ConstantLR(optimizer, factor=1.0, total_iters=0), per_batch=False),
        "step": lambda: Stepper(L.StepLR(optimizer, step_size=c.step_size, gamma=gamma(0.1)), per_batch=False),
        "multistep": lambda: Stepper(L.MultiStepLR(optimizer, milestones=c.milestones, gamma=gamma(0.1)),
                                     per_batch=False),
        "exponential": lambda: Stepper(L.ExponentialLR(optimizer, gamma=gamma(0.8)), per_batch=False),
        "plateau": lambda: Stepper(L.ReduceLROnPlateau(optimizer, mode="min", factor=c.factor, patience=c.patience),
                                   per_batch=False, needs_metric=True),
        "linear": lambda: Stepper(L.LinearLR(optimizer, start_factor=1.0, end_factor=linear_end_factor(),
                                             total_iters=total), per_batch=True),
        "polynomial": lambda: Stepper(L.PolynomialLR(optimizer, total_iters=total, power=2.0), per_batch=True),
        "time-based": lambda: Stepper(L.InverseTimeLR(optimizer, decay_rate=c.decay, decay_steps=steps_per_epoch),
                                      per_batch=True),
        "cosine": lambda: Stepper(L.CosineAnnealingLR(optimizer, T_max=total, eta_min=c.eta_min), per_batch=True),
        "warm-restarts": lambda: Stepper(
            L.CosineAnnealingWarmRestarts(optimizer,
                                          T_0=_steps(_positive_epochs(c.t0, "warm-restarts: t0"), steps_per_epoch),
                                          T_mult=int(c.t_mult) if float(c.t_mult).is_integer() else c.t_mult,
                                          eta_min=c.eta_min), per_batch=True),
        "cyclic": cyclic,
        "one-cycle": lambda: Stepper(L.OneCycleLR(optimizer, max_lr=lr, total_steps=total), per_batch=True),
        "warmup-cosine": warmup_cosine,
        "wsd": wsd,
        "inverse-sqrt": lambda: Stepper(L.InverseSqrtLR(optimizer, warmup_steps=warmup()), per_batch=True),
    }
    if c.name not in builders:
        raise ValueError(f"unknown schedule {c.name!r}; choose from {', '.join(sorted(builders))}")
    return builders[c.name]()


SCHEDULERS = (
    "constant", "step", "multistep", "exponential", "plateau", "linear", "polynomial", "time-based", "cosine",
    "warm-restarts", "cyclic", "one-cycle", "warmup-cosine", "wsd", "inverse-sqrt",
)
