"""
Real OpenSSH servers on loopback for the collection tests.

Each server is Debian's ``/usr/sbin/sshd`` on its own address (127.0.0.2, 127.0.0.3, …) with a
temporary host key, accepting one temporary user key for the current user.  sshd as root wants
``/run/sshd``: each one runs in a private mount namespace (``unshare -m``) with a tmpfs on /run,
so the host's /run is untouched.  Servers are stopped by PID, never by name.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


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
