"""
Limits and pool thresholds: queue tails, Little's law, SLO budgets, failure detection and the
N−1 load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import binom

from capplan.models.queueing import mgc_wait
from capplan.models.station_fit import station_capacity
from capplan.optimize.curves import NodeCurve, PoolCurves
from capplan.optimize.thresholds import (
    FALSE_ALARM,
    ForecastMonth,
    Loss,
    NodeThresholdInput,
    ScaleOutForecast,
    ThresholdInputs,
    derive_thresholds,
    fall_for,
    max_fails_for,
    max_slo_load,
)
from capplan.optimize.weights import split_load
from capplan.planfile import Limits, Thresholds


def stations(*params: tuple[float, float, float]) -> PoolCurves:
    return PoolCurves([NodeCurve(station=p) for p in params])


def mmc_mean_response(rate: float, servers: int, service_s: float) -> float:
    """
    M/M/c mean response time by the textbook Erlang C formula.
    """
    a = rate * service_s
    top = a**servers / math.factorial(servers) * servers / (servers - a)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(servers)) + top)
    return service_s + p_wait * service_s / (servers - a)


def assert_reasons_ok(reasons: dict[str, str]) -> None:
    for key, text in reasons.items():
        assert text.isprintable(), key
        assert 0 < len(text) <= 500, key


class TestLimits:
    def test_limits_on_mmc(self) -> None:
        """On an M/M/2 station: the queue-tail cap, Little's law and the SLO budget, by hand."""
        # M/M/2, 100 ms service: at 15 rps a = 1.5, P(wait) = 4.5/7, R = 0.1 + P(wait)·0.1/0.5
        r_cap = 0.1 + 4.5 / 7 * 0.1 / 0.5  # 228.57 ms
        r_plan = 0.1 + 1 / 3 * 0.1 / 1.0  # 133.33 ms at 10 rps
        assert pytest.approx(r_cap) == mmc_mean_response(15.0, 2, 0.1)
        assert pytest.approx(r_plan) == mmc_mean_response(10.0, 2, 0.1)
        inputs = ThresholdInputs(
            pool=stations((2.0, 0.1, 1.0)),
            nodes=(NodeThresholdInput(name="web-1", rate_rps=10.0, capacity_rps=15.0, servers=2),),
            slo_latency_ms=500.0,
            headroom=0.2,
            error_budget=0.001,
        )
        result = derive_thresholds(inputs)
        limits = result.limits[0]

        # M/M/2/K: the M/M/2 chain cut at K, π(n) ∝ a^n / (2! 2^(n-2)) for n >= 2; the share
        # refused is π(K) (PASTA).  The least K with it <= 0.0005:
        def refused(k: int) -> float:
            weights = [1.5**n / math.factorial(n) for n in range(2)]
            weights += [1.5**n / (2 * 2 ** (n - 2)) for n in range(2, k + 1)]
            return weights[-1] / sum(weights)

        cap = next(k for k in range(2, 1000) if refused(k) <= 0.0005)
        assert 23 == cap
        assert cap == limits["max_conns"]
        assert "min_conns" not in limits  # HAProxy's minconn would hold the node back
        # HAProxy sends the station its slots and one to hand over, and queues the rest itself
        assert 3 == limits["max_active"]
        assert "maxqueue" not in limits
        assert "left out" in result.node_reasons[0]["maxqueue"]
        assert cap == limits["uthreshold"]
        assert math.ceil(0.75 * cap) == limits["lthreshold"]
        assert 30 == limits["slowstart_s"]
        assert math.floor(500 - r_plan * 1e3) == result.pool["queue_timeout_ms"]
        assert "max_conns 23 = 2 slots + 21 waiting" in result.node_reasons[0]["max_conns"]

        # Without a slot count (a model that is not a station): Little's law with the
        # headroom as margin, and the queue the SLO budget left at capacity can absorb
        inputs = ThresholdInputs(
            pool=stations((2.0, 0.1, 1.0)),
            nodes=(NodeThresholdInput(name="web-1", rate_rps=10.0, capacity_rps=15.0),),
            slo_latency_ms=500.0,
            headroom=0.2,
        )
        result = derive_thresholds(inputs)
        limits = result.limits[0]
        assert math.ceil(15.0 * r_cap * 1.2) == limits["max_conns"]  # ⌈4.11⌉ = 5
        assert "max_active" not in limits
        assert "maxqueue" not in limits  # it would queue requests at this one node
        assert math.ceil(0.75 * 5) == limits["lthreshold"]

    @pytest.mark.parametrize(
        ("station", "expected"),
        [
            ((8.0, 0.02, 1.0), 9),  # 8 × 1 ms / 20 ms = 0.4 completions in a hand-over
            ((32.0, 0.002, 1.0), 32 + 16),  # 32 × 1 ms / 2 ms = 16
            ((32.0, 0.003, 1.0), 32 + 11),  # 10.7, rounded up
        ],
    )
    def test_max_active_covers_the_hand_over(
        self, station: tuple[float, float, float], expected: int
    ) -> None:
        """max_active: the slots and what the node completes while the balancer hands over."""
        servers = int(station[0])
        capacity = 0.9 * servers / station[1]
        node = NodeThresholdInput(
            rate_rps=0.5 * capacity,
            capacity_rps=capacity,
            servers=servers,
            station=station,
            name="n",
        )
        result = derive_thresholds(ThresholdInputs(pool=stations(station), nodes=(node,)))
        assert expected == result.limits[0]["max_active"]
        assert result.limits[0]["max_active"] <= result.limits[0]["max_conns"]
        assert f"+ {expected - servers} waiting at the node" in result.node_reasons[0]["max_active"]

    def test_max_active_with_round_robin_rarely_binds(self) -> None:
        """
        With round robin a node at max_active is skipped, which breaks the interleaving:
        max_active is the least c + k (k ≥ 1) that at most 1% of the node's requests find at its
        cap, its arrivals as even as its share of the caps (ca² = share); the M/G/c queue's law
        P(N = c + j) = C·(1 − r)·rʲ, r = λ/(λ + θ), cut at K, refuses P(N = K)/P(N ≤ K).
        """
        params = [(2.0, 0.02, 0.0004), (8.0, 0.02, 0.0004)]
        caps = [95.0, 380.0]
        nodes = tuple(
            NodeThresholdInput(
                rate_rps=0.7 * cap, capacity_rps=cap, servers=int(p[0]), station=p, name=f"n{i}"
            )
            for i, (p, cap) in enumerate(zip(params, caps, strict=True))
        )
        pool = stations(*params)
        turn = derive_thresholds(ThresholdInputs(pool=pool, nodes=nodes, round_robin=True))
        least = derive_thresholds(ThresholdInputs(pool=pool, nodes=nodes))
        assert [limits["max_active"] for limits in least.limits] == [3, 9]
        planned = np.array(caps) * 0.8  # the default headroom, 20%
        for i, (c, s, v) in enumerate(params):
            p_wait, theta = mgc_wait(planned[i], c, s, v, arrival_scv=planned[i] / planned.sum())
            r = planned[i] / (planned[i] + float(theta))

            def refused(k: int, p_wait: float = float(p_wait), r: float = r) -> float:
                return p_wait * (1 - r) * r**k / (1 - p_wait * r ** (k + 1))

            active = turn.limits[i]["max_active"]
            k = active - int(c)
            assert k >= 2  # more than the hand-over buffer
            assert refused(k) <= 0.01 < refused(k - 1)
            assert "round robin" in turn.node_reasons[i]["max_active"]
            assert_reasons_ok(turn.node_reasons[i])

    def test_queue_tail_from_an_agreeing_station(self) -> None:
        """
        A node whose chosen curve is not a station but whose slots come from its M/G/c fit:
        max_conns is that station's queue tail at capacity, as for a station node, not
        Little's law (identical lab nodes got 14 and 46 before).
        """

        @dataclass(frozen=True)
        class Hyperbola:
            saturation: float = 400.0

            def mean(self, rate: np.ndarray) -> np.ndarray:
                return np.asarray(0.02 + 0.5 / (self.saturation - rate))

            def quantile(self, rate: np.ndarray, q: float) -> np.ndarray:
                return np.asarray(-math.log(1 - q) * self.mean(rate))

        station = (8.0, 0.02, 1.0)
        pool = PoolCurves([NodeCurve(curve=Hyperbola())])
        node = NodeThresholdInput(
            name="n3",
            rate_rps=250.0,
            capacity_rps=350.0,
            servers=8,
            station=station,
            servers_from="its mgc fit",
        )
        result = derive_thresholds(ThresholdInputs(pool=pool, nodes=(node,)))
        tail = stations(station).in_system_limit(np.array([350.0]), 0.0005)[0]
        assert int(tail) == result.limits[0]["max_conns"]
        assert "the M/G/c is its mgc fit" in result.node_reasons[0]["max_conns"]
        without = NodeThresholdInput(name="n3", rate_rps=250.0, capacity_rps=350.0)
        result = derive_thresholds(ThresholdInputs(pool=pool, nodes=(without,)))
        assert "Little's law" in result.node_reasons[0]["max_conns"]

    def test_cap_refuses_at_most_the_budget(self) -> None:
        """Simulated M/M/4 at capacity: max_conns refuses about the budget; two less, more."""
        servers, service, rate, budget = 4, 0.05, 70.0, 0.002

        def refused_share(cap: int, arrivals: int = 300_000) -> float:
            # An M/M/c/K loss system: an arrival that finds `cap` in the node is refused.
            rng = np.random.default_rng(3)
            n = refused = 0
            for gap in rng.exponential(1 / rate, arrivals):
                while n > 0:  # departures within the gap, one at a time (memoryless service)
                    d = rng.exponential(service / min(n, servers))
                    if d > gap:
                        break
                    gap -= d
                    n -= 1
                if n >= cap:
                    refused += 1
                else:
                    n += 1
            return refused / arrivals

        inputs = ThresholdInputs(
            pool=stations((float(servers), service, 1.0)),
            nodes=(NodeThresholdInput(rate_rps=rate, capacity_rps=rate, servers=servers),),
            error_budget=2 * budget,
        )
        cap = derive_thresholds(inputs).limits[0]["max_conns"]
        assert refused_share(cap) <= 1.3 * budget  # ~600 refusals expected at most
        assert refused_share(cap - 3) > budget  # not loose: ρ = 0.875, each step less ×1/ρ

    def test_slots_floor_max_conns(self) -> None:
        """max_conns is never below a station's slot count."""
        inputs = ThresholdInputs(
            pool=stations((16.0, 0.01, 1.0)),
            nodes=(NodeThresholdInput(name="web-1", rate_rps=1.0, capacity_rps=2.0, servers=16),),
        )
        result = derive_thresholds(inputs)
        limits, reasons = result.limits[0], result.node_reasons[0]
        assert 16 == limits["max_conns"]
        assert "16 slots" in reasons["max_conns"]

    @settings(max_examples=80, deadline=None)
    @given(
        servers=st.integers(1, 64),
        service_ms=st.floats(0.5, 500.0),
        load=st.floats(0.0, 0.99),
        planned=st.floats(0.0, 1.0),
        scv=st.floats(0.1, 2.0),
        headroom=st.floats(0.0, 0.9),
        slowstart=st.integers(0, 600),
    )
    def test_plan_accepts_limits(
        self,
        servers: int,
        service_ms: float,
        load: float,
        planned: float,
        scv: float,
        headroom: float,
        slowstart: int,
    ) -> None:
        """Limits are ints the plan accepts: lthreshold < uthreshold, max_conns ≤ 65535."""
        service = service_ms / 1e3
        capacity = load * servers / service
        node = NodeThresholdInput(
            name="n", rate_rps=planned * capacity, capacity_rps=capacity, servers=servers
        )
        inputs = ThresholdInputs(
            pool=stations((float(servers), service, scv)),
            nodes=(node,),
            headroom=headroom,
            slowstart_s=slowstart,
        )
        result = derive_thresholds(inputs)
        limits, reasons = result.limits[0], result.node_reasons[0]
        Limits(**limits)
        assert all(isinstance(v, int) for v in limits.values())
        if "lthreshold" in limits:
            assert 1 <= limits["lthreshold"] < limits["uthreshold"]
        else:
            assert limits["uthreshold"] < 2
        assert_reasons_ok(reasons)


