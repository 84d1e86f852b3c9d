"""fusedlr under the libraries that drive optimizers and schedulers: PyTorch Lightning, transformers, timm.

torch is the reference: each run with fusedlr is repeated with torch's own classes
(torch.optim.lr_scheduler.*, torch.optim.SGD(foreach=False)) and must give the same learning
rates, warnings and parameters.
"""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import timm.scheduler
import torch
import transformers
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fusedlr
from fusedlr import lr_scheduler as F
from conftest import EXACT_TOL

TS = torch.optim.lr_scheduler

# A twin against torch's class through a library: the closed form against torch's recursion over
# a few dozen steps (as test_lr_scheduler.PARITY_RTOL).
PARITY_RTOL = 1e-9

LR = 0.1
BATCHES = 4  # per epoch: 16 samples in batches of 4


def lightning_warnings(test):
    """Warnings Lightning emits about things outside this project (errors under the project's filter)."""
    # Tiny loaders on the main process on purpose: worker processes would only cost time here.
    # (Lightning suggests workers on machines with more than 2 CPUs.)
    for loader in ("train", "val"):
        test = pytest.mark.filterwarnings(f"ignore:The '{loader}_dataloader' does not have many workers"
                                          ":lightning_fabric.utilities.warnings.PossibleUserWarning")(test)
    # pytorch_lightning 2.6's utilities/_pytree.py instantiates torch's deprecated LeafSpec; the
    # warning is attributed to pytorch_lightning, so pyproject's torch.* filter does not cover it.
    return pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")(test)


def make_loader(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4 * BATCHES, 4, generator=g)
    y = torch.randn(4 * BATCHES, 1, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=4)


def make_model():
    torch.manual_seed(0)
    return nn.Linear(4, 1)


class Regression(pl.LightningModule):
    """nn.Linear(4, 1) on MSE; ``configure(params)`` is what configure_optimizers returns."""

    def __init__(self, configure):
        super().__init__()
        self.net = make_model()
        self.configure = configure

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return self.configure(self.net.parameters())


class FlatValidation(Regression):
    """Logs a constant "val_loss": a plateau scheduler sees no improvement after the first epoch."""

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", 1.0)


def fit(module, epochs, val=False, **trainer_kwargs):
    trainer_kwargs.setdefault("logger", False)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                         log_every_n_steps=1, **trainer_kwargs)
    trainer.fit(module, train_dataloaders=make_loader(0), val_dataloaders=make_loader(1) if val else None)
    return trainer


# --- PyTorch Lightning ---------------------------------------------------------------------------


@lightning_warnings
@pytest.mark.parametrize("epochs", [3, 5])
def test_lightning_reduce_lr_on_plateau_twin_steps_with_metric_like_torch(epochs):
    """Lightning takes the twin for a ReduceLROnPlateau and passes it the monitored metric (it used
    to call step() without it: "step() missing 1 required positional argument: 'metrics'");
    the lr, the scheduler's state and the trained parameters are torch's."""
    runs = {}
    for module in (F, TS):
        def configure(params, module=module):
            opt = fusedlr.SGD(params, lr=LR, momentum=0.9)
            sched = module.ReduceLROnPlateau(opt, patience=0, factor=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}

        model = FlatValidation(configure)
        trainer = fit(model, epochs, val=True)
        assert trainer.current_epoch == epochs
        config, = trainer.lr_scheduler_configs
        assert config.reduce_on_plateau
        runs[module] = (trainer.optimizers[0].param_groups[0]["lr"], config.scheduler, list(model.net.parameters()))

    (lr, sched, params), (ref_lr, ref_sched, ref_params) = runs[F], runs[TS]
    # Best at the first epoch, then patience 0: halved at the end of every later epoch.
    assert ref_lr == LR * 0.5 ** (epochs - 1)
    assert lr == ref_lr
    assert sched.get_last_lr() == ref_sched.get_last_lr()
    assert (sched.best, sched.num_bad_epochs, sched.last_epoch) == (
        ref_sched.best, ref_sched.num_bad_epochs, ref_sched.last_epoch)
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q, **EXACT_TOL[torch.float32])


