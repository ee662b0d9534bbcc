"""
The fuzz test runner: ``@fuzz(name, strategy)`` runs a property on exactly the budgeted number
of hypothesis cases and records how many ran; ``assert_bounded`` checks the stated time and
memory bounds on one big input.

Measurements go to ``REPORT`` (JSON, under the gitignored ``.pytest_cache``), which
``python -m tests.fuzz.table`` reads: the counts in the README are the ones the suite ran.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import json
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz.targets import TARGETS, check

from .budget import CASES, DEADLINE_MS, MAX_BYTES, PEAK_MIB, SECONDS

REPORT = Path(__file__).resolve().parents[2] / ".pytest_cache" / "capplan-fuzz.json"

FUZZ_SETTINGS = {
    "derandomize": True,  # the same cases every run: a CI failure reproduces locally
    "database": None,
    "deadline": DEADLINE_MS,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


def record(section: str, name: str, values: dict[str, Any]) -> None:
    """
    Merge one measurement into REPORT (``{section: {name: values}}``).
    """
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    try:
        report = json.loads(REPORT.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        report = {}
    report.setdefault(section, {})[name] = values
    tmp = REPORT.with_name(f"{REPORT.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(REPORT)


def fuzz(
    name: str, strategy: st.SearchStrategy[Any]
) -> Callable[[Callable[[Any], None]], Callable[[], None]]:
    """
    Turn ``body(input)`` into a test that runs it on ``CASES[name]`` generated inputs (plus its
    ``@example``s), asserts that many ran, and records the count.
    """

    def decorate(body: Callable[[Any], None]) -> Callable[[], None]:
        count = 0

        @functools.wraps(body)  # keeps the @example inputs
        def case(*args: Any, **kwargs: Any) -> None:
            nonlocal count
            count += 1
            body(*args, **kwargs)

        hypothesis_test = settings(max_examples=CASES[name], **FUZZ_SETTINGS)(given(strategy)(case))

        def test() -> None:
            nonlocal count
            count = 0
            started = time.perf_counter()
            hypothesis_test()
            seconds = time.perf_counter() - started
            examples = len(getattr(body, "hypothesis_explicit_examples", ()))
            record("hypothesis", name, {"cases": count, "seconds": round(seconds, 2)})
            assert count >= CASES[name] + examples, (
                f"hypothesis ran {count} cases of {name}, the budget is {CASES[name]}"
            )

        test.__name__ = test.__qualname__ = body.__name__
        test.__doc__ = body.__doc__
        test.__module__ = body.__module__
        test.__signature__ = inspect.Signature()  # type: ignore[attr-defined]
        return test

    return decorate


def fit(text: str, family: str, *, whole_lines: bool = True) -> str:
    """
    ``text`` cut to at most ``MAX_BYTES[family]`` of UTF-8: after its last whole line, or (for
    one long line) anywhere.
    """
    data = text.encode("utf-8", "surrogatepass")
    limit = MAX_BYTES[family]
    if len(data) <= limit:
        return text
    data = data[:limit]
    if whole_lines:
        data = data[: data.rfind(b"\n") + 1]
    return data.decode("utf-8", "ignore")


def long_line(family: str, head: str, fill: str = "9") -> str:
    """``head`` then ``fill`` repeated, one line of the stated input size."""
    return fit(head + fill * MAX_BYTES[family], family, whole_lines=False)


def many_lines(family: str, head: str, make_line: Callable[[int], str]) -> str:
    """``head`` then ``make_line(0)``, ``make_line(1)``, ... up to the stated input size."""
    lines, size, i = [head], len(head), 0
    while size < MAX_BYTES[family]:
        lines.append(make_line(i))
        size += len(lines[-1].encode("utf-8", "surrogatepass"))
        i += 1
    return fit("".join(lines), family)


@contextlib.contextmanager
def _traced() -> Iterator[Callable[[], int]]:
    gc.collect()
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_bounded(target_name: str, label: str, data: str | bytes) -> None:
    """
    Check the property and the stated bounds of ``target_name`` on one big input: the call
    returns or refuses within SECONDS and allocates below PEAK_MIB (tracemalloc peak).

    One run, traced: tracing slows allocation-heavy parsing several times, so the time
    measured is an upper bound of the time untraced.
    """
    target = TARGETS[target_name]
    family = target.family
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    assert size <= MAX_BYTES[family], f"{label}: {size} bytes is above the stated input size"
    with _traced() as peak:
        started = time.perf_counter()
        outcome = check(target, data)
        seconds = time.perf_counter() - started
        peak_mib = peak() / 2**20
    record(
        "bounds",
        f"{family}: {label}",
        {
            "family": family,
            "bytes": size,
            "seconds": round(seconds, 3),
            "peak_mib": round(peak_mib, 1),
            "outcome": type(outcome).__name__,
        },
    )
    assert seconds <= SECONDS[family], f"{label}: {seconds:.2f} s (bound {SECONDS[family]} s)"
    assert peak_mib <= PEAK_MIB[family], f"{label}: {peak_mib:.0f} MiB (bound {PEAK_MIB[family]})"
