"""
From the inventory, the fitted nodes and a demand forecast to a capacity plan (pure).

What it answers, in order:

1. **Each kind's capacity** at the SLO: measured — the median of its fitted nodes' capacities,
   with the medians of their intervals — or, for a kind no fitted node has, the inventory's
   ``capacity_rps``.
2. **Today's pool**: the load it serves in its worst loss (``target_utilization`` × what is left
   after losing any zone or any ``n_plus`` nodes), from each node's own fitted capacity and its
   interval; and when the forecast demand outgrows it — early / median / late dates.
3. **The fleet**: per month of the horizon, the cheapest mix of kinds per zone that serves the
   month's peak demand (its upper band by default) in every loss (``capplan.plan.fleet``), the
   loss that binds, and when to order each addition given the kind's lead time.

What-ifs change the inputs only: ``remove`` drops nodes from today's pool, ``add`` puts
hypothetical nodes of a kind in it (with the kind's capacity).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from capplan.errors import InputError
from capplan.inventory import Inventory, Planning
from capplan.models.fit import NodeFit
from capplan.numbers import sig
from capplan.plan.fleet import (
    Binding,
    FleetPlan,
    FleetProblem,
    KindOffer,
    Policy,
    binding,
    solve_fleet,
)
from capplan.plan.forecast import DAY, MONTH, Exhaustion, Forecast, exhaustion
from capplan.planfile import Band, CapacityMonth, Dates, PlanCapacity, PlanFor

__all__ = [
    "PLAN_FOR",
    "CapacityPlan",
    "KindCapacity",
    "Order",
    "PoolNow",
    "capacity_section",
    "parse_add",
    "plan_capacity",
    "policy_of",
]

PLAN_FOR = ("high", "median", "low")

#: Measured and stated capacities of a kind further apart than this get a note.
_DISAGREE = 0.25


@dataclass(frozen=True)
class KindCapacity:
    """
    A kind's capacity per node at the SLO, and where the figure comes from.
    """

    kind: str
    capacity_rps: float
    interval: tuple[float, float]
    source: str  # "measured on N nodes" or "stated in the inventory"


@dataclass(frozen=True)
class PoolNow:
    """
    Today's pool (after the what-ifs): the load it serves in its worst loss, with an interval.
    """

    nodes: int
    usable_rps: tuple[float, float, float]  # low, point, high
    binding: Binding
    exhaustion: Exhaustion | None


@dataclass(frozen=True)
class Order:
    """
    Nodes to add: how many of which kind where, by when they must run, and when to order them.
    """

    kind: str
    zone: str
    price_model: str
    count: int
    month: int
    needed_by: float  # epoch seconds: the month's start
    order_by: float  # needed_by minus the kind's lead time


@dataclass(frozen=True)
class CapacityPlan:
    """
    The whole answer of ``capplan plan``.
    """

    forecast: Forecast
    plan_for: str
    policy: Policy
    kinds: tuple[KindCapacity, ...]
    pool: PoolNow
    fleet: FleetPlan | None  # None when the inventory declares no kinds to buy
    orders: tuple[Order, ...]
    notes: tuple[str, ...]

    @property
    def order_by(self) -> float | None:
        """
        The first order's date (None when nothing needs ordering).
        """
        return min((o.order_by for o in self.orders), default=None)

    def month_start(self, month: int) -> float:
        return self.forecast.origin + (month - 1) * MONTH


def _utc(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(round(epoch), UTC)


def capacity_section(result: CapacityPlan) -> PlanCapacity:
    """
    The ``capacity:`` section ``capplan plan --out`` writes into plan.yaml.
    """
    months = []
    for m in range(1, result.forecast.horizon_months + 1):
        low, median, high = (sig(v) for v in result.forecast.month(m))
        nodes: dict[str, dict[str, int]] | None = None
        cost = binding = None
        if result.fleet is not None:
            month = result.fleet.months[m - 1]
            nodes = {}
            for (kind, zone, _price), n in sorted(month.counts.items()):
                nodes.setdefault(kind, {})[zone] = nodes.get(kind, {}).get(zone, 0) + n
            cost = round(month.cost_per_month, 2)
            binding = month.binding.text
        months.append(
            CapacityMonth(
                month=m,
                start=_utc(result.month_start(m)),
                load_rps=Band(low=low, median=median, high=high),
                nodes=nodes,
                cost_per_month=cost,
                binding=binding,
            )
        )
    ex = result.pool.exhaustion
    return PlanCapacity(
        made=_utc(result.forecast.origin),
        plan_for=cast(PlanFor, result.plan_for),
        forecast=result.forecast.method,
        exhaustion=None
        if ex is None
        else Dates(early=_utc(ex.early), median=_utc(ex.median), late=_utc(ex.late)),
        order_by=_utc(result.order_by),
        months=months,
    )


def policy_of(planning: Planning) -> Policy:
    """
    The fleet policy written in an inventory's ``planning:``.
    """
    return Policy(
        target_utilization=planning.target_utilization,
        n_plus=planning.n_plus,
        survive_zone=planning.survive == "zone",
        max_spot_share=planning.max_spot_share,
        price_model=planning.price_model,
    )


def parse_add(text: str) -> tuple[str, str | None, int]:
    """
    ``KIND=N`` or ``KIND@ZONE=N`` (a what-if) as (kind, zone or None, count).
    """
    name, sep, count = text.partition("=")
    kind, _, zone = name.partition("@")
    try:
        n = int(count)
    except ValueError:
        n = -1
    if not sep or not kind.strip() or n < 1:
        raise InputError(
            f"{text!r} is not KIND=N or KIND@ZONE=N", key="--add", hint="e.g. --add c6i.large=2"
        )
    return kind.strip(), (zone.strip() or None), n


def _kind_capacities(
    inventory: Inventory, fits: Mapping[str, NodeFit]
) -> tuple[dict[str, KindCapacity], list[str]]:
    notes: list[str] = []
    out: dict[str, KindCapacity] = {}
    for name, spec in inventory.kinds.items():
        measured = [
            fits[n.name]
            for n in inventory.nodes
            if n.kind == name and n.name in fits and fits[n.name].success
        ]
        if measured:
            point = statistics.median(f.capacity_rps for f in measured)
            low = statistics.median(f.capacity_interval[0] for f in measured)
            high = statistics.median(f.capacity_interval[1] for f in measured)
            plural = "s" if len(measured) > 1 else ""
            out[name] = KindCapacity(
                name, point, (low, high), f"measured on {len(measured)} node{plural}"
            )
            stated = spec.capacity_rps
            if stated is not None and abs(stated - point) > _DISAGREE * point:
                notes.append(
                    f"kind {name}: measured {point:.4g} rps per node, the inventory states "
                    f"{stated:.4g}; the measurement is used"
                )
        elif spec.capacity_rps is not None:
            c = spec.capacity_rps
            out[name] = KindCapacity(name, c, (c, c), "stated in the inventory")
    return out, notes


def _node_zone(zone: str | None) -> str:
    return zone if zone is not None else ""


def plan_capacity(
    *,
    inventory: Inventory,
    fits: Sequence[NodeFit],
    forecast: Forecast,
    plan_for: str = "high",
    remove: Sequence[str] = (),
    add: Sequence[tuple[str, str | None, int]] = (),
    method: str = "auto",
    time_limit_s: float = 5.0,
) -> CapacityPlan:
    """
    The capacity plan (see the module's notes).

    Raises InputError for what the inventory lacks (a kind with no capacity, a node with no
    zone when zones matter) and InfeasibleError when no fleet can serve the demand.
    """
    if plan_for not in PLAN_FOR:
        raise InputError(f"unknown band {plan_for!r}", key="--plan-for", hint="high | median | low")
    policy = policy_of(inventory.planning)
    by_name = {f.node: f for f in fits}
    names = {n.name for n in inventory.nodes}
    for name in remove:
        if name not in names:
            raise InputError(
                f"unknown node {name!r}", key="--remove", hint="nodes: " + ", ".join(sorted(names))
            )
    kinds, notes = _kind_capacities(inventory, by_name)
    zones = list(inventory.zones)
    if policy.survive_zone:
        for node in inventory.nodes:
            if node.zone is None and node.name not in remove:
                raise InputError(
                    f"node {node.name} has no zone, and the plan must survive a zone's loss",
                    key="nodes",
                    hint="give every node a `zone:`",
                )

    # today's pool, per node: its own fitted capacity (else its kind's), with intervals
    pool: list[tuple[str, tuple[float, float, float], str]] = []  # zone, (low, pt, high), kind
    for node in inventory.nodes:
        if node.name in remove:
            continue
        fit = by_name.get(node.name)
        if fit is not None and fit.success:
            caps = (fit.capacity_interval[0], fit.capacity_rps, fit.capacity_interval[1])
        elif node.kind in kinds:
            k = kinds[node.kind]
            caps = (k.interval[0], k.capacity_rps, k.interval[1])
            notes.append(f"node {node.name}: no fitted capacity; its kind's {k.capacity_rps:.4g}")
        else:
            notes.append(f"node {node.name}: no fitted capacity and no kind; counted as nothing")
            continue
        pool.append((_node_zone(node.zone), caps, node.kind or node.name))
    for kind, zone, n in add:
        if kind not in kinds:
            raise InputError(
                f"kind {kind!r} has no capacity (not declared, or no fitted node and no "
                "capacity_rps)",
                key="--add",
                hint="kinds: " + ", ".join(sorted(kinds)) if kinds else "declare `kinds:`",
            )
        if zone is not None and zones and zone not in zones:
            raise InputError(f"zone {zone!r} is not in the inventory's zones", key="--add")
        k = kinds[kind]
        where = zone or _spread_zone(inventory, kind)
        pool.extend([(where, (k.interval[0], k.capacity_rps, k.interval[1]), kind)] * n)

    band = {"low": 0, "median": 1, "high": 2}[plan_for]
    usable = []
    why = None
    for i in range(3):
        nodes = [(z, caps[i], kind) for z, caps, kind in pool]
        value, b = binding(nodes, zones, policy, forecast.current)
        usable.append(value if math.isfinite(value) else math.inf)
        if i == 1:
            why = b
    assert why is not None
    low, point, high = usable
    ex = exhaustion(forecast, (min(low, point), point, max(high, point)))
    pool_now = PoolNow(len(pool), (low, point, high), why, ex)

    # the fleet
    fleet: FleetPlan | None = None
    orders: list[Order] = []
    if not inventory.kinds:
        notes.append("no `kinds:` in the inventory: nothing to buy, so no fleet plan")
    else:
        missing = [name for name in inventory.kinds if name not in kinds]
        if missing:
            raise InputError(
                f"kind {missing[0]} has no capacity: no fitted node of that kind and no "
                "capacity_rps",
                key=f"kinds.{missing[0]}",
                hint="give it capacity_rps, or collect windows from a node of that kind",
            )
        current: dict[tuple[str, str], int] = {}
        for z, _caps, kind in pool:
            if kind in kinds:
                current[(kind, z)] = current.get((kind, z), 0) + 1
            else:
                notes.append(f"a node of no declared kind ({kind}) is left out of the fleet plan")
        offers = tuple(
            KindOffer(
                name,
                kinds[name].capacity_rps,
                spec.price_per_hour.model_dump(exclude_none=True),
                tuple(spec.zones if spec.zones is not None else zones) or ("",),
                spec.lead_time_days,
            )
            for name, spec in inventory.kinds.items()
        )
        demand = tuple(forecast.month(m)[band] for m in range(1, forecast.horizon_months + 1))
        problem = FleetProblem(offers, tuple(zones), demand, current, policy)
        fleet = solve_fleet(problem, method=method, time_limit_s=time_limit_s)
        lead = {o.name: o.lead_time_days for o in offers}
        for month in fleet.months:
            start = forecast.origin + (month.month - 1) * MONTH
            for (kind, zone, price), n in sorted(month.added.items()):
                orders.append(
                    Order(kind, zone, price, n, month.month, start, start - lead[kind] * DAY)
                )
    return CapacityPlan(
        forecast=forecast,
        plan_for=plan_for,
        policy=policy,
        kinds=tuple(kinds[name] for name in inventory.kinds if name in kinds),
        pool=pool_now,
        fleet=fleet,
        orders=tuple(orders),
        notes=tuple(notes) + forecast.notes,
    )


def _spread_zone(inventory: Inventory, kind: str) -> str:
    """
    The zone a what-if node of ``kind`` goes to when none is given: the first of its zones.
    """
    spec = inventory.kinds.get(kind)
    zones = (spec.zones if spec is not None and spec.zones else None) or inventory.zones
    return zones[0] if zones else ""
