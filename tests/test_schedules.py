"""fusedlr.schedules: the closed forms against independent NumPy formulas and torch's schedulers."""

from __future__ import annotations

import doctest
import inspect
import math
import pickle
import re
import runpy
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fusedlr
from fusedlr import schedules as S

# Our formulas against NumPy versions of the same formula: only rounding differs.
NUMPY_RTOL = 1e-12

N = 400
T = np.arange(N, dtype=np.float64)


def close(actual, expected, rtol=NUMPY_RTOL, atol=1e-15):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def torch_lrs(make, n, lr=1.0):
    """The lr torch's scheduler gives at steps 0..n-1 (one param group, initial lr `lr`)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    sched = make(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


# --- each schedule against an independent NumPy closed form ----------------------------------------

def test_constant():
    close(S.constant(0.3, total_steps=10).curve(N), np.where(T < 10, 0.3, 1.0))
    close(S.constant(0.3).curve(N), np.full(N, 0.3))


def test_step():
    close(S.step(7, gamma=0.5).curve(N), 0.5 ** np.floor(T / 7))


def test_multistep_counts_repeated_milestones():
    ms = [30, 10, 10, 200]
    expected = 0.3 ** np.array([sum(m <= t for m in ms) for t in T])
    close(S.multistep(ms, gamma=0.3).curve(N), expected)


def test_linear():
    close(S.linear(0.1, 0.7, 150).curve(N), 0.1 + (0.7 - 0.1) * np.minimum(T, 150) / 150)


def test_exponential_gamma_and_rate():
    close(S.exponential(0.99).curve(N), 0.99**T)
    close(S.exponential(rate=0.01).curve(N), np.exp(-0.01 * T))


def test_inverse_time():
    close(S.inverse_time(0.5, decay_steps=10).curve(N), 1 / (1 + 0.5 * T / 10))
    close(S.inverse_time(0.5, decay_steps=10, staircase=True).curve(N), 1 / (1 + 0.5 * np.floor(T / 10)))


def test_polynomial():
    close(S.polynomial(300, power=2.5, end_factor=0.1).curve(N),
          0.9 * (1 - np.minimum(T, 300) / 300) ** 2.5 + 0.1)


def test_cosine_holds_eta_min_after_T_max():
    expected = 0.01 + (1 - 0.01) * (1 + np.cos(np.pi * np.minimum(T, 100) / 100)) / 2
    close(S.cosine(100, eta_min=0.01).curve(N), expected)


def test_cosine_periodic():
    close(S.cosine(100, eta_min=0.01, periodic=True).curve(N), 0.01 + 0.99 * (1 + np.cos(np.pi * T / 100)) / 2)


def restarts_reference(t, T_0, T_mult, eta_min, reach_min):
    """Walk the cycles one by one (no logarithms)."""
    i, start = 0, 0
    while True:
        nxt = T_0 * i + T_0 if T_mult == 1 else round(T_0 * (T_mult ** (i + 1) - 1) / (T_mult - 1))
        if t < nxt:
            break
        i, start = i + 1, nxt
    length = nxt - start
    frac = (t - start) / (length - 1 if reach_min and length > 1 else length)
    return eta_min + (1 - eta_min) * (1 + math.cos(math.pi * frac)) / 2


@pytest.mark.parametrize("T_mult", [1.0, 2.0, 1.5, 3.0])
@pytest.mark.parametrize("reach_min", [False, True])
def test_cosine_restarts(T_mult, reach_min):
    s = S.cosine_restarts(7, T_mult=T_mult, eta_min=0.05, reach_min=reach_min)
    close(s.curve(3000), [restarts_reference(t, 7, T_mult, 0.05, reach_min) for t in range(3000)])


def test_cosine_restarts_reach_min_ends_each_cycle_at_eta_min():
    s = S.cosine_restarts(10, T_mult=2.0, eta_min=0.05, reach_min=True)
    for end in (9, 29, 69):  # last step of the cycles [0, 10), [10, 30), [30, 70)
        assert s(end) == pytest.approx(0.05, abs=1e-15)
        assert s(end + 1) == pytest.approx(1.0)


def cyclic_reference(t, lo, hi, up, down, mode, gamma):
    total = up + down
    cycle = np.floor(1 + t / total)
    x = 1 + t / total - cycle
    sf = np.where(x <= up / total, x / (up / total), (x - 1) / (up / total - 1))
    scale = {"triangular": 1.0, "triangular2": 1 / 2.0 ** (cycle - 1), "exp_range": gamma**t}[mode]
    return lo + (hi - lo) * sf * scale


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic(mode):
    s = S.cyclic(0.01, 0.1, step_size_up=20, step_size_down=35, mode=mode, gamma=0.995)
    close(s.curve(N), cyclic_reference(T, 0.01, 0.1, 20, 35, mode, 0.995))
    inv = S.cyclic(0.8, 0.9, step_size_up=20, step_size_down=35, mode=mode, gamma=0.995, inverted=True)
    close(inv.curve(N), 0.9 - (cyclic_reference(T, 0.8, 0.9, 20, 35, mode, 0.995) - 0.8))


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle(three_phase, anneal):
    total, pct = 300, 0.25
    s = S.one_cycle(2.0, total, pct_start=pct, anneal_strategy=anneal, div_factor=10.0, final_div_factor=100.0,
                    three_phase=three_phase)
    lo, peak, end = 0.2, 2.0, 0.002
    e1 = pct * total - 1
    phases = [(0, e1, lo, peak)]
    phases += [(e1, 2 * e1, peak, lo), (2 * e1, total - 1, lo, end)] if three_phase else [(e1, total - 1, peak, end)]

    def ref(t):
        for a, z, x0, x1 in phases:
            if t <= z or z == total - 1:
                p = (t - a) / (z - a)
                return x1 + (x0 - x1) / 2 * (1 + math.cos(math.pi * p)) if anneal == "cos" else x0 + (x1 - x0) * p
        raise AssertionError

    close(s.curve(total), [ref(t) for t in range(total)])
    assert s(0) == pytest.approx(lo)
    assert s(int(e1)) == pytest.approx(peak, rel=1e-3)
    assert s(total - 1) == pytest.approx(end) and s(total) == s(total - 1) and s(10 * total) == s(total - 1)


def test_inverse_sqrt_and_its_warmup_form():
    close(S.inverse_sqrt(50.0).curve(N), 1 / np.sqrt(1 + T / 50))
    w = S.warmup(S.inverse_sqrt(100.0), 100)
    t = np.arange(1, N)
    close(w.curve(N)[100:], np.sqrt(100 / t[99:]))  # sqrt(W / t) after W warmup steps (Vaswani et al.)
    close(w.curve(100), T[:100] / 100)


@pytest.mark.parametrize("decay,g", [("linear", lambda q: 1 - q), ("cosine", lambda q: (1 + np.cos(np.pi * q)) / 2),
                                     ("sqrt", lambda q: 1 - np.sqrt(q))])
def test_wsd(decay, g):
    s = S.wsd(300, warmup_steps=40, decay_steps=60, decay=decay, min_factor=0.1, warmup_start_factor=0.2)
    q = np.clip((T - 240) / 60, 0, 1)
    expected = np.where(T < 40, 0.2 + 0.8 * T / 40, np.where(T < 240, 1.0, 0.1 + 0.9 * g(q)))
    close(s.curve(N), expected)
    assert s(300) == pytest.approx(0.1) and s(10_000) == pytest.approx(0.1)


def test_piecewise_constant():
    s = S.piecewise_constant([10, 50, 51], [1.0, 0.5, 0.2, 0.05])
    close(s.curve(N), np.select([T < 10, T < 50, T < 51], [1.0, 0.5, 0.2], 0.05))


def test_piecewise_linear_holds_outside():
    xs, ys = [20, 100, 250], [0.1, 1.0, 0.3]
    close(S.piecewise_linear(xs, ys).curve(N), np.interp(T, xs, ys))


# --- composition -------------------------------------------------------------------------------------

def test_warmup_linear_and_exponential():
    inner = S.cosine(200, eta_min=0.0)
    w = S.warmup(inner, 30, start_factor=0.1)
    close(w.curve(30), 0.1 + 0.9 * T[:30] / 30)
    close(w.curve(N - 30, start=30), inner.curve(N - 30))
    e = S.warmup(inner, 30, start_factor=0.01, mode="exponential")
    close(e.curve(30), 0.01 ** (1 - T[:30] / 30))
    assert np.all(np.diff(e.curve(31)) > 0)


def test_sequential_pieces_see_step_minus_boundary():
    a, b, c = S.linear(0.1, 1.0, 20), S.cosine(100), S.exponential(0.9)
    s = S.sequential([a, b, c], [20, 120])
    close(s.curve(20), a.curve(20))
    close(s.curve(100, start=20), b.curve(100))
    close(s.curve(50, start=120), c.curve(50))


def test_sequential_boundary_zero_and_equal_boundaries_skip_pieces():
    a, b, c = S.constant(0.1), S.constant(0.5), S.exponential(0.9)
    assert np.array_equal(S.sequential([a, b], [0]).curve(10), b.curve(10))
    assert np.array_equal(S.sequential([a, b, c], [5, 5]).curve(20), np.r_[a.curve(5), c.curve(15)])


def test_sequential_nests():
    inner = S.sequential([S.constant(0.5), S.exponential(0.9)], [10])
    outer = S.sequential([S.warmup(S.constant(), 5), inner, S.constant(0.01)], [5, 40])
    expected = np.r_[T[:5] / 5, np.full(10, 0.5), 0.9 ** np.arange(25), np.full(N - 40, 0.01)]
    close(outer.curve(N), expected)


def test_chained_multiplies_factors():
    parts = [S.constant(0.1, total_steps=50), S.exponential(0.99), S.step(30, 0.5)]
    close(S.chained(parts).curve(N), np.prod([p.curve(N) for p in parts], axis=0))


def test_chained_feeds_each_value_as_the_next_base():
    # The cosine's eta_min is absolute: chained(c, cos) = eta_min + (c * b - eta_min) * ...
    s = S.chained([S.constant(0.5), S.cosine(100, eta_min=0.1)])
    close(s.curve(N, base_lr=2.0), S.cosine(100, eta_min=0.1).curve(N, base_lr=1.0))


def test_too_many_nodes_is_a_value_error():
    s = S.constant()
    for _ in range(S.Schedule.max_nodes - 1):
        s = S.warmup(s, 1)
    assert s.num_nodes == S.Schedule.max_nodes
    with pytest.raises(ValueError, match="kMaxScheduleNodes"):
        S.warmup(s, 1)
    with pytest.raises(ValueError, match="kMaxScheduleValues"):
        S.multistep(list(range(S.Schedule.max_values + 1)))


# --- torch's schedulers as the reference --------------------------------------------------------------

TORCH_EQUIVALENTS = [
    (lambda: S.step(9, 0.7), lambda o: torch.optim.lr_scheduler.StepLR(o, 9, 0.7)),
    (lambda: S.multistep([5, 80, 80], 0.5), lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [5, 80, 80], 0.5)),
    (lambda: S.constant(0.2, 33), lambda o: torch.optim.lr_scheduler.ConstantLR(o, 0.2, 33)),
    (lambda: S.linear(0.05, 0.8, 120), lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.05, 0.8, 120)),
    (lambda: S.exponential(0.985), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.985)),
    (lambda: S.polynomial(250, 1.7), lambda o: torch.optim.lr_scheduler.PolynomialLR(o, 250, 1.7)),
    (lambda: S.cosine(90, 0.003, periodic=True), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 90, 0.003)),
    (lambda: S.cosine_restarts(11, 2.0, 0.001),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 11, 2, 0.001)),
    (lambda: S.cyclic(0.02, 0.4, 25, 40, "triangular2"),
     lambda o: torch.optim.lr_scheduler.CyclicLR(o, 0.02, 0.4, 25, 40, "triangular2")),
    (lambda: S.one_cycle(0.4, N, 0.3), lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.4, total_steps=N)),
]


@pytest.mark.parametrize("ours,theirs", TORCH_EQUIVALENTS, ids=[f"{i}" for i in range(len(TORCH_EQUIVALENTS))])
def test_matches_torch_scheduler(ours, theirs):
    s = ours()
    np.testing.assert_allclose(s.curve(N, base_lr=0.4), torch_lrs(theirs, N, lr=0.4), rtol=1e-12, atol=0)


# --- values at the landmarks; monotonicity where promised ---------------------------------------------

MONOTONE_DOWN = [S.step(10), S.multistep([3, 30]), S.exponential(0.9), S.inverse_time(0.1), S.polynomial(100),
                 S.cosine(100), S.inverse_sqrt(10.0), S.wsd(100, 0, 50, "sqrt")]


@pytest.mark.parametrize("s", MONOTONE_DOWN, ids=repr)
def test_decays_never_increase(s):
    c = s.curve(1000)
    assert c[0] == 1.0 and np.all(np.diff(c) <= 0) and c[-1] < 1.0


def test_landmarks():
    c = S.cosine(100, eta_min=0.1)
    assert (c(0), c(50), c(100), c(101)) == (1.0, pytest.approx(0.55), pytest.approx(0.1), pytest.approx(0.1))
    w = S.warmup(S.cosine(100), 10, start_factor=0.0)
    assert w(0) == 0.0 and w(10) == 1.0 and np.argmax(w.curve(200)) == 10 and w(110) == pytest.approx(0.0, abs=1e-16)
    lin = S.linear(0.0, 1.0, 10)
    assert np.all(np.diff(lin.curve(20)) >= 0) and lin(10) == 1.0 and lin(1000) == 1.0
    assert S.cosine(10)(-5) == 1.0  # steps before 0 count as 0


# --- objects: C++ evaluation, curve, pickle, equality, repr --------------------------------------------

def test_schedules_are_the_native_class():
    for name in S.__all__:
        fn = getattr(S, name)
        if inspect.isfunction(fn) and name not in ("steps_per_epoch", "warmup", "sequential", "chained"):
            assert type(fn(*_example_args(name))) is fusedlr._C.Schedule, name
    assert type(S.cosine(10)).__module__ == "fusedlr._C" and S.Schedule is fusedlr._C.Schedule


def _example_args(name):
    return {"step": (3,), "multistep": ([3],), "exponential": (0.9,), "inverse_time": (0.1,), "cosine": (10,),
            "cosine_restarts": (10,), "cyclic": (0.1, 1.0), "one_cycle": (1.0, 100), "wsd": (100,),
            "piecewise_constant": ([3], [1.0, 0.1]), "piecewise_linear": ([0, 3], [0.0, 1.0]),
            "noise": (S.cosine(10),), "linear_remaining": (5, 5), "cycles_cosine": (10,),
            "cycles_cosine_restarts": (10,), "polynomial_to": (10, 0.1), "reciprocal_sqrt": (10,),
            "wsd_shaped": (2, 5, 3), "ramp_rate": (4,), "cycles": (10,), "stable_decay": (10, 4)}.get(name, ())


def test_curve_equals_per_step_evaluation_exactly():
    s = S.warmup(S.sequential([S.cosine_restarts(13, 1.5, 0.01), S.chained([S.constant(0.3), S.exponential(0.99)])],
                              [500]), 20, 0.05)
    for start in (0, 7, 480):
        c = s.curve(100_000, start=start, base_lr=0.3)  # large enough to be split across threads
        idx = np.r_[0:50, 49_990:50_010, 99_950:100_000]
        assert c.dtype == np.float64 and c.shape == (100_000,)
        assert [c[i] for i in idx] == [s(int(start + i), 0.3) for i in idx]
    assert S.cosine(5).curve(0).shape == (0,)


def _random_leaf(rng):
    r = lambda lo, hi: float(rng.uniform(lo, hi))
    n = lambda lo, hi: int(rng.integers(lo, hi))
    return [
        lambda: S.constant(r(0.1, 2), total_steps=n(0, 50)),
        lambda: S.step(n(1, 40), r(0.3, 0.99)),
        lambda: S.multistep(sorted(rng.choice(300, 3, replace=False).tolist()), r(0.1, 0.9)),
        lambda: S.linear(r(0, 1), r(0, 1), n(1, 200)),
        lambda: S.exponential(r(0.95, 1.0)),
        lambda: S.exponential(rate=r(0, 0.05)),
        lambda: S.inverse_time(r(0, 1), n(1, 20), bool(rng.integers(2))),
        lambda: S.polynomial(n(1, 300), float(rng.choice([1.0, 2.0, 0.5, 3.7])), r(0, 0.5)),
        lambda: S.cosine(n(1, 300), r(0, 0.1), bool(rng.integers(2))),
        lambda: S.cosine_restarts(n(1, 40), float(rng.choice([1.0, 2.0, 1.5, 3.0])), r(0, 0.1), bool(rng.integers(2))),
        lambda: S.cyclic(0.1, 1.0, r(1, 50), None, str(rng.choice(["triangular", "triangular2", "exp_range"])), r(0.99, 1)),
        lambda: S.one_cycle(1.0, total_steps=n(10, 400), three_phase=bool(rng.integers(2))),
        lambda: S.inverse_sqrt(r(1, 100)),
        lambda: S.wsd(n(100, 400), warmup_steps=n(0, 50), decay_steps=n(1, 50), decay=str(rng.choice(["linear", "cosine", "sqrt"]))),
        lambda: S.piecewise_constant([n(1, 50), n(50, 200)], [1.0, 0.5, 0.1]),
        lambda: S.piecewise_linear([n(0, 50), n(50, 200)], [0.1, 1.0]),
        lambda: S.step(r(0.5, 30), r(0.3, 0.99)),  # a fractional step_size (timm's decay_t=2.4)
        lambda: S.cycles(r(5, 200), str(rng.choice(["cosine", "poly", "tanh"])), lr_min=r(0, 0.01),
                         cycle_mul=float(rng.choice([1.0, 0.8, 1.5, 2.0])), cycle_decay=r(0.3, 1.0),
                         cycle_limit=n(0, 6), k_decay=r(0.5, 2), power=r(0.3, 3)),
        lambda: S.stable_decay(n(50, 400), n(1, 50), lr_min=r(0, 0.01), stable_fn=str(rng.choice(["constant", "rsqrt", "power"])),
                               stable_timescale=r(1, 50), stable_power=r(0.1, 1),
                               decay_fn=str(rng.choice(["linear", "1-sqrt", "cosine", "power", "exp"])),
                               decay_power=r(0.3, 3), decay_ratio=r(0.01, 0.9)),
    ][n(0, 19)]()


def _random_schedule(rng, depth):
    kind = int(rng.integers(0, 4)) if depth > 0 else 0
    if kind == 0:
        return _random_leaf(rng)
    if kind == 1:
        child, steps = _random_schedule(rng, depth - 1), int(rng.integers(0, 60))
        if rng.integers(2):  # timm's: from an absolute lr, to the base or the schedule, before or under it
            return S.warmup(child, steps, start_lr=float(rng.uniform(0, 0.1)), to_base=bool(rng.integers(2)),
                            overlap=bool(rng.integers(2)))
        return S.warmup(child, steps, float(rng.uniform(0, 1)),
                        str(rng.choice(["linear", "exponential", "cosine", "1-sqrt"])) if rng.integers(2) else "linear")
    parts = [_random_schedule(rng, depth - 1) for _ in range(2)]
    if kind == 2:
        return S.sequential(parts, [int(rng.integers(0, 150))])
    return S.chained(parts)


def test_curve_equals_per_step_evaluation_bit_for_bit_on_random_nested_schedules():
    # Schedule.curve() evaluates a segment at a time (fusedlr/schedule_curve.h), __call__ one step
    # through the whole tree: the same bits for every kind, nesting and start.
    rng = np.random.default_rng(1234)
    checked = 0
    for _ in range(60):
        try:
            s = _random_schedule(rng, depth=2)
        except ValueError:  # past max_nodes / max_values
            continue
        checked += 1
        for start in (-5, 0, int(rng.integers(1, 400))):
            base = float(rng.uniform(0.01, 1.0))
            c = s.curve(1500, start=start, base_lr=base)
            assert np.array_equal(c, [s(start + i, base) for i in range(1500)]), (repr(s), start)
    assert checked >= 50


def test_pickle_equality_hash_and_repr():
    s = S.warmup(S.sequential([S.multistep([3, 9], 0.5), S.cyclic(0.1, 1.0, 4)], [50]), 5, 0.1, "exponential")
    back = pickle.loads(pickle.dumps(s))
    assert back == s and hash(back) == hash(s) and back is not s
    assert np.array_equal(back.curve(500), s.curve(500))
    assert s != S.constant() and S.cosine(10) == S.cosine(10) and S.cosine(10) != S.cosine(11)
    assert repr(s).startswith("warmup(sequential([multistep(milestones=[3, 9], gamma=0.5), cyclic(")
    assert repr(S.cosine(10, 0.5)) == "cosine(T_max=10, eta_min=0.5, periodic=False)"
    assert s.kind == "warmup" and S.cosine(3).kind == "cosine"


# The ScheduleData layout (schedule.h): nodes of kind, flags, 4 int16 and PARAMS doubles; the
# values; the links; the three counts.
PARAMS = 8
NODE = 16 + 8 * PARAMS
VALUES_AT = NODE * S.Schedule.max_nodes
LINKS_AT = VALUES_AT + 8 * S.Schedule.max_values
COUNTS_AT = LINKS_AT + 2 * S.Schedule.max_nodes


def test_schedule_data_is_a_small_fixed_size_struct():
    assert S.Schedule.nbytes <= 2048  # a kernel argument (CUDA takes 4 KB of them)
    assert len(S.cosine(10).to_bytes()) == S.Schedule.nbytes


def _format1(s: S.Schedule) -> tuple:
    """The state format 1 (fusedlr 0.1: the nodes' slots as numbers) of ``s``, read from its bytes
    (the same slots for every kind but cyclic and wsd, whose format-1 layout differed)."""
    raw = s.to_bytes()
    n_nodes, n_values, n_links = struct.unpack_from("<3i", raw, COUNTS_AT)
    # (format 1 had 6 parameter slots; every kind it knew used at most those)
    nodes = tuple(struct.unpack_from("<iihhhh", raw, NODE * i) + (struct.unpack_from("<6d", raw, NODE * i + 16),)
                  for i in range(n_nodes))
    return (1, nodes, struct.unpack_from(f"<{n_values}d", raw, VALUES_AT),
            struct.unpack_from(f"<{n_links}h", raw, LINKS_AT))


def test_setstate_rejects_corrupt_state():
    state = _format1(S.sequential([S.constant(), S.constant()], [3]))
    bad_links = (state[0], state[1], state[2], (0, 0))  # a child pointing at the root: a cycle
    with pytest.raises(ValueError, match="child index"):
        S.Schedule.__new__(S.Schedule).__setstate__(bad_links)
    with pytest.raises(ValueError, match="unknown state format"):
        S.Schedule.__new__(S.Schedule).__setstate__((3, "cosine", {}))
    with pytest.raises(ValueError, match="unknown schedule kind 'spline'"):
        S.Schedule.__new__(S.Schedule).__setstate__((2, "spline", {}))
    with pytest.raises(TypeError, match="cosine\\(\\) got an unexpected keyword argument 'T'"):
        S.Schedule.__new__(S.Schedule).__setstate__((2, "cosine", {"T": 3}))
    with pytest.raises(TypeError, match="malformed state"):
        S.Schedule.__new__(S.Schedule).__setstate__((2, "warmup", {"schedule": 3, "steps": 2}))
    deep = (2, "constant", {"factor": 1.0})
    for _ in range(100_000):  # nested far past what a schedule holds: refused, not a stack overflow
        deep = (2, "warmup", {"schedule": deep, "steps": 1})
    with pytest.raises(ValueError, match=f"at most {S.Schedule.max_nodes} nodes"):
        S.Schedule.__new__(S.Schedule).__setstate__(deep)


def test_state_is_the_factory_arguments_and_format1_still_loads():
    """Format 2 stores what the factory was given (so a change of a node's slots keeps checkpoints);
    a format-1 state saved by fusedlr 0.1 loads to the same schedule, cyclic and wsd included."""
    s = S.warmup(S.sequential([S.multistep([3, 1], 0.5), S.exponential(rate=0.1)], [5]), 2, 0.1, "exponential")
    state = s.__getstate__()
    assert state[:2] == (2, "warmup") and state[2]["steps"] == 2 and state[2]["mode"] == "exponential"
    assert state[2]["schedule"][2]["schedules"][1] == (2, "exponential", {"gamma": None, "rate": 0.1})
    assert s.arguments["schedule"].arguments["boundaries"] == [5]
    # States written by fusedlr 0.1 (before the kinds' rows), with the curves it computed.
    saved = {
        (1, ((9, 2, 0, 0, 0, 0, (0.01, 0.1, 8.0, 0.375, 0.9, -0.10536051565782628)),), (), ()):
            S.cyclic(0.01, 0.1, step_size_up=3, step_size_down=5, mode="exp_range", gamma=0.9),
        (1, ((12, 2, 0, 0, 0, 0, (10.0, 80.0, 20.0, 0.1, 0.0, 0.0)),), (), ()):
            S.wsd(100, warmup_steps=10, decay_steps=20, decay="sqrt", min_factor=0.1),
        (1, ((15, 1, 0, 0, 0, 1, (2.0, 0.1, -2.3025850929940455, 0.0, 0.0, 0.0)),
             (16, 0, 0, 1, 1, 2, (0.0,) * 6), (2, 0, 1, 2, 3, 0, (0.5, 0.0, 0.0, 0.0, 0.0, 0.0)),
             (4, 1, 3, 0, 3, 0, (0.9048374180359595, 0.1, 0.0, 0.0, 0.0, 0.0))), (5.0, 1.0, 3.0), (1, 2, 3)): s,
    }
    for old, schedule in saved.items():
        assert _restored(old) == schedule
    assert _restored(next(iter(saved))).curve(12, base_lr=0.5).tolist()[:4] == [
        0.01, 0.037000000000000005, 0.058600000000000006, 0.07561000000000001]
    assert _restored(list(saved)[1]).curve(12, base_lr=0.5).tolist()[-2:] == [0.5, 0.5]


# --- validation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("make,arg", [
    (lambda: S.step(0), "step_size"),
    (lambda: S.step(3, gamma=0.0), "gamma"),
    (lambda: S.step(3, gamma=float("nan")), "gamma"),
    (lambda: S.multistep([-1]), "milestones"),
    (lambda: S.linear(total_steps=0), "total_steps"),
    (lambda: S.exponential(), "gamma and rate"),
    (lambda: S.exponential(-0.5), "gamma"),
    (lambda: S.inverse_time(-1.0), "rate"),
    (lambda: S.polynomial(0), "total_steps"),
    (lambda: S.cosine(0), "T_max"),
    (lambda: S.cosine(-5), "T_max"),
    (lambda: S.cosine_restarts(10, T_mult=0.5), "T_mult"),
    (lambda: S.cyclic(0.01, 0.1, step_size_up=0), "step_size_up"),
    (lambda: S.cyclic(0.01, 0.1, mode="sine"), "mode"),
    (lambda: S.one_cycle(0.1, 0), "total_steps"),
    (lambda: S.one_cycle(0.1, 100, pct_start=1.5), "pct_start"),
    (lambda: S.one_cycle(0.1, 100, pct_start=0.01), "pct_start"),  # a first phase of no length
    (lambda: S.one_cycle(0.1, 100, anneal_strategy="exp"), "anneal_strategy"),
    (lambda: S.inverse_sqrt(0.0), "timescale"),
    (lambda: S.wsd(100, 50, 60), "decay_steps"),
    (lambda: S.wsd(100, 10, 10, decay="step"), "decay"),
    (lambda: S.piecewise_constant([5, 5], [1, 2, 3]), "boundaries"),
    (lambda: S.piecewise_constant([5], [1.0]), "factors"),
    (lambda: S.piecewise_linear([], []), "steps"),
    (lambda: S.warmup(S.constant(), -1), "steps"),
    (lambda: S.warmup(S.constant(), 5, 0.0, "exponential"), "start_factor"),
    (lambda: S.sequential([S.constant(), S.constant()], []), "boundaries"),
    (lambda: S.sequential([S.constant(), S.constant(), S.constant()], [5, 3]), "boundaries"),
    (lambda: S.chained([]), "schedules"),
    (lambda: S.steps_per_epoch(100, 0), "batch_size"),
])
def test_invalid_arguments_raise_value_error_naming_them(make, arg):
    with pytest.raises(ValueError, match=arg):
        make()


def test_steps_per_epoch():
    assert S.steps_per_epoch(50_000, 128) == 391
    assert S.steps_per_epoch(50_000, 128, drop_last=True) == 390
    assert S.steps_per_epoch(50_000, 128, accumulation_steps=4) == 98


def test_docstring_examples():
    result = doctest.testmod(S, raise_on_error=False, verbose=False)
    assert result.attempted > 15 and result.failed == 0


# --- preview: the gallery (plot_schedule and the command line: tests/test_plot_cli.py) ---------------

def test_gallery_renders_every_schedule_small(tmp_path):
    gallery = runpy.run_path(str(Path(__file__).resolve().parents[1] / "docs" / "gallery.py"))
    drawn = {s.kind for _, items, _ in gallery["GALLERY"] for s in items}
    functions = {n for n in S.__all__ if inspect.isfunction(getattr(S, n)) and n != "steps_per_epoch"}
    assert functions <= drawn
    gallery["render"](tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size < 300_000


def test_header_alone_is_plain_cpp_and_evaluates_nested_composites(tmp_path):
    root = Path(__file__).resolve().parents[1]
    exe = tmp_path / "test_schedule"
    subprocess.run(["g++", "-std=c++17", "-O1", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror", f"-I{root / 'cpp' / 'include'}",
                    str(root / "tests" / "cpp" / "test_schedule.cpp"), "-o", str(exe)], check=True)
    result = subprocess.run([str(exe)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


def test_powers_stay_accurate_far_out():
    # Cycle boundaries B_i = round(T_0 (m^i - 1)/(m - 1)) with m near 1 magnify any error in m^i,
    # and gamma^k for large k must not lose ulps (both once regressed with repeated squaring).
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60

    def restarts_exact(T0, m, t):
        M, T = mpmath.mpf(m), mpmath.mpf(T0)
        B = lambda i: mpmath.nint(T * (M**i - 1) / (M - 1))  # noqa: E731
        i = int(mpmath.floor(mpmath.log(t / T * (M - 1) + 1) / mpmath.log(M)))
        while B(i) > t:
            i -= 1
        while B(i + 1) <= t:
            i += 1
        return float((1 + mpmath.cospi((t - B(i)) / (B(i + 1) - B(i)))) / 2)

    for T0, m, t in [(1, 1.00000001, 10**12), (1, 1.0000000001, 10**12), (1, 1.00000001, 10**9), (3, 1.0001, 10**11)]:
        assert S.cosine_restarts(T0, m)(t) == pytest.approx(restarts_exact(T0, m, t), rel=1e-12), (T0, m, t)
    for k in (3, 1000, 10**6):
        exact = float(mpmath.mpf(0.9999) ** k)
        assert S.step(1, 0.9999)(k) == pytest.approx(exact, rel=4e-16)
    assert S.multistep(list(range(1, 31)), 0.5)(40) == 0.5**30
    assert S.multistep(list(range(1, 31)), 0.9)(40) == pytest.approx(float(mpmath.mpf(0.9) ** 30), rel=4e-16)
    for power in (3.0, 31.0, 63.0):
        x = 1 - 17 / 300
        assert S.polynomial(300, power)(17) == pytest.approx(float(mpmath.mpf(x) ** int(power)), rel=4e-16)


def test_curve_refuses_steps_past_the_last_step():
    # A curve ends at 2**62, the last step a schedule names (its block arithmetic then cannot overflow).
    with pytest.raises(ValueError, match=re.escape("start + n - 1 <= 2**62")):
        S.linear(0.5, 1.0, 10).curve(15, start=2**62 - 10)
    assert S.linear(0.5, 1.0, 10).curve(11, start=2**62 - 10)[-1] == 1.0
    assert S.step(3).curve(1, start=2**62)[0] == S.step(3)(2**62)


# --- untrusted schedules: one validator for every way in --------------------------------------------------
# A Schedule comes in through its factories, through __setstate__ (a pickle, a loaded state_dict: a
# checkpoint someone sent) and as raw bytes handed to the op. schedule_check.h validates all three.

def _restored(state):
    s = S.Schedule.__new__(S.Schedule)
    s.__setstate__(state)
    return s


def _run_op_with(raw: bytes) -> float:
    """Hand `raw` to the op as its schedule (no parameters) and return the lr it computed."""
    state = torch.tensor([3.0, 0.0, 1.0], dtype=torch.float64)
    torch.ops.fusedlr.sgd_([], [], [], [], 0.1, 0.0, 0.0, 0.0, False, False,
                           schedule=torch.frombuffer(bytearray(raw), dtype=torch.uint8), schedule_state=state)
    return float(state[1])


def _leaf_state(kind: str, params, flags=0, values=()):
    kinds = {k: i for i, k in enumerate([
        "constant", "step", "multistep", "linear", "exponential", "inverse_time", "polynomial", "cosine",
        "cosine_restarts", "cyclic", "one_cycle", "inverse_sqrt", "wsd", "piecewise_constant",
        "piecewise_linear", "warmup", "sequential", "chained"])}
    p = tuple(float(x) for x in params) + (0.0,) * (6 - len(params))
    return (1, ((kinds[kind], flags, 0, len(values), 0, 0, p),), tuple(float(v) for v in values), ())


def test_tampered_flags_are_refused_before_repr_can_index_with_them():
    # Was SIGSEGV: repr used the flags of a wsd node as an index into its names of decay shapes.
    state = (1, ((12, 7, 0, 0, 0, 0, (2., 8., 2., 0., 0., 0.)),), (), ())
    with pytest.raises(ValueError, match="wsd: invalid flags 7"):
        _restored(state)


@pytest.mark.parametrize("state,message", [
    (_leaf_state("cosine", [0.0]), "cosine: T_max must be > 0"),  # was accepted: NaN lr, then NaN weights
    (_leaf_state("linear", [1.0, 1.0, -0.0]), "linear: total_steps must be > 0, got -0.0"),
    (_leaf_state("step", [0.0, 0.5]), "step: step_size must be > 0, got 0.0"),
    (_leaf_state("step", [1e-300, 0.5]), "step_size must be >= 2**-960"),
    (_leaf_state("multistep", [0.5], values=[5, 3]), "milestones must be non-decreasing"),
    (_leaf_state("multistep", [0.5], values=[float("nan")]), "milestones must be a whole number"),
    (_leaf_state("cyclic", [0.1, 1.0, 10.0, 0.5, 1.0], flags=3), "cyclic: invalid flags 3"),
    (_leaf_state("one_cycle", [0.1, 1.0, 0.0, 0.1, 10.0]), "pct_start"),  # 0 / 0 at step 0
    (_leaf_state("constant", [1.0, -1.0, 7.0]), "unused parameter slot 2"),
    (_leaf_state("exponential", [0.5, 0.0]), "derived parameter slot 1"),  # only where derive_params is not run
    (_leaf_state("cosine_restarts", [1.0, 1e300, 0.0, math.log(1e300), 0.0, float("inf")]), "unused parameter slot 5"),
    (_leaf_state("inverse_sqrt", [1e-300]), "timescale must be >= 2**-960 (a length in steps)"),
])
def test_one_validator_refuses_a_bad_schedule_on_every_way_in(state, message):
    """The same message from __setstate__, from a loaded optimizer state_dict and from the op's bytes."""
    if "derived" not in message:  # __setstate__ recomputes derived slots, so those cannot be wrong there
        with pytest.raises(ValueError, match=re.escape(message)):
            _restored(state)
        p = torch.zeros(2, requires_grad=True)
        opt = fusedlr.SGD([p], lr=0.1, schedule=S.cosine(10))
        sd = opt.state_dict()
        sd["param_groups"][0]["schedule"] = {"fusedlr.Schedule": state}
        before = repr(opt)
        with pytest.raises(ValueError, match=re.escape(message)):
            opt.load_state_dict(sd)
        assert repr(opt) == before and opt.param_groups[0]["schedule"] == S.cosine(10)  # left as it was
    # The bytes: write the bad node over a valid one-node schedule of the same kind.
    raw = bytearray(S.constant().to_bytes())
    kind, flags, vfirst, vcount, cfirst, ccount, params = state[1][0]
    raw[0:NODE] = struct.pack(f"<iihhhh{PARAMS}d", kind, flags, vfirst, vcount, cfirst, ccount, *params,
                              *[0.0] * (PARAMS - len(params)))
    values = state[2]
    raw[VALUES_AT:VALUES_AT + 8 * len(values)] = struct.pack(f"<{len(values)}d", *values)
    raw[COUNTS_AT + 4:COUNTS_AT + 8] = struct.pack("<i", len(values))  # n_values
    with pytest.raises(ValueError, match=re.escape(message)):
        _run_op_with(bytes(raw))


def test_schedule_bytes_layout_the_tests_rely_on():
    raw = S.step(3, 0.5).to_bytes()
    assert struct.unpack_from("<ii", raw, 0) == (1, 0) and struct.unpack_from("<2d", raw, 16) == (3.0, 0.5)
    assert struct.unpack_from("<3i", raw, COUNTS_AT) == (1, 0, 0)  # n_nodes, n_values, n_links
    assert len(raw) >= COUNTS_AT + 12
    assert _run_op_with(raw) == S.step(3, 0.5)(3, 0.1)


def test_tampered_state_dict_through_torch_load_weights_only(tmp_path):
    """The issue's path: torch.load(weights_only=True) -> load_state_dict -> print(opt)."""
    p = torch.zeros(3, requires_grad=True)
    opt = fusedlr.SGD([p], lr=0.1, momentum=0.9, schedule=S.wsd(100, 10, 20))
    p.grad = torch.ones(3)
    opt.step()
    sd = opt.state_dict()
    version, kind, arguments = sd["param_groups"][0]["schedule"]["fusedlr.Schedule"]
    sd["param_groups"][0]["schedule"] = {"fusedlr.Schedule": (version, kind, {**arguments, "decay": "spline"})}
    torch.save(sd, tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    with pytest.raises(ValueError, match="loaded param group 0: schedule: Schedule.__setstate__: wsd: decay must be "
                                         "one of 'linear', 'cosine', 'sqrt', got 'spline'"):
        opt.load_state_dict(loaded)
    assert "wsd(" in repr(opt)  # still the optimizer it was
    for bad, message in ((torch.tensor([float("nan"), 0.1, 1.0], dtype=torch.float64), "step must be a whole"),
                         (torch.tensor([1e30, 0.1, 1.0], dtype=torch.float64), "step must be a whole"),
                         (torch.tensor([3.0, 0.1, float("inf")], dtype=torch.float64), "factor must be finite"),
                         (torch.zeros(5, dtype=torch.float64), "3 real numbers"),
                         ("abc", "3 real numbers")):
        sd = opt.state_dict()
        sd["param_groups"][0]["schedule_state"] = bad
        with pytest.raises((ValueError, TypeError), match=message):
            opt.load_state_dict(sd)
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = float("nan")
    with pytest.raises(ValueError, match="loaded param group 0: Invalid learning rate: nan"):
        opt.load_state_dict(sd)
    opt.step()  # the refused loads left a working optimizer
    assert torch.isfinite(p).all()


_KIND_IDS = st.integers(min_value=-2, max_value=20)
_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-3, max_value=40).map(float),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0**62, 2.0**62 + 2048, 2.0**53 + 2, 1e-300, 1e300]),
)
_NODE = st.tuples(_KIND_IDS, st.integers(min_value=-1, max_value=9), st.integers(-1, 6), st.integers(-1, 6),
                  st.integers(-1, 6), st.integers(-1, 6), st.tuples(*[_NUMBERS] * 6))
