"""
The data behind each figure of the report (pure: fits, plans and windows in, plain data out).

Everything a figure draws is here, as numbers a test can check and ``capplan report --json``
prints: per node the windows as points, each fitted model's latency curve on a rate grid, the
SLO line and the capacity with its interval; the pool's split before and after; the capacity
plan's demand, usable capacity and cost per month.  The figures (``figures.py``), the page
(``html.py``) and the terminal plot (``textplot.py``) only draw it.

Latencies are in milliseconds and rates in requests per second throughout; a value the model
cannot give (past saturation) is None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from capplan.inventory import SLO
from capplan.models.fit import Candidate, LatencyCurve, NodeFit, SLOTarget, observations
from capplan.models.station_fit import STAT_QUANTILES
from capplan.optimize.build import node_curve
from capplan.optimize.curves import PoolCurves
from capplan.optimize.weights import pool_quantile
from capplan.samples import Window

if TYPE_CHECKING:
    from capplan.optimize.build import Optimized
    from capplan.plan.build import CapacityPlan

__all__ = [
    "GRID_POINTS",
    "Curve",
    "NodeFigure",
    "PlanFigure",
    "PlanMonth",
    "ReportData",
    "SplitFigure",
    "SplitNode",
    "iso_day",
    "node_figure",
    "plan_figure",
    "split_figure",
    "to_document",
]

FloatArray = npt.NDArray[np.float64]

#: Rates each curve is sampled at, from 0 to the figure's right edge.
GRID_POINTS = 201
#: The figure's right edge: this much beyond the largest of the rates it must show.
X_MARGIN = 1.15
#: The figure's top: at least this multiple of the SLO latency, at most ``Y_CAP`` times it.
Y_FLOOR = 1.5
Y_CAP = 4.0


@dataclass(frozen=True)
class Curve:
    """
    One model's predicted latency of one statistic (``mean``, ``p99``, …) on a rate grid.
    """

    model: str
    stat: str
    chosen: bool
    rate_rps: tuple[float, ...]
    latency_ms: tuple[float | None, ...]  # None at and past the model's saturation


@dataclass(frozen=True)
class NodeFigure:
    """
    One node's latency-versus-load figure.

    ``stat`` is the window column the points show: the SLO's percentile when the windows
    carry it, else their mean (the same yardstick the fit selects models on).  ``curves``
    holds every candidate model that could be fitted, at ``stat``; when ``stat`` is not the
    SLO's percentile, ``slo_curve`` is the chosen model at the SLO's percentile (what the
    capacity is read from).  ``capacity_interval`` is the fit's 95% interval; its upper end
    is None when the data cannot bound it.
    """

    node: str
    stat: str
    slo_stat: str
    points: tuple[tuple[float, float], ...]  # (rate rps, latency ms)
    curves: tuple[Curve, ...]
    slo_curve: Curve | None
    slo_ms: float
    model: str | None
    capacity_rps: float | None
    capacity_interval: tuple[float, float | None] | None
    max_observed_rps: float
    windows: int
    x_max: float
    y_max: float
    warnings: tuple[str, ...]
    success: bool
    message: str

    @property
    def chosen(self) -> Curve | None:
        """
        The chosen model's curve at ``stat`` (None when no model could be fitted).
        """
        return next((c for c in self.curves if c.chosen), None)

    @property
    def points_above(self) -> int:
        """
        How many points lie above the figure's top (they are not drawn).
        """
        return sum(1 for _, y in self.points if y > self.y_max)


@dataclass(frozen=True)
class SplitNode:
    """
    One node's part of the split before and after, and its predicted latency at each.

    ``*_ms`` is the node's predicted latency at the SLO's percentile (None: no model, or the
    rate is at or past the model's saturation).
    """

    node: str
    capacity_rps: float | None
    cap_rps: float | None  # the capacity less the profile's headroom: the most planned
    before_share: float
    before_rps: float
    before_ms: float | None
    after_share: float
    after_rps: float
    after_ms: float | None
    state: str


@dataclass(frozen=True)
class SplitFigure:
    """
    The pool's split of ``load_rps``: ``before`` (an unweighted round robin's equal shares,
    or the shares of a given earlier plan) and ``after`` (capplan's), with the pool's
    predicted latency at the SLO's percentile for each (None when it cannot be predicted:
    see ``before_note``).
    """

    load_rps: float
    objective: str
    before_label: str
    nodes: tuple[SplitNode, ...]
    before_pool_ms: float | None
    after_pool_ms: float | None
    before_note: str
    slo_ms: float
    slo_stat: str


@dataclass(frozen=True)
class PlanMonth:
    """
    One month of the capacity plan.
    """

    month: int
    start: str  # the month's first day, YYYY-MM-DD (UTC)
    load_low: float
    load_median: float
    load_high: float
    usable_rps: float | None  # what the month's fleet serves in its worst loss
    cost_per_month: float | None
    nodes: int | None  # the month's fleet size
    added: int | None


@dataclass(frozen=True)
class PlanFigure:
    """
    The capacity plan over the horizon: demand, the planned fleet's usable capacity, cost.
    """

    months: tuple[PlanMonth, ...]
    plan_for: str
    price_model: str
    today_usable_rps: tuple[float, float, float]  # low, point, high (may be inf)
    total_cost: float | None
    fleet_method: str | None
    fleet_optimal: bool | None


@dataclass(frozen=True)
class ReportData:
    """
    Everything the report shows.  ``split`` and ``plan`` are None when their section could not
    be computed; ``notes`` says why.
    """

    cluster: str
    inventory: str
    profile: str
    slo_percentile: float
    slo_ms: float
    slo_max_error_rate: float
    load_rps: float
    as_of: str
    windows: int
    newest: str | None
    #: how the windows were read (the inventory's ``arrivals``: ``poisson``, ``round_robin``,
    #: ``least_connections``, ``shortest_expected_delay``)
    arrivals: str
    nodes: tuple[NodeFigure, ...]
    split: SplitFigure | None
    plan: PlanFigure | None
    notes: tuple[str, ...]

    @property
    def slo_label(self) -> str:
        """
        ``p99``: the SLO percentile's short name.
        """
        return f"p{self.slo_percentile:g}"

    @property
    def figure_ids(self) -> tuple[str, ...]:
        """
        The figures the report holds, in page order (a node's id is ``node-NAME``).
        """
        ids = [f"node-{n.node}" for n in self.nodes]
        if self.split is not None:
            ids.append("split")
        if self.plan is not None:
            ids.append("plan")
        return tuple(ids)


# --------------------------------------------------------------------------------------------
# helpers


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _ms(values: FloatArray) -> tuple[float | None, ...]:
    """
    Seconds to milliseconds; non-finite values become None.
    """
    return tuple(float(v) * 1e3 if math.isfinite(v) else None for v in values)


def _predict(curve: LatencyCurve, rates: FloatArray, stat: str) -> FloatArray:
    """
    ``curve``'s statistic ``stat`` (``mean`` or ``pNN``) at each rate, in seconds.
    """
    q = STAT_QUANTILES.get(stat)
    if stat == "mean":
        out = curve.mean(rates)
    else:
        out = curve.quantile(rates, q if q is not None else float(stat[1:]) / 100.0)
    return np.asarray(out, dtype=np.float64)


def iso_day(epoch: float) -> str:
    """
    An epoch time as its UTC day, ``YYYY-MM-DD``.
    """
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


# --------------------------------------------------------------------------------------------
# per node


def node_figure(fit: NodeFit, windows: Sequence[Window], slo: SLOTarget) -> NodeFigure:
    """
    One node's latency-versus-load figure data.

    Args:
        fit: The node's fit (from ``fit_nodes``), with its candidates' curves.
        windows: The windows it was fitted on (those without requests are left out, as the
            fit leaves them out).
        slo: The SLO the fit was made against.

    Returns:
        The points, each candidate's curve, the SLO line and the capacity with its interval.
    """
    obs = observations(fit.node, windows)
    slo_stat = f"p{slo.percentile:g}"
    stat = slo.stat if slo.stat is not None and obs.has(slo.stat) else "mean"
    values = obs.latency[stat]
    keep = np.isfinite(values)
    points = tuple(
        (float(r), float(y) * 1e3) for r, y in zip(obs.rate[keep], values[keep], strict=True)
    )
    capacity = fit.capacity_rps if fit.success and math.isfinite(fit.capacity_rps) else None
    interval: tuple[float, float | None] | None = None
    edge = [fit.max_observed_rps]
    if capacity is not None:
        low, high = fit.capacity_interval
        interval = (low, _finite(high))
        edge.append(capacity)
        if math.isfinite(high) and high <= 2 * capacity:
            edge.append(high)
    x_max = max(max(edge) * X_MARGIN, 1e-9)
    top = max((y for _, y in points), default=0.0) * 1.1
    y_max = min(max(Y_FLOOR * slo.latency_ms, top), Y_CAP * slo.latency_ms)
    grid = np.linspace(0.0, x_max, GRID_POINTS)
    curves = []
    chosen_candidate: Candidate | None = None
    for candidate in fit.candidates:
        if not candidate.success or candidate.curve is None:
            continue
        chosen = fit.success and candidate.model == fit.model
        if chosen:
            chosen_candidate = candidate
        curves.append(
            Curve(
                model=candidate.model,
                stat=stat,
                chosen=chosen,
                rate_rps=tuple(float(r) for r in grid),
                latency_ms=_ms(_predict(candidate.curve, grid, stat)),
            )
        )
    slo_curve = None
    if chosen_candidate is not None and chosen_candidate.curve is not None and stat != slo_stat:
        slo_curve = Curve(
            model=chosen_candidate.model,
            stat=slo_stat,
            chosen=True,
            rate_rps=tuple(float(r) for r in grid),
            latency_ms=_ms(chosen_candidate.curve.quantile(grid, slo.quantile)),
        )
    return NodeFigure(
        node=fit.node,
        stat=stat,
        slo_stat=slo_stat,
        points=points,
        curves=tuple(curves),
        slo_curve=slo_curve,
        slo_ms=slo.latency_ms,
        model=fit.model if fit.success else None,
        capacity_rps=capacity,
        capacity_interval=interval,
        max_observed_rps=fit.max_observed_rps,
        windows=obs.n,
        x_max=x_max,
        y_max=y_max,
        warnings=fit.warnings,
        success=fit.success,
        message=fit.message,
    )


# --------------------------------------------------------------------------------------------
# the split


def split_figure(
    fits: Sequence[NodeFit],
    optimized: Optimized,
    slo: SLO,
    headroom: float,
    *,
    before: Mapping[str, float] | None = None,
    before_label: str | None = None,
) -> SplitFigure:
    """
    The split before and after, with each node's and the pool's predicted latency.

    Args:
        fits: Each node's fit, in the plan's node order.
        optimized: What ``build_plan`` returned for these fits.
        slo: The effective SLO.
        headroom: The profile's headroom (a node is planned to at most capacity × (1 − it)).
        before: The shares before, per node (renormalised to sum to 1; a node left out gets
            none).  None: equal shares on every node, as an unweighted round robin sends.
        before_label: What ``before`` is, for the figure's legend.

    Returns:
        The split figure's data.
    """
    plan = optimized.plan
    load = float(plan.inputs.load_rps)
    names = [n.node for n in plan.nodes]
    if before is None:
        shares_before = np.full(len(names), 1.0 / len(names))
        label = before_label or "before: equal shares (round robin)"
    else:
        raw = np.array([max(float(before.get(n, 0.0)), 0.0) for n in names])
        total = float(raw.sum())
        if not total > 0:
            raise ValueError("before: no node of the pool has a share")
        shares_before = raw / total
        label = before_label or "before"
    rates_before = shares_before * load
    rates_after = np.array([float(n.rate_rps) for n in plan.nodes])
    shares_after = np.array([float(n.share) for n in plan.nodes])
    q = slo.percentile / 100.0
    curves = [node_curve(f) for f in fits]
    modelled = [i for i, c in enumerate(curves) if c is not None]
    # both splits behind a balancer that interleaves the load (as optimize's split assumes)
    pool = PoolCurves(
        [c for c in curves if c is not None],
        tail_quantile=q,
        interleaved_load=load if load > 0 else None,
    )

    def per_node(rates: FloatArray) -> list[float | None]:
        out: list[float | None] = [None] * len(names)
        if not modelled:
            return out
        mine = rates[modelled]
        stable = mine < pool.saturation
        values = pool.quantile(q, np.where(stable, mine, 0.5 * pool.saturation))
        for k, i in enumerate(modelled):
            out[i] = _finite(float(values[k]) * 1e3) if stable[k] else None
        return out

    def pool_ms(rates: FloatArray) -> tuple[float | None, str]:
        blind = [names[i] for i in range(len(names)) if rates[i] > 0 and curves[i] is None]
        if blind:
            return None, f"{', '.join(blind)}: traffic but no model, so no prediction"
        over = [
            names[i]
            for k, i in enumerate(modelled)
            if rates[i] > 0 and rates[i] >= pool.saturation[k]
        ]
        if over:
            return None, f"{', '.join(over)}: past saturation, the queue grows without bound"
        if not modelled:
            return None, "no node has a model"
        return _finite(pool_quantile(pool, rates[modelled], q) * 1e3), ""

    ms_before, ms_after = per_node(rates_before), per_node(rates_after)
    pool_before, note = pool_ms(rates_before)
    pool_after, _ = pool_ms(rates_after)
    nodes = []
    for i, (name, fit) in enumerate(zip(names, fits, strict=True)):
        capacity = fit.capacity_rps if fit.success and math.isfinite(fit.capacity_rps) else None
        nodes.append(
            SplitNode(
                node=name,
                capacity_rps=capacity,
                cap_rps=capacity * (1.0 - headroom) if capacity is not None else None,
                before_share=float(shares_before[i]),
                before_rps=float(rates_before[i]),
                before_ms=ms_before[i],
                after_share=float(shares_after[i]),
                after_rps=float(rates_after[i]),
                after_ms=ms_after[i],
                state=plan.nodes[i].state,
            )
        )
    return SplitFigure(
        load_rps=load,
        objective=optimized.split.objective,
        before_label=label,
        nodes=tuple(nodes),
        before_pool_ms=pool_before,
        after_pool_ms=pool_after,
        before_note=note,
        slo_ms=slo.latency_ms,
        slo_stat=slo.label,
    )


# --------------------------------------------------------------------------------------------
# the capacity plan


def plan_figure(result: CapacityPlan) -> PlanFigure:
    """
    The capacity plan's demand band, the planned fleet's usable capacity and its cost, per
    month.
    """
    forecast = result.forecast
    fleet = result.fleet
    months = []
    for m in range(1, forecast.horizon_months + 1):
        low, median, high = forecast.month(m)
        month = fleet.months[m - 1] if fleet is not None else None
        months.append(
            PlanMonth(
                month=m,
                start=iso_day(result.month_start(m)),
                load_low=low,
                load_median=median,
                load_high=high,
                usable_rps=month.usable_rps if month is not None else None,
                cost_per_month=month.cost_per_month if month is not None else None,
                nodes=sum(month.counts.values()) if month is not None else None,
                added=sum(month.added.values()) if month is not None else None,
            )
        )
    return PlanFigure(
        months=tuple(months),
        plan_for=result.plan_for,
        price_model=result.policy.price_model,
        today_usable_rps=result.pool.usable_rps,
        total_cost=fleet.total_cost if fleet is not None else None,
        fleet_method=fleet.method if fleet is not None else None,
        fleet_optimal=fleet.optimal if fleet is not None else None,
    )


# --------------------------------------------------------------------------------------------
# JSON


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_document(data: ReportData) -> dict[str, Any]:
    """
    The report's data as one JSON-ready document (non-finite numbers become null).

    Keys: ``cluster``, ``inventory``, ``profile``, ``slo``, ``load_rps``, ``as_of``,
    ``windows``, ``newest``, ``arrivals``, ``figures`` (the ids), ``nodes`` (per node:
    ``node``, ``stat``, ``points`` as [rate, ms], ``curves`` with ``model``, ``stat``,
    ``chosen``, ``rate_rps``, ``latency_ms``; ``slo_ms``, ``capacity_rps``,
    ``capacity_interval``, …), ``split``, ``plan`` and ``notes``.
    """
    document: dict[str, Any] = {
        "cluster": data.cluster,
        "inventory": data.inventory,
        "profile": data.profile,
        "slo": {
            "percentile": data.slo_percentile,
            "latency_ms": data.slo_ms,
            "max_error_rate": data.slo_max_error_rate,
        },
        "load_rps": data.load_rps,
        "as_of": data.as_of,
        "windows": data.windows,
        "newest": data.newest,
        "arrivals": data.arrivals,
        "figures": list(data.figure_ids),
        "nodes": [asdict(n) for n in data.nodes],
        "split": asdict(data.split) if data.split is not None else None,
        "plan": asdict(data.plan) if data.plan is not None else None,
        "notes": list(data.notes),
    }
    plain: dict[str, Any] = _plain(document)
    return plain
