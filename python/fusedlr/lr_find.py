"""The learning-rate range test (the "LR finder" of fastai's ``lr_find`` and torch-lr-finder).

Train for a few iterations while the learning rate grows from ``start_lr`` to ``end_lr`` along
one of fusedlr's closed-form schedules (exponential or linear), record the smoothed loss, stop
when it diverges, then put the model and the optimizer back exactly as they were.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import schedules

__all__ = ["lr_find", "LRFinderResult"]


@dataclass
class LRFinderResult:
    """What the range test saw and what it suggests.

    Attributes:
        lrs: the learning rate of each iteration that ran.
        losses: the smoothed (bias-corrected exponential moving average) loss after each.
        raw_losses: the loss of each iteration's batch.
        steepest: the lr where the smoothed loss falls fastest against log(lr).
        valley: the lr two thirds of the way down the longest descent of the smoothed loss
            (more robust on noisy curves; the default ``suggestion``).
        diverged: True when the test stopped early because the loss blew up.
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    steepest: float | None
    valley: float | None
    diverged: bool
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def suggestion(self) -> float | None:
        return self.valley if self.valley is not None else self.steepest

    def plot(self, path: str | Path | None = None, ax=None, title: str | None = None):
        """Smoothed loss against lr on a log axis, the suggestions marked; saved to ``path`` (PNG)."""
        import matplotlib

        if ax is None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
        ax.plot(self.lrs, self.losses, lw=1.6, label="smoothed loss")
        ax.plot(self.lrs, self.raw_losses, lw=0.6, alpha=0.35, label="batch loss")
        for lr, name, color in ((self.valley, "valley", "tab:red"), (self.steepest, "steepest", "tab:green")):
            if lr is not None:
                i = int(np.argmin(np.abs(np.log(self.lrs) - math.log(lr))))
                ax.scatter([lr], [self.losses[i]], color=color, zorder=3, label=f"{name}: {lr:.2e}")
        ax.set(xscale="log", xlabel="learning rate", ylabel="loss", title=title or "learning-rate range test")
        finite = [v for v in self.losses if math.isfinite(v)]
        if finite:
            ax.set_ylim(min(finite) - 0.05 * abs(min(finite)), min(max(finite), 4 * finite[0]) * 1.05)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        if fig is not None:
            if path is not None:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                fig.savefig(path, dpi=110)
            plt.close(fig)
        return ax


def _check(start_lr: float, end_lr: float, num_iter: int, mode: str, smooth: float, diverge: float) -> None:
    if not (math.isfinite(start_lr) and start_lr > 0):
        raise ValueError(f"start_lr must be a positive finite number, got {start_lr}")
    if not (math.isfinite(end_lr) and end_lr > start_lr):
        raise ValueError(f"end_lr must be greater than start_lr ({start_lr}), got {end_lr}")
    if not isinstance(num_iter, int) or num_iter < 2:
        raise ValueError(f"num_iter must be an integer >= 2, got {num_iter!r}")
    if mode not in ("exp", "linear"):
        raise ValueError(f"mode must be 'exp' or 'linear', got {mode!r}")
    if not 0 < smooth <= 1:
        raise ValueError(f"smooth must be in (0, 1], got {smooth}")
    if not diverge > 1:
        raise ValueError(f"diverge must be > 1, got {diverge}")


def range_schedule(start_lr: float, end_lr: float, num_iter: int, mode: str = "exp") -> schedules.Schedule:
    """The test's schedule as a factor of ``start_lr``: step i of num_iter goes from 1 to end/start.

    exp: :math:`(e/s)^{i/(n-1)}`; linear: :math:`1 + (e/s - 1)\\, i/(n-1)`.
    """
    ratio = end_lr / start_lr
    if mode == "exp":
        return schedules.exponential(gamma=ratio ** (1.0 / (num_iter - 1)))
    return schedules.linear(start_factor=1.0, end_factor=ratio, total_steps=num_iter - 1)


