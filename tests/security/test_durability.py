"""
Nothing lost, nothing half-written (issue 9, item 5), against real capplan processes.

- ``kill -9`` of ``capplan import`` at seeded random moments: the store is intact and holds all
  of the file or none of it, and takes the next import.
- ``kill -9`` of ``capplan collect`` (``host: local`` nodes with large logs) at seeded random
  moments, several times in a row on the same store: each node has all of a run or none of it
  (windows, log cursor and snapshot agree), and a final run stores exactly what one clean run
  stores — no line lost, none counted twice.
- A crash while a config or ``plan.yaml`` is written (``os.fsync`` or ``os.replace`` made to
  SIGKILL the process) leaves the old file byte-identical.
- Two capplan processes on one store: concurrent imports, an import during a collection, a
  reader during a write (WAL), and a write that waits past the busy timeout for a writer that
  is stopped mid-transaction — it fails with the store's "busy" message, exit 1.

The kills are real SIGKILLs of real processes; the checks read the SQLite file directly.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from capplan.status import ExitStatus
from capplan.store import Store
from tests.conftest import CLI

PROC = Path(__file__).parents[1] / "collect" / "data" / "proc"
GOLDEN = Path(__file__).parents[1] / "render" / "golden"
EXAMPLE = Path(__file__).parents[2] / "examples" / "web"
SEED = 20261120
HEADER = "node,start,seconds,requests,errors,mean_ms,p50_ms,p95_ms,p99_ms,concurrency,cpu_util\n"
IMPORT_ROWS = 8_000  # about half a second of importing: long enough to be killed inside
LOCAL_NODES = ("n1", "n2", "n3", "n4")


def capplan(*args: object, cwd: Path) -> subprocess.Popen[str]:
    """
    Start ``python -m capplan ARGS`` with umask 022, as a user's shell would.
    """
    env = {k: v for k, v in os.environ.items() if k != "CAPPLAN_DB"}
    env["COLUMNS"] = "200"
    return subprocess.Popen(
        [sys.executable, "-m", "capplan", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        umask=0o022,
    )


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(path: Path, process: subprocess.Popen[str], limit: float = 30) -> bool:
    """
    Wait until ``path`` exists; False when the process ended first.
    """
    end = time.monotonic() + limit
    while not path.exists():
        if process.poll() is not None or time.monotonic() > end:
            return False
        time.sleep(0.002)
    return True


def kill_after(process: subprocess.Popen[str], delay: float) -> int:
    """
    SIGKILL the process (by its PID) after ``delay`` s unless it ended; its exit status.
    """
    end = time.monotonic() + delay
    while time.monotonic() < end and process.poll() is None:
        time.sleep(0.001)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    return process.returncode


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return "; ".join(str(r[0]) for r in con.execute("PRAGMA integrity_check"))
    finally:
        con.close()


def table_rows(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    con = sqlite3.connect(db)
    try:
        has = con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'windows'").fetchone()
        return con.execute(sql, params).fetchall() if has[0] else []
    finally:
        con.close()


def assert_private(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            assert oct(path.stat().st_mode & 0o777) == oct(0o600), path


def samples_csv(path: Path, nodes: Sequence[str], per_node: int) -> Path:
    """
    A samples CSV: ``per_node`` one-minute windows for each node, in 2025.
    """
    start = 1_735_689_600  # 2025-01-01T00:00:00Z
    lines = [HEADER]
    for k, node in enumerate(nodes):
        for i in range(per_node):
            mean = 20 + (i * 7 + k) % 13
            lines.append(
                f"{node},{start + 60 * i},60,{1000 + i % 97},{i % 3},{mean}.5,{mean},"
                f"{mean + 20},{mean + 50},0.{40 + i % 50},0.{10 + i % 80}\n"
            )
    path.write_text("".join(lines))
    return path


# --- kill -9 during an import --------------------------------------------------------------


def test_kill_during_import(cli: CLI, tmp_path: Path) -> None:
    """15 kills at seeded random moments: every store intact, all of the file or none."""
    nodes = [f"imp-{k}" for k in range(8)]
    big = samples_csv(tmp_path / "big.csv", nodes, IMPORT_ROWS // len(nodes))
    small = samples_csv(tmp_path / "small.csv", ["later"], 10)
    control = tmp_path / "control.db"
    started = time.monotonic()
    process = capplan("import", big, "--db", control, cwd=tmp_path)
    assert wait_for(control.with_name("control.db-wal"), process)
    opened = time.monotonic() - started
    status, _, err = finish(process)
    total = time.monotonic() - started
    assert status == 0, err
    assert len(table_rows(control, "SELECT node FROM windows")) == IMPORT_ROWS

    rng = random.Random(SEED)
    outcomes: dict[str, int] = {}
    for point in range(15):
        db = tmp_path / f"k{point}.db"
        process = capplan("import", big, "--db", db, cwd=tmp_path)
        if point < 4:  # anywhere from the start: interpreter, parse, create, migrate
            status = kill_after(process, rng.uniform(0, opened))
        else:  # once the store is open: mostly inside the import's transaction
            wait_for(db.with_name(db.name + "-wal"), process)
            status = kill_after(process, rng.uniform(0, total - opened))
        if not db.exists():
            outcome = "no store yet"
        else:
            assert integrity(db) == "ok", point
            assert_private(db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
            stored = len(table_rows(db, "SELECT node FROM windows"))
            assert stored in (0, IMPORT_ROWS), (point, stored)
            outcome = "all" if stored else "none"
        if status == 0:
            outcome = "finished before the kill"
        else:
            assert status == -signal.SIGKILL
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # the store takes the next import
        after = cli("import", small, "--db", db, "--json")
        assert after.status == ExitStatus.OK, after.stderr
        assert after.json["added"] == 10
        assert after.json["stored"] in (10, IMPORT_ROWS + 10)
        assert integrity(db) == "ok"
    print(f"import kills: {outcomes}")
    assert outcomes.get("none", 0) + outcomes.get("all", 0) >= 6  # most kills hit an open store


# --- kill -9 during a collection -----------------------------------------------------------


@dataclass
class LocalPool:
    """
    ``host: local`` nodes with large nginx logs (all lines well in the past), and what a clean
    uninterrupted collection of them stores.
    """

    root: Path
    inventory: Path
    control: Path
    opened_s: float  # when a clean run had the store open
    total_s: float  # how long a clean run took

    def rows(self, db: Path, node: str) -> list[tuple[object, ...]]:
        return table_rows(db, "SELECT * FROM windows WHERE node = ? ORDER BY start_us", node)

    def cursor(self, db: Path, node: str) -> tuple[object, ...] | None:
        found = table_rows(db, "SELECT path, inode, offset FROM log_cursor WHERE node = ?", node)
        return found[0] if found else None

    def snapshots(self, db: Path, node: str) -> int:
        return len(table_rows(db, "SELECT at_us FROM node_snapshot WHERE node = ?", node))


def nginx_log(path: Path, node: int, lines: int, end: float, span: float) -> None:
    out = []
    for i in range(lines):
        t = end - span + i * span / lines
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(t))
        latency = (10 + (i * 7 + node) % 90) / 1000
        out.append(
            f'10.0.0.{node} - - [{stamp}] "GET /item HTTP/1.1" {200 if i % 50 else 502} 512 '
            f'"-" "bench/1.0" {latency:.3f} {latency:.3f}\n'
        )
    path.write_text("".join(out))


@pytest.fixture(scope="module")
def local_pool(tmp_path_factory: pytest.TempPathFactory) -> LocalPool:
    root = tmp_path_factory.mktemp("local")
    end = math.floor(time.time() / 60) * 60 - 600  # every window complete, whenever we run
    lines = ["cluster: lab", "nodes:"]
    for index, name in enumerate(LOCAL_NODES):
        shutil.copytree(PROC, root / name / "proc")
        nginx_log(root / name / "access.log", index, 12_000, end, 86_400)
        lines += [
            f"  - name: {name}",
            "    host: local",
            f"    address: 127.0.0.2:{8080 + index}",
            f"    proc_dir: {root / name / 'proc'}",
            f"    log: {{path: {root / name / 'access.log'}}}",
        ]
    inventory = root / "inventory.yaml"
    inventory.write_text("\n".join(lines) + "\n")
    control = root / "control.db"
    started = time.monotonic()
    process = capplan("collect", "-i", inventory, "--db", control, "--parallel", "1", cwd=root)
    assert wait_for(control.with_name("control.db-wal"), process)
    opened = time.monotonic() - started
    status, _, err = finish(process)
    assert status == 0, err
    pool = LocalPool(root, inventory, control, opened, time.monotonic() - started)
    for name in LOCAL_NODES:
        assert len(pool.rows(control, name)) > 1000
    return pool


def test_kill_during_collect(cli: CLI, local_pool: LocalPool, tmp_path: Path) -> None:
    """
    Two stores, each through four killed runs and one that finishes: after every kill each
    node has all of a run or none; at the end exactly a clean run's windows.
    """
    pool = local_pool
    want = {n: pool.rows(pool.control, n) for n in LOCAL_NODES}
    cursors = {n: pool.cursor(pool.control, n) for n in LOCAL_NODES}
    rng = random.Random(SEED + 1)
    committed_after_kill: list[int] = []
    for chain in range(2):
        db = tmp_path / f"chain{chain}.db"
        for step in range(4):
            process = capplan(
                "collect", "-i", pool.inventory, "--db", db, "--parallel", "1", cwd=tmp_path
            )
            wait_for(db.with_name(db.name + "-wal"), process)
            if chain == step == 0:  # one chosen point: right after the first node's commit
                while process.poll() is None and not table_rows(db, "SELECT * FROM log_cursor"):
                    time.sleep(0.001)
                status = kill_after(process, 0)
            else:
                status = kill_after(process, rng.uniform(0, pool.total_s - pool.opened_s))
            assert status in (-signal.SIGKILL, 0)
            assert integrity(db) == "ok"
            assert_private(db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
            done = 0
            for name in LOCAL_NODES:
                rows, cursor = pool.rows(db, name), pool.cursor(db, name)
                if cursor is None:  # nothing of any run yet
                    assert (rows, pool.snapshots(db, name)) == ([], 0), name
                else:  # all of a run: every window, the cursor after them, a snapshot
                    assert rows == want[name], name
                    assert cursor == cursors[name], name
                    assert pool.snapshots(db, name) >= 1, name
                    done += 1
            committed_after_kill.append(done)
        final = cli("collect", "-i", pool.inventory, "--db", db, "--json")
        assert final.status == ExitStatus.OK, final.stdout + final.stderr
        for name in LOCAL_NODES:
            assert pool.rows(db, name) == want[name], name
            assert pool.cursor(db, name) == cursors[name], name
    print(f"collect kills: nodes committed after each kill: {committed_after_kill}")
    assert 1 <= committed_after_kill[0] < len(LOCAL_NODES)  # a run cut between two nodes


# --- a crash while a file is written -------------------------------------------------------

CRASH = """
import json, os, signal, sys
name, at = os.environ["CAPPLAN_CRASH_AT"].split(":")
real, calls = getattr(os, name), []
def crash(*args, **kwargs):
    calls.append(args)
    if len(calls) == int(at):
        with open(os.environ["CAPPLAN_CRASH_NOTE"], "w") as note:
            json.dump([str(a) for a in args], note)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(os, name, crash)
