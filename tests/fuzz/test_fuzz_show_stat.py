"""
HAProxy's ``show stat`` CSV (``capplan.collect.haproxy``): any text gives rows or an InputError
naming SOURCE:LINE with a hint; big inputs stay within the stated bounds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example
from hypothesis import strategies as st

from bench.fuzz.targets import TARGETS, check, seeds

from .budget import MAX_BYTES
from .fuzzing import assert_bounded, fit, fuzz, long_line, many_lines
from .strategies import text_inputs

FAMILY = "HAProxy show stat"
SIZE = MAX_BYTES[FAMILY]
HEADER = seeds("show_stat")[0].split("\n", 1)[0] + "\n"


@fuzz(
    "show_stat",
    st.one_of(
        text_inputs("show_stat", ","),
        st.lists(st.sampled_from(seeds("show_stat")[0].split("\n")), max_size=8).map("\n".join),
    ),
)
@example("# pxname,svname,scur\na,b," + "9" * 5000 + "\n")  # int() of 5000 digits: ValueError
def test_show_stat(text: str) -> None:
    """parse_show_stat: rows with int counters, or InputError at SOURCE:LINE with a hint."""
    check(TARGETS["show_stat"], text)


def _row(i: int) -> str:
    return f"p{i},s{i}\n"


BIG: dict[str, tuple[str, Callable[[], str]]] = {
    "one long line": ("show_stat", lambda: long_line(FAMILY, "# pxname,svname\n", "a")),
    "one long quoted cell": ("show_stat", lambda: long_line(FAMILY, '# pxname,svname\n"', "a")),
    "a header of many columns": (
        "show_stat",
        lambda: (
            fit(
                "# pxname,svname,c" + ",c".join(map(str, range(SIZE // 4))),
                FAMILY,
                whole_lines=False,
            )[:-1]
            + "\n"
        ),
    ),
    "wide rows": (
        "show_stat",
        lambda: many_lines(
            FAMILY, "# pxname,svname," + "x," * 1000 + "\n", lambda i: "," * 1002 + "\n"
        ),
    ),
    "tiny rows": ("show_stat", lambda: many_lines(FAMILY, "# pxname,svname\n", _row)),
    "real rows": (
        "show_stat",
        lambda: many_lines(
            FAMILY, HEADER, lambda i: seeds("show_stat")[0].split("\n")[1 + i % 4] + "\n"
        ),
    ),
}


@pytest.mark.parametrize("label", list(BIG))
def test_bounds(label: str) -> None:
    """One big adversarial input: the property, within the stated time and memory."""
    target, make = BIG[label]
    assert_bounded(target, label, make())
