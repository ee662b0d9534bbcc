"""
Every node of a lab pool, served by one asyncio process: each node an M/G/c station.

    python -m bench.lab.node --pool bench/lab/pools/default.yaml --log-dir DIR
                             [--pid-file F] [--duration-s 600] [--no-uvloop]

Each node listens on its own ``address:port`` (127.0.0.0/8 only) and speaks enough HTTP/1.1 for
a balancer: keep-alive (the default for HTTP/1.1; HTTP/1.0 with ``Connection: keep-alive``),
``Connection: close``, pipelined requests answered in order, a ``Content-Length`` body read and
dropped.  Every request other than ``/__stats`` goes through the node's station:

* ``slots`` workers and one strictly FIFO queue: a request that finds every slot busy waits in a
  deque; a finishing request hands its slot to the head of the queue, which starts from when the
  slot was due free (a timer that fired late does not delay the queue: see ``NodeStation``);
* a service time drawn from the node's own seeded generator (``exp``, ``fixed`` or ``lognormal``
  with its ``cv``; mean ``service_ms``; seed ``[pool seed, node index]``), served by a timer
  (``loop.call_later``), not by CPU work — so a node's capacity is ``slots / service_ms``
  whatever this machine's cores do;
* the answer ``200`` with a 3-byte body and ``X-Node: NAME``;
* one line in the node's access log ``DIR/NAME.access.log`` in nginx's format (capplan's default
  ``log_format``)::

      $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
      "$http_referer" "$http_user_agent" $request_time $upstream_response_time

  ``$request_time`` is the time from the request being read to the response being written
  (queue + service + the timer's overshoot), in seconds with millisecond resolution;
  ``$upstream_response_time`` is ``-``.  ``$status`` is 499 (nginx's "client closed") when the
  client had gone by then.  Lines are buffered and flushed at least every half second, and at
  exit.

``GET /__stats`` answers at once (no queue, no log line) with the node's JSON: ``arrived``,
``waited`` (arrivals that found every slot busy), ``served``, ``busy``, ``queued``,
``connections``, ``slots``, ``service_ms``, ``service``, the totals ``wait_ms_total``,
``service_ms_total`` and ``overshoot_ms_total`` (so two readings give the figures of the time
between), and ``p_wait``, ``mean_wait_ms``, ``mean_service_ms`` and ``mean_overshoot_ms`` since
start (the overshoot: how long after its due time each response was written — the timer's tick
and the loop's delays).  :func:`fetch_stats` reads it.

The process writes its PID file once every socket is bound, prints one JSON line with the bound
addresses (``{"pid": …, "nodes": {"n1": "127.0.0.2:8080", …}}``), and runs until SIGTERM or
SIGINT or ``--duration-s`` (at most a day), then stops accepting, lets the requests in service
finish (2 s at most), flushes the logs and removes its PID file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt

from bench.lab._loop import loop_factory
from bench.lab.pool import (
    Pool,
    PoolError,
    ServiceKind,
    load_pool,
    require_loopback,
    service_times,
)

__all__ = [
    "NodeProcess",
    "NodeStation",
    "RunningPool",
    "ServiceTimes",
    "fetch_stats",
    "fetch_stats_async",
    "log_path",
    "main",
    "serve_pool",
    "start_node_process",
    "start_pool",
]

BODY = b"ok\n"
STATS_PATH = "/__stats"
MAX_HEAD_BYTES = 16_384
MAX_BODY_BYTES = 1 << 20
FLUSH_INTERVAL_S = 0.5
DRAIN_S = 2.0
MAX_DURATION_S = 86_400.0
DEFAULT_DURATION_S = 600.0
READY_TIMEOUT_S = 20.0
_BLOCK = 4096  # service times drawn per call to the generator


def log_path(log_dir: str | Path, node_name: str) -> Path:
    """
    The access log of node ``node_name`` under ``log_dir``.
    """
    return Path(log_dir) / f"{node_name}.access.log"


class ServiceTimes:
    """
    A node's seeded stream of service times, in seconds.

    ``exp`` and ``fixed`` have mean ``mean_s``; ``lognormal`` has mean ``mean_s`` and coefficient
    of variation ``cv`` (``σ² = ln(1 + cv²)``, ``μ = ln(mean) − σ²/2``).  The same kind, mean, cv
    and seed give the same sequence, drawn in blocks.
    """

    def __init__(self, kind: ServiceKind, mean_s: float, *, cv: float, seed: list[int]) -> None:
        self.kind = kind
        self.mean_s = mean_s
        self.cv = cv
        self._rng = np.random.default_rng(np.random.SeedSequence(seed))
        self._block: list[float] = []
        self._next = 0

    def draw(self, n: int) -> npt.NDArray[np.float64]:
        """
        The next ``n`` service times as an array, straight from the generator.

        A fresh instance's ``draw(n)`` gives the first ``n`` values that ``next`` gives on
        another fresh instance with the same arguments (what a node will serve, in order).
        """
        return service_times(self._rng, self.kind, self.mean_s, self.cv, n)

    def next(self) -> float:
        """
        The next service time.
        """
        if self._next >= len(self._block):
            self._block = self.draw(_BLOCK).tolist()
            self._next = 0
        value = self._block[self._next]
        self._next += 1
        return value


def _escape(raw: bytes) -> str:
    """
    A request field as nginx logs it: ``"``, ``\\``, control and non-ASCII bytes as ``\\xHH``.
    """
    if raw.isascii() and all(32 <= b < 127 and b not in (34, 92) for b in raw):
        return raw.decode("ascii")
    return "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02X}" for b in raw)


class _Clock:
    """
    ``$time_local`` strings, formatted once per second.
    """

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def local(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return self._text


_CLOCK = _Clock()


@dataclass(slots=True, eq=False)
class _Job:
    """
    One request in a station: who asked, what, and when it was read.
    """

    conn: _Connection
    request: str
    user_agent: str
    referer: str
    read_at: float
    keep_alive: bool
    head: bool
    started: float = 0.0
    due: float = 0.0
    timer: asyncio.TimerHandle | None = None


@dataclass
class NodeStation:
    """
    One node's M/G/c station: ``slots`` workers, a FIFO queue, timed service, an access log.

    The station keeps the ideal FCFS schedule: a request starts at its arrival (when a slot is
    free) or when the slot it takes was *due* to be free, and is due ``service`` later; its timer
    fires at that due time, a little after it (the loop's tick; a busy machine's stall).  The
    overshoot delays that one response only: it does not push back the requests queued behind,
    so the node's capacity is exactly ``slots / service_ms`` however late the timers fire.
    """

    name: str
    slots: int
    service_ms: float
    times: ServiceTimes
    log: IO[str]
    busy: int = 0
    arrived: int = 0
    waited: int = 0
    served: int = 0
    connections: int = 0
    wait_s: float = 0.0
    busy_s: float = 0.0
    overshoot_s: float = 0.0
    queue: deque[_Job] = field(default_factory=deque)
    in_service: set[_Job] = field(default_factory=set)
    closed: bool = False

    def __post_init__(self) -> None:
        node = self.name.encode("ascii")
        common = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Node: " + node + b"\r\n"
        length = f"Content-Length: {len(BODY)}\r\n".encode("ascii")
        self._keep = common + length + b"\r\n" + BODY
        self._keep10 = common + length + b"Connection: keep-alive\r\n\r\n" + BODY
        self._close = common + length + b"Connection: close\r\n\r\n" + BODY
        self._keep_head = common + length + b"\r\n"
        self._close_head = common + length + b"Connection: close\r\n\r\n"

    @property
    def queued(self) -> int:
        """
        Requests waiting for a slot.
        """
        return len(self.queue)

    def stats(self) -> dict[str, Any]:
        """
        The node's counters, as ``GET /__stats`` gives them.
        """
        started = self.arrived - len(self.queue)
        return {
            "node": self.name,
            "slots": self.slots,
            "service_ms": self.service_ms,
            "service": self.times.kind,
            "arrived": self.arrived,
            "waited": self.waited,
            "served": self.served,
            "busy": self.busy,
            "queued": len(self.queue),
            "connections": self.connections,
            "wait_ms_total": 1000.0 * self.wait_s,
            "service_ms_total": 1000.0 * self.busy_s,
            "overshoot_ms_total": 1000.0 * self.overshoot_s,
            "p_wait": self.waited / self.arrived if self.arrived else None,
            "mean_wait_ms": 1000.0 * self.wait_s / started if started else None,
            "mean_service_ms": 1000.0 * self.busy_s / self.served if self.served else None,
            "mean_overshoot_ms": 1000.0 * self.overshoot_s / self.served if self.served else None,
        }

    def submit(self, job: _Job) -> None:
        """
        Take a request: into a free slot, else to the back of the queue.
        """
        self.arrived += 1
        if self.busy < self.slots:
            self.busy += 1
            self._start(job, job.read_at)
        else:
            self.waited += 1
            self.queue.append(job)

    def _start(self, job: _Job, start: float) -> None:
        """
        Serve ``job`` from ``start`` (``perf_counter`` time, possibly just past): its timer is
        set for ``start`` plus its service time.
        """
        job.started = start
        self.wait_s += start - job.read_at
        job.due = start + self.times.next()
        delay = job.due - time.perf_counter()
        job.timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._finish, job)
        self.in_service.add(job)

    def _finish(self, job: _Job) -> None:
        self.in_service.discard(job)
        if self.closed:
            return
        self.busy_s += job.due - job.started
        conn = job.conn
        if conn.open:
            if job.head:
                response = self._keep_head if job.keep_alive else self._close_head
            elif not job.keep_alive:
                response = self._close
            else:
                response = self._keep10 if conn.http10 else self._keep
            conn.transport.write(response)
            status = 200
            sent = 0 if job.head else len(BODY)
        else:
            status, sent = 499, 0
        done = time.perf_counter()
        self.overshoot_s += done - job.due
        self.served += 1
        self.log.write(
            f'{conn.peer} - - [{_CLOCK.local(time.time())}] "{job.request}" {status} {sent} '
            f'"{job.referer}" "{job.user_agent}" {done - job.read_at:.3f} -\n'
        )
        if self.queue:  # the slot goes to the head of the queue, from when it was due free
            head = self.queue.popleft()
            self._start(head, max(head.read_at, job.due))
        else:
            self.busy -= 1
        if conn.open:
            conn.answered(job.keep_alive)

    def cancel(self) -> None:
        """
        Stop serving: cancel the timers of the requests in service, drop the queue.
        """
        self.closed = True
        for job in self.in_service:
            if job.timer is not None:
                job.timer.cancel()
        self.in_service.clear()
        self.queue.clear()


class _Connection(asyncio.Protocol):
    """
    One client connection to a node: reads requests, one at a time into the station.
    """

    def __init__(self, station: NodeStation, registry: set[_Connection]) -> None:
        self.station = station
        self.registry = registry
        self.buffer = bytearray()
        self.waiting = False  # a request of this connection is in the station
        self.open = False
        self.http10 = False
        self.peer = "-"
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.open = True
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else "-"
        self.station.connections += 1
        self.registry.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            self.open = False
            self.station.connections -= 1
        self.registry.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_HEAD_BYTES + MAX_BODY_BYTES:
            self._reject(b"413 Content Too Large")
            return
        if not self.waiting:
            self._next()

    def answered(self, keep_alive: bool) -> None:
        """
        The station wrote this connection's response: read the next request or close.
        """
        self.waiting = False
        if not keep_alive:
            self.close()
        elif self.buffer:
            self._next()

    def close(self) -> None:
        if self.open:
            self.open = False
            self.station.connections -= 1
            self.transport.close()

    def _reject(self, status: bytes) -> None:
        if self.open:
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        self.buffer.clear()
        self.close()

    def _next(self) -> None:
        """
        Handle the complete requests at the head of the buffer, up to one for the station.
        """
        while self.open and not self.waiting:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self._reject(b"431 Request Header Fields Too Large")
                return
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                self._reject(b"400 Bad Request")
                return
            method, target, version = parts
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, colon, value = line.partition(b":")
                if not colon:
                    self._reject(b"400 Bad Request")
                    return
                headers[name.strip().lower()] = value.strip()
            if b"transfer-encoding" in headers:
                self._reject(b"501 Not Implemented")
                return
            try:
                length = int(headers.get(b"content-length", b"0"))
            except ValueError:
                self._reject(b"400 Bad Request")
                return
            if not 0 <= length <= MAX_BODY_BYTES:
                self._reject(b"413 Content Too Large")
                return
            if len(self.buffer) < end + 4 + length:
                return  # the body is not all here yet
            del self.buffer[: end + 4 + length]
            connection = headers.get(b"connection", b"").lower()
            self.http10 = version == b"HTTP/1.0"
            keep_alive = b"keep-alive" in connection if self.http10 else b"close" not in connection
            if target == STATS_PATH.encode("ascii"):
                self._stats(keep_alive)
                continue
            self.waiting = True
            self.station.submit(
                _Job(
                    conn=self,
                    request=_escape(lines[0]),
                    user_agent=_escape(headers.get(b"user-agent", b"-")),
                    referer=_escape(headers.get(b"referer", b"-")),
                    read_at=time.perf_counter(),
                    keep_alive=keep_alive,
                    head=method == b"HEAD",
                )
            )

    def _stats(self, keep_alive: bool) -> None:
        body = json.dumps(self.station.stats()).encode("ascii") + b"\n"
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Node: "
            + self.station.name.encode("ascii")
            + f"\r\nContent-Length: {len(body)}\r\n".encode("ascii")
            + (b"" if keep_alive else b"Connection: close\r\n")
            + b"\r\n"
            + body
        )
        if not keep_alive:
            self.close()


@dataclass
class RunningPool:
    """
    A pool being served in this event loop.

    Attributes:
        pool: the pool.
        stations: each node's station, by node name.
        addresses: each node's bound ``(address, port)``, by node name.
        log_dir: where the access logs are.
    """

    pool: Pool
    stations: dict[str, NodeStation]
    addresses: dict[str, tuple[str, int]]
    log_dir: Path
    _servers: list[asyncio.Server]
    _connections: set[_Connection]
    _logs: list[IO[str]]
    _flusher: asyncio.TimerHandle | None = None
    closed: bool = False

    def stats(self) -> dict[str, dict[str, Any]]:
        """
        Every node's ``/__stats`` figures, by node name.
        """
        return {name: station.stats() for name, station in self.stations.items()}

    def flush(self) -> None:
        """
        Write the buffered access-log lines to disk now.
        """
        for log in self._logs:
            if not log.closed:
                log.flush()

    def _flush_periodically(self) -> None:
        self.flush()
        if not self.closed:
            loop = asyncio.get_running_loop()
            self._flusher = loop.call_later(FLUSH_INTERVAL_S, self._flush_periodically)

    async def close(self, drain_s: float = DRAIN_S) -> None:
        """
        Stop accepting, let the requests in service and queued finish (``drain_s`` at most),
        close every connection and flush and close the logs.
        """
        if self.closed:
            return
        for server in self._servers:
            server.close()
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and any(s.busy for s in self.stations.values()):
            await asyncio.sleep(0.01)
        self.closed = True
        if self._flusher is not None:
            self._flusher.cancel()
        for station in self.stations.values():
            station.cancel()
        for conn in list(self._connections):
            conn.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self.flush()
        for log in self._logs:
            log.close()


async def start_pool(pool: Pool, log_dir: str | Path, *, backlog: int = 4096) -> RunningPool:
    """
    Serve every node of ``pool`` in the running event loop (one listening socket per node).

    Args:
        pool: the pool (its addresses are loopback: checked again here).
        log_dir: the directory for the access logs (created if missing; logs are appended to).
        backlog: the listen backlog of each socket.

    Returns:
        The running pool; call :meth:`RunningPool.close` to stop it.
    """
    loop = asyncio.get_running_loop()
    directory = Path(log_dir)
    directory.mkdir(parents=True, exist_ok=True)
    stations: dict[str, NodeStation] = {}
    logs: list[IO[str]] = []
    servers: list[asyncio.Server] = []
    addresses: dict[str, tuple[str, int]] = {}
    connections: set[_Connection] = set()
    try:
        for index, node in enumerate(pool.nodes):
            host = require_loopback(node.address)
            log: IO[str] = open(  # noqa: SIM115 (closed by RunningPool.close)
                log_path(directory, node.name), "a", encoding="ascii", buffering=1 << 16
            )
            logs.append(log)
            station = NodeStation(
                name=node.name,
                slots=node.slots,
                service_ms=node.service_ms,
                times=ServiceTimes(
                    pool.service_of(node.name),
                    node.service_ms / 1000.0,
                    cv=pool.cv_of(node.name),
                    seed=[pool.seed, index],
                ),
                log=log,
            )
            stations[node.name] = station
            server = await loop.create_server(
                _factory(station, connections),
                host,
                node.port,
                reuse_address=True,
                backlog=backlog,
            )
            servers.append(server)
            sockname = server.sockets[0].getsockname()
            addresses[node.name] = (str(sockname[0]), int(sockname[1]))
    except BaseException:
        for server in servers:
            server.close()
        for opened in logs:
            opened.close()
        raise
    running = RunningPool(pool, stations, addresses, directory, servers, connections, logs)
    running._flush_periodically()
    return running


def _factory(station: NodeStation, registry: set[_Connection]) -> Callable[[], _Connection]:
    return lambda: _Connection(station, registry)


@contextlib.asynccontextmanager
async def serve_pool(pool: Pool, log_dir: str | Path) -> AsyncIterator[RunningPool]:
    """
    ``async with serve_pool(pool, log_dir) as running:`` — :func:`start_pool`, closed at exit.
    """
    running = await start_pool(pool, log_dir)
    try:
        yield running
    finally:
        await running.close()


def fetch_stats(address: tuple[str, int], *, timeout_s: float = 2.0) -> dict[str, Any]:
    """
    ``GET /__stats`` of the node at ``address`` (loopback only), as a dict.
    """
    host = require_loopback(address[0])
    connection = http.client.HTTPConnection(host, int(address[1]), timeout=timeout_s)
    try:
        connection.request("GET", STATS_PATH, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{host}:{address[1]}{STATS_PATH} answered {response.status}")
    finally:
        connection.close()
    stats: dict[str, Any] = json.loads(body)
    return stats


async def fetch_stats_async(address: tuple[str, int], *, timeout_s: float = 2.0) -> dict[str, Any]:
    """
    :func:`fetch_stats` without blocking the running event loop.
    """
    host = require_loopback(address[0])

    async def fetch() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(host, int(address[1]))
        try:
            writer.write(
                f"GET {STATS_PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            data = await reader.read()
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"{host}:{address[1]}{STATS_PATH} answered {head[:40]!r}")
        stats: dict[str, Any] = json.loads(body)
        return stats

    return await asyncio.wait_for(fetch(), timeout_s)


@dataclass
class NodeProcess:
    """
    A ``python -m bench.lab.node`` process this program started.

    Attributes:
        process: the process.
        pid_file: its PID file (written once its sockets are bound).
        addresses: each node's bound ``(address, port)``.
    """

    process: subprocess.Popen[str]
    pid_file: Path
    addresses: dict[str, tuple[str, int]]

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_s(self) -> float:
        """
        The process's CPU time so far (user + system), from ``/proc/PID/stat``.
        """
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout_s: float = 10.0) -> str:
        """
        SIGTERM the process by its PID, wait for it (SIGKILL after ``timeout_s``); its output.
        """
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            out, _ = self.process.communicate()
        return out


def start_node_process(
    pool_file: Path,
    log_dir: Path,
    *,
    duration_s: float,
    uvloop: bool = True,
    stderr: IO[str] | None = None,
) -> NodeProcess:
    """
    Start ``python -m bench.lab.node`` on ``pool_file`` and wait until it is serving.

    Args:
        pool_file: the pool YAML.
        log_dir: the access logs' directory (the PID file goes there too, as ``node.pid``).
        duration_s: the process's own deadline (it stops by itself then).
        uvloop: let it use uvloop when installed.
        stderr: where its standard error goes (default: inherited).

    Returns:
        The running process, with the addresses it bound.

    Raises:
        RuntimeError: when it exits or stays silent for 20 s instead.
    """
    pid_file = log_dir / "node.pid"
    command = [
        sys.executable,
        "-m",
        "bench.lab.node",
        "--pool",
        str(pool_file),
        "--log-dir",
        str(log_dir),
        "--pid-file",
        str(pid_file),
        "--duration-s",
        str(duration_s),
    ]
    if not uvloop:
        command.append("--no-uvloop")
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=Path(__file__).resolve().parents[2],  # the repository, for -m bench.lab.node
    )
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    line = ""
    while not line and process.poll() is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, _, _ = select.select([process.stdout], [], [], min(remaining, 0.5))
        if readable:
            line = process.stdout.readline()  # the ready line, once every socket is bound
            if not line:
                break
    if not line.startswith("{"):
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        process.wait(10)
        raise RuntimeError(f"the node process did not start (exit {process.returncode})")
    ready: dict[str, Any] = json.loads(line)
    addresses = {
        name: (end.rpartition(":")[0], int(end.rpartition(":")[2]))
        for name, end in ready["nodes"].items()
    }
    return NodeProcess(process, pid_file, addresses)


def _write_pid_file(path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{os.getpid()}\n", encoding="ascii")
    temporary.replace(path)


async def _run(pool: Pool, log_dir: Path, pid_file: Path | None, duration_s: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = await start_pool(pool, log_dir)
    try:
        if pid_file is not None:
            _write_pid_file(pid_file)
        ready = {
            "pid": os.getpid(),
            "pool": pool.name,
            "loop": type(loop).__module__.split(".")[0],
            "nodes": {name: f"{host}:{port}" for name, (host, port) in running.addresses.items()},
        }
        print(json.dumps(ready), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration_s)
    finally:
        await running.close()
        if pid_file is not None:
            with contextlib.suppress(FileNotFoundError):
                pid_file.unlink()
    print(json.dumps({"stopped": True, "stats": running.stats()}), flush=True)


def main(argv: list[str] | None = None) -> int:
    """
    The ``python -m bench.lab.node`` command; returns the exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.lab.node",
        description="Serve every node of a lab pool (loopback only) until SIGTERM or a deadline.",
    )
    parser.add_argument("--pool", required=True, type=Path, help="the pool YAML file")
    parser.add_argument("--log-dir", required=True, type=Path, help="where the access logs go")
    parser.add_argument("--pid-file", type=Path, help="written once every socket is bound")
    parser.add_argument(
        "--duration-s",
        type=float,
        default=DEFAULT_DURATION_S,
        help=f"stop after this many seconds (default {DEFAULT_DURATION_S:g}, at most a day)",
    )
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop")
    args = parser.parse_args(argv)
    if not 0 < args.duration_s <= MAX_DURATION_S:
        parser.error(f"--duration-s must be in (0, {MAX_DURATION_S:g}]")
    try:
        pool = load_pool(args.pool)
    except PoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=loop_factory(uvloop=not args.no_uvloop)) as runner:
        try:
            runner.run(_run(pool, args.log_dir, args.pid_file, args.duration_s))
        except OSError as exc:  # a port in use, an address not on this machine
            print(f"error: cannot serve pool {pool.name!r}: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
