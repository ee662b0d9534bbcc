"""
Secrets stay secret (issue 9, item 6), against real sshd, ssh-agent and capplan processes.

- Private keys (with and without a passphrase), the passphrase, a file wrongly given as a key,
  and what an ssh-agent holds (its keys' public blobs and comments) appear nowhere: not in
  ``collect --json``, ``collect --dry-run --json``, stderr, the store, known_hosts, ``plan.yaml``
  or a rendered config.  capplan never unlocks an encrypted key itself: it says to load it
  into the agent, and the only thing it prints of an agent key is its SHA256 fingerprint.
- Modes: the store (and its ``-wal`` and ``-shm``) and a known_hosts created by
  ``--accept-new`` are 0600 (its new ``.ssh`` folder 0700) under umask 022.

Plans, configs and exports are not made 0600: they hold addresses, weights and thresholds
(``plan.yaml`` does not even name the SSH user or key — asserted below), and the balancers,
CI drift checks and config management read them.  They follow the umask like any new file
(0644 under 022, 0600 under 077; before the fix capplan forced 0644 even under umask 077), and
a rewritten file keeps the mode the operator gave it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from capplan.files import write_atomic
from tests.collect.sshd import PROC, WINDOW, Server, SSHLab, nginx_line, requests_between
from tests.security.test_durability import samples_csv, wait_for

GOLDEN = Path(__file__).parents[1] / "render" / "golden"
EXAMPLE = Path(__file__).parents[2] / "examples" / "web"
HOST = "127.0.0.30"
PASSPHRASE = "correct horse battery staple 9"
NOT_A_KEY = "DB_PASSWORD=hunter2-not-for-logs\nAPI_TOKEN=tok_5ecret5ecret5ecret\n"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="sshd runs as root (CI runs as root)")


def capplan(
    *args: object, cwd: Path, env: dict[str, str] | None = None, umask: int = 0o022
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("CAPPLAN_DB", "SSH_AUTH_SOCK")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "capplan", *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        umask=umask,
        timeout=120,
    )


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


@pytest.fixture
def server(lab: SSHLab) -> Iterator[Server]:
    server = lab.start(HOST)
    try:
        yield server
    finally:
        server.stop()


def keygen(path: Path, passphrase: str, comment: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", path],
        check=True,
    )
    return path


def secrets_of(key: Path, passphrase: str) -> dict[str, bytes]:
    """
    Everything secret about a key file: its text, each line of its body, the raw private key
    (as bytes, hex and base64), and its passphrase.
    """
    text = key.read_text()
    found = {f"{key.name} file": text.encode()}
    for number, line in enumerate(text.splitlines()):
        if not line.startswith("-----") and len(line) >= 16:
            found[f"{key.name} body line {number}"] = line.encode()
    private = serialization.load_ssh_private_key(text.encode(), passphrase.encode() or None)
    raw = private.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    found[f"{key.name} raw"] = raw
    found[f"{key.name} raw hex"] = raw.hex().encode()
    found[f"{key.name} raw base64"] = base64.b64encode(raw)
    if passphrase:
        found["passphrase"] = passphrase.encode()
    return found


def leaks(secrets: dict[str, bytes], texts: dict[str, bytes]) -> list[str]:
    return [
        f"{what} in {where}" for where, t in texts.items() for what, s in secrets.items() if s in t
    ]


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@needs_root
def test_keys_passphrase_and_agent_never_leak(lab: SSHLab, server: Server, tmp_path: Path) -> None:
    """Failing keys of every kind, with and without an agent: nothing secret comes out."""
    keys = tmp_path / "keys"
    keys.mkdir()
    plain = keygen(keys / "plain_key", "", "plain-comment-7f3a@secret-host")
    encrypted = keygen(keys / "encrypted_key", PASSPHRASE, "enc-comment-91bd@secret-host")
    not_a_key = keys / "dot_env"
    not_a_key.write_text(NOT_A_KEY)
    secrets = {**secrets_of(plain, ""), **secrets_of(encrypted, PASSPHRASE)}
    secrets["not-a-key contents"] = b"hunter2-not-for-logs"
    secrets["not-a-key token"] = b"tok_5ecret5ecret5ecret"
    for key in (plain, encrypted):  # what the agent holds: public blobs and comments
        _kind, blob, comment = key.with_suffix(".pub").read_text().split()
        secrets[f"{key.name} agent blob"] = blob.encode()
        secrets[f"{key.name} agent comment"] = comment.encode()

    # the detector finds them where they are
    everything = b"".join(p.read_bytes() for p in keys.iterdir())
    in_files = {k for k in secrets if k.endswith(" file") or "body line" in k or "not-a" in k}
    assert len(in_files) >= 10
    assert set(leaks(secrets, {"keys": everything})) >= {f"{k} in keys" for k in in_files}
    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree(PROC, out / "proc")
    now = time.time()
    start = (now // WINDOW) * WINDOW - 3 * WINDOW + 17
    log = out / "access.log"
    log.write_text("".join(nginx_line(t, d) for t, d in requests_between(start, now - 1, 4.0, 1)))
    known = out / "known_hosts"
    known.write_text(server.known_hosts_line)
    nodes = [("ok", None), ("plain", plain), ("encrypted", encrypted), ("not-a-key", not_a_key)]
    lines = [
        "cluster: web",
        f"ssh: {{user: {lab.user}, identity_file: {lab.user_key}, known_hosts: {known}}}",
        "nodes:",
    ]
    for index, (name, key) in enumerate(nodes):
        identity = f", identity_file: {key}" if key else ""
        lines += [
            f"  - name: {name}",
            f"    host: {HOST}",
            f"    address: {HOST}:{8080 + index}",
            f"    ssh: {{port: {server.port}{identity}}}",
            f"    proc_dir: {out / 'proc'}",
            f"    log: {{path: {log}}}",
        ]
    inventory = out / "inventory.yaml"
    inventory.write_text("\n".join(lines) + "\n")
    db = out / "c.db"
    texts: dict[str, bytes] = {}

    without = capplan("collect", "-i", inventory, "--db", db, "--json", cwd=out)
    assert without.returncode == 3, without.stderr
    reasons = {f["node"]: f["reason"] for f in json.loads(without.stdout)["failures"]}
    assert sorted(reasons) == ["encrypted", "not-a-key", "plain"]
    assert f"{plain} refused" in reasons["plain"]
    assert f"{encrypted} is encrypted (load it into ssh-agent)" in reasons["encrypted"]
    assert str(not_a_key) in reasons["not-a-key"]
    texts["collect --json stdout"] = without.stdout.encode()
    texts["collect --json stderr"] = without.stderr.encode()
    dry = capplan("collect", "-i", inventory, "--db", db, "--json", "--dry-run", cwd=out)
    texts["dry-run stdout"] = dry.stdout.encode()
    texts["dry-run stderr"] = dry.stderr.encode()
    table = capplan("collect", "-i", inventory, "--db", db, cwd=out)  # the human output
    texts["collect table"] = (table.stdout + table.stderr).encode()

    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for(sock, agent)
        askpass = tmp_path / "askpass"
        askpass.write_text(f"#!/bin/sh\necho '{PASSPHRASE}'\n")
        askpass.chmod(0o700)
        add_env = {
            **os.environ,
            "SSH_AUTH_SOCK": str(sock),
            "SSH_ASKPASS": str(askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": "none",
        }
        for key in (plain, encrypted):
            subprocess.run(
                ["ssh-add", str(key)],
                env=add_env,
                check=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
            )
        agent_env = {"SSH_AUTH_SOCK": str(sock)}
        with_agent = capplan(
            "collect", "-i", inventory, "--db", db, "--json", cwd=out, env=agent_env
        )
        agent_table = capplan("collect", "-i", inventory, "--db", db, cwd=out, env=agent_env)
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert with_agent.returncode == 3, with_agent.stderr
    failures = json.loads(with_agent.stdout)["failures"]
    assert sorted(f["node"] for f in failures) == ["encrypted", "not-a-key", "plain"]
    assert all(f["reason"].count("agent key SHA256:") == 2 for f in failures)
    texts["collect with agent --json"] = (with_agent.stdout + with_agent.stderr).encode()
    texts["collect with agent table"] = (agent_table.stdout + agent_table.stderr).encode()

    # a plan and a config from an inventory that names the encrypted key
    example = (EXAMPLE / "inventory.yaml").read_text()
    assert "ssh: {user: ops," in example
    planned = out / "web.yaml"
    planned.write_text(
        example.replace("ssh: {user: ops,", f"ssh: {{user: ops, identity_file: {encrypted},")
    )
    assert capplan("import", EXAMPLE / "samples.csv", "--db", db, cwd=out).returncode == 0
    args = ("optimize", "-i", planned, "--db", db, "--out", out / "plan.yaml", "--json")
    optimize = capplan(*args, "--emit", "nginx", "--out-dir", out / "configs", cwd=out)
    assert optimize.returncode == 0, optimize.stderr
    texts["optimize --json"] = (optimize.stdout + optimize.stderr).encode()
    plan = (out / "plan.yaml").read_text()
    assert "web-1" in plan
    assert str(encrypted) not in plan  # the plan does not even name the key
    assert "identity" not in plan
    assert (out / "configs" / "nginx-web.conf").exists()

    written = files_under(out)  # the store, known_hosts, plan.yaml, the config, ...
    assert str(db) in written
    assert str(out / "plan.yaml") in written
    texts.update(written)
    assert leaks(secrets, texts) == []


def test_store_files_are_0600(tmp_path: Path) -> None:
    """The store, its -wal and its -shm are 0600 under umask 022, while in use and after."""
    csv = samples_csv(tmp_path / "s.csv", ["a", "b"], 6_000)
    db = tmp_path / "new.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "capplan", "import", csv, "--db", db],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        umask=0o022,
    )
    try:
        assert wait_for(db.with_name("new.db-shm"), process)
        assert wait_for(db.with_name("new.db-wal"), process)
        process.send_signal(signal.SIGSTOP)
        files = [db, db.with_name("new.db-wal"), db.with_name("new.db-shm")]
        assert [mode(p) for p in files] == [oct(0o600)] * 3
    finally:
        process.send_signal(signal.SIGCONT)
        process.communicate(timeout=60)
    assert process.returncode == 0
    assert mode(db) == oct(0o600)


@needs_root
def test_known_hosts_created_by_accept_new_is_0600(
    lab: SSHLab, server: Server, tmp_path: Path
) -> None:
    """--accept-new creates known_hosts 0600 in a new 0700 folder, under umask 022."""
    shutil.copytree(PROC, tmp_path / "proc")
    log = tmp_path / "access.log"
    log.write_text(nginx_line(time.time() - 100, 0.02))
    known = tmp_path / "home" / ".ssh" / "known_hosts"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        f"cluster: web\nssh: {{user: {lab.user}, identity_file: {lab.user_key}, "
        f"known_hosts: {known}}}\nnodes:\n"
        f"  - name: web-1\n    host: {HOST}\n    address: {HOST}:8080\n"
        f"    ssh: {{port: {server.port}}}\n    proc_dir: {tmp_path / 'proc'}\n"
        f"    log: {{path: {log}}}\n"
    )
    result = capplan(
        "collect", "-i", inventory, "--db", tmp_path / "c.db", "--accept-new", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert known.read_text() == server.known_hosts_line
    assert (mode(known), mode(known.parent)) == (oct(0o600), oct(0o700))


@pytest.mark.parametrize(
    ("umask", "expected"), [(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"]
)
def test_configs_and_plans_follow_the_umask(tmp_path: Path, umask: int, expected: int) -> None:
    """A new config or export gets 0666 less the umask; a rewritten one keeps its mode."""
    plan = tmp_path / "plan.yaml"
    shutil.copy(GOLDEN / "plan.yaml", plan)
    new = tmp_path / "new.conf"
    assert (
        capplan("render", plan, "-t", "nginx", "-o", new, cwd=tmp_path, umask=umask).returncode == 0
    )
    kept = tmp_path / "kept.conf"
    kept.write_text("# old\n")
    kept.chmod(0o640)
    assert (
        capplan("render", plan, "-t", "nginx", "-o", kept, cwd=tmp_path, umask=umask).returncode
        == 0
    )
    assert kept.read_text() == new.read_text()
    assert (mode(new), mode(kept)) == (oct(expected), oct(0o640))


def test_write_atomic_modes(tmp_path: Path) -> None:
    """write_atomic: a new file as open() would make it, an old one keeps its mode."""
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new.txt", "x")
        (tmp_path / "old.txt").write_text("y")
        (tmp_path / "old.txt").chmod(0o604)
        write_atomic(tmp_path / "old.txt", "z")
    finally:
        os.umask(old)
    assert (mode(tmp_path / "new.txt"), mode(tmp_path / "old.txt")) == (oct(0o640), oct(0o604))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
