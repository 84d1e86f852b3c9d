"""fusedlr/schedule_math.h: cos_pi, the cosine every schedule evaluates, against mpmath."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from fusedlr import _C

mpmath.mp.dps = 40


def ulps_from_exact(x: float) -> float:
    exact = mpmath.cospi(mpmath.mpf(x))  # exact zeros at half-integers
    got = _C._cos_pi(x)
    return float(abs(mpmath.mpf(got) - exact) / math.ulp(float(exact)))


def test_cos_pi_is_within_two_ulp_of_the_exact_value():
    rng = np.random.default_rng(0)
    xs = np.concatenate([
        np.linspace(0.0, 2.0, 4001),                          # every branch of the reduction
        rng.uniform(-3.0, 3.0, 2000),
        0.5 + np.array([1e-17, 1e-12, 1e-6, -1e-9]),           # near the zeros: relative accuracy holds
        1.5 + np.array([1e-15, -1e-7]),
        np.array([0.25, 0.75, np.nextafter(0.25, 1), np.nextafter(0.75, 0), 1 - 1e-6, 1e-300]),
        np.array([12345.678, 1e6 + 0.3, 2.0**51 + 0.5, -987.25]),  # far arguments reduce exactly
    ])
    worst = max(ulps_from_exact(float(x)) for x in xs)
    assert worst <= 2.0, worst


def test_cos_pi_exact_points_symmetry_and_non_finite():
    assert _C._cos_pi(0.0) == 1.0 and _C._cos_pi(1.0) == -1.0 and _C._cos_pi(2.0) == 1.0
    assert _C._cos_pi(0.5) == 0.0 and _C._cos_pi(2.0**60) == 1.0 and _C._cos_pi(2.0**52 + 1) == -1.0
    for x in (0.1, 0.3, 0.9, 7.7, 1e5 + 0.125):
        assert _C._cos_pi(-x) == _C._cos_pi(x)
    assert all(math.isnan(_C._cos_pi(x)) for x in (math.inf, -math.inf, math.nan))


@pytest.mark.parametrize("T", [7, 100, 1000, 10**6])
def test_cosine_schedule_agrees_with_the_libm_formula(T):
    # The schedule's cos_pi(t / T) against torch's math.cos(math.pi * t / T): both round, only a
    # few ulp apart away from the end, where 1 + cos cancels.
    from fusedlr import schedules as S
    t = np.unique(np.linspace(0, T, 500).astype(np.int64))
    got = S.cosine(T, eta_min=0.01).curve(T + 1)[t]
    ref = np.array([0.01 + 0.99 * (1 + math.cos(math.pi * k / T)) / 2 for k in t])
    np.testing.assert_allclose(got, ref, rtol=1e-13)
