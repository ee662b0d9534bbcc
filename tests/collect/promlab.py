"""
A real Prometheus on loopback for the Prometheus collection tests, with known data.

``Fixture`` generates six hours of 15 s samples for a few nodes — request counters by status
code, a latency histogram, node_exporter's CPU counters — as OpenMetrics text, and keeps every
counter's value at every 15 s step (also where a node has a gap in its samples) so the windows
Prometheus should give are computable.  ``PrometheusLab`` backfills it with
``promtool tsdb create-blocks-from openmetrics``, starts Debian's ``prometheus`` on 127.0.0.1
with no scrape target, and stops it by its PID.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from capplan.samples import Window
from tests.collect.sshd import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
APT_LINE = "apt-get install -y prometheus  (tests/run.sh does it when missing)"

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z: a multiple of every window the tests use
HOURS = 6
SCRAPE = 15
STEPS = HOURS * 3600 // SCRAPE  # samples at T0 + 15 j for j = 0..STEPS
SEGMENT = 300  # rates are constant within each 5-minute segment
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)  # seconds; then +Inf
OVERFLOW_S = 2.0  # the latency of a request in the +Inf bucket
GAP = (T0 + 3 * 3600, T0 + 3 * 3600 + 1800)  # web-2 has no sample in [GAP[0], GAP[1])
#: An instance label value that would add PromQL of its own if pasted into a query unquoted.
EVIL_INSTANCE = 'web-1:8080"} or vector(1) or up{a="\\\n\té'


def _bucket_counts(node: str, k: int) -> list[int]:
    """
    Requests per 15 s in segment ``k`` by bucket: the 8 finite buckets, then +Inf only.
    """
    if node == "web-1":
        counts = [2, 6, 10 + k % 4, 6 + k % 3, 2, 1, 0, 0, 1 if k % 10 == 7 else 0]
    elif node == "web-2":
        counts = [0, 1, 3, 6, 10 + k % 5, 8, 3 + k % 2, 1, 0]
    elif node == "web-3":
        scale = 0 if k % 9 == 4 else 1 + k % 3  # idle segments: no request at all
        counts = [scale * c for c in (1, 2, 4, 4, 2, 1, 0, 0, 0)]
    else:  # the node with the hostile instance label
        counts = [0, 0, 2, 0, 0, 0, 0, 0, 0]
    return counts


def _errors(node: str, k: int) -> int | None:
    """
    5xx per 15 s in segment ``k`` (None: the node has no 5xx series at all).
    """
    if node == "web-1":
        return 1 if k % 4 == 0 else 0
    if node == "web-2":
        return 2 if k % 5 == 1 else 0
    return None


def _cpu_busy(index: int, k: int) -> tuple[float, float]:
    """
    The busy fraction of cpu 0 and cpu 1 in segment ``k`` (exact in binary).
    """
    return (0.25, 0.5, 0.75)[(k + index) % 3], (0.125, 0.25, 0.5, 0.625)[(k + index) % 4]


def _mid(bucket: int) -> float:
    if bucket == len(BOUNDS):
        return OVERFLOW_S
    low = BOUNDS[bucket - 1] if bucket else 0.0
    return (low + BOUNDS[bucket]) / 2


def om_quote(value: str) -> str:
    """
    An OpenMetrics label value, quoted.
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass
class NodeSeries:
    """
    One node's counters at every step j (time T0 + 15 j), sampled or not.
    """

    name: str
    instance: str
    cpu_instance: str | None
    ok: list[float] = field(default_factory=list)
    err: list[float] | None = None
    buckets: list[list[float]] = field(default_factory=list)  # cumulative le buckets, +Inf last
    total: list[float] = field(default_factory=list)  # the histogram's _sum
    idle: list[list[float]] = field(default_factory=list)  # per cpu
    user: list[list[float]] = field(default_factory=list)

    def sampled(self, j: int) -> bool:
        """
        Whether Prometheus has this node's samples at step ``j``.
        """
        t = T0 + SCRAPE * j
        return not (self.name == "web-2" and GAP[0] <= t < GAP[1])


