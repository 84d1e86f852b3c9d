"""Plots of schedules (matplotlib, Agg canvas; imported only when a plot is asked for), and the
parser of the schedule expressions the command line takes."""

from __future__ import annotations

import ast
import inspect
import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._C import Schedule

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_POINTS = 200_000
"""Most steps :func:`plot_schedule` evaluates per schedule; longer ranges are sampled evenly."""

MAX_SPEC_LENGTH = 10_000
"""Most characters in a schedule spec (:func:`schedule_from_spec`)."""

MAX_SPEC_DEPTH = 32
"""Most nested calls, lists, tuples and signs in a schedule spec."""


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
    max_points: int = MAX_POINTS,
) -> Figure:
    """Plot the learning rate of one or more schedules over ``steps`` steps from ``start``.

    The values come from C++ (``Schedule.curve``, or ``s(step, base_lr)`` at each sampled step);
    nothing needs an optimizer or a model. When ``steps`` exceeds ``max_points``, ``max_points``
    evenly spaced steps are drawn, the first and the last included (a schedule that changes
    faster than the spacing, such as a short cycle, is then aliased).

    Args:
        schedules: a schedule or several (drawn on the same axes).
        steps: how many steps to draw (> 0).
        base_lr: the base learning rate the schedules are evaluated with. Default 1.0.
        start: the first step drawn. Default 0.
        labels: legend labels; default ``repr`` of each schedule (shortened).
        title: the axes title.
        log: logarithmic y axis.
        ax: draw into these axes instead of a new figure.
        path: save the figure there (PNG, or any format matplotlib knows by the suffix).
        figsize, dpi: of a new figure.
        max_points: most steps evaluated per schedule (>= 2). Default 200,000.

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
    steps, start, max_points = operator.index(steps), operator.index(start), operator.index(max_points)
    if steps <= 0:
        raise ValueError(f"plot_schedule: steps must be > 0, got {steps!r}")
    if max_points < 2:
        raise ValueError(f"plot_schedule: max_points must be >= 2, got {max_points!r}")
    if labels is not None and len(labels) != len(items):
        raise ValueError(f"plot_schedule: labels must have one entry per schedule ({len(items)}), got {len(labels)}")
    if steps <= max_points:
        x = np.arange(start, start + steps)
        curves = [s.curve(steps, start=start, base_lr=base_lr) for s in items]
    else:
        # Integer steps computed exactly (steps may pass 2**53), evaluated one by one: each is one
        # closed-form native call, and no array of `steps` values is ever allocated.
        sampled = [start + i * (steps - 1) // (max_points - 1) for i in range(max_points)]
        x = np.array(sampled, dtype=np.float64)
        curves = [np.fromiter((s(t, base_lr) for t in sampled), dtype=np.float64, count=max_points) for s in items]
    if ax is None:
        fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        FigureCanvasAgg(fig)  # a canvas of its own: no pyplot, no global backend switch
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    for i, (s, y) in enumerate(zip(items, curves)):
        label = labels[i] if labels is not None else _short(repr(s))
        ax.plot(x, y, label=label, linewidth=1.4)
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

    Example: ``"warmup(cosine(T_max=900, eta_min=1e-3), steps=100)"``. Safe for untrusted input:
    the text is parsed with :mod:`ast` and never evaluated. It may hold only calls of the
    functions in ``fusedlr.schedules.__all__`` by their bare names, with positional and keyword
    arguments that are literals (numbers, with a sign or not, strings, ``True``, ``False``,
    ``None``), lists or tuples of them, or such calls. Anything else (other names, attributes,
    subscripts, operators, comprehensions, ``*args``/``**kwargs``, ...) is refused, as are specs
    longer than ``MAX_SPEC_LENGTH`` characters or nested deeper than ``MAX_SPEC_DEPTH``.

    Raises:
        ValueError: for every spec that is not such an expression or whose calls refuse their
            arguments (the message is one line and names the part and its column).
        TypeError: if ``spec`` is not a ``str``.
    """
    if not isinstance(spec, str):
        raise TypeError(f"schedule spec must be a str, got {type(spec).__name__}")
    if len(spec) > MAX_SPEC_LENGTH:
        raise ValueError(f"schedule spec is too long: {len(spec)} characters (at most {MAX_SPEC_LENGTH})")
    # An expression may not start with an indent; columns are reported in the caller's text.
    text = spec.lstrip(" \t")
    builder = _SpecBuilder(text, lead=len(spec) - len(text))
    # A long run of signs nests one level per sign: refused here, before CPython's parser, whose
    # own limit follows sys.getrecursionlimit() (raised by torch.compile, for one).
    run = 0
    for ch in text:
        run = run + 1 if ch in "+-~" else run if ch.isspace() else 0
        if run > MAX_SPEC_DEPTH:
            raise ValueError(f"schedule spec: nested too deeply (at most {MAX_SPEC_DEPTH} levels)")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        where = builder.where(e.lineno or 1, (e.offset or 1) - 1, chars=True)
        raise ValueError(f"schedule spec: invalid syntax{where}: {e.msg}") from None
    except (RecursionError, MemoryError):  # what CPython's parser raises for deep nesting
        raise ValueError(f"schedule spec: nested too deeply (at most {MAX_SPEC_DEPTH} levels)") from None
    except ValueError as e:  # e.g. a lone surrogate that cannot be encoded
        raise ValueError(f"schedule spec: cannot be parsed: {_one_line(e)}") from None
    result = builder.value(tree.body, depth=0)
    if not isinstance(result, Schedule):
        raise ValueError(f"schedule spec gives {type(result).__name__}, not a Schedule")
    return result


