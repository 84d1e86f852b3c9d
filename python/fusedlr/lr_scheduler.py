r"""Twins of ``torch.optim.lr_scheduler``: same names, constructor arguments and LR sequences, closed form.

Each twin is an instance of torch's class of the same name and works with any
``torch.optim.Optimizer``. It computes the learning rate of step ``t`` (``last_epoch``) of param
group ``g`` directly as ``schedule_g(t, base_lr_g)`` with a :class:`fusedlr.schedules.Schedule`
(``.schedule``, or ``.schedules`` per group), whose math is in C++
(``cpp/include/fusedlr/schedule.h``). ``LRScheduler`` is torch's own base class, re-exported, so
custom schedulers written against it keep working; the twins derive from :class:`ClosedFormLR`.

The rule, when something else also sets the learning rate:

* A twin that drives its optimizer alone writes its closed form: no drift, and
  ``load_state_dict`` re-applies the restored step's learning rate (and cycled momentum), so a
  resume is exact whether the optimizer's state is loaded before or after.
* Each step a twin checks that ``group["lr"]`` still holds what it wrote last. Once another
  scheduler stepped back to back on the same optimizer, a ``ReduceLROnPlateau`` or a manual change
  has moved it, that group *follows*: from then on the twin moves the current lr by torch's
  chainable rule, so stacked schedulers give torch's numbers (``ExponentialLR`` + ``MultiStepLR``
  multiply; ``StepLR`` + ``ReduceLROnPlateau`` gives ``.5, .05, .005, ...``). A following group's lr
  is then the optimizer's state, as in torch. ``CyclicLR``, ``OneCycleLR``,
  ``CosineAnnealingWarmRestarts`` and ``LambdaLR`` set the lr from their base in torch too; they
  never follow.
* ``ChainedScheduler`` of multiplicative schedulers is the product of their closed forms (its
  ``.schedule``); a chain holding a cosine annealing, a cyclic, one-cycle, warm-restart or
  sequential scheduler applies each rule in turn, as torch does, and has no closed form.

Deliberate differences from torch (each listed in the README):

* ``OneCycleLR`` holds its final learning rate from step ``total_steps - 1`` on (torch computes a
  value just past the end of the cosine at step ``total_steps`` and raises after it).
* ``SequentialLR`` accepts nested ``SequentialLR``/``ChainedScheduler`` and milestone 0.
* Invalid arguments raise ``ValueError`` naming the argument (where torch raises, with torch's
  message).

``LambdaLR``, ``MultiplicativeLR`` (user callables) and ``ReduceLROnPlateau`` (a state machine
driven by the metric) run in Python and have no ``.schedule``. Extra schedulers torch lacks:
:class:`WarmupLR` (warmup in front of any closed-form scheduler), :class:`WSDLR`,
:class:`InverseSqrtLR` and :class:`InverseTimeLR`.
"""

from __future__ import annotations

import bisect
import fractions
import functools
import math
import types
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.optim.lr_scheduler as _torch_lr
from torch.optim import Optimizer
from torch.optim.lr_scheduler import EPOCH_DEPRECATION_WARNING
from torch.optim.lr_scheduler import LRScheduler

from . import schedules as S
from ._C import Schedule
from ._C import ScheduleApplier as _ScheduleApplier
from ._in_kernel import lr_at, refuse_second_schedule
from ._C import step_schedules as _step_schedules

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "GreedyLR",
    "InverseSqrtLR",
    "InKernelLR",
    "InverseTimeLR",
    "ClosedFormLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "ScheduleLR",
    "get_constant_schedule",
    "get_constant_schedule_with_warmup",
    "get_cosine_schedule_with_warmup",
    "get_cosine_with_hard_restarts_schedule_with_warmup",
    "get_cosine_with_min_lr_schedule_with_warmup",
    "get_cosine_with_min_lr_schedule_with_warmup_lr_rate",
    "get_greedy_schedule",
    "get_inverse_sqrt_schedule",
    "get_linear_schedule_with_warmup",
    "get_polynomial_decay_schedule_with_warmup",
    "get_reduce_on_plateau_schedule",
    "get_scheduler",
    "get_wsd_schedule",
    "SequentialLR",
    "StepLR",
    "WSDLR",
    "WarmupLR",
]

# Attributes that are not plain state: rebuilt from the plain ones, never saved (torch.load's
# weights_only mode accepts only plain containers and numbers).
_NOT_STATE = frozenset({"optimizer", "_schedules", "_shared", "_momentum_schedules", "_schedulers", "lr_lambdas",
                        "_lr_applier", "_momentum_applier",
                        "_scale_fn_custom", "_zeros", "scheduler", "_chain", "_children_stale"})


def _format_param(name: str, optimizer: Optimizer, param: Any) -> list:
    """One value per param group, as torch's ``_format_param``."""
    if isinstance(param, (list, tuple)):
        if len(param) != len(optimizer.param_groups):
            raise ValueError(f"{name} must have the same length as optimizer.param_groups. "
                             f"{name} has {len(param)} values, param_groups has {len(optimizer.param_groups)}.")
        return list(param)
    return [param] * len(optimizer.param_groups)


def _start_momentum_cycle(owner: Any, optimizer: Optimizer, base_momentum: Any, max_momentum: Any,
                          last_epoch: int) -> None:
    """CyclicLR / OneCycleLR with cycle_momentum: check the optimizer has a momentum (or Adam's
    beta1), record the per-group bounds, and on a fresh start set each group's momentum to its
    maximum, as torch does."""
    if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
        raise ValueError("optimizer must support momentum or beta1 with `cycle_momentum` option enabled")
    owner.use_beta1 = "betas" in optimizer.defaults
    owner.base_momentums = [float(m) for m in _format_param("base_momentum", optimizer, base_momentum)]
    owner.max_momentums = [float(m) for m in _format_param("max_momentum", optimizer, max_momentum)]
    if last_epoch == -1:
        for m_max, m_base, group in zip(owner.max_momentums, owner.base_momentums, optimizer.param_groups):
            if owner.use_beta1:
                group["betas"] = (m_max, *group["betas"][1:])
            else:
                group["momentum"] = m_max
            group["max_momentum"] = m_max
            group["base_momentum"] = m_base


# The last step a schedule can name: a length or milestone beyond it is never reached, so a larger
# whole number is held at it or dropped (the same values at every step below it).
_MAX_STEP = Schedule.max_step


def _whole(x: Any) -> int | None:
    """``x`` as an int when it is a whole number (``4`` or ``4.0``), else None (``2.5``, NaN)."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def _set(group: dict, key: str, value: float) -> None:
    current = group[key]
    if isinstance(current, torch.Tensor):
        current.fill_(value)
    else:
        group[key] = value


def _track_optimizer_step(optimizer: Optimizer) -> None:
    """Mark ``optimizer._opt_called`` on each ``optimizer.step()``, as torch's schedulers do (the
    same attributes, so torch's and fusedlr's schedulers on one optimizer share the wrapper): a
    scheduler stepped before its optimizer warns as torch's does."""
    if hasattr(optimizer.step, "_wrapped_by_lr_sched"):
        return
    opt_ref = weakref.ref(optimizer)
    func = optimizer.step.__func__

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opt = opt_ref()
        opt._opt_called = True
        return func.__get__(opt, opt.__class__)(*args, **kwargs)

    wrapper._wrapped_by_lr_sched = True
    optimizer.step = wrapper


def _warn_step_order(optimizer: Optimizer) -> None:
    """torch's warnings for a first scheduler step that comes before any optimizer step."""
    if not hasattr(optimizer.step, "_wrapped_by_lr_sched"):
        warnings.warn("Seems like `optimizer.step()` has been overridden after learning rate scheduler "
                      "initialization. Please, make sure to call `optimizer.step()` before "
                      "`lr_scheduler.step()`. See more details at "
                      "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate", UserWarning,
                      stacklevel=3)
    elif not getattr(optimizer, "_opt_called", False):
        warnings.warn("Detected call of `lr_scheduler.step()` before `optimizer.step()`. "
                      "In PyTorch 1.1.0 and later, you should call them in the opposite order: "
                      "`optimizer.step()` before `lr_scheduler.step()`.  Failure to do this "
                      "will result in PyTorch skipping the first value of the learning rate schedule. "
                      "See more details at "
                      "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate", UserWarning,
                      stacklevel=3)


