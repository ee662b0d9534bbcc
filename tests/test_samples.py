"""
The canonical samples CSV: parsing, validation messages, writing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capplan.errors import InputError
from capplan.samples import (
    Window,
    format_time,
    parse_load_table,
    parse_samples,
    parse_time,
    write_samples,
)

HEADER = "node,start,seconds,requests,errors,mean_ms,p50_ms,p95_ms,p99_ms,concurrency,cpu_util\n"
ROW = "web-1,2026-11-20T10:00:00Z,60,1200,1,21.5,18,40,75,0.43,0.31\n"


def error_of(text: str) -> str:
    with pytest.raises(InputError) as info:
        parse_samples(text, "s.csv")
    return str(info.value)


class TestParseTime:
    def test_iso_with_z(self) -> None:
        """ISO-8601 with Z is UTC."""
        assert datetime(2026, 11, 20, 10, tzinfo=UTC) == parse_time("2026-11-20T10:00:00Z")

    def test_naive_is_utc(self) -> None:
        """A time without an offset is UTC."""
        assert datetime(2026, 11, 20, 10, tzinfo=UTC) == parse_time("2026-11-20 10:00:00")

    def test_offset_converted(self) -> None:
        """An offset is converted to UTC."""
        assert datetime(2026, 11, 20, 9, tzinfo=UTC) == parse_time("2026-11-20T10:00:00+01:00")

    def test_epoch_seconds(self) -> None:
        """Epoch seconds, with a fraction, are read exactly to the microsecond."""
        expected = datetime(2026, 11, 20, 10, 0, 0, 250000, tzinfo=UTC)
        assert expected == parse_time("1795168800.25")

    def test_format_round_trip(self) -> None:
        """format_time writes Z and microseconds only when present."""
        assert "2026-11-20T10:00:00Z" == format_time(parse_time("1795168800"))
        assert "2026-11-20T10:00:00.250000Z" == format_time(parse_time("1795168800.25"))

    @pytest.mark.parametrize("text", ["yesterday", "", "nan", "1e30", "2026-13-01T00:00:00"])
    def test_not_a_time(self, text: str) -> None:
        """Text that is no time is refused."""
        with pytest.raises(ValueError, match="not a time"):
            parse_time(text)


class TestParseSamples:
    def test_full_row(self) -> None:
        """Every column is read with its type; rate is requests / seconds."""
        [numbered] = parse_samples(HEADER + ROW, "s.csv")
        w = numbered.window
        assert 2 == numbered.line
        assert ("web-1", 60.0, 1200, 1, 21.5) == (
            w.node,
            w.seconds,
            w.requests,
            w.errors,
            w.mean_ms,
        )
        assert (18.0, 40.0, 75.0, 0.43, 0.31) == (
            w.p50_ms,
            w.p95_ms,
            w.p99_ms,
            w.concurrency,
            w.cpu_util,
        )
        assert 20.0 == w.rate

    def test_optional_columns_may_be_absent_or_empty(self) -> None:
        """Only node, start, seconds, requests and errors are required; empty means unknown."""
        text = "node,start,seconds,requests,errors,mean_ms,cpu_util\na,1795168800,60,5,0,3.5,\n"
        [numbered] = parse_samples(text, "s.csv")
        assert numbered.window.cpu_util is None
        assert numbered.window.p99_ms is None

    def test_columns_in_any_order(self) -> None:
        """The header decides the column order."""
        text = "errors,requests,seconds,start,node,mean_ms\n0,10,60,1795168800,a,5\n"
        [numbered] = parse_samples(text, "s.csv")
        assert (10, 0) == (numbered.window.requests, numbered.window.errors)

    def test_bom_and_crlf(self) -> None:
        """A UTF-8 BOM and CRLF line ends are accepted."""
        text = "\ufeff" + (HEADER + ROW).replace("\n", "\r\n")
        assert 1 == len(parse_samples(text, "s.csv"))

    def test_same_window_twice_same_values_kept_once(self) -> None:
        """An exact duplicate row is not an error and is kept once."""
        assert 1 == len(parse_samples(HEADER + ROW + ROW, "s.csv"))

    def test_same_window_epoch_and_iso(self) -> None:
        """The identity is the instant, whatever notation the file uses."""
        other = ROW.replace("2026-11-20T10:00:00Z", "1795168800")
        assert 1 == len(parse_samples(HEADER + ROW + other, "s.csv"))

    def test_empty_file(self) -> None:
        """An empty file says so, with the header it expects."""
        message = error_of("")
        assert message.startswith("s.csv:1: the file is empty (expected a header line: node,")

    def test_header_only_is_no_windows(self) -> None:
        """A header with no rows is valid and holds no windows."""
        assert [] == parse_samples(HEADER, "s.csv")

    def test_unknown_column(self) -> None:
        """An unknown column is named, with the valid ones."""
        message = error_of(HEADER.replace("cpu_util", "cpu") + ROW)
        assert message.startswith("s.csv:1: header: unknown column 'cpu' (the columns are node,")

    def test_missing_required_column(self) -> None:
        """A required column that is missing is named."""
        message = error_of("node,start,seconds,requests\na,1795168800,60,1\n")
        assert "s.csv:1: header: missing required column 'errors'" in message

    def test_negative_count(self) -> None:
        """A negative count names its line and column."""
        message = error_of(HEADER + ROW + ROW.replace("10:00:00Z,60,1200", "10:01:00Z,60,-3"))
        assert (
            "s.csv:3: requests: -3 is negative; requests must be 0 or more "
            "(write the window's number of requests, a whole number, e.g. 1200)"
        ) == message

    def test_cpu_util_above_one(self) -> None:
        """cpu_util above 1 is refused with a hint about fractions."""
        message = error_of(HEADER + ROW.replace("0.31", "1.7"))
        assert message == (
            "s.csv:2: cpu_util: 1.7 is not a fraction in 0..1 "
            "(write utilization as a fraction, e.g. 0.42 for 42%)"
        )

    def test_start_not_a_time(self) -> None:
        """A start that is not a time names the line and column."""
        message = error_of(HEADER + ROW.replace("2026-11-20T10:00:00Z", "tuesday"))
        assert message.startswith("s.csv:2: start: 'tuesday' is not a time")

    def test_same_window_other_values(self) -> None:
        """One window twice with other values names both lines and the columns that differ."""
        message = error_of(HEADER + ROW + ROW.replace("21.5", "22.5"))
        assert message.startswith(
            "s.csv:3: mean_ms: window web-1 @ 2026-11-20T10:00:00Z is also on line 2 "
            "with other values (mean_ms)"
        )

    def test_errors_above_requests(self) -> None:
        """More errors than requests is refused."""
        message = error_of(HEADER + ROW.replace("1200,1,", "1200,1300,"))
        assert (
            "s.csv:2: errors: 1300 errors is more than the window's 1200 requests "
            "(errors counts the failed requests among requests: check the two columns)"
        ) == message

    def test_percentiles_must_not_decrease(self) -> None:
        """p99 below p95 is refused."""
        message = error_of(HEADER + ROW.replace(",75,", ",30,"))
        assert message.startswith("s.csv:2: p99_ms: 30.0 is below p95_ms 40.0")

    def test_bad_node_name(self) -> None:
        """A node name outside the allow-list grammar is refused."""
        message = error_of(HEADER + ROW.replace("web-1", "web;1"))
        assert message.startswith("s.csv:2: node: 'web;1' is not a valid name")

    def test_wrong_cell_count(self) -> None:
        """A row with a missing comma says so."""
        message = error_of(HEADER + "web-1,2026-11-20T10:00:00Z,60\n")
        assert (
            "s.csv:2: 3 cells where the header has 11 (check for a missing or extra comma)"
            == message
        )

    def test_incomplete_window_refused(self) -> None:
        """A window that has not ended at `now` is refused."""
        now = datetime(2026, 11, 20, 10, 0, 30, tzinfo=UTC)
        with pytest.raises(InputError, match="has not ended yet"):
            parse_samples(HEADER + ROW, "s.csv", now=now)

    def test_requests_without_mean(self) -> None:
        """A window with requests needs its mean latency."""
        message = error_of("node,start,seconds,requests,errors,mean_ms\na,1795168800,60,5,0,\n")
        assert message.startswith("s.csv:2: mean_ms: empty, but the window has requests")


windows = st.builds(
    Window,
    node=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True),
    start=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    seconds=st.floats(0.001, 1e6),
    requests=st.integers(0, 10**9),
    errors=st.just(0),
    mean_ms=st.floats(0, 1e6),
    p50_ms=st.none(),
    p95_ms=st.none(),
    p99_ms=st.none(),
    concurrency=st.none() | st.floats(0, 1e6),
    cpu_util=st.none() | st.floats(0, 1),
)


class TestWrite:
    @given(st.lists(windows, max_size=20, unique_by=lambda w: (w.node, w.start)))
    def test_round_trip(self, ws: list[Window]) -> None:
        """Writing then parsing gives back the same windows, bit for bit."""
        text = "".join(write_samples(ws))
        assert ws == [n.window for n in parse_samples(text, "s.csv")]


class TestLoadTable:
    def test_reads_rows(self) -> None:
        """A load,throughput table is read in order."""
        rows = parse_load_table("load,throughput\n1,20\n4,78\n", "t.csv")
        assert [(1.0, 20.0), (4.0, 78.0)] == [(r.load, r.throughput) for r in rows]

    def test_wrong_header(self) -> None:
        """Other columns are refused with what is expected."""
        with pytest.raises(InputError, match=r"t.csv:1: header: .*load,throughput"):
            parse_load_table("n,x\n1,2\n", "t.csv")

    def test_zero_load(self) -> None:
        """A load of zero is refused with its line."""
        with pytest.raises(InputError, match=r"t\.csv:3: load: load must be positive"):
            parse_load_table("load,throughput\n1,20\n0,3\n", "t.csv")
