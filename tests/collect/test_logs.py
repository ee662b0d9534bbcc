"""
Access logs to windows, on logs captured from real nginx and HAProxy (see data/README.md).

Expected values come from independent readings of the same files (``str.split``,
``strptime``, a plain loop for the windows and a hand-written linear percentile).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capplan.collect.logs import (
    _FIELDS,
    DEFAULT_NGINX_FORMAT,
    NGINX_COMBINED,
    Chunk,
    LineParser,
    LogRecord,
    NginxParser,
    cut_windows,
    make_parser,
    parse_chunk,
    resume_offset,
)
from capplan.errors import InputError
from capplan.inventory import LogSpec
from capplan.samples import Window

LOGS = Path(__file__).resolve().parent / "data" / "logs"
TIMED = (LOGS / "nginx-timed.log").read_bytes()
MSEC = (LOGS / "nginx-msec.log").read_bytes()
COMBINED = (LOGS / "nginx-combined.log").read_bytes()
HAPROXY = (LOGS / "haproxy-stdout.log").read_bytes()
HAPROXY_SYSLOG = (LOGS / "haproxy-syslog.log").read_bytes()
MSEC_FORMAT = (
    '$msec $time_iso8601 $remote_addr "$request" $status $body_bytes_sent '
    "$request_time $upstream_response_time"
)
PATH = "/var/log/nginx/access.log"
PROPERTY = settings(derandomize=True, deadline=None, database=None, max_examples=150)

Reference = list[tuple[float, float | None, bool]]  # time, latency_ms, error


def nginx(log_format: str | None = None) -> LineParser:
    return make_parser(LogSpec(path=PATH, log_format=log_format), "inventory.yaml")


def haproxy(utc_offset_s: float = 0.0) -> LineParser:
    spec = LogSpec(path="/var/log/haproxy.log", format="haproxy")
    return make_parser(spec, "inventory.yaml", utc_offset_s=utc_offset_s)


def regex(pattern: str) -> LineParser:
    return make_parser(LogSpec(path="/x.log", format="regex", regex=pattern), "inventory.yaml")


def chunk(data: bytes, parser: LineParser) -> Chunk:
    return parse_chunk(data, parser, source="web-1:" + parser.path)


def records(c: Chunk) -> Reference:
    return [
        (float(t), None if math.isnan(lat) else float(lat), bool(e))
        for t, lat, e in zip(c.time, c.latency_ms, c.error, strict=True)
    ]


def reference_timed() -> Reference:
    """The timed nginx log read with strptime and split, independently of capplan."""
    out: Reference = []
    for line in TIMED.decode().splitlines():
        stamp = line[line.index("[") + 1 : line.index("]")]
        after_request = line.split('" ', 1)[1].split()
        status, request_time = int(after_request[0]), float(line.split('" ')[-1].split()[0])
        moment = datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp()
        out.append((moment, request_time * 1000, status >= 500))
    return out


def reference_haproxy() -> Reference:
    """The raw HAProxy log read with split: Ta is the fifth timer; -1 timers are unknown."""
    out: Reference = []
    for line in HAPROXY.decode().splitlines():
        words = line.split()
        if not words[1].startswith("["):
            continue  # HAProxy's own messages
        moment = datetime.strptime(words[1], "[%d/%b/%Y:%H:%M:%S.%f]").replace(tzinfo=UTC)
        timers = [int(v) for v in words[4].split("/")]
        status = int(words[5])
        latency = None if timers[3] < 0 or timers[4] < 0 else float(timers[4])
        out.append((moment.timestamp(), latency, status >= 500 or status < 0 or timers[4] < 0))
    return out


def linear_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    h = (len(ordered) - 1) * q / 100
    low = math.floor(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


def reference_windows(
    recs: Reference, node: str, window_s: float, since: float, until: float
) -> list[Window]:
    groups: dict[float, Reference] = defaultdict(list)
    for rec in recs:
        if since <= rec[0] < until:
            groups[math.floor(rec[0] / window_s) * window_s].append(rec)
    out = []
    for start in sorted(groups):
        group = groups[start]
        known = [lat for _, lat, _ in group if lat is not None]
        stats: list[float | None] = [None] * 5
        if known:
            stats = [
                sum(known) / len(known),
                linear_percentile(known, 50),
                linear_percentile(known, 95),
                linear_percentile(known, 99),
                sum(known) / 1000 / window_s,
            ]
        out.append(
            Window(
                node,
                datetime.fromtimestamp(start, UTC),
                window_s,
                len(group),
                sum(e for _, _, e in group),
                *stats,
            )
        )
    return out


def assert_same_records(expected: Reference, actual: Reference) -> None:
    assert len(expected) == len(actual)
    for (t, lat, err), (t2, lat2, err2) in zip(expected, actual, strict=True):
        assert t == pytest.approx(t2, rel=0, abs=1e-6)
        assert (lat is None, err) == (lat2 is None, err2)
        if lat is not None:
            assert lat == pytest.approx(lat2, rel=1e-12)


def assert_same_windows(expected: list[Window], actual: list[Window]) -> None:
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual, strict=True):
        assert (e.node, e.start, e.seconds, e.requests, e.errors, a.cpu_util) == (
            a.node,
            a.start,
            a.seconds,
            a.requests,
            a.errors,
            None,
        )
        for name in ("mean_ms", "p50_ms", "p95_ms", "p99_ms", "concurrency"):
            want, got = getattr(e, name), getattr(a, name)
            assert (want is None) == (got is None), name
            if want is not None:
                assert want == pytest.approx(got, rel=1e-12, abs=1e-12), name


# nginx


def test_default_format_is_combined_with_timings() -> None:
    """The default format is nginx's combined plus the two timing variables."""
    assert NGINX_COMBINED + " $request_time $upstream_response_time" == DEFAULT_NGINX_FORMAT
    assert DEFAULT_NGINX_FORMAT == nginx().log_format  # type: ignore[attr-defined]


