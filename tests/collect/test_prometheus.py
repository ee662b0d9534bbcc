"""
Collection from Prometheus: the pure parts (PromQL quoting, chunk plans, answers → windows),
then a real Prometheus (Debian's ``prometheus``) on 127.0.0.1, backfilled with
``promtool tsdb create-blocks-from openmetrics`` from data whose windows are known.
"""

from __future__ import annotations

import ast
import http.server
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from capplan.collect.prometheus import (
    FIELDS,
    MAX_POINTS,
    Chunk,
    PrometheusClient,
    PrometheusError,
    PrometheusNode,
    PrometheusOptions,
    PrometheusQueries,
    PrometheusSettings,
    _display_url,
    assemble_windows,
    collect_prometheus,
    dry_run,
    format_duration,
    node_queries,
    parse_answer,
    parse_moment,
    plan_chunks,
    quote_label_value,
    render_matchers,
    render_query,
    window_span,
)
from capplan.errors import InputError
from capplan.inventory import Inventory, parse_inventory
from capplan.samples import Window
from capplan.status import ExitStatus
from capplan.store import Store
from tests.collect.promlab import EVIL_INSTANCE, GAP, HOURS, T0, Fixture, PrometheusLab
from tests.collect.sshd import free_port
from tests.conftest import CLI

# --- PromQL quoting and templates ----------------------------------------------------------


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1))
def test_quoted_value_reads_back_as_itself(value: str) -> None:
    """PromQL strings unescape like Go's (and Python's) literals: the value comes back whole."""
    quoted = quote_label_value(value)
    assert quoted.startswith('"')
    assert quoted.endswith('"')
    inner = quoted[1:-1]
    # no quote ends the string early, and no raw line break (PromQL's lexer refuses those)
    assert "\n" not in inner
    assert "\r" not in inner
    assert not any(inner[i] == '"' and _unescaped(inner, i) for i in range(len(inner)))
    assert ast.literal_eval(quoted) == value


def _unescaped(text: str, index: int) -> bool:
    backslashes = len(text[:index]) - len(text[:index].rstrip("\\"))
    return backslashes % 2 == 0


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("web-1:8080", '"web-1:8080"'),
        ('a"} or vector(1) #', '"a\\"} or vector(1) #"'),
        ("back\\slash", '"back\\\\slash"'),
        ("line\nbreak\t", '"line\\nbreak\\t"'),
        ("nul\x00bell\x07", '"nul\\u0000bell\\u0007"'),
        ("rtl\u202eoverride", '"rtl\\u202eoverride"'),
        ("é ü 東京", '"é ü 東京"'),
    ],
)
def test_hostile_label_values_are_escaped(value: str, quoted: str) -> None:
    assert quote_label_value(value) == quoted


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(InputError, match="not valid Unicode"):
        quote_label_value("a\ud800")


def test_matchers_are_sorted_and_quoted() -> None:
    assert render_matchers({"job": "web", "instance": 'x"y'}) == 'instance="x\\"y",job="web"'


def test_label_names_metric_names_and_values_are_checked() -> None:
    """Names are refused outside their grammar (they are not quoted); empty values too."""
    with pytest.raises(ValidationError, match="not a Prometheus label name"):
        PrometheusSettings.model_validate({"match": {'job"} or x{a': "web"}})
    with pytest.raises(ValidationError, match="not a Prometheus label name"):
        PrometheusSettings.model_validate({"status_label": "code)"})
    with pytest.raises(ValidationError, match="not a Prometheus metric name"):
        PrometheusSettings.model_validate({"requests_metric": "x) or vector(1"})
    with pytest.raises(ValidationError, match="every series without that label"):
        PrometheusNode.model_validate({"match": {"instance": ""}})
    with pytest.raises(ValidationError, match="http"):
        PrometheusSettings.model_validate({"url": "file:///etc/passwd"})
    with pytest.raises(ValueError, match="not a Prometheus label name"):
        render_matchers({"a-b": "x"})


