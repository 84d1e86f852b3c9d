"""The native op torch.ops.fusedlr.sgd_: opcheck, argument checks at the boundary, one-call semantics."""

from __future__ import annotations

import pytest
import torch

import fusedlr
from fusedlr import ops
from conftest import DTYPES, devices


def lists(n=3, dtype=torch.float32, device="cpu", momentum=True, sizes=(5, 16, 33)):
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=g).to(dtype).to(device) for s in sizes[:n]]
    grads = [torch.randn(s, generator=g).to(dtype).to(device) for s in sizes[:n]]
    bufs = [torch.randn(s, generator=g).to(dtype).to(device) for s in sizes[:n]] if momentum else []
    steps = [torch.tensor(float(i % 2), device=device) for i in range(n)] if momentum else []
    return params, grads, bufs, steps


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_opcheck(device, dtype, momentum):
    params, grads, bufs, steps = lists(dtype=dtype, device=device, momentum=momentum != 0)
    args = (params, grads, bufs, steps, 0.1, momentum, 0.0, 0.01, False, False)
    torch.library.opcheck(torch.ops.fusedlr.sgd_.default, args)
    scale = torch.tensor(2.0, device=device)
    found_inf = torch.tensor(0.0, device=device)
    lr = torch.tensor(0.05, device=device)
    torch.library.opcheck(torch.ops.fusedlr.sgd_.default, args, dict(lr_tensor=lr, grad_scale=scale, found_inf=found_inf))


def test_one_call_updates_every_tensor_and_advances_steps():
    params, grads, bufs, steps = lists()
    before = [p.clone() for p in params]
    ops.sgd_(params, grads, bufs, steps, lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False,
             maximize=False)
    for p, b in zip(params, before):
        assert not torch.equal(p, b)
    assert [s.item() for s in steps] == [1.0, 2.0, 1.0]


def test_step_zero_initialises_the_buffer_whatever_it_held():
    p, g = torch.zeros(40), torch.full((40,), 2.0)
    buf, step = torch.full((40,), float("nan")), torch.tensor(0.0)
    ops.sgd_([p], [g], [buf], [step], lr=1.0, momentum=0.9, dampening=0.5, weight_decay=0.0, nesterov=False,
             maximize=False)
    assert torch.equal(buf, g) and torch.equal(p, -g)  # buf = g on the first step (no dampening), like torch


def test_empty_lists_are_a_no_op():
    ops.sgd_([], [], [], [], lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a[1].pop(), r"got 3 params but 2 grads"),
        (lambda a: a[2].pop(), r"got 3 params but 2 momentum_buffers"),
        (lambda a: a[3].pop(), r"got 3 params but 2 steps"),
        (lambda a: a[1].__setitem__(1, torch.zeros(17)), r"grads\[1\] has shape \(17,\) but params\[1\] has shape \(16,\)"),
        (lambda a: a[1].__setitem__(0, torch.zeros(5, dtype=torch.float64)),
         r"grads\[0\] has dtype torch.float64 but params\[0\] has dtype torch.float32"),
        (lambda a: a[2].__setitem__(2, torch.zeros(32)), r"momentum_buffers\[2\] does not match params\[2\]"),
        (lambda a: a[3].__setitem__(0, torch.zeros(2)), r"steps\[0\] must be a one-element float32 tensor"),
        (lambda a: a[3].__setitem__(0, torch.tensor(0, dtype=torch.int64)), r"steps\[0\] must be a one-element float32"),
        (lambda a: (a[0].__setitem__(0, torch.zeros(5, dtype=torch.int32)),
                    a[1].__setitem__(0, torch.zeros(5, dtype=torch.int32))), r"params\[0\] has dtype torch.int32; supported: torch.float32, torch.float64"),
        (lambda a: a[1].__setitem__(0, torch.zeros(5).to_sparse()), r"sparse gradients"),
    ],
    ids=["grads-len", "bufs-len", "steps-len", "grad-shape", "grad-dtype", "buf-shape", "step-size", "step-dtype",
         "int-param", "sparse"],
)
def test_bad_lists_raise_naming_the_argument(mutate, message):
    args = list(lists())
    mutate(args)
    with pytest.raises((RuntimeError, ValueError, TypeError), match=message):
        ops.sgd_(*args, lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(lr=-1.0), ValueError, "Invalid learning rate: -1.0"),
        (dict(lr=float("nan")), ValueError, "Invalid learning rate: nan"),  # the op refuses it too
        (dict(momentum=-0.1), ValueError, "Invalid momentum value: -0.1"),
        (dict(dampening=float("inf")), ValueError, "Invalid dampening value: inf"),
        (dict(weight_decay=-0.1), ValueError, "Invalid weight_decay value: -0.1"),
        (dict(nesterov=True, dampening=0.1), ValueError, "Nesterov momentum requires"),
        (dict(momentum=0.0), RuntimeError, "momentum is 0, so momentum_buffers and steps must be empty"),
        (dict(grad_scale=torch.ones(2)), RuntimeError, "grad_scale must have one element"),
    ],
)
def test_bad_scalars_raise(kwargs, error, message):
    hyper = dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False)
    hyper.update(kwargs)
    with pytest.raises(error, match=message):
        ops.sgd_(*lists(), **hyper)


