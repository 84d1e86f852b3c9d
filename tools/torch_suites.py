"""Run PyTorch's own test files against fusedlr: the best judge of a drop-in.

Give it the files from a PyTorch checkout (they are not shipped with the torch wheel, and this
project does not copy them):

    python tools/torch_suites.py --lrscheduler ~/pytorch/test/optim/test_lrscheduler.py [--fused-sgd]
    python tools/torch_suites.py --optim ~/pytorch/test/test_optim.py [-k "_SGD_ and cpu"]

``--lrscheduler`` runs a copy whose ``from torch.optim.lr_scheduler import (...)`` reads
``fusedlr.lr_scheduler`` instead (with ``--fused-sgd`` its ``SGD`` is ``fusedlr.SGD`` too).
``--optim`` runs the file with the ``SGD`` entry of torch's ``optim_db`` (the ``OptimizerInfo`` the
tests iterate over) pointing at ``fusedlr.SGD``. torch's test helpers need ``expecttest``
(``pip install expecttest``). The files are rewritten in a temporary folder; nothing else changes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_CONFTEST = '''\
import torch
import torch.testing._internal.common_optimizers as common
import fusedlr

entries = [info for info in common.optim_db if info.optim_cls is torch.optim.SGD]
assert len(entries) == 1, entries
entries[0].optim_cls = fusedlr.SGD
'''


def _swap_scheduler_imports(source: str, fused_sgd: bool) -> str:
    swapped, count = re.subn(r"^from torch\.optim\.lr_scheduler import \(", "from fusedlr.lr_scheduler import (",
                             source, flags=re.MULTILINE)
    if count != 1:
        raise SystemExit("error: expected one `from torch.optim.lr_scheduler import (` line in the file")
    if fused_sgd:
        def without_sgd(m: re.Match) -> str:
            names = [n.strip() for n in m.group(1).split(",") if n.strip() not in ("SGD", "")]
            return f"from torch.optim import {', '.join(names)}\nfrom fusedlr import SGD"

        swapped, count = re.subn(r"^from torch\.optim import ([\w ,]*\bSGD\b[\w ,]*)$", without_sgd, swapped,
                                 count=1, flags=re.MULTILINE)
        if count != 1:
            raise SystemExit("error: expected a `from torch.optim import ... SGD` line in the file")
    return swapped


def _drop_sibling_imports(source: str) -> str:
    # test_optim.py re-exports test classes from its sibling files (`from optim.test_x import (...)`).
    return re.sub(r"^from optim\.\w+ import \([^)]*\)\n", "", source, flags=re.MULTILINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--lrscheduler", type=Path, metavar="FILE", help="torch's test/optim/test_lrscheduler.py")
    which.add_argument("--optim", type=Path, metavar="FILE", help="torch's test/test_optim.py")
    parser.add_argument("--fused-sgd", action="store_true", help="(--lrscheduler) use fusedlr.SGD as the optimizer")
    parser.add_argument("-k", default="_SGD_ and cpu", help="(--optim) pytest -k expression")
    args, pytest_args = parser.parse_known_args(argv)
    source_path = args.lrscheduler or args.optim
    if not source_path.is_file():
        parser.error(f"{source_path} is not a file")
    source = source_path.read_text()
    with tempfile.TemporaryDirectory(prefix="fusedlr-torch-suite-") as tmp:
        target = Path(tmp) / source_path.name
        if args.lrscheduler:
            target.write_text(_swap_scheduler_imports(source, args.fused_sgd))
            selection: list[str] = []
        else:
            target.write_text(_drop_sibling_imports(source))
            (Path(tmp) / "conftest.py").write_text(_CONFTEST)
            selection = ["-k", args.k]
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "--tb=line",
                   str(target), *selection, *pytest_args]
        return subprocess.call(command, cwd=tmp)


if __name__ == "__main__":
    sys.exit(main())
