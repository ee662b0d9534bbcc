"""
`capplan report` end to end: the page and its JSON, --png, and the errors.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from capplan.planfile import load_plan
from capplan.report.build import Report
from capplan.report.data import to_document
from capplan.status import ExitStatus
from tests.conftest import CLI
from tests.report.conftest import AT, INVENTORY, CommandRun

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXAMPLE_PLAN = INVENTORY.parent / "plan.yaml"


class TestReport:
    def test_json_is_the_core_calls_data(self, command_run: CommandRun, report: Report) -> None:
        """--json prints the figures' data: what build_report computes, plus the files."""
        assert ExitStatus.OK == command_run.status, command_run.stderr
        document = dict(command_run.document)
        assert [str(command_run.page)] == document.pop("files")
        assert to_document(report.data) == document

    def test_page_written(self, command_run: CommandRun) -> None:
        """-o writes the page, and says so on stderr (stdout holds only the JSON)."""
        assert command_run.page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
        assert f"wrote {command_run.page}" not in command_run.stderr  # --json: quiet

    def test_png_alone_and_before(
        self, cli: CLI, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        --png DIR writes each figure as a PNG, and no page unless -o is given too; --before
        PLAN compares with that plan's shares (here the example's own plan: the same split).
        """
        monkeypatch.chdir(tmp_path)
        shutil.copy(INVENTORY, tmp_path / "inventory.yaml")
        result = cli(
            "report", "-i", "inventory.yaml", "--db", store, "--at", AT, "--horizon", "1",
            "--png", "figures", "--before", EXAMPLE_PLAN, "--json",
        )  # fmt: skip
        assert ExitStatus.OK == result.status, result.stderr
        names = sorted(p.name for p in (tmp_path / "figures").iterdir())
        expected = ["node-web-1.png", "node-web-2.png", "node-web-3.png", "node-web-4.png"]
        assert sorted([*expected, "plan.png", "split.png"]) == names
        for name in names:
            content = (tmp_path / "figures" / name).read_bytes()
            assert content.startswith(PNG_SIGNATURE)
            assert len(content) > 10_000
        assert not (tmp_path / "capplan-report.html").exists()
        document = result.json
        assert [f"figures/{f}.png" for f in document["figures"]] == document["files"]
        split = document["split"]
        shares = {n.node: n.share for n in load_plan(EXAMPLE_PLAN).nodes}
        total = sum(shares.values())
        assert [shares[n["node"]] / total for n in split["nodes"]] == pytest.approx(
            [n["before_share"] for n in split["nodes"]]
        )
        assert f"before: the shares of {EXAMPLE_PLAN}" == split["before_label"]
        assert split["before_pool_ms"] == pytest.approx(split["after_pool_ms"], rel=1e-3)

    def test_page_by_default(
        self, cli: CLI, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without -o or --png the page is capplan-report.html, and stderr says so."""
        monkeypatch.chdir(tmp_path)
        text = INVENTORY.read_text(encoding="utf-8")
        (tmp_path / "inventory.yaml").write_text(text[: text.index("# Planning")])
        result = cli("report", "-i", "inventory.yaml", "--db", store, "--horizon", "1")
        assert ExitStatus.OK == result.status, result.stderr
        assert (tmp_path / "capplan-report.html").is_file()
        assert "wrote capplan-report.html" in result.stderr
        assert "" == result.stdout


class TestErrors:
    def test_empty_store(self, cli: CLI, tmp_path: Path) -> None:
        """A store with no window of the inventory's nodes is bad input (exit 2)."""
        db = tmp_path / "empty.db"
        header = "node,start,seconds,requests,errors,mean_ms\n"
        row = "elsewhere,2026-11-18T00:00:00Z,60,10,0,20\n"
        (tmp_path / "other.csv").write_text(header + row)
        assert ExitStatus.OK == cli("import", tmp_path / "other.csv", "--db", db).status
        result = cli("report", "-i", INVENTORY, "--db", db, "-o", tmp_path / "r.html")
        assert ExitStatus.BAD_INPUT == result.status
        assert "no stored windows for any node of the inventory" in result.stderr
        assert not (tmp_path / "r.html").exists()

    def test_bad_load(self, cli: CLI, store: Path, tmp_path: Path) -> None:
        """--load must be positive."""
        result = cli("report", "-i", INVENTORY, "--db", store, "--load", "-3")
        assert ExitStatus.BAD_INPUT == result.status
        assert "--load" in result.stderr

    def test_before_without_shares(self, cli: CLI, store: Path, tmp_path: Path) -> None:
        """A --before plan giving no share to the inventory's nodes is bad input, named."""
        text = EXAMPLE_PLAN.read_text(encoding="utf-8").replace("node: web-", "node: app-")
        other = tmp_path / "other-plan.yaml"
        other.write_text(text, encoding="utf-8")
        result = cli("report", "-i", INVENTORY, "--db", store, "--before", other)
        assert ExitStatus.BAD_INPUT == result.status
        assert f"{other}: nodes: the plan gives no share to any node" in result.stderr

    def test_bad_growth(self, cli: CLI, store: Path) -> None:
        """A growth that is not a rate is bad input, before anything is fitted."""
        result = cli("report", "-i", INVENTORY, "--db", store, "--growth", "fast")
        assert ExitStatus.BAD_INPUT == result.status
        assert "'fast' is not a growth rate" in result.stderr

    def test_infeasible_load_still_reports(self, cli: CLI, store: Path, tmp_path: Path) -> None:
        """
        A load beyond the pool's caps leaves the split out and says why; an inventory with no
        kinds has a plan of demand only (nothing to buy, so no cost); the page is written.
        """
        text = INVENTORY.read_text(encoding="utf-8")
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(text[: text.index("# Planning")], encoding="utf-8")
        page = tmp_path / "r.html"
        result = cli(
            "report", "-i", inventory, "--db", store, "--load", "5000", "--at", AT,
            "--horizon", "2", "-o", page, "--json",
        )  # fmt: skip
        assert ExitStatus.OK == result.status, result.stderr
        document = result.json
        assert document["split"] is None
        assert ["node-web-1", "node-web-2", "node-web-3", "node-web-4", "plan"] == document[
            "figures"
        ]
        notes = document["notes"]
        assert any(n.startswith("split: not shown: 5000 rps cannot be served") for n in notes)
        assert any("no `kinds:` in the inventory" in n for n in notes)
        assert document["plan"]["total_cost"] is None
        assert [None, None] == [m["cost_per_month"] for m in document["plan"]["months"]]
        assert page.read_text(encoding="utf-8").count("<svg") == 5
