"""
Metrics for node_exporter's textfile collector: ``--emit openmetrics`` (prometheus-client).

The gauges, every one labelled with the ``cluster``:

- ``capplan_node_capacity_rps{node, bound}`` — each node's capacity at the SLO, ``bound``
  ``point``, ``low`` and ``high`` (its 95% interval; an open end is left out);
- ``capplan_node_share{node}`` and ``capplan_node_max_conns{node}`` — the plan's split and
  connection limits (``capplan optimize``);
- ``capplan_pool_threshold_rps{threshold}`` — ``alert`` and ``scale_out`` loads;
- ``capplan_pool_usable_rps{bound}`` — what today's pool serves in its worst loss, and
  ``capplan_days_to_exhaustion{bound}`` — ``early``, ``median``, ``late`` (``capplan plan``;
  a date beyond the horizon is left out);
- ``capplan_generated_timestamp_seconds`` — the time the figures are for (now; ``plan --at``).

The file is written by prometheus-client's ``write_to_textfile`` (a temporary file and a
rename, so the collector never reads half of it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

__all__ = ["NodeMetrics", "PoolMetrics", "registry_for", "write_metrics"]


@dataclass(frozen=True)
class NodeMetrics:
    node: str
    capacity_rps: float
    interval: tuple[float, float]
    share: float | None = None
    max_conns: int | None = None


@dataclass(frozen=True)
class PoolMetrics:
    cluster: str
    nodes: Sequence[NodeMetrics]
    thresholds: Mapping[str, float] = field(default_factory=dict)  # alert, scale_out
    usable_rps: Mapping[str, float] = field(default_factory=dict)  # low, point, high
    days_to_exhaustion: Mapping[str, float] = field(default_factory=dict)  # early, …
    generated_at: float = 0.0


def registry_for(pool: PoolMetrics) -> CollectorRegistry:
    """
    A registry holding ``pool``'s gauges (pure: nothing is written).
    """
    registry = CollectorRegistry()
    cluster = pool.cluster
    capacity = Gauge(
        "capplan_node_capacity_rps",
        "Node capacity at the SLO (requests per second), with its 95% interval",
        ["cluster", "node", "bound"],
        registry=registry,
    )
    share = Gauge(
        "capplan_node_share",
        "Share of the load the plan gives the node",
        ["cluster", "node"],
        registry=registry,
    )
    conns = Gauge(
        "capplan_node_max_conns",
        "Connection limit the plan sets",
        ["cluster", "node"],
        registry=registry,
    )
    for node in pool.nodes:
        for bound, value in zip(
            ("point", "low", "high"), (node.capacity_rps, *node.interval), strict=True
        ):
            if math.isfinite(value):
                capacity.labels(cluster, node.node, bound).set(value)
        if node.share is not None:
            share.labels(cluster, node.node).set(node.share)
        if node.max_conns is not None:
            conns.labels(cluster, node.node).set(node.max_conns)
    if pool.thresholds:
        threshold = Gauge(
            "capplan_pool_threshold_rps",
            "Pool load thresholds from the plan (alert: N-1 headroom; scale_out: N-1 SLO)",
            ["cluster", "threshold"],
            registry=registry,
        )
        for name, value in pool.thresholds.items():
            threshold.labels(cluster, name).set(value)
    if pool.usable_rps:
        usable = Gauge(
            "capplan_pool_usable_rps",
            "Load today's pool serves in its worst loss, at the target utilization",
            ["cluster", "bound"],
            registry=registry,
        )
        for bound, value in pool.usable_rps.items():
            if math.isfinite(value):
                usable.labels(cluster, bound).set(value)
    if pool.days_to_exhaustion:
        days = Gauge(
            "capplan_days_to_exhaustion",
            "Days until forecast demand exceeds today's pool (early, median, late)",
            ["cluster", "bound"],
            registry=registry,
        )
        for bound, value in pool.days_to_exhaustion.items():
            days.labels(cluster, bound).set(value)
    stamp = Gauge(
        "capplan_generated_timestamp_seconds",
        "When capplan wrote these metrics",
        ["cluster"],
        registry=registry,
    )
    stamp.labels(cluster).set(pool.generated_at)
    return registry


def write_metrics(path: str | Path, pool: PoolMetrics) -> None:
    """
    Write ``pool``'s gauges to ``path`` for the textfile collector, atomically.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry_for(pool))
