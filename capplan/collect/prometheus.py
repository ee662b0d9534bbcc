"""
Windows from Prometheus' HTTP API: ``capplan collect --from prometheus --url URL -i INV``.

Each window field is one PromQL query per node, evaluated by ``query_range`` at every window's
*end* with ``step`` = the window: a range selector ``[$window]`` evaluated at time t covers the
window that ends at t.  Window starts are multiples of the window length (like SSH collection),
so the same window from two runs is the same (``node``, ``start``).

The pure parts come first: the inventory's ``prometheus`` settings (pydantic models), PromQL
rendering (every label value is written as a PromQL string literal with its quotes, backslashes
and control characters escaped, so no value can end its string and add PromQL of its own),
the plan of ``query_range`` calls (at most 11,000 points per series, Prometheus' limit) and the
answers turned into windows.  The edge is at the bottom: HTTP through httpx, one worker per node,
each node's failure contained, each node's windows stored in one transaction.

Default queries (``R`` = ``requests_metric``, ``H`` = ``histogram``, ``S`` = ``status_label``;
``$match`` = the node's label matchers, ``$window`` = the window length such as ``60s``)::

    requests     sum(increase(R{$match}[$window]))
    errors       sum(increase(R{$match,S=~"5.."}[$window]))
    mean_ms      1000 * sum(rate(H_sum{$match}[$window])) / sum(rate(H_count{$match}[$window]))
    p50_ms       1000 * histogram_quantile(0.5, sum by (le) (rate(H_bucket{$match}[$window])))
    p95_ms, p99_ms   the same with 0.95, 0.99
    concurrency  sum(rate(H_sum{$match}[$window]))          (Little's law: busy seconds/second)
    cpu_util     1 - avg(rate(node_cpu_seconds_total{mode="idle",$node_match}[$window]))

(``1000 *`` and the concurrency's ``/ 1000`` follow ``histogram_unit``.)  A query returns one
series (aggregate with ``sum``); latencies in milliseconds, ``cpu_util`` as a fraction.
"""

from __future__ import annotations

import math
import re
import string
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from capplan.errors import CapplanError, InputError, StoreError
from capplan.samples import Window, format_time, parse_time

if TYPE_CHECKING:
    from capplan.collect.run import NodeOutcome
    from capplan.inventory import Inventory, Node
    from capplan.store import Store

__all__ = [
    "FIELDS",
    "MAX_POINTS",
    "PLACEHOLDERS",
    "Chunk",
    "Collected",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusNode",
    "PrometheusOptions",
    "PrometheusQueries",
    "PrometheusSettings",
    "assemble_windows",
    "collect_prometheus",
    "default_queries",
    "dry_run",
    "format_duration",
    "node_queries",
    "parse_answer",
    "parse_moment",
    "plan_chunks",
    "quote_label_value",
    "render_matchers",
    "render_query",
    "window_span",
]

#: Prometheus refuses a ``query_range`` whose series would have more points than this
#: ("exceeded maximum resolution of 11,000 points per timeseries"); a call asks for at most this.
MAX_POINTS = 11_000
#: The window fields, in the order they are queried (``requests`` first: no requests, no window).
FIELDS = ("requests", "errors", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "concurrency", "cpu_util")
#: What a query template may use: ``$match``, ``$node_match`` (label matchers, no braces),
#: ``$window`` (a PromQL duration), ``$node``, ``$instance``, ``$node_instance`` (quoted strings).
PLACEHOLDERS = frozenset({"match", "node_match", "window", "node", "instance", "node_instance"})
#: Queries to one Prometheus at once, whatever ``--parallel`` says (its own default
#: ``--query.max-concurrency`` is 20; capplan leaves room for dashboards and rules).
MAX_PARALLEL = 8

_LABEL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_METRIC_NAME_RE = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PrometheusError(CapplanError):
    """
    Prometheus cannot be reached, or its answer is not one capplan can use.
    """


# --- settings (the inventory's `prometheus` keys) ------------------------------------------


def _check_label_name(value: str) -> str:
    if not _LABEL_NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value[:80]!r} is not a Prometheus label name (letters, digits and '_', not "
            "starting with a digit)"
        )
    return value


def _check_label_value(value: str) -> str:
    if not value:
        # `instance=""` selects the series *without* the label: the whole pool, silently
        raise ValueError("an empty label value selects every series without that label")
    if len(value) > 1024:
        raise ValueError(f"{value[:40]!r}... is longer than 1024 characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{value[:80]!r} is not valid Unicode text") from None
    return value


def _check_metric_name(value: str) -> str:
    if not _METRIC_NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value[:80]!r} is not a Prometheus metric name (letters, digits, '_' and ':', "
            "not starting with a digit)"
        )
    return value