def test_templates_take_known_placeholders_only() -> None:
    with pytest.raises(ValidationError, match=r"unknown placeholder \$nodes"):
        PrometheusQueries.model_validate({"requests": "sum(x{instance=$nodes})"})
    with pytest.raises(ValidationError, match="not a placeholder"):
        PrometheusQueries.model_validate({"requests": "sum(x{a=$1})"})
    query = render_query(
        "sum(x{$match}) + $$y + count(z{n=$node,i=$instance}[$window])",
        node="web-1",
        match={"instance": 'a"b'},
        node_match={},
        window_ms=90_000,
    )
    assert query == 'sum(x{instance="a\\"b"}) + $y + count(z{n="web-1",i="a\\"b"}[90s])'
    with pytest.raises(InputError, match="no 'instance' label"):
        render_query("x{i=$instance}", node="a", match={"pod": "p"}, node_match={}, window_ms=1)


def test_default_queries_and_matchers() -> None:
    """The node's matchers default to its address (and :9100 for node_exporter), merged with
    the pool's; histogram_unit moves the factor to milliseconds."""
    settings = PrometheusSettings.model_validate(
        {"match": {"job": "web"}, "node_match": {"job": "node"}}
    )
    queries, match, node_match = node_queries("web-1", "10.0.0.1:8080", settings, None, 60_000)
    assert match == {"job": "web", "instance": "10.0.0.1:8080"}
    assert node_match == {"job": "node", "instance": "10.0.0.1:9100"}
    sel = 'instance="10.0.0.1:8080",job="web"'
    assert queries["requests"] == f"sum(increase(http_requests_total{{{sel}}}[60s]))"
    assert queries["errors"] == f'sum(increase(http_requests_total{{{sel},code=~"5.."}}[60s]))'
    assert queries["p99_ms"] == (
        "1000 * histogram_quantile(0.99, sum by (le) "
        f"(rate(http_request_duration_seconds_bucket{{{sel}}}[60s])))"
    )
    assert queries["cpu_util"] == (
        '1 - avg(rate(node_cpu_seconds_total{mode="idle",'
        'instance="10.0.0.1:9100",job="node"}[60s]))'
    )
    ms = PrometheusSettings.model_validate(
        {"histogram": "latency_ms", "histogram_unit": "milliseconds"}
    )
    queries, _, _ = node_queries("a", "[2001:db8::1]:80", ms, None, 1500)
    assert queries["mean_ms"].startswith("sum(rate(latency_ms_sum{")
    assert queries["concurrency"].endswith("[1500ms])) / 1000")
    assert '"[2001:db8::1]:9100"' in queries["cpu_util"]
    node = PrometheusNode.model_validate(
        {"match": {"pod": "web-1-abc"}, "queries": {"cpu_util": "0.5 + 0 * vector($window)"}}
    )
    queries, match, _ = node_queries("a", "h:1", settings, node, 60_000)
    assert match == {"job": "web", "pod": "web-1-abc"}
    assert queries["cpu_util"] == "0.5 + 0 * vector(60s)"
    with pytest.raises(InputError, match="no label matchers"):
        node_queries("a", "h:1", PrometheusSettings(), PrometheusNode(match={}), 60_000)


def test_durations() -> None:
    assert format_duration(60_000) == "60s"
    assert format_duration(1_500) == "1500ms"
    with pytest.raises(ValueError, match="positive"):
        format_duration(0)


# --- time ranges and chunks ----------------------------------------------------------------


def test_window_span_keeps_complete_aligned_windows() -> None:
    assert window_span(60_000, since_ms=30_000, until_ms=250_000) == (60_000, 240_000)
    assert window_span(60_000, since_ms=60_000, until_ms=120_000) == (60_000, 120_000)
    assert window_span(60_000, since_ms=61_000, until_ms=150_000) is None


def test_chunks_at_the_11000_point_limit() -> None:
    """11,000 windows are one call of 11,000 points; one more makes a second call."""
    w = 1000
    [one] = plan_chunks(0, 11_000 * w, w)
    assert one.points == MAX_POINTS == 11_000
    assert (one.start_ms, one.end_ms) == (w, 11_000 * w)  # evaluated at each window's end
    first, second = plan_chunks(0, 11_001 * w, w)
    assert (first.points, second.points) == (11_000, 1)
    assert second.start_ms == first.end_ms + w
    assert plan_chunks(0, 0, w) == []
    assert Chunk(1_700_000_000_500, 1_700_000_001_000, 500).params == {
        "start": "1700000000.5",
        "end": "1700000001",
        "step": "0.5",
    }


