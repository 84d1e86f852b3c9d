"""Command line of the demo: ``python -m fusedlr.demo`` (also the ``fusedlr-demo`` script).

No input ends in a traceback. A bad argument, a damaged data file or an output folder that cannot
be written is one line on stderr and exit status 2, found before any training: argparse checks
types and the ranges no class checks, and each run's model, optimizer and schedule are built
(``train.prepare``, where fusedlr's classes check their arguments) before the first one trains.
Missing data is exit status 1, and so is a run whose loss stops being finite.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

from .._cli import ArgumentParser
from . import data as datamod
from .report import plot_runs, write_json, write_metrics
from .schedulers import SCHEDULERS, SchedulerConfig
from .train import Diverged, RunConfig, fit, prepare


# argparse types: each turns a bad value into argparse's one-line "error: argument --x: ..." (exit 2).

# Whole numbers are counts (epochs, batch size, iterations): one beyond this is a typo, and once
# converted to optimizer steps it would overflow the native schedules' 64-bit step counts.
_MAX_COUNT = 10**9


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _whole_number(lowest: int | None = None):
    """An argparse type: a whole number of at most 10**9 in size, and >= ``lowest`` when given."""

    def parse(text: str) -> int:
        value = _parse_int(text)
        if abs(value) > _MAX_COUNT:
            raise argparse.ArgumentTypeError(f"must be a whole number of at most 10**9, got {text!r}")
        if lowest is not None and value < lowest:
            raise argparse.ArgumentTypeError(
                f"must be a {'positive whole number' if lowest == 1 else f'whole number >= {lowest}'}, got {text!r}")
        return value

    return parse


_int, _positive_int, _non_negative_int = _whole_number(), _whole_number(1), _whole_number(0)


def _seed(text: str) -> int:
    value = _parse_int(text)
    if not -(2**63) <= value < 2**64:  # what torch.manual_seed takes
        raise argparse.ArgumentTypeError(f"must be a whole number from -2**63 to 2**64 - 1, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    # For the lr floors and factors the schedule classes accept below 0 (as torch's do): a
    # negative lr would only be refused by the optimizer's step, in the middle of training.
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _milestones(text: str) -> list[int]:
    # Epochs >= 0: MultiStepLR, like torch's, accepts a negative milestone and never reaches it.
    try:
        return [_non_negative_int(m) for m in text.split(",") if m.strip()]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be epochs >= 0 separated by commas, like 10,15; got {text!r}") from None


def _schedule_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in SCHEDULERS and n != SCHEDULE_FREE]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown schedule(s) {', '.join(map(repr, unknown))}; "
                                         f"choose from {', '.join(sorted(SCHEDULERS))} (or {SCHEDULE_FREE!r})")
    if len(set(names)) < len(names):
        raise argparse.ArgumentTypeError(f"names a schedule twice: {text!r}")
    return names


# The --compare row (and --optimizer) that trains without a schedule: fusedlr.ScheduleFreeSGD.
SCHEDULE_FREE = "schedule-free"


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="python -m fusedlr.demo",
        description="The classic MNIST example (SimpleNet 784-128-10, SGD lr 0.1 momentum 0.9, StepLR(10, 0.1), "
        "20 epochs, batch 64) with any fusedlr schedule, on fusedlr.SGD or torch.optim.SGD.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--scheduler", default=None, choices=sorted(SCHEDULERS),
                    help="learning-rate schedule (default: step; constant with --optimizer schedule-free)")
    ap.add_argument("--compare", metavar="A,B,C", type=_schedule_names,
                    help="train with each of these schedules and plot them together ('schedule-free': "
                         "fusedlr.ScheduleFreeSGD with no schedule)")
    ap.add_argument("--optimizer", default="fusedlr", choices=["fusedlr", "torch", "lars", SCHEDULE_FREE],
                    help="fusedlr.SGD, torch.optim.SGD, fusedlr.Lars (layer-wise trust ratios; with --weight-decay) "
                         "or fusedlr.ScheduleFreeSGD (no schedule: --scheduler defaults to constant)")
    ap.add_argument("--weight-decay", type=_non_negative_float, default=0.0,
                    help="L2 penalty (LARS adapts each layer only when it is > 0)")
    ap.add_argument("--epochs", type=_positive_int, default=20)
    ap.add_argument("--batch-size", type=_positive_int, default=64)
    ap.add_argument("--lr", type=_finite_float, default=0.1, help="base (peak) learning rate")
    ap.add_argument("--momentum", type=_finite_float, default=0.9)
    ap.add_argument("--clip-grad-norm", metavar="MAX", type=_non_negative_float, default=None,
                    help="clip the gradients' global 2-norm to MAX (fusedlr: inside the fused step; "
                         "torch: clip_grad_norm_ before it)")
    ap.add_argument("--seed", type=_seed, default=0)
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    ap.add_argument("--data-root", help="a folder with the four IDX files, or a torchvision dataset root")
    ap.add_argument("--no-download", action="store_true", help="never try to download")
    ap.add_argument("--out", default="out/demo", help="where metrics.json and the plots go")
    ap.add_argument("--lr-find", action="store_true",
                    help="run the learning-rate range test on the demo model instead of training")
    ap.add_argument("--lr-find-iters", type=_int, default=100, help="iterations of the range test")
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar (default: when stderr is a terminal)")
    g = ap.add_argument_group("schedule parameters (epochs are converted to optimizer steps where a schedule is per step)")
    g.add_argument("--step-size", type=_int, default=10, help="step: epochs between decays")
    g.add_argument("--gamma", type=_finite_float, default=None,
                   help="step/multistep: 0.1; exponential: 0.8 (per epoch)")
    g.add_argument("--milestones", type=_milestones, default="10,15",
                   help="multistep: epochs where lr is multiplied by gamma")
    g.add_argument("--eta-min", type=_non_negative_float, default=0.0, help="cosine family: final/minimum lr")
    g.add_argument("--t0", type=_int, default=5, help="warm-restarts: epochs of the first cycle")
    g.add_argument("--t-mult", type=_finite_float, default=2.0, help="warm-restarts: cycle growth factor")
    g.add_argument("--base-lr", type=_finite_float, default=None, help="cyclic: lower lr (default lr/10)")
    g.add_argument("--cycle-epochs", type=_finite_float, default=4.0, help="cyclic: epochs per full cycle")
    g.add_argument("--cyclic-mode", default="triangular", choices=["triangular", "triangular2", "exp_range"])
    g.add_argument("--warmup-epochs", type=_finite_float, default=1.0,
                   help="warmup-cosine, wsd, inverse-sqrt: warmup length")
    g.add_argument("--decay", type=_finite_float, default=0.5, help="time-based: k in lr/(1+k*epoch)")
    g.add_argument("--decay-fraction", type=_finite_float, default=0.2, help="wsd: fraction of training spent decaying")
    g.add_argument("--factor", type=_non_negative_float, default=0.1, help="plateau: lr factor on a plateau")
    g.add_argument("--patience", type=_non_negative_int, default=2, help="plateau: epochs without improvement")
    return ap


def scheduler_config(name: str, args: argparse.Namespace) -> SchedulerConfig:
    return SchedulerConfig(
        name=name,
        step_size=args.step_size,
        gamma=args.gamma,
        milestones=args.milestones,
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


def _fail(message: object, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def _unwritable(folders: list[Path]) -> str | None:
    """Why a file cannot be written in one of ``folders`` (each created if missing), or None."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except FileExistsError:
            return f"cannot write in --out folder {folder} (it is a file, not a folder)"
        except OSError as error:
            return f"cannot write in --out folder {folder} ({error.strerror or error})"
    return None


