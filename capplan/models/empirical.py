"""
Empirical hyperbolic latency curve, R(λ) = a + b / (cap − λ).

``a >= 0`` is the latency floor, ``b >= 0`` the queueing scale and ``cap`` the rate at which
latency diverges; ``cap`` must exceed the largest observed rate, so the fit works with
``cap = max_rate · (1 + e^u)`` and an unbounded ``u`` (in practice ``e^u`` is kept in
[1e-12, 1e12]).  For a fixed ``cap`` the model is linear in (a, b), so a profile over ``cap``
with non-negative least squares gives the starting points; ``scipy.optimize.least_squares``
polishes them on the interior and on the face ``a = 0``, and the lowest cost wins.

Standard errors are ``sqrt(diag(s²(JᵀJ)⁻¹))`` with ``s² = RSS/(n − 3)`` from the full Jacobian
in (a, b, u); the covariance of (a, b, cap) follows by the delta method
(``∂cap/∂u = max_rate · e^u``).  Intervals for a and b are ``estimate ± t(0.975, n − 3) ·
stderr`` clipped at 0; the interval for ``cap`` is the same t-interval taken on ``u`` and mapped
back, so it is asymmetric and always above ``max_rate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

from capplan.models._lsq import (
    FloatArray,
    Loss,
    Solution,
    as_vector,
    best_solution,
    check_loss,
    check_same_length,
    covariance,
    freeze_matrix,
    mad_scale,
    prepare_weights,
    require_distinct,
    require_nonnegative,
    require_points,
    solve_bounded,
    t_interval,
    t_quantile,
)

__all__ = ["HyperbolicFit", "fit_hyperbolic"]

_NAMES = ("a", "b", "cap")
_P = 3
_U_MIN = float(np.log(1e-12))
_U_MAX = float(np.log(1e12))
_V_GRID = np.geomspace(1e-6, 1e6, 121)  # cap / max_rate − 1
_STARTS = 3
_SCALE_ROUNDS = 4  # robust fits, re-estimating the default f_scale each time


@dataclass(frozen=True)
class HyperbolicFit:
    """
    A fitted hyperbolic latency curve (see the module docstring for the method).

    Attributes:
        a: Latency floor, >= 0 (latency units).
        b: Queueing scale, >= 0 (latency × rate units).
        cap: Rate at which latency diverges, > ``max_rate``.
        stderr: Standard errors, keys ``"a"``, ``"b"``, ``"cap"``.
        interval: 95 % intervals (Student t, n − 3 degrees of freedom), same keys.
        covariance: 3×3 covariance of (a, b, cap), rows as tuples (``inf`` when singular).
        r2: Centred coefficient of determination (weighted when weighted).
        rss: Residual sum of squares (weighted when weights were given).
        n: Number of points.
        dof: Residual degrees of freedom, n − 3.
        max_rate: Largest observed rate (``cap`` is above it by construction).
        at_bound: Parameters on a bound: ``"a"`` or ``"b"`` at 0, ``"cap"`` at the edge of
            its search range (then the data do not determine it).
        loss: The loss used.
        f_scale: Soft margin of a robust loss, in latency units (``nan`` for linear).
        success: Whether the optimiser converged.
        message: What happened, including bound and covariance notes.
    """

    a: float
    b: float
    cap: float
    stderr: dict[str, float]
    interval: dict[str, tuple[float, float]]
    covariance: tuple[tuple[float, ...], ...]
    r2: float
    rss: float
    n: int
    dof: int
    max_rate: float
    at_bound: tuple[str, ...]
    loss: str
    f_scale: float
    success: bool
    message: str

    @overload
    def latency(self, rate: float) -> float: ...
    @overload
    def latency(self, rate: NDArray[Any] | Sequence[float]) -> NDArray[np.float64]: ...
    def latency(self, rate: float | NDArray[Any] | Sequence[float]) -> float | NDArray[np.float64]:
        """
        Model latency ``a + b / (cap − rate)``.

        Args:
            rate: Arrival rate(s), >= 0.

        Returns:
            The latency; ``inf`` at or beyond ``cap``; ``nan`` for negative or NaN rates.
        """
        r = np.asarray(rate, dtype=np.float64)
        gap = self.cap - r
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(gap > 0, self.a + self.b / np.where(gap > 0, gap, 1.0), np.inf)
        out = np.where((r >= 0) & ~np.isnan(r), out, np.nan)
        return float(out) if out.ndim == 0 else np.asarray(out, dtype=np.float64)

    @overload
    def rate_for_latency(self, target: float) -> float: ...
    @overload
    def rate_for_latency(self, target: NDArray[Any] | Sequence[float]) -> NDArray[np.float64]: ...
    def rate_for_latency(
        self, target: float | NDArray[Any] | Sequence[float]
    ) -> float | NDArray[np.float64]:
        """
        Highest rate whose model latency is at most ``target``: ``cap − b / (target − a)``.

        Args:
            target: Latency target(s).

        Returns:
            The rate, never below 0 and never above ``cap``: 0 when ``target <= a`` (the
            floor cannot be met) or when the formula is negative (``target`` is below the
            latency at rate 0, ``a + b/cap``); ``cap`` for an infinite target; ``nan`` for
            NaN. Non-decreasing in ``target``.
        """
        t = np.asarray(target, dtype=np.float64)
        excess = t - self.a
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = self.cap - self.b / np.where(excess > 0, excess, 1.0)
        out = np.where(excess > 0, np.clip(rate, 0.0, self.cap), 0.0)
        out = np.where(np.isnan(t), np.nan, out)
        return float(out) if out.ndim == 0 else np.asarray(out, dtype=np.float64)


def _residuals(
    x: FloatArray, rate: FloatArray, y: FloatArray, sw: FloatArray, m: float, scale: float
) -> FloatArray:
    a, b, u = x
    gap = m * (1.0 + np.exp(u)) - rate
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(gap > 0, a + b / np.where(gap > 0, gap, 1.0), np.inf)
    return np.asarray(sw * (f - y) / scale, dtype=np.float64)


def _jacobian(
    x: FloatArray, rate: FloatArray, sw: FloatArray, m: float, scale: float
) -> FloatArray:
    _, b, u = x
    gap = m * (1.0 + np.exp(u)) - rate
    h = 1.0 / np.where(gap > 0, gap, np.nan)
    jac = np.column_stack((np.ones_like(h), h, -b * h * h * m * np.exp(u)))
    return np.asarray(jac * (sw / scale)[:, None], dtype=np.float64)


def _grid_starts(
    rate: FloatArray, y: FloatArray, sw: FloatArray, m: float
) -> dict[tuple[bool, ...], list[FloatArray]]:
    """
    Starting points from a profile over cap: interior (NNLS for a, b) and the face a = 0.
    """
    rss = np.empty(_V_GRID.size)
    coef = np.empty((_V_GRID.size, 2))
    rss_face = np.empty(_V_GRID.size)
    b_face = np.empty(_V_GRID.size)
    yw = sw * y
    for k, v in enumerate(_V_GRID):
        h = 1.0 / (m * (1.0 + v) - rate)
        design = np.column_stack((sw, sw * h))
        ab, norm = optimize.nnls(design, yw)
        coef[k] = ab
        rss[k] = norm * norm
        hw = sw * h
        bk = max(float(hw @ yw) / float(hw @ hw), 0.0)
        b_face[k] = bk
        rss_face[k] = float(np.sum((yw - bk * hw) ** 2))
    u = np.log(_V_GRID)
    padded = np.concatenate(([np.inf], rss, [np.inf]))
    minima = np.flatnonzero((rss <= padded[:-2]) & (rss <= padded[2:]))
    minima = minima[np.argsort(rss[minima], kind="stable")][:_STARTS]
    j = int(np.argmin(rss_face))
    return {
        (False, False, False): [np.array([coef[k, 0], coef[k, 1], u[k]]) for k in minima],
        (True, False, False): [np.array([0.0, b_face[j], u[j]])],
    }


def _solve_faces(
    rate: FloatArray,
    y: FloatArray,
    sw: FloatArray,
    m: float,
    scale: float,
    starts: dict[tuple[bool, ...], list[FloatArray]],
    loss: Loss,
    f_scale: float,
) -> Solution:
    lower = np.array([0.0, 0.0, _U_MIN])
    upper = np.array([np.inf, np.inf, _U_MAX])

    def fun(x: FloatArray) -> FloatArray:
        return _residuals(x, rate, y, sw, m, scale)

    def jac(x: FloatArray) -> FloatArray:
        return _jacobian(x, rate, sw, m, scale)

    candidates = [
        solve_bounded(fun, jac, x0, lower, upper, fixed, loss=loss, f_scale=f_scale / scale)
        for fixed, x0s in starts.items()
        for x0 in x0s
    ]
    return best_solution(candidates)


def fit_hyperbolic(
    rate: ArrayLike,
    latency: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    loss: str = "linear",
    f_scale: float | None = None,
) -> HyperbolicFit:
    """
    Fit ``R(λ) = a + b / (cap − λ)`` by bounded (weighted, optionally robust) least squares.

    Args:
        rate: Arrival rate (or throughput) per measurement (>= 0; at least 3 distinct values).
        latency: Measured latency per measurement (>= 0).
        weights: Optional positive weight per point multiplying its squared residual
            (``1/variance``).
        loss: ``"linear"``, ``"soft_l1"`` or ``"huber"`` (see ``scipy.optimize.least_squares``).
        f_scale: Soft margin for a robust loss, in latency units (times sqrt(weight)).
            Default: 1.4826 × the median absolute residual, first of the least-squares fit,
            then re-estimated from each robust fit's residuals (up to 4 rounds).

    Returns:
        The fit; numerical trouble is reported in ``success``/``message``, not raised.

    Raises:
        ValueError: If lengths differ, values are non-finite or negative, there are fewer
            than 4 points or 3 distinct rates, or the loss is unknown.
    """
    x = as_vector("rate", rate)
    y = as_vector("latency", latency)
    n = check_same_length(rate=x, latency=y)
    loss_ = check_loss(loss)
    require_points("rate", n, _P)
    require_nonnegative("rate", x)
    require_nonnegative("latency", y)
    require_distinct("rate", x, _P)
    w = prepare_weights(weights, n)
    if f_scale is not None and not (np.isfinite(f_scale) and f_scale > 0):
        raise ValueError(f"f_scale = {f_scale!r} must be a positive finite number")
    sw = np.sqrt(w)
    m = float(np.max(x))
    scale = float(np.sqrt(np.mean(w * y * y)))
    if scale == 0.0:
        scale = 1.0

    starts = _grid_starts(x, y, sw, m)
    sol = _solve_faces(x, y, sw, m, scale, starts, "linear", 1.0)
    used_scale = float("nan")
    if loss_ != "linear":
        # With the default f_scale, re-estimate it from the robust residuals and refit: the
        # least-squares residuals it starts from are inflated by the very outliers.
        for _ in range(1 if f_scale is not None else _SCALE_ROUNDS):
            resid = _residuals(sol.x, x, y, sw, m, 1.0)
            new_scale = float(f_scale) if f_scale is not None else mad_scale(resid)
            if new_scale == used_scale:
                break
            used_scale = new_scale
            robust_starts: dict[tuple[bool, ...], list[FloatArray]] = {
                (False, False, False): [sol.x, *starts[(False, False, False)]],
                (True, False, False): [sol.x * np.array([0.0, 1.0, 1.0])],
            }
            sol = _solve_faces(x, y, sw, m, scale, robust_starts, loss_, used_scale)
    return _result(x, y, w, m, sol, loss_, used_scale)


def _result(
    rate: FloatArray,
    y: FloatArray,
    w: FloatArray,
    m: float,
    sol: Solution,
    loss: Loss,
    f_scale: float,
) -> HyperbolicFit:
    n = len(rate)
    dof = n - _P
    sw = np.sqrt(w)
    a, b, u = (float(v) for v in sol.x)
    cap = m * (1.0 + float(np.exp(u)))
    resid = _residuals(sol.x, rate, y, sw, m, 1.0)
    rss = float(resid @ resid)
    jac = _jacobian(sol.x, rate, sw, m, 1.0)
    cov_u, _, singular = covariance(
        jac, resid, dof, loss=loss, f_scale=f_scale if loss != "linear" else 1.0
    )
    dcap = m * float(np.exp(u))
    transform = np.diag([1.0, 1.0, dcap])
    cov = cov_u if singular else transform @ cov_u @ transform
    se = np.sqrt(np.diag(cov))
    se_u = float(np.sqrt(cov_u[2, 2]))
    half_u = t_quantile(dof) * se_u
    if np.isfinite(half_u):
        cap_interval = (
            m * (1.0 + float(np.exp(u - half_u))),
            m * (1.0 + float(np.exp(min(u + half_u, 700.0)))),
        )
    else:
        cap_interval = (m, float("inf"))
    interval = {
        "a": t_interval(a, float(se[0]), dof, lower=0.0),
        "b": t_interval(b, float(se[1]), dof, lower=0.0),
        "cap": cap_interval,
    }
    stderr = {name: float(v) for name, v in zip(_NAMES, se, strict=True)}
    ybar = float(np.sum(w * y) / np.sum(w))
    tss = float(np.sum(w * (y - ybar) ** 2))
    r2 = 1.0 - rss / tss if tss > 0 else float("nan")
    # a has its own face (exactly 0 when on it); b and cap are flagged when numerically there
    b_negligible = b * float(np.max(1.0 / (cap - rate))) <= 1e-9 * float(np.max(np.abs(y)))
    cap_at_edge = min(u - _U_MIN, _U_MAX - u) <= 1e-6
    at_bound = tuple(
        name for name, hit in (("a", a == 0.0), ("b", b_negligible), ("cap", cap_at_edge)) if hit
    )

    notes = [("converged: " if sol.success else "did not converge: ") + sol.message.rstrip(".")]
    if at_bound:
        notes.append(
            f"{' and '.join(at_bound)} on a bound; standard errors are from the full "
            "Jacobian and intervals are clipped to the bounds"
        )
    if singular:
        notes.append("the Jacobian is singular at the optimum; standard errors are infinite")
    if loss != "linear":
        notes.append(
            f"robust loss {loss!r} with f_scale {f_scale:.6g}; covariance is the asymptotic "
            "M-estimator approximation"
        )
    return HyperbolicFit(
        a=a,
        b=b,
        cap=cap,
        stderr=stderr,
        interval=interval,
        covariance=freeze_matrix(cov),
        r2=float(r2),
        rss=rss,
        n=n,
        dof=dof,
        max_rate=m,
        at_bound=at_bound,
        loss=loss,
        f_scale=f_scale,
        success=sol.success,
        message="; ".join(notes),
    )
