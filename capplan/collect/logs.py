"""
Access logs to windows: pure functions of a log's text.

A ``LineParser`` (from ``make_parser``) turns one line into a ``LogRecord``: when the request
ended (epoch seconds, UTC), how long it took, and whether it failed.  ``parse_chunk`` parses a
block of bytes read from the log into numpy arrays, ``cut_windows`` groups them into the
canonical windows (``capplan.samples.Window``) and ``resume_offset`` says where to read next.

Three formats:

* ``nginx``: the site's own ``log_format`` string, compiled to a regular expression.  The time
  comes from ``$msec``, ``$time_iso8601`` or ``$time_local``; the latency from
  ``$request_time``, else ``$upstream_response_time`` (the attempts of a retried request are
  added).  A request failed when its ``$status`` is 500 or more.
* ``haproxy``: ``option httplog`` lines, with or without a syslog prefix.  The time is the
  accept date, which HAProxy writes in its host's local time without a zone (see
  ``HaproxyParser``); the latency is the last timer, ``Ta`` (2.x ``TR/Tw/Tc/Tr/Ta``) or ``Tt``
  (1.x ``Tq/Tw/Tc/Tr/Tt``).
* ``regex``: the user's regular expression with named groups ``time``, ``latency_ms`` or
  ``latency_s``, and optionally ``status``.
"""

from __future__ import annotations

import abc
import calendar
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from capplan.errors import InputError
from capplan.inventory import LogSpec
from capplan.samples import Window

__all__ = [
    "DEFAULT_NGINX_FORMAT",
    "NGINX_COMBINED",
    "Chunk",
    "HaproxyParser",
    "LineParser",
    "LogRecord",
    "NginxParser",
    "RegexParser",
    "cut_windows",
    "make_parser",
    "parse_chunk",
    "resume_offset",
]

NGINX_COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
DEFAULT_NGINX_FORMAT = NGINX_COMBINED + " $request_time $upstream_response_time"

_TIME_VARS = ("msec", "time_iso8601", "time_local")  # best first
_LATENCY_VARS = ("request_time", "upstream_response_time")
_MAX_EPOCH = 253402300800.0  # 10000-01-01: what datetime can hold
_CACHE_SIZE = 65536
_EXAMPLE_CHARS = 200
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}

_NUMBER = r"\d+(?:\.\d+)?"
_TIME_LOCAL = r"\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}"
_TIME_LOCAL_PARTS = re.compile(
    r"(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})", re.ASCII
)
_UPSTREAM_LIST = r"[^\s,]*(?:(?:, | : )[^\s,]*)*"  # "0.010, 0.020 : 0.005" (retries, redirects)
_UPSTREAM_LIST_LAST = r"[^\s,]*+(?:(?:, | : )[^\s,]*+)*+"  # the same, possessive
# Patterns for the variables whose shape is known; any other variable takes "anything but the
# next literal character".
_VAR_PATTERNS = {
    "msec": _NUMBER,
    "time_local": _TIME_LOCAL,
    "time_iso8601": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[+-]\d{2}:\d{2}|Z)",
    "status": r"\d{3}",
    "request_time": _NUMBER + "|-",
    "body_bytes_sent": r"\d+",
    "bytes_sent": r"\d+",
}
_STATUS = re.compile(r"-?\d{1,9}", re.ASCII)  # (int() refuses more than 4300 digits)
#: A duration at or above this (seconds, or ms for a latency_ms group) is no latency: 31 years.
_MAX_DURATION = 1e9
_FIELDS = ("time", "status", "request_time", "upstream")  # the groups an nginx line gives
_NGINX_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))", re.ASCII)


@dataclass(frozen=True)
class LogRecord:
    """
    One request: when it ended (epoch seconds, UTC), its latency (None: unknown), and whether
    it failed (HTTP status 500 or more, or aborted).
    """

    time: float
    latency_ms: float | None
    error: bool


class LineParser(abc.ABC):
    """
    Reads one format of access-log line.

    ``path`` is the log's path (for hints) and ``expected`` says what a line should look like
    (for messages).
    """

    def __init__(self, *, path: str, expected: str) -> None:
        self.path = path
        self.expected = expected

    def parse(self, line: str) -> LogRecord | None:
        """
        The record of one line (without its newline), or None when the line does not match.
        """
        values = self.values(line)
        if values is None:
            return None
        seconds, latency_ms, error = values
        return LogRecord(seconds, None if math.isnan(latency_ms) else latency_ms, error)

    @abc.abstractmethod
    def values(self, line: str) -> tuple[float, float, bool] | None:
        """
        ``parse`` without building a record: (time, latency in ms or nan, error), or None.
        """