def _reduce_lr(group: dict, factor: float, min_lr: float, eps: float) -> None:
    """ReduceLROnPlateau's rule on one group: lr * factor, not below min_lr, unless the change is below eps."""
    old = float(group["lr"])
    new = max(old * factor, min_lr)
    if old - new > eps:
        _set(group, "lr", new)


def _improves(current: float, best: float, mode: str, threshold_mode: str, threshold: float) -> bool:
    """Whether a metric beats the best so far by the threshold (torch's plateau rule; GreedyLR's too)."""
    if mode == "min":
        return current < best * (1.0 - threshold) if threshold_mode == "rel" else current < best - threshold
    return current > best * (threshold + 1.0) if threshold_mode == "rel" else current > best + threshold


def _refuse_in_kernel(optimizer: Optimizer) -> None:
    """ValueError, before anything is written, for a fusedlr.SGD group that computes its lr in the step."""
    if any(g.get("schedule") is not None for g in optimizer.param_groups):
        refuse_second_schedule(optimizer.param_groups)


def _follow(lr: float, before: float, now: float, floor: float) -> float:
    """torch's chainable rule: the lr ``lr`` (set by something else) moved as this scheduler's own
    value moves from ``before`` to ``now``, relative to ``floor`` (``eta_min``; 0 for the
    multiplicative schedules). At the floor itself the change is added, as torch's cosine does."""
    if before == floor:
        return lr + (now - before)
    return floor + (lr - floor) * ((now - floor) / (before - floor))


class ClosedFormLR(LRScheduler):
    """Base of the closed-form twins: ``group["lr"] = schedules[g](last_epoch, base_lrs[g])``.

    Subclasses set their arguments as attributes, then call ``super().__init__``, and implement
    ``_build()`` returning one :class:`Schedule` per param group (and, to cycle momentum,
    ``_build_momentum()``). Each twin is also an instance of torch's class of the same name (and of
    ``torch.optim.lr_scheduler.LRScheduler``), so code that checks ``isinstance`` accepts it.

    **Stacking.** Each step a twin checks that ``group["lr"]`` still holds the value it wrote last.
    While it does, the twin writes its closed form (exact, no drift, exact resume). Once something
    else has changed it (another scheduler stepped back to back, ``ReduceLROnPlateau``, a manual
    change), that group *follows*: from then on the twin moves the current lr as torch's chainable
    form does (see :func:`_follow`), so schedulers called back to back give torch's numbers.
    ``CyclicLR``, ``OneCycleLR``, ``CosineAnnealingWarmRestarts`` and ``LambdaLR`` set the lr from
    their base in torch too (``_absolute``); they never follow.
    """

    use_beta1: bool = False
    _absolute: bool = False  # torch's rule sets the lr from the base: it never follows a change

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:  # noqa: D107
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        _refuse_in_kernel(optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                initial_lr = group["lr"]
                group.setdefault("initial_lr", initial_lr.clone() if isinstance(initial_lr, torch.Tensor)
                                 else initial_lr)
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] when resuming "
                                   "scheduler with last_epoch >= 0.")
        if not hasattr(self, "base_lrs"):
            self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._rebuild()
        _track_optimizer_step(optimizer)
        self._step_count = 0
        self._following = [False] * len(self.base_lrs)
        # A fresh start expects each group at its initial lr (else another scheduler has changed
        # it: follow from the start, as torch's chainable forms do); a resume writes the closed form.
        self._last_lr = list(self.base_lrs) if last_epoch == -1 else None
        self._is_initial = True
        try:
            self.step()
        finally:
            del self._is_initial

    # --- the schedules ---------------------------------------------------------------------------

    def _build(self) -> list[Schedule]:
        raise NotImplementedError

    def _build_momentum(self) -> list[Schedule] | None:
        return None

    def _rebuild(self) -> None:
        self._schedules = self._build()
        first = self._schedules[0]
        self._shared = first if all(s == first for s in self._schedules[1:]) else None
        self._momentum_schedules = self._build_momentum()
        self._zeros = [0.0] * len(self._schedules)  # base for the momentum schedules (absolute values)
        self._lr_applier = _ScheduleApplier(self._schedules, "lr")
        self._momentum_applier = None if self._momentum_schedules is None else _ScheduleApplier(
            self._momentum_schedules, "betas" if self.use_beta1 else "momentum")

    @property
    def schedules(self) -> list[Schedule]:
        """The closed-form schedule of each param group (evaluated with that group's base lr)."""
        return list(self._schedules)

    @property
    def schedule(self) -> Schedule:
        """The closed-form schedule (of the first param group when they differ): ``schedule(t, base_lr)``."""
        return self._schedules[0]

    # --- stepping --------------------------------------------------------------------------------

    def _lrs(self, t: int) -> list[float]:
        if self._shared is not None:
            return self._shared.lrs(t, self.base_lrs)
        return [s(t, b) for s, b in zip(self._schedules, self.base_lrs)]

    def _floors(self) -> list[float]:
        """The value each group's lr moves relative to when it follows (torch's ``eta_min``)."""
        return self._zeros

    @property
    def _multiplicative(self) -> bool:
        """Whether following multiplies the lr by this twin's own ratio (so a chain of such twins is
        the product of their closed forms)."""
        return not self._absolute and not any(self._floors())

    def _followed(self, lrs: list[float], t: int) -> list[float]:
        """The lrs of step ``t`` for groups now at ``lrs``, by torch's chainable rule (see :func:`_follow`)."""
        now = self._lrs(t)
        if self._absolute:
            return now
        before = self._lrs(t - 1) if t > 0 else self.base_lrs
        return [_follow(lr, b, n, f) for lr, b, n, f in zip(lrs, before, now, self._floors())]

    def _apply(self) -> None:
        """Write the learning rates (and momentum) of step ``last_epoch`` into the optimizer (one C++
        call), unless a group has been changed by something else: then :meth:`_apply_following`."""
        groups = self.optimizer.param_groups
        if self._absolute:
            expected = None
        elif True in self._following:
            self._apply_following()
            return
        else:
            expected = self._last_lr
        if self._momentum_applier is None:
            out = _step_schedules(self._lr_applier, self.last_epoch, self.base_lrs, groups, expected)
        else:
            out = _step_schedules(self._lr_applier, self.last_epoch, self.base_lrs, groups, expected,
                                  self._momentum_applier, self._zeros)
        if out is None:
            self._apply_following()
        else:
            self._last_lr = out

    def _apply_following(self) -> None:
        """The step of a twin some of whose groups follow an outside change (see the class doc)."""
        groups = self.optimizer.param_groups
        if len(groups) != len(self.base_lrs):
            raise RuntimeError(f"{type(self).__name__}: the optimizer has {len(groups)} param groups, "
                               f"the scheduler was built for {len(self.base_lrs)}")
        current = [float(group["lr"]) for group in groups]
        expected = self._last_lr if self._last_lr is not None else current
        for g, (now, was) in enumerate(zip(current, expected)):
            if not (now == was or (math.isnan(now) and math.isnan(was))):
                self._following[g] = True
        t = self.last_epoch
        closed = self._lrs(t)
        followed = self._followed(current, t) if True in self._following else closed
        for g, group in enumerate(groups):
            _set(group, "lr", followed[g] if self._following[g] else closed[g])
        if self._momentum_applier is not None:
            self._momentum_applier.apply(t, self._zeros, groups)
        self._last_lr = [float(group["lr"]) for group in groups]

    def _apply_python(self) -> None:
        """As :meth:`_apply`, for learning rates that come from :meth:`_lrs` (Python callables)."""
        lrs = self._lrs(self.last_epoch)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            _set(group, "lr", lr)
        self._last_lr = [float(group["lr"]) for group in self.optimizer.param_groups]

    def step(self, epoch: int | None = None) -> None:
        """Advance one step (or, deprecated as in torch, go to step ``epoch``) and set the learning rates.

        As torch's, warns when called before the optimizer has stepped. With ``epoch`` the closed
        form of that step is written, as torch's ``_get_closed_form_lr`` is (groups stop following).
        """
        if self._step_count == 1:
            _warn_step_order(self.optimizer)
        self._step_count += 1
        if epoch is None:
            self.last_epoch += 1
        else:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
            self.last_epoch = epoch
            self._following = [False] * len(self.base_lrs)
            self._last_lr = None
        self._apply()

    def reduce_(self, factor: float, min_lrs: Sequence[float], eps: float = 1e-8) -> None:
        """Multiply each group's lr by ``factor`` from now on, not below ``min_lrs[g]`` (a change
        below ``eps`` is skipped): how :class:`ReduceLROnPlateau` (``scheduler=``) lowers a schedule.

        A group this twin computes from its base gets a reduced base (its current step is
        re-applied, so the rest of the schedule is scaled); a group that follows an outside
        change is reduced where it is, as ReduceLROnPlateau reduces any lr.
        """
        groups = self.optimizer.param_groups
        for g, old in enumerate(self.base_lrs):
            new = max(old * factor, min_lrs[g])
            if old - new > eps:
                self.base_lrs[g] = new
        closed = self._lrs(self.last_epoch)
        last = list(self._last_lr) if self._last_lr is not None else [float(g["lr"]) for g in groups]
        for g, group in enumerate(groups):
            if self._following[g]:
                _reduce_lr(group, factor, min_lrs[g], eps)
            else:
                _set(group, "lr", closed[g])
            last[g] = float(group["lr"])
        self._last_lr = last

    def get_last_lr(self) -> list[float]:
        """The learning rates of the current step, one per param group."""
        chain = self.__dict__.get("_chain")
        if chain is not None:
            chain._refresh_children()
        return list(self._last_lr)

    def get_lr(self) -> list[float]:
        """The closed-form learning rates of step ``last_epoch`` (of an untouched optimizer)."""
        return self._lrs(self.last_epoch)

    _get_closed_form_lr = get_lr

    # --- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state: plain numbers and lists (safe for ``torch.load(weights_only=True)``)."""
        return {k: v for k, v in self.__dict__.items() if k not in _NOT_STATE}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state, rebuild the schedules and set the optimizer to the restored step's rates.

        Unlike torch, the learning rate of the restored step is written to the optimizer here, so
        the result does not depend on whether the optimizer's state is loaded before or after.
        A group that was following an outside change keeps the optimizer's lr, as torch does
        (load the optimizer's state too).
        """
        before = dict(self.__dict__)
        self.__dict__.update({k: v for k, v in state_dict.items() if k not in _NOT_STATE})
        try:
            self._rebuild()
            self._restore()
        except (ValueError, TypeError, OverflowError, KeyError):
            # A state from a file can hold anything; a refused one leaves the scheduler as it was.
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def _restore(self) -> None:
        """After a load: write the restored step's closed form to the groups that do not follow."""
        n = len(self.base_lrs)
        following = self.__dict__.get("_following")
        if not (isinstance(following, list) and len(following) == n and all(isinstance(f, bool) for f in following)):
            following = [False] * n  # (a state saved by torch, or by an older fusedlr)
        self._following = following
        if True not in following:
            self._last_lr = None
            self._apply()
            return
        groups = self.optimizer.param_groups
        saved = self.__dict__.get("_last_lr")
        if not (isinstance(saved, list) and len(saved) == n):
            saved = [float(group["lr"]) for group in groups]
        closed = self._lrs(self.last_epoch)
        last = []
        for g, group in enumerate(groups):
            if following[g]:
                last.append(float(saved[g]))  # what it wrote last; the lr itself is the optimizer's state
            else:
                _set(group, "lr", closed[g])
                last.append(float(group["lr"]))
        self._last_lr = last

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, schedule={self._schedules[0]!r})"


