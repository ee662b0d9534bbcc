"""
The lab's short variant, end to end (about 10 minutes): real nodes, capplan collect → fit →
optimize, and the real nginx; it asserts only what is robust at that length (the issue's
list).  The full variant is ``python -m bench.lab --out DIR`` (see bench/lab/README.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        pytest.fail("nginx is not installed: tests/run.sh installs it")
    out = tmp_path_factory.mktemp("lab")
    done = subprocess.run(
        [sys.executable, "-m", "bench.lab", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20 * 60,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads((out / "results.json").read_text())
    (variant,) = document["variants"].values()
    return variant


def test_predictions_within_20_percent(results: dict) -> None:
    """Nodes of ≥ 200 rps: capplan's capacity at the SLO is within ±20% of the measured one."""
    checked = [n for n in results["nodes"] if n["measured_rps"] is not None]
    assert checked, "no node was measured"
    for node in checked:
        assert abs(node["predicted_rps"] / node["measured_rps"] - 1) <= 0.20, node


def test_capplan_meets_the_slo_where_round_robin_does_not(results: dict) -> None:
    """At 70% of the pool's predicted capacity capplan's config meets p99 ≤ SLO; rr does not."""
    strategies = results["strategies"]
    capplan = strategies["nginx/capplan"]
    rr = strategies["nginx/rr"]
    slo = 120.0
    assert capplan["p99_ms"]["0.7"] is not None
    assert capplan["p99_ms"]["0.7"] <= slo
    assert capplan["error_rate"]["0.7"] <= 0.001
    assert rr["p99_ms"]["0.7"] is None or rr["p99_ms"]["0.7"] > slo


def test_capplan_at_90_percent_no_worse_than_least_conn(results: dict) -> None:
    strategies = results["strategies"]
    capplan = strategies["nginx/capplan"]["p99_ms"]["0.9"]
    lc = strategies["nginx/lc"]["p99_ms"]["0.9"]
    assert capplan is not None
    assert lc is None or capplan <= 1.1 * lc
