"""
Reading input files with clear errors, and writing files atomically: a reader sees the old
file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from capplan.errors import InputError

__all__ = ["read_input", "write_atomic"]


def write_atomic(path: str | Path, text: str) -> None:
    """
    Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    The temporary file is flushed and fsynced before the rename, and the folder after it,
    so a crash leaves either the old file or the new one.  The file keeps the mode of the
    file it replaces (0644 for a new one).

    Args:
        path: The file to write.
        text: Its whole new content (UTF-8).
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_input(path: str | Path, what: str | None = None) -> str:
    """
    The UTF-8 text of an input file; a missing or unreadable file is an InputError naming it.

    Args:
        path: The file.
        what: What the file is, for the message (``inventory``, ``profile``); None: a file.

    Returns:
        Its text.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        kind = f"{what} file" if what else "file"
        raise InputError(f"no such {kind}", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot read the {what} file: {exc}" if what else f"cannot read: {exc}"
        raise InputError(problem, file=str(path)) from None
