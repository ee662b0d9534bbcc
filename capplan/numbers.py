"""
Numbers as plan.yaml and the reports write them.
"""

from __future__ import annotations

import math

__all__ = ["sig"]


def sig(value: float, digits: int = 6) -> float:
    """
    ``value`` to ``digits`` significant digits: a plan is read by people and diffed by CI,
    and the last bits of a float are noise there (they may differ between NumPy builds).
    Zero, infinities and nan come back as they are.
    """
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")
