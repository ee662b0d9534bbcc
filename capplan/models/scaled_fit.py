"""
Batched fits of the models that predict one latency statistic: USL, utilization law, hyperbola.

Each is fitted to many nodes at once (arrays of shape (nodes, windows), padded: weight 0 and
nan data where a node has fewer windows), by the same estimator as its one-node fitter in
``usl.py``, ``demand.py`` and ``empirical.py``:

* **USL** — X(N) = λN / (1 + σ(N − 1) + κN(N − 1)) on (load N, throughput X), weighted least
  squares with σ, κ ≥ 0; starting points from the linearised form N/X = ((1 − σ) + σN +
  κN(N − 1)) / λ on the interior and on the faces κ = 0 and σ = 0, each polished by a projected
  Levenberg–Marquardt, the lowest cost winning (a coefficient on its bound ends exactly on 0);
* **utilization law** — U = D·X through the origin, closed form;
* **hyperbola** — R(λ) = a + b / (cap − λ), a, b ≥ 0, cap = max rate · (1 + e^u): a profile
  over u on the same grid as ``fit_hyperbolic`` (linear in a, b for a fixed cap), then LM.

Each model turns into a *base curve* — the USL's mean latency by Little's law (R = N/X on the
rising branch), the utilization law's R0 / (1 − Dλ), the hyperbola itself — evaluated for all
nodes at once by ``base(theta, rate)``.  Parameters ``theta`` are in the model's natural units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from capplan.models._batch_lm import batched_lm

__all__ = ["BaseFits", "demand_latency", "fit_demand_many", "fit_hyperbolic_many", "fit_usl_many"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_V_GRID = np.geomspace(1e-6, 1e6, 121)  # cap / max_rate − 1, as in empirical.py
_U_MIN, _U_MAX = math.log(1e-12), math.log(1e12)


@dataclass(frozen=True)
class BaseFits:
    """
    One model fitted to many nodes: parameters, their covariance, and the base curve.
    """

    theta: FloatArray  # (n, k), natural units
    covariance: FloatArray  # (n, k, k)
    dof: IntArray  # (n,)
    success: BoolArray  # (n,)
    messages: tuple[str, ...]
    names: tuple[str, ...]  # parameter names, in theta's order
    base: Callable[[FloatArray, FloatArray], FloatArray]  # (theta (n,k), rate (n,m)) -> (n,m)
    saturation: Callable[[FloatArray], FloatArray]  # theta (n,k) -> (n,)
    #: Per window, the least-squares fit's Jacobian (n, m, k) and residuals (n, m) at theta,
    #: unscaled (0 for padding), where the fit is one: its score per window is Jᵢᵀrᵢ.
    jacobian: FloatArray | None = None
    residuals: FloatArray | None = None


def _wls_cov(jac: FloatArray, rss: FloatArray, dof: IntArray) -> FloatArray:
    """
    s²(JᵀJ)⁻¹ per node, s² = RSS/dof (inf where dof ≤ 0 or JᵀJ is singular).
    """
    jtj = np.einsum("imk,iml->ikl", jac, jac)
    cov = np.full(jtj.shape, np.inf)
    s2 = np.where(dof > 0, rss / np.maximum(dof, 1), np.inf)
    ok = np.linalg.cond(jtj) < 1e14
    if np.any(ok):
        cov[ok] = np.linalg.inv(jtj[ok]) * s2[ok, None, None]
    return cov


def _hc2_cov(jac: FloatArray, residuals: FloatArray, dof: IntArray) -> FloatArray:
    """
    The heteroscedasticity-robust covariance per node (HC2: ``A Σ_i J_iᵀJ_i r_i²/(1 − h_i) A``,
    ``A = (JᵀJ)⁻¹``, ``h_i`` the point's leverage): each window's own scatter instead of one
    residual variance (inf where dof ≤ 0 or JᵀJ is singular).
    """
    jtj = np.einsum("imk,iml->ikl", jac, jac)
    cov = np.full(jtj.shape, np.inf)
    ok = (np.linalg.cond(jtj) < 1e14) & (dof > 0)
    if np.any(ok):
        inv = np.linalg.inv(jtj[ok])
        j, r = jac[ok], residuals[ok]
        leverage = np.einsum("imk,ikl,iml->im", j, inv, j)
        spread = r * r / np.maximum(1.0 - leverage, 1e-6)
        cov[ok] = inv @ np.einsum("imk,im,iml->ikl", j, spread, j) @ inv
    return cov


def _distinct(x: FloatArray, valid: BoolArray) -> IntArray:
    """
    Number of distinct valid values per row.
    """
    filled = np.where(valid, x, np.nan)
    srt = np.sort(filled, axis=1)
    new = np.isfinite(srt) & np.concatenate(
        [np.ones((srt.shape[0], 1), dtype=bool), np.diff(srt, axis=1) != 0], axis=1
    )
    out: IntArray = np.count_nonzero(new, axis=1).astype(np.intp)
    return out


# ------------------------------------------------------------------------------------- USL


def usl_mean_latency(theta: FloatArray, rate: FloatArray) -> FloatArray:
    """
    Mean latency R(λ) = N/λ with N on the USL's rising branch, closed form, per node.

    X·κN² + (Xσ − Xκ − λ)N + X(1 − σ) = 0, smaller root (written stably); inf beyond the peak.
    """
    sg, kp, lm = (theta[:, j : j + 1] for j in range(3))
    x = np.maximum(rate, 0.0)
    b = lm - x * sg + x * kp
    disc = b * b - 4.0 * x * x * kp * (1.0 - sg)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = 2.0 * (1.0 - sg) / (b + np.sqrt(disc))
    sat = usl_saturation(theta)[:, None]
    out: FloatArray = np.where((disc >= 0) & (b > 0) & (x < sat) & (r > 0), r, np.inf)
    return out


def usl_saturation(theta: FloatArray) -> FloatArray:
    """
    The USL's peak throughput per node (λ/σ when κ = 0; inf when σ = κ = 0).
    """
    sg, kp, lm = theta[:, 0], theta[:, 1], theta[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        n_star = np.sqrt(np.maximum(1.0 - sg, 1e-12) / kp)
        peak = lm * n_star / (1.0 + sg * (n_star - 1.0) + kp * n_star * (n_star - 1.0))
        flat = np.where(sg > 0, lm / sg, np.inf)
    out: FloatArray = np.where(kp > 0, peak, flat)
    return out


def _usl_residuals(
    x: FloatArray, load: FloatArray, y: FloatArray, sw: FloatArray, scale: FloatArray
) -> FloatArray:
    s, k, lam = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    d = 1.0 + s * (load - 1.0) + k * load * (load - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(d > 0, lam * load / np.where(d > 0, d, 1.0), np.inf)
    out: FloatArray = sw * (f - y) / scale
    return out


def _usl_start(
    load: FloatArray, y: FloatArray, w: FloatArray, columns: tuple[bool, bool]
) -> FloatArray:
    """
    Linearised start: regress N/X on [1, N, N(N − 1)] (σ, κ terms as ``columns`` say).
    """
    ok = (w > 0) & (y > 0)
    z = np.where(ok, load / np.where(ok, y, 1.0), 0.0)
    ww = np.where(ok, w * y * y, 0.0)  # N/X's error grows as 1/X: weight back by X²
    design = [np.ones_like(load)]
    if columns[0]:
        design.append(load)
    if columns[1]:
        design.append(load * (load - 1.0))
    a = np.stack(design, axis=2)  # (n, m, p)
    ata = np.einsum("imp,im,imq->ipq", a, ww, a) + 1e-12 * np.eye(len(design))
    atz = np.einsum("imp,im,im->ip", a, ww, z)
    coef = np.linalg.solve(ata, atz[:, :, None])[:, :, 0]
    c0 = coef[:, 0]
    c1 = coef[:, 1] if columns[0] else np.zeros_like(c0)
    c2 = coef[:, -1] if columns[1] else np.zeros_like(c0)
    inv_lam = c0 + c1
    guess = np.nanmax(np.where(ok, y / np.where(ok, load, 1.0), np.nan), axis=1)
    lam = np.where(inv_lam > 0, 1.0 / np.where(inv_lam > 0, inv_lam, 1.0), guess)
    sigma = np.clip(c1 * lam, 0.0, 0.99) if columns[0] else np.zeros_like(lam)
    kappa = np.clip(c2 * lam, 0.0, None) if columns[1] else np.zeros_like(lam)
    return np.column_stack([sigma, kappa, np.where(np.isfinite(lam) & (lam > 0), lam, 1.0)])


def fit_usl_many(load: FloatArray, throughput: FloatArray, weight: FloatArray) -> BaseFits:
    """
    Fit the USL to each row (weights: e.g. request counts; 0 marks padding).
    """
    valid = (weight > 0) & np.isfinite(load) & (load > 0) & np.isfinite(throughput)
    w = np.where(valid, weight, 0.0)
    load_ = np.where(valid, load, 1.0)
    y = np.where(valid, throughput, 0.0)
    sw = np.sqrt(w)
    n_pts = np.count_nonzero(valid, axis=1)
    scale = np.sqrt(np.sum(w * y * y, axis=1) / np.maximum(np.sum(w, axis=1), 1e-300))
    scale = np.where(scale > 0, scale, 1.0)[:, None]
    messages = []
    distinct = _distinct(load, valid)
    enough = (n_pts >= 4) & (distinct >= 3) & np.any(y > 0, axis=1)

    def fun(x: FloatArray, idx: IntArray) -> FloatArray:
        return _usl_residuals(x, load_[idx], y[idx], sw[idx], scale[idx])

    lower, upper = np.zeros(3), np.full(3, np.inf)
    best = None
    for columns in ((True, True), (True, False), (False, True)):
        x0 = _usl_start(load_, y, w, columns)
        if not columns[1]:
            upper_face = np.array([np.inf, 0.0, np.inf])
        elif not columns[0]:
            upper_face = np.array([0.0, np.inf, np.inf])
        else:
            upper_face = upper
        result = batched_lm(fun, x0, lower=lower, upper=upper_face, max_iter=200)
        if best is None:
            best = result
            continue
        # a face (the later runs) wins near-ties: its coefficient is exactly on the bound
        better = result.cost <= best.cost * (1 + 1e-9)
        if np.any(better):
            best = type(best)(
                x=np.where(better[:, None], result.x, best.x),
                residuals=np.where(better[:, None], result.residuals, best.residuals),
                jacobian=np.where(better[:, None, None], result.jacobian, best.jacobian),
                cost=np.where(better, result.cost, best.cost),
                iterations=np.where(better, result.iterations, best.iterations),
                converged=np.where(better, result.converged, best.converged),
            )
    assert best is not None
    theta = best.x
    dof = (n_pts - 3).astype(np.intp)
    # covariance of the unscaled problem: J·scale, RSS·scale²
    jac = best.jacobian * scale[:, :, None]
    rss = best.cost * scale[:, 0] ** 2
    cov = _wls_cov(jac, rss, dof)
    success = enough & (theta[:, 0] < 1.0) & (theta[:, 2] > 0)
    for i in range(theta.shape[0]):
        if not enough[i]:
            messages.append("needs at least 4 windows at 3 distinct loads")
        elif theta[i, 0] >= 1.0:
            messages.append("contention σ ≥ 1: throughput never grows with load")
        else:
            at = [nm for nm, v in zip(("sigma", "kappa"), theta[i, :2], strict=True) if v == 0]
            note = f"; {' and '.join(at)} at the lower bound 0" if at else ""
            messages.append(("converged" if best.converged[i] else "did not converge") + note)
    return BaseFits(
        theta,
        cov,
        dof,
        success,
        tuple(messages),
        ("sigma", "kappa", "lambda"),
        usl_mean_latency,
        usl_saturation,
        jac,
        best.residuals * scale,
    )


# ---------------------------------------------------------------------------- demand law


def demand_latency(theta: FloatArray, rate: FloatArray) -> FloatArray:
    """
    The utilization law's latency curve ``R0 / (1 − D·λ)`` per row of ``theta`` = (D, R0).
    """
    dem, base0 = theta[:, 0:1], theta[:, 1:2]
    util = dem * rate
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.where(util < 1, base0 / (1 - util), np.inf)
    return out


def fit_demand_many(
    rate: FloatArray,
    cpu: FloatArray,
    weight: FloatArray,
    mean_latency: FloatArray,
    latency_weight: FloatArray,
    ceiling: float,
) -> BaseFits:
    """
    Fit U = D·X per row, and the base curve R0 / (1 − Dλ) (R0 from the mean latencies).
    """
    valid = (weight > 0) & np.isfinite(cpu) & np.isfinite(rate)
    w = np.where(valid, weight, 0.0)
    x = np.where(valid, rate, 0.0)
    u = np.where(valid, cpu, 0.0)
    n_pts = np.count_nonzero(valid, axis=1)
    sxx = np.sum(w * x * x, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.sum(w * x * u, axis=1) / sxx
        rss = np.sum(w * (u - d[:, None] * x) ** 2, axis=1)
        dof = (n_pts - 1).astype(np.intp)
        se = np.sqrt(rss / np.maximum(dof, 1) / sxx)
    success = (n_pts >= 3) & (sxx > 0) & (d > 0) & np.isfinite(d)
    # R(λ) = R0 / (1 − Dλ): R0 is the weighted geometric mean of R·(1 − Dλ).
    dd = np.where(success, d, 1.0)[:, None]
    okm = np.isfinite(mean_latency) & (latency_weight > 0) & (dd * rate < 1)
    lw = np.where(okm, latency_weight, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.where(okm, np.log(np.where(okm, mean_latency * (1 - dd * rate), 1.0)), 0.0)
        r0 = np.exp(np.sum(lw * logs, axis=1) / np.sum(lw, axis=1))
    success &= np.isfinite(r0) & (r0 > 0)
    messages = tuple(
        "closed-form weighted least squares through the origin"
        if ok
        else "needs cpu_util in at least 3 windows, rising with load"
        for ok in success
    )
    theta = np.column_stack([np.where(success, d, np.nan), np.where(success, r0, np.nan)])
    cov = np.zeros((theta.shape[0], 2, 2))
    cov[:, 0, 0] = se**2  # R0 is taken as known (its error is second order here)

    def saturation(th: FloatArray) -> FloatArray:
        out: FloatArray = ceiling / np.maximum(th[:, 0], 1e-300)
        return out

    return BaseFits(
        theta, cov, dof, success, messages, ("demand_s", "base_s"), demand_latency, saturation
    )


# ------------------------------------------------------------------------------ hyperbola


def hyperbola(theta: FloatArray, rate: FloatArray) -> FloatArray:
    """
    a + b / (cap − λ) per node; inf at and beyond cap.
    """
    a, b, cap = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
    gap = cap - rate
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.where(gap > 0, a + b / np.where(gap > 0, gap, 1.0), np.inf)
    return out


def fit_hyperbolic_many(rate: FloatArray, latency: FloatArray, weight: FloatArray) -> BaseFits:
    """
    Fit R(λ) = a + b / (cap − λ) to each row (latency in seconds; 0 weight marks padding).
    """
    valid = (weight > 0) & np.isfinite(latency) & np.isfinite(rate)
    w = np.where(valid, weight, 0.0)
    x = np.where(valid, rate, 0.0)
    y = np.where(valid, latency, 0.0)
    sw = np.sqrt(w)
    n_pts = np.count_nonzero(valid, axis=1)
    m = np.max(np.where(valid, rate, 0.0), axis=1)
    m = np.where(m > 0, m, 1.0)
    scale = np.sqrt(np.sum(w * y * y, axis=1) / np.maximum(np.sum(w, axis=1), 1e-300))
    scale = np.where(scale > 0, scale, 1.0)[:, None]
    enough = (n_pts >= 4) & (_distinct(rate, valid) >= 3)
    # Profile over cap: for a fixed cap the model is linear in (a, b).
    s1 = np.sum(w, axis=1)
    sy = np.sum(w * y, axis=1)
    best_rss = np.full(rate.shape[0], np.inf)
    start = np.zeros((rate.shape[0], 3))
    for v in _V_GRID:
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.where(valid, 1.0 / (m[:, None] * (1.0 + v) - x), 0.0)
        sh, shh, shy = np.sum(w * h, 1), np.sum(w * h * h, 1), np.sum(w * h * y, 1)
        det = s1 * shh - sh * sh
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (shh * sy - sh * shy) / det
            b = (s1 * shy - sh * sy) / det
            a_face, b_face = np.zeros_like(a), np.maximum(shy / shh, 0.0)
            a_flat, b_flat = sy / s1, np.zeros_like(a)
        use_face = ~(a >= 0)
        a, b = np.where(use_face, a_face, a), np.where(use_face, b_face, b)
        use_flat = ~(b >= 0)
        a, b = np.where(use_flat, a_flat, a), np.where(use_flat, b_flat, b)
        rss = np.sum(w * (y - a[:, None] - b[:, None] * h) ** 2, axis=1)
        better = rss < best_rss
        best_rss = np.where(better, rss, best_rss)
        start[better] = np.column_stack([a, b, np.full(a.shape, math.log(v))])[better]

    def fun(xx: FloatArray, idx: IntArray) -> FloatArray:
        aa, bb, uu = xx[:, 0:1], xx[:, 1:2], xx[:, 2:3]
        gap = m[idx, None] * (1.0 + np.exp(uu)) - x[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(gap > 0, aa + bb / np.where(gap > 0, gap, 1.0), np.inf)
        out: FloatArray = sw[idx] * (f - y[idx]) / scale[idx]
        return out

    result = batched_lm(
        fun,
        start,
        lower=np.array([0.0, 0.0, _U_MIN]),
        upper=np.array([np.inf, np.inf, _U_MAX]),
        max_iter=200,
    )
    a, b, u = result.x[:, 0], result.x[:, 1], result.x[:, 2]
    cap = m * (1.0 + np.exp(u))
    dof = (n_pts - 3).astype(np.intp)
    jac = result.jacobian * scale[:, :, None]
    # The windows' latencies at the SLO percentile scatter far more near saturation than at low
    # load: the covariance follows each window's own scatter (as the station fits' does).
    cov_u = _hc2_cov(jac, result.residuals * scale, dof)
    transform = np.zeros((a.size, 3, 3))
    transform[:, 0, 0] = transform[:, 1, 1] = 1.0
    transform[:, 2, 2] = m * np.exp(u)
    with np.errstate(invalid="ignore"):
        cov = np.einsum("ikl,ilm,inm->ikn", transform, cov_u, transform)
    cov = np.where(np.isfinite(cov_u), cov, np.inf)
    success = enough & np.isfinite(result.cost)  # a fit that stopped early is still reported
    messages = tuple(
        ("converged" if c else "did not converge")
        + (
            "; cap at the edge of its range: the data do not determine it"
            if uu >= _U_MAX - 1e-9
            else ""
        )
        if e
        else "needs at least 4 windows at 3 distinct rates"
        for c, e, uu in zip(result.converged, enough, u, strict=True)
    )
    theta = np.column_stack([a, b, cap])

    def saturation(th: FloatArray) -> FloatArray:
        out: FloatArray = th[:, 2].copy()
        return out

    return BaseFits(theta, cov, dof, success, messages, ("a", "b", "cap"), hyperbola, saturation)