@lightning_warnings
def test_lightning_trains_a_flat_layout_like_torch_sgd():
    """fusedlr.SGD(flat=True) from configure_optimizers: Lightning zeroes through the optimizer, so
    the layout holds (one tensor per step), and the weights are torch's."""
    runs = {}
    for name, make in (("flat", lambda params: fusedlr.SGD(params, lr=LR, momentum=0.9, flat=True)),
                       ("torch", lambda params: torch.optim.SGD(params, lr=LR, momentum=0.9, foreach=False))):
        model = Regression(make)
        trainer = fit(model, 3)
        runs[name] = (trainer.optimizers[0], list(model.net.parameters()))
    assert runs["flat"][0]._native.last_step_tensors(0) == 1
    for p, q in zip(runs["flat"][1], runs["torch"][1]):
        torch.testing.assert_close(p, q, **EXACT_TOL[torch.float32])


# pytorch_lightning/core/optimizer.py, _configure_schedulers_automatic_opt
ONE_CYCLE_WARNING = ("A `OneCycleLR` scheduler is using 'interval': 'epoch'."
                     " Are you sure you didn't mean 'interval': 'step'?")


@lightning_warnings
@pytest.mark.parametrize("interval", ["epoch", None, "step"])
def test_lightning_one_cycle_interval_warning_same_as_torch(interval):
    """Lightning warns (RuntimeWarning) when a OneCycleLR steps per epoch, also when 'interval' is
    left at its default, and never with 'step'; its check is isinstance(torch's OneCycleLR)."""
    seen = {}
    for module in (F, TS):
        def configure(params, module=module):
            opt = fusedlr.SGD(params, lr=LR, momentum=0.9)
            sched = {"scheduler": module.OneCycleLR(opt, max_lr=1.0, total_steps=2 * BATCHES)}
            if interval is not None:
                sched["interval"] = interval
            return {"optimizer": opt, "lr_scheduler": sched}

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(Regression(configure), epochs=2)
        seen[module] = [(w.category, str(w.message)) for w in caught if "OneCycleLR" in str(w.message)]

    assert seen[TS] == ([] if interval == "step" else [(RuntimeWarning, ONE_CYCLE_WARNING)])
    assert seen[F] == seen[TS]


@lightning_warnings
def test_lightning_lr_monitor_logs_twin_lrs_like_torch(tmp_path):
    """LearningRateMonitor reads group["lr"] before every step: with the twin of CosineAnnealingLR
    (interval "step") it logs, under the same name and steps, the values torch's scheduler gives."""
    epochs, t_max, eta_min = 3, 8, 0.01  # 12 steps: down to the minimum at 8, then back up
    logged = {}
    for name, module in (("fusedlr", F), ("torch", TS)):
        def configure(params, module=module):
            opt = fusedlr.SGD(params, lr=LR, momentum=0.9)
            sched = module.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        monitor = LearningRateMonitor(logging_interval="step")
        fit(Regression(configure), epochs, logger=CSVLogger(tmp_path, name=name), callbacks=[monitor])
        with open(tmp_path / name / "version_0" / "metrics.csv", newline="") as f:
            rows = [row for row in csv.DictReader(f) if row.get("lr-SGD")]
        logged[name] = (monitor.lrs, [int(row["step"]) for row in rows], [float(row["lr-SGD"]) for row in rows])

    (lrs, steps, values), (ref_lrs, ref_steps, ref_values) = logged["fusedlr"], logged["torch"]
    n = epochs * BATCHES
    closed = [eta_min + (LR - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2 for t in range(n)]
    assert list(ref_lrs) == ["lr-SGD"]
    assert ref_lrs["lr-SGD"] == pytest.approx(closed, rel=PARITY_RTOL)
    assert list(lrs) == list(ref_lrs)
    assert lrs["lr-SGD"] == pytest.approx(ref_lrs["lr-SGD"], rel=PARITY_RTOL)
    assert steps == ref_steps == list(range(n))
    assert values == pytest.approx(ref_values, rel=PARITY_RTOL)


# --- a plain training loop (transformers, timm) --------------------------------------------------

STEPS = 12


def two_groups(kind):
    """nn.Linear(4, 1)'s weight and bias as two param groups with different lrs, under fusedlr.SGD
    or its reference torch.optim.SGD(foreach=False)."""
    net = make_model()
    groups = [{"params": [net.weight]}, {"params": [net.bias], "lr": LR / 3}]
    if kind == "fused":
        return fusedlr.SGD(groups, lr=LR, momentum=0.9), [net.weight, net.bias]
    return torch.optim.SGD(groups, lr=LR, momentum=0.9, foreach=False), [net.weight, net.bias]


def train(opt, params, after_step, steps=STEPS):
    """Per step: record each group's lr, forward/backward on seeded random data, opt.step(), then
    ``after_step(number of steps done)``. Returns the lrs (flat: step-major) and the parameters."""
    g = torch.Generator().manual_seed(0)
    lrs = []
    for i in range(steps):
        lrs.extend(float(group["lr"]) for group in opt.param_groups)
        x, y = torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)
        opt.zero_grad()
        nn.functional.mse_loss(nn.functional.linear(x, *params), y).backward()
        opt.step()
        after_step(i + 1)
    return lrs, [p.detach().clone() for p in params]


