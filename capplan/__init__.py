"""
capplan: capacity planner and load-balancer tuner.

The core (models, optimizer, planner, renderers) is pure: plain data in, plain data out.
The edges (SSH, files, SQLite, terminal) live in ``cli.py``, ``store.py`` and ``collect/``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
