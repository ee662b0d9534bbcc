"""
An open-loop load generator: Poisson arrivals at a fixed rate for a fixed time.

    python -m bench.lab.loadgen --target 127.0.0.2:8080 --rate 500 --duration 20 [--json]
                                [--seed 0] [--timeout 5] [--max-inflight 4096] [--warmup 2]

Open loop: the arrival times are drawn before the run (a seeded exponential gap, mean
``1/rate``) and each request is sent at its intended time whatever the server does — on an idle
pooled keep-alive connection, or on a new one when none is idle, so concurrency is not capped by
the pool.  A request's latency is counted from its *intended* send time to the end of its
response, so a slow server cannot slow the clock (no coordinated omission): a late send, a
connection set-up, a queue in the server all count.

Every request ends in one of:

* ``ok`` — a response with a status below 500 (capplan's own rule), its latency kept;
* an HTTP error — status 500 or more (a balancer's 502/503), counted by status;
* ``timeout`` — no complete response within ``timeout_s`` of its intended send time (its
  connection is closed); requests still unfinished at the end of the run are timeouts too;
* ``conn_error`` — the connection was refused, reset or closed before the response;
* ``generator_overflow`` — ``max_inflight`` requests were already unfinished at its send time,
  so it was not sent (the generator's bound; counted as a failure of the point).

Requests intended in the first ``warmup_s`` are sent but left out of every figure.  The ``X-Node``
header of each response says which node served it.

The scheduler sleeps to the next intended time (at least one 1 ms timer tick, so it never
spins) and then sends everything due, so a send is typically ~0.5 ms late on a quiet machine.
The generator measures that itself: how late each send was against its intended time
(``lateness_ms``), and the achieved send rate against the realised Poisson schedule.  A point
where the lateness p99 exceeds 5 ms or the send rate falls below 98% of the schedule's is not a
valid measurement of the server (``held_rate`` is False; :meth:`LoadResult.require_held` raises
and the CLI exits 3): the lab refuses it.

Only loopback targets (127.0.0.0/8) are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt

from bench.lab._loop import loop_factory
from bench.lab.pool import require_loopback

__all__ = [
    "CONN_ERROR",
    "OVERFLOW",
    "PERCENTILES",
    "TIMEOUT",
    "LoadResult",
    "RateNotHeldError",
    "main",
    "parse_target",
    "percentiles_with_failures",
    "run_load",
    "run_load_async",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PENDING: Final = 0
TIMEOUT: Final = -1
OVERFLOW: Final = -2
CONN_ERROR: Final = -3
PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0, 99.9)
MAX_LATENESS_P99_MS: Final = 5.0
MIN_SEND_RATE_FRACTION: Final = 0.98
MAX_RATE_RPS: Final = 20_000.0
MAX_DURATION_S: Final = 600.0
MAX_REQUESTS: Final = 2_000_000
LEAD_S: Final = 0.05  # between drawing the schedule and its first intended send
SWEEP_S: Final = 0.005  # how often unfinished requests are checked against their deadline
MAX_SLEEP_S: Final = 0.02  # the scheduler wakes at least this often (to sweep)
MIN_SLEEP_S: Final = 0.001  # and sleeps at least one timer tick when nothing is due
USER_AGENT: Final = "capplan-lab-loadgen"


class RateNotHeldError(RuntimeError):
    """
    The generator could not hold its rate: the point does not measure the server.
    """


def parse_target(text: str) -> tuple[str, int]:
    """
    ``HOST:PORT`` as ``(address, port)``, refusing any host outside 127.0.0.0/8.
    """
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {text!r} is not HOST:PORT")
    return require_loopback(host), int(port)


def percentiles_with_failures(
    ok_ms: FloatArray, failures: int, qs: Sequence[float] = PERCENTILES
) -> dict[float, float]:
    """
    Percentiles of the latencies with every failure counted as an infinite latency.

    Linear interpolation between order statistics (numpy's default), on the ``ok_ms`` values
    sorted with ``failures`` infinities after them: a percentile that reaches into the failures
    is ``inf``.
    """
    values = np.sort(np.asarray(ok_ms, dtype=np.float64))
    total = len(values) + failures
    out: dict[float, float] = {}
    for q in qs:
        if total == 0:
            out[q] = math.nan
            continue
        h = q / 100.0 * (total - 1)
        lo = math.floor(h)
        frac = h - lo
        if lo >= len(values) or (frac > 0 and lo + 1 >= len(values)):
            out[q] = math.inf
        elif frac == 0:
            out[q] = float(values[lo])
        else:
            out[q] = float(values[lo] + (values[lo + 1] - values[lo]) * frac)
    return out


def _percentiles(values: FloatArray, qs: Sequence[float] = PERCENTILES) -> dict[float, float]:
    if len(values) == 0:
        return {q: math.nan for q in qs}
    return {q: float(v) for q, v in zip(qs, np.percentile(values, list(qs)), strict=True)}


def _label(q: float) -> str:
    return f"p{q:g}"


@dataclass(frozen=True, eq=False)
class LoadResult:
    """
    What one open-loop run measured (after the warm-up).

    Attributes:
        target: the ``(address, port)`` loaded.
        rate_rps: the target arrival rate.
        duration_s: the run's length, warm-up included.
        warmup_s: the first seconds, left out of every figure.
        seed: the arrival schedule's seed.
        timeout_s: a request unfinished this long after its intended send time failed.
        max_inflight: the bound on unfinished requests.
        scheduled: requests intended after the warm-up (every figure is about these).
        sent: of those, the requests actually sent (all but the overflows).
        ok: responses with a status below 500.
        errors: responses with a status of 500 or more, by status.
        statuses: every response by status (ok ones included).
        timeouts: requests without a complete response within ``timeout_s``.
        conn_errors: requests whose connection was refused, reset or closed early.
        overflow: requests not sent because ``max_inflight`` were unfinished
            ("generator_overflow").
        latencies_ms: the latencies of the ok requests (from intended send time), in send order.
        latency_node: for each of ``latencies_ms``, the index in ``nodes`` of the node that
            served it (-1: no ``X-Node`` header).
        nodes: node names in order of first appearance.
        per_node: ok responses by node name.
        percentiles: ``{"p50": …, "p99.9": …}`` of ``latencies_ms`` (ms).
        percentiles_incl_failures: the same with every failure as an infinite latency.
        mean_ms: the mean of ``latencies_ms``.
        scheduled_rate_rps: the realised Poisson schedule's rate after the warm-up.
        send_rate_rps: the rate the generator actually sent at (overflows count as sent: the
            generator kept its clock and chose not to send them).
        ok_rate_rps: ok responses per second after the warm-up.
        lateness_ms: ``{"p50", "p99", "max"}`` of actual minus intended send time.
        cpu_s: the generator's CPU time (user + system) over the whole run.
        wall_s: the run's wall time, first send to last completion.
        held_rate: whether the generator held its rate (lateness p99 ≤ 5 ms and send rate ≥ 98%
            of the schedule's); a point where it did not is refused.
        schedule_s: every request's intended send time, seconds from the start (warm-up
            included), in send order.
        request_sent_s: every request's actual send time, seconds from the start (its
            lateness is ``request_sent_s - schedule_s``), aligned with ``schedule_s``.
        request_latency_ms: every request's latency from its intended send time to its
            response, whatever its status (a 5xx too: how fast a limit refuses); nan when no
            response came (timeout, connection error, overflow); aligned with ``schedule_s``.
        request_status: every request's HTTP status, or ``TIMEOUT``, ``OVERFLOW``,
            ``CONN_ERROR`` (negative), aligned with ``schedule_s``.
        refusal: why the point is refused (None when ``held_rate``).
    """

    target: tuple[str, int]
    rate_rps: float
    duration_s: float
    warmup_s: float
    seed: int
    timeout_s: float
    max_inflight: int
    scheduled: int
    sent: int
    ok: int
    errors: dict[int, int]
    statuses: dict[int, int]
    timeouts: int
    conn_errors: int
    overflow: int
    latencies_ms: FloatArray
    latency_node: IntArray
    nodes: list[str]
    per_node: dict[str, int]
    percentiles: dict[str, float]
    percentiles_incl_failures: dict[str, float]
    mean_ms: float
    scheduled_rate_rps: float
    send_rate_rps: float
    ok_rate_rps: float
    lateness_ms: dict[str, float]
    cpu_s: float
    wall_s: float
    held_rate: bool
    schedule_s: FloatArray
    request_sent_s: FloatArray
    request_latency_ms: FloatArray
    request_status: IntArray
    refusal: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        """
        Every scheduled request that did not end ok.
        """
        return self.scheduled - self.ok

    @property
    def error_rate(self) -> float:
        """
        Failures over scheduled requests.
        """
        return self.failures / self.scheduled if self.scheduled else math.nan

    @property
    def cpu_percent(self) -> float:
        """
        The generator's CPU use over the run, in percent of one core.
        """
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else math.nan

    def node_latencies(self, name: str) -> FloatArray:
        """
        The ok latencies (ms) of the requests node ``name`` served.
        """
        if name not in self.nodes:
            return np.empty(0)
        mask = self.latency_node == self.nodes.index(name)
        return np.asarray(self.latencies_ms[mask], dtype=np.float64)

    def require_held(self) -> LoadResult:
        """
        This result, when the generator held its rate.

        Raises:
            RateNotHeldError: when it did not (the point is refused).
        """
        if not self.held_rate:
            raise RateNotHeldError(self.refusal or "the generator did not hold its rate")
        return self

    def to_dict(self) -> dict[str, Any]:
        """
        The summary as JSON-ready values (no per-request arrays).
        """

        def number(value: float) -> float | str | None:
            if math.isnan(value):
                return None
            return value if math.isfinite(value) else "inf"

        return {
            "target": f"{self.target[0]}:{self.target[1]}",
            "rate_rps": self.rate_rps,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "seed": self.seed,
            "timeout_s": self.timeout_s,
            "max_inflight": self.max_inflight,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "ok": self.ok,
            "failures": self.failures,
            "errors": {str(k): v for k, v in sorted(self.errors.items())},
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "timeouts": self.timeouts,
            "conn_errors": self.conn_errors,
            "generator_overflow": self.overflow,
            "per_node": dict(self.per_node),
            "mean_ms": number(self.mean_ms),
            "percentiles_ms": {k: number(v) for k, v in self.percentiles.items()},
            "percentiles_incl_failures_ms": {
                k: number(v) for k, v in self.percentiles_incl_failures.items()
            },
            "scheduled_rate_rps": self.scheduled_rate_rps,
            "send_rate_rps": self.send_rate_rps,
            "ok_rate_rps": self.ok_rate_rps,
            "lateness_ms": {k: number(v) for k, v in self.lateness_ms.items()},
            "cpu_s": self.cpu_s,
            "cpu_percent": number(self.cpu_percent),
            "wall_s": self.wall_s,
            "held_rate": self.held_rate,
            "refusal": self.refusal,
            **self.extra,
        }


class _Run:
    """
    The state of one run: the schedule, what happened to each request, the connection pool.
    """

    def __init__(
        self,
        target: tuple[str, int],
        offsets: FloatArray,
        *,
        timeout_s: float,
        max_inflight: int,
        path: str,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.target = target
        self.timeout_s = timeout_s
        self.max_inflight = max_inflight
        n = len(offsets)
        self.offsets = offsets
        self.intended = np.empty(n)
        self.sent_at = np.full(n, np.nan)
        self.done_at = np.full(n, np.nan)
        self.status = np.zeros(n, dtype=np.int64)
        self.node = np.full(n, -1, dtype=np.int64)
        self.node_index: dict[bytes, int] = {}
        self.node_names: list[str] = []
        self.inflight: dict[int, _Client | None] = {}  # in send order: oldest deadline first
        self.idle: list[_Client] = []
        self.clients: set[_Client] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        host, port = target
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\n\r\n"
        ).encode("ascii")

    # ------------------------------------------------------------------ sending

    def dispatch(self, i: int, now: float) -> None:
        """
        Send request ``i`` now: on an idle connection, else on a new one.
        """
        self.sent_at[i] = now
        if len(self.inflight) >= self.max_inflight:
            self.status[i] = OVERFLOW
            self.done_at[i] = now
            return
        while self.idle:
            client = self.idle.pop()
            if client.usable:
                self.inflight[i] = client
                client.send(i)
                return
        self.inflight[i] = None
        task = self.loop.create_task(self._connect_and_send(i))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect_and_send(self, i: int) -> None:
        try:
            _, protocol = await self.loop.create_connection(lambda: _Client(self), *self.target)
        except OSError:
            self.finish(i, CONN_ERROR, None)
            return
        client = protocol
        if self.status[i] != PENDING:  # timed out while connecting: keep the connection
            self.idle.append(client)
            return
        self.inflight[i] = client
        client.send(i)

    # ------------------------------------------------------------------ endings

    def finish(self, i: int, status: int, node: bytes | None) -> None:
        """
        Request ``i`` ended with ``status`` (an HTTP status or a failure code).
        """
        if self.status[i] != PENDING:
            return
        now = time.perf_counter()
        self.done_at[i] = now
        if now > self.intended[i] + self.timeout_s:  # too late, whether swept yet or not
            status, node = TIMEOUT, None
        self.status[i] = status
        self.inflight.pop(i, None)
        if node is not None:
            index = self.node_index.get(node)
            if index is None:
                index = self.node_index[node] = len(self.node_names)
                self.node_names.append(node.decode("ascii", errors="replace"))
            self.node[i] = index

    def sweep(self, now: float) -> None:
        """
        Fail the unfinished requests past their deadline (oldest first), closing their
        connections.
        """
        while self.inflight:
            i = next(iter(self.inflight))
            if now < self.intended[i] + self.timeout_s:
                return
            client = self.inflight.pop(i)
            self.status[i] = TIMEOUT
            self.done_at[i] = now
            if client is not None:
                client.abandon()

    def close(self) -> None:
        """
        Fail whatever is unfinished as a timeout and close every connection.
        """
        now = time.perf_counter()
        for i in list(self.inflight):
            self.status[i] = TIMEOUT
            self.done_at[i] = now
        self.inflight.clear()
        for task in list(self.tasks):
            task.cancel()
        for client in list(self.clients):
            client.abandon()


_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _UNTIL_CLOSE = range(6)


class _Client(asyncio.Protocol):
    """
    One keep-alive connection of the pool: one request at a time, its response parsed.
    """

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.current = -1
        self.buffer = bytearray()
        self.state = _HEAD
        self.remaining = 0
        self.status = 0
        self.node: bytes | None = None
        self.keep_alive = True
        self.usable = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.usable = True
        self.run.clients.add(self)

    def send(self, i: int) -> None:
        assert self.transport is not None
        self.current = i
        self.state = _HEAD
        self.transport.write(self.run.request)

    def abandon(self) -> None:
        """
        Drop this connection (its request, if any, has already been settled).
        """
        self.usable = False
        self.current = -1
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self.run.clients.discard(self)
        i, self.current = self.current, -1
        if i >= 0:
            if self.state == _UNTIL_CLOSE:
                self.run.finish(i, self.status, self.node)
            else:
                self.run.finish(i, CONN_ERROR, None)

    def data_received(self, data: bytes) -> None:
        if self.current < 0:  # nothing asked: a stray byte or a late answer
            self.abandon()
            return
        self.buffer += data
        while self.current >= 0 and self._step():
            pass

    def _done(self) -> None:
        i, self.current = self.current, -1
        self.state = _HEAD
        run = self.run
        run.finish(i, self.status, self.node)
        if self.keep_alive and self.usable and not self.buffer:
            run.idle.append(self)
        else:
            self.abandon()

    def _step(self) -> bool:
        """
        Parse what the buffer allows; whether to go on.
        """
        buffer = self.buffer
        if self.state == _HEAD:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            lines = bytes(buffer[:end]).split(b"\r\n")
            del buffer[: end + 4]
            parts = lines[0].split(b" ", 2)
            try:
                self.status = int(parts[1])
            except (IndexError, ValueError):
                self.run.finish(self.current, CONN_ERROR, None)
                self.abandon()
                return False
            length = -1
            chunked = False
            self.keep_alive = not parts[0].endswith(b"/1.0")
            self.node = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                key = name.strip().lower()
                if key == b"content-length":
                    length = int(value)
                elif key == b"x-node":
                    self.node = value.strip()
                elif key == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif key == b"connection":
                    token = value.strip().lower()
                    if token == b"close":
                        self.keep_alive = False
                    elif token == b"keep-alive":
                        self.keep_alive = True
            if 100 <= self.status < 200:
                return True  # an interim response: the real one follows
            if chunked:
                self.state = _CHUNK_SIZE
            elif length >= 0:
                self.state, self.remaining = _BODY, length
            else:
                self.state, self.keep_alive = _UNTIL_CLOSE, False
            return True
        if self.state == _BODY:
            if len(buffer) < self.remaining:
                self.remaining -= len(buffer)
                buffer.clear()
                return False
            del buffer[: self.remaining]
            self._done()
            return True
        if self.state == _CHUNK_SIZE:
            end = buffer.find(b"\r\n")
            if end < 0:
                return False
            size = int(bytes(buffer[:end]).split(b";")[0], 16)
            del buffer[: end + 2]
            self.state, self.remaining = (_TRAILER, 0) if size == 0 else (_CHUNK_DATA, size + 2)
            return True
        if self.state == _CHUNK_DATA:
            if len(buffer) < self.remaining:
                self.remaining -= len(buffer)
                buffer.clear()
                return False
            del buffer[: self.remaining]
            self.state = _CHUNK_SIZE
            return True
        if self.state == _TRAILER:
            end = buffer.find(b"\r\n")
            if end < 0:
                return False
            del buffer[: end + 2]
            if end == 0:
                self._done()
            return True
        buffer.clear()  # _UNTIL_CLOSE: the body ends with the connection
        return False


async def run_load_async(
    target: tuple[str, int],
    rate_rps: float,
    duration_s: float,
    seed: int = 0,
    timeout_s: float = 5.0,
    max_inflight: int = 4096,
    *,
    warmup_s: float = 2.0,
    path: str = "/",
    schedule: Sequence[tuple[float, float]] | None = None,
    start_at: float | None = None,
) -> LoadResult:
    """
    :func:`run_load` in the running event loop.

    ``schedule`` — ``(seconds, rate)`` steps — replaces the one rate by a piecewise-constant
    one (Poisson within each step; ``rate_rps`` and ``duration_s`` are then its mean rate and
    total length); ``start_at`` (``time.time()``) sets the wall-clock moment of the first
    step's start, so steps can line up with a collector's windows.
    """
    host, port = require_loopback(target[0]), int(target[1])
    _check(rate_rps, duration_s, timeout_s, max_inflight, warmup_s)
    rng = np.random.default_rng(seed)
    steps = list(schedule) if schedule is not None else [(duration_s, rate_rps)]
    pieces, begin = [], 0.0
    for length, rate in steps:
        expected = rate * length
        gaps = rng.exponential(1.0 / rate, int(expected + 10.0 * math.sqrt(expected) + 100))
        times = np.cumsum(gaps)
        pieces.append(begin + times[times < length])
        begin += length
    offsets = np.concatenate(pieces)
    run = _Run((host, port), offsets, timeout_s=timeout_s, max_inflight=max_inflight, path=path)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no collector pauses in the clock
    cpu0 = time.process_time()
    lead = LEAD_S if start_at is None else max(LEAD_S, start_at - time.time())
    t0 = time.perf_counter() + lead
    run.intended = t0 + offsets
    intended = run.intended.tolist()
    n = len(intended)
    try:
        i = 0
        next_sweep = t0
        while i < n:
            now = time.perf_counter()
            while i < n and intended[i] <= now:
                run.dispatch(i, now)
                i += 1
            if now >= next_sweep:
                run.sweep(now)
                next_sweep = now + SWEEP_S
            if i < n:
                delay = intended[i] - time.perf_counter()
                # Timers tick in whole milliseconds (uvloop rounds a shorter delay to 0, which
                # would spin): sleep at least one tick, then send everything due.
                await asyncio.sleep(min(max(delay, MIN_SLEEP_S), MAX_SLEEP_S) if delay > 0 else 0)
        end = (intended[-1] if n else t0) + timeout_s
        while run.inflight and time.perf_counter() < end:
            await asyncio.sleep(SWEEP_S)
            run.sweep(time.perf_counter())
    finally:
        run.close()
        if gc_was_enabled:
            gc.enable()
    await asyncio.sleep(0)  # let the transports close
    cpu_s = time.process_time() - cpu0
    wall_s = float(np.nanmax(run.done_at)) - t0 if n else 0.0
    return _result(run, rate_rps, duration_s, warmup_s, seed, t0, cpu_s, wall_s)


def _check(
    rate_rps: float, duration_s: float, timeout_s: float, max_inflight: int, warmup_s: float
) -> None:
    if not 0 < rate_rps <= MAX_RATE_RPS:
        raise ValueError(f"rate_rps must be in (0, {MAX_RATE_RPS:g}]")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration_s must be in (0, {MAX_DURATION_S:g}]")
    if rate_rps * duration_s > MAX_REQUESTS:
        raise ValueError(f"rate_rps · duration_s must be at most {MAX_REQUESTS}")
    if not 0 <= warmup_s < duration_s:
        raise ValueError("warmup_s must be in [0, duration_s)")
    if not 0 < timeout_s <= 120:
        raise ValueError("timeout_s must be in (0, 120]")
    if not 1 <= max_inflight <= 16_384:
        raise ValueError("max_inflight must be in [1, 16384]")


def _result(
    run: _Run,
    rate_rps: float,
    duration_s: float,
    warmup_s: float,
    seed: int,
    t0: float,
    cpu_s: float,
    wall_s: float,
) -> LoadResult:
    measured = run.offsets >= warmup_s
    status = run.status[measured]
    sent_at = run.sent_at[measured]
    intended = run.intended[measured]
    latency = (run.done_at[measured] - intended) * 1000.0
    node = run.node[measured]
    ok_mask = status >= 1
    ok_mask &= status < 500
    codes, counts = np.unique(status[status > 0], return_counts=True)
    statuses = {int(c): int(k) for c, k in zip(codes, counts, strict=True)}
    errors = {c: k for c, k in statuses.items() if c >= 500}
    latencies = latency[ok_mask]
    ok_node = node[ok_mask]
    scheduled = int(measured.sum())
    ok = int(ok_mask.sum())
    window_start = t0 + warmup_s
    scheduled_rate = scheduled / (duration_s - warmup_s)
    if scheduled:
        span_intended = float(intended[-1]) - window_start
        span_sent = float(np.nanmax(sent_at)) - window_start
        send_rate = scheduled_rate * (span_intended / span_sent) if span_sent > 0 else math.nan
        lateness = (sent_at - intended) * 1000.0
        late = {
            "p50": float(np.percentile(lateness, 50)),
            "p99": float(np.percentile(lateness, 99)),
            "max": float(lateness.max()),
        }
    else:
        send_rate = math.nan
        late = {"p50": math.nan, "p99": math.nan, "max": math.nan}
    refusal = None
    if not scheduled:
        refusal = "no request was scheduled after the warm-up"
    elif late["p99"] > MAX_LATENESS_P99_MS:
        refusal = (
            f"send lateness p99 {late['p99']:.2f} ms exceeds {MAX_LATENESS_P99_MS:g} ms: "
            "the generator could not hold its rate"
        )
    elif not send_rate >= MIN_SEND_RATE_FRACTION * scheduled_rate:
        refusal = (
            f"send rate {send_rate:.1f} rps is below {MIN_SEND_RATE_FRACTION:.0%} of the "
            f"schedule's {scheduled_rate:.1f} rps: the generator could not hold its rate"
        )
    per_node: dict[str, int] = {}
    for index, name in enumerate(run.node_names):
        count = int((ok_node == index).sum())
        if count:
            per_node[name] = count
    failures = scheduled - ok
    return LoadResult(
        target=run.target,
        rate_rps=rate_rps,
        duration_s=duration_s,
        warmup_s=warmup_s,
        seed=seed,
        timeout_s=run.timeout_s,
        max_inflight=run.max_inflight,
        scheduled=scheduled,
        sent=int((status != OVERFLOW).sum()),
        ok=ok,
        errors=errors,
        statuses=statuses,
        timeouts=int((status == TIMEOUT).sum()),
        conn_errors=int((status == CONN_ERROR).sum()),
        overflow=int((status == OVERFLOW).sum()),
        latencies_ms=latencies,
        latency_node=ok_node,
        nodes=list(run.node_names),
        per_node=per_node,
        percentiles={_label(q): v for q, v in _percentiles(latencies).items()},
        percentiles_incl_failures={
            _label(q): v for q, v in percentiles_with_failures(latencies, failures).items()
        },
        mean_ms=float(latencies.mean()) if ok else math.nan,
        scheduled_rate_rps=scheduled_rate,
        send_rate_rps=send_rate,
        ok_rate_rps=ok / (duration_s - warmup_s),
        lateness_ms=late,
        cpu_s=cpu_s,
        wall_s=wall_s,
        held_rate=refusal is None,
        schedule_s=run.offsets,
        request_sent_s=run.sent_at - t0,
        request_latency_ms=np.where(run.status >= 1, (run.done_at - run.intended) * 1000.0, np.nan),
        request_status=run.status,
        refusal=refusal,
    )


def run_load(
    target: tuple[str, int],
    rate_rps: float,
    duration_s: float,
    seed: int = 0,
    timeout_s: float = 5.0,
    max_inflight: int = 4096,
    *,
    warmup_s: float = 2.0,
    path: str = "/",
    uvloop: bool = True,
) -> LoadResult:
    """
    Load ``target`` open-loop with Poisson arrivals and measure it.

    Args:
        target: ``(address, port)``; the address must be in 127.0.0.0/8.
        rate_rps: the arrival rate (requests per second, at most 20,000).
        duration_s: how long to send for (at most 600 s; ``rate · duration`` ≤ 2,000,000).
        seed: the seed of the arrival schedule.
        timeout_s: a request without a complete response this long after its intended send
            time is a timeout.
        max_inflight: at most this many unfinished requests; a request due when the bound is
            reached is not sent and counts as "generator_overflow".
        warmup_s: requests intended in the first ``warmup_s`` are left out of the figures.
        path: the request path.
        uvloop: run on uvloop when it is installed.

    Returns:
        The measurements; check ``held_rate`` (or call ``require_held()``) before using them.
    """
    with asyncio.Runner(loop_factory=loop_factory(uvloop=uvloop)) as runner:
        return runner.run(
            run_load_async(
                target,
                rate_rps,
                duration_s,
                seed,
                timeout_s,
                max_inflight,
                warmup_s=warmup_s,
                path=path,
            )
        )


def _text(result: LoadResult) -> str:
    def ms(value: float) -> str:
        return f"{value:.2f}" if math.isfinite(value) else str(value)

    lines = [
        f"target {result.target[0]}:{result.target[1]}  rate {result.rate_rps:g} rps  "
        f"duration {result.duration_s:g} s (warm-up {result.warmup_s:g} s)",
        f"scheduled {result.scheduled}  ok {result.ok}  timeouts {result.timeouts}  "
        f"errors {result.errors or 0}  conn errors {result.conn_errors}  "
        f"overflow {result.overflow}",
        "latency ms (ok):         "
        + "  ".join(f"{k} {ms(v)}" for k, v in result.percentiles.items())
        + f"  mean {ms(result.mean_ms)}",
        "latency ms (incl fails): "
        + "  ".join(f"{k} {ms(v)}" for k, v in result.percentiles_incl_failures.items()),
        f"rates rps: scheduled {result.scheduled_rate_rps:.1f}  sent {result.send_rate_rps:.1f}  "
        f"ok {result.ok_rate_rps:.1f}",
        "lateness ms: " + "  ".join(f"{k} {ms(v)}" for k, v in result.lateness_ms.items()),
        f"per node: {result.per_node}",
        f"generator CPU {result.cpu_s:.2f} s ({result.cpu_percent:.0f}% of a core)",
        "held rate: yes" if result.held_rate else f"held rate: NO — {result.refusal}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """
    The ``python -m bench.lab.loadgen`` command; exit 0, or 3 when the rate was not held.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.lab.loadgen",
        description="Open-loop Poisson load on one loopback HOST:PORT.",
    )
    parser.add_argument("--target", required=True, help="HOST:PORT, HOST in 127.0.0.0/8")
    parser.add_argument("--rate", type=float, required=True, help="arrivals per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds (≤ 600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--max-inflight", type=int, default=4096)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds left out (default 2)")
    parser.add_argument("--path", default="/")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop")
    args = parser.parse_args(argv)
    try:
        target = parse_target(args.target)
        result = run_load(
            target,
            args.rate,
            args.duration,
            args.seed,
            args.timeout,
            args.max_inflight,
            warmup_s=args.warmup,
            path=args.path,
            uvloop=not args.no_uvloop,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=2) if args.json else _text(result))
    return 0 if result.held_rate else 3


if __name__ == "__main__":
    sys.exit(main())
