"""Render docs/schedules.png: one panel per schedule of fusedlr.schedules (run: python docs/gallery.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fusedlr import schedules as S
from fusedlr.plot import plot_schedule

STEPS = 1000

# (title, schedules drawn in the panel, labels)
GALLERY = [
    ("constant / step / multistep", [S.constant(0.8), S.step(250, 0.5), S.multistep([300, 600, 850], 0.3)],
     ["constant(0.8)", "step(250, 0.5)", "multistep([300,600,850], 0.3)"]),
    ("linear", [S.linear(0.1, 1.0, 600), S.linear(1.0, 0.0, 1000)], ["linear(0.1, 1, 600)", "linear(1, 0, 1000)"]),
    ("exponential / inverse_time", [S.exponential(0.996), S.exponential(rate=0.002), S.inverse_time(0.01)],
     ["exponential(0.996)", "exponential(rate=0.002)", "inverse_time(0.01)"]),
    ("polynomial", [S.polynomial(1000, 0.5), S.polynomial(1000, 2.0), S.polynomial(800, 1.0, 0.1)],
     ["power 0.5", "power 2", "power 1, end 0.1"]),
    ("cosine", [S.cosine(800, 0.05), S.cosine(400, 0.0, periodic=True)], ["cosine(800, 0.05)", "periodic (torch)"]),
    ("cosine_restarts", [S.cosine_restarts(100, 2.0), S.cosine_restarts(150, 1.5, 0.1, reach_min=True)],
     ["T_0=100, T_mult=2", "T_0=150, T_mult=1.5, reach_min"]),
    ("cyclic", [S.cyclic(0.1, 1.0, 100, 150, "triangular2"), S.cyclic(0.1, 1.0, 125, mode="exp_range", gamma=0.998)],
     ["triangular2", "exp_range"]),
    ("one_cycle", [S.one_cycle(1.0, 1000), S.one_cycle(1.0, 1000, 0.25, "linear", three_phase=True)],
     ["cos", "linear, three_phase"]),
    ("inverse_sqrt (with warmup)", [S.warmup(S.inverse_sqrt(100.0), 100), S.inverse_sqrt(20.0)],
     ["warmup(inverse_sqrt(100), 100)", "inverse_sqrt(20)"]),
    ("wsd", [S.wsd(1000, 100, 200, d) for d in ("linear", "cosine", "sqrt")]
     + [S.wsd_shaped(150, 450, 400, "cosine", "cosine", 0.1, 1.0)],
     ["linear", "cosine", "1-sqrt", "wsd_shaped (transformers): cosine warmup, 1 cycle"]),
    ("piecewise", [S.piecewise_constant([200, 500, 800], [1.0, 0.6, 0.3, 0.1]),
                   S.piecewise_linear([0, 100, 600, 1000], [0.0, 1.0, 0.4, 0.0])],
     ["piecewise_constant", "piecewise_linear"]),
    ("warmup / sequential / chained",
     [S.warmup(S.cosine(900), 100, mode="exponential", start_factor=0.01),
      S.sequential([S.constant(0.3), S.cosine(400), S.exponential(0.99)], [200, 600]),
      S.chained([S.cyclic(0.2, 1.0, 100), S.exponential(0.998)])],
     ["warmup(exp.)", "sequential", "chained(cyclic, exp)"]),
    ("transformers' decays (what follows their warmup)",
     [S.linear_remaining(1000, 1000), S.cycles_cosine(1000, 0.5, 0.1), S.cycles_cosine(1000, 2.0),
      S.cycles_cosine_restarts(1000, 3), S.polynomial_to(1000, 1.0, 0.05, 2.0), S.reciprocal_sqrt(100),
      S.ramp_rate(1000, 0.2)],
     ["linear_remaining", "cycles_cosine, min_rate 0.1", "cycles_cosine, 2 cycles", "cycles_cosine_restarts, 3",
      "polynomial_to, power 2", "reciprocal_sqrt(100)", "ramp_rate (a warmup), rate 0.2"]),
    ("timm's decays: cycles, stable_decay",
     [S.warmup(S.cycles(200, cycle_mul=1.5, cycle_decay=0.7, cycle_limit=4, lr_min=0.05), 50, start_lr=0.01,
               to_base=True, overlap=True),
      S.cycles(300, "poly", power=2.0, cycle_limit=3, k_decay=1.5), S.cycles(250, "tanh", cycle_limit=4),
      S.stable_decay(1000, 300, stable_fn="rsqrt", stable_timescale=100, decay_fn="cosine")],
     ["cosine, mul 1.5, decay 0.7, warmup under it", "poly 2, k-decay 1.5", "tanh, 4 cycles",
      "stable_decay: rsqrt, cosine decay"]),
    ("noise (timm's, as a closed form)",
     [S.noise(S.warmup(S.cosine(900), 100), start=100, pct=0.2, std=0.1),
      S.noise(S.constant(0.4), start=300, end=700, pct=0.1, distribution="uniform", seed=1)],
     ["normal, from step 100", "uniform, steps 300-700"]),
]


def render(path: Path) -> None:
    cols = 3
    rows = (len(GALLERY) + cols - 1) // cols
    fig = Figure(figsize=(cols * 4.0, rows * 2.6), dpi=72, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols).ravel()
    for ax, (title, items, labels) in zip(axes, GALLERY):
        plot_schedule(items, STEPS, labels=labels, title=title, ax=ax)
        ax.set_xlabel("")
        ax.set_ylabel("")
    for ax in axes[len(GALLERY):]:
        ax.set_visible(False)
    fig.savefig(path)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "schedules.png"
    render(out)
    print(f"{out} ({out.stat().st_size // 1024} KB)")
