"""
Shared fixtures: in-process CLI runs, temporary stores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from capplan.cli import run
from capplan.status import ExitStatus

REFERENCE = Path(__file__).resolve().parent / "models" / "data"  # copies, see its README
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# the real-sshd fixtures (`lab`, `pool`) of the collection and security tests
pytest_plugins = ("tests.collect.sshd",)


@dataclass
class Result:
    """
    What one in-process ``capplan`` run did.
    """

    status: ExitStatus
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        """
        stdout parsed as the one JSON document it must be.
        """
        return json.loads(self.stdout)


CLI = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CLI:
    """
    Run capplan in-process; returns exit status, stdout and stderr.
    """
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*args: str | Path) -> Result:
        capsys.readouterr()
        status = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return Result(status, out, err)

    return invoke


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """
    The path of a fresh store in a temporary folder.
    """
    return tmp_path / "capplan.db"
