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


def global_grad_norm(grads: list[Tensor], norm_type: float, max_norm: float, grad_scale: Tensor | None) -> Tensor:
    """``[total, coef]`` of gradients sharded as DTensors (FSDP2): each rank accumulates the terms
    of its local shards (fusedlr.ops.grad_norm_terms), the terms are all-reduced over the mesh
    (sum, or max for the inf-norm), and the norm and coefficient come from the reduced terms, as
    torch's clip_grad_norm_ over DTensors gives them. Every grad must be a DTensor sharded (no
    Replicate or Partial placement: its elements would be counted once per rank) on one mesh."""
    import torch
    import torch.distributed as dist

    from . import ops

    dtensor = sys.modules["torch.distributed.tensor"].DTensor
    if not all(isinstance(g, dtensor) for g in grads):
        raise TypeError("fusedlr.SGD(max_grad_norm=...): DTensor and plain gradients mixed")
    meshes = {g.device_mesh for g in grads}
    if len(meshes) > 1 or any(not pl.is_shard() for g in grads for pl in g.placements):
        raise NotImplementedError("fusedlr.SGD(max_grad_norm=...): the fused clip takes DTensor gradients sharded "
                                  "(Shard placements only) on one device mesh; clip others with "
                                  "torch.nn.utils.clip_grad_norm_")
    mesh = next(iter(meshes))
    terms = ops.grad_norm_terms([g.to_local() for g in grads], norm_type)
    op = dist.ReduceOp.MAX if norm_type == float("inf") else dist.ReduceOp.SUM
    for dim in range(mesh.ndim):
        dist.all_reduce(terms, op=op, group=mesh.get_group(dim))
    dtype = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    return ops.clip_coefficient(terms, norm_type, max_norm, grad_scale, dtype)


def global_lars_ratios(params: list[Tensor], grads: list[Tensor], local_params: list[Tensor],
                       local_grads: list[Tensor], **lars: Any) -> Tensor:
    """fusedlr.ops.lars_ratios of DTensor parameters, whose norms span their shards (FSDP2): each
    rank's local shards give float64 sums of squares, all-reduced over the mesh; the global norms,
    rounded to each tensor's math type, then go through lars_ratios itself as one-element tensors
    (the norm of ``[x]`` is ``|x|``), so the ratio's formula and rounding are the op's. Every
    parameter must be sharded (Shard placements only) on one mesh, as for the fused clip."""
    import torch
    import torch.distributed as dist

    from . import ops

    meshes = {p.device_mesh for p in params}
    if len(meshes) > 1 or any(not pl.is_shard() for p in params for pl in p.placements):
        raise NotImplementedError("fusedlr.Lars: DTensor parameters must be sharded (Shard placements only) on one "
                                  "device mesh; a Replicate or Partial placement would count elements once per rank")
    mesh = next(iter(meshes))
    squares = torch.stack([
        torch.stack(torch._foreach_norm(local_params, 2, dtype=torch.float64)),
        torch.stack(torch._foreach_norm(local_grads, 2, dtype=torch.float64)),
    ]).square()
    for dim in range(mesh.ndim):
        dist.all_reduce(squares, op=dist.ReduceOp.SUM, group=mesh.get_group(dim))
    norms = squares.sqrt()
    math = [torch.float64 if p.dtype == torch.float64 else torch.float32 for p in local_params]
    w = [norms[0, i:i + 1].to(m) for i, m in enumerate(math)]
    g = [norms[1, i:i + 1].to(m) for i, m in enumerate(math)]
    return ops.lars_ratios(w, g, **lars)