def run_lr_find(dataset: datamod.Dataset, args: argparse.Namespace, out: Path) -> int:
    """The range test on the demo's model, optimizer and data; writes lr_find.png and lr_find.json."""
    import torch

    import fusedlr

    from .model import SimpleNet
    from .report import write_atomically
    from .train import batches, make_optimizer

    torch.manual_seed(args.seed)
    model = SimpleNet()
    try:
        optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum, args.clip_grad_norm,
                                   args.weight_decay)
        if isinstance(optimizer, fusedlr.ScheduleFreeSGD):
            optimizer.train()  # (its steps need the training point in the parameters)
    except (ValueError, TypeError) as error:
        return _fail(error, 2)
    problem = _unwritable([out])
    if problem:
        return _fail(problem, 2)
    try:  # lr_find checks its arguments (only num_iter comes from the user) before its first iteration
        result = fusedlr.lr_find(model, optimizer, torch.nn.functional.cross_entropy,
                                 batches(dataset.train, args.batch_size, args.seed), num_iter=args.lr_find_iters)
    except ValueError as error:
        return _fail(f"--lr-find-iters: {error}", 2)
    title = f"{dataset.name}: SimpleNet, {args.optimizer} SGD momentum {args.momentum}"
    write_atomically(out / "lr_find.png", lambda tmp: result.plot(tmp, title=title))
    write_json({"config": result.config, "lrs": result.lrs, "losses": result.losses,
                "raw_losses": result.raw_losses, "valley": result.valley, "steepest": result.steepest,
                "diverged": result.diverged}, out / "lr_find.json")
    stop = "stopped when the loss diverged" if result.diverged else "ran every iteration"
    print(f"LR range test: {len(result.lrs)} iterations from {result.lrs[0]:.1e} to {result.lrs[-1]:.1e} ({stop})")
    if result.valley is None and result.steepest is None:
        print("Suggested learning rate: none (too few iterations to tell; try more --lr-find-iters)")
    else:
        print("Suggested learning rate: " + ", ".join(
            f"{lr:.3g} ({how})" for lr, how in ((result.valley, "valley"), (result.steepest, "steepest descent"))
            if lr is not None))
    print(f"(wrote {out}/lr_find.png and lr_find.json)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.scheduler is None:
        args.scheduler = "constant" if args.optimizer == SCHEDULE_FREE else "step"
    names = args.compare or [args.scheduler]
    try:
        dataset = datamod.load(args.dataset, args.data_root, download=not args.no_download)
    except datamod.DataUnavailable as error:
        return _fail(error, 1)
    except datamod.InvalidData as error:
        return _fail(error, 2)
    print(f"Data: {dataset.name} from {dataset.source} ({len(dataset.train.labels)} train / "
          f"{len(dataset.test.labels)} test images)")

    out = Path(args.out)
    if args.lr_find:
        return run_lr_find(dataset, args, out)
    # Every run is set up, and the output folders checked, before the first one trains.
    which = {name: f"{name} schedule: " if len(names) > 1 else "" for name in names}  # for messages
    runs = {}
    for name in names:
        free = name == SCHEDULE_FREE
        config = RunConfig(scheduler=scheduler_config("constant" if free else name, args),
                           optimizer=SCHEDULE_FREE if free else args.optimizer, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                           clip_grad_norm=args.clip_grad_norm, weight_decay=args.weight_decay, seed=args.seed,
                           progress=args.progress)
        try:
            runs[name] = prepare(dataset, config)
        except (ValueError, TypeError) as error:
            return _fail(f"{which[name]}{error}", 2)
    run_dirs = {name: out / name if len(names) > 1 else out for name in names}
    problem = _unwritable([out, *run_dirs.values()])
    if problem:
        return _fail(problem, 2)

    results = {}
    for name, run in runs.items():
        if len(names) > 1:
            print(f"--- {name} ---")
        started = time.perf_counter()
        run_dir = run_dirs[name]
        diverged = None
        try:
            result = fit(run, dataset)
        except Diverged as error:  # keep what it learned up to there, then stop
            result, diverged = error.result, error
        write_metrics(result, run_dir / "metrics.json")
        plot_runs({name: result}, run_dir / "training.png",
                  title=f"{dataset.name}, {args.optimizer} SGD, {name} schedule")
        if diverged is not None:
            return _fail(f"{which[name]}{diverged}; try a smaller --lr (wrote {run_dir}/metrics.json and "
                         f"training.png)", 1)
        results[name] = result
        print(f"({name}: {time.perf_counter() - started:.1f}s, final test accuracy "
              f"{result.epochs[-1].test_accuracy:.4f}; wrote {run_dir}/metrics.json and training.png)")
    if len(names) > 1:
        plot_runs(results, out / "compare.png", title=f"{dataset.name}: " + " vs ".join(names))
        print(f"(wrote {out}/compare.png)")
    print("Training finished!")
    return 0
