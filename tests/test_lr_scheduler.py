"""fusedlr.lr_scheduler twins against torch.optim.lr_scheduler, the reference for every number."""

from __future__ import annotations

import io
import math
import warnings
import zlib

import numpy as np
import pytest
import torch

import fusedlr
from fusedlr import lr_scheduler as F
from fusedlr import schedules as S

TS = torch.optim.lr_scheduler

# Closed form against torch's (partly recursive) forms on realistic arguments: the recursions
# accumulate a few units in the last place per step, so 1e-9 over a few hundred steps is loose
# enough for every platform and 1000x tighter than the promised 1e-6.
PARITY_RTOL = 1e-9
STEPS = 400
SEEDS = range(4)


def make_optimizer(kind="sgd", lrs=(0.1, 0.03)):
    """Two param groups with different initial learning rates."""
    g = torch.Generator().manual_seed(0)
    groups = [{"params": [torch.nn.Parameter(torch.randn(3, generator=g))], "lr": lr} for lr in lrs]
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lrs[0])
    if kind == "adamw_tensor_lr":
        return torch.optim.AdamW(groups, lr=torch.tensor(lrs[0]))
    return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)


def record(opt, sched, n, keys=("lr",)):
    """Per step, per group: the hyper-parameters the optimizer step of that step uses."""
    out = []
    for _ in range(n):
        row = []
        for group in opt.param_groups:
            for key in keys:
                v = group["betas"][0] if key == "beta1" else group[key]
                row.append(float(v))
        out.append(row)
        opt.step()
        sched.step()
    return np.array(out)


def lrs_after_steps(opt, sched, n):
    """Per step: the optimizer steps, the scheduler steps, then each group's lr is recorded."""
    out = []
    for _ in range(n):
        opt.step()
        sched.step()
        out.append([g["lr"] for g in opt.param_groups])
    return out


def rel_err(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def random_case(name, rng):
    """Constructor arguments for scheduler `name`, drawn at random, realistic ranges."""
    r = rng
    n = STEPS
    cases = {
        "StepLR": lambda m, o: m.StepLR(o, step_size=int(r.integers(1, 60)), gamma=float(r.uniform(0.1, 0.95))),
        "MultiStepLR": lambda m, o: m.MultiStepLR(o, sorted(r.integers(0, n, 4).tolist()),
                                                  gamma=float(r.uniform(0.1, 0.9))),
        "ConstantLR": lambda m, o: m.ConstantLR(o, factor=float(r.uniform(0.05, 1.0)),
                                                total_iters=int(r.integers(1, n))),
        "LinearLR": lambda m, o: m.LinearLR(o, start_factor=float(r.uniform(0.01, 1.0)),
                                            end_factor=float(r.uniform(0.0, 1.0)), total_iters=int(r.integers(1, n))),
        "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=float(r.uniform(0.97, 0.999))),
        "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=int(r.integers(1, n)),
                                                    power=float(r.uniform(0.5, 3.0))),
        "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=int(r.integers(20, n)),
                                                              eta_min=float(r.uniform(0, 0.005))),
        "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(
            o, T_0=int(r.integers(1, 50)), T_mult=int(r.integers(1, 4)), eta_min=float(r.uniform(0, 0.005))),
        "CyclicLR": lambda m, o: m.CyclicLR(
            o, base_lr=[float(r.uniform(0.001, 0.01)), 0.002], max_lr=[float(r.uniform(0.05, 0.5)), 0.02],
            step_size_up=int(r.integers(1, 80)), step_size_down=int(r.integers(1, 80)),
            mode=str(r.choice(["triangular", "triangular2", "exp_range"])), gamma=float(r.uniform(0.99, 1.0)),
            base_momentum=float(r.uniform(0.7, 0.85)), max_momentum=float(r.uniform(0.86, 0.99))),
        "OneCycleLR": lambda m, o: m.OneCycleLR(
            o, max_lr=[float(r.uniform(0.05, 1.0)), 0.3], total_steps=n, pct_start=float(r.uniform(0.1, 0.45)),
            anneal_strategy=str(r.choice(["cos", "linear"])), div_factor=float(r.uniform(5, 50)),
            final_div_factor=float(r.uniform(10, 1e4)), three_phase=bool(r.integers(0, 2)),
            base_momentum=float(r.uniform(0.7, 0.85)), max_momentum=float(r.uniform(0.86, 0.99))),
        "LambdaLR": lambda m, o: m.LambdaLR(o, [lambda t: 0.97**t, lambda t: 1 / (1 + t)]),
        "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, lambda t: 0.99 if t % 3 else 0.95),
    }
    return cases[name]


TWINS = ["StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR",
         "CosineAnnealingWarmRestarts", "CyclicLR", "OneCycleLR", "LambdaLR", "MultiplicativeLR"]
MOMENTUM_CYCLING = {"CyclicLR", "OneCycleLR"}


def both(make, kind="sgd", n=STEPS, keys=("lr",), seed=None):
    """(torch's, ours): the recorded sequences of make(module, optimizer) for both modules.

    With `seed`, `make` is a scheduler name whose random arguments are drawn the same for both.
    """
    out = []
    for module in (TS, F):
        opt = make_optimizer(kind)
        m = random_case(make, np.random.default_rng(seed)) if seed is not None else make
        out.append(record(opt, m(module, opt), n, keys))
    return out


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", TWINS)
def test_lr_sequence_matches_torch(name, seed):
    keys = ("lr", "momentum") if name in MOMENTUM_CYCLING else ("lr",)
    theirs, ours = both(name, keys=keys, seed=seed)
    assert rel_err(ours, theirs) <= PARITY_RTOL


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(MOMENTUM_CYCLING))
def test_adam_beta1_cycles_like_torch(name, seed):
    theirs, ours = both(name, kind="adam", keys=("lr", "beta1"), seed=seed)
    assert rel_err(ours, theirs) <= PARITY_RTOL


def test_tensor_lr_is_updated_in_place():
    theirs, ours = both(lambda m, o: m.CosineAnnealingLR(o, 50), kind="adamw_tensor_lr", n=100)
    assert rel_err(ours, theirs) <= PARITY_RTOL


def test_cyclic_custom_scale_fn_matches_torch():
    for scale_mode in ("cycle", "iterations"):
        make = lambda m, o: m.CyclicLR(o, 0.01, 0.1, 15, 10, scale_fn=lambda x: 0.9**x, scale_mode=scale_mode)  # noqa: E731
        theirs, ours = both(make, keys=("lr", "momentum"))
        assert rel_err(ours, theirs) <= PARITY_RTOL


