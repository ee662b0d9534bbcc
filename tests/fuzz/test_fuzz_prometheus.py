"""
Prometheus' answers (``capplan.collect.prometheus``): any decoded JSON document gives points
(evaluation time in ms → float) or a PrometheusError that names the node and query it answered
and stays short; the points then give windows in the samples contract, whatever their values.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from capplan.collect.prometheus import PrometheusError, assemble_windows, parse_answer

from .budget import DEADLINE_MS
from .fuzzing import record

#: Hypothesis cases per CI run (derandomized): documents, and windows from points.
CASES_ANSWERS = 400
CASES_WINDOWS = 300
MAX_MESSAGE = 4000
WHAT = "web-1: requests"

_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["NaN", "+Inf", "-Inf", "1e309", "-0", "", "x", "0x10", "1_000"]),
    st.integers(-(10**30), 10**30).map(str),
    st.text(max_size=12),
)
_STAMP = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.sampled_from(["1795392000", "x", None, [], {}]),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def answers(draw: st.DrawFn) -> Any:
    """Valid query_range answers with parts corrupted, or arbitrary JSON."""
    if draw(st.integers(0, 4)) == 0:
        return draw(_JSON)
    points = draw(st.lists(st.lists(st.one_of(_STAMP, _VALUE), min_size=0, max_size=3), max_size=6))
    good = [[1795392000 + 60 * i, draw(_VALUE)] for i in range(draw(st.integers(0, 5)))]
    series = {"metric": draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))}
    series["values"] = draw(st.sampled_from([good, points, good + points, None, "x"]))
    result = draw(st.sampled_from([[series], [], [series, series], None, {}]))
    data = {
        "resultType": draw(st.sampled_from(["matrix", "vector", "scalar", None])),
        "result": result,
    }
    answer: dict[str, Any] = {
        "status": draw(st.sampled_from(["success", "error", None])),
        "data": data,
    }
    if answer["status"] == "error":
        answer["errorType"] = draw(st.text(max_size=10))
        answer["error"] = draw(st.text(max_size=5000))
    if draw(st.booleans()):
        answer[draw(st.text(max_size=6))] = draw(_JSON)
    return answer


count = {"answers": 0, "windows": 0}


@settings(
    max_examples=CASES_ANSWERS,
    deadline=DEADLINE_MS,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(answers())
@example({"status": "error", "errorType": "bad_data", "error": "x" * 100_000})
@example(
    {"status": "success", "data": {"resultType": "matrix", "result": [{"values": [[1e308, "1"]]}]}}
)
def test_answers(answer: Any) -> None:
    """parse_answer: points (int ms → float), or a short PrometheusError naming node and query."""
    count["answers"] += 1
    text = json.dumps(answer)  # what the HTTP edge decodes: any JSON document
    try:
        points = parse_answer(json.loads(text), WHAT)
    except PrometheusError as exc:
        message = str(exc)
        assert message.startswith(f"{WHAT}: "), message[:200]
        assert len(message) <= MAX_MESSAGE, len(message)
        return
    assert isinstance(points, dict)
    for moment, value in points.items():
        assert isinstance(moment, int)
        assert isinstance(value, float)


_POINT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e6, 1e9), st.just(0.0)
)


@settings(
    max_examples=CASES_WINDOWS,
    deadline=DEADLINE_MS,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "requests",
                "errors",
                "mean_ms",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "concurrency",
                "cpu_util",
            ]
        ),
        st.dictionaries(st.sampled_from([60_000 * i for i in range(1, 9)]), _POINT, max_size=8),
    )
)
def test_windows_from_any_points(values: dict[str, dict[int, float]]) -> None:
    """Whatever the points, the windows keep the samples contract (finite, ordered, counted)."""
    count["windows"] += 1
    ends = [60_000 * i for i in range(1, 9)]
    collected = assemble_windows("web-1", 60_000, ends, values)
    for w in collected.windows:
        assert w.requests >= 0
        assert 0 <= w.errors <= w.requests
        present = [v for v in (w.p50_ms, w.p95_ms, w.p99_ms) if v is not None]
        assert all(math.isfinite(v) and v >= 0 for v in present)
        assert present == sorted(present)
        if w.cpu_util is not None:
            assert 0.0 <= w.cpu_util <= 1.0


def test_counts_recorded() -> None:
    """The cases above ran at least their budgets (recorded for the README's table)."""
    record("hypothesis", "prometheus_answers", {"cases": count["answers"]})
    record("hypothesis", "prometheus_windows", {"cases": count["windows"]})
    assert count["answers"] >= CASES_ANSWERS
    assert count["windows"] >= CASES_WINDOWS
