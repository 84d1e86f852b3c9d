"""Global-norm clipping inside the fused step against torch.nn.utils.clip_grad_norm_ + torch's SGD.

torch is the reference: the same model and data run through ``clip_grad_norm_(params, max_norm,
norm_type)`` then ``torch.optim.SGD.step()``, and through ``fusedlr.SGD(max_grad_norm=...,
grad_norm_type=...)``. fusedlr accumulates the norm in float64 over all tensors at once (torch:
per tensor in the grads' dtype, then across tensors), so the numbers agree to rounding: float64
to ~1e-12, float32 to ~1e-6.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

import fusedlr
from fusedlr import ops, schedules as S
from fusedlr import lr_scheduler as F

TOL = {torch.float64: dict(rtol=1e-11, atol=1e-13), torch.float32: dict(rtol=2e-5, atol=2e-6)}


def _model(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.Tanh(), torch.nn.Linear(24, 5)).to(dtype)


def _groups(model):
    w1, b1, w2, b2 = model.parameters()
    return [{"params": [w1, w2]}, {"params": [b1, b2], "weight_decay": 0.0, "lr": 0.05}]


def _run(dtype, norm_type, max_norm, steps=6, scale_loss=1.0, **options):
    """(fusedlr model, torch model, fusedlr's norms, torch's norms) after `steps` clipped steps."""
    ours, ref = _model(dtype), _model(dtype)
    opt = fusedlr.SGD(_groups(ours), lr=0.1, max_grad_norm=max_norm, grad_norm_type=norm_type, **options)
    ref_opt = torch.optim.SGD(_groups(ref), lr=0.1, **options)
    g = torch.Generator().manual_seed(1)
    norms, ref_norms = [], []
    for _ in range(steps):
        x = torch.randn(32, 12, generator=g, dtype=dtype)
        for m, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            (m(x).square().sum() * scale_loss).backward()
        opt.step()
        ref_norms.append(torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm, norm_type))
        ref_opt.step()
        norms.append(opt.last_grad_norm.clone())
    return ours, ref, norms, ref_norms


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("norm_type", [2.0, float("inf"), 1.0, 3.5])
@pytest.mark.parametrize("options", [
    dict(momentum=0.9, weight_decay=1e-3),
    dict(momentum=0.9, nesterov=True, weight_decay=1e-2),
    dict(momentum=0.5, dampening=0.3, maximize=True),
    dict(),
])
def test_clipped_step_equals_clip_grad_norm_then_torch_sgd(dtype, norm_type, options):
    ours, ref, norms, ref_norms = _run(dtype, norm_type, max_norm=0.7, **options)
    for n, r in zip(norms, ref_norms):
        assert n.dtype == r.dtype
        torch.testing.assert_close(n, r, **TOL[dtype])
    assert any(float(n) > 0.7 for n in norms)  # the clip did act
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_a_norm_below_max_norm_leaves_the_step_bit_for_bit_unclipped():
    ours, plain = _model(), _model()
    opt = fusedlr.SGD(ours.parameters(), lr=0.1, momentum=0.9, max_grad_norm=1e9)
    plain_opt = fusedlr.SGD(plain.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(32, 12)
    for _ in range(3):
        for m, o in ((ours, opt), (plain, plain_opt)):
            o.zero_grad()
            m(x).square().sum().backward()
            o.step()
    for a, b in zip(ours.parameters(), plain.parameters()):
        assert torch.equal(a, b)  # coefficient exactly 1


def test_grad_scaler_clips_the_unscaled_norm_and_a_skipped_step_moves_nothing():
    """fusedlr: scaler.step(opt) with max_grad_norm; torch: unscale_, clip_grad_norm_, step. A
    first step that overflows is skipped by both (no clip, no move, no momentum)."""
    def train(fused):
        model = _model()
        if fused:
            opt = fusedlr.SGD(model.parameters(), lr=0.1, momentum=0.9, max_grad_norm=0.5)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=2)
        g = torch.Generator().manual_seed(3)
        norms, weights = [], []
        for t in range(6):
            x = torch.randn(16, 12, generator=g)
            opt.zero_grad()
            loss = model(x).square().mean() * (float("inf") if t == 0 else 1.0)
            scaler.scale(loss).backward()
            if fused:
                scaler.step(opt)
                norms.append(opt.last_grad_norm.clone())
            else:
                scaler.unscale_(opt)
                norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5))
                scaler.step(opt)
            scaler.update()
            weights.append([p.detach().clone() for p in model.parameters()])
        return norms, weights, scaler.get_scale()

    n1, w1, s1 = train(True)
    n2, w2, s2 = train(False)
    assert s1 == s2
    assert not math.isfinite(float(n1[0])) and not math.isfinite(float(n2[0]))
    assert all(torch.equal(a, b) for a, b in zip(w1[0], _model().parameters()))  # the skipped step moved nothing
    for a, b in zip(n1[1:], n2[1:]):
        torch.testing.assert_close(a, b, **TOL[torch.float32])
    for a, b in zip(w1[-1], w2[-1]):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


def test_clipping_with_the_in_kernel_schedule_and_a_twin_scheduler():
    schedule = S.warmup(S.cosine(20), 3)
    ours, ref = _model(torch.float64), _model(torch.float64)
    opt = fusedlr.SGD(ours.parameters(), lr=0.2, momentum=0.9, schedule=schedule, max_grad_norm=0.3)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.2, momentum=0.9)
    sched = F.ScheduleLR(ref_opt, schedule)
    x = torch.randn(32, 12, dtype=torch.float64)
    for _ in range(12):
        for m, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            m(x).square().sum().backward()
        opt.step()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.3)
        ref_opt.step()
        sched.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_state_dict_resume_and_torch_interchange_with_clipping():
    """Clipping is the optimizer's option, not state: a run resumed from a state_dict (ours or
    torch's) with the same option continues exactly."""
    model = _model(torch.float64)
    opt = fusedlr.SGD(model.parameters(), lr=0.1, momentum=0.9, max_grad_norm=0.4)
    x = torch.randn(32, 12, dtype=torch.float64)

    def step(m, o):
        o.zero_grad()
        m(x).square().sum().backward()
        o.step()

    for _ in range(3):
        step(model, opt)
    resumed = copy.deepcopy(model)
    opt2 = fusedlr.SGD(resumed.parameters(), lr=0.1, momentum=0.9, max_grad_norm=0.4)
    torch_opt = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9)
    torch_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # through torch's format and back (a
    opt2.load_state_dict(copy.deepcopy(torch_opt.state_dict()))  # checkpoint's copy, not shared buffers)
    for _ in range(3):
        step(model, opt)
        step(resumed, opt2)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_error_if_nonfinite_raises_before_anything_moves():
    model = _model()
    opt = fusedlr.SGD(model.parameters(), lr=0.1, max_grad_norm=1.0, error_if_nonfinite=True)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    next(model.parameters()).grad[0, 0] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="error_if_nonfinite=True"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
    # without the flag torch's rule holds: a NaN norm makes a NaN coefficient, as clip_grad_norm_ does
    opt.error_if_nonfinite = False
    opt.step()
    assert math.isnan(float(opt.last_grad_norm)) and all(torch.isnan(p).all() for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_types_clip_as_float32_to_their_rounding(dtype):
    ours, ref = _model(dtype), _model(torch.float32)
    ref.load_state_dict({k: v.float() for k, v in ours.state_dict().items()})
    opt = fusedlr.SGD(ours.parameters(), lr=0.1, momentum=0.9, max_grad_norm=0.5)
    ref_opt = fusedlr.SGD(ref.parameters(), lr=0.1, momentum=0.9, max_grad_norm=0.5)
    x = torch.randn(16, 12)
    for p, q in zip(ours.parameters(), ref.parameters()):
        p.grad = torch.randn_like(q).to(dtype)
        q.grad = p.grad.float()
    opt.step()
    ref_opt.step()
    assert opt.last_grad_norm.dtype == torch.float32
    torch.testing.assert_close(opt.last_grad_norm, ref_opt.last_grad_norm, rtol=1e-6, atol=0)
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a.float(), b.to(dtype).float(), rtol=1e-2, atol=1e-2)
    del x


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 0.5, 7.0])
def test_grad_norm_op_against_torch_total_norm(norm_type):
    g = torch.Generator().manual_seed(5)
    grads = [torch.randn(1000, generator=g), torch.randn(40, 30, generator=g).t(),  # not contiguous
             torch.randn(3, dtype=torch.float64, generator=g), torch.randn(70_000, generator=g)]
    out = ops.grad_norm(grads + [torch.zeros(0)], norm_type, max_norm=2.0)  # (an empty grad adds nothing)
    assert out.dtype == torch.float64 and out.shape == (2,)
    # float64 terms, as fusedlr accumulates them: to the last bits; torch's float32 sums: to theirs
    exact = torch.nn.utils.get_total_norm([x.double() for x in grads], norm_type)
    torch.testing.assert_close(out[0], exact, rtol=1e-12, atol=0)
    torch.testing.assert_close(out[0], torch.nn.utils.get_total_norm(grads, norm_type), rtol=2e-5, atol=0)
    assert float(out[1]) == min(2.0 / (float(out[0]) + 1e-6), 1.0)
    scaled = ops.grad_norm([x * 8 for x in grads], norm_type, 2.0, grad_scale=torch.tensor(8.0))
    torch.testing.assert_close(scaled, out, rtol=1e-12, atol=0)