@pytest.mark.parametrize("scale_mode", ["cycle", "iterations"])
def test_cyclic_custom_scale_fn_gets_torchs_argument_and_gives_its_values_bit_for_bit(scale_mode):
    """The user's scale_fn replaces the mode's amplitude inside the C++ formula (Schedule.cyclic_value):
    it sees torch's argument (the cycle as an int, or the step) and lr and momentum equal torch's."""
    seen = {TS: [], F: []}
    runs = {}
    for m in (TS, F):
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
        sched = m.CyclicLR(opt, 0.01, 0.1, step_size_up=3, step_size_down=4, scale_mode=scale_mode,
                           scale_fn=lambda x, m=m: seen[m].append(x) or 1.0 / (1.0 + x) ** 0.5)
        runs[m] = []
        for _ in range(40):
            opt.step()
            sched.step()
            runs[m].append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]))
    assert runs[F] == runs[TS]
    assert [type(x) for x in seen[F]] == [type(x) for x in seen[TS]] and seen[F] == seen[TS]
    with pytest.raises(ValueError, match="a cyclic schedule"):
        S.cosine(10).cyclic_value(3, 0.5)


# --- composites ---------------------------------------------------------------------------------------

def sequential_case(m, o):
    return m.SequentialLR(o, [m.LinearLR(o, 0.1, 1.0, 25), m.CosineAnnealingLR(o, 150, 0.001),
                              m.StepLR(o, 20, 0.5)], milestones=[25, 175])


def chained_case(m, o):
    return m.ChainedScheduler([m.ConstantLR(o, 0.2, 30), m.ExponentialLR(o, 0.995), m.MultiStepLR(o, [100, 300])])


def warmup_cosine_case(m, o):
    return m.SequentialLR(o, [m.LinearLR(o, 0.01, 1.0, 10), m.CosineAnnealingLR(o, 390)], milestones=[10])


@pytest.mark.parametrize("make", [sequential_case, chained_case, warmup_cosine_case],
                         ids=["sequential", "chained", "warmup_cosine"])
def test_composites_match_torch(make):
    theirs, ours = both(make)
    assert rel_err(ours, theirs) <= PARITY_RTOL


def test_sequential_milestone_zero_matches_torch():
    theirs, ours = both(lambda m, o: m.SequentialLR(o, [m.ConstantLR(o, 0.1, 100), m.ExponentialLR(o, 0.99)], [0]))
    assert rel_err(ours, theirs) <= PARITY_RTOL


def test_nested_sequential_is_the_nested_closed_form():
    opt = make_optimizer()
    inner = F.SequentialLR(opt, [F.ConstantLR(opt, 0.5, 1000), F.ExponentialLR(opt, 0.98)], [40])
    outer = F.SequentialLR(opt, [F.LinearLR(opt, 0.1, 1.0, 10), inner], [10])
    got = record(opt, outer, 200)
    expected = S.sequential([S.linear(0.1, 1.0, 10),
                             S.sequential([S.constant(0.5, total_steps=1000), S.exponential(0.98)], [40])], [10])
    for g, base in enumerate((0.1, 0.03)):
        np.testing.assert_allclose(got[:, g], expected.curve(200, base_lr=base), rtol=1e-15)
    assert outer.schedule == expected


def test_warmup_on_any_scheduler():
    opt = make_optimizer()
    sched = F.WarmupLR(opt, 20, F.CosineAnnealingLR(opt, 100, 0.001), start_factor=0.1)
    got = record(opt, sched, 150)
    expected = S.warmup(S.cosine(100, 0.001, periodic=True), 20, 0.1)
    np.testing.assert_allclose(got[:, 1], expected.curve(150, base_lr=0.03), rtol=1e-15)
    assert got[0, 0] == pytest.approx(0.01) and got[20, 0] == pytest.approx(0.1) and np.argmax(got[:, 0]) == 20


def test_extra_schedulers_are_their_closed_forms():
    cases = [
        (F.WSDLR(make_optimizer(), 300, warmup_steps=30, decay_steps=60, decay="cosine"), S.wsd(300, 30, 60, "cosine")),
        (F.InverseSqrtLR(make_optimizer(), warmup_steps=50), S.warmup(S.inverse_sqrt(50.0), 50)),
        (F.InverseTimeLR(make_optimizer(), 0.05, decay_steps=10), S.inverse_time(0.05, 10)),
    ]
    for sched, expected in cases:
        opt = sched.optimizer
        assert sched.schedule == expected
        sched.step()
        assert opt.param_groups[1]["lr"] == expected(sched.last_epoch, 0.03)
    # sqrt(W / t) after the warmup (Vaswani et al., 2017)
    assert S.warmup(S.inverse_sqrt(50.0), 50)(200, 1.0) == pytest.approx(math.sqrt(50 / 200))


# --- resume ----------------------------------------------------------------------------------------------

RESUMABLE = {
    "StepLR": lambda o: F.StepLR(o, 13, 0.6),
    "MultiStepLR": lambda o: F.MultiStepLR(o, [30, 90, 91], 0.4),
    "CosineAnnealingLR": lambda o: F.CosineAnnealingLR(o, 120, 0.001),
    "CosineAnnealingWarmRestarts": lambda o: F.CosineAnnealingWarmRestarts(o, 15, 2, 0.001),
    "CyclicLR": lambda o: F.CyclicLR(o, [0.001, 0.002], [0.1, 0.05], 17, 29, "triangular2"),
    "OneCycleLR": lambda o: F.OneCycleLR(o, [0.1, 0.2], total_steps=STEPS, three_phase=True),
    "LambdaLR": lambda o: F.LambdaLR(o, lambda t: 0.99**t),
    "Sequential": lambda o: F.SequentialLR(o, [F.LinearLR(o, 0.1, 1.0, 20), F.CosineAnnealingLR(o, 200)], [20]),
    "Chained": lambda o: F.ChainedScheduler([F.ConstantLR(o, 0.5, 40), F.ExponentialLR(o, 0.99)]),
    "Warmup": lambda o: F.WarmupLR(o, 25, F.StepLR(o, 30, 0.5), start_factor=0.05),
    "WSDLR": lambda o: F.WSDLR(o, STEPS, 40, 80, "sqrt"),
}


