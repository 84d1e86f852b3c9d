r"""Composable closed-form learning-rate schedules (thin over :class:`fusedlr._C.Schedule`).

Every function returns a :class:`Schedule`, a small plain-data object whose formula lives in
``cpp/include/fusedlr/schedule.h`` (the only copy of the math; nothing here computes a rate).
``s(step, base_lr=1.0)`` is the learning rate at ``step`` for an optimizer group whose initial
learning rate is ``base_lr``; with the default ``1.0`` the value reads as a factor. Any step is
computed directly, so resuming at step ``k`` gives exactly the values of an uninterrupted run.
``s.curve(n, start=0, base_lr=1.0)`` evaluates ``n`` consecutive steps in C++ into a NumPy array;
:class:`fusedlr.lr_scheduler.ScheduleLR` steps any schedule like a torch LR scheduler.

Steps count from 0 (the first optimizer step uses ``s(0)``); steps below 0 count as 0. Past the
end of a finite schedule the last value is held. Below, :math:`b` is ``base_lr`` and :math:`t`
the step.

Composites join pieces: :func:`sequential` runs each piece from its boundary on, the piece
seeing ``step - boundary``; :func:`chained` feeds each schedule's value to the next as its base
(the product of multiplicative schedules); :func:`warmup` puts a ramp in front of any schedule.
A schedule holds at most ``Schedule.max_nodes`` nodes (``Schedule.max_values`` milestones) so it
stays a fixed-size struct that a CUDA kernel takes by value; composing beyond that raises
``ValueError``.

Example:
    >>> from fusedlr import schedules as S
    >>> s = S.warmup(S.cosine(T_max=90, eta_min=0.0), steps=10)
    >>> [round(s(t, base_lr=0.1), 4) for t in (0, 5, 10, 55, 100, 200)]
    [0.0, 0.05, 0.1, 0.05, 0.0, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._C import Schedule

__all__ = [
    "Schedule",
    "chained",
    "constant",
    "cosine",
    "cosine_restarts",
    "cyclic",
    "exponential",
    "inverse_sqrt",
    "inverse_time",
    "linear",
    "cycles",
    "cycles_cosine",
    "cycles_cosine_restarts",
    "linear_remaining",
    "multistep",
    "noise",
    "one_cycle",
    "polynomial_to",
    "ramp_rate",
    "piecewise_constant",
    "piecewise_linear",
    "polynomial",
    "reciprocal_sqrt",
    "sequential",
    "stable_decay",
    "step",
    "steps_per_epoch",
    "warmup",
    "wsd",
    "wsd_shaped",
]


def constant(factor: float = 1.0, total_steps: int | None = None) -> Schedule:
    r"""A constant factor of the base learning rate, optionally for the first ``total_steps`` only.

    .. math:: \eta_t = \begin{cases} b \cdot \text{factor} & t < \text{total\_steps} \\ b & \text{otherwise} \end{cases}

    Args:
        factor: multiplies ``base_lr`` (>= 0). Default 1.0.
        total_steps: steps the factor applies (then ``base_lr``); ``None``: all steps.

    Example:
        >>> constant(0.5, total_steps=3).curve(5).tolist()
        [0.5, 0.5, 0.5, 1.0, 1.0]
    """
    return Schedule.make("constant", factor=factor, total_steps=total_steps)


def step(step_size: float, gamma: float = 0.1) -> Schedule:
    r"""Decay by ``gamma`` every ``step_size`` steps (torch's ``StepLR``; timm's ``StepLRScheduler``).

    .. math:: \eta_t = b \cdot \gamma^{\lfloor t / \text{step\_size} \rfloor}

    Args:
        step_size: steps between decays (> 0); a fractional one (timm's ``decay_t=2.4``) counts
            blocks as Python's ``t // step_size`` does.
        gamma: decay factor (> 0). Default 0.1.

    Example:
        >>> step(2, gamma=0.5).curve(5).tolist()
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    return Schedule.make("step", step_size=step_size, gamma=gamma)


def multistep(milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    r"""Decay by ``gamma`` at each milestone (torch's ``MultiStepLR``; a repeated milestone counts twice).

    .. math:: \eta_t = b \cdot \gamma^{\#\{m \in \text{milestones} : m \le t\}}

    Args:
        milestones: steps (>= 0) at which the rate is multiplied by ``gamma``; any order.
        gamma: decay factor (> 0). Default 0.1.

    Example:
        >>> multistep([1, 3], gamma=0.5).curve(4).tolist()
        [1.0, 0.5, 0.5, 0.25]
    """
    return Schedule.make("multistep", milestones=list(milestones), gamma=gamma)


def linear(start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_steps: int = 5) -> Schedule:
    r"""Linear interpolation of the factor from ``start_factor`` to ``end_factor`` (torch's ``LinearLR``).

    .. math:: \eta_t = b \left(s + (e - s) \frac{\min(t, T)}{T}\right)

    Args:
        start_factor: factor at step 0 (>= 0). Default 1/3.
        end_factor: factor from ``total_steps`` on (>= 0). Default 1.0.
        total_steps: length of the ramp :math:`T` in steps (> 0). Default 5.

    Example:
        >>> linear(0.0, 1.0, 4).curve(6).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return Schedule.make("linear", start_factor=start_factor, end_factor=end_factor, total_steps=total_steps)


def exponential(gamma: float | None = None, *, rate: float | None = None) -> Schedule:
    r"""Exponential decay, by a factor per step or by a continuous rate (give exactly one).

    .. math:: \eta_t = b \cdot \gamma^t \qquad\text{or}\qquad \eta_t = b \cdot e^{-k t}

    Args:
        gamma: factor per step (> 0), as torch's ``ExponentialLR``.
        rate: continuous decay rate :math:`k` per step.

    Example:
        >>> exponential(0.5).curve(3).tolist()
        [1.0, 0.5, 0.25]
    """
    return Schedule.make("exponential", gamma=gamma, rate=rate)


def inverse_time(rate: float, decay_steps: int = 1, staircase: bool = False) -> Schedule:
    r"""Inverse-time ("time-based") decay, as Keras' ``InverseTimeDecay``.

    .. math:: \eta_t = \frac{b}{1 + k \, t / \text{decay\_steps}}
        \quad(\lfloor t / \text{decay\_steps} \rfloor \text{ when staircase})

    Args:
        rate: decay rate :math:`k` (>= 0).
        decay_steps: steps per unit of decay (> 0). Default 1.
        staircase: decay in whole units of ``decay_steps``. Default False.

    Example:
        >>> inverse_time(1.0).curve(4).tolist()
        [1.0, 0.5, 0.3333333333333333, 0.25]
    """
    return Schedule.make("inverse_time", rate=rate, decay_steps=decay_steps, staircase=staircase)


def polynomial(total_steps: int = 5, power: float = 1.0, end_factor: float = 0.0) -> Schedule:
    r"""Polynomial decay to ``end_factor * base_lr`` over ``total_steps`` (torch's ``PolynomialLR`` when ``end_factor=0``).

    .. math:: \eta_t = (b - e)\left(1 - \frac{\min(t, T)}{T}\right)^{p} + e, \qquad e = b \cdot \text{end\_factor}

    Args:
        total_steps: :math:`T`, steps of the decay (> 0). Default 5.
        power: :math:`p` (>= 0). Default 1.0.
        end_factor: the floor as a factor of ``base_lr``. Default 0.0.

    Example:
        >>> polynomial(4, power=2.0).curve(5).tolist()
        [1.0, 0.5625, 0.25, 0.0625, 0.0]
    """
    return Schedule.make("polynomial", total_steps=total_steps, power=power, end_factor=end_factor)


def cosine(T_max: int, eta_min: float = 0.0, periodic: bool = False) -> Schedule:
    r"""Cosine annealing from ``base_lr`` to ``eta_min`` over ``T_max`` steps (SGDR without restarts).

    .. math:: \eta_t = \eta_{min} + \frac{b - \eta_{min}}{2}\left(1 + \cos\frac{\pi \min(t, T_{max})}{T_{max}}\right)

    With ``periodic=True`` :math:`t` is not clamped: the rate rises back after ``T_max`` and
    repeats every ``2 * T_max`` steps, which is what torch's ``CosineAnnealingLR`` does.

    Args:
        T_max: steps from ``base_lr`` to ``eta_min`` (> 0).
        eta_min: the minimum learning rate (absolute, not a factor). Default 0.0.
        periodic: continue the cosine past ``T_max`` instead of holding ``eta_min``. Default False.

    Example:
        >>> cosine(2).curve(4).round(12).tolist()
        [1.0, 0.5, 0.0, 0.0]

    Reference: Loshchilov & Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts (2017).
    """
    return Schedule.make("cosine", T_max=T_max, eta_min=eta_min, periodic=periodic)


def cosine_restarts(T_0: int, T_mult: float = 1.0, eta_min: float = 0.0, reach_min: bool = False) -> Schedule:
    r"""Cosine annealing with warm restarts (SGDR; torch's ``CosineAnnealingWarmRestarts``).

    Cycle :math:`i` starts at :math:`B_i = \operatorname{round}(T_0 (m^i - 1)/(m - 1))`
    (:math:`i T_0` when :math:`m = 1`) and lasts :math:`L_i = B_{i+1} - B_i` steps; with
    :math:`c = t - B_i`:

    .. math:: \eta_t = \eta_{min} + \frac{b - \eta_{min}}{2}\left(1 + \cos\frac{\pi c}{L_i}\right)
        \quad\left(\frac{\pi c}{L_i - 1} \text{ when reach\_min}\right)

    Args:
        T_0: steps of the first cycle (> 0).
        T_mult: growth of the cycle length :math:`m` (>= 1; need not be an integer). Default 1.
        eta_min: minimum learning rate (absolute). Default 0.0.
        reach_min: end every cycle exactly at ``eta_min`` (torch's curve stops one step short of
            it). Default False, torch's behaviour.

    Example:
        >>> cosine_restarts(2, reach_min=True).curve(4).round(12).tolist()
        [1.0, 0.0, 1.0, 0.0]
    """
    return Schedule.make("cosine_restarts", T_0=T_0, T_mult=T_mult, eta_min=eta_min, reach_min=reach_min)


def cyclic(
    base_lr: float,
    max_lr: float,
    step_size_up: float = 2000,
    step_size_down: float | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    inverted: bool = False,
) -> Schedule:
    r"""Cyclical learning rate between two absolute bounds (torch's ``CyclicLR``; ignores ``base_lr`` of the call).

    With :math:`S = \text{up} + \text{down}`, :math:`r = \text{up}/S`,
    :math:`c = \lfloor 1 + t/S \rfloor` and :math:`x = 1 + t/S - c`:

    .. math:: \eta_t = \eta_{lo} + (\eta_{hi} - \eta_{lo}) \cdot f(x) \cdot g, \qquad
        f(x) = \begin{cases} x / r & x \le r \\ (x - 1)/(r - 1) & \text{otherwise} \end{cases}

    and :math:`g = 1` (triangular), :math:`2^{1-c}` (triangular2) or :math:`\gamma^t` (exp_range).
    ``inverted`` gives :math:`\eta_{hi} - (\eta_{hi} - \eta_{lo}) f(x) g`, torch's momentum cycle.

    Args:
        base_lr: lower bound :math:`\eta_{lo}` (>= 0).
        max_lr: upper bound :math:`\eta_{hi}` (>= base_lr).
        step_size_up: steps of the rising half (> 0). Default 2000.
        step_size_down: steps of the falling half; ``None``: ``step_size_up``.
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: factor per step of ``exp_range``. Default 1.0.
        inverted: start at ``max_lr`` and dip to ``base_lr``. Default False.

    Example:
        >>> cyclic(0.0, 1.0, step_size_up=2).curve(5).tolist()
        [0.0, 0.5, 1.0, 0.5, 0.0]

    Reference: Smith, Cyclical Learning Rates for Training Neural Networks (2017).
    """
    return Schedule.make("cyclic", base_lr=base_lr, max_lr=max_lr, step_size_up=step_size_up,
                         step_size_down=step_size_down, mode=mode, gamma=gamma, inverted=inverted)


def one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    r"""The 1cycle policy (torch's ``OneCycleLR``), absolute values; ignores ``base_lr`` of the call.

    With :math:`\eta_0 = \eta_{max}/\text{div\_factor}` and
    :math:`\eta_{end} = \eta_0/\text{final\_div\_factor}`: from :math:`\eta_0` up to
    :math:`\eta_{max}` by step :math:`e_1 = \text{pct\_start}\cdot T - 1`, then down to
    :math:`\eta_{end}` by step :math:`T - 1` (three-phase: down to :math:`\eta_0` by
    :math:`2 e_1`, then to :math:`\eta_{end}`). Within a phase from :math:`a` to :math:`z`, with
    :math:`p` the fraction of the phase done:

    .. math:: \eta = z + \frac{a - z}{2}(1 + \cos \pi p) \quad\text{(cos)}, \qquad \eta = a + (z - a)\,p \quad\text{(linear)}

    From step :math:`T - 1` on, :math:`\eta_{end}` is held (torch raises past step :math:`T`).

    Args:
        max_lr: the peak learning rate.
        total_steps: :math:`T`, steps of the cycle (> 0).
        pct_start: fraction of the steps spent rising. Default 0.3.
        anneal_strategy: ``"cos"`` or ``"linear"``. Default ``"cos"``.
        div_factor: :math:`\eta_{max}/\eta_0`. Default 25.
        final_div_factor: :math:`\eta_0/\eta_{end}`. Default 1e4.
        three_phase: the three-phase variant. Default False.

    Example:
        >>> s = one_cycle(1.0, total_steps=10, pct_start=0.5, anneal_strategy="linear", div_factor=2.0)
        >>> [round(s(t), 9) for t in (0, 4, 9, 100)]
        [0.5, 1.0, 5e-05, 5e-05]

    Reference: Smith & Topin, Super-Convergence (2018).
    """
    initial = max_lr / div_factor
    return Schedule.make("one_cycle", total_steps=total_steps, initial=initial, peak=max_lr,
                         final=initial / final_div_factor, pct_start=pct_start, anneal_strategy=anneal_strategy,
                         three_phase=three_phase)


def inverse_sqrt(timescale: float = 1.0) -> Schedule:
    r"""Inverse square-root decay (Transformers; put :func:`warmup` in front for the usual ramp).

    .. math:: \eta_t = \frac{b}{\sqrt{1 + t / \tau}}

    ``warmup(inverse_sqrt(W), W)`` is the schedule of Vaswani et al. (2017) up to the peak:
    :math:`b \sqrt{W / t}` after :math:`W` warmup steps.

    Args:
        timescale: :math:`\tau` in steps (> 0). Default 1.0.

    Example:
        >>> inverse_sqrt(1.0).curve(4).tolist()
        [1.0, 0.7071067811865475, 0.5773502691896258, 0.5]
    """
    return Schedule.make("inverse_sqrt", timescale=timescale)


def wsd(
    total_steps: int,
    warmup_steps: int = 0,
    decay_steps: int | None = None,
    decay: str = "linear",
    min_factor: float = 0.0,
    warmup_start_factor: float = 0.0,
) -> Schedule:
    r"""Warmup-stable-decay (trapezoidal): ramp, hold ``base_lr``, decay over the last ``decay_steps``.

    With :math:`W` warmup steps, decay starting at :math:`S = T - D` and :math:`q = \min(1, (t - S)/D)`:

    .. math:: \eta_t = \begin{cases}
        b\,(s_0 + (1 - s_0)\, t / W) & t < W \\
        b & W \le t < S \\
        b\,(m + (1 - m)\, g(q)) & t \ge S \end{cases}

    with :math:`g(q) = 1 - q` (linear), :math:`(1 + \cos \pi q)/2` (cosine) or
    :math:`1 - \sqrt{q}` (sqrt). The rate reaches :math:`m b` at :math:`T` and is held after.

    Args:
        total_steps: :math:`T` (> 0).
        warmup_steps: :math:`W` (>= 0). Default 0.
        decay_steps: :math:`D` (> 0, :math:`W + D \le T`); ``None``: 10% of ``total_steps`` (at least 1).
        decay: ``"linear"``, ``"cosine"`` or ``"sqrt"`` (1 - sqrt). Default ``"linear"``.
        min_factor: :math:`m`, the final factor. Default 0.0.
        warmup_start_factor: :math:`s_0`. Default 0.0.

    Example:
        >>> wsd(6, warmup_steps=2, decay_steps=2).curve(7).tolist()
        [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0]

    Reference: Hägele et al., Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations (2024).
    """
    return Schedule.make("wsd", total_steps=total_steps, warmup_steps=warmup_steps, decay_steps=decay_steps,
                         decay=decay, min_factor=min_factor, warmup_start_factor=warmup_start_factor)


def piecewise_constant(boundaries: Sequence[int], factors: Sequence[float]) -> Schedule:
    r"""Constant factors between boundaries.

    .. math:: \eta_t = b \cdot \text{factors}[i], \qquad i = \#\{k : \text{boundaries}[k] \le t\}

    Args:
        boundaries: strictly increasing steps (>= 0).
        factors: one more than ``boundaries``.

    Example:
        >>> piecewise_constant([2], [1.0, 0.1]).curve(4).tolist()
        [1.0, 1.0, 0.1, 0.1]
    """
    return Schedule.make("piecewise_constant", boundaries=list(boundaries), factors=list(factors))


def piecewise_linear(steps: Sequence[int], factors: Sequence[float]) -> Schedule:
    r"""Linear interpolation between ``(steps[k], factors[k])``; held before the first and after the last.

    .. math:: \eta_t = b \left(y_k + (y_{k+1} - y_k)\frac{t - x_k}{x_{k+1} - x_k}\right), \qquad x_k \le t < x_{k+1}

    Args:
        steps: strictly increasing steps (>= 0), at least one.
        factors: factor at each of ``steps``.

    Example:
        >>> piecewise_linear([0, 2, 4], [0.0, 1.0, 0.0]).curve(6).tolist()
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    return Schedule.make("piecewise_linear", steps=list(steps), factors=list(factors))


def warmup(
    schedule: Schedule,
    steps: int,
    start_factor: float = 0.0,
    mode: str = "linear",
    start_lr: float | None = None,
    to_base: bool = False,
    overlap: bool = False,
) -> Schedule:
    r"""Put a warmup ramp in front of any schedule (or over its first steps, with ``overlap``).

    .. math:: \eta_t = \begin{cases} r(t) & t < W \\ s(t - W) & t \ge W \end{cases}, \qquad
        r(t) = w(t)\, e \quad\text{or}\quad r(t) = a + t\,\frac{e - a}{W} \;\text{(from start\_lr } a),
        \qquad w(t) = s_0 + (1 - s_0)\,u(t/W)

    with :math:`u(x) = x` (linear), :math:`\tfrac12(1 - \cos \pi x)` (cosine), :math:`1 - \sqrt{1 - x}`
    (1-sqrt), or :math:`w(t) = s_0^{\,1 - t/W}` (exponential).

    The ramp's end :math:`e` is :math:`s(0)`, the schedule where it takes over; :math:`b` with
    ``to_base``. With ``overlap`` the schedule runs from step 0 underneath the ramp: it takes over
    at step :math:`W` with :math:`s(W)` (so :math:`e = s(W)`) and :math:`s(t)` follows. timm's
    ``warmup_prefix=True`` is ``to_base=True``; its ``warmup_prefix=False`` adds ``overlap=True``
    (its tanh ramps to :math:`s(W)`: ``to_base=False``).

    Args:
        schedule: the schedule after (or under) the warmup.
        steps: :math:`W`, warmup steps (>= 0).
        start_factor: :math:`s_0`, the ramp's factor at step 0 (> 0 for exponential). Default 0.0.
        mode: ``"linear"``, ``"exponential"``, ``"cosine"`` or ``"1-sqrt"`` (the last two are
            transformers' ``warmup_type`` shapes). Default ``"linear"``.
        start_lr: :math:`a`, an absolute learning rate to start from instead (linear; timm's
            ``warmup_lr_init``). Default ``None``.
        to_base: ramp to the base learning rate :math:`b` rather than to the schedule. Default False.
        overlap: the schedule counts its steps from 0, under the ramp. Default False.

    Example:
        >>> warmup(constant(), steps=4).curve(6).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
        >>> warmup(linear(1.0, 0.0, total_steps=8), steps=4, overlap=True).curve(6).tolist()
        [0.0, 0.125, 0.25, 0.375, 0.5, 0.375]
    """
    return Schedule.make("warmup", schedule=schedule, steps=steps, start_factor=start_factor, mode=mode,
                         start_lr=start_lr, to_base=to_base, overlap=overlap)


def sequential(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Run ``schedules[i]`` from ``boundaries[i-1]`` on; it sees the step counted from its boundary.

    .. math:: \eta_t = s_i(t - B_{i-1}, b), \qquad i = \#\{k : B_k \le t\}, \; B_{-1} = 0

    Nestable; a boundary of 0 (or two equal boundaries) skips a schedule, like torch's
    ``SequentialLR`` milestones.

    Args:
        schedules: the pieces, in order.
        boundaries: non-decreasing steps (>= 0), one fewer than ``schedules``.

    Example:
        >>> sequential([constant(0.1), constant(1.0)], [2]).curve(4).tolist()
        [0.1, 0.1, 1.0, 1.0]
    """
    return Schedule.make("sequential", schedules=list(schedules), boundaries=list(boundaries))


def chained(schedules: Sequence[Schedule]) -> Schedule:
    r"""Apply schedules one after another, each one's value being the next one's base rate.

    .. math:: \eta_t = s_n(t, \ldots s_2(t, s_1(t, b)))

    For multiplicative schedules (all but cyclic/one_cycle and the ``eta_min`` part of the cosines)
    this is the product of their factors, which is what torch's ``ChainedScheduler`` computes.

    Args:
        schedules: applied first to last.

    Example:
        >>> chained([constant(0.5, total_steps=2), step(1, gamma=0.5)]).curve(3).tolist()
        [0.5, 0.25, 0.25]
    """
    return Schedule.make("chained", schedules=list(schedules))


def noise(
    schedule: Schedule,
    start: int = 0,
    end: int | None = None,
    pct: float = 0.67,
    std: float = 1.0,
    seed: int = 42,
    distribution: str = "normal",
) -> Schedule:
    r"""``schedule`` with relative noise on the steps of ``[start, end)`` (timm's scheduler noise).

    .. math:: \eta_t = s(t) \, (1 + n_t), \qquad
        n_t \sim \begin{cases} \sigma \mathcal{N}(0, 1) \text{ drawn again while } |n_t| \ge p & \text{normal} \\
        \mathcal{U}(-p, p) & \text{uniform} \end{cases}

    and :math:`\eta_t = s(t)` outside the range. Unlike timm, whose draws come from a torch
    generator seeded with ``seed + t``, each draw is a counter-based hash of ``(seed, t)``: the
    value of any step is a pure function of it (exact resume, plots, the same in the fused CUDA
    step), with timm's distribution, bounds and on/off steps but not its numbers. A normal draw
    that stays out of range 64 times (a chance below 1e-19 for ``pct >= 0.67 * std``) gives no noise.

    Args:
        schedule: the schedule the noise multiplies.
        start: first noisy step (timm's ``noise_range_t``, or its first element). Default 0.
        end: first step without noise again (the second element of timm's pair); ``None``: never.
        pct: :math:`p`, the bound of :math:`|n_t|` (> 0; timm's ``noise_pct``). Default 0.67.
        std: :math:`\sigma` of the normal draw (> 0; timm's ``noise_std``). Default 1.0.
        seed: the draws' seed, a whole number >= 0 (timm's ``noise_seed``). Default 42.
        distribution: ``"normal"`` or ``"uniform"`` (timm's ``noise_type``).

    Example:
        >>> s = noise(constant(), start=2, pct=0.1, seed=0)
        >>> [v == 1.0 for v in s.curve(4).tolist()]
        [True, True, False, False]
        >>> all(abs(v - 1.0) < 0.1 for v in s.curve(1000, start=2).tolist())
        True
    """
    return Schedule.make("noise", schedule=schedule, start=start, end=end, pct=pct, std=std, seed=seed,
                         distribution=distribution)


def linear_remaining(remaining: int, length: float) -> Schedule:
    r"""transformers' linear decay after its warmup, in its order of operations.

    .. math:: \eta_t = b \max\left(0, \frac{R - t}{L}\right)

    ``get_linear_schedule_with_warmup(W, T)`` is ``warmup(linear_remaining(T - W, max(1, T - W)), W)``
    (:func:`fusedlr.lr_scheduler.get_linear_schedule_with_warmup`).

    Args:
        remaining: :math:`R`, the steps left at step 0 (a whole number; may be <= 0).
        length: :math:`L`, the divisor in steps (> 0).

    Example:
        >>> linear_remaining(4, 4).curve(6).tolist()
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    return Schedule.make("linear_remaining", remaining=remaining, length=length)


def cycles_cosine(length: float, num_cycles: float = 0.5, min_rate: float = 0.0, shift: int = 0) -> Schedule:
    r"""transformers' cosine decay after its warmup (``num_cycles`` periods over ``length`` steps,
    a floor ``min_rate``), in its order of operations (``math.cos`` of ``math.pi * c * 2 * p``).

    .. math:: \eta_t = b \max\left(0, \tfrac{1}{2}\left(1 + \cos(2 \pi c \, (t + s) / L)\right)(1 - m) + m\right)

    Args:
        length: :math:`L` in steps (> 0), transformers' ``max(1, T - W)``.
        num_cycles: :math:`c`; 0.5 decays once to the floor. Default 0.5.
        min_rate: :math:`m`, the floor as a fraction of the base. Default 0.
        shift: :math:`s`, whole steps (1 in transformers' ``..._warmup_lr_rate`` variant). Default 0.

    Example:
        >>> [round(v, 6) for v in cycles_cosine(4).curve(5).tolist()]
        [1.0, 0.853553, 0.5, 0.146447, 0.0]
    """
    return Schedule.make("cycles_cosine", length=length, num_cycles=num_cycles, min_rate=min_rate, shift=shift)


def cycles_cosine_restarts(length: float, num_cycles: float = 1) -> Schedule:
    r"""transformers' cosine with hard restarts after its warmup: ``num_cycles`` decays from 1 to 0, then 0.

    .. math:: \eta_t = b \max\left(0, \tfrac12 \left(1 + \cos(\pi \, ((c\, t / L) \bmod 1))\right)\right)
        \; (t < L), \qquad 0 \; (t \ge L)

    Args:
        length: :math:`L` in steps (> 0), transformers' ``max(1, T - W)``.
        num_cycles: :math:`c`, the number of restarts' cycles. Default 1.

    Example:
        >>> [round(v, 6) for v in cycles_cosine_restarts(4, 2).curve(5).tolist()]
        [1.0, 0.5, 1.0, 0.5, 0.0]
    """
    return Schedule.make("cycles_cosine_restarts", length=length, num_cycles=num_cycles)


def polynomial_to(decay_steps: int, lr_init: float, lr_end: float = 1e-7, power: float = 1.0) -> Schedule:
    r"""transformers' polynomial decay after its warmup, from ``lr_init`` to the absolute ``lr_end``.

    .. math:: \eta_t = \frac{b}{\eta_i} \left((\eta_i - \eta_e)(1 - t / D)^p + \eta_e\right) \; (t \le D),
        \qquad \frac{b}{\eta_i} \eta_e \; (t > D)

    (transformers divides by the optimizer's default lr :math:`\eta_i`, and LambdaLR multiplies by
    each group's own :math:`b`.)

    Args:
        decay_steps: :math:`D`, whole, not 0 (transformers' ``T - W``; negative: ``lr_end`` at once).
        lr_init: :math:`\eta_i` (> ``lr_end``).
        lr_end: :math:`\eta_e` (>= 0). Default 1e-7.
        power: :math:`p` (>= 0). Default 1.

    Example:
        >>> polynomial_to(4, 1.0, 0.0).curve(6).tolist()
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    return Schedule.make("polynomial_to", decay_steps=decay_steps, lr_init=lr_init, lr_end=lr_end, power=power)


def reciprocal_sqrt(timescale: int) -> Schedule:
    r"""transformers' inverse square-root decay after its warmup, in its order of operations.

    .. math:: \eta_t = b \, \frac{1}{\sqrt{(t + \tau) / \tau}}

    Args:
        timescale: :math:`\tau`, whole steps (> 0).

    Example:
        >>> reciprocal_sqrt(1).curve(4).tolist()
        [1.0, 0.7071067811865475, 0.5773502691896258, 0.5]
    """
    return Schedule.make("reciprocal_sqrt", timescale=timescale)


def wsd_shaped(
    warmup_steps: int,
    stable_steps: int,
    decay_steps: int,
    warmup_type: str = "linear",
    decay_type: str = "cosine",
    min_lr_ratio: float = 0.0,
    num_cycles: float = 0.5,
) -> Schedule:
    r"""transformers' warmup-stable-decay (``get_wsd_schedule``), its shapes, in its order of operations.

    With :math:`m` = ``min_lr_ratio``, :math:`f(x) = \max(0, x (1 - m) + m)` and :math:`W, S, D` the
    three lengths:

    .. math:: \eta_t = b \begin{cases} f(w(t / \max(1, W))) & t < W \\ 1 & t < W + S \\
        f(d((t - W - S) / \max(1, D))) & t < W + S + D \\ m & \text{after} \end{cases}

    with warmup :math:`w(p) = p`, :math:`(1 - \cos \pi p)/2` or :math:`1 - \sqrt{1 - p}` and decay
    :math:`d(p) = 1 - p`, :math:`(1 + \cos 2\pi c p)/2` or :math:`1 - \sqrt{p}` (``"linear"``,
    ``"cosine"``, ``"1-sqrt"``). (:func:`wsd` is the same shape family with fusedlr's argument names.)

    Args:
        warmup_steps: :math:`W` (>= 0).
        stable_steps: :math:`S`, whole (transformers' ``T - W - D``; may be negative).
        decay_steps: :math:`D` (>= 0).
        warmup_type, decay_type: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
        min_lr_ratio: :math:`m`. Default 0.
        num_cycles: :math:`c` of the cosine decay. Default 0.5.

    Example:
        >>> wsd_shaped(2, 1, 2, decay_type="linear").curve(6).tolist()
        [0.0, 0.5, 1.0, 1.0, 0.5, 0.0]
    """
    return Schedule.make("wsd_shaped", warmup_steps=warmup_steps, stable_steps=stable_steps, decay_steps=decay_steps,
                         warmup_type=warmup_type, decay_type=decay_type, min_lr_ratio=min_lr_ratio,
                         num_cycles=num_cycles)


def ramp_rate(steps: int, rate: float | None = None) -> Schedule:
    r"""The warmup of transformers' ``get_cosine_with_min_lr_schedule_with_warmup_lr_rate``.

    .. math:: \eta_t = b \frac{t + 1}{\max(1, W)} \qquad\text{or, with a rate } r:\qquad
        \eta_t = b \left(r + (1 - r) \frac{t}{\max(1, W - 1)}\right)

    Args:
        steps: :math:`W`, the warmup's length (>= 0).
        rate: :math:`r`, the first step's factor; ``None``: :math:`1 / W`.

    Example:
        >>> ramp_rate(4).curve(4).tolist()
        [0.25, 0.5, 0.75, 1.0]
    """
    return Schedule.make("ramp_rate", steps=steps, rate=rate)


def cycles(
    t_initial: float,
    shape: str = "cosine",
    lr_min: float = 0.0,
    cycle_mul: float = 1.0,
    cycle_decay: float = 1.0,
    cycle_limit: int = 1,
    k_decay: float = 1.0,
    power: float = 0.5,
    lb: float = -7.0,
    ub: float = 3.0,
) -> Schedule:
    r"""Annealing cycles with restarts, timm's ``CosineLRScheduler`` / ``PolyLRScheduler`` /
    ``TanhLRScheduler`` after their warmup, in timm's order of operations.

    Cycle :math:`i` is :math:`T m^i` steps long (:math:`m` = ``cycle_mul``, any positive real);
    the step :math:`t` falls in cycle :math:`i = \lfloor \log_m (1 - t (1 - m) / T) \rfloor`
    (:math:`\lfloor t / T \rfloor` for :math:`m = 1`) at :math:`t_c` steps into it, and with
    :math:`\hat b = b \cdot \text{cycle\_decay}^i`, :math:`\ell` = ``lr_min``, :math:`k` = ``k_decay``:

    .. math:: \eta_t = \begin{cases}
        \ell + \tfrac12 (\hat b - \ell)\,(1 + \cos(\pi\, t_c^k / T_i^k)) & \text{cosine} \\
        \ell + (\hat b - \ell)\,(1 - t_c^k / T_i^k)^{p} & \text{poly} \\
        \ell + \tfrac12 (\hat b - \ell)\,(1 - \tanh(l_b (1 - t_c/T_i) + u_b\, t_c/T_i)) & \text{tanh}
        \end{cases}

    for :math:`i <` ``cycle_limit``, and :math:`\ell` from cycle ``cycle_limit`` on. For
    :math:`m < 1` the cycles add up to :math:`T / (1 - m)` steps; past that (where timm's
    logarithm raises ``ValueError``) the value is :math:`\ell`. ``lr_min`` is an absolute rate.

    Args:
        t_initial: :math:`T`, the first cycle's length in steps (> 0, may be fractional).
        shape: ``"cosine"``, ``"poly"`` or ``"tanh"``. Default ``"cosine"``.
        lr_min: :math:`\ell` (>= 0). Default 0.0.
        cycle_mul: :math:`m` (> 0). Default 1.0.
        cycle_decay: the peak's factor per cycle. Default 1.0.
        cycle_limit: cycles before :math:`\ell` is held (a whole number >= 0). Default 1.
        k_decay: :math:`k` (> 0; cosine and poly; arXiv:2004.05909). Default 1.0.
        power: :math:`p` (poly). Default 0.5.
        lb, ub: the tanh's bounds (tanh; ``lb < ub``). Default -7.0, 3.0.

    Example:
        >>> [round(v, 4) for v in cycles(4, cycle_limit=2, cycle_decay=0.5).curve(9).tolist()]
        [1.0, 0.8536, 0.5, 0.1464, 0.5, 0.4268, 0.25, 0.0732, 0.0]
    """
    return Schedule.make("cycles", t_initial=t_initial, shape=shape, lr_min=lr_min, cycle_mul=cycle_mul,
                         cycle_decay=cycle_decay, cycle_limit=cycle_limit, k_decay=k_decay, power=power, lb=lb, ub=ub)


def stable_decay(
    t_initial: float,
    decay_t: float,
    lr_min: float = 0.0,
    stable_fn: str = "constant",
    stable_timescale: float | None = None,
    stable_power: float = 0.5,
    decay_fn: str = "1-sqrt",
    decay_power: float = 0.5,
    decay_ratio: float = 0.1,
) -> Schedule:
    r"""A stable phase, then a decay to ``lr_min`` over the last ``decay_t`` of ``t_initial`` steps:
    timm's ``WSDLRScheduler`` after its warmup, in timm's order of operations.

    .. math:: \eta_t = \ell + (\max(b\, f(t), \ell) - \ell)\; d\!\left(\min\!\left(\tfrac{t - (T - D)}{D}, 1\right)\right)
        \quad (t > T - D), \qquad \eta_t = \max(b\, f(t), \ell) \text{ before}

    with :math:`f(t) = 1` (``"constant"``) or :math:`(1 + t/\tau)^{-q}` (``"rsqrt"``: :math:`q = 1/2`;
    ``"power"``: :math:`q` = ``stable_power``), and :math:`d(x)` = :math:`1 - x` (``"linear"``),
    :math:`1 - \sqrt{x}` (``"1-sqrt"``), :math:`\tfrac12(1 + \cos \pi x)` (``"cosine"``),
    :math:`1 - x^{p}` (``"power"``), :math:`(r^x - r)/(1 - r)` (``"exp"``).

    Args:
        t_initial: :math:`T`, stable + decay steps (> 0).
        decay_t: :math:`D`, decay steps (> 0, <= ``t_initial``).
        lr_min: :math:`\ell`, an absolute rate (>= 0). Default 0.0.
        stable_fn: ``"constant"``, ``"rsqrt"`` or ``"power"``. Default ``"constant"``.
        stable_timescale: :math:`\tau` (> 0; needed by ``"rsqrt"`` and ``"power"``).
        stable_power: :math:`q` of ``"power"`` (> 0). Default 0.5.
        decay_fn: ``"linear"``, ``"1-sqrt"``, ``"cosine"``, ``"power"`` or ``"exp"``. Default ``"1-sqrt"``.
        decay_power: :math:`p` of ``"power"`` (> 0). Default 0.5.
        decay_ratio: :math:`r` of ``"exp"``, in (0, 1). Default 0.1.

    Example:
        >>> stable_decay(4, 2, decay_fn="linear").curve(6).tolist()
        [1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    """
    return Schedule.make("stable_decay", t_initial=t_initial, decay_t=decay_t, lr_min=lr_min, stable_fn=stable_fn,
                         stable_timescale=stable_timescale, stable_power=stable_power, decay_fn=decay_fn,
                         decay_power=decay_power, decay_ratio=decay_ratio)


def steps_per_epoch(num_samples: int, batch_size: int, drop_last: bool = False, accumulation_steps: int = 1) -> int:
    r"""Optimizer steps in one epoch, to express epoch-based arguments in steps.

    .. math:: \left\lceil \frac{\text{batches}}{\text{accumulation\_steps}} \right\rceil, \qquad
        \text{batches} = \lfloor n / B \rfloor \text{ (drop\_last) or } \lceil n / B \rceil

    Args:
        num_samples: samples per epoch (``len(dataset)``).
        batch_size: samples per batch (> 0).
        drop_last: the data loader drops the last incomplete batch. Default False.
        accumulation_steps: batches per optimizer step (> 0). Default 1.

    Example:
        >>> cosine(T_max=90 * steps_per_epoch(50_000, 128)).kind
        'cosine'
        >>> steps_per_epoch(50_000, 128)
        391
    """
    for name, value in (("batch_size", batch_size), ("accumulation_steps", accumulation_steps)):
        if value <= 0:
            raise ValueError(f"steps_per_epoch: {name} must be > 0, got {value!r}")
    if num_samples < 0:
        raise ValueError(f"steps_per_epoch: num_samples must be >= 0, got {num_samples!r}")
    batches = num_samples // batch_size if drop_last else math.ceil(num_samples / batch_size)
    return math.ceil(batches / accumulation_steps)