# --- transformers --------------------------------------------------------------------------------

TRANSFORMERS_SCHEDULES = {
    "cosine_with_warmup": lambda o: transformers.get_cosine_schedule_with_warmup(o, 3, STEPS),
    "linear_with_warmup": lambda o: transformers.get_linear_schedule_with_warmup(o, 3, STEPS),
    "polynomial_with_warmup": lambda o: transformers.get_polynomial_decay_schedule_with_warmup(
        o, 2, STEPS, lr_end=1e-3, power=2.0),
    "wsd": lambda o: transformers.get_wsd_schedule(o, num_warmup_steps=2, num_decay_steps=4,
                                                    num_training_steps=STEPS),
}


@pytest.mark.parametrize("schedule", sorted(TRANSFORMERS_SCHEDULES))
def test_transformers_schedule_on_fused_sgd_same_as_torch_sgd(schedule):
    """transformers' schedules are torch LambdaLRs writing group["lr"]: fusedlr.SGD sees the
    lrs torch.optim.SGD sees and takes the same steps with them."""
    runs = {}
    for kind in ("fused", "torch"):
        opt, params = two_groups(kind)
        sched = TRANSFORMERS_SCHEDULES[schedule](opt)
        lrs, params = train(opt, params, lambda _: sched.step())
        runs[kind] = (lrs, params, sched.get_last_lr())
    (lrs, params, last), (ref_lrs, ref_params, ref_last) = runs["fused"], runs["torch"]
    assert len(set(ref_lrs)) > 4  # the schedule moves
    assert lrs == ref_lrs
    assert last == ref_last
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q, **EXACT_TOL[torch.float32])


TWINS = {
    # T_max 5 over 24 steps: through the minimum (where torch's chainable cosine adds instead of
    # scaling) twice.
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=5),
    "cosine_eta_min": lambda m, o: m.CosineAnnealingLR(o, T_max=5, eta_min=0.005),
    "exponential": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "multistep": lambda m, o: m.MultiStepLR(o, milestones=[3, 7, 7, 15], gamma=0.5),
}


