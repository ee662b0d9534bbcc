"""
The fleet MILP against brute-force enumeration on small catalogues, and its answers checked
against every loss they must survive.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capplan.errors import InfeasibleError
from capplan.plan.fleet import (
    HOURS_PER_MONTH,
    FleetPlan,
    FleetProblem,
    KindOffer,
    Policy,
    solve_fleet,
    surviving,
)

ZONES = ("a", "b", "c")


def brute_force(problem: FleetProblem, most: int) -> float:
    """
    The least monthly cost of a one-month problem over every count 0…most per cell, under the
    same rules (spot share by capacity; n_plus as the loss of n nodes of the largest kind).
    """
    policy = problem.policy
    cells = []
    for kind in problem.kinds:
        base = policy.price_model if policy.price_model in kind.prices else "on_demand"
        for zone in kind.zones:
            cells.append((kind, zone, base))
            if policy.max_spot_share > 0 and "spot" in kind.prices:
                cells.append((kind, zone, "spot"))
    grid = np.array(list(itertools.product(range(most + 1), repeat=len(cells))), dtype=float)
    cap = np.array([k.capacity_rps for k, _, _ in cells])
    price = np.array([k.prices[p] for k, _, p in cells]) * HOURS_PER_MONTH
    need = problem.demand[0] / policy.target_utilization
    total = grid @ cap
    ok = total >= need - 1e-9
    if policy.survive_zone:
        for zone in problem.zones:
            keep = np.array([z != zone for _, z, _ in cells], dtype=float)
            ok &= grid @ (cap * keep) >= need - 1e-9
    if policy.n_plus:
        largest = np.max(np.where(grid > 0, cap, 0.0), axis=1)
        ok &= total - policy.n_plus * largest >= need - 1e-9
    if policy.max_spot_share > 0:
        spot = np.array([p == "spot" for _, _, p in cells], dtype=float)
        ok &= grid @ (cap * spot) <= policy.max_spot_share * total + 1e-9
    if not ok.any():
        return math.inf
    return float(np.min(grid[ok] @ price))


def assert_serves(plan: FleetPlan, problem: FleetProblem) -> None:
    """Every month's fleet serves its demand in every loss, exactly (the N largest nodes)."""
    caps = {k.name: k.capacity_rps for k in problem.kinds}
    policy = problem.policy
    previous: dict[tuple[str, str, str], int] = {}
    for month in plan.months:
        nodes = [
            (zone, caps[kind]) for (kind, zone, _), n in month.counts.items() for _ in range(n)
        ]
        for scenario, remaining in surviving(nodes, problem.zones, policy):
            assert month.demand_rps <= policy.target_utilization * remaining + 1e-6, (
                month.month,
                scenario,
            )
        spot = sum(caps[k] * n for (k, _, p), n in month.counts.items() if p == "spot")
        assert spot <= policy.max_spot_share * sum(c for _, c in nodes) + 1e-6
        for key, n in previous.items():
            assert month.counts.get(key, 0) >= n, "a node was removed"
        previous = dict(month.counts)


def catalogue(draw: st.DrawFn, n_kinds: int, zones: tuple[str, ...]) -> tuple[KindOffer, ...]:
    kinds = []
    for i in range(n_kinds):
        capacity = draw(st.sampled_from([100.0, 150.0, 200.0, 300.0, 400.0]))
        od = draw(st.sampled_from([0.05, 0.08, 0.1, 0.15, 0.2]))
        spot = draw(st.sampled_from([0.02, 0.03, 0.05]))
        where = draw(st.lists(st.sampled_from(zones), min_size=1, max_size=len(zones), unique=True))
        kinds.append(
            KindOffer(f"k{i}", capacity, {"on_demand": od, "spot": spot}, tuple(sorted(where)))
        )
    return tuple(kinds)


@st.composite
def small_problems(draw: st.DrawFn) -> FleetProblem:
    spot = draw(st.booleans())
    zones = ZONES[: draw(st.integers(2, 3))] if not spot else ZONES[:2]
    kinds = catalogue(draw, 2 if spot or len(zones) == 3 else 3, zones)
    policy = Policy(
        target_utilization=draw(st.sampled_from([0.5, 0.7, 0.9])),
        n_plus=draw(st.integers(0, 2)),
        survive_zone=draw(st.booleans()),
        max_spot_share=draw(st.sampled_from([0.2, 0.5])) if spot else 0.0,
    )
    demand = draw(st.sampled_from([50.0, 120.0, 250.0, 400.0]))
    return FleetProblem(kinds, zones, (demand,), {}, policy)