class TestQueueTimeout:
    def test_pool_as_one_queue(self) -> None:
        """
        Two exponential nodes of 2 and 4 slots at 100 ms behind one queue are an M/M/6: the
        timeout is the wait it exceeds with probability 0.0005 (half the error budget) at the
        largest rate meeting p99 ≤ 500 ms, both by the textbook formulas.
        """
        nodes = (
            NodeThresholdInput(
                name="a", rate_rps=10.0, capacity_rps=15.0, servers=2, station=(2, 0.1, 1.0)
            ),
            NodeThresholdInput(
                name="b", rate_rps=20.0, capacity_rps=30.0, servers=4, station=(4, 0.1, 1.0)
            ),
        )
        inputs = ThresholdInputs(
            pool=stations((2.0, 0.1, 1.0), (4.0, 0.1, 1.0)),
            nodes=nodes,
            slo_latency_ms=500.0,
            error_budget=0.001,
        )
        result = derive_thresholds(inputs)
        mu, c = 10.0, 6

        def erlang_c(rate: float) -> float:
            a = rate / mu
            top = a**c / math.factorial(c) * c / (c - a)
            return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)

        def response_sf(rate: float, t: float) -> float:  # Gross et al. §2.3.1
            theta = c * mu - rate
            return math.exp(-mu * t) + erlang_c(rate) * mu * (
                math.exp(-theta * t) - math.exp(-mu * t)
            ) / (mu - theta)

        top = brentq(lambda r: response_sf(r, 0.5) - 0.01, 1.0, 59.999, xtol=1e-12)
        wait = math.log(erlang_c(top) / 0.0005) / (c * mu - top)
        assert math.ceil(wait * 1e3) == result.pool["queue_timeout_ms"]
        why = result.pool_reasons["queue_timeout_ms"]
        assert "6 slots fed by one queue" in why
        assert f"{top:.4g} rps" in why

    def test_without_every_station(self) -> None:
        """A node with traffic and no station: the SLO less the slowest mean response."""
        nodes = (
            NodeThresholdInput(
                name="a", rate_rps=10.0, capacity_rps=15.0, servers=2, station=(2, 0.1, 1.0)
            ),
            NodeThresholdInput(name="b", rate_rps=20.0, capacity_rps=30.0),
        )
        inputs = ThresholdInputs(
            pool=stations((2.0, 0.1, 1.0), (4.0, 0.1, 1.0)), nodes=nodes, slo_latency_ms=500.0
        )
        result = derive_thresholds(inputs)
        slowest = max(mmc_mean_response(10.0, 2, 0.1), mmc_mean_response(20.0, 4, 0.1))
        assert math.floor(500 - slowest * 1e3) == result.pool["queue_timeout_ms"]
        assert "slowest mean response" in result.pool_reasons["queue_timeout_ms"]


