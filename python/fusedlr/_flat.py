"""fusedlr.SGD(flat=True): a param group's parameters laid out back to back in one tensor per
device and dtype, with their gradients and momentum buffers laid out the same way.

The step then finds the layout on its own (``cpp/src/flat_runs.h``: the buffers and counters are
checked when a group is held, and every step checks, tensor by tensor, that each parameter and
gradient is still where the layout put it) and updates each run as one tensor; nothing here is
needed for that. What this module keeps is what
only Python can do: the layout itself (``flatten``), the views that become momentum buffers
(``slot``), and the gradients' handle for ``zero_grad`` (``FlatLayout.zero``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import _C, _checks, _dtensor, functional


class FlatLayout:
    """One device and dtype's parameters of a group (``params``, their data views of one 1-D
    tensor), their gradients in ``grad`` (``grad_views[j]``: parameter j's .grad) and, with
    momentum, ``slots``: each parameter's views of one buffer tensor and one counter tensor. Its
    native handle for zero_grad is made on first use (and again after a pickle)."""

    def __init__(self, params: list[Tensor], grad: Tensor, grad_views: list[Tensor],
                 slots: dict[Tensor, tuple[Tensor, Tensor]]) -> None:
        self.params = params
        self.grad = grad
        self.grad_views = grad_views
        self.slots = slots  # parameter -> (its momentum buffer's view, its counter's view)
        # The step (fusedlr.SGD._init_group) that made the first buffers in the slots: only buffers
        # made by that step take slots, so that all of them take their first step together (one
        # counter stands for a run in the op; flat_runs.h). "loaded": a loaded state's buffers.
        self.first_round: int | str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_handle"}

    def zero(self, set_to_none: bool) -> int:
        """zero_grad for these parameters: one write of ``grad``, and each .grad its view again;
        how many still have their view (0: the layout is gone, as after ``model.to(...)``)."""
        handle = self.__dict__.get("_handle")
        if handle is None:
            handle = self.__dict__["_handle"] = _C.FlatGrads(self.params, self.grad_views, self.grad)
        return handle.zero(set_to_none)

    def slot(self, p: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor] | None:
        """p's momentum buffer and counter views, if they can still be its: p's shape and device,
        and ``dtype``, the dtype p's buffer takes (``functional.momentum_dtype_of``)."""
        slot = self.slots.get(p)
        if slot is None or slot[0].shape != p.shape or slot[0].dtype != dtype or slot[0].device != p.device:
            return None
        return slot


def eligible(p: Tensor) -> bool:
    """Whether ``p`` can join a flat layout: a dense, contiguous real floating tensor that requires
    grad (a frozen parameter must keep no gradient, so that it is not stepped)."""
    return (
        p.requires_grad
        and p.layout == torch.strided
        and p.dtype in _checks.FUSED_DTYPES
        and not _dtensor.is_dtensor(p)
        and p.is_contiguous()
        and (p.grad is None or (p.grad.layout == torch.strided and not p.grad.is_sparse))
    )


@torch.no_grad()
def flatten(params: list[Tensor], momentum: bool, max_numel: int,
            momentum_dtype: torch.dtype | None = None) -> list[FlatLayout]:
    """Move the eligible ``params`` of at most ``max_numel`` elements (in their order) into one new
    tensor per (device, dtype):
    ``p.data`` becomes a view of it, ``p.grad`` a view of a zeroed gradient tensor (holding the
    gradient ``p`` had, if any), and, with ``momentum``, a buffer (of the dtype
    ``functional.momentum_dtype_of`` gives) and counter are set aside for each.
    Kinds with a single parameter are left as they are (there is nothing to join)."""
    kinds: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for p in params:
        if eligible(p) and p.numel() <= max_numel:
            kinds.setdefault((p.device, p.dtype), []).append(p)
    layouts = []
    for (device, dtype), members in kinds.items():
        if len(members) < 2:
            continue
        total = sum(p.numel() for p in members)
        param = torch.empty(total, dtype=dtype, device=device)
        grad = torch.zeros(total, dtype=dtype, device=device)
        buffer = (torch.zeros(total, dtype=functional.momentum_dtype_of(dtype, momentum_dtype), device=device)
                  if momentum else None)
        steps = torch.zeros(len(members), dtype=torch.float32, device=device) if momentum else None
        grad_views, slots = [], {}
        offset = 0
        for j, p in enumerate(members):
            n = p.numel()
            view = param[offset:offset + n].view_as(p)
            view.copy_(p)
            p.data = view
            g = grad[offset:offset + n].view_as(p)
            if p.grad is not None:
                g.copy_(p.grad)
            p.grad = g
            grad_views.append(g)
            if buffer is not None:
                slots[p] = (buffer[offset:offset + n].view_as(p), steps[j])
            offset += n
        layouts.append(FlatLayout(members, grad, grad_views, slots))
    return layouts


def zero_grads(params: list[Tensor], set_to_none: bool) -> None:
    """``zero_grad`` for the parameters of a flat optimizer outside any layout: torch's rule for
    each (its .grad set to None, or detached and zeroed), the one C++ also applies to a parameter
    that left its layout."""
    _C._zero_grads(params, set_to_none)
