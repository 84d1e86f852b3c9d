"""fusedlr.SGD(flat=True): parameters, gradients and buffers laid out back to back, each run
stepped as one tensor. Against torch.optim.SGD (and fusedlr's own tensor-by-tensor step for the
half types), through real backward passes (autograd must accumulate into the views)."""

from __future__ import annotations

import copy
import io

import pytest
import torch

import fusedlr
from conftest import EXACT_TOL
from test_optim import OPTION_IDS, OPTIONS


def mlp(dtype=torch.float32, layers=5, width=8, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)]).to(dtype)


def inputs(steps, dtype=torch.float32, width=8):
    return torch.randn(steps, 4, width, generator=torch.Generator().manual_seed(1)).to(dtype)


def train(model, opt, xs, zero=None):
    for x in xs:
        (zero or (lambda: opt.zero_grad()))()
        model(x).float().square().mean().backward()
        opt.step()


def storages(tensors):
    return {t.untyped_storage().data_ptr() for t in tensors}


def assert_same(actual, expected, dtype):
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a.detach(), e.detach(), **EXACT_TOL[dtype])


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_flat_steps_one_tensor_with_torchs_numbers(options):
    ref, ours = mlp(), mlp()
    torch_opt = torch.optim.SGD(ref.parameters(), lr=0.05, **options)
    opt = fusedlr.SGD(ours.parameters(), lr=0.05, flat=True, **options)
    params = list(ours.parameters())
    assert len(storages(params)) == 1 and len(storages([p.grad for p in params])) == 1
    xs = inputs(4)
    train(ref, torch_opt, xs)
    train(ours, opt, xs)
    assert_same(ours.parameters(), ref.parameters(), torch.float32)
    assert opt._native.last_step_tensors(0) == 1  # the whole group: one tensor per list
    assert len(storages([p.grad for p in params])) == 1  # autograd accumulated into the views
    if options["momentum"]:
        assert len(storages([opt.state[p]["momentum_buffer"] for p in params])) == 1
        assert [float(opt.state[p]["step"]) for p in params] == [4.0] * len(params)
        assert_same([opt.state[p]["momentum_buffer"] for p in params],
                    [torch_opt.state[p]["momentum_buffer"] for p in ref.parameters()], torch.float32)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_flat_half_and_double_step_as_the_tensor_by_tensor_step(dtype):
    ref, ours = mlp(dtype), mlp(dtype)
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True)
    plain, opt = fusedlr.SGD(ref.parameters(), **kw), fusedlr.SGD(ours.parameters(), flat=True, **kw)
    xs = inputs(4, dtype)
    train(ref, plain, xs)
    train(ours, opt, xs)
    assert opt._native.last_step_tensors(0) == 1 and plain._native.last_step_tensors(0) == 10
    assert_same(ours.parameters(), ref.parameters(), dtype)


def test_one_run_per_dtype_in_a_group():
    a, b = mlp(layers=2), mlp(torch.bfloat16, layers=3)
    ref_a, ref_b = mlp(layers=2), mlp(torch.bfloat16, layers=3)
    params = [*a.parameters(), *b.parameters()]
    opt = fusedlr.SGD(params, lr=0.05, momentum=0.9, flat=True)
    ref = fusedlr.SGD([*ref_a.parameters(), *ref_b.parameters()], lr=0.05, momentum=0.9)
    for model_a, model_b, o in ((a, b, opt), (ref_a, ref_b, ref)):
        for x in inputs(3):
            o.zero_grad()
            (model_a(x).square().mean() + model_b(x.bfloat16()).float().square().mean()).backward()
            o.step()
    assert opt._native.last_step_tensors(0) == 2
    assert_same(a.parameters(), ref_a.parameters(), torch.float32)
    assert_same(b.parameters(), ref_b.parameters(), torch.bfloat16)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_keeps_the_views(set_to_none):
    model = mlp()
    opt = fusedlr.SGD(model.parameters(), lr=0.1, momentum=0.9, flat=True)
    train(model, opt, inputs(2))
    grads = [p.grad for p in model.parameters()]
    opt.zero_grad(set_to_none=set_to_none)
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))
    assert all(not g.any() for g in grads)
    model(inputs(1)[0]).square().mean().backward()
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))