def test_nginx_timed_real() -> None:
    """Every line of the real timed log parses: time_local, request_time and status."""
    c = chunk(TIMED, nginx())
    assert (320, 320, 0, ()) == (len(c.time), c.lines, c.bad_lines, c.bad_examples)
    assert len(TIMED) == c.consumed
    assert_same_records(reference_timed(), records(c))
    assert TIMED.count(b'" 502 ') == int(c.error.sum())


def test_nginx_msec_real_agrees_with_time_local() -> None:
    """The msec log of the same requests: same latencies and statuses, times to the ms."""
    timed, msec = chunk(TIMED, nginx()), chunk(MSEC, nginx(MSEC_FORMAT))
    assert np.array_equal(timed.latency_ms, msec.latency_ms)
    assert np.array_equal(timed.error, msec.error)
    assert np.array_equal(timed.time, np.floor(msec.time))  # time_local is msec, truncated
    assert np.any(msec.time != np.floor(msec.time))
    first = MSEC.split(b" ", 1)[0].decode()
    assert float(first) == msec.time[0]


def test_nginx_time_iso8601() -> None:
    """Without $msec, $time_iso8601 gives the time."""
    fmt = MSEC_FORMAT.replace("$msec", "$connection")
    c = chunk(MSEC, nginx(fmt))
    assert np.array_equal(np.floor(chunk(MSEC, nginx(MSEC_FORMAT)).time), c.time)


def test_upstream_response_time_fallback() -> None:
    """Without $request_time, the upstream times give the latency; retries are added."""
    fmt = NGINX_COMBINED + " $request_length $upstream_response_time"
    c = chunk(TIMED, nginx(fmt))
    lines = TIMED.decode().splitlines()
    retry = next(i for i, line in enumerate(lines) if line.endswith(" 0.000, 0.003"))
    assert 3.0 == pytest.approx(c.latency_ms[retry])
    no_upstream = next(i for i, line in enumerate(lines) if line.endswith(" -"))
    assert math.isnan(c.latency_ms[no_upstream])
    proxied = next(i for i, line in enumerate(lines) if line.endswith(" 0.030 0.031"))
    assert 31.0 == pytest.approx(c.latency_ms[proxied])
    parser = nginx("$msec $upstream_response_time")
    record = parser.parse("1795420721.005 0.010, 0.020 : 0.005")
    assert record is not None
    assert record.latency_ms == pytest.approx(35.0)
    assert LogRecord(1795420721.005, None, False) == parser.parse("1795420721.005 -, -")