def test_the_optimizer_asks_the_op_s_check_and_words_it_like_torch():
    assert fusedlr._C.sgd_hyperparameter_problem(0.1, 0.9, 0.0, 0.0, False) is None
    assert fusedlr._C.sgd_hyperparameter_problem(float("inf"), 0.9, 0.0, 0.0, False) == "lr"
    assert fusedlr._C.sgd_hyperparameter_problem(0.1, 0.0, 0.0, 0.0, True) == "nesterov"
    for kwargs in (dict(lr=-1), dict(momentum=-0.5), dict(weight_decay=-2), dict(nesterov=True, momentum=0.0)):
        messages = []
        for cls in (fusedlr.SGD, torch.optim.SGD):
            with pytest.raises(ValueError) as info:
                cls([torch.zeros(1, requires_grad=True)], **{"lr": 0.1, **kwargs})
            messages.append(str(info.value))
        assert messages[0] == messages[1]


def test_fake_tensor_trace_does_not_touch_data():
    """Under FakeTensorMode the op runs its registered fake and leaves real tensors alone."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        params, grads, bufs, steps = (
            [mode.from_tensor(t) for t in group] for group in lists()
        )
        torch.ops.fusedlr.sgd_(params, grads, bufs, steps, 0.1, 0.9, 0.0, 0.0, False, False)


def test_native_module_reports_its_build():
    assert fusedlr._C.cpu_kernel_level() in fusedlr._C.cpu_levels_compiled.split(",")
    assert isinstance(fusedlr._C.with_cuda, bool)
    assert fusedlr.__version__ == fusedlr._C.__version__


def test_stream_reference_adds_g_to_p_and_b_and_refuses_other_tensors():
    """The roofline's reference kernel (bench/roofline.py) does exactly its trivial work, tails included."""
    from fusedlr import _C

    for n in (0, 1, 17, 100_003):
        p, g, b = torch.randn(n), torch.randn(n), torch.randn(n)
        p0, b0 = p.clone(), b.clone()
        _C._stream_reference(p, g, b)
        assert torch.equal(p, p0 + g) and torch.equal(b, b0 + g)
        _C._stream_reference(p, g)
        assert torch.equal(p, p0 + g + g)
    with pytest.raises(ValueError, match="contiguous float32 CPU tensors of one size"):
        _C._stream_reference(torch.zeros(4), torch.zeros(5))
    with pytest.raises(ValueError, match="contiguous float32"):
        _C._stream_reference(torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))


def _many(n=600, size=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(size, generator=g) for _ in range(n)]
    grads = [torch.randn(size, generator=g) for _ in range(n)]
    bufs = [torch.randn(size, generator=g) for _ in range(n)]
    steps = [torch.ones((), dtype=torch.float32) for _ in range(n)]
    return params, grads, bufs, steps


def test_many_tensors_report_the_first_bad_one_and_write_nothing():
    """From 256 tensors on, the checks run on torch's threads: the error is still the first bad
    tensor's in list order, and nothing (parameters, buffers, counters) is written."""
    for bad in ([100, 500], [599], [0, 1, 598]):
        params, grads, bufs, steps = _many()
        for i in bad:
            grads[i] = torch.zeros(8)
        before = [t.clone() for t in params + bufs + steps]
        with pytest.raises(ValueError, match=rf"grads\[{bad[0]}\] has shape \(8,\) but params\[{bad[0]}\]"):
            ops.sgd_(params, grads, bufs, steps, lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0,
                     nesterov=False, maximize=False)
        assert all(torch.equal(a, b) for a, b in zip(params + bufs + steps, before))


def test_many_tensors_with_strided_and_shared_ones_step_like_torchs_loop():
    """Many tensors, one of them a transposed view (stepped through a contiguous copy) and one listed
    twice (shared memory: the tensors are then stepped one after another, as torch's loop does)."""
    params, grads, bufs, steps = _many(600, 12)
    params[400] = torch.randn(4, 3).t()
    grads[400], bufs[400] = torch.randn(3, 4), torch.randn(3, 4)
    params[590], grads[590], bufs[590], steps[590] = params[10], grads[10].clone(), bufs[10], steps[10]
    ref_p = [p.clone() for p in params]
    ref_b = [b.clone() for b in bufs]
    for i in (590,):  # the same tensors twice in the reference too
        ref_p[i], ref_b[i] = ref_p[10], ref_b[10]
    ops.sgd_(params, grads, bufs, steps, lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=False,
             maximize=False)
    for p, g, b in zip(ref_p, grads, ref_b):  # torch.optim.sgd's update for a buffer past its first step
        d = g + 0.01 * p
        b.mul_(0.9).add_(d)
        p.add_(b, alpha=-0.1)
    for i in range(600):
        torch.testing.assert_close(params[i], ref_p[i], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(bufs[i], ref_b[i], rtol=1e-6, atol=1e-6)
    assert float(steps[10]) == 3.0 and float(steps[11]) == 2.0


def test_the_op_steps_leaves_that_require_grad_in_grad_mode():
    """The op is not differentiable and runs its own tensor code (the contiguous copies of strided
    tensors) without autograd, whatever the caller's grad mode: no 'leaf Variable ... in-place' error."""
    p = torch.randn(4, 3).t().contiguous().t().requires_grad_()  # strided: stepped through a copy
    g, b, s = torch.ones(4, 3), torch.zeros(4, 3), torch.ones((), dtype=torch.float32)
    with torch.enable_grad():
        ops.sgd_([p], [g], [b], [s], lr=0.5, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False, grad_scale=torch.tensor(2.0))
    assert torch.equal(b, torch.full((4, 3), 0.5)) and float(s) == 2.0 and p.grad_fn is None
