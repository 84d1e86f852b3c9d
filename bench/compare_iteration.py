"""A whole training iteration (zero_grad, forward + backward, step), phase by phase, interleaved.

Usage: python bench/compare_iteration.py [--width 16] [--layers 1000] [--rounds 31]

A stack of ``--layers`` Linear(width, width) layers (2 tensors each) trained on a batch of 8,
momentum 0.9, with torch.optim.SGD(fused=True), fusedlr.SGD and fusedlr.SGD(flat=True). Each
round runs one iteration of every contender in turn; the report is each phase's median.

It shows where flat=True pays and where it costs: its zero_grad is one write of the gradient
tensor and its step one pass over one tensor, but its gradients stay allocated, so autograd
accumulates into them (``grad += new``: an op per tensor and 12 bytes per fp32 element) where
set_to_none lets autograd keep the tensor it made.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import fusedlr
from fusedlr.demo.cli import _positive_int  # (the demo's argparse type: one line and exit status 2 on a bad value)

CONTENDERS = {
    "torch-fused": lambda m: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, fused=True),
    "fusedlr": lambda m: fusedlr.SGD(m.parameters(), lr=1e-3, momentum=0.9),
    "fusedlr-flat": lambda m: fusedlr.SGD(m.parameters(), lr=1e-3, momentum=0.9, flat=True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=_positive_int, default=16)
    ap.add_argument("--layers", type=_positive_int, default=1000)
    ap.add_argument("--rounds", type=_positive_int, default=31)
    args = ap.parse_args()
    x = torch.randn(8, args.width, generator=torch.Generator().manual_seed(0))

    def iteration(model, opt):
        t0 = time.perf_counter()
        opt.zero_grad()
        t1 = time.perf_counter()
        model(x).square().mean().backward()
        t2 = time.perf_counter()
        opt.step()
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    runs = {}
    for name, make in CONTENDERS.items():
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(args.width, args.width) for _ in range(args.layers)])
        runs[name] = (model, make(model))
        for _ in range(3):  # state, held groups
            iteration(*runs[name])
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            samples[name].append(iteration(*runs[name]))
    print(f"{args.layers} x Linear({args.width}, {args.width}) ({2 * args.layers} tensors), batch 8, "
          f"{torch.get_num_threads()} threads, kernel {fusedlr._C.cpu_kernel_level()}; medians of {args.rounds}, us")
    print(f"{'':13s} {'zero_grad':>10s} {'fwd+bwd':>10s} {'step':>10s} {'iteration':>10s}")
    for name, s in samples.items():
        phases = [statistics.median(x[i] for x in s) * 1e6 for i in range(3)]
        total = statistics.median(sum(x) for x in s) * 1e6
        print(f"{name:13s} " + " ".join(f"{v:10.1f}" for v in phases) + f" {total:10.1f}")


if __name__ == "__main__":
    main()