@given(
    windows=st.integers(0, 50_000),
    window_ms=st.sampled_from([1000, 15_000, 60_000, 1500]),
    max_points=st.integers(1, MAX_POINTS),
    offset=st.integers(0, 10_000),
)
def test_chunks_cover_every_window_once(
    windows: int, window_ms: int, max_points: int, offset: int
) -> None:
    first = offset * window_ms
    chunks = plan_chunks(first, first + windows * window_ms, window_ms, max_points)
    ends = [t for c in chunks for t in range(c.start_ms, c.end_ms + 1, c.step_ms)]
    assert ends == [first + (i + 1) * window_ms for i in range(windows)]
    assert all(1 <= c.points <= max_points for c in chunks)


def test_moments() -> None:
    now = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert parse_moment("6h", now, "--since") == now - timedelta(hours=6)
    assert parse_moment("2w", now, "--since") == now - timedelta(days=14)
    assert parse_moment("2026-11-19T00:00:00Z", now, "--since") == datetime(
        2026, 11, 19, tzinfo=UTC
    )
    assert parse_moment("1763632800", now, "--until") == datetime(2025, 11, 20, 10, tzinfo=UTC)
    with pytest.raises(InputError, match="--since"):
        parse_moment("yesterday", now, "--since")


def test_credentials_never_shown() -> None:
    assert _display_url("https://ops:s3cret@prom.example:9090/p") == "https://prom.example:9090/p"
    assert _display_url("http://127.0.0.1:9090") == "http://127.0.0.1:9090"


# --- answers -------------------------------------------------------------------------------


def _matrix(*series: list[list[Any]]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"i": str(n)}, "values": v} for n, v in enumerate(series)],
        },
    }


def test_answers_parse_with_nan_and_infinities() -> None:
    answer = _matrix([[1700000060, "12"], [1700000120.5, "NaN"], [1700000180, "+Inf"]])
    points = parse_answer(answer, "p99_ms")
    assert points[1_700_000_060_000] == 12
    assert math.isnan(points[1_700_000_120_500])
    assert points[1_700_000_180_000] == math.inf
    assert parse_answer(_matrix(), "requests") == {}


def test_error_answers_show_prometheus_error() -> None:
    answer = {
        "status": "error",
        "errorType": "bad_data",
        "error": "1:5: parse error: unexpected <EOF>",
    }
    with pytest.raises(PrometheusError, match="bad_data: 1:5: parse error: unexpected <EOF>"):
        parse_answer(answer, "requests")


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ([], "not a Prometheus API answer"),
        ({"status": "success"}, "no status and data"),
        (
            {"status": "success", "data": {"resultType": "vector", "result": []}},
            "expected a matrix",
        ),
        (_matrix([[1, "1"]], [[1, "2"]]), "returned 2 series"),
        (_matrix([[1, "x"]]), "is not a point"),
        (_matrix([[1]]), "is not a point"),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}}]}},
            "without values",
        ),
    ],
)
def test_bad_answers(answer: object, problem: str) -> None:
    with pytest.raises(PrometheusError, match=problem):
        parse_answer(answer, "requests")