class TestDetection:
    @given(p=st.floats(0.0, 1.0), q=st.floats(0.0, 1.0))
    def test_fall_monotone(self, p: float, q: float) -> None:
        """A higher error rate never gives a smaller fall; fall stays in [2, 10]."""
        low, high = sorted((p, q))
        assert fall_for(low) <= fall_for(high)
        assert 2 <= fall_for(p) <= 10

    @given(p=st.floats(1e-9, 0.25))
    def test_fall_bound(self, p: float) -> None:
        """Up to p = 0.25, p^fall ≤ 1e-6 and fall − 1 would not do (unless at the floor 2)."""
        fall = fall_for(p)
        assert p**fall <= FALSE_ALARM * (1 + 1e-9)
        if fall > 2:
            assert p ** (fall - 1) > FALSE_ALARM

    @pytest.mark.parametrize(("p", "expected"), [(0.0, 2), (0.001, 2), (0.01, 3), (0.1, 6)])
    def test_fall_examples(self, p: float, expected: int) -> None:
        """fall = ⌈log 1e-6 / log p⌉ at least 2: 0.01 → 3, 0.1 → 6."""
        assert expected == fall_for(p)

    @settings(max_examples=60, deadline=None)
    @given(rate=st.floats(0.1, 2000.0), p=st.floats(1e-6, 0.2), window=st.floats(1.0, 60.0))
    def test_max_fails_is_least_k(self, rate: float, p: float, window: float) -> None:
        """max_fails is the least k with P(Binomial(n, p) ≥ k) ≤ 1e-6."""
        k = max_fails_for(rate, p, window)
        n = math.ceil(rate * window)
        assert binom.sf(k - 1, n, p) <= FALSE_ALARM
        if k > 1:
            assert binom.sf(k - 2, n, p) > FALSE_ALARM

    @settings(max_examples=40, deadline=None)
    @given(rate=st.floats(1.0, 2000.0), p=st.floats(0.0, 0.2), q=st.floats(0.0, 0.2))
    def test_max_fails_monotone(self, rate: float, p: float, q: float) -> None:
        """A higher error rate never gives a smaller max_fails."""
        low, high = sorted((p, q))
        assert max_fails_for(rate, low, 10.0) <= max_fails_for(rate, high, 10.0)

    @settings(max_examples=60, deadline=None)
    @given(
        p=st.floats(0.0, 0.5),
        detection=st.floats(0.5, 120.0),
        interval=st.floats(0.5, 30.0),
        rate=st.floats(0.5, 380.0),
    )
    def test_detection_bound(
        self, p: float, detection: float, interval: float, rate: float
    ) -> None:
        """fall × interval ≤ detection_s, or the reason says it cannot; interval ≥ 0.5 s."""
        inputs = ThresholdInputs(
            pool=stations((4.0, 0.01, 1.0)),
            nodes=(NodeThresholdInput(name="n", rate_rps=rate, capacity_rps=390.0, error_rate=p),),
            detection_s=detection,
            check_interval_s=interval,
        )
        result = derive_thresholds(inputs)
        t = result.pool
        assert 0.5 <= t["check_interval_s"] <= interval
        assert 2 == t["rise"]
        if t["fall"] * t["check_interval_s"] > detection + 1e-9:
            assert "cannot" in result.pool_reasons["check_interval_s"]
        max_fails = t["max_fails"]
        if max_fails / rate > detection:
            assert "cannot" in result.pool_reasons["max_fails"]
        Thresholds.model_validate(t)
        assert_reasons_ok(result.pool_reasons)

    def test_impossible_detection_is_said(self) -> None:
        """At 30% errors fall is 10, and 10 × 0.5 s cannot fit 3 s: the reason says so."""
        inputs = ThresholdInputs(
            pool=stations((4.0, 0.01, 1.0)),
            nodes=(
                NodeThresholdInput(name="n", rate_rps=100.0, capacity_rps=390.0, error_rate=0.3),
            ),
            detection_s=3.0,
        )
        result = derive_thresholds(inputs)
        assert 10 == result.pool["fall"]
        assert 0.5 == result.pool["check_interval_s"]
        assert "cannot" in result.pool_reasons["check_interval_s"]
        assert "above 1e-06" in result.pool_reasons["fall"]