def _schedule_functions() -> dict[str, Callable[..., Any]]:
    """The functions of fusedlr.schedules a spec may call, by name."""
    from . import schedules

    found = {name: getattr(schedules, name, None) for name in schedules.__all__}
    return {name: fn for name, fn in found.items()
            if inspect.isfunction(fn) and fn.__module__ == schedules.__name__}


# What a refused node is called in the message; anything else is named by its class.
_REFUSED = {
    ast.Attribute: "attribute access",
    ast.Subscript: "a subscript",
    ast.Name: "a name that is not a called schedule function",
    ast.BinOp: "an operator",
    ast.BoolOp: "a boolean operator",
    ast.Compare: "a comparison",
    ast.UnaryOp: "a unary operator other than a sign on a number",
    ast.Lambda: "a lambda",
    ast.IfExp: "a conditional expression",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.JoinedStr: "an f-string",
    ast.Starred: "a starred argument",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.NamedExpr: "an assignment expression",
}
_LITERAL_TYPES = (bool, int, float, str, type(None))


class _SpecBuilder:
    """Walks the parsed spec and calls the schedule functions with the literal values (no eval)."""

    def __init__(self, text: str, lead: int) -> None:
        self.text = text
        self.lead = lead  # characters stripped in front of the first line
        self.lines = text.splitlines(keepends=True) or [""]
        self.functions = _schedule_functions()

    def where(self, lineno: int, offset: int, chars: bool = False) -> str:
        """' at column C' (' at line L, column C' past the first line) in the caller's spec.

        ``offset`` counts UTF-8 bytes from the start of the line (as ``ast`` does) unless ``chars``.
        """
        if not chars and 0 < lineno <= len(self.lines):
            offset = len(self.lines[lineno - 1].encode("utf-8")[:offset].decode("utf-8", errors="replace"))
        if lineno == 1:
            return f" at column {offset + 1 + self.lead}"
        return f" at line {lineno}, column {offset + 1}"

    def error(self, node: ast.AST, message: str) -> ValueError:
        source = ast.get_source_segment(self.text, node) or type(node).__name__
        shown = _short(" ".join(source.split()), 60)
        return ValueError(f"schedule spec: {shown}{self.where(node.lineno, node.col_offset)}: {message}")

    def refuse(self, node: ast.AST, what: str | None = None) -> ValueError:
        what = what or _REFUSED.get(type(node), f"{type(node).__name__} expression")
        return self.error(node, f"refused {what}; a spec may only call schedule functions with literal arguments")

    def value(self, node: ast.expr, depth: int) -> Any:
        if depth > MAX_SPEC_DEPTH:
            raise self.error(node, f"nested deeper than {MAX_SPEC_DEPTH} levels")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, _LITERAL_TYPES):
                return node.value
            raise self.refuse(node, f"a literal of type {type(node.value).__name__}")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            operand = node.operand
            if isinstance(operand, ast.Constant) and type(operand.value) in (int, float):
                return -operand.value if isinstance(node.op, ast.USub) else +operand.value
            raise self.refuse(node, "a sign on anything but a number")
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.value(item, depth + 1) for item in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        raise self.refuse(node)

    def call(self, node: ast.Call, depth: int) -> Any:
        if not isinstance(node.func, ast.Name):
            raise self.refuse(node.func, "a call of anything but a schedule function by its name")
        fn = self.functions.get(node.func.id)
        if fn is None:
            raise self.error(node.func, f"unknown schedule function; known: {', '.join(sorted(self.functions))}")
        args = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.refuse(arg)
            args.append(self.value(arg, depth + 1))
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.refuse(kw.value, "**kwargs")
            kwargs[kw.arg] = self.value(kw.value, depth + 1)
        try:
            return fn(*args, **kwargs)
        except (TypeError, ValueError, ArithmeticError) as e:  # the functions' own argument checks
            message = _one_line(e)
            if isinstance(e, TypeError):
                message += f"; expected {node.func.id}{_plain_signature(fn)}"
            raise self.error(node, message) from None


def _plain_signature(fn: Callable[..., Any]) -> str:
    sig = inspect.signature(fn)
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def _one_line(e: BaseException) -> str:
    """The message of ``e`` on one line (pybind11's "incompatible function arguments" spans several)."""
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    text = text.removesuffix(" The following argument types are supported:").rstrip(".:")
    return _short(" ".join(text.split()), 300)