def test_request_time_wins_over_upstream() -> None:
    """$request_time is the latency the client saw; the upstream time is only a fallback."""
    record = nginx().parse(TIMED.decode().splitlines()[0])
    assert record is not None
    assert record.latency_ms == pytest.approx(30.0)  # "... 0.030 0.031"


def test_format_pasted_from_nginx_conf() -> None:
    """A log_format pasted as nginx's quoted pieces is the same format."""
    pasted = """'$remote_addr - $remote_user [$time_local] '
        '"$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent" $request_time $upstream_response_time';"""
    assert records(chunk(TIMED, nginx())) == records(chunk(TIMED, nginx(pasted)))


def test_json_format_with_escape() -> None:
    """A JSON log_format pasted with its escape= parameter."""
    parser = nginx(
        """escape=json '{"time":"$time_iso8601","status":$status,'
        '"rt":$request_time,"ua":"$http_user_agent"}';"""
    )
    line = '{"time":"2026-11-23T07:58:41+00:00","status":503,"rt":0.250,"ua":"a \\"b\\""}'
    assert LogRecord(1795420721.0, 250.0, True) == parser.parse(line)


def test_braced_variables() -> None:
    """${var} is the same variable as $var."""
    fmt = DEFAULT_NGINX_FORMAT.replace("$status", "${status}").replace("$msec", "${msec}")
    assert records(chunk(TIMED, nginx())) == records(chunk(TIMED, nginx(fmt)))


@pytest.mark.parametrize(
    ("log_format", "missing", "suggested"),
    [
        ("combined", "no timing variable", DEFAULT_NGINX_FORMAT),
        (NGINX_COMBINED, "no timing variable", DEFAULT_NGINX_FORMAT),
        (
            '$remote_addr "$request" $request_time',
            "no time variable",
            '$msec $remote_addr "$request" $request_time',
        ),
        (
            '$time_local "$request"',
            "no timing variable",
            '$time_local "$request" $request_time $upstream_response_time',
        ),
    ],
)
def test_nginx_format_without_timings(log_format: str, missing: str, suggested: str) -> None:
    """A format capplan cannot measure with is refused; the hint gives the exact nginx lines."""
    with pytest.raises(InputError) as info:
        nginx(log_format)
    exc = info.value
    assert ("inventory.yaml", "log_format") == (exc.file, exc.key)
    assert missing in exc.problem
    assert exc.hint is not None
    assert f"log_format capplan '{suggested}'; access_log {PATH} capplan;" in exc.hint


def test_combined_log_has_no_timing_fields() -> None:
    """A real combined log read as the default format: the message says it has no timings."""
    with pytest.raises(InputError) as info:
        chunk(COMBINED, nginx())
    exc = info.value
    assert ("web-1:" + PATH, 1) == (exc.file, exc.line)
    assert "the log has no timing fields" in exc.problem
    assert exc.hint is not None
    assert f"log_format capplan '{DEFAULT_NGINX_FORMAT}'; access_log {PATH} capplan;" in exc.hint


def test_wrong_format_quotes_the_first_line() -> None:
    """A HAProxy log read as nginx: the first line is quoted, with the expected format."""
    with pytest.raises(InputError) as info:
        chunk(b"\n" + HAPROXY, nginx())
    exc = info.value
    assert 2 == exc.line
    first = HAPROXY.decode().splitlines()[0]
    assert repr(first[:200]) in exc.problem
    assert exc.hint is not None
    assert DEFAULT_NGINX_FORMAT in exc.hint


# HAProxy


@pytest.mark.parametrize("data", [HAPROXY, HAPROXY_SYSLOG], ids=["raw", "syslog"])
def test_haproxy_real(data: bytes) -> None:
    """Real httplog lines, raw or syslog-prefixed; HAProxy's own messages are bad lines."""
    c = chunk(data, haproxy())
    assert (121, 6, 115) == (c.lines, c.bad_lines, len(c.time))
    assert reference_haproxy() == records(c)
    assert 6 + 7 == int(c.error.sum())  # 500s and 503s
    assert "Server be_dead/gone is DOWN" in c.bad_examples[0][1]
    assert 1 == c.bad_examples[0][0]


