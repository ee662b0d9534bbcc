"""
HAProxy's stats socket: the CSV answer of ``show stat``, a pure function of its text.

The first line is the header, ``# pxname,svname,qcur,...``; columns are read by name, since
each HAProxy version adds some.  One row per frontend, backend and server.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

from capplan.errors import InputError

__all__ = ["INT_COLUMNS", "StatRow", "parse_show_stat"]

INT_COLUMNS = (
    "scur",
    "smax",
    "slim",
    "qcur",
    "qmax",
    "qlimit",
    "weight",
    "rate",
    "stot",
    "hrsp_5xx",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
)
_HINT = "expected the answer of 'show stat' on HAProxy's stats socket"


@dataclass(frozen=True)
class StatRow:
    """
    One row of ``show stat``: a frontend (``server`` is ``FRONTEND``), a backend
    (``BACKEND``) or a server.

    Counters are None when the cell is empty (HAProxy leaves a column empty where it does not
    apply).  ``qtime``, ``ctime``, ``rtime`` and ``ttime`` are averages in ms over the last
    1024 requests; ``rate`` is sessions per second over the last second.  ``fields`` has every
    column by name, as text.
    """

    proxy: str
    server: str
    status: str
    scur: int | None
    smax: int | None
    slim: int | None
    qcur: int | None
    qmax: int | None
    qlimit: int | None
    weight: int | None
    rate: int | None
    stot: int | None
    hrsp_5xx: int | None
    qtime: int | None
    ctime: int | None
    rtime: int | None
    ttime: int | None
    fields: dict[str, str] = field(default_factory=dict, hash=False)


def _cells(line: str, source: str, number: int) -> list[str]:
    try:
        return next(csv.reader([line], strict=True))
    except (csv.Error, StopIteration) as exc:
        raise InputError(f"not a CSV line: {exc}", file=source, line=number, hint=_HINT) from None


def _integer(text: str, column: str, source: str, number: int) -> int | None:
    value = text.strip()
    if not value:
        return None
    digits = value[1:] if value[0] in "+-" else value
    # HAProxy's counters are 64-bit: at most 20 digits (int() refuses more than 4300)
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 20):
        raise InputError(
            f"{value[:40]!r} is not a whole number",
            file=source,
            line=number,
            key=column,
            hint=_HINT + ", whose counters are whole numbers",
        )
    return int(value)


def _row(values: dict[str, str], source: str, number: int) -> StatRow:
    def count(column: str) -> int | None:
        return _integer(values.get(column, ""), column, source, number)

    return StatRow(
        proxy=values["pxname"],
        server=values["svname"],
        status=values.get("status", ""),
        scur=count("scur"),
        smax=count("smax"),
        slim=count("slim"),
        qcur=count("qcur"),
        qmax=count("qmax"),
        qlimit=count("qlimit"),
        weight=count("weight"),
        rate=count("rate"),
        stot=count("stot"),
        hrsp_5xx=count("hrsp_5xx"),
        qtime=count("qtime"),
        ctime=count("ctime"),
        rtime=count("rtime"),
        ttime=count("ttime"),
        fields=values,
    )


def parse_show_stat(text: str, source: str) -> list[StatRow]:
    """
    Parse the answer of ``show stat``.

    Args:
        text: The whole answer (header, rows, and the blank line that ends it).
        source: Where it came from, for messages (e.g. ``lb-1:/run/haproxy/admin.sock``).

    Returns:
        The rows in order.

    Raises:
        InputError: no ``# `` header, a header without ``pxname`` or ``svname``, a row whose
            number of cells differs from the header's, or a counter that is no whole number.
    """
    header: list[str] | None = None
    rows: list[StatRow] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if header is None:
            if not line.startswith("# "):
                raise InputError(
                    f"the first line {line[:80]!r} is not the '# pxname,svname,...' header",
                    file=source,
                    line=number,
                    hint=_HINT,
                )
            header = [name.strip() for name in _cells(line[2:], source, number)]
            for needed in ("pxname", "svname"):
                if needed not in header:
                    raise InputError(
                        f"the header has no {needed!r} column",
                        file=source,
                        line=number,
                        key="header",
                        hint=_HINT,
                    )
            continue
        cells = _cells(line, source, number)
        if len(cells) != len(header):
            raise InputError(
                f"{len(cells)} cells where the header has {len(header)}",
                file=source,
                line=number,
                hint=_HINT,
            )
        values = {name: cell for name, cell in zip(header, cells, strict=True) if name}
        rows.append(_row(values, source, number))
    if header is None:
        raise InputError("the answer is empty", file=source, line=1, hint=_HINT)
    return rows
