"""
Man pages agree with `--help` and render cleanly with groff; shell completion completes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from capplan.cli import app
from capplan.status import ExitStatus
from tests.conftest import CLI

ROOT = typer.main.get_command(app)
COMMANDS = sorted(n for n, c in ROOT.commands.items() if not c.hidden)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`capplan man -o DIR`, run once (a subprocess: the console script as users run it)."""
    out = tmp_path_factory.mktemp("man")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1795392000"}
    done = subprocess.run(
        [sys.executable, "-m", "capplan", "man", "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert 0 == done.returncode, done.stderr
    return out


def test_a_page_per_command(pages: Path) -> None:
    """capplan.1 and capplan-COMMAND.1 for every command, and nothing else."""
    expected = {"capplan.1"} | {f"capplan-{c}.1" for c in COMMANDS}
    assert expected == {p.name for p in pages.iterdir()}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_help_is_in_the_page(pages: Path, command: str) -> None:
    """Each option `capplan COMMAND --help` lists appears in the page, with its help."""
    text = (pages / f"capplan-{command}.1").read_text()
    cmd = ROOT.commands[command]
    options = [p for p in cmd.params if p.param_type_name == "option" and not p.hidden]
    assert options, "a command without options would pass vacuously"
    for option in options:
        for name in option.opts:
            assert name.replace("-", "\\-") in text, name
        if option.help:
            first = option.help.split()[0].replace("-", "\\-").replace("`", "")
            assert first in text, (option.opts, first)


def test_pages_render_without_warnings(pages: Path) -> None:
    """groff reads every page with all warnings on and says nothing."""
    for page in sorted(pages.iterdir()):
        done = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert 0 == done.returncode, (page.name, done.stderr)
        assert "" == done.stderr, (page.name, done.stderr)


def test_pages_are_reproducible(pages: Path, cli: CLI, tmp_path: Path, monkeypatch) -> None:
    """The same version and SOURCE_DATE_EPOCH give the same bytes (the date in the footer)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1795392000")
    assert ExitStatus.OK == cli("man", "-o", tmp_path).status
    for page in pages.iterdir():
        assert page.read_bytes() == (tmp_path / page.name).read_bytes()
    assert '"2026-11-23"' in (tmp_path / "capplan.1").read_text()


def complete(words: str, cword: int) -> list[str]:
    env = {
        **os.environ,
        "_CAPPLAN_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
    }
    done = subprocess.run(
        [sys.executable, "-m", "capplan"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert 0 == done.returncode, done.stderr
    return done.stdout.split()


class TestCompletion:
    def test_commands_complete(self) -> None:
        assert ["plan", "profiles"] == sorted(complete("capplan p", 1))

    def test_options_complete(self) -> None:
        assert ["--growth"] == complete("capplan plan --grow", 2)

    def test_script_for_bash(self) -> None:
        """--show-completion prints the script users put in their shell's startup file."""
        done = subprocess.run(
            [sys.executable, "-m", "capplan", "--show-completion", "bash"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert 0 == done.returncode, done.stderr
        assert "_CAPPLAN_COMPLETE=complete_bash" in done.stdout
        assert "complete " in done.stdout