@pytest.mark.parametrize("order", ["optimizer_first", "scheduler_first", "scheduler_created_after_optimizer_load"])
@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_resume_at_random_step_is_bit_exact(name, order):
    make = RESUMABLE[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # seeded, and a different step per scheduler
    stop = int(rng.integers(1, STEPS - 1))
    keys = ("lr", "momentum")

    opt = make_optimizer()
    uninterrupted = record(opt, make(opt), STEPS, keys)

    opt = make_optimizer()
    sched = make(opt)
    first = record(opt, sched, stop, keys)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # the state is plain data

    opt2 = make_optimizer()
    if order == "scheduler_created_after_optimizer_load":
        # The constructor writes step 0's lr over the loaded one; torch's load_state_dict would
        # leave it there, ours writes the restored step's lr back.
        opt2.load_state_dict(saved["opt"])
        sched2 = make(opt2)
        sched2.load_state_dict(saved["sched"])
    else:
        sched2 = make(opt2)  # a fresh scheduler writes step 0's lr into the fresh optimizer
        if order == "optimizer_first":
            opt2.load_state_dict(saved["opt"])
            sched2.load_state_dict(saved["sched"])
        else:
            sched2.load_state_dict(saved["sched"])
            opt2.load_state_dict(saved["opt"])
    rest = record(opt2, sched2, STEPS - stop, keys)
    assert np.array_equal(np.vstack([first, rest]), uninterrupted)
    assert sched2.last_epoch == sched.last_epoch + STEPS - stop


def test_load_state_dict_applies_the_restored_lr_even_after_the_optimizer():
    opt = make_optimizer()
    sched = F.CosineAnnealingLR(opt, 100)
    for _ in range(37):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = make_optimizer()
    sched2 = F.CosineAnnealingLR(opt2, 100)
    sched2.load_state_dict(state)  # no optimizer state loaded at all
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    assert sched2.get_last_lr() == sched.get_last_lr()


@pytest.mark.parametrize("cls, kwargs", [(TS.CosineAnnealingLR, dict(T_max=30, eta_min=0.01)),
                                         (TS.StepLR, dict(step_size=4, gamma=0.5)),
                                         (TS.LinearLR, dict(start_factor=0.2, total_iters=12))])
def test_an_outside_change_of_the_lr_is_followed_as_torch_follows_it(cls, kwargs):
    runs = []
    for module in (TS, F):
        opt = make_optimizer()
        sched = getattr(module, cls.__name__)(opt, **kwargs)
        lrs = lrs_after_steps(opt, sched, 10)
        opt.param_groups[0]["lr"] *= 0.3  # a manual change: the schedule continues from it
        lrs += lrs_after_steps(opt, sched, 30)
        runs.append(np.array(lrs))
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-12)
    # Group 1 was never touched: it is still the exact closed form.
    assert runs[1][-1, 1] == sched.schedule(40, 0.03) and sched._following == [True, False]


def test_an_untouched_twin_stays_exact_and_a_following_one_resumes_from_the_optimizer():
    opt = make_optimizer()
    sched = F.CosineAnnealingLR(opt, 100, eta_min=0.001)
    for _ in range(10):
        opt.step()
        sched.step()
    opt.param_groups[0]["lr"] = 0.05  # group 0 follows from here
    opt.step()
    sched.step()
    state, opt_state = sched.state_dict(), opt.state_dict()
    expected = lrs_after_steps(opt, sched, 5)
    assert expected[-1][1] == S.cosine(100, 0.001, periodic=True)(sched.last_epoch, 0.03)
    # Either load order gives the same lrs: the closed form for group 1, the optimizer's lr for group 0.
    for order in ("scheduler first", "optimizer first"):
        opt2 = make_optimizer()
        sched2 = F.CosineAnnealingLR(opt2, 100, eta_min=0.001)
        if order == "optimizer first":
            opt2.load_state_dict(opt_state)
            sched2.load_state_dict(state)
        else:
            sched2.load_state_dict(state)
            opt2.load_state_dict(opt_state)
        assert lrs_after_steps(opt2, sched2, 5) == expected, order


def test_one_cycle_holds_the_final_lr_past_total_steps():
    opt = make_optimizer()
    sched = F.OneCycleLR(opt, 0.1, total_steps=50)
    lrs = record(opt, sched, 80)[:, 0]
    assert np.all(lrs[49:] == lrs[49]) and lrs[49] == pytest.approx(0.1 / 25 / 1e4)


def test_reduce_on_plateau_matches_torch():
    rng = np.random.default_rng(0)
    metrics = np.cumsum(rng.normal(0, 1, 300)) + 0.01 * np.arange(300)
    for kwargs in (dict(), dict(mode="max", factor=0.5, patience=3, threshold_mode="abs", cooldown=2,
                                min_lr=[0.001, 0.0005])):
        lrs = []
        for module in (TS, F):
            opt = make_optimizer()
            sched = module.ReduceLROnPlateau(opt, **kwargs)
            seq = []
            for m in metrics:
                opt.step()
                sched.step(m)
                seq.append(sched.get_last_lr())
            lrs.append(np.array(seq))
        assert np.array_equal(lrs[0], lrs[1]) and lrs[0].min() < lrs[0].max()


def test_reduce_on_plateau_composes_with_a_warmup():
    opt = make_optimizer()
    warm = F.WarmupLR(opt, 20, F.CosineAnnealingLR(opt, 1000), start_factor=0.0)
    plateau = F.ReduceLROnPlateau(opt, factor=0.5, patience=2, scheduler=warm)
    lrs = []
    for it in range(200):
        lrs.append(opt.param_groups[1]["lr"])
        opt.step()
        warm.step()
        if it % 10 == 9:
            plateau.step(1.0)  # a flat metric: a reduction after every 3 bad evaluations
    # evaluations at it = 9, 19, ...: reductions after the 4th, 7th, ... (it = 39, 69, 99, ...)
    reductions = [sum(1 for k in range(3, 20, 3) if 10 * (k + 1) - 1 < it) for it in range(200)]
    expected = [0.03 * 0.5**r * S.warmup(S.cosine(1000, periodic=True), 20)(it) for it, r in enumerate(reductions)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-14)
    assert lrs[20] == pytest.approx(0.03) and warm.base_lrs[1] == pytest.approx(0.03 * 0.5**6)


# --- the twins are thin over the C++ schedules --------------------------------------------------------

def test_each_closed_form_twin_exposes_its_native_schedule():
    opt = make_optimizer()
    twins = [random_case(n, np.random.default_rng(0))(F, opt) for n in TWINS if n not in ("LambdaLR",
                                                                                           "MultiplicativeLR")]
    for t in twins:
        assert type(t.schedule) is fusedlr._C.Schedule and len(t.schedules) == len(opt.param_groups)
        assert isinstance(t, torch.optim.lr_scheduler.LRScheduler)
    assert F.CosineAnnealingLR(opt, 50, 0.01).schedule == S.cosine(50, 0.01, periodic=True)
    with pytest.raises(AttributeError):
        F.LambdaLR(opt, lambda t: 1.0).schedule  # noqa: B018