def test_windows_from_answers() -> None:
    """Gaps skip a window; NaN latency is empty when there was no request and makes the window
    unstorable when there was; errors default to 0 and never exceed requests."""
    w = 60_000
    ends = [w * i for i in range(1, 8)]
    nan, inf = math.nan, math.inf
    values = {
        "requests": {
            ends[0]: 120.0,
            ends[1]: 0.0,
            ends[2]: 99.6,
            ends[3]: 10.0,
            ends[5]: 5.0,
            ends[6]: 8.0,
        },
        "errors": {ends[0]: 3.2, ends[2]: 150.0},
        "mean_ms": {
            ends[0]: 20.0,
            ends[1]: nan,
            ends[2]: 30.0,
            ends[3]: nan,
            ends[5]: 9.0,
            ends[6]: 4.0,
        },
        "p50_ms": {ends[0]: 10.0, ends[1]: nan, ends[2]: 20.0, ends[5]: 9.0, ends[6]: 4.0},
        "p95_ms": {ends[0]: 50.0, ends[1]: nan, ends[2]: 60.0, ends[5]: 2.0, ends[6]: 5.0},
        "p99_ms": {ends[0]: 90.0, ends[1]: nan, ends[2]: inf, ends[6]: 6.0},
        "concurrency": {ends[0]: 0.04, ends[1]: 0.0, ends[2]: 0.05},
        "cpu_util": {ends[0]: 1.004, ends[1]: -0.002, ends[2]: 1.7, ends[6]: 0.5},
    }
    collected = assemble_windows("web-1", w, ends, values)
    by_start = {int(x.start.timestamp()): x for x in collected.windows}
    assert sorted(by_start) == [0, 60, 120, 360]
    first = by_start[0]
    assert (first.requests, first.errors, first.mean_ms, first.p99_ms) == (120, 3, 20.0, 90.0)
    assert first.cpu_util == 1.0  # clamped from 1.004
    idle = by_start[60]
    assert (idle.requests, idle.mean_ms, idle.p50_ms, idle.concurrency) == (0, None, None, 0.0)
    assert idle.cpu_util == 0.0
    third = by_start[120]
    assert (third.requests, third.errors) == (100, 100)  # rounded; errors capped
    assert third.p99_ms is None  # +Inf
    assert third.cpu_util is None  # 1.7 is no fraction
    assert by_start[360].errors == 0  # no errors point: none
    assert collected.gaps == 1  # ends[4]
    assert collected.untimed == 1  # ends[3]: requests without latency
    notes = " ".join(collected.notes)
    assert "1 windows had no request counter samples" in notes
    assert "decreasing percentiles" in notes  # ends[5]
    assert "+Inf bucket" in notes
    assert "outside 0..1" in notes


# --- against a real Prometheus -------------------------------------------------------------

UNTIL = datetime.fromtimestamp(T0 + HOURS * 3600, UTC)
SINCE = datetime.fromtimestamp(T0, UTC)
SETTINGS = PrometheusSettings.model_validate(
    {"match": {"job": "web"}, "node_match": {"job": "node"}}
)
NODES: dict[str, PrometheusNode | None] = {
    "web-1": None,  # the defaults: instance = address, node_exporter on the address's host
    "web-2": None,
    "web-3": None,
    "evil": PrometheusNode.model_validate({"match": {"instance": EVIL_INSTANCE}}),
    "web-9": None,  # no series at all
}


@pytest.fixture(scope="module")
def fixture() -> Fixture:
    return Fixture.build()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, fixture: Fixture) -> Iterator[str]:
    """A real Prometheus with the fixture's six hours, on 127.0.0.1; its URL."""
    lab = PrometheusLab(tmp_path_factory.mktemp("prometheus"), fixture)
    try:
        lab.start()
        yield lab.url
    finally:
        lab.stop()


def _inventory(names: list[str]) -> Inventory:
    lines = ["cluster: lab", "nodes:"]
    for i, name in enumerate(names):
        number = {"web-1": 11, "web-2": 12, "web-3": 13, "web-9": 19}.get(name, 30 + i)
        lines += [f"  - name: {name}", f"    address: 127.0.0.{number}:8080"]
    return parse_inventory("\n".join(lines) + "\n", "inventory.yaml")


def _collect(
    url: str,
    store: Store,
    names: list[str],
    nodes: dict[str, PrometheusNode | None] | None = None,
    **options: Any,
) -> Any:
    return collect_prometheus(
        _inventory(names),
        store,
        PrometheusOptions(url=url, **{"since": SINCE, "until": UNTIL, **options}),
        settings=SETTINGS,
        node_settings=nodes or NODES,
    )


def _assert_windows(got: list[Window], expected: list[Window]) -> None:
    assert [w.start for w in got] == [w.start for w in expected]
    for g, e in zip(got, expected, strict=True):
        assert (g.node, g.seconds, g.requests, g.errors) == (
            e.node,
            e.seconds,
            e.requests,
            e.errors,
        )
        for column in ("mean_ms", "p50_ms", "p95_ms", "p99_ms", "concurrency", "cpu_util"):
            a, b = getattr(g, column), getattr(e, column)
            assert (a is None) == (b is None), (column, g, e)
            if a is not None:
                assert a == pytest.approx(b, rel=1e-9, abs=1e-12), (column, g.start)


