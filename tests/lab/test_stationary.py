"""
The lab's stationary node capacities: the queue simulation against queueing theory, and the
reference it adds to a report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench.lab import results, stationary
from bench.lab.results import add_stationary, markdown, targets
from bench.lab.stationary import simulate, stationary_capacity
from capplan.models.queueing import Station


def test_simulation_matches_mm1_and_md1_means() -> None:
    """
    M/M/1 mean response 1/(μ − λ); M/D/1 mean response S + ρS/(2(1 − ρ)) (Pollaczek–
    Khinchine) — the textbook values, within the simulation's noise.
    """
    rate, service = 40.0, 0.02  # ρ = 0.8
    # (6 pooled runs of 400 s: over 5 seed sets the means were within 3.3% (M/M/1) and 4.5%
    # (M/D/1) of the textbook values)
    exp, fixed = (
        np.concatenate([simulate(rate, 1, service, law, 400.0, 5.0, seed=k) for k in range(6)])
        for law in ("exp", "fixed")
    )
    assert exp.mean() == pytest.approx(1.0 / (1.0 / service - rate), rel=0.06)
    rho = rate * service
    assert fixed.mean() == pytest.approx(service + rho * service / (2 * (1 - rho)), rel=0.06)
    assert fixed.min() == pytest.approx(service)  # nobody is served faster than S


def test_exact_mdc_agrees_with_the_simulation() -> None:
    """
    M/D/2 at 20 ms: the exact capacity at p99 ≤ 120 ms (79.76 rps) lies within the simulated
    seed sets' scatter, and the exact p99 at 80 rps matches a long run's within 2%.
    """
    exact = stationary.mdc_capacity(2, 20.0, 120.0, 99.0)
    assert exact == pytest.approx(79.757, abs=0.01)
    runs = np.concatenate([simulate(80.0, 2, 0.02, "fixed", 400.0, 5.0, seed=k) for k in range(6)])
    cdf = stationary.mdc_wait_cdf(2, 80.0, 0.02)
    for q in (0.5, 0.95, 0.99):
        wait = float(np.quantile(runs, q)) - 0.02
        assert cdf(wait) == pytest.approx(q, abs=0.003 if q == 0.99 else 0.01)


def test_simulation_matches_mmc_percentile() -> None:
    """M/M/4 at 85%: the pooled p99 of long runs is the exact M/M/c p99 within 3%."""
    station = Station(4, 0.02, 1.0)
    rate = 0.85 * 4 / 0.02
    runs = [simulate(rate, 4, 0.02, "exp", 300.0, 5.0, seed=k) for k in range(6)]
    p99 = float(np.quantile(np.concatenate(runs), 0.99))
    assert p99 == pytest.approx(station.response_quantile(0.99, rate), rel=0.03)


def test_lognormal_service_has_its_cv() -> None:
    times = simulate(1.0, 64, 0.02, "lognormal", 20_000.0, 0.0, seed=3, cv=0.4)
    # at 1 rps and 64 slots nobody waits: the response times are the service times
    assert times.mean() == pytest.approx(0.02, rel=0.02)
    assert times.std() / times.mean() == pytest.approx(0.4, rel=0.05)


def test_stationary_capacity_agrees_with_the_exact_mmc(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    For exponential service the model is exact M/M/c: the simulated stationary capacity at
    p99 ≤ 120 ms agrees with Station.max_rate_for within the simulation's noise.
    """
    monkeypatch.setattr(stationary, "RUNS", 4)
    monkeypatch.setattr(stationary, "STEPS", 9)
    simulated = stationary_capacity(4, 20.0, "exp", 0.4, 120.0, 99)
    assert simulated == pytest.approx(Station(4, 0.02, 1.0).max_rate_for(0.12, 99), rel=0.03)


