"""
A collection run: every node of the inventory in parallel (over SSH, or on this machine for
``host: local``), each node's harvest stored in one transaction as soon as it is in.

A node that fails is reported with the stage and the reason and never stops the others; the
run ends by its deadline whatever the nodes do.  This is the edge: threads, sockets, files and
the store.  What to run and what the output means is in ``harvest``.
"""

from __future__ import annotations

import abc
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from capplan.collect.haproxy import INT_COLUMNS, parse_show_stat
from capplan.collect.harvest import (
    Probe,
    ReadStep,
    attribute_cpu,
    harvest,
    parse_probe,
    plan_reads,
    probe_command,
    read_command,
    stats_command,
)
from capplan.collect.logs import LineParser, make_parser
from capplan.collect.probes import CpuSnapshot, cpu_utilization
from capplan.collect.ssh import (
    Cancel,
    Connection,
    KeyRing,
    KnownHosts,
    NodeError,
    Route,
    connect,
    load_ssh_config,
    resolve_route,
)
from capplan.errors import CapplanError, InputError, StoreError
from capplan.inventory import Inventory, Node
from capplan.samples import Window
from capplan.store import LogCursor, NodeSnapshot, ServerStat, Store

__all__ = ["CollectOptions", "NodeOutcome", "NodePlan", "collect", "plan_nodes"]

_PROBE_CAP = 1 << 20  # the probe's output is a few kB; anything near this is not /proc
_STATS_CAP = 16 << 20  # `show stat` is ~1 kB per server


@dataclass(frozen=True)
class CollectOptions:
    """
    How to run a collection.
    """

    window_s: float = 60.0
    parallel: int = 32
    deadline_s: float = 120.0
    max_bytes: int = 64 << 20
    accept_new: bool = False


@dataclass(frozen=True)
class NodePlan:
    """
    What will be done for one node: its route (None for ``host: local``) and log parser.
    """

    node: Node
    route: Route | None
    parser: LineParser | None

    def commands(self, max_bytes: int) -> list[str]:
        """
        The commands a run uses (``--dry-run`` prints them); the log is read from the stored
        offset (0 here) for at most ``max_bytes``.
        """
        log = self.node.log
        commands = [probe_command(self.node.proc_dir, log.path if log else None)]
        if log is not None:
            commands.append(read_command(log.path, 0, max_bytes))
        return commands


@dataclass
class NodeOutcome:
    """
    What happened to one node.
    """

    node: str
    route: str
    status: str = "pending"  # ok | partial | failed
    windows: int = 0
    requests: int = 0
    lines: int = 0
    cpu_util: float | None = None
    load1: float | None = None
    mem_available: float | None = None  # fraction of memory available
    clock_offset_s: float | None = None
    haproxy: list[dict[str, object]] = field(default_factory=list)  # `show stat` rows
    notes: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, stage: str, reason: str) -> None:
        self.failures.append((stage, reason))

    def failed(self, stage: str, reason: str) -> None:
        """
        Record the failure that ends this node's run: the node failed.
        """
        self.fail(stage, reason)
        self.status = "failed"

    def late(self, deadline_s: float) -> None:
        """
        The run's deadline passed with this node's work unfinished: that is its only failure.
        """
        self.failures.clear()
        self.failed("deadline", f"not done within --deadline {deadline_s:g} s")


def plan_nodes(
    inventory: Inventory, names: Sequence[str] = ()
) -> tuple[list[NodePlan], list[NodeOutcome]]:
    """
    Resolve every node's route and log parser; nodes that cannot be planned come back as
    failed outcomes (stage ``config``), the others as plans.
    """
    wanted = set(names)
    unknown = wanted - {n.name for n in inventory.nodes}
    if unknown:
        raise InputError(
            f"no node called {', '.join(sorted(unknown))} in the inventory",
            key="--node",
            hint=f"nodes are: {', '.join(n.name for n in inventory.nodes)}",
        )
    config = None
    plans: list[NodePlan] = []
    failed: list[NodeOutcome] = []
    for node in inventory.nodes:
        if wanted and node.name not in wanted:
            continue
        try:
            parser = None
            if node.log is not None:
                parser = make_parser(node.log, f"{node.name}:{node.log.path}")
            route = None
            if node.host != "local":
                if config is None:
                    config = load_ssh_config(inventory.ssh.config_file)
                route = resolve_route(node, inventory.ssh, config)
        except NodeError as exc:
            outcome = NodeOutcome(node.name, node.host or "?", status="failed")
            outcome.fail(exc.stage, exc.reason)
            failed.append(outcome)
            continue
        except InputError as exc:
            outcome = NodeOutcome(node.name, node.host or "?", status="failed")
            outcome.fail("config", str(exc))
            failed.append(outcome)
            continue
        plans.append(NodePlan(node, route, parser))
    return plans, failed