def _check_template(value: str) -> str:
    template = string.Template(value)
    if not template.is_valid():
        raise ValueError(
            f"{value[:80]!r}: a '$' that is not a placeholder (write $$ for a literal '$')"
        )
    unknown = sorted(set(template.get_identifiers()) - PLACEHOLDERS)
    if unknown:
        raise ValueError(
            f"unknown placeholder ${unknown[0]}; the placeholders are "
            + ", ".join(f"${p}" for p in sorted(PLACEHOLDERS))
        )
    if not value.strip():
        raise ValueError("an empty query")
    return value


def _check_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value[:80]!r} is not an http:// or https:// URL")
    if any(c.isspace() or ord(c) < 32 for c in value) or parts.query or parts.fragment:
        raise ValueError(f"{value[:80]!r}: give the base URL only (no query, no spaces)")
    return value


LabelName = Annotated[str, AfterValidator(_check_label_name)]
LabelValue = Annotated[str, AfterValidator(_check_label_value)]
MetricName = Annotated[str, AfterValidator(_check_metric_name)]
QueryTemplate = Annotated[str, AfterValidator(_check_template)]
Url = Annotated[str, AfterValidator(_check_url)]
Matchers = dict[LabelName, LabelValue]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class PrometheusQueries(_Strict):
    """
    PromQL templates that replace the default query of a field (placeholders: PLACEHOLDERS).
    """

    requests: QueryTemplate | None = None
    errors: QueryTemplate | None = None
    mean_ms: QueryTemplate | None = None
    p50_ms: QueryTemplate | None = None
    p95_ms: QueryTemplate | None = None
    p99_ms: QueryTemplate | None = None
    concurrency: QueryTemplate | None = None
    cpu_util: QueryTemplate | None = None


class PrometheusSettings(_Strict):
    """
    The inventory's pool-wide ``prometheus:`` section.
    """

    url: Url | None = None
    match: Matchers = Field(default_factory=dict)
    node_match: Matchers = Field(default_factory=dict)
    requests_metric: MetricName = "http_requests_total"
    status_label: LabelName = "code"
    histogram: MetricName = "http_request_duration_seconds"
    histogram_unit: Literal["seconds", "milliseconds"] = "seconds"
    node_exporter_port: int = Field(9100, ge=1, le=65535)
    queries: PrometheusQueries = Field(default_factory=PrometheusQueries)
    lookback_s: float = Field(86_400.0, gt=0, le=10 * 366 * 86_400, allow_inf_nan=False)
    settle_s: float = Field(60.0, ge=0, le=86_400, allow_inf_nan=False)
    timeout_s: float = Field(30.0, gt=0, le=3600, allow_inf_nan=False)
    max_points: int = Field(MAX_POINTS, ge=1, le=MAX_POINTS)


class PrometheusNode(_Strict):
    """
    A node's ``prometheus:`` key: the labels of its series, and queries of its own.

    ``match`` defaults to ``{instance: <address>}`` and ``node_match`` (node_exporter's series)
    to ``{instance: <address's host>:<node_exporter_port>}``; the pool's matchers are added to
    both (the node's win on the same label).
    """

    match: Matchers | None = None
    node_match: Matchers | None = None
    queries: PrometheusQueries | None = None


# --- PromQL --------------------------------------------------------------------------------


def quote_label_value(value: str) -> str:
    """
    ``value`` as a double-quoted PromQL string literal that means exactly ``value``.

    ``\\`` and ``"`` are escaped, and so is every character that is not printable (newlines,
    other control characters, Unicode format characters), as ``\\n``/``\\t``/``\\xHH``-style
    escapes PromQL's lexer reads like Go's ``strconv.Unquote``.

    Raises:
        InputError: a lone surrogate (not UTF-8, so not a label value Prometheus can hold).
    """
    out = ['"']
    for char in value:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif 0xD800 <= code <= 0xDFFF:
            raise InputError(f"{value[:80]!r} is not valid Unicode text", key="prometheus")
        elif char.isprintable():
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def render_matchers(labels: Mapping[str, str]) -> str:
    """
    ``a="x",b="y"`` (sorted, no braces) for the label matchers ``labels``.
    """
    parts = []
    for name in sorted(labels):
        _check_label_name(name)
        parts.append(f"{name}={quote_label_value(labels[name])}")
    return ",".join(parts)


