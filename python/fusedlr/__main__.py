"""Command line: ``python -m fusedlr plot "<schedule spec>" --steps N -o out.png``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fusedlr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plot", help="plot one or more schedules to an image, without an optimizer or model")
    p.add_argument("spec", nargs="+",
                   help='schedule expressions over fusedlr.schedules, e.g. "warmup(cosine(900), steps=100)"')
    p.add_argument("--steps", type=int, required=True, help="steps to plot")
    p.add_argument("-o", "--output", default="schedule.png", help="image file (default: schedule.png)")
    p.add_argument("--start", type=int, default=0, help="first step (default 0)")
    p.add_argument("--base-lr", type=float, default=1.0, help="base learning rate (default 1.0: factors)")
    p.add_argument("--log", action="store_true", help="logarithmic y axis")
    p.add_argument("--title", default=None)
    sub.add_parser("list", help="list the schedule functions")
    args = parser.parse_args(argv)

    if args.command == "list":
        import inspect

        from . import schedules

        for name in schedules.__all__:
            fn = getattr(schedules, name)
            if inspect.isfunction(fn) and fn.__doc__:
                print(f"{name:20s} {fn.__doc__.strip().splitlines()[0]}")
        return 0

    from .plot import plot_schedule, schedule_from_spec

    try:
        items = [schedule_from_spec(s) for s in args.spec]
        plot_schedule(items, args.steps, base_lr=args.base_lr, start=args.start, log=args.log, title=args.title,
                      labels=args.spec if len(items) > 1 else None, path=args.output)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