# --- one node ------------------------------------------------------------------------------


class _Session(abc.ABC):
    """
    How a node is read: over an SSH connection, or on this machine.
    """

    @abc.abstractmethod
    def probe(self, node: Node) -> Probe:
        """The node's clock, /proc stats and log identity."""

    @abc.abstractmethod
    def read(self, step: ReadStep) -> bytes:
        """The bytes of one planned read."""

    @abc.abstractmethod
    def show_stat(self, socket_path: str) -> str:
        """HAProxy's answer to ``show stat`` on the node's stats socket."""


class _SSHSession(_Session):
    def __init__(self, connection: Connection, deadline: float) -> None:
        self.connection = connection
        self.deadline = deadline

    def probe(self, node: Node) -> Probe:
        command = probe_command(node.proc_dir, node.log.path if node.log else None)
        result = self.connection.run(
            command, max_bytes=_PROBE_CAP, deadline=self.deadline, stage="probe"
        )
        if result.truncated:
            raise NodeError(node.name, "probe", f"the probe printed more than {_PROBE_CAP} bytes")
        try:
            return parse_probe(result.stdout.decode("utf-8", "replace"), node.name, node.proc_dir)
        except InputError as exc:
            detail = result.stderr.decode("utf-8", "replace").strip()[:300]
            raise NodeError(
                node.name, "probe", f"{exc}" + (f" (stderr: {detail})" if detail else "")
            ) from None

    def read(self, step: ReadStep) -> bytes:
        result = self.connection.run(
            read_command(step.path, step.offset, step.length),
            max_bytes=step.length,
            deadline=self.deadline,
            stage="log",
        )
        if result.truncated:
            # `head -c LENGTH` never prints more: these bytes are not the log's
            raise NodeError(
                self.connection.route.node,
                "log",
                f"reading {step.length} bytes of {step.path} printed more than that; the "
                "node's shell or commands add output (e.g. a login banner on stdout)",
            )
        return result.stdout

    def show_stat(self, socket_path: str) -> str:
        result = self.connection.run(
            stats_command(socket_path),
            max_bytes=_STATS_CAP,
            deadline=self.deadline,
            stage="haproxy",
        )
        if result.status != 0 or result.truncated:
            detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
            why = detail[-1][:300] if detail else f"exit status {result.status}"
            if result.truncated:
                why = f"more than {_STATS_CAP} bytes"
            raise NodeError(
                self.connection.route.node,
                "haproxy",
                f"cannot read the stats socket {socket_path}: {why}; the SSH user needs "
                "access to it (e.g. `stats socket ... mode 660 group <its group>`)",
            )
        return result.stdout.decode("utf-8", "replace")


class _LocalSession(_Session):
    def probe(self, node: Node) -> Probe:
        proc = node.proc_dir.rstrip("/")
        zone = time.strftime("%z")
        text = ["@capplan:now", f"{time.time():.6f}", "@capplan:tz", zone]
        for name in ("stat", "meminfo", "loadavg"):
            text.append(f"@capplan:{name}")
            with contextlib.suppress(OSError):
                text.append(Path(f"{proc}/{name}").read_text(encoding="utf-8", errors="replace"))
        if node.log is not None:
            for section, path in (("log", node.log.path), ("rotated", f"{node.log.path}.1")):
                text.append(f"@capplan:{section}")
                with contextlib.suppress(OSError):
                    st = os.stat(path)
                    text.append(f"{st.st_ino} {st.st_size}")
        text.append("@capplan:end")
        return parse_probe("\n".join(text) + "\n", node.name, node.proc_dir)

    def read(self, step: ReadStep) -> bytes:
        with open(step.path, "rb") as file:
            file.seek(step.offset)
            return file.read(step.length)

    def show_stat(self, socket_path: str) -> str:
        data = bytearray()
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(socket_path)
                sock.sendall(b"show stat\n")
                while chunk := sock.recv(65_536):
                    data += chunk
                    if len(data) > _STATS_CAP:
                        raise NodeError("local", "haproxy", f"more than {_STATS_CAP} bytes")
        except OSError as exc:
            raise NodeError(
                "local", "haproxy", f"cannot read the stats socket {socket_path}: {exc}"
            ) from None
        return data.decode("utf-8", "replace")


@dataclass
class _Harvested:
    """
    A worker's result, for the main thread to store.
    """

    windows: list[Window]
    cursor: LogCursor | None
    snapshot: NodeSnapshot | None
    outcome: NodeOutcome
    stats: list[ServerStat] = field(default_factory=list)
    stats_at: float | None = None


