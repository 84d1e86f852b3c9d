"""The demo: the classic MNIST example with any fusedlr schedule. Run ``python -m fusedlr.demo --help``."""

from .cli import main

__all__ = ["main"]