@pytest.mark.parametrize("built_first", ["transformers", "twin"])
@pytest.mark.parametrize("twin", sorted(TWINS))
def test_transformers_lambda_lr_stacked_with_twin_same_as_torch(twin, built_first):
    """A twin stepped right after a transformers LambdaLR on one optimizer follows the lr the
    LambdaLR sets, with torch's chainable rule: the numbers of torch's class stacked the same way,
    whichever of the two is constructed first."""
    runs = {}
    for module in (F, TS):
        opt, params = two_groups("fused")
        if built_first == "transformers":
            hf = transformers.get_linear_schedule_with_warmup(opt, 2, 2 * STEPS)
            sched = TWINS[twin](module, opt)
        else:
            sched = TWINS[twin](module, opt)
            hf = transformers.get_linear_schedule_with_warmup(opt, 2, 2 * STEPS)

        def step_both(_, hf=hf, sched=sched):
            hf.step()
            sched.step()

        runs[module] = train(opt, params, step_both, steps=2 * STEPS)
    (lrs, params), (ref_lrs, ref_params) = runs[F], runs[TS]
    # The twin moves the LambdaLR's values (a warmup from 0, then a linear decay).
    hf_alone = [LR * f * min(t / 2, (2 * STEPS - t) / (2 * STEPS - 2)) for t in range(2 * STEPS) for f in (1, 1 / 3)]
    assert ref_lrs != pytest.approx(hf_alone, rel=1e-3)
    assert lrs == pytest.approx(ref_lrs, rel=PARITY_RTOL, abs=1e-15)
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q, **EXACT_TOL[torch.float32])


# --- timm ----------------------------------------------------------------------------------------

TIMM_SCHEDULES = {
    # per epoch: step(epoch) after each epoch
    "cosine_epochs": lambda o: timm.scheduler.CosineLRScheduler(
        o, t_initial=2, lr_min=1e-3, warmup_t=1, warmup_lr_init=1e-3, cycle_limit=2),
    "step_epochs": lambda o: timm.scheduler.StepLRScheduler(o, decay_t=2, decay_rate=0.5, warmup_t=1,
                                                            warmup_lr_init=1e-2),
    # per update: step_update(num_updates) after each optimizer step
    "cosine_updates": lambda o: timm.scheduler.CosineLRScheduler(
        o, t_initial=3 * BATCHES, lr_min=1e-4, warmup_t=2, warmup_lr_init=1e-3, t_in_epochs=False),
    "step_updates": lambda o: timm.scheduler.StepLRScheduler(o, decay_t=3, decay_rate=0.7, t_in_epochs=False),
}


@pytest.mark.parametrize("schedule", sorted(TIMM_SCHEDULES))
def test_timm_scheduler_drives_fused_sgd_like_torch_sgd(schedule):
    """timm's train loop: step_update(num_updates) after every optimizer step, step(epoch + 1)
    after every epoch, each writing group["lr"]; fusedlr.SGD steps with those lrs as torch's does."""
    runs = {}
    for kind in ("fused", "torch"):
        opt, params = two_groups(kind)
        sched = TIMM_SCHEDULES[schedule](opt)

        def after_step(updates, sched=sched):
            sched.step_update(num_updates=updates)
            if updates % BATCHES == 0:
                sched.step(updates // BATCHES)

        runs[kind] = train(opt, params, after_step, steps=4 * BATCHES)
    (lrs, params), (ref_lrs, ref_params) = runs["fused"], runs["torch"]
    assert len(set(ref_lrs)) > 4  # the schedule moves
    assert lrs == ref_lrs
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q, **EXACT_TOL[torch.float32])


# --- an in-kernel schedule (fusedlr.SGD(schedule=...)) under Lightning and transformers' Trainer ----

IN_KERNEL = fusedlr.schedules.warmup(fusedlr.schedules.cosine(10), steps=3)


