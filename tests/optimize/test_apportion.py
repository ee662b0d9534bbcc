"""
Integer weights from shares: bounded Webster apportionment and the per-target house sizes.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capplan.optimize.apportion import (
    HOUSE_TOP,
    NGINX_HOUSE_PER_NODE,
    NGINX_MAX_HOUSE,
    NGINX_REL_TOLERANCE,
    NGINX_TOLERANCE,
    apportion,
    nginx_score,
    weights_for,
)
from capplan.planfile import WEIGHT_RANGES

TARGETS = ("nginx", "haproxy", "ipvsadm", "keepalived")

# shares as the optimizer gives them: some nodes idle, the rest anywhere from tiny to large
share_lists = st.lists(
    st.one_of(st.just(0.0), st.floats(1e-4, 1.0)), min_size=1, max_size=12
).filter(lambda s: sum(s) > 0)


def one_by_one(shares: list[float], total: int, minimum: int, maximum: int | None) -> list[int]:
    """
    Reference Webster: start at the minimum, hand out one unit at a time by priority.
    """
    norm = shares  # priorities do not depend on the scale
    weights = [minimum if s > 0 else 0 for s in norm]
    top = math.inf if maximum is None else maximum
    for _ in range(total - sum(weights)):
        best = max(
            (i for i, s in enumerate(norm) if s > 0 and weights[i] < top),
            key=lambda i: (norm[i] / (weights[i] + 0.5), -i),
        )
        weights[best] += 1
    return weights


class TestApportion:
    def test_hand_example(self) -> None:
        """Quotas 1.17, 2.33, 3.5 of a house of 7 round to 1, 2, 4."""
        result = apportion([1.0, 2.0, 3.0], 7)
        assert (1, 2, 4) == result.weights
        assert 7 == result.total
        assert pytest.approx(4 / 7 - 0.5) == result.max_abs_error

    def test_ties_go_to_the_earlier_node(self) -> None:
        """Equal shares that cannot be equal weights: the earlier nodes get the extra unit."""
        assert (2, 2, 1) == apportion([1.0, 1.0, 1.0], 5).weights

    @settings(max_examples=120, deadline=None)
    @given(
        shares=share_lists,
        extra=st.integers(0, 200),
        minimum=st.integers(0, 3),
        spread=st.one_of(st.none(), st.integers(0, 50)),
    )
    def test_matches_one_unit_at_a_time(
        self, shares: list[float], extra: int, minimum: int, spread: int | None
    ) -> None:
        """The fast rounding equals handing out units one by one; bounds and sum hold."""
        active = sum(1 for s in shares if s > 0)
        maximum = None if spread is None else max(minimum, 1) + spread
        total = max(minimum * active, 1) + extra
        if maximum is not None:
            total = min(total, maximum * active)
        result = apportion(shares, total, minimum=minimum, maximum=maximum)
        assert one_by_one(shares, total, minimum, maximum) == list(result.weights)
        assert total == sum(result.weights)
        for s, w in zip(shares, result.weights, strict=True):
            if s == 0:
                assert 0 == w
            else:
                assert minimum <= w <= (maximum if maximum is not None else total)

    @settings(max_examples=100, deadline=None)
    @given(shares=share_lists, house=st.integers(12, 200))
    def test_house_monotone(self, shares: list[float], house: int) -> None:
        """A larger house never takes weight away from a node (no Alabama paradox)."""
        small = apportion(shares, house, minimum=1).weights
        large = apportion(shares, house + 1, minimum=1).weights
        assert all(a <= b for a, b in zip(small, large, strict=True))

    @pytest.mark.parametrize(
        ("shares", "total", "kwargs", "match"),
        [
            ([], 5, {}, "empty"),
            ([0.0, 0.0], 5, {}, "positive"),
            ([0.5, -0.1], 5, {}, r"shares\[1\]"),
            ([0.5, math.nan], 5, {}, r"shares\[1\]"),
            ([0.5, 0.5], 1, {"minimum": 1}, "total"),
            ([0.5, 0.5], 9, {"maximum": 4}, "total"),
            ([0.5, 0.5], 5, {"minimum": -1}, "minimum"),
            ([0.5, 0.5], 5, {"minimum": 3, "maximum": 2}, "maximum"),
        ],
    )
    def test_bad_input(
        self, shares: list[float], total: int, kwargs: dict[str, int], match: str
    ) -> None:
        """Bad shares, bounds or totals raise ValueError naming the argument."""
        with pytest.raises(ValueError, match=match):
            apportion(shares, total, **kwargs)


class TestWeightsFor:
    @settings(max_examples=150, deadline=None)
    @given(shares=share_lists, target=st.sampled_from(TARGETS))
    def test_invariants(self, shares: list[float], target: str) -> None:
        """Weights are in range, 0 only for share 0, realized shares sum to 1, and monotone."""
        result = weights_for(target, shares)
        low, high = WEIGHT_RANGES[target]
        for s, w in zip(shares, result.weights, strict=True):
            assert low <= w <= high
            assert (0 == w) == (0 == s)
        assert pytest.approx(1.0) == math.fsum(result.realized)
        pairs = sorted(zip(shares, result.weights, strict=True))
        assert all(a[1] <= b[1] for a, b in itertools.pairwise(pairs))
        expected = max(abs(r - s) for r, s in zip(result.realized, result.ideal, strict=True))
        assert expected == result.max_abs_error

    @settings(max_examples=150, deadline=None)
    @given(shares=share_lists, target=st.sampled_from(("haproxy", "ipvsadm", "keepalived")))
    def test_fixed_divisor_bound(self, shares: list[float], target: str) -> None:
        """The largest share gets the top weight; every other is its scaled share rounded."""
        result = weights_for(target, shares)
        top = HOUSE_TOP[target]
        largest = max(shares)
        assert top == max(result.weights)
        for s, w in zip(shares, result.weights, strict=True):
            if s > 0:
                assert w == 1 or abs(w - s / largest * top) <= 0.5 + 1e-9

    @settings(max_examples=40, deadline=None)
    @given(shares=share_lists)
    def test_nginx_house(self, shares: list[float]) -> None:
        """nginx takes the smallest house within both bounds, else the nearest up to the cap."""
        result = weights_for("nginx", shares)
        active = sum(1 for s in shares if s > 0)
        cap = max(NGINX_MAX_HOUSE, NGINX_HOUSE_PER_NODE * active)
        scores = {h: nginx_score(apportion(shares, h, minimum=1)) for h in range(active, cap + 1)}
        good = [h for h, score in scores.items() if score == (1.0, 1.0)]
        if good:
            assert min(good) == result.total
            assert result.max_abs_error <= NGINX_TOLERANCE
            assert result.max_rel_error <= NGINX_REL_TOLERANCE
        else:
            assert min(scores.values()) == nginx_score(result)

    def test_nginx_tolerance_on_comparable_nodes(self) -> None:
        """On 300 seeded pools of 2-12 nodes within 4x of each other, nginx meets both bounds."""
        rng = np.random.default_rng(11)
        for _ in range(300):
            shares = rng.uniform(0.5, 2.0, int(rng.integers(2, 13))).tolist()
            result = weights_for("nginx", shares)
            assert result.max_abs_error <= NGINX_TOLERANCE, shares
            assert result.max_rel_error <= NGINX_REL_TOLERANCE, shares

    def test_nginx_small_weights(self) -> None:
        """Simple ratios give the smallest weights that express them exactly."""
        assert (1, 1, 2) == weights_for("nginx", [0.25, 0.25, 0.5]).weights
        assert (3, 2) == weights_for("nginx", [0.6, 0.4]).weights

    def test_haproxy_example(self) -> None:
        """A node at half the largest share gets 128 of 256; a tiny one keeps weight 1."""
        assert (128, 0, 256, 1) == weights_for("haproxy", [0.25, 0.0, 0.5, 0.001]).weights

    def test_unknown_target(self) -> None:
        """An unknown target is a ValueError naming it."""
        with pytest.raises(ValueError, match="target"):
            weights_for("envoy", [1.0])
