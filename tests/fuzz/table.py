"""
The README's fuzzing tables, from the stated budgets and what the last run of the suite measured.

    .venv/bin/python -m pytest tests/fuzz && .venv/bin/python -m tests.fuzz.table

The counts come from ``REPORT``, written by the fuzz tests themselves (a dash: not measured yet).
"""

from __future__ import annotations

import json
from typing import Any

from bench.fuzz.targets import ATHERIS_LIMITS, ATHERIS_TARGETS, MAX_MESSAGE_CHARS, TARGETS

from .budget import (
    ATHERIS_SECONDS,
    CASES,
    DEADLINE_MS,
    FED,
    MAX_BYTES,
    PEAK_MIB,
    SECONDS,
)
from .fuzzing import REPORT

#: What a parsed value must be, per target (the refusal is the same for all).
RETURNS: dict[str, str] = {
    "samples": "windows in the samples contract: finite values, errors <= requests, "
    "percentiles not decreasing, ended by `now`",
    "load_table": "finite points, load > 0",
    "proc_stat": "busy <= total jiffies",
    "meminfo": "sizes in kB >= 0",
    "loadavg": "three finite loads >= 0",
    "probe": "clock in 1970-9999, zone within a day; its /proc problems name FILE:LINE with a hint",
    "show_stat": "counters int or empty",
    "nginx": "times epoch seconds in 1970-9999; latencies unknown or finite >= 0; consistent "
    "arrays",
    "log_config": "a parser from any log_format or regex, then a chunk as above (refusals name "
    "node:path and key)",
    "inventory": "a validated Inventory",
    "profile": "a validated Profile",
    "plan": "a validated Plan that `dump_plan` writes and `parse_plan` reads back equal",
}
_SAME_AS = {"nginx_msec": "nginx", "haproxy": "nginx", "regex": "nginx"}


def _report() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(REPORT.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        data = {}
    return data


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n >> 10} KiB"


def _target_of(test: str) -> str:
    return test.removesuffix("_typed")


def table() -> str:
    """
    The markdown: hypothesis cases per parser, atheris executions, and the stated bounds.
    """
    report = _report()
    ran = report.get("hypothesis", {})
    out = [
        "| Parser | Fed | Hypothesis cases per CI run | Ran | Returns, else `InputError` |",
        "|---|---|---:|---:|---|",
    ]
    for test, cases in CASES.items():
        target = TARGETS[_target_of(test)]
        fed = FED.get(test, "near-valid (real inputs corrupted) and raw")
        count = ran.get(test, {}).get("cases", "-")
        returns = RETURNS[_SAME_AS.get(target.name, target.name)]
        out.append(f"| `{target.entry}` | {fed} | {cases} | {count} | {returns} |")
    total = sum(CASES.values())
    measured = sum(v.get("cases", 0) for v in ran.values())
    out.append(f"| **all** | | **{total}** | **{measured or '-'}** | |")
    out += [
        "",
        f"Every refusal is an `InputError` whose message starts with `FILE:LINE: ` (a probe's: "
        f"`NODE: probe: `; a log format's: `NODE:PATH: KEY: `), ends with a `(hint)` of what to "
        f"do, and is at most {MAX_MESSAGE_CHARS} characters; any other exception fails.  Each "
        f"case must finish within {DEADLINE_MS} ms (hypothesis `deadline`); cases are "
        "derandomized, so every CI run draws the same ones.",
        "",
        f"| atheris target | Parsers | Executions in the last CI run ({ATHERIS_SECONDS} s) |",
        "|---|---|---:|",
    ]
    atheris = report.get("atheris", {})
    for name, parsers in ATHERIS_TARGETS.items():
        entries = ", ".join(f"`{TARGETS[p].entry}`" for p in parsers)
        out.append(f"| `{name}` | {entries} | {atheris.get(name, {}).get('executions', '-')} |")
    limits = ", ".join(f"`-{k}={v}`" for k, v in ATHERIS_LIMITS.items())
    out += [
        "",
        f"atheris runs each target for {ATHERIS_SECONDS} s with {limits}: an input slower than "
        "the timeout is a hang, a process above the RSS limit a memory blow-up.",
        "",
        "| Family | Inputs up to | Time bound | Memory bound (tracemalloc peak) | Worst measured |",
        "|---|---:|---:|---:|---|",
    ]
    bounds = report.get("bounds", {})
    for family in SECONDS:
        mine = [(k, v) for k, v in bounds.items() if v.get("family") == family]
        worst = "-"
        if mine:
            slow = max(mine, key=lambda kv: kv[1]["seconds"])
            big = max(mine, key=lambda kv: kv[1]["peak_mib"])
            cut = len(family) + 2
            worst = (
                f"{slow[1]['seconds']:.1f} s ({slow[0][cut:]}); "
                f"{big[1]['peak_mib']:.0f} MiB ({big[0][cut:]})"
            )
        out.append(
            f"| {family} | {_size(MAX_BYTES[family])} | {SECONDS[family]:g} s "
            f"| {PEAK_MIB[family]:g} MiB | {worst} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    print(table())
