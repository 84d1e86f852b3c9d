"""Interleaved timing of a clipped SGD step: fusedlr's fused clip against torch's clip + fused step.

Usage: python bench/compare_clip.py [--sets resnet50,2000x1k,64M] [--rounds 20] [--scaler] [--flat]

Contenders, per step (momentum 0.9, weight decay 1e-4, max_norm 1.0, 2-norm):

- fusedlr:  ``fusedlr.SGD(..., max_grad_norm=1.0).step()``: one read of the grads for the norm,
  then the update (fp32: 24 bytes per element);
- torch:    ``clip_grad_norm_(params, 1.0, foreach=True)`` then ``torch.optim.SGD(fused=True).step()``
  (norm read, scale read + write, update: 32 bytes per element).

With ``--scaler`` both run under a ``torch.amp.GradScaler`` (scale 1, so repeated unscaling leaves
the grads as they are): fusedlr ``scaler.step(opt)`` (the scaler's inf check, then the clipped
step, the norm taken of the unscaled grads); torch ``scaler.unscale_(opt)``, ``clip_grad_norm_``,
``scaler.step(opt)``. Each round times every contender in turn (order rotated); the report is the
median per contender and torch / fusedlr (> 1: fusedlr faster). ``--flat``: fusedlr.SGD(flat=True)
(the parameters laid out as one tensor: one norm and one update over one array).
"""

from __future__ import annotations

import argparse

import torch

import fusedlr
from models import SHAPE_SETS, interleaved_medians, make_params

MAX_NORM = 1.0
OPTIONS = dict(lr=0.01, momentum=0.9, weight_decay=1e-4)


def contenders(shapes, dtype, scaler: bool, flat: bool = False):
    """name -> a function running one clipped step, each on its own parameters."""
    ours_params, ref_params = make_params(shapes, dtype, seed=0), make_params(shapes, dtype, seed=1)
    ours = fusedlr.SGD(ours_params, max_grad_norm=MAX_NORM, flat=flat, **OPTIONS)
    ref = torch.optim.SGD(ref_params, fused=True, **OPTIONS)
    if not scaler:
        def torch_step():
            torch.nn.utils.clip_grad_norm_(ref_params, MAX_NORM, foreach=True)
            ref.step()
        return {"fusedlr": ours.step, "torch": torch_step}
    ours_scaler, ref_scaler = (torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=10**9) for _ in range(2))
    for s in (ours_scaler, ref_scaler):
        s.scale(torch.ones(()))  # (makes the scaler's scale tensor, as a first scaled loss would)

    def fusedlr_step():
        ours_scaler.step(ours)
        ours_scaler.update()

    def torch_step():
        ref_scaler.unscale_(ref)
        torch.nn.utils.clip_grad_norm_(ref_params, MAX_NORM, foreach=True)
        ref_scaler.step(ref)
        ref_scaler.update()

    return {"fusedlr": fusedlr_step, "torch": torch_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="resnet50,2000x1k")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--scaler", action="store_true", help="under a GradScaler (torch: unscale_ + clip + step)")
    ap.add_argument("--flat", action="store_true", help="fusedlr.SGD(flat=True)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"clipped step, {args.dtype}, {'GradScaler, ' if args.scaler else ''}{'flat=True, ' if args.flat else ''}"
          f"{torch.get_num_threads()} threads, kernel {fusedlr._C.cpu_kernel_level()}")
    for name in args.sets.split(","):
        shapes = SHAPE_SETS[name]()
        t = interleaved_medians(contenders(shapes, dtype, args.scaler, args.flat), args.rounds)
        print(f"  {name:>9}: fusedlr {t['fusedlr'] * 1e6:9.1f} us   torch {t['torch'] * 1e6:9.1f} us   "
              f"torch / fusedlr {t['torch'] / t['fusedlr']:.2f}x")


if __name__ == "__main__":
    main()