class TestScaleOut:
    def test_identical_nodes(self) -> None:
        """Four identical nodes: the trigger is three nodes' capacity at the SLO (within 1%)."""
        c, s, v = 4.0, 0.02, 0.8
        capacity = float(
            station_capacity(np.array([c]), np.array([s]), np.array([v]), 0.25, 0.99)[0]
        )
        nodes = tuple(
            NodeThresholdInput(
                name=f"web-{i}", rate_rps=0.5 * capacity, capacity_rps=capacity, servers=4
            )
            for i in range(4)
        )
        result = derive_thresholds(ThresholdInputs(pool=stations(*[(c, s, v)] * 4), nodes=nodes))
        trigger = result.pool["scale_out_load_rps"]
        assert pytest.approx(3 * capacity, rel=0.01) == trigger
        assert pytest.approx(0.85 * trigger) == result.pool["alert_load_rps"]
        assert "web-0" in result.pool_reasons["scale_out_load_rps"]
        assert_reasons_ok(result.pool_reasons)

    def test_matches_percentile_split(self) -> None:
        """On unequal nodes the N−1 load is where the best percentile split reaches the SLO."""
        pool = stations((2.0, 0.01, 0.5), (8.0, 0.03, 1.2))
        load = max_slo_load(pool, None, 250.0, 0.99)
        below = split_load(pool, pool.saturation, 0.995 * load, objective="percentile")
        above = split_load(pool, pool.saturation, 1.005 * load, objective="percentile")
        assert below.quantile_ms <= 250.0 < above.quantile_ms

    def test_caps_bind(self) -> None:
        """Caps below the SLO capacities bound the N−1 load at their sum."""
        pool = stations((4.0, 0.02, 1.0), (4.0, 0.02, 1.0))
        assert pytest.approx(100.0) == max_slo_load(pool, np.array([60.0, 40.0]), 250.0, 0.99)

    def test_alert_from_caps(self) -> None:
        """With the split's caps, the alert is what the N−1 pool carries within its headroom."""
        c, s, v = 4.0, 0.02, 0.8
        capacity = float(
            station_capacity(np.array([c]), np.array([s]), np.array([v]), 0.25, 0.99)[0]
        )
        nodes = tuple(
            NodeThresholdInput(rate_rps=0.5 * capacity, capacity_rps=capacity) for _ in range(3)
        )
        inputs = ThresholdInputs(
            pool=stations(*[(c, s, v)] * 3), nodes=nodes, caps=(0.8 * capacity,) * 3
        )
        result = derive_thresholds(inputs)
        assert pytest.approx(1.6 * capacity, rel=1e-5) == result.pool["alert_load_rps"]
        assert pytest.approx(2 * capacity, rel=0.01) == result.pool["scale_out_load_rps"]
        assert "node #0" in result.pool_reasons["alert_load_rps"]

    def test_single_node(self) -> None:
        """A single node has no N−1 pool: no trigger, and the reason says why."""
        inputs = ThresholdInputs(
            pool=stations((4.0, 0.02, 1.0)),
            nodes=(NodeThresholdInput(name="web-1", rate_rps=50.0, capacity_rps=150.0),),
        )
        result = derive_thresholds(inputs)
        assert "scale_out_load_rps" not in result.pool
        assert "single node" in result.pool_reasons["scale_out_load_rps"]

    def test_overloaded_pool_is_told(self) -> None:
        """A planned load above the trigger says to add a node now."""
        c, s, v = 4.0, 0.02, 1.0
        nodes = tuple(
            NodeThresholdInput(name=f"n{i}", rate_rps=150.0, capacity_rps=180.0) for i in range(2)
        )
        result = derive_thresholds(ThresholdInputs(pool=stations(*[(c, s, v)] * 2), nodes=nodes))
        assert "add a node now" in result.pool_reasons["scale_out_load_rps"]