def test_one_step_costs_no_python_loop_over_steps():
    opt = make_optimizer()
    sched = F.CosineAnnealingLR(opt, 10**9)
    with pytest.warns(UserWarning, match="epoch parameter"):  # deprecated, as in torch
        sched.step(10**8)  # a jump to any step is one closed-form evaluation
    assert opt.param_groups[0]["lr"] == S.cosine(10**9, periodic=True)(10**8, 0.1)


# --- validation --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make,arg", [
    (lambda o: F.CosineAnnealingLR(o, T_max=0), "T_max"),
    (lambda o: F.CosineAnnealingLR(o, T_max=-3), "T_max"),
    (lambda o: F.StepLR(o, step_size=0), "step_size"),
    (lambda o: F.StepLR(o, step_size=5, gamma=0.0), "gamma"),
    (lambda o: F.ExponentialLR(o, gamma=-1.0), "gamma"),
    (lambda o: F.LinearLR(o, start_factor=0.0), "Starting multiplicative factor"),
    (lambda o: F.ConstantLR(o, factor=2.0), "Constant multiplicative factor"),
    (lambda o: F.CosineAnnealingWarmRestarts(o, T_0=0), "T_0"),
    (lambda o: F.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=0), "T_mult"),
    (lambda o: F.CyclicLR(o, 0.01, 0.1, step_size_up=0), "step_size_up"),
    (lambda o: F.CyclicLR(o, [0.01], 0.1), "base_lr"),
    (lambda o: F.OneCycleLR(o, 0.1), "total_steps"),
    (lambda o: F.OneCycleLR(o, 0.1, total_steps=0), "total_steps"),
    (lambda o: F.OneCycleLR(o, 0.1, total_steps=100, pct_start=1.2), "pct_start"),
    (lambda o: F.OneCycleLR(o, 0.1, total_steps=10, pct_start=0.1), "pct_start"),  # torch: ZeroDivisionError
    (lambda o: F.OneCycleLR(o, 0.1, total_steps=100, anneal_strategy="exp"), "anneal_strategy"),
    (lambda o: F.ReduceLROnPlateau(o, factor=1.5), "Factor"),
    (lambda o: F.SequentialLR(o, [F.StepLR(o, 5)], [3]), "milestone"),
    (lambda o: F.WSDLR(o, 100, 60, 60), "decay_steps"),
    (lambda o: F.WarmupLR(o, -1), "warmup_steps"),
    (lambda o: F.InverseSqrtLR(o, -1), "warmup_steps"),
    (lambda o: F.InverseTimeLR(o, -0.5), "decay_rate"),
])
def test_invalid_arguments_raise_value_error(make, arg):
    with pytest.raises(ValueError, match=arg):
        make(make_optimizer())


def test_not_an_optimizer_is_a_type_error():
    with pytest.raises(TypeError, match="not an Optimizer"):
        F.StepLR(object(), 3)


def test_composites_reject_python_schedulers():
    opt = make_optimizer()
    with pytest.raises(TypeError, match="closed-form"):
        F.SequentialLR(opt, [F.LambdaLR(opt, lambda t: 1.0), F.StepLR(opt, 3)], [5])


# --- the C++ writer behind every twin's step() ----------------------------------------------------

def test_schedule_applier_writes_floats_tensors_and_betas():
    from fusedlr._C import ScheduleApplier, step_schedules
    cos, step = S.cosine(10), S.step(2, 0.5)
    groups = [{"lr": 0.0}, {"lr": torch.tensor(0.0)}]
    lr_tensor = groups[1]["lr"]
    out = ScheduleApplier([cos, step], "lr").apply(3, [0.1, 0.2], groups)
    assert out[0] == cos(3, 0.1) and groups[0]["lr"] == out[0]
    # A tensor is filled in place; the value returned is the one it holds (float32: rounded).
    assert groups[1]["lr"] is lr_tensor and lr_tensor.item() == out[1] == pytest.approx(step(3, 0.2))
    betas = [{"betas": (0.9, 0.999)}]
    assert ScheduleApplier([S.constant(0.5)], "betas").apply(0, (1.7,), betas) == [0.85]
    assert betas[0]["betas"] == (0.85, 0.999)
    # One schedule for every group; base_lrs and param_groups may be any sequence.
    many = [{"lr": 1.0} for _ in range(3)]
    assert ScheduleApplier([step], "lr").apply(4, np.array([1.0, 2.0, 4.0]), tuple(many)) == [0.25, 0.5, 1.0]
    lr, momentum = ScheduleApplier([cos], "lr"), ScheduleApplier([S.constant(0.9)], "momentum")
    g = [{"lr": 0.0, "momentum": 0.0}]
    assert step_schedules(lr, 5, [1.0], g, None, momentum, [1.0]) == [cos(5)] and g[0]["momentum"] == 0.9
    # With the values it wrote last as `expected`, it writes only while no group was changed since.
    assert step_schedules(lr, 6, [1.0], g, [cos(5)]) == [cos(6)] and g[0]["lr"] == cos(6)
    g[0]["lr"] = 0.5  # changed by something else
    assert step_schedules(lr, 7, [1.0], g, [cos(6)], momentum, [1.0]) is None and g[0]["lr"] == 0.5
    assert step_schedules(lr, 7, [1.0], g, [0.5, 0.5]) is None  # a group added: not the same groups


def test_schedule_applier_refuses_mismatched_arguments():
    from fusedlr._C import ScheduleApplier
    a = ScheduleApplier([S.cosine(10), S.cosine(20)], "lr")
    with pytest.raises(ValueError, match="schedules"):
        a.apply(0, [1.0, 1.0, 1.0], [{}, {}, {}])
    with pytest.raises(ValueError, match="base_lrs"):
        a.apply(0, [1.0], [{}, {}])
    with pytest.raises(TypeError, match="dicts"):
        a.apply(0, [1.0, 1.0], [{}, 3])
    with pytest.raises(TypeError):
        a.apply(0, [1.0, "x"], [{}, {}])
    with pytest.raises(TypeError, match="betas"):
        ScheduleApplier([S.constant()], "betas").apply(0, [1.0], [{"betas": 0.9}])
    with pytest.raises(ValueError, match="at least one"):
        ScheduleApplier([], "lr")


