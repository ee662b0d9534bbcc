"""
``show stat`` CSV from HAProxy 2.6's stats socket (captured, see data/README.md).
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capplan.collect.haproxy import INT_COLUMNS, StatRow, parse_show_stat
from capplan.errors import InputError

SHOW_STAT = (Path(__file__).resolve().parent / "data" / "haproxy" / "show_stat.csv").read_text()
PROPERTY = settings(derandomize=True, deadline=None, database=None, max_examples=200)


def table(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in text.splitlines() if line.strip()]
    header = next(csv.reader([lines[0][2:]]))
    return header, [next(csv.reader([line])) for line in lines[1:]]


def write(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return "# " + out.getvalue() + "\n"


def refusal(call: Callable[[], object]) -> InputError | None:
    """The InputError a call raises, or None; any other exception propagates."""
    try:
        call()
    except InputError as exc:
        return exc
    return None


def by_name(rows: list[StatRow]) -> dict[tuple[str, str], StatRow]:
    return {(r.proxy, r.server): r for r in rows}


def test_real_rows() -> None:
    """Every frontend, backend and server row, in order, with its counters by column name."""
    rows = parse_show_stat(SHOW_STAT, "lb-1:/run/haproxy/admin.sock")
    assert [
        ("fe_web", "FRONTEND"),
        ("be_app", "app1"),
        ("be_app", "app2"),
        ("be_app", "BACKEND"),
        ("be_dead", "gone"),
        ("be_dead", "BACKEND"),
    ] == [(r.proxy, r.server) for r in rows]
    rows_by_name = by_name(rows)
    app1 = rows_by_name["be_app", "app1"]
    assert ("no check", 8, 3) == (app1.status, app1.slim, app1.weight)
    gone = rows_by_name["be_dead", "gone"]
    assert ("DOWN", 0) == (gone.status, gone.stot)
    frontend = rows_by_name["fe_web", "FRONTEND"]
    assert ("OPEN", None, None) == (frontend.status, frontend.weight, frontend.qcur)
    # the backends' requests add up to the servers' and the frontend saw every 5xx
    assert 72 + 23 == rows_by_name["be_app", "BACKEND"].stot
    assert 13 == frontend.hrsp_5xx  # the 6 500s and 7 503s of data/logs/haproxy-*.log


def test_real_values_match_the_columns() -> None:
    """Each counter is the cell under its header name; fields holds every named column."""
    header, cells = table(SHOW_STAT)
    rows = parse_show_stat(SHOW_STAT, "s")
    named = [h for h in header if h]
    for row, raw in zip(rows, cells, strict=True):
        values = dict(zip(header, raw, strict=True))
        for column in INT_COLUMNS:
            expected = int(values[column]) if values[column] else None
            assert expected == getattr(row, column), column
        assert named == list(row.fields)
        assert values["status"] == row.status


def test_columns_by_name_not_position() -> None:
    """Shuffled columns (another HAProxy version's order) give the same rows."""
    header, cells = table(SHOW_STAT)
    order = list(range(len(header)))
    random.Random(3).shuffle(order)
    shuffled = write([header[i] for i in order], [[row[i] for i in order] for row in cells])
    assert parse_show_stat(SHOW_STAT, "s") == parse_show_stat(shuffled, "s")


def test_older_version_fewer_columns() -> None:
    """A version without some columns: those counters are None."""
    header, cells = table(SHOW_STAT)
    keep = [header.index(h) for h in ("pxname", "svname", "scur", "status", "weight")]
    text = write([header[i] for i in keep], [[row[i] for i in keep] for row in cells])
    app1 = by_name(parse_show_stat(text, "s"))["be_app", "app1"]
    assert (0, 3, None, None) == (app1.scur, app1.weight, app1.slim, app1.rtime)


def test_quoted_cell_with_comma() -> None:
    """HAProxy quotes a cell that holds a comma (check_desc, ...)."""
    text = '# pxname,svname,status,check_desc,\nbe,s1,DOWN,"refused, twice",\n'
    [row] = parse_show_stat(text, "s")
    assert "refused, twice" == row.fields["check_desc"]


def test_header_only() -> None:
    """A header without rows is no rows."""
    assert [] == parse_show_stat(SHOW_STAT.splitlines()[0] + "\n\n", "s")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "the answer is empty"),
        ("\n\n", 1, "the answer is empty"),
        ("Unknown command.\n", 1, "is not the '# pxname,svname,...' header"),
        ("# svname,scur\nx,1\n", 1, "the header has no 'pxname' column"),
        ("# pxname,svname,scur,\nfe,FRONTEND,1,\nbe,s1,2\n", 3, "3 cells where the header has 4"),
        ("# pxname,svname,scur,\nfe,FRONTEND,many,\n", 2, "scur: 'many' is not a whole number"),
        ('# pxname,svname\n"fe"x",FRONTEND\n', 2, "not a CSV line"),
    ],
)
def test_malformed(text: str, line: int, fragment: str) -> None:
    """Broken answers name the source and the line."""
    with pytest.raises(InputError) as info:
        parse_show_stat(text, "lb-1:admin.sock")
    assert ("lb-1:admin.sock", line) == (info.value.file, info.value.line)
    assert fragment in str(info.value)


@PROPERTY
@given(st.text())
def test_only_input_error_on_any_text(text: str) -> None:
    """On any text: rows, or an InputError with a line, nothing else."""
    error = refusal(lambda: parse_show_stat(text, "fuzz"))
    assert error is None or error.line is not None


@PROPERTY
@given(st.lists(st.sampled_from([*SHOW_STAT.splitlines(), "a,b", ",,,", '"']), max_size=6))
def test_only_input_error_on_real_pieces(lines: list[str]) -> None:
    """Real lines in any order and number: rows, or an InputError, nothing else."""
    error = refusal(lambda: parse_show_stat("\n".join(lines), "fuzz"))
    assert error is None or error.line is not None
