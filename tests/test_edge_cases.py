"""Bad input and edge cases: fusedlr.SGD refuses what it cannot step, naming the parameter, and
otherwise gives torch.optim.SGD's numbers (NaN/Inf included)."""

from __future__ import annotations

import pytest
import torch

import fusedlr
from conftest import DTYPES, EXACT_TOL, HALF_VS_FP32_TOL, devices, requires_cuda
from test_optim import OPTION_IDS, OPTIONS, assert_params_equal, make_params, run, set_grads


def torch_reference(dtype, **options):
    """torch.optim.SGD the way conftest's EXACT_TOL is calibrated: the per-op path for float32/64,
    the fused path (float32 math, one rounding) for half types."""
    kw = dict(foreach=False) if dtype in (torch.float32, torch.float64) else dict(fused=True)
    return lambda params: torch.optim.SGD(params, **options, **kw)


def assert_same_nonfinite(actual, expected):
    """Same NaN positions and the same infinities, element for element."""
    for a, e in zip(actual, expected):
        a, e = a.detach(), e.detach()
        assert torch.equal(a.isnan(), e.isnan())
        assert torch.equal(a.isposinf(), e.isposinf()) and torch.equal(a.isneginf(), e.isneginf())


# --- bad input: construction ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.float8_e4m3fn], ids=str)
def test_non_floating_param_is_refused_at_construction(dtype):
    """torch.optim.SGD accepts an integer tensor and fails (or truncates) only once it has a grad."""
    params = [torch.ones(3, requires_grad=True), torch.zeros(4).to(dtype)]
    torch.optim.SGD(params, lr=0.1)  # torch accepts it
    with pytest.raises(TypeError, match=rf"param group 0, params\[1\] has dtype {dtype}"):
        fusedlr.SGD(params, lr=0.1)


def test_non_floating_param_is_refused_in_add_param_group():
    opt = fusedlr.SGD([torch.ones(2, requires_grad=True)], lr=0.1)
    with pytest.raises(TypeError, match=r"param group 1, params\[0\] has dtype torch.int64"):
        opt.add_param_group({"params": [torch.arange(3)]})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("name", ["lr", "momentum", "dampening", "weight_decay"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_hyperparameters_are_refused(name, value):
    """torch accepts a NaN lr (its `lr < 0` check is False for NaN) and turns every weight into NaN."""
    params = [torch.ones(2, requires_grad=True)]
    kwargs = {**dict(lr=0.1, momentum=0.9), name: value}
    with pytest.raises(ValueError, match=rf"Invalid {name.replace('lr', 'learning rate')}.*: {value}"):
        fusedlr.SGD(params, **kwargs)
    opt = fusedlr.SGD(params, lr=0.1)
    with pytest.raises(ValueError, match="Invalid"):
        opt.add_param_group({"params": [torch.ones(2, requires_grad=True)], name: value})
    assert len(opt.param_groups) == 1


def test_a_tensor_lr_with_nan_is_refused():
    with pytest.raises(ValueError, match="Invalid learning rate: nan"):
        fusedlr.SGD([torch.ones(2, requires_grad=True)], lr=torch.tensor(float("nan")))


# --- bad input: at step() -----------------------------------------------------------------------
# torch refuses `p.grad = <another shape/dtype/device>`, but replacing `p.data` after backward()
# leaves the old grad in place: the realistic way a grad stops matching its parameter.


def _group_with_a_bad_second_param(change):
    a, b, c = (torch.randn(5, requires_grad=True) for _ in range(3))
    for p in (a, b, c):
        p.grad = torch.ones(5)
    opt = fusedlr.SGD([{"params": [a]}, {"params": [c, b]}], lr=0.1, momentum=0.9)
    change(b)
    return opt, [x.detach().clone() for x in (a, b, c)], (a, b, c)


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda p: setattr(p, "data", torch.zeros(3)), ValueError,
         r"param group 1, params\[1\]: its grad has shape \(5,\) but the parameter has shape \(3,\)"),
        (lambda p: setattr(p, "data", p.data.double()), TypeError,
         r"param group 1, params\[1\]: its grad has dtype torch.float32 but the parameter has dtype torch.float64"),
        (lambda p: setattr(p, "data", p.data.to(torch.float8_e4m3fn)), TypeError,
         r"param group 1, params\[1\] has dtype torch.float8_e4m3fn"),
    ],
    ids=["shape", "dtype", "float8"],
)
def test_grad_that_no_longer_matches_its_param_raises_naming_it(change, error, message):
    opt, before, params = _group_with_a_bad_second_param(change)
    with pytest.raises(error, match=message) as info:
        opt.step()
    # The op's own check said it (one check, in C++); fusedlr.SGD only named the parameter.
    assert type(info.value.__cause__) is error and str(info.value.__cause__).startswith("fusedlr.sgd_: ")
    assert torch.equal(params[2].detach(), before[2])  # the refused group was not stepped