def test_haproxy_statuses() -> None:
    """503 without a server is an error of unknown latency; HAProxy's own 302 and 403 are not
    errors and have no server latency; a 200 takes Ta."""
    lines = HAPROXY.decode().splitlines()
    by_status: dict[str, str] = {}
    for line in lines:
        if " fe_web " in line:
            by_status.setdefault(line.split()[5], line)
    parser = haproxy()
    assert by_status["503"].split()[4] == "0/-1/-1/-1/0"
    assert (None, True) == _latency_error(parser, by_status["503"])
    assert (None, False) == _latency_error(parser, by_status["302"])
    assert (None, False) == _latency_error(parser, by_status["403"])
    ta = float(by_status["500"].split()[4].split("/")[4])
    assert (ta, True) == _latency_error(parser, by_status["500"])
    ta = float(by_status["200"].split()[4].split("/")[4])
    assert (ta, False) == _latency_error(parser, by_status["200"])


def _latency_error(parser: LineParser, line: str) -> tuple[float | None, bool]:
    record = parser.parse(line)
    assert record is not None
    return record.latency_ms, record.error


def test_haproxy_aborted() -> None:
    """Status -1 or a -1 total timer: aborted, an error of unknown latency."""
    parser = haproxy()
    line = (
        "1.2.3.4:5 [23/Nov/2026:07:56:28.123] fe be/s1 0/0/0/-1/{ta} {status} 0 - - CH-- "
        '1/1/0/0/0 0/0 "GET / HTTP/1.1"'
    )
    assert LogRecord(1795420588.123, None, True) == parser.parse(line.format(ta="-1", status="200"))
    assert LogRecord(1795420588.123, None, True) == parser.parse(line.format(ta="5", status="-1"))


def test_haproxy_1x_and_logasap() -> None:
    """HAProxy 1.x's Tq/Tw/Tc/Tr/Tt (the documentation's example) and a '+' total (logasap)."""
    line = (
        "Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] "
        "http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "
        '"GET /index.html HTTP/1.1"'
    )
    expected = LogRecord(1233922454.655, 109.0, False)
    assert expected == haproxy().parse(line)
    assert expected == haproxy().parse(line.replace("/109 ", "/+109 "))


def test_haproxy_utc_offset() -> None:
    """HAProxy writes local time without a zone: the offset given is taken off."""
    east = records(chunk(HAPROXY, haproxy(utc_offset_s=3600)))
    utc = records(chunk(HAPROXY, haproxy()))
    assert_same_records([(t - 3600, lat, e) for t, lat, e in utc], east)


# regex


def test_regex_real() -> None:
    """A user's regex over the msec log gives what the nginx parser gives."""
    pattern = r'^(?P<time>\S+) \S+ \S+ "[^"]*" (?P<status>\d{3}) \d+ (?P<latency_s>\S+)'
    assert_same_records(
        records(chunk(MSEC, nginx(MSEC_FORMAT))), records(chunk(MSEC, regex(pattern)))
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2026-11-23T07:58:41Z 200 12.5", LogRecord(1795420721.0, 12.5, False)),
        ("2026-11-23T08:58:41+01:00 503 1", LogRecord(1795420721.0, 1.0, True)),
        ("23/Nov/2026:07:58:41 +0000 200 -", LogRecord(1795420721.0, None, False)),
        ("1795420721.25 - 3", LogRecord(1795420721.25, 3.0, False)),
        ("yesterday 200 3", None),
        ("1795420721 200 fast", None),
        ("23/Foo/2026:07:58:41 +0000 200 1", None),
    ],
)
def test_regex_times(line: str, expected: LogRecord | None) -> None:
    """time: epoch seconds, ISO-8601 or nginx time_local; unreadable groups do not match."""
    parser = regex(r"^(?P<time>.+) (?P<status>\S+) (?P<latency_ms>\S+)$")
    assert expected == parser.parse(line)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("(?P<time>", "the regex does not compile"),
        (r"(?P<latency_ms>\d+)", "no named group 'time'"),
        (r"(?P<time>\S+) (?P<status>\d+)", "no named group 'latency_ms' or 'latency_s'"),
    ],
)
def test_regex_refused(pattern: str, problem: str) -> None:
    """A bad regex is refused when the parser is made, with a hint giving the groups."""
    with pytest.raises(InputError) as info:
        regex(pattern)
    assert ("inventory.yaml", "regex") == (info.value.file, info.value.key)
    assert problem in info.value.problem
    assert info.value.hint is not None
    assert "latency_ms" in info.value.hint


