"""fusedlr.SGD(schedule=S): the learning rate computed inside the fused step from a step counter
tensor, against torch.optim.SGD driven by the equivalent torch scheduler every iteration."""

from __future__ import annotations

import io

import pytest
import torch

import fusedlr
from fusedlr import lr_scheduler as fl
from fusedlr import schedules as S
from conftest import devices, requires_cuda

STEPS = 120


def _params(device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g).to(device).requires_grad_() for s in [(13,), (4, 7), (33,)]]


def _grads(params, t):
    for i, p in enumerate(params):
        g = torch.Generator().manual_seed(1000 * t + i)
        p.grad = torch.randn(p.shape, generator=g).to(p.device)


# name -> (torch scheduler factory on an optimizer, the matching fusedlr twin factory)
TWINS = {
    "warmup+cosine (SequentialLR)": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=20), m.CosineAnnealingLR(o, T_max=STEPS - 20, eta_min=1e-3)],
        milestones=[20]),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=STEPS, cycle_momentum=False),
    "StepLR": lambda m, o: m.StepLR(o, step_size=25, gamma=0.5),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.98),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=30, T_mult=2, eta_min=0.01),
    "CyclicLR": lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=15, cycle_momentum=False),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=100, power=2.0),
}


def _schedule_of(name, lr):
    """The closed-form schedule of a fusedlr twin, built on a throwaway optimizer."""
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    return TWINS[name](fl, probe).schedule


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("name", list(TWINS))
def test_in_kernel_schedule_matches_torch_scheduler_loop(name, device):
    lr = 0.1
    ours = _params(device)
    opt = fusedlr.SGD(ours, lr=lr, momentum=0.9, weight_decay=1e-4, schedule=_schedule_of(name, lr))
    ref = _params(device)
    ref_opt = torch.optim.SGD(ref, lr=lr, momentum=0.9, weight_decay=1e-4, foreach=False)
    sched = TWINS[name](torch.optim.lr_scheduler, ref_opt)
    for t in range(STEPS):
        _grads(ours, t)
        _grads(ref, t)
        opt.step()
        assert opt.get_last_lr()[0] == pytest.approx(sched.get_last_lr()[0], rel=1e-6, abs=1e-12)
        ref_opt.step()
        sched.step()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


def test_groups_with_their_own_base_lr_and_schedule():
    ours, ref = _params(), _params()
    cosine = S.cosine(T_max=50)
    opt = fusedlr.SGD([{"params": ours[:2], "lr": 0.2}, {"params": ours[2:], "lr": 0.05, "schedule": S.step(10, 0.5)}],
                      lr=0.1, momentum=0.9, schedule=cosine)
    ref_opt = torch.optim.SGD([{"params": ref[:2], "lr": 0.2}, {"params": ref[2:], "lr": 0.05}], lr=0.1,
                              momentum=0.9, foreach=False)
    factors = [lambda t: cosine(t, 1.0), lambda t: 0.5 ** (t // 10)]
    sched = torch.optim.lr_scheduler.LambdaLR(ref_opt, factors)
    for t in range(60):
        _grads(ours, t)
        _grads(ref, t)
        opt.step()
        ref_opt.step()
        sched.step()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-7)
    assert opt.get_last_lr() == pytest.approx([0.2 * cosine(59, 1.0), 0.05 * 0.5 ** 5])


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("k", [0, 1, 17, 60])
def test_resume_mid_schedule_is_bit_exact(k):
    schedule = S.warmup(S.cosine(T_max=70, eta_min=1e-3), steps=10)

    def fresh():
        params = _params()
        return params, fusedlr.SGD(params, lr=0.1, momentum=0.9, dampening=0.1, schedule=schedule)

    straight, opt = fresh()
    for t in range(80):
        _grads(straight, t)
        opt.step()

    params, opt = fresh()
    for t in range(k):
        _grads(params, t)
        opt.step()
    saved = _roundtrip({"model": [p.detach().clone() for p in params], "opt": opt.state_dict()})
    resumed, opt2 = fresh()
    with torch.no_grad():
        for p, v in zip(resumed, saved["model"]):
            p.copy_(v)
    opt2.load_state_dict(saved["opt"])
    assert opt2.param_groups[0]["schedule"] == schedule
    for t in range(k, 80):
        _grads(resumed, t)
        opt2.step()
    for a, b in zip(resumed, straight):
        assert torch.equal(a, b)


def test_schedule_advances_on_skipped_steps_like_torch_schedulers():
    p = torch.ones(5, requires_grad=True)
    opt = fusedlr.SGD([p], lr=1.0, schedule=S.step(1, 0.5))
    p.grad = torch.ones(5)
    opt.found_inf = torch.tensor(1.0)
    opt.step()  # skipped by the scaler: nothing moves, the schedule still advances
    assert torch.equal(p.detach(), torch.ones(5))
    del opt.found_inf
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((5,), 0.5))  # step 1: lr 0.5
    assert opt.get_last_lr() == [0.5]