def _epoch_ok(seconds: float) -> float | None:
    return seconds if math.isfinite(seconds) and 0 <= seconds < _MAX_EPOCH else None


def _time_local(text: str) -> float | None:
    """
    ``23/Nov/2026:07:56:28 +0000`` as epoch seconds (None when it is no valid time).
    """
    m = _TIME_LOCAL_PARTS.fullmatch(text)
    if m is None:
        return None
    day, mon, year, hour, minute, second, sign, off_h, off_m = m.groups()
    month = _MONTHS.get(mon.capitalize())
    if month is None:
        return None
    try:
        moment = datetime(int(year), month, int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    offset = (int(off_h) * 3600 + int(off_m) * 60) * (-1 if sign == "-" else 1)
    return _epoch_ok(calendar.timegm(moment.timetuple()) - offset)


def _time_iso(text: str) -> float | None:
    """
    An ISO-8601 time as epoch seconds; without an offset it is UTC.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return _epoch_ok(moment.timestamp())
    except (OverflowError, ValueError):
        return None


def _time_any(text: str) -> float | None:
    """
    Epoch seconds, nginx ``$time_local`` or ISO-8601.
    """
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return _epoch_ok(seconds)
    if _TIME_LOCAL_PARTS.fullmatch(text.strip()):
        return _time_local(text.strip())
    return _time_iso(text)


def _seconds(text: str) -> float | None:
    """
    A duration in seconds, or None for ``-``, empty or anything that is no number in
    ``0 <= value < _MAX_DURATION`` (so that it stays finite in ms, or summed over retries).
    """
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value < _MAX_DURATION else None


def _upstream_seconds(text: str) -> float | None:
    """
    ``$upstream_response_time``: one time, ``-``, or the attempts of a retried or redirected
    request (``0.010, 0.020 : 0.005``), which are added.
    """
    if "," not in text and ":" not in text:
        return _seconds(text)
    parts = [_seconds(p) for p in re.split(r"[,:]", text)]
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


class _Memo(dict[str, float]):
    """
    A bounded memo of time strings to epoch seconds (nan: not a time); many lines share one
    second, so most lookups are one dict hit.
    """

    def __init__(self, convert: Callable[[str], float | None]) -> None:
        super().__init__()
        self._convert = convert

    def __missing__(self, text: str) -> float:
        if len(self) >= _CACHE_SIZE:
            self.clear()
        value = self._convert(text)
        self[text] = seconds = math.nan if value is None else value
        return seconds


#: Shared by every parser of a run (all nodes' lines share their seconds); thread-safe enough:
#: two threads may convert the same string once each.
_LOCAL_TIMES = _Memo(_time_local)
_ISO_TIMES = _Memo(_time_iso)


class _BytesMemo(dict[bytes, float]):
    """
    A bounded memo of byte strings to numbers, through a conversion of their (ASCII) text.
    """

    def __init__(self, convert: Callable[[str], float]) -> None:
        super().__init__()
        self._convert = convert

    def __missing__(self, raw: bytes) -> float:
        if len(self) >= _CACHE_SIZE:
            self.clear()
        self[raw] = value = self._convert(raw.decode("ascii", errors="replace"))
        return value


def _request_ms(text: str) -> float:
    """
    ``$request_time`` in ms; nan when empty, ``-`` or no duration.
    """
    seconds = _seconds(text) if text else None
    return math.nan if seconds is None else seconds * 1000.0


def _upstream_ms(text: str) -> float:
    """
    ``$upstream_response_time`` in ms (the attempts added); nan when there is no duration.
    """
    seconds = _upstream_seconds(text)
    return math.nan if seconds is None else seconds * 1000.0


_LOCAL_TIMES_BYTES = _BytesMemo(_LOCAL_TIMES.__getitem__)
_ISO_TIMES_BYTES = _BytesMemo(_ISO_TIMES.__getitem__)
_REQUEST_MS = _BytesMemo(_request_ms)


def _unquote_format(text: str) -> str:
    """
    Accept a log_format pasted from nginx.conf as quoted pieces: ``'$a ' '"$b"'`` → ``$a "$b"``
    (after an optional ``escape=json`` or the like, which does not change the shape of a line).
    """
    pieces = re.fullmatch(r"\s*(?:escape=\w+\s+)?((?:'[^']*'\s*)+);?\s*", text)
    if pieces is None:
        return text
    return "".join(re.findall(r"'([^']*)'", pieces.group(1)))


def _nginx_hint(log_format: str, path: str) -> str:
    """
    The exact nginx lines that make a log capplan can read, built on the site's format.
    """
    names = {m.group(1) or m.group(2) for m in _NGINX_VAR.finditer(log_format)}
    fmt = log_format
    if not names & set(_TIME_VARS):
        fmt = "$msec " + fmt
    if not names & set(_LATENCY_VARS):
        fmt = fmt + " $request_time $upstream_response_time"
    tail = (
        "leave this node's log_format out (that format is capplan's default)"
        if fmt == DEFAULT_NGINX_FORMAT
        else f"set this node's log_format to '{fmt}'"
    )
    return (
        f"add to nginx's http block: log_format capplan '{fmt}'; access_log {path} capplan; "
        f"then reload nginx and {tail}"
    )


class NginxParser(LineParser):
    """
    Lines written by an nginx ``log_format``.

    Each ``$var`` / ``${var}`` becomes a group: known variables by their shape
    (``$status``, ``$msec``, ``$time_local``, ``$upstream_*`` lists, ...), any other one as
    "anything but the next literal character" (before a ``"``, a ``\\"`` does not end it, for
    ``escape=json``).  Literals match themselves; the whole line must match.  The format may be
    pasted as nginx.conf's quoted pieces, and ``combined`` names nginx's predefined format.
    """

    def __init__(self, log_format: str, *, path: str, source: str) -> None:
        fmt = _unquote_format(log_format)
        if fmt.strip() == "combined":
            fmt = NGINX_COMBINED
        super().__init__(path=path, expected=f"nginx log_format '{fmt}'")
        self.log_format = fmt
        names = [m.group(1) or m.group(2) for m in _NGINX_VAR.finditer(fmt)]
        time_var = next((v for v in _TIME_VARS if v in names), None)
        latency_vars = [v for v in _LATENCY_VARS if v in names]
        if time_var is None or not latency_vars:
            missing = (
                "no time variable ($msec, $time_iso8601 or $time_local)"
                if time_var is None
                else "no timing variable ($request_time or $upstream_response_time)"
            )
            raise InputError(
                f"the nginx log_format has {missing}, so capplan cannot measure the node",
                file=source,
                key="log_format",
                hint=_nginx_hint(fmt, path),
            )
        self._msec = time_var == "msec"
        groups = {time_var: "time", "status": "status", "request_time": "request_time"}
        groups["upstream_response_time"] = "upstream"
        pattern = _nginx_regex(fmt, groups)
        # a variable the format lacks is an empty group, so every line has all four
        pattern += "".join(f"(?P<{g}>)" for v, g in groups.items() if v not in names)
        self._regex = re.compile(pattern, re.ASCII)
        # Every line of a block at once, on its bytes: one match per line, the line itself
        # when bad.  (On bytes the pattern draws the same lines apart as on their UTF-8 text:
        # every literal and class boundary is ASCII, and no byte of a multi-byte character is.)
        self._block = re.compile(f"^(?:{pattern})\r?$|^(?P<bad>[^\n]*)$".encode(), re.MULTILINE)
        self._fields = [self._block.groupindex[g] - 1 for g in (*_FIELDS, "bad")]
        self._time = _ISO_TIMES if time_var == "time_iso8601" else _LOCAL_TIMES
        self._time_bytes = _ISO_TIMES_BYTES if time_var == "time_iso8601" else _LOCAL_TIMES_BYTES

    def values(self, line: str) -> tuple[float, float, bool] | None:
        """
        (time, latency in ms or nan, error) of one line, or None when it does not match.
        """
        m = self._regex.fullmatch(line)
        if m is None:
            return None
        return self._convert(*m.group(*_FIELDS))

    def _convert(
        self, stamp: str, status: str, request_time: str, upstream: str
    ) -> tuple[float, float, bool] | None:
        if self._msec:
            seconds = float(stamp)
            if not 0 <= seconds < _MAX_EPOCH:
                return None
        else:
            seconds = self._time[stamp]
            if seconds != seconds:  # nan: not a time
                return None
        latency = _request_ms(request_time)
        if latency != latency and upstream:  # nan: no request time
            latency = _upstream_ms(upstream)
        return seconds, latency, status >= "500"

    def parse_slice(self, body: bytes, start: int, end: int) -> _Slice:
        """
        The lines of ``body[start:end]`` (which ends with a newline), for ``parse_chunk``.

        One regex pass over the slice instead of one per line, and the fields converted
        column by column through memos (a log's lines share their seconds and most of their
        latencies): the work left per line in Python is a few dict hits.
        """
        count = body.count(b"\n", start, end)
        # (the last match is the empty one after the last newline)
        rows = self._block.findall(body, start, end)[:count]
        stamps, statuses, requests, upstreams = (
            list(map(itemgetter(at), rows)) for at in self._fields[:4]
        )
        bad: list[int] = []
        if b"" in stamps:  # lines that did not match: blank or bad
            good = np.array([bool(s) for s in stamps])
            other = self._fields[4]
            bad = [
                line
                for line in np.flatnonzero(~good).tolist()
                if rows[line][other] and not _blank(rows[line][other])
            ]
            index = np.flatnonzero(good)
            if not index.size:
                return _Slice(count, index, np.empty(0), np.empty(0), np.empty(0, bool), bad)
            pick = itemgetter(*index.tolist())
            # (itemgetter of one index gives the item itself, not a tuple of it)
            stamps, statuses, requests, upstreams = (
                list(pick(column)) if index.size > 1 else [pick(column)]
                for column in (stamps, statuses, requests, upstreams)
            )
        else:
            index = np.arange(count)
        k = index.size
        if self._msec:
            seconds = np.fromiter(map(float, stamps), np.float64, k)
            with np.errstate(invalid="ignore"):
                seconds[~((seconds >= 0) & (seconds < _MAX_EPOCH))] = math.nan
        else:
            seconds = np.fromiter(map(self._time_bytes.__getitem__, stamps), np.float64, k)
        latency = np.fromiter(map(_REQUEST_MS.__getitem__, requests), np.float64, k)
        for i in np.flatnonzero(np.isnan(latency)).tolist():
            if upstreams[i]:
                latency[i] = _upstream_ms(upstreams[i].decode("utf-8", errors="replace"))
        error = np.array(statuses, dtype=np.bytes_) >= b"500"
        # a line that matched with no time in it (nan) is a bad line, as in values()
        timed = ~np.isnan(seconds)
        if not timed.all():
            bad = sorted(bad + index[~timed].tolist())
            index, seconds, latency, error = (
                index[timed],
                seconds[timed],
                latency[timed],
                error[timed],
            )
        return _Slice(count, index, seconds, latency, error, bad)


def _nginx_regex(fmt: str, groups: dict[str, str]) -> str:
    """
    The regular expression for an nginx log_format; the first use of a variable in ``groups``
    is a named group, named by its value.
    """
    pieces: list[str] = []
    named: set[str] = set()
    tokens: list[tuple[str, str]] = []  # ("lit", text) or ("var", name)
    at = 0
    for m in _NGINX_VAR.finditer(fmt):
        if m.start() > at:
            tokens.append(("lit", fmt[at : m.start()]))
        tokens.append(("var", m.group(1) or m.group(2)))
        at = m.end()
    if at < len(fmt):
        tokens.append(("lit", fmt[at:]))
    for index, (kind, text) in enumerate(tokens):
        if kind == "lit":
            pieces.append(re.escape(text))
            continue
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if text in _VAR_PATTERNS:
            body = _VAR_PATTERNS[text]
        elif text.startswith("upstream_"):
            # last in the line, nothing can follow that backtracking into the list would free
            # (before a literal its class could swallow the literal's first character)
            body = _UPSTREAM_LIST_LAST if following is None else _UPSTREAM_LIST
        elif following is None:
            body = ".*"
        elif following[0] == "var" and (
            following[1] in _VAR_PATTERNS or following[1].startswith("upstream_")
        ):
            body = ".*?"
        elif following[0] == "var":
            # Two variables of unknown shape side by side ("$host$request_uri") cannot be told
            # apart: the next one matches both.  A lazy ".*?" here would try every split of a
            # line that does not match: quadratic in its length (cubic for three variables).
            body = ""
        # Before a literal, the variable cannot end anywhere but at that literal's first
        # character, which it never contains: its quantifiers are possessive (``*+``), which
        # match the same lines, without keeping the backtracking points.
        elif following[1][0] == '"':  # inside quotes: \" is escape=json's quote
            body = r'[^"\\\n]*+(?:\\.[^"\\\n]*+)*+'
        else:  # never a newline: a pattern must not run from one line into the next
            body = "[^" + re.escape(following[1][0]) + "\\n]*+"
        if text in groups and text not in named:
            named.add(text)
            pieces.append(f"(?P<{groups[text]}>{body})")
        else:
            pieces.append(f"(?:{body})")
    return "".join(pieces)


_HAPROXY_LINE = re.compile(
    r"\[(?P<date>\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2})(?:\.(?P<ms>\d{3}))?\] "
    r"\S+ \S+ "  # frontend, backend/server
    r"-?\d+/-?\d+/-?\d+/(?P<tr>-?\d+)/\+?(?P<ta>-?\d+) "  # TR/Tw/Tc/Tr/Ta or Tq/Tw/Tc/Tr/Tt
    r"(?P<status>-?\d+) ",
    re.ASCII,
)


class HaproxyParser(LineParser):
    """
    HAProxy ``option httplog`` lines, with or without a syslog prefix.

    HAProxy writes the accept date in its host's local time without a zone: ``utc_offset_s`` is
    that host's offset from UTC in seconds (3600 for UTC+1; 0, the default, for a host on UTC).

    The latency is the last timer (``Ta`` in 2.x, ``Tt`` in 1.x).  A request failed when its
    status is 500 or more, its status is -1 or the last timer is -1 (aborted).  When ``Tr`` is
    -1 no server answered: the latency is unknown, and a status below 500 (a redirect, deny or
    bad request that HAProxy answered itself) is not a failure.
    """

    def __init__(self, *, path: str, utc_offset_s: float = 0.0) -> None:
        super().__init__(
            path=path,
            expected="HAProxy 'option httplog' lines, e.g. '127.0.0.1:5432 "
            "[23/Nov/2026:07:56:28.123] fe be/srv1 0/0/1/12/13 200 512 - - ---- 1/1/0/0/0 0/0 "
            '"GET / HTTP/1.1"\'',
        )
        self.utc_offset_s = float(utc_offset_s)
        self._second = _Memo(self._local_second)

    def _local_second(self, text: str) -> float | None:
        seconds = _time_local(text + " +0000")
        return None if seconds is None else seconds - self.utc_offset_s

    def values(self, line: str) -> tuple[float, float, bool] | None:
        """
        (time, latency in ms or nan, error) of one line, or None when it is no httplog line.
        """
        m = _HAPROXY_LINE.search(line)
        if m is None:
            return None
        date, ms, tr, ta, status_text = m.group("date", "ms", "tr", "ta", "status")
        if len(status_text) > 9 or len(ta) > 15:  # no status or timer (ms) is that long
            return None
        seconds = self._second[date]
        if seconds != seconds:  # nan: not a time
            return None
        if ms:
            seconds += int(ms) / 1000.0
        if not 0 <= seconds < _MAX_EPOCH:
            return None
        status = int(status_text)
        if status < 0 or ta[0] == "-":  # aborted
            return seconds, math.nan, True
        if tr[0] == "-":  # no server answered
            return seconds, math.nan, status >= 500
        return seconds, float(ta), status >= 500


#: A user's regex reads lines of at most this many characters; longer ones count as unparsed.
#: An unanchored pattern (``(?P<time>\S+) …``) costs time quadratic in the line's length under
#: ``re.search``, and a client controls how long its request line is: 20 kB took 2.4 s.
REGEX_LINE_MAX = 8192


class RegexParser(LineParser):
    """
    Lines matched (``re.search``, on lines of at most REGEX_LINE_MAX characters) by a user's
    regular expression with named groups ``time``
    (epoch seconds, ISO-8601 or nginx ``$time_local``), ``latency_ms`` or ``latency_s``, and
    optionally ``status`` (500 or more is a failure).
    """

    _HINT = (
        "give a Python regular expression with named groups: time (epoch seconds, ISO-8601 or "
        "23/Nov/2026:07:56:28 +0000), latency_ms or latency_s, and optionally status, e.g. "
        r"'^(?P<time>\S+) (?P<status>\d+) (?P<latency_ms>[\d.]+)$'"
    )

    def __init__(self, pattern: str, *, path: str, source: str) -> None:
        super().__init__(path=path, expected=f"lines matching the regex {pattern!r}")
        try:
            self._regex = re.compile(pattern)
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            raise InputError(
                f"the regex does not compile: {exc}", file=source, key="regex", hint=self._HINT
            ) from None
        groups = self._regex.groupindex
        if "time" not in groups:
            raise InputError(
                "the regex has no named group 'time'", file=source, key="regex", hint=self._HINT
            )
        if "latency_ms" in groups:
            self._latency_group, self._scale = "latency_ms", 1.0
        elif "latency_s" in groups:
            self._latency_group, self._scale = "latency_s", 1000.0
        else:
            raise InputError(
                "the regex has no named group 'latency_ms' or 'latency_s'",
                file=source,
                key="regex",
                hint=self._HINT,
            )
        self._has_status = "status" in groups
        self._time = _Memo(_time_any)

    def values(self, line: str) -> tuple[float, float, bool] | None:
        """
        (time, latency in ms or nan, error) of one line, or None when the regex does not match
        or a group is unreadable.
        """
        if len(line) > REGEX_LINE_MAX:
            return None  # unparsed, and counted so: see REGEX_LINE_MAX
        m = self._regex.search(line)
        if m is None:
            return None
        stamp = m.group("time")
        seconds = self._time[stamp] if stamp else math.nan
        if seconds != seconds:  # nan: not a time
            return None
        raw = m.group(self._latency_group)
        latency = None
        if raw and raw.strip() != "-":
            latency = _seconds(raw)
            if latency is None:
                return None
            latency *= self._scale
        error = False
        if self._has_status:
            status = (m.group("status") or "").strip()
            if status and status != "-":
                if not _STATUS.fullmatch(status):
                    return None
                error = not 0 <= int(status) < 500
        return seconds, math.nan if latency is None else latency, error


def make_parser(spec: LogSpec, source: str, *, utc_offset_s: float = 0.0) -> LineParser:
    """
    The line parser for a node's log.

    Args:
        spec: The node's ``log`` from the inventory.
        source: Where the spec came from, for messages (e.g. ``inventory.yaml``).
        utc_offset_s: For HAProxy logs: the HAProxy host's offset from UTC in seconds (its
            log's times are local, without a zone).

    Raises:
        InputError: an nginx format without a time or timing variable (the hint gives the
            nginx lines to add), or a regex that does not compile or lacks a group.
    """
    if spec.format == "haproxy":
        return HaproxyParser(path=spec.path, utc_offset_s=utc_offset_s)
    if spec.format == "regex":
        return RegexParser(spec.regex or "", path=spec.path, source=source)
    return NginxParser(spec.log_format or DEFAULT_NGINX_FORMAT, path=spec.path, source=source)


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Bytes of a block parsed at once (``parse_chunk``): the regex matches of a slice take about
#: 150 bytes a line while it is converted, so even a slice of nothing but newlines holds
#: about 25 MB at most (a slice of real lines, about 2 MB).
_SLICE_BYTES = 1 << 17


class LineTable(NamedTuple):
    """
    The lines of a block: for each parsed one its byte offset in the block, its time (epoch
    seconds), latency (ms, nan: unknown) and whether it failed; the numbers (from 0) and
    offsets of the first bad ones (blank lines are neither).
    """

    start: IntArray
    time: FloatArray
    latency_ms: FloatArray
    error: npt.NDArray[np.bool_]
    bad_line: IntArray
    bad_start: IntArray


class _Slice(NamedTuple):
    """
    What a parser makes of one slice of a block: its line count, and its parsed lines'
    numbers (within the slice) and fields, and its bad lines' numbers.
    """

    lines: int
    parsed: IntArray
    time: FloatArray
    latency_ms: FloatArray
    error: npt.NDArray[np.bool_]
    bad: list[int]


def _blank(raw: bytes) -> bool:
    """
    Whether a line (without its newline) is blank: only white space as ``str.isspace`` has it
    (on ASCII that is ``bytes.isspace`` and the four separators ``\\x1c``–``\\x1f``).
    """
    if raw.isascii():
        return not raw.translate(None, _ASCII_SPACE)
    return raw.decode("utf-8", errors="replace").isspace()


_ASCII_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def _by_slices(
    body: bytes, parse: Callable[[bytes, int, int], _Slice], keep_bad: int
) -> tuple[LineTable, int]:
    """
    :class:`LineTable` of a block (ending with a newline), parsed in slices of about
    ``_SLICE_BYTES`` cut at newlines, and the number of bad lines: what a slice's parsing
    holds at once stays bounded whatever the block's size, and of its lines only the parsed
    ones and the first ``keep_bad`` bad ones are kept.
    """
    pieces: list[tuple[IntArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]] = []
    bad_lines: list[IntArray] = []
    bad_starts: list[IntArray] = []
    start = first = bad_count = 0
    while start < len(body):
        end = body.rfind(b"\n", start, start + _SLICE_BYTES) + 1
        if end <= start:  # one line longer than a slice
            end = body.index(b"\n", start) + 1
        part = parse(body, start, end)
        view = np.frombuffer(body, dtype=np.uint8, count=end - start, offset=start)
        newlines = np.flatnonzero(view == ord("\n"))
        starts = start + np.concatenate(([0], newlines[:-1] + 1)).astype(np.int64)
        pieces.append((starts[part.parsed], part.time, part.latency_ms, part.error))
        bad_count += len(part.bad)
        if part.bad and sum(b.size for b in bad_lines) < keep_bad:
            bad = np.array(part.bad[:keep_bad], dtype=np.int64)
            bad_lines.append(first + bad)
            bad_starts.append(starts[bad])
        first += part.lines
        start = end
    empty = np.empty(0, dtype=np.int64)
    if not pieces:
        table = LineTable(empty, np.empty(0), np.empty(0), np.empty(0, bool), empty, empty)
        return table, 0
    starts, time, latency, error = (np.concatenate(c) for c in zip(*pieces, strict=True))
    table = LineTable(
        starts,
        time,
        latency,
        error,
        np.concatenate(bad_lines)[:keep_bad] if bad_lines else empty,
        np.concatenate(bad_starts)[:keep_bad] if bad_starts else empty,
    )
    return table, bad_count


def _line_slicer(parser: LineParser) -> Callable[[bytes, int, int], _Slice]:
    """
    A slice parser going line by line through ``parser.values``.
    """

    def parse(body: bytes, start: int, end: int) -> _Slice:
        raw = body[start:end]
        if raw.isascii():
            texts = raw.decode("ascii").split("\n")[:-1]
        else:
            texts = [line.decode("utf-8", errors="replace") for line in raw.split(b"\n")[:-1]]
        parsed: list[int] = []
        rows: list[tuple[float, float, bool]] = []
        bad: list[int] = []
        for index, line in enumerate(texts):
            line = line.removesuffix("\r")
            if not line or line.isspace():
                continue
            values = parser.values(line)
            if values is None:
                bad.append(index)
                continue
            parsed.append(index)
            rows.append(values)
        table = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return _Slice(
            len(texts),
            np.array(parsed, dtype=np.int64),
            table[:, 0].copy(),
            table[:, 1].copy(),
            table[:, 2] != 0,
            bad,
        )

    return parse


@dataclass(frozen=True, eq=False)
class Chunk:
    """
    The parsed lines of a block of log bytes, in file order.

    ``time`` (epoch seconds), ``latency_ms`` (nan: unknown), ``error`` and ``line_start`` (byte
    offset of the line in the block) have one entry per parsed line.  ``consumed`` is the
    number of bytes through the last newline: a trailing piece without one is left for the
    next read.  ``lines`` counts the complete non-blank lines, ``bad_lines`` those that did
    not parse, and ``bad_examples`` gives the first few as (line number in the block, text),
    ``bad_offsets`` their byte offsets in the file (the block's ``offset`` added).
    """

    time: FloatArray
    latency_ms: FloatArray
    error: npt.NDArray[np.bool_]
    line_start: npt.NDArray[np.int64]
    consumed: int
    lines: int
    bad_lines: int
    bad_examples: tuple[tuple[int, str], ...]
    bad_offsets: tuple[int, ...] = ()


_COMBINED_REGEX = re.compile(_nginx_regex(NGINX_COMBINED, {}), re.ASCII)


def parse_chunk(
    data: bytes, parser: LineParser, *, source: str, offset: int = 0, max_examples: int = 3
) -> Chunk:
    """
    Parse the complete lines of a block of log bytes, read from byte ``offset`` of the file.

    Lines are split on ``\\n`` and decoded as UTF-8 (bad bytes replaced); blank lines are
    skipped.  A line that does not parse is counted in ``bad_lines``.

    Raises:
        InputError: when not one line of a block with lines parses: the log is not in the
            expected format (for an nginx ``combined`` log without timings, the hint gives the
            nginx lines to add).
    """
    consumed = data.rfind(b"\n") + 1
    body = data[:consumed]
    slicer = parser.parse_slice if isinstance(parser, NginxParser) else _line_slicer(parser)
    table, bad = _by_slices(body, slicer, keep_bad=max(max_examples, 1))
    bad_examples: list[tuple[int, str]] = []
    bad_offsets: list[int] = []
    for index, start in zip(
        table.bad_line[:max_examples].tolist(), table.bad_start[:max_examples].tolist(), strict=True
    ):
        bad_examples.append((index + 1, _line_at(body, start)[:_EXAMPLE_CHARS]))
        bad_offsets.append(offset + start)
    lines = int(table.start.size) + bad
    if lines and not table.start.size:
        start = int(table.bad_start[0])
        first = (int(table.bad_line[0]) + 1, _line_at(body, start))
        _refuse(first, parser, source, offset + start if offset else None)
    return Chunk(
        time=table.time,
        latency_ms=table.latency_ms,
        error=table.error,
        line_start=table.start,
        consumed=consumed,
        lines=lines,
        bad_lines=bad,
        bad_examples=tuple(bad_examples),
        bad_offsets=tuple(bad_offsets),
    )


def _line_at(body: bytes, start: int) -> str:
    """
    The line that starts at byte ``start`` of a block, as text (without its line end).
    """
    raw = body[start : body.find(b"\n", start)]
    return raw.decode("utf-8", errors="replace").removesuffix("\r")


def _refuse(first: tuple[int, str], parser: LineParser, source: str, at_byte: int | None) -> None:
    """
    Refuse a block no line of which parses. ``at_byte``: where the first line starts when the
    block was read from inside the file (its line number there is not known).
    """
    number: int | None
    number, line = first
    if at_byte is not None:
        number = None
        source = f"{source} (the line at byte {at_byte})"
    if _COMBINED_REGEX.fullmatch(line):
        raise InputError(
            "the log has no timing fields: its lines are nginx 'combined', which has no "
            "$request_time or $upstream_response_time",
            file=source,
            line=number,
            hint=_nginx_hint(NGINX_COMBINED, parser.path),
        )
    raise InputError(
        f"no line is in the expected format; the first reads {line[:_EXAMPLE_CHARS]!r}",
        file=source,
        line=number,
        hint=f"expected {parser.expected}; set the node's log format in the inventory",
    )


def _window_index(time: FloatArray, window_s: float) -> FloatArray:
    """
    floor(time / window_s), corrected for rounding so that index·w <= t < (index + 1)·w.
    """
    index = np.floor(time / window_s)
    index -= index * window_s > time
    index += (index + 1) * window_s <= time
    return index


def cut_windows(
    chunk: Chunk, *, node: str, window_s: float, since: float, until: float
) -> list[Window]:
    """
    Group the records with ``since <= time < until`` into windows of ``window_s`` seconds.

    Windows are aligned to multiples of ``window_s`` since the epoch; a window without a
    request is not emitted (pass ``since`` and ``until`` on window boundaries so every window
    is complete).  Latency statistics use the records whose latency is known (None when there
    is none); ``concurrency`` is the sum of latencies over the window's length (Little's law).

    Raises:
        ValueError: when ``window_s`` is not positive.
    """
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a positive number of seconds, not {window_s!r}")
    keep = (chunk.time >= since) & (chunk.time < until)
    times = chunk.time[keep]
    if times.size == 0:
        return []
    order = np.argsort(times, kind="stable")
    times = times[order]
    latency = chunk.latency_ms[keep][order]
    failed = chunk.error[keep][order]
    index = _window_index(times, window_s)
    keys, first = np.unique(index, return_index=True)
    requests = np.diff(np.append(first, times.size))
    error_counts = np.add.reduceat(failed.astype(np.int64), first)
    windows: list[Window] = []
    for key, lat, count, n_errors in zip(
        keys, np.split(latency, first[1:]), requests, error_counts, strict=True
    ):
        known = lat[~np.isnan(lat)]
        mean = p50 = p95 = p99 = concurrency = None
        if known.size:
            mean = float(np.mean(known))
            p50, p95, p99 = (float(p) for p in np.percentile(known, [50, 95, 99]))
            concurrency = float(np.sum(known)) / 1000.0 / window_s
        windows.append(
            Window(
                node=node,
                start=datetime.fromtimestamp(float(key) * window_s, tz=UTC),
                seconds=float(window_s),
                requests=int(count),
                errors=int(n_errors),
                mean_ms=mean,
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
                concurrency=concurrency,
                cpu_util=None,
            )
        )
    return windows


def resume_offset(chunk: Chunk, until: float) -> int:
    """
    Where to read next: the byte offset of the first line (in file order) whose time is
    ``until`` or later, else ``chunk.consumed``.
    """
    later = np.flatnonzero(chunk.time >= until)
    return int(chunk.line_start[later[0]]) if later.size else chunk.consumed
