"""Interleaved timing of a LARS step: fusedlr.Lars against timm.optim.Lars (its foreach path).

Usage: python bench/compare_lars.py [--sets resnet50,2000x1k] [--rounds 15] [--trust-clip]

Both with lr 0.1, momentum 0.9, weight decay 1e-4 (so every tensor's trust ratio is applied).
fusedlr reads every parameter and gradient once for the norms, then runs the fused update
(fp32: 28 bytes per element); timm runs torch's foreach ops (norms, add, mul, then the SGD ops).
Each round times both in turn (order rotated); medians, and timm / fusedlr (> 1: fusedlr faster).
"""

from __future__ import annotations

import argparse

import torch
from timm.optim import Lars as TimmLars

import fusedlr
from models import SHAPE_SETS, interleaved_medians, make_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="resnet50,2000x1k")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--trust-clip", action="store_true", help="LARC")
    args = ap.parse_args()
    options = dict(lr=0.1, momentum=0.9, weight_decay=1e-4, trust_clip=args.trust_clip)
    print(f"LARS step, float32, {torch.get_num_threads()} threads, kernel {fusedlr._C.cpu_kernel_level()}")
    for name in args.sets.split(","):
        shapes = SHAPE_SETS[name]()
        steps = {"fusedlr": fusedlr.Lars(make_params(shapes, seed=0), **options).step,
                 "timm": TimmLars(make_params(shapes, seed=1), **options).step}
        t = interleaved_medians(steps, args.rounds)
        print(f"  {name:>9}: fusedlr {t['fusedlr'] * 1e6:9.1f} us   timm {t['timm'] * 1e6:9.1f} us   "
              f"timm / fusedlr {t['timm'] / t['fusedlr']:.2f}x")


if __name__ == "__main__":
    main()