def test_windows_match_the_known_truth(prometheus: str, fixture: Fixture, tmp_path: Path) -> None:
    """Every stored window is the fixture's: requests and errors exact, latencies the
    histogram's interpolation (within the bucket), CPU from node_exporter's idle counters; the
    gap is skipped, idle windows have empty latencies, a hostile label value selects its own
    series only, and a node without series fails alone."""
    with Store.open(tmp_path / "c.db") as store:
        outcomes = _collect(prometheus, store, ["web-1", "web-2", "web-3", "evil", "web-9"])
        stored = {name: list(store.windows(name)) for name in fixture.nodes}
    status = {o.node: (o.status, o.windows) for o in outcomes}
    assert status == {
        "web-1": ("ok", 360),
        "web-2": ("ok", 330),
        "web-3": ("ok", 360),
        "evil": ("ok", 360),
        "web-9": ("failed", 0),
    }
    for name in fixture.nodes:
        _assert_windows(stored[name], fixture.expected(name))
    # the gap: web-2 has no window starting in it (and the fixture agrees)
    gap = [w for w in stored["web-2"] if GAP[0] <= w.start.timestamp() < GAP[1]]
    assert gap == []
    assert any("30 windows had no request counter samples" in n for n in outcomes[1].notes)
    # idle windows: no request, so no latency, but the CPU is known
    idle = [w for w in stored["web-3"] if w.requests == 0]
    assert len(idle) == 40
    assert all(w.mean_ms is None and w.p99_ms is None for w in idle)
    assert all(w.cpu_util is not None for w in idle)
    assert any("errors query found no series" in n for n in outcomes[2].notes)
    # p99 of web-1 sometimes falls in the +Inf bucket: Prometheus answers the largest bound
    assert max(w.p99_ms or 0 for w in stored["web-1"]) == pytest.approx(1000.0)
    # the hostile instance: 2 requests per 15 s, and nothing of web-1 or of vector(1)
    assert {w.requests for w in stored["evil"]} == {8}
    assert all(w.cpu_util is None for w in stored["evil"])  # no node_exporter series
    [failed] = [o for o in outcomes if o.node == "web-9"]
    [(stage, reason)] = failed.failures
    assert stage == "query"
    assert "no series" in reason
    assert 'instance="127.0.0.19:8080"' in reason
    assert "nodes.web-9.prometheus.match" in reason


def test_many_chunks_give_the_same_windows(
    prometheus: str, fixture: Fixture, tmp_path: Path
) -> None:
    """With at most 50 points per call the 360 windows take 8 calls per query, and come out
    the same: none lost or doubled at the chunk edges."""
    with Store.open(tmp_path / "c.db") as store:
        [outcome] = _collect(prometheus, store, ["web-1"], max_points=50)
        stored = list(store.windows("web-1"))
    assert (outcome.status, outcome.windows) == ("ok", 360)
    _assert_windows(stored, fixture.expected("web-1"))


def test_the_real_point_limit(prometheus: str) -> None:
    """Prometheus takes a call of 11,000 points and refuses one of 11,002 with its own message;
    a range of 25,000 points comes back whole in three calls."""
    client = PrometheusClient(prometheus, 29.5)  # a timeout of whole and part seconds
    try:
        start = T0 * 1000
        [full] = plan_chunks(start - 1000, start + 10_999_000, 1000)
        assert full.points == MAX_POINTS
        assert len(client.query_range("vector(1)", full, "test")) == MAX_POINTS
        with pytest.raises(Exception, match="exceeded maximum resolution of 11,000 points"):
            client.query_range("vector(1)", Chunk(start, start + 11_001_000, 1000), "test")
        chunks = plan_chunks(start, start + 25_000_000, 1000)
        assert len(chunks) == 3
        points: dict[int, float] = {}
        for chunk in chunks:
            points.update(client.query_range("vector(1)", chunk, "test"))
        assert sorted(points) == list(range(start + 1000, start + 25_000_001, 1000))
    finally:
        client.close()


def test_resume_and_rerun(prometheus: str, fixture: Fixture, tmp_path: Path) -> None:
    """Without --since a node resumes after its newest stored window; a rerun of the same
    range stores nothing new and changes nothing."""
    with Store.open(tmp_path / "c.db") as store:
        [first] = _collect(prometheus, store, ["web-1"], until=SINCE + timedelta(hours=2))
        [second] = _collect(prometheus, store, ["web-1"], since=None)
        [again] = _collect(prometheus, store, ["web-1"])
        stored = list(store.windows("web-1"))
    assert (first.windows, second.windows, again.windows) == (120, 240, 0)
    assert again.status == "ok"
    _assert_windows(stored, fixture.expected("web-1"))