class TestLosses:
    """
    The scale-out trigger after the losses an inventory's ``planning`` asks to survive.
    """

    @staticmethod
    def _pool() -> tuple[PoolCurves, tuple[NodeThresholdInput, ...], list[float]]:
        params = [(2.0, 0.02, 1.0), (4.0, 0.02, 1.0), (8.0, 0.02, 1.0), (8.0, 0.02, 1.0)]
        caps = [
            float(station_capacity(np.array([c]), np.array([s]), np.array([v]), 0.25, 0.99)[0])
            for c, s, v in params
        ]
        nodes = tuple(
            NodeThresholdInput(name=f"n{i}", rate_rps=0.3 * cap, capacity_rps=cap)
            for i, cap in enumerate(caps)
        )
        return stations(*params), nodes, caps

    def test_worst_loss_binds(self) -> None:
        """Zones {n0, n2} and {n1, n3}: the trigger is the weaker zone's survivors' SLO load."""
        pool, nodes, _ = self._pool()
        losses = (Loss("zone a", (0, 2)), Loss("zone b", (1, 3)))
        result = derive_thresholds(ThresholdInputs(pool=pool, nodes=nodes, losses=losses))
        survivors = {
            name: max_slo_load(PoolCurves([pool.nodes[i] for i in keep]), None, 250.0, 0.99)
            for name, keep in (("zone a", (1, 3)), ("zone b", (0, 2)))
        }
        worst = min(survivors, key=lambda k: survivors[k])
        assert worst == "zone b"  # 2 + 8 slots survive it, against 4 + 8 for zone a
        assert pytest.approx(survivors[worst], rel=1e-5) == result.pool["scale_out_load_rps"]
        reason = result.pool_reasons["scale_out_load_rps"]
        assert "without zone b" in reason
        assert "worst of 2 losses" in reason
        assert_reasons_ok(result.pool_reasons)

    def test_two_largest_nodes(self) -> None:
        """n_plus 2 removes both 8-slot nodes: what is left is n0 and n1."""
        pool, nodes, _ = self._pool()
        loss = (Loss("its 2 largest nodes (n2, n3)", (2, 3)),)
        result = derive_thresholds(ThresholdInputs(pool=pool, nodes=nodes, losses=loss))
        left = max_slo_load(PoolCurves(list(pool.nodes[:2])), None, 250.0, 0.99)
        assert pytest.approx(left, rel=1e-5) == result.pool["scale_out_load_rps"]

    def test_no_loss_asked(self) -> None:
        """An empty loss list: the trigger is the whole pool's SLO load."""
        pool, nodes, _ = self._pool()
        result = derive_thresholds(ThresholdInputs(pool=pool, nodes=nodes, losses=()))
        whole = max_slo_load(pool, None, 250.0, 0.99)
        assert pytest.approx(whole, rel=1e-5) == result.pool["scale_out_load_rps"]
        assert "survive no loss" in result.pool_reasons["scale_out_load_rps"]

    def test_losing_everything(self) -> None:
        """A loss that takes every node leaves no trigger, and says so."""
        pool, nodes, _ = self._pool()
        loss = (Loss("zone a", (0, 1, 2, 3)),)
        result = derive_thresholds(ThresholdInputs(pool=pool, nodes=nodes, losses=loss))
        assert "scale_out_load_rps" not in result.pool
        assert "without zone a cannot meet" in result.pool_reasons["scale_out_load_rps"]

    def test_default_is_n_minus_1(self) -> None:
        """No losses given: the same trigger as losing the largest node by name."""
        pool, nodes, _ = self._pool()
        default = derive_thresholds(ThresholdInputs(pool=pool, nodes=nodes))
        explicit = derive_thresholds(
            ThresholdInputs(pool=pool, nodes=nodes, losses=(Loss("n2", (2,)),))
        )
        assert default.pool["scale_out_load_rps"] == explicit.pool["scale_out_load_rps"]
        assert "N−1 redundancy" in default.pool_reasons["scale_out_load_rps"]

    @pytest.mark.parametrize("removed", [(), (4,), (-1,)])
    def test_bad_loss(self, removed: tuple[int, ...]) -> None:
        pool, nodes, _ = self._pool()
        with pytest.raises(ValueError, match=r"loss 'x' must remove nodes among 0\.\.3"):
            ThresholdInputs(pool=pool, nodes=nodes, losses=(Loss("x", removed),))

    def test_forecast_crossing(self) -> None:
        """The capacity plan's forecast: the first month at or above the trigger is named."""
        pool, nodes, _ = self._pool()
        trigger = derive_thresholds(ThresholdInputs(pool=pool, nodes=nodes)).pool[
            "scale_out_load_rps"
        ]
        months = tuple(
            ForecastMonth(f"2027-0{m}-01", trigger * (0.8 + 0.1 * m)) for m in range(1, 5)
        )
        forecast = ScaleOutForecast("high", months, order_by="2027-01-15")
        reason = derive_thresholds(
            ThresholdInputs(pool=pool, nodes=nodes, forecast=forecast)
        ).pool_reasons["scale_out_load_rps"]
        assert "high forecast reaches it in the month from 2027-02-01" in reason
        assert reason.endswith("ordered by 2027-01-15")

        below = ScaleOutForecast("median", months[:1])
        reason = derive_thresholds(
            ThresholdInputs(pool=pool, nodes=nodes, forecast=below)
        ).pool_reasons["scale_out_load_rps"]
        assert "median forecast stays below it until 2027-01-01" in reason


