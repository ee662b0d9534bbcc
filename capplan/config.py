"""
Where capplan keeps its state: the one module that looks up paths and environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["DB_ENV", "DEFAULT_DB_NAME", "default_db_path"]

DB_ENV = "CAPPLAN_DB"
DEFAULT_DB_NAME = "capplan.db"


def default_db_path(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """
    The sample store's path when ``--db`` is not given.

    Lookup order:
    1. ``$CAPPLAN_DB`` when set and not empty;
    2. ``capplan.db`` in the current directory (a project-local state file, so a CI job and
       a person working in the same repository see the same data).

    Args:
        environ: The environment to read (``os.environ`` when None).
        cwd: The current directory (``Path.cwd()`` when None).

    Returns:
        The path of the store (it may not exist yet).
    """
    env = os.environ if environ is None else environ
    value = env.get(DB_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    return (cwd if cwd is not None else Path.cwd()) / DEFAULT_DB_NAME
