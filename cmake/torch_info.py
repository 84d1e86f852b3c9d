"""The torch this build compiles against, told to CMake and to the wheel's metadata.

Two users, one answer:

- CMakeLists.txt runs this file with the interpreter it builds for and evaluates the output
  (CMake ``set()`` commands), so the extension is compiled against exactly the torch it will be
  imported with.
- scikit-build-core loads it as a ``[[tool.dynamic-metadata]]`` provider (pyproject.toml), so the
  wheel's ``Requires-Dist`` pins that torch's release (``torch==2.14.*``): the compiled extension
  only works with the torch release it was built against (libtorch's C++ ABI changes between
  releases), and pip then refuses a mismatched environment instead of failing at import.
"""

from __future__ import annotations

import os
from typing import Any, Mapping


def release(version: str) -> str:
    """``"2.14.1+cu130"`` -> ``"2.14"``: the part of torch's version its C++ ABI is tied to."""
    major, minor = version.split("+", 1)[0].split(".")[:2]
    return f"{major}.{minor}"


def torch_requirement(version: str) -> str:
    """The requirement a build against torch ``version`` needs, e.g. ``torch==2.14.*``."""
    return f"torch=={release(version)}.*"


# --- scikit-build-core dynamic-metadata provider (pyproject.toml: [[tool.dynamic-metadata]]) ----

def dynamic_metadata(settings: Mapping[str, Any], project: Mapping[str, Any]) -> dict[str, Any]:
    """``dependencies``: ``settings["requires"]`` plus the pin of the torch in this interpreter."""
    import torch

    unknown = set(settings) - {"field", "requires"}
    if settings.get("field") != "dependencies" or unknown:
        raise RuntimeError(f"torch_info provides field = 'dependencies' only (settings: {dict(settings)})")
    return {"dependencies": [*settings.get("requires", []), torch_requirement(torch.__version__)]}


def dynamic_wheel(settings: Mapping[str, Any]) -> dict[str, bool]:
    """The pin depends on the torch a wheel is built against, so an sdist marks it Dynamic."""
    return {"dependencies": True}


# --- CMake -------------------------------------------------------------------------------------

def cmake_set(name: str, value: object) -> str:
    text = str(value).replace("\\", "/").replace('"', '\\"')
    return f'set({name} "{text}")'


def main() -> None:
    import torch

    root = os.path.dirname(torch.__file__)
    include = os.path.join(root, "include")
    print(cmake_set("TORCH_VERSION", torch.__version__))
    print(cmake_set("TORCH_REQUIREMENT", torch_requirement(torch.__version__)))
    print(cmake_set("TORCH_INCLUDE_DIRS", f"{include};{os.path.join(include, 'torch', 'csrc', 'api', 'include')}"))
    print(cmake_set("TORCH_LIB_DIR", os.path.join(root, "lib")))
    print(cmake_set("TORCH_CXX11_ABI", int(torch._C._GLIBCXX_USE_CXX11_ABI)))
    print(cmake_set("TORCH_CUDA_VERSION", torch.version.cuda or ""))


if __name__ == "__main__":
    main()
