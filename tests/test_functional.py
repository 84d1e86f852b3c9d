"""fusedlr.functional.sgd against torch.optim.sgd.sgd, the function torch's SGD class calls."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.optim.sgd import sgd as torch_sgd

import fusedlr
from fusedlr import schedules as S
from conftest import EXACT_TOL

OPTIONS = [
    dict(momentum=m, dampening=d, weight_decay=wd, nesterov=n, maximize=mx)
    for m, d, wd, n, mx in itertools.product([0.0, 0.9], [0.0, 0.3], [0.0, 1e-2], [False, True], [False, True])
    if not (n and (m == 0 or d != 0)) and not (m == 0 and d != 0)
]


def _tensors(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g).to(dtype) for shape in [(5,), (3, 4), (17,)]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_sgd_gives_torchs_functional_numbers_and_fills_the_buffer_list(options, dtype):
    ours, theirs = _tensors(dtype), _tensors(dtype)
    our_bufs, their_bufs = [None] * 3, [None] * 3
    for step in range(3):
        grads = _tensors(dtype, seed=100 + step)
        fusedlr.functional.sgd(ours, [g.clone() for g in grads], our_bufs, lr=0.1, **options)
        torch_sgd(theirs, [g.clone() for g in grads], their_bufs, foreach=False, lr=0.1, **options)
    for a, b in zip(ours + [x for x in our_bufs if x is not None], theirs + [x for x in their_bufs if x is not None]):
        torch.testing.assert_close(a, b, **EXACT_TOL[dtype])
    assert (our_bufs[0] is None) == (options["momentum"] == 0)


def test_sgd_steps_complex_tensors_and_tensor_lrs_like_torch():
    ours = [torch.randn(4, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))]
    theirs = [ours[0].clone()]
    grads = [torch.randn(4, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))]
    bufs_a, bufs_b = [None], [None]
    for _ in range(2):
        fusedlr.functional.sgd(ours, grads, bufs_a, lr=torch.tensor(0.05), momentum=0.9)
        torch_sgd(theirs, grads, bufs_b, foreach=False, lr=0.05, momentum=0.9, weight_decay=0.0, dampening=0.0,
                  nesterov=False, maximize=False)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-6, atol=1e-7)


def test_sgd_with_a_schedule_is_the_optimizers_in_kernel_schedule():
    schedule = S.warmup(S.cosine(20), steps=4)
    params = _tensors(torch.float32)
    opt_params = [p.clone().requires_grad_() for p in params]
    opt = fusedlr.SGD(opt_params, lr=0.2, momentum=0.9, schedule=schedule)
    state = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    bufs = [None] * 3
    for step in range(10):
        grads = _tensors(torch.float32, seed=step)
        fusedlr.functional.sgd(params, grads, bufs, lr=0.2, momentum=0.9, schedule=schedule, schedule_state=state)
        for p, g in zip(opt_params, grads):
            p.grad = g
        opt.step()
    for a, b in zip(params, opt_params):
        assert torch.equal(a, b.detach())
    assert state[0].item() == 10 and state[1].item() == schedule(9, 0.2)


def test_sgd_refuses_a_buffer_list_of_the_wrong_length():
    with pytest.raises(ValueError, match="one per parameter"):
        fusedlr.functional.sgd(_tensors(torch.float32), _tensors(torch.float32), [None], lr=0.1, momentum=0.9)
