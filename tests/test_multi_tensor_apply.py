"""The CUDA chunker's host-side packing, compiled and run on the CPU (no GPU needed)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_chunker_covers_every_chunk_once(tmp_path):
    exe = tmp_path / "test_mta"
    subprocess.run(
        ["g++", "-std=c++17", "-O1", "-Wall", "-Werror", f"-I{ROOT / 'cpp' / 'src'}",
         str(ROOT / "tests" / "cpp" / "test_multi_tensor_apply.cpp"), "-o", str(exe)],
        check=True,
    )
    result = subprocess.run([str(exe)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"
