"""fusedlr.SGD: a drop-in for torch.optim.SGD whose step is one fused multi-tensor op call."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from torch.optim.sgd import sgd as _torch_sgd

from . import ops

__all__ = ["SGD"]


def _check_hyperparameters(lr: Any, momentum: float, dampening: float, weight_decay: Any, nesterov: bool) -> None:
    # Same order, types and messages as torch.optim.SGD.__init__.
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if momentum < 0.0:
        raise ValueError(f"Invalid momentum value: {momentum}")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")


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
      fused. ``differentiable=True`` is not supported (``RuntimeError``).
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
        differentiable: must be False.
        fused: ignored (always fused).

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
    ) -> None:
        _check_hyperparameters(lr, momentum, dampening, weight_decay, nesterov)
        if differentiable:
            raise RuntimeError("fusedlr.SGD does not support `differentiable`; use torch.optim.SGD(differentiable=True)")
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
        }
        super().__init__(params, defaults)
        # GradScaler hands grad_scale / found_inf to step() instead of unscaling and syncing.
        self._step_supports_amp_scaling = True

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("differentiable", False)
            group.setdefault("fused", None)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        g = self.param_groups[-1]
        try:
            _check_hyperparameters(g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"])
            _check_finite(g)
            _check_param_dtypes(g["params"], len(self.param_groups) - 1)
            if g["differentiable"]:
                raise RuntimeError("fusedlr.SGD does not support `differentiable`")
        except (ValueError, TypeError, RuntimeError):
            self.param_groups.pop()  # a refused group leaves the optimizer as it was
            raise

    # -- state_dict interchange with torch.optim.SGD --------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """As :meth:`torch.optim.Optimizer.state_dict`; a buffer that has not taken a step yet
        (its first step was skipped by a GradScaler) is left out, as torch would not have one."""
        sd = super().state_dict()
        for key in list(sd["state"]):
            step = sd["state"][key].get("step")
            if isinstance(step, Tensor) and float(step) == 0.0:
                del sd["state"][key]
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As :meth:`torch.optim.Optimizer.load_state_dict`; accepts torch.optim.SGD's states.
        A momentum buffer without a ``"step"`` (torch's format) counts as initialised."""
        before = {"state": self.state, "param_groups": self.param_groups}  # load_state_dict rebinds both
        super().load_state_dict(state_dict)
        try:
            for p, param_state in self.state.items():
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
                value = 1.0 if step is None else float(step)
                param_state["step"] = torch.tensor(value, dtype=torch.float32, device=p.device)
        except ValueError:
            self.__setstate__(before)  # a refused state_dict leaves the optimizer as it was
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
            if has_momentum:
                param_state = state[p]
                buf = param_state.get("momentum_buffer")
                if buf is None:
                    # Content is irrelevant: the kernel overwrites it on the step where step == 0.
                    buf = torch.zeros_like(p, memory_format=torch.preserve_format)
                    param_state["momentum_buffer"] = buf
                    param_state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                step = param_state["step"]
                if p.is_complex():
                    buf = torch.view_as_real(buf)
                momentum_buffers.append(buf)
                steps.append(step)
            if p.is_complex():
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

        for group_index, group in enumerate(self.param_groups):
            params: list[Tensor] = []
            grads: list[Tensor] = []
            momentum_buffers: list[Tensor] = []
            steps: list[Tensor] = []
            sparse: list[Tensor] = []
            self._init_group(group, params, grads, momentum_buffers, steps, sparse)
            lr = group["lr"]
            lr_tensor = lr if isinstance(lr, Tensor) else None
            weight_decay = group["weight_decay"]
            if isinstance(weight_decay, Tensor):
                weight_decay = weight_decay.item()
            hyper = dict(
                lr=0.0 if lr_tensor is not None else lr,
                momentum=group["momentum"],
                dampening=group["dampening"],
                weight_decay=weight_decay,
                nesterov=group["nesterov"],
                maximize=group["maximize"],
            )
            if params:
                if _is_dtensor(params[0]):
                    params, grads, momentum_buffers = _local_shards(group, group_index, params, grads, momentum_buffers)
                try:
                    for idx in _split_by_device(params):
                        ops.sgd_(
                            [params[i] for i in idx] if idx is not None else params,
                            [grads[i] for i in idx] if idx is not None else grads,
                            [momentum_buffers[i] for i in idx] if idx is not None and steps else momentum_buffers,
                            [steps[i] for i in idx] if idx is not None and steps else steps,
                            lr_tensor=lr_tensor,
                            grad_scale=grad_scale,
                            found_inf=found_inf,
                            **hyper,
                        )
                except RuntimeError as error:
                    # Only on failure: find the parameter at fault and say which one it is.
                    _explain_bad_group(group, group_index, self.state, error, grad_scale is not None)
                    raise
            if sparse:
                self._step_sparse(group, sparse, grad_scale, found_inf, hyper)
        return loss

    def _step_sparse(
        self, group: dict[str, Any], params: list[Tensor], grad_scale: Tensor | None, found_inf: Tensor | None,
        hyper: dict[str, Any],
    ) -> None:
        if grad_scale is not None or found_inf is not None:
            raise RuntimeError(
                "fusedlr.SGD: sparse gradients cannot be combined with a GradScaler (the scaler hands the "
                "fused step grad_scale/found_inf, which torch's sparse reference path does not take)"
            )
        bufs = [self.state[p].get("momentum_buffer") for p in params]
        _torch_sgd(
            params, [p.grad for p in params], bufs, has_sparse_grad=True, foreach=False,
            weight_decay=hyper["weight_decay"], momentum=hyper["momentum"], lr=group["lr"],
            dampening=hyper["dampening"], nesterov=hyper["nesterov"], maximize=hyper["maximize"],
        )
        if group["momentum"] != 0:
            for p, buf in zip(params, bufs):
                self.state[p]["momentum_buffer"] = buf


def _split_by_device(params: list[Tensor]) -> list[list[int] | None]:
    """Index lists of ``params`` per device; ``[None]`` (take everything) when there is one device."""
    first = params[0].device
    if all(p.device == first for p in params):
        return [None]
    by_device: dict[torch.device, list[int]] = {}
    for i, p in enumerate(params):
        by_device.setdefault(p.device, []).append(i)
    return list(by_device.values())


# -- checks and DTensor support ----------------------------------------------------------------

# What the fused op steps: its four storage dtypes, and complex parameters as real views of them.
_SUPPORTED_DTYPES = frozenset(
    {torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex32, torch.complex64, torch.complex128}
)


def _check_finite(group: dict[str, Any]) -> None:
    """NaN or infinite hyper-parameters would turn every parameter into NaN on the first step;
    torch.optim.SGD accepts them (its range checks are false for NaN), we refuse them."""
    for name, what in (("lr", "learning rate"), ("momentum", "momentum value"), ("dampening", "dampening value"),
                       ("weight_decay", "weight_decay value")):
        value = group[name]
        if isinstance(value, Tensor) and value.numel() == 1 and value.device.type == "cpu":
            value = value.item()
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise ValueError(f"Invalid {what}: {value}")


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