def test_schedule_advances_when_no_parameter_has_a_gradient():
    p = torch.ones(2, requires_grad=True)
    opt = fusedlr.SGD([p], lr=1.0, schedule=S.step(1, 0.5))
    opt.step()
    opt.step()
    p.grad = torch.ones(2)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((2,), 0.75))


def test_plateau_on_top_of_an_in_kernel_warmup():
    """Warmup in the kernel, then decay driven by ReduceLROnPlateau through the factor tensor."""
    p = torch.zeros(3, requires_grad=True)
    opt = fusedlr.SGD([p], lr=0.1, schedule=S.warmup(S.constant(), steps=4))
    plateau = fl.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    lrs = []
    for epoch, metric in enumerate([1.0, 0.5, 0.6, 0.7, 0.7]):
        for _ in range(2):
            p.grad = torch.ones(3)
            opt.step()
            lrs.append(opt.get_last_lr()[0])
        plateau.step(metric)
    assert lrs == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert plateau.get_last_lr() == pytest.approx([0.0125])


def test_opcheck_with_schedule():
    params = [torch.randn(5), torch.randn(3, 3)]
    grads = [torch.randn(5), torch.randn(3, 3)]
    bufs = [torch.zeros(5), torch.zeros(3, 3)]
    steps = [torch.tensor(0.0), torch.tensor(3.0)]
    sched = torch.frombuffer(bytearray(S.one_cycle(0.1, total_steps=100).to_bytes()), dtype=torch.uint8)
    state = torch.tensor([5.0, 0.0, 1.0], dtype=torch.float64)
    torch.library.opcheck(torch.ops.fusedlr.sgd_.default,
                          (params, grads, bufs, steps, 0.1, 0.9, 0.0, 0.0, False, False),
                          dict(schedule=sched, schedule_state=state))


