"""Typed wrappers over ``torch.ops.fusedlr.*`` and their fake (meta) implementations.

The fake implementations let ``torch.compile`` trace a call to an op without running it and
without a graph break: ``sgd_`` mutates its inputs in place and returns nothing; ``grad_norm``
returns a new two-element tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import _C  # noqa: F401  (registers the ops)

__all__ = ["clip_coefficient", "grad_norm", "grad_norm_terms", "lars_ratios", "sgd_"]


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
    grad_clip: Tensor | None = None,
    grad_ratios: Tensor | None = None,
) -> None:
    r"""One fused SGD-momentum step over every tensor of the lists, in place.

    For each ``i`` (``p = params[i]``, ``b = momentum_buffers[i]``), as ``torch.optim.SGD``:

    .. math::
        g &= \pm\,c\,\mathrm{grad}_i / s \;+\; \lambda p \\
        b &= g \text{ on the buffer's first step, else } \mu b + (1-\tau) g \\
        p &= p - \gamma\,(g + \mu b \text{ if nesterov else } b)

    with :math:`\gamma` = ``lr`` (or ``lr_tensor``), :math:`\mu` = ``momentum``, :math:`\tau` =
    ``dampening``, :math:`\lambda` = ``weight_decay``, the sign negative when ``maximize`` and
    :math:`s` = ``grad_scale`` (1 when absent; when given, the unscaled gradient is written back)
    and :math:`c` = ``grad_clip`` (1 when absent; :func:`grad_norm`'s coefficient; not written back).

    Args:
        params: parameters, updated in place. float32, float64, float16 or bfloat16; dtypes may
            differ between tensors, devices may not.
        grads: gradients, same shape/dtype/device as ``params``.
        momentum_buffers: one buffer per param when ``momentum != 0``, else empty; of its param's
            dtype, or float32 for a float16/bfloat16 param on the CPU (float32 momentum).
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
        grad_clip: a one-element tensor multiplying every (unscaled) gradient in the update:
            global-norm clipping with the coefficient :func:`grad_norm` returns (its ``[1]``).
        grad_ratios: float64, one per tensor: tensor ``i``'s gradient plus its weight decay is
            multiplied by ``grad_ratios[i]`` before the momentum (LARS, :func:`lars_ratios`).
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
        grad_clip,
        grad_ratios,
    )


def grad_norm(grads: Sequence[Tensor], norm_type: float = 2.0, max_norm: float = float("inf"),
              grad_scale: Tensor | None = None) -> Tensor:
    r"""The global norm of ``grads`` and torch's clipping coefficient, in one read of the grads.

    .. math:: n = \Big(\sum_i \sum_k |g_{ik}|^p\Big)^{1/p} / s, \qquad c = \min\Big(\frac{m}{n + 10^{-6}}, 1\Big)

    (:math:`n = \max |g_{ik}| / s` for ``p = inf``): ``torch.nn.utils.clip_grad_norm_``'s total norm
    and clamped coefficient, with the terms accumulated in float64 over all tensors at once (the
    same norm to rounding). No host synchronisation.

    Args:
        grads: gradients of one device, float32, float64, float16 or bfloat16 (any mix).
        norm_type: :math:`p`, > 0 or ``inf``. Default 2.
        max_norm: :math:`m`, >= 0. Default inf (coefficient 1).
        grad_scale: AMP's scale :math:`s` (the norm is then the unscaled gradients'); default 1.

    Returns:
        a new tensor ``[n, c]`` on the grads' device: float64 when a grad is float64, else float32.
    """
    grads = list(grads) or [torch.empty(0)]  # (no grads: the norm 0, on the CPU; the op needs a tensor to dispatch on)
    return torch.ops.fusedlr.grad_norm(grads, float(norm_type), float(max_norm), grad_scale)


@torch.library.register_fake("fusedlr::sgd_")
def _sgd_fake(
    params, grads, momentum_buffers, steps, lr, momentum, dampening, weight_decay, nesterov, maximize,
    lr_tensor=None, grad_scale=None, found_inf=None, schedule=None, schedule_state=None, grad_clip=None,
    grad_ratios=None,
) -> None:
    # Nothing to compute: the op mutates its inputs and returns nothing. Its arguments are checked
    # once, by the op itself (cpp/src/sgd_check.cpp), when it runs.
    return None


def lars_ratios(params: Sequence[Tensor], grads: Sequence[Tensor], *, weight_decay: float, trust_coeff: float,
                eps: float, trust_clip: bool, lr: float, lr_tensor: Tensor | None = None,
                grad_scale: Tensor | None = None, grad_clip: Tensor | None = None) -> Tensor:
    r"""LARS / LARC trust ratios, one per tensor, from the 2-norms of ``params[i]`` and ``grads[i]``:

    .. math:: r_i = \frac{\eta\,\|p_i\|}{\|g_i\| + \lambda \|p_i\| + \epsilon} \;(1 \text{ when a norm is } 0),
        \qquad r_i = \min(r_i / \mathrm{lr}, 1) \text{ with trust\_clip (LARC)}

    (:math:`\eta` = ``trust_coeff``, :math:`\lambda` = ``weight_decay``), in timm's order of
    operations, in float32 (float64 for float64 tensors); returned as float64 for :func:`sgd_`'s
    ``grad_ratios``. One read of params and grads; no host synchronisation. :math:`\|g_i\|` is
    the norm of the gradient the update applies: divided by ``grad_scale`` (a GradScaler's scale,
    as :func:`sgd_` unscales) and multiplied by ``grad_clip`` (the global-norm clip coefficient),
    when given.
    """
    return torch.ops.fusedlr.lars_ratios(list(params), list(grads), float(weight_decay), float(trust_coeff),
                                         float(eps), bool(trust_clip), float(lr), lr_tensor, grad_scale, grad_clip)


@torch.library.register_fake("fusedlr::lars_ratios")
def _lars_ratios_fake(params, grads, weight_decay, trust_coeff, eps, trust_clip, lr, lr_tensor=None, grad_scale=None,
                      grad_clip=None) -> Tensor:
    device = params[0].device if params else torch.device("cpu")
    return torch.empty(len(params), dtype=torch.float64, device=device)


def grad_norm_terms(grads: Sequence[Tensor], norm_type: float = 2.0) -> Tensor:
    """The first half of :func:`grad_norm`, for gradients sharded across processes: the local
    grads' accumulated terms (float64 ``[1]``: the sum of :math:`|g|^p`, or :math:`\max |g|` for
    ``p = inf``), to be all-reduced (sum, or max) across the shards, then :func:`clip_coefficient`."""
    grads = list(grads) or [torch.empty(0)]
    return torch.ops.fusedlr.grad_norm_terms(grads, float(norm_type))


def clip_coefficient(terms: Tensor, norm_type: float = 2.0, max_norm: float = float("inf"),
                     grad_scale: Tensor | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """The second half of :func:`grad_norm`: ``[total, coef]`` in ``dtype`` from (reduced) terms."""
    return torch.ops.fusedlr.clip_coefficient(terms, float(norm_type), float(max_norm), grad_scale, dtype)


@torch.library.register_fake("fusedlr::grad_norm_terms")
def _grad_norm_terms_fake(grads, norm_type) -> Tensor:
    return torch.empty(1, dtype=torch.float64, device=grads[0].device if grads else torch.device("cpu"))


@torch.library.register_fake("fusedlr::clip_coefficient")
def _clip_coefficient_fake(terms, norm_type, max_norm, grad_scale=None, dtype=torch.float32) -> Tensor:
    return torch.empty(2, dtype=dtype, device=terms.device)


@torch.library.register_fake("fusedlr::grad_norm")
def _grad_norm_fake(grads, norm_type, max_norm, grad_scale=None) -> Tensor:
    dtype = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    device = grads[0].device if grads else torch.device("cpu")
    return torch.empty(2, dtype=dtype, device=device)
