"""
`capplan render` and `capplan validate` end to end, with the real checkers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from capplan.status import ExitStatus
from tests.conftest import CLI

GOLDEN = Path(__file__).parent / "render" / "golden"


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    """The golden plan, copied where its outputs may be written."""
    path = tmp_path / "plan.yaml"
    shutil.copy(GOLDEN / "plan.yaml", path)
    return path


class TestRender:
    @pytest.mark.parametrize(
        ("target", "golden"),
        [
            ("nginx", "nginx-web.conf"),
            ("haproxy", "haproxy-web.cfg"),
            ("ipvsadm", "ipvs-web.rules"),
            ("keepalived", "keepalived-web.conf"),
        ],
    )
    def test_writes_the_golden_file(
        self, cli: CLI, plan: Path, tmp_path: Path, target: str, golden: str
    ) -> None:
        """render -o writes exactly the golden config, after validating it."""
        out = tmp_path / golden
        result = cli("render", plan, "--target", target, "-o", out)
        assert ExitStatus.OK == result.status, result.stderr
        assert (GOLDEN / golden).read_text() == out.read_text()

    def test_check_unchanged_is_0_and_changed_is_4(
        self, cli: CLI, plan: Path, tmp_path: Path
    ) -> None:
        """--check exits 0 on an up-to-date file, 4 with a diff on a changed one."""
        out = tmp_path / "h.cfg"
        cli("render", plan, "--target", "haproxy", "-o", out)
        assert ExitStatus.OK == cli("render", plan, "-t", "haproxy", "-o", out, "--check").status
        out.write_text(out.read_text().replace("weight 64", "weight 65"))
        result = cli("render", plan, "-t", "haproxy", "-o", out, "--check")
        assert ExitStatus.DRIFT == result.status
        assert "-    server web-1 203.0.113.11:8080 weight 65" in result.stdout
        assert "weight 65" in out.read_text()  # --check never writes

    def test_unknown_target(self, cli: CLI, plan: Path) -> None:
        """An unknown target is bad input."""
        assert ExitStatus.BAD_INPUT == cli("render", plan, "--target", "f5").status

    def test_bad_plan_names_file_and_line(self, cli: CLI, tmp_path: Path) -> None:
        """A hostile node name in a plan is refused with FILE:LINE, exit 2."""
        bad = tmp_path / "plan.yaml"
        bad.write_text((GOLDEN / "plan.yaml").read_text().replace("node: web-1", "node: web-1;x"))
        result = cli("render", bad, "--target", "nginx")
        assert ExitStatus.BAD_INPUT == result.status
        assert f"{bad}:" in result.stderr
        assert "web-1;x" in result.stderr


class TestValidate:
    def test_golden_files_pass(self, cli: CLI) -> None:
        """Every golden config passes its real checker (target guessed from the content)."""
        files = [
            GOLDEN / n
            for n in ("nginx-web.conf", "haproxy-web.cfg", "ipvs-web.rules", "keepalived-web.conf")
        ]
        result = cli("validate", *files, "--json")
        assert ExitStatus.OK == result.status, result.stdout
        assert ["nginx", "haproxy", "ipvsadm", "keepalived"] == [
            f["target"] for f in result.json["files"]
        ]

    def test_broken_config_fails_with_line(self, cli: CLI, tmp_path: Path) -> None:
        """A directive HAProxy does not know fails with the file and line, exit 2."""
        bad = tmp_path / "bad.cfg"
        bad.write_text((GOLDEN / "haproxy-web.cfg").read_text().replace("maxqueue", "maxqueu", 1))
        result = cli("validate", bad, "--target", "haproxy")
        assert ExitStatus.BAD_INPUT == result.status
        assert f"{bad}:" in result.stdout

    def test_lint_catches_what_haproxy_lets_through(self, cli: CLI, tmp_path: Path) -> None:
        """minconn above maxconn passes haproxy -c but not capplan's lint."""
        bad = tmp_path / "lint.cfg"
        text = (GOLDEN / "haproxy-web.cfg").read_text().replace("minconn 4", "minconn 400")
        bad.write_text(text)
        result = cli("validate", bad, "--target", "haproxy")
        assert ExitStatus.BAD_INPUT == result.status
        assert "minconn" in result.stdout
