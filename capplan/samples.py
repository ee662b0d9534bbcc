"""
The canonical samples CSV (a DESIGN.md contract): parsing and writing, pure functions of text.

``node,start,seconds,requests,errors,mean_ms,p50_ms,p95_ms,p99_ms,concurrency,cpu_util``

One row per node per window.  A window is identified by (``node``, ``start``).  ``start`` is
ISO-8601 or epoch seconds; a time without an offset is UTC; writing gives ISO-8601 UTC with ``Z``.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime, timedelta

from capplan.errors import InputError
from capplan.names import check_name

__all__ = [
    "COLUMNS",
    "REQUIRED_COLUMNS",
    "LoadPoint",
    "NumberedWindow",
    "Window",
    "format_time",
    "parse_load_table",
    "parse_samples",
    "parse_time",
    "write_samples",
]

COLUMNS = (
    "node",
    "start",
    "seconds",
    "requests",
    "errors",
    "mean_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "concurrency",
    "cpu_util",
)
REQUIRED_COLUMNS = ("node", "start", "seconds", "requests", "errors")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATENCY_HINT = "write milliseconds, e.g. 21.5, or leave the cell empty when unknown"
#: What to write in each column (the hint of an error in it).
_COLUMN_HINTS = {
    "node": "write the node's name as in the inventory, e.g. web-1",
    "start": "write ISO-8601 (2026-11-20T10:00:00Z) or epoch seconds",
    "seconds": "write the window's length in seconds, e.g. 60",
    "requests": "write the window's number of requests, a whole number, e.g. 1200",
    "errors": "write the window's number of failed requests, a whole number",
    "mean_ms": _LATENCY_HINT,
    "p50_ms": _LATENCY_HINT,
    "p95_ms": _LATENCY_HINT,
    "p99_ms": _LATENCY_HINT,
    "concurrency": "write the mean number of requests in progress, e.g. 0.43, or leave it empty",
    "cpu_util": "write utilization as a fraction, e.g. 0.42 for 42%",
}


def _quote(text: str, limit: int = 40) -> str:
    # A message quotes a bad value, never a whole megabyte of it.
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


@dataclass(frozen=True)
class Window:
    """
    One node's measurements over one time window.

    Latencies are in milliseconds; ``cpu_util`` is a fraction 0..1; None means unknown.
    """

    node: str
    start: datetime
    seconds: float
    requests: int
    errors: int
    mean_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    concurrency: float | None = None
    cpu_util: float | None = None

    @property
    def rate(self) -> float:
        """
        Offered rate in requests per second: requests / seconds.
        """
        return self.requests / self.seconds

    @property
    def end(self) -> datetime:
        """
        The end of the window.
        """
        return self.start + timedelta(seconds=self.seconds)

    def differences(self, other: Window) -> list[str]:
        """
        The names of the columns whose values differ from ``other``'s.
        """
        return [
            f.name
            for f, a, b in zip(fields(self), astuple(self), astuple(other), strict=True)
            if a != b
        ]


@dataclass(frozen=True)
class NumberedWindow:
    """
    A window with the line of the file it came from (for error messages).
    """

    line: int
    window: Window


def parse_time(text: str) -> datetime:
    """
    Parse an ISO-8601 time or epoch seconds; a time without an offset is UTC.

    Args:
        text: ``2026-11-20T10:00:00Z``, ``2026-11-20 10:00:00+01:00``, ``1763632800``, ...

    Returns:
        An aware datetime in UTC.

    Raises:
        ValueError: when the text is neither.
    """
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or not 0 <= seconds < 253402300800:
            raise ValueError(f"{_quote(text)} is not a time between 1970 and 9999 in epoch seconds")
        return _EPOCH + timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{_quote(text)} is not a time: write ISO-8601 (2026-11-20T10:00:00Z) or epoch seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-01:00, 0001-01-01T00:00+01:00
        utc = None
    if utc is None or utc < _EPOCH:  # (format_time writes no year before 1000 back readably)
        raise ValueError(f"{_quote(text)} is not a time between 1970 and 9999")
    return utc


def format_time(moment: datetime) -> str:
    """
    Format a time as ISO-8601 UTC with ``Z`` (microseconds only when not zero).
    """
    utc = moment.astimezone(UTC)
    spec = "%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return utc.strftime(spec)


def _number(text: str, column: str, *, integer: bool = False) -> float | int:
    try:
        value: float | int = int(text) if integer else float(text)
    except ValueError:  # (also an integer of more than 4300 digits)
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"{_quote(text)} is not {kind}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{_quote(text)} is not a finite number")
    if value < 0:
        raise ValueError(f"{text[:40]} is negative; {column} must be 0 or more")
    return value


def _check_window(w: Window, now: datetime | None) -> None:
    """
    Cross-field checks; raise InputError with the column at fault (file/line added by caller).
    """
    if w.seconds <= 0:
        raise InputError(
            f"{w.seconds!r} is not a positive window length",
            key="seconds",
            hint=_COLUMN_HINTS["seconds"],
        )
    try:
        end: datetime | None = w.end
    except OverflowError:  # timedelta or datetime out of range
        end = None
    if end is None:
        raise InputError(
            f"the window {format_time(w.start)} + {w.seconds:g}s ends after the year 9999",
            key="seconds",
            hint=_COLUMN_HINTS["seconds"],
        )
    if w.errors > w.requests:
        raise InputError(
            f"{w.errors} errors is more than the window's {w.requests} requests",
            key="errors",
            hint="errors counts the failed requests among requests: check the two columns",
        )
    if w.cpu_util is not None and w.cpu_util > 1:
        raise InputError(
            f"{w.cpu_util!r} is not a fraction in 0..1",
            key="cpu_util",
            hint="write utilization as a fraction, e.g. 0.42 for 42%",
        )
    if w.requests > 0 and w.mean_ms is None:
        raise InputError(
            "empty, but the window has requests", key="mean_ms", hint="give the mean latency"
        )
    previous: tuple[str, float] | None = None
    for column in ("p50_ms", "p95_ms", "p99_ms"):
        value = getattr(w, column)
        if value is None:
            continue
        if previous is not None and value < previous[1]:
            raise InputError(
                f"{value!r} is below {previous[0]} {previous[1]!r}: percentiles must not decrease",
                key=column,
                hint="check that the p50_ms, p95_ms and p99_ms cells are not swapped",
            )
        previous = (column, value)
    if now is not None and end > now:
        raise InputError(
            f"the window {format_time(w.start)} + {w.seconds:g}s has not ended yet "
            f"(now {format_time(now)})",
            key="start",
            hint="only complete windows are stored; check the clock or leave the row out",
        )


def _records(text: str, file: str) -> Iterator[tuple[int, list[str]]]:
    """
    The CSV records of ``text``, each with the line it ends on; a CSV error is an InputError.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a cell above the csv module's field size limit
            raise InputError(
                f"not a CSV line: {exc}",
                file=file,
                line=max(1, reader.line_num),
                hint="check for a double quote that is not closed (a cell holds at most "
                f"{csv.field_size_limit()} characters)",
            ) from None
        yield reader.line_num, cells


