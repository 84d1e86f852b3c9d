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