def test_window_length(prometheus: str, fixture: Fixture, tmp_path: Path) -> None:
    with Store.open(tmp_path / "c.db") as store:
        [outcome] = _collect(prometheus, store, ["web-2"], window_s=300.0)
        stored = list(store.windows("web-2"))
    assert outcome.status == "ok"
    _assert_windows(stored, fixture.expected("web-2", 300))


def test_a_bad_query_shows_prometheus_error(prometheus: str, tmp_path: Path) -> None:
    """A node whose query Prometheus refuses fails with Prometheus' error and the query; a
    query that returns several series is refused; the other nodes are stored."""
    nodes = {
        **NODES,
        "web-1": PrometheusNode.model_validate({"queries": {"p95_ms": "histogram_quantile(0.95"}}),
        "web-2": PrometheusNode.model_validate(
            {"queries": {"requests": "increase(http_requests_total{$match}[$window])"}}
        ),
    }
    with Store.open(tmp_path / "c.db") as store:
        outcomes = _collect(prometheus, store, ["web-1", "web-2", "web-3"], nodes)
        assert store.count("web-1") == 0
    by_node = {o.node: o for o in outcomes}
    [(stage, reason)] = by_node["web-1"].failures
    assert stage == "query"
    assert "p95_ms: Prometheus says bad_data" in reason
    assert "parse error" in reason
    assert "histogram_quantile(0.95" in reason
    [(stage, reason)] = by_node["web-2"].failures
    assert "returned 2 series" in reason
    assert "sum(...)" in reason
    assert by_node["web-3"].status == "ok"
    assert by_node["web-3"].windows == 360


def test_the_deadline_ends_the_run(prometheus: str, tmp_path: Path) -> None:
    with Store.open(tmp_path / "c.db") as store:
        [outcome] = _collect(prometheus, store, ["web-1"], deadline_s=0.0)
        assert store.count() == 0
    assert outcome.status == "failed"
    assert outcome.failures == [("deadline", "not done within --deadline 0 s")]


def test_unreachable_url_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    with (
        Store.open(tmp_path / "c.db") as store,
        pytest.raises(PrometheusError) as caught,
    ):
        _collect(f"http://127.0.0.1:{port}", store, ["web-1"])
    message = str(caught.value)
    assert f"cannot reach Prometheus at http://127.0.0.1:{port}" in message
    assert "check --url" in message


def test_not_prometheus_is_a_clear_error(tmp_path: Path) -> None:
    """A URL that answers, but not Prometheus' API (a web page)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = b"<html>login</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/grafana"
        with (
            Store.open(tmp_path / "c.db") as store,
            pytest.raises(PrometheusError, match="not a Prometheus API answer"),
        ):
            _collect(url, store, ["web-1"])
    finally:
        server.shutdown()
        server.server_close()


def test_input_errors(tmp_path: Path) -> None:
    with Store.open(tmp_path / "c.db") as store:
        with pytest.raises(InputError, match="--url"):
            _collect("", store, ["web-1"])
        with pytest.raises(InputError, match="--window"):
            _collect("http://127.0.0.1:1", store, ["web-1"], window_s=0.5)
        with pytest.raises(InputError, match="--node"):
            collect_prometheus(
                _inventory(["web-1"]),
                store,
                PrometheusOptions(url="http://127.0.0.1:1"),
                names=["web-7"],
                settings=SETTINGS,
            )
        with pytest.raises(InputError, match="--until"):
            _collect("http://127.0.0.1:1", store, ["web-1"], until=datetime.now(UTC) + timedelta(1))


def test_dry_run_lists_the_queries() -> None:
    """--dry-run: each node's queries; a node with no matchers of its own, or with another
    node's, cannot be planned (it would read the pool's or the other node's series)."""
    rows, problems = dry_run(
        _inventory(["web-1", "evil", "twin"]),
        PrometheusOptions(url="http://u:p@127.0.0.1:9090"),
        settings=SETTINGS,
        node_settings={
            "evil": PrometheusNode(match={}),
            "twin": PrometheusNode(match={"instance": "127.0.0.11:8080"}),
        },
    )
    assert [r["node"] for r in rows] == ["web-1"]
    assert rows[0]["route"] == "http://127.0.0.1:9090"
    assert [c.split(":")[0] for c in rows[0]["commands"]] == list(FIELDS)
    assert [(p["node"], p["stage"]) for p in problems] == [("evil", "config"), ("twin", "config")]
    assert "no label matchers of the node's own" in problems[0]["reason"]
    assert "the same labels as node web-1" in problems[1]["reason"]