def csv_table(
    text: str, file: str, *, expected: str
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """
    The header (cells stripped) and the rows of a CSV text, each row with the line it ends on.

    A byte-order mark is dropped; blank rows are skipped.  An empty file, broken quoting and a
    row whose cell count is not the header's are InputErrors at their line (``expected``
    names the header in the empty file's hint).
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise InputError(
            "the file is empty", file=file, line=1, hint=f"expected a header line: {expected}"
        )
    records = _records(text, file)
    header = [h.strip() for h in next(records, (1, [""]))[1]]

    def rows() -> Iterator[tuple[int, list[str]]]:
        for line, cells in records:
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise InputError(
                    f"{len(cells)} cells where the header has {len(header)}",
                    file=file,
                    line=line,
                    hint="check for a missing or extra comma",
                )
            yield line, cells

    return header, rows()


def _parse_row(row: dict[str, str], now: datetime | None) -> Window:
    values: dict[str, object] = {}
    for column in COLUMNS:
        text = (row.get(column) or "").strip()
        try:
            if column == "node":
                if not text:
                    raise ValueError("empty; every row needs the node's name")
                if len(text) > 63:
                    raise ValueError(f"{_quote(text)} is longer than 63 characters")
                values[column] = check_name(text)
            elif column == "start":
                if not text:
                    raise ValueError("empty; every row needs the window's start time")
                values[column] = parse_time(text)
            elif not text:
                if column in REQUIRED_COLUMNS:
                    raise ValueError("empty, but this column is required")
                values[column] = None
            else:
                values[column] = _number(text, column, integer=column in ("requests", "errors"))
        except ValueError as exc:
            raise InputError(str(exc), key=column, hint=_COLUMN_HINTS[column]) from None
    window = Window(**values)  # type: ignore[arg-type]
    _check_window(window, now)
    return window


def parse_samples(
    text: str, file: str = "<stdin>", *, now: datetime | None = None
) -> list[NumberedWindow]:
    """
    Parse the canonical samples CSV.

    Every problem is reported as ``FILE:LINE: column: what is wrong``; the first one found stops
    the parse, so a caller that stores the result stores all of the file or nothing.  The same
    window twice with the same values is kept once; with different values it is an error.

    Args:
        text: The whole file.
        file: Its name, for messages.
        now: Windows ending after this time are incomplete and refused (None: no check).

    Returns:
        The windows in file order, each with its line number.
    """
    header, records = csv_table(text, file, expected=",".join(COLUMNS))
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise InputError(
            f"unknown column {_quote(unknown[0])}",
            file=file,
            line=1,
            key="header",
            hint="the columns are " + ",".join(COLUMNS),
        )
    seen_twice = sorted(h for h, n in Counter(header).items() if n > 1)
    if seen_twice:
        raise InputError(
            f"column {seen_twice[0]!r} appears twice",
            file=file,
            line=1,
            key="header",
            hint="keep one of them",
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"missing required column {missing[0]!r}",
            file=file,
            line=1,
            key="header",
            hint="the required columns are " + ",".join(REQUIRED_COLUMNS),
        )
    out: list[NumberedWindow] = []
    first_line: dict[tuple[str, datetime], NumberedWindow] = {}
    for line, cells in records:
        try:
            window = _parse_row(dict(zip(header, cells, strict=True)), now)
        except InputError as exc:
            raise InputError(
                exc.problem, file=file, line=line, key=exc.key, hint=exc.hint
            ) from None
        identity = (window.node, window.start)
        earlier = first_line.get(identity)
        if earlier is not None:
            if earlier.window == window:
                continue
            diff = window.differences(earlier.window)
            raise InputError(
                f"window {window.node} @ {format_time(window.start)} is also on line "
                f"{earlier.line} with other values ({', '.join(diff)})",
                file=file,
                line=line,
                key=diff[0],
                hint="a window is identified by node and start: keep one of the two rows",
            )
        numbered = NumberedWindow(line, window)
        first_line[identity] = numbered
        out.append(numbered)
    return out


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_samples(windows: Iterable[Window]) -> Iterator[str]:
    """
    Write windows as the canonical CSV, one line at a time (header first, ``\\n`` endings).

    Floats are written with Python's shortest round-trip form, so reading back gives the same
    values bit for bit.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    yield buffer.getvalue()
    for window in windows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_cell(v) for v in astuple(window)])
        yield buffer.getvalue()


