"""
``capplan collect`` against real OpenSSH servers on loopback (see ``sshd.py``).

Each node gets its own sshd on 127.0.0.2, 127.0.0.3, …, a fake /proc directory (real files
captured from a Linux machine) and an nginx access log written with timestamps in the recent
past, so the windows it must give are known exactly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from capplan.status import ExitStatus
from capplan.store import Store
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
from tests.conftest import CLI, Result

# A missing sshd fails the tests (tests/run.sh installs openssh-server); only a non-root
# developer run skips them, since sshd must run as root in its own mount namespace.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sshd runs as root (CI runs as root)")


def test_all_nodes_collected(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """Every node's complete windows are stored, exactly, with stats; exit 0."""
    db = tmp_path / "c.db"
    result = cli("collect", "-i", pool.inventory(), "--db", db, "--json")
    assert result.status == ExitStatus.OK, result.stderr
    doc = result.json
    assert doc["failures"] == []
    assert [n["node"] for n in doc["nodes"]] == list(pool.servers)
    with Store.open(db) as store:
        for entry in doc["nodes"]:
            name = entry["node"]
            cursor = store.cursor(name)
            assert cursor is not None
            first_full = math.ceil(pool.start / WINDOW) * WINDOW
            want = expected_windows(pool.requests[name], first_full, cursor.done_until)
            assert windows_in(db, name) == want
            assert entry["windows"] == len(want) >= 2
            assert entry["status"] == "ok"
            assert entry["load1"] is not None
            assert 0 < entry["mem_available"] < 1
            assert len(store.snapshots(name)) == 1
            stored = list(store.windows(name))
            # No snapshot pair brackets a window yet: CPU is unknown, not today's value.
            assert all(w.cpu_util is None for w in stored)
            assert all(w.p99_ms is not None and 10 <= w.p99_ms <= 60 for w in stored)


