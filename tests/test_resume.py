"""Exact resume: N steps straight equal k steps, torch.save of model + optimizer + scheduler,
torch.load into fresh objects, N - k more steps: bit for bit (torch.equal).

With torch's own schedulers (torch.optim.lr_scheduler), with every closed-form fusedlr twin, and
with the in-kernel schedule (tests/test_schedule_in_kernel.py covers the latter too)."""

from __future__ import annotations

import pytest
import torch

import fusedlr
from conftest import DTYPES

N_STEPS = 8

SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.4, 0.2], total_steps=N_STEPS),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=N_STEPS, eta_min=1e-3),
}

F = fusedlr.lr_scheduler
# Every fusedlr twin a training loop steps once per iteration (ReduceLROnPlateau, driven by a
# metric, has its own state-machine resume test in tests/test_lr_scheduler.py).
TWINS = {
    "StepLR": lambda o: F.StepLR(o, 3, 0.5),
    "MultiStepLR": lambda o: F.MultiStepLR(o, [2, 5], 0.3),
    "ConstantLR": lambda o: F.ConstantLR(o, 0.5, 4),
    "LinearLR": lambda o: F.LinearLR(o, 0.2, 1.0, 6),
    "ExponentialLR": lambda o: F.ExponentialLR(o, 0.8),
    "PolynomialLR": lambda o: F.PolynomialLR(o, 7, 2.0),
    "CosineAnnealingLR": lambda o: F.CosineAnnealingLR(o, 6, 1e-3),
    "CosineAnnealingWarmRestarts": lambda o: F.CosineAnnealingWarmRestarts(o, 2, 2, 1e-3),
    "CyclicLR": lambda o: F.CyclicLR(o, [0.01, 0.02], [0.2, 0.1], 2, 3, "triangular2"),
    "OneCycleLR": lambda o: F.OneCycleLR(o, [0.4, 0.2], total_steps=N_STEPS, three_phase=True),
    "LambdaLR": lambda o: F.LambdaLR(o, lambda t: 0.9**t),
    "MultiplicativeLR": lambda o: F.MultiplicativeLR(o, lambda t: 0.9),
    "SequentialLR": lambda o: F.SequentialLR(o, [F.LinearLR(o, 0.1, 1.0, 3), F.CosineAnnealingLR(o, 5)], [3]),
    "ChainedScheduler": lambda o: F.ChainedScheduler([F.ConstantLR(o, 0.5, 4), F.ExponentialLR(o, 0.9)]),
    "WarmupLR": lambda o: F.WarmupLR(o, 3, F.StepLR(o, 2, 0.5), start_factor=0.05),
    "WSDLR": lambda o: F.WSDLR(o, N_STEPS, 2, 3, "sqrt"),
    "InverseSqrtLR": lambda o: F.InverseSqrtLR(o, 2),
    "InverseTimeLR": lambda o: F.InverseTimeLR(o, 0.5, 2),
}

OPTIONS = {
    "damped-wd": dict(momentum=0.9, dampening=0.1, weight_decay=1e-3),
    "nesterov-max": dict(momentum=0.8, nesterov=True, maximize=True),
}


