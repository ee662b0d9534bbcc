"""
``capplan collect`` on ``host: local`` nodes (no SSH): this machine's files, the store, the
CLI's output and exit codes.
"""

from __future__ import annotations

import math
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from capplan.status import ExitStatus
from capplan.store import Store
from tests.conftest import CLI

PROC = Path(__file__).parent / "data" / "proc"


def write_log(path: Path, times: list[float]) -> None:
    with path.open("a") as log:
        for t in times:
            stamp = datetime.fromtimestamp(t, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
            log.write(f'1.2.3.4 - - [{stamp}] "GET / HTTP/1.1" 200 5 "-" "ua" 0.050 0.049\n')


def inventory(tmp_path: Path, *names: str) -> Path:
    lines = ["cluster: lab", "nodes:"]
    for index, name in enumerate(names):
        (tmp_path / name).mkdir(exist_ok=True)
        if not (tmp_path / name / "proc").exists():
            shutil.copytree(PROC, tmp_path / name / "proc")
        lines += [
            f"  - name: {name}",
            "    host: local",
            f"    address: 127.0.0.2:{8080 + index}",
            f"    proc_dir: {tmp_path / name / 'proc'}",
            f"    log: {{path: {tmp_path / name / 'access.log'}}}",
        ]
    path = tmp_path / "inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_local_nodes(cli: CLI, tmp_path: Path) -> None:
    """Local nodes are read without SSH; windows land in the store; the table is printed."""
    now = time.time()
    start = math.floor(now / 60) * 60 - 240  # three full windows, all complete
    times = [start + i * 0.5 for i in range(360)]
    (tmp_path / "a").mkdir()
    write_log(tmp_path / "a" / "access.log", times)
    inv = inventory(tmp_path, "a")
    db = tmp_path / "c.db"
    result = cli("collect", "-i", inv, "--db", db)
    assert result.status == ExitStatus.OK, result.stderr
    assert "a" in result.stdout
    assert "local" in result.stdout
    with Store.open(db) as store:
        windows = list(store.windows("a"))
    assert [w.requests for w in windows] == [120, 120, 120]
    assert all(w.mean_ms == 50 for w in windows)
    assert all(w.concurrency == 120 * 0.050 / 60 for w in windows)


def test_windows_from_behind_a_balancer_get_a_note(cli: CLI, tmp_path: Path) -> None:
    """
    The pool's logs were written behind its balancer: an inventory that lists balancers but
    not ``arrivals`` gets the note that fit gives (on stderr; not under --json, nor once it
    says ``arrivals``).
    """
    (tmp_path / "a").mkdir()
    write_log(tmp_path / "a" / "access.log", [math.floor(time.time() / 60) * 60 - 90])
    inv = inventory(tmp_path, "a")
    balancers = "balancers:\n  - {kind: nginx, name: web, output: web.conf}\n"
    inv.write_text(inv.read_text() + balancers)
    db = tmp_path / "c.db"
    noted = cli("collect", "-i", inv, "--db", db)
    assert noted.status == ExitStatus.OK, noted.stderr
    assert "does not say how the windows were measured" in noted.stderr
    assert "does not say" not in cli("collect", "-i", inv, "--db", db, "--json").stderr
    inv.write_text(inv.read_text() + "arrivals: round_robin\n")
    assert "does not say" not in cli("collect", "-i", inv, "--db", db).stderr


def test_missing_log_is_a_failure_of_that_node(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    write_log(tmp_path / "a" / "access.log", [time.time() - 100])
    inv = inventory(tmp_path, "a", "b")
    result = cli("collect", "-i", inv, "--db", tmp_path / "c.db", "--json")
    assert result.status == ExitStatus.PARTIAL
    assert result.json["failures"][0]["node"] == "b"
    assert result.json["failures"][0]["stage"] == "log"
    assert "no such file" in result.json["failures"][0]["reason"]
    statuses = {n["node"]: n["status"] for n in result.json["nodes"]}
    assert statuses == {"a": "ok", "b": "partial"}  # b's stats were still stored


def test_node_filter_and_unknown_node(cli: CLI, tmp_path: Path) -> None:
    inv = inventory(tmp_path, "a", "b")
    result = cli("collect", "-i", inv, "--db", tmp_path / "c.db", "--json", "--node", "a")
    assert [n["node"] for n in result.json["nodes"]] == ["a"]
    bad = cli("collect", "-i", inv, "--db", tmp_path / "c.db", "--node", "zz")
    assert bad.status == ExitStatus.BAD_INPUT
    assert "zz" in bad.stderr


def test_bad_options(cli: CLI, tmp_path: Path) -> None:
    inv = inventory(tmp_path, "a")
    for option, value in (("--window", "0s"), ("--deadline", "soon"), ("--max-bytes", "-1")):
        result = cli("collect", "-i", inv, "--db", tmp_path / "c.db", option, value)
        assert result.status == ExitStatus.BAD_INPUT
        assert option in result.stderr