@dataclass(frozen=True)
class LoadPoint:
    """
    One row of a standalone ``load,throughput`` table (e.g. concurrency N versus throughput X).
    """

    load: float
    throughput: float


def parse_load_table(text: str, file: str = "<stdin>") -> list[LoadPoint]:
    """
    Parse a ``load,throughput`` CSV (header required; extra columns refused).

    Args:
        text: The whole file.
        file: Its name, for messages.

    Returns:
        The rows in file order.
    """
    header, records = csv_table(text, file, expected="load,throughput")
    if sorted(header) != ["load", "throughput"]:
        raise InputError(
            f"the header is {_quote(','.join(header), 80)}",
            file=file,
            line=1,
            key="header",
            hint="a load table has exactly the columns load,throughput",
        )
    out: list[LoadPoint] = []
    for line, cells in records:
        row = dict(zip(header, (c.strip() for c in cells), strict=True))
        values: dict[str, float] = {}
        for column in ("load", "throughput"):
            try:
                values[column] = float(_number(row[column], column))
            except ValueError as exc:
                raise InputError(
                    str(exc), file=file, line=line, key=column, hint="write a number, e.g. 12.5"
                ) from None
        if values["load"] <= 0:
            raise InputError(
                "load must be positive",
                file=file,
                line=line,
                key="load",
                hint="load is the offered load (e.g. the concurrency N), above 0",
            )
        out.append(LoadPoint(values["load"], values["throughput"]))
    return out
