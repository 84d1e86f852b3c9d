"""The learning-rate range test: restores everything, suggests an lr that trains well."""

from __future__ import annotations

import json

import pytest
import torch

import fusedlr
from fusedlr.demo import cli, data
from fusedlr.demo.model import SimpleNet
from fusedlr.demo.train import RunConfig, batches, train
from fusedlr.demo.schedulers import SchedulerConfig


@pytest.fixture(scope="module")
def fashion_mnist():
    return data.load("fashion-mnist", download=False)


def _snapshot(model, optimizer):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {p: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
             for p, s in optimizer.state.items()},
            [dict((k, v) for k, v in g.items() if k != "params") for g in optimizer.param_groups])


@pytest.mark.parametrize("optimizer_name", ["fusedlr", "adam"])
def test_state_is_restored_exactly(fashion_mnist, optimizer_name):
    torch.manual_seed(0)
    model = SimpleNet()
    if optimizer_name == "fusedlr":
        optimizer = fusedlr.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = batches(fashion_mnist.train, 64, seed=0)
    # a few real steps first, so that there is optimizer state to restore
    for _, (images, labels) in zip(range(3), loader):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.eval()
    before = _snapshot(model, optimizer)
    result = fusedlr.lr_find(model, optimizer, torch.nn.functional.cross_entropy, loader, num_iter=30)
    after = _snapshot(model, optimizer)
    assert len(result.lrs) >= 2 and not model.training
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), k
    assert before[1].keys() == after[1].keys()
    for p in before[1]:
        for k, v in before[1][p].items():
            assert torch.equal(v, after[1][p][k]) if isinstance(v, torch.Tensor) else v == after[1][p][k]
    assert before[2] == after[2]


def test_schedule_is_exponential_then_stops_on_divergence(fashion_mnist):
    torch.manual_seed(0)
    model = SimpleNet()
    optimizer = fusedlr.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = fusedlr.lr_find(model, optimizer, torch.nn.functional.cross_entropy,
                             batches(fashion_mnist.train, 64, seed=1), start_lr=1e-5, end_lr=100.0, num_iter=100)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert ratios == pytest.approx([(100.0 / 1e-5) ** (1 / 99)] * len(ratios))
    assert result.lrs[0] == pytest.approx(1e-5)
    assert result.diverged and len(result.lrs) < 100  # momentum SGD blows up well before lr = 100
    assert 1e-5 < result.valley < result.lrs[-1] and 1e-5 < result.steepest < result.lrs[-1]


def test_linear_mode_and_a_short_iterator():
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches_ = iter([(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(5)])
    result = fusedlr.lr_find(model, optimizer, torch.nn.functional.mse_loss, batches_, start_lr=0.01, end_lr=0.05,
                             num_iter=10, mode="linear")
    assert len(result.lrs) == 5  # the iterator ran out
    assert result.lrs == pytest.approx([0.01 + 0.04 * i / 9 for i in range(5)])
    assert optimizer.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(start_lr=1.0, end_lr=1.0), "end_lr must be greater than start_lr"),
        (dict(start_lr=2.0, end_lr=1.0), "end_lr must be greater than start_lr"),
        (dict(start_lr=0.0), "start_lr must be a positive"),
        (dict(num_iter=1), "num_iter must be an integer >= 2"),
        (dict(mode="cosine"), "mode must be 'exp' or 'linear'"),
        (dict(smooth=0.0), "smooth must be in"),
        (dict(diverge=1.0), "diverge must be > 1"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match=message):
        fusedlr.lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.functional.mse_loss,
                        [(torch.randn(2, 2), torch.randn(2, 1))], **kwargs)


@pytest.mark.slow
def test_suggestion_trains_better_than_100x_smaller_or_larger(fashion_mnist):
    """The issue's acceptance test, on the real Fashion-MNIST: one epoch of the demo model."""
    torch.manual_seed(0)
    model = SimpleNet()
    optimizer = fusedlr.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = fusedlr.lr_find(model, optimizer, torch.nn.functional.cross_entropy,
                             batches(fashion_mnist.train, 64, seed=0))
    lr = result.suggestion
    assert lr is not None

    def accuracy(lr_value):
        run = train(fashion_mnist, RunConfig(scheduler=SchedulerConfig(name="constant"), epochs=1, lr=lr_value),
                    log=lambda _: None)
        return run.epochs[-1].test_accuracy

    suggested, smaller, larger = accuracy(lr), accuracy(lr / 100), accuracy(lr * 100)
    assert suggested > smaller and suggested > larger, (lr, suggested, smaller, larger)


@pytest.mark.slow
def test_demo_lr_find_writes_the_plot_and_the_history(tmp_path, capsys):
    assert cli.main(["--lr-find", "--dataset", "fashion-mnist", "--lr-find-iters", "60", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Suggested learning rate:" in out
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert len(saved["lrs"]) == len(saved["losses"]) <= 60 and saved["valley"] > 0
    assert (tmp_path / "lr_find.png").read_bytes()[:4] == b"\x89PNG"


def test_an_in_kernel_schedule_is_off_during_the_test_and_restored():
    """Was: the recorded/suggested lr was the group's lr, while the step used schedule factor x lr
    (0.001-0.018 of it under a warmup). A one-weight model whose step moves the weight by exactly
    the lr used (loss = weight, gradient 1, no momentum) shows the lr each step really used."""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    schedule = fusedlr.schedules.warmup(fusedlr.schedules.constant(), steps=1000, start_factor=0.001)
    optimizer = fusedlr.SGD(model.parameters(), lr=0.5, schedule=schedule)
    weights = [0.0]
    result = fusedlr.lr_find(model, optimizer, lambda out, target: out.sum() + 1000.0,
                             [(torch.ones(1, 1), torch.zeros(1))], start_lr=1e-4, end_lr=1e-1, num_iter=20,
                             progress=lambda i, lr, loss: weights.append(model.weight.item()))
    used = [before - after for before, after in zip(weights, weights[1:])]
    assert len(used) == 20 and used == pytest.approx(result.lrs, rel=1e-6)
    group = optimizer.param_groups[0]
    assert group["schedule"] == schedule and group["base_lr"] == 0.5 and group["lr"] == pytest.approx(0.0005)
    assert float(group["schedule_state"][0]) == 0.0  # the schedule's counter did not advance
    assert model.weight.item() == 0.0
