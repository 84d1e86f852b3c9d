"""Render docs/pairs.png: each transformers / timm schedule beside its fusedlr twin, run for real.

Each panel steps the real library's scheduler and fusedlr's twin on twin optimizers and draws both
(the reference wide and pale, fusedlr thin and dark on top), titled with the largest relative
difference over the run. Run: python docs/pairs.py [out.png]  (needs transformers and timm).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import fusedlr
import fusedlr.lr_scheduler as FL
import fusedlr.timm as FT

STEPS = 1000


def _opt(cls):
    return cls([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)


def _run_torch_protocol(make_ref, make_ours, steps=STEPS):
    """transformers' schedulers: torch's protocol (the lr of step t, then scheduler.step())."""
    ref_opt, our_opt = _opt(torch.optim.SGD), _opt(fusedlr.SGD)
    ref, ours = make_ref(ref_opt), make_ours(our_opt)
    a, b = [], []
    for _ in range(steps):
        a.append(ref_opt.param_groups[0]["lr"])
        b.append(our_opt.param_groups[0]["lr"])
        ref_opt.step(), our_opt.step()
        ref.step(), ours.step()
    return np.array(a), np.array(b)


def _run_timm_protocol(name, steps=STEPS, metric=None, **kwargs):
    """timm's schedulers: step(t, metric) with t from 1 (its train.py's step(epoch + 1))."""
    import timm.scheduler as TS

    ref_opt, our_opt = _opt(torch.optim.SGD), _opt(fusedlr.SGD)
    ref, ours = getattr(TS, name)(ref_opt, **kwargs), getattr(FT, name)(our_opt, **kwargs)
    a, b = [], []
    for t in range(1, steps + 1):
        a.append(ref_opt.param_groups[0]["lr"])
        b.append(our_opt.param_groups[0]["lr"])
        m = None if metric is None else metric(t)
        ref.step(t, m), ours.step(t, m)
    return np.array(a), np.array(b)


def pairs():
    """(title, what to write in fusedlr, reference curve, fusedlr curve) for every pair."""
    import transformers as T

    out = []

    def hf(name, **kw):
        args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        a, b = _run_torch_protocol(lambda o: getattr(T, name)(o, **kw), lambda o: getattr(FL, name)(o, **kw))
        out.append((f"transformers.{name}", f"fusedlr.lr_scheduler.{name}({args})", a, b))

    def tm(name, metric=None, **kw):
        args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        a, b = _run_timm_protocol(name, metric=metric, **kw)
        out.append((f"timm.scheduler.{name}", f"fusedlr.timm.{name}({args})", a, b))

    hf("get_constant_schedule_with_warmup", num_warmup_steps=100)
    hf("get_linear_schedule_with_warmup", num_warmup_steps=100, num_training_steps=900)
    hf("get_cosine_schedule_with_warmup", num_warmup_steps=100, num_training_steps=1000, num_cycles=1.3)
    hf("get_cosine_with_min_lr_schedule_with_warmup", num_warmup_steps=50, num_training_steps=1000, min_lr_rate=0.1)
    hf("get_cosine_with_min_lr_schedule_with_warmup_lr_rate", num_warmup_steps=50, num_training_steps=1000,
       min_lr_rate=0.1, warmup_lr_rate=0.2)
    hf("get_cosine_with_hard_restarts_schedule_with_warmup", num_warmup_steps=50, num_training_steps=1000,
       num_cycles=2.5)
    hf("get_polynomial_decay_schedule_with_warmup", num_warmup_steps=50, num_training_steps=900, lr_end=1e-3,
       power=2.0)
    hf("get_inverse_sqrt_schedule", num_warmup_steps=100)
    hf("get_wsd_schedule", num_warmup_steps=100, num_decay_steps=300, num_training_steps=1000,
       warmup_type="cosine", decay_type="1-sqrt", min_lr_ratio=0.05)
    tm("CosineLRScheduler", t_initial=200, cycle_mul=1.5, cycle_decay=0.7, cycle_limit=4, warmup_t=50,
       warmup_lr_init=0.01, lr_min=0.005, k_decay=1.5)
    tm("PolyLRScheduler", t_initial=300, power=2.0, cycle_limit=3, warmup_t=30, warmup_prefix=True)
    tm("TanhLRScheduler", t_initial=250, cycle_limit=4, cycle_decay=0.8, warmup_t=40)
    tm("StepLRScheduler", decay_t=24.5, decay_rate=0.9, warmup_t=30, warmup_lr_init=0.001)
    tm("MultiStepLRScheduler", decay_t=[200, 500, 800], decay_rate=0.3, warmup_t=50)
    tm("WSDLRScheduler", t_initial=900, decay_t=300, stable_fn="rsqrt", decay_fn="cosine", warmup_t=100,
       lr_min=0.002)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # timm deprecates its plateau scheduler
        tm("PlateauLRScheduler", metric=lambda t: 1.0 / (1 + min(t, 150) + 0.2 * min(t, 500)), mode="min",
           patience_t=40, decay_rate=0.5, warmup_t=20)
    return out


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    scale = np.maximum(np.abs(a), np.abs(b))
    diff = np.abs(a - b)
    return float(np.max(np.where(diff == 0, 0.0, diff / np.where(scale == 0, 1.0, scale))))


def render(path: Path) -> list[tuple[str, str, float]]:
    items = pairs()
    cols = 4
    rows = (len(items) + cols - 1) // cols
    fig = Figure(figsize=(cols * 4.0, rows * 2.7), dpi=72, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols).ravel()
    table = []
    for ax, (ref_name, ours, a, b) in zip(axes, items):
        d = max_rel_diff(a, b)
        table.append((ref_name, ours, d))
        ax.plot(a, lw=5, color="#f4a582", label=ref_name.split(".")[0])
        ax.plot(b, lw=1.2, color="#053061", ls="--", label="fusedlr")
        ax.set_title(f"{ref_name.split('.')[-1]}\nmax rel. diff {d:.1g}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes[len(items):]:
        ax.set_visible(False)
    fig.savefig(path)
    return table


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "pairs.png"
    for ref_name, ours, d in render(out):
        print(f"{d:.1g}  {ref_name}  ->  {ours}")
    print(f"{out} ({out.stat().st_size // 1024} KB)")
