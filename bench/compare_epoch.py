"""The demo's epoch with fusedlr against torch, interleaved, with where the time goes.

Usage: python bench/compare_epoch.py [--rounds 7]

Each round trains one epoch of the demo (Fashion-MNIST, SimpleNet, batch 64, SGD 0.1 / 0.9,
StepLR) with each optimizer, in alternating order, after one warm-up epoch each. It reports per
optimizer the median epoch and its spread (min-max), and the median time inside
``optimizer.step()`` (between torch's step pre- and post-hooks): the rest of the epoch (data,
forward, backward, zero_grad, the test pass) runs the same torch code for both. (The first torch
call after backward() runs with cold caches, ~15 us more on the 2-core CI machine: torch's step
pays that in its profiler range; fusedlr's step opens no range without a profiler, so the next
call, zero_grad's range, pays it instead. Compare whole epochs.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fusedlr.demo import data
from fusedlr.demo.train import RunConfig, fit, prepare


def epoch(dataset, optimizer: str) -> tuple[float, float]:
    """(seconds of one epoch, seconds inside optimizer.step) for a fresh run with `optimizer`."""
    run = prepare(dataset, RunConfig(optimizer=optimizer, epochs=1))
    inside, started = [0.0], [0.0]
    # torch's public step hooks: the time between them is the step itself.
    run.optimizer.register_step_pre_hook(lambda *_: started.__setitem__(0, time.perf_counter()))
    run.optimizer.register_step_post_hook(lambda *_: inside.__setitem__(0, inside[0] + time.perf_counter() - started[0]))
    t0 = time.perf_counter()
    fit(run, dataset, log=lambda _: None)
    return time.perf_counter() - t0, inside[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    dataset = data.load("fashion-mnist", download=False)
    names = ["fusedlr", "torch"]
    for name in names:  # warm-up: oneDNN, the allocator, first-touch
        epoch(dataset, name)
    totals: dict[str, list[float]] = {n: [] for n in names}
    steps: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            total, inside = epoch(dataset, name)
            totals[name].append(total)
            steps[name].append(inside)
    print(f"{torch.get_num_threads()} threads, {args.rounds} rounds (interleaved), one epoch = 938 steps")
    for name in names:
        t, s = totals[name], steps[name]
        print(f"  {name:8s} epoch {statistics.median(t) * 1e3:7.1f} ms (min {min(t) * 1e3:.1f}, max {max(t) * 1e3:.1f})"
              f"   optimizer.step {statistics.median(s) * 1e3:6.1f} ms ({statistics.median(s) / 938 * 1e6:.1f} us/step)"
              f"   rest {statistics.median([a - b for a, b in zip(t, s)]) * 1e3:7.1f} ms")
    ratio = statistics.median(totals["torch"]) / statistics.median(totals["fusedlr"])
    print(f"  torch / fusedlr (epoch medians): {ratio:.3f}")


if __name__ == "__main__":
    main()
