"""The demo's schedules: a name and a few parameters in epochs → a fusedlr.lr_scheduler twin.

Torch's classic epoch-based schedulers (step, multistep, exponential, plateau, constant) step once
per epoch, as in the classic example; every other schedule steps once per batch, with its
lengths converted from epochs to optimizer steps.
"""

from __future__ import annotations

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
    return max(1, round(epochs * steps_per_epoch))


def make_scheduler(c: SchedulerConfig, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int) -> Stepper:
    from .. import lr_scheduler as L

    lr = optimizer.param_groups[0]["lr"]
    total = epochs * steps_per_epoch
    warmup = min(_steps(c.warmup_epochs, steps_per_epoch), total - 1) if c.warmup_epochs > 0 else 0

    wsd_decay = min(total, max(1, round(c.decay_fraction * total)))

    builders: dict[str, Callable[[], Stepper]] = {
        "constant": lambda: Stepper(L.ConstantLR(optimizer, factor=1.0, total_iters=0), per_batch=False),
        "step": lambda: Stepper(L.StepLR(optimizer, step_size=c.step_size, gamma=c.gamma or 0.1), per_batch=False),
        "multistep": lambda: Stepper(L.MultiStepLR(optimizer, milestones=c.milestones, gamma=c.gamma or 0.1),
                                     per_batch=False),
        "exponential": lambda: Stepper(L.ExponentialLR(optimizer, gamma=c.gamma or 0.8), per_batch=False),
        "plateau": lambda: Stepper(L.ReduceLROnPlateau(optimizer, mode="min", factor=c.factor, patience=c.patience),
                                   per_batch=False, needs_metric=True),
        "linear": lambda: Stepper(L.LinearLR(optimizer, start_factor=1.0, end_factor=c.eta_min / lr,
                                             total_iters=total), per_batch=True),
        "polynomial": lambda: Stepper(L.PolynomialLR(optimizer, total_iters=total, power=2.0), per_batch=True),
        "time-based": lambda: Stepper(L.InverseTimeLR(optimizer, decay_rate=c.decay, decay_steps=steps_per_epoch),
                                      per_batch=True),
        "cosine": lambda: Stepper(L.CosineAnnealingLR(optimizer, T_max=total, eta_min=c.eta_min), per_batch=True),
        "warm-restarts": lambda: Stepper(
            L.CosineAnnealingWarmRestarts(optimizer, T_0=_steps(c.t0, steps_per_epoch),
                                          T_mult=int(c.t_mult) if float(c.t_mult).is_integer() else c.t_mult,
                                          eta_min=c.eta_min), per_batch=True),
        "cyclic": lambda: Stepper(
            L.CyclicLR(optimizer, base_lr=c.base_lr if c.base_lr is not None else lr / 10, max_lr=lr,
                       step_size_up=_steps(c.cycle_epochs / 2, steps_per_epoch), mode=c.cyclic_mode),
            per_batch=True),
        "one-cycle": lambda: Stepper(L.OneCycleLR(optimizer, max_lr=lr, total_steps=total), per_batch=True),
        "warmup-cosine": lambda: Stepper(
            L.WarmupLR(optimizer, warmup_steps=warmup,
                       scheduler=L.CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=c.eta_min)),
            per_batch=True),
        "wsd": lambda: Stepper(
            L.WSDLR(optimizer, total_steps=total, warmup_steps=min(warmup, total - wsd_decay),
                    decay_steps=wsd_decay), per_batch=True),
        "inverse-sqrt": lambda: Stepper(L.InverseSqrtLR(optimizer, warmup_steps=warmup), per_batch=True),
    }
    if c.name not in builders:
        raise ValueError(f"unknown schedule {c.name!r}; choose from {', '.join(sorted(builders))}")
    return builders[c.name]()


SCHEDULERS = (
    "constant", "step", "multistep", "exponential", "plateau", "linear", "polynomial", "time-based", "cosine",
    "warm-restarts", "cyclic", "one-cycle", "warmup-cosine", "wsd", "inverse-sqrt",
)
