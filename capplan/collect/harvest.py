"""
What a collection run does with one node, as pure functions: the fixed remote commands, the
probe output they give, which bytes of the access log to read (resuming where the last run
stopped, across rotation), and the complete windows those bytes make.

A window is stored once, complete: lines are counted up to ``until`` (the last window boundary
at least ``SETTLE_S`` before the node's clock), and the next run resumes at the first line at or
after it.  So a run killed midway, or runs every few seconds, neither lose nor double-count a
line.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, replace

import numpy as np

from capplan.collect.logs import Chunk, LineParser, cut_windows, parse_chunk, resume_offset
from capplan.collect.probes import (
    CpuSnapshot,
    cpu_utilization,
    parse_loadavg,
    parse_meminfo,
    parse_proc_stat,
)
from capplan.errors import InputError
from capplan.samples import Window
from capplan.store import LogCursor, NodeSnapshot

__all__ = [
    "SETTLE_S",
    "FileStat",
    "Harvest",
    "Probe",
    "ReadStep",
    "attribute_cpu",
    "harvest",
    "parse_probe",
    "plan_reads",
    "probe_command",
    "read_command",
    "stats_command",
]

#: A window is complete this long after its end on the node's clock (log buffers flush).
SETTLE_S = 5.0
_MARK = "@capplan:"
_MAX_EPOCH = 253402300800  # 10000-01-01


def _digits(text: str, most: int = 20) -> bool:
    # ASCII digits only ("²".isdigit() is true), and few enough for a 64-bit counter.
    return text.isascii() and text.isdigit() and len(text) <= most


def probe_command(proc_dir: str, log_path: str | None) -> str:
    """
    The one command that reads a node's clock, /proc files and log file identity.

    Paths are the inventory's, quoted; everything else is fixed.
    """
    proc = proc_dir.rstrip("/") or "/"
    parts = ["export LC_ALL=C", f"echo {_MARK}now", "date +%s.%N", f"echo {_MARK}tz", "date +%z"]
    for name in ("stat", "meminfo", "loadavg"):
        parts += [f"echo {_MARK}{name}", f"cat -- {shlex.quote(f'{proc}/{name}')}"]
    if log_path is not None:
        for section, path in (("log", log_path), ("rotated", f"{log_path}.1")):
            parts += [
                f"echo {_MARK}{section}",
                f"stat -L -c '%i %s' -- {shlex.quote(path)} 2>/dev/null || true",
            ]
    parts.append(f"echo {_MARK}end")
    return "; ".join(parts)


_SHOW_STAT = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_UNIX)\n"
    "s.settimeout(5)\n"
    "s.connect(sys.argv[1])\n"
    "s.sendall(b'show stat\\n')\n"
    "while True:\n"
    " b=s.recv(65536)\n"
    " if not b: break\n"
    " sys.stdout.buffer.write(b)\n"
)


def stats_command(socket_path: str) -> str:
    """
    The command that asks HAProxy's stats socket for ``show stat``: with python3 when the
    node has it, else socat.
    """
    path = shlex.quote(socket_path)
    return (
        f"if command -v python3 >/dev/null; then python3 -c {shlex.quote(_SHOW_STAT)} {path}; "
        f"else printf 'show stat\\n' | socat -t 5 - UNIX-CONNECT:{path}; fi"
    )


def read_command(path: str, offset: int, length: int) -> str:
    """
    The command that prints ``length`` bytes of ``path`` from byte ``offset``.
    """
    return f"tail -c +{int(offset) + 1} -- {shlex.quote(path)} | head -c {int(length)}"


@dataclass(frozen=True)
class FileStat:
    """
    A file's identity and size.
    """

    inode: int
    size: int


@dataclass(frozen=True)
class Probe:
    """
    One node's clock, stats and log file identities, read at one moment.
    """

    now: float
    utc_offset_s: float  # the node's local time zone (HAProxy logs local times)
    snapshot: NodeSnapshot | None
    problems: tuple[str, ...]
    log: FileStat | None
    rotated: FileStat | None


def _sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(_MARK):
            current = sections.setdefault(line[len(_MARK) :].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) + "\n" if lines else "" for name, lines in sections.items()}


def _file_stat(text: str) -> FileStat | None:
    fields = text.split()
    if len(fields) != 2 or not all(_digits(f) for f in fields):
        return None
    return FileStat(int(fields[0]), int(fields[1]))


def parse_probe(text: str, node: str, proc_dir: str) -> Probe:
    """
    Read the output of :func:`probe_command`.

    A missing or unreadable /proc file is a problem (the snapshot is then None), not an
    error: the log windows are still worth storing.

    Raises:
        InputError: the output is not the command's at all (no clock, or cut short).
    """
    sections = _sections(text)
    if "end" not in sections or "now" not in sections:
        raise InputError(
            "the probe's output is incomplete (its end marker is missing)",
            file=f"{node}: probe",
            hint="the node's shell must be POSIX sh with coreutils (cat, date, stat)",
        )
    clock = sections["now"].strip().split(".")[0]
    if not _digits(clock, 12) or int(clock) >= _MAX_EPOCH:
        raise InputError(
            f"`date +%s` gave {clock[:40]!r}",
            file=f"{node}: probe",
            hint="the node's clock must be set and its `date +%s` must print epoch seconds",
        )
    fraction = sections["now"].strip().partition(".")[2]
    now = float(f"{clock}.{fraction}") if _digits(fraction, 30) else float(clock)
    problems: list[str] = []
    # ±HHMM within a day (real zones are -1200..+1400); anything else is unreadable: UTC
    zone = re.fullmatch(r"([+-])([01][0-9]|2[0-3])([0-5][0-9])", sections.get("tz", "").strip())
    utc_offset = 0.0
    if zone is not None:
        utc_offset = (1 if zone[1] == "+" else -1) * (int(zone[2]) * 3600 + int(zone[3]) * 60)
    snapshot: NodeSnapshot | None = None
    proc = proc_dir.rstrip("/")
    try:
        cpu: CpuSnapshot = parse_proc_stat(sections.get("stat", ""), f"{node}:{proc}/stat")
        mem = parse_meminfo(sections.get("meminfo", ""), f"{node}:{proc}/meminfo")
        load = parse_loadavg(sections.get("loadavg", ""), f"{node}:{proc}/loadavg")
    except InputError as exc:
        problems.append(str(exc))
    else:
        snapshot = NodeSnapshot(
            at=now,
            cpu_busy=cpu.busy,
            cpu_total=cpu.total,
            cores=cpu.cores,
            load1=load.load1,
            load5=load.load5,
            load15=load.load15,
            mem_total_kb=mem.total_kb,
            mem_available_kb=mem.available_kb,
        )
    return Probe(
        now=now,
        utc_offset_s=utc_offset,
        snapshot=snapshot,
        problems=tuple(problems),
        log=_file_stat(sections.get("log", "")),
        rotated=_file_stat(sections.get("rotated", "")),
    )


@dataclass(frozen=True)
class ReadStep:
    """
    Bytes to read: ``length`` bytes of ``path`` (the file with ``inode``) from ``offset``.
    """

    path: str
    inode: int
    offset: int
    length: int


@dataclass(frozen=True)
class ReadPlan:
    """
    The reads for one run, whether they start afresh (no usable cursor), what was lost, and
    whether bytes were left unread by the cap.
    """

    steps: tuple[ReadStep, ...]
    fresh: bool
    notes: tuple[str, ...]
    unread: int


def plan_reads(
    path: str,
    cursor: LogCursor | None,
    current: FileStat,
    rotated: FileStat | None,
    max_bytes: int,
) -> ReadPlan:
    """
    Which bytes of the log to read this run, at most ``max_bytes`` in all.

    With no cursor the run starts at the newest ``max_bytes`` of the file.  When the file was
    rotated since the last run (``path.1`` now has the cursor's inode) the rest of the old file
    is read first; when the old file is gone or was truncated in place, the new one is read
    from its start and the loss is said in a note.
    """
    if cursor is None or cursor.path != path:
        start = max(0, current.size - max_bytes)
        step = ReadStep(path, current.inode, start, current.size - start)
        return ReadPlan((step,), True, (), start)
    notes: list[str] = []
    if cursor.inode == current.inode and current.size >= cursor.offset:
        steps = [ReadStep(path, current.inode, cursor.offset, current.size - cursor.offset)]
    elif rotated is not None and cursor.inode == rotated.inode:
        steps = [
            ReadStep(f"{path}.1", rotated.inode, cursor.offset, rotated.size - cursor.offset),
            ReadStep(path, current.inode, 0, current.size),
        ]
        notes.append(f"{path} was rotated since the last run; read the rest of {path}.1 first")
    else:
        steps = [ReadStep(path, current.inode, 0, current.size)]
        why = (
            "was truncated in place"
            if cursor.inode == current.inode
            else "was rotated and the old file is not at .1"
        )
        notes.append(
            f"{path} {why} since the last run: lines written after the last run's position "
            "in the old file were not read"
        )
    budget, capped = max_bytes, []
    for step in steps:
        length = max(0, min(step.length, budget))
        budget -= length
        capped.append(replace(step, length=length))
    unread = sum(s.length for s in steps) - sum(s.length for s in capped)
    return ReadPlan(tuple(s for s in capped if s.length > 0), False, tuple(notes), unread)


@dataclass(frozen=True)
class Harvest:
    """
    One node's complete windows from this run's bytes, and the log position to resume at.
    """

    windows: list[Window]
    cursor: LogCursor
    lines: int
    bad_lines: int
    bad_examples: tuple[tuple[str, str], ...]  # (where: "line N" or "byte N", text)
    untimed_windows: int = 0


def _merge(chunks: list[Chunk]) -> Chunk:
    if len(chunks) == 1:
        return chunks[0]
    return replace(
        chunks[-1],
        time=np.concatenate([c.time for c in chunks]),
        latency_ms=np.concatenate([c.latency_ms for c in chunks]),
        error=np.concatenate([c.error for c in chunks]),
        line_start=np.concatenate([c.line_start for c in chunks]),
    )


def harvest(
    node: str,
    log_path: str,
    plan: ReadPlan,
    data: list[bytes],
    parser: LineParser,
    *,
    cursor: LogCursor | None,
    now: float,
    window_s: float,
    current_inode: int,
) -> Harvest:
    """
    Cut this run's bytes (``data[i]`` read by ``plan.steps[i]``) into complete windows.

    Raises:
        InputError: no line of the log could be read (e.g. it has no timing fields).
    """
    chunks: list[Chunk] = []
    starts: list[int] = []
    for step, raw in zip(plan.steps, data, strict=True):
        skip = 0
        if plan.fresh and step.offset > 0:
            # A start inside the file is inside a line: begin after its end.
            newline = raw.find(b"\n")
            skip = len(raw) if newline < 0 else newline + 1
        chunks.append(
            parse_chunk(raw[skip:], parser, source=f"{node}:{step.path}", offset=step.offset + skip)
        )
        starts.append(step.offset + skip)
    merged = _merge(chunks) if chunks else None
    times = merged.time if merged is not None else np.empty(0)
    until = math.floor((now - SETTLE_S) / window_s) * window_s
    if plan.unread > 0 and times.size:
        # Lines past the cap may belong to the last window read: it is not complete yet.
        until = min(until, math.floor(float(times.max()) / window_s) * window_s)
    if cursor is not None and not plan.fresh:
        since = cursor.done_until
    elif times.size:
        # A first run starts inside a window: the first complete window is the next one.
        first = float(times.min())
        since = math.ceil(first / window_s) * window_s
    else:
        since = until
    cut = (
        cut_windows(merged, node=node, window_s=window_s, since=since, until=until)
        if merged is not None and until > since
        else []
    )
    # A window whose requests all lack a latency (e.g. HAProxy 503s with no server) says
    # nothing a model can use, and the samples contract refuses it: count it, do not store it.
    windows = [w for w in cut if w.mean_ms is not None]
    # Resume at the first line (in file order) at or after `until`.
    position: tuple[int, int] | None = None
    for step, chunk, start in zip(plan.steps, chunks, starts, strict=True):
        offset = resume_offset(chunk, until)
        if offset < chunk.consumed:
            position = (step.inode, start + offset)
            break
    if position is None:
        if chunks:
            position = (plan.steps[-1].inode, starts[-1] + chunks[-1].consumed)
        elif cursor is not None and not plan.fresh:
            position = (cursor.inode, cursor.offset)
        else:
            position = (current_inode, 0)
    # Never count a line twice, nor the partial first window of a first run.
    done = max(until, since)
    return Harvest(
        windows=windows,
        cursor=LogCursor(log_path, position[0], position[1], done),
        lines=sum(c.lines for c in chunks),
        bad_lines=sum(c.bad_lines for c in chunks),
        bad_examples=tuple(
            # a block read from the file's start knows its line numbers; others their bytes
            (f"line {n}" if start == 0 else f"byte {at}", text)
            for c, start in zip(chunks, starts, strict=True)
            for (n, text), at in zip(c.bad_examples, c.bad_offsets, strict=True)
        )[:3],
        untimed_windows=len(cut) - len(windows),
    )


def attribute_cpu(
    windows: list[Window], snapshots: list[NodeSnapshot], window_s: float
) -> list[Window]:
    """
    Give each window the CPU utilization between the snapshots that bracket it: the latest at
    or before its start and the earliest at or after its end, when they are at most two
    windows apart.  A window no such pair brackets keeps ``cpu_util`` unknown — never the
    utilization of another time.
    """
    ordered = sorted(snapshots, key=lambda s: s.at)
    times = np.array([s.at for s in ordered])
    result: list[Window] = []
    for window in windows:
        start = window.start.timestamp()
        end = start + window.seconds
        before = int(np.searchsorted(times, start, side="right")) - 1
        after = int(np.searchsorted(times, end, side="left"))
        util = None
        if before >= 0 and after < len(ordered) and times[after] - times[before] <= 2 * window_s:
            a, b = ordered[before], ordered[after]
            util = cpu_utilization(
                CpuSnapshot(busy=a.cpu_busy, total=a.cpu_total, cores=a.cores),
                CpuSnapshot(busy=b.cpu_busy, total=b.cpu_total, cores=b.cores),
            )
        result.append(replace(window, cpu_util=util))
    return result
