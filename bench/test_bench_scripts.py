"""The interleaved benchmark scripts run end to end on a small case. CI's bench smoke run
(``--benchmark-disable``) takes them, so a script that stopped working is found there; what they
time is not checked (a benchmark is not a test). ``make bench`` skips them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent

# script and arguments -> a line of the output that says the case ran
RUNS = {
    "roofline": (["roofline.py", "--sets", "mlp", "--dtypes", "float32,bfloat16/float32", "--rounds", "1"],
                 "bfloat16/float32:"),
    "roofline-cold-flat-no-momentum": (["roofline.py", "--sets", "mlp", "--dtypes", "bfloat16", "--rounds", "1",
                                        "--cold", "--flat", "--momentum", "0"], "of the same bytes streamed cold"),
    "compare_step": (["compare_step.py", "--sets", "mlp", "--contenders", "fusedlr,fusedlr-flat,torch-fused",
                      "--rounds", "1", "--roofline"], "% of the roofline"),
    "compare_clip": (["compare_clip.py", "--sets", "mlp", "--rounds", "1", "--scaler"], "torch / fusedlr"),
    "compare_lars": (["compare_lars.py", "--sets", "mlp", "--rounds", "1"], "timm / fusedlr"),
    "compare_iteration": (["compare_iteration.py", "--layers", "4", "--rounds", "1"], "fusedlr-flat"),
    "per_tensor_layout": (["per_tensor_layout.py", "--n", "20", "--k", "16", "--rounds", "1"], "ns/tensor"),
    "compare_schedule_free": (["compare_schedule_free.py", "--sets", "mlp", "--rounds", "1"], "reference / fusedlr"),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_script_runs(name, request):
    if not request.config.getoption("benchmark_disable"):
        pytest.skip("a smoke run of the scripts, for --benchmark-disable (CI), not a benchmark")
    args, expected = RUNS[name]
    out = subprocess.run([sys.executable, *args], cwd=HERE, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert expected in out.stdout, out.stdout[-2000:]


@pytest.mark.parametrize("args", [
    ["roofline.py", "--dtypes", "float16/bfloat16"],
    ["roofline.py", "--sets", "nope"],
    ["compare_step.py", "--contenders", "fusedlr,nope"],
    ["compare_step.py", "--rounds", "0"],
], ids=lambda args: " ".join(args))
def test_a_bad_argument_is_one_line_and_exit_status_2(args, request):
    if not request.config.getoption("benchmark_disable"):
        pytest.skip("a smoke run of the scripts, for --benchmark-disable (CI), not a benchmark")
    out = subprocess.run([sys.executable, *args], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith(f"{args[0]}: error: ")
