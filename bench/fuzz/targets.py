"""
The parsers of outside text as fuzz targets, and the property every one must keep.

Shared by the hypothesis tests (``tests/fuzz``) and the atheris harness
(``bench/fuzz/atheris_parsers.py``), so both check exactly the same thing.

The property, for any input:

* the parser returns a value of its documented type, checked field by field (``check_value``:
  e.g. every window's numbers finite and in range, every log time a real epoch second); or
* it raises ``capplan.errors.InputError`` (``check_refusal``) that names where the problem is
  (``FILE:LINE`` for a file or a block of log bytes; ``NODE: probe`` for a probe's output;
  ``NODE:PATH`` and the inventory key for a log format) at the start of its message, carries a
  hint of what to do (the ``(...)`` at its end), and echoes at most ``MAX_MESSAGE_CHARS``.

Anything else (another exception type, a wrong value, a refusal without location or hint) is a
``PropertyViolationError``.  Time and memory bounds are checked by ``tests/fuzz`` (see its budget).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np

from capplan.collect.haproxy import INT_COLUMNS, StatRow, parse_show_stat
from capplan.collect.harvest import FileStat, Probe, parse_probe
from capplan.collect.logs import Chunk, LineParser, make_parser, parse_chunk
from capplan.collect.probes import (
    CpuSnapshot,
    LoadAvg,
    MemInfo,
    parse_loadavg,
    parse_meminfo,
    parse_proc_stat,
)
from capplan.errors import InputError
from capplan.inventory import Inventory, LogSpec, Profile, parse_inventory, parse_profile
from capplan.names import NAME_RE
from capplan.planfile import Plan, dump_plan, parse_plan
from capplan.samples import LoadPoint, NumberedWindow, parse_load_table, parse_samples
from capplan.store import NodeSnapshot
from capplan.yamlfile import load_yaml

__all__ = [
    "ATHERIS_LIMITS",
    "ATHERIS_TARGETS",
    "MAX_MESSAGE_CHARS",
    "TARGETS",
    "PropertyViolationError",
    "Target",
    "check",
    "check_refusal",
    "check_value",
    "seeds",
]

REPO = Path(__file__).resolve().parents[2]

#: libFuzzer's limits for the atheris harness (flag: value): the largest input it builds, the
#: seconds one input may take (more is a hang), and the process's RSS (python, numpy and pydantic
#: included; more is a memory blow-up).
ATHERIS_LIMITS: dict[str, int] = {"max_len": 8192, "timeout": 10, "rss_limit_mb": 1024}

#: The stated bound on a refusal's length: a message quotes a bad value, never the whole input
#: (the slack of a target whose hint quotes the user's own config is added to it).
MAX_MESSAGE_CHARS = 4000

CSV_FILE = "fuzz.csv"
YAML_FILE = "fuzz.yaml"
NODE = "web-1"
PROC = "/proc"
STAT_SOURCE = "lb-1:/run/haproxy/admin.sock"
LOG_PATH = "/var/log/nginx/access.log"
LOG_SOURCE = f"{NODE}:{LOG_PATH}"
#: parse_samples refuses windows that end after ``now``; a fixed now keeps the fuzz repeatable.
NOW = datetime(2026, 11, 23, tzinfo=UTC)
MAX_EPOCH = 253402300800.0  # 10000-01-01
MSEC_FORMAT = (
    '$msec $time_iso8601 $remote_addr "$request" $status $body_bytes_sent '
    "$request_time $upstream_response_time"
)
#: Anchored, as the hint of a refused regex shows: re.search with an unanchored leading
#: ``\S+`` is quadratic in the length of a line that does not match (the user's own regex).
USER_REGEX = r"^(?P<time>\S+) (?P<status>\S*) (?P<latency_s>\S+)$"


class PropertyViolationError(AssertionError):
    """
    A parser broke the fuzz property: a wrong value, or a refusal that is not a proper one.
    """


Where = Literal["line", "probe", "key"]


@dataclass(frozen=True)
class Target:
    """
    One parser entry point, as the fuzzers call it.

    ``parse`` takes the raw input (text, or bytes for the log parsers); ``where`` says how a
    refusal must name its location: ``line`` (``source:LINE: ``), ``probe`` (``NODE: probe``)
    or ``key`` (``source: KEY: ``, the inventory key of a log format).
    """

    name: str
    family: str
    entry: str
    parse: Callable[[str], object] | Callable[[bytes], object]
    source: str
    where: Where
    binary: bool = False
    #: Extra message length allowed for a hint that quotes the user's own config.
    slack: Callable[[str | bytes], int] = field(default=lambda data: 0)
    #: Errors raised past YAML loading, by code this work may not change, that carry no hint
    #: yet: None when every refusal must have a hint (see ``check_refusal``).
    hint_gap: str | None = None


def _fail(target: Target, what: str) -> PropertyViolationError:
    return PropertyViolationError(f"{target.name}: {what}")


# ----------------------------------------------------------------------------- entry points


def _parse_samples(text: str) -> list[NumberedWindow]:
    return parse_samples(text, CSV_FILE, now=NOW)


def _parse_load_table(text: str) -> list[LoadPoint]:
    return parse_load_table(text, CSV_FILE)


def _parse_stat(text: str) -> CpuSnapshot:
    return parse_proc_stat(text, f"{NODE}:{PROC}/stat")


def _parse_meminfo(text: str) -> MemInfo:
    return parse_meminfo(text, f"{NODE}:{PROC}/meminfo")


def _parse_loadavg(text: str) -> LoadAvg:
    return parse_loadavg(text, f"{NODE}:{PROC}/loadavg")


def _parse_probe(text: str) -> Probe:
    return parse_probe(text, NODE, PROC)


def _parse_show_stat(text: str) -> list[StatRow]:
    return parse_show_stat(text, STAT_SOURCE)


def _chunker(spec: LogSpec) -> Callable[[bytes], Chunk]:
    parser = make_parser(spec, LOG_SOURCE)

    def parse(data: bytes) -> Chunk:
        return parse_chunk(data, parser, source=LOG_SOURCE)

    parse.__name__ = f"parse_chunk_{spec.format}"
    return parse


def _parse_log_config(data: bytes) -> Chunk:
    """
    The first line is a node's ``log_format`` (or, after ``regex:``, its ``regex``); the rest
    is log bytes read with the parser made from it.
    """
    first, _, rest = data.partition(b"\n")
    config = first.decode("utf-8", errors="replace")
    if config.startswith("regex:"):
        spec = LogSpec(path=LOG_PATH, format="regex", regex=config[6:] or "x")
    else:
        spec = LogSpec(path=LOG_PATH, log_format=config or None)
    parser: LineParser = make_parser(spec, LOG_SOURCE)
    return parse_chunk(rest, parser, source=LOG_SOURCE)


def _parse_inventory(text: str) -> Inventory:
    return parse_inventory(text, YAML_FILE)


def _parse_profile(text: str) -> Profile:
    return parse_profile(text, YAML_FILE, name="fuzz")


def _parse_plan(text: str) -> Plan:
    plan = parse_plan(text, YAML_FILE)
    again = parse_plan(dump_plan(plan), YAML_FILE)  # what parses, dumps and reads back the same
    if again != plan:
        raise PropertyViolationError("plan: parse_plan(dump_plan(plan)) != plan")
    return plan


def _first_line_slack(data: str | bytes) -> int:
    first = data.partition(b"\n")[0] if isinstance(data, bytes) else data.partition("\n")[0]
    return 4 * len(first) + 200  # the hint quotes the format (twice) in repr


_NGINX = LogSpec(path=LOG_PATH)

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("samples", "samples CSV", "samples.parse_samples", _parse_samples, CSV_FILE, "line"),
        Target(
            "load_table",
            "samples CSV",
            "samples.parse_load_table",
            _parse_load_table,
            CSV_FILE,
            "line",
        ),
        Target(
            "proc_stat",
            "/proc",
            "probes.parse_proc_stat",
            _parse_stat,
            f"{NODE}:{PROC}/stat",
            "line",
        ),
        Target(
            "meminfo",
            "/proc",
            "probes.parse_meminfo",
            _parse_meminfo,
            f"{NODE}:{PROC}/meminfo",
            "line",
        ),
        Target(
            "loadavg",
            "/proc",
            "probes.parse_loadavg",
            _parse_loadavg,
            f"{NODE}:{PROC}/loadavg",
            "line",
        ),
        Target("probe", "/proc", "harvest.parse_probe", _parse_probe, f"{NODE}: probe", "probe"),
        Target(
            "show_stat",
            "HAProxy show stat",
            "haproxy.parse_show_stat",
            _parse_show_stat,
            STAT_SOURCE,
            "line",
        ),
        Target(
            "nginx",
            "access logs",
            "logs.parse_chunk (nginx, default format)",
            _chunker(_NGINX),
            LOG_SOURCE,
            "line",
            binary=True,
        ),
        Target(
            "nginx_msec",
            "access logs",
            "logs.parse_chunk (nginx, $msec format)",
            _chunker(LogSpec(path=LOG_PATH, log_format=MSEC_FORMAT)),
            LOG_SOURCE,
            "line",
            binary=True,
        ),
        Target(
            "haproxy",
            "access logs",
            "logs.parse_chunk (HAProxy httplog)",
            _chunker(LogSpec(path=LOG_PATH, format="haproxy")),
            LOG_SOURCE,
            "line",
            binary=True,
        ),
        Target(
            "regex",
            "access logs",
            "logs.parse_chunk (regex)",
            _chunker(LogSpec(path=LOG_PATH, format="regex", regex=USER_REGEX)),
            LOG_SOURCE,
            "line",
            binary=True,
        ),
        Target(
            "log_config",
            "access logs",
            "logs.make_parser + parse_chunk (any format/regex)",
            _parse_log_config,
            LOG_SOURCE,
            "key",
            binary=True,
            slack=_first_line_slack,
        ),
        Target(
            "inventory",
            "inventory/profile YAML",
            "inventory.parse_inventory",
            _parse_inventory,
            YAML_FILE,
            "line",
        ),
        Target(
            "profile",
            "inventory/profile YAML",
            "inventory.parse_profile",
            _parse_profile,
            YAML_FILE,
            "line",
        ),
        Target(
            "plan",
            "plan.yaml",
            "planfile.parse_plan (+ dump_plan round trip)",
            _parse_plan,
            YAML_FILE,
            "line",
        ),
    )
}

#: atheris targets: each runs its parsers on the same input.
ATHERIS_TARGETS: dict[str, tuple[str, ...]] = {
    "csv": ("samples", "load_table"),
    "proc": ("proc_stat", "meminfo", "loadavg", "probe"),
    "nginx": ("nginx", "nginx_msec"),
    "haproxy": ("haproxy",),
    "regex": ("regex",),
    "showstat": ("show_stat",),
    "inventory": ("inventory", "profile"),
    "plan": ("plan",),
}


# ----------------------------------------------------------------------------- the property


def _lines_in(data: str | bytes) -> int:
    if isinstance(data, bytes):
        return data.count(b"\n") + 1
    return max(len(data.splitlines()), data.count("\n")) + 1


def check_refusal(target: Target, data: str | bytes, exc: InputError) -> None:
    """
    Raise PropertyViolationError unless ``exc`` is a proper refusal of ``data`` by ``target``.
    """
    message = str(exc)
    if exc.file != target.source:
        raise _fail(target, f"the refusal names {exc.file!r}, not {target.source!r}: {message}")
    if target.where == "line":
        if not isinstance(exc.line, int) or not 1 <= exc.line <= _lines_in(data):
            raise _fail(target, f"line {exc.line!r} is not a line of the input: {message}")
        prefix = f"{exc.file}:{exc.line}: "
    elif target.where == "key" and exc.line is None:
        if not exc.key:
            raise _fail(target, f"the refusal names no line and no inventory key: {message}")
        prefix = f"{exc.file}: {exc.key}: "
    elif target.where == "key":
        if not isinstance(exc.line, int) or not 1 <= exc.line <= _lines_in(data):
            raise _fail(target, f"line {exc.line!r} is not a line of the input: {message}")
        prefix = f"{exc.file}:{exc.line}: "
    else:
        prefix = f"{exc.file}: "
    if not message.startswith(prefix):
        raise _fail(target, f"the message does not start with {prefix!r}: {message[:300]}")
    limit = MAX_MESSAGE_CHARS + target.slack(data)
    if len(message) > limit:
        raise _fail(target, f"a {len(message)}-character message (bound {limit})")
    if exc.hint is None or not exc.hint.strip():
        if target.hint_gap is not None and _past_yaml(data):
            return
        raise _fail(target, f"no hint of what to do: {message[:300]}")
    if not message.endswith(f"({exc.hint})"):
        raise _fail(target, f"the hint is not at the end of the message: {message[:300]}")


def _past_yaml(data: str | bytes) -> bool:
    """
    Whether ``data`` loads as YAML (so a refusal came from the validation after loading).
    """
    text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
    try:
        load_yaml(text, YAML_FILE)
    except InputError:
        return False
    return True


def _finite(value: object, *, low: float = 0.0, high: float = math.inf) -> bool:
    return (
        isinstance(value, float | int)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def _check_windows(target: Target, value: object) -> None:
    if not isinstance(value, list):
        raise _fail(target, f"returned {type(value).__name__}, not a list")
    last = 1
    for item in value:
        if not isinstance(item, NumberedWindow) or item.line <= last:
            raise _fail(target, f"not a numbered window in file order: {item!r}")
        last = item.line
        w = item.window
        ok = (
            isinstance(w.node, str)
            and NAME_RE.fullmatch(w.node) is not None
            and isinstance(w.start, datetime)
            and w.start.utcoffset() == timedelta(0)
            and w.end <= NOW
            and _finite(w.seconds)
            and w.seconds > 0
            and isinstance(w.requests, int)
            and isinstance(w.errors, int)
            and 0 <= w.errors <= w.requests
            and all(
                getattr(w, c) is None or _finite(getattr(w, c))
                for c in ("mean_ms", "p50_ms", "p95_ms", "p99_ms", "concurrency", "cpu_util")
            )
            and (w.cpu_util is None or w.cpu_util <= 1)
            and (w.requests == 0 or w.mean_ms is not None)
        )
        if not ok:
            raise _fail(target, f"a window out of its contract: {w!r}")


def _check_chunk(target: Target, value: object, data: bytes) -> None:
    if not isinstance(value, Chunk):
        raise _fail(target, f"returned {type(value).__name__}, not a Chunk")
    if target.name == "log_config":
        data = data.partition(b"\n")[2]
    n = value.time.size
    consumed = data.rfind(b"\n") + 1
    shapes = (value.latency_ms.size, value.error.size, value.line_start.size)
    if shapes != (n, n, n) or value.lines != n + value.bad_lines or value.consumed != consumed:
        raise _fail(target, f"inconsistent chunk: {n} times, {shapes}, {value.lines} lines")
    times, lat = value.time, value.latency_ms
    if not (np.all(np.isfinite(times)) and np.all((times >= 0) & (times < MAX_EPOCH))):
        raise _fail(target, f"a time that is no epoch second: {times[~np.isfinite(times)][:3]}")
    known = lat[~np.isnan(lat)]
    if not (np.all(np.isfinite(known)) and np.all(known >= 0)):
        raise _fail(target, f"a latency that is neither unknown nor finite >= 0: {known[:5]}")
    starts = value.line_start
    if n and not (np.all(np.diff(starts) > 0) and starts[0] >= 0 and starts[-1] < value.consumed):
        raise _fail(target, "line starts not increasing within the consumed bytes")
    if len(value.bad_examples) > 3:
        raise _fail(target, "more than 3 bad examples")


def _check_probe(target: Target, value: object) -> None:
    if not isinstance(value, Probe):
        raise _fail(target, f"returned {type(value).__name__}, not a Probe")
    if not (_finite(value.now, high=MAX_EPOCH) and abs(value.utc_offset_s) <= 24 * 3600):
        raise _fail(target, f"clock {value.now!r} or zone {value.utc_offset_s!r} out of range")
    for stat in (value.log, value.rotated):
        if stat is not None and not (
            isinstance(stat, FileStat) and stat.inode >= 0 and stat.size >= 0
        ):
            raise _fail(target, f"a bad file stat {stat!r}")
    snap = value.snapshot
    if snap is not None and not (
        isinstance(snap, NodeSnapshot) and 0 <= snap.cpu_busy <= snap.cpu_total
    ):
        raise _fail(target, f"a bad snapshot {snap!r}")
    pattern = re.compile(rf"{re.escape(NODE)}:{PROC}/(stat|meminfo|loadavg):\d+: .*\(.+\)$", re.S)
    for problem in value.problems:
        if not pattern.match(problem):
            raise _fail(target, f"a problem without its file:line or hint: {problem[:300]}")


def check_value(target: Target, value: object, data: str | bytes) -> None:
    """
    Raise PropertyViolationError unless ``value`` is what ``target`` documents it returns.
    """
    name = target.name
    if name == "samples":
        _check_windows(target, value)
    elif name == "load_table":
        if not isinstance(value, list) or not all(
            isinstance(p, LoadPoint) and _finite(p.load) and p.load > 0 and _finite(p.throughput)
            for p in value
        ):
            raise _fail(target, f"not a list of finite load points: {value!r:.300}")
    elif name == "proc_stat":
        if not (
            isinstance(value, CpuSnapshot) and 0 <= value.busy <= value.total and value.cores >= 0
        ):
            raise _fail(target, f"a bad CPU snapshot {value!r}")
    elif name == "meminfo":
        if not (isinstance(value, MemInfo) and value.total_kb >= 0 and value.available_kb >= 0):
            raise _fail(target, f"a bad MemInfo {value!r}")
    elif name == "loadavg":
        if not (
            isinstance(value, LoadAvg)
            and all(_finite(v) for v in (value.load1, value.load5, value.load15))
        ):
            raise _fail(target, f"a bad LoadAvg {value!r}")
    elif name == "probe":
        _check_probe(target, value)
    elif name == "show_stat":
        if not isinstance(value, list) or not all(
            isinstance(r, StatRow)
            and all(getattr(r, c) is None or type(getattr(r, c)) is int for c in INT_COLUMNS)
            for r in value
        ):
            raise _fail(target, f"not a list of stat rows: {value!r:.300}")
    elif target.binary:
        assert isinstance(data, bytes)
        _check_chunk(target, value, data)
    else:
        kind = {"inventory": Inventory, "profile": Profile, "plan": Plan}[name]
        if not isinstance(value, kind):
            raise _fail(target, f"returned {type(value).__name__}, not {kind.__name__}")


def check(target: Target, data: str | bytes) -> object:
    """
    Run ``target`` on ``data`` and check the property; return the value or the refusal.

    Any exception but InputError propagates: it is a failure of the property as it stands.
    """
    if target.binary != isinstance(data, bytes):
        data = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else _text(data)
    try:
        value = target.parse(data)  # type: ignore[arg-type]
    except InputError as exc:
        check_refusal(target, data, exc)
        return exc
    check_value(target, value, data)
    return value


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------- seeds


def _read(*parts: str) -> str:
    return (REPO.joinpath(*parts)).read_text(encoding="utf-8")


def _head(text: str, lines: int) -> str:
    return "".join(text.splitlines(keepends=True)[:lines])


def seeds(name: str) -> Sequence[str]:
    """
    Valid inputs of target ``name``, captured or shipped with capplan (a few lines each).
    """
    data = ("tests", "collect", "data")
    logs = (*data, "logs")
    if name == "samples":
        return [_head(_read("examples", "web", "samples.csv"), 12)]
    if name == "load_table":
        return ["load,throughput\n1,90.5\n2,170\n4,300.25\n8,410\n"]
    if name in ("proc_stat", "meminfo", "loadavg"):
        file = {"proc_stat": "stat", "meminfo": "meminfo", "loadavg": "loadavg"}[name]
        return [_read(*data, "proc", file)]
    if name == "probe":
        sections = [
            ("now", "1795168800.123456789\n"),
            ("tz", "+0100\n"),
            ("stat", _read(*data, "proc", "stat")),
            ("meminfo", _head(_read(*data, "proc", "meminfo"), 6)),
            ("loadavg", _read(*data, "proc", "loadavg")),
            ("log", "1234 56789\n"),
            ("rotated", "1233 400\n"),
            ("end", ""),
        ]
        return ["".join(f"@capplan:{k}\n{v}" for k, v in sections)]
    if name == "show_stat":
        return [_head(_read(*data, "haproxy", "show_stat.csv"), 6)]
    if name == "nginx":
        return [_head(_read(*logs, "nginx-timed.log"), 12)]
    if name == "nginx_msec":
        return [_head(_read(*logs, "nginx-msec.log"), 12)]
    if name == "haproxy":
        return [
            _head(_read(*logs, "haproxy-stdout.log"), 12),
            _head(_read(*logs, "haproxy-syslog.log"), 8),
        ]
    if name == "regex":
        return ["1795168800.5 200 0.012\n2026-11-20T10:00:01Z 503 0.5\n1795168802 - -\n"]
    if name == "log_config":
        return [
            MSEC_FORMAT + "\n" + _head(_read(*logs, "nginx-msec.log"), 6),
            "regex:" + USER_REGEX + "\n" + seeds("regex")[0],
        ]
    if name == "inventory":
        return [_read("examples", "web", "inventory.yaml")]
    if name == "profile":
        return [_read("profiles", "balanced.yaml")]
    if name == "plan":
        return [_read("tests", "render", "data", "plan.yaml")]
    raise KeyError(name)
