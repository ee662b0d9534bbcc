"""
The committed example plan and configs are exactly what capplan generates from the example's
inventory and windows (the drift check CI runs, on our own example).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from capplan.status import ExitStatus
from tests.conftest import CLI

ROOT = Path(__file__).resolve().parents[1]


def test_example_outputs_are_up_to_date(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`capplan optimize ... --check` on examples/web finds no drift (regenerate if it does)."""
    monkeypatch.chdir(ROOT)
    db = tmp_path / "capplan.db"
    assert ExitStatus.OK == cli("import", "examples/web/samples.csv", "--db", db).status
    result = cli(
        "optimize",
        "-i",
        "examples/web/inventory.yaml",
        "--db",
        db,
        "--out",
        "examples/web/plan.yaml",
        "--emit",
        "nginx,haproxy",
        "--check",
    )
    assert ExitStatus.OK == result.status, (
        "examples/web is stale; regenerate with: capplan import examples/web/samples.csv "
        "--db /tmp/x.db && capplan optimize -i examples/web/inventory.yaml --db /tmp/x.db "
        "--out examples/web/plan.yaml --emit nginx,haproxy\n" + result.stdout
    )