def test_step_schedules_is_apply_in_one_fast_call():
    from fusedlr._C import ScheduleApplier, step_schedules
    lr, momentum = ScheduleApplier([S.cosine(10)], "lr"), ScheduleApplier([S.constant(0.8)], "momentum")
    g = [{"lr": 0.0, "momentum": 0.0}, {"lr": 0.0, "momentum": 0.0}]
    assert step_schedules(lr, 4, [1.0, 0.5], g, None) == [S.cosine(10)(4, 1.0), S.cosine(10)(4, 0.5)]
    assert step_schedules(lr, 6, [1.0, 0.5], g, None, momentum, [1.0, 0.5]) == [S.cosine(10)(6, 1.0),
                                                                                S.cosine(10)(6, 0.5)]
    assert [x["momentum"] for x in g] == [0.8, 0.4] and g[1]["lr"] == S.cosine(10)(6, 0.5)
    with pytest.raises(TypeError, match="arguments"):
        step_schedules(lr, 0, [1.0])
    with pytest.raises(TypeError, match="applier must be a ScheduleApplier, got str"):
        step_schedules("not an applier", 0, [1.0], [{}], None)
    with pytest.raises(TypeError):
        step_schedules(lr, "0", [1.0], [{}], None)
    with pytest.raises(ValueError, match="base_lrs"):
        step_schedules(lr, 0, [1.0, 2.0], [{}], None)
    with pytest.raises(TypeError, match="expected"):
        step_schedules(lr, 0, [1.0], [{"lr": 0.0}], 0.5)


def test_schedule_applier_writes_nothing_on_a_bad_base_and_survives_python_code_midway():
    from fusedlr._C import ScheduleApplier
    a = ScheduleApplier([S.constant(0.5)], "lr")
    groups = [{"lr": 1.0}, {"lr": 1.0}]
    with pytest.raises(TypeError):
        a.apply(0, [3.0, "oops"], groups)
    assert groups == [{"lr": 1.0}, {"lr": 1.0}]  # every value is computed before the first write

    class ClearsTheGroups:  # a tensor-like lr whose fill_ empties the param group list
        def fill_(self, value):
            groups.clear()
            groups.extend({"junk": i} for i in range(100))

    # Each group is re-read after Python code ran: the writes land in the list as it is now.
    groups[:] = [{"lr": ClearsTheGroups()}] + [{"lr": 0.0} for _ in range(7)]
    assert a.apply(0, [1.0] * 8, groups) == [0.5] * 8
    assert groups[1:8] == [{"junk": i, "lr": 0.5} for i in range(1, 8)] and groups[8] == {"junk": 8}

    class Shrinks:
        def fill_(self, value):
            groups.clear()

    groups[:] = [{"lr": Shrinks()}] + [{"lr": 0.0} for _ in range(7)]
    with pytest.raises(ValueError, match="changed size"):
        a.apply(0, [1.0] * 8, groups)


# --- arguments torch accepts that are not whole positive steps: torch's meaning, in closed form -----

def _warnings_off(make):
    def wrapped(module, opt):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own warnings about odd arguments are not ours to test
            return make(module, opt)
    return wrapped


@pytest.mark.parametrize("make", [
    lambda m, o: m.StepLR(o, step_size=2.5, gamma=0.5),  # torch decays when t % 2.5 == 0: every 5 steps
    lambda m, o: m.StepLR(o, step_size=0.75, gamma=0.9),  # every 3 steps
    lambda m, o: m.StepLR(o, step_size=4.0, gamma=0.5),
    lambda m, o: m.MultiStepLR(o, milestones=[2.5, 4], gamma=0.5),  # was: decayed at 2 (2.5 truncated)
    lambda m, o: m.MultiStepLR(o, milestones=[-1, 0, 4.0, 7, 7], gamma=0.5),
    lambda m, o: m.CosineAnnealingLR(o, T_max=10.5),  # was: a pybind11 TypeError
    lambda m, o: m.CosineAnnealingLR(o, T_max=3.3, eta_min=0.001),
    lambda m, o: m.LinearLR(o, start_factor=0.5, total_iters=4.5),
    lambda m, o: m.LinearLR(o, start_factor=0.5, total_iters=0),
    lambda m, o: m.LinearLR(o, start_factor=0.5, total_iters=0.7),
    lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=0),
    lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=4.5),
    lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=4.0),
    lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=-1),
    lambda m, o: m.PolynomialLR(o, total_iters=4.5, power=2.0),
    lambda m, o: m.PolynomialLR(o, total_iters=0.5, power=2.0),
    lambda m, o: m.PolynomialLR(o, total_iters=0),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=30, pct_start=0.0),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=30, pct_start=1.0),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=30, pct_start=0.0, three_phase=True),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=30, pct_start=0.001),
    lambda m, o: m.CyclicLR(o, base_lr=0.1, max_lr=0.01, step_size_up=4, cycle_momentum=False),  # max < base
    lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4, step_size_down=0),
    lambda m, o: m.StepLR(o, step_size=-3, gamma=0.5),  # torch: t % -3 == 0 at the multiples of 3
    lambda m, o: m.StepLR(o, step_size=float("nan"), gamma=0.5),  # never
    lambda m, o: m.StepLR(o, step_size=float("inf"), gamma=0.5),  # never
], ids=["step-2.5", "step-0.75", "step-4.0", "multistep-2.5", "multistep-negative-float", "cosine-10.5",
        "cosine-3.3", "linear-4.5", "linear-0", "linear-0.7", "constant-0", "constant-4.5", "constant-4.0",
        "constant-negative", "poly-4.5", "poly-0.5", "poly-0", "one-cycle-pct-0", "one-cycle-pct-1",
        "one-cycle-pct-0-three-phase", "one-cycle-pct-0.001", "cyclic-max-below-base", "cyclic-down-0",
        "step-negative", "step-nan", "step-inf"])
def test_arguments_torch_accepts_give_torch_sequence(make):
    ref, ours = both(_warnings_off(make), n=29)  # torch raises past total_steps (and at it, for pct_start=1)
    assert rel_err(ours, ref) < PARITY_RTOL


def test_warm_restarts_with_a_huge_t_mult_stays_finite_far_out():
    # Was NaN at step 2**62 (torch raises OverflowError there); cycle 1 is [1, 1 + 10**300).
    opt = make_optimizer()
    sched = F.CosineAnnealingWarmRestarts(opt, T_0=1, T_mult=10**300)
    sched.step(2**62)
    assert sched.get_last_lr() == pytest.approx([0.1, 0.03], rel=1e-15)