def test_grad_norm_op_edges():
    assert ops.grad_norm([]).tolist() == [0.0, 1.0]
    assert ops.grad_norm([torch.zeros(5)], 2.0, 1.0).tolist() == [0.0, 1.0]
    nan = torch.tensor([1.0, float("nan"), 5.0])
    for p in (2.0, float("inf"), 1.0):
        assert math.isnan(float(ops.grad_norm([nan], p, 1.0)[0]))  # NaN is kept, inf-norm too
    assert ops.grad_norm([torch.tensor([float("inf")])], 2.0, 1.0).tolist() == [float("inf"), 0.0]
    with pytest.raises(ValueError, match="norm_type must be > 0 or inf, got 0.0"):
        ops.grad_norm([torch.ones(2)], 0.0)
    with pytest.raises(ValueError, match="norm_type must be > 0 or inf, got nan"):
        ops.grad_norm([torch.ones(2)], float("nan"))
    with pytest.raises(ValueError, match="max_norm must be >= 0, got -1.0"):
        fusedlr.SGD([torch.ones(2, requires_grad=True)], max_grad_norm=-1.0)
    with pytest.raises(TypeError, match="grads\\[1\\] has dtype torch.int64"):
        ops.grad_norm([torch.ones(2), torch.ones(2, dtype=torch.int64)])


