"""
Live progress on a terminal for long runs: ``capplan collect`` (one line per state with the
nodes in it, and the time elapsed) and the fit of a large pool (a bar).  Never used under
``--json`` or when stdout is not a terminal.
"""

from __future__ import annotations

import time
from collections import Counter
from types import TracebackType
from typing import Self

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

__all__ = ["CollectProgress", "FitProgress"]

_ORDER = (
    "connecting",
    "probing",
    "haproxy",
    "reading log",
    "parsing",
    "querying",
    "storing",
    "ok",
    "partial",
    "failed",
)
_STYLE = {"ok": "green", "partial": "yellow", "failed": "red"}


class _OnScreen:
    """
    A rich display shown while the ``with`` block runs (cleared after it).
    """

    _display: Live | Progress

    def __enter__(self) -> Self:
        self._display.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._display.__exit__(kind, value, traceback)


class CollectProgress(_OnScreen):
    """
    A live view of ``states`` (node → state), which the run updates as it goes.
    """

    def __init__(self, console: Console, states: dict[str, str], total: int) -> None:
        self._states = states
        self._total = total
        self._start = time.monotonic()
        self._display = Live(
            console=console, refresh_per_second=4, transient=True, get_renderable=self._render
        )

    def _render(self) -> Group:
        states = dict(self._states)
        counts = Counter(states.values())
        done = sum(counts[s] for s in ("ok", "partial", "failed"))
        lines = [
            Text(
                f"collecting {done}/{self._total} nodes, {time.monotonic() - self._start:.1f} s",
                style="bold",
            )
        ]
        for state in _ORDER:
            if counts[state]:
                names = sorted(n for n, s in states.items() if s == state)
                shown = ", ".join(names[:6]) + (
                    f", … (+{len(names) - 6})" if len(names) > 6 else ""
                )
                lines.append(
                    Text(f"  {state:<12} {counts[state]:>5}  {shown}", style=_STYLE.get(state, ""))
                )
        return Group(*lines)


class FitProgress(_OnScreen):
    """
    A bar of the nodes fitted so far; ``update`` is the fit's progress callback.  A fit that
    goes over the pool ``passes`` times (least connections' rounds) counts each pass in turn:
    a count that falls back starts the next pass.
    """

    def __init__(self, console: Console, total: int, passes: int = 1) -> None:
        self._passes = max(passes, 1)
        self._offset = 0
        self._last = (0, 0)
        self._display = self._bar = Progress(
            TextColumn("fitting" if self._passes == 1 else f"fitting ({self._passes} passes)"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("nodes"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task("fit", total=total)

    def update(self, done: int, total: int) -> None:
        if done < self._last[0]:  # the next pass over the pool
            self._offset += self._last[1]
        self._last = (done, total)
        self._bar.update(
            self._task,
            completed=self._offset + done,
            total=max(self._passes * total, self._offset + total),
        )
