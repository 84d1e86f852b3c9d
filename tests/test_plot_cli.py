"""fusedlr.plot and ``python -m fusedlr plot``: specs are parsed, never run; bad input gives one line and exit 2."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fusedlr
from fusedlr import schedules as S
from fusedlr.__main__ import main
from fusedlr.plot import MAX_POINTS, MAX_SPEC_DEPTH, MAX_SPEC_LENGTH, plot_schedule, schedule_from_spec

PNG = b"\x89PNG\r\n\x1a\n"

# Functions a spec can end in: those of fusedlr.schedules that return a Schedule (not steps_per_epoch).
SCHEDULE_FUNCTIONS = sorted(
    name for name in S.__all__
    if inspect.isfunction(getattr(S, name)) and inspect.signature(getattr(S, name)).return_annotation == "Schedule"
)

# One spec per schedule function, with the direct call it must equal.
SPEC_EXAMPLES = {
    "chained": ("chained([constant(0.5, total_steps=2), step(1, gamma=0.5)])",
                S.chained([S.constant(0.5, total_steps=2), S.step(1, gamma=0.5)])),
    "constant": ("constant(0.5, total_steps=3)", S.constant(0.5, total_steps=3)),
    "cosine": ("cosine(T_max=900, eta_min=1e-3, periodic=True)", S.cosine(900, 1e-3, True)),
    "cosine_restarts": ("cosine_restarts(10, T_mult=2, eta_min=-0.0, reach_min=True)",
                        S.cosine_restarts(10, 2, -0.0, True)),
    "cyclic": ("cyclic(0.001, 0.1, step_size_up=20, step_size_down=None, mode='triangular2')",
               S.cyclic(0.001, 0.1, step_size_up=20, step_size_down=None, mode="triangular2")),
    "exponential": ("exponential(rate=0.01)", S.exponential(rate=0.01)),
    "inverse_sqrt": ("inverse_sqrt(4000.0)", S.inverse_sqrt(4000.0)),
    "inverse_time": ("inverse_time(0.5, decay_steps=10, staircase=True)", S.inverse_time(0.5, 10, True)),
    "linear": ("linear(start_factor=+0.25, end_factor=1, total_steps=10)", S.linear(0.25, 1.0, 10)),
    "multistep": ("multistep([30, 80], 0.1)", S.multistep([30, 80], 0.1)),
    "one_cycle": ('one_cycle(0.1, 1000, pct_start=0.25, anneal_strategy="linear", three_phase=True)',
                  S.one_cycle(0.1, 1000, pct_start=0.25, anneal_strategy="linear", three_phase=True)),
    "piecewise_constant": ("piecewise_constant((10, 20), (1.0, 0.5, 0.25))",
                           S.piecewise_constant([10, 20], [1.0, 0.5, 0.25])),
    "piecewise_linear": ("piecewise_linear([0, 10, 20], [0.0, 1.0, 0.1])",
                         S.piecewise_linear([0, 10, 20], [0.0, 1.0, 0.1])),
    "cycles_cosine": ("cycles_cosine(100, num_cycles=1.5, min_rate=0.1)", S.cycles_cosine(100, 1.5, 0.1)),
    "linear_remaining": ("linear_remaining(90, 100)", S.linear_remaining(90, 100)),
    "cycles_cosine_restarts": ("cycles_cosine_restarts(100, num_cycles=3)", S.cycles_cosine_restarts(100, 3)),
    "polynomial_to": ("polynomial_to(100, 0.1, lr_end=0.001, power=2.0)", S.polynomial_to(100, 0.1, 0.001, 2.0)),
    "reciprocal_sqrt": ("reciprocal_sqrt(500)", S.reciprocal_sqrt(500)),
    "ramp_rate": ("ramp_rate(10, rate=0.1)", S.ramp_rate(10, 0.1)),
    "cycles": ("cycles(30, shape='poly', cycle_mul=1.5, cycle_decay=0.5, cycle_limit=3, power=2.0)",
               S.cycles(30, "poly", cycle_mul=1.5, cycle_decay=0.5, cycle_limit=3, power=2.0)),
    "stable_decay": ("stable_decay(100, 30, stable_fn='rsqrt', stable_timescale=10, decay_fn='cosine')",
                     S.stable_decay(100, 30, stable_fn="rsqrt", stable_timescale=10, decay_fn="cosine")),
    "wsd_shaped": ("wsd_shaped(10, 50, 40, warmup_type='cosine', decay_type='1-sqrt', min_lr_ratio=0.1)",
                   S.wsd_shaped(10, 50, 40, "cosine", "1-sqrt", 0.1)),
    "noise": ("noise(cosine(90), start=10, end=50, pct=0.3, std=0.5, seed=7, distribution='uniform')",
              S.noise(S.cosine(90), start=10, end=50, pct=0.3, std=0.5, seed=7, distribution="uniform")),
    "polynomial": ("polynomial(total_steps=100, power=2.0, end_factor=0.01)", S.polynomial(100, 2.0, 0.01)),
    "sequential": ("sequential([constant(0.1), cosine(90)], [10])",
                   S.sequential([S.constant(0.1), S.cosine(90)], [10])),
    "step": ("step(30, gamma=0.5)", S.step(30, 0.5)),
    "warmup": ("warmup(cosine(90), 10, start_factor=0.1, mode='exponential')",
               S.warmup(S.cosine(90), 10, start_factor=0.1, mode="exponential")),
    "wsd": ("wsd(10_000, warmup_steps=500, decay_steps=2_000, decay='sqrt', min_factor=0.1)",
            S.wsd(10_000, warmup_steps=500, decay_steps=2_000, decay="sqrt", min_factor=0.1)),
}

NESTED = [
    ("warmup(cosine(T_max=900, eta_min=1e-3), steps=100)", S.warmup(S.cosine(900, 1e-3), 100)),
    ("sequential([warmup(constant(), 5), chained([cosine(50), step(10, 0.5)])], [20])",
     S.sequential([S.warmup(S.constant(), 5), S.chained([S.cosine(50), S.step(10, 0.5)])], [20])),
    ("sequential((constant(0.1), sequential([cosine(9), linear()], [3])), (10,))",
     S.sequential([S.constant(0.1), S.sequential([S.cosine(9), S.linear()], [3])], [10])),
    ("cosine(T_max=steps_per_epoch(50_000, 128, drop_last=True))", S.cosine(S.steps_per_epoch(50_000, 128, True))),
    ("  warmup(\n  cosine(900),\n  steps=100,\n)", S.warmup(S.cosine(900), 100)),
]


# --- the spec parser ---------------------------------------------------------------------------------

def test_spec_examples_cover_every_schedule_function():
    assert "steps_per_epoch" not in SCHEDULE_FUNCTIONS and "cosine" in SCHEDULE_FUNCTIONS
    assert sorted(SPEC_EXAMPLES) == SCHEDULE_FUNCTIONS


@pytest.mark.parametrize("name", sorted(SPEC_EXAMPLES))
def test_every_schedule_function_can_be_written_in_a_spec(name):
    spec, expected = SPEC_EXAMPLES[name]
    assert spec.startswith(name + "(")
    assert schedule_from_spec(spec) == expected


@pytest.mark.parametrize(("spec", "expected"), NESTED, ids=range(len(NESTED)))
def test_nested_composites_build_the_same_schedule(spec, expected):
    assert schedule_from_spec(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("cosine.__globals__['__builtins__']['__import__']('os').system('touch pwned') or cosine(10)",
     "at column 1: refused a boolean operator"),
    ("warmup(cosine(10), steps=cosine.__globals__)", "cosine.__globals__ at column 26: refused attribute access"),
    ("cosine(x)", "x at column 8: refused a name"),
    ("cosine(10)[0]", "at column 1: refused a subscript"),
    ("9**9", "9**9 at column 1: refused an operator"),  # 9**9**9 itself: in a subprocess below
    ("cosine(1 + 2)", "1 + 2 at column 8: refused an operator"),
    ("cosine([t for t in (1, 2)])", "at column 8: refused a comprehension"),
    ("cosine(lambda: 1)", "at column 8: refused a lambda"),
    ("cosine(f'{1}')", "at column 8: refused an f-string"),
    ("cosine(*[10])", "at column 8: refused a starred argument"),
    ("cosine(**{'T_max': 10})", "at column 10: refused **kwargs"),
    ("cosine(--10)", "at column 8: refused a sign on anything but a number"),
    ("cosine(~10)", "at column 8: refused a unary operator"),
    ("cosine(1j)", "refused a literal of type complex"),
    ("cosine({10})", "refused a set"),
    ("cosine(10)(3)", "at column 1: refused a call of anything but a schedule function"),
    ("Schedule(10)", "Schedule at column 1: unknown schedule function; known: chained, constant, cosine"),
    ("  cosine(0)", "cosine(0) at column 3: cosine: T_max must be"),  # the native check, reported
    ("warmup(cosine(10),\n x)", "x at line 2, column 2: refused a name"),
    ("cosine(", "invalid syntax at column 7"),
    ("cosine(10)\x00", "null bytes"),
    ("cosine('\ud800')", "cannot be parsed"),
    ("steps_per_epoch(100, 10)", "gives int, not a Schedule"),
    ("[cosine(10)]", "gives list, not a Schedule"),
    ("cosine(10, T_max=5)",
     "got multiple values for argument 'T_max'; expected cosine(T_max, eta_min=0.0, periodic=False)"),
    ("cosine(10**0)", "refused an operator"),
    ("warmup(" * (MAX_SPEC_DEPTH + 1) + "constant()" + ", 1)" * (MAX_SPEC_DEPTH + 1),
     f"nested deeper than {MAX_SPEC_DEPTH} levels"),
    ("-" * 5000 + "1", "nested too deeply"),
    ("(" * 300 + "cosine(10)" + ")" * 300, "too many nested parentheses"),
    ("constant(" + "1" * (MAX_SPEC_LENGTH - 9) + ")", f"too long: {MAX_SPEC_LENGTH + 1} characters"),
], ids=lambda v: v[:40] if isinstance(v, str) else None)
def test_spec_refusals_name_the_part_and_its_column(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as info:
        schedule_from_spec(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_spec_passes_signs_and_literals_through_unchanged():
    assert schedule_from_spec("cosine(10, eta_min=-0.5)") == S.cosine(10, eta_min=-0.5)
    assert schedule_from_spec("cosine(True, periodic=True)") == S.cosine(1, periodic=True)
    assert schedule_from_spec("constant(1, total_steps=None)") == S.constant(1.0)
    with pytest.raises(ValueError, match="got -1"):
        schedule_from_spec("constant(-1.0)")


# Texts that look like specs: schedule names and other names, literals, and every construct refused.
_names = st.sampled_from([*S.__all__, "x", "os", "__import__", "eval", "Schedule", "lambda", "_C"])
_literals = st.one_of(
    st.integers(-(10**20), 10**20).map(str), st.floats().map(repr), st.text(max_size=8).map(repr),
    st.sampled_from(["None", "True", "False", "1e999", "-1e999", "...", "b''", "1j", "0x10", "1_000", "-0.0"]),
)


def _compose(parts):
    args = st.lists(st.one_of(parts, st.tuples(_names, parts).map("{0[0]}={0[1]}".format),
                              parts.map("*{}".format), parts.map("**{}".format)), max_size=4).map(", ".join)
    return st.one_of(
        st.tuples(_names, args).map("{0[0]}({0[1]})".format),
        st.lists(parts, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(parts, max_size=4).map(lambda xs: "(" + ", ".join(xs) + ",)"),
        st.tuples(parts, _names).map("{0[0]}.{0[1]}".format),
        st.tuples(parts, parts).map("{0[0]}[{0[1]}]".format),
        st.tuples(parts, st.sampled_from(["**", "+", "*", " or ", " if 1 else ", "<"]), parts).map("".join),
        st.tuples(st.sampled_from(["-", "+", "~", "not ", "lambda: "]), parts).map("".join),
        parts.map("[t for t in {}]".format),
        st.tuples(parts, st.text(max_size=3)).map("".join),  # and some noise
    )


SPEC_LIKE = st.recursive(st.one_of(_names, _literals), _compose, max_leaves=12)


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(st.one_of(st.text(max_size=60), SPEC_LIKE))
def test_any_text_gives_a_schedule_or_a_value_error(spec):
    try:
        result = schedule_from_spec(spec)
    except ValueError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(result, fusedlr.Schedule)


# --- plot_schedule -----------------------------------------------------------------------------------

def test_import_stays_light():
    code = "import sys, fusedlr; assert 'matplotlib' not in sys.modules, 'matplotlib imported by import fusedlr'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plot_schedule_draws_the_curve(tmp_path):
    s = S.warmup(S.cosine(90), 10)
    fig = plot_schedule([s, S.constant(0.5)], 100, base_lr=0.1, path=tmp_path / "lr.png")
    (line, flat) = fig.axes[0].get_lines()
    assert np.array_equal(line.get_xdata(), np.arange(100))
    assert np.array_equal(line.get_ydata(), s.curve(100, base_lr=0.1)) and np.all(flat.get_ydata() == 0.05)
    assert (tmp_path / "lr.png").read_bytes()[:8] == PNG


def test_plot_schedule_draws_every_step_up_to_max_points_then_samples():
    s = S.cosine_restarts(7, 1.5)
    (line,) = plot_schedule(s, 1000, start=5, max_points=1000).axes[0].get_lines()
    assert np.array_equal(line.get_xdata(), np.arange(5, 1005))
    (line,) = plot_schedule(s, 1001, start=5, max_points=1000).axes[0].get_lines()
    x = line.get_xdata()
    assert len(x) == 1000 and x[0] == 5 and x[-1] == 1005 and np.all(np.diff(x) >= 1)
    assert np.array_equal(line.get_ydata(), [s(int(t)) for t in x])


@pytest.mark.parametrize("start", [0, 2**62 - 10**10])
def test_large_steps_are_sampled_at_exact_steps(start):
    s = S.warmup(S.cosine_restarts(1_000_003, 1.1), 12_345)
    steps = 10**10
    began = time.perf_counter()
    (line,) = plot_schedule(s, steps, start=start, base_lr=0.5).axes[0].get_lines()
    assert time.perf_counter() - began < 30  # 200,000 native calls: well under a second on any machine
    x, y = line.get_xdata(), line.get_ydata()
    assert len(x) == len(y) == MAX_POINTS
    exact = [start + i * (steps - 1) // (MAX_POINTS - 1) for i in range(MAX_POINTS)]  # evenly spaced, ends included
    assert exact[0] == start and exact[-1] == start + steps - 1
    assert np.array_equal(x, np.array(exact, dtype=np.float64))
    assert np.array_equal(y, [s(t, 0.5) for t in exact])


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(steps=0), "steps must be > 0"),
    (dict(steps=10, max_points=1), "max_points must be >= 2"),
    (dict(steps=10, labels=["a", "b"]), "one entry per schedule"),
])
def test_plot_schedule_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_schedule(S.constant(), **kwargs)


# --- the command line --------------------------------------------------------------------------------

def run_in_process(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def run_subprocess(argv, cwd):
    """``python -m fusedlr`` in a fresh process: a payload that hangs or runs code cannot harm the tests."""
    source_root = str(Path(fusedlr.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "fusedlr", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stdout, done.stderr


OUT = "out.png"
SUBPROCESS = "subprocess"  # rows whose spec would run code or never end under eval
BAD_ARGUMENTS = [
    # specs
    (["cosine(", "--steps", "10"], "error: schedule spec: invalid syntax at column 7", None),
    (["(" * 300 + "cosine(10)" + ")" * 300, "--steps", "10"], "too many nested parentheses", None),
    (["cosine('a')", "--steps", "10"], "cosine('a') at column 1: cosine: T_max must be a number, got str", None),
    (["cosine()", "--steps", "10"], "missing 1 required positional argument: 'T_max'", None),
    (["no_such_schedule(3)", "--steps", "10"], "no_such_schedule at column 1: unknown schedule function", None),
    (["cosine(0)", "--steps", "10"], "error: schedule spec: cosine(0) at column 1: cosine: T_max must be", None),
    (["cosine(10)", "cosine(0)", "--steps", "10"], "error: spec 2: schedule spec: cosine(0)", None),
    (["constant(" + "1" * MAX_SPEC_LENGTH + ")", "--steps", "10"], "schedule spec is too long", None),
    (["cosine.__globals__['__builtins__']['__import__']('os').system('touch pwned') or cosine(10)", "--steps", "10"],
     "refused a boolean operator", SUBPROCESS),
    (["warmup(cosine(10), cosine.__globals__['__builtins__']['__import__']('os').system('touch pwned'))",
      "--steps", "10"], "refused a call of anything but a schedule function", SUBPROCESS),
    (["[c for c in ().__class__.__bases__[0].__subclasses__() if c.__name__ == 'catch_warnings'][0]()"
      "._module.__builtins__['__import__']('os').system('touch pwned') or cosine(10)", "--steps", "10"],
     "refused a boolean operator", SUBPROCESS),
    (["().__class__.__bases__[0].__subclasses__()", "--steps", "10"], "refused a call of anything", SUBPROCESS),
    (["9**9**9", "--steps", "10"], "9**9**9 at column 1: refused an operator", SUBPROCESS),
    (["cosine(9**9**9)", "--steps", "10"], "9**9**9 at column 8: refused an operator", SUBPROCESS),
    # numbers
    (["cosine(10)", "--steps", "10**12"], "argument --steps: invalid int value: '10**12'", None),
    (["cosine(10)", "--steps", "0"], "error: --steps must be > 0, got 0", None),
    (["cosine(10)", "--steps", "-5"], "error: --steps must be > 0, got -5", None),
    (["cosine(10)", "--steps", str(2**62 + 1)], "must be < 2**62", None),
    (["cosine(10)", "--steps", "10", "--start", str(2**62 - 5)], "must be < 2**62", None),
    (["cosine(10)", "--steps", "10", "--start", "-1"], "error: --start must be >= 0, got -1", None),
    (["cosine(10)", "--steps", "10", "--base-lr", "nan"], "--base-lr must be a finite number >= 0, got nan", None),
    (["cosine(10)", "--steps", "10", "--base-lr", "-0.1"], "--base-lr must be a finite number >= 0, got -0.1", None),
    (["cosine(10)", "--steps", "10", "--base-lr=-inf"], "--base-lr must be a finite number >= 0, got -inf", None),
    # output
    (["cosine(10)", "--steps", "10", "-o", "missing/out.png"], "error: output folder missing does not exist", None),
    (["cosine(10)", "--steps", "10", "-o", "missing/"], "error: output folder missing/ does not exist", None),
    (["cosine(10)", "--steps", "10", "-o", "a_file/out.png"], "error: output folder a_file is not a folder", None),
    (["cosine(10)", "--steps", "10", "-o", "out.xyz"], "error: unsupported image format '.xyz'", None),
    (["cosine(10)", "--steps", "10", "-o", "/proc/out.png"], "error: output folder /proc is not writable", None),
]


@pytest.mark.parametrize(("argv", "message", "where"), BAD_ARGUMENTS,
                         ids=lambda v: v[0][:40] if isinstance(v, list) else None)
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(argv, message, where, tmp_path, monkeypatch, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    before = sorted(tmp_path.iterdir())
    argv = ["plot", *argv] if "-o" in argv else ["plot", *argv, "-o", OUT]
    if where == SUBPROCESS:
        rc, out, err = run_subprocess(argv, cwd=tmp_path)
    else:
        monkeypatch.chdir(tmp_path)
        rc, out, err = run_in_process(argv, capsys)
    assert rc == 2, (out, err)
    assert message in err
    assert "Traceback" not in err and out == ""
    assert len(err.splitlines()) == 1, err  # argparse's own errors too: no usage block in front
    assert err.startswith("error: ") or err.startswith("python -m fusedlr plot: error: "), err
    assert not (tmp_path / "pwned").exists()
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize(("output", "written"), [
    ("folder", "folder/schedule.png"),
    ("folder/", "folder/schedule.png"),
    ("lr", "lr.png"),
    ("folder/lr", "folder/lr.png"),
    ("lr.svg", "lr.svg"),
    ("lr.PDF", "lr.PDF"),
    (None, "schedule.png"),
])
def test_command_line_writes_the_file_it_prints(output, written, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    argv = ["plot", "warmup(cosine(T_max=900, eta_min=1e-3), steps=100)", "--steps", "1000"]
    rc, out, err = run_in_process(argv + (["-o", output] if output is not None else []), capsys)
    assert (rc, err) == (0, "")
    assert out == f"{Path(written)}\n"
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [str(Path(written))]
    magic = {".png": PNG, ".svg": b"<?xml", ".pdf": b"%PDF"}[Path(written).suffix.lower()]
    assert (tmp_path / written).read_bytes().startswith(magic)


def test_command_line_plots_a_huge_step_count_by_sampling(tmp_path, capsys):
    out = tmp_path / "big.png"
    began = time.perf_counter()
    rc, printed, err = run_in_process(["plot", "cosine(1000000000000)", "step(1000000)", "--steps", "1000000000000",
                                       "--start", "7", "--log", "-o", str(out)], capsys)
    assert time.perf_counter() - began < 60
    assert (rc, printed, err) == (0, f"{out}\n", "")
    assert out.read_bytes()[:8] == PNG


def test_command_line_draws_dollar_signs_as_text(tmp_path, capsys):
    # "$...$" is matplotlib's mathtext; a bad formula would fail only when the figure is saved.
    out = tmp_path / "t.png"
    rc, printed, err = run_in_process(["plot", "cosine(10)", "cyclic(0.0, 1.0, 2, mode='triangular')",
                                       "--steps", "10", "--title", r"a$\frac{x$", "-o", str(out)], capsys)
    assert (rc, printed, err) == (0, f"{out}\n", "")
    assert out.read_bytes()[:8] == PNG


def test_command_line_lists_the_schedule_functions(capsys):
    rc, out, err = run_in_process(["list"], capsys)
    assert (rc, err) == (0, "")
    assert [line.split()[0] for line in out.splitlines()] == [n for n in S.__all__ if inspect.isfunction(getattr(S, n))]
