"""
Prometheus alerting rules from a plan: ``capplan optimize --emit prometheus-rules`` (pure).

One rule group per cluster, with the pool's series selected the way ``capplan collect --from
prometheus`` selects each node's (the inventory's ``prometheus`` section: metric names, the
pool's matchers, else the nodes' ``instance`` labels):

- recording rules for the pool's request rate, error ratio and SLO percentile over the profile's
  ``alert_window_s``;
- ``CapplanSLOLatency`` / ``CapplanSLOErrors``: the SLO broken, for the profile's
  ``alert_for_s`` (severity ``page``);
- ``CapplanNMinus1Headroom``: the load above ``alert_load_rps`` — losing the largest node would
  eat into the headroom (severity ``ticket``), and ``CapplanScaleOut``: above
  ``scale_out_load_rps`` the pool without its largest node misses the SLO (severity ``page``),
  both for the profile's ``load_alert_for_s``; their descriptions carry the plan's reasons.

The file is YAML; ``promtool check rules`` checks it (``capplan validate``, and CI).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import yaml

from capplan.collect.prometheus import PrometheusSettings, quote_label_value, render_matchers
from capplan.planfile import Plan

__all__ = ["pool_selector", "render_rules"]


def pool_selector(settings: PrometheusSettings, node_matches: Sequence[Mapping[str, str]]) -> str:
    """
    The label matchers (no braces) that select the pool's request series.

    The pool's own ``match`` when it has one; else the nodes' ``instance`` labels as one
    anchored regex (``instance=~"a|b"``, each value regex-quoted).
    """
    if settings.match:
        return render_matchers(settings.match)
    instances = sorted({m["instance"] for m in node_matches if "instance" in m})
    if not instances:
        raise ValueError("no pool matchers and no node instance labels to select the pool by")
    pattern = "|".join(re.escape(i) for i in instances)
    return f"instance=~{quote_label_value(pattern)}"


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def render_rules(
    plan: Plan,
    settings: PrometheusSettings,
    node_matches: Sequence[Mapping[str, str]],
    *,
    alert_for_s: int,
    load_alert_for_s: int,
    window_s: int,
) -> str:
    """
    The rules file's text for ``plan`` (see the module's notes).
    """
    cluster = plan.cluster
    slo = plan.inputs.slo
    selector = pool_selector(settings, node_matches)
    window = _duration(window_s)
    r, h, status = settings.requests_metric, settings.histogram, settings.status_label
    quantile = slo.percentile / 100.0
    latency = slo.latency_ms / 1000.0 if settings.histogram_unit == "seconds" else slo.latency_ms
    unit = "s" if settings.histogram_unit == "seconds" else "ms"
    prefix = f"capplan:{cluster.replace('-', '_').replace('.', '_')}"
    label = f"p{slo.percentile:g}"
    records = [
        {
            "record": f"{prefix}:requests:rate{window}",
            "expr": f"sum(rate({r}{{{selector}}}[{window}]))",
        },
        {
            "record": f"{prefix}:errors:ratio_rate{window}",
            "expr": f'sum(rate({r}{{{selector},{status}=~"5.."}}[{window}])) '
            f"/ sum(rate({r}{{{selector}}}[{window}]))",
        },
        {
            "record": f"{prefix}:latency_{label.replace('.', '_')}:{window}",
            "expr": f"histogram_quantile({quantile:g}, "
            f"sum by (le) (rate({h}_bucket{{{selector}}}[{window}])))",
        },
    ]
    labels = {"cluster": cluster}
    alerts: list[dict[str, object]] = [
        {
            "alert": "CapplanSLOLatency",
            "expr": f"{records[2]['record']} > {latency:g}",
            "for": _duration(alert_for_s),
            "labels": {**labels, "severity": "page"},
            "annotations": {
                "summary": f"{cluster}: {label} latency above the SLO's {slo.latency_ms:g} ms",
                "description": f"The pool's {label} over {window} is {{{{ $value }}}}{unit}; "
                f"the SLO is {slo.latency_ms:g} ms.",
            },
        },
        {
            "alert": "CapplanSLOErrors",
            "expr": f"{records[1]['record']} > {slo.max_error_rate:g}",
            "for": _duration(alert_for_s),
            "labels": {**labels, "severity": "page"},
            "annotations": {
                "summary": f"{cluster}: error ratio above the SLO's {slo.max_error_rate:g}",
                "description": "The pool's 5xx ratio over "
                f"{window} is {{{{ $value }}}}; the SLO allows {slo.max_error_rate:g}.",
            },
        },
    ]
    thresholds = plan.pool.thresholds
    reasons = plan.pool.reasons
    for key, name, severity, summary in (
        (
            "alert_load_rps",
            "CapplanNMinus1Headroom",
            "ticket",
            "losing the largest node would eat into the headroom",
        ),
        (
            "scale_out_load_rps",
            "CapplanScaleOut",
            "page",
            "the pool without its largest node would miss the SLO: add a node",
        ),
    ):
        value = getattr(thresholds, key)
        if value is None:
            continue
        alerts.append(
            {
                "alert": name,
                "expr": f"{records[0]['record']} > {value:g}",
                "for": _duration(load_alert_for_s),
                "labels": {**labels, "severity": severity},
                "annotations": {
                    "summary": f"{cluster}: load above {value:g} rps: {summary}",
                    "description": reasons.get(key, ""),
                },
            }
        )
    document = {"groups": [{"name": f"capplan-{cluster}", "rules": [*records, *alerts]}]}
    header = (
        f"# Prometheus rules for {cluster}, written by capplan from its plan: regenerate them\n"
        "# with `capplan optimize --emit prometheus-rules`, check with `promtool check rules`.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
