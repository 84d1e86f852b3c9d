"""Types of the private native module fusedlr._C (built from cpp/src/bindings.cpp)."""

__version__: str
with_cuda: bool
"""True when the CUDA kernels were compiled into this build."""
cpu_levels_compiled: str
"""Comma-separated SIMD levels compiled into the CPU kernel, e.g. "DEFAULT,AVX2,AVX512"."""

def cpu_kernel_level() -> str:
    """The SIMD level of the CPU SGD kernel in this process: "AVX512", "AVX2" or "DEFAULT"."""
