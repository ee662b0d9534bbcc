"""
The report's one core call: fit, split and plan with capplan's own functions, then turn the
results into figure data (pure: plain data in, a ``Report`` out).

The report shows what ``capplan fit``, ``capplan optimize`` and ``capplan plan`` answer for the
same inputs: it calls ``fit_measured``, ``build_plan`` and ``plan_capacity`` exactly as they do,
and never recomputes a capacity, a split or a fleet itself.  A section that cannot be
computed (the load is more than the pool can carry, the inventory declares nothing to plan
with) is left out with the reason in the notes, so the rest of the report is still there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from capplan.errors import InfeasibleError, InputError
from capplan.inventory import SLO, Inventory, Profile
from capplan.models.fit import NodeFit, NodeInput, SLOTarget, fit_measured
from capplan.models.parallel import fit_in_batches
from capplan.optimize.build import Optimized, build_plan
from capplan.plan.build import CapacityPlan, plan_capacity
from capplan.plan.forecast import Forecast
from capplan.report.data import (
    ReportData,
    node_figure,
    plan_figure,
    split_figure,
)
from capplan.samples import Window, format_time

__all__ = ["Report", "build_report"]


@dataclass(frozen=True)
class Report:
    """
    The report's data and the core results it was drawn from.
    """

    data: ReportData
    fits: tuple[NodeFit, ...]
    optimized: Optimized | None
    capacity: CapacityPlan | None


def build_report(
    *,
    inventory: Inventory,
    inventory_name: str,
    profile: Profile,
    slo: SLO,
    windows: Mapping[str, Sequence[Window]],
    load_rps: float,
    forecast: Forecast | None,
    as_of: str,
    before: Mapping[str, float] | None = None,
    before_label: str | None = None,
    plan_for: str = "high",
    method: str = "auto",
    time_limit_s: float = 5.0,
) -> Report:
    """
    Fit every node, split ``load_rps`` and plan capacity, and gather the figures' data.

    Args:
        inventory: The pool.
        inventory_name: How the report names the inventory (its path as given).
        profile: The profile in force.
        slo: The effective SLO.
        windows: Each node's stored windows (a node missing here has none).
        load_rps: The load to split (``--load``, the inventory's, else the observed peak).
        forecast: The demand to plan for; None leaves the plan section out.
        as_of: When the report is made for (ISO-8601), as the page states it.
        before: The shares before (e.g. an earlier plan's); None: an unweighted round robin.
        before_label: What ``before`` is, for the legend.
        plan_for: The forecast band the fleet is bought for (``high``, ``median``, ``low``).
        method: The fleet solver (``auto``, ``rolling``, ``horizon``).
        time_limit_s: The whole-horizon solver's time limit.

    Returns:
        The report.

    Raises:
        InputError: when no node of the inventory has a stored window.
    """
    if not any(windows.get(n.name) for n in inventory.nodes):
        raise InputError(
            "no stored windows for any node of the inventory",
            file=inventory_name,
            hint="run `capplan collect -i INV` or `capplan import FILE.csv` first",
        )
    target = SLOTarget(slo.percentile, slo.latency_ms, slo.max_error_rate)
    per_node = [list(windows.get(n.name, ())) for n in inventory.nodes]
    inputs = [
        NodeInput(n.name, ws, n.workers) for n, ws in zip(inventory.nodes, per_node, strict=True)
    ]
    fits = fit_measured(  # as capplan fit does
        inputs,
        target,
        arrivals=inventory.arrival_model,
        utilization_ceiling=profile.utilization_ceiling,
        fit=fit_in_batches,
    )
    nodes = tuple(node_figure(fit, ws, target) for fit, ws in zip(fits, per_node, strict=True))
    notes: list[str] = []
    starts = [w.start for ws in per_node for w in ws]
    newest = format_time(max(starts)) if starts else None
    count = sum(len(ws) for ws in per_node)

    optimized: Optimized | None = None
    split = None
    error_rates = []
    for ws in per_node:
        requests = sum(w.requests for w in ws)
        error_rates.append(sum(w.errors for w in ws) / requests if requests else 0.0)
    try:
        optimized = build_plan(
            inventory=inventory,
            inventory_name=inventory_name,
            profile=profile,
            slo=slo,
            fits=fits,
            load_rps=load_rps,
            windows=count,
            newest=newest,
            error_rates=error_rates,
        )
    except (InfeasibleError, InputError) as exc:
        notes.append(f"split: not shown: {exc}")
    if optimized is not None:
        notes.extend(optimized.warnings)
        split = split_figure(
            fits, optimized, slo, profile.headroom, before=before, before_label=before_label
        )

    capacity: CapacityPlan | None = None
    plan = None
    if forecast is not None:
        try:
            capacity = plan_capacity(
                inventory=inventory,
                fits=fits,
                forecast=forecast,
                plan_for=plan_for,
                method=method,
                time_limit_s=time_limit_s,
            )
        except (InfeasibleError, InputError) as exc:
            notes.append(f"capacity plan: not shown: {exc}")
    if capacity is not None:
        notes.extend(capacity.notes)
        plan = plan_figure(capacity)

    data = ReportData(
        cluster=inventory.cluster,
        inventory=inventory_name,
        profile=profile.name,
        slo_percentile=slo.percentile,
        slo_ms=slo.latency_ms,
        slo_max_error_rate=slo.max_error_rate,
        load_rps=load_rps,
        as_of=as_of,
        windows=count,
        newest=newest,
        arrivals=inventory.arrival_model,
        nodes=nodes,
        split=split,
        plan=plan,
        notes=tuple(notes),
    )
    return Report(data, tuple(fits), optimized, capacity)