@lightning_warnings
def test_lightning_lr_monitor_logs_the_lr_each_in_kernel_step_used(tmp_path):
    """No scheduler object: the step computes the lr, and group["lr"] shows the lr of the next step,
    so LearningRateMonitor logs what a torch scheduler with the same curve would have it log."""
    logged = {}
    for name in ("fusedlr", "torch"):
        def configure(params, name=name):
            if name == "fusedlr":
                return fusedlr.SGD(params, lr=LR, momentum=0.9, schedule=IN_KERNEL)
            opt = torch.optim.SGD(params, lr=LR, momentum=0.9, foreach=False)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": TS.LambdaLR(opt, lambda t: IN_KERNEL(t)),
                                                       "interval": "step"}}

        monitor = LearningRateMonitor(logging_interval="step")
        module = Regression(configure)
        fit(module, 3, logger=CSVLogger(tmp_path, name=name), callbacks=[monitor])
        logged[name] = (monitor.lrs["lr-SGD"], [p.detach().clone() for p in module.parameters()])
    assert logged["fusedlr"][0] == pytest.approx([IN_KERNEL(t, LR) for t in range(3 * BATCHES)], rel=1e-15)
    assert logged["fusedlr"][0] == pytest.approx(logged["torch"][0], rel=1e-15)
    for p, q in zip(logged["fusedlr"][1], logged["torch"][1]):
        torch.testing.assert_close(p, q, **EXACT_TOL[torch.float32])


class _TinyRegression(nn.Module):
    """What transformers' Trainer expects of a model: forward(**batch) returning the loss."""

    def __init__(self):
        super().__init__()
        self.net = make_model()

    def forward(self, x, labels):
        return {"loss": nn.functional.mse_loss(self.net(x), labels)}


def _trainer(tmp_path, model, optimizers, steps=8):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g)
    data = [{"x": x[i], "labels": y[i]} for i in range(32)]
    args = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=steps,
                                          logging_steps=1, report_to=[], save_strategy="no", use_cpu=True,
                                          disable_tqdm=True, seed=0)
    return transformers.Trainer(model=model, args=args, train_dataset=data, optimizers=optimizers)


def test_transformers_trainer_refuses_to_stack_its_default_schedule_on_an_in_kernel_one(tmp_path):
    model = _TinyRegression()
    opt = fusedlr.SGD(model.parameters(), lr=LR, schedule=IN_KERNEL)
    with pytest.raises(ValueError, match="InKernelLR"):  # was: silently multiplied by Trainer's linear decay
        _trainer(tmp_path, model, (opt, None)).train()


def test_transformers_trainer_logs_the_in_kernel_lr_with_in_kernel_lr(tmp_path):
    runs = {}
    for name in ("fusedlr", "torch"):
        model = _TinyRegression()
        if name == "fusedlr":
            opt = fusedlr.SGD(model.parameters(), lr=LR, momentum=0.9, schedule=IN_KERNEL)
            sched = F.InKernelLR(opt)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, foreach=False)
            sched = TS.LambdaLR(opt, lambda t: IN_KERNEL(t))
        trainer = _trainer(tmp_path / name, model, (opt, sched))
        trainer.train()
        lrs = [row["learning_rate"] for row in trainer.state.log_history if "learning_rate" in row]
        runs[name] = (lrs, [p.detach().clone() for p in model.parameters()])
    assert len(runs["fusedlr"][0]) == 8 and runs["fusedlr"][0] == pytest.approx(runs["torch"][0], rel=1e-15)
    for p, q in zip(runs["fusedlr"][1], runs["torch"][1]):
        torch.testing.assert_close(p, q, **EXACT_TOL[torch.float32])


def test_transformers_trainer_with_a_flat_layout_gives_torchs_weights(tmp_path):
    """transformers' Trainer zeroes with model.zero_grad() (the grads become None, then new
    tensors): fusedlr.SGD(flat=True) then steps tensor by tensor, with torch's numbers."""
    runs = {}
    for name in ("flat", "torch"):
        model = _TinyRegression()
        if name == "flat":
            opt = fusedlr.SGD(model.parameters(), lr=LR, momentum=0.9, flat=True)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, foreach=False)
        _trainer(tmp_path / name, model, (opt, TS.LambdaLR(opt, lambda t: 1.0))).train()
        runs[name] = (opt, [p.detach().clone() for p in model.parameters()])
    assert runs["flat"][0]._native.last_step_tensors(0) == 2  # (the layout's views were replaced)
    for p, q in zip(runs["flat"][1], runs["torch"][1]):
        torch.testing.assert_close(p, q, **EXACT_TOL[torch.float32])