def test_malformed_schedule_bytes_are_rejected():
    raw = bytearray(S.cosine(T_max=10).to_bytes())
    raw[-12:-8] = (99).to_bytes(4, "little")  # n_values far out of range
    with pytest.raises(ValueError, match="schedule: a schedule holds 0 to 40 values, got 99"):
        torch.ops.fusedlr.sgd_([torch.ones(2)], [torch.ones(2)], [], [], 0.1, 0.0, 0.0, 0.0, False, False,
                               schedule=torch.frombuffer(raw, dtype=torch.uint8),
                               schedule_state=torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_schedule_must_be_a_schedule_object():
    with pytest.raises(TypeError, match="schedule must be a fusedlr Schedule"):
        fusedlr.SGD([torch.ones(2, requires_grad=True)], lr=0.1, schedule=lambda t: 0.1)


@requires_cuda
def test_cuda_graph_capture_replays_with_an_advancing_lr():
    params = _params("cuda")
    schedule = S.warmup(S.cosine(T_max=40), steps=8)
    opt = fusedlr.SGD(params, lr=0.1, momentum=0.9, schedule=schedule)
    ref = [p.detach().clone().requires_grad_() for p in params]
    ref_opt = fusedlr.SGD(ref, lr=0.1, momentum=0.9, schedule=schedule)
    static_grads = [torch.randn_like(p) for p in params]
    for p, q, g in zip(params, ref, static_grads):
        p.grad, q.grad = g, g.clone()
    # Warm up on a side stream (state allocation, the native group cache), then capture.
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            opt.step()
    torch.cuda.current_stream().wait_stream(s)
    for _ in range(3):
        ref_opt.step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    lrs = []
    for _ in range(20):
        graph.replay()
        ref_opt.step()
        lrs.append(opt.get_last_lr()[0])
    torch.cuda.synchronize()
    expected = [0.1 * schedule(t, 1.0) for t in range(3, 23)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    for p, q in zip(params, ref):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_assigning_a_new_schedule_every_step_does_not_grow_memory():
    # Was ~3 KB per step for ever: the bytes of every schedule object ever seen were kept.
    import tracemalloc

    p = torch.zeros(4, requires_grad=True)
    p.grad = torch.ones(4)
    opt = fusedlr.SGD([p], lr=0.1, schedule=S.cosine(1000))
    for t in range(20):  # warm up caches and allocators
        opt.param_groups[0]["schedule"] = S.cosine(1000 + t)
        opt.step()
    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    for t in range(500):
        opt.param_groups[0]["schedule"] = S.cosine(2000 + t)
        opt.step()
    end, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert end - start < 100_000, end - start  # was ~1.5 MB over 500 steps
    assert float(opt.param_groups[0]["schedule_state"][1]) == S.cosine(2499)(519, 0.1)  # the 520th step


@pytest.mark.slow
def test_first_step_with_a_schedule_compiles_to_one_graph():
    # Was: Unsupported (Schedule.to_bytes) with fullgraph=True, 6 graph breaks without it.
    torch._dynamo.reset()
    schedule = S.warmup(S.cosine(100, 0.01), 10)
    eager, compiled = _params(), _params()
    opt_e = fusedlr.SGD(eager, lr=0.1, momentum=0.9, schedule=schedule)
    opt_c = fusedlr.SGD(compiled, lr=0.1, momentum=0.9, schedule=schedule)
    explanation = torch._dynamo.explain(opt_c.step)()
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()
    opt_c = fusedlr.SGD(compiled := _params(), lr=0.1, momentum=0.9, schedule=schedule)
    step = torch.compile(opt_c.step, backend="eager", fullgraph=True)
    for t in range(4):
        _grads(eager, t)
        _grads(compiled, t)
        opt_e.step()
        step()
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)
    assert opt_c.get_last_lr() == opt_e.get_last_lr()


# --- what loggers and other schedulers see of an in-kernel schedule ------------------------------------

def test_group_lr_shows_the_lr_of_the_next_step_as_a_torch_scheduler_leaves_it():
    """Lightning's LearningRateMonitor and most loggers read group["lr"]: on the CPU it is, between
    steps, the lr the next step uses (the value a torch scheduler would have set), and
    group["base_lr"] is the base the schedule multiplies."""
    schedule = S.warmup(S.cosine(T_max=40), steps=5)  # a factor of the base (no absolute eta_min)
    ours, ref = _params(), _params()
    opt = fusedlr.SGD(ours, lr=0.1, momentum=0.9, schedule=schedule)
    ref_opt = torch.optim.SGD(ref, lr=0.1, momentum=0.9, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(ref_opt, lambda t: schedule(t))
    assert opt.param_groups[0]["base_lr"] == 0.1 and opt.param_groups[0]["lr"] == schedule(0, 0.1) == 0.0
    for t in range(30):
        assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-15, abs=0)
        _grads(ours, t)
        _grads(ref, t)
        opt.step()
        ref_opt.step()
        sched.step()
        assert opt.get_last_lr()[0] == schedule(t, 0.1) and opt.param_groups[0]["lr"] == schedule(t + 1, 0.1)
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-7)
    # torch.optim.SGD takes the state as it is: it continues at the lr of the next step.
    ref = torch.optim.SGD(_params(), lr=0.5, momentum=0.9)
    ref.load_state_dict(_roundtrip(opt.state_dict()))
    assert ref.param_groups[0]["lr"] == schedule(30, 0.1)


@pytest.mark.parametrize("make", [
    lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1.0 - t / 100),  # what transformers' Trainer adds
    lambda o: fl.StepLR(o, 10),
    lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=10),
], ids=["torch LambdaLR", "twin StepLR", "torch OneCycleLR"])
def test_a_second_schedule_on_a_scheduled_group_is_refused_not_stacked(make):
    opt = fusedlr.SGD(_params(), lr=0.1, schedule=S.cosine(50))
    with pytest.raises(ValueError, match="would apply a second schedule on top of it"):
        make(opt)
    # The other order: a scheduler first, then a group that computes its lr in the step.
    opt = fusedlr.SGD(_params()[:1], lr=0.1)
    make(opt)
    with pytest.raises(ValueError, match="InKernelLR"):
        opt.add_param_group({"params": _params()[1:], "schedule": S.cosine(50)})
    assert len(opt.param_groups) == 1
    # Made on a wrapper of the optimizer (accelerate's, under transformers' Trainer), the hook on
    # optimizer.step cannot see it: the record it leaves in the group is refused at the next step.
    # (A twin refuses at once: it reads the groups through the wrapper.)
    params = _params()
    opt = fusedlr.SGD(params, lr=0.1, schedule=S.cosine(50))
    with pytest.raises(ValueError, match="would apply a second schedule"):
        make(_Wrapper(opt))
        _grads(params, 0)
        opt.step()


