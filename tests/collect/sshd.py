"""
Real OpenSSH servers on loopback for the collection tests.

Each server is Debian's ``/usr/sbin/sshd`` on its own address (127.0.0.2, 127.0.0.3, …) with a
temporary host key, accepting one temporary user key for the current user.  sshd as root wants
``/run/sshd``: each one runs in a private mount namespace (``unshare -m``) with a tmpfs on /run,
so the host's /run is untouched.  Servers are stopped by PID, never by name.

Also the pool the SSH tests collect from (three nodes with fake /proc files and access logs
whose windows are known exactly), and two fixtures — ``lab`` (the servers' keys, one per
module) and ``pool`` (three running nodes) — registered for every test by ``tests/conftest.py``
(``tests/lab`` has a ``lab`` of its own, the load-test pool, which wins there).
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from capplan.store import Store

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
PROC = Path(__file__).parent / "data" / "proc"
WINDOW = 60.0
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "capplan-test", "-f", str(path)],
        check=True,
    )


def free_port(host: str) -> int:
    """
    A TCP port free on ``host`` right now.
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """
    One running sshd.
    """

    host: str
    port: int
    process: subprocess.Popen[bytes]
    host_key: Path
    config: Path

    @property
    def known_hosts_line(self) -> str:
        """
        This server's line for a known_hosts file.
        """
        kind, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[{self.host}]:{self.port} {kind} {key}\n"

    def stop(self) -> None:
        """
        Stop this sshd (by its PID) and wait for it.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


class SSHLab:
    """
    A set of sshd servers sharing one user key; stop them all with ``close()``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.user_key = root / "user_key"
        _keygen(self.user_key)
        self.authorized = root / "authorized_keys"
        shutil.copy(self.user_key.with_suffix(".pub"), self.authorized)
        self.servers: list[Server] = []

    def start(self, host: str, *, port: int | None = None, extra: str = "") -> Server:
        """
        Start sshd on ``host`` (a loopback address) and wait until it accepts connections.
        """
        port = port or free_port(host)
        home = self.root / f"{host}-{port}"
        home.mkdir(exist_ok=True)
        host_key = home / "host_key"
        if not host_key.exists():
            _keygen(host_key)
        config = home / "sshd_config"
        # sshd keeps the first value of a keyword: `extra` comes first to override defaults.
        config.write_text(
            extra + f"ListenAddress {host}:{port}\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {self.authorized}\n"
            f"PidFile {home / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "AllowTcpForwarding yes\nMaxStartups 200\nLogLevel ERROR\n"
        )
        log = open(home / "sshd.log", "ab")  # noqa: SIM115 - owned by the process
        command = [SSHD, "-D", "-e", "-f", str(config)]
        if os.geteuid() == 0:
            script = 'mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && exec "$@"'
            command = ["unshare", "-m", "sh", "-c", script, "sh", *command]
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        server = Server(host, port, process, host_key, config)
        self.servers.append(server)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"sshd on {host}:{port} exited: {(home / 'sshd.log').read_text()[-500:]}"
                )
            try:
                with socket.create_connection((host, port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return server
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd on {host}:{port} did not start within 10 s")

    def known_hosts(self, *servers: Server) -> Path:
        """
        A known_hosts file with these servers' keys (a new file each call).
        """
        path = self.root / f"known_hosts.{len(list(self.root.glob('known_hosts.*')))}"
        path.write_text("".join(s.known_hosts_line for s in servers))
        return path

    def close(self) -> None:
        """
        Stop every server this lab started.
        """
        for server in self.servers:
            server.stop()


@contextmanager
def tarpit(host: str) -> Iterator[int]:
    """
    A port on ``host`` that accepts TCP connections and never says a word; yields the port.
    """
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen(8)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


# --- the test pool ----------------------------------------------------------------------


def nginx_line(t: float, latency_s: float, status: int = 200) -> str:
    """
    One line of nginx's combined format plus $request_time $upstream_response_time.
    """
    stamp = datetime.fromtimestamp(t, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (
        f'127.0.0.1 - - [{stamp}] "GET /item HTTP/1.1" {status} 512 "-" "bench/1.0" '
        f"{latency_s:.3f} {latency_s:.3f}\n"
    )


def requests_between(start: float, end: float, rate: float, seed: int) -> list[tuple[float, float]]:
    """
    (time, latency) pairs: ``rate`` per second, evenly spread, latencies 10-60 ms.
    """
    count = int((end - start) * rate)
    return [(start + i / rate, 0.010 + ((i * 7919 + seed) % 51) / 1000) for i in range(count)]


def expected_windows(
    requests: list[tuple[float, float]], since: float, until: float
) -> dict[float, int]:
    """
    Requests per window start, over complete windows in [since, until).
    """
    counts: dict[float, int] = {}
    for t, _ in requests:
        if since <= t < until:
            start = math.floor(t / WINDOW) * WINDOW
            counts[start] = counts.get(start, 0) + 1
    return counts


class Pool:
    """
    Nodes (each with an sshd), their files, and an inventory that points at them.
    """

    def __init__(self, root: Path, lab: SSHLab) -> None:
        self.root = root
        self.lab = lab
        self.servers = {f"web-{i + 1}": lab.start(host) for i, host in enumerate(HOSTS)}
        self.requests: dict[str, list[tuple[float, float]]] = {}
        now = time.time()
        self.start = math.floor(now / WINDOW) * WINDOW - 4 * WINDOW + 17  # mid-window
        for i, name in enumerate(self.servers):
            proc = root / name / "proc"
            shutil.copytree(PROC, proc)
            self.requests[name] = requests_between(self.start, now - 1, 5.0 + i, i)
            self.log(name).write_text("".join(nginx_line(t, d) for t, d in self.requests[name]))
        self.known_hosts = lab.known_hosts(*self.servers.values())

    def log(self, name: str) -> Path:
        return self.root / name / "access.log"

    def inventory(self, *, known_hosts: Path | None = None, extra_nodes: str = "") -> Path:
        lines = [
            "cluster: web",
            "ssh:",
            f"  user: {self.lab.user}",
            f"  identity_file: {self.lab.user_key}",
            f"  known_hosts: {known_hosts or self.known_hosts}",
            "  timeout_s: 10",
            f"  config_file: {self.root / 'ssh_config'}",
            "nodes:",
        ]
        for name, server in self.servers.items():
            lines += [
                f"  - name: {name}",
                f"    host: {server.host}",
                f"    address: {server.host}:8080",
                f"    ssh: {{port: {server.port}}}",
                f"    proc_dir: {self.root / name / 'proc'}",
                f"    log: {{path: {self.log(name)}, format: nginx}}",
            ]
        (self.root / "ssh_config").touch()
        path = self.root / "inventory.yaml"
        path.write_text("\n".join(lines) + "\n" + extra_nodes)
        return path


def windows_in(db: Path, node: str) -> dict[float, int]:
    with Store.open(db) as store:
        return {w.start.timestamp(): w.requests for w in store.windows(node)}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHLab]:
    lab = SSHLab(tmp_path_factory.mktemp("sshd"))
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def pool(tmp_path: Path, lab: SSHLab) -> Iterator[Pool]:
    pool = Pool(tmp_path, lab)
    try:
        yield pool
    finally:
        for server in pool.servers.values():
            server.stop()
