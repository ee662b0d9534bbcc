"""
The event loop the lab runs on: uvloop when it is installed, else asyncio's own.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

__all__ = ["loop_factory", "uvloop_available"]


def uvloop_available() -> bool:
    """
    Whether uvloop can be imported.
    """
    try:
        importlib.import_module("uvloop")
    except ImportError:
        return False
    return True


def loop_factory(*, uvloop: bool = True) -> Callable[[], asyncio.AbstractEventLoop]:
    """
    A new-loop function for ``asyncio.Runner``: uvloop's when asked for and installed.
    """
    if uvloop:
        try:
            module = importlib.import_module("uvloop")
        except ImportError:
            pass
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = module.new_event_loop
            return factory
    return asyncio.new_event_loop
