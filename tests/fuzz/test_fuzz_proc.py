"""
``/proc`` files and the probe's output (``capplan.collect.probes``, ``harvest.parse_probe``):
any text gives a snapshot or an InputError naming NODE:FILE:LINE (or NODE: probe) with a hint;
big inputs stay within the stated bounds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example
from hypothesis import strategies as st

from bench.fuzz.targets import TARGETS, check, seeds

from .budget import MAX_BYTES
from .fuzzing import assert_bounded, fit, fuzz, long_line, many_lines
from .strategies import evil, text_inputs

FAMILY = "/proc"
SIZE = MAX_BYTES[FAMILY]
PROBE = seeds("probe")[0]


@fuzz("proc_stat", text_inputs("proc_stat", " "))
@example("cpu " + "9" * 5000 + " 1 1 1\n")  # int() of more than 4300 digits: ValueError
def test_proc_stat(text: str) -> None:
    """parse_proc_stat: a CPU snapshot, or InputError at NODE:/proc/stat:LINE with a hint."""
    check(TARGETS["proc_stat"], text)


@fuzz("meminfo", text_inputs("meminfo", " :"))
@example("MemTotal: " + "9" * 5000 + " kB\n")  # int() of more than 4300 digits: ValueError
def test_meminfo(text: str) -> None:
    """parse_meminfo: sizes, or InputError at NODE:/proc/meminfo:LINE with a hint."""
    check(TARGETS["meminfo"], text)


@fuzz("loadavg", text_inputs("loadavg", " /"))
def test_loadavg(text: str) -> None:
    """parse_loadavg: three finite loads, or InputError at NODE:/proc/loadavg:1 with a hint."""
    check(TARGETS["loadavg"], text)


@st.composite
def probe_sections(draw: st.DrawFn) -> str:
    """The probe's output with its sections dropped, doubled, reordered or given bad values."""
    sections = [s for s in PROBE.split("@capplan:") if s]
    picked = draw(st.lists(st.sampled_from(sections), max_size=10))
    if draw(st.booleans()) and picked:
        at = draw(st.integers(0, len(picked) - 1))
        name = picked[at].split("\n", 1)[0]
        picked[at] = f"{name}\n{draw(evil())}\n"
    return "".join("@capplan:" + s for s in picked)


@fuzz("probe", st.one_of(text_inputs("probe", " .:"), probe_sections()))
@example("@capplan:now\n²\n@capplan:end\n")  # "²".isdigit(), but float("²") fails
@example("@capplan:now\n" + "9" * 400 + "\n@capplan:end\n")  # a clock of inf seconds
@example("@capplan:now\n1\n@capplan:log\n² 3\n@capplan:end\n")  # int("²"): ValueError
@example("@capplan:now\n1\n@capplan:tz\n+6100\n@capplan:end\n")  # a 61-hour zone (atheris)
def test_probe(text: str) -> None:
    """parse_probe: a Probe whose problems name file:line, or InputError naming NODE: probe."""
    check(TARGETS["probe"], text)


def _cpu_line(i: int) -> str:
    return f"cpu{i} 1 2 3 4 5 6 7 8 9 10\n"


def _mem_line(i: int) -> str:
    return f"Key{i}: {i} kB\n"


BIG: dict[str, tuple[str, Callable[[], str]]] = {
    "stat: one long line": ("proc_stat", lambda: long_line(FAMILY, "cpu ", "1 ")),
    "stat: many cpuN lines": ("proc_stat", lambda: many_lines(FAMILY, "cpu 1 2 3 4\n", _cpu_line)),
    "stat: blank lines": ("proc_stat", lambda: fit("\n" * SIZE, FAMILY)),
    "meminfo: many lines": ("meminfo", lambda: many_lines(FAMILY, "MemTotal: 1 kB\n", _mem_line)),
    "meminfo: one long line": ("meminfo", lambda: long_line(FAMILY, "MemTotal: ")),
    "loadavg: one long line": ("loadavg", lambda: long_line(FAMILY, "0.1 0.2 ", "0")),
    "probe: many markers": ("probe", lambda: fit("@capplan:x\n" * SIZE + PROBE, FAMILY)),
    "probe: long stat section": (
        "probe",
        lambda: PROBE.replace("@capplan:stat\n", many_lines(FAMILY, "@capplan:stat\n", _cpu_line))[
            :SIZE
        ],
    ),
}


@pytest.mark.parametrize("label", list(BIG))
def test_bounds(label: str) -> None:
    """One big adversarial input: the property, within the stated time and memory."""
    target, make = BIG[label]
    assert_bounded(target, label, make())