def test_momentum_buffer_that_no_longer_matches_its_param_raises_naming_it():
    p = torch.randn(4, requires_grad=True)
    opt = fusedlr.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.ones(4)
    opt.step()
    p.data = torch.zeros(6)
    p.grad = torch.ones(6)
    with pytest.raises(ValueError, match=r"param group 0, params\[0\]: its momentum_buffer does not match the "
                                         r"parameter \(shape \(4,\), torch.float32, cpu against shape \(6,\)"):
        opt.step()


@pytest.mark.parametrize("bad_buffer", [torch.ones(2, 2), [1.0, 2.0, 3.0, 4.0]], ids=["shape", "list"])
def test_loaded_momentum_buffer_that_does_not_fit_names_the_parameter(bad_buffer):
    def build():
        a, b = torch.ones(3, requires_grad=True), torch.ones(4, requires_grad=True)
        return a, b, fusedlr.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)

    a, b, opt = build()
    a.grad, b.grad = torch.ones(3), torch.ones(4)
    opt.step()
    sd = opt.state_dict()
    sd["state"][1]["momentum_buffer"] = bad_buffer
    a2, b2, fresh = build()
    a2.grad, b2.grad = torch.ones(3), torch.ones(4)
    fresh.step()
    before = fresh.state_dict()
    message = r"param group 1, params\[0\]: loaded momentum_buffer has (shape \(2, 2\)|type list)"
    with pytest.raises(ValueError, match=message):
        fresh.load_state_dict(sd)
    after = fresh.state_dict()  # the refused load changed nothing
    assert after["param_groups"] == before["param_groups"]
    assert all(torch.equal(after["state"][i]["momentum_buffer"], before["state"][i]["momentum_buffer"]) for i in (0, 1))
    fresh.step()  # and it still steps


@requires_cuda
def test_grad_on_another_device_raises_naming_it():
    p = torch.randn(4, requires_grad=True)
    p.grad = torch.ones(4)
    opt = fusedlr.SGD([p], lr=0.1)
    p.data = p.data.cuda()  # the CPU grad stays behind
    with pytest.raises(ValueError, match=r"params\[0\]: its grad is on cpu but the parameter is on cuda:0"):
        opt.step()


def test_expanded_param_is_refused_before_anything_is_written():
    """torch raises too (in-place on self-overlapping memory); ours must not have stepped the
    other tensors of the call before it does."""
    ok = torch.zeros(40, requires_grad=True)
    expanded = torch.zeros(1).expand(5).requires_grad_()
    ok.grad, expanded.grad = torch.ones(40), torch.ones(5)
    opt = fusedlr.SGD([ok, expanded], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"params\[1\] has elements that share memory"):
        opt.step()
    assert torch.equal(ok.detach(), torch.zeros(40))
    assert opt.state[ok]["step"].item() == 0


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_expanded_grad_steps_like_torch_and_is_refused_only_when_it_must_be_unscaled(momentum):
    p, q = torch.ones(5, requires_grad=True), torch.ones(5, requires_grad=True)
    p.grad, q.grad = torch.full((1,), 2.0).expand(5), torch.full((1,), 2.0).expand(5)
    opt = fusedlr.SGD([p], lr=0.1, momentum=momentum)
    ref = torch.optim.SGD([q], lr=0.1, momentum=momentum, foreach=False)
    for _ in range(2):
        opt.step()
        ref.step()
    assert torch.equal(p.detach(), q.detach())
    opt.grad_scale, opt.found_inf = torch.tensor(2.0), torch.tensor(0.0)
    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"params\[0\]: its grad has elements that share memory"):
        opt.step()
    assert torch.equal(p.detach(), before)


# --- NaN and Inf --------------------------------------------------------------------------------