@pytest.mark.parametrize("make", [lambda o: torch.optim.lr_scheduler.StepLR(o, 2), lambda o: fl.StepLR(o, 2),
                                  lambda o: fl.OneCycleLR(o, 0.5, total_steps=10)], ids=["torch", "twin", "twin 1cycle"])
def test_a_refused_scheduler_leaves_the_optimizer_as_it_was(make):
    params = _params()
    opt = fusedlr.SGD(params, lr=0.1, momentum=0.9, schedule=S.cosine(50))
    before = {k: v for k, v in opt.param_groups[0].items() if k not in ("params", "schedule_state")}
    with pytest.raises(ValueError, match="second schedule"):
        make(opt)
    assert {k: v for k, v in opt.param_groups[0].items() if k not in ("params", "schedule_state")} == before
    _grads(params, 0)
    opt.step()  # steps on


def test_a_refused_state_dict_leaves_the_optimizer_as_it_was():
    scheduled = fusedlr.SGD(_params(), lr=0.1, schedule=S.cosine(10)).state_dict()
    opt = fusedlr.SGD(_params(), lr=0.5)
    fl.StepLR(opt, 2)
    before = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    with pytest.raises(ValueError, match="second schedule"):
        opt.load_state_dict(scheduled)
    assert {k: v for k, v in opt.param_groups[0].items() if k != "params"} == before


def test_a_change_of_group_lr_not_yet_stepped_is_saved_with_the_state():
    """The usual order: an epoch ends, ReduceLROnPlateau lowers the lr, a checkpoint is written."""
    def make():
        params = _params()
        opt = fusedlr.SGD(params, lr=0.1, schedule=S.cosine(100))
        return params, opt, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=0)

    params, opt, plateau = make()
    for t in range(3):
        _grads(params, t)
        opt.step()
    plateau.step(1.0)
    plateau.step(1.0)
    state = _roundtrip(opt.state_dict())
    params2, opt2, _ = make()
    opt2.load_state_dict(state)
    _grads(params, 3)
    _grads(params2, 3)
    opt.step()
    opt2.step()
    assert opt2.get_last_lr() == opt.get_last_lr() == pytest.approx([S.cosine(100)(3, 0.01)], rel=1e-14)


def test_a_group_with_a_schedule_gets_its_own_lr_tensor():
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    lr = torch.tensor(0.1)  # torch hands one lr tensor to every group
    opt = fusedlr.SGD([{"params": [a]}, {"params": [b], "schedule": None}], lr=lr,
                      schedule=S.warmup(S.constant(), 10))
    a.grad, b.grad = torch.ones(1), torch.ones(1)
    opt.step()
    assert lr.item() == pytest.approx(0.1) and b.item() == pytest.approx(-0.1) and opt.param_groups[0]["lr"] is not lr


def test_an_lr_set_to_zero_and_back_resumes_the_schedule():
    p = torch.zeros(1, requires_grad=True)
    opt = fusedlr.SGD([p], lr=0.1, schedule=S.cosine(100))
    group = opt.param_groups[0]
    for lr in (None, 0.0, 0.0, 0.05, None):
        if lr is not None:
            group["lr"] = lr  # pause, then resume at 0.05
        p.grad = torch.ones(1)
        opt.step()
    assert opt.get_last_lr()[0] == pytest.approx(S.cosine(100)(4, 0.1) * 0.05 / S.cosine(100)(3, 0.1), rel=1e-14)


def test_in_kernel_lr_follows_the_kernels_counter_however_often_it_is_stepped():
    params = _params()
    opt = fusedlr.SGD(params, lr=0.1, schedule=S.cosine(10))
    sched = fl.InKernelLR(opt)
    for t in range(3):
        _grads(params, t)
        opt.step()
        assert sched.get_last_lr() == opt.get_last_lr()  # as Trainer reads it, between the two steps
        sched.step()
        sched.step()  # accelerate steps the scheduler once per process
    assert sched.get_last_lr() == [opt.param_groups[0]["lr"]] == [S.cosine(10)(3, 0.1)]


class _Wrapper(torch.optim.Optimizer):
    """An optimizer that forwards to another, as accelerate's AcceleratedOptimizer does."""

    def __init__(self, inner):
        self.inner = inner
        self.defaults = inner.defaults

    @property
    def param_groups(self):
        return self.inner.param_groups

    def step(self, closure=None):
        return self.inner.step(closure)


