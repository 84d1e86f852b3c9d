"""Command line: ``python -m fusedlr plot "<schedule spec>" --steps N -o out.png``; ``python -m fusedlr
config`` (or ``--version``) for what to paste into a bug report."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

from ._cli import ArgumentParser

DEFAULT_NAME = "schedule.png"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m fusedlr", description=__doc__)
    from . import _build_info

    parser.add_argument("--version", action="version",
                        version=f"fusedlr {_build_info.VERSION} (built for torch {_build_info.TORCH_VERSION})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("config", help="print the version, the torch built against and found, the CPU SIMD levels "
                                  "compiled and chosen, and whether CUDA kernels are inside (fusedlr.show_config())")
    p = sub.add_parser("plot", help="plot one or more schedules to an image, without an optimizer or model")
    p.add_argument("spec", nargs="+",
                   help='schedule expressions over fusedlr.schedules, e.g. "warmup(cosine(900), steps=100)"; '
                        "only calls of those functions with literal arguments are accepted")
    p.add_argument("--steps", type=int, required=True,
                   help="steps to plot (> 0; past 200,000 the curve is sampled at 200,000 evenly spaced steps)")
    p.add_argument("-o", "--output", default=DEFAULT_NAME,
                   help=f"image file, or an existing folder to write {DEFAULT_NAME} into; no suffix: .png "
                        f"(default: {DEFAULT_NAME})")
    p.add_argument("--start", type=int, default=0, help="first step (>= 0, default 0)")
    p.add_argument("--base-lr", type=float, default=1.0, help="base learning rate (finite, >= 0; default 1.0: factors)")
    p.add_argument("--log", action="store_true", help="logarithmic y axis")
    p.add_argument("--title", default=None)
    sub.add_parser("list", help="list the schedule functions")
    args = parser.parse_args(argv)

    if args.command == "config":
        from ._config import show_config

        show_config()
        return 0

    if args.command == "list":
        import inspect

        from . import schedules

        for name in schedules.__all__:
            fn = getattr(schedules, name)
            if inspect.isfunction(fn) and fn.__doc__:
                print(f"{name:20s} {fn.__doc__.strip().splitlines()[0]}")
        return 0

    try:
        path = _plot(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _plot(args: argparse.Namespace) -> Path:
    """Check everything the command line gave, then draw and save; returns the file written."""
    from ._C import Schedule
    from .plot import _short, plot_schedule, schedule_from_spec

    if args.steps <= 0:
        raise ValueError(f"--steps must be > 0, got {args.steps}")
    if args.start < 0:
        raise ValueError(f"--start must be >= 0, got {args.start}")
    if args.start + args.steps - 1 >= Schedule.max_step:
        raise ValueError(f"the last step plotted (--start + --steps - 1 = {args.start + args.steps - 1}) must be "
                         f"< 2**62 = {Schedule.max_step}")
    if not (math.isfinite(args.base_lr) and args.base_lr >= 0):
        raise ValueError(f"--base-lr must be a finite number >= 0, got {args.base_lr}")
    items = []
    for i, spec in enumerate(args.spec):
        try:
            items.append(schedule_from_spec(spec))
        except ValueError as e:
            raise ValueError(f"spec {i + 1}: {e}" if len(args.spec) > 1 else str(e)) from None
    path = _output_path(args.output)

    # "$" would start matplotlib's mathtext, whose parse errors surface only when the figure is saved.
    labels = [_literal_text(_short(" ".join(spec.split()))) for spec in args.spec] if len(items) > 1 else None
    title = _literal_text(args.title) if args.title else None
    fig = plot_schedule(items, args.steps, base_lr=args.base_lr, start=args.start, log=args.log, title=title,
                        labels=labels)
    existed = path.exists()
    try:
        fig.savefig(path, format=path.suffix[1:].lower())
    except (OSError, RuntimeError, ValueError) as e:  # e.g. a full disk, or pgf without a TeX installation
        if not existed:
            path.unlink(missing_ok=True)
        raise ValueError(f"cannot write {path}: {' '.join(str(e).split())}") from None
    return path


def _output_path(text: str) -> Path:
    """The file ``-o`` names; its folder must exist and be writable (checked before anything is drawn)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(text)
    if path.is_dir():
        path = path / DEFAULT_NAME
    elif text.endswith(("/", os.sep)):
        raise ValueError(f"output folder {text} does not exist")
    elif not path.suffix:
        path = path.with_name(path.name + ".png")
    formats = FigureCanvasAgg.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise ValueError(f"unsupported image format {path.suffix!r} in {text}; supported: {', '.join(sorted(formats))}")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"output folder {folder} {'is not a folder' if folder.exists() else 'does not exist'}")
    if path.is_dir():
        raise ValueError(f"output {path} is a folder")
    try:  # a real probe: permission bits say nothing to root or on read-only mounts
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"output folder {folder} is not writable ({e.strerror or e})") from None
    return path


def _literal_text(text: str) -> str:
    return text.replace("$", r"\$")


if __name__ == "__main__":
    sys.exit(main())
