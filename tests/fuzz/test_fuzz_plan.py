"""
plan.yaml (``capplan.planfile``): any text gives a valid plan that dumps and reads back the same,
or an InputError naming FILE:LINE with a hint; big plans stay within the stated bounds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example

from bench.fuzz.targets import TARGETS, check, seeds

from .budget import MAX_BYTES
from .fuzzing import assert_bounded, fuzz, long_line
from .strategies import alias_bomb, retyped, yaml_inputs

FAMILY = "plan.yaml"
SIZE = MAX_BYTES[FAMILY]
PLAN = seeds("plan")[0]


@fuzz("plan", yaml_inputs("plan"))
@example(PLAN + alias_bomb(9, 9))  # billion laughs: built for minutes and gigabytes
@example(PLAN.replace("version: 1", "version: 1\nx: " + "[" * 1200))  # RecursionError
def test_plan(text: str) -> None:
    """parse_plan: a plan that round-trips through dump_plan, or InputError at FILE:LINE."""
    check(TARGETS["plan"], text)


@fuzz("plan_typed", retyped("plan"))
def test_plan_typed(text: str) -> None:
    """The fixed plan with values of wrong types: a plan, or InputError at FILE:LINE."""
    check(TARGETS["plan"], text)


def _many_nodes() -> str:
    """The fixed plan with backup copies of its first node, to the stated input size."""
    head, _, rest = PLAN.partition("nodes:\n")
    nodes, _, tail = rest.partition("pool:\n")
    first = nodes.split("  - node: ")[1]
    out = [head, "nodes:\n", "  - node: " + first]
    size = sum(len(p.encode()) for p in (*out, "pool:\n", tail))
    for i in range(1, 10_000):
        node = "  - node: " + first.replace("web-1", f"w{i}", 1).replace(
            "203.0.113.11:", f"10.9.{i // 250}.{i % 250 + 1}:"
        ).replace("state: active", "state: backup")
        size += len(node.encode())
        if size > SIZE:
            break
        out.append(node)
    return "".join(out) + "pool:\n" + tail


BIG: dict[str, tuple[str, Callable[[], str]]] = {
    "an alias bomb": ("plan", lambda: PLAN + alias_bomb(9, 9)),
    "one long reason": ("plan", lambda: long_line(FAMILY, PLAN + "x: ", "r")),
    "many nodes": ("plan", _many_nodes),
}


@pytest.mark.parametrize("label", list(BIG))
def test_bounds(label: str) -> None:
    """One big adversarial input: the property, within the stated time and memory."""
    target, make = BIG[label]
    assert_bounded(target, label, make())


def test_many_nodes_is_a_valid_plan() -> None:
    """The big plan is valid: the bound covers parsing, validating and dumping it whole."""
    plan = TARGETS["plan"].parse(_many_nodes())  # type: ignore[arg-type]
    assert len(plan.nodes) > 10  # type: ignore[attr-defined]
