"""fusedlr: a fused multi-tensor SGD-momentum step and closed-form learning-rate schedules.

The public API. ``import fusedlr`` imports torch, checks that it is the torch release the
extension was built for (``fusedlr.show_config()`` says which), then loads the private native
module ``fusedlr._C``, which registers the ``torch.ops.fusedlr.*`` operators.
"""

import torch  # noqa: F401  (the native module links against torch's libraries: load them first)

from ._torch_check import load_native

_C = load_native()  # an ImportError naming both torches if this torch is not the one it was built for

from . import functional, lr_scheduler, ops, schedules
from ._C import Schedule
from .lars import LARS, Lars
from .lr_find import LRFinderResult, lr_find
from .optim import SGD
from .schedule_free import SGDScheduleFree, ScheduleFreeSGD
from .plot import plot_schedule  # matplotlib itself is imported only when a plot is drawn

from ._build_info import VERSION as __version__
from ._config import show_config

__all__ = ["LARS", "SGD", "Lars", "LRFinderResult", "SGDScheduleFree", "ScheduleFreeSGD", "Schedule", "functional", "lr_find", "lr_scheduler", "ops", "plot_schedule",
           "schedules", "show_config", "__version__"]