def test_a_broken_layout_is_stepped_tensor_by_tensor_and_zero_grad_mends_it():
    ref, ours = mlp(), mlp()
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-2)
    torch_opt, opt = torch.optim.SGD(ref.parameters(), **kw), fusedlr.SGD(ours.parameters(), flat=True, **kw)
    xs = inputs(7)
    train(ref, torch_opt, xs)
    # step 2: model.zero_grad() (autograd allocates new gradients); step 4: a gradient replaced by a
    # copy; step 6: a parameter's .data replaced by a copy (it stays out of the run from then on).
    # opt.zero_grad() gives the gradients their views again (steps 3 and 5).
    seen = []
    for t, x in enumerate(xs):
        (ours if t == 2 else opt).zero_grad()
        if t == 6:
            ours[0].bias.data = ours[0].bias.data.clone()
        ours(x).square().mean().backward()
        if t == 4:
            ours[2].weight.grad = ours[2].weight.grad.clone()
        opt.step()
        seen.append(opt._native.last_step_tensors(0))
    assert seen[1:] == [1, 10, 1, 10, 1, 10]  # (the first step goes through the op with lists)
    assert_same(ours.parameters(), ref.parameters(), torch.float32)


def test_state_dict_between_flat_and_torch():
    ref, ours = mlp(), mlp()
    kw = dict(lr=0.05, momentum=0.9, nesterov=True)
    torch_opt, opt = torch.optim.SGD(ref.parameters(), **kw), fusedlr.SGD(ours.parameters(), flat=True, **kw)
    xs = inputs(6)
    train(ref, torch_opt, xs[:3])
    train(ours, opt, xs[:3])
    # flat -> torch, through bytes as a checkpoint goes
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    into_torch = torch.optim.SGD(ref.parameters(), **kw)
    into_torch.load_state_dict(torch.load(buffer, weights_only=True))
    # torch -> a new flat optimizer: the loaded buffers land in its layout
    again = fusedlr.SGD(ours.parameters(), flat=True, **kw)
    again.load_state_dict(torch_opt.state_dict())
    params = list(ours.parameters())
    assert len(storages([again.state[p]["momentum_buffer"] for p in params])) == 1
    train(ref, into_torch, xs[3:])
    train(ours, again, xs[3:])
    assert again._native.last_step_tensors(0) == 1
    assert_same(ours.parameters(), ref.parameters(), torch.float32)


def test_deepcopy_lays_the_copy_out_again():
    # (nn.Parameter's deepcopy clones each parameter on its own: the optimizer's copy lays them out again)
    model = mlp()
    opt = fusedlr.SGD(model.parameters(), lr=0.05, momentum=0.9, flat=True)
    train(model, opt, inputs(2))
    model2, opt2 = copy.deepcopy((model, opt))
    xs = inputs(3)
    train(model, opt, xs)
    train(model2, opt2, xs)
    assert opt2._native.last_step_tensors(0) == 1
    assert_same(model2.parameters(), model.parameters(), torch.float32)
    assert storages(model2.parameters()).isdisjoint(storages(model.parameters()))


def test_frozen_and_lone_parameters_are_left_as_they_are():
    model = mlp(layers=4)
    model[1].requires_grad_(False)
    lone = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    frozen_before = [p.detach().clone() for p in model[1].parameters()]
    opt = fusedlr.SGD([*model.parameters(), lone], lr=0.05, momentum=0.9, flat=True)
    assert all(p.grad is None for p in model[1].parameters()) and lone.grad is None
    laid_out = [p for i in (0, 2, 3) for p in model[i].parameters()]
    assert len(storages(laid_out)) == 1
    for x in inputs(3):
        opt.zero_grad()
        (model(x).square().mean() + lone.square().sum()).backward()
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(model[1].parameters(), frozen_before))
    # frozen after the layout was made: zero_grad(set_to_none=True) drops its gradient, as torch's
    # does, so the step leaves it alone
    model[3].requires_grad_(False)
    opt.zero_grad()
    assert model[3].weight.grad is None
    before = model[3].weight.detach().clone()
    model(inputs(1)[0]).square().mean().backward()
    opt.step()
    assert torch.equal(model[3].weight, before)


