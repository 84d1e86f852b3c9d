"""Benchmarks: fusedlr against torch in the same process. Not tests: nothing here asserts speed.

Run: ``make bench`` (or ``python -m pytest bench``); ``python bench/report.py`` turns the saved
JSON into bench/README.md's table and chart. CI runs each case once with --benchmark-disable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long benchmark (torch.compile, 64M elements, demo epochs)")


@pytest.fixture(scope="session")
def roofline():
    """The memory roofline of this machine: bench/roofline.py's step-shaped streaming reference,
    with momentum's five streams (every case here has momentum). A case measures it around itself
    (``roofline_around``), as this VM's bandwidth drifts from minute to minute."""
    from roofline import Reference

    return Reference(momentum=True)