_STATE = st.tuples(st.just(1), st.lists(_NODE, min_size=1, max_size=4).map(tuple),
                   st.lists(_NUMBERS, max_size=6).map(tuple), st.lists(st.integers(-1, 5), max_size=5).map(tuple))
_STEPS = (0, 1, 2, 3, 7, 99, 10**6, 10**12, 2**53, 2**62)


def _may_overflow(s: S.Schedule) -> bool:
    """Schedules whose lr can overflow: a factor that grows with the step (gamma > 1, a negative
    rate) or numbers beyond 1e100. Their lr reaches inf, and 0 * inf or inf - inf is NaN, as in
    torch; the no-NaN promise covers every other valid schedule."""
    version, nodes, values, links = _format1(s)
    for kind, flags, _, _, _, _, p in nodes:
        if (kind in (1, 2) and p[1 if kind == 1 else 0] > 1) or (kind == 4 and p[1] < 0) or (
                kind == 9 and (flags & 3) == 2 and p[4] > 1):
            return True
        if any(abs(x) > 1e100 for x in p if math.isfinite(x)):
            return True
    return any(abs(v) > 1e100 for v in values)


@settings(max_examples=400, deadline=None)
@given(_STATE)
def test_fuzzed_states_are_refused_or_evaluate_safely(state):
    """Any state tuple: __setstate__ raises ValueError/TypeError, or the schedule is valid and every
    use of it works: repr, calls at any step, curve (bit-identical to the calls), a round trip, the op."""
    try:
        s = _restored(state)
    except (ValueError, TypeError):
        return
    assert isinstance(repr(s), str) and s.kind
    values = [s(t, 1.0) for t in _STEPS]
    curve = s.curve(4, start=2**62 - 3)
    assert np.array_equal(curve, [s(2**62 - 3 + i, 1.0) for i in range(4)], equal_nan=True)
    assert _restored(s.__getstate__()) == s
    if not _may_overflow(s):
        assert not any(math.isnan(v) for v in values), (repr(s), values)
    lr = _run_op_with(s.to_bytes())
    assert lr == s(3, 0.1) or (math.isnan(lr) and math.isnan(s(3, 0.1)))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([S.warmup(S.cosine(90, 0.01), 10), S.wsd(100, 10, 20, decay="sqrt"),
                        S.sequential([S.step(5, 0.5), S.cyclic(0.1, 1.0, 4.0, mode="exp_range", gamma=0.9)], [30]),
                        S.chained([S.multistep([3, 9], 0.5), S.one_cycle(1.0, 50, 0.3)])]),
       st.lists(st.tuples(st.integers(0, S.Schedule.nbytes - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzzed_schedule_bytes_are_refused_or_stepped_safely(schedule, flips):
    """Bytes handed to the op with a few bytes overwritten: a ValueError, or a step that computes an lr."""
    raw = bytearray(schedule.to_bytes())
    for position, value in flips:
        raw[position] = value
    try:
        lr = _run_op_with(bytes(raw))
    except ValueError as error:
        assert str(error).startswith("fusedlr.sgd_: schedule: ")
        return
    assert isinstance(lr, float)


def test_a_huge_t_mult_gives_the_right_lr_far_out():
    # Was NaN at 2**62: log(t / T_0 * (T_mult - 1) + 1) overflowed. Cycle 1 is [1, 1 + 1e300).
    s = S.cosine_restarts(1, 1e300)
    assert [s(t) for t in (0, 1, 2, 2**53, 2**62)] == [1.0, 1.0, 1.0, 1.0, 1.0]
    s = S.cosine_restarts(3, 1e10)  # boundaries B_i = 3 (m^i - 1) / (m - 1), exactly: 0, 3, 3e10 + 3, ...
    start, end = 3 * (10**20 - 1) // (10**10 - 1), 3 * (10**30 - 1) // (10**10 - 1)
    assert start <= 2**62 < end
    assert s(2**62) == pytest.approx((1 + math.cos(math.pi * (2**62 - start) / (end - start))) / 2, rel=1e-12)


@pytest.mark.parametrize("factory,args", [("cosine", (10.5,)), ("linear", (0.5, 1.0, 4.5)),
                                           ("polynomial", (4.5, 2.0)), ("inverse_time", (1.0, 2.5))])
def test_fractional_lengths_are_accepted_with_their_real_meaning(factory, args):
    s = getattr(S, factory)(*args)
    assert math.isfinite(s(3)) and repr(s).count("4.5") + repr(s).count("10.5") + repr(s).count("2.5") == 1
    assert _restored(s.__getstate__()) == s


# Leaves with boundaries and lengths anywhere up to 2**62, where a step is no longer a double.
_BIG_STEPS = st.one_of(st.integers(1, 50), st.integers(2**53 - 4, 2**53 + 4), st.integers(2**60, 2**62))
_LEAVES = st.one_of(
    st.builds(S.constant, st.floats(0, 2), st.one_of(st.none(), _BIG_STEPS)),
    st.builds(S.step, _BIG_STEPS, st.floats(0.01, 1.0)),
    st.builds(lambda ms, g: S.multistep(ms, g), st.lists(_BIG_STEPS, max_size=4), st.floats(0.01, 1.0)),
    st.builds(S.linear, st.floats(0, 1), st.floats(0, 1), _BIG_STEPS),
    st.builds(S.cosine, _BIG_STEPS, st.floats(0, 0.1), st.booleans()),
    st.builds(S.cosine_restarts, _BIG_STEPS, st.floats(1.0, 1e300), st.floats(0, 0.1), st.booleans()),
    st.builds(S.wsd, st.integers(2, 2**62), st.just(1), st.just(1)),
    st.builds(lambda b: S.piecewise_constant(b, [0.5] * (len(b) + 1)),  # (steps past 2**53 are held as doubles)
              st.lists(_BIG_STEPS, max_size=3).map(lambda b: sorted({int(float(x)) for x in b}))),
    st.builds(S.inverse_sqrt, st.floats(1e-3, 1e6)),
)


def _composite(children):
    return st.one_of(
        st.builds(S.warmup, children, _BIG_STEPS, st.floats(0, 1)),
        st.builds(lambda a, b, bound: S.sequential([a, b], [bound]), children, children, _BIG_STEPS),
        st.builds(lambda a, b: S.chained([a, b]), children, children),
        st.builds(lambda a, start, seed, uniform: S.noise(a, start, pct=0.5, seed=seed,
                                                          distribution="uniform" if uniform else "normal"),
                  children, _BIG_STEPS, st.integers(0, 2**62), st.booleans()),
    )


@settings(max_examples=300, deadline=None)
@given(st.recursive(_LEAVES, _composite, max_leaves=5), st.data())
def test_random_nested_schedules_never_give_nan_around_their_boundaries(schedule, data):
    """Composites of decaying leaves, boundaries anywhere up to 2**62: never NaN, at a boundary, one
    step before or after it (was NaN past 2**53: a boundary compared as a double), and the curve
    equals the calls bit for bit."""
    version, nodes, values, links = _format1(schedule)
    boundaries = [int(v) for v in values] + [int(p[0]) for kind, *_, p in nodes if kind == 15]  # 15: warmup
    steps = sorted({max(0, b + d) for b in boundaries for d in (-1, 0, 1)} | {0, 1, 2**53, 2**62})
    steps = [t for t in steps if t <= 2**62]
    values_at = [schedule(t) for t in steps]
    assert not any(math.isnan(v) for v in values_at), (repr(schedule), dict(zip(steps, values_at)))
    t = data.draw(st.sampled_from(steps))
    start = min(t, 2**62 - 2)
    assert np.array_equal(schedule.curve(3, start=start), [schedule(start + i) for i in range(3)])


def test_boundaries_past_2_53_switch_at_the_exact_step():
    # Was NaN: 2**60 - 1 as a double is 2**60, so the child got step -1 and a cycle of length 0.
    for s in (S.sequential([S.constant(), S.cosine_restarts(1, 3.0)], [2**60]),
              S.warmup(S.cosine_restarts(1, 3.0), 2**60)):
        assert not math.isnan(s(2**60 - 1)) and not any(np.isnan(s.curve(3, start=2**60 - 1)))
    s = S.sequential([S.constant(0.5), S.constant(0.25)], [2**60])
    assert [s(2**60 - 1), s(2**60)] == [0.5, 0.25]
    m = S.multistep([2**60], 0.5)
    assert [m(2**60 - 1), m(2**60)] == [1.0, 0.5]


# --- noise (timm's scheduler noise, as a closed form) -------------------------------------------------

def _truncated_normal_std(a: float) -> float:
    """The standard deviation of N(0, 1) conditioned on |x| < a."""
    phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    return math.sqrt(1 - 2 * a * phi / math.erf(a / math.sqrt(2)))


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_noise_has_timms_distribution_and_bounds(distribution):
    pct, std, n = 0.4, 0.5, 40_000
    s = S.noise(S.constant(), pct=pct, std=std, seed=7, distribution=distribution)
    draws = s.curve(n) - 1.0
    assert np.abs(draws).max() < pct and abs(draws.mean()) < 0.01
    expected = pct / math.sqrt(3) if distribution == "uniform" else std * _truncated_normal_std(pct / std)
    assert draws.std() == pytest.approx(expected, rel=0.02)
    # A pure function of (seed, step): any step alone, a curve from anywhere, another seed differs.
    assert s(31_337) == s.curve(1, start=31_337)[0] == S.noise(S.constant(), pct=pct, std=std, seed=7,
                                                                 distribution=distribution)(31_337)
    other = S.noise(S.constant(), pct=pct, std=std, seed=8, distribution=distribution).curve(n) - 1.0
    assert np.abs(np.corrcoef(draws, other)[0, 1]) < 0.03


@pytest.mark.parametrize("noise_range_t", [5, (5, 17), (0, 3)])
def test_noise_is_on_where_timms_is(noise_range_t):
    """The steps with noise are timm's (its Scheduler._is_apply_noise, from the real package)."""
    timm_scheduler = pytest.importorskip("timm.scheduler")
    p = torch.zeros(1, requires_grad=True)
    timm = timm_scheduler.StepLRScheduler(torch.optim.SGD([p], lr=0.1), decay_t=1000, noise_range_t=noise_range_t)
    start, end = (noise_range_t, None) if isinstance(noise_range_t, int) else noise_range_t
    s = S.noise(S.cosine(100), start, end, seed=3)
    on = s.curve(40) != S.cosine(100).curve(40)
    assert on.tolist() == [timm._is_apply_noise(t) for t in range(40)]


def test_noise_arguments_are_checked_and_round_trip():
    with pytest.raises(ValueError, match=r"noise: end must be > start = 5 \(or None\), got 5"):
        S.noise(S.constant(), 5, 5)
    with pytest.raises(ValueError, match="noise: pct must be > 0, got 0.0"):
        S.noise(S.constant(), pct=0.0)
    with pytest.raises(ValueError, match="noise: distribution must be one of 'normal', 'uniform', got 'cauchy'"):
        S.noise(S.constant(), distribution="cauchy")
    with pytest.raises(ValueError, match="noise: seed must be a whole number of steps"):
        S.noise(S.constant(), seed=-1)
    s = S.noise(S.warmup(S.cosine(50), 5), 2, 40, 0.3, 0.2, 11, "uniform")
    assert repr(s) == ("noise(warmup(cosine(T_max=50, eta_min=0.0, periodic=False), steps=5, start_factor=0.0, "
                       "mode='linear'), start=2, end=40, pct=0.3, std=0.2, seed=11, distribution='uniform')")
    assert pickle.loads(pickle.dumps(s)) == s and s.arguments["seed"] == 11


def test_noise_in_the_fused_step_is_the_schedules():
    """The op evaluates the same closed form: the lr of each step equals s(t, base)."""
    s = S.noise(S.cosine(30), start=3, pct=0.5, seed=5)
    p = torch.zeros(4, requires_grad=True)
    opt = fusedlr.SGD([p], lr=0.2, schedule=s)
    used = []
    for _ in range(12):
        p.grad = torch.ones(4)
        before = p.detach().clone()
        opt.step()
        used.append(float((before - p.detach())[0]))  # lr * grad with grad 1
    assert used == pytest.approx([s(t, 0.2) for t in range(12)], rel=1e-6)
