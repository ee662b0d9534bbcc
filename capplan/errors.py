"""
Domain exceptions, named for the failure.

The core raises these; only the CLI turns them into a message and an exit code
(see ``capplan.cli``).  Every message says what is wrong, where, and what to do.
"""

from __future__ import annotations

__all__ = [
    "CapplanError",
    "InfeasibleError",
    "InputError",
    "MissingToolError",
    "StoreError",
    "UnstableQueueError",
]


class CapplanError(Exception):
    """
    Base of every error capplan reports to its user.
    """


class InputError(CapplanError):
    """
    Bad input: a file, row, key or argument that capplan cannot accept.

    Rendered as ``FILE:LINE: key: problem (hint)``; every part but ``problem`` is optional.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.line = line
        self.key = key
        self.hint = hint
        super().__init__(str(self))

    @property
    def where(self) -> str:
        """
        The ``FILE:LINE`` part of the message (empty when unknown).
        """
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        parts = [p for p in (self.where, self.key) if p]
        text = ": ".join([*parts, self.problem])
        if self.hint:
            text += f" ({self.hint})"
        return text


class InfeasibleError(CapplanError):
    """
    The SLO cannot be met at the asked load.
    """


class UnstableQueueError(InfeasibleError):
    """
    Arrivals reach or exceed service capacity: the queue grows without bound.
    """


class StoreError(CapplanError):
    """
    The sample store cannot be opened, read or written.
    """


class MissingToolError(CapplanError):
    """
    An external program capplan needs (nginx, haproxy, keepalived, ...) is not installed.
    """
