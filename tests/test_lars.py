"""fusedlr.Lars against timm.optim.Lars itself: the same arguments, numbers and state_dict."""

from __future__ import annotations

import copy

import pytest
import torch

import fusedlr
from fusedlr import ops, schedules as S

timm_optim = pytest.importorskip("timm.optim")

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def _model(dtype, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.LayerNorm(24), torch.nn.Tanh(),
                               torch.nn.Linear(24, 5)).to(dtype)


def _groups(model, decay_biases):
    """Weights with weight decay; biases and the norm without, as LARS users exclude them."""
    if decay_biases:
        return model.parameters()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.ndim <= 1]
    return [{"params": decay}, {"params": rest, "weight_decay": 0.0}]


def _train(cls, dtype, kwargs, decay_biases=True, steps=8, seed=1):
    model = _model(dtype)
    opt = cls(_groups(model, decay_biases), **kwargs)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(32, 12, generator=g, dtype=dtype)).square().mean().backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("kwargs,decay_biases", [
    (dict(lr=0.5, momentum=0.9, weight_decay=1e-4), True),
    (dict(lr=0.5, momentum=0.9, weight_decay=5e-4, nesterov=True, trust_coeff=0.01), False),
    (dict(lr=2.0, momentum=0.9, weight_decay=1e-4, trust_clip=True), True),  # LARC
    (dict(lr=0.1, momentum=0.8, dampening=0.2, always_adapt=True), True),  # no weight decay, adapted
    (dict(lr=0.1, momentum=0.0, weight_decay=1e-3, eps=1e-6), False),
    (dict(lr=0.1), True),  # plain SGD, as timm
])
def test_lars_equals_timm(dtype, kwargs, decay_biases):
    ours, _ = _train(fusedlr.Lars, dtype, kwargs, decay_biases)
    ref, _ = _train(timm_optim.Lars, dtype, kwargs, decay_biases)
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_the_same_constructor_as_timm():
    import inspect

    ours = inspect.signature(fusedlr.Lars).parameters
    theirs = inspect.signature(timm_optim.Lars).parameters
    assert [n for n in ours if n != "fused"] == list(theirs)
    assert all(ours[n].default == theirs[n].default for n in theirs)
    assert fusedlr.LARS is fusedlr.Lars


def test_state_dict_interchanges_with_timm():
    kwargs = dict(lr=0.5, momentum=0.9, weight_decay=1e-4, trust_clip=True)
    ours_model, ours = _train(fusedlr.Lars, torch.float64, kwargs, steps=4)
    ref_model, ref = _train(timm_optim.Lars, torch.float64, kwargs, steps=4)
    # swap: each continues from the other's checkpoint
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))
    ref.load_state_dict(copy.deepcopy(_train(fusedlr.Lars, torch.float64, kwargs, steps=4)[1].state_dict()))
    ours_model.load_state_dict(ref_model.state_dict())
    g = torch.Generator().manual_seed(7)
    for _ in range(4):
        x = torch.randn(32, 12, generator=g, dtype=torch.float64)
        for m, o in ((ours_model, ours), (ref_model, ref)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    for a, b in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, **TOL[torch.float64])
    assert ours.param_groups[0]["trust_clip"] and ref.param_groups[0]["trust_coeff"] == 0.001