def _poison(params, step):
    """NaN, +Inf and -Inf at fixed positions of every gradient with enough elements."""
    for p in params:
        flat = p.grad.view(-1)
        if flat.numel() >= 5:
            flat[(step + 1) % flat.numel()] = float("nan")
            flat[3] = float("inf")
            flat[4] = -float("inf")


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_nan_and_inf_gradients_propagate_like_torch(options, dtype):
    shapes = [(7,), (33,), (4, 17), (1,)]
    ours, ref = make_params(shapes, dtype), make_params(shapes, dtype)
    opt = fusedlr.SGD(ours, lr=0.1, **options)
    ref_opt = torch_reference(dtype, lr=0.1, **options)(ref)
    for t in range(3):
        for params, o in ((ours, opt), (ref, ref_opt)):
            set_grads(params, t)
            if t == 1:
                _poison(params, t)
            o.step()
    assert_same_nonfinite(ours, ref)
    assert_params_equal(ours, ref, equal_nan=True, **EXACT_TOL[dtype])
    if options["momentum"]:
        bufs = [opt.state[p]["momentum_buffer"] for p in ours]
        ref_bufs = [ref_opt.state[p]["momentum_buffer"] for p in ref]
        assert_same_nonfinite(bufs, ref_bufs)
        assert_params_equal(bufs, ref_bufs, equal_nan=True, **EXACT_TOL[dtype])


def test_grad_scaler_skips_a_step_with_nan_gradients_like_torch():
    """A NaN gradient in the middle of training: GradScaler sees found_inf, skips the step for both
    optimizers (params, buffers and step counters untouched) and backs off the scale."""
    options = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)

    def train(cls, **kw):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.Tanh(), torch.nn.Linear(9, 3))
        opt = cls(model.parameters(), **options, **kw)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        x = torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
        snapshots = []
        for t in range(5):
            opt.zero_grad()
            scaler.scale(model(x).pow(2).mean()).backward()
            if t == 2:
                model[0].weight.grad[1, 2] = float("nan")
            snapshots.append([p.detach().clone() for p in model.parameters()])
            scaler.step(opt)
            scaler.update()
        return model, opt, scaler, snapshots

    m1, o1, s1, snaps = train(fusedlr.SGD)
    m2, _, s2, _ = train(torch.optim.SGD, foreach=False)
    assert s1.get_scale() == s2.get_scale() == 2.0**7
    assert_params_equal(m1.parameters(), m2.parameters(), **EXACT_TOL[torch.float32])
    for p in m1.parameters():
        assert torch.isfinite(p).all()
        assert o1.state[p]["step"].item() == 4  # 5 steps, one skipped
    # the skipped step changed nothing
    assert all(torch.equal(a, b) for a, b in zip(snaps[2], snaps[3]))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_found_inf_leaves_nan_gradients_unapplied(dtype):
    p = torch.randn(37, dtype=torch.float64).to(dtype).requires_grad_()
    opt = fusedlr.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    p.grad = torch.ones(37, dtype=dtype)
    opt.step()
    before = (p.detach().clone(), opt.state[p]["momentum_buffer"].clone())
    p.grad = torch.full((37,), float("nan"), dtype=dtype)
    opt.grad_scale, opt.found_inf = torch.tensor(1024.0), torch.tensor(1.0)
    opt.step()
    assert torch.equal(p.detach(), before[0]) and torch.equal(opt.state[p]["momentum_buffer"], before[1])
    assert opt.state[p]["step"].item() == 1


# --- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_groups_of_only_empty_and_zero_dim_tensors(momentum):
    shapes = [(0,), (3, 0, 5), (), (0, 0)]
    ours, ref = make_params(shapes, torch.float32), make_params(shapes, torch.float32)
    opt = run(lambda p: fusedlr.SGD(p, lr=0.1, momentum=momentum, weight_decay=0.1), ours)
    ref_opt = run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=momentum, weight_decay=0.1, foreach=False), ref)
    for p, q in zip(ours, ref):
        assert p.shape == q.shape
        assert torch.equal(p.detach(), q.detach())
        if momentum:
            assert torch.equal(opt.state[p]["momentum_buffer"], ref_opt.state[q]["momentum_buffer"])
            assert opt.state[p]["step"].item() == 4


@pytest.mark.usefixtures("three_threads")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_odd_sizes_across_thread_boundaries(dtype):
    """Prime sizes around the SIMD widths plus tensors larger than the 16384-element grain, so the
    threads' ranges begin and end inside tensors and inside SIMD vectors."""
    shapes = [(1,), (3,), (13,), (29,), (16411,), (7, 11, 13), (5,), (40009,), (2,), (31, 37)]
    options = dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2, maximize=True)
    ours, ref = make_params(shapes, dtype), make_params(shapes, dtype)
    opt = run(lambda p: fusedlr.SGD(p, **options), ours)
    ref_opt = run(torch_reference(dtype, **options), ref)
    assert_params_equal(ours, ref, **EXACT_TOL[dtype])
    for p, q in zip(ours, ref):
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], ref_opt.state[q]["momentum_buffer"],
                                   **EXACT_TOL[dtype])


