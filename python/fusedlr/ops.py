"""Typed wrappers over ``torch.ops.fusedlr.*`` and their fake (meta) implementations.

The fake implementations let ``torch.compile`` trace a call to an op without running it and
without a graph break: the ops mutate their inputs in place and return nothing, so the fake
returns ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import _C  # noqa: F401  (registers the ops)

__all__ = ["sgd_"]


def sgd_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    momentum_buffers: Sequence[Tensor],
    steps: Sequence[Tensor],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    lr_tensor: Tensor | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    schedule: Tensor | None = None,
    schedule_state: Tensor | None = None,
) -> None:
    r"""One fused SGD-momentum step over every tensor of the lists, in place.

    For each ``i`` (``p = params[i]``, ``b = momentum_buffers[i]``), as ``torch.optim.SGD``:

    .. math::
        g &= \pm\,\mathrm{grad}_i / s \;+\; \lambda p \\
        b &= g \text{ on the buffer's first step, else } \mu b + (1-\tau) g \\
        p &= p - \gamma\,(g + \mu b \text{ if nesterov else } b)

    with :math:`\gamma` = ``lr`` (or ``lr_tensor``), :math:`\mu` = ``momentum``, :math:`\tau` =
    ``dampening``, :math:`\lambda` = ``weight_decay``, the sign negative when ``maximize`` and
    :math:`s` = ``grad_scale`` (1 when absent; when given, the unscaled gradient is written back).

    Args:
        params: parameters, updated in place. float32, float64, float16 or bfloat16; dtypes may
            differ between tensors, devices may not.
        grads: gradients, same shape/dtype/device as ``params``.
        momentum_buffers: one buffer per param when ``momentum != 0``, else empty.
        steps: one-element float32 counters, one per buffer (``momentum != 0``), else empty.
            ``steps[i] == 0`` makes the step initialise the buffer; each step that runs adds 1.
        lr_tensor: a one-element tensor read instead of ``lr``.
        grad_scale: AMP loss scale; grads are divided by it.
        found_inf: when non-zero, the step changes nothing (steps included).

            On CUDA, ``lr_tensor``, ``grad_scale`` and ``found_inf`` may be CPU tensors; they are
            then copied to the device on every call, which a CUDA graph cannot capture: pass
            device tensors when capturing (GradScaler's already are).
        schedule: an in-kernel learning-rate schedule, ``Schedule.to_bytes()`` as a CPU uint8 tensor.
            The step's :math:`\gamma` is then ``schedule(step, lr) * factor``.
        schedule_state: float64 ``[step, lr, factor]`` on the params' device, with ``schedule``:
            read and advanced on the device (``lr`` receives the value used), even when
            ``found_inf`` skips the update.
    """
    if not params and schedule is None:
        return  # nothing to dispatch on
    torch.ops.fusedlr.sgd_(
        list(params),
        list(grads),
        list(momentum_buffers),
        list(steps),
        float(lr),
        float(momentum),
        float(dampening),
        float(weight_decay),
        bool(nesterov),
        bool(maximize),
        lr_tensor,
        grad_scale,
        found_inf,
        schedule,
        schedule_state,
    )


@torch.library.register_fake("fusedlr::sgd_")
def _sgd_fake(
    params, grads, momentum_buffers, steps, lr, momentum, dampening, weight_decay, nesterov, maximize,
    lr_tensor=None, grad_scale=None, found_inf=None, schedule=None, schedule_state=None,
) -> None:
    # Nothing to compute: the op mutates its inputs and returns nothing. Its arguments are checked
    # once, by the op itself (cpp/src/sgd_check.cpp), when it runs.
    return None
