"""
Shared fixtures for the renderer tests: the fixed plan, and the real checkers.

The real-checker tests never skip: CI installs the checkers (``tests/run.sh``), and a missing
one fails with the apt line that installs it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from capplan.planfile import Plan, load_plan

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
PLAN_FILE = DATA / "plan.yaml"

#: The apt line that installs every real checker these tests run.
APT_LINE = (
    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx haproxy keepalived"
)


@pytest.fixture
def plan() -> Plan:
    """
    The fixed plan the golden files come from (four nodes: active, active, backup, down).
    """
    return load_plan(PLAN_FILE)


@pytest.fixture(scope="session")
def checkers() -> None:
    """
    Fail (never skip) when a real checker is missing, saying what to install.
    """
    search = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
    missing = [
        p for p in ("nginx", "haproxy", "keepalived") if shutil.which(p, path=search) is None
    ]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run `{APT_LINE}` (as root)")


def compare_golden(path: Path, text: str) -> None:
    """
    Assert ``text`` equals the golden file; ``CAPPLAN_UPDATE_GOLDEN=1`` rewrites it instead.
    """
    if os.environ.get("CAPPLAN_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8", newline="")
    assert path.read_bytes().decode("utf-8") == text, (
        f"{path.name} differs from the render (rerun with CAPPLAN_UPDATE_GOLDEN=1 after review)"
    )
