"""Schedulers: fusedlr.lr_scheduler twins vs torch.optim.lr_scheduler, curve() vs a Python loop,
and a demo epoch end to end with fusedlr.SGD vs torch.optim.SGD."""

from __future__ import annotations

import pytest
import torch

import fusedlr
from fusedlr import lr_scheduler as fl
from fusedlr import schedules

SCHEDULERS = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=30, gamma=0.1),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=10**9),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=10**9),
    "CyclicLR": lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=1000),
}


@pytest.mark.parametrize("impl", ["fusedlr", "torch"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_step(benchmark, name, impl):
    p = torch.zeros(1, requires_grad=True)
    p.grad = torch.zeros(1)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    module = fl if impl == "fusedlr" else torch.optim.lr_scheduler
    sched = SCHEDULERS[name](module, opt)
    opt.step()  # torch warns about a scheduler stepped before its optimizer
    benchmark.group = f"scheduler.step {name}"
    benchmark.extra_info.update(contender=impl, kind="scheduler")
    benchmark(sched.step)


def _schedule():
    return schedules.warmup(schedules.cosine(T_max=1_000_000, eta_min=0.01), steps=10_000)


def test_curve_one_million_steps(benchmark):
    s = _schedule()
    benchmark.group = "schedule over 1M steps"
    benchmark.extra_info.update(contender="curve(1_000_000)", kind="curve")
    out = benchmark(s.curve, 1_000_000)
    assert len(out) == 1_000_000


def test_python_loop_one_million_steps(benchmark):
    s = _schedule()
    benchmark.group = "schedule over 1M steps"
    benchmark.extra_info.update(contender="python loop s(t)", kind="curve")
    benchmark.pedantic(lambda: [s(t) for t in range(1_000_000)], rounds=3, iterations=1)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["fusedlr", "torch"])
def test_demo_epoch(benchmark, optimizer):
    from fusedlr.demo import data
    from fusedlr.demo.train import RunConfig, train

    dataset = data.load("fashion-mnist", download=False)
    benchmark.group = "demo epoch (Fashion-MNIST, SimpleNet, batch 64)"
    benchmark.extra_info.update(contender=optimizer, kind="demo")
    # One warm-up epoch first: the first epoch in a process also pays oneDNN/allocator warm-up.
    benchmark.pedantic(lambda: train(dataset, RunConfig(optimizer=optimizer, epochs=1), log=lambda _: None),
                       rounds=3, iterations=1, warmup_rounds=1)
