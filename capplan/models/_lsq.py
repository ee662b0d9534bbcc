"""
Shared least-squares helpers for the model fitters.

Everything here is pure and deterministic: input validation (each error names the argument,
the offending index and value), a bounded solver that also searches the faces of the bound
box so that a parameter whose optimum lies on its bound lands exactly on it, the covariance
of an estimate from its Jacobian, and Student-t intervals.

Conventions shared by the fitters:

* Weights ``w`` multiply squared residuals, so the solver works on ``sqrt(w) * residual``;
  weighted RSS is ``sum(w * residual**2)``.
* Covariance is ``s² (JᵀJ)⁻¹`` with ``s² = RSS / (n - p)``, from the weighted Jacobian at the
  optimum.  For the robust losses it is the M-estimator form ``[Σψ²/(n-p)] / [Σψ'/n]² (JᵀJ)⁻¹``
  (Huber 1981, §7.6, without his small-sample correction), which reduces to the former for the
  linear loss.
* Intervals are ``estimate ± t(0.975, n - p) · stderr``, clipped to the parameter's bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

__all__ = [
    "LEVEL",
    "LOSSES",
    "FloatArray",
    "Loss",
    "Solution",
    "as_vector",
    "best_solution",
    "check_loss",
    "check_same_length",
    "covariance",
    "freeze_matrix",
    "mad_scale",
    "prepare_weights",
    "require_distinct",
    "require_nonnegative",
    "require_points",
    "require_positive",
    "solve_bounded",
    "t_interval",
    "t_quantile",
]

FloatArray = NDArray[np.float64]
Loss = Literal["linear", "soft_l1", "huber"]
LOSSES: tuple[Loss, ...] = ("linear", "soft_l1", "huber")
LEVEL = 0.95

_TOL = 1e-13  # ftol/xtol/gtol for least_squares: well above machine epsilon, near its limit
_MAX_NFEV = 5000


def as_vector(name: str, values: ArrayLike) -> FloatArray:
    """
    Convert ``values`` to a finite one-dimensional float array.

    Args:
        name: The argument name, used in error messages.
        values: Anything numpy can turn into a 1-D float array.

    Returns:
        A new float64 array (the caller's data is never modified).

    Raises:
        ValueError: If ``values`` is not numeric, not one-dimensional, or holds NaN/infinity.
    """
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a sequence of numbers; got {values!r}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got an array of shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {float(arr[i])!r} is not a finite number")
    return arr


def check_same_length(**arrays: FloatArray) -> int:
    """
    Check that all arrays have the same length.

    Args:
        **arrays: The arrays, keyed by argument name.

    Returns:
        The common length.

    Raises:
        ValueError: If the lengths differ.
    """
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name} has {k}" for name, k in lengths.items())
        raise ValueError(f"lengths differ: {detail}")
    return next(iter(lengths.values()))


def require_nonnegative(name: str, arr: FloatArray) -> None:
    """
    Raise ``ValueError`` naming the first negative element of ``arr``.

    Args:
        name: The argument name.
        arr: The values to check.
    """
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {float(arr[i])!r} is negative; {name} must be >= 0")


def require_positive(name: str, arr: FloatArray) -> None:
    """
    Raise ``ValueError`` naming the first element of ``arr`` that is not > 0.

    Args:
        name: The argument name.
        arr: The values to check.
    """
    bad = np.flatnonzero(arr <= 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {float(arr[i])!r} is not positive; {name} must be > 0")


def require_points(name: str, n: int, p: int) -> None:
    """
    Require at least ``p + 1`` points, so that ``p`` parameters and the error can be estimated.

    Args:
        name: The argument name.
        n: Number of points.
        p: Number of parameters.
    """
    if n < p + 1:
        raise ValueError(
            f"{name} has {n} points; need at least {p + 1} to fit {p} parameters "
            "and estimate their standard errors"
        )


def require_distinct(name: str, arr: FloatArray, k: int) -> None:
    """
    Require at least ``k`` distinct values in ``arr`` (otherwise the model is not identifiable).

    Args:
        name: The argument name.
        arr: The values to check.
        k: Minimum number of distinct values.
    """
    distinct = int(np.unique(arr).size)
    if distinct < k:
        raise ValueError(
            f"{name} has only {distinct} distinct value(s); need at least {k} to fit this model"
        )


def prepare_weights(weights: ArrayLike | None, n: int) -> FloatArray:
    """
    Validate weights (or make unit weights).

    Args:
        weights: ``None`` for unit weights, or one positive finite weight per point; a weight
            multiplies the point's squared residual (use ``1/variance``).
        n: Number of points.

    Returns:
        The weights as a float array of length ``n``.
    """
    if weights is None:
        return np.ones(n)
    w = as_vector("weights", weights)
    if len(w) != n:
        raise ValueError(f"lengths differ: weights has {len(w)}, the data have {n}")
    require_positive("weights", w)
    return w


def check_loss(loss: str) -> Loss:
    """
    Validate a loss name.

    Args:
        loss: One of ``LOSSES``.

    Returns:
        The loss, typed.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss = {loss!r} is not supported; use one of {', '.join(LOSSES)}")
    return loss


def mad_scale(resid: FloatArray) -> float:
    """
    Robust scale of residuals: ``1.4826 * median(|r|)``, falling back to the RMS, then to 1.

    Args:
        resid: Residuals (already weighted).

    Returns:
        A positive scale, used as the default ``f_scale`` for robust losses.
    """
    scale = 1.4826 * float(np.median(np.abs(resid)))
    if scale > 0 and np.isfinite(scale):
        return scale
    rms = float(np.sqrt(np.mean(resid**2)))
    return rms if rms > 0 and np.isfinite(rms) else 1.0


def _psi(resid: FloatArray, loss: Loss, f_scale: float) -> tuple[FloatArray, FloatArray]:
    """
    The influence function ψ(r) and its derivative ψ'(r) for ``0.5 * C² ρ(r²/C²)``.
    """
    if loss == "linear":
        return resid.copy(), np.ones_like(resid)
    z = (resid / f_scale) ** 2
    if loss == "soft_l1":
        rho1 = 1.0 / np.sqrt(1.0 + z)
        return rho1 * resid, rho1**3
    inlier = z <= 1.0
    rho1 = np.where(inlier, 1.0, 1.0 / np.sqrt(np.maximum(z, 1.0)))
    return rho1 * resid, np.where(inlier, 1.0, 0.0)


def covariance(
    jac: FloatArray,
    resid: FloatArray,
    dof: int,
    *,
    loss: Loss = "linear",
    f_scale: float = 1.0,
) -> tuple[FloatArray, float, bool]:
    """
    Covariance of a least-squares estimate from the Jacobian at the optimum.

    Args:
        jac: Jacobian of the (weighted) residuals, shape (n, p).
        resid: The (weighted) residuals at the optimum, shape (n,).
        dof: Residual degrees of freedom, ``n - p``.
        loss: The loss used in the fit.
        f_scale: The soft margin used with a robust loss.

    Returns:
        ``(cov, s2, rank_deficient)``: the p×p covariance, the residual variance estimate and
        whether ``JᵀJ`` is numerically singular (then every entry of ``cov`` is ``inf``).
    """
    n, p = jac.shape
    psi, dpsi = _psi(resid, loss, f_scale)
    s2 = float(psi @ psi) / dof
    mean_dpsi = float(np.mean(dpsi))
    if loss != "linear":
        s2 = s2 / mean_dpsi**2 if mean_dpsi > 0 else np.inf
    norms = np.linalg.norm(jac, axis=0)
    if not np.all(norms > 0) or not np.isfinite(s2):
        return np.full((p, p), np.inf), s2, True
    scaled = jac / norms
    _, sv, vt = np.linalg.svd(scaled, full_matrices=False)
    if sv[-1] <= sv[0] * max(n, p) * np.finfo(np.float64).eps:
        return np.full((p, p), np.inf), s2, True
    inv = (vt.T / sv**2) @ vt
    cov = s2 * inv / np.outer(norms, norms)
    cov = 0.5 * (cov + cov.T)
    return cov, s2, False


def t_quantile(dof: int, level: float = LEVEL) -> float:
    """
    Two-sided Student-t critical value.

    Args:
        dof: Degrees of freedom (n − p).
        level: Confidence level.

    Returns:
        ``t.ppf((1 + level) / 2, dof)``.
    """
    return float(stats.t.ppf(0.5 + 0.5 * level, dof))


def t_interval(
    estimate: float,
    stderr: float,
    dof: int,
    *,
    lower: float = -np.inf,
    upper: float = np.inf,
    level: float = LEVEL,
) -> tuple[float, float]:
    """
    ``estimate ± t · stderr``, clipped to ``[lower, upper]``.

    Args:
        estimate: Point estimate.
        stderr: Its standard error (``inf`` gives the whole feasible range).
        dof: Degrees of freedom.
        lower: Lower bound of the parameter.
        upper: Upper bound of the parameter.
        level: Confidence level.

    Returns:
        The interval as ``(low, high)``.
    """
    half = t_quantile(dof, level) * stderr
    if not np.isfinite(half):
        return (float(lower), float(upper))
    return (float(max(estimate - half, lower)), float(min(estimate + half, upper)))


def freeze_matrix(matrix: FloatArray) -> tuple[tuple[float, ...], ...]:
    """
    An immutable copy of a 2-D array as a tuple of row tuples of Python floats.

    Args:
        matrix: A 2-D array.

    Returns:
        The rows as tuples.
    """
    return tuple(tuple(float(v) for v in row) for row in matrix)


@dataclass(frozen=True)
class Solution:
    """
    Outcome of one bounded least-squares solve.

    Attributes:
        x: All parameters (fixed ones at their fixed values).
        cost: ``0.5 * sum(rho(r²))`` at ``x`` (the solver's objective).
        success: Whether the solver reported convergence.
        message: The solver's message.
        fixed: Which parameters were held fixed (on a bound face).
    """

    x: FloatArray
    cost: float
    success: bool
    message: str
    fixed: tuple[bool, ...]


def _cost(r: FloatArray, loss: Loss, f_scale: float) -> float:
    if loss == "linear":
        return 0.5 * float(r @ r)
    z = (r / f_scale) ** 2
    if loss == "soft_l1":
        rho = 2.0 * (np.sqrt(1.0 + z) - 1.0)
    else:
        rho = np.where(z <= 1.0, z, 2.0 * np.sqrt(z) - 1.0)
    return 0.5 * f_scale**2 * float(np.sum(rho))


def solve_bounded(
    fun: Callable[[FloatArray], FloatArray],
    jac: Callable[[FloatArray], FloatArray],
    x0: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    fixed: Sequence[bool],
    *,
    loss: Loss = "linear",
    f_scale: float = 1.0,
) -> Solution:
    """
    Minimise ``0.5 Σ ρ(fun(x)²)`` over ``lower <= x <= upper`` with some parameters held fixed.

    Holding a parameter fixed at its bound explores one face of the bound box; callers solve
    every relevant face and keep the best, which puts a parameter whose optimum lies on the
    bound exactly on it (an interior solver only creeps towards a bound).

    Args:
        fun: Residual function of all parameters.
        jac: Its Jacobian, shape (n, p).
        x0: Start (fixed parameters keep these values). Must lie within the bounds.
        lower: Lower bounds.
        upper: Upper bounds.
        fixed: One flag per parameter.
        loss: ``scipy.optimize.least_squares`` loss.
        f_scale: Soft margin for robust losses.

    Returns:
        The solution.
    """
    mask = np.array(fixed, dtype=bool)
    free = ~mask
    base = np.clip(np.asarray(x0, dtype=np.float64), lower, upper)
    if not free.any():
        r = fun(base)
        ok = bool(np.all(np.isfinite(r)))
        return Solution(base, _cost(r, loss, f_scale), ok, "all parameters fixed", tuple(mask))

    def f_free(z: FloatArray) -> FloatArray:
        x = base.copy()
        x[free] = z
        return fun(x)

    def j_free(z: FloatArray) -> FloatArray:
        x = base.copy()
        x[free] = z
        return jac(x)[:, free]

    start = base[free]
    if not np.all(np.isfinite(f_free(start))):
        return Solution(base, np.inf, False, "residuals are not finite at the start", tuple(mask))
    res = optimize.least_squares(
        f_free,
        start,
        jac=j_free,
        bounds=(lower[free], upper[free]),
        method="trf",
        loss=loss,
        f_scale=f_scale,
        x_scale="jac",
        ftol=_TOL,
        xtol=_TOL,
        gtol=_TOL,
        max_nfev=_MAX_NFEV,
    )
    x = base.copy()
    x[free] = np.clip(res.x, lower[free], upper[free])
    r = fun(x)
    cost = _cost(r, loss, f_scale) if np.all(np.isfinite(r)) else np.inf
    return Solution(x, cost, bool(res.status > 0), str(res.message), tuple(mask))


def best_solution(candidates: Sequence[Solution], rtol: float = 1e-10) -> Solution:
    """
    Pick the lowest-cost solution; near-ties go to the one with more parameters on a bound.

    Args:
        candidates: Solutions of the faces of one problem.
        rtol: Relative cost tolerance for a tie.

    Returns:
        The chosen solution.
    """
    finite = [c for c in candidates if np.isfinite(c.cost)]
    if not finite:
        return candidates[0]
    best = min(c.cost for c in finite)
    tied = [c for c in finite if c.cost <= best * (1.0 + rtol) + 1e-300]
    return max(tied, key=lambda c: (sum(c.fixed), -c.cost))