def test_a_change_of_group_lr_scales_the_rest_of_the_schedule():
    schedule = S.cosine(T_max=40)
    p = torch.zeros(3, requires_grad=True)
    opt = fusedlr.SGD([p], lr=0.2, schedule=schedule)
    lrs = []
    for t in range(20):
        if t == 8:
            opt.param_groups[0]["lr"] *= 0.25  # by hand, or torch's own ReduceLROnPlateau: the next lr
        p.grad = torch.ones(3)
        opt.step()
        lrs.append(opt.get_last_lr()[0])
    expected = [schedule(t, 0.2) * (0.25 if t >= 8 else 1.0) for t in range(20)]
    assert lrs == pytest.approx(expected, rel=1e-14)
    # From 0 (a warmup's first step) no ratio exists: a clear error that names the base to set instead.
    opt = fusedlr.SGD([p], lr=0.2, schedule=S.warmup(S.constant(), 4))
    opt.param_groups[0]["lr"] = 0.1
    with pytest.raises(ValueError, match="base_lr"):
        opt.step()


def test_torchs_reduce_lr_on_plateau_composes_like_the_twin():
    runs = []
    for plateau_cls in (torch.optim.lr_scheduler.ReduceLROnPlateau, fl.ReduceLROnPlateau):
        p = torch.zeros(3, requires_grad=True)
        opt = fusedlr.SGD([p], lr=0.1, schedule=S.warmup(S.constant(), steps=4))
        plateau = plateau_cls(opt, factor=0.5, patience=0)
        lrs = []
        for metric in [1.0, 0.5, 0.6, 0.7, 0.7]:
            for _ in range(2):
                p.grad = torch.ones(3)
                opt.step()
                lrs.append(opt.get_last_lr()[0])
            plateau.step(metric)
        runs.append(lrs)
    assert runs[0] == runs[1] == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_a_state_dict_of_an_earlier_fusedlr_where_lr_was_the_base_loads():
    schedule = S.step(5, 0.5)
    params = _params()
    opt = fusedlr.SGD(params, lr=0.1, schedule=schedule)
    for t in range(7):
        _grads(params, t)
        opt.step()
    old = opt.state_dict()
    group = old["param_groups"][0]
    group["lr"] = group.pop("base_lr")  # the earlier format: lr was the schedule's base
    opt2 = fusedlr.SGD(_params(), lr=0.3, schedule=schedule)
    opt2.load_state_dict(old)
    assert opt2.param_groups[0]["base_lr"] == 0.1 and opt2.param_groups[0]["lr"] == schedule(7, 0.1)


def test_in_kernel_lr_is_the_scheduler_object_for_frameworks_that_need_one():
    params = _params()
    opt = fusedlr.SGD(params, lr=0.1, schedule=S.cosine(30))
    sched = fl.InKernelLR(opt)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    for t in range(5):
        _grads(params, t)
        opt.step()
        sched.step()
    assert opt.get_last_lr() == [S.cosine(30)(4, 0.1)] and sched.last_epoch == 5
    assert sched.get_last_lr() == [S.cosine(30)(5, 0.1)]  # as a torch scheduler after its step: the next lr
    _grads(params, 5)
    opt.step()
    assert sched.get_last_lr() == opt.get_last_lr()  # before its step: the lr the optimizer step used
    sched.step()
    assert fl.InKernelLR(opt).last_epoch == 6  # made on a resumed optimizer: the schedule's counter
    assert sched.state_dict() == {"last_epoch": 6, "_step_count": 7}
    with pytest.raises(ValueError, match="needs a fusedlr.SGD with a schedule"):
        fl.InKernelLR(fusedlr.SGD(_params(), lr=0.1))


@requires_cuda
@pytest.mark.parametrize("schedule", [
    S.warmup(S.cosine(T_max=50), steps=10),  # cos_pi: our polynomial, the same code on both
    S.linear(0.1, 1.0, 30),
    S.piecewise_linear([0, 10, 40], [0.0, 1.0, 0.1]),
    S.one_cycle(1.0, 60, anneal_strategy="linear"),
    S.cycles(25, "poly", power=1.0, cycle_limit=2),
], ids=lambda s: s.kind)
def test_in_kernel_lr_is_the_same_bits_on_cpu_and_cuda(schedule):
    """CUDA compiles without FMA contraction (--fmad=false): where no libm function differs
    between host and device, the in-kernel lr of every step is the CPU's to the bit, so a
    checkpoint moves between CPU and GPU and resumes exactly."""
    lrs = {}
    for device in ("cpu", "cuda"):
        p = torch.zeros(3, device=device, requires_grad=True)
        opt = fusedlr.SGD([p], lr=0.1, schedule=schedule)
        seen = []
        for _ in range(60):
            p.grad = torch.ones(3, device=device)
            opt.step()
            seen.append(opt.get_last_lr()[0])
        lrs[device] = seen
    assert lrs["cpu"] == lrs["cuda"]
