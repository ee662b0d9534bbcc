"""
Every command has help, and the README documents it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from capplan.cli import app
from capplan.status import ExitStatus
from tests.conftest import CLI

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands if c.callback)


def test_commands_found() -> None:
    """The command list is not empty (the checks below would pass vacuously)."""
    assert {"import", "export", "fit", "queue", "optimize", "render", "validate"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_has_help(cli: CLI, command: str) -> None:
    """`capplan COMMAND --help` exits 0 and shows a description."""
    result = cli(command, "--help")
    assert ExitStatus.OK == result.status
    assert "Usage" in result.stdout
    assert len(result.stdout.splitlines()) > 3


@pytest.mark.parametrize("command", COMMANDS)
def test_command_in_readme(command: str) -> None:
    """The README's command table mentions `capplan COMMAND`."""
    assert f"`capplan {command}" in README
