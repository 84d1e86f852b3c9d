"""DTensor parameters (FSDP2's ``fully_shard``, tensor parallelism) in the fused step: their local shards.

SGD is elementwise, so stepping each rank's shard is the whole step, provided the grad and the
buffer are laid out like the parameter (checked: a Partial or differently sharded grad would
otherwise be applied silently to the wrong elements).
"""

from __future__ import annotations

import sys
from typing import Any

from torch import Tensor


def is_dtensor(t: Tensor) -> bool:
    # No DTensor can exist until torch.distributed.tensor has been imported; importing it here
    # would make `import fusedlr` heavy.
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def any_dtensor(params: list[Tensor]) -> bool:
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and any(isinstance(p, module.DTensor) for p in params)


def local_shards(
    group: dict[str, Any], group_index: int, params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor]
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """The local shards of the DTensor ``params`` of a group, their grads and buffers; every one
    of them must be a DTensor laid out like its parameter (TypeError/ValueError naming it)."""
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


def _layouts(tensors: list[Tensor], what: str) -> list[tuple[Any, list[int], list[int]]]:
    """The DTensors ``tensors`` grouped by layout, in order of first appearance (the same on every
    rank, so the collectives that follow match): ``(mesh, the mesh dims they are sharded over, their
    indices)``. A sum over a tensor's local shards is all-reduced over its sharded dims only: a
    Replicate dim holds the same elements on every rank (HSDP's replicas, tensor parallelism's
    replicated weights). A Partial placement (a pending reduction) is refused."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        if any(pl.is_partial() for pl in t.placements):
            raise NotImplementedError(f"{what}: a DTensor with a Partial placement ({t.placements}) has no norm "
                                      "of its own before its reduction")
        groups.setdefault((t.device_mesh, tuple(t.placements)), []).append(i)
    return [(mesh, [d for d, pl in enumerate(placements) if pl.is_shard()], index)
            for (mesh, placements), index in groups.items()]


def _all_reduce_over(t: Tensor, mesh: Any, dims: list[int], op: Any) -> None:
    import torch.distributed as dist

    for dim in dims:
        dist.all_reduce(t, op=op, group=mesh.get_group(dim))


def global_grad_norm(grads: list[Tensor], norm_type: float, max_norm: float, grad_scale: Tensor | None) -> Tensor:
    """``[total, coef]`` of DTensor gradients (FSDP2, HSDP, tensor parallelism): each rank
    accumulates the terms of its local shards (fusedlr.ops.grad_norm_terms) layout by layout, each
    layout's terms are all-reduced over the mesh dims it is sharded over (sum, or max for the
    inf-norm), and the norm and coefficient come from the joined terms, as torch's clip_grad_norm_
    over DTensors gives them."""
    import torch
    import torch.distributed as dist

    from . import ops

    dtensor = sys.modules["torch.distributed.tensor"].DTensor
    if not all(isinstance(g, dtensor) for g in grads):
        raise TypeError("fusedlr.SGD(max_grad_norm=...): DTensor and plain gradients mixed")
    inf = norm_type == float("inf")
    total = None
    for mesh, dims, index in _layouts(grads, "fusedlr.SGD(max_grad_norm=...)"):
        terms = ops.grad_norm_terms([grads[i].to_local() for i in index], norm_type)
        _all_reduce_over(terms, mesh, dims, dist.ReduceOp.MAX if inf else dist.ReduceOp.SUM)
        total = terms if total is None else (torch.maximum(total, terms) if inf else total + terms)  # (no sync)
    dtype = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    return ops.clip_coefficient(total, norm_type, max_norm, grad_scale, dtype)


def global_lars_ratios(params: list[Tensor], grads: list[Tensor], local_params: list[Tensor],
                       local_grads: list[Tensor], **lars: Any) -> Tensor:
    """fusedlr.ops.lars_ratios of DTensor parameters, whose norms span their shards (FSDP2, HSDP,
    tensor parallelism): each rank's local shards give float64 sums of squares, all-reduced layout
    by layout over the mesh dims it is sharded over; the global norms, rounded to each tensor's
    math type, then go through lars_ratios itself as one-element tensors (the norm of ``[x]`` is
    ``|x|``), so the ratio's formula and rounding are the op's."""
    import torch
    import torch.distributed as dist

    from . import ops

    squares = torch.stack([
        torch.stack(torch._foreach_norm(local_params, 2, dtype=torch.float64)),
        torch.stack(torch._foreach_norm(local_grads, 2, dtype=torch.float64)),
    ]).square()
    for mesh, dims, index in _layouts(params, "fusedlr.Lars"):
        part = squares[:, index].contiguous()
        _all_reduce_over(part, mesh, dims, dist.ReduceOp.SUM)
        squares[:, index] = part
    norms = squares.sqrt()
    math = [torch.float64 if p.dtype == torch.float64 else torch.float32 for p in local_params]
    w = [norms[0, i:i + 1].to(m) for i, m in enumerate(math)]
    g = [norms[1, i:i + 1].to(m) for i, m in enumerate(math)]
    return ops.lars_ratios(w, g, **lars)