def _steepest(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    if len(lrs) < 3:
        return None
    slope = np.gradient(losses, np.log(lrs))
    # Skip the first and last points: their one-sided differences are the noisiest.
    inner = slope[1:-1]
    return float(lrs[1 + int(np.argmin(inner))])


def _valley(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """Two thirds of the way down the longest decreasing subsequence of the smoothed loss."""
    n = len(losses)
    if n < 3:
        return None
    length = np.ones(n, dtype=int)
    for i in range(1, n):
        earlier = losses[:i] > losses[i]
        if earlier.any():
            length[i] = 1 + int(length[:i][earlier].max())
    end = int(np.argmax(length))
    start = end - int(length[end]) + 1
    index = start + (2 * (end - start)) // 3
    return float(lrs[index])


def _cycle(data: Iterable):
    """Batches of ``data`` again and again (a re-iterable such as a DataLoader), once for an iterator."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            return


def lr_find(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    data: Iterable,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    mode: str = "exp",
    smooth: float = 0.05,
    diverge: float = 5.0,
    *,
    device: torch.device | str | None = None,
    progress: Callable[[int, float, float], None] | None = None,
) -> LRFinderResult:
    r"""Run the learning-rate range test and restore everything afterwards.

    Iteration :math:`i = 0 \dots n-1` trains on one batch with every param group's lr set to
    ``start_lr * s(i)`` (:func:`range_schedule`: exponential or linear from ``start_lr`` to
    ``end_lr``). The loss is smoothed as :math:`m_i = (1-\beta) m_{i-1} + \beta \ell_i`,
    :math:`\hat m_i = m_i / (1 - (1-\beta)^{i+1})` with :math:`\beta` = ``smooth``; the test stops
    when :math:`\hat m_i > \text{diverge} \cdot \min_{j \le i} \hat m_j` or the loss is not finite.
    Model parameters and buffers, the optimizer's state and param groups (lrs included) and the
    model's train/eval mode are put back exactly; the global RNG state is not touched beyond
    what training draws. A :class:`fusedlr.SGD` schedule evaluated in the step
    (``schedule=``) is switched off during the test, so every recorded lr is the lr the step
    used; the suggestion is then the base (peak) lr to give that optimizer.

    Args:
        model: the model to probe (trained in place, then restored).
        optimizer: any ``torch.optim.Optimizer`` over the model's parameters (fastest with fusedlr.SGD).
        loss_fn: ``loss_fn(model_output, target) -> scalar tensor``.
        data: an iterable of ``(input, target)`` batches; cycled if shorter than ``num_iter``.
        start_lr, end_lr: the lr range, ``0 < start_lr < end_lr``. Defaults 1e-7 and 10.
        num_iter: iterations at most (>= 2). Default 100.
        mode: ``"exp"`` (default) or ``"linear"`` growth.
        smooth: weight of the newest loss in the moving average, in (0, 1]. Default 0.05.
        diverge: stop when the smoothed loss exceeds this multiple of its best (> 1). Default 5.
        device: move each batch there (default: leave batches where they are).
        progress: called as ``progress(i, lr, smoothed_loss)`` after each iteration.

    Returns:
        An :class:`LRFinderResult` with the history and the ``valley``/``steepest`` suggestions.

    Example:
        >>> result = fusedlr.lr_find(model, fusedlr.SGD(model.parameters(), lr=0.1, momentum=0.9),
        ...                          torch.nn.functional.cross_entropy, loader)  # doctest: +SKIP
        >>> result.suggestion, result.plot("lr_find.png")                           # doctest: +SKIP
    """
    _check(float(start_lr), float(end_lr), num_iter, mode, float(smooth), float(diverge))
    schedule = range_schedule(float(start_lr), float(end_lr), num_iter, mode)
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(optimizer.state_dict())
    saved_lrs = [group["lr"] for group in optimizer.param_groups]
    was_training = model.training

    lrs: list[float] = []
    losses: list[float] = []
    raw: list[float] = []
    diverged = False
    try:
        for group in optimizer.param_groups:
            if group.get("schedule") is not None:
                group["schedule"] = None  # restored with the optimizer's state below
        model.train()
        average, best = 0.0, math.inf
        batches = _cycle(data)
        for i in range(num_iter):
            try:
                inputs, targets = next(batches)
            except StopIteration:  # a one-shot iterator ran out
                break
            if device is not None:
                inputs, targets = inputs.to(device), targets.to(device)
            lr = schedule(i, float(start_lr))
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            average = (1 - smooth) * average + smooth * value
            smoothed = average / (1 - (1 - smooth) ** (i + 1))
            lrs.append(lr)
            raw.append(value)
            losses.append(smoothed)
            if progress is not None:
                progress(i, lr, smoothed)
            if not math.isfinite(smoothed) or smoothed > diverge * best:
                diverged = True
                break
            best = min(best, smoothed)
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_opt)
        for group, lr in zip(optimizer.param_groups, saved_lrs):
            group["lr"] = lr
        model.train(was_training)

    # Suggestions from the part before the blow-up (the last point is the divergence itself).
    usable = len(lrs) - 1 if diverged else len(lrs)
    lr_arr, loss_arr = np.asarray(lrs[:usable]), np.asarray(losses[:usable])
    finite = np.isfinite(loss_arr)
    lr_arr, loss_arr = lr_arr[finite], loss_arr[finite]
    return LRFinderResult(
        lrs=lrs, losses=losses, raw_losses=raw, steepest=_steepest(lr_arr, loss_arr),
        valley=_valley(lr_arr, loss_arr), diverged=diverged,
        config=dict(start_lr=start_lr, end_lr=end_lr, num_iter=num_iter, mode=mode, smooth=smooth, diverge=diverge),
    )