class TestInputs:
    @pytest.mark.parametrize(
        ("node", "match"),
        [
            (NodeThresholdInput(name="web-1", rate_rps=250.0, capacity_rps=150.0), "rate_rps"),
            (NodeThresholdInput(name="web-1", rate_rps=50.0, capacity_rps=200.0), "capacity_rps"),
        ],
    )
    def test_rates_below_saturation(self, node: NodeThresholdInput, match: str) -> None:
        """A rate or capacity at or past the model's saturation is refused, naming the node."""
        with pytest.raises(ValueError, match=f"web-1: {match}"):
            ThresholdInputs(pool=stations((4.0, 0.02, 1.0)), nodes=(node,))

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"rate_rps": -1.0, "capacity_rps": 1.0}, "rate_rps"),
            ({"rate_rps": 1.0, "capacity_rps": math.nan}, "capacity_rps"),
            ({"rate_rps": 1.0, "capacity_rps": 1.0, "error_rate": 1.5}, "error_rate"),
            ({"rate_rps": 1.0, "capacity_rps": 1.0, "servers": 0}, "servers"),
            ({"rate_rps": 1.0, "capacity_rps": 1.0, "station": (2, 0.1, 1.0)}, "needs servers"),
            (
                {"rate_rps": 1.0, "capacity_rps": 1.0, "servers": 2, "station": (2, 0.0, 1.0)},
                "station must be",
            ),
        ],
    )
    def test_bad_node(self, kwargs: dict[str, float], match: str) -> None:
        """Bad node values raise ValueError naming the value."""
        with pytest.raises(ValueError, match=match):
            NodeThresholdInput(name="n", **kwargs)  # type: ignore[arg-type]