# --- transformers' schedule functions, by their names -------------------------------------------------

def _lrs_of(make, steps: int) -> list[list[float]]:
    p, q = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.03}], lr=0.1)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize(("warmup", "total"), [(0, 1000), (10, 1000), (100, 3000), (300, 100), (7, 7), (1, 2)])
def test_transformers_schedule_functions_give_its_learning_rates_bit_for_bit(warmup, total):
    """fusedlr.lr_scheduler.get_*_schedule* against transformers' own, every step past the end:
    the same numbers exactly (their formulas in their order of operations), as closed-form twins."""
    import transformers.optimization as hf

    cases = [("get_constant_schedule", (), {}), ("get_constant_schedule_with_warmup", (warmup,), {}),
             ("get_linear_schedule_with_warmup", (warmup, total), {})]
    cases += [("get_cosine_with_min_lr_schedule_with_warmup_lr_rate", (warmup, total), {"min_lr_rate": 0.1}),
              ("get_cosine_with_min_lr_schedule_with_warmup_lr_rate", (warmup, total),
               {"min_lr": 0.01, "warmup_lr_rate": 0.2, "num_cycles": 1.5}),
              ("get_inverse_sqrt_schedule", (warmup,), {}), ("get_inverse_sqrt_schedule", (warmup,), {"timescale": 37}),
              ("get_polynomial_decay_schedule_with_warmup", (warmup, total), {}),
              ("get_polynomial_decay_schedule_with_warmup", (warmup, total), {"lr_end": 0.01, "power": 2.5})]
    for restarts in (1, 3):
        cases.append(("get_cosine_with_hard_restarts_schedule_with_warmup", (warmup, total), {"num_cycles": restarts}))
    for cycles in (0.5, 1.0, 2.75, 0.3):
        cases += [("get_cosine_schedule_with_warmup", (warmup, total), {"num_cycles": cycles}),
                  ("get_cosine_with_min_lr_schedule_with_warmup", (warmup, total), {"num_cycles": cycles,
                                                                                    "min_lr_rate": 0.1}),
                  ("get_cosine_with_min_lr_schedule_with_warmup", (warmup, total), {"num_cycles": cycles,
                                                                                    "min_lr": 0.007})]
    for name, args, kwargs in cases:
        if name == "get_polynomial_decay_schedule_with_warmup" and warmup == total:
            continue  # transformers divides by T - W = 0 at step W (ZeroDivisionError); fusedlr refuses it up front
        theirs = _lrs_of(lambda o: getattr(hf, name)(o, *args, **kwargs), total + 300)
        ours = _lrs_of(lambda o: getattr(F, name)(o, *args, **kwargs), total + 300)
        assert ours == theirs, (name, args, kwargs)
        assert isinstance(getattr(F, name)(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), *args,
                                           **kwargs), F.ScheduleLR)


def test_transformers_min_lr_arguments_are_refused_as_transformers_does():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    for name in ("get_linear_schedule_with_warmup", "get_cosine_schedule_with_warmup"):
        with pytest.raises(ValueError, match="num_warmup_steps must be >= 0, got -2"):  # transformers: a shifted decay
            getattr(F, name)(opt, -2, 10)
    with pytest.raises(ValueError, match=r"lr_end \(0.5\) must be smaller than initial lr \(0.1\)"):
        F.get_polynomial_decay_schedule_with_warmup(opt, 1, 10, lr_end=0.5)
    with pytest.raises(ValueError, match="polynomial_to: decay_steps must not be 0"):
        F.get_polynomial_decay_schedule_with_warmup(opt, 10, 10)
    with pytest.raises(ValueError, match="Only one of min_lr or min_lr_rate should be set"):
        F.get_cosine_with_min_lr_schedule_with_warmup(opt, 1, 10, min_lr=0.01, min_lr_rate=0.1)
    with pytest.raises(ValueError, match="One of min_lr or min_lr_rate should be set"):
        F.get_cosine_with_min_lr_schedule_with_warmup(opt, 1, 10)


