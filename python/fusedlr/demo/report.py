"""What a demo run leaves behind: metrics.json and PNG plots (also for --compare).

Every file is written whole or not at all (a temporary file beside it, then ``os.replace``), and
the JSON is strict: a value that is not finite is written as ``null``.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from .train import RunResult


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    A reader sees the previous file or the complete new one, never a part of it. The temporary
    name keeps ``path``'s suffix, so writers that pick the format from it (matplotlib) still can.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _strict(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def write_json(payload: Any, path: Path) -> None:
    text = json.dumps(_strict(payload), indent=1, allow_nan=False)
    write_atomically(path, lambda tmp: tmp.write_text(text))


def write_metrics(result: RunResult, path: Path) -> None:
    write_json({
        "config": {**result.config, "dataset": result.dataset},
        "epochs": [asdict(e) for e in result.epochs],
        "lr_per_step": result.lr_per_step,
    }, path)


def plot_runs(results: dict[str, RunResult], path: Path, title: str = "") -> None:
    """LR per step, training loss and test accuracy per epoch, every run on shared axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lr, ax_loss, ax_acc) = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    for name, r in results.items():
        steps_per_epoch = len(r.lr_per_step) / max(1, len(r.epochs))
        ax_lr.plot([s / steps_per_epoch for s in range(len(r.lr_per_step))], r.lr_per_step, label=name, lw=1.4)
        epochs = [e.epoch for e in r.epochs]
        ax_loss.plot(epochs, [e.loss for e in r.epochs], marker="o", ms=3, label=name)
        ax_acc.plot(epochs, [100 * e.test_accuracy for e in r.epochs], marker="o", ms=3, label=name)
    ax_lr.set(title="learning rate per step", xlabel="epoch", ylabel="lr")
    ax_loss.set(title="training loss (epoch mean)", xlabel="epoch", ylabel="cross-entropy", yscale="log")
    ax_acc.set(title="test accuracy", xlabel="epoch", ylabel="%")
    for ax in (ax_lr, ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if len(results) > 1:
        ax_acc.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    try:
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        plt.close(fig)
