r"""The SGD step as a function, without the optimizer class (as ``torch.optim.sgd.sgd``).

:class:`fusedlr.SGD` keeps the state (momentum buffers and their counters, the in-kernel
schedule's counter) and calls :func:`sgd` with it; this module holds the step itself: the tensors
of one call split by device, complex tensors as real views, one fused native call per device
(:func:`fusedlr.ops.sgd_`, whose docstring has the update equation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from . import _checks, ops  # noqa: F401  (ops: the op's fake implementation, for torch.compile)
from ._C import Schedule

__all__ = ["sgd"]


def sgd(
    params: Sequence[Tensor],
    d_p_list: Sequence[Tensor],
    momentum_buffer_list: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    steps: Sequence[Tensor] | None = None,
    schedule: Schedule | Tensor | None = None,
    schedule_state: Tensor | None = None,
    grad_clip: Tensor | None = None,
    grad_ratios: Tensor | None = None,
) -> None:
    r"""One fused SGD-momentum step, in place, as ``torch.optim.sgd.sgd`` computes it:

    .. math::
        g &= \pm\nabla / s + \lambda\theta, \qquad
        b = g \text{ (first step) else } \mu b + (1 - \tau) g, \qquad
        \theta \leftarrow \theta - \gamma\,(g + \mu b \text{ if nesterov else } b)

    Args:
        params: the parameters (float32/64, float16, bfloat16 or their complex types), updated in place.
        d_p_list: their gradients (dense).
        momentum_buffer_list: one entry per parameter when ``momentum != 0``: a buffer, updated in
            place, or ``None``, which this step fills with a new buffer (as torch's does).
        lr, momentum, dampening, weight_decay, nesterov, maximize: as :class:`torch.optim.SGD`
            (``lr`` may be a one-element tensor).
        grad_scale, found_inf: AMP's scale (the grads are unscaled in place) and inf flag (when
            non-zero, nothing changes).
        steps: one float32 counter per buffer (0: the buffer takes this step's gradient); by
            default a ``None`` buffer starts at 0 and a given one counts as initialised.
        schedule, schedule_state: an in-kernel schedule (a :class:`fusedlr.Schedule` or its
            bytes) and its float64 ``[step, lr, factor]`` counter on the parameters' device: the
            step's lr is then ``schedule(step, lr) * factor``, and the counter advances.
        grad_clip: a one-element tensor multiplying every (unscaled) gradient in the update
            (global-norm clipping: :func:`fusedlr.ops.grad_norm`'s coefficient).
        grad_ratios: LARS trust ratios, float64, one per parameter (:func:`fusedlr.ops.lars_ratios`).

    Example:
        >>> import torch, fusedlr
        >>> p = torch.ones(3); g = torch.full((3,), 0.5); bufs = [None]
        >>> fusedlr.functional.sgd([p], [g], bufs, lr=0.1, momentum=0.9)
        >>> p, bufs[0]
        (tensor([0.9500, 0.9500, 0.9500]), tensor([0.5000, 0.5000, 0.5000]))
    """
    params, grads = list(params), list(d_p_list)
    has_momentum = momentum != 0
    if has_momentum and len(momentum_buffer_list) != len(params):
        raise ValueError(f"fusedlr.functional.sgd: {len(params)} params but {len(momentum_buffer_list)} momentum "
                         "buffers (one per parameter, None for a new one, when momentum != 0)")
    buffers: list[Tensor] = []
    if has_momentum:
        counters = list(steps) if steps is not None else []
        for i, p in enumerate(params):
            buf = momentum_buffer_list[i]
            if buf is None:
                buf, counter = new_momentum_buffer(p)
                momentum_buffer_list[i] = buf
                if steps is None:
                    counters.append(counter)
            elif steps is None:
                counters.append(torch.ones((), dtype=torch.float32, device=p.device))
            buffers.append(buf)
    else:
        counters = []
    if isinstance(schedule, Schedule):
        schedule = torch.frombuffer(bytearray(schedule.to_bytes()), dtype=torch.uint8)
    lr_tensor, scalars = op_scalars(lr, momentum, dampening, weight_decay, nesterov, maximize)
    _step(params, grads, buffers, counters, scalars,
          (lr_tensor, grad_scale, found_inf, schedule, schedule_state, grad_clip, grad_ratios))


# Parameter dtypes whose momentum may be kept in float32 instead (momentum_dtype=torch.float32).
_HALF_DTYPES = (torch.float16, torch.bfloat16)


def momentum_dtype_of(param_dtype: torch.dtype, momentum_dtype: torch.dtype | None) -> torch.dtype:
    """The dtype of a momentum buffer: its parameter's (torch's), or ``momentum_dtype``
    (float32) for a float16 or bfloat16 parameter when it is given."""
    return momentum_dtype if momentum_dtype is not None and param_dtype in _HALF_DTYPES else param_dtype


def check_momentum_dtype(momentum_dtype: Any, who: str) -> None:
    """ValueError unless ``momentum_dtype`` is None or torch.float32 (what the kernel takes)."""
    if momentum_dtype is not None and momentum_dtype != torch.float32:
        raise ValueError(f"{who}: momentum_dtype must be None (the parameter's dtype) or torch.float32 "
                         f"(float32 momentum for float16/bfloat16 parameters), got {momentum_dtype!r}")


def new_momentum_buffer(p: Tensor, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """A momentum buffer for ``p`` (of ``dtype``, by default p's) and its float32 step counter at 0.
    The content is irrelevant: the kernel overwrites the buffer on its first step (the one that
    sees the counter at 0)."""
    return (torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format),
            torch.zeros((), dtype=torch.float32, device=p.device))


def op_scalars(lr: float | Tensor, momentum: Any, dampening: Any, weight_decay: Any, nesterov: Any,
               maximize: Any) -> tuple[Tensor | None, tuple[float, float, float, float, bool, bool]]:
    """The op's lr tensor (or None) and its six scalars, in the schema's order (ops.cpp)."""
    lr_tensor = lr if isinstance(lr, Tensor) else None
    if isinstance(weight_decay, Tensor):
        weight_decay = weight_decay.item()
    return lr_tensor, (0.0 if lr_tensor is not None else float(lr), float(momentum), float(dampening),
                       float(weight_decay), bool(nesterov), bool(maximize))


def _step(params: list[Tensor], grads: list[Tensor], buffers: list[Tensor], counters: list[Tensor],
          scalars: tuple, tensors: tuple) -> None:
    """The fused calls: complex tensors as real views, one call per device (the op takes one).
    ``scalars`` and ``tensors`` are the op's in its order (:func:`op_scalars`; ``(lr_tensor,
    grad_scale, found_inf, schedule, schedule_state, grad_clip[, grad_ratios])``). An error names tensors as
    numbered here."""
    if any(p.is_complex() for p in params):
        params = [torch.view_as_real(p) if p.is_complex() else p for p in params]
        grads = [torch.view_as_real(g) if g.is_complex() else g for g in grads]
        buffers = [torch.view_as_real(b) if b.is_complex() else b for b in buffers]
    splits = _split_by_device(params) if params else [None]
    if len(splits) > 1 and len(tensors) > 6 and tensors[6] is not None:
        raise RuntimeError("fusedlr: LARS needs every parameter of its group on one device, "
                           f"got {sorted({str(p.device) for p in params})}")
    if len(splits) > 1 and tensors[3] is not None:
        raise RuntimeError("fusedlr.SGD: an in-kernel schedule needs every parameter of its group on one device, "
                           f"got {sorted({str(p.device) for p in params})}")
    if not params and tensors[3] is None:
        return  # nothing to dispatch on
    for idx in splits:
        if idx is None:
            torch.ops.fusedlr.sgd_(params, grads, buffers, counters, *scalars, *tensors)
            continue
        try:
            torch.ops.fusedlr.sgd_([params[i] for i in idx], [grads[i] for i in idx],
                                   [buffers[i] for i in idx] if buffers else [],
                                   [counters[i] for i in idx] if counters else [], *scalars, *tensors)
        except (RuntimeError, ValueError, TypeError) as error:
            raise _checks.renumbered(error, idx) from error


def _split_by_device(params: list[Tensor]) -> list[list[int] | None]:
    """Index lists of ``params`` per device; ``[None]`` (take everything) when there is one device."""
    first = params[0].device
    if all(p.device == first for p in params):
        return [None]
    by_device: dict[torch.device, list[int]] = {}
    for i, p in enumerate(params):
        by_device.setdefault(p.device, []).append(i)
    return list(by_device.values())