def test_a_parameter_without_gradient_takes_a_zero_gradient_step():
    # The documented difference: zero_grad keeps the views, so a parameter unused by a backward
    # has a zero gradient, not None, and momentum still moves it.
    model = mlp(layers=3)
    opt = fusedlr.SGD(model.parameters(), lr=0.1, momentum=0.9, flat=True)
    train(model, opt, inputs(1))
    before = model[2].weight.detach().clone()
    buf = opt.state[model[2].weight]["momentum_buffer"].clone()
    opt.zero_grad()
    model[:2](inputs(1)[0]).square().mean().backward()  # model[2] unused
    opt.step()
    assert model[2].weight.grad is not None and not model[2].weight.grad.any()
    torch.testing.assert_close(model[2].weight.detach(), before - 0.1 * 0.9 * buf)


def test_grad_scaler_clip_and_schedule_with_a_flat_layout():
    ref, ours = mlp(), mlp()
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-2, max_grad_norm=0.05,
              schedule=fusedlr.schedules.cosine(10, eta_min=0.1))
    plain, opt = fusedlr.SGD(ref.parameters(), **kw), fusedlr.SGD(ours.parameters(), flat=True, **kw)
    for model, o in ((ref, plain), (ours, opt)):
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
        for t, x in enumerate(inputs(5)):
            o.zero_grad()
            loss = model(x).square().mean() * (float("inf") if t == 0 else 1.0)  # the first step is skipped
            scaler.scale(loss).backward()
            scaler.step(o)
            scaler.update()
    assert opt._native.last_step_tensors(0) == 1
    torch.testing.assert_close(opt.last_grad_norm, plain.last_grad_norm)
    assert_same(ours.parameters(), ref.parameters(), torch.float32)


def test_large_parameters_stay_out_of_the_layout_and_keep_torchs_zero_grad():
    # flat=True lays out parameters up to fusedlr.optim.FLAT_MAX_NUMEL elements; the large weight
    # keeps set_to_none (autograd hands its gradient over), the small ones share one run.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 200), torch.nn.Linear(200, 200), torch.nn.Linear(200, 8))
    ref = copy.deepcopy(model)
    big = model[1].weight
    assert big.numel() > fusedlr.optim.FLAT_MAX_NUMEL >= model[0].weight.numel()
    opt = fusedlr.SGD(model.parameters(), lr=0.05, momentum=0.9, flat=True)
    torch_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    small = [p for p in model.parameters() if p is not big]
    assert len(storages(small)) == 1 and storages([big]).isdisjoint(storages(small))
    train(model, opt, inputs(4))
    train(ref, torch_opt, inputs(4))
    assert opt._native.last_step_tensors(0) == 2  # the run of the small ones, and the big weight
    opt.zero_grad()
    assert big.grad is None and all(p.grad is not None for p in small)
    assert_same(model.parameters(), ref.parameters(), torch.float32)
    # an int is the limit itself: everything here fits under 50000 elements
    everything = fusedlr.SGD(model.parameters(), lr=0.05, flat=50_000)
    assert len(storages(model.parameters())) == 1 and len(everything._flat_layouts) == 1


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_zero_grad_without_set_to_none_outside_the_layout_is_torchs():
    # The large weight is outside the layout: zero_grad(set_to_none=False) detaches its gradient
    # from the graph create_graph=True left on it and zeroes it in place, as torch's does.
    def setup(cls, **kw):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 200), torch.nn.Linear(200, 200))
        opt = cls(model.parameters(), lr=0.05, momentum=0.9, **kw)
        model(inputs(1)[0]).square().mean().backward(create_graph=True)
        return model, opt

    for cls, kw in ((fusedlr.SGD, dict(flat=True)), (torch.optim.SGD, {})):
        model, opt = setup(cls, **kw)
        big = model[1].weight
        grad = big.grad
        assert grad.grad_fn is not None and grad.abs().sum() > 0
        opt.zero_grad(set_to_none=False)
        assert big.grad is grad and grad.grad_fn is None and not grad.requires_grad
        assert torch.equal(grad, torch.zeros_like(grad))
        assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())


@pytest.mark.parametrize("flat", [0, -3, 2.5, "yes"])
def test_flat_must_be_a_bool_or_a_positive_int(flat):
    with pytest.raises(ValueError, match="flat must be a bool or a positive number of elements"):
        fusedlr.SGD([torch.zeros(2, requires_grad=True)], flat=flat)