def test_many_tensors_and_the_held_path_equal_the_list_path():
    """2000 tensors (ratios on torch's threads, a held group from the third step) against timm."""
    g = torch.Generator().manual_seed(3)
    shapes = [(int(s),) for s in torch.randint(1, 300, (2000,), generator=g)]
    shapes[7] = (400_000,)  # one large enough to be split across threads

    def run(cls):
        params = [torch.randn(s, generator=torch.Generator().manual_seed(i), dtype=torch.float64).requires_grad_()
                  for i, s in enumerate(shapes)]
        opt = cls(params, lr=1.0, momentum=0.9, weight_decay=1e-4, trust_clip=True)
        for step in range(4):
            for i, p in enumerate(params):
                p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(10_000 * step + i),
                                     dtype=torch.float64)
            opt.step()
        return params

    for a, b in zip(run(fusedlr.Lars), run(timm_optim.Lars)):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_lars_with_clipping_and_an_in_kernel_schedule():
    """With max_grad_norm the update applies the clipped gradient: the trust ratio must be that
    gradient's, as timm's after clip_grad_norm_ (it was the unclipped one's)."""
    model = _model(torch.float64)
    ref = copy.deepcopy(model)
    schedule = S.warmup(S.cosine(10), 2)
    opt = fusedlr.Lars(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4, schedule=schedule,
                       max_grad_norm=0.01)
    ref_opt = timm_optim.Lars(ref.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(32, 12, dtype=torch.float64)
    for t in range(6):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            m(x).square().mean().backward()
        opt.step()
        assert float(opt.last_grad_norm) > 0.01  # the clip acted
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.01)
        for group in ref_opt.param_groups:
            group["lr"] = schedule(t, 0.5)
        ref_opt.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, **TOL[torch.float64])
    with pytest.raises(ValueError, match="trust_clip"):
        fusedlr.Lars(model.parameters(), schedule=schedule, weight_decay=1e-4, trust_clip=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_lars_under_a_grad_scaler_equals_timm_on_unscaled_grads(dtype):
    """fusedlr.Lars takes the GradScaler's scale into the step (grad_scale): its trust ratios must
    come from the unscaled gradients, as timm's do after the scaler's unscale_ (they came from the
    scaled ones: 0.1 off timm at scale 1024). Step 2 overflows (an inf in the batch): both skip it."""
    def run(cls):
        model = _model(dtype)
        opt = cls(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4, trust_coeff=0.5)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=1)
        g = torch.Generator().manual_seed(3)
        for t in range(6):
            opt.zero_grad()
            x = torch.randn(32, 12, generator=g, dtype=dtype)
            if t == 2:
                x[0, 0] = float("inf")
            scaler.scale(model(x).square().mean()).backward()
            scaler.step(opt)
            scaler.update()
        return model, scaler.get_scale()

    (ours, our_scale), (ref, ref_scale) = run(fusedlr.Lars), run(timm_optim.Lars)
    assert our_scale == ref_scale == 2.0**16 * 2**5 / 2  # 5 good steps doubled it, the overflow halved it
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_lars_ratios_op_and_opcheck():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(5, generator=g), torch.zeros(3), torch.randn(7, generator=g, dtype=torch.float64)]
    grads = [torch.randn(5, generator=g), torch.randn(3, generator=g), torch.zeros(7, dtype=torch.float64)]
    r = ops.lars_ratios(params, grads, weight_decay=0.01, trust_coeff=0.001, eps=1e-8, trust_clip=False, lr=0.1)
    w, gn = params[0].norm(), grads[0].norm()
    assert r.dtype == torch.float64 and r[1] == 1.0 and r[2] == 1.0  # a zero norm: no adaptation
    assert float(r[0]) == pytest.approx(float(0.001 * w / (gn + w * 0.01 + 1e-8)), rel=1e-6)
    clipped = ops.lars_ratios(params, grads, weight_decay=0.01, trust_coeff=10.0, eps=1e-8, trust_clip=True, lr=0.1)
    assert clipped.tolist() == [1.0, 1.0, 1.0]
    torch.library.opcheck(torch.ops.fusedlr.lars_ratios.default, (params, grads, 0.01, 0.001, 1e-8, False, 0.1))
    # grad_scale and grad_clip: the ratio of the gradient the update applies, grads / scale * clip
    scale, clip = torch.tensor(1024.0), torch.tensor(0.25)
    scaled = [g * 1024 for g in grads]
    r2 = ops.lars_ratios(params, scaled, weight_decay=0.01, trust_coeff=0.001, eps=1e-8, trust_clip=False, lr=0.1,
                         grad_scale=scale, grad_clip=clip)
    assert float(r2[0]) == pytest.approx(float(0.001 * w / (0.25 * gn + w * 0.01 + 1e-8)), rel=1e-6)
    torch.library.opcheck(torch.ops.fusedlr.lars_ratios.default, (params, scaled, 0.01, 0.001, 1e-8, False, 0.1),
                          dict(grad_scale=scale, grad_clip=clip))
    args = ([torch.randn(5), torch.randn(4)], [torch.randn(5), torch.randn(4)], [], [], 0.1, 0.0, 0.0, 0.01, False,
            False)
    torch.library.opcheck(torch.ops.fusedlr.sgd_.default, args,
                          dict(grad_ratios=torch.tensor([0.5, 2.0], dtype=torch.float64)))
    with pytest.raises(RuntimeError, match="grad_ratios must be a contiguous float64 tensor of 2 elements"):
        torch.ops.fusedlr.sgd_(*args, grad_ratios=torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="grads\\[0\\] has shape"):
        ops.lars_ratios([torch.ones(2)], [torch.ones(3)], weight_decay=0, trust_coeff=1, eps=0, trust_clip=False, lr=1)
