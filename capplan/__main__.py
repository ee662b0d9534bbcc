"""
Entry point: ``python -m capplan`` and the ``capplan`` console script.
"""

from __future__ import annotations

import sys


def main() -> None:
    """
    Run the CLI and exit with its ExitStatus.
    """
    from capplan.cli import run

    sys.exit(int(run(sys.argv[1:])))


if __name__ == "__main__":
    main()