def test_model_to_after_the_layout_zeroes_and_steps_like_torch():
    # model.double() sets p.grad.data (the views themselves): the layout is gone, zero_grad must
    # still zero every gradient and the buffers must be made anew, in float64.
    ref, ours = mlp(), mlp()
    kw = dict(lr=0.05, momentum=0.9)
    torch_opt, opt = torch.optim.SGD(ref.parameters(), **kw), fusedlr.SGD(ours.parameters(), flat=True, **kw)
    train(ours, opt, inputs(1))
    train(ref, torch_opt, inputs(1))
    for model in (ref, ours):
        model.double()
    for o in (opt, torch_opt):
        o.state.clear()  # (torch's buffers are float32 too: both start their momentum again)
    xs = inputs(3).double()
    train(ref, torch_opt, xs)
    train(ours, opt, xs)
    assert opt._flat_layouts == []  # let go at the first zero_grad that found it gone
    assert all(p.dtype == torch.float64 for p in ours.parameters())
    assert_same(ours.parameters(), ref.parameters(), torch.float64)


def test_buffers_made_later_than_the_layouts_first_take_their_own_memory():
    # model[2] gets no gradient on the first step (model.zero_grad() left it None), and its first
    # gradient comes on a step a GradScaler skips: its counter is 0 while the others' are 1. One
    # counter stands for a run, so its buffer must not join the run (it did: momentum reset).
    def run(flat):
        model = mlp(layers=3)
        opt = fusedlr.SGD(model.parameters(), lr=0.05, momentum=0.9, dampening=0.1, flat=flat)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        for t, x in enumerate(inputs(5)):
            model.zero_grad() if t == 0 else opt.zero_grad()
            head = model[:2] if t == 0 else model  # model[2] unused on the first step
            loss = head(x).square().mean() * (float("inf") if t == 1 else 1.0)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return model, opt

    (flat, flat_opt), (plain, _) = run(True), run(False)
    assert_same(flat.parameters(), plain.parameters(), torch.float32)
    assert storages([flat_opt.state[model_p]["momentum_buffer"] for model_p in flat[2].parameters()]).isdisjoint(
        storages([flat_opt.state[p]["momentum_buffer"] for p in flat[0].parameters()]))


def test_a_frozen_parameter_in_the_group_does_not_stop_the_runs():
    model = mlp(layers=4)
    model[1].weight.requires_grad_(False)
    opt = fusedlr.SGD(model.parameters(), lr=0.05, momentum=0.9, flat=True)
    ref = copy.deepcopy(model)
    torch_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    train(model, opt, inputs(4))
    train(ref, torch_opt, inputs(4))
    assert opt._native.last_step_tensors(0) == 1  # the run; the frozen weight (no grad) skipped
    assert_same(model.parameters(), ref.parameters(), torch.float32)


@pytest.mark.parametrize("shape", [(1,), (3,)])
def test_a_bad_loaded_buffer_is_refused_and_leaves_the_layout_as_it_was(shape):
    model = mlp(layers=2)
    opt = fusedlr.SGD(model.parameters(), lr=0.05, momentum=0.9, flat=True)
    train(model, opt, inputs(2))
    sd = opt.state_dict()
    sd["state"][0]["momentum_buffer"] = torch.full(shape, 7.0)
    groups, layouts, buffer = opt.param_groups, list(opt._flat_layouts), opt.state[model[0].weight]["momentum_buffer"]
    before = buffer.clone()
    with pytest.raises(ValueError, match="momentum_buffer has shape"):
        opt.load_state_dict(sd)
    assert opt.param_groups is groups and opt._flat_layouts == layouts
    assert opt.state[model[0].weight]["momentum_buffer"] is buffer and torch.equal(buffer, before)
    train(model, opt, inputs(2))  # (the restored state is a new container: one step with lists first)
    assert opt._native.last_step_tensors(0) == 1


def test_a_state_dict_refused_for_its_groups_leaves_the_buffers_as_they_were():
    # The buffers are valid, a hyper-parameter is not: nothing may be copied into the layout.
    model = mlp(layers=2)
    opt = fusedlr.SGD(model.parameters(), lr=0.05, momentum=0.9, flat=True)
    train(model, opt, inputs(2))
    sd = copy.deepcopy(opt.state_dict())
    for param_state in sd["state"].values():
        param_state["momentum_buffer"].fill_(7.0)
    sd["param_groups"][0]["lr"] = -1.0
    buffers = [opt.state[p]["momentum_buffer"] for p in model.parameters()]
    before = [b.clone() for b in buffers]
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict(sd)
    assert all(torch.equal(b, e) for b, e in zip(buffers, before))
