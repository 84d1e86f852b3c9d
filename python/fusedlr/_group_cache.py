"""fusedlr.SGD's eager fast path: each param group's tensors held in C++ between steps.

Calling the op with Python lists converts every tensor of every list on every call (~2 ms per
step for 2000 parameters with momentum). A held group (``_C.SgdGroup``) takes the lists once;
each step then passes scalars. It must never step stale tensors: it checks its parameters itself
(object by object, every step), but it cannot see a momentum buffer being replaced in the
optimizer's state. So the optimizer's ``state`` is a :class:`State`, whose containers count every
assignment and removal, and a held group is used only while the state container and that count
are the ones it was built with.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

from . import _C, _checks, _dtensor
from .functional import _split_by_device


class GroupCache:
    """The held groups of one optimizer, by group index."""

    def __init__(self) -> None:
        self._held: dict[int, tuple[tuple, Any]] = {}

    def __deepcopy__(self, memo: dict) -> GroupCache:
        return GroupCache()  # a cache: made again on first use

    def step(self, index: int, group: dict[str, Any], state: Any, scalars: tuple, tensors: tuple,
             lars: tuple | None = None) -> bool:
        """Step group ``index`` through its held tensors; False (nothing done) when it has none
        that are current, and the caller steps it through the op with lists."""
        handle = self._current(index, group, state)
        return handle is not None and handle.step(group["params"], *scalars, *tensors, lars) >= 0

    def last_step_tensors(self, index: int) -> int | None:
        """How many tensors group ``index``'s last held step handed the op (one per flat run when
        the runs were stepped); None when the group is not held."""
        held = self._held.get(index)
        return None if held is None or held[1] is None else held[1].last_step_tensors

    def zero_grad(self, groups: list[dict[str, Any]], state: Any) -> bool:
        """zero_grad(set_to_none=True) of every group through the held groups (each parameter's
        .grad dropped in C++); False, nothing done, when a group is not held (or not current)."""
        handles = self._all_current(groups, state)
        return handles is not None and _C._held_zero_grad(handles, [group["params"] for group in groups])

    def grad_norm(self, groups: list[dict[str, Any]], state: Any, norm_type: float, max_norm: float,
                  grad_scale: Any) -> Any:
        """fusedlr::grad_norm over the gradients of every group, read from the held groups in C++;
        None when a group is not held (or not current), and the caller passes Python lists."""
        handles = self._all_current(groups, state)
        if handles is None:
            return None
        return _C._held_grad_norm(handles, [group["params"] for group in groups], norm_type, max_norm, grad_scale)

    def _current(self, index: int, group: dict[str, Any], state: Any) -> Any:
        """Group ``index``'s held handle, or None when it has none that is current."""
        held = self._held.get(index)
        if held is None or held[1] is None or not _same_key(held[0], _key(group, state)):
            return None
        return held[1]

    def _all_current(self, groups: list[dict[str, Any]], state: Any) -> list[Any] | None:
        """Every group's current held handle, or None when one has none."""
        handles = [self._current(index, group, state) for index, group in enumerate(groups)]
        return None if any(h is None for h in handles) else handles

    def store(self, index: int, group: dict[str, Any], state: Any) -> None:
        """Hold the group's tensors for later steps, when the held path can take them: real
        floating params on one device, no sparse gradient, no DTensor."""
        params = group["params"]
        handle = None
        if (
            params
            and not _dtensor.is_dtensor(params[0])
            and all(p.dtype in _checks.FUSED_DTYPES for p in params)
            and _split_by_device(params) == [None]
            and not any(p.grad is not None and p.grad.is_sparse for p in params)
        ):
            if group["momentum"] != 0:
                states = [state.get(p, {}) for p in params]
                buffers = [s.get("momentum_buffer") for s in states]
                steps = [s.get("step") if b is not None else None for s, b in zip(states, buffers)]
            else:
                buffers, steps = [], []
            handle = _C.SgdGroup(params, buffers, steps)
        self._held[index] = (_key(group, state), handle)


def _key(group: dict[str, Any], state: Any) -> tuple:
    # What a held group depends on besides its parameters: whether the group has momentum, and
    # the optimizer state: the container itself (replaced by load_state_dict / __setstate__ or by
    # assigning .state; held, not its id, which a new object could reuse) and its change count.
    count = state.changes.value if isinstance(state, State) else None
    return (group["momentum"] != 0, state, count)


def _same_key(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and a[1] is b[1] and a[2] == b[2]


class _Count:
    """A counter shared by an optimizer's state containers; bumped by any change in them."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class _Counting:
    """Removals from a state container bump the shared count (see ParamState, State)."""

    changes: _Count

    def __delitem__(self, key) -> None:
        self.changes.value += 1
        super().__delitem__(key)  # type: ignore[misc]

    def pop(self, *args):
        self.changes.value += 1
        return super().pop(*args)  # type: ignore[misc]

    def clear(self) -> None:
        self.changes.value += 1
        super().clear()  # type: ignore[misc]


class ParamState(_Counting, dict):
    """state[p]: a dict that counts replacements and removals of its tensors (in-place changes need no notice)."""

    def __init__(self, changes: _Count, *args: Any) -> None:
        super().__init__(*args)
        self.changes = changes

    def __setitem__(self, key, value) -> None:
        self.changes.value += 1
        super().__setitem__(key, value)

    def update(self, *args, **kwargs) -> None:
        self.changes.value += 1
        super().update(*args, **kwargs)

    def __reduce__(self):
        return (dict, (dict(self),))


class State(_Counting, defaultdict):
    """optimizer.state: a defaultdict of ParamState that counts its changes like ParamState. It
    pickles and deep-copies as torch's plain ``defaultdict(dict)``."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__(None)
        self.changes = _Count()
        for key, value in dict(items).items():
            super().__setitem__(key, ParamState(self.changes, value) if isinstance(value, dict) else value)

    def __missing__(self, key):
        value = ParamState(self.changes)
        super().__setitem__(key, value)
        return value

    def __setitem__(self, key, value) -> None:
        # A parameter's state is a dict (counted like this one); anything else (torch's state
        # takes any value, e.g. state["epoch"] = 1) is kept as it is.
        self.changes.value += 1
        if isinstance(value, dict) and not isinstance(value, ParamState):
            value = ParamState(self.changes, value)
        super().__setitem__(key, value)

    def __reduce__(self):
        return (_plain_state, (dict(self),))

    def __deepcopy__(self, memo):
        return _plain_state(copy.deepcopy(dict(self), memo))


def _plain_state(items: dict) -> defaultdict:
    return defaultdict(dict, {k: dict(v) if isinstance(v, dict) else v for k, v in items.items()})

