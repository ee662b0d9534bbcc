"""
From fitted nodes to a plan: the split, the nodes' states and weights, the limits and
thresholds, and the predicted latency (pure: plain data in, a ``Plan`` out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from capplan.errors import InfeasibleError, InputError
from capplan.inventory import SLO, Inventory, Profile
from capplan.models.fit import STATIONS, NodeFit
from capplan.numbers import sig
from capplan.optimize.apportion import weights_for
from capplan.optimize.curves import NodeCurve, PoolCurves
from capplan.optimize.thresholds import (
    ForecastMonth,
    Loss,
    NodeThresholdInput,
    ScaleOutForecast,
    ThresholdInputs,
    derive_thresholds,
)
from capplan.optimize.weights import Split, split_load
from capplan.planfile import (
    TARGETS,
    Limits,
    Methods,
    NodePlan,
    NotExpressible,
    Plan,
    PlanBalancer,
    PlanCapacity,
    PlanInputs,
    PlanSLO,
    Pool,
    TargetShares,
    TargetWeights,
    Thresholds,
    check_plan_text,
)
from capplan.render import inexpressible_keys

__all__ = ["Optimized", "Slots", "build_plan", "node_curve", "node_slots", "planning_losses"]

#: Balancing methods that keep each node's open connections in proportion to its weight
#: (nginx, HAProxy, LVS): their weights come from the nodes' connections at the split.
LEAST_CONNECTIONS = frozenset({"least_conn", "leastconn", "wlc", "sed", "nq"})

#: ``auto`` picks round robin where the active nodes' service times are at least this even
#: (their scv weighted by planned rate; a coefficient of variation of 0.2), else least
#: connections.  ``python -m bench.lab.arrivals`` (the lab's pool, simulated, pooled p99):
#: with fixed service round robin 26.5 ms against least connections' 28.2 at 80% load and
#: 33.3 against 35.7 at 90%; even at a cv of 0.2 and 0.3 (32.9 / 33.0, 39.6 / 39.1); least
#: connections ahead with exponential service (93.4 against 98.3 at 80%, 96.4 against 112.4
#: at 90%), where it steers requests away from a node held up by slow ones.  The lab's large
#: pool (3–16 slots at 20–40 ms, ``--pool bench/lab/pools/large.yaml``) compares the same way:
#: 36.3 against 38.9 ms with fixed service, 48.4 / 48.1 at cv 0.2, 57.7 / 56.6 at cv 0.3.
ROUND_ROBIN_MAX_SCV = 0.04

#: Methods that hand out requests in turn.  The plan's ``max_active`` (HAProxy's ``maxconn``,
#: the one balancer that queues) must then not bind at the planned load
#: (``capplan.optimize.thresholds``); without HAProxy, the other balancers' method decides.
IN_TURN = frozenset({"round_robin", "roundrobin", "static-rr", "wrr", "rr"})

#: Each target's name for the two methods ``auto`` chooses between.
ROUND_ROBIN_NAMES = {
    "nginx": "round_robin",
    "haproxy": "roundrobin",
    "ipvsadm": "wrr",
    "keepalived": "wrr",
}
LEAST_CONNECTIONS_NAMES = {
    "nginx": "least_conn",
    "haproxy": "leastconn",
    "ipvsadm": "wlc",
    "keepalived": "wlc",
}

#: A node whose ideal share is below this fraction of the load gets no traffic.
IDLE_SHARE = 1e-6

#: A station fit that was not chosen still gives the node's slot count when its capacity is
#: within this fraction of the chosen model's: both read the node alike.
SLOTS_AGREEMENT = 0.1


class Slots(NamedTuple):
    """
    A node's slot count (None when unknown), where it comes from ("" when from its chosen
    model), and the station model that gives it: (servers, mean service time in s, scv).
    """

    servers: int | None
    source: str = ""
    station: tuple[float, float, float] | None = None


def _station(params: dict[str, float]) -> tuple[float, float, float]:
    return (params["servers"], params["service_ms"] * 1e-3, params["scv"])


def choose_methods(
    requested: dict[str, str],
    names: Sequence[str],
    stations: Sequence[tuple[float, float, float] | None],
    rates: Sequence[float],
) -> tuple[dict[str, str], str]:
    """
    Each target's balancing method: the profile's, or for ``auto`` round robin or least
    connections by how even the active nodes' service times are (``ROUND_ROBIN_MAX_SCV``).

    Args:
        requested: per target, the profile's method (``auto`` or a method name).
        names: the active nodes' names.
        stations: per active node, its station (servers, service time, scv) or None.
        rates: per active node, its planned rate.

    Returns:
        Per target its method, and the reason for the choice ("" when nothing was ``auto``).
    """
    auto = [k for k, m in requested.items() if m == "auto"]
    if not auto:
        return dict(requested), ""
    unknown = [n for n, st in zip(names, stations, strict=True) if st is None]
    total = math.fsum(rates)
    scv = (
        math.fsum(r * st[2] for r, st in zip(rates, stations, strict=True) if st is not None)
        / total
        if not unknown and total > 0
        else math.nan
    )
    even = not unknown and scv <= ROUND_ROBIN_MAX_SCV
    chosen = ROUND_ROBIN_NAMES if even else LEAST_CONNECTIONS_NAMES
    methods = {k: chosen[k] if m == "auto" else m for k, m in requested.items()}
    picked = ", ".join(f"{k} {methods[k]}" for k in auto)
    if unknown:
        listed = ", ".join(unknown[:3]) + (
            f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        )
        why = (
            f"least connections ({picked}): how much the service time varies is unknown for "
            f"{listed} (no queueing model), and least connections adapts to it"
        )
    elif even:
        why = (
            f"round robin ({picked}): the nodes' service times are near-constant (scv "
            f"{scv:.2g} weighted by rate, at most {ROUND_ROBIN_MAX_SCV:g}), so requests spaced "
            "evenly queue less than least connections' reactions to noise (simulated on the "
            "lab's pool with fixed service: p99 26.5 against 28.2 ms at 80% load)"
        )
    else:
        why = (
            f"least connections ({picked}): the nodes' service times vary (scv {scv:.2g} "
            f"weighted by rate, above {ROUND_ROBIN_MAX_SCV:g}), and least connections steers "
            "requests away from a node held up by slow ones (simulated on the lab's pool with "
            "exponential service: p99 93.4 against round robin's 98.3 ms at 80% load)"
        )
    return methods, why


def node_slots(fit: NodeFit) -> Slots:
    """
    The node's slot count, where it comes from and the station that gives it.

    From its chosen model when that is a station (M/G/c, M/M/c).  Otherwise from its station
    candidate when that fitted and its capacity is within ``SLOTS_AGREEMENT`` of the chosen
    model's: a USL or the empirical hyperbola may fit a node's curve a little better and still
    say nothing of its slots, which HAProxy needs (``max_active``).  None when neither holds.
    """
    if fit.model in STATIONS:
        return Slots(round(fit.params["servers"]), "", _station(fit.params))
    chosen = fit.capacity_rps
    for c in fit.candidates:
        if (
            c.model in STATIONS
            and c.success
            and math.isfinite(c.capacity_rps)
            and chosen > 0
            and abs(c.capacity_rps - chosen) <= SLOTS_AGREEMENT * chosen
        ):
            source = (
                f"its {c.model} fit, whose capacity {c.capacity_rps:.4g} rps agrees with "
                f"the {fit.model}'s {chosen:.4g}"
            )
            return Slots(round(c.params["servers"]), source, _station(c.params))
    return Slots(None)


@dataclass(frozen=True)
class Optimized:
    """
    The plan and what it was made from.
    """

    plan: Plan
    split: Split
    caps: tuple[float, ...]
    warnings: tuple[str, ...]


def node_curve(fit: NodeFit) -> NodeCurve | None:
    """
    The node's model as the optimizer sees it: a station by its parameters, else its curve;
    None when it has no usable model.
    """
    if not fit.success:
        return None
    if fit.model in STATIONS:
        return NodeCurve(station=_station(fit.params))
    curve = fit.curve
    return NodeCurve(curve=curve) if curve is not None else None


def planning_losses(
    inventory: Inventory, fits: Sequence[NodeFit], usable: Sequence[int]
) -> tuple[Loss, ...] | None:
    """
    The losses the inventory's ``planning:`` asks the pool to survive, over the ``usable``
    nodes (positions in that list): its ``n_plus`` largest nodes, and each zone when it says
    ``survive: zone``. ``None`` without a ``planning:`` section (the thresholds' N−1).
    """
    if "planning" not in inventory.model_fields_set:
        return None
    policy = inventory.planning
    losses: list[Loss] = []
    if policy.n_plus > 0:
        order = sorted(range(len(usable)), key=lambda k: (-fits[usable[k]].capacity_rps, k))
        taken = order[: policy.n_plus]
        first = fits[usable[taken[0]]]
        if len(taken) == 1:
            text = f"its largest node ({first.node}, {first.capacity_rps:.4g} rps)"
        else:  # a reason is one line: name two, count the rest
            names = ", ".join(fits[usable[k]].node for k in taken[:2])
            more = f" and {len(taken) - 2} more" if len(taken) > 2 else ""
            text = f"its {len(taken)} largest nodes ({names}{more})"
        losses.append(Loss(text, tuple(sorted(taken))))
    if policy.survive == "zone":
        zones = inventory.zones or sorted({n.zone for n in inventory.nodes if n.zone})
        for zone in zones:
            removed = tuple(k for k, i in enumerate(usable) if inventory.nodes[i].zone == zone)
            if removed:
                losses.append(Loss(f"zone {zone}", removed))
    return tuple(losses)


def _scale_out_forecast(capacity: PlanCapacity) -> ScaleOutForecast:
    return ScaleOutForecast(
        band=capacity.plan_for,
        months=tuple(
            ForecastMonth(m.start.date().isoformat(), getattr(m.load_rps, capacity.plan_for))
            for m in capacity.months
        ),
        order_by=None if capacity.order_by is None else capacity.order_by.date().isoformat(),
    )


def build_plan(
    *,
    inventory: Inventory,
    inventory_name: str,
    profile: Profile,
    slo: SLO,
    fits: Sequence[NodeFit],
    load_rps: float,
    windows: int,
    newest: str | None,
    error_rates: Sequence[float],
    capacity: PlanCapacity | None = None,
    load_from: str | None = None,
) -> Optimized:
    """
    Solve the split for ``load_rps`` and turn it into a plan.

    Args:
        inventory: The pool (nodes in inventory order; ``fits`` in the same order).
        inventory_name: How the plan names the inventory (its path as given).
        profile: The profile in force.
        slo: The effective SLO.
        fits: Each node's fit.
        load_rps: The load to plan for.
        windows: How many windows the fits rest on.
        newest: The newest window's start (ISO-8601), if any.
        error_rates: Each node's observed error rate (errors / requests).
        capacity: The capacity plan's section (``capplan plan --out``): kept in the plan,
            and its forecast told in the scale-out reason.
        load_from: Where ``load_rps`` came from, when the user did not give it.

    Returns:
        The plan, the split and the caps used.

    Raises:
        InfeasibleError: when the load exceeds what the pool can carry within the SLO and
            the profile's headroom; the message states the largest load that can be served.
        InputError: when no node has a usable model.
    """
    warnings: list[str] = []
    curves = [node_curve(f) for f in fits]
    usable = [i for i, c in enumerate(curves) if c is not None and fits[i].capacity_rps > 0]
    position = {i: k for k, i in enumerate(usable)}  # node index → its place in the pool
    for i, fit in enumerate(fits):
        if i not in position:
            why = fit.message if not fit.success else "its capacity at the SLO is 0"
            warnings.append(f"{fit.node}: gets no traffic: {why}")
    if not usable:
        raise InputError(
            "no node has a usable model",
            hint="run `capplan fit` to see why, and collect or import more windows",
        )
    pool = PoolCurves(
        [c for c in (curves[i] for i in usable) if c is not None],
        tail_quantile=slo.percentile / 100.0,
    )
    caps = np.array([fits[i].capacity_rps * (1.0 - profile.headroom) for i in usable])
    q = slo.percentile / 100.0
    # the balancer interleaves the load over the nodes (every method capplan writes does):
    # the split and what it predicts follow; capacities and limits keep Poisson arrivals
    behind = pool.interleaved(load_rps) if load_rps > 0 else pool
    split = split_load(behind, caps, load_rps, objective=profile.objective, quantile=q)
    if not split.success:
        raise InfeasibleError(
            f"{load_rps:.6g} rps cannot be served within {slo.label} ≤ {slo.latency_ms:g} ms "
            f"with the {profile.name} profile's {profile.headroom:.0%} headroom: the largest "
            f"load that can is {caps.sum():.6g} rps (capacity at the SLO: "
            f"{sum(fits[i].capacity_rps for i in usable):.6g} rps)"
        )
    rates = np.zeros(len(fits))
    rates[usable] = split.rates
    shares = rates / load_rps
    active = [i for i in usable if shares[i] >= IDLE_SHARE]
    active_set = set(active)
    idle_state = profile.idle_nodes
    kinds = sorted({b.kind for b in inventory.balancers}, key=TARGETS.index) or list(TARGETS)
    slots = {i: node_slots(fits[i]) for i in usable}
    chosen, methods_reason = choose_methods(
        {k: getattr(profile.methods, k) for k in kinds},
        [fits[i].node for i in active],
        [slots[i].station for i in active],
        [float(rates[i]) for i in active],
    )
    weights: dict[str, dict[int, int]] = {}
    realized: dict[str, dict[int, float]] = {}
    # least connections keeps each node's open connections in proportion to its weight: the
    # weights that realize the split are the nodes' numbers in system (Little's law: λᵢ·Rᵢ)
    planned = np.asarray(rates[usable], dtype=np.float64)
    in_system = planned * behind.mean(planned)
    connections = dict(zip(usable, in_system, strict=True))
    for kind in kinds:
        traffic = [float(shares[i]) for i in active]
        if chosen[kind] in LEAST_CONNECTIONS:
            basis = [float(connections[i]) for i in active]
            result = weights_for(kind, basis)
            total = sum(basis)
            # the traffic each node gets when its connections are at its realized share
            got = [
                t * r * total / b for t, r, b in zip(traffic, result.realized, basis, strict=True)
            ]
            shown = [g / sum(got) for g in got]
        else:
            result = weights_for(kind, traffic)
            shown = list(result.realized)
        weights[kind] = dict(zip(active, result.weights, strict=True))
        realized[kind] = dict(zip(active, shown, strict=True))
    limit_input = ThresholdInputs(
        nodes=tuple(
            NodeThresholdInput(
                rate_rps=float(rates[i]),
                capacity_rps=float(fits[i].capacity_rps),
                error_rate=float(error_rates[i]),
                servers=slots[i].servers,
                servers_from=slots[i].source,
                station=slots[i].station,
                name=fits[i].node,
            )
            for i in usable
        ),
        pool=pool,
        caps=tuple(float(c) for c in caps),
        slo_latency_ms=slo.latency_ms,
        error_budget=slo.max_error_rate,
        quantile=q,
        headroom=profile.headroom,
        detection_s=profile.detection_s,
        check_interval_s=profile.check_interval_s,
        slowstart_s=profile.slowstart_s,
        losses=planning_losses(inventory, fits, usable),
        forecast=None if capacity is None else _scale_out_forecast(capacity),
        round_robin=(
            chosen["haproxy"] in IN_TURN
            if "haproxy" in chosen
            else any(m in IN_TURN for m in chosen.values())
        ),
    )
    derived = derive_thresholds(limit_input)
    nodes = []
    for i, node in enumerate(inventory.nodes):
        fit = fits[i]
        state: Literal["active", "backup", "down"]
        if i in active_set:
            state = "active"
        elif i in position:
            state = idle_state
        else:
            state = "down"
        target_weights: dict[str, int] = {}
        for kind in kinds:
            if state == "active":
                target_weights[kind] = weights[kind][i]
            elif state == "backup" and kind in ("nginx", "haproxy"):
                target_weights[kind] = 1  # a backup server takes traffic only when needed
            else:
                target_weights[kind] = 0
        reasons: dict[str, str] = {}
        limits = Limits()
        if i in position:
            k = position[i]
            limits = Limits(**derived.limits[k])
            reasons.update(derived.node_reasons[k])
        if state == "backup":
            reasons["state"] = "backup: the pool meets the SLO at this load without it"
        elif state == "down":
            reasons["state"] = (
                "down: " + (fit.message if not fit.success else "no capacity within the SLO")
                if i not in position
                else "down: the pool meets the SLO at this load without it"
            )
        nodes.append(
            NodePlan(
                node=node.name,
                address=node.address,
                share=sig(float(shares[i])),
                rate_rps=sig(float(rates[i])),
                capacity_rps=sig(float(fit.capacity_rps)) if fit.success else 0.0,
                weights=TargetWeights(**target_weights),
                realized_share=TargetShares(
                    **{k: sig(realized[k][i]) for k in kinds if state == "active"}
                ),
                state=state,
                limits=limits,
                reasons=reasons,
            )
        )
    methods = Methods(**chosen)
    predicted = {"mean_ms": split.mean_ms, f"p{slo.percentile:g}_ms": split.quantile_ms}
    fields = dict(
        cluster=inventory.cluster,
        inputs=PlanInputs(
            inventory=check_plan_text(inventory_name, "the inventory's path"),
            profile=profile.name,
            load_rps=sig(float(load_rps)),
            load_from=load_from,
            slo=PlanSLO(
                percentile=slo.percentile,
                latency_ms=slo.latency_ms,
                max_error_rate=slo.max_error_rate,
            ),
            windows=windows,
            newest=newest,
        ),
        methods=methods,
        nodes=nodes,
        pool=Pool(
            thresholds=Thresholds.model_validate(derived.pool),
            reasons={
                **derived.pool_reasons,
                **({"methods": methods_reason} if methods_reason else {}),
            },
            predicted={k: sig(v, 4) for k, v in predicted.items() if math.isfinite(v)},
        ),
        balancers=[
            PlanBalancer(kind=b.kind, name=b.name, output=b.output) for b in inventory.balancers
        ],
        capacity=capacity,
    )
    draft = Plan(**fields)  # type: ignore[arg-type]
    missing = {k: inexpressible_keys(draft, k) or None for k in kinds}
    plan = Plan(**fields, not_expressible=NotExpressible(**missing))  # type: ignore[arg-type]
    return Optimized(plan, split, tuple(float(c) for c in caps), tuple(warnings))