# chunks


def test_partial_last_line_not_consumed() -> None:
    """A trailing piece without a newline may be half-written: it is left for next time."""
    half = b"127.0.0.1 - - [23/Nov/2026:07:58:4"
    c = chunk(TIMED + half, nginx())
    assert (len(TIMED), 320, 0) == (c.consumed, c.lines, c.bad_lines)
    assert 0 == chunk(half, nginx()).consumed


def test_line_start_points_at_each_line() -> None:
    """line_start is the byte offset of each parsed line, even after multi-byte characters."""
    lines = TIMED.split(b"\n")[:5]
    lines[1] = lines[1].replace(b"Python-urllib/3.11", "agent/é".encode() + b"\xff")
    data = b"\n".join([lines[0], b"", b"garbage", *lines[1:]]) + b"\n"
    c = chunk(data, nginx())
    parser = nginx()
    for offset, t, lat in zip(c.line_start, c.time, c.latency_ms, strict=True):
        line = data[offset:].split(b"\n", 1)[0].decode("utf-8", errors="replace")
        assert (t, lat) == pytest.approx(_time_latency(parser, line))
    assert (5, 6, 1, ((3, "garbage"),)) == (len(c.time), c.lines, c.bad_lines, c.bad_examples)


def _time_latency(parser: LineParser, line: str) -> tuple[float, float | None]:
    record = parser.parse(line)
    assert record is not None
    return record.time, record.latency_ms


def test_blank_crlf_and_bad_lines() -> None:
    """Blank lines are skipped, CRLF is accepted, bad lines are counted and quoted (truncated)."""
    good = TIMED.split(b"\n")[:3]
    long_bad = b"x" * 300
    data = b"\r\n".join([good[0], b"", b"  ", long_bad, good[1], b"oops", b"no", good[2]])
    c = parse_chunk(data + b"\r\n", nginx(), source="s", max_examples=2)
    assert (3, 6, 3) == (len(c.time), c.lines, c.bad_lines)
    assert ((4, "x" * 200), (6, "oops")) == c.bad_examples


def test_empty_and_blank_chunks() -> None:
    """No complete line: an empty chunk, not an error."""
    for data in (b"", b"\n\n  \n", b"partial"):
        c = chunk(data, nginx())
        assert (0, 0, 0) == (len(c.time), c.lines, c.bad_lines)
        assert c.consumed == data.rfind(b"\n") + 1


def test_resume_offset() -> None:
    """The first line at or after `until`, in file order: reading resumes there."""
    c = chunk(TIMED, nginx())
    until = float(np.unique(c.time)[2])
    offset = resume_offset(c, until)
    before, after = chunk(TIMED[:offset], nginx()), chunk(TIMED[offset:], nginx())
    assert np.all(before.time < until)
    assert after.time[0] >= until
    assert len(before.time) + len(after.time) == len(c.time)
    assert c.consumed == resume_offset(c, float(c.time.max()) + 1)
    assert 0 == resume_offset(c, 0.0)
    partial = chunk(TIMED + b"127.0.0.1 - -", nginx())
    assert len(TIMED) == resume_offset(partial, float(c.time.max()) + 1)


# windows


@pytest.mark.parametrize("window_s", [1.0, 2.0, 60.0])
def test_windows_nginx_against_reference(window_s: float) -> None:
    """Windows of the real nginx log equal a plain loop over an independent reading."""
    c = chunk(TIMED, nginx())
    expected = reference_windows(reference_timed(), "web-1", window_s, 0.0, math.inf)
    actual = cut_windows(c, node="web-1", window_s=window_s, since=0.0, until=math.inf)
    assert_same_windows(expected, actual)
    assert 320 == sum(w.requests for w in actual)