def test_huge_whole_arguments_mean_never():
    opt = make_optimizer()
    last = 2**62 - 1  # the schedules' steps end at 2**62
    assert F.StepLR(opt, step_size=10**30).schedule(last) == 1.0
    opt = make_optimizer()
    assert F.MultiStepLR(opt, milestones=[10**30, 3]).schedule(last) == pytest.approx(0.1)
    opt = make_optimizer()
    assert F.ConstantLR(opt, factor=0.5, total_iters=10**30).schedule(last) == 0.5
    opt = make_optimizer()
    assert F.LinearLR(opt, start_factor=0.5, total_iters=10**30).schedule(last) == pytest.approx(0.5, rel=1e-9)


# --- twins stacked on one optimizer, as torch's chainable schedulers ---------------------------------

def _stack(module, opt, names):
    """Schedulers built back to back on one optimizer (torch's test_compound_* cases)."""
    make = {
        "step": lambda: module.StepLR(opt, step_size=3, gamma=0.1),
        "multistep": lambda: module.MultiStepLR(opt, milestones=[2, 5, 9], gamma=0.1),
        "exp": lambda: module.ExponentialLR(opt, gamma=0.9),
        "linear": lambda: module.LinearLR(opt, start_factor=0.2, end_factor=0.9, total_iters=6),
        "constant": lambda: module.ConstantLR(opt, factor=0.1, total_iters=4),
        "cosine": lambda: module.CosineAnnealingLR(opt, T_max=7, eta_min=0.001),
        "poly": lambda: module.PolynomialLR(opt, total_iters=8, power=2.0),
        "plateau": lambda: module.ReduceLROnPlateau(opt, factor=0.5, patience=0),
    }
    return [make[n]() for n in names]


def _run_stack(module, names, n=25, metric=1.0):
    opt = make_optimizer()
    schedulers = _stack(module, opt, names)
    lrs = []
    for _ in range(n):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        for s in schedulers:
            s.step(metric) if isinstance(s, TS.ReduceLROnPlateau) else s.step()
    return np.array(lrs), schedulers


# torch's ten test_compound_* pairs, plus the cosine with eta_min, polynomial and plateau ones.
STACKS = [("step", "multistep"), ("step", "exp"), ("exp", "multistep"), ("exp", "linear"), ("step", "constant"),
          ("linear", "multistep"), ("cosine", "step"), ("cosine", "multistep"), ("cosine", "linear"),
          ("cosine", "exp"), ("poly", "exp"), ("constant", "cosine", "exp"), ("step", "plateau"),
          ("cosine", "plateau")]


@pytest.mark.parametrize("names", STACKS, ids=["+".join(s) for s in STACKS])
def test_schedulers_stepped_back_to_back_give_torchs_numbers(names):
    theirs, _ = _run_stack(TS, names)
    ours, schedulers = _run_stack(F, names)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert len(np.unique(ours[:, 0])) > 3  # the schedules really moved the lr


def test_step_and_plateau_on_one_optimizer_give_the_documented_sequence():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=5.0)
    step, plateau = F.StepLR(opt, step_size=1, gamma=0.1), F.ReduceLROnPlateau(opt, factor=1.0 / 1e9, patience=0)
    plateau.factor = 1.0  # (factor must be < 1 to construct; the reductions here come from StepLR)
    lrs = []
    for _ in range(4):
        opt.step()
        step.step()
        plateau.step(1.0)
        lrs.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, [0.5, 0.05, 0.005, 0.0005], rtol=1e-12)


def test_chained_scheduler_updates_each_schedulers_last_lr_as_torch():
    for chain in (["step"], ["constant", "exp"], ["cosine", "exp"], ["linear", "multistep"]):
        got = []
        for module in (TS, F):
            opt = make_optimizer()
            inner = _stack(module, opt, chain)
            c = module.ChainedScheduler(inner)
            rows = [[s.get_last_lr() for s in inner] + [c.get_last_lr()]]
            for _ in range(10):
                opt.step()
                c.step()
                rows.append([s.get_last_lr() for s in inner] + [c.get_last_lr()])
            got.append(np.array(rows))
        np.testing.assert_allclose(got[1], got[0], rtol=1e-12, err_msg=str(chain))


def test_chained_scheduler_is_the_product_only_when_torch_computes_the_product():
    opt = make_optimizer()
    product = F.ChainedScheduler([F.ConstantLR(opt, 0.5, 3), F.ExponentialLR(opt, 0.9)])
    assert product.schedule == S.chained([S.constant(0.5, 3), S.exponential(0.9)])
    opt = make_optimizer()
    recursive = F.ChainedScheduler([F.CosineAnnealingLR(opt, 10, eta_min=0.01), F.ExponentialLR(opt, 0.9)])
    with pytest.raises(AttributeError, match="no closed form"):
        recursive.schedule
    with pytest.raises(AttributeError, match="no closed form"):
        recursive.schedules


@pytest.mark.parametrize("name", [n for n in TWINS] + ["ReduceLROnPlateau", "SequentialLR", "ChainedScheduler"])
def test_every_twin_is_an_instance_of_torchs_class_of_the_same_name(name):
    opt = make_optimizer()
    if name == "ReduceLROnPlateau":
        s = F.ReduceLROnPlateau(opt)
    elif name == "SequentialLR":
        s = F.SequentialLR(opt, [F.ConstantLR(opt), F.ExponentialLR(opt, 0.9)], [3])
    elif name == "ChainedScheduler":
        s = F.ChainedScheduler([F.ConstantLR(opt), F.ExponentialLR(opt, 0.9)])
    else:
        s = random_case(name, np.random.default_rng(0))(F, opt)
    assert isinstance(s, getattr(TS, name)) and isinstance(s, TS.LRScheduler)
    assert not isinstance(s, TS.LambdaLR) or name == "LambdaLR"


def test_lr_scheduler_base_is_torchs_so_custom_schedulers_keep_working():
    assert F.LRScheduler is TS.LRScheduler

    class Halving(F.LRScheduler):  # written against torch's documented base
        def get_lr(self):
            return [b * 0.5 ** self.last_epoch for b in self.base_lrs]

    opt = make_optimizer()
    s = Halving(opt)
    opt.step()
    s.step()
    assert s.get_last_lr() == [0.05, 0.015]


# --- the twins' own bugs found by torch's test_lrscheduler.py -----------------------------------------

