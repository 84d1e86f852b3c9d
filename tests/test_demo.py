"""The demo, end to end on the real Fashion-MNIST (Debian's dataset-fashion-mnist), and its parts."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fusedlr.demo import cli, data
from fusedlr.demo.schedulers import SCHEDULERS, SchedulerConfig, make_scheduler

EPOCH_LINE = re.compile(r"^Epoch (\d+)/(\d+), Loss: \d+\.\d{4}, Learning Rate: \d+\.\d{6}, "
                        r"Test Accuracy: \d\.\d{4}, Time: \d+\.\ds$")


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_roundtrips_a_generated_file(tmp_path, compress):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    write_idx(tmp_path / "imgs", images, compress)
    got = data.read_idx(tmp_path / ("imgs.gz" if compress else "imgs"))
    assert got.shape == (3, 4, 5) and got.dtype == np.uint8 and np.array_equal(got, images)
    ints = np.array([1, -2, 70000], dtype=">i4")
    write_idx(tmp_path / "ints", ints, compress)
    assert data.read_idx(tmp_path / ("ints.gz" if compress else "ints")).tolist() == [1, -2, 70000]


def test_read_idx_rejects_a_truncated_or_foreign_file(tmp_path):
    write_idx(tmp_path / "imgs", np.zeros((2, 3), dtype=np.uint8), False)
    (tmp_path / "short").write_bytes((tmp_path / "imgs").read_bytes()[:-1])
    with pytest.raises(ValueError, match="expected 6 elements"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "png")


def test_idx_folder_loads_like_to_tensor(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), True)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,), dtype=np.uint8), False)
    ds = data.load("mnist", tmp_path, download=False)
    assert ds.train.images.shape == (6, 1, 28, 28) and ds.test.labels.shape == (4,)
    raw = data.read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    from torchvision.transforms import ToTensor

    torch.testing.assert_close(ds.train.images[2], ToTensor()(raw[2]), rtol=0, atol=0)
    assert ds.train.labels.dtype == torch.int64


def test_offline_without_any_data_exits_with_a_clear_message(tmp_path):
    env = dict(os.environ, FUSEDLR_FASHION_MNIST_DIR=str(tmp_path / "nothing"))
    out = subprocess.run(
        [sys.executable, "-m", "fusedlr.demo", "--dataset", "mnist", "--data-root", str(tmp_path / "empty"),
         "--no-download", "--epochs", "1", "--out", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "mnist is not available" in out.stderr and "apt-get install dataset-fashion-mnist" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_demo_schedule_builds_and_steps(name):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    stepper = make_scheduler(SchedulerConfig(name=name), opt, epochs=4, steps_per_epoch=10)
    lrs = []
    for _ in range(4):
        for _ in range(10):
            opt.step()
            stepper.after_batch()
            lrs.append(opt.param_groups[0]["lr"])
        stepper.after_epoch(metric=1.0)
    assert all(np.isfinite(lrs)) and all(lr >= 0 for lr in lrs)
    assert len(lrs) == 40


@pytest.fixture(scope="module")
def fashion_mnist():
    return data.load("fashion-mnist", download=False)


@pytest.mark.slow
def test_demo_trains_the_classic_model_on_real_fashion_mnist(tmp_path, capsys):
    assert cli.main(["--dataset", "fashion-mnist", "--epochs", "2", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    epoch_lines = [line for line in lines if line.startswith("Epoch ")]
    assert len(epoch_lines) == 2 and all(EPOCH_LINE.match(line) for line in epoch_lines), epoch_lines
    assert lines[-1] == "Training finished!"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["optimizer"] == "fusedlr" and metrics["config"]["lr"] == 0.1
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert set(metrics["epochs"][0]) == {"epoch", "loss", "lr", "test_accuracy", "seconds"}
    assert metrics["epochs"][-1]["test_accuracy"] > 0.80  # the classic MLP reaches ~0.82 after 2 epochs
    assert metrics["epochs"][1]["loss"] < metrics["epochs"][0]["loss"]
    assert len(metrics["lr_per_step"]) == 2 * 938
    png = (tmp_path / "training.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.slow
def test_fusedlr_and_torch_optimizers_train_identically(fashion_mnist):
    """fusedlr.SGD rounds like torch.optim.SGD's CPU path, so the whole run is bit-identical."""
    from fusedlr.demo.train import RunConfig, train

    subset = data.Dataset(fashion_mnist.name, fashion_mnist.source,
                          data.Split(fashion_mnist.train.images[:6400], fashion_mnist.train.labels[:6400]),
                          data.Split(fashion_mnist.test.images[:2000], fashion_mnist.test.labels[:2000]))
    runs = [train(subset, RunConfig(optimizer=o, epochs=2, scheduler=SchedulerConfig(name="one-cycle")),
                  log=lambda _: None) for o in ("fusedlr", "torch")]
    assert [e.loss for e in runs[0].epochs] == [e.loss for e in runs[1].epochs]
    assert runs[0].lr_per_step == runs[1].lr_per_step


@pytest.mark.slow
def test_compare_plots_several_schedules(tmp_path, fashion_mnist, monkeypatch, capsys):
    small = data.Dataset(fashion_mnist.name, fashion_mnist.source,
                         data.Split(fashion_mnist.train.images[:3200], fashion_mnist.train.labels[:3200]),
                         fashion_mnist.test)
    monkeypatch.setattr(data, "load", lambda *a, **k: small)
    assert cli.main(["--compare", "step,cosine,wsd", "--epochs", "1", "--out", str(tmp_path)]) == 0
    for name in ("step", "cosine", "wsd"):
        assert json.loads((tmp_path / name / "metrics.json").read_text())["config"]["scheduler"]["name"] == name
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "Training finished!" in capsys.readouterr().out


def test_console_script_runs_the_demo_cli(capsys):
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="fusedlr-demo")
    assert script.load() is cli.main
    with pytest.raises(SystemExit) as exit_info:
        script.load()(["--help"])
    assert exit_info.value.code == 0
    assert "--scheduler" in capsys.readouterr().out