def test_the_report_adds_the_stationary_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Computed once per node (then kept), shown in the table, checked in the targets."""
    calls: list[tuple[Any, ...]] = []

    def fake(*args: Any, seed: int) -> float:
        calls.append((*args, seed))
        return 100.0 + seed / 1000.0

    monkeypatch.setattr(results, "stationary_capacity", fake)
    variant: dict[str, Any] = {
        "pool": {
            "service": "lognormal",
            "nodes": [{"name": "a", "slots": 2, "service_ms": 20.0}],
        },
        "nodes": [
            {
                "node": "a",
                "predicted_rps": 101.0,
                "predicted_interval": [100.5, 101.5],
                "measured_rps": 110.0,
            }
        ],
        "strategies": {},
    }
    variants = {"default/lognormal": variant}
    assert add_stationary(variants, {"latency_ms": 120.0, "percentile": 99}) == 1
    node = variant["nodes"][0]
    assert node["stationary_rps"] == pytest.approx(101.5)  # median of 100, 101, 102, 103
    assert node["stationary_range"] == [100.0, 103.0]
    assert calls[0] == (2, 20.0, "lognormal", 0.4, 120.0, 99.0, 0)
    assert add_stationary(variants, {"latency_ms": 120.0, "percentile": 99}) == 0  # kept
    assert "| a | 101.0 [100.5, 101.5] | 110.0 | -8.2% | 101.5 [100.0, 103.0] | -0.5% |" in (
        markdown(variants, "p99")
    )
    found = {t.what: t for t in targets("default/lognormal", variant)}
    assert not found["the 95% interval covers the measured capacity for most nodes"].met
    covers = found["the 95% interval covers the stationary capacity (simulated) for most nodes"]
    assert covers.met
    assert covers.figures == "1 of 1 nodes"


def test_the_report_adds_the_pools_single_queue_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool whose nodes share one mean service time and law is, behind one FCFS queue over
    all its slots, a single M/G/c: its stationary capacity (fixed service: exact M/D/c) is
    what no dispatch to the nodes can beat, shown under the node table; a pool of unlike nodes
    gets none."""
    seen: list[tuple[Any, ...]] = []

    def exact(*args: Any) -> float:
        seen.append(args)
        return 1000.0 + 10.0 * float(args[0])

    monkeypatch.setattr(results, "mdc_capacity", exact)

    def variant(second_ms: float) -> dict[str, Any]:
        node = {"predicted_rps": 1.0, "predicted_interval": [0.5, 1.5], "measured_rps": 1.0}
        specs = [("a", 2, 20.0), ("b", 8, second_ms)]
        return {
            "pool": {
                "service": "fixed",
                "nodes": [{"name": n, "slots": c, "service_ms": ms} for n, c, ms in specs],
            },
            "nodes": [{"node": n, **node} for n, _, _ in specs],
            "strategies": {},
        }

    like, unlike = variant(20.0), variant(30.0)
    slo = {"latency_ms": 120.0, "percentile": 99}
    assert add_stationary({"like": like, "unlike": unlike}, slo) == 4
    assert (10, 20.0, 120.0, 99.0) in seen  # the ten slots as one station
    assert like["pool_stationary_rps"] == 1100.0
    assert like["pool_stationary_range"] == [1100.0, 1100.0]
    assert "pool_stationary_rps" not in unlike
    report = markdown({"like": like, "unlike": unlike}, "p99")
    assert report.count("One FCFS queue over all") == 1
    assert "One FCFS queue over all 10 slots, which no dispatch to the nodes can beat, " in report
    assert "meets the SLO up to 1100 rps" in report


def test_the_command_prints_a_stations_capacity(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bench.lab.stationary``: fixed service is the exact M/D/c (79.76 rps for two
    20 ms slots at p99 ≤ 120 ms, as the lab's README has it); bad arguments exit 2."""
    assert stationary.main(["--slots", "2", "--law", "fixed"]) == 0
    out = capsys.readouterr().out
    assert "2 slots, 20 ms fixed service: p99 <= 120 ms up to 79.8 rps, exact (M/D/c)" in out
    with pytest.raises(SystemExit) as exit_info:
        stationary.main(["--slots", "0"])
    assert exit_info.value.code == 2
    assert "--slots must be at least 1" in capsys.readouterr().err
