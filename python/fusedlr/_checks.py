"""fusedlr.SGD's side of the checks: it asks the C++ ones and words their answers for a param group.

Every check of what reaches the op is made once, in C++ (``cpp/src/sgd_check.cpp``): the
hyper-parameters (``_C.sgd_hyperparameter_problem``), and each tensor of a call, reported as
``params[i]``, ``grads[i]``, ``momentum_buffers[i]`` or ``steps[i]`` of that call. This module
translates: a hyper-parameter problem into torch.optim.SGD's message, and tensor ``i`` of a call
into "param group g, params[j]", without checking anything a second time.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import Tensor

from . import _C

# The storage dtypes the kernels step (C++'s one list), and the complex dtypes stepped as their real views.
FUSED_DTYPES = tuple(getattr(torch, name) for name in _C.supported_dtypes)


def is_steppable(dtype: torch.dtype) -> bool:
    """Whether the fused step updates parameters of ``dtype`` (complex ones as real views)."""
    return dtype in FUSED_DTYPES or (dtype.is_complex and dtype.to_real() in FUSED_DTYPES)


def check_hyperparameters(lr: Any, momentum: Any, dampening: Any, weight_decay: Any, nesterov: Any) -> None:
    """torch.optim.SGD.__init__'s checks, with its error types and messages, answered by the op's
    own check (``_C.sgd_hyperparameter_problem``), which also refuses NaN and infinite values."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    given = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay}
    shown = {k: v.item() if isinstance(v, Tensor) and v.numel() == 1 else v for k, v in given.items()}
    numbers = {}
    for key, value in shown.items():
        try:
            numbers[key] = float(value)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{key} must be a number, got {type(given[key]).__name__}") from error
    problem = _C.sgd_hyperparameter_problem(**numbers, nesterov=bool(nesterov))
    if problem is not None:
        raise ValueError({
            "lr": f"Invalid learning rate: {shown['lr']}",
            "momentum": f"Invalid momentum value: {shown['momentum']}",
            "dampening": f"Invalid dampening value: {shown['dampening']}",
            "weight_decay": f"Invalid weight_decay value: {shown['weight_decay']}",
            "nesterov": "Nesterov momentum requires a momentum and zero dampening",
        }[problem])


def check_param_dtypes(params: list[Tensor], group_index: int) -> None:
    """TypeError naming the first parameter of a new group that the fused step cannot update.
    (torch.optim.SGD accepts an integer tensor and fails, or truncates, only once it has a grad.)"""
    for i, p in enumerate(params):
        if not is_steppable(p.dtype):
            supported = ", ".join(map(str, FUSED_DTYPES))
            raise TypeError(f"fusedlr.SGD: param group {group_index}, params[{i}] has dtype {p.dtype}; "
                            f"supported: {supported} and their complex types")


_TENSOR_OF_CALL = re.compile(r"\b(params|grads|momentum_buffers|steps)\[(\d+)\]")
_ROLE = {"params": "the parameter", "grads": "its grad", "momentum_buffers": "its momentum_buffer",
         "steps": "its step counter"}


def renumbered(error: BaseException, index: list[int]) -> BaseException:
    """The op's ``error`` about a call over ``[tensors[i] for i in index]``, numbered as in the whole list."""
    text = _TENSOR_OF_CALL.sub(lambda m: f"{m.group(1)}[{index[int(m.group(2))]}]", str(error))
    return type(error)(text)


def in_group(error: BaseException, group_index: int, positions: list[int]) -> BaseException | None:
    """The op's ``error`` about tensor ``i`` of a call, reworded about ``params[positions[i]]`` of
    param group ``group_index`` (same type; None when the error names no tensor)."""
    text = str(error)
    found = _TENSOR_OF_CALL.search(text)
    if not text.startswith("fusedlr.sgd_: ") or found is None or int(found.group(2)) >= len(positions):
        return None
    i = int(found.group(2))
    where = f"fusedlr.SGD: param group {group_index}, params[{positions[i]}]"
    body = _TENSOR_OF_CALL.sub(lambda m: _ROLE[m.group(1)] if int(m.group(2)) == i else m.group(0),
                               text.removeprefix("fusedlr.sgd_: "))
    if body.startswith("the parameter "):
        return type(error)(f"{where} {body.removeprefix('the parameter ')}")
    return type(error)(f"{where}: {body}")


def tensor_positions(group: dict[str, Any]) -> list[int]:
    """The positions in ``group["params"]`` of the tensors of the op call that steps the group
    (the parameters with a dense grad, in order): how tensor ``i`` of the call is named."""
    return [j for j, p in enumerate(group["params"]) if p.grad is not None and not p.grad.is_sparse]


def loaded_counter(value: Any, where: str) -> float:
    """A loaded momentum step counter: a finite number >= 0 (a number or a one-element tensor)."""
    try:
        count = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{where} must be a number or a one-element tensor, got {type(value).__name__}") from None
    if not (math.isfinite(count) and count >= 0):
        raise ValueError(f"{where} must be a finite count >= 0, got {count}")
    return count


def where(param_groups: list[dict[str, Any]], p: Tensor) -> str:
    """'fusedlr.SGD: param group g, params[i]' for an error message about parameter p."""
    for g, group in enumerate(param_groups):
        for i, q in enumerate(group["params"]):
            if q is p:
                return f"fusedlr.SGD: param group {g}, params[{i}]"
    return "fusedlr.SGD"
