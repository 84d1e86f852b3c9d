"""What a wheel says about itself: one version everywhere, the torch pin, show_config, and the clear
error in an environment whose torch the extension was not built for."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

import fusedlr
from fusedlr import _build_info, _C
from fusedlr._torch_check import torch_mismatch

ROOT = Path(__file__).resolve().parents[1]


def _torch_info():
    spec = importlib.util.spec_from_file_location("torch_info", ROOT / "cmake" / "torch_info.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_version_everywhere():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert fusedlr.__version__ == declared
    assert importlib.metadata.version("fusedlr") == declared
    assert _C.__version__ == declared


def test_metadata_pins_the_torch_release_built_against():
    requires = importlib.metadata.requires("fusedlr")
    release = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    assert f"torch=={release}.*" in requires
    assert [r for r in requires if Requirement(r).name == "torch"] == [f"torch=={release}.*"]
    assert _build_info.TORCH_VERSION == torch.__version__  # this build is the one under test
    assert _build_info.TORCH_REQUIREMENT == f"torch=={release}.*"


@pytest.mark.parametrize("version,requirement", [
    ("2.14.1+cu130", "torch==2.14.*"), ("2.14.0", "torch==2.14.*"), ("2.13.0+cpu", "torch==2.13.*"),
    ("2.15.0.dev20261201+cu130", "torch==2.15.*"), ("3.0.0a0+git1234", "torch==3.0.*"),
])
def test_torch_requirement(version, requirement):
    assert _torch_info().torch_requirement(version) == requirement


@pytest.mark.parametrize("found,found_cuda,built,built_cuda,kernels,problem", [
    ("2.14.1+cu130", "13.0", "2.14.1+cu130", "13.0", True, None),
    ("2.14.0+cu130", "13.0", "2.14.1+cu130", "13.0", True, None),  # a patch release keeps the ABI
    ("2.14.1+cu130", "13.2", "2.14.1+cu130", "13.0", True, None),  # same CUDA major: same runtime soname
    ("2.14.1+cpu", None, "2.14.1+cpu", "", False, None),
    ("2.14.1+cu130", "13.0", "2.14.1+cpu", "", False, None),  # a CPU-only build runs beside CUDA torch
    ("2.14.1+cpu", None, "2.14.1+cu130", "13.0", False, None),  # built without CUDA kernels
    ("2.13.0+cpu", None, "2.14.1+cu130", "13.0", True, "different torch release"),
    ("2.15.0", "13.0", "2.14.1+cu130", "13.0", True, "different torch release"),
    ("2.14.1+cpu", None, "2.14.1+cu130", "13.0", True, "CPU build of torch"),
    ("2.14.1+cu128", "12.8", "2.14.1+cu130", "13.0", True, "CUDA 12.8"),
])
def test_torch_mismatch(found, found_cuda, built, built_cuda, kernels, problem):
    reason = torch_mismatch(found, found_cuda, built_version=built, built_cuda=built_cuda, cuda_kernels=kernels)
    if problem is None:
        assert reason is None
    else:
        assert problem in reason


def test_this_torch_is_accepted():
    assert torch_mismatch(torch.__version__, torch.version.cuda) is None


def test_show_config(capsys):
    fusedlr.show_config()
    out = capsys.readouterr().out
    assert out.startswith(f"fusedlr {fusedlr.__version__} at {Path(fusedlr.__file__).parent}")
    assert f"built against  torch {_build_info.TORCH_VERSION} ({_build_info.TORCH_REQUIREMENT}" in out
    assert f"running with   torch {torch.__version__}" in out
    assert f"{', '.join(_C.cpu_levels_compiled.split(','))} compiled; {_C.cpu_kernel_level()} chosen" in out
    assert ("CUDA kernels   yes" if _C.with_cuda else "CUDA kernels   no") in out
    assert _build_info.CUDA_KERNELS == _C.with_cuda


def test_command_line_version_and_config():
    run = subprocess.run([sys.executable, "-m", "fusedlr", "--version"], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == f"fusedlr {fusedlr.__version__} (built for torch {_build_info.TORCH_VERSION})"
    run = subprocess.run([sys.executable, "-m", "fusedlr", "config"], capture_output=True, text=True, check=True)
    assert run.stdout.startswith(f"fusedlr {fusedlr.__version__} at ")
    assert "chosen" in run.stdout


@pytest.mark.slow
def test_import_with_another_torch_names_both(tmp_path):
    """A venv that sees this fusedlr (built for this torch) beside torch 2.13.0+cpu, as `pip install --no-deps`
    would leave it: import fails with one message naming both torches, never a loader error, and `pip check`
    reports the pin."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    py = env_dir / "bin" / "python"
    install = subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "torch==2.13.0"],
                             capture_output=True, text=True)
    if install.returncode != 0:
        pytest.skip(f"torch 2.13.0 is not on this machine's disk (pip find-links): {install.stderr.strip()[-200:]}")
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = subprocess.run([py, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True,
                           cwd=tmp_path, env=clean, check=True).stdout.strip()
    assert found.startswith("2.13.0")
    run = subprocess.run([py, "-c", "import fusedlr"], capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()
    message = "\n".join(line for line in last if not line.startswith(" "))
    assert f"ImportError: fusedlr {fusedlr.__version__} was built for torch {torch.__version__}" in message
    assert f"this Python has torch {found}" in message
    assert f"pip install '{_build_info.TORCH_REQUIREMENT}'" in message
    assert "undefined symbol" not in run.stderr and "cannot open shared object" not in run.stderr
    check = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert f"fusedlr {fusedlr.__version__} has requirement {_build_info.TORCH_REQUIREMENT}, but you have torch {found}" \
        in check.stdout
