"""Interleaved timing of a schedule-free SGD step: fusedlr.ScheduleFreeSGD against schedulefree.SGDScheduleFree.

Usage: python bench/compare_schedule_free.py [--sets mlp,resnet50,2000x1k] [--rounds 15]

Both in train mode, lr 1.0, momentum 0.9, weight decay 1e-4; schedulefree with its default
foreach path. fusedlr's step reads y, grad, z and writes y, z (fp32: 20 bytes per element) in
one native call per group; the reference runs four foreach ops (add, lerp, add, sub).
Medians, and reference / fusedlr (> 1: fusedlr faster).
"""

from __future__ import annotations

import argparse

import schedulefree
import torch

import fusedlr
from models import SHAPE_SETS, interleaved_medians, make_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="mlp,resnet50,2000x1k")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    options = dict(lr=1.0, momentum=0.9, weight_decay=1e-4)
    print(f"schedule-free SGD step, float32, {torch.get_num_threads()} threads, kernel {fusedlr._C.cpu_kernel_level()}")
    for name in args.sets.split(","):
        shapes = SHAPE_SETS[name]()
        opts = {"fusedlr": fusedlr.ScheduleFreeSGD(make_params(shapes, seed=0), **options),
                "reference": schedulefree.SGDScheduleFree(make_params(shapes, seed=1), **options)}
        for o in opts.values():
            o.train()
        steps = {n: o.step for n, o in opts.items()}
        t = interleaved_medians(steps, args.rounds)
        print(f"  {name:>9}: fusedlr {t['fusedlr'] * 1e6:9.1f} us   reference {t['reference'] * 1e6:9.1f} us   "
              f"reference / fusedlr {t['reference'] / t['fusedlr']:.2f}x")


if __name__ == "__main__":
    main()
