"""
Shared fixtures of the report tests: the bundled example's report, built once through the core
call and once through the command.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from capplan.cli import run
from capplan.inventory import Inventory, Profile, effective_slo, load_inventory, load_profile
from capplan.plan.forecast import growth_forecast
from capplan.report.build import Report, build_report
from capplan.samples import Window, parse_samples, parse_time
from capplan.status import ExitStatus
from tests.conftest import EXAMPLES

INVENTORY = EXAMPLES / "web" / "inventory.yaml"
SAMPLES = EXAMPLES / "web" / "samples.csv"
AT = "2026-11-23T00:00:00Z"
GROWTH = 0.06  # per month, as --growth 6%/month
HORIZON = 6
LOAD = 600.0  # the example inventory's load_rps


@dataclass(frozen=True)
class Example:
    """
    The example's inputs, as the command reads them.
    """

    inventory: Inventory
    profile: Profile
    windows: dict[str, list[Window]]


@pytest.fixture(scope="package")
def example() -> Example:
    """The example inventory, its profile and its windows (straight from samples.csv)."""
    inventory = load_inventory(INVENTORY)
    profile = load_profile(inventory.profile, relative_to=INVENTORY.parent)
    windows: dict[str, list[Window]] = {n.name: [] for n in inventory.nodes}
    for numbered in parse_samples(SAMPLES.read_text(encoding="utf-8"), str(SAMPLES)):
        windows[numbered.window.node].append(numbered.window)
    for ws in windows.values():  # the order the store gives them in
        ws.sort(key=lambda w: w.start)
    return Example(inventory, profile, windows)


@pytest.fixture(scope="package")
def report(example: Example) -> Report:
    """The example's report from the core call, as `capplan report` with the CLI run's flags."""
    return build_report(
        inventory=example.inventory,
        inventory_name=str(INVENTORY),
        profile=example.profile,
        slo=effective_slo(None, example.inventory.slo, example.profile.slo),
        windows=example.windows,
        load_rps=LOAD,
        forecast=growth_forecast(LOAD, GROWTH, HORIZON, now=parse_time(AT).timestamp()),
        as_of=AT,
        # the rolling plan is the same on every run; auto's whole-horizon program stops at a
        # time limit on this example, so two runs may stop at different plans
        method="rolling",
    )


@dataclass(frozen=True)
class CommandRun:
    """
    One in-process `capplan report --json` run on the example: its page and its JSON.
    """

    status: ExitStatus
    page: Path
    document: dict[str, Any]
    stderr: str
    db: Path


def invoke(*args: str | Path) -> tuple[ExitStatus, str, str]:
    """
    Run capplan in-process (for package-scoped fixtures, where capsys is not available).
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = run([str(a) for a in args])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="package")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the example's windows."""
    db = tmp_path_factory.mktemp("store") / "capplan.db"
    status, _, err = invoke("import", SAMPLES, "--db", db)
    assert ExitStatus.OK == status, err
    return db


@pytest.fixture(scope="package")
def command_run(tmp_path_factory: pytest.TempPathFactory, store: Path) -> CommandRun:
    """`capplan report -i INV --db DB --growth 6%/month --horizon 6 --at AT --method rolling
    -o PAGE --json`."""
    page = tmp_path_factory.mktemp("page") / "report.html"
    status, out, err = invoke(
        "report", "-i", INVENTORY, "--db", store, "--growth", "6%/month",
        "--horizon", str(HORIZON), "--at", AT, "--method", "rolling", "-o", page, "--json",
    )  # fmt: skip
    return CommandRun(status, page, json.loads(out) if out else {}, err, store)
