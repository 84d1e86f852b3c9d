"""Refuse, with one clear message, a torch that the compiled extension was not built for.

``fusedlr._C`` links libtorch's C++ symbols, which change between torch releases (2.13 -> 2.14),
and, when it holds CUDA kernels, libc10_cuda and the CUDA runtime of the torch it was built
against. Loaded beside another torch it fails in the dynamic loader (``undefined symbol:
_ZN3c10...``) or worse. ``import fusedlr`` therefore compares ``_build_info`` (written at build
time) with the torch it finds before loading ``_C``, and names both.
"""

from __future__ import annotations

from . import _build_info


def _release(version: str) -> str:
    return ".".join(version.split("+", 1)[0].split(".")[:2])


def torch_mismatch(found_version: str, found_cuda: str | None, *, built_version: str = _build_info.TORCH_VERSION,
                   built_cuda: str = _build_info.TORCH_CUDA_VERSION,
                   cuda_kernels: bool = _build_info.CUDA_KERNELS) -> str | None:
    """Why a torch ``found_version`` (CUDA ``found_cuda``, None for a CPU build) cannot load this build, or None."""
    if _release(found_version) != _release(built_version):
        return (f"a different torch release: the extension links torch {_release(built_version)}'s C++ library, "
                f"which changes between releases")
    if cuda_kernels and not found_cuda:
        return (f"a CPU build of torch: this build of fusedlr holds CUDA kernels linked against torch's CUDA "
                f"libraries (CUDA {built_cuda}), which a CPU build of torch does not have")
    if cuda_kernels and found_cuda.split(".")[0] != built_cuda.split(".")[0]:
        return (f"torch for CUDA {found_cuda}: this build's CUDA kernels link the CUDA {built_cuda.split('.')[0]} runtime "
                f"that torch {built_version} loads")
    return None


def mismatch_message(found_version: str, found_at: str, reason: str) -> str:
    """The whole ImportError text: what was built for, what was found, what to do."""
    return (f"fusedlr {_build_info.VERSION} was built for torch {_build_info.TORCH_VERSION} "
            f"({_build_info.TORCH_REQUIREMENT}), but this Python has torch {found_version} at {found_at}: "
            f"{reason}.\n"
            f"Either install the torch it was built for (pip install '{_build_info.TORCH_REQUIREMENT}'), or build "
            f"fusedlr against this torch from source (pip install --no-build-isolation --no-binary fusedlr fusedlr, "
            f"or `pip install --no-build-isolation .` in a checkout).")


def check_torch() -> None:
    """Raise ImportError naming both torches if the installed torch cannot load ``fusedlr._C``."""
    import torch

    reason = torch_mismatch(torch.__version__, torch.version.cuda)
    if reason is not None:
        raise ImportError(mismatch_message(torch.__version__, torch.__file__, reason))


def load_native():
    """``fusedlr._C``, after check_torch(); a loader failure still names both torches."""
    import torch

    check_torch()
    try:
        from . import _C
    except ImportError as e:  # a torch the checks above let through, but the loader refused
        raise ImportError(mismatch_message(torch.__version__, torch.__file__,
                                           f"the native module failed to load ({e})")) from e
    return _C
