"""Print CMake `set()` commands describing the torch installed in this interpreter.

CMakeLists.txt runs this with the interpreter it builds for and evaluates the output, so the
extension is compiled against exactly the torch it will be imported with.
"""

import os

import torch


def cmake_set(name: str, value: object) -> str:
    text = str(value).replace("\\", "/").replace('"', '\\"')
    return f'set({name} "{text}")'


root = os.path.dirname(torch.__file__)
include = os.path.join(root, "include")
print(cmake_set("TORCH_VERSION", torch.__version__))
print(cmake_set("TORCH_INCLUDE_DIRS", f"{include};{os.path.join(include, 'torch', 'csrc', 'api', 'include')}"))
print(cmake_set("TORCH_LIB_DIR", os.path.join(root, "lib")))
print(cmake_set("TORCH_CXX11_ABI", int(torch._C._GLIBCXX_USE_CXX11_ABI)))
print(cmake_set("TORCH_CUDA_VERSION", torch.version.cuda or ""))
