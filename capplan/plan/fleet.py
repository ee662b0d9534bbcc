"""
The cheapest fleet that survives its losses, month by month: a mixed-integer program (pure).

The fleet is a count of nodes per (kind, zone, price model).  A fleet *serves* a load D when, in
every loss it must survive, ``target_utilization`` × the capacity that remains is at least D:

- ``all``: nothing lost;
- ``zone:Z`` (with ``survive_zone``): every node of zone Z lost, for each zone;
- ``nodes:N`` (with ``n_plus = N``): any N nodes lost — the N largest, the worst case.

Each loss is its own scenario (a zone loss and N more nodes at once is not asked for).  Spot
nodes hold at most ``max_spot_share`` of the fleet's capacity.

The plan covers months 1…H.  Nodes are added, never removed, within the horizon: a fleet that
switches kinds from one month to the next is cheap on paper and absurd to run.  Every node but
spot ones is billed at the policy's price model (``on_demand`` or ``reserved``, per hour, 730.5
hours a month); today's nodes too, as their contracts are not in the inventory.

"Any N nodes lost" means the N largest.  For N = 1 the program is exact: one binary per
distinct capacity t and month says whether a kind of capacity t is in the fleet, and the fleet
must serve the load with t lost.  For N > 1 the same rows ask for N × t spare, the loss of N
nodes of the largest kind present — exact when the fleet holds at least N of its largest kind,
which a fleet asked to survive N losses nearly always does, and otherwise on the safe side.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from capplan.errors import InfeasibleError

__all__ = [
    "HOURS_PER_MONTH",
    "METHODS",
    "PRICE_MODELS",
    "Binding",
    "FleetPlan",
    "FleetProblem",
    "KindOffer",
    "MonthFleet",
    "Policy",
    "binding",
    "solve_fleet",
    "surviving",
]

HOURS_PER_MONTH = 365.25 * 24 / 12
PRICE_MODELS = ("on_demand", "reserved", "spot")

#: A node-month's share of the cheapest price, added per node per month as a tie-breaker: of
#: two plans of the same cost, the one with fewer node-months wins.
_TIE = 1e-6

#: Relative optimality gap the solver must prove (HiGHS' default).
MIP_GAP = 1e-4

METHODS = ("auto", "rolling", "horizon")


@dataclass(frozen=True)
class KindOffer:
    """
    A node kind one can buy: its capacity at the SLO, its prices per hour and where it runs.
    """

    name: str
    capacity_rps: float
    prices: Mapping[str, float]  # price model -> per hour; on_demand always present
    zones: tuple[str, ...]
    lead_time_days: float = 0.0


@dataclass(frozen=True)
class Policy:
    """
    What the fleet must survive, and how hard it may run.
    """

    target_utilization: float = 0.7
    n_plus: int = 0
    survive_zone: bool = False
    max_spot_share: float = 0.0
    price_model: str = "on_demand"  # what nodes other than spot are billed as


@dataclass(frozen=True)
class FleetProblem:
    """
    Kinds on offer, zones, the load to serve per month (1…H) and today's pool.
    """

    kinds: tuple[KindOffer, ...]
    zones: tuple[str, ...]
    demand: tuple[float, ...]
    current: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (kind, zone) -> n
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True)
class Binding:
    """
    The loss that leaves the least spare capacity: what forces the fleet's size.
    """

    scenario: str  # "all", "zone:Z" or "nodes:N"
    text: str
    spare_rps: float  # usable capacity left in that loss above the demand


@dataclass(frozen=True)
class MonthFleet:
    """
    One month of the plan: the counts, what is added, what it costs and what binds.
    """

    month: int
    demand_rps: float
    counts: dict[tuple[str, str, str], int]  # (kind, zone, price model) -> nodes
    added: dict[tuple[str, str, str], int]
    cost_per_month: float
    usable_rps: float  # the load the fleet serves in its worst loss
    binding: Binding


@dataclass(frozen=True)
class FleetPlan:
    """
    The solved plan: one entry per month, its cost over the horizon, and how sure that is.

    ``bound`` is the horizon program's proven lower bound on any plan's cost (None when it was
    not run): ``gap`` is how much cheaper a plan could possibly be, as a share.
    """

    months: tuple[MonthFleet, ...]
    total_cost: float  # the sum of the months' costs
    method: str  # which program's answer this is: "rolling" or "horizon"
    bound: float | None

    @property
    def gap(self) -> float | None:
        if self.bound is None or self.total_cost <= 0:
            return None
        return max(0.0, (self.total_cost - self.bound) / self.total_cost)

    @property
    def optimal(self) -> bool:
        gap = self.gap
        return gap is not None and gap <= MIP_GAP


# --------------------------------------------------------------------------------------------
# what a fleet survives


def surviving(
    nodes: Sequence[tuple[str, float]],
    zones: Sequence[str],
    policy: Policy,
) -> list[tuple[str, float]]:
    """
    Each loss the policy asks to survive, with the capacity that remains after it.

    ``nodes`` holds one (zone, capacity) per node.
    """
    caps = sorted((c for _, c in nodes), reverse=True)
    total = float(sum(caps))
    out = [("all", total)]
    if policy.n_plus > 0:
        out.append((f"nodes:{policy.n_plus}", total - float(sum(caps[: policy.n_plus]))))
    if policy.survive_zone:
        for zone in zones:
            out.append((f"zone:{zone}", total - float(sum(c for z, c in nodes if z == zone))))
    return out


def binding(
    nodes: Sequence[tuple[str, float, str]],
    zones: Sequence[str],
    policy: Policy,
    demand: float,
) -> tuple[float, Binding]:
    """
    The load the fleet serves in its worst loss, and that loss in words.

    ``nodes`` holds one (zone, capacity, kind) per node.
    """
    losses = surviving([(z, c) for z, c, _ in nodes], zones, policy)
    scenario, remaining = min(losses, key=lambda s: (s[1], s[0] != "all"))
    usable = policy.target_utilization * remaining
    if scenario == "all":
        text = f"all nodes up, at {policy.target_utilization:.0%} utilization"
    elif scenario.startswith("zone:"):
        text = f"loss of zone {scenario[5:]}"
    else:
        largest = sorted(nodes, key=lambda n: -n[1])[: policy.n_plus]
        kinds = sorted({k for _, _, k in largest})
        text = (
            f"loss of any {policy.n_plus} node{'s' if policy.n_plus > 1 else ''}"
            f" (the largest: {', '.join(kinds)})"
        )
    return usable, Binding(scenario, text, usable - demand)


# --------------------------------------------------------------------------------------------
# the program


def _cells(problem: FleetProblem) -> list[tuple[int, str, str]]:
    """
    Every (kind, zone, price model) a node can be counted in: the kind's zones, plus any zone
    where today's pool runs it; billed at the policy's price model (on demand where the kind
    has no such price), and spot beside it where the policy allows some.
    """
    cells = []
    spot_ok = problem.policy.max_spot_share > 0
    for k, kind in enumerate(problem.kinds):
        zones = list(kind.zones)
        zones += sorted(
            z
            for (name, z), n in problem.current.items()
            if name == kind.name and n > 0 and z not in zones
        )
        base = _base_model(problem, kind)
        for zone in zones:
            cells.append((k, zone, base))
            if spot_ok and "spot" in kind.prices:
                cells.append((k, zone, "spot"))
    return cells


def _today(problem: FleetProblem, cells: list[tuple[int, str, str]]) -> npt.NDArray[np.float64]:
    """
    Today's nodes per cell (billed at the base price model: none is counted as spot).
    """
    kinds = problem.kinds
    return np.array(
        [
            problem.current.get((kinds[k].name, zone), 0) if price != "spot" else 0
            for k, zone, price in cells
        ],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class _Program:
    """
    The MILP over ``months`` consecutive months: x[m, cell] then the n_plus indicators y[m, j].
    """

    problem: FleetProblem
    cells: list[tuple[int, str, str]]
    demand: tuple[float, ...]
    lower: npt.NDArray[np.float64]  # (months, cells)
    upper: npt.NDArray[np.float64]
    price: npt.NDArray[np.float64]  # (months, cells): the cost of a node present that month

    def solve(self, time_limit_s: float) -> tuple[npt.NDArray[np.int64] | None, float]:
        """
        The counts (None when the time ran out before any plan was found) and the solver's
        proven lower bound on the objective.
        """
        problem, cells = self.problem, self.cells
        policy, kinds = problem.policy, problem.kinds
        months, n_cells = (int(n) for n in self.lower.shape)
        cap = np.array([kinds[k].capacity_rps for k, _, _ in cells])
        groups = (
            [np.flatnonzero(cap == t) for t in sorted(set(cap.tolist()))]
            if policy.n_plus > 0
            else []
        )
        n_y = len(groups)
        size = months * (n_cells + n_y)

        def x(m: int, c: int) -> int:
            return m * n_cells + c

        def y(m: int, j: int) -> int:
            return months * n_cells + m * n_y + j

        lower = np.zeros(size)
        upper = np.ones(size)
        cost = np.zeros(size)
        lower[: months * n_cells] = self.lower.ravel()
        upper[: months * n_cells] = self.upper.ravel()
        cost[: months * n_cells] = self.price.ravel()

        rows: list[dict[int, float]] = []
        lo: list[float] = []
        hi: list[float] = []

        def add(row: dict[int, float], low: float, high: float) -> None:
            rows.append(row)
            lo.append(low)
            hi.append(high)

        u = policy.target_utilization
        spot = [c for c in range(n_cells) if cells[c][2] == "spot"]
        for m in range(months):
            need = self.demand[m] / u
            every = {x(m, c): float(cap[c]) for c in range(n_cells)}
            add(every, need, math.inf)
            if policy.survive_zone:
                for zone in problem.zones:
                    row = {x(m, c): float(cap[c]) for c in range(n_cells) if cells[c][1] != zone}
                    add(row, need, math.inf)
            for j, members in enumerate(groups):
                # y = 1 when a kind of this capacity t is in the fleet; then losing any n nodes
                # leaves at least total − n·t (exact for n = 1; see the module notes for n > 1)
                t = float(cap[members[0]])
                row = {x(m, int(c)): 1.0 for c in members}
                row[y(m, j)] = -float(self.upper[m, members].sum())
                add(row, -math.inf, 0.0)
                row = dict(every)
                row[y(m, j)] = -policy.n_plus * t
                add(row, need, math.inf)
            if spot and policy.max_spot_share < 1:
                share = policy.max_spot_share
                row = {x(m, c): -share * float(cap[c]) for c in range(n_cells)}
                for c in spot:
                    row[x(m, c)] = (1 - share) * float(cap[c])
                add(row, -math.inf, 0.0)
            if m > 0:
                for c in range(n_cells):
                    add({x(m, c): 1.0, x(m - 1, c): -1.0}, 0.0, math.inf)
        if policy.survive_zone:
            # zones alike (the same kinds at the same prices and bounds in every month) can swap
            # their plans: order them by their last month's capacity
            alike: dict[tuple[object, ...], list[str]] = {}
            for zone in problem.zones:
                here = [c for c in range(n_cells) if cells[c][1] == zone]
                key = tuple(
                    (
                        cells[c][0],
                        cells[c][2],
                        tuple(self.lower[:, c]),
                        tuple(self.upper[:, c]),
                        tuple(self.price[:, c]),
                    )
                    for c in here
                )
                if here:
                    alike.setdefault(key, []).append(zone)
            last = months - 1
            for group in alike.values():
                for first, second in itertools.pairwise(group):
                    row = {
                        x(last, c): float(cap[c]) for c in range(n_cells) if cells[c][1] == first
                    }
                    for c in range(n_cells):
                        if cells[c][1] == second:
                            row[x(last, c)] = -float(cap[c])
                    add(row, 0.0, math.inf)

        data: list[float] = []
        ri: list[int] = []
        ci: list[int] = []
        for r, row in enumerate(rows):
            for col, v in row.items():
                if v != 0:
                    ri.append(r)
                    ci.append(col)
                    data.append(v)
        matrix = sparse.csr_array((data, (ri, ci)), shape=(len(rows), size))
        result = milp(
            cost,
            constraints=LinearConstraint(matrix, np.array(lo), np.array(hi)),
            integrality=np.ones(size),
            bounds=Bounds(lower, upper),
            options={"time_limit": time_limit_s, "mip_rel_gap": MIP_GAP},
        )
        bound = float(getattr(result, "mip_dual_bound", None) or 0.0)
        if result.status == 2:
            raise InfeasibleError(f"no fleet serves the load: {result.message}")
        if result.x is None:
            return None, bound
        counts = np.round(result.x[: months * n_cells]).astype(np.int64).reshape(months, n_cells)
        return counts, bound


def solve_fleet(
    problem: FleetProblem, *, method: str = "auto", time_limit_s: float = 5.0
) -> FleetPlan:
    """
    A monotone fleet that serves each month's demand in every loss, at least cost.

    ``method``:

    - ``rolling``: the horizon's last month first — the cheapest fleet for its demand, on top
      of today's pool — then each earlier month the cheapest part of the next month's fleet
      that serves it.  Each month's program is proven optimal and small (milliseconds), but a
      chunky kind bought for the horizon's end is carried from early on: on small pools that
      can cost 10% more over the horizon than the best plan.
    - ``horizon``: one program over all months at once: the least total cost over the horizon,
      proven within ``time_limit_s`` on small catalogues, not always on large ones.
    - ``auto`` (default): both, and the cheaper; the horizon program's proven lower bound says
      how far from optimal it can be (``FleetPlan.bound``).

    Raises InfeasibleError (with what cannot be met) when no fleet can.
    """
    horizon = len(problem.demand)
    if horizon == 0:
        raise ValueError("no months to plan")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    _check_feasible(problem)
    if not problem.policy.survive_zone and len(problem.zones) > 1:
        return _zones_apart(problem, method, time_limit_s)
    policy, kinds = problem.policy, problem.kinds
    cells = _cells(problem)
    n_cells = len(cells)
    current = _today(problem, cells)
    allowed = _allowed(kinds)
    peak = max(problem.demand) / policy.target_utilization
    # No cell needs more nodes than would serve the peak alone after its losses (doubled, to
    # leave the spot share slack).  A kind that another does better everywhere it runs is
    # never worth buying (at the base price model; spot nodes are left alone, as the spot
    # share could tell them apart): its cells keep today's nodes.
    hourly = np.array([kinds[k].prices[p] for k, _, p in cells]) * HOURS_PER_MONTH
    # tie-breaker: of two plans of the same cost, fewer node-months
    price = hourly + _TIE * float(hourly.min())
    dominated = _dominated(problem)
    # (kind, zone) cells that cheaper nodes of the same zone cover: no optimal plan adds to them
    covered = _covered_cells(problem, cells, price)
    most = np.array(
        [
            current[c]
            if (k, zone) not in allowed or (k in dominated and model != "spot") or c in covered
            else current[c] + 2 * (math.ceil(peak / kinds[k].capacity_rps) + policy.n_plus)
            for c, (k, zone, model) in enumerate(cells)
        ]
    )
    candidates: list[tuple[str, npt.NDArray[np.int64]]] = []
    bound: float | None = None
    if method in ("auto", "rolling"):
        counts = np.zeros((horizon, n_cells), dtype=np.int64)
        ceiling = most
        for m in reversed(range(horizon)):
            program = _Program(
                problem,
                cells,
                (problem.demand[m],),
                current[None, :],
                ceiling[None, :],
                price[None, :],
            )
            month, _ = program.solve(time_limit_s)
            if month is None:
                raise InfeasibleError(f"month {m + 1}: no fleet found in {time_limit_s:g} s")
            counts[m] = month[0]
            ceiling = month[0].astype(np.float64)
        candidates.append(("rolling", counts))
    if method in ("auto", "horizon"):
        program = _Program(
            problem,
            cells,
            problem.demand,
            np.tile(current, (horizon, 1)),
            np.tile(most, (horizon, 1)),
            np.tile(price, (horizon, 1)),
        )
        whole, bound = program.solve(time_limit_s)
        if whole is not None:
            candidates.append(("horizon", whole))
        elif method == "horizon":
            raise InfeasibleError(f"no fleet found in {time_limit_s:g} s (try a longer limit)")
    plans = [_plan(problem, cells, counts, current, name, bound) for name, counts in candidates]
    return min(plans, key=lambda p: (p.total_cost, p.method != "horizon"))


def _base_model(problem: FleetProblem, kind: KindOffer) -> str:
    """
    The price model a kind's nodes other than spot ones are billed at: the policy's, or on
    demand where the kind has no such price.
    """
    model = problem.policy.price_model
    return model if model in kind.prices else "on_demand"


def _dominated(problem: FleetProblem) -> set[int]:
    """
    Kinds no optimal plan needs to add (at the base price model): another kind runs in every
    zone this one does, at least as large and at most as dear.

    Each added node of such a kind can become a node of the better one in the same zone, in the
    same months: every zone, and the fleet, keeps at least its capacity, the cost does not rise,
    and the loss of the largest node takes away no more than the capacity gained (the one node
    whose size changed, by at most that much) — exact for ``n_plus`` ≤ 1, where the program's
    n-plus rows are exact; for larger ``n_plus`` their "n × the largest kind" could grow by more,
    and nothing is set aside.  Of equal kinds the first is kept.
    """
    if problem.policy.n_plus > 1:
        return set()
    kinds = problem.kinds
    price = [kind.prices[_base_model(problem, kind)] for kind in kinds]
    out: set[int] = set()
    for b, worse in enumerate(kinds):
        for a, better in enumerate(kinds):
            if a == b or a in out:
                continue
            no_worse = (
                set(better.zones) >= set(worse.zones)
                and better.capacity_rps >= worse.capacity_rps
                and price[a] <= price[b]
            )
            strictly = (
                better.capacity_rps > worse.capacity_rps
                or price[a] < price[b]
                or set(better.zones) > set(worse.zones)
                or a < b
            )
            if no_worse and strictly:
                out.add(b)
                break
    return out


def _allowed(kinds: Sequence[KindOffer]) -> set[tuple[int, str]]:
    """
    The (kind, zone) pairs where a kind can run.
    """
    return {(k, z) for k, kind in enumerate(kinds) for z in kind.zones}


def _covered_cells(
    problem: FleetProblem, cells: list[tuple[int, str, str]], price: npt.NDArray[np.float64]
) -> set[int]:
    """
    Cells at the base price model that no optimal plan adds to: some nodes of other such cells
    in the same zone hold at least one node's capacity for less (program prices, tie-breaker
    included), e.g. three 347-rps nodes at 0.018/h each for one 968-rps node at 0.087/h.

    Each added node of such a cell can become those nodes, in the same zone and months: every
    zone and the fleet keep at least their capacity, the cost falls, and the largest node present
    grows by no more than the capacity gained (so the n-plus rows hold for ``n_plus`` ≤ 1; for
    larger ``n_plus`` nothing is set aside).  Spot cells are left alone (the spot share could
    tell them apart).  A cell set aside is not used to cover another.
    """
    if problem.policy.n_plus > 1:
        return set()
    kinds = problem.kinds
    allowed = _allowed(kinds)
    cap = [kinds[k].capacity_rps for k, _, _ in cells]
    by_zone: dict[str, list[int]] = {}
    for c, (k, zone, model) in enumerate(cells):
        if model != "spot" and (k, zone) in allowed:
            by_zone.setdefault(zone, []).append(c)
    out: set[int] = set()
    for members in by_zone.values():
        for b in sorted(members, key=lambda c: (-float(price[c]), c)):
            others = sorted(
                (a for a in members if a != b and a not in out),
                key=lambda a: float(price[a]) / cap[a],
            )
            if _cover_cost(others, cap, price, cap[b], float(price[b])) < float(price[b]):
                out.add(b)
    return out


def _cover_cost(
    cells: list[int],
    cap: list[float],
    price: npt.NDArray[np.float64],
    need: float,
    limit: float,
) -> float:
    """
    The least cost of nodes of ``cells`` (any number of each) holding at least ``need``, when
    below ``limit`` (else ``limit``): branch and bound, ``cells`` sorted by price per capacity.
    """
    best = limit

    def walk(i: int, left: float, spent: float) -> None:
        nonlocal best
        if left <= 0:
            best = min(best, spent)
            return
        if i == len(cells) or spent + left * float(price[cells[i]]) / cap[cells[i]] >= best:
            return
        c = cells[i]
        for n in range(math.ceil(left / cap[c]), -1, -1):
            walk(i + 1, left - n * cap[c], spent + n * float(price[c]))

    walk(0, need, 0.0)
    return best


#: The one zone of a program whose zones do not matter.
_ANYWHERE = "*"


def _zones_apart(problem: FleetProblem, method: str, time_limit_s: float) -> FleetPlan:
    """
    Solve a plan that need not survive a zone's loss with zones set apart, then place its nodes.

    Without zone survival a node serves the same wherever it runs, so a program with a count
    per zone holds as many equal plans as there are ways to deal the nodes out to zones, and
    the solver spends its time proving that they are equal.  The program is solved once per
    kind and price model; today's nodes stay where they are, and each month's additions of a
    kind go, one by one, to the zone among the kind's where it has the fewest nodes (ties: the
    kind's first zone), which keeps each kind spread over its zones.
    """
    merged: dict[tuple[str, str], int] = {}
    for (name, _zone), n in problem.current.items():
        merged[(name, _ANYWHERE)] = merged.get((name, _ANYWHERE), 0) + n
    flat = FleetProblem(
        kinds=tuple(
            replace(kind, zones=(_ANYWHERE,) if kind.zones else ()) for kind in problem.kinds
        ),
        zones=(_ANYWHERE,),
        demand=problem.demand,
        current=merged,
        policy=problem.policy,
    )
    solved = solve_fleet(flat, method=method, time_limit_s=time_limit_s)
    kinds = problem.kinds
    cells = _cells(problem)
    index = {(kinds[k].name, zone, price): c for c, (k, zone, price) in enumerate(cells)}
    current = _today(problem, cells)
    counts = np.zeros((len(solved.months), len(cells)), dtype=np.int64)
    placed = current.astype(np.int64)
    offers = {kind.name: kind for kind in kinds}
    for m, month in enumerate(solved.months):
        for (name, _zone, price), total in sorted(month.counts.items()):
            cells_of = [index[(name, z, price)] for z in offers[name].zones]
            here = [c for (n, _z, p), c in index.items() if n == name and p == price]
            for _ in range(total - int(placed[here].sum())):
                cell = min(cells_of, key=lambda c: (placed[c], cells_of.index(c)))
                placed[cell] += 1
        counts[m] = placed
    return _plan(problem, cells, counts, current, solved.method, solved.bound)


def _plan(
    problem: FleetProblem,
    cells: list[tuple[int, str, str]],
    counts: npt.NDArray[np.int64],
    current: npt.NDArray[np.float64],
    method: str,
    bound: float | None,
) -> FleetPlan:
    kinds = problem.kinds
    months = []
    previous = current.astype(np.int64)
    total = 0.0
    for m in range(counts.shape[0]):
        keyed = {
            (kinds[k].name, zone, price): int(counts[m, c])
            for c, (k, zone, price) in enumerate(cells)
            if counts[m, c]
        }
        added = {
            (kinds[k].name, zone, price): int(counts[m, c] - previous[c])
            for c, (k, zone, price) in enumerate(cells)
            if counts[m, c] > previous[c]
        }
        previous = counts[m]
        nodes = [
            (zone, kinds[k].capacity_rps, kinds[k].name)
            for c, (k, zone, _price) in enumerate(cells)
            for _ in range(int(counts[m, c]))
        ]
        usable, why = binding(nodes, problem.zones, problem.policy, problem.demand[m])
        cost = sum(
            kinds[k].prices[price] * HOURS_PER_MONTH * int(counts[m, c])
            for c, (k, _zone, price) in enumerate(cells)
        )
        total += cost
        months.append(
            MonthFleet(
                month=m + 1,
                demand_rps=problem.demand[m],
                counts=keyed,
                added=added,
                cost_per_month=cost,
                usable_rps=usable,
                binding=why,
            )
        )
    return FleetPlan(tuple(months), total, method, bound)


def _check_feasible(problem: FleetProblem) -> None:
    """
    Say what cannot be met before the solver says "infeasible".
    """
    policy = problem.policy
    if not problem.kinds:
        raise InfeasibleError("no node kinds to plan with (add `kinds:` to the inventory)")
    for kind in problem.kinds:
        if not kind.capacity_rps > 0:
            raise InfeasibleError(f"kind {kind.name}: no capacity at the SLO")
    if policy.survive_zone:
        caps = {kind.name: kind.capacity_rps for kind in problem.kinds}
        for zone in problem.zones:
            if any(z != zone for kind in problem.kinds for z in kind.zones):
                continue  # a kind can be bought outside this zone: the fleet can grow there
            left = policy.target_utilization * sum(
                caps.get(kind, 0.0) * n for (kind, z), n in problem.current.items() if z != zone
            )
            for m, demand in enumerate(problem.demand, start=1):
                if demand > left:
                    raise InfeasibleError(
                        f"survive: zone — after losing zone {zone} the fleet cannot grow (no "
                        f"kind runs outside it) and today's nodes elsewhere serve {left:.4g} "
                        f"rps of the {demand:.4g} needed in month {m}; let a kind run in "
                        "another zone"
                    )
