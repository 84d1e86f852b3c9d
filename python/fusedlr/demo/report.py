"""What a demo run leaves behind: metrics.json and PNG plots (also for --compare)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .train import RunResult


def write_metrics(result: RunResult, path: Path) -> None:
    payload = {
        "config": {**result.config, "dataset": result.dataset},
        "epochs": [asdict(e) for e in result.epochs],
        "lr_per_step": result.lr_per_step,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