@pytest.mark.parametrize(("warmup", "decay", "total"), [(0, 200, 1000), (50, 300, 1000), (100, 100, 150), (10, 0, 100)])
def test_transformers_wsd_schedule_bit_for_bit_in_every_shape(warmup, decay, total):
    import transformers.optimization as hf

    for warmup_type in ("linear", "cosine", "1-sqrt"):
        for decay_type in ("linear", "cosine", "1-sqrt"):
            for extra in ({}, {"min_lr_ratio": 0.1, "num_cycles": 1.5}):
                kwargs = dict(warmup_type=warmup_type, decay_type=decay_type, **extra)
                theirs = _lrs_of(lambda o: hf.get_wsd_schedule(o, warmup, decay, total, **kwargs), total + 100)
                ours = _lrs_of(lambda o: F.get_wsd_schedule(o, warmup, decay, total, **kwargs), total + 100)
                assert ours == theirs, kwargs
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="Either num_training_steps or num_stable_steps must be specified"):
        F.get_wsd_schedule(opt, 1, 2)
    with pytest.raises(ValueError, match="Unknown decay type: exp, expected 'linear', 'cosine' or '1-sqrt'"):
        F.get_wsd_schedule(opt, 1, 2, 10, decay_type="exp")
    with pytest.warns(UserWarning, match="num_stable_steps will be used"):
        F.get_wsd_schedule(opt, 1, 2, 10, num_stable_steps=3)


def test_transformers_get_scheduler_by_every_name_it_has_a_twin_of():
    import transformers.optimization as hf

    kwargs = {"cosine_with_min_lr": {"min_lr_rate": 0.1}, "warmup_stable_decay": {"num_decay_steps": 200},
              "cosine_warmup_with_min_lr": {"min_lr_rate": 0.05, "warmup_lr_rate": 0.1},
              "polynomial": {"lr_end": 0.001, "power": 2.0}, "inverse_sqrt": {"timescale": 50}}
    for name in ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay"):
        def make(module, o, name=name):
            return module.get_scheduler(name, o, num_warmup_steps=20, num_training_steps=1000,
                                        scheduler_specific_kwargs=kwargs.get(name))
        assert _lrs_of(lambda o: make(F, o), 1100) == _lrs_of(lambda o: make(hf, o), 1100), name
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    assert isinstance(F.get_scheduler(hf.SchedulerType.REDUCE_ON_PLATEAU, opt), F.ReduceLROnPlateau)
    with pytest.raises(ValueError, match="cosine requires `num_warmup_steps`"):
        F.get_scheduler("cosine", opt)
    with pytest.raises(ValueError, match="linear requires `num_training_steps`"):
        F.get_scheduler("linear", opt, num_warmup_steps=1)
    greedy = F.get_scheduler(hf.SchedulerType.GREEDY, opt, scheduler_specific_kwargs={"patience": 3})
    assert isinstance(greedy, F.GreedyLR) and greedy.patience == 3
    with pytest.raises(ValueError, match="'adafactor' is not a scheduler fusedlr has a twin of"):
        F.get_scheduler("adafactor", opt, num_warmup_steps=1)


