"""
Fitting M/G/c (and M/M/c) stations to many nodes' windows at once.

Each node's parameters — its mean service time ``S``, its slot count ``c`` (unless the
inventory gives ``workers``) and its service-time squared coefficient of variation ``scv``
(fixed at 1 for M/M/c) — are fitted by weighted least squares on the log of every latency
statistic its windows carry (mean, p50, p95, p99): residual ln(predicted) − ln(observed),
weighted by the window's request count and by a per-statistic weight (tail percentiles of a
window are noisier estimates).  For a percentile, the log-time residual is taken to first order
from the survival function at the observed time — one Newton step of the quantile inversion —
which equals the exact residual wherever the fit is close and costs one survival-function and
one density evaluation instead of an iterative inversion.

The fit works in log / logit space: ln S; logit of the utilization at the node's highest
observed rate (so a station is always stable on its own data) while c is free; ln scv.  All
nodes are solved together by a batched Levenberg–Marquardt (``_batch_lm``), from the two best
of four starting points per node.  The slot count is then rounded to the better of its two
neighbouring integers (refitting S and scv there); the reported uncertainty is that of the
continuous fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from capplan.models._batch_lm import batched_lm
from capplan.models.queueing import (
    mgc_mean_response,
    mgc_response_sf,
    mgc_response_sf_pdf,
)

__all__ = [
    "STAT_QUANTILES",
    "STAT_WEIGHTS",
    "Packed",
    "StationFits",
    "fit_stations",
    "log_quantile_residuals",
    "station_capacity",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: The latency statistics a window may carry, and the quantile each one is (None: the mean).
STAT_QUANTILES: dict[str, float | None] = {"mean": None, "p50": 0.50, "p95": 0.95, "p99": 0.99}
#: Relative weight of each statistic: sample percentiles further in the tail are noisier
#: estimates (a p99 of a 60-second window rests on the slowest 1% of its requests).
STAT_WEIGHTS: dict[str, float] = {"mean": 1.0, "p50": 1.0, "p95": 0.5, "p99": 0.25}
_PCTL = ("p50", "p95", "p99")
_LOG_S_MIN, _LOG_S_MAX = math.log(1e-9), math.log(1e3)
_LOG_SCV_MIN, _LOG_SCV_MAX = math.log(1e-8), math.log(100.0)


@dataclass(frozen=True)
class Packed:
    """
    Many nodes' windows as padded arrays, one row per node (pads: rate 0, weight 0, latencies
    nan — a residual that involves a nan latency counts as 0).
    """

    rate: FloatArray  # (n, w) requests per second
    weight: FloatArray  # (n, w) request count / the node's mean request count
    latency: dict[str, FloatArray]  # stat -> (n, w) seconds, nan where unknown or unused

    @property
    def rmax(self) -> FloatArray:
        """
        Each node's highest observed rate.
        """
        out: FloatArray = np.max(self.rate, axis=1)
        return out


@dataclass(frozen=True)
class StationFits:
    """
    Fitted stations, one entry per node (arrays of length n; per-node matrices).
    """

    servers: FloatArray
    service_time: FloatArray
    scv: FloatArray
    theta: FloatArray  # (n, k) continuous fit, in the fit's log/logit space
    covariance: FloatArray  # (n, k, k) of theta
    dof: IntArray
    c_free: bool
    scv_free: bool
    rmax: FloatArray
    converged: npt.NDArray[np.bool_]

    def unpack(self, theta: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """
        (servers, service_time, scv) of each row of ``theta`` (continuous slot count).
        """
        return _unpack(theta, self.rmax, self.servers, self.c_free, self.scv_free)


def _expit(x: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


def _unpack(
    theta: FloatArray, rmax: FloatArray, servers: FloatArray, c_free: bool, scv_free: bool
) -> tuple[FloatArray, FloatArray, FloatArray]:
    # Clipped to a physically sane box, so that no trial step of the solver leaves the
    # domain of the maths (1 ns to 1000 s of service, up to a million slots, scv ≤ 100).
    s = np.exp(np.clip(theta[:, 0], _LOG_S_MIN, _LOG_S_MAX))
    col = 1
    if c_free:
        rho = np.clip(_expit(theta[:, col]), 1e-12, 1.0 - 1e-9)
        c = np.clip(rmax * s / rho, 1.0, 1e6)
        col += 1
    else:
        c = servers
    v = np.exp(np.clip(theta[:, col], _LOG_SCV_MIN, _LOG_SCV_MAX)) if scv_free else np.ones_like(s)
    return c, s, v


def log_quantile_residuals(
    rate: npt.ArrayLike,
    q: npt.ArrayLike,
    observed: npt.ArrayLike,
    servers: npt.ArrayLike,
    service_time: npt.ArrayLike,
    scv: npt.ArrayLike,
    *,
    newton_steps: int = 0,
) -> FloatArray:
    """
    ln(model quantile) − ln(observed), from the survival function at the observed time.

    With ``newton_steps = 0`` this is the first-order residual (one Newton step of the
    inversion, clipped to ±10); each further step polishes it towards the exact value.  All
    arguments broadcast together; where the station is unstable the residual is +10.
    """
    rate, q, servers, service_time = (
        np.asarray(x, dtype=np.float64) for x in (rate, q, servers, service_time)
    )
    log_t = np.log(np.asarray(observed, dtype=np.float64))
    total = np.zeros(np.broadcast(rate, q, log_t, servers, service_time, scv).shape)
    for _ in range(newton_steps + 1):
        t = np.exp(log_t + total)
        with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
            sf, pdf = mgc_response_sf_pdf(t, rate, servers, service_time, scv)
            g = np.log(np.maximum(sf, 1e-300)) - np.log1p(-q)
            step = g * sf / (t * pdf)
        step = np.where(np.isfinite(step), np.clip(step, -10.0, 10.0), np.sign(g) * 10.0)
        total = np.clip(total + step, -10.0, 10.0)
    unstable = rate * service_time >= servers
    out: FloatArray = np.where(unstable, 10.0, total)
    return out


def _residuals(
    packed: Packed,
    idx: IntArray,
    c: FloatArray,
    s: FloatArray,
    v: FloatArray,
) -> FloatArray:
    rate = packed.rate[idx]
    weight = packed.weight[idx]
    cc, ss, vv = c[:, None], s[:, None], v[:, None]
    parts = []
    mean_obs = packed.latency["mean"][idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        pred = mgc_mean_response(rate, cc, ss, vv)
        pred = np.where(np.isfinite(pred) & (pred > 0), pred, 1e6)
        parts.append(np.sqrt(weight * STAT_WEIGHTS["mean"]) * (np.log(pred) - np.log(mean_obs)))
    obs = np.stack([packed.latency[k][idx] for k in _PCTL], axis=1)  # (m, 3, w)
    qs = np.array([STAT_QUANTILES[k] for k in _PCTL])[None, :, None]
    ok = np.isfinite(obs)
    res = np.full(obs.shape, np.nan)
    if np.any(ok):
        r3 = np.broadcast_to(rate[:, None, :], obs.shape)
        sel = np.nonzero(ok)
        res[sel] = log_quantile_residuals(
            r3[sel],
            np.broadcast_to(qs, obs.shape)[sel],
            obs[sel],
            np.broadcast_to(c[:, None, None], obs.shape)[sel],
            np.broadcast_to(s[:, None, None], obs.shape)[sel],
            np.broadcast_to(v[:, None, None], obs.shape)[sel],
        )
    w3 = np.sqrt(weight[:, None, :] * np.array([STAT_WEIGHTS[k] for k in _PCTL])[None, :, None])
    parts.append((w3 * res).reshape(len(idx), -1))
    return np.concatenate(parts, axis=1)


def _starts(packed: Packed, c_free: bool, scv_free: bool) -> list[FloatArray]:
    floor = np.nanmin(np.fmin(packed.latency["mean"], packed.latency["p50"]), axis=1)
    log_s0 = np.log(np.where(np.isfinite(floor), 0.8 * floor, 0.01))
    n = log_s0.size
    out = []
    for rho0 in (0.5, 0.85) if c_free else (None,):
        for lv in (math.log(0.5), 0.0) if scv_free else (None,):
            cols = [log_s0]
            if rho0 is not None:
                cols.append(np.full(n, math.log(rho0 / (1 - rho0))))
            if lv is not None:
                cols.append(np.full(n, lv))
            out.append(np.column_stack(cols))
    return out


def _solve(
    packed: Packed,
    servers: FloatArray,
    c_free: bool,
    scv_free: bool,
    starts: Sequence[FloatArray],
    best_of: int = 2,
) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """
    Batched LM from the ``best_of`` cheapest starts per node; the lower cost wins per node.
    """
    rmax = packed.rmax

    def fun(theta: FloatArray, idx: IntArray) -> FloatArray:
        c, s, v = _unpack(theta, rmax[idx], servers[idx], c_free, scv_free)
        return _residuals(packed, idx, c, s, v)

    every = np.arange(packed.rate.shape[0])
    costs = []
    for start in starts:
        r = fun(start, every)
        costs.append(np.nansum(r * r, axis=1))
    order = np.argsort(np.column_stack(costs), axis=1, kind="stable")[:, :best_of]
    best_x = best_r = best_j = None
    best_cost = np.full(every.size, np.inf)
    converged = np.zeros(every.size, dtype=bool)
    stacked = np.stack(starts, axis=0)  # (starts, n, k)
    for rank in range(min(best_of, len(starts))):
        x0 = stacked[order[:, rank], every]
        result = batched_lm(fun, x0, ftol=1e-10, xtol=1e-10, max_iter=200)
        if best_x is None:
            best_x, best_r, best_j = (
                result.x.copy(),
                result.residuals.copy(),
                result.jacobian.copy(),
            )
            best_cost = result.cost.copy()
            converged = result.converged.copy()
            continue
        better = result.cost < best_cost - 1e-12
        best_x[better] = result.x[better]
        best_r[better] = result.residuals[better]  # type: ignore[index]
        best_j[better] = result.jacobian[better]  # type: ignore[index]
        best_cost[better] = result.cost[better]
        converged[better] = result.converged[better]
    assert best_x is not None
    assert best_r is not None
    assert best_j is not None
    return best_x, best_cost, best_j, converged


def fit_stations(
    packed: Packed, workers: FloatArray | None, *, scv_free: bool = True
) -> StationFits:
    """
    Fit one station per node.

    Args:
        packed: The nodes' windows.
        workers: Per node, the slot count when known (nan: fit it); None: fit every one.  All
            nodes of one call must agree on whether c is fitted (the caller splits them).
        scv_free: Fit the scv (M/G/c); False fixes it at 1 (M/M/c).

    Returns:
        The fitted stations.
    """
    n = packed.rate.shape[0]
    c_free = workers is None
    servers = np.full(n, np.nan) if workers is None else np.asarray(workers, dtype=np.float64)
    theta, cost, jac, converged = _solve(
        packed, servers, c_free, scv_free, _starts(packed, c_free, scv_free)
    )
    k = theta.shape[1]
    n_res = np.count_nonzero(np.isfinite(packed.latency["mean"]), axis=1) + sum(
        np.count_nonzero(np.isfinite(packed.latency[key]), axis=1) for key in _PCTL
    )
    dof = (n_res - k).astype(np.intp)
    jtj = np.einsum("imk,iml->ikl", jac, jac)
    s2 = np.where(dof > 0, cost / np.maximum(dof, 1), np.inf)
    try:
        inv = np.linalg.inv(jtj)
    except np.linalg.LinAlgError:
        inv = np.linalg.pinv(jtj)
    cov = inv * s2[:, None, None]
    c, s, v = _unpack(theta, packed.rmax, servers, c_free, scv_free)
    if c_free:
        c, s, v = _round_servers(packed, c, s, v, theta, scv_free)
    return StationFits(c, s, v, theta, cov, dof, c_free, scv_free, packed.rmax, converged)


def _round_servers(
    packed: Packed,
    c: FloatArray,
    s: FloatArray,
    v: FloatArray,
    theta: FloatArray,
    scv_free: bool,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """
    Refit S (and scv) at the two integers around each fitted c; keep the better stable one.
    """
    rmax = packed.rmax
    best_cost = np.full(c.size, np.inf)
    out_c, out_s, out_v = c.copy(), s.copy(), v.copy()
    start = theta[:, [0, 2]] if scv_free else theta[:, [0]]
    for candidate in (np.maximum(np.floor(c), 1.0), np.maximum(np.ceil(c), 1.0)):
        x, cost, _, _ = _solve(packed, candidate, False, scv_free, [start], best_of=1)
        ci, si, vi = _unpack(x, rmax, candidate, False, scv_free)
        stable = rmax < ci / si
        better = stable & (cost < best_cost)
        best_cost[better] = cost[better]
        out_c[better], out_s[better], out_v[better] = ci[better], si[better], vi[better]
    return out_c, out_s, out_v


def station_capacity(
    servers: FloatArray,
    service_time: FloatArray,
    scv: FloatArray,
    latency: float,
    q: float,
    *,
    iterations: int = 64,
) -> FloatArray:
    """
    Per station, the largest rate with P(T > latency) ≤ 1 − q (bisection on all at once).

    0 where even an idle station misses the target.
    """
    lo = np.zeros(servers.shape)
    hi = servers / service_time
    t = np.full(servers.shape, latency)
    idle_ok = mgc_response_sf(t, lo, servers, service_time, scv) <= 1.0 - q
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        ok = mgc_response_sf(t, mid, servers, service_time, scv) <= 1.0 - q
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    return np.where(idle_ok, lo, 0.0)
