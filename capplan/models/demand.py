"""
Service demand from the utilization law, U = D · X.

Utilization U (a fraction, 0..1) against throughput X (requests per second) is a line through
the origin whose slope D is the service demand: seconds of the resource (CPU-fraction ×
seconds) per request.  ``fit_demand`` estimates D by (weighted) least squares through the
origin, ``D = Σ w X U / Σ w X²``, with ``stderr = sqrt(s² / Σ w X²)``,
``s² = Σ w (U − D X)² / (n − 1)`` and a 95 % Student-t interval on n − 1 degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from capplan.models._lsq import (
    as_vector,
    check_same_length,
    prepare_weights,
    require_nonnegative,
    require_points,
    t_interval,
)

__all__ = ["CapacityEstimate", "DemandFit", "fit_demand"]

_P = 1


@dataclass(frozen=True)
class CapacityEstimate:
    """
    Throughput at which utilization reaches a ceiling.

    Attributes:
        ceiling: The utilization ceiling (0 < ceiling <= 1).
        rate: ``ceiling / demand`` in requests per second (``inf`` when demand is 0).
        interval: 95 % interval for the rate, ``(ceiling / demand_high, ceiling / demand_low)``
            from the demand's interval (the upper end is ``inf`` when that interval reaches 0).
    """

    ceiling: float
    rate: float
    interval: tuple[float, float]


@dataclass(frozen=True)
class DemandFit:
    """
    A fitted utilization law.

    Attributes:
        demand: Service demand D, seconds of resource per request.
        stderr: Standard error of D.
        interval: 95 % interval for D (Student t, n − 1 degrees of freedom), clipped at 0.
        r2: Uncentred coefficient of determination, ``1 − Σw(U − DX)² / ΣwU²`` (the right
            measure for a line forced through the origin; not comparable with a centred R²).
        rss: Residual sum of squares (weighted when weights were given).
        n: Number of points.
        dof: Residual degrees of freedom, n − 1.
        success: Always True (the estimate is closed-form); kept for a uniform interface.
        message: What happened.
    """

    demand: float
    stderr: float
    interval: tuple[float, float]
    r2: float
    rss: float
    n: int
    dof: int
    success: bool
    message: str

    def capacity_at(self, ceiling: float = 0.8) -> CapacityEstimate:
        """
        Throughput at which utilization reaches ``ceiling``, with its interval.

        Args:
            ceiling: Utilization ceiling, 0 < ceiling <= 1.

        Returns:
            The rate and its 95 % interval (monotone transform of the demand interval).

        Raises:
            ValueError: If ``ceiling`` is not in (0, 1].
        """
        if not (np.isfinite(ceiling) and 0.0 < ceiling <= 1.0):
            raise ValueError(f"ceiling = {ceiling!r} must be a utilization in (0, 1]")

        def rate(d: float) -> float:
            return float(ceiling / d) if d > 0 else float("inf")

        lo, hi = self.interval
        return CapacityEstimate(
            ceiling=float(ceiling), rate=rate(self.demand), interval=(rate(hi), rate(lo))
        )


def fit_demand(
    throughput: ArrayLike,
    utilization: ArrayLike,
    *,
    weights: ArrayLike | None = None,
) -> DemandFit:
    """
    Fit the utilization law U = D·X by least squares through the origin.

    Args:
        throughput: Throughput per sample, requests per second (>= 0, not all 0).
        utilization: Utilization per sample as a fraction in [0, 1] (not percent).
        weights: Optional positive weight per sample multiplying its squared residual
            (``1/variance``).

    Returns:
        The fit.

    Raises:
        ValueError: If lengths differ, values are non-finite or out of range, there are
            fewer than 2 samples, or every throughput is 0.
    """
    x = as_vector("throughput", throughput)
    u = as_vector("utilization", utilization)
    n = check_same_length(throughput=x, utilization=u)
    require_points("throughput", n, _P)
    require_nonnegative("throughput", x)
    require_nonnegative("utilization", u)
    over = np.flatnonzero(u > 1.0)
    if over.size:
        i = int(over[0])
        raise ValueError(
            f"utilization[{i}] = {float(u[i])!r} is above 1; give utilization as a fraction "
            "in [0, 1], not a percentage"
        )
    if not np.any(x > 0):
        raise ValueError("throughput is 0 everywhere; the demand cannot be estimated")
    w = prepare_weights(weights, n)

    sxx = float(np.sum(w * x * x))
    d = float(np.sum(w * x * u)) / sxx
    r = u - d * x
    rss = float(np.sum(w * r * r))
    dof = n - _P
    se = float(np.sqrt(rss / dof / sxx))
    suu = float(np.sum(w * u * u))
    r2 = 1.0 - rss / suu if suu > 0 else float("nan")
    return DemandFit(
        demand=d,
        stderr=se,
        interval=t_interval(d, se, dof, lower=0.0),
        r2=float(r2),
        rss=rss,
        n=n,
        dof=dof,
        success=True,
        message="closed-form weighted least squares through the origin",
    )
