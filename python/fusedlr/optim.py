"""fusedlr.SGD: a drop-in for torch.optim.SGD whose step is one fused multi-tensor op call."""

from __future__ import annotations

import functools
import itertools
import math
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT, _global_optimizer_post_hooks, _global_optimizer_pre_hooks

from torch.optim.sgd import sgd as _torch_sgd

from . import _C, _in_kernel, functional, ops
from .functional import _split_by_device
from ._C import Schedule

__all__ = ["SGD"]


def _check_hyperparameters(lr: Any, momentum: Any, dampening: Any, weight_decay: Any, nesterov: Any) -> None:
    """torch.optim.SGD.__init__'s checks, with its error types and messages, answered by the op's
    own check (``_C.sgd_hyperparameter_problem``), which also refuses NaN and infinite values."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    given = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay}
    shown = {k: v.item() if isinstance(v, Tensor) and v.numel() == 1 else v for k, v in given.items()}
    numbers = {}
    for key, value in shown.items():
        try:
            numbers[key] = float(value)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{key} must be a number, got {type(given[key]).__name__}") from error
    problem = _C.sgd_hyperparameter_problem(**numbers, nesterov=bool(nesterov))
    if problem is not None:
        raise ValueError({
            "lr": f"Invalid learning rate: {shown['lr']}",
            "momentum": f"Invalid momentum value: {shown['momentum']}",
            "dampening": f"Invalid dampening value: {shown['dampening']}",
            "weight_decay": f"Invalid weight_decay value: {shown['weight_decay']}",
            "nesterov": "Nesterov momentum requires a momentum and zero dampening",
        }[problem])


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum, fused: one native call updates every
    parameter of a param group (one CUDA launch per dtype on GPU).

    Same signature, defaults, numbers and ``state_dict`` as :class:`torch.optim.SGD`:

    .. math::
        \begin{aligned}
        g_t &\leftarrow \nabla_\theta f_t(\theta_{t-1}) \quad (-\nabla \text{ if maximize}) \\
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        b_t &\leftarrow g_t \text{ if } t = 1 \text{ else } \mu b_{t-1} + (1 - \tau) g_t \\
        g_t &\leftarrow g_t + \mu b_t \text{ if nesterov else } b_t \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma g_t
        \end{aligned}

    with learning rate :math:`\gamma`, momentum :math:`\mu`, dampening :math:`\tau` and weight
    decay :math:`\lambda`. Half types (float16, bfloat16) are computed in float32 and rounded
    once per step (torch's ``foreach=False`` path rounds after every operation).

    Differences from torch.optim.SGD, on purpose:

    - ``foreach`` and ``fused`` are accepted for compatibility and ignored: the step is always
      fused. A group with ``differentiable=True`` (to backpropagate through the step) is stepped
      by torch's own reference implementation, with autograd on, as torch does: same numbers, not fused.
    - Under ``torch.amp.GradScaler`` the scale and the inf check are applied inside the op, with
      no host synchronisation; a step skipped for inf/NaN gradients does not count as a momentum
      buffer's first step, so the first step that runs initialises the buffer (torch's fused
      path would read uninitialised memory there). As with torch's fused optimizers, the
      unscaled gradients are written back into ``.grad``.
    - ``state[p]`` holds ``"momentum_buffer"`` (as torch) and ``"step"``, a float32 counter on the
      parameter's device telling whether the buffer has been initialised. A ``state_dict`` loads
      into ``torch.optim.SGD`` and back; a torch state without ``"step"`` is taken as initialised.
    - Complex parameters are stepped as real views (the update is the same).
    - Sparse gradients are stepped by torch's own reference implementation (same numbers, not
      fused); they cannot be combined with a GradScaler.
    - Stricter input checks, each naming the parameter group and position: a parameter of a dtype
      the step cannot update (integer, bool, float8) is refused when its group is added
      (``TypeError``), and so are NaN or infinite ``lr``/``momentum``/``dampening``/``weight_decay``
      (``ValueError``). A grad or momentum buffer that no longer matches its parameter (its
      ``.data`` was replaced) raises ``ValueError``/``TypeError`` at :meth:`step`, where torch
      raises ``RuntimeError`` or broadcasts. The op checks every tensor of a call before it
      writes any, so the refused group is not half-stepped (groups before it have been stepped).
    - DTensor parameters (FSDP2's ``fully_shard``, tensor parallelism) are stepped through their
      local shards, which is exact for an elementwise update; grads and buffers must be sharded
      like their parameters (``ValueError`` otherwise).

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: learning rate :math:`\gamma`, a float or a one-element tensor (default: 1e-3).
        momentum: momentum factor :math:`\mu` (default: 0).
        dampening: dampening :math:`\tau` for momentum (default: 0).
        weight_decay: L2 penalty :math:`\lambda` (default: 0).
        nesterov: enables Nesterov momentum (default: False).
        maximize: maximize the objective instead of minimizing (default: False).
        foreach: ignored (the step is always one fused call).
        differentiable: step through torch's reference implementation with autograd on (default: False).
        fused: ignored (always fused).
        schedule: a :class:`fusedlr.schedules.Schedule` evaluated inside the step from a counter
            kept in ``group["schedule_state"]`` (no ``scheduler.step()``, no host sync). The
            group's lr is then ``schedule(t, group["base_lr"])``; ``group["lr"]`` shows the lr of
            the next step (on the CPU after every step, on CUDA after :meth:`get_last_lr`), and
            setting it sets the next lr and scales the rest of the schedule. An LR scheduler on
            such a group raises ``ValueError`` (two schedules would multiply); see
            :class:`fusedlr.lr_scheduler.InKernelLR` for frameworks that need a scheduler object.

    Example:
        >>> import torch, fusedlr
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = fusedlr.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> model(torch.randn(8, 4)).square().mean().backward()
        >>> opt.step()
        >>> sorted(opt.state[model.weight])
        ['momentum_buffer', 'step']
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        _check_hyperparameters(lr, momentum, dampening, weight_decay, nesterov)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
            "schedule": schedule,
        }
        super().__init__(params, defaults)
        self._track_state()
        # GradScaler hands grad_scale / found_inf to step() instead of unscaling and syncing.
        self._step_supports_amp_scaling = True

    @staticmethod
    def profile_hook_step(func: Callable[..., Any]) -> Callable[..., Any]:
        """torch.optim.Optimizer's wrapper of step(): the step pre/post hooks (global and per
        optimizer) and a profiler range. The range is opened only while a profiler is running:
        torch's record_function costs about 15 µs per call, more than a whole fused step of a
        small model."""

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self = args[0]
            # (torch.compile traces the step itself; the profiler query would break the graph.)
            if not torch.compiler.is_compiling() and torch.autograd._profiler_enabled():
                with torch.autograd.profiler.record_function(f"Optimizer.step#{type(self).__name__}.step"):
                    return _step_with_hooks(self, func, args, kwargs)
            return _step_with_hooks(self, func, args, kwargs)

        return wrapper

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._track_state()
        for group in self.param_groups:
            for key, default in _OPTIONAL_GROUP_KEYS.items():
                group.setdefault(key, default)

    def _track_state(self) -> None:
        """Make self.state report replaced tensors (see _ParamState); a new container is a new state."""
        self._state_version = _Version()
        self.state = _State(self._state_version, self.state)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        g = self.param_groups[-1]
        try:
            _check_hyperparameters(g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"])
            _check_param_dtypes(g["params"], len(self.param_groups) - 1)
            if g["schedule"] is not None and not isinstance(g["schedule"], Schedule):
                raise TypeError(
                    f"schedule must be a fusedlr Schedule (fusedlr.schedules.*, or a twin scheduler's .schedule), "
                    f"got {type(g['schedule']).__name__}"
                )
            if g["schedule"] is not None and self._scheduler_attached():
                _in_kernel.refuse_second_schedule([g], len(self.param_groups) - 1)
            if g["differentiable"] and g["schedule"] is not None:
                raise RuntimeError("fusedlr.SGD: an in-kernel schedule cannot be combined with differentiable=True "
                                   "(that group is stepped by torch's reference implementation)")
        except (ValueError, TypeError, RuntimeError):
            self.param_groups.pop()  # a refused group leaves the optimizer as it was
            raise
        self._prepare_schedule(len(self.param_groups) - 1, g)

    # -- state_dict interchange with torch.optim.SGD --------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """As :meth:`torch.optim.Optimizer.state_dict`; a buffer that has not taken a step yet
        (its first step was skipped by a GradScaler) is left out, as torch would not have one."""
        for index, group in enumerate(self.param_groups):
            if group["schedule"] is not None:
                self._schedules.base(index, group)  # a change of group["lr"] not yet stepped is saved too
        sd = super().state_dict()
        states = {}
        for key, param_state in sd["state"].items():
            if not isinstance(param_state, dict):  # an entry that is not a parameter's (state["epoch"] = 1)
                states[key] = param_state
                continue
            step = param_state.get("step")
            if isinstance(step, Tensor) and float(step) == 0.0:
                continue
            states[key] = dict(param_state)  # plain dicts: torch.load(weights_only=True) accepts them
        sd["state"] = states
        for group in sd["param_groups"]:
            # A schedule is stored as its plain-number state, which torch.load(weights_only=True) accepts.
            if isinstance(group.get("schedule"), Schedule):
                group["schedule"] = {"fusedlr.Schedule": group["schedule"].__getstate__()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As :meth:`torch.optim.Optimizer.load_state_dict`; accepts torch.optim.SGD's states.
        A momentum buffer without a ``"step"`` (torch's format) counts as initialised.

        A state_dict is untrusted input (a checkpoint someone sent): every value that reaches the
        step is checked (hyper-parameters, momentum buffers and their counters, a saved schedule
        through the same validator as ``Schedule.__setstate__``, the schedule's counter), and a bad
        one raises ``ValueError``/``TypeError`` naming it, leaving the optimizer as it was."""
        state_dict = _in_kernel.with_schedules_restored(state_dict)  # raises before anything changes
        if self._scheduler_attached():
            _in_kernel.refuse_second_schedule([g for g in state_dict.get("param_groups", []) if isinstance(g, dict)])
        before = {"state": self.state, "param_groups": self.param_groups}  # load_state_dict rebinds both
        runtime_before = self._schedules.copy()
        super().load_state_dict(state_dict)
        try:
            for p, param_state in self.state.items():
                if not (isinstance(p, Tensor) and isinstance(param_state, dict)):
                    continue  # an entry that is not a parameter's, kept as torch keeps it
                buf = param_state.get("momentum_buffer")
                if buf is None:
                    param_state.pop("step", None)
                    continue
                if not isinstance(buf, Tensor) or buf.shape != p.shape:
                    what = f"shape {tuple(buf.shape)}" if isinstance(buf, Tensor) else f"type {type(buf).__name__}"
                    raise ValueError(
                        f"{_where(self.param_groups, p)}: loaded momentum_buffer has {what} but its parameter has "
                        f"shape {tuple(p.shape)}"
                    )
                step = param_state.get("step")
                value = 1.0 if step is None else _loaded_counter(step, f"{_where(self.param_groups, p)}: step")
                param_state["step"] = torch.tensor(value, dtype=torch.float32, device=p.device)
            for index, group in enumerate(self.param_groups):
                where = f"fusedlr.SGD: loaded param group {index}"
                missing = [key for key in ("lr", "momentum", "dampening", "weight_decay") if key not in group]
                if missing:
                    raise ValueError(f"{where} has no {', '.join(map(repr, missing))}")
                for key, default in _OPTIONAL_GROUP_KEYS.items():
                    group.setdefault(key, default)
                try:
                    _check_hyperparameters(group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                                           group["nesterov"])
                except (ValueError, TypeError) as error:
                    raise type(error)(f"{where}: {error}") from None
                if group.get("schedule_state") is not None:
                    group["schedule_state"] = _in_kernel.loaded_schedule_state(group["schedule_state"], group, where)
            for index, group in enumerate(self.param_groups):
                self._prepare_schedule(index, group)
        except BaseException:
            self.__setstate__(before)  # a refused state_dict leaves the optimizer as it was
            self.__dict__["_in_kernel"] = runtime_before
            raise

    # -- the step -------------------------------------------------------------------------------

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        momentum_buffers: list[Tensor],
        steps: list[Tensor],
        sparse: list[Tensor],
    ) -> None:
        """Collect the parameters of ``group`` that have a gradient, creating their state on first use.
        Parameters with sparse gradients go to ``sparse`` (stepped by torch's reference)."""
        has_momentum = group["momentum"] != 0
        state = self.state
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:
                sparse.append(p)
                continue
            is_complex = p.is_complex()
            if has_momentum:
                param_state = state[p]
                buf = param_state.get("momentum_buffer")
                if buf is None:
                    buf, param_state["step"] = functional.new_momentum_buffer(p)
                    param_state["momentum_buffer"] = buf
                step = param_state["step"]
                if is_complex:
                    buf = torch.view_as_real(buf)
                momentum_buffers.append(buf)
                steps.append(step)
            if is_complex:
                p, grad = torch.view_as_real(p), torch.view_as_real(grad)
            params.append(p)
            grads.append(grad)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform a single optimization step.

        Args:
            closure: a closure that reevaluates the model and returns the loss (optional).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale: Tensor | None = getattr(self, "grad_scale", None)
        found_inf: Tensor | None = getattr(self, "found_inf", None)

        compiling = torch.compiler.is_compiling()
        for index, group in enumerate(self.param_groups):
            if group["differentiable"]:
                with torch.enable_grad():  # as torch's step does for a differentiable optimizer
                    self._step_reference(group, [p for p in group["params"] if p.grad is not None], grad_scale,
                                         found_inf, "differentiable=True")
                continue
            scheduled = group["schedule"] is not None
            # With an in-kernel schedule, the schedule multiplies the base; group["lr"] shows the lr.
            lr = self._schedules.base(index, group) if scheduled else group["lr"]
            lr_tensor = lr if isinstance(lr, Tensor) else None
            weight_decay = group["weight_decay"]
            if isinstance(weight_decay, Tensor):
                weight_decay = weight_decay.item()
            hyper = dict(
                lr=0.0 if lr_tensor is not None else float(lr),
                momentum=float(group["momentum"]),
                dampening=float(group["dampening"]),
                weight_decay=float(weight_decay),
                nesterov=bool(group["nesterov"]),
                maximize=bool(group["maximize"]),
            )
            tensors = dict(lr_tensor=lr_tensor, grad_scale=grad_scale, found_inf=found_inf,
                           schedule=None, schedule_state=None)
            if group["schedule"] is not None:
                tensors["schedule"] = self._schedules.schedule_bytes(index, group["schedule"])
                tensors["schedule_state"] = _in_kernel.schedule_state(group)
            try:
                if not compiling and self._step_cached_group(index, group, hyper, tensors):
                    if scheduled:
                        self._schedules.show(index, group)
                    continue
            except RuntimeError as error:
                _explain_bad_group(group, index, self.state, error, grad_scale is not None)
                raise
            params: list[Tensor] = []
            grads: list[Tensor] = []
            momentum_buffers: list[Tensor] = []
            steps: list[Tensor] = []
            sparse: list[Tensor] = []
            self._init_group(group, params, grads, momentum_buffers, steps, sparse)
            if sparse and group["schedule"] is not None:
                raise RuntimeError("fusedlr.SGD: an in-kernel schedule cannot step parameters with sparse gradients")
            if params or tensors["schedule"] is not None:
                if params and _is_dtensor(params[0]):
                    params, grads, momentum_buffers = _local_shards(group, index, params, grads, momentum_buffers)
                try:
                    h, t = hyper, tensors
                    functional._step(params, grads, momentum_buffers, steps, lr=lr, momentum=h["momentum"],
                                     dampening=h["dampening"], weight_decay=h["weight_decay"], nesterov=h["nesterov"],
                                     maximize=h["maximize"], grad_scale=grad_scale, found_inf=found_inf,
                                     schedule=t["schedule"], schedule_state=t["schedule_state"])
                except RuntimeError as error:
                    # Only on failure: find the parameter at fault and say which one it is.
                    _explain_bad_group(group, index, self.state, error, grad_scale is not None)
                    raise
            if sparse:
                self._step_reference(group, sparse, grad_scale, found_inf, "sparse gradients")
            if not compiling:
                self._cache_group(index, group)
                if scheduled:
                    self._schedules.show(index, group)
        return loss

    # -- the eager fast path: each group's tensors held in C++ between steps ---------------------

    def _state_key(self, group: dict[str, Any]) -> tuple:
        # What a cached SgdGroup depends on besides its parameters (which it checks itself, object
        # by object, on every step): whether the group has momentum, and the optimizer state: the
        # container itself (replaced by load_state_dict / __setstate__ or by assigning .state; held,
        # not its id, which a new object could reuse) and every assignment in it (counted by
        # _State / _ParamState).
        state = self.state
        version = state._version.value if isinstance(state, _State) else None
        return (group["momentum"] != 0, state, version)

    def _cache_group(self, index: int, group: dict[str, Any]) -> None:
        """Hand the group's tensors to a native SgdGroup for later steps, when it can take them:
        real floating params on one device, no sparse gradient."""
        cache = self.__dict__.setdefault("_native_groups", {})
        params = group["params"]
        handle = None
        if (
            params
            and not _is_dtensor(params[0])
            and all(p.dtype in _FUSED_DTYPES for p in params)
            and _split_by_device(params) == [None]
            and not any(p.grad is not None and p.grad.is_sparse for p in params)
        ):
            if group["momentum"] != 0:
                states = [self.state.get(p, {}) for p in params]
                buffers = [s.get("momentum_buffer") for s in states]
                steps = [s.get("step") if b is not None else None for s, b in zip(states, buffers)]
            else:
                buffers, steps = [], []
            handle = _C.SgdGroup(params, buffers, steps)
        cache[index] = (self._state_key(group), handle)

    def _step_cached_group(self, index: int, group: dict[str, Any], hyper: dict[str, Any],
                           tensors: dict[str, Tensor | None]) -> bool:
        cached = self.__dict__.get("_native_groups", {}).get(index)
        if cached is None or cached[1] is None:
            return False
        key = self._state_key(group)
        if cached[0][0] != key[0] or cached[0][1] is not key[1] or cached[0][2] != key[2]:
            return False
        h, t = hyper, tensors
        stepped = cached[1].step(group["params"], h["lr"], h["momentum"], h["dampening"], h["weight_decay"],
                                 h["nesterov"], h["maximize"], t["lr_tensor"], t["grad_scale"], t["found_inf"],
                                 t["schedule"], t["schedule_state"])
        return stepped >= 0

    # -- the in-kernel schedule (its runtime: _in_kernel.py) ----------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        # torch's LRScheduler (and fusedlr's twins) wrap optimizer.step when they are made.
        if name == "step" and getattr(value, "_wrapped_by_lr_sched", False):
            self._schedules.refuse_scheduler(self.param_groups)
        super().__setattr__(name, value)

    @property
    def _schedules(self) -> _in_kernel.Runtime:
        """The in-kernel schedules' host-side caches (made again after a pickle or deepcopy)."""
        runtime = self.__dict__.get("_in_kernel")
        if runtime is None:
            runtime = self.__dict__["_in_kernel"] = _in_kernel.Runtime()
        return runtime

    def _prepare_schedule(self, index: int, group: dict[str, Any]) -> None:
        """Make group ``index``'s schedule bytes and counter now (a group is added, a state loaded),
        so that the first step finds them: it can then be traced by torch.compile as one graph."""
        if isinstance(group.get("schedule"), Schedule):
            self._schedules.prepare(index, group)

    def _scheduler_attached(self) -> bool:
        """Whether an LR scheduler has wrapped this optimizer's step (torch's and the twins' mark)."""
        return getattr(self.__dict__.get("step"), "_wrapped_by_lr_sched", False)

    def get_last_lr(self) -> list[float]:
        """The learning rate each group used on its last step (before the first: the one it will use).
        With an in-kernel schedule this reads a device tensor (a synchronisation on CUDA) and also
        refreshes ``group["lr"]`` (the lr of the next step) there."""
        runtime = self._schedules
        return [float(group["lr"]) if group["schedule"] is None else runtime.last_lr(index, group)
                for index, group in enumerate(self.param_groups)]

    def _step_reference(
        self, group: dict[str, Any], params: list[Tensor], grad_scale: Tensor | None, found_inf: Tensor | None,
        why: str,
    ) -> None:
        """Step ``params`` of ``group`` with torch's single-tensor reference (sparse gradients,
        differentiable=True): the same update, not fused."""
        if grad_scale is not None or found_inf is not None:
            raise RuntimeError(
                f"fusedlr.SGD: {why} cannot be combined with a GradScaler (the scaler hands the fused step "
                "grad_scale/found_inf, which torch's reference path does not take)"
            )
        if not params:
            return
        bufs = [self.state[p].get("momentum_buffer") for p in params]
        _torch_sgd(
            params, [p.grad for p in params], bufs, has_sparse_grad=any(p.grad.is_sparse for p in params),
            foreach=False, weight_decay=group["weight_decay"], momentum=group["momentum"], lr=group["lr"],
            dampening=group["dampening"], nesterov=group["nesterov"], maximize=group["maximize"],
        )
        if group["momentum"] != 0:
            for p, buf in zip(params, bufs):
                self.state[p]["momentum_buffer"] = buf