def format_duration(ms: int) -> str:
    """
    A PromQL duration: ``60s``, ``5m``-style whole seconds as ``300s``, else ``1500ms``.
    """
    if ms <= 0:
        raise ValueError(f"{ms} ms is not a positive duration")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def default_queries(settings: PrometheusSettings) -> dict[str, str]:
    """
    The default template of every field (see the module's docstring).
    """
    r, h, s = settings.requests_metric, settings.histogram, settings.status_label
    ms = "1000 * " if settings.histogram_unit == "seconds" else ""
    per_s = "" if settings.histogram_unit == "seconds" else " / 1000"

    def quantile(q: str) -> str:
        return f"{ms}histogram_quantile({q}, sum by (le) (rate({h}_bucket{{$match}}[$window])))"

    return {
        "requests": f"sum(increase({r}{{$match}}[$window]))",
        "errors": f'sum(increase({r}{{$match,{s}=~"5.."}}[$window]))',
        "mean_ms": f"{ms}sum(rate({h}_sum{{$match}}[$window])) "
        f"/ sum(rate({h}_count{{$match}}[$window]))",
        "p50_ms": quantile("0.5"),
        "p95_ms": quantile("0.95"),
        "p99_ms": quantile("0.99"),
        "concurrency": f"sum(rate({h}_sum{{$match}}[$window])){per_s}",
        "cpu_util": '1 - avg(rate(node_cpu_seconds_total{mode="idle",$node_match}[$window]))',
    }


def render_query(
    template: str,
    *,
    node: str,
    match: Mapping[str, str],
    node_match: Mapping[str, str],
    window_ms: int,
) -> str:
    """
    Fill a query template: matchers and strings are quoted here, never by the template.

    Raises:
        InputError: an unknown placeholder, or ``$instance`` / ``$node_instance`` when the
            node's matchers have no ``instance`` label.
    """
    _check_template(template)
    values: dict[str, str] = {
        "match": render_matchers(match),
        "node_match": render_matchers(node_match),
        "window": format_duration(window_ms),
        "node": quote_label_value(node),
    }
    for key, labels in (("instance", match), ("node_instance", node_match)):
        if "instance" in labels:
            values[key] = quote_label_value(labels["instance"])
    try:
        return string.Template(template).substitute(values)
    except KeyError as exc:
        which = "match" if exc.args[0] == "instance" else "node_match"
        raise InputError(
            f"the query uses ${exc.args[0]}, but the node's {which} has no 'instance' label",
            key="prometheus.queries",
            hint=f"add instance to {which}, or write the query with ${which}",
        ) from None


def _host_of(address: str) -> str:
    host, _, _ = address.rpartition(":")
    return host or address


