"""Schedule-free SGD, fused: ``fusedlr.ScheduleFreeSGD`` for ``schedulefree.SGDScheduleFree``."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from . import _C, _group_cache
from ._checks import FUSED_DTYPES
from ._dtensor import is_dtensor
from .optim import SGD

__all__ = ["SGDScheduleFree", "ScheduleFreeSGD"]

# The group keys of the reference implementation, which its state_dict carries (and ours).
_GROUP_STATE = ("k", "weight_sum", "lr_max", "scheduled_lr")


class ScheduleFreeSGD(Optimizer):
    r"""Schedule-free SGD (Defazio et al., "The Road Less Scheduled", arXiv:2405.15682): no learning
    rate schedule, yet the quality of a tuned one, without knowing the training length.

    The numbers of ``schedulefree.SGDScheduleFree``, argument for argument (an import swap).
    Each parameter :math:`y` (where gradients are taken) has a sequence :math:`z`; step
    :math:`k` with :math:`\gamma_k = \gamma \min(\frac{k+1}{W}, 1)` (a linear warmup of ``warmup_steps``
    :math:`W`), :math:`\gamma_{\max} = \max_{j \le k} \gamma_j`,
    :math:`w_k = (k+1)^r \gamma_{\max}^{p}` (``weight_lr_power`` :math:`p`) and :math:`c_k = w_k / \sum_{j \le k} w_j`:

    .. math::
        g &= \nabla + \lambda y, \qquad y \leftarrow (1 - c_k)\, y + c_k z, \\
        y &\leftarrow y + \gamma_k (\mu (1 - c_k) - 1)\, g, \qquad z \leftarrow z - \gamma_k g

    The model must be in the optimizer's mode: ``opt.train()`` before training steps (the
    parameters are then :math:`y`) and ``opt.eval()`` before evaluation and checkpoints (the
    parameters are then the average :math:`x`, where :math:`y = \mu x + (1 - \mu) z`);
    :meth:`step` in eval mode raises ``RuntimeError``.

    Fused: the group's scalars (:math:`k`, :math:`\sum w`, :math:`\gamma_{\max}`) advance and every
    element is stepped in one native call per group (``torch.ops.fusedlr.sf_sgd_``: read
    :math:`y, \nabla, z`, write :math:`y, z`; from the first step through the group's params and
    :math:`z` held in C++), and ``train()``/``eval()`` are one call each (``sf_lerp_``).
    Differences from the reference: ``p.grad`` is read, not written (the reference adds the
    weight decay into it); ``foreach`` is ignored; a parameter that is a view of a larger tensor
    is refused.

    Args:
        params: parameters or param groups.
        lr: :math:`\gamma` (default 1.0).
        momentum: :math:`\mu`, in (0, 1) (default 0.9).
        weight_decay: :math:`\lambda` (default 0).
        warmup_steps: :math:`W` (default 0: none).
        r: the averaging weights' polynomial power (default 0).
        weight_lr_power: :math:`p` (default 2).
        foreach: ignored (always fused).
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1.0, momentum: float = 0.9, weight_decay: float = 0,
                 warmup_steps: int = 0, r: float = 0.0, weight_lr_power: float = 2,
                 foreach: bool | None = hasattr(torch, "_foreach_mul_")) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if momentum <= 0 or momentum >= 1:
            raise ValueError(f"Momentum must be between 0 and 1 exclusive: {momentum}")
        defaults = dict(lr=lr, momentum=momentum, r=r, k=0, warmup_steps=warmup_steps, train_mode=False,
                        weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0, weight_lr_power=weight_lr_power,
                        weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)
        self.state = _group_cache.State(self.state)  # counts changes: the held groups depend on them

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.state = _group_cache.State(self.state)

    def _switch(self, to_train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            pairs = [(p, self.state[p]["z"]) for p in group["params"] if "z" in self.state[p]]
            if pairs:
                m = group["momentum"]
                torch.ops.fusedlr.sf_lerp_([p for p, _ in pairs], [z for _, z in pairs], 1 - m if to_train else 1 - 1 / m)
            group["train_mode"] = to_train

    @torch.no_grad()
    def eval(self) -> None:
        """Put the averaged point :math:`x` in the parameters (for evaluation and checkpoints)."""
        self._switch(False)

    @torch.no_grad()
    def train(self) -> None:
        """Put the training point :math:`y` in the parameters (before training steps)."""
        self._switch(True)

    # Step hooks as torch runs them, its profiler range only while a profiler runs (fusedlr.SGD's).
    profile_hook_step = staticmethod(SGD.profile_hook_step)

    def _step_lists(self, group: dict, state: Tensor, hyper: tuple) -> None:
        """The step through the op with Python lists: the parameters that have a gradient (a first
        step, a parameter without a gradient, a group not held)."""
        active = [p for p in group["params"] if p.grad is not None]
        states = [self.state[p] for p in active]
        for p, st in zip(active, states):
            if "z" not in st:
                with torch.no_grad():
                    st["z"] = torch.clone(p, memory_format=torch.preserve_format).detach()
        torch.ops.fusedlr.sf_sgd_(active, [p.grad for p in active], [st["z"] for st in states], state, *hyper)

    def _hold(self, group: dict) -> tuple | None:
        """The group's params and z held in C++ for the next steps (with the state's change count
        they depend on), when every parameter has its z: real floating, dense, one device."""
        params = group["params"]
        states = [self.state.get(p, {}) for p in params]
        if not params or any("z" not in st for st in states) or any(is_dtensor(p) for p in params) or (
                any(p.dtype not in FUSED_DTYPES for p in params)) or len({p.device for p in params}) > 1:
            return None
        return (_group_cache._key(group, self.state), _C.SfGroup(params, [st["z"] for st in states]))

    def _state_tensor(self, index: int, group: dict, device: torch.device) -> Tensor:
        """The group's [k, weight_sum, lr_max, scheduled_lr] as the op advances it, kept between
        steps; made again from the group when its numbers changed (a loaded state_dict)."""
        cache = self.__dict__.setdefault("_sf_states", {})
        values = tuple(float(group[key]) for key in _GROUP_STATE)
        held = cache.get(index)
        if held is None or held[0] != values or held[1].device != device:
            held = cache[index] = (values, torch.tensor(values, dtype=torch.float64, device=device))
        return held[1]

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One schedule-free step of every parameter with a gradient (the optimizer must be in train mode)."""
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError("ScheduleFreeSGD.step: the optimizer is in eval mode; call opt.train() before "
                               "training steps and opt.eval() before evaluation (as schedulefree requires)")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # (No torch.no_grad() around the step: the op is not differentiable, its autograd kernel falls through.)
        held_groups = self.__dict__.setdefault("_sf_held", {})
        for index, group in enumerate(self.param_groups):
            params = group["params"]
            state = self._state_tensor(index, group, params[0].device if params else torch.device("cpu"))
            hyper = (float(group["lr"]), float(group["momentum"]), float(group["weight_decay"]),
                     float(group["warmup_steps"]), float(group["r"]), float(group["weight_lr_power"]))
            held = held_groups.get(index)
            if held is None or not _group_cache._same_key(held[0], _group_cache._key(group, self.state)) or (
                    held[1].step(params, state, *hyper) < 0):
                self._step_lists(group, state, hyper)
                held_groups[index] = self._hold(group)
            values = state.tolist()  # (on CUDA a synchronisation: the group's numbers are plain floats, as the reference's)
            group["k"], group["weight_sum"], group["lr_max"], group["scheduled_lr"] = int(values[0]), *values[1:]
            self._sf_states[index] = (tuple(values), state)  # (what _state_tensor compares the group with)
        return loss


SGDScheduleFree = ScheduleFreeSGD
