"""
Inventory and profile YAML (``capplan.inventory`` on ``capplan.yamlfile``): any text gives a
validated model or an InputError naming FILE:LINE with a hint; alias bombs, deep nesting and
big documents stay within the stated bounds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example

from bench.fuzz.targets import TARGETS, check, seeds

from .budget import MAX_BYTES
from .fuzzing import assert_bounded, fit, fuzz, long_line, many_lines
from .strategies import alias_bomb, retyped, yaml_inputs

FAMILY = "inventory/profile YAML"
SIZE = MAX_BYTES[FAMILY]
INVENTORY = seeds("inventory")[0]


@fuzz("inventory", yaml_inputs("inventory"))
@example(alias_bomb(9, 9))  # billion laughs: 9^8 lists, built for minutes and gigabytes
@example("[" * 1200 + "]" * 1200)  # the composer's recursion: RecursionError
@example("&a {*a : 1}\n")  # a key that holds itself: RecursionError
@example("a: 0x_\n")  # int("", 16): ValueError
@example("a: 2026-13-45\n")  # a timestamp out of range: ValueError
@example("a: " + "9" * 5000 + "\n")  # int() of more than 4300 digits: ValueError
@example("a: 1\n---\nb: 2\n")  # two documents: refused without a line
@example("a: !!python/name:os.system\n")  # an unknown tag: refused without a line
def test_inventory(text: str) -> None:
    """parse_inventory: an Inventory, or InputError at FILE:LINE (with a hint when YAML's)."""
    check(TARGETS["inventory"], text)


@fuzz("inventory_typed", retyped("inventory"))
def test_inventory_typed(text: str) -> None:
    """The example inventory with values of wrong types: an Inventory, or InputError."""
    check(TARGETS["inventory"], text)


@fuzz("profile", yaml_inputs("profile"))
def test_profile(text: str) -> None:
    """parse_profile: a Profile, or InputError at FILE:LINE (with a hint when YAML's)."""
    check(TARGETS["profile"], text)


def _node(i: int) -> str:
    address = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
    return f"  - {{name: n{i}, host: {address}, address: '{address}:8080'}}\n"


BIG: dict[str, tuple[str, Callable[[], str]]] = {
    "an alias bomb": ("inventory", lambda: "cluster: web\n" + alias_bomb(9, 9)),
    "a long alias chain": ("inventory", lambda: fit(alias_bomb(SIZE // 20, 2), FAMILY)),
    "deep nesting": ("inventory", lambda: long_line(FAMILY, "", "[")),
    "one long scalar": ("inventory", lambda: long_line(FAMILY, "cluster: ", "w")),
    "one long key": ("inventory", lambda: long_line(FAMILY, "", "k")[:-3] + ": 1"),
    "a dense flow list": ("inventory", lambda: long_line(FAMILY, "nodes: [", "1,")),
    "many valid nodes": ("inventory", lambda: many_lines(FAMILY, "cluster: web\nnodes:\n", _node)),
    "profile: a long description": ("profile", lambda: long_line(FAMILY, "description: ", "x")),
}


@pytest.mark.parametrize("label", list(BIG))
def test_bounds(label: str) -> None:
    """One big adversarial input: the property, within the stated time and memory."""
    target, make = BIG[label]
    assert_bounded(target, label, make())


def test_inventory_seed_is_valid() -> None:
    """The fuzzed seed parses: the mutations start from a valid inventory."""
    assert 4 == len(TARGETS["inventory"].parse(INVENTORY).nodes)  # type: ignore[arg-type, attr-defined]
