"""
Node statistics from ``/proc``: pure functions of the files' text.

``/proc/stat`` gives CPU time in jiffies; two snapshots a few seconds apart give the
utilization between them (``cpu_utilization``).  ``/proc/meminfo`` and ``/proc/loadavg`` are
read as they are.  Every problem is an ``InputError`` naming the source (e.g.
``web-1:/proc/stat``) and the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from capplan.errors import InputError

__all__ = [
    "CpuSnapshot",
    "LoadAvg",
    "MemInfo",
    "cpu_utilization",
    "parse_loadavg",
    "parse_meminfo",
    "parse_proc_stat",
]

# user nice system idle iowait irq softirq steal; guest and guest_nice (fields 9 and 10) are
# already counted in user and nice, so they are not added again.
_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_STAT_HINT = "expected the text of /proc/stat, whose first line is 'cpu  USER NICE SYSTEM IDLE ...'"
_MEMINFO_HINT = "expected the text of /proc/meminfo: lines such as 'MemTotal: 16318480 kB'"
#: A kernel counter is a 64-bit number: at most 20 digits (int() refuses more than 4300).
_MAX_DIGITS = 20


def _count(word: str) -> int | None:
    """
    ``word`` as a kernel counter (ASCII digits, at most 20), or None.
    """
    if word.isascii() and word.isdigit() and len(word) <= _MAX_DIGITS:
        return int(word)
    return None


@dataclass(frozen=True)
class CpuSnapshot:
    """
    The aggregate ``cpu`` line of ``/proc/stat``: jiffies spent busy and in all, since boot.

    ``busy`` = total − (idle + iowait); ``cores`` is the number of ``cpuN`` lines.
    """

    busy: int
    total: int
    cores: int


@dataclass(frozen=True)
class MemInfo:
    """
    Memory in kB: the total and what is available to new work without swapping.
    """

    total_kb: int
    available_kb: int


@dataclass(frozen=True)
class LoadAvg:
    """
    The 1, 5 and 15 minute load averages.
    """

    load1: float
    load5: float
    load15: float


def _lines(text: str) -> list[str]:
    # split on \n only, so line numbers are the ones an editor shows
    return text.split("\n")


def parse_proc_stat(text: str, source: str) -> CpuSnapshot:
    """
    Parse ``/proc/stat``: the aggregate ``cpu`` line and the number of ``cpuN`` lines.

    Kernels older than 2.6.11 write fewer than 8 numbers; the missing ones count as 0.
    """
    aggregate: tuple[int, int] | None = None
    cores = 0
    for number, line in enumerate(_lines(text), start=1):
        words = line.split()
        if not words or not words[0].startswith("cpu"):
            continue
        name = words[0]
        if name == "cpu":
            if aggregate is not None:
                raise InputError(
                    "a second aggregate 'cpu' line",
                    file=source,
                    line=number,
                    key="cpu",
                    hint=_STAT_HINT,
                )
            aggregate = _cpu_times(words[1:], source, number)
        elif name[3:].isdigit() and name[3:].isascii():
            cores += 1
    if aggregate is None:
        raise InputError(
            "no aggregate 'cpu' line",
            file=source,
            line=1,
            hint=_STAT_HINT,
        )
    busy, total = aggregate
    return CpuSnapshot(busy=busy, total=total, cores=cores)


def _cpu_times(words: list[str], source: str, line: int) -> tuple[int, int]:
    if len(words) < 4:
        raise InputError(
            f"{len(words)} numbers on the 'cpu' line, expected at least 4",
            file=source,
            line=line,
            key="cpu",
            hint="the line reads 'cpu USER NICE SYSTEM IDLE [IOWAIT IRQ SOFTIRQ STEAL ...]'",
        )
    values: dict[str, int] = dict.fromkeys(_STAT_FIELDS, 0)
    for name, word in zip(_STAT_FIELDS, words, strict=False):
        value = _count(word)
        if value is None:
            raise InputError(
                f"{word[:40]!r} is not a whole number of jiffies",
                file=source,
                line=line,
                key=f"cpu {name}",
                hint=_STAT_HINT,
            )
        values[name] = value
    total = sum(values.values())
    idle = values["idle"] + values["iowait"]
    return total - idle, total


def cpu_utilization(earlier: CpuSnapshot, later: CpuSnapshot) -> float | None:
    """
    The fraction of CPU time spent busy between two snapshots, clipped to 0..1.

    None when no time passed or a counter went backwards (the node rebooted in between).
    """
    total = later.total - earlier.total
    busy = later.busy - earlier.busy
    if total <= 0 or busy < 0:
        return None
    return min(1.0, max(0.0, busy / total))


def parse_meminfo(text: str, source: str) -> MemInfo:
    """
    Parse ``/proc/meminfo``: ``MemTotal`` and ``MemAvailable``.

    Kernels before 3.14 have no ``MemAvailable``; then it is ``MemFree + Buffers + Cached``.
    """
    values: dict[str, int] = {}
    wanted = ("MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached")
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        key, colon, rest = line.partition(":")
        key = key.strip()
        if not colon or not key:
            raise InputError(
                f"{line[:80]!r} is not 'Name: value kB'",
                file=source,
                line=number,
                hint=_MEMINFO_HINT,
            )
        if key not in wanted:
            continue
        words = rest.split()
        size = _count(words[0]) if words else None
        if size is None or len(words) > 2 or words[1:] not in ([], ["kB"]):
            raise InputError(
                f"{rest.strip()[:80]!r} is not a size in kB",
                file=source,
                line=number,
                key=key,
                hint=_MEMINFO_HINT,
            )
        values[key] = size
    if "MemTotal" not in values:
        raise InputError("no MemTotal line", file=source, line=1, hint=_MEMINFO_HINT)
    available = values.get("MemAvailable")
    if available is None:
        missing = [k for k in ("MemFree", "Buffers", "Cached") if k not in values]
        if missing:
            raise InputError(
                f"no MemAvailable line and no {missing[0]} line to estimate it",
                file=source,
                line=1,
                hint=_MEMINFO_HINT,
            )
        available = values["MemFree"] + values["Buffers"] + values["Cached"]
    return MemInfo(total_kb=values["MemTotal"], available_kb=available)


def parse_loadavg(text: str, source: str) -> LoadAvg:
    """
    Parse ``/proc/loadavg`` (``0.17 0.65 0.97 1/80 32355``): the first three numbers.
    """
    words = text.split("\n", 1)[0].split()
    hint = "expected the text of /proc/loadavg, e.g. '0.17 0.65 0.97 1/80 32355'"
    if len(words) < 3:
        raise InputError(
            f"{len(words)} fields, expected at least 3", file=source, line=1, hint=hint
        )
    loads: list[float] = []
    for key, word in zip(("load1", "load5", "load15"), words, strict=False):
        try:
            value = float(word)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or not word.isascii():
            raise InputError(
                f"{word[:40]!r} is not a load average", file=source, line=1, key=key, hint=hint
            )
        loads.append(value)
    return LoadAvg(load1=loads[0], load5=loads[1], load15=loads[2])