def _collect_node(
    plan: NodePlan,
    session: _Session,
    store_view: tuple[LogCursor | None, list[NodeSnapshot]],
    options: CollectOptions,
    outcome: NodeOutcome,
    state: Callable[[str, str], None],
    parsing: threading.Lock,
) -> _Harvested:
    node = plan.node
    cursor, history = store_view
    state(node.name, "probing")
    before = time.time()
    probe = session.probe(node)
    outcome.clock_offset_s = probe.now - (before + time.time()) / 2
    if abs(outcome.clock_offset_s) > 30:
        outcome.notes.append(
            f"the node's clock is {outcome.clock_offset_s:+.0f} s off this machine's; its "
            "windows use the node's clock"
        )
    for problem in probe.problems:
        outcome.fail("probe", problem)
    snapshot = probe.snapshot
    if snapshot is not None:
        outcome.load1 = snapshot.load1
        if snapshot.mem_total_kb and snapshot.mem_available_kb is not None:
            outcome.mem_available = snapshot.mem_available_kb / snapshot.mem_total_kb
        if history:
            last = history[-1]
            outcome.cpu_util = cpu_utilization(
                CpuSnapshot(busy=last.cpu_busy, total=last.cpu_total, cores=last.cores),
                CpuSnapshot(busy=snapshot.cpu_busy, total=snapshot.cpu_total, cores=snapshot.cores),
            )
    result = _Harvested([], None, snapshot, outcome)
    if node.haproxy_socket is not None:
        state(node.name, "haproxy")
        try:
            text = session.show_stat(node.haproxy_socket)
            rows = parse_show_stat(text, f"{node.name}:{node.haproxy_socket}")
        except NodeError as exc:
            outcome.fail("haproxy", exc.reason)
        except InputError as exc:
            outcome.fail("haproxy", str(exc))
        else:
            result.stats = [
                ServerStat(r.proxy, r.server, r.status, {c: getattr(r, c) for c in INT_COLUMNS})
                for r in rows
            ]
            result.stats_at = probe.now
            outcome.haproxy = [
                {"proxy": r.proxy, "server": r.server, "status": r.status, **r.counters}
                for r in result.stats
            ]
    log, parser = node.log, plan.parser
    if log is None or parser is None:
        outcome.notes.append("no log in the inventory: node stats only")
        return result
    if probe.log is None:
        outcome.fail(
            "log",
            f"{log.path}: no such file on the node, or not readable by the SSH user; check "
            "nodes.*.log.path",
        )
        return result
    if log.format == "haproxy":
        # HAProxy logs the node's local time without a zone: read it with the node's offset.
        parser = make_parser(log, f"{node.name}:{log.path}", utc_offset_s=probe.utc_offset_s)
    state(node.name, "reading log")
    plan_ = plan_reads(log.path, cursor, probe.log, probe.rotated, options.max_bytes)
    outcome.notes.extend(plan_.notes)
    data = [session.read(step) for step in plan_.steps]
    state(node.name, "parsing")
    try:
        with parsing:
            harvested = harvest(
                node.name,
                log.path,
                plan_,
                data,
                parser,
                cursor=cursor,
                now=probe.now,
                window_s=options.window_s,
                current_inode=probe.log.inode,
            )
    except InputError as exc:
        outcome.fail("log", str(exc))
        return result
    if plan_.unread:
        outcome.notes.append(
            f"read cap reached: {plan_.unread} bytes of {log.path} left for the next run "
            "(raise --max-bytes to read more at once)"
        )
    if harvested.untimed_windows:
        outcome.notes.append(
            f"{harvested.untimed_windows} windows had requests but no latency at all (every "
            "request aborted or without timing) and were not stored"
        )
    if harvested.bad_lines:
        examples = "; ".join(f"{where}: {text!r}" for where, text in harvested.bad_examples)
        outcome.fail(
            "log",
            f"{harvested.bad_lines} of {harvested.lines} lines of {log.path} do not match its "
            f"format and were skipped (e.g. {examples}); check nodes.{node.name}.log",
        )
    snaps = history + ([snapshot] if snapshot is not None else [])
    result.windows = attribute_cpu(harvested.windows, snaps, options.window_s)
    result.cursor = harvested.cursor
    outcome.lines = harvested.lines
    return result


# --- the run -------------------------------------------------------------------------------