# --- the command line (`capplan collect --from prometheus`) ---------------------------------


def _inventory_file(tmp_path: Path, url: str | None = None) -> Path:
    import yaml

    document: dict[str, Any] = {
        "cluster": "lab",
        "prometheus": {"match": {"job": "web"}, "node_match": {"job": "node"}},
        "nodes": [
            {"name": "web-1", "address": "127.0.0.11:8080"},
            {"name": "web-2", "address": "127.0.0.12:8080"},
            {
                "name": "evil",
                "address": "127.0.0.30:8080",
                "prometheus": {"match": {"instance": EVIL_INSTANCE}},
            },
            {"name": "web-9", "address": "127.0.0.19:8080"},
        ],
    }
    if url is not None:
        document["prometheus"]["url"] = url
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def test_cli_collect_from_prometheus(
    cli: CLI, prometheus: str, fixture: Fixture, tmp_path: Path
) -> None:
    """The JSON contract (nodes: node, windows, status; failures: node, stage, reason), exit 3
    for the node without series, and the windows in the store."""
    inv = _inventory_file(tmp_path)
    db = tmp_path / "c.db"
    since, until = str(T0), SINCE.replace(hour=6).isoformat()
    args = ("collect", "--from", "prometheus", "--url", prometheus, "-i", inv, "--db", db)
    result = cli(*args, "--since", since, "--until", until, "--json")
    assert result.status == ExitStatus.PARTIAL, result.stderr
    document = result.json
    nodes = {n["node"]: (n["status"], n["windows"], n["route"]) for n in document["nodes"]}
    assert nodes == {
        "web-1": ("ok", 360, prometheus),
        "web-2": ("ok", 330, prometheus),
        "evil": ("ok", 360, prometheus),
        "web-9": ("failed", 0, prometheus),
    }
    [failure] = document["failures"]
    assert (failure["node"], failure["stage"]) == ("web-9", "query")
    with Store.open(db) as store:
        _assert_windows(list(store.windows("evil")), fixture.expected("evil"))
    # again, as a table, the URL from the inventory: nothing new
    inv = _inventory_file(tmp_path, prometheus)
    result = cli(
        "collect",
        "--from",
        "prometheus",
        "-i",
        inv,
        "--db",
        db,
        "--since",
        since,
        "--until",
        until,
        "--node",
        "web-1",
    )
    assert result.status == ExitStatus.OK, result.stderr
    assert "web-1" in result.stdout
    assert prometheus in result.stdout


def test_cli_errors_and_dry_run(cli: CLI, tmp_path: Path) -> None:
    inv = _inventory_file(tmp_path)
    port = free_port("127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    result = cli(
        "collect", "--from", "prometheus", "--url", url, "-i", inv, "--db", tmp_path / "c.db"
    )
    assert result.status == ExitStatus.FAILURE
    assert f"cannot reach Prometheus at {url}" in result.stderr
    result = cli("collect", "--from", "prometheus", "-i", inv, "--db", tmp_path / "c.db")
    assert result.status == ExitStatus.BAD_INPUT
    assert "--url" in result.stderr
    result = cli("collect", "--url", url, "-i", inv, "--db", tmp_path / "c.db")
    assert result.status == ExitStatus.BAD_INPUT
    assert "go with --from prometheus" in result.stderr
    result = cli("collect", "--from", "graphite", "-i", inv)
    assert result.status == ExitStatus.BAD_INPUT
    result = cli("collect", "--from", "prometheus", "--url", url, "-i", inv, "--dry-run", "--json")
    assert result.status == ExitStatus.OK, result.stderr
    rows = {r["node"]: r for r in result.json["nodes"]}
    assert rows["evil"]["commands"][0] == (
        "requests: sum(increase(http_requests_total{instance="
        + quote_label_value(EVIL_INSTANCE)
        + ',job="web"}[60s]))'
    )
