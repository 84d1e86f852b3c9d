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
    # The classic MLP reaches 0.79-0.83 after 2 epochs, depending on the rounding of torch's own
    # matmul kernels at the CPU's SIMD level (torch.optim.SGD follows the same trajectory bit for
    # bit: 0.7935 at ATEN_CPU_CAPABILITY=avx2 on the Xeon, 0.82 at avx512).
    assert metrics["epochs"][-1]["test_accuracy"] > 0.75
    assert metrics["epochs"][1]["loss"] < metrics["epochs"][0]["loss"]
    assert len(metrics["lr_per_step"]) == 2 * 938
    png = (tmp_path / "training.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_clip_grad_norm_clips_inside_the_fused_step_and_before_torchs(fashion_mnist, tmp_path, capsys):
    """--clip-grad-norm: fusedlr.SGD(max_grad_norm=...) against clip_grad_norm_ + torch.optim.SGD on
    the demo's model and a slice of the real data: the same training to float32 rounding."""
    from fusedlr.demo.train import RunConfig, prepare

    subset = data.Dataset(fashion_mnist.name, fashion_mnist.source,
                          data.Split(fashion_mnist.train.images[:640], fashion_mnist.train.labels[:640]),
                          data.Split(fashion_mnist.test.images[:200], fashion_mnist.test.labels[:200]))
    runs = {o: prepare(subset, RunConfig(optimizer=o, epochs=1, clip_grad_norm=0.5)) for o in ("fusedlr", "torch")}
    assert runs["fusedlr"].optimizer.max_grad_norm == 0.5
    from fusedlr.demo.train import fit
    results = {o: fit(run, subset, log=lambda _: None) for o, run in runs.items()}
    assert results["fusedlr"].config["clip_grad_norm"] == 0.5
    assert results["fusedlr"].epochs[0].loss == pytest.approx(results["torch"].epochs[0].loss, rel=1e-4)
    unclipped = prepare(subset, RunConfig(optimizer="fusedlr", epochs=1))
    fit(unclipped, subset, log=lambda _: None)
    # (ten steps of float32 drift: ~1e-8 per step, grown by the training itself)
    for a, b, c in zip(runs["fusedlr"].model.parameters(), runs["torch"].model.parameters(),
                       unclipped.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=5e-4)
        assert (a - c).abs().max() > 5e-3  # the clip acted
    assert cli.main(["--dataset", "fashion-mnist", "--epochs", "1", "--clip-grad-norm", "1", "--out", str(tmp_path),
                     "--no-progress"]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["clip_grad_norm"] == 1.0


def test_lars_trains_the_demo_model_as_timm_lars_would(fashion_mnist, tmp_path):
    """--optimizer lars: fusedlr.Lars against timm.optim.Lars on the demo's model and real data."""
    timm_optim = pytest.importorskip("timm.optim")
    from fusedlr.demo.train import RunConfig, fit, prepare

    subset = data.Dataset(fashion_mnist.name, fashion_mnist.source,
                          data.Split(fashion_mnist.train.images[:640], fashion_mnist.train.labels[:640]),
                          data.Split(fashion_mnist.test.images[:200], fashion_mnist.test.labels[:200]))
    config = RunConfig(optimizer="lars", epochs=1, lr=2.0, weight_decay=1e-4)
    ours, ref = prepare(subset, config), prepare(subset, config)
    # (one epoch: the demo's step schedule has not decayed yet, so timm's optimizer needs none)
    ref.optimizer = timm_optim.Lars(ref.model.parameters(), lr=2.0, momentum=0.9, weight_decay=1e-4)
    for run in (ours, ref):
        fit(run, subset, log=lambda _: None)
    for a, b in zip(ours.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=5e-4)
    assert cli.main(["--dataset", "fashion-mnist", "--epochs", "1", "--optimizer", "lars", "--weight-decay", "1e-4",
                     "--out", str(tmp_path), "--no-progress"]) == 0


def test_schedule_free_runs_alone_and_as_a_compare_row(fashion_mnist, tmp_path, capsys):
    """--optimizer schedule-free (no schedule: --scheduler defaults to constant), and the row
    'schedule-free' beside schedules in --compare; its test accuracy is taken at the average x."""
    assert cli.main(["--dataset", "fashion-mnist", "--epochs", "1", "--optimizer", "schedule-free", "--lr", "1.0",
                     "--out", str(tmp_path / "alone"), "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    assert metrics["config"]["optimizer"] == "schedule-free" and metrics["config"]["scheduler"]["name"] == "constant"
    assert metrics["epochs"][0]["test_accuracy"] > 0.8
    assert cli.main(["--dataset", "fashion-mnist", "--epochs", "1", "--compare", "step,schedule-free",
                     "--out", str(tmp_path / "both"), "--no-progress"]) == 0
    assert (tmp_path / "both" / "schedule-free" / "metrics.json").exists()


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


# --- No input ends in a traceback: bad arguments, damaged data and unwritable output are one line, exit 2,
# found before any training; a run whose loss stops being finite stops with a message, exit 1.


def tiny_dataset(n_train: int = 128, n_test: int = 32) -> data.Dataset:
    """Random images: enough for a run to finish in a blink, so a missing check would show as written files."""
    g = torch.Generator().manual_seed(0)

    def split(n):
        return data.Split(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))

    return data.Dataset("tiny", "memory", split(n_train), split(n_test))


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """cli.main in this process: (exit status, stdout, stderr), argparse's SystemExit included."""
    try:
        status = cli.main(args)
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_error_line(err: str, message: str) -> None:
    assert "Traceback" not in err, err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and message in error_lines[0], err
    assert err.splitlines() == error_lines  # argparse's errors too: no usage block in front


BAD_ARGUMENTS = [
    # args, a part of the message (only the argument's name where the message is a fusedlr class's own)
    (["--epochs", "0"], "argument --epochs: must be a positive whole number, got '0'"),
    (["--epochs", "-3"], "argument --epochs: must be a positive whole number, got '-3'"),
    (["--epochs", "2.5"], "argument --epochs: must be a whole number, got '2.5'"),
    (["--epochs", str(10**19)], "argument --epochs: must be a whole number of at most 10**9"),
    (["--scheduler", "warm-restarts", "--t0", str(2**62)], "argument --t0: must be a whole number of at most 10**9"),
    (["--batch-size", "0"], "argument --batch-size: must be a positive whole number"),
    (["--batch-size", "-64"], "argument --batch-size: must be a positive whole number"),
    (["--lr", "-0.1"], "Invalid learning rate: -0.1"),
    (["--lr", "-0.1", "--optimizer", "torch"], "Invalid learning rate: -0.1"),
    (["--lr", "nan"], "argument --lr: must be a finite number, got 'nan'"),
    (["--lr", "inf", "--optimizer", "torch"], "argument --lr: must be a finite number, got 'inf'"),
    (["--lr", "fast"], "argument --lr: must be a number, got 'fast'"),
    (["--momentum", "-0.5"], "Invalid momentum value: -0.5"),
    (["--momentum", "nan"], "argument --momentum: must be a finite number"),
    (["--seed", str(2**64)], "argument --seed: must be a whole number from -2**63 to 2**64 - 1"),
    (["--scheduler", "multistep", "--milestones", "a,b"], "argument --milestones: must be epochs >= 0 separated by commas"),
    (["--scheduler", "multistep", "--milestones", "-1"], "argument --milestones: must be epochs >= 0"),
    (["--scheduler", "multistep", "--milestones", f"5,{10**19}"], "argument --milestones: must be epochs"),
    (["--step-size", "0"], "step: step_size must be"),
    (["--gamma", "0"], "step: gamma must be"),
    (["--scheduler", "exponential", "--gamma", "0"], "exponential: gamma must be"),
    (["--scheduler", "warm-restarts", "--t-mult", "0.5"], "T_mult"),
    (["--scheduler", "warm-restarts", "--t0", "0"], "warm-restarts: t0 must be a positive number of epochs, got 0"),
    (["--scheduler", "cyclic", "--cycle-epochs", "-4"], "cyclic: cycle_epochs must be a positive number of epochs"),
    (["--scheduler", "cyclic", "--base-lr", "-0.5"], "cyclic: base_lr must be >= 0"),
    (["--scheduler", "wsd", "--decay-fraction", "1.5"], "wsd: decay_fraction must be in (0, 1], got 1.5"),
    (["--scheduler", "warmup-cosine", "--warmup-epochs", "-1"], "warmup-cosine: warmup_epochs must be >= 0"),
    (["--scheduler", "warmup-cosine", "--warmup-epochs", "1e308"], "a length of 1e+308 epochs is too long"),
    (["--scheduler", "linear", "--lr", "0"], "linear: lr must be > 0"),
    (["--scheduler", "cosine", "--eta-min", "-1"], "argument --eta-min: must be >= 0, got '-1'"),
    (["--scheduler", "plateau", "--factor", "1.5"], "Factor should be < 1.0"),
    (["--scheduler", "plateau", "--factor", "-0.5"], "argument --factor: must be >= 0"),
    (["--scheduler", "plateau", "--patience", "-1"], "argument --patience: must be a whole number >= 0"),
    (["--scheduler", "time-based", "--decay", "-1"], "decay_rate must be"),
    (["--compare", "step,bogus"], "argument --compare: unknown schedule(s) 'bogus'"),
    (["--compare", "step,,cosine"], "argument --compare: unknown schedule(s) ''"),
    (["--compare", "step,step"], "argument --compare: names a schedule twice"),
    # the second run is refused before the first one trains
    (["--compare", "step,warm-restarts", "--t-mult", "0.5"], "warm-restarts schedule: "),
    (["--lr-find", "--lr-find-iters", "1"], "--lr-find-iters: num_iter must be"),
    (["--lr-find", "--lr", "-1"], "Invalid learning rate: -1.0"),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_a_bad_argument_is_one_error_line_and_exit_2_before_any_training(tmp_path, monkeypatch, capsys, args,
                                                                         message):
    monkeypatch.setattr(data, "load", lambda *a, **k: tiny_dataset())
    out = tmp_path / "out"
    status, stdout, stderr = run_cli([*args, "--epochs", "1", "--out", str(out)] if "--epochs" not in args
                                     else [*args, "--out", str(out)], capsys)
    assert status == 2
    assert_one_error_line(stderr, message)
    assert "Epoch " not in stdout and "LR range test" not in stdout
    assert files_under(out) == []


def test_the_tiny_dataset_of_the_bad_argument_table_trains(tmp_path, monkeypatch, capsys):
    """The table's runs would finish and write files if a check were missing (so its tests can fail)."""
    monkeypatch.setattr(data, "load", lambda *a, **k: tiny_dataset())
    status, stdout, _ = run_cli(["--compare", "step,warm-restarts", "--epochs", "1", "--out", str(tmp_path)], capsys)
    assert status == 0 and stdout.count("Epoch 1/1") == 2
    assert files_under(tmp_path) == ["compare.png", "step/metrics.json", "step/training.png",
                                     "warm-restarts/metrics.json", "warm-restarts/training.png"]


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--lr", "nan"]])
def test_a_bad_argument_in_a_fresh_process_exits_2_without_a_traceback(tmp_path, args):
    out = subprocess.run([sys.executable, "-m", "fusedlr.demo", *args, "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert_one_error_line(out.stderr, f"argument {args[0]}:")
    assert files_under(tmp_path) == []


def write_mnist_folder(root: Path, n_train: int = 640, n_test: int = 64, compress: bool = False,
                       **replace: np.ndarray) -> None:
    """A valid folder of the four IDX files with small random data; ``replace`` swaps one array (by key)."""
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, (n_train,), dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, (n_test,), dtype=np.uint8)}
    root.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx(root / stem, replace.get(stem.replace("-", "_"), array), compress)


def _truncate(path: Path, keep: float) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def _labels(values) -> np.ndarray:
    return np.asarray(values, dtype=np.uint8)


CORRUPT_FOLDERS = {
    # name: (how to build the folder in root, the file named in the message, a part of the message)
    "truncated raw file": (lambda root: (write_mnist_folder(root),
                                         _truncate(root / "train-images-idx3-ubyte", 0.9)),
                           "train-images-idx3-ubyte", "(truncated or damaged)"),
    "truncated gz": (lambda root: (write_mnist_folder(root, compress=True),
                                   _truncate(root / "t10k-images-idx3-ubyte.gz", 0.5)),
                     "t10k-images-idx3-ubyte.gz", "not a complete gzip file"),
    "not gzip at all": (lambda root: (write_mnist_folder(root, compress=True),
                                      (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"plain text, not gzip")),
                        "t10k-labels-idx1-ubyte.gz", "not a complete gzip file"),
    "bad magic": (lambda root: (write_mnist_folder(root),
                                (root / "train-labels-idx1-ubyte").write_bytes(
                                    b"\x1f\x8b\x08\x00" + (root / "train-labels-idx1-ubyte").read_bytes()[4:])),
                  "train-labels-idx1-ubyte", "not an IDX file (magic 1f8b0800)"),
    "header cut short": (lambda root: (write_mnist_folder(root),
                                       (root / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00\x00")),
                         "train-images-idx3-ubyte", "truncated IDX header"),
    "label 200": (lambda root: write_mnist_folder(root, train_labels_idx1_ubyte=_labels([3] * 639 + [200])),
                  "train-labels-idx1-ubyte", "labels must be 0..9, found 200 at index 639"),
    "14x14 images": (lambda root: write_mnist_folder(
                         root, t10k_images_idx3_ubyte=np.zeros((64, 14, 14), dtype=np.uint8)),
                     "t10k-images-idx3-ubyte", "images must be 28x28"),
    "int32 images": (lambda root: write_mnist_folder(
                         root, t10k_images_idx3_ubyte=np.zeros((64, 28, 28), dtype=">i4")),
                     "t10k-images-idx3-ubyte", "images must be 28x28 unsigned bytes"),
    "more labels than images": (lambda root: write_mnist_folder(root, t10k_labels_idx1_ubyte=_labels([1] * 65)),
                                "t10k-labels-idx1-ubyte", "holds 65 labels but"),
    "600 labels for 640 images": (lambda root: write_mnist_folder(root, train_labels_idx1_ubyte=_labels([1] * 600)),
                                  "train-labels-idx1-ubyte", "holds 600 labels but"),
    "no images": (lambda root: write_mnist_folder(root, n_test=0), "t10k-images-idx3-ubyte", "holds no images"),
}


@pytest.mark.parametrize("case", CORRUPT_FOLDERS)
def test_a_corrupt_data_folder_is_one_error_line_and_exit_2(tmp_path, capsys, case):
    build, file_name, message = CORRUPT_FOLDERS[case]
    build(tmp_path / "data")
    out = tmp_path / "out"
    status, stdout, stderr = run_cli(["--data-root", str(tmp_path / "data"), "--no-download", "--epochs", "1",
                                      "--out", str(out)], capsys)
    assert status == 2
    assert_one_error_line(stderr, message)
    assert file_name in stderr
    assert "Epoch " not in stdout and files_under(out) == []


@pytest.mark.parametrize("compress", [False, True])
def test_the_valid_folder_of_the_corrupt_data_table_trains(tmp_path, capsys, compress):
    write_mnist_folder(tmp_path / "data", compress=compress)
    status, stdout, stderr = run_cli(["--data-root", str(tmp_path / "data"), "--no-download", "--epochs", "1",
                                      "--out", str(tmp_path / "out")], capsys)
    assert status == 0, stderr
    assert "(640 train / 64 test images)" in stdout and "Epoch 1/1" in stdout


def test_a_corrupt_data_folder_in_a_fresh_process_exits_2_without_a_traceback(tmp_path):
    write_mnist_folder(tmp_path / "data", compress=True)
    _truncate(tmp_path / "data" / "train-images-idx3-ubyte.gz", 0.5)
    out = subprocess.run([sys.executable, "-m", "fusedlr.demo", "--data-root", str(tmp_path / "data"),
                          "--no-download", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert_one_error_line(out.stderr, "train-images-idx3-ubyte.gz: not a complete gzip file")
    assert len(out.stderr.strip().splitlines()) == 1


UNWRITABLE_OUT = {  # where: the arguments, given tmp_path holding a regular file named "cosine"
    "a file": lambda tmp: ["--out", str(tmp / "cosine")],
    "under a file": lambda tmp: ["--out", str(tmp / "cosine" / "out")],
    "the second run's folder is a file": lambda tmp: ["--compare", "step,cosine", "--out", str(tmp)],
    "lr-find into a file": lambda tmp: ["--lr-find", "--out", str(tmp / "cosine")],
}


@pytest.mark.parametrize("where", UNWRITABLE_OUT)
def test_an_unwritable_out_fails_before_training(tmp_path, monkeypatch, capsys, where):
    monkeypatch.setattr(data, "load", lambda *a, **k: tiny_dataset())
    (tmp_path / "cosine").write_text("not a folder")
    status, stdout, stderr = run_cli([*UNWRITABLE_OUT[where](tmp_path), "--epochs", "1"], capsys)
    assert status == 2
    assert_one_error_line(stderr, "cannot write in --out folder")
    assert "Epoch " not in stdout and "LR range test" not in stdout
    assert files_under(tmp_path) == ["cosine"]  # nothing written


def test_a_diverging_run_stops_with_a_message_and_leaves_strict_json(tmp_path, fashion_mnist, monkeypatch, capsys):
    small = data.Dataset(fashion_mnist.name, fashion_mnist.source,
                         data.Split(fashion_mnist.train.images[:640], fashion_mnist.train.labels[:640]),
                         data.Split(fashion_mnist.test.images[:1000], fashion_mnist.test.labels[:1000]))
    monkeypatch.setattr(data, "load", lambda *a, **k: small)
    status, stdout, stderr = run_cli(["--lr", "1e30", "--epochs", "3", "--out", str(tmp_path)], capsys)
    assert status == 1
    assert_one_error_line(stderr, "training diverged at epoch 1 (loss nan); try a smaller --lr")
    assert "Training finished!" not in stdout and "Epoch 2/3" not in stdout

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    assert [e["epoch"] for e in metrics["epochs"]] == [1] and metrics["epochs"][0]["loss"] is None
    assert (tmp_path / "training.png").read_bytes()[:4] == b"\x89PNG"
    assert files_under(tmp_path) == ["metrics.json", "training.png"]  # no temporary file left behind


def test_lr_find_with_too_few_iterations_to_suggest_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "load", lambda *a, **k: tiny_dataset())
    status, stdout, stderr = run_cli(["--lr-find", "--lr-find-iters", "2", "--out", str(tmp_path)], capsys)
    assert status == 0 and stderr == ""
    assert "Suggested learning rate: none (too few iterations to tell; try more --lr-find-iters)" in stdout
    assert json.loads((tmp_path / "lr_find.json").read_text())["valley"] is None
    assert files_under(tmp_path) == ["lr_find.json", "lr_find.png"]


def test_metrics_are_strict_json_and_replace_the_old_file_whole(tmp_path):
    from fusedlr.demo.report import write_atomically, write_metrics
    from fusedlr.demo.train import EpochMetrics, RunResult

    path = tmp_path / "metrics.json"
    result = RunResult({"lr": float("inf")}, "tiny", [EpochMetrics(1, float("nan"), 0.1, 0.5, 1.0)],
                       [0.1, float("-inf")])
    write_metrics(result, path)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["epochs"][0]["loss"] is None and json.loads(text)["lr_per_step"] == [0.1, None]

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text(text[: len(text) // 2])
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half_then_fail)
    assert path.read_text() == text and files_under(tmp_path) == ["metrics.json"]


def test_gamma_is_taken_as_given():
    """--gamma 0.5 decays by 0.5 (and 0, refused above, was silently taken as the default 0.1)."""
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    stepper = make_scheduler(SchedulerConfig(name="step", step_size=1, gamma=0.5), opt, epochs=2, steps_per_epoch=1)
    stepper.after_epoch(metric=1.0)
    assert opt.param_groups[0]["lr"] == 0.5