def test_windows_since_until() -> None:
    """Only records with since <= time < until count."""
    c = chunk(MSEC, nginx(MSEC_FORMAT))
    since = math.floor(c.time.min()) + 1.0
    until = since + 3.0
    actual = cut_windows(c, node="web-1", window_s=1.0, since=since, until=until)
    assert [since, since + 1, since + 2] == [w.start.timestamp() for w in actual]
    recs = records(c)
    assert_same_windows(reference_windows(recs, "web-1", 1.0, since, until), actual)
    assert [] == cut_windows(c, node="web-1", window_s=1.0, since=until, until=until)


def test_windows_haproxy_against_reference() -> None:
    """Windows of the real HAProxy log; unknown latencies count as requests only."""
    c = chunk(HAPROXY_SYSLOG, haproxy())
    expected = reference_windows(reference_haproxy(), "lb-1", 1.0, 0.0, math.inf)
    actual = cut_windows(c, node="lb-1", window_s=1.0, since=0.0, until=math.inf)
    assert_same_windows(expected, actual)


def test_window_without_known_latency() -> None:
    """A window whose requests all lack a latency has no latency statistics."""
    lines = [line for line in HAPROXY.split(b"\n") if b" 503 " in line]
    [window] = cut_windows(
        chunk(b"\n".join(lines) + b"\n", haproxy()),
        node="lb-1",
        window_s=60.0,
        since=0.0,
        until=math.inf,
    )
    assert (7, 7, None, None, None) == (
        window.requests,
        window.errors,
        window.mean_ms,
        window.p99_ms,
        window.concurrency,
    )


def test_windows_aligned_and_utc() -> None:
    """Window starts are multiples of the length since the epoch, in UTC, without gaps filled."""
    c = chunk(TIMED, nginx())
    for w in cut_windows(c, node="n", window_s=7.0, since=0.0, until=math.inf):
        assert UTC == w.start.tzinfo
        assert 0 == w.start.timestamp() % 7
    with pytest.raises(ValueError, match="window_s"):
        cut_windows(c, node="n", window_s=0.0, since=0.0, until=math.inf)


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.floats(1.7e9, 1.7e9 + 600, allow_nan=False),
            st.one_of(st.none(), st.floats(0, 5000, allow_nan=False)),
            st.booleans(),
        ),
        max_size=60,
    ),
    st.sampled_from([0.25, 1.0, 10.0, 60.0]),
)
def test_windows_property(recs: Reference, window_s: float) -> None:
    """Any records: windows equal the plain loop, and every record in range is counted."""
    c = Chunk(
        time=np.array([r[0] for r in recs], dtype=np.float64),
        latency_ms=np.array([math.nan if r[1] is None else r[1] for r in recs]),
        error=np.array([r[2] for r in recs], dtype=np.bool_),
        line_start=np.arange(len(recs), dtype=np.int64),
        consumed=len(recs),
        lines=len(recs),
        bad_lines=0,
        bad_examples=(),
    )
    since, until = 1.7e9 + 60, 1.7e9 + 540
    actual = cut_windows(c, node="n", window_s=window_s, since=since, until=until)
    assert_same_windows(reference_windows(recs, "n", window_s, since, until), actual)


# never anything but InputError


def _parsers() -> list[LineParser]:
    return [
        nginx(),
        nginx(MSEC_FORMAT),
        nginx(MSEC_FORMAT.replace("$msec", "$pid")),
        haproxy(),
        regex(r"(?P<time>\S+) (?P<status>\S*) (?P<latency_s>\S+)"),
    ]


REAL_LINES = [
    line
    for data in (TIMED, MSEC, HAPROXY_SYSLOG, COMBINED)
    for line in data.decode().splitlines()[:40]
]


@st.composite
def mangled_lines(draw: st.DrawFn) -> str:
    """A real line with a piece replaced by random text (near misses find the edge cases)."""
    line = draw(st.sampled_from(REAL_LINES))
    at = draw(st.integers(0, len(line)))
    cut = draw(st.integers(0, 8))
    return line[:at] + draw(st.text(max_size=8)) + line[at + cut :]