def test_multiplicative_lr_resumes_without_applying_the_factor_again():
    got = []
    for module in (TS, F):
        opt = make_optimizer()
        s = module.MultiplicativeLR(opt, lambda e: 0.5)
        opt.step()
        s.step()
        opt2 = make_optimizer()
        opt2.load_state_dict(opt.state_dict())
        module.MultiplicativeLR(opt2, lambda e: 0.5, last_epoch=1)
        got.append([g["lr"] for g in opt2.param_groups])
    assert got[1] == got[0] == [0.05, 0.015]


@pytest.mark.parametrize("cls", ["LambdaLR", "MultiplicativeLR"])
def test_a_lambda_that_is_not_callable_is_refused_at_construction(cls):
    for bad in (0.95, [0.95, 0.9]):
        with pytest.raises(TypeError, match="lr_lambda should be a function, but got float"):
            getattr(F, cls)(make_optimizer(), bad)


class _Scale:
    """A callable object with state: torch saves its __dict__ with the scheduler."""

    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return 1.0 / (self.k * x)


def test_cyclic_state_dict_carries_a_callable_objects_scale_fn_attributes():
    opt = make_optimizer()
    s = F.CyclicLR(opt, 0.01, 0.1, step_size_up=4, scale_fn=_Scale(3.0))
    state = s.state_dict()
    assert state["_scale_fn_custom"] == {"k": 3.0}
    torch_state = TS.CyclicLR(make_optimizer(), 0.01, 0.1, step_size_up=4, scale_fn=_Scale(3.0)).state_dict()
    assert torch_state["_scale_fn_custom"] == state["_scale_fn_custom"]
    restored = F.CyclicLR(make_optimizer(), 0.01, 0.1, step_size_up=4, scale_fn=_Scale(1.0))
    restored.load_state_dict(state)
    assert restored._scale_fn_custom.k == 3.0
    # A plain function is not saved, as in torch; the built-in modes expose torch's scale_fn().
    assert F.CyclicLR(make_optimizer(), 0.01, 0.1, scale_fn=lambda x: 1.0).state_dict()["_scale_fn_custom"] is None
    tri2 = F.CyclicLR(make_optimizer(), 0.01, 0.1, mode="triangular2")
    assert tri2.scale_fn(3) == TS.CyclicLR(make_optimizer(), 0.01, 0.1, mode="triangular2").scale_fn(3) == 0.25


def test_warm_restarts_expose_t_cur_and_t_i_as_torch():
    twins = []
    for module in (TS, F):
        opt = make_optimizer()
        s = module.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2)
        rows = []
        for _ in range(30):
            rows.append((s.T_cur, s.T_i))
            opt.step()
            s.step()
        twins.append(rows)
    assert twins[1] == twins[0]
    # torch's test_CosineAnnealingWarmRestarts_T_cur_reset: setting T_cur moves within the cycle.
    s = F.CosineAnnealingWarmRestarts(make_optimizer(), T_0=4)
    for epoch in (7, 8, 9):
        s.T_cur = epoch
        s.step()
        assert s.T_cur == (epoch + 1) % 4


