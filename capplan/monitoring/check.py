"""
Checking a rules file with the real ``promtool check rules`` (an edge: runs a program).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from capplan.render.validate import find_tool

__all__ = ["check_rules"]


def check_rules(text: str, name: str, timeout_s: float = 60.0) -> list[str]:
    """
    ``promtool check rules`` on ``text``; the problems it reports (empty: it passed).

    Raises:
        MissingToolError: promtool is not installed (Debian: apt-get install prometheus).
    """
    promtool = find_tool("promtool")
    with tempfile.TemporaryDirectory(prefix="capplan-rules-") as folder:
        path = Path(folder) / "rules.yml"
        path.write_text(text, encoding="utf-8")
        done = subprocess.run(
            [promtool, "check", "rules", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            env=dict(os.environ, LC_ALL="C"),
            check=False,
        )
    if done.returncode == 0:
        return []
    lines = [ln.strip() for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    return [ln.replace(str(path), name) for ln in lines if "SUCCESS" not in ln] or [
        f"promtool exited {done.returncode}"
    ]