@PROPERTY
@given(st.one_of(st.text(max_size=300), mangled_lines()))
def test_parsers_never_raise(line: str) -> None:
    """On any line, every parser returns a record or None."""
    for parser in _parsers():
        record = parser.parse(line)
        assert record is None or isinstance(record, LogRecord)
        if record is not None:
            assert 0 <= record.time
            assert record.latency_ms is None or record.latency_ms >= 0


@PROPERTY
@given(
    st.one_of(
        st.binary(max_size=400),
        st.lists(mangled_lines()).map(lambda lines: "\n".join(lines).encode()),
    )
)
def test_parse_chunk_only_input_error(data: bytes) -> None:
    """On any bytes, parse_chunk gives a chunk or an InputError with a line, nothing else."""
    for parser in _parsers():
        try:
            c = parse_chunk(data, parser, source="fuzz")
        except InputError as exc:
            line = exc.line
        else:
            line = 0
            assert c.consumed == data.rfind(b"\n") + 1
            assert len(c.time) + c.bad_lines == c.lines
        assert line is not None


@PROPERTY
@given(st.text(max_size=80), st.text(max_size=60))
def test_make_parser_only_input_error(text: str, line: str) -> None:
    """Any log_format or regex: a parser or an InputError; a parser then never raises."""
    for spec in (
        LogSpec(path="/x", log_format=text or None),
        LogSpec(path="/x", format="regex", regex=text.strip() or "x"),
        LogSpec(path="/x", log_format="$msec $request_time " + text),
    ):
        try:
            parser = make_parser(spec, "inventory.yaml")
        except InputError:
            continue
        record = parser.parse(line)
        assert record is None or isinstance(record, LogRecord)


def test_regex_lines_longer_than_the_cap_are_unparsed_fast() -> None:
    """A client-made 1 MB line cannot make an unanchored user regex take quadratic time."""
    import time as clock

    from capplan.collect.logs import REGEX_LINE_MAX, RegexParser

    parser = RegexParser(
        r"(?P<time>\S+) (?P<status>\d+) (?P<latency_ms>[\d.]+)", path="/x.log", source="inv"
    )
    good = "1795392000 200 12.5"
    assert parser.values(good) is not None
    hostile = "a " * 500_000
    start = clock.perf_counter()
    assert parser.values(hostile) is None
    assert clock.perf_counter() - start < 0.5
    assert parser.values(good + " " * (REGEX_LINE_MAX - len(good))) is not None
    assert parser.values(good + " " * (REGEX_LINE_MAX + 1 - len(good))) is None


# the block path of nginx logs against a line-by-line reading

JSON_FORMAT = (
    '$time_local "$request" $status "$http_user_agent" "$upstream_response_time" $request_time'
)
UPSTREAM_FORMAT = '$msec $status "$request" $upstream_response_time $request_time'
QUOTED_UPSTREAM_FORMAT = '$msec $status "$request" "$upstream_response_time" $request_time'
NGINX_FORMATS = [
    None,
    MSEC_FORMAT,
    MSEC_FORMAT.replace("$msec", "$pid"),
    JSON_FORMAT,
    UPSTREAM_FORMAT,
]
ODD_PIECES = ["", " ", "\r", "  \t", "é", "\u00a0", "\x1c", '\\"', '"', "-", ", 0.5", " : x"]


@st.composite
def upstream_lines(draw: st.DrawFn, quoted: bool = False) -> str:
    """
    Lines of UPSTREAM_FORMAT (QUOTED_UPSTREAM_FORMAT), where the latency may come from the
    upstream times alone.
    """
    stamp = draw(st.sampled_from(["1795392000.123", "1795392001", "17953920001234567", "-1"]))
    status = draw(st.sampled_from(["200", "500", "499", "5000"]))
    times = ["-", "", "-", "0.010", "0.010, 0.020 : 0.005", "-, 0.5", "x", "1e99", "٣"]
    upstream, request = draw(st.sampled_from(times)), draw(st.sampled_from(times))
    if quoted:
        upstream = f'"{upstream}"'
    return f'{stamp} {status} "GET / HTTP/1.1" {upstream} {request}'


