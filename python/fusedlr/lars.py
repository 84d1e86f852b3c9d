"""LARS / LARC (layer-wise adaptive rate scaling), fused: ``fusedlr.Lars`` for ``timm.optim.Lars``."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .optim import SGD, ParamsT

__all__ = ["LARS", "Lars"]


class Lars(SGD):
    r"""LARS for SGD with momentum (You et al., "Large Batch Training of Convolutional Networks",
    arXiv:1708.03888), with LARC's clipping; the numbers of ``timm.optim.Lars``, argument for
    argument, so ``from timm.optim import Lars`` can be swapped for ``from fusedlr import Lars``.

    For each parameter tensor :math:`p` with gradient :math:`g`, when the group has weight decay
    :math:`\lambda \ne 0` (or ``always_adapt``):

    .. math::
        r &= \frac{\eta\,\|p\|}{\|g\| + \lambda\|p\| + \epsilon} \quad (1 \text{ when } \|p\| \text{ or } \|g\| \text{ is } 0),
        \qquad r \leftarrow \min(r / \gamma, 1) \text{ with trust\_clip (LARC)} \\
        g &\leftarrow (g + \lambda p)\, r

    then the SGD-momentum step with :math:`g` (no further weight decay): :math:`b = \mu b +
    (1 - \tau) g` (:math:`b = g` on the first step), :math:`g = g + \mu b` with Nesterov else
    :math:`b`, :math:`p \leftarrow p - \gamma g`. Without weight decay or ``always_adapt`` it is
    plain SGD, as in timm; exclude biases and norm layers by putting them in a group with
    ``weight_decay=0``.

    Fused: one read of every parameter and gradient for all the norms (``fusedlr.ops.lars_ratios``,
    no host synchronisation), then the update pass of :class:`fusedlr.SGD` with each tensor's ratio
    (``grad_ratios``). DTensor parameters sharded on one mesh (FSDP2's ``fully_shard``): each
    tensor's norms are taken over all its shards (the local sums of squares all-reduced). Everything else is :class:`fusedlr.SGD`'s: ``state_dict`` (loads into
    ``timm.optim.Lars`` and back), GradScaler, ``max_grad_norm``, an in-kernel ``schedule`` (not
    with ``trust_clip``, whose ratio needs the step's lr on the host side of the op).

    Args:
        params: parameters or param groups.
        lr: learning rate :math:`\gamma` (default 1.0, as timm).
        momentum: :math:`\mu` (default 0).
        dampening: :math:`\tau` (default 0).
        weight_decay: :math:`\lambda` (default 0).
        nesterov: Nesterov momentum (default False).
        trust_coeff: :math:`\eta` (default 0.001).
        eps: :math:`\epsilon` (default 1e-8).
        trust_clip: LARC's clipping of the ratio (default False).
        always_adapt: apply the ratio even when ``weight_decay`` is 0 (default False).
        foreach: ignored (always fused).
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1.0, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, trust_coeff: float = 0.001, eps: float = 1e-8,
                 trust_clip: bool = False, always_adapt: bool = False, foreach: bool | None = None, **fused: Any) -> None:
        self._lars_defaults = {"trust_coeff": trust_coeff, "eps": eps, "trust_clip": trust_clip,
                               "always_adapt": always_adapt}
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, foreach=foreach, **fused)

    def _group_defaults(self) -> dict[str, Any]:
        return dict(self.__dict__.get("_lars_defaults") or {"trust_coeff": 0.001, "eps": 1e-8, "trust_clip": False,
                                                             "always_adapt": False})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        g = self.param_groups[-1]
        if g["trust_clip"] and g["schedule"] is not None:
            self.param_groups.pop()
            raise ValueError("fusedlr.Lars: trust_clip (LARC) divides the ratio by the step's lr, which an in-kernel "
                             "schedule decides inside the step; use a scheduler instead of schedule=")

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # a timm state: its keys are ours
            for key, default in self._group_defaults().items():
                group.setdefault(key, default)

    def _lars(self, group: dict[str, Any]) -> tuple[float, float, bool] | None:
        if group["weight_decay"] != 0 or group["always_adapt"]:
            return float(group["trust_coeff"]), float(group["eps"]), bool(group["trust_clip"])
        return None


LARS = Lars
