"""fusedlr.SGD: a drop-in for torch.optim.SGD whose step is one fused multi-tensor op call."""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT, _global_optimizer_post_hooks, _global_optimizer_pre_hooks
from torch.optim.sgd import sgd as _torch_sgd

from . import _checks, _dtensor, _flat, _group_cache, _in_kernel, functional, ops
from ._C import Schedule

__all__ = ["SGD"]

# flat=True lays out parameters of at most this many elements (bench/compare_iteration.py: from
# 256 x 256 weights on, autograd's accumulation into kept gradients costs more than the layout saves).
FLAT_MAX_NUMEL = 1 << 14


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
        max_grad_norm: clip the gradients to this global norm inside the step, as
            :func:`torch.nn.utils.clip_grad_norm_` then the step would (default: None, no clipping);
            the norm is ``last_grad_norm``, a tensor (no host sync).
        grad_norm_type: the norm's order :math:`p` (2, ``inf`` or any positive float; default: 2).
        error_if_nonfinite: raise when the norm is NaN or infinite, as torch's clip (a host sync).
        flat: lay each group's small parameters out back to back in one tensor per device and
            dtype (``p.data`` becomes a view of it), with their gradients and momentum buffers
            laid out the same way, so that a step of 2000 small tensors costs what a step of one
            large tensor does (default: False). ``True`` takes parameters of at most
            ``fusedlr.optim.FLAT_MAX_NUMEL`` (16384) elements, an int parameters of at most that
            many: a large tensor gains nothing from the layout, and loses autograd's hand-over of
            its gradient (see below). Autograd accumulates into the gradient views in place;
            :meth:`zero_grad` zeroes them in one write and keeps them, even with
            ``set_to_none=True``: a parameter that gets no gradient in a backward then takes a
            step with a zero gradient (momentum and weight decay still move it), where torch
            would skip it. Parameters that are frozen, sparse, non-contiguous (channels_last),
            DTensors, larger than the limit or alone of their dtype are left as they are. A
            layout broken later (a ``model.zero_grad()`` that lets autograd allocate new
            gradients, as transformers' Trainer does every step; ``p.data = ...``;
            ``model.to(...)``) is seen by the next step, which then steps tensor by tensor, with
            the same numbers; :meth:`zero_grad` gives the parameters their views again.
        momentum_dtype: ``torch.float32`` keeps the momentum buffers of float16 and bfloat16
            parameters in float32 (default: None, the parameter's dtype, as torch). The step then
            never rounds the momentum to the half type (bfloat16 keeps 8 bits of mantissa), at 14
            bytes per element moved instead of 10. Its ``state_dict`` holds the float32 buffers and
            loads back exactly; ``torch.optim.SGD`` casts them to the parameter's dtype on load,
            and a torch state loads into float32 buffers. CPU only so far: a half parameter on
            CUDA is refused when its group is added (``NotImplementedError``); one moved there
            later keeps a buffer of its own dtype, with a warning. Sparse gradients and
            ``differentiable=True`` groups, stepped by torch's reference, keep torch's buffers.

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
        max_grad_norm: float | None = None,
        grad_norm_type: float = 2.0,
        error_if_nonfinite: bool = False,
        flat: bool | int = False,
        momentum_dtype: torch.dtype | None = None,
    ) -> None:
        _checks.check_hyperparameters(lr, momentum, dampening, weight_decay, nesterov)
        functional.check_momentum_dtype(momentum_dtype, "fusedlr.SGD")
        self.momentum_dtype = momentum_dtype
        if not isinstance(flat, (bool, int)) or (not isinstance(flat, bool) and flat < 1):
            raise ValueError(f"fusedlr.SGD: flat must be a bool or a positive number of elements, got {flat!r}")
        self.flat = flat if isinstance(flat, bool) else int(flat)
        self._flat_layouts: list[_flat.FlatLayout] = []
        self._flat_slots: dict[Tensor, _flat.FlatLayout] = {}  # parameter -> the layout that holds its slots
        self._flat_others: list[Tensor] = []  # the parameters of a flat optimizer that are not in a layout
        if max_grad_norm is not None:
            ops.grad_norm([], grad_norm_type, max_grad_norm)  # the op's own check of both (ValueError)
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.grad_norm_type = float(grad_norm_type)
        self.error_if_nonfinite = bool(error_if_nonfinite)
        self.last_grad_norm: Tensor | None = None
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
            **self._group_defaults(),
        }
        super().__init__(params, defaults)
        self._track_state()
        # GradScaler hands grad_scale / found_inf to step() instead of unscaling and syncing.
        self._step_supports_amp_scaling = True

    def _group_defaults(self) -> dict[str, Any]:
        """Group keys a subclass adds (fusedlr.Lars: its trust ratio's)."""
        return {}

    def _lars(self, group: dict[str, Any]) -> tuple[float, float, bool] | None:
        """(trust_coeff, eps, trust_clip) when the group's step takes LARS trust ratios (fusedlr.Lars)."""
        return None

    def __getstate__(self) -> dict[str, Any]:
        # torch's Optimizer keeps defaults, state and param_groups; the clipping options and flat
        # are the optimizer's own (not a group's): kept too, so a pickle or deepcopy still clips,
        # and lays its parameters out again (nn.Parameter's deepcopy clones each on its own).
        state = super().__getstate__()
        for name in ("max_grad_norm", "grad_norm_type", "error_if_nonfinite", "flat", "momentum_dtype"):
            if name in self.__dict__:
                state[name] = self.__dict__[name]
        return state

    @staticmethod
    def profile_hook_step(func: Callable[..., Any]) -> Callable[..., Any]:
        """torch.optim.Optimizer's wrapper of step() (the step pre/post hooks, global and per
        optimizer, and a profiler range), with the range opened only while a profiler runs:
        torch's own wrapper costs 5 us per step here (record_function), a third of a fused step
        of the demo's model (bench/compare_step.py --sets mlp: 21.4 us with it, 16.7 without)."""
        hooked = Optimizer.profile_hook_step(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # (torch.compile traces the step itself; the profiler query would break the graph.)
            if not torch.compiler.is_compiling() and torch.autograd._profiler_enabled():
                return hooked(*args, **kwargs)
            return _run_with_hooks(args[0], func, args, kwargs)

        return wrapper

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._track_state()
        for group in self.param_groups:
            for key, default in _OPTIONAL_GROUP_KEYS.items():
                group.setdefault(key, default)
        if self.__dict__.get("flat") and "defaults" in state:
            # An unpickled or deep-copied optimizer (not load_state_dict, which passes only state and
            # param_groups and keeps the layout): its parameters are new objects, laid out again.
            self._flat_layouts, self._flat_slots, self._flat_others = [], {}, []
            for group in self.param_groups:
                self._flatten(group)
            for p, param_state in self.state.items():
                if isinstance(param_state, dict) and isinstance(param_state.get("momentum_buffer"), Tensor):
                    self._into_layout(p, param_state)

    def _track_state(self) -> None:
        """Make self.state count its changes, which the held groups depend on (_group_cache.py)."""
        self.state = _group_cache.State(self.state)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        g = self.param_groups[-1]
        try:
            _checks.check_hyperparameters(g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"])
            _checks.check_param_dtypes(g["params"], len(self.param_groups) - 1)
            if g["schedule"] is not None and not isinstance(g["schedule"], Schedule):
                raise TypeError(
                    f"schedule must be a fusedlr Schedule (fusedlr.schedules.*, or a twin scheduler's .schedule), "
                    f"got {type(g['schedule']).__name__}"
                )
            if g["schedule"] is not None and self._scheduler_attached():
                _in_kernel.refuse_second_schedule([g], len(self.param_groups) - 1)
            if self.__dict__.get("momentum_dtype") is not None:
                off_cpu = next((p for p in g["params"] if p.device.type != "cpu"
                                and functional.momentum_dtype_of(p.dtype, self.momentum_dtype) != p.dtype), None)
                if off_cpu is not None:
                    raise NotImplementedError(
                        f"fusedlr.SGD: momentum_dtype={self.momentum_dtype} is implemented on the CPU only so far; "
                        f"param group {len(self.param_groups) - 1} has a {off_cpu.dtype} parameter on {off_cpu.device}")
            if g["differentiable"] and g["schedule"] is not None:
                raise RuntimeError("fusedlr.SGD: an in-kernel schedule cannot be combined with differentiable=True "
                                   "(that group is stepped by torch's reference implementation)")
        except (ValueError, TypeError, RuntimeError):
            self.param_groups.pop()  # a refused group leaves the optimizer as it was
            raise
        self._prepare_schedule(len(self.param_groups) - 1, g)
        if getattr(self, "flat", False):
            self._flatten(g)

    # -- flat=True ------------------------------------------------------------------------------

    def _flatten(self, group: dict[str, Any]) -> None:
        """Lay the group's parameters out flat (_flat.py); the step finds the layout by itself."""
        max_numel = FLAT_MAX_NUMEL if self.flat is True else int(self.flat)
        layouts = [] if group["differentiable"] else _flat.flatten(group["params"], group["momentum"] != 0, max_numel,
                                                                   self.__dict__.get("momentum_dtype"))
        laid_out = set()
        for layout in layouts:
            self._flat_layouts.append(layout)
            self._flat_slots.update(dict.fromkeys(layout.slots, layout))
            laid_out.update(map(id, layout.params))
        self._flat_others.extend(p for p in group["params"] if id(p) not in laid_out)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As :meth:`torch.optim.Optimizer.zero_grad`; with ``flat=True``, the gradients of the
        parameters laid out flat are zeroed in one write and stay views of it (see ``flat``).
        ``set_to_none=True`` on groups held in C++ drops the gradients in one C++ loop (torch's
        Python loop adds ~0.5 us per parameter to the freeing itself)."""
        layouts = self.__dict__.get("_flat_layouts")
        if not layouts:
            if (set_to_none and not torch.compiler.is_compiling() and not torch.autograd._profiler_enabled()
                    and self._native.zero_grad(self.param_groups, self.state)):
                return None
            return super().zero_grad(set_to_none)
        gone = [layout for layout in layouts if layout.zero(set_to_none) == 0]
        for layout in gone:  # (model.to(...) moved every parameter of it: its memory is let go)
            layouts.remove(layout)
            self._flat_others.extend(layout.params)
            for p in layout.slots:
                self._flat_slots.pop(p, None)
        _flat.zero_grads(self._flat_others, set_to_none)
        return None

    def _into_layout(self, p: Tensor, param_state: dict[str, Any]) -> bool:
        """Move p's momentum buffer and counter into the views its flat layout set aside for
        them (a loaded or copied state, checked by the caller); False when p has none, or when the
        buffer has not taken its first step (a layout's buffers must take it together)."""
        layout, slot = self._slot_of(p)
        step = param_state.get("step")
        if slot is None or (isinstance(step, Tensor) and float(step) == 0.0):
            return False
        layout.first_round = "loaded"
        with torch.no_grad():
            slot[0].copy_(param_state["momentum_buffer"])
            slot[1].copy_(step if isinstance(step, Tensor) else torch.tensor(1.0 if step is None else float(step)))
        param_state["momentum_buffer"], param_state["step"] = slot
        return True

    def _new_momentum_buffer(self, p: Tensor, round: int) -> tuple[Tensor, Tensor]:
        """A momentum buffer for ``p`` and its counter at 0: the views a flat layout set aside, when
        ``round`` (this _init_group call) is the one that made the layout's first buffers."""
        layout, slot = self._slot_of(p)
        if slot is None or layout.first_round not in (None, round):
            return functional.new_momentum_buffer(p, self._momentum_dtype(p))
        layout.first_round = round
        slot[1].zero_()
        return slot

    def _slot_of(self, p: Tensor) -> tuple[_flat.FlatLayout | None, tuple[Tensor, Tensor] | None]:
        """p's flat layout (the one that set its slots aside) and its slot there, if still usable."""
        layout = self.__dict__.get("_flat_slots", {}).get(p)
        return layout, None if layout is None else layout.slot(p, self._momentum_dtype(p))

    def _momentum_dtype(self, p: Tensor) -> torch.dtype:
        """The dtype of p's momentum buffer (``momentum_dtype``). A half parameter moved off the CPU
        after its group was added keeps a buffer of its own dtype (the CUDA kernel takes no float32
        buffer for it yet), with a warning, rather than failing a step half-way through the groups."""
        dtype = functional.momentum_dtype_of(p.dtype, self.__dict__.get("momentum_dtype"))
        if dtype != p.dtype and p.device.type != "cpu":
            if not self.__dict__.get("_warned_momentum_dtype"):
                self.__dict__["_warned_momentum_dtype"] = True
                warnings.warn(f"fusedlr.SGD: momentum_dtype={dtype} is implemented on the CPU only so far; the "
                              f"momentum of {p.dtype} parameters on {p.device} keeps their dtype", stacklevel=3)
            return p.dtype
        return dtype

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
        saved_float_momentum = self._saved_float_momentum(state_dict)
        super().load_state_dict(state_dict)
        into_layout: list[tuple[Tensor, dict[str, Any]]] = []
        try:
            for p, param_state in self.state.items():
                if not (isinstance(p, Tensor) and isinstance(param_state, dict)):
                    continue  # an entry that is not a parameter's, kept as torch keeps it
                buf = param_state.get("momentum_buffer")
                if buf is None:
                    param_state.pop("step", None)
                    continue
                if id(p) in saved_float_momentum:  # as saved, not through the parameter's dtype
                    buf = param_state["momentum_buffer"] = saved_float_momentum[id(p)].to(
                        dtype=self._momentum_dtype(p), device=p.device)
                if not isinstance(buf, Tensor) or buf.shape != p.shape:
                    what = f"shape {tuple(buf.shape)}" if isinstance(buf, Tensor) else f"type {type(buf).__name__}"
                    raise ValueError(
                        f"{_checks.where(self.param_groups, p)}: loaded momentum_buffer has {what} but its parameter has "
                        f"shape {tuple(p.shape)}"
                    )
                step = param_state.get("step")
                value = 1.0 if step is None else _checks.loaded_counter(step, f"{_checks.where(self.param_groups, p)}: step")
                param_state["step"] = torch.tensor(value, dtype=torch.float32, device=p.device)
                into_layout.append((p, param_state))
            for index, group in enumerate(self.param_groups):
                where = f"fusedlr.SGD: loaded param group {index}"
                missing = [key for key in ("lr", "momentum", "dampening", "weight_decay") if key not in group]
                if missing:
                    raise ValueError(f"{where} has no {', '.join(map(repr, missing))}")
                for key, default in _OPTIONAL_GROUP_KEYS.items():
                    group.setdefault(key, default)
                try:
                    _checks.check_hyperparameters(group["lr"], group["momentum"], group["dampening"],
                                                  group["weight_decay"], group["nesterov"])
                except (ValueError, TypeError) as error:
                    raise type(error)(f"{where}: {error}") from None
                if group.get("schedule_state") is not None:
                    group["schedule_state"] = _in_kernel.loaded_schedule_state(group["schedule_state"], group, where)
            for index, group in enumerate(self.param_groups):
                self._prepare_schedule(index, group)
            # (flat=True) The buffers are copied into the layout's memory last, once every check
            # has passed: a refused state_dict must not have written into the live buffers.
            for p, param_state in into_layout:
                self._into_layout(p, param_state)
        except BaseException:
            self.__setstate__(before)  # a refused state_dict leaves the optimizer as it was
            self.__dict__["_in_kernel"] = runtime_before
            raise

    def _saved_float_momentum(self, state_dict: dict[str, Any]) -> dict[int, Tensor]:
        """With ``momentum_dtype``: the saved momentum buffers of the parameters that keep theirs
        in float32, by ``id`` of the parameter. torch's load casts every buffer to its parameter's
        dtype, which would round a float32 momentum to bfloat16 on the way in."""
        if self.__dict__.get("momentum_dtype") is None:
            return {}
        groups, states = state_dict.get("param_groups"), state_dict.get("state")
        if not isinstance(groups, list) or not isinstance(states, dict):
            return {}  # (torch's load raises its own error)
        saved_ids = [i for g in groups if isinstance(g, dict) for i in g.get("params", [])]
        # (a differentiable group is stepped by torch's reference, which keeps torch's buffers)
        params = [(p, g["differentiable"]) for g in self.param_groups for p in g["params"]]
        if len(saved_ids) != len(params):
            return {}
        saved = {}
        for i, (p, differentiable) in zip(saved_ids, params):
            param_state = states.get(i)
            buf = param_state.get("momentum_buffer") if isinstance(param_state, dict) else None
            if (isinstance(buf, Tensor) and buf.layout == torch.strided and not differentiable  # (sparse: torch's)
                    and self._momentum_dtype(p) != p.dtype):
                saved[id(p)] = buf
        return saved

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
        round = self.__dict__["_flat_round"] = self.__dict__.get("_flat_round", 0) + 1
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
                    buf, param_state["step"] = self._new_momentum_buffer(p, round)
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

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform a single optimization step.

        Args:
            closure: a closure that reevaluates the model and returns the loss (optional).
        """
        # (No torch.no_grad() around the whole step: the fused op is not differentiable (its autograd
        # kernel falls through), so a held group's step needs none; the paths through Python
        # tensor code take it themselves. It saves ~1 us of every step.)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale: Tensor | None = getattr(self, "grad_scale", None)
        found_inf: Tensor | None = getattr(self, "found_inf", None)
        clip = self._clip_coefficient(grad_scale) if getattr(self, "max_grad_norm", None) is not None else None

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
            lr_tensor, scalars = functional.op_scalars(lr, group["momentum"], group["dampening"],
                                                       group["weight_decay"], group["nesterov"], group["maximize"])
            tensors = (lr_tensor, grad_scale, found_inf,
                       self._schedules.schedule_bytes(index, group["schedule"]) if scheduled else None,
                       _in_kernel.schedule_state(group) if scheduled else None, clip)
            try:
                lars = self._lars(group)
                if compiling or not self._native.step(index, group, self.state, scalars, tensors, lars):
                    with torch.no_grad():
                        self._step_group(index, group, scalars, tensors, compiling, lars)
            except (RuntimeError, ValueError, TypeError) as error:
                # The op names tensor i of its call: say which parameter of which group that is.
                reworded = _checks.in_group(error, index, _checks.tensor_positions(group))
                if reworded is None:
                    raise
                raise reworded from error
            if scheduled and not compiling:
                self._schedules.show(index, group)
        return loss

    def _clip_coefficient(self, grad_scale: Tensor | None) -> Tensor:
        """The global norm of every gradient of every group (``last_grad_norm``) and the clip
        coefficient the fused step multiplies them by: one read of the grads, no host sync."""
        norms = None
        if not torch.compiler.is_compiling():  # (the held groups are eager-only)
            norms = self._native.grad_norm(self.param_groups, self.state, self.grad_norm_type, self.max_grad_norm,
                                           grad_scale)
        if norms is None:
            norms = self._grad_norm_of_lists(grad_scale)
        self.last_grad_norm = norms[0]
        if self.error_if_nonfinite and not bool(torch.isfinite(norms[0])):
            raise RuntimeError(f"fusedlr.SGD: the total norm of order {self.grad_norm_type} of the gradients is "
                               f"{norms[0].item()}, so they cannot be clipped (error_if_nonfinite=True; nothing "
                               "was stepped)")
        return norms[1]

    def _grad_norm_of_lists(self, grad_scale: Tensor | None) -> Tensor:
        """grad_norm over Python lists (a first step, complex, sparse or DTensor grads, several devices)."""
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if any(g.is_sparse for g in grads):
            raise NotImplementedError("fusedlr.SGD(max_grad_norm=...): sparse gradients are not clipped by the "
                                      "fused step; clip them with torch.nn.utils.clip_grad_norm_")
        if _dtensor.any_dtensor(grads):
            return _dtensor.global_grad_norm(grads, self.grad_norm_type, self.max_grad_norm, grad_scale)
        if len({g.device for g in grads}) > 1:
            raise NotImplementedError("fusedlr.SGD(max_grad_norm=...): the gradients are on several devices "
                                      f"({sorted({str(g.device) for g in grads})}); the fused clip takes one")
        grads = [g.abs() if g.is_complex() else g for g in grads]  # |z|, whatever the norm
        return ops.grad_norm(grads, self.grad_norm_type, self.max_grad_norm, grad_scale)

    def _step_group(self, index: int, group: dict[str, Any], scalars: tuple, tensors: tuple, compiling: bool,
                    lars: tuple[float, float, bool] | None = None) -> None:
        """Step a group through the op with lists (first step, torch.compile, a held group that is
        no longer current), then hold its tensors for the next steps."""
        params: list[Tensor] = []
        grads: list[Tensor] = []
        momentum_buffers: list[Tensor] = []
        steps: list[Tensor] = []
        sparse: list[Tensor] = []
        self._init_group(group, params, grads, momentum_buffers, steps, sparse)
        if sparse and group["schedule"] is not None:
            raise RuntimeError("fusedlr.SGD: an in-kernel schedule cannot step parameters with sparse gradients")
        distributed = None  # the DTensor params and grads, when the group has them
        if _dtensor.any_dtensor(params):
            distributed = params, grads
            params, grads, momentum_buffers = _dtensor.local_shards(group, index, params, grads, momentum_buffers)
        if lars is not None:
            # (the norm of the grad the update applies: unscaled, clipped: tensors[1] and tensors[5])
            options = dict(weight_decay=scalars[3], trust_coeff=lars[0], eps=lars[1], trust_clip=lars[2],
                           lr=scalars[0], lr_tensor=tensors[0], grad_scale=tensors[1], grad_clip=tensors[5])
            if not params:
                ratios = None
            elif distributed is not None:  # a tensor's norms span its shards
                ratios = _dtensor.global_lars_ratios(*distributed, params, grads, **options)
            else:
                ratios = ops.lars_ratios(params, grads, **options)
            tensors = (*tensors, ratios)
        functional._step(params, grads, momentum_buffers, steps, scalars, tensors)
        if sparse:
            self._step_reference(group, sparse, tensors[1], tensors[2], "sparse gradients")
        if not compiling:
            self._native.store(index, group, self.state)

    def _cache(self, name: str, make: Callable[[], Any]) -> Any:
        """An attribute made on first use, so again after a pickle or deepcopy (torch's
        Optimizer.__getstate__ keeps only defaults, state and param_groups)."""
        value = self.__dict__.get(name)
        if value is None:
            value = self.__dict__[name] = make()
        return value

    @property
    def _native(self) -> _group_cache.GroupCache:
        """The groups' tensors held in C++ between steps."""
        return self._cache("_group_cache", _group_cache.GroupCache)

    # -- the in-kernel schedule (its runtime: _in_kernel.py) ----------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        # torch's LRScheduler (and fusedlr's twins) wrap optimizer.step when they are made.
        if name == "step" and getattr(value, "_wrapped_by_lr_sched", False):
            self._schedules.refuse_scheduler(self.param_groups)
        super().__setattr__(name, value)

    @property
    def _schedules(self) -> _in_kernel.Runtime:
        """The in-kernel schedules' host-side caches."""
        return self._cache("_in_kernel", _in_kernel.Runtime)

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


def _run_with_hooks(opt: Optimizer, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """func(*args, **kwargs) between the step hooks, as torch.optim.Optimizer.profile_hook_step runs them."""
    for pre_hook in itertools.chain(_global_optimizer_pre_hooks.values(), opt._optimizer_step_pre_hooks.values()):
        result = pre_hook(opt, args, kwargs)
        if result is not None:
            if isinstance(result, tuple) and len(result) == 2:
                args, kwargs = result
            else:
                raise RuntimeError(f"{func} must return None or a tuple of (new_args, new_kwargs), but got {result}.")
    out = func(*args, **kwargs)
    opt._optimizer_step_code()
    for post_hook in itertools.chain(opt._optimizer_step_post_hooks.values(), _global_optimizer_post_hooks.values()):
        post_hook(opt, args, kwargs)
    return out


# Keys a param group may lack (older or torch's state dicts) and what they mean then.
_OPTIONAL_GROUP_KEYS = {"nesterov": False, "maximize": False, "foreach": None, "differentiable": False,
                        "fused": None, "schedule": None}
