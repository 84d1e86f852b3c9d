"""What the command lines of fusedlr share (``python -m fusedlr``, ``python -m fusedlr.demo``)."""

from __future__ import annotations

import argparse


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr and exit status 2, without the usage
    block (a screenful for the demo) in front of it; ``--help`` still shows the usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