def test_mixed_dtypes_layouts_and_sizes_in_one_group():
    """One call meets every dtype, contiguous and transposed layouts and empty tensors at once."""
    specs = [((40,), torch.float32, "contiguous"), ((9, 13), torch.bfloat16, "transposed"),
             ((0,), torch.float16, "contiguous"), ((17, 5), torch.float64, "transposed"),
             ((), torch.float16, "contiguous"), ((33, 3), torch.float32, "transposed")]
    options = dict(lr=0.1, momentum=0.9, weight_decay=1e-2)

    def build():
        return [make_params([s], d, layout, seed=i)[0] for i, (s, d, layout) in enumerate(specs)]

    ours, ref = build(), build()
    opt = fusedlr.SGD(ours, **options)
    # float32 math rounded once for every dtype (float64: per-op, the same numbers), as ours.
    ref_opt = torch.optim.SGD(ref, fused=True, **options)
    for t in range(3):
        for params, o in ((ours, opt), (ref, ref_opt)):
            set_grads(params, t, "transposed")
            o.step()
    for p, q in zip(ours, ref):
        assert p.dtype == q.dtype and p.stride() == q.stride()
        torch.testing.assert_close(p.detach(), q.detach(), **EXACT_TOL[p.dtype])
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], ref_opt.state[q]["momentum_buffer"],
                                   **EXACT_TOL[p.dtype])


@pytest.mark.parametrize("case", ["grad-transposed", "param-transposed", "param-sliced", "grad-sliced"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("device", devices())
def test_param_and_grad_with_different_layouts(case, dtype, device):
    """Param and grad laid out differently from each other (the kernel stages them through
    contiguous copies); the param keeps its layout and torch's numbers. Reference: the per-op
    path in float32 (torch 2.14's fused CPU step walks param and grad as flat memory and gives
    a transposed bfloat16 param the wrong grad elements)."""

    def build(dtype):
        g = torch.Generator().manual_seed(5)
        # values representable in bfloat16, so every dtype starts from the same numbers
        base = torch.randn(24, 10, generator=g).bfloat16().to(dtype)
        if case == "param-transposed":
            p = base.t().contiguous().t()
        elif case == "param-sliced":
            p = torch.randn(24, 20, generator=g).bfloat16().to(dtype)[:, ::2]
        else:
            p = base.clone()
        return p.to(device).requires_grad_()

    ours, ref = build(dtype), build(torch.float32)
    opt = fusedlr.SGD([ours], lr=0.1, momentum=0.9, nesterov=True)
    ref_opt = torch.optim.SGD([ref], lr=0.1, momentum=0.9, nesterov=True, foreach=False)
    for t in range(3):
        grad = torch.randn(24, 10, generator=torch.Generator().manual_seed(t)).bfloat16().float().to(device)

        def laid_out(x):
            if case == "grad-transposed":
                return x.t().contiguous().t()
            if case == "grad-sliced":
                return torch.cat([x, x], dim=1)[:, ::2]
            return x

        ours.grad, ref.grad = laid_out(grad.to(dtype)), laid_out(grad)
        assert ours.grad.stride() == ref.grad.stride()
        opt.step()
        ref_opt.step()
    assert ours.stride() == ref.stride()
    tol = EXACT_TOL[torch.float32] if dtype == torch.float32 else HALF_VS_FP32_TOL[dtype]
    torch.testing.assert_close(ours.detach().float(), ref.detach(), **tol)


def test_params_that_are_views_into_one_flat_buffer():
    """Flat-parameter style (apex, FSDP1): every param a contiguous view at an offset of one buffer."""
    def build():
        flat = torch.randn(3 * 4 + 7 + 1, generator=torch.Generator().manual_seed(2))
        return flat, [flat[:12].view(3, 4), flat[12:19], flat[19:].view(())]

    (flat, views), (ref_flat, ref_views) = build(), build()
    views = [v.requires_grad_() for v in (t.detach() for t in views)]
    ref_views = [v.requires_grad_() for v in (t.detach() for t in ref_views)]
    opt = run(lambda p: fusedlr.SGD(p, lr=0.1, momentum=0.9), views)
    run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, foreach=False), ref_views)
    assert torch.equal(flat, ref_flat)  # updated through the views, in place
    assert all(v.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for v in views)
    assert len(opt.state) == 3
