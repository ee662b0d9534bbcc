"""
The atheris harness (``bench/fuzz/atheris_parsers.py``): every target fuzzes for a bounded time
in its own process, without a crash (an exception the property does not allow), a hang
(``-timeout`` per input) or a memory blow-up (``-rss_limit_mb``); its count of executions is
recorded for the README.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.fuzz.targets import ATHERIS_TARGETS

from .budget import ATHERIS_MIN_EXECUTIONS, ATHERIS_PARALLEL, ATHERIS_SECONDS
from .fuzzing import record

REPO = Path(__file__).resolve().parents[2]
DONE = re.compile(r"^Done (\d+)(?: runs)? in (\d+) second", re.MULTILINE)


def _fuzz(target: str, folder: Path) -> tuple[str, subprocess.CompletedProcess[str]]:
    command = [
        sys.executable,
        "-m",
        "bench.fuzz.atheris_parsers",
        "--target",
        target,
        f"-max_total_time={ATHERIS_SECONDS}",
        "-seed=1",
        f"-artifact_prefix={folder}/{target}-",
        str(folder / f"corpus-{target}"),
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=ATHERIS_SECONDS + 90
    )
    return target, done


def test_atheris_targets(tmp_path: Path) -> None:
    """Each target: exit 0 after ATHERIS_SECONDS of fuzzing, with its executions counted."""
    with ThreadPoolExecutor(ATHERIS_PARALLEL) as pool:
        results = list(pool.map(lambda t: _fuzz(t, tmp_path), ATHERIS_TARGETS))
    failures = []
    for target, done in results:
        count = DONE.search(done.stderr)
        if done.returncode != 0 or count is None:
            failures.append(f"{target}: exit {done.returncode}\n{done.stderr[-3000:]}")
            continue
        executions, seconds = int(count[1]), int(count[2])
        record("atheris", target, {"executions": executions, "seconds": seconds})
        if executions < ATHERIS_MIN_EXECUTIONS:
            failures.append(f"{target}: only {executions} executions in {seconds} s")
    assert not failures, "\n\n".join(failures)
