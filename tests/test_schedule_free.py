"""fusedlr.ScheduleFreeSGD against schedulefree.SGDScheduleFree itself (the reference package)."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

import fusedlr
from fusedlr import ScheduleFreeSGD

schedulefree = pytest.importorskip("schedulefree")

TOL = {torch.float64: dict(rtol=0, atol=0), torch.float32: dict(rtol=0, atol=0),
       torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def _model(dtype, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.Tanh(), torch.nn.Linear(24, 5)).to(dtype)


def _run(cls, dtype, kwargs, steps=15, groups=False, skip=()):
    """Train with `cls`; the parameters in eval mode (the average) after every few steps."""
    model = _model(dtype)
    params = model.parameters()
    if groups:
        w1, b1, w2, b2 = model.parameters()
        params = [{"params": [w1, w2]}, {"params": [b1, b2], "weight_decay": 0.0, "lr": 0.1}]
    opt = cls(params, **kwargs)
    opt.train()
    g = torch.Generator().manual_seed(1)
    seen = []
    for t in range(steps):
        opt.zero_grad()
        model(torch.randn(32, 12, generator=g).to(dtype)).square().mean().backward()
        for i in skip:  # a parameter without a gradient this step
            list(model.parameters())[i].grad = None
        opt.step()
        if t % 5 == 4:
            opt.eval()
            seen.append([p.detach().clone() for p in model.parameters()])
            opt.train()
    return seen, opt


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(lr=0.5, momentum=0.8, weight_decay=1e-3),
    dict(lr=1.0, warmup_steps=6, r=0.5),
    dict(lr=0.2, weight_lr_power=0.0, momentum=0.95),
])
def test_equals_the_reference_bit_for_bit(dtype, kwargs):
    """The same operations in the same order as schedulefree's foreach path (torch's lerp and
    add with alpha are fused multiply-adds in ATen's CPU kernels): equal bits."""
    ours, opt = _run(ScheduleFreeSGD, dtype, kwargs)
    ref, ref_opt = _run(schedulefree.SGDScheduleFree, dtype, kwargs)
    for a_list, b_list in zip(ours, ref):
        for a, b in zip(a_list, b_list):
            torch.testing.assert_close(a, b, **TOL[dtype])
    for key in ("k", "weight_sum", "lr_max", "scheduled_lr", "train_mode"):
        assert opt.param_groups[0][key] == ref_opt.param_groups[0][key], key


def test_groups_and_parameters_without_grads():
    ours, _ = _run(ScheduleFreeSGD, torch.float64, dict(lr=0.5, weight_decay=1e-2), groups=True, skip=(1,))
    ref, _ = _run(schedulefree.SGDScheduleFree, torch.float64, dict(lr=0.5, weight_decay=1e-2), groups=True, skip=(1,))
    for a_list, b_list in zip(ours, ref):
        for a, b in zip(a_list, b_list):
            assert torch.equal(a, b)


def test_bfloat16_to_its_rounding():
    ours, _ = _run(ScheduleFreeSGD, torch.bfloat16, dict(lr=0.5))
    ref, _ = _run(ScheduleFreeSGD, torch.float32, dict(lr=0.5))
    for a, b in zip(ours[-1], ref[-1]):
        torch.testing.assert_close(a.float(), b, **TOL[torch.bfloat16])


def test_state_dict_interchanges_with_the_reference_and_resumes_exactly():
    kwargs = dict(lr=0.5, momentum=0.9, warmup_steps=3)
    model, ref_model = _model(torch.float64), _model(torch.float64)
    opt = ScheduleFreeSGD(model.parameters(), **kwargs)
    ref = schedulefree.SGDScheduleFree(ref_model.parameters(), **kwargs)
    x = torch.randn(32, 12, dtype=torch.float64)

    def step(m, o):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()

    for o in (opt, ref):
        o.train()
    for _ in range(4):
        step(model, opt)
        step(ref_model, ref)
    for o in (opt, ref):
        o.eval()  # checkpoints are taken in eval mode
    # each resumes from the other's checkpoint, in fresh optimizers and models
    ours2_model, ref2_model = copy.deepcopy(ref_model), copy.deepcopy(model)
    ours2 = ScheduleFreeSGD(ours2_model.parameters(), **kwargs)
    ref2 = schedulefree.SGDScheduleFree(ref2_model.parameters(), **kwargs)
    ours2.load_state_dict(copy.deepcopy(ref.state_dict()))
    ref2.load_state_dict(copy.deepcopy(opt.state_dict()))
    for o in (opt, ref, ours2, ref2):
        o.train()
    for _ in range(4):
        for m, o in ((model, opt), (ref_model, ref), (ours2_model, ours2), (ref2_model, ref2)):
            step(m, o)
    for o in (opt, ref, ours2, ref2):
        o.eval()
    for m in (ref_model, ours2_model, ref2_model):
        for a, b in zip(model.parameters(), m.parameters()):
            assert torch.equal(a, b)