def test_second_run_reads_only_new_lines(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """A second run resumes where the first stopped: no window twice, new lines only."""
    db = tmp_path / "c.db"
    inventory = pool.inventory()
    assert cli("collect", "-i", inventory, "--db", db, "--json").status == ExitStatus.OK
    with Store.open(db) as store:
        first = {name: store.cursor(name) for name in pool.servers}
    before = {name: windows_in(db, name) for name in pool.servers}
    # Append two more minutes of traffic, in the past of a clock we shift by moving the
    # requests: the node clock is real, so write lines up to now and wait past the settle.
    name = "web-1"
    now = time.time()
    extra = requests_between(now - 0.5, now + 0.5, 50.0, 9)
    with pool.log(name).open("a") as log:
        log.write("".join(nginx_line(t, d) for t, d in extra))
    size_before = sum(1 for _ in pool.log(name).open())
    result = cli("collect", "-i", inventory, "--db", db, "--json")
    assert result.status == ExitStatus.OK, result.stderr
    entry = next(n for n in result.json["nodes"] if n["node"] == name)
    cursor = first[name]
    assert cursor is not None
    reread = sum(1 for t, _ in pool.requests[name] if t >= cursor.done_until)
    assert entry["lines"] == reread + len(extra) < size_before
    after = windows_in(db, name)
    assert {k: v for k, v in after.items() if k in before[name]} == before[name]
    everything = pool.requests[name] + extra
    with Store.open(db) as store:
        done = store.cursor(name).done_until  # type: ignore[union-attr]
        # The snapshot pair of the two runs brackets no full window unless a window fits.
        assert len(store.snapshots(name)) == 2
    first_full = math.ceil(pool.start / WINDOW) * WINDOW
    assert after == expected_windows(everything, first_full, done)


def test_one_node_down_others_stored(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """A node that refuses connections is a failure of its own; exit 3."""
    pool.servers["web-2"].stop()
    db = tmp_path / "c.db"
    result = cli("collect", "-i", pool.inventory(), "--db", db, "--json")
    assert result.status == ExitStatus.PARTIAL
    failures = result.json["failures"]
    assert [(f["node"], f["stage"]) for f in failures] == [("web-2", "connect")]
    assert "refused" in failures[0]["reason"].lower()
    assert windows_in(db, "web-1")
    assert windows_in(db, "web-3")
    assert windows_in(db, "web-2") == {}


def test_changed_host_key_refused(cli: CLI, pool: Pool, lab: SSHLab, tmp_path: Path) -> None:
    """A changed host key is refused naming the fingerprint and file, even with --accept-new."""
    impostor_key = tmp_path / "impostor"  # a different host key for web-3's address
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", impostor_key], check=True)
    server = pool.servers["web-3"]
    kind, key = impostor_key.with_suffix(".pub").read_text().split()[:2]
    known = lab.known_hosts(pool.servers["web-1"], pool.servers["web-2"])
    with known.open("a") as file:
        file.write(f"[{server.host}]:{server.port} {kind} {key}\n")
    original = known.read_text()
    db = tmp_path / "c.db"
    for flags in ((), ("--accept-new",)):
        result = cli(
            "collect", "-i", pool.inventory(known_hosts=known), "--db", db, "--json", *flags
        )
        assert result.status == ExitStatus.PARTIAL
        (failure,) = result.json["failures"]
        assert (failure["node"], failure["stage"]) == ("web-3", "hostkey")
        assert "CHANGED" in failure["reason"]
        assert str(known) in failure["reason"]
        assert "SHA256:" in failure["reason"]
        assert known.read_text() == original  # a changed key is never written
    assert windows_in(db, "web-1")
    assert windows_in(db, "web-2")
    assert windows_in(db, "web-3") == {}


def test_unknown_host_key_refused_then_accept_new(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """Unknown keys are refused by default; --accept-new adds them, then they are known."""
    known = tmp_path / "empty_known_hosts"
    known.write_text("")
    db = tmp_path / "c.db"
    inventory = pool.inventory(known_hosts=known)
    refused = cli("collect", "-i", inventory, "--db", db, "--json")
    assert refused.status == ExitStatus.FAILURE  # nothing collected at all
    assert {f["stage"] for f in refused.json["failures"]} == {"hostkey"}
    assert all("--accept-new" in f["reason"] for f in refused.json["failures"])
    assert known.read_text() == ""
    accepted = cli("collect", "-i", inventory, "--db", db, "--json", "--accept-new")
    assert accepted.status == ExitStatus.OK, accepted.stderr
    lines = known.read_text().splitlines()
    assert sorted(lines) == sorted(s.known_hosts_line.strip() for s in pool.servers.values())
    again = cli("collect", "-i", inventory, "--db", db, "--json")
    assert again.status == ExitStatus.OK


def test_log_without_timing_fields(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """A log in plain combined format is refused with the exact nginx lines to add."""
    log = pool.log("web-2")
    log.write_text(
        "".join(nginx_line(t, d).rsplit(" ", 2)[0] + "\n" for t, d in pool.requests["web-2"])
    )
    result = cli("collect", "-i", pool.inventory(), "--db", tmp_path / "c.db", "--json")
    assert result.status == ExitStatus.PARTIAL
    (failure,) = result.json["failures"]
    assert (failure["node"], failure["stage"]) == ("web-2", "log")
    assert "log_format" in failure["reason"]
    assert "$request_time" in failure["reason"]


def run_with_node(
    cli: CLI, pool: Pool, tmp_path: Path, extra: str, deadline: str
) -> tuple[Result, float]:
    """
    Collect the pool plus one extra node; the result and the wall time it took.
    """
    inventory = pool.inventory(extra_nodes=extra)
    started = time.monotonic()
    result = cli(
        "collect", "-i", inventory, "--db", tmp_path / "c.db", "--json", "--deadline", deadline
    )
    return result, time.monotonic() - started


def test_tarpit_ends_within_deadline(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """A node that accepts TCP but never speaks SSH fails by the timeout; the rest is stored."""
    with tarpit("127.0.0.5") as port:
        extra = (
            "  - name: tarpit\n    host: 127.0.0.5\n    address: 127.0.0.5:8080\n"
            f"    ssh: {{port: {port}, timeout_s: 1}}\n"
            f"    log: {{path: {pool.log('web-1')}}}\n"
        )
        result, elapsed = run_with_node(cli, pool, tmp_path, extra, "20s")
    assert result.status == ExitStatus.PARTIAL
    (failure,) = result.json["failures"]
    assert (failure["node"], failure["stage"]) == ("tarpit", "connect"), failure["reason"]
    assert elapsed < 10
    assert len([n for n in result.json["nodes"] if n["status"] == "ok"]) == 3


def test_deadline_cuts_a_hung_node(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """The whole run ends by --deadline even when a node's timeout is longer."""
    with tarpit("127.0.0.6") as port:
        extra = (
            "  - name: slow\n    host: 127.0.0.6\n    address: 127.0.0.6:8080\n"
            f"    ssh: {{port: {port}, timeout_s: 60}}\n"
        )
        result, elapsed = run_with_node(cli, pool, tmp_path, extra, "3s")
    assert result.status == ExitStatus.PARTIAL
    (failure,) = result.json["failures"]
    assert (failure["node"], failure["stage"]) == ("slow", "deadline")
    assert elapsed < 6


def test_hostile_log_path_is_quoted(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """A log path with shell metacharacters reaches the shell quoted: nothing runs."""
    canary = tmp_path / "pwned"
    path = f"/nonexistent/x.log; touch {canary}; echo $(touch {canary})"
    extra = (
        "  - name: hostile\n"
        f"    host: {pool.servers['web-1'].host}\n    address: 127.0.0.2:8081\n"
        f"    ssh: {{port: {pool.servers['web-1'].port}}}\n"
        f"    log: {{path: {json.dumps(path)}}}\n"
    )
    result = cli(
        "collect", "-i", pool.inventory(extra_nodes=extra), "--db", tmp_path / "c.db", "--json"
    )
    assert result.status == ExitStatus.PARTIAL
    (failure,) = result.json["failures"]
    assert (failure["node"], failure["stage"]) == ("hostile", "log")
    assert not canary.exists()


#: Shell metacharacters a path from the inventory may carry: each must reach the remote shell
#: as one quoted word.  (A canary file is created by any of them that runs.)
PAYLOADS = (
    "; touch {c}",
    "$(touch {c})",
    "`touch {c}`",
    "| touch {c}",
    "&& touch {c}",
    "' ; touch {c} ; '",
    '" ; touch {c} ; "',
    "\\'$(touch {c})",
    "*; touch {c} #",
    "{{a,b}} > {c}",
)


def test_every_remote_path_is_quoted(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """
    Log path, proc_dir and haproxy_socket, each with every payload, in one run against the
    real sshd: every hostile node fails on its own (or reads nothing), none of the payloads
    runs, and the healthy nodes are stored.
    """
    server = pool.servers["web-1"]
    extra = []
    canaries = []
    for field in ("log", "proc_dir", "haproxy_socket"):
        for i, payload in enumerate(PAYLOADS):
            canary = tmp_path / f"pwned-{field}-{i}"
            canaries.append(canary)
            path = "/nonexistent/x " + payload.format(c=canary)
            node = [
                f"  - name: h-{field.replace('_', '-')}-{i}",
                f"    host: {server.host}",
                f"    address: 127.0.0.2:{9000 + len(extra)}",
                f"    ssh: {{port: {server.port}}}",
            ]
            good_log = f"{{path: {pool.log('web-1')}, format: nginx}}"
            if field == "log":
                node.append(f"    log: {{path: {json.dumps(path)}}}")
            else:
                node.append(f"    log: {good_log}")
                node.append(f"    {field}: {json.dumps(path)}")
            extra.append("\n".join(node))
    result = cli(
        "collect",
        "-i",
        pool.inventory(extra_nodes="\n".join(extra) + "\n"),
        "--db",
        tmp_path / "c.db",
        "--json",
    )
    assert ExitStatus.PARTIAL == result.status, result.stderr
    by_node = {n["node"]: n for n in result.json["nodes"]}
    failed = {f["node"] for f in result.json["failures"]}
    for name in pool.servers:
        assert "ok" == by_node[name]["status"], by_node[name]
    # a hostile log or /proc path cannot be read; a hostile socket path fails its own probe
    hostile = [n for n in by_node if n.startswith("h-")]
    assert 3 * len(PAYLOADS) == len(hostile)
    assert set(hostile) == failed | {n for n in hostile if by_node[n]["status"] == "partial"}
    assert [] == [c.name for c in canaries if c.exists()]


def test_control_characters_in_paths_are_refused(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """A newline (or any control character) in a remote path is refused at the inventory."""
    server = pool.servers["web-1"]
    extra = (
        "  - name: newline\n"
        f"    host: {server.host}\n    address: 127.0.0.2:8099\n"
        f"    ssh: {{port: {server.port}}}\n"
        '    log: {path: "/var/log/x.log\\ntouch /tmp/pwned"}\n'
    )
    result = cli("collect", "-i", pool.inventory(extra_nodes=extra), "--db", tmp_path / "c.db")
    assert ExitStatus.BAD_INPUT == result.status
    assert "has control characters" in result.stderr


def test_proxy_jump_through_a_jump_host(cli: CLI, pool: Pool, lab: SSHLab, tmp_path: Path) -> None:
    """ProxyJump in ssh_config is followed through a direct-tcpip channel of the jump host."""
    jump = lab.start("127.0.0.7", extra="LogLevel DEBUG1\n")
    try:
        target = pool.servers["web-1"]
        config = pool.root / "ssh_config"
        known = lab.known_hosts(*pool.servers.values(), jump)
        inventory = pool.inventory(known_hosts=known)
        config.write_text(
            f"Host web-behind\n  HostName {target.host}\n  Port {target.port}\n"
            f"  ProxyJump {lab.user}@{jump.host}:{jump.port}\n"
        )
        direct = f"    host: {target.host}\n    address: {target.host}:8080\n"
        port = f"    ssh: {{port: {target.port}}}\n"
        text = inventory.read_text().replace(
            direct + port, f"    host: web-behind\n    address: {target.host}:8080\n"
        )
        inventory.write_text(text)
        result = cli("collect", "-i", inventory, "--db", tmp_path / "c.db", "--json")
        assert result.status == ExitStatus.OK, result.stdout + result.stderr
        entry = result.json["nodes"][0]
        assert entry["node"] == "web-1"
        assert entry["windows"] >= 2
        assert f"via {lab.user}@{jump.host}:{jump.port}" in entry["route"]
        log = (jump.config.parent / "sshd.log").read_text()
        assert f"to {target.host} port {target.port}" in log
    finally:
        jump.stop()


def test_dry_run_connects_to_nothing(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """--dry-run prints each node's route and commands without connecting."""
    for server in pool.servers.values():
        server.stop()
    result = cli(
        "collect", "-i", pool.inventory(), "--db", tmp_path / "c.db", "--dry-run", "--json"
    )
    assert result.status == ExitStatus.OK
    nodes = result.json["nodes"]
    assert [n["node"] for n in nodes] == list(pool.servers)
    assert all("/proc" in n["commands"][0] or "proc" in n["commands"][0] for n in nodes)
    assert not (tmp_path / "c.db").exists()


def test_haproxy_stats_socket(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """A node that names its HAProxy stats socket gets `show stat` read and stored."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    sock = tmp_path / "admin.sock"
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        f"global\n  stats socket {sock} mode 600 level admin\n"
        "defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n"
        f"frontend fe\n  bind 127.0.0.8:{free_port('127.0.0.8')}\n  default_backend web\n"
        "backend web\n  server s1 127.0.0.9:1 weight 3\n  server s2 127.0.0.10:1 weight 5\n"
    )
    process = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        inventory = pool.inventory()
        text = inventory.read_text().replace(
            f"    proc_dir: {pool.root / 'web-1' / 'proc'}\n",
            f"    proc_dir: {pool.root / 'web-1' / 'proc'}\n    haproxy_socket: {sock}\n",
        )
        inventory.write_text(text)
        db = tmp_path / "c.db"
        result = cli("collect", "-i", inventory, "--db", db, "--json", "--node", "web-1")
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert result.status == ExitStatus.OK, result.stdout + result.stderr
    rows = result.json["nodes"][0]["haproxy"]
    servers = {(r["proxy"], r["server"]): r for r in rows}
    assert servers[("web", "s1")]["weight"] == 3
    assert servers[("web", "s2")]["weight"] == 5
    assert ("fe", "FRONTEND") in servers
    with Store.open(db) as store:
        stored = store.server_stats("web-1")
    assert {(s.proxy, s.server) for _, s in stored} == set(servers)


def test_unreadable_stats_socket_is_reported(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    inventory = pool.inventory()
    text = inventory.read_text().replace(
        f"    proc_dir: {pool.root / 'web-2' / 'proc'}\n",
        f"    proc_dir: {pool.root / 'web-2' / 'proc'}\n    haproxy_socket: {tmp_path}/none.sock\n",
    )
    inventory.write_text(text)
    result = cli("collect", "-i", inventory, "--db", tmp_path / "c.db", "--json")
    assert result.status == ExitStatus.PARTIAL
    (failure,) = result.json["failures"]
    assert (failure["node"], failure["stage"]) == ("web-2", "haproxy")
    assert "none.sock" in failure["reason"]
    assert result.json["nodes"][1]["windows"] > 0  # the log was still read


def test_encrypted_key_through_the_agent(
    cli: CLI, pool: Pool, lab: SSHLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encrypted key is never unlocked by capplan; the ssh-agent's copy of it is used."""
    key = tmp_path / "encrypted_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret phrase", "-f", key], check=True
    )
    authorized = lab.authorized.read_text()
    lab.authorized.write_text(authorized + key.with_suffix(".pub").read_text())
    inventory = pool.inventory()
    inventory.write_text(
        inventory.read_text().replace(f"identity_file: {lab.user_key}", f"identity_file: {key}")
    )
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    db = tmp_path / "c.db"
    try:
        refused = cli("collect", "-i", inventory, "--db", db, "--json", "--node", "web-1")
        assert refused.status == ExitStatus.FAILURE
        (failure,) = refused.json["failures"]
        assert failure["stage"] == "auth"
        assert "encrypted" in failure["reason"]
        assert "ssh-agent" in failure["reason"]
        agent_sock = tmp_path / "agent.sock"
        agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_sock)], stdout=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while not agent_sock.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            env = {**os.environ, "SSH_AUTH_SOCK": str(agent_sock), "SSH_ASKPASS_REQUIRE": "force"}
            askpass = tmp_path / "askpass"
            askpass.write_text("#!/bin/sh\necho 'secret phrase'\n")
            askpass.chmod(0o700)
            env["SSH_ASKPASS"] = str(askpass)
            env["DISPLAY"] = "none"
            subprocess.run(
                ["ssh-add", str(key)],
                env=env,
                check=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
            )
            monkeypatch.setenv("SSH_AUTH_SOCK", str(agent_sock))
            result = cli("collect", "-i", inventory, "--db", db, "--json", "--node", "web-1")
        finally:
            agent.terminate()
            agent.wait(timeout=10)
        assert result.status == ExitStatus.OK, result.stdout + result.stderr
        assert result.json["nodes"][0]["windows"] > 0
    finally:
        lab.authorized.write_text(authorized)


def haproxy_line(t: float, latency_s: float, offset_s: float) -> str:
    """
    One `option httplog` line; HAProxy writes its host's local time, without a zone.
    """
    local = datetime.fromtimestamp(t + offset_s, UTC)
    stamp = local.strftime("%d/%b/%Y:%H:%M:%S.") + f"{local.microsecond // 1000:03d}"
    ms = round(latency_s * 1000)
    return (
        f"127.0.0.1:40000 [{stamp}] fe web/s1 0/0/0/{ms}/{ms} 200 512 - - ---- "
        '1/1/0/0/0 0/0 "GET /item HTTP/1.1"\n'
    )


def test_haproxy_log_in_the_node_time_zone(cli: CLI, lab: SSHLab, tmp_path: Path) -> None:
    """HAProxy's zone-less local times are read in the node's zone (here UTC+05:30)."""
    server = lab.start("127.0.0.11", extra="SetEnv TZ=IST-5:30\n")
    try:
        now = time.time()
        start = math.floor(now / WINDOW) * WINDOW - 4 * WINDOW + 17
        requests = requests_between(start, now - 1, 4.0, 3)
        log = tmp_path / "haproxy.log"
        log.write_text("".join(haproxy_line(t, d, 5.5 * 3600) for t, d in requests))
        shutil.copytree(PROC, tmp_path / "proc")
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(
            f"cluster: lb\nssh: {{user: {lab.user}, identity_file: {lab.user_key}, "
            f"known_hosts: {lab.known_hosts(server)}}}\nnodes:\n"
            f"  - name: lb-1\n    host: {server.host}\n    address: {server.host}:80\n"
            f"    ssh: {{port: {server.port}}}\n    proc_dir: {tmp_path / 'proc'}\n"
            f"    log: {{path: {log}, format: haproxy}}\n"
        )
        db = tmp_path / "c.db"
        result = cli("collect", "-i", inventory, "--db", db, "--json")
    finally:
        server.stop()
    assert result.status == ExitStatus.OK, result.stdout + result.stderr
    with Store.open(db) as store:
        done = store.cursor("lb-1").done_until  # type: ignore[union-attr]
    want = expected_windows(requests, math.ceil(start / WINDOW) * WINDOW, done)
    assert len(want) >= 2
    assert windows_in(db, "lb-1") == want


def test_rotation_between_runs(cli: CLI, pool: Pool, tmp_path: Path) -> None:
    """A log rotated between runs (renamed to .1, a new file opened) loses no line."""
    name = "web-3"
    db = tmp_path / "c.db"
    inventory = pool.inventory()
    assert cli("collect", "-i", inventory, "--db", db, "--node", name).status == ExitStatus.OK
    log = pool.log(name)
    now = time.time()
    late = requests_between(now - 0.9, now - 0.2, 20.0, 5)
    with log.open("a") as file:  # written before the rotation
        file.write("".join(nginx_line(t, d) for t, d in late))
    log.rename(log.with_name(log.name + ".1"))
    fresh = requests_between(now - 0.1, now + 0.5, 20.0, 6)
    log.write_text("".join(nginx_line(t, d) for t, d in fresh))
    result = cli("collect", "-i", inventory, "--db", db, "--node", name, "--json")
    assert result.status == ExitStatus.OK, result.stderr
    (entry,) = result.json["nodes"]
    assert any("rotated" in note for note in entry["notes"])
    with Store.open(db) as store:
        cursor = store.cursor(name)
    assert cursor is not None
    everything = pool.requests[name] + late + fresh
    first_full = math.ceil(pool.start / WINDOW) * WINDOW
    assert windows_in(db, name) == expected_windows(everything, first_full, cursor.done_until)
    # The cursor now points into whichever file holds the first line not yet counted.
    assert cursor.inode in (log.stat().st_ino, log.with_name(log.name + ".1").stat().st_ino)


def test_aes_gcm_first_and_other_ciphers_still_work(
    cli: CLI, pool: Pool, lab: SSHLab, tmp_path: Path
) -> None:
    """capplan asks for AES-GCM first; a server that does not offer it gets another cipher."""
    servers = {
        "gcm": lab.start("127.0.0.7", extra="LogLevel DEBUG1\n"),
        "ctr": lab.start("127.0.0.8", extra="LogLevel DEBUG1\nCiphers aes128-ctr\n"),
    }
    try:
        extra = "".join(
            f"  - name: {name}\n    host: {s.host}\n    address: {s.host}:8080\n"
            f"    ssh: {{port: {s.port}}}\n    proc_dir: {pool.root / 'web-1' / 'proc'}\n"
            f"    log: {{path: {pool.log('web-1')}, format: nginx}}\n"
            for name, s in servers.items()
        )
        known = lab.known_hosts(*pool.servers.values(), *servers.values())
        inventory = pool.inventory(known_hosts=known, extra_nodes=extra)
        result = cli("collect", "-i", inventory, "--db", tmp_path / "c.db", "--json")
        assert result.status == ExitStatus.OK, result.stdout + result.stderr
        windows = {n["node"]: n["windows"] for n in result.json["nodes"]}
        # The three read one log, each up to the last window complete on its own clock when
        # it was probed (a window may close between probes): each has exactly those windows.
        first_full = math.ceil(pool.start / WINDOW) * WINDOW
        with Store.open(tmp_path / "c.db") as store:
            for name in ("gcm", "ctr", "web-1"):
                cursor = store.cursor(name)
                assert cursor is not None
                want = expected_windows(pool.requests["web-1"], first_full, cursor.done_until)
                assert windows_in(tmp_path / "c.db", name) == want, name
                assert windows[name] == len(want) >= 2, name
        for name, cipher in (("gcm", "aes128-gcm@openssh.com"), ("ctr", "aes128-ctr")):
            log = (servers[name].config.parent / "sshd.log").read_text()
            assert f"kex: client->server cipher: {cipher} " in log, log[-2000:]
            assert f"kex: server->client cipher: {cipher} " in log
    finally:
        for server in servers.values():
            server.stop()