def collect(
    inventory: Inventory,
    store: Store,
    options: CollectOptions,
    *,
    names: Sequence[str] = (),
    on_state: Callable[[str, str], None] = lambda node, state: None,
) -> list[NodeOutcome]:
    """
    Collect every node (or those in ``names``) and store their windows.

    Returns:
        One outcome per node, in inventory order.
    """
    plans, outcomes_failed = plan_nodes(inventory, names)
    outcomes: dict[str, NodeOutcome] = {o.node: o for o in outcomes_failed}
    for outcome in outcomes_failed:
        on_state(outcome.node, "failed")
    hosts: KnownHosts | None = None
    routes = [p.route for p in plans if p.route is not None]
    if routes:
        files = dict.fromkeys(f for r in routes for f in r.known_hosts)
        hosts = KnownHosts(list(files))
    views = {
        p.node.name: (
            store.cursor(p.node.name),
            store.snapshots(p.node.name)[-8:],
        )
        for p in plans
    }
    cancel = Cancel()
    keys = KeyRing()
    # One log parsed at a time: parsing is CPU work under the GIL, and threads parsing at once
    # only take turns on one core, paying for every hand-over (50 nodes here: a third more
    # CPU with 32 at once than one by one); the others go on reading meanwhile.
    parsing = threading.Lock()
    start = time.monotonic()
    deadline = start + options.deadline_s

    def work(plan: NodePlan) -> _Harvested:
        outcome = NodeOutcome(
            plan.node.name, plan.route.describe() if plan.route else "local", status="running"
        )
        outcomes[plan.node.name] = outcome
        connection = None
        try:
            if plan.route is None:
                session: _Session = _LocalSession()
            else:
                on_state(plan.node.name, "connecting")
                assert hosts is not None
                connection = connect(
                    plan.route, hosts, keys, accept_new=options.accept_new, cancel=cancel
                )
                for name in connection.added_keys:
                    outcome.notes.append(f"added the host key of {name} to known_hosts")
                session = _SSHSession(connection, deadline)
            return _collect_node(
                plan, session, views[plan.node.name], options, outcome, on_state, parsing
            )
        finally:
            if connection is not None:
                connection.close()

    def late(plan: NodePlan) -> None:
        name = plan.node.name
        outcome = outcomes.setdefault(name, NodeOutcome(name, plan.node.host or "?"))
        outcome.late(options.deadline_s)
        on_state(name, "failed")

    run_until(
        plans,
        work,
        workers=max(1, options.parallel),
        deadline=deadline,
        name="collect",
        finish=lambda future, plan: _finish(future, plan, outcomes, store, on_state, cancel),
        late=late,
        cancel=cancel.cancel,
    )
    order = [n.name for n in inventory.nodes]
    return sorted(outcomes.values(), key=lambda o: order.index(o.node))


_T = TypeVar("_T")
_R = TypeVar("_R")


def run_until(
    items: Sequence[_T],
    work: Callable[[_T], _R],
    *,
    workers: int,
    deadline: float,
    name: str,
    finish: Callable[[Future[_R], _T], None],
    late: Callable[[_T], None],
    cancel: Callable[[], None],
) -> None:
    """
    Run ``work`` on every item in a thread pool; ``finish`` each result in this thread as it
    completes (so the store is written from one thread); at ``deadline`` (``time.monotonic``)
    ``cancel`` the work still running and report each of its items ``late``.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    futures: dict[Future[_R], _T] = {pool.submit(work, item): item for item in items}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(
                pending, timeout=max(0.0, deadline - time.monotonic()), return_when=FIRST_COMPLETED
            )
            if not done:
                break
            for future in done:
                finish(future, futures[future])
    finally:
        if pending:
            cancel()
            for future in pending:
                late(futures[future])
        pool.shutdown(wait=False, cancel_futures=True)


def _finish(
    future: Future[_Harvested],
    plan: NodePlan,
    outcomes: dict[str, NodeOutcome],
    store: Store,
    on_state: Callable[[str, str], None],
    cancel: Cancel,
) -> None:
    name = plan.node.name
    outcome = outcomes.setdefault(name, NodeOutcome(name, plan.node.host or "?"))
    try:
        result = future.result()
    except NodeError as exc:
        stage = "deadline" if cancel.cancelled else exc.stage
        outcome.failed(stage, exc.reason)
        on_state(name, "failed")
        return
    except CapplanError as exc:
        outcome.failed("collect", str(exc))
        on_state(name, "failed")
        return
    except Exception as exc:
        outcome.failed("collect", f"{type(exc).__name__}: {exc}")
        on_state(name, "failed")
        return
    on_state(name, "storing")
    try:
        saved = store.save_collection(
            name,
            result.windows,
            cursor=result.cursor,
            snapshot=result.snapshot,
            stats=result.stats,
            stats_at=result.stats_at,
        )
    except StoreError as exc:
        outcome.failed("store", str(exc))
        on_state(name, "failed")
        return
    outcome.windows = saved.added
    outcome.requests = sum(w.requests for w in result.windows)
    stored_something = result.snapshot is not None or bool(result.windows)
    if not outcome.failures:
        outcome.status = "ok"
    else:
        outcome.status = "partial" if stored_something else "failed"
    on_state(name, outcome.status)