class TestAgainstBruteForce:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(small_problems())
    def test_same_optimal_cost(self, problem: FleetProblem) -> None:
        """On 2–3 kinds × 2–3 zones, the MILP's cost is the enumeration's least cost."""
        most = 5 if problem.policy.max_spot_share > 0 else 4
        best = brute_force(problem, most)
        try:
            plan = solve_fleet(problem)
        except InfeasibleError:
            assert math.isinf(best)
            return
        assert_serves(plan, problem)
        cost = plan.months[0].cost_per_month
        if all(n <= most for n in plan.months[0].counts.values()):
            assert cost == pytest.approx(best, rel=1e-4)
        else:  # the optimum lies beyond the enumeration's grid: it can only be cheaper
            assert cost <= best * (1 + 1e-4)


def test_survive_zone_needs_two_zones() -> None:
    """Kinds all in one zone cannot survive its loss: exit 5 territory, saying why."""
    kinds = (KindOffer("k", 100.0, {"on_demand": 0.1}, ("a",)),)
    problem = FleetProblem(kinds, ("a", "b"), (100.0,), {}, Policy(survive_zone=True))
    with pytest.raises(InfeasibleError, match="after losing zone a the fleet cannot grow"):
        solve_fleet(problem)


class TestHorizon:
    def problem(self, policy: Policy) -> FleetProblem:
        kinds = (
            KindOffer("small", 100.0, {"on_demand": 0.05, "spot": 0.02}, ("a", "b")),
            KindOffer("large", 450.0, {"on_demand": 0.2, "spot": 0.07}, ("a", "b", "c")),
        )
        demand = tuple(300.0 * 1.1**m for m in range(1, 7))
        return FleetProblem(kinds, ZONES, demand, {("small", "a"): 2, ("small", "b"): 1}, policy)

    @pytest.mark.parametrize(
        "policy",
        [
            Policy(),
            Policy(n_plus=1),
            Policy(survive_zone=True),
            Policy(n_plus=1, survive_zone=True, max_spot_share=0.3),
        ],
    )
    def test_every_method_grows_from_today_and_serves(self, policy: Policy) -> None:
        """
        Rolling and whole-horizon plans both grow from today's pool and serve every month; the
        whole-horizon program (proven here) is never dearer, and auto returns the cheaper.
        """
        problem = self.problem(policy)
        rolling = solve_fleet(problem, method="rolling")
        whole = solve_fleet(problem, method="horizon")
        auto = solve_fleet(problem)
        for plan in (rolling, whole, auto):
            assert_serves(plan, problem)
            first = plan.months[0].counts
            assert first.get(("small", "a", "on_demand"), 0) >= 2
            assert first.get(("small", "b", "on_demand"), 0) >= 1
        assert whole.optimal
        assert whole.total_cost <= rolling.total_cost * (1 + 1e-4)
        assert min(rolling.total_cost, whole.total_cost) == auto.total_cost
        assert auto.optimal

    def test_added_is_the_difference(self) -> None:
        """Each month's additions are its counts minus last month's (today's for month 1)."""
        problem = self.problem(Policy(n_plus=1))
        plan = solve_fleet(problem)
        before = {("small", "a", "on_demand"): 2, ("small", "b", "on_demand"): 1}
        for month in plan.months:
            for key, n in month.counts.items():
                assert n - before.get(key, 0) == month.added.get(key, 0)
            before = dict(month.counts)

    @pytest.mark.parametrize("policy", [Policy(n_plus=1), Policy(max_spot_share=0.3)])
    def test_without_zone_survival_nodes_are_spread_over_their_kinds_zones(
        self, policy: Policy
    ) -> None:
        """
        Solved with zones set apart, then placed: today's nodes stay, additions go only to
        the kind's zones, a kind's nodes of one price stay within one of each other across its
        zones, and counts never fall from month to month.
        """
        problem = self.problem(policy)
        plan = solve_fleet(problem)
        assert plan.optimal
        assert_serves(plan, problem)
        zones_of = {kind.name: kind.zones for kind in problem.kinds}
        before: dict[tuple[str, str, str], int] = {}
        for month in plan.months:
            assert month.counts.get(("small", "a", "on_demand"), 0) >= 2
            for (kind, zone, _price), n in month.added.items():
                assert zone in zones_of[kind], (kind, zone, n)
            for key, n in month.counts.items():
                assert n >= before.get(key, 0)
            for kind, zones in zones_of.items():
                for price in ("on_demand", "spot"):
                    counts = [month.counts.get((kind, z, price), 0) for z in zones]
                    start = [problem.current.get((kind, z), 0) for z in zones]
                    if price == "on_demand" and sum(counts) > sum(start):
                        # additions fill the emptiest zone first: no zone lags by 2 or more
                        assert max(counts) - min(counts) <= max(1, max(start) - min(start))
                    elif price == "spot":
                        assert max(counts) - min(counts) <= 1
            before = dict(month.counts)

    def test_binding_names_the_loss(self) -> None:
        """With zone survival on a two-zone kind, a zone loss binds and is said in words."""
        kinds = (KindOffer("k", 100.0, {"on_demand": 0.1}, ("a", "b")),)
        problem = FleetProblem(kinds, ("a", "b"), (350.0,), {}, Policy(survive_zone=True))
        plan = solve_fleet(problem)
        month = plan.months[0]
        # 350 / 0.7 = 500 rps after losing a zone: 5 nodes in each zone
        assert {("k", "a", "on_demand"): 5, ("k", "b", "on_demand"): 5} == month.counts
        assert month.binding.text in ("loss of zone a", "loss of zone b")
        assert month.binding.spare_rps == pytest.approx(0.0, abs=1e-9)


