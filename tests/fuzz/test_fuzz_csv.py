"""
The samples CSV and the load table (``capplan.samples``): any text gives windows or an
InputError naming FILE:LINE with a hint; big inputs stay within the stated bounds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from hypothesis import example
from hypothesis import strategies as st

from bench.fuzz.targets import TARGETS, check, seeds

from .budget import MAX_BYTES
from .fuzzing import assert_bounded, fit, fuzz, long_line, many_lines
from .strategies import evil, text_inputs

HEADER = "node,start,seconds,requests,errors,mean_ms,p50_ms,p95_ms,p99_ms,concurrency,cpu_util\n"
ROW = "web-1,2026-11-20T10:00:00Z,60,1200,1,21.5,18,40,75,0.43,0.31\n"
SHORT_HEADER = "node,start,seconds,requests,errors\n"
ROW_TAIL = "60,1200,1,21.5,18,40,75,0.43,0.31\n"
FAMILY = "samples CSV"
SIZE = MAX_BYTES[FAMILY]


@st.composite
def bad_cell(draw: st.DrawFn, name: str) -> str:
    """The seed CSV with one cell replaced by a bad value (quoted as csv writes it)."""
    rows = list(csv.reader(io.StringIO(seeds(name)[0], newline="")))
    row = draw(st.integers(0, len(rows) - 1))
    cell = draw(st.integers(0, len(rows[row]) - 1))
    rows[row][cell] = draw(evil())
    out = io.StringIO()
    csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows(rows)
    return out.getvalue()


@fuzz("samples", st.one_of(text_inputs("samples", ",:-T "), bad_cell("samples")))
@example(HEADER + ROW.replace("1200", "x" * 140_000))  # csv's field limit: csv.Error
@example(HEADER + ROW.replace("2026-11-20T10:00:00Z", "9999-12-31T23:59:59-01:00"))  # Overflow
@example(HEADER + ROW.replace("2026-11-20T10:00:00Z", "0001-01-01T00:00:00+01:00"))  # Overflow
@example(HEADER + ROW.replace(",60,", ",1e300,"))  # window end past datetime: OverflowError
def test_samples(text: str) -> None:
    """parse_samples: windows in their contract, or InputError at FILE:LINE with a hint."""
    check(TARGETS["samples"], text)


@fuzz("load_table", st.one_of(text_inputs("load_table", ","), bad_cell("load_table")))
@example("load,throughput\n1," + "x" * 140_000 + "\n")  # csv's field limit: csv.Error
@example("x" * 10_000 + "\n")  # the header was echoed whole
def test_load_table(text: str) -> None:
    """parse_load_table: finite points, or InputError at FILE:LINE with a hint."""
    check(TARGETS["load_table"], text)


BIG: dict[str, tuple[str, Callable[[], str]]] = {
    "one long line": ("samples", lambda: long_line(FAMILY, HEADER + "web-1,")),
    "one long quoted cell": ("samples", lambda: long_line(FAMILY, HEADER + 'web-1,"', "x")),
    "an unclosed quote": ("samples", lambda: fit(HEADER + '"' + "x\n" * SIZE, FAMILY)),
    "a header of one name": ("samples", lambda: long_line(FAMILY, "", "node,")),
    "blank lines": ("samples", lambda: fit(HEADER + "\n" * SIZE, FAMILY)),
    "tiny valid rows": ("samples", lambda: many_lines(FAMILY, SHORT_HEADER, tiny_row)),
    "full valid rows": ("samples", lambda: many_lines(FAMILY, HEADER, full_row)),
    "load table rows": ("load_table", lambda: many_lines(FAMILY, "load,throughput\n", load_row)),
    "load table long line": ("load_table", lambda: long_line(FAMILY, "load,throughput\n1,")),
}


def tiny_row(i: int) -> str:
    return f"a,{i},1,0,0\n"


def full_row(i: int) -> str:
    return f"n{i % 7},{1_700_000_000 + 60 * i},{ROW_TAIL}"


def load_row(i: int) -> str:
    return f"{i + 1},{i}\n"


@pytest.mark.parametrize("label", list(BIG))
def test_bounds(label: str) -> None:
    """One big adversarial input: the property, within the stated time and memory."""
    target, make = BIG[label]
    assert_bounded(target, label, make())
