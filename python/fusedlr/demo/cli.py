"""Command line of the demo: ``python -m fusedlr.demo`` (also the ``fusedlr-demo`` script)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import data as datamod
from .report import plot_runs, write_metrics
from .schedulers import SCHEDULERS, SchedulerConfig
from .train import RunConfig, train


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m fusedlr.demo",
        description="The classic MNIST example (SimpleNet 784-128-10, SGD lr 0.1 momentum 0.9, StepLR(10, 0.1), "
        "20 epochs, batch 64) with any fusedlr schedule, on fusedlr.SGD or torch.optim.SGD.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--scheduler", default="step", choices=sorted(SCHEDULERS), help="learning-rate schedule")
    ap.add_argument("--compare", metavar="A,B,C", help="train with each of these schedules and plot them together")
    ap.add_argument("--optimizer", default="fusedlr", choices=["fusedlr", "torch"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1, help="base (peak) learning rate")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    ap.add_argument("--data-root", help="a folder with the four IDX files, or a torchvision dataset root")
    ap.add_argument("--no-download", action="store_true", help="never try to download")
    ap.add_argument("--out", default="out/demo", help="where metrics.json and the plots go")
    ap.add_argument("--lr-find", action="store_true",
                    help="run the learning-rate range test on the demo model instead of training")
    ap.add_argument("--lr-find-iters", type=int, default=100, help="iterations of the range test")
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar (default: when stderr is a terminal)")
    g = ap.add_argument_group("schedule parameters (epochs are converted to optimizer steps where a schedule is per step)")
    g.add_argument("--step-size", type=int, default=10, help="step: epochs between decays")
    g.add_argument("--gamma", type=float, default=None, help="step/multistep: 0.1; exponential: 0.8 (per epoch)")
    g.add_argument("--milestones", default="10,15", help="multistep: epochs where lr is multiplied by gamma")
    g.add_argument("--eta-min", type=float, default=0.0, help="cosine family: final/minimum lr")
    g.add_argument("--t0", type=int, default=5, help="warm-restarts: epochs of the first cycle")
    g.add_argument("--t-mult", type=float, default=2.0, help="warm-restarts: cycle growth factor")
    g.add_argument("--base-lr", type=float, default=None, help="cyclic: lower lr (default lr/10)")
    g.add_argument("--cycle-epochs", type=float, default=4.0, help="cyclic: epochs per full cycle")
    g.add_argument("--cyclic-mode", default="triangular", choices=["triangular", "triangular2", "exp_range"])
    g.add_argument("--warmup-epochs", type=float, default=1.0, help="warmup-cosine, wsd, inverse-sqrt: warmup length")
    g.add_argument("--decay", type=float, default=0.5, help="time-based: k in lr/(1+k*epoch)")
    g.add_argument("--decay-fraction", type=float, default=0.2, help="wsd: fraction of training spent decaying")
    g.add_argument("--factor", type=float, default=0.1, help="plateau: lr factor on a plateau")
    g.add_argument("--patience", type=int, default=2, help="plateau: epochs without improvement")
    return ap


def scheduler_config(name: str, args: argparse.Namespace) -> SchedulerConfig:
    return SchedulerConfig(
        name=name,
        step_size=args.step_size,
        gamma=args.gamma,
        milestones=[int(m) for m in args.milestones.split(",") if m.strip()],
        eta_min=args.eta_min,
        t0=args.t0,
        t_mult=args.t_mult,
        base_lr=args.base_lr,
        cycle_epochs=args.cycle_epochs,
        cyclic_mode=args.cyclic_mode,
        warmup_epochs=args.warmup_epochs,
        decay=args.decay,
        decay_fraction=args.decay_fraction,
        factor=args.factor,
        patience=args.patience,
    )


def run_lr_find(dataset: datamod.Dataset, args: argparse.Namespace, out: Path) -> int:
    """The range test on the demo's model, optimizer and data; writes lr_find.png and lr_find.json."""
    import json

    import torch

    import fusedlr

    from .model import SimpleNet
    from .train import batches, make_optimizer

    torch.manual_seed(args.seed)
    model = SimpleNet()
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum)
    result = fusedlr.lr_find(model, optimizer, torch.nn.functional.cross_entropy,
                             batches(dataset.train, args.batch_size, args.seed), num_iter=args.lr_find_iters)
    out.mkdir(parents=True, exist_ok=True)
    result.plot(out / "lr_find.png", title=f"{dataset.name}: SimpleNet, {args.optimizer} SGD momentum {args.momentum}")
    (out / "lr_find.json").write_text(json.dumps({
        "config": result.config, "lrs": result.lrs, "losses": result.losses, "raw_losses": result.raw_losses,
        "valley": result.valley, "steepest": result.steepest, "diverged": result.diverged}, indent=1))
    stop = "stopped when the loss diverged" if result.diverged else "ran every iteration"
    print(f"LR range test: {len(result.lrs)} iterations from {result.lrs[0]:.1e} to {result.lrs[-1]:.1e} ({stop})")
    print(f"Suggested learning rate: {result.valley:.3g} (valley), {result.steepest:.3g} (steepest descent)")
    print(f"(wrote {out}/lr_find.png and lr_find.json)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.compare.split(",")] if args.compare else [args.scheduler]
    unknown = [n for n in names if n not in SCHEDULERS]
    if unknown:
        print(f"error: unknown schedule(s) {', '.join(unknown)}; choose from {', '.join(sorted(SCHEDULERS))}",
              file=sys.stderr)
        return 2
    try:
        dataset = datamod.load(args.dataset, args.data_root, download=not args.no_download)
    except datamod.DataUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Data: {dataset.name} from {dataset.source} ({len(dataset.train.labels)} train / "
          f"{len(dataset.test.labels)} test images)")

    out = Path(args.out)
    if args.lr_find:
        return run_lr_find(dataset, args, out)
    results = {}
    for name in names:
        config = RunConfig(scheduler=scheduler_config(name, args), optimizer=args.optimizer, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, seed=args.seed,
                           progress=args.progress)
        if len(names) > 1:
            print(f"--- {name} ---")
        started = time.perf_counter()
        result = train(dataset, config)
        results[name] = result
        run_dir = out / name if len(names) > 1 else out
        write_metrics(result, run_dir / "metrics.json")
        plot_runs({name: result}, run_dir / "training.png",
                  title=f"{dataset.name}, {args.optimizer} SGD, {name} schedule")
        print(f"({name}: {time.perf_counter() - started:.1f}s, final test accuracy "
              f"{result.epochs[-1].test_accuracy:.4f}; wrote {run_dir}/metrics.json and training.png)")
    if len(names) > 1:
        plot_runs(results, out / "compare.png", title=f"{dataset.name}: " + " vs ".join(names))
        print(f"(wrote {out}/compare.png)")
    print("Training finished!")
    return 0
