"""Smoke test of an installed fusedlr, run by tools/build_wheels.py in a fresh venv (outside the checkout).

Import; `python -m fusedlr --version`; one fusedlr.SGD step against torch.optim.SGD's; one schedule
twin against torch's scheduler. Exits non-zero on any difference; the last line is a summary.
"""

import subprocess
import sys

import torch

import fusedlr
from fusedlr import _build_info

assert fusedlr.__file__.startswith(sys.prefix), (fusedlr.__file__, sys.prefix)  # the installed wheel, not a checkout
version = subprocess.run([sys.executable, "-m", "fusedlr", "--version"], capture_output=True, text=True, check=True).stdout.strip()
assert version == f"fusedlr {fusedlr.__version__} (built for torch {_build_info.TORCH_VERSION})", version
fusedlr.show_config()

torch.manual_seed(0)
a = [torch.randn(37, 5), torch.randn(300)]
b = [t.clone() for t in a]
opt_f = fusedlr.SGD(a, lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
opt_t = torch.optim.SGD(b, lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
for _ in range(3):
    for x, y in zip(a, b):
        x.grad = torch.randn_like(x)
        y.grad = x.grad.clone()
    opt_f.step()
    opt_t.step()
assert all(torch.equal(x, y) for x, y in zip(a, b)), "fusedlr.SGD differs from torch.optim.SGD"

p_f, p_t = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
s_f = fusedlr.lr_scheduler.CosineAnnealingLR(torch.optim.SGD([p_f], lr=1.0), T_max=10)
s_t = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.SGD([p_t], lr=1.0), T_max=10)
for _ in range(12):
    s_f.optimizer.step(), s_t.optimizer.step()
    s_f.step(), s_t.step()
    assert abs(s_f.get_last_lr()[0] - s_t.get_last_lr()[0]) <= 1e-12, (s_f.get_last_lr(), s_t.get_last_lr())

print(f"ok: fusedlr {fusedlr.__version__}, torch {torch.__version__}, Python {sys.version.split()[0]}, "
      f"SGD step equal, CosineAnnealingLR equal, kernel {fusedlr._C.cpu_kernel_level()}")
