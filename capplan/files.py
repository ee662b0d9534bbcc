"""
Reading input files with clear errors, and writing files atomically: a reader sees the old
file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from pathlib import Path

from capplan.errors import InputError

__all__ = ["read_input", "write_atomic"]

#: A temporary file of ours older than this was left by a writer that was killed between the
#: write and the rename (a write takes milliseconds): the next write of its target removes it.
STALE_TEMP_S = 600.0


def write_atomic(path: str | Path, text: str) -> None:
    """
    Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    The temporary file is flushed and fsynced before the rename, and the folder after it,
    so a crash leaves either the old file or the new one.  The file keeps the mode of the
    file it replaces; a new one gets 0666 less the umask, as ``open()`` would make it.  A
    temporary file of the same target left by a killed writer (older than ``STALE_TEMP_S``)
    is removed once the new file is in place.

    Args:
        path: The file to write.
        text: Its whole new content (UTF-8).
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    fd, tmp = _create_temp(folder, target.name, 0o600 if mode is not None else 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
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
    _remove_stale_temps(folder, target.name)


def _remove_stale_temps(folder: Path, name: str) -> None:
    """
    Remove ``.NAME.RANDOM.tmp`` files (exactly ours) older than ``STALE_TEMP_S``; a younger
    one may be another writer's, mid-write.
    """
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{12}}\.tmp")
    old = time.time() - STALE_TEMP_S
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < old:
                        os.unlink(entry.path)


def _create_temp(folder: Path, name: str, mode: int) -> tuple[int, str]:
    """
    A new ``.NAME.RANDOM.tmp`` beside the target, opened for writing, created with ``mode``
    less the umask (``tempfile.mkstemp`` would force 0600, and a chmod after it would ignore
    the umask).
    """
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), str(tmp)
        except FileExistsError:
            continue


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
