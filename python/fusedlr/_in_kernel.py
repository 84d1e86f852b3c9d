"""The in-kernel schedule of a fusedlr.SGD group, host side: its bytes, its counter, what group["lr"] shows.

A group with a schedule: ``group["base_lr"]`` is the base the schedule multiplies (set from
``group["lr"]`` when the group is added) and ``group["lr"]`` shows the lr the next step will use,
as a torch scheduler leaves it, so loggers that read it (Lightning's LearningRateMonitor) see the
lr of each step. On the CPU it is refreshed after every step; on CUDA only by ``get_last_lr()`` (a
read of a device tensor, which synchronises). A change of ``group["lr"]`` made between steps
(ReduceLROnPlateau, by hand) is the lr of the next step, and the rest of the schedule is scaled
with it (by new / old: the factor ``schedule_state[2]``, written on the device). The step itself,
counter included, runs in the fused op (``schedule.h``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._C import Schedule


class Runtime:
    """One optimizer's host-side caches: schedule bytes and counter views per group, and the lr
    each group showed last (to see a change made between steps)."""

    def __init__(self) -> None:
        self.bytes: dict[int, tuple[Schedule, Tensor]] = {}
        self.shown: dict[int, float | None] = {}
        self.views: dict[int, tuple[Tensor, Any]] = {}

    def copy(self) -> "Runtime":
        other = Runtime()
        other.bytes, other.shown, other.views = dict(self.bytes), dict(self.shown), dict(self.views)
        return other

    def __deepcopy__(self, memo: dict) -> "Runtime":
        return Runtime()  # caches: made again on first use

    def __reduce__(self):
        return (Runtime, ())

    def prepare(self, index: int, group: dict[str, Any]) -> None:
        """A group with a schedule is added or loaded: its base, bytes and counter, and group["lr"]
        (the optimizer has refused an attached LR scheduler before)."""
        # ("initial_lr" is what an LR scheduler records: in a state saved with one, it goes.)
        group.pop("initial_lr", None)
        if isinstance(group["lr"], Tensor):
            # Its own tensor: the one given may be shared (torch hands one lr tensor to every
            # group and to defaults), and the step writes the shown lr into it.
            group["lr"] = group["lr"].clone()
        if "base_lr" not in group:
            lr = group["lr"]
            group["base_lr"] = lr.clone() if isinstance(lr, Tensor) else lr
        self.schedule_bytes(index, group["schedule"])
        if schedule_state(group).device.type == "cpu":
            self.show(index, group)
        else:
            self.shown[index] = host_value(group["lr"])

    def schedule_bytes(self, index: int, schedule: Schedule) -> Tensor:
        """The schedule's ScheduleData as a CPU uint8 tensor, made once per schedule object and kept
        per param group (assigning a new schedule every step replaces the entry: no growth)."""
        hit = self.bytes.get(index)
        if hit is None or hit[0] is not schedule:
            hit = self.bytes[index] = (schedule, torch.frombuffer(bytearray(schedule.to_bytes()), dtype=torch.uint8))
        return hit[1]

    def base(self, index: int, group: dict[str, Any]) -> Any:
        """The base of group ``index``'s schedule, after following a change of group["lr"] made
        since the optimizer last wrote it (the rest of the schedule is scaled by new / old)."""
        if "initial_lr" in group:
            # Every LR scheduler records group["initial_lr"] when it is made (torch's, the twins,
            # timm's), also through a wrapper of the optimizer (accelerate's, under transformers'
            # Trainer), where the hook on optimizer.step cannot see it.
            refuse_second_schedule([group], index)
        now, was = host_value(group["lr"]), self.shown.get(index)
        if now is not None and was is not None and now != was:
            state = schedule_state(group)
            if was != 0 and math.isfinite(now / was) and now >= 0:
                state[2].mul_(now / was)
            else:
                # From 0 (a warmup's first step, or a group set to 0) there is no ratio: the factor
                # is set so that the next step uses `now` (a read of the counter: a sync on CUDA).
                nominal = lr_at(group, int(state[0]))
                if not (nominal > 0 and math.isfinite(now) and now >= 0):
                    raise ValueError(
                        f"fusedlr.SGD: param group {index}: group['lr'] was changed from {was} to {now}, but its "
                        f"in-kernel schedule is at {nominal} there, which no factor scales to {now}; set "
                        "group['base_lr'], the base the schedule multiplies, instead"
                    )
                state[2].fill_(now / nominal)
            self.shown[index] = now
        elif was is None:
            self.shown[index] = now
        if "base_lr" not in group:  # (a group given a schedule by assignment)
            group["base_lr"] = was if was is not None else now
        return group["base_lr"]

    def show(self, index: int, group: dict[str, Any]) -> None:
        """On the CPU: group["lr"] = the lr the next step will use (the kernel's own formula)."""
        state = group["schedule_state"]
        view = self.views.get(index)
        if view is None or view[0] is not state:
            # A plain read per step, no tensor op (None: on a device, where reading would sync).
            view = self.views[index] = (state, state.numpy() if state.device.type == "cpu" else None)
        if view[1] is None:
            return
        step, _, factor = view[1].tolist()
        self._show(index, group, lr_at(group, int(step), factor))

    def _show(self, index: int, group: dict[str, Any], lr: float) -> None:
        if type(group["lr"]) is float:
            group["lr"] = lr
        else:
            set_lr(group, lr)
            lr = host_value(group["lr"])
        self.shown[index] = lr

    def last_lr(self, index: int, group: dict[str, Any]) -> float:
        """The lr group ``index`` used on its last step (before the first: of step 0); refreshes
        group["lr"] (a read of the counter: a sync on CUDA)."""
        self.base(index, group)  # a pending change of group["lr"] first
        step, lr, factor = schedule_state(group).tolist()
        if step == 0:
            lr = lr_at(group, 0, factor)
        self._show(index, group, lr_at(group, int(step), factor))
        return lr

    def refuse_scheduler(self, groups: list[dict[str, Any]]) -> None:
        """An LR scheduler is being made on the optimizer (it wraps optimizer.step): refused when a
        group has a schedule, after undoing what the scheduler wrote first (initial_lr, its lr of
        step 0), so that the optimizer steps on as before."""
        try:
            refuse_second_schedule(groups)
        except ValueError:
            for index, group in enumerate(groups):
                if group.get("schedule") is not None:
                    group.pop("initial_lr", None)
                    if self.shown.get(index) is not None and not isinstance(group["lr"], Tensor):
                        group["lr"] = self.shown[index]
            raise


def lr_at(group: dict[str, Any], step: int, factor: float = 1.0) -> float:
    """The lr of a scheduled group at counter value ``step``, as the kernel computes it:
    ``schedule(step, base_lr) * factor``."""
    return group["schedule"](step, float(group.get("base_lr", group["lr"]))) * factor


def schedule_state(group: dict[str, Any]) -> Tensor:
    """group["schedule_state"]: float64 [step, lr, factor] on the group's device, made on first use
    ([0, the lr of step 0, 1])."""
    state = group.get("schedule_state")
    if state is None:
        device = group["params"][0].device if group["params"] else torch.device("cpu")
        state = torch.tensor([0.0, lr_at(group, 0), 1.0], dtype=torch.float64, device=device)
        group["schedule_state"] = state
    return state


def host_value(lr: Any) -> float | None:
    """A group's lr as a float, when reading it costs no synchronisation (None for a CUDA tensor)."""
    if isinstance(lr, Tensor):
        return float(lr) if lr.device.type == "cpu" else None
    return float(lr)


def set_lr(group: dict[str, Any], value: float) -> None:
    lr = group["lr"]
    if isinstance(lr, Tensor):
        lr.fill_(value)
    else:
        group["lr"] = value


def refuse_second_schedule(groups: list[dict[str, Any]], first_index: int = 0) -> None:
    """ValueError when a learning-rate scheduler meets a group whose lr is computed in the step."""
    for index, group in enumerate(groups, first_index):
        if group.get("schedule") is not None:
            raise ValueError(
                f"fusedlr.SGD: param group {index} computes its learning rate in the step (schedule=...), so a "
                "learning-rate scheduler on this optimizer would apply a second schedule on top of it. Use one: "
                "drop schedule= and keep the scheduler (a fusedlr twin's .schedule is the same curve), or keep "
                "schedule= without a scheduler. Where a framework needs a scheduler object (transformers' "
                "Trainer makes a linear one when given None), pass fusedlr.lr_scheduler.InKernelLR(optimizer). "
                "ReduceLROnPlateau composes with it (it scales the rest of the schedule)."
            )


def with_schedules_restored(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``state_dict`` whose saved schedules (``{"fusedlr.Schedule": state}``) are
    Schedule objects again, each through the one validator (``Schedule.__setstate__``)."""
    groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
    if not isinstance(groups, (list, tuple)):
        return state_dict  # torch's load_state_dict reports what is wrong with it
    restored = []
    for index, group in enumerate(groups):
        saved = group.get("schedule") if isinstance(group, dict) else None
        if saved is None or isinstance(saved, Schedule):
            restored.append(group)
            continue
        where = f"fusedlr.SGD: loaded param group {index}: schedule"
        if not (isinstance(saved, dict) and set(saved) == {"fusedlr.Schedule"}):
            raise TypeError(f"{where} must be a saved fusedlr Schedule ({{'fusedlr.Schedule': state}}) or None, "
                            f"got {type(saved).__name__}")
        state = saved["fusedlr.Schedule"]
        schedule = Schedule.__new__(Schedule)
        try:
            schedule.__setstate__(tuple(state) if isinstance(state, (list, tuple)) else state)
        except (ValueError, TypeError) as error:
            raise type(error)(f"{where}: {error}") from None
        restored.append({**group, "schedule": schedule})
    return {**state_dict, "param_groups": restored}


def loaded_schedule_state(state: Any, group: dict[str, Any], where: str) -> Tensor:
    """A loaded in-kernel schedule counter [step, lr, factor], checked and put on the group's device
    as float64: a whole step in [0, 2**62], a finite lr, a finite factor >= 0."""
    if not isinstance(state, Tensor) or state.numel() != 3 or state.is_complex():
        got = f"a tensor of {state.numel()} elements" if isinstance(state, Tensor) else type(state).__name__
        raise TypeError(f"{where}: schedule_state must be a tensor of 3 real numbers [step, lr, factor], got {got}")
    try:
        step, lr, factor = state.detach().to(device="cpu", dtype=torch.float64).reshape(3).tolist()
    except (RuntimeError, NotImplementedError) as error:  # e.g. a meta tensor, which holds no numbers
        raise TypeError(f"{where}: schedule_state cannot be read ({' '.join(str(error).split())[:200]})") from None
    if not (math.isfinite(step) and 0 <= step <= Schedule.max_step and step == int(step)):
        raise ValueError(f"{where}: schedule_state step must be a whole number in [0, 2**62], got {step}")
    if not (math.isfinite(lr) and math.isfinite(factor) and factor >= 0):
        raise ValueError(f"{where}: schedule_state lr and factor must be finite (factor >= 0), got {lr}, {factor}")
    device = group["params"][0].device if group["params"] else state.device
    return torch.tensor([step, lr, factor], dtype=torch.float64, device=device)
