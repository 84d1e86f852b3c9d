"""One training run of the demo: model, optimizer, schedule, epochs, metrics."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

import fusedlr

from .data import Dataset, Split
from .model import SimpleNet
from .schedulers import SchedulerConfig, Stepper, make_scheduler


@dataclass
class RunConfig:
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    optimizer: str = "fusedlr"  # or "torch", "lars"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    clip_grad_norm: float | None = None  # global-norm clipping (fusedlr: inside the step; torch: clip_grad_norm_)
    weight_decay: float = 0.0
    seed: int = 0
    progress: bool | None = None  # None: a bar when stderr is a terminal


@dataclass
class EpochMetrics:
    epoch: int
    loss: float  # mean training loss over the epoch's batches
    lr: float  # the learning rate after the epoch's scheduler steps (what the classic example prints)
    test_accuracy: float
    seconds: float


@dataclass
class RunResult:
    config: dict[str, Any]
    dataset: str
    epochs: list[EpochMetrics]
    lr_per_step: list[float]


class Diverged(RuntimeError):
    """The training loss stopped being finite; ``result`` holds the epochs up to and with that one."""

    def __init__(self, result: RunResult) -> None:
        last = result.epochs[-1]
        super().__init__(f"training diverged at epoch {last.epoch} (loss {last.loss})")
        self.result = result


@dataclass
class Run:
    """A run set up and ready to train: the model, its optimizer and its schedule."""

    config: RunConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Stepper
    steps_per_epoch: int


def make_optimizer(name: str, params, lr: float, momentum: float, clip_grad_norm: float | None = None,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """fusedlr.SGD or fusedlr.Lars (clipping inside their step when ``clip_grad_norm``), or
    torch.optim.SGD (the training loop then calls torch.nn.utils.clip_grad_norm_ before each step)."""
    if name == "fusedlr":
        return fusedlr.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, max_grad_norm=clip_grad_norm)
    if name == "lars":
        return fusedlr.Lars(params, lr=lr, momentum=momentum, weight_decay=weight_decay, max_grad_norm=clip_grad_norm)
    if name == "schedule-free":
        if clip_grad_norm is not None:
            raise ValueError("--clip-grad-norm is not available with the schedule-free optimizer")
        return fusedlr.ScheduleFreeSGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "torch":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'fusedlr', 'torch', 'lars' or 'schedule-free', got {name!r}")


@torch.no_grad()
def _optimizer_mode(optimizer: torch.optim.Optimizer, train: bool) -> None:
    """Schedule-free SGD keeps two points: train() before steps, eval() before evaluating."""
    if isinstance(optimizer, fusedlr.ScheduleFreeSGD):
        optimizer.train() if train else optimizer.eval()


def accuracy(model: nn.Module, split: Split, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(split.labels), batch_size):
        logits = model(split.images[i : i + batch_size])
        correct += (logits.argmax(1) == split.labels[i : i + batch_size]).sum().item()
    model.train()
    return correct / len(split.labels)


def _progress(total: int, desc: str, enabled: bool | None):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)


def batches(split: Split, batch_size: int, seed: int):
    """A re-iterable of shuffled (images, labels) batches: a new order each pass, by indexing."""

    class Batches:
        def __init__(self) -> None:
            self.generator = torch.Generator().manual_seed(seed)

        def __iter__(self):
            order = torch.randperm(len(split.labels), generator=self.generator)
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                yield split.images[idx], split.labels[idx]

    return Batches()


def prepare(data: Dataset, config: RunConfig) -> Run:
    """Build the model, optimizer and schedule of a run, before any training.

    Every argument the optimizer and the schedule classes refuse raises here (ValueError or
    TypeError naming it), so a caller can check several runs before training any.
    """
    torch.manual_seed(config.seed)
    model = SimpleNet()
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.momentum, config.clip_grad_norm,
                               config.weight_decay)
    steps_per_epoch = (len(data.train.labels) + config.batch_size - 1) // config.batch_size
    scheduler = make_scheduler(config.scheduler, optimizer, epochs=config.epochs, steps_per_epoch=steps_per_epoch)
    return Run(config, model, optimizer, scheduler, steps_per_epoch)


def train(data: Dataset, config: RunConfig, log=print) -> RunResult:
    """Train SimpleNet on ``data`` with ``config``; one line per epoch through ``log``."""
    return fit(prepare(data, config), data, log)


def fit(run: Run, data: Dataset, log=print) -> RunResult:
    """Train a prepared run on ``data``; one line per epoch through ``log``.

    Raises :class:`Diverged` after the first epoch whose mean loss is not finite.
    """
    config, model, optimizer, scheduler, steps_per_epoch = (
        run.config, run.model, run.optimizer, run.scheduler, run.steps_per_epoch)
    criterion = nn.CrossEntropyLoss()
    n = len(data.train.labels)
    shuffle = torch.Generator().manual_seed(config.seed)

    epochs: list[EpochMetrics] = []
    lr_per_step: list[float] = []
    _optimizer_mode(optimizer, train=True)
    for epoch in range(config.epochs):
        start = time.perf_counter()
        order = torch.randperm(n, generator=shuffle)
        total_loss = torch.zeros(())
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", config.progress)
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            images, labels = data.train.images[idx], data.train.labels[idx]
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            lr_per_step.append(float(optimizer.param_groups[0]["lr"]))
            if config.clip_grad_norm is not None and not isinstance(optimizer, fusedlr.SGD):
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            optimizer.step()
            scheduler.after_batch()
            total_loss += loss.detach()
            if bar is not None:
                bar.update()
                if b % 50 == 0:
                    bar.set_postfix(loss=f"{loss.item():.4f}")
        if bar is not None:
            bar.close()
        mean_loss = total_loss.item() / steps_per_epoch
        _optimizer_mode(optimizer, train=False)
        test_acc = accuracy(model, data.test)
        _optimizer_mode(optimizer, train=True)
        scheduler.after_epoch(metric=mean_loss)
        lr = float(optimizer.param_groups[0]["lr"])
        seconds = time.perf_counter() - start
        epochs.append(EpochMetrics(epoch + 1, mean_loss, lr, test_acc, seconds))
        log(f"Epoch {epoch + 1}/{config.epochs}, Loss: {mean_loss:.4f}, Learning Rate: {lr:.6f}, "
            f"Test Accuracy: {test_acc:.4f}, Time: {seconds:.1f}s")
        if not math.isfinite(mean_loss):
            raise Diverged(RunResult(_config_dict(config), data.name, epochs, lr_per_step))
    return RunResult(config=_config_dict(config), dataset=data.name, epochs=epochs, lr_per_step=lr_per_step)


def _config_dict(config: RunConfig) -> dict[str, Any]:
    d = asdict(config)
    d.pop("progress")
    return d
