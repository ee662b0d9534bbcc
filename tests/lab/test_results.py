"""
The lab's report of results.json: ratios, the issue's targets, the plot (no measuring).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.lab.results import markdown, plot, targets
from bench.lab.run import _merged, _strategies


def _strategy(p80: float | None, max_rate: float, **over: Any) -> dict[str, Any]:
    overload = {"goodput_rps": 1000.0, "p99_ms": 150.0, "refused": 0, "refused_p99_ms": None}
    overload.update(over)
    return {
        "p99_ms": {"0.5": 90.0, "0.8": p80},
        "error_rate": {"0.5": 0.0, "0.8": 0.0},
        "spread": {"0.5": [89.0, 91.0], "0.8": [p80, p80]},
        "max_rate_at_slo": max_rate,
        "overload": overload,
    }


@pytest.fixture
def variant() -> dict[str, Any]:
    strategies = {
        "nginx/rr": _strategy(None, 300.0, goodput_rps=700.0, p99_ms=None),
        "nginx/lc": _strategy(120.0, 850.0),
        "nginx/wrr": _strategy(96.0, 920.0),
        "nginx/wlc": _strategy(95.0, 1000.0),
        "nginx/capplan": _strategy(
            94.0, 1020.0, goodput_rps=1060.0, p99_ms=130.0, refused=300, refused_p99_ms=2.0
        ),
        "nginx/optimum": _strategy(93.0, 1050.0),
        "haproxy/wlc": _strategy(90.0, 1000.0),
        "haproxy/capplan": _strategy(
            100.0, 940.0, goodput_rps=1000.0, p99_ms=160.0, refused=10, refused_p99_ms=400.0
        ),
    }
    strategies["nginx/optimum"]["weights"] = {"n1": 2, "n2": 4}
    return {
        "pool": {"measured_rps": 1100.0, "predicted_rps": 1050.0},
        "nodes": [
            {
                "node": "n1",
                "predicted_rps": 54.0,
                "predicted_interval": [41.0, 70.0],
                "measured_rps": 59.0,
            },
            {
                "node": "n2",
                "predicted_rps": 150.0,
                "predicted_interval": [140.0, 160.0],
                "measured_rps": 190.0,
            },
            {
                "node": "n3",
                "predicted_rps": 360.0,
                "predicted_interval": [340.0, 380.0],
                "measured_rps": 370.0,
            },
        ],
        "strategies": strategies,
        "capplan": {"queue_timeout_ms": 87, "methods": {"nginx": "least_conn"}},
    }


def test_targets(variant: dict[str, Any]) -> None:
    found = {(t.balancer, t.what): t for t in targets("default/exp", variant)}
    median = found["-", "predicted node capacity within ±10% of measured (median over nodes)"]
    assert median.met  # errors 8.5%, 21%, 2.7%: median 8.5%
    assert median.figures == "median error 8.5%"
    covers = found["-", "the 95% interval covers the measured capacity for most nodes"]
    assert covers.met
    assert covers.figures == "2 of 3 nodes"

    best = found["nginx", "max rate at the SLO ≥ 1.0× the best of rr, lc, wrr, wlc"]
    assert best.met
    assert best.figures == "1020 vs wlc 1000 rps (1.02×)"
    assert found["nginx", "max rate at the SLO ≥ 0.95× optimum"].met
    assert found["nginx", "p99 at 80% ≤ the best alternative's"].met
    assert found["nginx", "120%: goodput ≥ 95% of capacity"].met  # 1060 of 1100
    assert found["nginx", "120%: admitted p99 ≤ 1.5× capplan's p99 at 80%"].met  # 130 ≤ 141
    assert found[
        "nginx",
        "120%: the excess refused within the queue timeout (p99; +5 ms for the round trip and "
        "the balancer's millisecond timers)",
    ].met

    assert not found["haproxy", "max rate at the SLO ≥ 1.0× the best of rr, lc, wrr, wlc"].met
    assert not found["haproxy", "p99 at 80% ≤ the best alternative's"].met
    assert not found["haproxy", "120%: goodput ≥ 95% of capacity"].met  # 1000 of 1100
    assert not found["haproxy", "120%: admitted p99 ≤ 1.5× capplan's p99 at 80%"].met
    refused = found[
        "haproxy",
        "120%: the excess refused within the queue timeout (p99; +5 ms for the round trip and "
        "the balancer's millisecond timers)",
    ]
    assert not refused.met
    assert refused.figures == "400 ms vs 87 ms"
    assert ("haproxy", "max rate at the SLO ≥ 0.95× optimum") not in found  # not measured


def test_markdown_has_ratios_and_targets(variant: dict[str, Any]) -> None:
    text = markdown({"default/exp": variant}, "p99")
    assert "| max rps at SLO (higher is better) | 3.40× | 1.20× | 1.11× | 1.02× | 0.97× |" in text
    assert "| p99 at 80% (lower is better) | - | 0.78× | 0.98× | 0.99× | 1.01× |" in text
    assert "| nginx/rr | 90 (89–91) | ∞ | 300 | 700 | ∞ | 0 |" in text
    assert "`nginx/optimum` weights found by the search: n1 2, n2 4" in text
    assert (
        "| 120%: goodput ≥ 95% of capacity | haproxy | **no** | 1000 of 1100 rps (90.9%) |" in text
    )


def test_max_rate_spread_is_shown(variant: dict[str, Any]) -> None:
    """With repeats, the max rate shows the repeats' lowest and highest bisections."""
    variant["strategies"]["nginx/capplan"]["max_rate_spread"] = [1020.0, 1090.0]
    text = markdown({"default/exp": variant}, "p99")
    rate = variant["strategies"]["nginx/capplan"]["max_rate_at_slo"]
    assert f"| {rate:.0f} (1020–1090) |" in text