def test_step_in_eval_mode_is_refused_and_modes_round_trip():
    model = _model(torch.float64)
    opt = ScheduleFreeSGD(model.parameters())
    model(torch.randn(4, 12, dtype=torch.float64)).sum().backward()
    with pytest.raises(RuntimeError, match="eval mode; call opt.train"):
        opt.step()
    opt.train()
    opt.step()
    model(torch.randn(4, 12, dtype=torch.float64)).square().sum().backward()
    opt.step()  # (after one step y and z are equal: c_0 = 1)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        opt.eval()
        opt.train()
    for a, b in zip(model.parameters(), before):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)  # lerp there and back
    in_train = [p.detach().clone() for p in model.parameters()]
    opt.train()  # a second train() changes nothing
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), in_train))
    opt.eval()
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), in_train))  # eval() moved to x


def test_grad_scaler_skips_an_overflowing_step():
    model = _model(torch.float32)
    opt = ScheduleFreeSGD(model.parameters(), lr=0.5)
    opt.train()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    scaler.scale(model(torch.randn(4, 12)).sum() * float("inf")).backward()
    scaler.step(opt)
    scaler.update()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before)) and opt.param_groups[0]["k"] == 0
    opt.zero_grad()
    scaler.scale(model(torch.randn(4, 12)).square().mean()).backward()
    scaler.step(opt)
    assert opt.param_groups[0]["k"] == 1


def test_the_same_constructor_and_checks_as_the_reference():
    ours = inspect.signature(ScheduleFreeSGD).parameters
    theirs = inspect.signature(schedulefree.SGDScheduleFree).parameters
    assert list(ours) == list(theirs)
    assert all(ours[n].default == theirs[n].default for n in theirs)
    assert fusedlr.SGDScheduleFree is ScheduleFreeSGD
    p = [torch.zeros(2, requires_grad=True)]
    for bad, message in ((dict(momentum=1.0), "Momentum must be between 0 and 1"), (dict(lr=-1.0), "learning rate"),
                         (dict(weight_decay=-1.0), "weight_decay")):
        with pytest.raises(ValueError, match=message):
            ScheduleFreeSGD(p, **bad)


def test_ops_opcheck_and_refusals():
    y = [torch.randn(5), torch.randn(3, dtype=torch.float64)]
    g = [torch.randn(5), torch.randn(3, dtype=torch.float64)]
    z = [torch.randn(5), torch.randn(3, dtype=torch.float64)]
    state = torch.tensor([0.0, 0.0, -1.0, 0.0], dtype=torch.float64)
    torch.library.opcheck(torch.ops.fusedlr.sf_sgd_.default, (y, g, z, state, 1.0, 0.9, 0.01, 2.0, 0.0, 2.0))
    torch.library.opcheck(torch.ops.fusedlr.sf_lerp_.default, (y, z, 0.1))
    with pytest.raises(ValueError, match="a view of a larger tensor is not supported"):
        big = torch.randn(4, 4)
        torch.ops.fusedlr.sf_lerp_([big[:, 0]], [torch.randn(4)], 0.5)
    with pytest.raises(ValueError, match="z\\[0\\] must match params\\[0\\]"):
        torch.ops.fusedlr.sf_lerp_([torch.randn(4)], [torch.randn(5)], 0.5)


def test_a_fusedlr_schedule_scales_the_base_rate_as_on_the_reference():
    """Composition: a twin scheduler (here fusedlr's closed-form warmup-cosine) sets group["lr"],
    which each schedule-free step reads, exactly as torch's LambdaLR does on the reference."""
    from fusedlr import lr_scheduler as F, schedules as S

    schedule = S.warmup(S.cosine(20), 4)
    models = [_model(torch.float64) for _ in range(2)]
    opt = ScheduleFreeSGD(models[0].parameters(), lr=0.5)
    ref = schedulefree.SGDScheduleFree(models[1].parameters(), lr=0.5)
    scheds = [F.ScheduleLR(opt, schedule), torch.optim.lr_scheduler.LambdaLR(ref, lambda t: schedule(t))]
    x = torch.randn(16, 12, dtype=torch.float64)
    for o in (opt, ref):
        o.train()
    for _ in range(12):
        for m, o, s in zip(models, (opt, ref), scheds):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
            s.step()
    assert opt.param_groups[0]["lr"] == ref.param_groups[0]["lr"]
    for a, b in zip(*[m.parameters() for m in models]):
        torch.testing.assert_close(a, b, rtol=1e-15, atol=1e-15)


def test_groups_are_held_in_cpp_and_let_go_when_their_state_changes():
    """After its first step a group is stepped through its params and z held in C++; replacing a
    z sends the next step back through Python lists, which then step the new z, with the same bits."""
    seen, ref = [], []
    for cls in (ScheduleFreeSGD, schedulefree.SGDScheduleFree):
        model = _model(torch.float64)
        opt = cls(model.parameters(), lr=0.5)
        opt.train()
        x = torch.randn(8, 12, dtype=torch.float64)
        p = next(model.parameters())
        for t in range(6):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
            if cls is ScheduleFreeSGD:
                assert opt._sf_held[0] is not None  # held for the next step
            if t == 3:  # a z replaced by an equal tensor: the held group must not keep stepping the old one
                opt.state[p]["z"] = opt.state[p]["z"].clone()
                replaced = opt.state[p]["z"].clone()
            if t == 4:
                assert not torch.equal(opt.state[p]["z"], replaced)  # the step updated the new z
        (seen if cls is ScheduleFreeSGD else ref).extend(q.detach().clone() for q in model.parameters())
    for a, b in zip(seen, ref):
        assert torch.equal(a, b)
