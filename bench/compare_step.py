"""Interleaved per-step timing of fusedlr.SGD against torch.optim.SGD in one process.

Usage: python bench/compare_step.py [--sets resnet50,2000x1k] [--rounds 30] [--dtype float32]

Each round times one step of every contender in turn (order rotated per round), so machine
noise hits all of them alike; the report is the median per contender, torch-fused's time over
each fusedlr contender's, and each torch contender's over fusedlr's (> 1: fusedlr faster).
``fusedlr-flat`` is fusedlr.SGD(flat=True). ``--roofline`` times bench/roofline.py's streaming
kernel on the same bytes as the step, in the same rounds, and prints every contender's % of it:
how far from the memory each one is, which bounds the ratio any of them can reach over another.
"""

from __future__ import annotations

import argparse
import torch

import fusedlr
from fusedlr.demo.cli import _positive_int  # (the demo's argparse type)
from models import SHAPE_SETS, interleaved_medians, make_params
from roofline import FLOAT_DTYPES, Reference, check_names

CONTENDERS = {
    "fusedlr": lambda p, kw: fusedlr.SGD(p, **kw),
    "fusedlr-flat": lambda p, kw: fusedlr.SGD(p, flat=True, **kw),
    "torch-fused": lambda p, kw: torch.optim.SGD(p, fused=True, **kw),
    "torch-foreach": lambda p, kw: torch.optim.SGD(p, foreach=True, **kw),
    "torch-for-loop": lambda p, kw: torch.optim.SGD(p, foreach=False, **kw),
}


def compare(shapes, dtype, rounds, contenders, roofline=False, **options):
    opts = {name: CONTENDERS[name](make_params(shapes, dtype, seed=i), options) for i, name in enumerate(contenders)}
    numel = sum(p.numel() for p in next(iter(opts.values())).param_groups[0]["params"])
    fns = {name: o.step for name, o in opts.items()}
    if roofline:
        fns["roofline"] = Reference.same_bytes(numel, dtype, momentum=options["momentum"] != 0).run
    return numel, interleaved_medians(fns, rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="mlp,resnet50,2000x1k")
    ap.add_argument("--contenders", default="fusedlr,torch-fused,torch-foreach,torch-for-loop")
    ap.add_argument("--rounds", type=_positive_int, default=30)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--roofline", action="store_true", help="also time the streaming kernel on the step's bytes")
    args = ap.parse_args()
    if args.dtype not in FLOAT_DTYPES:
        ap.error(f"--dtype: unknown {args.dtype} (known: {', '.join(FLOAT_DTYPES)})")
    dtype = getattr(torch, args.dtype)
    contenders = check_names(ap, "--contenders", args.contenders, CONTENDERS)
    set_names = check_names(ap, "--sets", args.sets, SHAPE_SETS)
    print(f"torch {torch.__version__}, fusedlr {fusedlr.__version__}, threads {torch.get_num_threads()}, "
          f"kernel {fusedlr._C.cpu_kernel_level()}, {args.dtype}, momentum {args.momentum}, wd {args.weight_decay}")
    for set_name in set_names:
        shapes = SHAPE_SETS[set_name]()
        numel, med = compare(shapes, dtype, args.rounds, contenders, lr=0.01, momentum=args.momentum,
                             weight_decay=args.weight_decay, roofline=args.roofline)
        ours = med.get("fusedlr")
        fused = med.get("torch-fused")
        roof = med.pop("roofline", None)
        print(f"\n{set_name}: {len(shapes)} tensors, {numel:,} elements"
              + (f"; the same bytes streamed: {roof * 1e6:.1f} us" if roof else ""))
        for name, t in med.items():
            pct = f"  {100 * roof / t:5.1f} % of the roofline" if roof else ""
            if name.startswith("fusedlr"):
                ratio = f"  torch-fused/this = {fused / t:5.2f}x" if fused is not None else ""
            else:
                ratio = f"  this/fusedlr = {t / ours:5.2f}x" if ours is not None else ""
            print(f"  {name:15s} {t * 1e6:10.1f} us/step{ratio}{pct}")


if __name__ == "__main__":
    main()
