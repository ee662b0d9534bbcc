"""
The README table of the fuzzing (``python -m tests.fuzz.table``) covers every parser.
"""

from __future__ import annotations

from bench.fuzz.targets import ATHERIS_TARGETS, TARGETS

from .budget import CASES, MAX_BYTES, PEAK_MIB, SECONDS
from .table import table


def test_table_covers_every_parser_and_family() -> None:
    """Every target is fuzzed by hypothesis and listed; every family has its stated bounds."""
    text = table()
    fuzzed = {name.removesuffix("_typed") for name in CASES}
    assert set(TARGETS) == fuzzed
    for target in TARGETS.values():
        assert f"`{target.entry}`" in text
        assert target.family in SECONDS
    assert set(SECONDS) == set(PEAK_MIB) == set(MAX_BYTES)
    assert all(f"| `{name}` |" in text for name in ATHERIS_TARGETS)
