"""
Coverage-guided fuzzing of capplan's parsers of outside text with atheris (libFuzzer).

    python -m bench.fuzz.atheris_parsers --target nginx -atheris_runs=100000 -max_total_time=60
    python -m bench.fuzz.atheris_parsers --list

Targets (each runs its parsers on every input; see ``targets.ATHERIS_TARGETS``): ``csv``
(samples, load table), ``proc`` (/proc/stat, meminfo, loadavg, the probe's output), ``nginx``
(default and ``$msec`` formats), ``haproxy``, ``regex`` (a regex format, and any log_format or
regex from an inventory), ``showstat``, ``inventory`` (inventory and profile YAML), ``plan``.

Every input is checked against the property of ``bench.fuzz.targets`` (a value of the documented
type, or an InputError naming its location with a hint); anything else raises, and libFuzzer
reports the crash, saves the input (``-artifact_prefix``) and exits non-zero.  Only capplan's
modules are instrumented for coverage.

Arguments after ``--target`` go to libFuzzer.  The first corpus folder given (else a fresh
temporary one) is created and seeded, when empty, with captured inputs of a few lines each.
Unless given, these are added: ``-max_len``,
``-timeout`` (seconds per input: a hang) and ``-rss_limit_mb`` (a memory blow-up) from
``targets.ATHERIS_LIMITS``.  At the end libFuzzer prints ``Done N runs in S second(s)``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["capplan"]):
    from bench.fuzz import targets


def _one_input(names: tuple[str, ...]) -> Callable[[bytes], None]:
    chosen = [targets.TARGETS[name] for name in names]

    def test_one_input(data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        for target in chosen:
            targets.check(target, data if target.binary else text)

    return test_one_input


def _seed(folder: Path, names: tuple[str, ...]) -> None:
    """
    Create ``folder`` and copy the seeds in when it is missing or empty.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        return
    for name in names:
        for i, seed in enumerate(targets.seeds(name)):
            (folder / f"{name}-{i}").write_bytes(seed.encode("utf-8"))


def main(argv: list[str] | None = None) -> None:
    """
    Parse ``--target`` and fuzz it; the other arguments go to libFuzzer.
    """
    args = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz.atheris_parsers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--target", choices=sorted(targets.ATHERIS_TARGETS))
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    known, rest = parser.parse_known_args(args[1:])
    if known.list or known.target is None:
        for name, parsers in targets.ATHERIS_TARGETS.items():
            print(f"{name}: {', '.join(targets.TARGETS[p].entry for p in parsers)}")
        if known.target is None and not known.list:
            parser.error("--target is required")
        return
    names = targets.ATHERIS_TARGETS[known.target]
    libfuzzer = [args[0], *rest]
    for flag, value in targets.ATHERIS_LIMITS.items():
        if not any(a.startswith(f"-{flag}=") for a in rest):
            libfuzzer.append(f"-{flag}={value}")
    folders = [a for a in rest if not a.startswith("-")]
    if folders:
        _seed(Path(folders[0]), names)
    else:
        folder = tempfile.mkdtemp(prefix="capplan-fuzz-corpus-")
        _seed(Path(folder), names)
        libfuzzer.append(folder)
    atheris.Setup(libfuzzer, _one_input(names))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