def _metrics(seed: int, n: int) -> list[float]:
    """A noisy loss that improves, stalls and improves again: both of GreedyLR's moves happen."""
    rng = np.random.default_rng(seed)
    trend = np.concatenate([np.linspace(2.0, 1.0, n // 3), np.full(n // 3, 1.0), np.linspace(1.0, 0.3, n - 2 * (n // 3))])
    return (trend + rng.normal(0, 0.002, n)).tolist()


@pytest.mark.parametrize("kwargs", [
    {},
    {"patience": 3, "factor": 0.8, "min_lr": 0.01, "max_lr": 0.5, "cooldown": 2, "warmup": 3, "reset_start": 4},
    {"mode": "max", "threshold_mode": "rel", "threshold": 1e-3, "patience": 2, "smooth": True, "window_size": 7},
    {"patience": 1, "factor": 0.5, "min_lr": [0.02, 0.001], "max_lr": [1.0, 0.2], "reset_start": 2, "eps": 1e-3},
])
def test_transformers_greedy_lr_decides_as_transformers(kwargs):
    """fusedlr's GreedyLR against transformers' on the same metrics: every lr, every counter, and a
    state saved by either resumes the other."""
    import transformers.optimization as hf

    metrics = _metrics(0, 600)
    if kwargs.get("mode") == "max":
        metrics = [1.0 / m for m in metrics]  # an accuracy-like metric that rises

    def opt(cls):
        a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
        return cls([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.05}], lr=0.1)

    ref_opt, our_opt = opt(torch.optim.SGD), opt(fusedlr.SGD)
    ref, ours = hf.GreedyLR(ref_opt, **kwargs), F.GreedyLR(our_opt, **kwargs)
    moves = set()
    for i, m in enumerate(metrics):
        before = ref_opt.param_groups[0]["lr"]
        ref.step(m)
        ours.step(m)
        moves.add(np.sign(ref_opt.param_groups[0]["lr"] - before))
        assert [g["lr"] for g in our_opt.param_groups] == [g["lr"] for g in ref_opt.param_groups], i
        assert ours.get_last_lr() == ref.get_last_lr()
        assert ours.state_dict() == ref.state_dict(), i
        if i == 300:  # swap the states: each resumes from the other's checkpoint
            ours2_opt, ref2_opt = opt(fusedlr.SGD), opt(torch.optim.SGD)
            ours2, ref2 = F.GreedyLR(ours2_opt), hf.GreedyLR(ref2_opt)
            ours2.load_state_dict(ref.state_dict())
            ref2.load_state_dict(ours.state_dict())
    for m in metrics[301:]:
        for s in (ours2, ref2):
            s.step(m)
    assert [g["lr"] for g in ours2_opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]
    assert [g["lr"] for g in ref2_opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]
    assert moves == {-1.0, 0.0, 1.0}  # the lr went up and down


def test_transformers_greedy_lr_refuses_as_transformers():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="Factor should be < 1.0."):
        F.GreedyLR(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode avg is unknown!"):
        F.GreedyLR(opt, mode="avg")
    with pytest.raises(ValueError, match="expected 1 min_lrs, got 2"):
        F.GreedyLR(opt, min_lr=[0.1, 0.2])
    with pytest.raises(TypeError, match="is not an Optimizer"):
        F.GreedyLR(object())


def test_transformers_trainer_resumes_a_fusedlr_twin_of_its_schedule_bit_exactly(tmp_path):
    """transformers.Trainer(optimizers=(fusedlr.SGD, fusedlr's get_cosine_schedule_with_warmup)):
    a run resumed from its step-4 checkpoint ends with the weights and logged lrs of the run that
    never stopped (the scheduler's state is plain data: Trainer saves and loads it with torch)."""
    def run(output, resume=None):
        torch.manual_seed(0)
        model = _TinyRegression()
        opt = fusedlr.SGD(model.parameters(), lr=LR, momentum=0.9)
        sched = F.get_cosine_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=8)
        trainer = _trainer(output, model, (opt, sched))
        trainer.args.save_strategy = "steps"
        trainer.args.save_steps = 4
        trainer.train(resume_from_checkpoint=resume)
        lrs = [row["learning_rate"] for row in trainer.state.log_history if "learning_rate" in row]
        return lrs, [p.detach().clone() for p in model.parameters()]

    full_lrs, full = run(tmp_path / "full")
    resumed_lrs, resumed = run(tmp_path / "resumed", resume=str(tmp_path / "full" / "checkpoint-4"))
    # (The resumed run's history holds the checkpoint's four steps, then its own four.)
    assert len(full_lrs) == 8 and resumed_lrs == full_lrs
    for p, q in zip(resumed, full):
        assert torch.equal(p, q)