def test_plot(variant: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "results.svg"
    plot({"default/exp": variant}, path, 120.0)
    svg = path.read_text()
    assert svg.startswith("<?xml")
    for title in ("default/exp, nginx", "default/exp, haproxy: max rate at the SLO"):
        assert title in svg


def test_a_quick_run_claims_nothing_it_did_not_measure(variant: dict[str, Any]) -> None:
    """Without an 80% level or a max rate, neither their target nor their ratios appear."""
    for s in variant["strategies"].values():
        s["p99_ms"].pop("0.8")
        s.pop("max_rate_at_slo")
    found = {t.what for t in targets("default/exp", variant)}
    assert "120%: admitted p99 ≤ 1.5× capplan's p99 at 80%" not in found
    assert "120%: goodput ≥ 95% of capacity" in found
    assert "as a ratio to each alternative" not in markdown({"default/exp": variant}, "p99")


def test_strategies_option_orders_and_refuses_unknown_names() -> None:
    assert ("wlc", "capplan") == _strategies("capplan,wlc", quick=False)
    assert ("rr", "lc", "capplan") == _strategies(None, quick=True)
    with pytest.raises(SystemExit, match="unknown fastest"):
        _strategies("capplan,fastest", quick=False)


def test_a_partial_run_keeps_what_it_did_not_measure() -> None:
    """--strategies / --balancers: the strategies not run keep their results, in order."""
    old = {"strategies": {"nginx/wlc": {"max_rate_at_slo": 1}, "haproxy/capplan": {"x": 1}}}
    new = {"pool": {}, "strategies": {"haproxy/capplan": {"x": 2}, "haproxy/rr": {"x": 3}}}
    merged = _merged(old, new)
    assert ["nginx/wlc", "haproxy/rr", "haproxy/capplan"] == list(merged["strategies"])
    assert {"x": 2} == merged["strategies"]["haproxy/capplan"]
    assert {"max_rate_at_slo": 1} == merged["strategies"]["nginx/wlc"]
    assert new["strategies"] == _merged(None, new)["strategies"]
