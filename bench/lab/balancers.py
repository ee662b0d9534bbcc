"""
The real balancers of the lab: one nginx and one HAProxy, each with a port per strategy.

Strategies (the issue's names):

- ``rr``: round robin, equal weights — what a config gets by default;
- ``lc``: least connections, equal weights;
- ``wrr``: weights proportional to the nodes' slots — what a careful person writes by hand;
- ``wlc``: least connections with those weights;
- ``capplan``: exactly the upstream / backend capplan rendered (its method, weights and limits,
  with the proxy timeouts its plan gives);
- ``optimum``: least connections with the weights of the lab's own search (set per balancer
  with :meth:`Balancers.set_optimum`).

Both balancers listen on their own loopback address only; they are started in the foreground
and stopped by PID.  Between points nothing is reloaded, except nginx's ``optimum`` port while
the search moves its weights (HAProxy's are set at run time through its stats socket).
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.lab.pool import Pool, require_loopback

__all__ = ["STRATEGIES", "Balancers", "CapplanConfig", "haproxy_config", "nginx_config"]

STRATEGIES = ("rr", "lc", "wrr", "wlc", "capplan", "optimum")
NGINX_HOST = "127.0.0.20"
HAPROXY_HOST = "127.0.0.21"
BASE_PORT = 18100


@dataclass(frozen=True)
class CapplanConfig:
    """
    What capplan wrote for the lab's pool: the nginx upstream (named ``capplan``), the HAProxy
    backend (named ``capplan``), and the proxy timeouts of its plan.
    """

    nginx_upstream: str
    haproxy_backend: str
    connect_timeout_ms: int | None = None
    server_timeout_ms: int | None = None


def _slots(pool: Pool) -> dict[str, int]:
    return {node.name: node.slots for node in pool.nodes}


def _weights_for(strategy: str, pool: Pool, optimum: Mapping[str, int] | None) -> dict[str, int]:
    if strategy in ("wrr", "wlc"):
        return _slots(pool)
    if strategy == "optimum":
        return dict(optimum or _slots(pool))
    return {node.name: 1 for node in pool.nodes}


def nginx_config(
    pool: Pool,
    workdir: Path,
    ports: Mapping[str, int],
    capplan: CapplanConfig | None,
    optimum: Mapping[str, int] | None = None,
    host: str = NGINX_HOST,
) -> str:
    """
    A whole nginx.conf: one upstream and one server per strategy.
    """
    host = require_loopback(host)
    blocks: list[str] = []
    for strategy, port in ports.items():
        location = [f"proxy_pass http://{strategy};"]
        if strategy == "capplan":
            if capplan is None:
                continue
            blocks.append(capplan.nginx_upstream)
            if capplan.connect_timeout_ms is not None:
                location.append(f"proxy_connect_timeout {capplan.connect_timeout_ms}ms;")
            if capplan.server_timeout_ms is not None:
                location.append(f"proxy_read_timeout {capplan.server_timeout_ms}ms;")
        else:
            weights = _weights_for(strategy, pool, optimum)
            method = "    least_conn;\n" if strategy in ("lc", "wlc", "optimum") else ""
            servers = "".join(
                f"    server {require_loopback(n.address)}:{n.port} weight={weights[n.name]};\n"
                for n in pool.nodes
            )
            blocks.append(
                f"upstream {strategy} {{\n    zone {strategy} 64k;\n{method}{servers}}}\n"
            )
        body = "\n".join(f"            {line}" for line in location)
        blocks.append(
            f"server {{\n    listen {host}:{port};\n    location / {{\n{body}\n    }}\n}}\n"
        )
    http = "\n".join(blocks)
    return (
        "worker_processes 1;\n"
        f"pid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'nginx-error.log'} warn;\n"
        "events { worker_connections 16384; }\n"
        "http {\n"
        "    access_log off;\n"
        f"    client_body_temp_path {workdir / 'tmp'};\n"
        f"    proxy_temp_path {workdir / 'tmp'};\n"
        f"    fastcgi_temp_path {workdir / 'tmp'};\n"
        f"    uwsgi_temp_path {workdir / 'tmp'};\n"
        f"    scgi_temp_path {workdir / 'tmp'};\n"
        + "".join(f"    {line}\n" for line in http.splitlines())
        + "}\n"
    )


def haproxy_config(
    pool: Pool,
    workdir: Path,
    ports: Mapping[str, int],
    capplan: CapplanConfig | None,
    optimum: Mapping[str, int] | None = None,
    host: str = HAPROXY_HOST,
) -> str:
    """
    A whole haproxy.cfg: one frontend and backend per strategy, a stats socket for run-time
    weights.
    """
    host = require_loopback(host)
    parts = [
        "global\n"
        "    maxconn 8000\n"
        "    nbthread 1\n"
        f"    stats socket {workdir / 'haproxy.sock'} mode 600 level admin\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 1s\n"
        "    timeout client 60s\n"
        "    timeout server 60s\n"
        "    timeout queue 60s\n"
    ]
    for strategy, port in ports.items():
        parts.append(
            f"frontend fe_{strategy}\n    bind {host}:{port}\n    default_backend {strategy}\n"
        )
        if strategy == "capplan":
            if capplan is None:
                continue
            parts.append(capplan.haproxy_backend)
            continue
        weights = _weights_for(strategy, pool, optimum)
        balance = "leastconn" if strategy in ("lc", "wlc", "optimum") else "roundrobin"
        servers = "".join(
            f"    server {n.name} {require_loopback(n.address)}:{n.port} weight {weights[n.name]}\n"
            for n in pool.nodes
        )
        parts.append(f"backend {strategy}\n    balance {balance}\n{servers}")
    return "\n".join(parts)


def _free_ports(host: str, count: int) -> list[int]:
    ports: list[int] = []
    candidate = BASE_PORT
    while len(ports) < count and candidate < BASE_PORT + 2000:
        with socket.socket() as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                candidate += 1
                continue
        ports.append(candidate)
        candidate += 1
    if len(ports) < count:
        raise RuntimeError(f"no {count} free ports on {host}")
    return ports


def _wait_listening(host: str, port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on {host}:{port} after 10 s")


@dataclass
class Balancers:
    """
    nginx and HAProxy serving the pool, one port per strategy each.
    """

    pool: Pool
    workdir: Path
    capplan: CapplanConfig | None
    optimum: dict[str, dict[str, int]] = field(default_factory=dict)  # per balancer
    nginx_ports: dict[str, int] = field(default_factory=dict)
    haproxy_ports: dict[str, int] = field(default_factory=dict)
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        """
        Write both configs, check them with the balancers themselves, start both.
        """
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        wanted = [s for s in STRATEGIES if s != "capplan" or self.capplan is not None]
        self.nginx_ports = dict(zip(wanted, _free_ports(NGINX_HOST, len(wanted)), strict=True))
        self.haproxy_ports = dict(zip(wanted, _free_ports(HAPROXY_HOST, len(wanted)), strict=True))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self._write_nginx()
        conf = str(self.workdir / "nginx.conf")
        subprocess.run(
            [nginx, "-t", "-q", "-p", str(self.workdir), "-c", conf], check=True, timeout=30
        )
        self._write_haproxy()
        cfg = str(self.workdir / "haproxy.cfg")
        subprocess.run([haproxy, "-dW", "-c", "-q", "-f", cfg], check=True, timeout=30)
        self._processes["nginx"] = subprocess.Popen(
            [nginx, "-p", str(self.workdir), "-c", conf, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
        )
        self._processes["haproxy"] = subprocess.Popen(
            [haproxy, "-db", "-f", cfg], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        first = next(iter(self.nginx_ports.values()))
        _wait_listening(NGINX_HOST, first, self._processes["nginx"], "nginx")
        first = next(iter(self.haproxy_ports.values()))
        _wait_listening(HAPROXY_HOST, first, self._processes["haproxy"], "haproxy")

    def _write_nginx(self) -> None:
        text = nginx_config(
            self.pool, self.workdir, self.nginx_ports, self.capplan, self.optimum.get("nginx")
        )
        (self.workdir / "nginx.conf").write_text(text)

    def _write_haproxy(self) -> None:
        text = haproxy_config(
            self.pool, self.workdir, self.haproxy_ports, self.capplan, self.optimum.get("haproxy")
        )
        (self.workdir / "haproxy.cfg").write_text(text)

    def target(self, balancer: str, strategy: str) -> tuple[str, int]:
        """
        Where to send a strategy's traffic on a balancer (``nginx`` or ``haproxy``).
        """
        if balancer == "nginx":
            return NGINX_HOST, self.nginx_ports[strategy]
        return HAPROXY_HOST, self.haproxy_ports[strategy]

    def capplan_digest(self, balancer: str) -> str:
        """
        A short digest of capplan's config for ``balancer``: results are keyed by it.
        """
        if self.capplan is None:
            return "none"
        text = self.capplan.nginx_upstream if balancer == "nginx" else self.capplan.haproxy_backend
        text += f"{self.capplan.connect_timeout_ms} {self.capplan.server_timeout_ms}"
        # the header's comment lines name paths and times, not behaviour
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        return hashlib.sha256(body.encode()).hexdigest()[:10]

    def set_optimum(self, balancer: str, weights: Mapping[str, int]) -> None:
        """
        Move ``balancer``'s ``optimum`` port to ``weights``: HAProxy at run time through its
        stats socket, nginx by a graceful reload.
        """
        if self.optimum.get(balancer) == dict(weights):
            return
        self.optimum[balancer] = dict(weights)
        if balancer == "nginx":
            self._write_nginx()
            self._processes["nginx"].send_signal(signal.SIGHUP)
            time.sleep(1.0)  # old workers finish; new ones take the new weights
            return
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.workdir / "haproxy.sock"))
            commands = ";".join(f"set weight optimum/{n} {w}" for n, w in weights.items())
            sock.sendall(commands.encode() + b"\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        if answer.strip():
            raise RuntimeError(f"HAProxy refused the weights: {answer.decode()[:300]}")

    def stop(self) -> None:
        """
        Stop both balancers (by PID) and wait for them.
        """
        for process in self._processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._processes.clear()
