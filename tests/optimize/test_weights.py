"""
The split solver against a general optimizer, and its invariants.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from capplan.models.station_fit import station_capacity
from capplan.optimize.curves import NodeCurve, PoolCurves
from capplan.optimize.weights import pool_quantile, split_load


def random_pool(rng: np.random.Generator, n: int) -> tuple[PoolCurves, np.ndarray]:
    c = rng.choice([1.0, 2.0, 4.0, 8.0], n)
    s = rng.uniform(0.01, 0.05, n)
    v = rng.uniform(0.2, 1.5, n)
    pool = PoolCurves([NodeCurve(station=(a, b, d)) for a, b, d in zip(c, s, v, strict=True)])
    return pool, station_capacity(c, s, v, 0.25, 0.99)


def total_time(pool: PoolCurves, rates: np.ndarray) -> float:
    return float(np.sum(np.where(rates > 0, rates * pool.mean(rates), 0.0)))


class TestMeanObjective:
    @pytest.mark.parametrize(("seed", "n", "level"), [(1, 4, 0.5), (2, 8, 0.8), (3, 12, 0.95)])
    def test_matches_slsqp(self, seed: int, n: int, level: float) -> None:
        """The objective equals SLSQP's optimum within 1e-6 relative (never worse)."""
        pool, caps = random_pool(np.random.default_rng(seed), n)
        load = level * caps.sum()
        split = split_load(pool, caps, load)
        reference = minimize(
            lambda x: total_time(pool, x),
            caps / caps.sum() * load,
            method="SLSQP",
            bounds=[(0.0, c) for c in caps],
            constraints=[{"type": "eq", "fun": lambda x: x.sum() - load}],
            options={"ftol": 1e-12, "maxiter": 1000},
        )
        ours = total_time(pool, np.array(split.rates))
        assert ours <= reference.fun * (1 + 1e-6)

    def test_kkt(self) -> None:
        """Nodes strictly inside (0, cap) share one marginal cost; nodes at 0 have a higher one."""
        pool, caps = random_pool(np.random.default_rng(5), 10)
        load = 0.6 * caps.sum()
        rates = np.array(split_load(pool, caps, load).rates)

        def marginal(i: int, r: float) -> float:
            h = 1e-6 * caps[i]
            lo, hi = rates.copy(), rates.copy()
            lo[i], hi[i] = max(r - h, 0.0), r + h
            return (total_time(pool, hi) - total_time(pool, lo)) / (hi[i] - lo[i])

        inside = [i for i in range(10) if 1e-6 * caps[i] < rates[i] < caps[i] * (1 - 1e-6)]
        values = [marginal(i, rates[i]) for i in inside]
        assert max(values) - min(values) <= 1e-4 * np.mean(values)
        for i in range(10):
            if rates[i] <= 1e-9 * caps[i]:
                assert marginal(i, 0.0) >= min(values) * (1 - 1e-4)

    def test_overload_is_reported(self) -> None:
        """A load above the caps' sum is not split: success False and the largest load named."""
        pool, caps = random_pool(np.random.default_rng(7), 3)
        split = split_load(pool, caps, 1.5 * caps.sum())
        assert not split.success
        assert "more than the pool can carry" in split.message


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), level=st.floats(0.1, 0.95))
def test_invariants(seed: int, level: float) -> None:
    """Shares sum to 1, no rate exceeds its cap, and a faster twin never gets less."""
    rng = np.random.default_rng(seed)
    c, s, v = 4.0, float(rng.uniform(0.01, 0.04)), float(rng.uniform(0.2, 1.2))
    nodes = [NodeCurve(station=(c, s, v)), NodeCurve(station=(c, s * 1.5, v))]
    pool = PoolCurves(nodes)
    caps = station_capacity(np.array([c, c]), np.array([s, s * 1.5]), np.array([v, v]), 0.25, 0.99)
    split = split_load(pool, caps, level * caps.sum())
    assert sum(split.shares) == pytest.approx(1.0, abs=1e-9)
    assert all(r <= cap * (1 + 1e-9) for r, cap in zip(split.rates, caps, strict=True))
    assert split.rates[0] >= split.rates[1] * (1 - 1e-9)


class TestPercentileObjective:
    def test_not_worse_than_the_mean_split(self) -> None:
        """The percentile split's pool p99 is at most the mean split's."""
        pool, caps = random_pool(np.random.default_rng(11), 6)
        load = 0.7 * caps.sum()
        by_mean = split_load(pool, caps, load)
        by_tail = split_load(pool, caps, load, objective="percentile")
        assert by_tail.quantile_ms <= by_mean.quantile_ms * (1 + 1e-6)

    def test_pool_quantile_of_one_node_is_its_quantile(self) -> None:
        """With one node the pool quantile is that node's quantile."""
        pool, caps = random_pool(np.random.default_rng(2), 1)
        rates = np.array([0.5 * caps[0]])
        expected = float(pool.quantile(0.99, rates)[0])
        assert expected == pytest.approx(pool_quantile(pool, rates, 0.99), rel=1e-8)
