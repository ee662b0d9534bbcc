"""
Faults during collection are contained to their node (issue 9, item 4).

Each faulty node fails alone: it is reported in ``--json`` ``failures`` with its node and stage,
the other nodes' windows are stored exactly, the run exits 3 and ends by its ``--deadline``.

Also covered elsewhere, one fault per run
-----------------------------------------

======================================== =================================================
fault                                    test
======================================== =================================================
accepts TCP, never speaks SSH            ``tests/collect/test_collect_ssh.py::
                                         test_tarpit_ends_within_deadline`` (stage connect)
hung node, timeout longer than the run   ``test_collect_ssh.py::test_deadline_cuts_a_hung_node``
                                         (stage deadline, run ends by --deadline)
node down (connection refused)           ``test_collect_ssh.py::test_one_node_down_others_stored``
host key changed                         ``test_collect_ssh.py::test_changed_host_key_refused``
                                         (stage hostkey, with and without --accept-new)
log rotated between runs                 ``test_collect_ssh.py::test_rotation_between_runs``
                                         (not a failure: a note, and no line lost)
log without timing fields                ``test_collect_ssh.py::test_log_without_timing_fields``
======================================== =================================================

Here, all in one run against real sshd (so containment is shown with every fault at once,
next to three healthy nodes): a node that closes the connection in the middle of the log
read, one whose probe prints endlessly, one whose log read prints endlessly (valid-looking
lines, more than asked for), one that trickles output forever (never silent, never over the
cap: only the deadline stops it), one that accepts TCP and never speaks SSH, one whose host key
changed, two whose clocks are three hours ahead and behind, and one whose log was rotated since
the run before (not a failure: a note, and no line lost).

The faults are made by one extra sshd whose ``ForceCommand`` is a small shell script: it runs
the command it is given, unless the command names a fault node's log path, in which case it
misbehaves in that node's way.  The clock nodes get a ``date`` shifted by ±3 h first in their
PATH, so the probe (``date +%s.%N``) reads the node's wrong clock; their logs are written with
that same wrong clock, as the node's nginx would write them.  A clock hours off is not a
failure: the node's windows are in its own time, and the run says how far off it is (a note,
and ``clock_offset_s`` in ``--json``).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from capplan.status import ExitStatus
from tests.collect.sshd import (
    PROC,
    WINDOW,
    Pool,
    SSHLab,
    expected_windows,
    free_port,
    nginx_line,
    requests_between,
    tarpit,
    windows_in,
)
from tests.conftest import CLI

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sshd runs as root (CI runs as root)")

FAULT_HOST = "127.0.0.20"  # the misbehaving sshd
CHANGED_HOST = "127.0.0.21"  # the same sshd, known under an impostor's key
TARPIT_HOST = "127.0.0.22"
SHIFT_S = 3 * 3600
DEADLINE_S = 8.0
FAULT_NODES = (
    "drop",
    "endless-probe",
    "endless-read",
    "trickle",
    "clock-ahead",
    "clock-behind",
    "rotated",
)

WRAPPER = """#!/bin/sh
# ForceCommand: misbehave for the fault nodes (chosen by the log path in the command).
case "$SSH_ORIGINAL_COMMAND" in
  *{root}/drop/*"head -c"*)
    printf '127.0.0.1 - - [01/Jan/2030:00:00:00 +0000] "GET'; sleep 0.3; kill -9 $PPID ;;
  *{root}/endless-probe/*) exec yes 'not what you asked for' ;;
  *{root}/endless-read/*"head -c"*) exec yes '{line}' ;;
  *{root}/trickle/*) while :; do printf .; sleep 0.2; done ;;
  *{root}/clock-ahead/*) PATH={root}/ahead-bin:$PATH; export PATH ;;
  *{root}/clock-behind/*) PATH={root}/behind-bin:$PATH; export PATH ;;
esac
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""

FAKE_DATE = """#!/bin/sh
# The node's clock, {shift:+d} s off: GNU date at a shifted time, same format arguments.
now=$(/bin/date +%s.%N)
exec /bin/date -d "@$((${{now%.*}} {shift:+d})).${{now#*.}}" "$@"
"""


def node_entry(name: str, host: str, port: int, root: Path, service: int, extra: str = "") -> str:
    return (
        f"  - name: {name}\n    host: {host}\n    address: {host}:{service}\n"
        f"    ssh: {{port: {port}{extra}}}\n    proc_dir: {root / name / 'proc'}\n"
        f"    log: {{path: {root / name / 'access.log'}, format: nginx}}\n"
    )


def stored_rows(db: Path, table: str, node: str) -> int:
    with sqlite3.connect(db) as con:
        return int(
            con.execute(f"SELECT count(*) FROM {table} WHERE node = ?", (node,)).fetchone()[0]
        )


def test_every_fault_at_once_is_contained(
    cli: CLI, pool: Pool, lab: SSHLab, tmp_path: Path
) -> None:
    """Nine faulty nodes next to three healthy ones: each fails (or is noted) alone, in time."""
    root = tmp_path / "faults"
    now = time.time()
    shifted: dict[str, tuple[int, list[tuple[float, float]]]] = {}
    for name in ("drop", "endless-probe", "endless-read", "trickle", "changed-key"):
        (root / name).mkdir(parents=True)
        shutil.copytree(PROC, root / name / "proc")
        shutil.copy(pool.log("web-1"), root / name / "access.log")
    for name, shift in (("clock-ahead", SHIFT_S), ("clock-behind", -SHIFT_S)):
        (root / name).mkdir(parents=True)
        shutil.copytree(PROC, root / name / "proc")
        # the node's nginx writes its own (wrong) clock's times
        requests = requests_between(pool.start + shift, now + shift - 1, 4.0, 7)
        (root / name / "access.log").write_text("".join(nginx_line(t, d) for t, d in requests))
        shifted[name] = (shift, requests)
        fake = root / f"{name.split('-')[1]}-bin"
        fake.mkdir()
        (fake / "date").write_text(FAKE_DATE.format(shift=shift))
        (fake / "date").chmod(0o755)
    (root / "rotated").mkdir()
    shutil.copytree(PROC, root / "rotated" / "proc")
    rotated_log = root / "rotated" / "access.log"
    rotated_requests = requests_between(pool.start, now - 1, 3.0, 11)
    rotated_log.write_text("".join(nginx_line(t, d) for t, d in rotated_requests))
    # valid lines, all in one complete window: harmful if taken for the node's log
    line = nginx_line(math.ceil(pool.start / WINDOW) * WINDOW + 5, 0.020).strip()
    wrapper = root / "wrapper.sh"
    wrapper.write_text(WRAPPER.format(root=root, line=line))
    wrapper.chmod(0o755)
    changed_port = free_port(CHANGED_HOST)
    server = lab.start(
        FAULT_HOST,
        extra=f"ListenAddress {CHANGED_HOST}:{changed_port}\nForceCommand {wrapper}\n",
    )
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", impostor], check=True)
    known = lab.known_hosts(*pool.servers.values(), server)
    kind, key = impostor.with_suffix(".pub").read_text().split()[:2]
    with known.open("a") as file:
        file.write(f"[{CHANGED_HOST}]:{changed_port} {kind} {key}\n")
    try:
        with tarpit(TARPIT_HOST) as tarpit_port:
            extra = "".join(
                node_entry(name, FAULT_HOST, server.port, root, 9000 + index)
                for index, name in enumerate(FAULT_NODES)
            )
            extra += node_entry("changed-key", CHANGED_HOST, changed_port, root, 9000)
            extra += node_entry("tarpit", TARPIT_HOST, tarpit_port, root, 9000, ", timeout_s: 1")
            inventory = pool.inventory(known_hosts=known, extra_nodes=extra)
            db = tmp_path / "c.db"
            # a run before this one read the rotated node's log; then it was rotated
            seeded = cli("collect", "-i", inventory, "--db", db, "--node", "rotated")
            assert seeded.status == ExitStatus.OK, seeded.stdout + seeded.stderr
            at = time.time()
            late = requests_between(at - 0.9, at - 0.2, 20.0, 12)
            with rotated_log.open("a") as file:
                file.write("".join(nginx_line(t, d) for t, d in late))
            rotated_log.rename(rotated_log.with_name("access.log.1"))
            fresh = requests_between(at - 0.1, at + 0.5, 20.0, 13)
            rotated_log.write_text("".join(nginx_line(t, d) for t, d in fresh))
            rotated_requests += late + fresh
            started = time.monotonic()
            result = cli(
                "collect", "-i", inventory, "--db", db, "--json", "--deadline", f"{DEADLINE_S}s"
            )
            elapsed = time.monotonic() - started
    finally:
        server.stop()

    assert result.status == ExitStatus.PARTIAL, result.stdout + result.stderr
    print(f"faults run: {elapsed:.1f} s with --deadline {DEADLINE_S:g}s")
    assert elapsed < DEADLINE_S + 2, elapsed
    failures = {f["node"]: (f["stage"], f["reason"]) for f in result.json["failures"]}
    assert sorted(failures) == sorted(
        ["drop", "endless-probe", "endless-read", "trickle", "changed-key", "tarpit"]
    )
    assert failures["drop"][0] == "log"
    assert "closed before the command finished" in failures["drop"][1]
    assert failures["endless-probe"] == ("probe", "the probe printed more than 1048576 bytes")
    assert failures["endless-read"][0] == "log"
    assert "more than" in failures["endless-read"][1]
    # cut by the deadline: the run stops waiting, or the command notices first
    assert failures["trickle"][0] == "deadline"
    assert "deadline" in failures["trickle"][1]
    assert failures["changed-key"][0] == "hostkey"
    assert "CHANGED" in failures["changed-key"][1]
    assert failures["tarpit"][0] == "connect"
    # a failed node stores nothing of this run: no windows, no cursor, no snapshot
    for name in failures:
        assert windows_in(db, name) == {}, name
        assert stored_rows(db, "log_cursor", name) == 0, name
        assert stored_rows(db, "node_snapshot", name) == 0, name
    nodes = {n["node"]: n for n in result.json["nodes"]}
    first_full = math.ceil(pool.start / WINDOW) * WINDOW
    with sqlite3.connect(db) as con:
        done = dict(con.execute("SELECT node, done_until_us FROM log_cursor").fetchall())
    # the healthy nodes: exactly their windows
    for name in pool.servers:
        assert nodes[name]["status"] == "ok"
        want = expected_windows(pool.requests[name], first_full, done[name] / 1e6)
        assert len(want) >= 2
        assert windows_in(db, name) == want
    # the rotated node: the rest of the old file, then the new one; no line lost
    assert nodes["rotated"]["status"] == "ok"
    assert any("rotated" in note for note in nodes["rotated"]["notes"])
    want = expected_windows(rotated_requests, first_full, done["rotated"] / 1e6)
    assert len(want) >= 2
    assert windows_in(db, "rotated") == want
    # the clock nodes: stored in their own clock's time, the offset reported
    for name, (shift, requests) in shifted.items():
        entry = nodes[name]
        assert entry["status"] == "ok", entry
        assert abs(entry["clock_offset_s"] - shift) < 5
        (note,) = [n for n in entry["notes"] if "clock" in n]
        said = re.search(r"clock is ([+-]\d+) s off this machine's", note)
        assert said is not None, note
        assert abs(int(said[1]) - shift) < 5
        want = expected_windows(
            requests, math.ceil((pool.start + shift) / WINDOW) * WINDOW, done[name] / 1e6
        )
        assert len(want) >= 2
        assert windows_in(db, name) == want
