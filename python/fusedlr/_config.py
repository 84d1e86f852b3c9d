"""``fusedlr.show_config()`` (``python -m fusedlr config``): what to paste into a bug report."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from . import _build_info


def config() -> dict[str, Any]:
    """This build and the environment it runs in, as plain data."""
    import torch

    from . import _C

    cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {
        "fusedlr": _build_info.VERSION,
        "location": os.path.dirname(os.path.abspath(__file__)),
        "built_against": {
            "torch": _build_info.TORCH_VERSION,
            "requirement": _build_info.TORCH_REQUIREMENT,
            "torch_cuda": _build_info.TORCH_CUDA_VERSION or None,
            "cxx11_abi": _build_info.TORCH_CXX11_ABI,
            "python": _build_info.PYTHON,
            "cxx_compiler": _build_info.CXX_COMPILER,
        },
        "running_with": {
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
        },
        "cpu": {
            "levels_compiled": _C.cpu_levels_compiled.split(","),
            "cpu_supports": _C.cpu_level(),
            "torch_level": torch.backends.cpu.get_cpu_capability(),
            "kernel_level": _C.cpu_kernel_level(),
        },
        "cuda": {
            "kernels": _build_info.CUDA_KERNELS,
            "compiler": _build_info.CUDA_COMPILER or None,
            "architectures": _build_info.CUDA_ARCHITECTURES or None,
            "devices": [torch.cuda.get_device_name(i) for i in range(cuda_devices)],
        },
    }


def show_config(file=None) -> None:
    """Print the version, the torch this build was compiled against and the one it runs with, the CPU
    SIMD levels compiled and the one chosen, and whether CUDA kernels are inside.

    >>> import fusedlr
    >>> fusedlr.show_config()  # doctest: +SKIP
    fusedlr 0.1.0 at .../site-packages/fusedlr
      built against  torch 2.14.1+cu130 (torch==2.14.*; CUDA 13.0; C++11 ABI), Python 3.11, GNU 12.2.0
      running with   torch 2.14.1+cu130 (CUDA 13.0), Python 3.11.7, 2 threads, Linux-...
      CPU kernels    DEFAULT, AVX2, AVX512 compiled; AVX512 chosen (CPU supports AVX512, torch runs AVX512)
      CUDA kernels   yes (nvcc 13.0.88; architectures 80-real;90); devices: none
    """
    c = config()
    b, r, cpu, cuda = c["built_against"], c["running_with"], c["cpu"], c["cuda"]
    built_cuda = f"CUDA {b['torch_cuda']}" if b["torch_cuda"] else "CPU build"
    run_cuda = f"CUDA {r['torch_cuda']}" if r["torch_cuda"] else "CPU build"
    kernels = (f"yes ({cuda['compiler']}; architectures {cuda['architectures']}); devices: "
               f"{', '.join(cuda['devices']) or 'none'}") if cuda["kernels"] else "no (a CPU-only build)"
    lines = [
        f"fusedlr {c['fusedlr']} at {c['location']}",
        f"  built against  torch {b['torch']} ({b['requirement']}; {built_cuda}; "
        f"{'C++11' if b['cxx11_abi'] else 'pre-C++11'} ABI), Python {b['python']}, {b['cxx_compiler']}",
        f"  running with   torch {r['torch']} ({run_cuda}), Python {r['python']}, {r['threads']} threads, {r['platform']}",
        f"  CPU kernels    {', '.join(cpu['levels_compiled'])} compiled; {cpu['kernel_level']} chosen "
        f"(CPU supports {cpu['cpu_supports']}, torch runs {cpu['torch_level']})",
        f"  CUDA kernels   {kernels}",
    ]
    print("\n".join(lines), file=file or sys.stdout)