def build(dtype, options, scheduler, seed):
    """A fresh model (its weights from `seed`), optimizer with two param groups, and scheduler."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(7, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)).to(dtype)
    opt = fusedlr.SGD(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.05}], lr=0.1, **options
    )
    return model, opt, SCHEDULERS[scheduler](opt)


def train(model, opt, sched, steps, scaler=None):
    for t in steps:
        g = torch.Generator().manual_seed(t)
        x = torch.randn(16, 7, generator=g).to(next(model.parameters()).dtype)
        opt.zero_grad()
        loss = model(x).float().pow(2).mean()
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss * (float("inf") if t == 0 else 1.0)).backward()  # the first step is skipped
            scaler.step(opt)
            scaler.update()
        sched.step()


def save_and_restore(objects, fresh, tmp_path):
    """torch.save (model, optimizer, scheduler) to a file, torch.load(weights_only=True) it into the
    fresh objects that ``fresh()`` builds, and return those."""
    path = tmp_path / "checkpoint.pt"
    torch.save([obj.state_dict() for obj in objects], path)
    checkpoint = torch.load(path, weights_only=True)
    restored = fresh()
    for obj, state in zip(restored, checkpoint):
        obj.load_state_dict(state)
    return restored


def assert_bitwise_equal(model, opt, ref_model, ref_opt):
    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert torch.equal(p, q), (p - q).abs().max()
        assert torch.equal(opt.state[p]["momentum_buffer"], ref_opt.state[q]["momentum_buffer"])
        assert torch.equal(opt.state[p]["step"], ref_opt.state[q]["step"])
    for g, h in zip(opt.param_groups, ref_opt.param_groups):
        assert g["lr"] == h["lr"] and g["momentum"] == h["momentum"]


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("options", list(OPTIONS.values()), ids=list(OPTIONS))
@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_resume_from_checkpoint_is_bit_exact(dtype, scheduler, options, k, tmp_path):
    ref_model, ref_opt, ref_sched = build(dtype, options, scheduler, seed=0)
    train(ref_model, ref_opt, ref_sched, range(N_STEPS))

    model, opt, sched = build(dtype, options, scheduler, seed=0)
    train(model, opt, sched, range(k))
    # other weights (seed 1): the load must set them
    model, opt, sched = save_and_restore((model, opt, sched), lambda: build(dtype, options, scheduler, seed=1),
                                         tmp_path)
    train(model, opt, sched, range(k, N_STEPS))

    assert_bitwise_equal(model, opt, ref_model, ref_opt)
    assert sched.get_last_lr() == ref_sched.get_last_lr()


@pytest.mark.parametrize("k", [1, 3], ids=["before-first-real-step", "later"])
def test_resume_with_grad_scaler_is_bit_exact(k, tmp_path):
    """GradScaler skips step 0 (inf loss): a checkpoint taken then holds no momentum buffers yet
    (they never stepped), and the resumed run initialises them on its first real step."""
    def fresh(seed):
        model, opt, sched = build(torch.float32, OPTIONS["damped-wd"], "OneCycleLR", seed)
        return model, opt, sched, torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=2)

    ref_model, ref_opt, ref_sched, ref_scaler = fresh(0)
    train(ref_model, ref_opt, ref_sched, range(N_STEPS), ref_scaler)

    model, opt, sched, scaler = fresh(0)
    train(model, opt, sched, range(k), scaler)
    checkpoint = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                  "scaler": scaler.state_dict()}
    assert (checkpoint["optimizer"]["state"] == {}) == (k == 1)
    path = tmp_path / "checkpoint.pt"
    torch.save(checkpoint, path)

    checkpoint = torch.load(path, weights_only=True)
    model, opt, sched, scaler = fresh(1)
    for obj, key in ((model, "model"), (opt, "optimizer"), (sched, "scheduler"), (scaler, "scaler")):
        obj.load_state_dict(checkpoint[key])
    train(model, opt, sched, range(k, N_STEPS), scaler)

    assert_bitwise_equal(model, opt, ref_model, ref_opt)
    assert scaler.get_scale() == ref_scaler.get_scale()


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("twin", list(TWINS))
def test_resume_with_every_fusedlr_twin_is_bit_exact(twin, k, tmp_path):
    def fresh(seed):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(7, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))
        opt = fusedlr.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.05}],
                          lr=0.1, momentum=0.9, dampening=0.1)
        return model, opt, TWINS[twin](opt)

    ref_model, ref_opt, ref_sched = fresh(0)
    train(ref_model, ref_opt, ref_sched, range(N_STEPS))
    model, opt, sched = fresh(0)
    train(model, opt, sched, range(k))
    model, opt, sched = save_and_restore((model, opt, sched), lambda: fresh(1), tmp_path)
    train(model, opt, sched, range(k, N_STEPS))
    assert_bitwise_equal(model, opt, ref_model, ref_opt)
    assert sched.get_last_lr() == ref_sched.get_last_lr()
