"""
The stated budgets and bounds of the parser fuzzing: one place, read by the tests (which
assert them) and by ``python -m tests.fuzz.table`` (which prints them for the README).
"""

from __future__ import annotations

#: Hypothesis cases per CI run, per fuzz test (``settings(max_examples=...)``, derandomized, so
#: every run draws the same cases); each test asserts it ran at least this many.
CASES: dict[str, int] = {
    "samples": 600,
    "load_table": 400,
    "proc_stat": 400,
    "meminfo": 400,
    "loadavg": 400,
    "probe": 400,
    "show_stat": 500,
    "nginx": 400,
    "nginx_msec": 300,
    "haproxy": 500,
    "regex": 400,
    "log_config": 300,
    "inventory": 250,
    "inventory_typed": 100,
    "profile": 150,
    "plan": 120,
    "plan_typed": 80,
}

#: What each fuzz test feeds its parser (for the table).
FED: dict[str, str] = {
    "inventory_typed": "inventory with one value replaced by a value of a wrong type",
    "plan_typed": "plan.yaml with one value replaced by a value of a wrong type",
}

#: Per-case time limit (hypothesis ``deadline``): a case of the fuzz inputs (at most a few
#: hundred kB) that takes longer fails as a hang.
DEADLINE_MS = 2000

# ---- the stated bounds -------------------------------------------------------------------
# Every parser, on any input of at most MAX_INPUT_BYTES, returns or refuses within
# SECONDS[family] and with a tracemalloc peak below PEAK_MIB[family] (what it allocates while
# parsing, its result included).  The tests check them on adversarial inputs of that size
# (one line of that size, as many tiny lines as fit, a YAML alias bomb, deep nesting, ...).
# Time is measured with tracemalloc on, which slows allocation-heavy parsing several times:
# it bounds the untraced time from above.  Every parser is linear in its input beyond these
# sizes; the YAML sizes are small because PyYAML (pure Python) composes about 20-45 s per MiB.
# The worst cases measured (2 cores, python 3.11, traced) are in the comments; the bounds
# leave a factor of 3 or more for slower machines.

#: The largest input the bounds are stated for, per parser family.
MAX_BYTES: dict[str, int] = {
    "samples CSV": 256 << 10,
    "/proc": 1 << 20,
    "HAProxy show stat": 256 << 10,
    "access logs": 512 << 10,
    "inventory/profile YAML": 32 << 10,
    "plan.yaml": 32 << 10,
}

#: Wall-clock seconds per call, per parser family.
SECONDS: dict[str, float] = {
    "samples CSV": 30.0,  # 7.4 s: tiny valid rows
    "/proc": 10.0,  # 1.5 s: blank lines
    "HAProxy show stat": 10.0,  # 1.5 s: tiny rows
    "access logs": 20.0,  # 3.7 s: blank lines (nginx)
    "inventory/profile YAML": 20.0,  # 4.6 s: a long alias chain
    "plan.yaml": 15.0,  # 2.9 s: many nodes (parse, dump, parse)
}

#: tracemalloc peak (MiB) per call, per parser family.
PEAK_MIB: dict[str, float] = {
    "samples CSV": 32.0,  # 9.4 MiB: tiny valid rows
    "/proc": 32.0,  # 8.5 MiB: /proc/stat, one long line
    "HAProxy show stat": 40.0,  # 11.7 MiB: tiny rows
    "access logs": 40.0,  # 13 MiB: blank lines (nginx)
    "inventory/profile YAML": 80.0,  # 26 MiB: a long alias chain (refused at 100000 repeats)
    "plan.yaml": 64.0,  # 19.5 MiB: an alias bomb
}

# ---- atheris -----------------------------------------------------------------------------
# Its per-input limits (-max_len, -timeout, -rss_limit_mb) are bench.fuzz.targets.ATHERIS_LIMITS.

#: Seconds of coverage-guided fuzzing per atheris target in CI (``-max_total_time``).
ATHERIS_SECONDS = 6
#: How many atheris targets run at once (CI has 2 cores).
ATHERIS_PARALLEL = 2
#: Fewer executions than this in ATHERIS_SECONDS means the harness did not really fuzz.
ATHERIS_MIN_EXECUTIONS = 50