def node_queries(
    name: str,
    address: str,
    settings: PrometheusSettings,
    node: PrometheusNode | None,
    window_ms: int,
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """
    A node's rendered queries, and its two label matcher sets.

    Returns:
        (queries by field, match, node_match).

    Raises:
        InputError: the node's matchers are empty, or a template cannot be filled.
    """
    node = node or PrometheusNode()
    own = node.match if node.match is not None else {"instance": address}
    match = {**settings.match, **own}
    default_exporter = {"instance": f"{_host_of(address)}:{settings.node_exporter_port}"}
    node_match = {
        **settings.node_match,
        **(node.node_match if node.node_match is not None else default_exporter),
    }
    for key, labels in (("match", own), ("node_match", node_match)):
        if not labels:
            raise InputError(
                "no label matchers of the node's own: its queries would read the whole "
                "pool's series",
                key=f"nodes.{name}.prometheus.{key}",
                hint="give the labels of this node's series, e.g. {instance: 'web-1:8080'}",
            )
    templates = default_queries(settings)
    for overrides in (settings.queries, node.queries):
        if overrides is not None:
            for key in FIELDS:
                value = getattr(overrides, key)
                if value is not None:
                    templates[key] = value
    queries = {
        key: render_query(
            templates[key], node=name, match=match, node_match=node_match, window_ms=window_ms
        )
        for key in FIELDS
    }
    return queries, match, node_match


# --- time ----------------------------------------------------------------------------------


def _ms(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _moment(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _seconds_text(ms: int) -> str:
    """
    Milliseconds as the API's decimal seconds, exactly (``1700000000.5``).
    """
    whole, part = divmod(ms, 1000)
    return str(whole) if part == 0 else f"{whole}.{part:03d}".rstrip("0")


def parse_moment(text: str, now: datetime, option: str) -> datetime:
    """
    ``--since`` / ``--until``: a duration back from ``now`` (``90m``, ``6h``, ``7d``, ``2w``)
    or a time (ISO-8601, or epoch seconds).
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    value = text.strip()
    if value and value[-1] in units and not value.upper().endswith("Z"):
        try:
            amount = float(value[:-1]) * units[value[-1]]
        except ValueError:
            amount = math.nan
        if math.isfinite(amount) and 0 <= amount <= 100 * 366 * 86_400:
            return now - timedelta(seconds=amount)
    try:
        return parse_time(value)
    except ValueError as exc:
        raise InputError(
            str(exc), key=option, hint="a time (2026-11-20T10:00:00Z) or a duration ago (6h, 7d)"
        ) from None


def window_span(window_ms: int, *, since_ms: int, until_ms: int) -> tuple[int, int] | None:
    """
    The complete windows between two times: (first start, last end), or None when none fits.

    Window starts are multiples of ``window_ms`` since the epoch.
    """
    first = -(-since_ms // window_ms) * window_ms
    last = until_ms // window_ms * window_ms
    return (first, last) if last > first else None


@dataclass(frozen=True)
class Chunk:
    """
    One ``query_range`` call: evaluation times ``start_ms``, ``start_ms + step_ms``, ...,
    ``end_ms`` (each the end of a window).
    """

    start_ms: int
    end_ms: int
    step_ms: int

    @property
    def points(self) -> int:
        """
        How many points each series of the answer has at most.
        """
        return (self.end_ms - self.start_ms) // self.step_ms + 1

    @property
    def params(self) -> dict[str, str]:
        """
        The call's ``start``, ``end`` and ``step`` parameters.
        """
        return {
            "start": _seconds_text(self.start_ms),
            "end": _seconds_text(self.end_ms),
            "step": _seconds_text(self.step_ms),
        }


def plan_chunks(
    first_start_ms: int, last_end_ms: int, window_ms: int, max_points: int = MAX_POINTS
) -> list[Chunk]:
    """
    The calls that cover the windows from ``first_start_ms`` to ``last_end_ms``, each asking
    for at most ``max_points`` points, with no window asked twice or left out.
    """
    if max_points < 1 or window_ms < 1:
        raise ValueError("max_points and window_ms must be positive")
    count = (last_end_ms - first_start_ms) // window_ms
    chunks = []
    done = 0
    while done < count:
        size = min(max_points, count - done)
        start = first_start_ms + (done + 1) * window_ms
        chunks.append(Chunk(start, start + (size - 1) * window_ms, window_ms))
        done += size
    return chunks


# --- answers -------------------------------------------------------------------------------


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def parse_answer(answer: object, what: str) -> dict[int, float]:
    """
    The points of a ``query_range`` answer (its JSON, decoded): evaluation time in ms → value.

    ``NaN``, ``+Inf`` and ``-Inf`` are kept as floats; no series gives an empty dict.

    Raises:
        PrometheusError: an error answer (with Prometheus' own ``error`` text), more than one
            series, or a document that is not a ``query_range`` answer.
    """
    if not isinstance(answer, dict):
        raise PrometheusError(f"{what}: not a Prometheus API answer (a JSON object expected)")
    if answer.get("status") == "error":
        kind = _shorten(str(answer.get("errorType") or "error"), 40)
        raise PrometheusError(
            f"{what}: Prometheus says {kind}: {_shorten(str(answer.get('error')), 500)}"
        )
    data = answer.get("data")
    if answer.get("status") != "success" or not isinstance(data, dict):
        raise PrometheusError(f"{what}: not a Prometheus API answer (no status and data)")
    if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        raise PrometheusError(
            f"{what}: expected a matrix, got {str(data.get('resultType'))[:40]!r}"
        )
    result: list[Any] = data["result"]
    if len(result) > 1:
        labels = result[0].get("metric") if isinstance(result[0], dict) else None
        raise PrometheusError(
            f"{what}: the query returned {len(result)} series (e.g. {_shorten(str(labels), 200)}); "
            "it must return "
            "one per node: aggregate it, e.g. sum(...), or narrow the node's match labels"
        )
    points: dict[int, float] = {}
    for series in result:
        values = series.get("values") if isinstance(series, dict) else None
        if not isinstance(values, list):
            raise PrometheusError(f"{what}: a series without values")
        for point in values:
            try:
                stamp, text = point
                moment = round(float(stamp) * 1000)
                value = float(text)
            except (TypeError, ValueError, OverflowError):
                raise PrometheusError(
                    f"{what}: {_shorten(repr(point), 80)} is not a point"
                ) from None
            points[moment] = value
    return points


@dataclass
class Collected:
    """
    One node's windows from its answers, and what was left out and why.
    """

    windows: list[Window]
    gaps: int = 0  # windows with no requests point (no samples in Prometheus then)
    untimed: int = 0  # windows with requests but no mean latency: not storable
    notes: list[str] = field(default_factory=list)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def assemble_windows(
    node: str,
    window_ms: int,
    ends_ms: Iterable[int],
    values: Mapping[str, Mapping[int, float]],
) -> Collected:
    """
    Windows from each field's points (keyed by window end), per the samples CSV contract.

    - No ``requests`` point (a gap in the data), or one that is not finite: no window.
    - ``requests``, ``errors``: rounded to whole numbers (``increase`` extrapolates); no
      ``errors`` point means none (a 5xx counter often appears only with the first 5xx);
      errors above requests are capped at requests.
    - Latencies, ``concurrency``: NaN (``0/0`` when no request), infinite (a quantile in the
      ``+Inf`` bucket) or negative → empty.  A window with requests but no mean latency cannot
      be stored (the contract requires it) and is left out and counted.
    - ``cpu_util``: clamped to 0..1 when within 1% of it, else empty.
    - Percentiles that decrease (a custom query): the window is left out and counted.
    """
    collected = Collected([])
    inf_tail = 0
    bad_cpu = 0
    decreasing = 0
    for end in sorted(ends_ms):
        raw = values.get("requests", {}).get(end)
        if raw is None or not math.isfinite(raw) or raw < -0.5:
            collected.gaps += 1
            continue
        requests = max(0, round(raw))
        errors_raw = _finite(values.get("errors", {}).get(end))
        errors = min(requests, max(0, round(errors_raw))) if errors_raw is not None else 0
        fields: dict[str, float | None] = {}
        for key in ("mean_ms", "p50_ms", "p95_ms", "p99_ms", "concurrency"):
            value = values.get(key, {}).get(end)
            if value is not None and math.isinf(value) and key.startswith("p"):
                inf_tail += 1
            value = _finite(value)
            fields[key] = value if value is not None and value >= 0 else None
        cpu = _finite(values.get("cpu_util", {}).get(end))
        if cpu is not None:
            if -0.01 <= cpu <= 1.01:
                cpu = min(1.0, max(0.0, cpu))
            else:
                bad_cpu += 1
                cpu = None
        if requests > 0 and fields["mean_ms"] is None:
            collected.untimed += 1
            continue
        percentiles = [
            v for v in (fields["p50_ms"], fields["p95_ms"], fields["p99_ms"]) if v is not None
        ]
        if percentiles != sorted(percentiles):
            decreasing += 1
            continue
        collected.windows.append(
            Window(
                node=node,
                start=_moment(end - window_ms),
                seconds=window_ms / 1000,
                requests=requests,
                errors=errors,
                mean_ms=fields["mean_ms"],
                p50_ms=fields["p50_ms"],
                p95_ms=fields["p95_ms"],
                p99_ms=fields["p99_ms"],
                concurrency=fields["concurrency"],
                cpu_util=cpu,
            )
        )
    if collected.gaps:
        collected.notes.append(
            f"{collected.gaps} windows had no request counter samples in Prometheus (a gap) "
            "and were skipped"
        )
    if collected.untimed:
        collected.notes.append(
            f"{collected.untimed} windows had requests but no mean latency (no histogram "
            "samples) and were not stored"
        )
    if inf_tail:
        collected.notes.append(
            f"{inf_tail} percentiles fell in the histogram's +Inf bucket and were left empty "
            "(add a larger bucket to the service's histogram)"
        )
    if bad_cpu:
        collected.notes.append(
            f"{bad_cpu} windows had a cpu_util outside 0..1 and it was left empty (check the "
            "cpu_util query: it must give a fraction of the node's CPUs)"
        )
    if decreasing:
        collected.notes.append(
            f"{decreasing} windows had decreasing percentiles and were not stored (check the "
            "p50_ms/p95_ms/p99_ms queries)"
        )
    return collected


# --- the edge: HTTP, workers, the store ----------------------------------------------------


@dataclass(frozen=True)
class PrometheusOptions:
    """
    How to run a collection from Prometheus (``None``: the inventory's setting).
    """

    url: str | None = None
    window_s: float = 60.0
    since: datetime | None = None
    until: datetime | None = None
    parallel: int = MAX_PARALLEL
    deadline_s: float = 120.0
    timeout_s: float | None = None
    max_points: int | None = None


class _NodeFailedError(Exception):
    """
    One node's collection failed at ``stage`` (``config``, ``connect``, ``query``, ...).
    """

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True)
class _NodePlan:
    node: Node
    queries: dict[str, str]
    match: dict[str, str]
    span: tuple[int, int] | None  # (first window start, last window end), ms
    asked: tuple[int, int]  # the range asked for (since, until), ms


def _window_ms(window_s: float) -> int:
    ms = round(window_s * 1000)
    if not math.isfinite(window_s) or window_s < 1 or abs(ms - window_s * 1000) > 1e-6:
        raise InputError(
            f"{window_s!r} s is not a window Prometheus can step by",
            key="--window",
            hint="a whole number of milliseconds, at least 1 s (and at least twice the "
            "scrape interval, for rate() to see two samples), e.g. 60s",
        )
    return ms


def _display_url(url: str) -> str:
    """
    The URL without its user and password (for tables, notes and messages).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _resolve(
    inventory: Inventory,
    settings: PrometheusSettings | None,
    node_settings: Mapping[str, PrometheusNode | None] | None,
) -> tuple[PrometheusSettings, dict[str, PrometheusNode | None]]:
    if settings is None:
        found = getattr(inventory, "prometheus", None)
        settings = found if isinstance(found, PrometheusSettings) else PrometheusSettings()
    if node_settings is None:
        node_settings = {}
        for node in inventory.nodes:
            value = getattr(node, "prometheus", None)
            node_settings[node.name] = value if isinstance(value, PrometheusNode) else None
    return settings, dict(node_settings)


def _selected(inventory: Inventory, names: Sequence[str]) -> list[Node]:
    wanted = set(names)
    unknown = wanted - {n.name for n in inventory.nodes}
    if unknown:
        raise InputError(
            f"no node called {', '.join(sorted(unknown))} in the inventory",
            key="--node",
            hint=f"nodes are: {', '.join(n.name for n in inventory.nodes)}",
        )
    return [n for n in inventory.nodes if not wanted or n.name in wanted]


def _url(options: PrometheusOptions, settings: PrometheusSettings) -> str:
    url = options.url or settings.url
    if not url:
        raise InputError(
            "no Prometheus URL",
            key="--url",
            hint="give --url http://HOST:9090, or prometheus.url in the inventory",
        )
    try:
        return _check_url(url)
    except ValueError as exc:
        raise InputError(str(exc), key="--url", hint="e.g. http://127.0.0.1:9090") from None


def dry_run(
    inventory: Inventory,
    options: PrometheusOptions,
    *,
    names: Sequence[str] = (),
    settings: PrometheusSettings | None = None,
    node_settings: Mapping[str, PrometheusNode | None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """
    What ``--dry-run`` prints: per node its route (the URL) and the queries as ``field: PromQL``
    (rows like SSH's: ``node``, ``route``, ``commands``), and nodes that cannot be planned.
    """
    settings, per_node = _resolve(inventory, settings, node_settings)
    url = _display_url(_url(options, settings))
    window_ms = _window_ms(options.window_s)
    rows: list[dict[str, Any]] = []
    problems: list[dict[str, str]] = []
    for node, planned in _plan(_selected(inventory, names), settings, per_node, window_ms):
        if isinstance(planned, InputError):
            problems.append({"node": node.name, "stage": "config", "reason": str(planned)})
            continue
        queries = planned[0]
        rows.append(
            {"node": node.name, "route": url, "commands": [f"{k}: {queries[k]}" for k in FIELDS]}
        )
    return rows, problems


def _plan(
    nodes: Sequence[Node],
    settings: PrometheusSettings,
    per_node: Mapping[str, PrometheusNode | None],
    window_ms: int,
) -> list[tuple[Node, tuple[dict[str, str], dict[str, str]] | InputError]]:
    """
    Each node's queries and matchers, or why it has none (two nodes with the same matchers
    would each get the other's requests too).
    """
    out: list[tuple[Node, tuple[dict[str, str], dict[str, str]] | InputError]] = []
    seen: dict[str, str] = {}
    for node in nodes:
        try:
            queries, match, _ = node_queries(
                node.name, node.address, settings, per_node.get(node.name), window_ms
            )
        except InputError as exc:
            out.append((node, exc))
            continue
        selector = render_matchers(match)
        if selector in seen:
            out.append(
                (
                    node,
                    InputError(
                        f"the same labels as node {seen[selector]} ({selector}): both would "
                        "read the same series",
                        key=f"nodes.{node.name}.prometheus.match",
                        hint="give each node the labels of its own series",
                    ),
                )
            )
            continue
        seen[selector] = node.name
        out.append((node, (queries, match)))
    return out


def _newest_end_ms(store: Store, node: str) -> int | None:
    newest: Window | None = None
    for newest in store.windows(node):  # noqa: B007 - the last one, oldest first
        pass
    if newest is None:
        return None
    return _ms(newest.end)


class PrometheusClient:
    """
    The HTTP side: one httpx client for the run, no retries, Prometheus' answers decoded.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        import httpx

        from capplan import __version__

        self.url = _display_url(url)
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/",
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            headers={"User-Agent": f"capplan/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
        )

    def close(self) -> None:
        """
        Close the connections (calls still running fail with stage ``deadline``).
        """
        self._http.close()

    def post(self, path: str, form: Mapping[str, str], what: str) -> object:
        """
        POST a form to the API and return its decoded JSON (an error answer included).

        Raises:
            _NodeFailedError: stage ``connect`` (unreachable) or ``query`` (a timeout, or not
                an API answer).
        """
        import httpx

        try:
            response = self._http.post(path, data=dict(form))
        except httpx.TimeoutException:
            raise _NodeFailedError(
                "query",
                f"{what}: no answer from Prometheus at {self.url} within {self.timeout_s:g} s "
                "(a narrower range, --since, or prometheus.timeout_s)",
            ) from None
        except httpx.HTTPError as exc:
            raise _NodeFailedError(
                "connect",
                f"cannot reach Prometheus at {self.url}: {exc or type(exc).__name__}; check "
                "--url and that Prometheus listens there",
            ) from None
        except RuntimeError as exc:  # the client was closed by the deadline
            raise _NodeFailedError("deadline", str(exc)) from None
        try:
            answer: object = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "status" in answer:
            return answer
        kind = response.headers.get("content-type", "?")
        raise _NodeFailedError(
            "query",
            f"{what}: HTTP {response.status_code} from {self.url}{path} is not a Prometheus API "
            f"answer ({kind}: {_shorten(response.text, 120)!r}); is --url Prometheus' base URL?",
        )

    def check(self) -> None:
        """
        One cheap query: Prometheus answers, and it is Prometheus' API.

        Raises:
            PrometheusError: it cannot be reached, or does not answer like Prometheus.
        """
        try:
            answer = self.post("api/v1/query", {"query": "1"}, "checking the URL")
        except _NodeFailedError as exc:
            raise PrometheusError(exc.reason) from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise PrometheusError(
                f"Prometheus at {self.url} refused a test query: {_shorten(str(error), 500)}"
            )

    def query_range(self, query: str, chunk: Chunk, what: str) -> dict[int, float]:
        answer = self.post(
            "api/v1/query_range",
            {"query": query, **chunk.params, "timeout": f"{self.timeout_s:g}"},
            what,
        )
        try:
            return parse_answer(answer, what)
        except PrometheusError as exc:
            raise _NodeFailedError("query", f"{exc} — query: {query}") from None


@dataclass
class _Result:
    windows: list[Window]
    notes: list[str]


def _collect_node(
    client: PrometheusClient,
    plan: _NodePlan,
    window_ms: int,
    max_points: int,
    cancelled: Callable[[], bool],
) -> _Result:
    if plan.span is None:
        since, until = (format_time(_moment(t)) for t in plan.asked)
        return _Result([], [f"no complete window from {since} to {until}: nothing new"])
    first, last = plan.span
    chunks = plan_chunks(first, last, window_ms, max_points)
    values: dict[str, dict[int, float]] = {key: {} for key in FIELDS}
    for chunk in chunks:
        for key in FIELDS:
            if cancelled():
                raise _NodeFailedError("deadline", "the run's deadline passed")
            points = client.query_range(plan.queries[key], chunk, key)
            values[key].update(points)
            if key == "requests" and not points:
                break  # no requests in this chunk: no window, the other fields are moot
    span = f"{format_time(_moment(first))} to {format_time(_moment(last))}"
    if not values["requests"]:
        raise _NodeFailedError(
            "query",
            f"no series: the requests query returned nothing from {span}; check the labels "
            f"of this node's series (nodes.{plan.node.name}.prometheus.match, now "
            f"{render_matchers(plan.match)}) and prometheus.requests_metric — query: "
            f"{plan.queries['requests']}",
        )
    ends = range(first + window_ms, last + 1, window_ms)
    collected = assemble_windows(plan.node.name, window_ms, ends, values)
    notes = [f"{len(collected.windows)} windows from {span}", *collected.notes]
    if not values["errors"] and collected.windows:
        notes.append("the errors query found no series: 0 errors counted (no 5xx, or check it)")
    if not collected.windows and collected.untimed:
        raise _NodeFailedError(
            "query",
            f"{collected.untimed} windows had requests but no latency: the mean_ms query "
            f"returned nothing; set prometheus.histogram to the service's latency histogram "
            f"(or prometheus.queries.mean_ms) — query: {plan.queries['mean_ms']}",
        )
    return _Result(collected.windows, notes)


def collect_prometheus(
    inventory: Inventory,
    store: Store,
    options: PrometheusOptions,
    *,
    names: Sequence[str] = (),
    settings: PrometheusSettings | None = None,
    node_settings: Mapping[str, PrometheusNode | None] | None = None,
    on_state: Callable[[str, str], None] = lambda node, state: None,
    now: datetime | None = None,
) -> list[NodeOutcome]:
    """
    Read every node's windows (or those in ``names``) from Prometheus and store them.

    The range: ``options.since`` (else the end of the node's newest stored window, else
    ``lookback_s`` back) to ``options.until`` (else now − ``settle_s``, so that the last
    scrapes are in).  Windows already stored with the same values are left as they are.

    Args:
        settings, node_settings: The inventory's ``prometheus`` sections (default: read from
            ``inventory`` and its nodes).

    Returns:
        One outcome per node in inventory order, as SSH collection gives them.

    Raises:
        PrometheusError: Prometheus cannot be reached at all (nothing is collected).
        InputError: no URL, a bad window, an unknown ``--node``.
    """
    from capplan.collect.run import NodeOutcome

    settings, per_node = _resolve(inventory, settings, node_settings)
    url = _url(options, settings)
    window_ms = _window_ms(options.window_s)
    max_points = min(options.max_points or settings.max_points, MAX_POINTS)
    now = now or datetime.now(UTC)
    until = options.until or now - timedelta(seconds=settings.settle_s)
    if until > now:
        raise InputError(
            f"{format_time(until)} is in the future",
            key="--until",
            hint="only complete windows are stored",
        )
    nodes = _selected(inventory, names)
    outcomes: dict[str, NodeOutcome] = {}
    plans: list[_NodePlan] = []
    for node, planned in _plan(nodes, settings, per_node, window_ms):
        outcome = NodeOutcome(node.name, _display_url(url), status="pending")
        outcomes[node.name] = outcome
        if isinstance(planned, InputError):
            outcome.failed("config", str(planned))
            on_state(node.name, "failed")
            continue
        queries, match = planned
        if options.since is not None:
            since_ms = _ms(options.since)
        else:
            newest = _newest_end_ms(store, node.name)
            since_ms = (
                newest if newest is not None else _ms(until) - round(settings.lookback_s * 1000)
            )
        span = window_span(window_ms, since_ms=since_ms, until_ms=_ms(until))
        plans.append(_NodePlan(node, queries, match, span, (since_ms, _ms(until))))
    if plans:
        client = PrometheusClient(url, options.timeout_s or settings.timeout_s)
        try:
            client.check()
            _run(client, plans, outcomes, store, options, window_ms, max_points, on_state)
        finally:
            client.close()
    order = [n.name for n in nodes]
    return sorted(outcomes.values(), key=lambda o: order.index(o.node))


def _run(
    client: PrometheusClient,
    plans: list[_NodePlan],
    outcomes: dict[str, NodeOutcome],
    store: Store,
    options: PrometheusOptions,
    window_ms: int,
    max_points: int,
    on_state: Callable[[str, str], None],
) -> None:
    from capplan.collect.run import run_until

    cancel = threading.Event()
    deadline = time.monotonic() + options.deadline_s
    workers = max(1, min(options.parallel, MAX_PARALLEL))

    def work(plan: _NodePlan) -> _Result:
        on_state(plan.node.name, "querying")
        return _collect_node(client, plan, window_ms, max_points, cancel.is_set)

    def late(plan: _NodePlan) -> None:
        name = plan.node.name
        outcome = outcomes[name]
        outcome.late(options.deadline_s)
        on_state(name, "failed")

    run_until(
        plans,
        work,
        workers=workers,
        deadline=deadline,
        name="prometheus",
        finish=lambda future, plan: _finish(future, plan.node.name, outcomes, store, on_state),
        late=late,
        cancel=cancel.set,
    )


def _finish(
    future: Future[_Result],
    name: str,
    outcomes: dict[str, NodeOutcome],
    store: Store,
    on_state: Callable[[str, str], None],
) -> None:
    outcome = outcomes[name]
    try:
        result = future.result()
    except _NodeFailedError as exc:
        outcome.failed(exc.stage, exc.reason)
        on_state(name, "failed")
        return
    except Exception as exc:
        outcome.failed("collect", f"{type(exc).__name__}: {exc}")
        on_state(name, "failed")
        return
    outcome.notes.extend(result.notes)
    on_state(name, "storing")
    try:
        saved = store.save_collection(name, result.windows, cursor=None, snapshot=None)
    except StoreError as exc:
        outcome.failed("store", str(exc))
        on_state(name, "failed")
        return
    outcome.windows = saved.added
    outcome.requests = sum(w.requests for w in result.windows)
    if result.windows:
        outcome.cpu_util = result.windows[-1].cpu_util
    outcome.status = "ok" if not outcome.failures else "partial"
    on_state(name, outcome.status)
