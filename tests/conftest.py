"""Shared fixtures and the one place where per-dtype tolerances live."""

from __future__ import annotations

import pytest
import torch

import fusedlr  # noqa: F401  (registers the ops before any test collects them)

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]

# float32/float64 against torch.optim.SGD(foreach=False), which rounds where we round: identical
# on the CPUs we know; a few units in the last place are allowed for other SIMD levels/compilers.
# Half types against torch's fused path, which also computes in float32 but orders the weight
# decay / maximize arithmetic slightly differently: one unit in the last place of the storage type.
EXACT_TOL = {
    torch.float32: dict(rtol=1e-6, atol=1e-7),
    torch.float64: dict(rtol=1e-13, atol=1e-15),
    torch.bfloat16: dict(rtol=2.0**-7, atol=2.0**-14),
    torch.float16: dict(rtol=2.0**-10, atol=2.0**-20),
}

# Half types on CUDA against torch's fused CUDA path, which takes its coefficients in double (ours
# in float, as on the CPU): a step's results may round to the neighbouring value, and over
# hundreds of thousands of elements and several steps some do. Four units in the last place.
CUDA_HALF_TOL = {
    torch.bfloat16: dict(rtol=4 * 2.0**-7, atol=4 * 2.0**-14),
    torch.float16: dict(rtol=4 * 2.0**-10, atol=4 * 2.0**-20),
}

# Half types against a float32 reference: a few rounding steps of the storage type.
HALF_VS_FP32_TOL = {
    torch.bfloat16: dict(rtol=3e-2, atol=3e-2),
    torch.float16: dict(rtol=4e-3, atol=4e-3),
}

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (torch.cuda.is_available() is False)")


def devices() -> list[str]:
    return ["cpu", "cuda"] if CUDA else ["cpu"]


@pytest.fixture
def three_threads():
    """More threads than the 2-core CI machine has: parallel_for cuts the call into several ranges."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(before)