def test_scheduler_step_before_optimizer_step_warns_as_torch():
    for module in (TS, F):
        opt = make_optimizer()
        s = module.StepLR(opt, 3)
        with pytest.warns(UserWarning, match=r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"):
            s.step()
        opt = make_optimizer()
        s = module.StepLR(opt, 3)
        opt.step = lambda: None  # replaced after the scheduler was made
        with pytest.warns(UserWarning, match="has been overridden after learning rate scheduler"):
            s.step()
        opt = make_optimizer()
        s = module.ExponentialLR(opt, 0.9)
        opt.step()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s.step()  # the right order: silent
        with pytest.warns(UserWarning, match="The epoch parameter in `scheduler.step\\(\\)` was not necessary"):
            s.step(4)


def test_twin_state_dicts_round_trip_like_torchs():
    # torch's _check_scheduler_state_dict compares every attribute of two schedulers.
    for make in (lambda o: F.StepLR(o, 3, 0.1), lambda o: F.CosineAnnealingLR(o, 10),
                 lambda o: F.CosineAnnealingWarmRestarts(o, 5, 2)):
        opt = make_optimizer()
        a = make(opt)
        for _ in range(7):
            opt.step()
            a.step()
        b = make(make_optimizer())
        b.load_state_dict(a.state_dict())
        assert {k: v for k, v in a.__dict__.items() if k != "optimizer"} == \
               {k: v for k, v in b.__dict__.items() if k != "optimizer"}


def test_one_cycle_loads_torchs_state_dict_and_torch_loads_its():
    ours, theirs = F.OneCycleLR(make_optimizer(), 0.1, total_steps=50, anneal_strategy="linear"), \
        TS.OneCycleLR(make_optimizer(), 0.1, total_steps=50, anneal_strategy="linear")
    for _ in range(11):
        ours.optimizer.step(), theirs.optimizer.step()
        ours.step(), theirs.step()
    fresh = F.OneCycleLR(make_optimizer(), 0.1, total_steps=50)
    fresh.load_state_dict(theirs.state_dict())
    assert fresh.anneal_strategy == "linear" and fresh.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
    back = TS.OneCycleLR(make_optimizer(), 0.1, total_steps=50)
    back.load_state_dict(ours.state_dict())
    assert back._anneal_func_type == "linear"
    # torch's legacy form (the anneal function itself) loads too.
    legacy = ours.state_dict()
    del legacy["_anneal_func_type"]
    legacy["anneal_func"] = TS.OneCycleLR._annealing_cos
    fresh.load_state_dict(legacy)
    assert fresh.anneal_strategy == "cos"


@pytest.mark.parametrize("T_mult", [1, 2, 3])
def test_warm_restarts_take_fractional_epochs_as_torch(T_mult):
    rows = []
    for module in (TS, F):
        opt = make_optimizer()
        s = module.CosineAnnealingWarmRestarts(opt, T_0=4, T_mult=T_mult, eta_min=0.001)
        seq = []
        for epoch in range(12):
            for i in range(5):
                opt.step()
                s.step(epoch + i / 5)  # torch's documented per-batch use
                seq.append([g["lr"] for g in opt.param_groups] + [s.T_cur, s.T_i, s.last_epoch])
        for _ in range(7):  # plain steps after a fractional epoch keep the fraction
            opt.step()
            s.step()
            seq.append([g["lr"] for g in opt.param_groups] + [s.T_cur, s.T_i, s.last_epoch])
        rows.append(np.array(seq, dtype=float))
        if module is TS:
            torch_state = s.state_dict()
    np.testing.assert_allclose(rows[1], rows[0], rtol=1e-12, atol=1e-15)
    back = TS.CosineAnnealingWarmRestarts(make_optimizer(), T_0=4, T_mult=T_mult, eta_min=0.001)
    back.load_state_dict(s.state_dict())  # and torch's class takes ours: both step on alike
    for scheduler in (back, s):
        scheduler.optimizer.step()
        scheduler.step()
    assert back.get_last_lr() == pytest.approx(s.get_last_lr(), rel=1e-12) and back.T_cur == s.T_cur
    resumed = F.CosineAnnealingWarmRestarts(make_optimizer(), T_0=4, T_mult=T_mult, eta_min=0.001)
    resumed.load_state_dict(torch_state)  # a torch state with a fractional T_cur
    assert resumed.T_cur == pytest.approx(torch_state["T_cur"], abs=1e-12) and resumed.T_i == torch_state["T_i"]
    assert resumed.get_last_lr() == pytest.approx(list(rows[0][-1, :2]), rel=1e-12)


def test_restart_value_refuses_what_it_cannot_evaluate():
    r = S.cosine_restarts(4, 2.0)
    assert r.restart_value(5.0, 0.1) == r(5, 0.1) and r.restart_cycle(5.5) == (4.0, 8.0)
    with pytest.raises(ValueError, match="cosine_restarts"):
        S.cosine(10).restart_value(1.5)
    for bad in (-0.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="step"):
            r.restart_value(bad)
    with pytest.raises(ValueError, match="Expected non-negative epoch"):
        F.CosineAnnealingWarmRestarts(make_optimizer(), 4).step(-0.5)


@pytest.mark.parametrize("kind", ["chain", "sequential"])
def test_a_composite_that_follows_resumes_as_torch(kind):
    def build(m, o):
        if kind == "chain":
            return m.ChainedScheduler([m.CosineAnnealingLR(o, 20, 0.01), m.StepLR(o, 3, 0.5)])
        return m.SequentialLR(o, [m.LinearLR(o, 0.1, 1.0, 3), m.ExponentialLR(o, 0.9)], [3])

    for module in (TS, F):
        opt = make_optimizer()
        s = build(module, opt)
        for i in range(10):
            opt.step()
            s.step()
            if i == 5:
                opt.param_groups[0]["lr"] *= 0.5  # an outside change: group 0 follows
        opt_state, state = opt.state_dict(), s.state_dict()
        expected = lrs_after_steps(opt, s, 3)
        opt2 = make_optimizer()
        s2 = build(module, opt2)
        opt2.load_state_dict(opt_state)
        s2.load_state_dict(state)
        np.testing.assert_allclose(lrs_after_steps(opt2, s2, 3), expected, rtol=1e-12, err_msg=module.__name__)


def test_a_chain_with_a_cosine_passes_its_bottom_as_torch():
    # At t - 1 = T_max torch's cosine adds a term of its base: no product of closed forms follows it.
    got = []
    for module in (TS, F):
        opt = make_optimizer()
        c = module.ChainedScheduler([module.StepLR(opt, 3, 0.5), module.CosineAnnealingLR(opt, 5)])
        got.append(np.array(lrs_after_steps(opt, c, 14)))
    np.testing.assert_allclose(got[1], got[0], rtol=1e-12, atol=1e-15)


def test_plateau_over_a_following_twin_reduces_the_lr_where_it_is():
    opt = make_optimizer()
    s = F.StepLR(opt, step_size=2, gamma=0.5)
    plateau = F.ReduceLROnPlateau(opt, factor=0.1, patience=0, scheduler=s)
    opt.param_groups[0]["lr"] = 0.8  # group 0 follows from now on
    lrs = []
    for _ in range(4):
        opt.step()
        s.step()
        plateau.step(1.0)  # no improvement after the first evaluation
        lrs.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, [0.8, 0.04, 0.004, 0.0002], rtol=1e-12)


def test_reduce_is_the_interface_a_wrapper_scales_a_twin_through():
    opt = make_optimizer()
    s = F.CosineAnnealingLR(opt, 50)
    for _ in range(10):
        opt.step()
        s.step()
    s.reduce_(0.5, [0.0, 0.02])  # group 1 stops at its min_lr
    assert s.base_lrs == [0.05, 0.02] and s.get_last_lr() == [S.cosine(50)(10, 0.05), S.cosine(50)(10, 0.02)]
    opt.step()
    s.step()  # the rest of the schedule is scaled: still the closed form, of the new bases
    assert [g["lr"] for g in opt.param_groups] == [S.cosine(50)(11, 0.05), S.cosine(50)(11, 0.02)]


def test_schedule_lr_steps_any_schedule_and_resumes_through_a_weights_only_load(tmp_path):
    """ScheduleLR: any fusedlr schedule as a torch-style scheduler, one per group or one for all,
    saved as plain data and checked again when loaded."""
    noisy = S.noise(S.warmup(S.cosine(90), 10), start=10, pct=0.3, seed=1)
    p, q = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.2}], lr=0.5)
    sched = F.ScheduleLR(opt, [noisy, S.step(7, 0.5)])
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    seen = []
    for _ in range(40):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen == [[noisy(t, 0.5), S.step(7, 0.5)(t, 0.2)] for t in range(40)]
    assert sched.get_last_lr() == [noisy(40, 0.5), S.step(7, 0.5)(40, 0.2)]
    torch.save(sched.state_dict(), tmp_path / "sched.pt")
    opt2 = torch.optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.2}], lr=0.5)
    resumed = F.ScheduleLR(opt2, S.constant())
    resumed.load_state_dict(torch.load(tmp_path / "sched.pt", weights_only=True))
    assert resumed.schedule == [noisy, S.step(7, 0.5)] and resumed.last_epoch == 40
    for t in range(40, 60):
        assert [g["lr"] for g in opt2.param_groups] == [noisy(t, 0.5), S.step(7, 0.5)(t, 0.2)]
        opt2.step()
        resumed.step()
    bad = sched.state_dict()
    bad["schedule_states"] = [(2, "cosine", {"T_max": -1, "eta_min": 0.0, "periodic": False})]
    before = resumed.state_dict()
    with pytest.raises(ValueError, match="cosine: T_max must be > 0"):
        resumed.load_state_dict(bad)
    assert resumed.state_dict() == before  # a refused state leaves the scheduler as it was
    with pytest.raises(TypeError, match="must be a fusedlr Schedule"):
        F.ScheduleLR(opt, "cosine")
    with pytest.raises(ValueError, match=r"one schedule or one per param group \(2\), got 3"):
        F.ScheduleLR(opt, [S.constant()] * 3)