sys.argv[0] = "capplan"
from capplan.__main__ import main
main()
"""


def crashing(at: str, note: Path, *args: object, cwd: Path) -> subprocess.Popen[str]:
    """
    capplan with ``os.NAME`` SIGKILLing the process at its N-th call (``at`` = ``NAME:N``).
    """
    env = {**os.environ, "CAPPLAN_CRASH_AT": at, "CAPPLAN_CRASH_NOTE": str(note)}
    return subprocess.Popen(
        [sys.executable, "-c", CRASH, *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("target", "at"),
    [("nginx", "replace:1"), ("haproxy", "replace:1"), ("nginx", "fsync:1")],
)
def test_crash_while_rendering_keeps_the_old_config(tmp_path: Path, target: str, at: str) -> None:
    """Killed after validation, before or at the rename: the old config is byte-identical."""
    plan = tmp_path / "plan.yaml"
    shutil.copy(GOLDEN / "plan.yaml", plan)
    config = tmp_path / "lb.conf"
    old = b"# the config the balancer runs now\n" * 20
    config.write_bytes(old)
    note = tmp_path / "crash.json"
    status, _, err = finish(
        crashing(at, note, "render", plan, "-t", target, "-o", config, cwd=tmp_path)
    )
    assert status == -signal.SIGKILL, err
    where = json.loads(note.read_text())
    if at.startswith("replace"):  # killed exactly at the rename of the validated file
        assert Path(where[1]) == config
        assert Path(where[0]).parent == tmp_path
    assert config.read_bytes() == old
    # what is left is one temporary dotfile beside it, which no `include *.conf` picks up
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [
        p.name for p in tmp_path.glob(".lb.conf.*.tmp")
    ]
    assert len(list(tmp_path.glob(".lb.conf.*.tmp"))) == 1


def test_next_write_removes_a_killed_writers_temp(cli: CLI, tmp_path: Path) -> None:
    """
    A temporary file left by a killed render is removed by the next write of that target once
    it is older than any write takes; a young one (perhaps another writer's) and look-alikes
    that are not ours stay.
    """
    from capplan.files import STALE_TEMP_S

    plan = tmp_path / "plan.yaml"
    shutil.copy(GOLDEN / "plan.yaml", plan)
    config = tmp_path / "lb.conf"
    note = tmp_path / "crash.json"
    status, _, err = finish(
        crashing("replace:1", note, "render", plan, "-t", "nginx", "-o", config, cwd=tmp_path)
    )
    assert status == -signal.SIGKILL, err
    (stale,) = tmp_path.glob(".lb.conf.*.tmp")
    young = tmp_path / ".lb.conf.0123456789ab.tmp"
    young.write_text("another writer, mid-write")
    foreign = [tmp_path / ".lb.conf.backup.tmp", tmp_path / ".other.conf.0123456789ab.tmp"]
    past = time.time() - 2 * STALE_TEMP_S
    for path in foreign:
        path.write_text("not ours")
    for path in (stale, *foreign):
        os.utime(path, (past, past))

    result = cli("render", plan, "-t", "nginx", "-o", config)
    assert result.status == ExitStatus.OK, result.stderr
    assert not stale.exists()
    assert young.exists()
    assert all(path.exists() for path in foreign)
    assert "upstream" in config.read_text()


def test_crash_while_optimize_writes_the_plan_keeps_old_files(cli: CLI, tmp_path: Path) -> None:
    """optimize --out --emit killed renaming plan.yaml: the old plan and config stay."""
    db = tmp_path / "c.db"
    assert cli("import", EXAMPLE / "samples.csv", "--db", db).status == ExitStatus.OK
    plan, config = tmp_path / "plan.yaml", tmp_path / "nginx-web.conf"
    plan.write_bytes(b"# the old plan\n")
    config.write_bytes(b"# the old nginx config\n")
    args = ("optimize", "-i", EXAMPLE / "inventory.yaml", "--db", db, "--out", "plan.yaml")
    args += ("--emit", "nginx", "--out-dir", tmp_path)
    note = tmp_path / "crash.json"
    status, _, err = finish(crashing("replace:1", note, *args, cwd=tmp_path), timeout=120)
    assert status == -signal.SIGKILL, err
    assert json.loads(note.read_text())[1] == "plan.yaml"  # the first file it renames
    assert plan.read_bytes() == b"# the old plan\n"
    assert config.read_bytes() == b"# the old nginx config\n"
    (left,) = tmp_path.glob(".plan.yaml.*.tmp")  # the new plan, whole, never renamed
    assert "web-1" in left.read_text()


# --- two processes on one store ------------------------------------------------------------


def test_concurrent_imports_and_collect(local_pool: LocalPool, tmp_path: Path) -> None:
    """Two imports at once, then an import during a collection: all succeed, all stored."""
    a = samples_csv(tmp_path / "a.csv", ["a1", "a2"], 2_000)
    b = samples_csv(tmp_path / "b.csv", ["b1", "b2"], 2_000)
    db = tmp_path / "shared.db"  # created by whichever starts first
    first, second = (capplan("import", f, "--db", db, "--json", cwd=tmp_path) for f in (a, b))
    for process in (first, second):
        status, out, err = finish(process)
        assert status == 0, err
        assert json.loads(out)["added"] == 4_000
    assert integrity(db) == "ok"
    assert len(table_rows(db, "SELECT node FROM windows")) == 8_000
    c = samples_csv(tmp_path / "c.csv", ["c1"], 4_000)
    importing = capplan("import", c, "--db", db, cwd=tmp_path)
    collecting = capplan("collect", "-i", local_pool.inventory, "--db", db, cwd=tmp_path)
    for process in (importing, collecting):
        status, _, err = finish(process)
        assert status == 0, err
    assert integrity(db) == "ok"
    assert len(table_rows(db, "SELECT node FROM windows WHERE node LIKE 'c1'")) == 4_000
    for name in LOCAL_NODES:
        assert local_pool.rows(db, name) == local_pool.rows(local_pool.control, name)


def test_busy_store_reader_and_waiting_writer(cli: CLI, tmp_path: Path) -> None:
    """
    An import stopped (SIGSTOP) inside its transaction: `export` still reads the committed
    windows at once (WAL); another import waits the busy timeout, then exits 1 with the
    store's "busy" message naming the file; the stopped import, resumed, completes.
    """
    db = tmp_path / "busy.db"
    first = samples_csv(tmp_path / "first.csv", ["first"], 50)
    assert cli("import", first, "--db", db).status == ExitStatus.OK
    big = samples_csv(tmp_path / "big.csv", ["big-1", "big-2"], IMPORT_ROWS // 2)
    late = samples_csv(tmp_path / "late.csv", ["late"], 5)
    writer = capplan("import", big, "--db", db, cwd=tmp_path)
    probe = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        while True:  # until the writer holds the write lock, then stop it there
            assert writer.poll() is None, "the import ended before it could be stopped"
            try:
                probe.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                writer.send_signal(signal.SIGSTOP)
                break
            probe.execute("ROLLBACK")
            time.sleep(0.002)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            probe.execute("BEGIN IMMEDIATE")  # still inside its transaction, stopped
        started = time.monotonic()
        reader = capplan("export", "--db", db, cwd=tmp_path)
        waiter = capplan("import", late, "--db", db, cwd=tmp_path)
        status, out, err = finish(reader)
        read_s = time.monotonic() - started
        assert status == 0, err
        assert read_s < 5  # did not wait for the writer
        assert [line.split(",")[0] for line in out.splitlines()[1:]] == ["first"] * 50
        status, out, err = finish(waiter)
        waited_s = time.monotonic() - started
        assert status == ExitStatus.FAILURE
        assert f"capplan: {db}: the store is busy (database is locked)" in err
        assert "try again when it is done" in err
        assert waited_s > 9  # it waited the busy timeout (10 s) first
    finally:
        probe.close()
        writer.send_signal(signal.SIGCONT)
    status, _, err = finish(writer)
    assert status == 0, err
    assert integrity(db) == "ok"
    with Store.open(db) as store:
        assert store.nodes() == ["big-1", "big-2", "first"]
        assert store.count() == IMPORT_ROWS + 50


def test_busy_during_migration_is_busy_not_unusable(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A store of an older schema whose migration waits on another writer says "busy, try
    again", not "not a usable store, move it away" (it was the latter before the fix).
    """
    import capplan.store

    db = tmp_path / "old.db"
    Store.open(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("DROP TABLE haproxy_stat")  # as version 2 left it
    holder.execute("PRAGMA user_version = 2")
    holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    monkeypatch.setattr(capplan.store, "BUSY_TIMEOUT_S", 0.2)
    small = samples_csv(tmp_path / "s.csv", ["s"], 3)
    try:
        result = cli("import", small, "--db", db)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.status == ExitStatus.FAILURE
    assert f"capplan: {db}: the store is busy (database is locked)" in result.stderr
    assert "move this one away" not in result.stderr
    assert cli("import", small, "--db", db).status == ExitStatus.OK  # migrates once free
    with Store.open(db) as store:
        assert store.schema_version == 3