class TestDominatedKinds:
    A = KindOffer("a-big", 300.0, {"on_demand": 0.10}, ("a", "b", "c"))
    B = KindOffer("b-small", 200.0, {"on_demand": 0.15}, ("a", "b"))  # A is larger, cheaper
    C = KindOffer("c-cheap", 100.0, {"on_demand": 0.02}, ("c",))  # cheaper per node: kept

    def test_which_kinds_are_set_aside(self) -> None:
        from capplan.plan.fleet import _dominated

        kinds = (self.A, self.B, self.C, self.A)  # the second A equals the first
        problem = FleetProblem(kinds, ZONES, (500.0,), {}, Policy(n_plus=1, survive_zone=True))
        assert _dominated(problem) == {1, 3}
        # n + 2: the program's "2 × the largest kind" rows could tell them apart
        assert _dominated(FleetProblem(kinds, ZONES, (500.0,), {}, Policy(n_plus=2))) == set()

    def test_same_cost_as_with_them_and_none_added(self) -> None:
        """
        Today's nodes of a dominated kind stay; none is added; the cost is the enumeration's
        (which knows nothing of dominance).
        """
        policy = Policy(n_plus=1, survive_zone=True)
        problem = FleetProblem((self.A, self.B, self.C), ZONES, (600.0,), {}, policy)
        plan = solve_fleet(problem)
        assert_serves(plan, problem)
        assert not any(n for (kind, _, _), n in plan.months[0].counts.items() if kind == "b-small")
        # (6 c-cheap nodes in zone c: the grid must reach 6)
        assert plan.months[0].cost_per_month == pytest.approx(brute_force(problem, 7), rel=1e-4)
        today = {("b-small", "a"): 2}
        grown = FleetProblem((self.A, self.B, self.C), ZONES, (600.0, 900.0), today, policy)
        plan = solve_fleet(grown)
        assert_serves(plan, grown)
        for month in plan.months:
            small = {k: n for k, n in month.counts.items() if k[0] == "b-small" and n}
            assert small == {("b-small", "a", "on_demand"): 2}


class TestCoveredCellsAndAlikeZones:
    """
    A dear node that cheaper ones of the same zone out-hold is never added (``_covered_cells``),
    and zones alike are ordered: the optimum is the enumeration's, which knows neither.
    """

    BIG = KindOffer("big", 968.0, {"on_demand": 0.087}, ("a", "b", "c"))
    SMALL = KindOffer("small", 347.0, {"on_demand": 0.018}, ("a", "b", "c"))
    ODD = KindOffer("odd", 500.0, {"on_demand": 0.05}, ("c",))

    def test_which_cells_are_covered(self) -> None:
        from capplan.plan.fleet import _covered_cells

        problem = FleetProblem((self.BIG, self.SMALL), ZONES, (900.0,), {}, Policy())
        cells = [(k, z, "on_demand") for k in range(2) for z in ZONES]
        price = np.array([0.087] * 3 + [0.018] * 3)
        # three small nodes (1,041 rps, 0.054) hold more than one big one (0.087) for less
        assert _covered_cells(problem, cells, price) == {0, 1, 2}
        dear = np.array([0.087] * 3 + [0.030] * 3)  # three small ones now cost 0.090
        assert _covered_cells(problem, cells, dear) == set()
        two = FleetProblem((self.BIG, self.SMALL), ZONES, (900.0,), {}, Policy(n_plus=2))
        assert _covered_cells(two, cells, price) == set()

    @pytest.mark.parametrize(
        "policy", [Policy(survive_zone=True), Policy(n_plus=1, survive_zone=True)]
    )
    def test_same_cost_as_the_enumeration(self, policy: Policy) -> None:
        problem = FleetProblem((self.BIG, self.SMALL, self.ODD), ZONES, (1500.0,), {}, policy)
        plan = solve_fleet(problem)
        assert_serves(plan, problem)
        assert not any(n for (kind, _, _), n in plan.months[0].counts.items() if kind == "big")
        assert plan.months[0].cost_per_month == pytest.approx(brute_force(problem, 4), rel=1e-4)