def _build(name: str, index: int, instance: str, cpu_instance: str | None) -> NodeSeries:
    node = NodeSeries(name, instance, cpu_instance)
    has_errors = _errors(name, 0) is not None
    ok, err, total = 1000.0, 10.0, 50.0
    buckets = [0.0] * (len(BOUNDS) + 1)
    idle, user = [500.0, 700.0], [100.0, 200.0]
    node.err = [] if has_errors else None
    for j in range(STEPS + 1):
        if j:  # the increments of the 15 s before step j
            k = (SCRAPE * (j - 1)) // SEGMENT
            counts = _bucket_counts(name, k)
            errors = _errors(name, k) or 0
            ok += sum(counts) - errors
            err += errors
            running = 0
            for b, c in enumerate(counts):
                running += c
                buckets[b] += running
                total += c * _mid(b)
            for cpu, busy in enumerate(_cpu_busy(index, k)):
                idle[cpu] += SCRAPE * (1 - busy)
                user[cpu] += SCRAPE * busy
        node.ok.append(ok)
        if node.err is not None:
            node.err.append(err)
        node.buckets.append(list(buckets))
        node.total.append(total)
        node.idle.append(list(idle))
        node.user.append(list(user))
    return node


def prometheus_quantile(q: float, bounds: tuple[float, ...], cumulative: list[float]) -> float:
    """
    Prometheus' ``histogram_quantile`` (2.x, classic buckets) on cumulative counts.

    The rank's bucket is interpolated linearly — exact for latencies spread evenly within their
    bucket — and a rank in the +Inf bucket gives the largest finite bound.
    """
    observations = cumulative[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next(i for i, c in enumerate([*cumulative[:-1], math.inf]) if c >= rank)
    if b == len(bounds):
        return bounds[-1]
    start, count = 0.0, cumulative[b]
    if b > 0:
        start = bounds[b - 1]
        count -= cumulative[b - 1]
        rank -= cumulative[b - 1]
    return start + (bounds[b] - start) * (rank / count)


@dataclass
class Fixture:
    """
    The nodes of the generated data.
    """

    nodes: dict[str, NodeSeries]

    @classmethod
    def build(cls) -> Fixture:
        nodes = [
            _build("web-1", 0, "127.0.0.11:8080", "127.0.0.11:9100"),
            _build("web-2", 1, "127.0.0.12:8080", "127.0.0.12:9100"),
            _build("web-3", 2, "127.0.0.13:8080", "127.0.0.13:9100"),
            _build("evil", 3, EVIL_INSTANCE, None),
        ]
        return cls({n.name: n for n in nodes})

    def openmetrics(self) -> str:
        """
        The whole fixture as OpenMetrics text (each series' samples in time order, ``# EOF``).
        """
        lines: list[str] = []

        def steps(node: NodeSeries) -> list[int]:
            return [j for j in range(STEPS + 1) if node.sampled(j)]

        lines += ["# HELP http_requests Requests handled.", "# TYPE http_requests counter"]
        for node in self.nodes.values():
            for code, values in (("200", node.ok), ("500", node.err)):
                if values is None:
                    continue
                labels = f'{{code="{code}",instance={om_quote(node.instance)},job="web"}}'
                lines += [
                    f"http_requests_total{labels} {values[j]!r} {T0 + SCRAPE * j}"
                    for j in steps(node)
                ]
        lines += [
            "# HELP http_request_duration_seconds Request latency.",
            "# TYPE http_request_duration_seconds histogram",
        ]
        les = [repr(b) for b in BOUNDS] + ["+Inf"]
        for node in self.nodes.values():
            base = f'instance={om_quote(node.instance)},job="web"'
            for j in steps(node):
                t = T0 + SCRAPE * j
                for le, value in zip(les, node.buckets[j], strict=True):
                    lines.append(
                        f'http_request_duration_seconds_bucket{{{base},le="{le}"}} {value!r} {t}'
                    )
                lines.append(
                    f"http_request_duration_seconds_count{{{base}}} {node.buckets[j][-1]!r} {t}"
                )
                lines.append(f"http_request_duration_seconds_sum{{{base}}} {node.total[j]!r} {t}")
        lines += ["# HELP node_cpu_seconds CPU time.", "# TYPE node_cpu_seconds counter"]
        for node in self.nodes.values():
            if node.cpu_instance is None:
                continue
            for cpu in range(2):
                for mode, values in (("idle", node.idle), ("user", node.user)):
                    labels = (
                        f'{{cpu="{cpu}",instance="{node.cpu_instance}",job="node",mode="{mode}"}}'
                    )
                    lines += [
                        f"node_cpu_seconds_total{labels} {values[j][cpu]!r} {T0 + SCRAPE * j}"
                        for j in steps(node)
                    ]
        lines.append("# EOF")
        return "\n".join(lines) + "\n"

    def expected(self, name: str, window_s: int = 60) -> list[Window]:
        """
        The windows of ``name`` Prometheus must give (all of the six hours but the gap's).
        """
        node = self.nodes[name]
        per = window_s // SCRAPE
        out = []
        for start in range(T0, T0 + HOURS * 3600, window_s):
            j0 = (start - T0) // SCRAPE
            j1 = j0 + per
            # rate() needs two samples in [start, end]
            if sum(node.sampled(j) for j in range(j0, j1 + 1)) < 2:
                continue
            ok = node.ok[j1] - node.ok[j0]
            err = node.err[j1] - node.err[j0] if node.err is not None else 0.0
            buckets = [b1 - b0 for b0, b1 in zip(node.buckets[j0], node.buckets[j1], strict=True)]
            busy_s = node.total[j1] - node.total[j0]
            count = buckets[-1]
            quantiles = [
                None if count == 0 else 1000 * prometheus_quantile(q, BOUNDS, buckets)
                for q in (0.5, 0.95, 0.99)
            ]
            cpu = None
            if node.cpu_instance is not None:
                idle = [node.idle[j1][c] - node.idle[j0][c] for c in range(2)]
                cpu = 1 - sum(idle) / 2 / window_s
            out.append(
                Window(
                    node=name,
                    start=datetime.fromtimestamp(start, UTC),
                    seconds=float(window_s),
                    requests=round(ok + err),
                    errors=round(err),
                    mean_ms=1000 * busy_s / count if count else None,
                    p50_ms=quantiles[0],
                    p95_ms=quantiles[1],
                    p99_ms=quantiles[2],
                    concurrency=busy_s / window_s,
                    cpu_util=cpu,
                )
            )
        return out


class PrometheusLab:
    """
    A Prometheus serving the fixture on 127.0.0.1; ``stop()`` ends it by its PID.
    """

    def __init__(self, root: Path, fixture: Fixture) -> None:
        self.root = root
        self.fixture = fixture
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        missing = [p for p in (PROMETHEUS, PROMTOOL) if not Path(p).exists()]
        if missing:
            raise AssertionError(f"{', '.join(missing)} missing: {APT_LINE}")
        data = self.root / "data"
        source = self.root / "fixture.om"
        source.write_text(self.fixture.openmetrics(), encoding="utf-8")
        backfill = subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert backfill.returncode == 0, backfill.stdout + backfill.stderr
        config = self.root / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1h\n", encoding="utf-8")  # no target
        self.port = free_port("127.0.0.1")
        log = (self.root / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=100y",  # the fixture's blocks are old: keep them
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"prometheus not ready within 60 s: {self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self) -> str:
        path = self.root / "prometheus.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        """
        Stop this prometheus (by its PID) and wait for it.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
