"""
`capplan optimize` end to end on the bundled example: plan, configs the real balancers accept,
drift checks, infeasible loads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from capplan.status import ExitStatus
from tests.conftest import CLI, EXAMPLES


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The example inventory in a scratch folder, and a store with its windows."""
    from capplan.cli import run

    folder = tmp_path_factory.mktemp("web")
    shutil.copy(EXAMPLES / "web" / "inventory.yaml", folder / "inventory.yaml")
    db = folder / "capplan.db"
    assert ExitStatus.OK == run(["import", str(EXAMPLES / "web" / "samples.csv"), "--db", str(db)])
    return folder / "inventory.yaml", db


@pytest.fixture(scope="module")
def document(example: tuple[Path, Path]) -> dict:
    """`capplan optimize --json` on the example, run once."""
    import contextlib
    import io
    import json

    from capplan.cli import run

    inventory, db = example
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = run(["optimize", "-i", str(inventory), "--db", str(db), "--json"])
    assert ExitStatus.OK == status
    return json.loads(out.getvalue())


class TestOptimize:
    def test_json_contract(self, document: dict) -> None:
        """--json carries load_rps, objective, methods, nodes and pool (thresholds, predicted)."""
        doc = document
        assert 600 == doc["load_rps"]
        assert "percentile" == doc["objective"]
        assert {"nginx": "least_conn", "haproxy": "leastconn"} == doc["methods"]
        # the balanced profile's methods are auto: the choice and why
        assert doc["methods_reason"].startswith("least connections (nginx least_conn, haproxy")
        for node in doc["nodes"]:
            assert {"node", "share", "rate_rps", "capacity_rps", "weights", "limits"} <= set(node)
        # each share is written to 6 significant digits: the sum is 1 within their rounding
        rounding = 5e-7 * len(doc["nodes"])
        assert sum(n["share"] for n in doc["nodes"]) == pytest.approx(1.0, abs=rounding)
        assert {"mean_ms", "p99_ms"} == set(doc["pool"]["predicted"])
        assert doc["pool"]["predicted"]["p99_ms"] <= 150
        for key in ("alert_load_rps", "scale_out_load_rps", "queue_timeout_ms"):
            threshold = doc["pool"]["thresholds"][key]
            assert threshold["reason"]
            assert threshold["value"] > 0

    def test_faster_nodes_get_more(self, cli: CLI, example: tuple[Path, Path]) -> None:
        """The example's 8-slot 20 ms node gets the largest share, the 2-slot one the least."""
        inventory, db = example
        shares = {
            n["node"]: n["share"]
            for n in cli("optimize", "-i", inventory, "--db", db, "--json").json["nodes"]
        }
        assert max(shares, key=shares.__getitem__) == "web-3"
        assert min(shares, key=shares.__getitem__) == "web-1"

    def test_writes_plan_and_valid_configs_then_check(
        self, cli: CLI, example: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """Plan and configs are written (checked by nginx/haproxy); --check is 0, then 4."""
        inventory, db = example
        plan, out = tmp_path / "plan.yaml", tmp_path / "out"
        args = (
            "optimize",
            "-i",
            inventory,
            "--db",
            db,
            "--out",
            plan,
            "--emit",
            "nginx,haproxy",
            "--out-dir",
            out,
        )
        assert ExitStatus.OK == cli(*args).status
        first = {
            p.name: p.read_text() for p in (plan, out / "nginx-web.conf", out / "haproxy-web.cfg")
        }
        assert "upstream web_backend" in first["nginx-web.conf"]
        assert ExitStatus.OK == cli(*args, "--check").status
        (out / "haproxy-web.cfg").write_text(first["haproxy-web.cfg"] + "# edited\n")
        result = cli(*args, "--check")
        assert ExitStatus.DRIFT == result.status
        assert "-# edited" in result.stdout
        assert "# edited" in (out / "haproxy-web.cfg").read_text()  # --check writes nothing

    def test_same_inputs_same_bytes(
        self, cli: CLI, example: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """Two runs write the same plan, byte for byte."""
        inventory, db = example
        cli("optimize", "-i", inventory, "--db", db, "--out", tmp_path / "a.yaml")
        cli("optimize", "-i", inventory, "--db", db, "--out", tmp_path / "b.yaml")
        assert (tmp_path / "a.yaml").read_bytes() == (tmp_path / "b.yaml").read_bytes()

    def test_infeasible_load_exits_5(self, cli: CLI, example: tuple[Path, Path]) -> None:
        """A load above what the pool can serve exits 5 and names the largest that can."""
        inventory, db = example
        result = cli("optimize", "-i", inventory, "--db", db, "--load", "5000")
        assert ExitStatus.INFEASIBLE == result.status
        assert "the largest load that can is" in result.stderr

    def test_unknown_emit_target(self, cli: CLI, example: tuple[Path, Path]) -> None:
        """An unknown --emit target is bad input."""
        inventory, db = example
        result = cli("optimize", "-i", inventory, "--db", db, "--emit", "f5")
        assert ExitStatus.BAD_INPUT == result.status


def test_without_the_real_checker_lint_still_guards(
    cli: CLI, example: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nginx missing, configs pass capplan's lint, are written, and a warning says so."""
    import importlib

    from capplan.errors import MissingToolError

    checks = importlib.import_module("capplan.render.validate")

    def missing(program: str) -> str:
        raise MissingToolError(f"{program} is not installed (apt-get install {program})")

    monkeypatch.setattr(checks, "find_tool", missing)
    inventory, db = example
    out = tmp_path / "out"
    result = cli("optimize", "-i", inventory, "--db", db, "--emit", "nginx", "--out-dir", out)
    assert ExitStatus.OK == result.status, result.stderr
    assert "checked by capplan's lint only, not by nginx itself" in result.stderr
    assert "upstream web_backend" in (out / "nginx-web.conf").read_text()