def test_opcheck_grad_norm_and_sgd_with_grad_clip():
    grads = [torch.randn(5), torch.randn(16, dtype=torch.float64), torch.randn(33).to(torch.bfloat16)]
    torch.library.opcheck(torch.ops.fusedlr.grad_norm.default, (grads, 2.0, 1.0))
    torch.library.opcheck(torch.ops.fusedlr.grad_norm.default, (grads, float("inf"), 1.0), dict(grad_scale=torch.tensor(4.0)))
    params = [torch.randn(5), torch.randn(7)]
    grads = [torch.randn(5), torch.randn(7)]
    clip = ops.grad_norm(grads, 2.0, 0.5)[1]
    torch.library.opcheck(torch.ops.fusedlr.sgd_.default, (params, grads, [], [], 0.1, 0.0, 0.0, 0.0, False, False),
                          dict(grad_clip=clip))


def test_compiled_step_with_clipping_matches_eager():
    ours, eager = _model(), _model()
    opt = fusedlr.SGD(ours.parameters(), lr=0.1, momentum=0.9, max_grad_norm=0.5)
    eager_opt = fusedlr.SGD(eager.parameters(), lr=0.1, momentum=0.9, max_grad_norm=0.5)
    step = torch.compile(opt.step, fullgraph=False)
    x = torch.randn(16, 12)
    for _ in range(3):
        for m, o in ((ours, opt), (eager, eager_opt)):
            o.zero_grad()
            m(x).square().sum().backward()
        step()
        eager_opt.step()
    for a, b in zip(ours.parameters(), eager.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_held_groups_read_the_grads_in_cpp_with_the_same_norm():
    """From the second step the norm is taken over the held groups' gradients in C++ (no Python
    list): the same value as the op over the Python list, with a parameter left without a grad."""
    g = torch.Generator().manual_seed(9)
    params = [torch.randn(s, generator=g).requires_grad_() for s in [7, 300, 1] * 120]
    opt = fusedlr.SGD([{"params": params[:200]}, {"params": params[200:], "lr": 0.01}], lr=0.1, momentum=0.9,
                      max_grad_norm=1.0, grad_norm_type=3.0)
    for step in range(4):
        for i, p in enumerate(params):
            p.grad = None if (i == 5 and step == 2) else torch.randn(p.shape, generator=g)
        want = ops.grad_norm([p.grad for p in params if p.grad is not None], 3.0, 1.0)
        held = opt._native.grad_norm(opt.param_groups, opt.state, 3.0, 1.0, None)
        assert held is not None or step < 2  # (the first steps hold the groups)
        if held is not None:
            assert torch.equal(held, want)
        opt.step()
        assert torch.equal(opt.last_grad_norm, want[0])


@pytest.mark.parametrize("norm_type", [2.0, float("inf"), 1.5])
def test_grad_norm_in_two_halves_for_shards(norm_type):
    """grad_norm_terms of two shards, joined as an all-reduce joins them (sum, or max for inf),
    then clip_coefficient: the norm of the whole."""
    g = torch.Generator().manual_seed(4)
    whole = torch.randn(10_000, generator=g)
    shards = whole.split([3_000, 7_000])
    terms = [ops.grad_norm_terms([s], norm_type) for s in shards]
    joined = torch.maximum(*terms) if norm_type == float("inf") else terms[0] + terms[1]
    out = ops.clip_coefficient(joined, norm_type, 0.5, torch.tensor(2.0), torch.float32)
    torch.testing.assert_close(out, ops.grad_norm([whole], norm_type, 0.5, torch.tensor(2.0)), rtol=1e-6, atol=0)
    torch.library.opcheck(torch.ops.fusedlr.grad_norm_terms.default, ([whole], norm_type))
    torch.library.opcheck(torch.ops.fusedlr.clip_coefficient.default, (joined, norm_type, 0.5),
                          dict(dtype=torch.float64))
    with pytest.raises(RuntimeError, match="terms must be a one-element float64 tensor"):
        ops.clip_coefficient(torch.ones(2, dtype=torch.float64))
