"""
The utilization-law fitter: U = D · X through the origin.
"""

from __future__ import annotations

import dataclasses
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from capplan.models.demand import CapacityEstimate, fit_demand

PROPERTY = settings(derandomize=True, deadline=None, database=None, max_examples=50)


class TestFit:
    def test_exact_recovery_noiseless(self) -> None:
        """Noiseless data give D exactly, zero error, R² = 1."""
        x = np.linspace(5.0, 120.0, 12)
        fit = fit_demand(x, 0.0035 * x)
        assert fit.success
        assert 0.0035 == pytest.approx(fit.demand, rel=1e-14)
        assert fit.stderr < 1e-15
        assert 1.0 == fit.r2
        assert (12, 11) == (fit.n, fit.dof)

    def test_closed_form(self) -> None:
        """D = ΣwXU/ΣwX², se = sqrt(RSS/(n−1)/ΣwX²), t interval on n − 1 dof."""
        x = np.array([10.0, 20.0, 30.0, 40.0, 55.0])
        u = np.array([0.05, 0.09, 0.16, 0.19, 0.29])
        w = np.array([1.0, 2.0, 1.0, 3.0, 1.0])
        fit = fit_demand(x, u, weights=w)
        d = np.sum(w * x * u) / np.sum(w * x * x)
        rss = np.sum(w * (u - d * x) ** 2)
        se = math.sqrt(rss / 4 / np.sum(w * x * x))
        q = stats.t.ppf(0.975, 4)
        assert d == pytest.approx(fit.demand, rel=1e-14)
        assert se == pytest.approx(fit.stderr, rel=1e-12)
        assert (d - q * se, d + q * se) == pytest.approx(fit.interval, rel=1e-12)
        assert rss == pytest.approx(fit.rss, rel=1e-12)

    def test_r2_is_uncentred(self) -> None:
        """R² = 1 − RSS/ΣU² (not the centred version)."""
        x = np.array([10.0, 20.0, 30.0, 40.0])
        u = np.array([0.2, 0.21, 0.19, 0.22])
        fit = fit_demand(x, u)
        assert 1 - fit.rss / np.sum(u**2) == pytest.approx(fit.r2, rel=1e-12)

    def test_deterministic_and_frozen(self) -> None:
        """Same data, same bytes; results are frozen."""
        x = np.array([1.0, 2.0, 3.0, 5.0])
        u = np.array([0.011, 0.019, 0.032, 0.049])
        fit = fit_demand(x, u)
        assert pickle.dumps(fit) == pickle.dumps(fit_demand(x.copy(), u.copy()))
        with pytest.raises(dataclasses.FrozenInstanceError):
            fit.demand = 1.0  # type: ignore[misc]


class TestCapacity:
    def test_capacity_at_default_ceiling(self) -> None:
        """Rate = ceiling / D, interval from the demand interval, reversed."""
        x = np.array([10.0, 20.0, 30.0, 40.0, 55.0])
        u = np.array([0.05, 0.09, 0.16, 0.19, 0.29])
        fit = fit_demand(x, u)
        cap = fit.capacity_at()
        assert isinstance(cap, CapacityEstimate)
        assert 0.8 == cap.ceiling
        assert 0.8 / fit.demand == pytest.approx(cap.rate, rel=1e-15)
        assert (0.8 / fit.interval[1], 0.8 / fit.interval[0]) == pytest.approx(cap.interval)
        assert cap.interval[0] < cap.rate < cap.interval[1]

    def test_zero_demand_is_unbounded(self) -> None:
        """All-zero utilization: D = 0 and capacity inf."""
        fit = fit_demand([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
        assert 0.0 == fit.demand
        assert math.isinf(fit.capacity_at(0.5).rate)

    @pytest.mark.parametrize("ceiling", [0.0, -0.1, 1.5, float("nan")])
    def test_bad_ceiling(self, ceiling: float) -> None:
        """The ceiling is a utilization in (0, 1]."""
        fit = fit_demand([1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
        with pytest.raises(ValueError, match=r"ceiling = .* must be a utilization in \(0, 1\]"):
            fit.capacity_at(ceiling)

    @PROPERTY
    @given(
        demand=st.floats(min_value=1e-5, max_value=0.1),
        ceiling=st.floats(min_value=0.05, max_value=1.0),
    )
    def test_rate_times_demand_is_ceiling(self, demand: float, ceiling: float) -> None:
        """U(rate) = ceiling on noiseless data, and capacity grows with the ceiling."""
        x = np.array([1.0, 2.0, 3.0, 4.0]) * 0.5 / demand / 4
        fit = fit_demand(x, demand * x)
        cap = fit.capacity_at(ceiling)
        assert ceiling == pytest.approx(cap.rate * fit.demand, rel=1e-12)
        assert fit.capacity_at(min(ceiling * 1.01, 1.0)).rate >= cap.rate


class TestValidation:
    @pytest.mark.parametrize(
        ("throughput", "utilization", "match"),
        [
            ([1, 2, 3], [0.1, 0.2], r"lengths differ: throughput has 3, utilization has 2"),
            ([1, 2, 3], [0.1, float("nan"), 0.3], r"utilization\[1\] = nan is not a finite"),
            ([1, -2, 3], [0.1, 0.2, 0.3], r"throughput\[1\] = -2\.0 is negative"),
            ([1, 2, 3], [10, 20, 30], r"utilization\[0\] = 10\.0 is above 1.*not a percentage"),
            ([1], [0.1], r"throughput has 1 points; need at least 2"),
            ([0, 0, 0], [0.1, 0.2, 0.3], r"throughput is 0 everywhere"),
        ],
    )
    def test_bad_arrays(self, throughput: object, utilization: object, match: str) -> None:
        """Each bad input names the argument and the value."""
        with pytest.raises(ValueError, match=match):
            fit_demand(throughput, utilization)  # type: ignore[arg-type]

    def test_bad_weights(self) -> None:
        """Weights must be positive and match in length."""
        with pytest.raises(ValueError, match=r"weights\[0\] = -1\.0 is not positive"):
            fit_demand([1, 2, 3], [0.1, 0.2, 0.3], weights=[-1, 1, 1])


def test_interval_coverage() -> None:
    """95 % intervals cover the true demand 93–97 % of the time (Gaussian noise; exact t).

    Measured with this seed: see the assertion message.  The capacity interval is a monotone
    transform of the demand interval, so it covers the true capacity on exactly the same
    replicates.
    """
    rng = np.random.default_rng(20241123)
    x = np.linspace(50.0, 400.0, 15)
    demand = 0.002
    replicates = 4000
    hits = 0
    cap_hits = 0
    for _ in range(replicates):
        u = demand * x + 0.02 * rng.standard_normal(x.size)
        fit = fit_demand(x, np.clip(u, 0.0, 1.0))
        lo, hi = fit.interval
        hits += lo <= demand <= hi
        clo, chi = fit.capacity_at(0.8).interval
        cap_hits += clo <= 0.8 / demand <= chi
    coverage = hits / replicates
    assert hits == cap_hits
    assert 0.93 <= coverage <= 0.97, coverage
