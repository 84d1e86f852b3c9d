"""Plots of schedules (matplotlib, Agg canvas; imported only when a plot is asked for)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._C import Schedule

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def plot_schedule(
    schedules: Schedule | Sequence[Schedule],
    steps: int,
    *,
    base_lr: float = 1.0,
    start: int = 0,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    log: bool = False,
    ax: Axes | None = None,
    path: str | Path | None = None,
    figsize: tuple[float, float] = (6.4, 3.6),
    dpi: int = 100,
) -> Figure:
    """Plot the learning rate of one or more schedules over ``steps`` steps from ``start``.

    The values come from ``Schedule.curve`` (C++); nothing needs an optimizer or a model.

    Args:
        schedules: a schedule or several (drawn on the same axes).
        steps: how many steps to draw.
        base_lr: the base learning rate the schedules are evaluated with. Default 1.0.
        start: the first step drawn. Default 0.
        labels: legend labels; default ``repr`` of each schedule (shortened).
        title: the axes title.
        log: logarithmic y axis.
        ax: draw into these axes instead of a new figure.
        path: save the figure there (PNG, or any format matplotlib knows by the suffix).
        figsize, dpi: of a new figure.

    Returns:
        The figure drawn into.

    Example:
        >>> from fusedlr import schedules as S
        >>> fig = plot_schedule(S.warmup(S.cosine(900), 100), 1000, path="warmup_cosine.png")  # doctest: +SKIP
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    items = [schedules] if isinstance(schedules, Schedule) else list(schedules)
    if steps <= 0:
        raise ValueError(f"plot_schedule: steps must be > 0, got {steps!r}")
    if labels is not None and len(labels) != len(items):
        raise ValueError(f"plot_schedule: labels must have one entry per schedule ({len(items)}), got {len(labels)}")
    if ax is None:
        fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        FigureCanvasAgg(fig)  # a canvas of its own: no pyplot, no global backend switch
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    x = np.arange(start, start + steps)
    for i, s in enumerate(items):
        label = labels[i] if labels is not None else _short(repr(s))
        ax.plot(x, s.curve(steps, start=start, base_lr=base_lr), label=label, linewidth=1.4)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate" if base_lr != 1.0 else "learning rate (factor of base_lr)")
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=10)
    if len(items) > 1 or labels is not None:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if path is not None:
        fig.savefig(path)
    return fig


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def schedule_from_spec(spec: str) -> Schedule:
    """Build a schedule from an expression over the :mod:`fusedlr.schedules` functions.

    Example: ``"warmup(cosine(T_max=900, eta_min=1e-3), steps=100)"``. The expression sees only
    those functions (no builtins); it is meant for the command line, not for untrusted input.
    """
    from . import schedules

    names: dict[str, Any] = {name: getattr(schedules, name) for name in schedules.__all__}
    try:
        result = eval(spec, {"__builtins__": {}}, names)  # noqa: S307 (a command-line convenience)
    except NameError as e:
        raise ValueError(f"unknown name in schedule spec {spec!r}: {e}; known: {', '.join(sorted(names))}") from None
    if not isinstance(result, Schedule):
        raise ValueError(f"schedule spec {spec!r} gave {type(result).__name__}, not a Schedule")
    return result