_FUSED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# Keys a param group may lack (older or torch's state dicts) and what they mean then.
_OPTIONAL_GROUP_KEYS = {"nesterov": False, "maximize": False, "foreach": None, "differentiable": False,
                        "fused": None, "schedule": None}


def _step_with_hooks(opt: Optimizer, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Run step with the hooks exactly as torch.optim.Optimizer.profile_hook_step does."""
    for pre_hook in itertools.chain(_global_optimizer_pre_hooks.values(),
                                    opt._optimizer_step_pre_hooks.values()):
        result = pre_hook(opt, args, kwargs)
        if result is not None:
            if isinstance(result, tuple) and len(result) == 2:
                args, kwargs = result
            else:
                raise RuntimeError(f"{func} must return None or a tuple of (new_args, new_kwargs), but got {result}.")
    out = func(*args, **kwargs)
    opt._optimizer_step_code()
    for post_hook in itertools.chain(opt._optimizer_step_post_hooks.values(),
                                     _global_optimizer_post_hooks.values()):
        post_hook(opt, args, kwargs)
    return out


class _Version:
    """A counter shared by an optimizer's state containers; bumped by any assignment in them."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class _Reporting:
    """Removals from a state container bump the shared version (see _ParamState, _State)."""

    _version: _Version

    def __delitem__(self, key) -> None:
        self._version.value += 1
        super().__delitem__(key)  # type: ignore[misc]

    def pop(self, *args):
        self._version.value += 1
        return super().pop(*args)  # type: ignore[misc]

    def clear(self) -> None:
        self._version.value += 1
        super().clear()  # type: ignore[misc]


class _ParamState(_Reporting, dict):
    """state[p]: a dict that tells the optimizer when a tensor in it is replaced or removed, so the
    lists held natively (SgdGroup) never go stale. In-place changes need no notice."""

    def __init__(self, version: _Version, *args: Any) -> None:
        super().__init__(*args)
        self._version = version

    def __setitem__(self, key, value) -> None:
        self._version.value += 1
        super().__setitem__(key, value)

    def update(self, *args, **kwargs) -> None:
        self._version.value += 1
        super().update(*args, **kwargs)

    def __reduce__(self):
        return (dict, (dict(self),))


class _State(_Reporting, defaultdict):
    """optimizer.state: a defaultdict of _ParamState that reports assignments like _ParamState."""

    def __init__(self, version: _Version, items: Any = ()) -> None:
        super().__init__(None)
        self._version = version
        for key, value in dict(items).items():
            super().__setitem__(key, _ParamState(version, value) if isinstance(value, dict) else value)

    def __missing__(self, key):
        value = _ParamState(self._version)
        super().__setitem__(key, value)
        return value

    def __setitem__(self, key, value) -> None:
        # A parameter's state is a dict (reported like this one); anything else (torch's state
        # takes any value, e.g. state["epoch"] = 1) is kept as it is.
        self._version.value += 1
        if isinstance(value, dict) and not isinstance(value, _ParamState):
            value = _ParamState(self._version, value)
        super().__setitem__(key, value)

    def __reduce__(self):
        return (_plain_state, (dict(self),))

    def __deepcopy__(self, memo):
        import copy

        return _plain_state(copy.deepcopy(dict(self), memo))


def _plain_state(items: dict) -> defaultdict:
    return defaultdict(dict, {k: dict(v) if isinstance(v, dict) else v for k, v in items.items()})


# -- checks and DTensor support ----------------------------------------------------------------

# What the fused op steps: its four storage dtypes, and complex parameters as real views of them.
_SUPPORTED_DTYPES = frozenset(
    {torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex32, torch.complex64, torch.complex128}
)


def _check_param_dtypes(params: list[Tensor], group_index: int) -> None:
    """TypeError naming the first parameter of a new group that the fused step cannot update.
    (torch.optim.SGD accepts an integer tensor and fails, or truncates, only once it has a grad.)"""
    for i, p in enumerate(params):
        if p.dtype not in _SUPPORTED_DTYPES:
            raise TypeError(
                f"fusedlr.SGD: param group {group_index}, params[{i}] has dtype {p.dtype}; "
                "supported: float32, float64, float16, bfloat16 and their complex types"
            )


def _explain_bad_group(
    group: dict[str, Any], group_index: int, state: Any, error: RuntimeError, unscaling: bool
) -> None:
    """Called only after the op refused a step: raise a ValueError/TypeError naming the parameter
    whose grad or momentum buffer does not match it (the op's message numbers the tensors of one
    call, not the parameters of a group). Returns when it finds no such parameter."""
    first_is_dtensor = None
    for i, p in enumerate(group["params"]):
        grad = p.grad
        if grad is None or grad.is_sparse:
            continue
        where = f"fusedlr.SGD: param group {group_index}, params[{i}]"
        if first_is_dtensor is None:
            first_is_dtensor = _is_dtensor(p)
        elif _is_dtensor(p) != first_is_dtensor:
            raise TypeError(f"{where}: a group cannot mix DTensor and plain tensor parameters") from error
        if p.dtype not in _SUPPORTED_DTYPES:
            raise TypeError(f"{where} has dtype {p.dtype}; supported: float32, float64, float16, bfloat16") from error
        if grad.layout != torch.strided:
            raise ValueError(f"{where}: its grad has layout {grad.layout}; dense or sparse COO grads only") from error
        if grad.dtype != p.dtype:
            raise TypeError(
                f"{where}: its grad has dtype {grad.dtype} but the parameter has dtype {p.dtype}"
            ) from error
        if grad.shape != p.shape:
            raise ValueError(
                f"{where}: its grad has shape {tuple(grad.shape)} but the parameter has shape {tuple(p.shape)}"
            ) from error
        if grad.device != p.device:
            raise ValueError(f"{where}: its grad is on {grad.device} but the parameter is on {p.device}") from error
        if not first_is_dtensor and torch._debug_has_internal_overlap(p) == 1:  # 1: MemOverlap::Yes
            raise ValueError(f"{where} has elements that share memory (an expanded tensor?); it cannot be updated "
                             "in place") from error
        if unscaling and not first_is_dtensor and torch._debug_has_internal_overlap(grad) == 1:
            raise ValueError(f"{where}: its grad has elements that share memory (an expanded tensor?), so the "
                             "unscaled gradient cannot be written back; clone() it") from error
        buf = state[p].get("momentum_buffer") if p in state else None
        if buf is not None and (buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device):
            raise ValueError(
                f"{where}: its momentum_buffer (shape {tuple(buf.shape)}, {buf.dtype}, {buf.device}) does not match "
                f"the parameter (shape {tuple(p.shape)}, {p.dtype}, {p.device}); was the parameter's .data replaced?"
            ) from error


def _loaded_counter(value: Any, where: str) -> float:
    """A loaded momentum step counter: a finite number >= 0 (a number or a one-element tensor)."""
    try:
        count = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{where} must be a number or a one-element tensor, got {type(value).__name__}") from None
    if not (math.isfinite(count) and count >= 0):
        raise ValueError(f"{where} must be a finite count >= 0, got {count}")
    return count


def _where(param_groups: list[dict[str, Any]], p: Tensor) -> str:
    """'fusedlr.SGD: param group g, params[i]' for an error message about parameter p."""
    for g, group in enumerate(param_groups):
        for i, q in enumerate(group["params"]):
            if q is p:
                return f"fusedlr.SGD: param group {g}, params[{i}]"
    return "fusedlr.SGD"


def _is_dtensor(t: Tensor) -> bool:
    # No DTensor can exist until torch.distributed.tensor has been imported; importing it here
    # would make `import fusedlr` heavy.
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def _local_shards(
    group: dict[str, Any], group_index: int, params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor]
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """The local shards of DTensor parameters (FSDP2's fully_shard, tensor parallel), their grads
    and buffers. SGD is elementwise, so stepping each rank's shard is the whole step, provided
    the grad and the buffer are laid out like the parameter (checked: a Partial or differently
    sharded grad would otherwise be applied silently to the wrong elements)."""
    dtensor = sys.modules["torch.distributed.tensor"].DTensor
    for i, p in enumerate(params):
        others = [("grad", grads[i])] + ([("momentum_buffer", momentum_buffers[i])] if momentum_buffers else [])
        for name, t in others:
            if isinstance(p, dtensor) and isinstance(t, dtensor) and t.placements == p.placements and (
                t.device_mesh == p.device_mesh
            ):
                continue
            position = next((j for j, q in enumerate(group["params"]) if q is p or q.grad is grads[i]), "?")
            where = f"fusedlr.SGD: param group {group_index}, params[{position}]"
            if not isinstance(p, dtensor) or not isinstance(t, dtensor):
                raise TypeError(f"{where}: DTensor and plain tensors mixed (the parameter or its {name})")
            raise ValueError(
                f"{where} is a DTensor with placements {p.placements} on {p.device_mesh} but its {name} has "
                f"{t.placements} on {t.device_mesh}; the fused step needs them laid out alike"
            )
    # Under no_grad (as in step) to_local() is the local tensor itself: updates land in the DTensor.
    return (
        [p.to_local() for p in params],
        [g.to_local() for g in grads],
        [b.to_local() for b in momentum_buffers],
    )
