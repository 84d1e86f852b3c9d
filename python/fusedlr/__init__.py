"""fusedlr: a fused multi-tensor SGD-momentum step and closed-form learning-rate schedules.

The public API. ``import fusedlr`` imports torch, then the private native module ``fusedlr._C``,
which registers the ``torch.ops.fusedlr.*`` operators.
"""

import torch  # noqa: F401  (the native module links against torch's libraries: load them first)

from . import _C, functional, lr_scheduler, ops, schedules
from ._C import Schedule
from .lars import LARS, Lars
from .lr_find import LRFinderResult, lr_find
from .optim import SGD
from .schedule_free import SGDScheduleFree, ScheduleFreeSGD
from .plot import plot_schedule  # matplotlib itself is imported only when a plot is drawn

__version__ = _C.__version__

__all__ = ["LARS", "SGD", "Lars", "LRFinderResult", "SGDScheduleFree", "ScheduleFreeSGD", "Schedule", "functional", "lr_find", "lr_scheduler", "ops", "plot_schedule",
           "schedules", "__version__"]
