"""
Universal Scalability Law (Gunther): throughput as a function of load.

    X(N) = λN / (1 + σ(N − 1) + κN(N − 1))

σ (contention) and κ (coherency) are dimensionless and bounded below by 0; λ > 0 is the
throughput at N = 1.  ``fit_usl`` finds the bounded least-squares optimum: a profile grid over
(σ, κ) with λ solved in closed form gives the starting points, ``scipy.optimize.least_squares``
polishes the three best local minima of the grid on the interior and the best grid point of
each bound face (σ = 0, κ = 0, both), and the lowest cost wins (near-ties go to the face).  So
a local minimum that the grid resolves cannot hide the global one, and a coefficient whose
optimum is on its bound is reported as exactly 0 (as on the full raytracer data set, κ = 0).

Standard errors come from the full 3-parameter Jacobian at the optimum,
``cov = s²(JᵀJ)⁻¹`` with ``s² = RSS/(n − 3)``, even when a coefficient sits on its bound
(that is what R's ``nls``/``usl`` report; the bound is flagged in ``at_bound`` and the
message).  95 % intervals are ``estimate ± t(0.975, n − 3) · stderr`` clipped to the bounds
(so a bound coefficient's interval starts at 0).  Throughput noise is usually proportional to
throughput; then weight by ``1/X²``: unweighted, the errors are heteroscedastic and the
intervals miscover (in simulation with 5 % noise, κ's covers about 92 %, λ's about 98 %;
weighted, all three are within 93–97 %).  With a robust loss the covariance is the asymptotic
M-estimator form (see ``capplan.models._lsq``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

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
    require_positive,
    solve_bounded,
    t_interval,
)

__all__ = ["USLFit", "fit_usl", "usl_peak", "usl_throughput"]

_NAMES = ("sigma", "kappa", "lambda")
_P = 3
_SIGMA_GRID = np.concatenate(([0.0], np.geomspace(1e-5, 2.0, 64)))
_KAPPA_GRID_REL = np.concatenate(([0.0], np.geomspace(1e-7, 1e3, 81)))  # κ · max(N)²
_STARTS = 3  # local minima of the profile grid polished on the interior
_SCALE_ROUNDS = 4  # robust fits, re-estimating the default f_scale each time


@overload
def usl_throughput(n: float, sigma: float, kappa: float, lam: float) -> float: ...
@overload
def usl_throughput(
    n: ArrayLike, sigma: ArrayLike, kappa: ArrayLike, lam: ArrayLike
) -> NDArray[np.float64]: ...
def usl_throughput(
    n: ArrayLike, sigma: ArrayLike, kappa: ArrayLike, lam: ArrayLike
) -> float | NDArray[np.float64]:
    """
    USL throughput ``X(N) = λN / (1 + σ(N − 1) + κN(N − 1))``; arguments broadcast.

    Args:
        n: Load (concurrency, users, processors...).
        sigma: Contention coefficient σ.
        kappa: Coherency coefficient κ.
        lam: Throughput at N = 1, λ.

    Returns:
        A float when every argument is a scalar, else an array of the broadcast shape.
    """
    n_ = np.asarray(n, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    k = np.asarray(kappa, dtype=np.float64)
    lam_ = np.asarray(lam, dtype=np.float64)
    x = lam_ * n_ / (1.0 + s * (n_ - 1.0) + k * n_ * (n_ - 1.0))
    if x.ndim == 0:
        return float(x)
    return np.asarray(x, dtype=np.float64)


def usl_peak(sigma: float, kappa: float, lam: float) -> tuple[float, float]:
    """
    Load of peak throughput and the peak (or asymptotic) throughput.

    Args:
        sigma: σ ≥ 0.
        kappa: κ ≥ 0.
        lam: λ > 0.

    Returns:
        ``(peak_load, max_throughput)``:

        * κ > 0 and σ < 1: ``N* = sqrt((1 − σ)/κ)`` and ``X(N*)``;
        * κ = 0 and 0 < σ < 1: ``(inf, λ/σ)``: Amdahl's law, rising towards its asymptote;
        * κ = 0 and σ = 0: ``(inf, inf)``: linear scaling;
        * σ ≥ 1: ``(1.0, λ)``: throughput never rises above X(1) = λ for N ≥ 1.
    """
    if sigma >= 1.0:
        return 1.0, float(lam)
    if kappa > 0.0:
        n_star = float(np.sqrt((1.0 - sigma) / kappa))
        return n_star, usl_throughput(n_star, sigma, kappa, lam)
    if sigma > 0.0:
        return float("inf"), float(lam / sigma)
    return float("inf"), float("inf")


def _load_for_throughput(
    x: FloatArray, sigma: float, kappa: float, lam: float
) -> NDArray[np.float64]:
    """
    Smaller root of ``xκN² + (xσ − xκ − λ)N + x(1 − σ) = 0`` (the rising branch).
    """
    out = np.full(x.shape, np.nan)
    if sigma >= 1.0:
        return out
    ok = np.isfinite(x) & (x >= 0)
    xs = x[ok]
    a = xs * kappa
    b = xs * (sigma - kappa) - lam
    c = xs * (1.0 - sigma)
    disc = b * b - 4.0 * a * c
    root = np.full(xs.shape, np.inf)
    reach = disc >= 0
    denom = -b[reach] + np.sqrt(disc[reach])
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.where(denom > 0, 2.0 * c[reach] / np.where(denom > 0, denom, 1.0), np.inf)
    n[c[reach] == 0] = 0.0
    root[reach] = n
    out[ok] = root
    return out


@dataclass(frozen=True)
class USLFit:
    """
    A fitted Universal Scalability Law model (see the module docstring for the method).

    Attributes:
        sigma: Contention coefficient σ ≥ 0.
        kappa: Coherency coefficient κ ≥ 0.
        lam: Throughput at N = 1, λ > 0.
        stderr: Standard errors, keys ``"sigma"``, ``"kappa"``, ``"lambda"``.
        interval: 95 % confidence intervals (Student t, n − 3 degrees of freedom), clipped
            to the bounds; same keys.
        covariance: 3×3 covariance of (σ, κ, λ), rows as tuples. All ``inf`` when the
            Jacobian is singular (the message says so).
        r2: Coefficient of determination, centred (weighted mean and sums when weighted).
        rss: Residual sum of squares (weighted when weights were given).
        n: Number of points.
        dof: Residual degrees of freedom, n − 3.
        peak_load: N* = sqrt((1 − σ)/κ); ``inf`` when κ = 0; 1.0 when σ ≥ 1 (see
            ``usl_peak``).
        max_throughput: X(N*); λ/σ (the Amdahl asymptote) when κ = 0; ``inf`` when σ = κ = 0.
        at_bound: Names of coefficients whose optimum is on the bound 0 (e.g. ``("kappa",)``).
        loss: The loss used.
        f_scale: Soft margin of a robust loss, in throughput units (``nan`` for linear).
        success: Whether the optimiser converged.
        message: What happened, including bound and covariance notes.
    """

    sigma: float
    kappa: float
    lam: float
    stderr: dict[str, float]
    interval: dict[str, tuple[float, float]]
    covariance: tuple[tuple[float, ...], ...]
    r2: float
    rss: float
    n: int
    dof: int
    peak_load: float
    max_throughput: float
    at_bound: tuple[str, ...]
    loss: str
    f_scale: float
    success: bool
    message: str

    @overload
    def throughput(self, n: float) -> float: ...
    @overload
    def throughput(self, n: NDArray[Any] | Sequence[float]) -> NDArray[np.float64]: ...
    def throughput(self, n: float | NDArray[Any] | Sequence[float]) -> float | NDArray[np.float64]:
        """
        Model throughput X(N).

        Args:
            n: Load(s).

        Returns:
            X(N), a float for a scalar load.
        """
        return usl_throughput(n, self.sigma, self.kappa, self.lam)

    @overload
    def latency(self, n: float) -> float: ...
    @overload
    def latency(self, n: NDArray[Any] | Sequence[float]) -> NDArray[np.float64]: ...
    def latency(self, n: float | NDArray[Any] | Sequence[float]) -> float | NDArray[np.float64]:
        """
        Response time by Little's law, ``R(N) = N / X(N) = (1 + σ(N − 1) + κN(N − 1)) / λ``.

        Meaningful when the load is the number of requests in the system (concurrency) and
        throughput is in requests per unit time; R is then in that time unit.

        Args:
            n: Load(s).

        Returns:
            R(N), a float for a scalar load.
        """
        n_ = np.asarray(n, dtype=np.float64)
        r = (1.0 + self.sigma * (n_ - 1.0) + self.kappa * n_ * (n_ - 1.0)) / self.lam
        return float(r) if r.ndim == 0 else np.asarray(r, dtype=np.float64)

    @overload
    def load_for_throughput(self, x: float) -> float: ...
    @overload
    def load_for_throughput(self, x: NDArray[Any] | Sequence[float]) -> NDArray[np.float64]: ...
    def load_for_throughput(
        self, x: float | NDArray[Any] | Sequence[float]
    ) -> float | NDArray[np.float64]:
        """
        Smallest load on the rising branch whose model throughput is ``x``.

        Args:
            x: Target throughput(s).

        Returns:
            The load; 0 for ``x = 0``; ``inf`` when ``x`` is at or above ``max_throughput``
            (no finite load reaches it); ``nan`` for negative or NaN ``x``, and for every
            ``x`` when σ ≥ 1 (the curve has no rising branch).
        """
        x_ = np.asarray(x, dtype=np.float64)
        n = _load_for_throughput(np.atleast_1d(x_), self.sigma, self.kappa, self.lam)
        return float(n[0]) if x_.ndim == 0 else n.reshape(x_.shape)


def _profile_grid(
    load: FloatArray, y: FloatArray, w: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """
    RSS and λ over the (σ, κ) grid, with λ = Σwyg / Σwg² for each cell (g = N/D).
    """
    sig = _SIGMA_GRID
    kap = _KAPPA_GRID_REL / float(np.max(load)) ** 2
    rss = np.empty((sig.size, kap.size))
    lam = np.empty((sig.size, kap.size))
    nn1 = load * (load - 1.0)
    for i, s in enumerate(sig):
        d = 1.0 + s * (load - 1.0) + kap[:, None] * nn1  # (nk, n)
        valid = np.all(d > 0, axis=1)
        g = load / np.where(d > 0, d, 1.0)
        a = (w * y * g).sum(axis=1)
        b = (w * g * g).sum(axis=1)
        lam_i = np.maximum(a / b, 0.0)
        r = y - lam_i[:, None] * g
        rss[i] = np.where(valid, (w * r * r).sum(axis=1), np.inf)
        lam[i] = lam_i
    return sig, kap, rss, lam


def _local_minima(rss: FloatArray, count: int) -> list[tuple[int, int]]:
    """
    Up to ``count`` lowest local minima (8-neighbourhood) of a 2-D array, best first.
    """
    padded = np.pad(rss, 1, constant_values=np.inf)
    core = padded[1:-1, 1:-1]
    is_min = np.isfinite(core)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                shifted = padded[
                    1 + di : padded.shape[0] - 1 + di, 1 + dj : padded.shape[1] - 1 + dj
                ]
                is_min &= core <= shifted
    idx = np.argwhere(is_min)
    order = np.lexsort((idx[:, 1], idx[:, 0], core[is_min]))
    return [(int(i), int(j)) for i, j in idx[order][:count]]


def _residuals(
    x: FloatArray, load: FloatArray, y: FloatArray, sw: FloatArray, scale: float
) -> FloatArray:
    s, k, lam = x
    d = 1.0 + s * (load - 1.0) + k * load * (load - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(d > 0, lam * load / np.where(d > 0, d, 1.0), np.inf)
    return np.asarray(sw * (f - y) / scale, dtype=np.float64)


def _jacobian(x: FloatArray, load: FloatArray, sw: FloatArray, scale: float) -> FloatArray:
    s, k, lam = x
    nm1 = load - 1.0
    d = 1.0 + s * nm1 + k * load * nm1
    d = np.where(d > 0, d, np.nan)
    dx_ds = -lam * load * nm1 / d**2
    dx_dk = -lam * load * load * nm1 / d**2
    dx_dl = load / d
    jac = np.column_stack((dx_ds, dx_dk, dx_dl)) * (sw / scale)[:, None]
    return np.asarray(jac, dtype=np.float64)


def _solve_faces(
    load: FloatArray,
    y: FloatArray,
    sw: FloatArray,
    scale: float,
    starts: dict[tuple[bool, ...], list[FloatArray]],
    loss: Loss,
    f_scale: float,
) -> Solution:
    lower = np.zeros(_P)
    upper = np.full(_P, np.inf)

    def fun(x: FloatArray) -> FloatArray:
        return _residuals(x, load, y, sw, scale)

    def jac(x: FloatArray) -> FloatArray:
        return _jacobian(x, load, sw, scale)

    candidates = [
        solve_bounded(fun, jac, x0, lower, upper, fixed, loss=loss, f_scale=f_scale / scale)
        for fixed, x0s in starts.items()
        for x0 in x0s
    ]
    return best_solution(candidates)


def _grid_starts(
    load: FloatArray, y: FloatArray, w: FloatArray
) -> dict[tuple[bool, ...], list[FloatArray]]:
    """
    Starting points for each face: interior, κ = 0, σ = 0, both 0 (fixed flags per face).
    """
    sig, kap, rss, lam = _profile_grid(load, y, w)
    interior = rss.copy()
    interior[0, :] = np.inf
    interior[:, 0] = np.inf
    starts: dict[tuple[bool, ...], list[FloatArray]] = {
        (False, False, False): [
            np.array([sig[i], kap[j], lam[i, j]]) for i, j in _local_minima(interior, _STARTS)
        ]
    }
    i = int(np.argmin(rss[:, 0]))
    starts[(False, True, False)] = [np.array([sig[i], 0.0, lam[i, 0]])]
    j = int(np.argmin(rss[0, :]))
    starts[(True, False, False)] = [np.array([0.0, kap[j], lam[0, j]])]
    starts[(True, True, False)] = [np.array([0.0, 0.0, lam[0, 0]])]
    return starts


def fit_usl(
    load: ArrayLike,
    throughput: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    loss: str = "linear",
    f_scale: float | None = None,
) -> USLFit:
    """
    Fit the Universal Scalability Law by bounded (weighted, optionally robust) least squares.

    Args:
        load: Load N per measurement (> 0; at least 3 distinct values).
        throughput: Measured throughput X per measurement (>= 0, not all 0).
        weights: Optional positive weight per point, multiplying its squared residual
            (``1/variance``; e.g. ``1/X²`` for errors proportional to throughput).
        loss: ``"linear"`` (least squares), ``"soft_l1"`` or ``"huber"`` (robust; see
            ``scipy.optimize.least_squares``).
        f_scale: Soft margin between inlier and outlier residuals for a robust loss, in
            throughput units (times sqrt(weight)). Default: 1.4826 × the median absolute
            residual, first of the least-squares fit, then re-estimated from each robust
            fit's residuals (up to 4 rounds). Ignored for ``"linear"``.

    Returns:
        The fit. Never raises for numerical trouble: ``success`` and ``message`` say what
        happened.

    Raises:
        ValueError: If the inputs are invalid (lengths differ, non-finite or negative values,
            fewer than 4 points or 3 distinct loads, all-zero throughput, unknown loss).
    """
    n_ = as_vector("load", load)
    y = as_vector("throughput", throughput)
    n = check_same_length(load=n_, throughput=y)
    loss_ = check_loss(loss)
    require_points("load", n, _P)
    require_positive("load", n_)
    require_nonnegative("throughput", y)
    if not np.any(y > 0):
        raise ValueError("throughput is 0 everywhere; nothing to fit")
    require_distinct("load", n_, _P)
    w = prepare_weights(weights, n)
    if f_scale is not None and not (np.isfinite(f_scale) and f_scale > 0):
        raise ValueError(f"f_scale = {f_scale!r} must be a positive finite number")
    sw = np.sqrt(w)
    scale = float(np.sqrt(np.mean(w * y * y)))

    starts = _grid_starts(n_, y, w)
    sol = _solve_faces(n_, y, sw, scale, starts, "linear", 1.0)
    used_scale = float("nan")
    if loss_ != "linear":
        # With the default f_scale, re-estimate it from the robust residuals and refit: the
        # least-squares residuals it starts from are inflated by the very outliers.
        for _ in range(1 if f_scale is not None else _SCALE_ROUNDS):
            resid = _residuals(sol.x, n_, y, sw, 1.0)
            new_scale = float(f_scale) if f_scale is not None else mad_scale(resid)
            if new_scale == used_scale:
                break
            used_scale = new_scale
            robust_starts: dict[tuple[bool, ...], list[FloatArray]] = {
                fixed: [sol.x * np.logical_not(fixed)] for fixed in starts
            }
            robust_starts[(False, False, False)] = [sol.x, *starts[(False, False, False)]]
            sol = _solve_faces(n_, y, sw, scale, robust_starts, loss_, used_scale)
    return _result(n_, y, w, sol, loss_, used_scale)


def _result(
    load: FloatArray,
    y: FloatArray,
    w: FloatArray,
    sol: Solution,
    loss: Loss,
    f_scale: float,
) -> USLFit:
    n = len(load)
    dof = n - _P
    sw = np.sqrt(w)
    sigma, kappa, lam = (float(v) for v in sol.x)
    resid = _residuals(sol.x, load, y, sw, 1.0)
    rss = float(resid @ resid)
    jac = _jacobian(sol.x, load, sw, 1.0)
    cov, _, singular = covariance(
        jac, resid, dof, loss=loss, f_scale=f_scale if loss != "linear" else 1.0
    )
    se = np.sqrt(np.diag(cov))
    est = (sigma, kappa, lam)
    stderr = {name: float(v) for name, v in zip(_NAMES, se, strict=True)}
    interval = {
        name: t_interval(e, float(s), dof, lower=0.0)
        for name, e, s in zip(_NAMES, est, se, strict=True)
    }
    ybar = float(np.sum(w * y) / np.sum(w))
    tss = float(np.sum(w * (y - ybar) ** 2))
    r2 = 1.0 - rss / tss if tss > 0 else float("nan")
    peak_load, max_x = usl_peak(sigma, kappa, lam)
    at_bound = tuple(name for name, e in zip(_NAMES[:2], est[:2], strict=True) if e == 0.0)

    notes = [("converged: " if sol.success else "did not converge: ") + sol.message.rstrip(".")]
    if at_bound:
        notes.append(
            f"{' and '.join(at_bound)} at the lower bound 0 (the bounded optimum); standard "
            "errors are from the full Jacobian and intervals are clipped at 0"
        )
    if singular:
        notes.append("the Jacobian is singular at the optimum; standard errors are infinite")
    if loss != "linear":
        notes.append(
            f"robust loss {loss!r} with f_scale {f_scale:.6g}; covariance is the asymptotic "
            "M-estimator approximation"
        )
    return USLFit(
        sigma=sigma,
        kappa=kappa,
        lam=lam,
        stderr=stderr,
        interval=interval,
        covariance=freeze_matrix(cov),
        r2=float(r2),
        rss=rss,
        n=n,
        dof=dof,
        peak_load=peak_load,
        max_throughput=max_x,
        at_bound=at_bound,
        loss=loss,
        f_scale=f_scale,
        success=sol.success,
        message="; ".join(notes),
    )
