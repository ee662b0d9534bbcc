"""
`capplan import` and `capplan export` end to end, on a real SQLite file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from capplan.status import ExitStatus
from tests.conftest import CLI

CSV = (
    "node,start,seconds,requests,errors,mean_ms,p50_ms,p95_ms,p99_ms,concurrency,cpu_util\n"
    "web-1,2026-11-20T10:00:00Z,60,1200,1,21.5,18,40,75,0.43,0.31\n"
    "web-1,2026-11-20T10:01:00Z,60,1260,0,22.25,19,41,80,0.47,\n"
    "web-2,1795168800,60,600,0,11.125,10,20,30,0.11,0.2\n"
)


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    path = tmp_path / "samples.csv"
    path.write_text(CSV)
    return path


class TestImport:
    def test_import_json(self, cli: CLI, samples: Path, db: Path) -> None:
        """--json reports added, unchanged and stored counts."""
        result = cli("import", samples, "--db", db, "--json")
        assert ExitStatus.OK == result.status
        assert {"added": 3, "unchanged": 0, "stored": 3} == {
            k: result.json[k] for k in ("added", "unchanged", "stored")
        }
        assert "" == result.stderr

    def test_reimport_is_noop(self, cli: CLI, samples: Path, db: Path) -> None:
        """Importing a file twice changes nothing."""
        cli("import", samples, "--db", db)
        result = cli("import", samples, "--db", db, "--json")
        assert (0, 3, 3) == (result.json["added"], result.json["unchanged"], result.json["stored"])

    def test_bad_row_stores_nothing(self, cli: CLI, tmp_path: Path, db: Path) -> None:
        """A bad row exits 2 with FILE:LINE: column and nothing is stored."""
        bad = tmp_path / "bad.csv"
        bad.write_text(CSV.replace(",0.2\n", ",1.7\n"))
        result = cli("import", bad, "--db", db)
        assert ExitStatus.BAD_INPUT == result.status
        assert f"capplan: {bad}:4: cpu_util: 1.7 is not a fraction in 0..1" in result.stderr
        assert "" == result.stdout
        assert not db.exists()

    def test_conflict_with_store_exits_2(
        self, cli: CLI, samples: Path, tmp_path: Path, db: Path
    ) -> None:
        """A window already stored with other values exits 2 and stores nothing of the file."""
        cli("import", samples, "--db", db)
        other = tmp_path / "other.csv"
        other.write_text(CSV.replace("21.5", "23.5").replace("web-2,", "web-3,"))
        result = cli("import", other, "--db", db)
        assert ExitStatus.BAD_INPUT == result.status
        assert (
            "other.csv:2: mean_ms: window web-1 @ 2026-11-20T10:00:00Z is already stored"
            in result.stderr
        )
        assert "web-3" not in cli("export", "--db", db).stdout

    def test_missing_file(self, cli: CLI, tmp_path: Path, db: Path) -> None:
        """A missing file exits 2 and names it."""
        result = cli("import", tmp_path / "nope.csv", "--db", db)
        assert ExitStatus.BAD_INPUT == result.status
        assert "nope.csv: no such file" in result.stderr

    def test_db_from_environment(
        self, cli: CLI, samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """$CAPPLAN_DB is the default store."""
        monkeypatch.setenv("CAPPLAN_DB", str(tmp_path / "env.db"))
        assert ExitStatus.OK == cli("import", samples).status
        assert (tmp_path / "env.db").exists()

    def test_db_default_in_cwd(
        self, cli: CLI, samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without --db or $CAPPLAN_DB the store is ./capplan.db."""
        monkeypatch.delenv("CAPPLAN_DB", raising=False)
        monkeypatch.chdir(tmp_path)
        assert ExitStatus.OK == cli("import", samples).status
        assert (tmp_path / "capplan.db").exists()


class TestExport:
    def test_round_trip_is_lossless(
        self, cli: CLI, samples: Path, tmp_path: Path, db: Path
    ) -> None:
        """import → export → import → export gives the same bytes; re-import adds nothing."""
        cli("import", samples, "--db", db)
        first = cli("export", "--db", db).stdout
        exported = tmp_path / "exported.csv"
        exported.write_text(first)
        again = cli("import", exported, "--db", tmp_path / "second.db", "--json").json
        assert 3 == again["added"]
        assert first == cli("export", "--db", tmp_path / "second.db").stdout
        assert 3 == cli("import", exported, "--db", db, "--json").json["unchanged"]

    def test_export_writes_iso_utc(self, cli: CLI, samples: Path, db: Path) -> None:
        """Export writes ISO-8601 UTC with Z, empty cells for unknowns."""
        cli("import", samples, "--db", db)
        lines = cli("export", "--db", db).stdout.splitlines()
        assert "web-1,2026-11-20T10:01:00Z,60.0,1260,0,22.25,19.0,41.0,80.0,0.47," == lines[2]
        assert lines[3].startswith("web-2,2026-11-20T10:00:00Z,")

    def test_export_one_node_to_file(
        self, cli: CLI, samples: Path, tmp_path: Path, db: Path
    ) -> None:
        """--node and -o write only that node's windows to a file."""
        cli("import", samples, "--db", db)
        out = tmp_path / "web-2.csv"
        assert ExitStatus.OK == cli("export", "--db", db, "--node", "web-2", "-o", out).status
        assert 2 == len(out.read_text().splitlines())

    def test_export_unknown_node(self, cli: CLI, samples: Path, db: Path) -> None:
        """An unknown --node exits 2 listing the stored nodes."""
        cli("import", samples, "--db", db)
        result = cli("export", "--db", db, "--node", "web-9")
        assert ExitStatus.BAD_INPUT == result.status
        assert (
            "capplan: --node: no windows stored for node 'web-9' (stored nodes: web-1, web-2)"
            in result.stderr
        )

    def test_export_without_store(self, cli: CLI, tmp_path: Path) -> None:
        """Exporting from a store that does not exist exits 1 and says what to run."""
        result = cli("export", "--db", tmp_path / "none.db")
        assert ExitStatus.FAILURE == result.status
        assert "no sample store here; run `capplan import FILE.csv`" in result.stderr
        assert not (tmp_path / "none.db").exists()


class TestGeneral:
    def test_usage_error_is_2(self, cli: CLI) -> None:
        """An unknown option is a usage error, exit 2."""
        assert ExitStatus.BAD_INPUT == cli("export", "--nope").status

    def test_version(self, cli: CLI) -> None:
        """--version prints the version."""
        from capplan import __version__

        result = cli("--version")
        assert (ExitStatus.OK, f"capplan {__version__}\n") == (result.status, result.stdout)

    def test_profiles_json(self, cli: CLI) -> None:
        """`capplan profiles --json` lists the built-ins."""
        result = cli("profiles", "--json")
        assert "balanced" in [p["name"] for p in result.json["profiles"]]