@st.composite
def nginx_blocks(draw: st.DrawFn, log_format: str | None) -> bytes:
    """
    Real lines (or, for UPSTREAM_FORMAT, mostly lines of it), mangled ones, odd pieces and
    invalid UTF-8, joined by LF or CRLF.
    """
    own = (
        upstream_lines(quoted=log_format == QUOTED_UPSTREAM_FORMAT)
        if log_format in (UPSTREAM_FORMAT, QUOTED_UPSTREAM_FORMAT)
        else st.sampled_from(REAL_LINES)
    )
    line = st.one_of(
        own,
        own,
        st.sampled_from(REAL_LINES),
        mangled_lines(),
        st.sampled_from(ODD_PIECES),
        st.builds(lambda a, b: a + b, st.sampled_from(REAL_LINES), st.sampled_from(ODD_PIECES)),
    )
    lines = draw(st.lists(line, max_size=12))
    data = "\n".join(lines).encode()
    if draw(st.booleans()):
        data = data.replace(b"\n", b"\r\n")
    if draw(st.booleans()) and data:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82"])) + data[at:]
    return data + b"\n"


def _line_by_line(data: bytes, parser: LineParser) -> tuple[Reference, int, list[int]]:
    """
    Each line decoded on its own and matched by the format's regex with every possessive
    quantifier made greedy again (the regex as it was before they were possessive).
    """
    assert isinstance(parser, NginxParser)
    plain = re.compile(parser._regex.pattern.replace("*+", "*"), re.ASCII)
    out: Reference = []
    bad: list[int] = []
    for number, raw in enumerate(data.split(b"\n")[:-1], start=1):
        line = raw.decode("utf-8", errors="replace").removesuffix("\r")
        if not line or line.isspace():
            continue
        m = plain.fullmatch(line)
        values = None if m is None else parser._convert(*m.group(*_FIELDS))
        if values is None:
            bad.append(number)
            continue
        t, lat, err = values
        out.append((t, None if math.isnan(lat) else lat, err))
    return out, len(out) + len(bad), bad


@PROPERTY
@given(st.sampled_from(NGINX_FORMATS).flatmap(lambda f: st.tuples(st.just(f), nginx_blocks(f))))
def test_nginx_block_path_equals_line_by_line(case: tuple[str | None, bytes]) -> None:
    """
    parse_chunk's nginx path (one bytes regex per block, possessive quantifiers, fields
    converted by column) reads every line as the plain line-by-line reading does.
    """
    _same_as_line_by_line(*case)


@PROPERTY
@given(nginx_blocks(UPSTREAM_FORMAT))
def test_nginx_block_path_upstream_times(data: bytes) -> None:
    """The same for a format whose latency may come from the upstream times alone."""
    _same_as_line_by_line(UPSTREAM_FORMAT, data)


@PROPERTY
@given(nginx_blocks(QUOTED_UPSTREAM_FORMAT))
def test_nginx_block_path_quoted_upstream_times(data: bytes) -> None:
    """The same with the upstream times in quotes (a literal their pattern could swallow)."""
    _same_as_line_by_line(QUOTED_UPSTREAM_FORMAT, data)


def _same_as_line_by_line(log_format: str | None, data: bytes) -> None:
    parser = nginx(log_format)
    expected, lines, bad = _line_by_line(data, parser)
    if bad and not expected:  # no line parses: refused, naming the first
        with pytest.raises(InputError) as refused:
            parse_chunk(data, parser, source="s")
        assert refused.value.line == bad[0]
        return
    c = parse_chunk(data, parser, source="s", max_examples=len(bad) + 1)
    assert expected == records(c)
    assert (lines, len(bad)) == (c.lines, c.bad_lines)
    assert bad == [number for number, _ in c.bad_examples]


def test_nginx_block_path_slices_a_large_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block matched in several slices (one line longer than a slice) reads as in one."""
    from capplan.collect import logs

    data = TIMED + b"x" * 500 + b"\n" + b"\n\n" + TIMED
    whole = parse_chunk(data, nginx(), source="s")
    monkeypatch.setattr(logs, "_SLICE_BYTES", 256)
    sliced = parse_chunk(data, nginx(), source="s")
    assert records(whole) == records(sliced)
    assert (whole.lines, whole.bad_lines, whole.bad_examples) == (
        sliced.lines,
        sliced.bad_lines,
        sliced.bad_examples,
    )
    assert np.array_equal(whole.line_start, sliced.line_start)
