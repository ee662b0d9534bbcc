"""
``Connection.run`` on a scripted channel: how a command's end is told from a broken connection.

The real-sshd cases (a node that drops the connection mid-command) are in
``tests/security/test_faults.py``; these pin the two paramiko details behind them.
"""

from __future__ import annotations

import os
import time

import pytest

from capplan.collect.ssh import Connection, Endpoint, NodeError, Route


class ScriptedChannel:
    """
    A paramiko channel whose buffered output and exit status arrive when the test says.
    """

    def __init__(self, exit_status: int, closed: bool, late: bytes) -> None:
        self.read_end, write_end = os.pipe()
        os.write(write_end, b"x")  # always readable: select() returns at once
        os.close(write_end)
        self.buffer = b""
        self.exit_status = exit_status
        self.closed = closed
        self.late = late  # arrives together with the exit status, after a pass found nothing

    def fileno(self) -> int:
        return self.read_end

    def exec_command(self, command: str) -> None:
        pass

    def recv_ready(self) -> bool:
        return bool(self.buffer)

    def recv(self, size: int) -> bytes:
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def recv_stderr_ready(self) -> bool:
        return False

    def recv_stderr(self, size: int) -> bytes:
        return b""

    def exit_status_ready(self) -> bool:
        # paramiko: `self.closed or self.status_event.is_set()`
        self.buffer += self.late
        self.late = b""
        return True

    def close(self) -> None:
        os.close(self.read_end)


class FakeTransport:
    def __init__(self, channel: ScriptedChannel) -> None:
        self.channel = channel

    def open_session(self, timeout: float) -> ScriptedChannel:
        return self.channel

    def is_active(self) -> bool:
        return True


@pytest.fixture
def route() -> Route:
    return Route(node="n1", target=Endpoint("n1", "127.0.0.1", 22, "ops"), timeout_s=5.0)


def run(route: Route, channel: ScriptedChannel) -> tuple[bytes, int | None]:
    connection = Connection(route, [FakeTransport(channel)], [])  # type: ignore[list-item]
    result = connection.run("cmd", max_bytes=100, deadline=time.monotonic() + 5, stage="log")
    return result.stdout, result.status


def test_closed_without_exit_status_is_an_error(route: Route) -> None:
    """A connection that broke leaves paramiko's exit status at -1: not a finished command."""
    channel = ScriptedChannel(exit_status=-1, closed=True, late=b"")
    with pytest.raises(NodeError) as info:
        run(route, channel)
    assert (info.value.stage, info.value.reason) == (
        "log",
        "the connection closed before the command finished",
    )


def test_output_that_came_with_the_exit_status_is_kept(route: Route) -> None:
    """Bytes buffered between the last empty pass and the exit status are not dropped."""
    assert run(route, ScriptedChannel(exit_status=0, closed=False, late=b"last line\n")) == (
        b"last line\n",
        0,
    )


def test_late_output_over_the_cap_is_cut(route: Route) -> None:
    """The cap holds for late bytes too: cut and marked truncated (no exit status then)."""
    channel = ScriptedChannel(exit_status=0, closed=False, late=b"y" * 300)
    connection = Connection(route, [FakeTransport(channel)], [])  # type: ignore[list-item]
    result = connection.run("cmd", max_bytes=100, deadline=time.monotonic() + 5, stage="log")
    assert (len(result.stdout), result.truncated, result.status) == (100, True, None)


def test_deadline_is_reported_as_the_deadline(route: Route) -> None:
    """A command cut by the run's deadline fails at stage "deadline", whatever it was doing."""
    channel = ScriptedChannel(exit_status=0, closed=False, late=b"")
    connection = Connection(route, [FakeTransport(channel)], [])  # type: ignore[list-item]
    with pytest.raises(NodeError) as info:
        connection.run("cmd", max_bytes=100, deadline=time.monotonic() - 1, stage="probe")
    assert (info.value.stage, info.value.reason) == (
        "deadline",
        "the run's deadline passed during the probe command",
    )