class _Callables(ClosedFormLR):
    """A scheduler of user callables (one per param group), run in Python: LambdaLR, MultiplicativeLR."""

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
                 last_epoch: int = -1) -> None:
        if not isinstance(lr_lambda, (list, tuple)):
            self.lr_lambdas = [lr_lambda] * len(optimizer.param_groups)
        else:
            if len(lr_lambda) != len(optimizer.param_groups):
                raise ValueError(f"Expected {len(optimizer.param_groups)} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        for f in self.lr_lambdas:
            if not callable(f):
                raise TypeError(f"lr_lambda should be a function, but got {type(f).__name__}")
        super().__init__(optimizer, last_epoch)

    def _rebuild(self) -> None:
        self._schedules, self._shared, self._momentum_schedules = [], None, None

    _absolute = True
    _apply = ClosedFormLR._apply_python

    @property
    def schedule(self) -> Schedule:
        raise AttributeError(f"{type(self).__name__} runs Python callables: it has no closed-form schedule")

    schedules = schedule

    def _lrs(self, t: int) -> list[float]:
        return [b * f(t) for f, b in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self) -> dict[str, Any]:
        """As torch: callable objects' ``__dict__`` is saved, plain functions and lambdas are not."""
        state = super().state_dict()
        state["lr_lambdas"] = [None if isinstance(f, types.FunctionType) else f.__dict__.copy()
                               for f in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state (and callable objects' attributes), then re-apply the restored step's lr."""
        for f, saved in zip(self.lr_lambdas, state_dict.get("lr_lambdas", [])):
            if saved is not None:
                f.__dict__.update(saved)
        super().load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch})"


class LambdaLR(_Callables, _torch_lr.LambdaLR):
    r"""lr = base_lr * lr_lambda(t), like ``torch.optim.lr_scheduler.LambdaLR`` (runs the callables in Python).

    .. math:: \eta_t = \eta_0 \cdot \lambda(t)

    Args:
        optimizer: the optimizer.
        lr_lambda: a function of the step, or one per param group.
        last_epoch: the index of the last step (-1 to start).
    """


class MultiplicativeLR(_Callables, _torch_lr.MultiplicativeLR):
    r"""lr_t = lr_{t-1} * lr_lambda(t) for t > 0, like ``torch.optim.lr_scheduler.MultiplicativeLR``.

    .. math:: \eta_t = \eta_{t-1} \cdot \lambda(t)

    Recursive by definition: the state is the optimizer's current lr, so ``load_state_dict`` does
    not rewrite it (load the optimizer's state to restore it).
    """

    _absolute = False  # it is recursive: it always moves the current lr

    def _lrs(self, t: int) -> list[float]:
        groups = self.optimizer.param_groups
        if t > 0 and not self._is_initial:  # the step made by the constructor multiplies nothing, as torch's
            return [float(g["lr"]) * f(t) for f, g in zip(self.lr_lambdas, groups)]
        return [float(g["lr"]) for g in groups]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state; the learning rate itself comes back with the optimizer's state."""
        for f, saved in zip(self.lr_lambdas, state_dict.get("lr_lambdas", [])):
            if saved is not None:
                f.__dict__.update(saved)
        self.__dict__.update({k: v for k, v in state_dict.items() if k not in _NOT_STATE})


class StepLR(ClosedFormLR, _torch_lr.StepLR):
    r"""Decay each group's lr by ``gamma`` every ``step_size`` steps (``torch.optim.lr_scheduler.StepLR``).

    .. math:: \eta_t = \eta_0 \, \gamma^{\lfloor t / \text{step\_size} \rfloor}

    A fractional ``step_size`` means what it means in torch, whose step() decays when
    ``t % step_size == 0``: at the multiples of the smallest whole multiple of ``step_size``
    (2.5 decays every 5 steps; a float's value ``p / 2**k`` every ``p`` steps; a negative one as
    its absolute value; an infinite or NaN one never).

    Args:
        optimizer: any ``torch.optim.Optimizer``; :math:`\eta_0` is each group's initial lr.
        step_size: steps between decays (> 0).
        gamma: decay factor (> 0). Default 0.1.
        last_epoch: index of the last step; -1 (default) to start, as torch.

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> sched = StepLR(opt, step_size=30, gamma=0.1)
        >>> for epoch in range(100):  # doctest: +SKIP
        ...     train(...); opt.step(); sched.step()
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        # torch's step() decays when t % step_size == 0 (t > 0): at the multiples of the first whole
        # multiple of |step_size|, and never for an infinite or NaN one (0 is refused: torch divides by it).
        size = self.step_size
        if isinstance(size, float) and not math.isfinite(size):
            size = _MAX_STEP
        elif isinstance(size, (int, float)) and size != 0:
            size = abs(size)
            whole = _whole(size)
            size = min(whole, _MAX_STEP) if whole is not None else fractions.Fraction(size).numerator
        return [S.step(size, self.gamma)] * len(self.base_lrs)


class MultiStepLR(ClosedFormLR, _torch_lr.MultiStepLR):
    r"""Decay by ``gamma`` at each milestone (``torch.optim.lr_scheduler.MultiStepLR``).

    .. math:: \eta_t = \eta_0 \, \gamma^{\#\{m \le t\}}

    As in torch, a milestone that no step reaches (``2.5``, a negative one) never decays.

    Args:
        optimizer: the optimizer.
        milestones: steps where the lr is multiplied by ``gamma``; a repeated one counts twice.
        gamma: decay factor (> 0). Default 0.1.
        last_epoch: index of the last step; -1 (default) to start, as torch.

    Example:
        >>> sched = MultiStepLR(opt, milestones=[30, 80], gamma=0.1)  # doctest: +SKIP
    """

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.milestones = sorted(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        # torch decays when last_epoch (a whole step >= 0) is a milestone: only those count.
        reached = [w for w in map(_whole, self.milestones) if w is not None and 0 <= w <= _MAX_STEP]
        return [S.multistep(reached, self.gamma)] * len(self.base_lrs)


class ConstantLR(ClosedFormLR, _torch_lr.ConstantLR):
    r"""Multiply by ``factor`` for the first ``total_iters`` steps (``torch.optim.lr_scheduler.ConstantLR``).

    .. math:: \eta_t = \eta_0 \cdot (\text{factor if } t < \text{total\_iters} \text{ else } 1)

    Args:
        optimizer: the optimizer.
        factor: in [0, 1]. Default 1/3.
        total_iters: steps the factor applies. Default 5. (As in torch, a value that is not a
            whole step > 0 keeps the factor for ever.)
        last_epoch: index of the last step; -1 (default) to start, as torch.

    Example:
        >>> sched = ConstantLR(opt, factor=0.5, total_iters=4)  # doctest: +SKIP
    """

    def __init__(self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        # torch's step() lifts the factor when last_epoch == total_iters, a whole step > 0; any
        # other total_iters (0, negative, 4.5) keeps the factor for ever.
        total = _whole(self.total_iters)
        lifted = total is not None and 0 < total <= _MAX_STEP
        return [S.constant(self.factor, total if lifted else None)] * len(self.base_lrs)


class LinearLR(ClosedFormLR, _torch_lr.LinearLR):
    r"""Ramp the factor linearly over ``total_iters`` steps (``torch.optim.lr_scheduler.LinearLR``).

    .. math:: \eta_t = \eta_0 \left(s + (e - s) \frac{\min(t, T)}{T}\right)

    Args:
        optimizer: the optimizer.
        start_factor: :math:`s`, in (0, 1]. Default 1/3.
        end_factor: :math:`e`, in [0, 1]. Default 1.0.
        total_iters: :math:`T`. Default 5. A fractional :math:`T` holds from
            :math:`\lfloor T \rfloor` on, and :math:`T < 1` keeps ``start_factor``, as torch's step() does.
        last_epoch: index of the last step; -1 (default) to start, as torch.

    Example:
        >>> sched = LinearLR(opt, start_factor=0.01, total_iters=500)  # doctest: +SKIP
    """

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 and less or equal to 1.")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        # torch's step() ramps while last_epoch <= total_iters, then holds: for a fractional T the
        # ramp stops at k = floor(T), at s + (e - s) k / T; for T < 1 it never starts.
        s, e, T = self.start_factor, self.end_factor, float(self.total_iters)
        k = math.floor(T) if math.isfinite(T) else None
        if k is None or k < 1:
            return [S.constant(s)] * len(self.base_lrs)
        k = min(k, _MAX_STEP)
        end = e if k == T else s + (e - s) * k / T
        return [S.linear(s, end, k)] * len(self.base_lrs)


class ExponentialLR(ClosedFormLR, _torch_lr.ExponentialLR):
    r"""Decay by ``gamma`` every step (``torch.optim.lr_scheduler.ExponentialLR``).

    .. math:: \eta_t = \eta_0 \, \gamma^t

    Args:
        optimizer: the optimizer.
        gamma: factor per step (> 0).
        last_epoch: index of the last step; -1 (default) to start, as torch.

    Example:
        >>> sched = ExponentialLR(opt, gamma=0.99)  # doctest: +SKIP
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        return [S.exponential(self.gamma)] * len(self.base_lrs)


class PolynomialLR(ClosedFormLR, _torch_lr.PolynomialLR):
    r"""Polynomial decay to 0 over ``total_iters`` steps (``torch.optim.lr_scheduler.PolynomialLR``).

    .. math:: \eta_t = \eta_0 \left(1 - \frac{\min(t, T)}{T}\right)^{p}

    Args:
        optimizer: the optimizer.
        total_iters: :math:`T`. Default 5. A fractional :math:`T` holds the value of
            :math:`\lfloor T \rfloor` after it, and :math:`T < 1` never decays, as torch's step() does.
        power: :math:`p` (>= 0). Default 1.0.
        last_epoch: index of the last step; -1 (default) to start, as torch.

    Example:
        >>> sched = PolynomialLR(opt, total_iters=1000, power=2.0)  # doctest: +SKIP
    """

    def __init__(self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1) -> None:
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        # torch's step() decays while last_epoch <= total_iters, then holds: for a fractional T
        # the value of k = floor(T) is held from k + 1 on; T < 1 (or <= 0) never decays.
        T = float(self.total_iters)
        if not (math.isfinite(T) and T >= 1):
            return [S.constant()] * len(self.base_lrs)
        decay = S.polynomial(T, self.power, 0.0)
        k = math.floor(T)
        if k == T or k >= _MAX_STEP:
            return [decay] * len(self.base_lrs)
        held = S.constant((1.0 - k / T) ** self.power)
        return [S.sequential([decay, held], [k + 1])] * len(self.base_lrs)


class CosineAnnealingLR(ClosedFormLR, _torch_lr.CosineAnnealingLR):
    r"""Cosine annealing (``torch.optim.lr_scheduler.CosineAnnealingLR``), in closed form.

    .. math:: \eta_t = \eta_{min} + \frac{\eta_0 - \eta_{min}}{2}\left(1 + \cos\frac{\pi t}{T_{max}}\right)

    Past ``T_max`` the cosine continues (period ``2 T_max``), as torch's does. Driving its optimizer
    alone it is this closed form (no drift); after an outside change of ``group["lr"]`` it follows
    torch's recursion relative to ``eta_min``.

    Args:
        optimizer: the optimizer.
        T_max: steps from :math:`\eta_0` to ``eta_min`` (> 0; may be fractional, as in torch).
        eta_min: the minimum learning rate. Default 0.0.
        last_epoch: index of the last step; -1 (default) to start, as torch.

    Example:
        >>> sched = CosineAnnealingLR(opt, T_max=10_000, eta_min=1e-5)  # doctest: +SKIP
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        return [S.cosine(self.T_max, self.eta_min, True)] * len(self.base_lrs)

    def _floors(self) -> list[float]:
        return [float(self.eta_min)] * len(self.base_lrs)

    @property
    def _multiplicative(self) -> bool:
        # Past T_max, at the bottom of each period, torch's rule adds (base - eta_min)(1 - cos(pi/T))/2
        # (a term of the base, not of the running lr): no product of closed forms is torch's there.
        return False


class CosineAnnealingWarmRestarts(ClosedFormLR, _torch_lr.CosineAnnealingWarmRestarts):
    r"""SGDR (``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``), in closed form.

    .. math:: \eta_t = \eta_{min} + \frac{\eta_0 - \eta_{min}}{2}\left(1 + \cos\frac{\pi T_{cur}}{T_i}\right)

    As torch's, ``step(epoch)`` also takes a fractional epoch (``epoch + i / iters`` per batch):
    the lr is then the same formula at that real step, and later ``step()`` calls keep the fraction.

    Args:
        optimizer: the optimizer.
        T_0: steps of the first cycle (positive integer).
        T_mult: cycle length growth (integer >= 1; :func:`fusedlr.schedules.cosine_restarts`
            takes fractional ones). Default 1.
        eta_min: the minimum learning rate. Default 0.0.
        last_epoch: index of the last step; -1 (default) to start, as torch.

    Example:
        >>> sched = CosineAnnealingWarmRestarts(opt, T_0=1000, T_mult=2)  # doctest: +SKIP
    """

    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        if T_0 <= 0 or not isinstance(T_0, int):
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if T_mult < 1 or not isinstance(T_mult, int):
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        if not isinstance(eta_min, (float, int)):
            raise ValueError(f"Expected float or int eta_min, but got {eta_min} of type {type(eta_min)}")
        self.T_0 = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self._fraction = 0.0  # of a fractional epoch given to step(epoch): the lr is at last_epoch + it
        super().__init__(optimizer, last_epoch)

    _absolute = True

    def _build(self) -> list[Schedule]:
        return [S.cosine_restarts(self.T_0, float(self.T_mult), self.eta_min, False)] * len(self.base_lrs)

    def _position(self) -> float:
        return max(self.last_epoch, 0) + self._fraction

    def _lrs(self, t: int) -> list[float]:
        if not self._fraction:
            return super()._lrs(t)
        return [self._schedules[0].restart_value(max(t, 0) + self._fraction, b) for b in self.base_lrs]

    def _apply(self) -> None:
        if self._fraction:
            self._apply_python()
        else:
            ClosedFormLR._apply(self)

    @property
    def T_i(self) -> int:
        """The length of the current cycle (torch's ``T_i``), derived from the step."""
        return int(self._schedules[0].restart_cycle(self._position())[1])

    @property
    def T_cur(self) -> float:
        """Steps since the last restart (torch's ``T_cur``), derived from the step.

        Setting it moves the step within the current cycle (the closed form has no other state).
        """
        x = self._position()
        cur = x - self._schedules[0].restart_cycle(x)[0]
        return int(cur) if cur == int(cur) else cur

    @T_cur.setter
    def T_cur(self, value: float) -> None:
        self._go_to(self._position() + float(value) - self.T_cur)

    def _go_to(self, x: float) -> None:
        self.last_epoch = math.floor(x)
        self._fraction = x - self.last_epoch

    def step(self, epoch: float | None = None) -> None:
        """Advance one step, or go to (a possibly fractional) ``epoch`` (no deprecation warning, as torch)."""
        self._step_count += 1
        if epoch is None:
            self.last_epoch += 1
        else:
            if not epoch >= 0:
                raise ValueError(f"Expected non-negative epoch, but got {epoch}")
            self._go_to(float(epoch))
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        """The state, with torch's ``T_cur`` and ``T_i`` (derived here), so torch's class loads it too."""
        state = super().state_dict()
        state["T_cur"], state["T_i"] = self.T_cur, self.T_i
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state (a torch state's fractional ``T_cur`` included), then re-apply the step."""
        state = dict(state_dict)
        if "_fraction" not in state and isinstance(state.get("T_cur"), float):
            state["_fraction"] = state["T_cur"] - math.floor(state["T_cur"])  # saved by torch
        for key in ("T_cur", "T_i"):  # derived from the step here
            state.pop(key, None)
        super().load_state_dict(state)


class CyclicLR(ClosedFormLR, _torch_lr.CyclicLR):
    r"""Cyclical learning rate (``torch.optim.lr_scheduler.CyclicLR``), cycling momentum (or Adam's beta1) too.

    .. math:: \eta_t = \eta_{lo} + (\eta_{hi} - \eta_{lo})\, f(x_t)\, g, \qquad
        m_t = m_{hi} - (m_{hi} - m_{lo})\, f(x_t)\, g

    (see :func:`fusedlr.schedules.cyclic`). A custom ``scale_fn`` is called in Python, and its
    value replaces the mode's amplitude in the C++ formula (``Schedule.cyclic_value``); then
    ``.schedule`` is the triangle without it.

    Args:
        optimizer: the optimizer; its groups' lr is set to ``base_lr``.
        base_lr, max_lr: the bounds, one value or one per param group.
        step_size_up, step_size_down: steps of the rising (> 0) and falling (>= 0; default: up) halves.
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: factor per step of ``exp_range``. Default 1.0.
        scale_fn, scale_mode: a custom amplitude function of the cycle or of the step, as torch.
        cycle_momentum: cycle ``momentum`` (or Adam's beta1) inversely, between ``base_momentum``
            and ``max_momentum``. Default True.
        last_epoch: index of the last step; -1 (default) to start, as torch.

    Example:
        >>> sched = CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=2000)  # doctest: +SKIP
    """

    def __init__(self, optimizer: Optimizer, base_lr: float | list[float], max_lr: float | list[float],
                 step_size_up: int = 2000, step_size_down: int | None = None, mode: str = "triangular",
                 gamma: float = 1.0, scale_fn: Callable[[float], float] | None = None, scale_mode: str = "cycle",
                 cycle_momentum: bool = True, base_momentum: float | list[float] = 0.8,
                 max_momentum: float | list[float] = 0.9, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        _refuse_in_kernel(optimizer)
        base_lrs = [float(b) for b in _format_param("base_lr", optimizer, base_lr)]
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups):
                _set(group, "lr", lr)
        self.max_lrs = [float(m) for m in _format_param("max_lr", optimizer, max_lr)]
        if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")
        if scale_mode not in ("cycle", "iterations"):
            raise ValueError(f"scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}")
        self.step_size_up = float(step_size_up)
        self.step_size_down = float(step_size_down) if step_size_down is not None else self.step_size_up
        self.total_size = self.step_size_up + self.step_size_down
        # (A length the schedule cannot take is refused by schedules.cyclic, with its name.)
        self.step_ratio = self.step_size_up / self.total_size if self.total_size else math.nan
        self.mode = mode
        self.gamma = gamma
        self._scale_fn_custom = scale_fn
        self.scale_mode = scale_mode if scale_fn is not None else ("iterations" if mode == "exp_range" else "cycle")
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            _start_momentum_cycle(self, optimizer, base_momentum, max_momentum, last_epoch)
        self.base_lrs = base_lrs
        super().__init__(optimizer, last_epoch)

    _absolute = True

    def _cyclic(self, lo: float, hi: float, inverted: bool) -> Schedule:
        mode = self.mode if self._scale_fn_custom is None else "triangular"
        return S.cyclic(lo, hi, self.step_size_up, self.step_size_down, mode, self.gamma, inverted)

    def _build(self) -> list[Schedule]:
        return [self._cyclic(lo, hi, False) for lo, hi in zip(self.base_lrs, self.max_lrs)]

    def _build_momentum(self) -> list[Schedule] | None:
        if not self.cycle_momentum or self._scale_fn_custom is not None:
            return None
        return [self._cyclic(lo, hi, True) for lo, hi in zip(self.base_momentums, self.max_momentums)]

    @property
    def _scale_fn_ref(self) -> Callable[[float], float]:
        """torch's built-in amplitude function of this mode (its ``scale_fn(x)`` reads it)."""
        if self.mode == "triangular2":
            return self._triangular2_scale_fn
        if self.mode == "exp_range":
            return functools.partial(self._exp_range_scale_fn, self.gamma)
        return self._triangular_scale_fn

    def _custom_scale(self, t: int) -> float:
        # torch's CyclicLR: scale_fn(cycle) (an int, counted from 1) or scale_fn(last_epoch).
        x = int(self._schedules[0].cycle(t)) if self.scale_mode == "cycle" else t
        return self._scale_fn_custom(x)

    def _lrs(self, t: int) -> list[float]:
        if self._scale_fn_custom is None:
            return super()._lrs(t)
        scale = self._custom_scale(t)  # the user's amplitude in place of the mode's, in C++ (schedule.h)
        return [s.cyclic_value(t, scale) for s in self._schedules]

    def _apply(self) -> None:
        if self._scale_fn_custom is None:
            ClosedFormLR._apply(self)  # not super(): this runs every step, and super() costs ~0.1 µs
            return
        self._apply_python()
        if self.cycle_momentum:
            t = self.last_epoch
            scale = self._custom_scale(t)
            for group, lo, hi in zip(self.optimizer.param_groups, self.base_momentums, self.max_momentums):
                m = self._cyclic(lo, hi, True).cyclic_value(t, scale)
                if self.use_beta1:
                    group["betas"] = (m, *group["betas"][1:])
                else:
                    group["momentum"] = m

    def state_dict(self) -> dict[str, Any]:
        """As torch: a callable object's ``scale_fn`` attributes are saved (a plain function is not)."""
        state = super().state_dict()
        fn = self._scale_fn_custom
        state["_scale_fn_custom"] = (fn.__dict__.copy() if fn is not None and not isinstance(fn, types.FunctionType)
                                     else None)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state (and a callable object's ``scale_fn`` attributes), then re-apply the restored step."""
        saved = state_dict.get("_scale_fn_custom")
        if saved is not None and self._scale_fn_custom is not None:
            if not isinstance(saved, dict):
                raise TypeError(f"CyclicLR.load_state_dict: _scale_fn_custom must be a dict of attributes, "
                                f"got {type(saved).__name__}")
            self._scale_fn_custom.__dict__.update(saved)
        super().load_state_dict(state_dict)


class OneCycleLR(ClosedFormLR, _torch_lr.OneCycleLR):
    r"""The 1cycle policy (``torch.optim.lr_scheduler.OneCycleLR``), cycling momentum (or Adam's beta1) too.

    See :func:`fusedlr.schedules.one_cycle` for the formula. Deviation, on purpose: from step
    ``total_steps - 1`` on the final learning rate is held; torch extrapolates the last phase one
    step further at ``total_steps`` and raises ``ValueError`` after it.

    Args:
        optimizer: the optimizer.
        max_lr: the peak, one value or one per param group.
        total_steps: steps of the cycle; or give ``epochs`` and ``steps_per_epoch``.
        pct_start: fraction of the steps spent rising. Default 0.3.
        anneal_strategy: ``"cos"`` or ``"linear"``. Default ``"cos"``.
        cycle_momentum, base_momentum, max_momentum: momentum (or Adam's beta1) goes from
            ``max_momentum`` to ``base_momentum`` and back, inversely to the lr.
        div_factor: initial lr = max_lr / div_factor. Default 25.
        final_div_factor: final lr = initial lr / final_div_factor. Default 1e4.
        three_phase: the three-phase variant. Default False.
        last_epoch: index of the last step; -1 (default) to start, as torch.

    Example:
        >>> sched = OneCycleLR(opt, max_lr=0.1, epochs=10, steps_per_epoch=len(loader))  # doctest: +SKIP
    """

    def __init__(self, optimizer: Optimizer, max_lr: float | list[float], total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float | list[float] = 0.85, max_momentum: float | list[float] = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        _refuse_in_kernel(optimizer)
        if total_steps is not None:
            if total_steps <= 0 or not isinstance(total_steps, int):
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            if not isinstance(epochs, int) or epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {epochs}")
            if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
                raise ValueError(f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}")
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        if pct_start < 0 or pct_start > 1 or not isinstance(pct_start, float):
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self.pct_start = pct_start
        self._anneal_func_type = anneal_strategy  # torch's attribute, so states interchange
        self.three_phase = three_phase
        max_lrs = [float(m) for m in _format_param("max_lr", optimizer, max_lr)]
        # The three learning rates of each group, rounded as torch rounds them.
        self.initial_lrs = [m / div_factor for m in max_lrs]
        self.max_lrs = max_lrs
        self.min_lrs = [i / final_div_factor for i in self.initial_lrs]
        if last_epoch == -1:
            for group, i, m, lo in zip(optimizer.param_groups, self.initial_lrs, max_lrs, self.min_lrs):
                group["initial_lr"] = i
                group["max_lr"] = m
                group["min_lr"] = lo
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            _start_momentum_cycle(self, optimizer, base_momentum, max_momentum, last_epoch)
        super().__init__(optimizer, last_epoch)

    _absolute = True

    @property
    def anneal_strategy(self) -> str:
        """``"cos"`` or ``"linear"``."""
        return self._anneal_func_type

    def _one_cycle(self, start: float, peak: float, end: float) -> Schedule:
        return Schedule.make("one_cycle", total_steps=self.total_steps, initial=start, peak=peak, final=end,
                             pct_start=self.pct_start, anneal_strategy=self._anneal_func_type,
                             three_phase=self.three_phase)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state (also torch's legacy form, with the anneal function itself) and re-apply the step."""
        state = dict(state_dict)
        legacy = state.pop("anneal_func", None)  # torch < 2.2 saved the function
        if "_anneal_func_type" not in state:
            if legacy is not None:
                state["_anneal_func_type"] = "linear" if getattr(legacy, "__name__", "") == "_annealing_linear" else "cos"
            elif "anneal_strategy" in state:  # saved by an earlier fusedlr
                state["_anneal_func_type"] = state["anneal_strategy"]
        state.pop("anneal_strategy", None)
        kind = state.get("_anneal_func_type", self.__dict__.get("_anneal_func_type"))
        if kind not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR.load_state_dict: unknown anneal strategy {kind!r}")
        super().load_state_dict(state)

    def _build(self) -> list[Schedule]:
        return [self._one_cycle(i, m, lo) for i, m, lo in zip(self.initial_lrs, self.max_lrs, self.min_lrs)]

    def _build_momentum(self) -> list[Schedule] | None:
        if not self.cycle_momentum:
            return None
        return [self._one_cycle(hi, lo, hi) for lo, hi in zip(self.base_momentums, self.max_momentums)]


class ReduceLROnPlateau(ClosedFormLR, _torch_lr.ReduceLROnPlateau):
    r"""Reduce the lr by ``factor`` when a metric stops improving (``torch.optim.lr_scheduler.ReduceLROnPlateau``).

    A host-side state machine (metric in, reductions out), in Python: the same arguments, state
    and results as torch's. ``step(metrics)`` multiplies each group's current lr by ``factor``
    (not below ``min_lr``) after more than ``patience`` steps without improvement.

    Extension: with ``scheduler`` (a closed-form twin, e.g. a :class:`WarmupLR`), a reduction is
    that scheduler's :meth:`ClosedFormLR.reduce_`: its ``base_lrs`` are multiplied (not below
    ``min_lr``) and its current step re-applied, so the plateau decay composes with its schedule:
    warmup, then plateau-driven decay, each stepped at its own pace (``scheduler.step()`` per iteration, ``step(metric)`` per
    evaluation). The reduced bases are part of ``scheduler.state_dict()``.
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: list[float] | float = 0, eps: float = 1e-8, scheduler: ClosedFormLR | None = None) -> None:
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if mode not in ("min", "max"):
            raise ValueError("mode " + mode + " is unknown!")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError("threshold mode " + threshold_mode + " is unknown!")
        self.factor = factor
        self.optimizer = optimizer
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(optimizer.param_groups):
                raise ValueError(f"expected {len(optimizer.param_groups)} min_lrs, got {len(min_lr)}")
            self.default_min_lr = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self._last_lr = [float(g["lr"]) for g in optimizer.param_groups]
        self._schedules, self._shared, self._momentum_schedules = [], None, None
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0
        if scheduler is not None:
            _closed_form_children(type(self).__name__, [scheduler], optimizer)
        self.scheduler = scheduler

    @property
    def schedule(self) -> Schedule:
        raise AttributeError("ReduceLROnPlateau is driven by a metric: it has no closed-form schedule")

    schedules = schedule

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        return _improves(a, best, self.mode, self.threshold_mode, self.threshold)

    def step(self, metrics: float, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record the metric of this step; reduce the lr after ``patience`` steps without improvement."""
        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self.last_epoch = epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            if len(self.optimizer.param_groups) != len(self.min_lrs):
                if self.default_min_lr is None:
                    raise RuntimeError("The number of param groups in the `optimizer` differs from when "
                                       "`ReduceLROnPlateau` was initialized")
                self.min_lrs = [self.default_min_lr] * len(self.optimizer.param_groups)
            if self.scheduler is not None:
                self.scheduler.reduce_(self.factor, self.min_lrs, self.eps)
            else:
                # (A fusedlr.SGD group with an in-kernel schedule takes the change as a scale of the
                # rest of its schedule, written on the device without a synchronisation.)
                for i, group in enumerate(self.optimizer.param_groups):
                    _reduce_lr(group, self.factor, self.min_lrs[i], self.eps)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state machine (the lr itself is the optimizer's state, as in torch)."""
        self.__dict__.update({k: v for k, v in state_dict.items() if k not in _NOT_STATE})

    def __repr__(self) -> str:
        return f"ReduceLROnPlateau(best={self.best}, num_bad_epochs={self.num_bad_epochs})"


def _closed_form_children(owner: str, schedulers: Sequence[Any], optimizer: Optimizer) -> None:
    if len(schedulers) < 1:
        raise ValueError(f"{owner} expects at least one scheduler, but got no scheduler.")
    for i, s in enumerate(schedulers):
        if not hasattr(s, "optimizer"):
            raise TypeError(f"{owner} at index {i} should have `optimizer` as its attribute.")
        if isinstance(s, ReduceLROnPlateau):
            raise ValueError(f"{owner} does not support `ReduceLROnPlateau` scheduler as it requires additional "
                             f"kwargs to be specified when calling `step`, but got one at index {i} in the given "
                             "schedulers sequence.")
        if s.optimizer is not optimizer:
            raise ValueError(f"{owner} expects all schedulers to belong to the same optimizer, but got scheduler "
                             f"{type(s).__name__} at index {i} with a different optimizer.")
        if not isinstance(s, ClosedFormLR) or isinstance(s, _Callables):
            raise TypeError(f"{owner}: schedulers[{i}] must be a closed-form fusedlr.lr_scheduler twin, "
                            f"got {type(s).__module__}.{type(s).__name__}")


class _Composite(ClosedFormLR):
    """A scheduler built from other twins' schedules; saves and loads their states with its own."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:  # noqa: D107
        if last_epoch == -1:
            # The wrapped schedulers have each made their first step (the later ones following the
            # earlier ones): start from the initial lrs again, as torch's SequentialLR does.
            for group in optimizer.param_groups:
                if "initial_lr" in group:
                    _set(group, "lr", float(group["initial_lr"]))
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict[str, Any]:
        """Own state plus each wrapped scheduler's, under ``_schedulers``."""
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the wrapped schedulers' states, then this one's; re-apply the restored step's lr."""
        groups = self.optimizer.param_groups
        lrs = [g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"] for g in groups]
        for s, saved in zip(self._schedulers, state_dict.get("_schedulers", [])):
            s.load_state_dict(saved)
        # A wrapped scheduler writes its own step on load; the lr is this one's to set (or, for a
        # group that follows, the optimizer's own state, as it was).
        for group, lr in zip(groups, lrs):
            _set(group, "lr", float(lr))
        super().load_state_dict(state_dict)


class SequentialLR(_Composite, _torch_lr.SequentialLR):
    r"""Run schedulers one after another (``torch.optim.lr_scheduler.SequentialLR``), closed form.

    .. math:: \eta_t = s_i(t - m_{i-1}), \qquad i = \#\{k : m_k \le t\}

    Scheduler ``i`` takes over at milestone ``i - 1`` and sees the step counted from it. Nesting
    (a ``SequentialLR`` or ``ChainedScheduler`` inside) and milestone 0 (skip a scheduler) work.
    """

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[ClosedFormLR], milestones: Sequence[int],
                 last_epoch: int = -1) -> None:
        _closed_form_children(type(self).__name__, schedulers, optimizer)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError("Sequential Schedulers expects number of schedulers provided to be one more than the "
                             f"number of milestone points, but got number of schedulers {len(schedulers)} and the "
                             f"number of milestones to be equal to {len(milestones)}")
        self._schedulers = list(schedulers)
        self._milestones = [int(m) for m in milestones]
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        return [S.sequential([s._schedules[g] for s in self._schedulers], self._milestones)
                for g in range(len(self.base_lrs))]

    @property
    def _multiplicative(self) -> bool:
        return False  # at a milestone torch resets the lr to the next scheduler's closed form

    def _followed(self, lrs: list[float], t: int) -> list[float]:
        """torch's SequentialLR: the scheduler of step ``t`` follows, but starts from its closed form."""
        index = bisect.bisect_right(self._milestones, t)
        local = t - self._milestones[index - 1] if index > 0 else t
        child = self._schedulers[index]
        if index > 0 and local == 0:
            return child._lrs(0)
        return child._followed(lrs, local)


class ChainedScheduler(_Composite, _torch_lr.ChainedScheduler):
    r"""Apply several schedulers at once (``torch.optim.lr_scheduler.ChainedScheduler``).

    .. math:: \eta_t = s_n(t, \ldots s_1(t, \eta_0))

    When every scheduler of the chain is multiplicative (each moves the lr by its own ratio: all
    but cosine annealing, cyclic, one-cycle, warm restarts and sequential ones), torch's
    recursion is the product of their closed forms, which this twin computes (``.schedule``).
    Otherwise its groups follow from the start: each step applies every scheduler's rule to the
    running lr in turn, as torch does, and the chain has no closed-form ``.schedule``. Each
    scheduler's ``get_last_lr()`` is the lr after its own rule, as in torch.
    """

    def __init__(self, schedulers: Sequence[ClosedFormLR], optimizer: Optimizer | None = None) -> None:
        if len(schedulers) < 1:
            raise ValueError("ChainedScheduler expects at least one scheduler to be chained, but got no scheduler.")
        optimizer = optimizer or schedulers[0].optimizer
        _closed_form_children(type(self).__name__, schedulers, optimizer)
        self._schedulers = list(schedulers)
        for s in self._schedulers:
            s._chain = self
        self.optimizer = optimizer
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = schedulers[0].last_epoch
        self._step_count = 1
        self._rebuild()
        # The product of the closed forms is torch's recursion when every scheduler is multiplicative;
        # otherwise every step runs their rules in turn (the schedulers have followed each other
        # since they were made, one after the other).
        product = len(schedulers) == 1 or all(s._multiplicative for s in schedulers)
        self._following = [not product] * len(self.base_lrs)
        # As torch, the constructor changes nothing: the schedulers have made their first steps.
        self._last_lr = [float(g["lr"]) for g in optimizer.param_groups]

    def _build(self) -> list[Schedule]:
        return [S.chained([s._schedules[g] for s in self._schedulers]) for g in range(len(self.base_lrs))]

    @property
    def _multiplicative(self) -> bool:
        return all(s._multiplicative for s in self._schedulers)

    @property
    def schedule(self) -> Schedule:
        """The product of the chained closed forms (only when that is what torch computes)."""
        if not (len(self._schedulers) == 1 or self._multiplicative):
            raise AttributeError("ChainedScheduler: this chain has no closed form (a scheduler in it is not "
                                 "multiplicative: torch applies its rule to the running lr)")
        return self._schedules[0]

    @property
    def schedules(self) -> list[Schedule]:
        """The closed form of each param group (only when the chain has one, see :attr:`schedule`)."""
        self.schedule  # noqa: B018 (raises when the chain has no closed form)
        return list(self._schedules)

    def _followed(self, lrs: list[float], t: int) -> list[float]:
        """Each scheduler's rule in turn on the running lr (torch's ChainedScheduler.step)."""
        for s in self._schedulers:
            lrs = s._followed(lrs, t)
            s._last_lr = list(lrs)
        return lrs

    def step(self, epoch: int | None = None) -> None:
        """Advance every chained scheduler by one step and set the lr."""
        super().step(epoch)
        for s in self._schedulers:
            s.last_epoch = self.last_epoch
            s._step_count += 1
        # Each scheduler's get_last_lr, made when asked (the product path costs no Python loop).
        self._children_stale = True not in self._following

    def _refresh_children(self) -> None:
        """Each scheduler's last lr as torch's step leaves it: the schedulers before it at this
        step, those after it still at the previous one."""
        if not self.__dict__.get("_children_stale"):
            return
        self._children_stale = False
        t = self.last_epoch
        running = self._lrs(t - 1) if t > 0 else list(self.base_lrs)
        for s in self._schedulers:
            running = s._followed(running, t)
            s._last_lr = running
        self._schedulers[-1]._last_lr = list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Own state plus each chained scheduler's, under ``_schedulers``."""
        self._refresh_children()
        return super().state_dict()


class WarmupLR(_Composite):
    r"""Warmup in front of any closed-form scheduler (not in torch).

    .. math:: \eta_t = \begin{cases} w(t)\, s(0) & t < W \\ s(t - W) & t \ge W \end{cases}

    (see :func:`fusedlr.schedules.warmup`). Without ``scheduler`` the lr stays at ``base_lr``
    after the warmup.

    Args:
        optimizer: the optimizer.
        warmup_steps: :math:`W`.
        scheduler: the twin that runs after the warmup (its own step 0 comes at step ``W``).
        start_factor: factor at step 0. Default 0.0.
        mode: ``"linear"``, ``"exponential"``, ``"cosine"`` or ``"1-sqrt"``.
        last_epoch: the index of the last step (-1 to start).
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, scheduler: ClosedFormLR | None = None,
                 start_factor: float = 0.0, mode: str = "linear", last_epoch: int = -1) -> None:
        if scheduler is not None:
            _closed_form_children(type(self).__name__, [scheduler], optimizer)
        if warmup_steps < 0:
            raise ValueError(f"WarmupLR: warmup_steps must be >= 0, got {warmup_steps!r}")
        self._schedulers = [scheduler] if scheduler is not None else []
        self.warmup_steps = warmup_steps
        self.start_factor = start_factor
        self.mode = mode
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        after = [s._schedules[g] for g in range(len(self.base_lrs)) for s in self._schedulers] or \
            [S.constant()] * len(self.base_lrs)
        return [S.warmup(s, self.warmup_steps, self.start_factor, self.mode) for s in after]


class ScheduleLR(ClosedFormLR):
    r"""Any :mod:`fusedlr.schedules` schedule as an LR scheduler (not in torch).

    .. math:: \eta_t^{(g)} = s_g(t, \eta_0^{(g)})

    with :math:`\eta_0^{(g)}` the initial lr of param group :math:`g`: the closed form of
    :func:`fusedlr.schedules.noise`, :func:`~fusedlr.schedules.piecewise_linear`, nested
    :func:`~fusedlr.schedules.sequential` pieces or any other schedule, stepped like torch's
    schedulers (``step()``, ``get_last_lr()``, ``state_dict()``, stacking). The schedules are saved
    in ``state_dict()`` as their factory arguments (plain data, safe for
    ``torch.load(weights_only=True)``) and checked again when loaded.

    Args:
        optimizer: the optimizer.
        schedule: one :class:`~fusedlr.schedules.Schedule` for every param group, or a list with
            one per group.
        last_epoch: index of the last step; -1 (default) to start, as torch.

    Example:
        >>> from fusedlr import schedules as S
        >>> sched = ScheduleLR(opt, S.noise(S.warmup(S.cosine(9_000), 1_000), start=1_000))  # doctest: +SKIP
    """

    def __init__(self, optimizer: Optimizer, schedule: Schedule | Sequence[Schedule], last_epoch: int = -1) -> None:
        schedules = list(schedule) if isinstance(schedule, (list, tuple)) else [schedule]
        for s in schedules:
            if not isinstance(s, Schedule):
                raise TypeError(f"ScheduleLR: schedule must be a fusedlr Schedule (fusedlr.schedules.*) or a list of "
                                f"them, got {type(s).__name__}")
        groups = len(optimizer.param_groups) if isinstance(optimizer, Optimizer) else 0
        if len(schedules) not in (1, groups):
            raise ValueError(f"ScheduleLR: expected one schedule or one per param group ({groups}), "
                             f"got {len(schedules)}")
        self.schedule_states = [s.__getstate__() for s in schedules]  # what state_dict saves
        super().__init__(optimizer, last_epoch)

    @property
    def schedule(self) -> Schedule | list[Schedule]:
        """The schedule (a list when there is one per param group)."""
        return self._schedules[0] if len(self.schedule_states) == 1 else list(self._schedules)

    def _build(self) -> list[Schedule]:
        # Through Schedule.__setstate__: a loaded state is checked like any schedule that comes in.
        schedules = []
        for state in self.schedule_states:
            s = Schedule.__new__(Schedule)
            s.__setstate__(tuple(state) if isinstance(state, list) else state)
            schedules.append(s)
        if len(schedules) == 1:
            return schedules * len(self.base_lrs)
        if len(schedules) != len(self.base_lrs):
            raise ValueError(f"ScheduleLR: {len(schedules)} schedules for {len(self.base_lrs)} param groups")
        return schedules


class WSDLR(ClosedFormLR):
    r"""Warmup-stable-decay (not in torch); see :func:`fusedlr.schedules.wsd` for the formula."""

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, decay_steps: int | None = None,
                 decay: str = "linear", min_factor: float = 0.0, warmup_start_factor: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps  # None: the schedule's default, read back in _build
        self.decay = decay
        self.min_factor = min_factor
        self.warmup_start_factor = warmup_start_factor
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        schedule = S.wsd(self.total_steps, self.warmup_steps, self.decay_steps, self.decay, self.min_factor,
                         self.warmup_start_factor)
        self.decay_steps = schedule.arguments["decay_steps"]
        return [schedule] * len(self.base_lrs)


class InverseSqrtLR(ClosedFormLR):
    r"""Linear warmup then inverse square-root decay (not in torch; the Transformer schedule).

    .. math:: \eta_t = \eta_0 \frac{t}{W} \;(t < W), \qquad \eta_t = \eta_0 \sqrt{W / t} \;(t \ge W)

    With ``warmup_steps=0``: :math:`\eta_0 / \sqrt{1 + t}`.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int = 0, last_epoch: int = -1) -> None:
        if warmup_steps < 0:
            raise ValueError(f"InverseSqrtLR: warmup_steps must be >= 0, got {warmup_steps!r}")
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        w = self.warmup_steps
        s = S.inverse_sqrt(float(max(w, 1)))
        return [S.warmup(s, w, 0.0, "linear") if w > 0 else s] * len(self.base_lrs)


class InverseTimeLR(ClosedFormLR):
    r"""Time-based (inverse-time) decay (not in torch; Keras' ``InverseTimeDecay``).

    .. math:: \eta_t = \frac{\eta_0}{1 + k\, t / \text{decay\_steps}}
    """

    def __init__(self, optimizer: Optimizer, decay_rate: float, decay_steps: int = 1, staircase: bool = False,
                 last_epoch: int = -1) -> None:
        if not decay_rate >= 0:
            raise ValueError(f"InverseTimeLR: decay_rate must be >= 0, got {decay_rate!r}")
        self.decay_rate = decay_rate
        self.decay_steps = decay_steps
        self.staircase = staircase
        super().__init__(optimizer, last_epoch)

    def _build(self) -> list[Schedule]:
        return [S.inverse_time(self.decay_rate, self.decay_steps, self.staircase)] * len(self.base_lrs)


class InKernelLR(LRScheduler):
    """The scheduler object for a :class:`fusedlr.SGD` whose groups compute their lr in the step.

    It changes nothing: the fused step evaluates each group's ``schedule`` from its own counter.
    It exists for frameworks that need a scheduler object and would otherwise add one of their
    own on top (``transformers.Trainer(optimizers=(opt, None))`` makes a linear decay):
    ``Trainer(optimizers=(opt, InKernelLR(opt)))``. As for any torch scheduler after its step,
    :meth:`get_last_lr` is the lr the next optimizer step will use (on CUDA a read of a device
    tensor), which is what Trainer logs.
    """

    def __init__(self, optimizer: Optimizer) -> None:  # noqa: D107
        groups = optimizer.param_groups
        if not hasattr(optimizer, "get_last_lr") or not any(g.get("schedule") is not None for g in groups):
            raise ValueError("InKernelLR needs a fusedlr.SGD with a schedule (fusedlr.SGD(..., schedule=S)); "
                             "for other optimizers use a scheduler of fusedlr.lr_scheduler")
        self.optimizer = optimizer
        self.base_lrs = [float(g.get("base_lr", g["lr"])) for g in groups]
        self._seen = self._counter()  # the kernel's step counter at this scheduler's last step
        self.last_epoch = self._seen
        self._step_count = 1

    def _counter(self) -> int:
        """The in-kernel schedule's step counter (a read of a device tensor on CUDA)."""
        return max(int(g["schedule_state"][0]) for g in self.optimizer.param_groups if g.get("schedule") is not None)

    def step(self, epoch: int | None = None) -> None:
        """Take note of the optimizer's steps (its schedule has already advanced in each of them)."""
        self._step_count += 1
        self._seen = self._counter()
        self.last_epoch = self._seen if epoch is None else epoch

    def get_last_lr(self) -> list[float]:
        """Each group's lr as a torch scheduler reports it: between ``optimizer.step()`` and
        ``step()`` the lr the optimizer step used, after ``step()`` the lr of the next step. It
        follows the schedule's own counter, so it stays right when a framework calls ``step()``
        more or less often than the optimizer steps (accelerate, skipped AMP steps)."""
        counter = self._counter()
        t = counter - 1 if counter > self._seen else counter
        lrs = []
        for g in self.optimizer.param_groups:
            if g.get("schedule") is None:
                lrs.append(float(g["lr"]))
            else:
                lrs.append(lr_at(g, max(t, 0), float(g["schedule_state"][2])))
        return lrs

    def get_lr(self) -> list[float]:
        return self.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        """Only the step count: the schedules and their counters are the optimizer's state."""
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the step count (the lr follows the optimizer's own counter, loaded with its state)."""
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        self._seen = self._counter()


# transformers' schedule functions by their names (import swaps); they return ScheduleLR twins.
from ._transformers import (  # noqa: E402
    GreedyLR,
    get_constant_schedule,
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_cosine_with_hard_restarts_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup_lr_rate,
    get_greedy_schedule,
    get_inverse_sqrt_schedule,
    get_linear_schedule_with_warmup,
    get_polynomial_decay_schedule_with_warmup,
    get_reduce_on_plateau_schedule,
    get_scheduler,
    get_wsd_schedule,
)
