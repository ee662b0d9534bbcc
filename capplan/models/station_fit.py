"""
Fitting M/G/c (and M/M/c) stations to many nodes' windows at once.

Each node's parameters — its mean service time ``S``, its slot count ``c`` (unless the
inventory gives ``workers``) and its service-time squared coefficient of variation ``scv``
(fixed at 1 for M/M/c) — are fitted by generalised least squares on the log of every latency
statistic its windows carry (mean, p50, p95, p99): residual ln(predicted) − ln(observed).

A window may carry the scv of its requests' inter-arrival times (``Packed.arrival``: behind a
balancer, the node's share of the stream; 1 for Poisson traffic): its predicted wait is then
Allen–Cunneen's for those arrivals, ``C/(cμ − λ) · (ca² + scv)/2``, while the whitening below
keeps the Poisson model's sampling covariance (it only weights the statistics).  A window may
also carry the wait itself (``Packed.wait``: behind least connections, the queue the pool
shares), which then replaces the node's own; only its service is the node's.

The four statistics of one window are strongly correlated (its p95 and p99 rest on overlapping
slow requests; a slow burst lifts the mean with them), so they are not weighted as independent.
The fit has two stages.  Stage 1 is weighted least squares (weights: the window's request count
and a per-statistic weight, ``STAT_WEIGHTS``) with first-order percentile residuals (one Newton
step of the quantile inversion from the survival function at the observed time).  Stage 2
whitens each window's log residuals by the inverse Cholesky factor of their model-implied
covariance, evaluated at the stage-1 station, and refits.  That covariance has two parts:
independent requests' (``capplan.models.sampling``: the Bahadur representation, divided by the
window's request count and by the product of the central values), and the short window's
excess (``window_excess_covariance``): near saturation a window's requests queue together, and
whether it caught one of the queue's long excursions moves all four statistics at once — on
simulated M/M/c and M/D/c windows of 10–60 s their variances are 10–50 times (median) what
independent requests give, and the weights of the windows near saturation, which place the
capacity, were that much too high.  (Simulated ramps of the lab's pool, 40 seeds: the fitted
capacities' spread between seeds fell by half — e.g. exponential service on 10 s windows, 4
slots: sd 2.6% → 1.7%, 8 slots 1.8% → 0.8%.)  Where a node's stage-2 residuals are noisier
than that covariance allows (their χ² beyond two standard deviations of its expectation:
noise the model does not know of, e.g. a host's own hiccups), the independent part is scaled
by the dispersion they show (``_dispersion``) and the node refitted.  The reported station's
fit — the refit at the rounded slot count below, or this one when the inventory gives c — uses
percentile residuals polished by one more Newton step (the first-order residual biases the
capacity upward by 0.1–0.2 sd); the continuous-c fit, which only places c, keeps the
first-order ones.  A window that carries only
some of the statistics is whitened by the covariance of those it carries (the missing ones'
rows and columns are set to the identity and their residuals to 0, which is exactly the
sub-matrix whitening).  The parameters' covariance is the cluster-robust sandwich over windows
(``_covariance``), so real-world noise beyond the model's sampling noise still widens the
intervals, most where it is largest: near saturation.  A node whose covariance cannot be
evaluated (e.g. a degenerate scv) keeps the stage-1 weights.

A window is compared with what a window of its length is expected to show, not with the
stationary statistics (``window_log_residuals``): near saturation a short window's p95 and p99,
and a little its mean, read below the stationary ones on average, because most windows miss the
queue's long, rare excursions (its p50 does not move).  The expected log offsets come from the
wait's heavy-traffic diffusion (its time unit ``σ²/δ²``, the share of the tail the wait puts
above each percentile and the response time's hazard there), with one factor per statistic
fitted to simulated windows (``python -m bench.lab.window_bias --calibrate``): for 10 s
windows of M/M/c and M/D/c queues (c = 1–8, ρ = 0.5–0.93) they land 0.035 and 0.019 rms from
the simulated p99 offsets, which are 0.33 and 0.25 rms themselves.  On simulated 10 s ramps of
the lab's pool the 2-slot node's fitted capacity fell from 1.12 to 1.06 times the truth
(exponential service, median of 8 seeds).  A window whose wait is the pool's gets no offset.

The fit works in log / logit space: ln S; logit of the utilization at the node's highest
observed rate (so a station is always stable on its own data) while c is free; ln scv.  All
nodes are solved together by a batched Levenberg–Marquardt (``_batch_lm``), from the two best
of four starting points per node.  The slot count is then rounded to the better of its two
neighbouring integers (refitting S and scv there).  Where the windows bound c only from below
(the continuous fit's c direction is unconstrained: far below saturation the residuals stop
moving as c grows, and the fit runs c up until they do), the reported c is instead the
smallest integer whose refit is as good (``_bounded_below``: a profile over c), with the 95%
lower bound on c beside it.  The covariance of that refit (ln S, ln scv
at the rounded c) is reported too, with whether the continuous fit resolves c at all (its ±2 se
range holds no other integer): where it does not, the caller should keep the wider continuous-c
uncertainty.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from capplan.models._batch_lm import batched_lm
from capplan.models.queueing import (
    mgc_response_quantile,
    mgc_response_sf,
    mgc_response_sf_pdf_given_wait,
    mgc_wait,
)
from capplan.models.sampling import sampling_covariance

__all__ = [
    "STAT_QUANTILES",
    "STAT_WEIGHTS",
    "Packed",
    "StationFits",
    "expected_window_offsets",
    "fit_stations",
    "log_quantile_residuals",
    "station_capacity",
    "window_log_residuals",
    "with_given_wait",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: The latency statistics a window may carry, and the quantile each one is (None: the mean).
STAT_QUANTILES: dict[str, float | None] = {"mean": None, "p50": 0.50, "p95": 0.95, "p99": 0.99}
#: Relative weight of each statistic: sample percentiles further in the tail are noisier
#: estimates (a p99 of a 60-second window rests on the slowest 1% of its requests).
STAT_WEIGHTS: dict[str, float] = {"mean": 1.0, "p50": 1.0, "p95": 0.5, "p99": 0.25}
_PCTL = ("p50", "p95", "p99")
_STATS = ("mean", *_PCTL)
#: Newton steps of the percentile residuals in the fit of the reported station.
_NEWTON_STEPS = 1
#: Tolerance of the stage-1 (pilot) fit.
_PILOT_TOL = 1e-6
#: Iterations of the refits at the integers around c (they start next to the answer; a refit
#: that wanders that long is at an integer where the station is unstable on its data).
_ROUND_MAX_ITER = 50
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
    requests: FloatArray  # (n, w) request count of each window (pads: 0)
    #: (n, w) each window's inter-arrival scv, ca² in the wait (None: 1, Poisson traffic)
    arrival: FloatArray | None = None
    #: (n, w) each, the wait each window's requests met when it is not the node's own: Erlang C
    #: and the rate of the exponential wait of a queue the pool shares (behind least
    #: connections); nan where the node's own wait applies
    wait: tuple[FloatArray, FloatArray] | None = None

    @property
    def rmax(self) -> FloatArray:
        """
        Each node's highest observed rate.
        """
        out: FloatArray = np.max(self.rate, axis=1)
        return out

    def rows(self, nodes: IntArray) -> Packed:
        """The windows of these nodes only."""
        return Packed(
            self.rate[nodes],
            self.weight[nodes],
            {key: value[nodes] for key, value in self.latency.items()},
            self.requests[nodes],
            None if self.arrival is None else self.arrival[nodes],
            None if self.wait is None else (self.wait[0][nodes], self.wait[1][nodes]),
        )


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
    #: (n, k') the fit at the reported (rounded) slot count: ln S (and ln scv); the continuous
    #: fit itself when c is not fitted.
    rounded_theta: FloatArray
    #: (n, k', k') its covariance (the same windows and dof as ``covariance``).
    rounded_covariance: FloatArray
    #: Per node, whether the continuous fit tells the slot count: its ±2 se range holds no
    #: integer other than the reported one (always True when c is not fitted).
    c_resolved: npt.NDArray[np.bool_]
    #: Per node, the ±2 se range of the continuous slot count (c itself when not fitted).
    c_range: tuple[FloatArray, FloatArray]
    #: Per node, the standard error of ln c from the continuous fit (0 when not fitted).
    log_servers_se: FloatArray
    #: Per node whose windows bound c only from below (see ``_bounded_below``): the station
    #: refitted at that 95% lower bound, (servers, service_time, scv); nan for the others.
    floor_station: tuple[FloatArray, FloatArray, FloatArray] | None = None

    def unpack_rounded(self, theta: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """
        (servers, service_time, scv) of each row of ``theta`` at the reported slot count.
        """
        return _unpack(theta, self.rmax, self.servers, False, self.scv_free)

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


def _quantile_newton(
    rate: FloatArray,
    q: FloatArray,
    observed: FloatArray,
    servers: FloatArray,
    service_time: FloatArray,
    scv: FloatArray,
    newton_steps: int,
    wait: tuple[FloatArray, FloatArray] | None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """
    :func:`log_quantile_residuals`, with the last time the survival function was evaluated at
    and its value and density there: ``(residual, t, sf, pdf)``.
    """
    rate, q, servers, service_time, scv = (
        np.asarray(x, dtype=np.float64) for x in (rate, q, servers, service_time, scv)
    )
    log_t = np.log(np.asarray(observed, dtype=np.float64))
    total = np.zeros(np.broadcast(rate, q, log_t, servers, service_time, scv).shape)
    if wait is None:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            wait = mgc_wait(*np.broadcast_arrays(rate, servers, service_time, scv))
    p_wait, theta = (np.broadcast_to(x, total.shape) for x in wait)
    s_full, v_full = (np.broadcast_to(x, total.shape) for x in (service_time, scv))
    t = sf = pdf = total
    for _ in range(newton_steps + 1):
        t = np.exp(log_t + total)
        with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
            sf, pdf = mgc_response_sf_pdf_given_wait(t, p_wait, theta, s_full, v_full)
            g = np.log(np.maximum(sf, 1e-300)) - np.log1p(-q)
            step = g * sf / (t * pdf)
        step = np.where(np.isfinite(step), np.clip(step, -10.0, 10.0), np.sign(g) * 10.0)
        total = np.clip(total + step, -10.0, 10.0)
    # a window whose wait is given (the pool's) holds whatever its rate; see with_given_wait
    unstable = (rate * service_time >= servers) & ~np.isfinite(p_wait)
    out: FloatArray = np.where(unstable, 10.0, total)
    return out, t, sf, pdf


def log_quantile_residuals(
    rate: npt.ArrayLike,
    q: npt.ArrayLike,
    observed: npt.ArrayLike,
    servers: npt.ArrayLike,
    service_time: npt.ArrayLike,
    scv: npt.ArrayLike,
    *,
    newton_steps: int = 0,
    wait: tuple[FloatArray, FloatArray] | None = None,
) -> FloatArray:
    """
    ln(model quantile) − ln(observed), from the survival function at the observed time.

    With ``newton_steps = 0`` this is the first-order residual (one Newton step of the
    inversion, clipped to ±10); each further step polishes it towards the exact value.  All
    arguments broadcast together; where the station is unstable the residual is +10.
    ``wait``: the stations' ``mgc_wait`` at these rates, when the caller has it (then every
    argument is an array of the same shape).
    """
    r, qq, obs, c, s, v = (
        np.asarray(x, dtype=np.float64) for x in (rate, q, observed, servers, service_time, scv)
    )
    return _quantile_newton(r, qq, obs, c, s, v, newton_steps, wait)[0]


def with_given_wait(
    own: tuple[FloatArray, FloatArray], given: tuple[FloatArray, FloatArray]
) -> tuple[FloatArray, FloatArray]:
    """
    Each window's wait ``(C, θ)``: the given one where there is one (a queue the pool shares,
    ``Packed.wait``), else the node's own (C nan, unstable, where the node's own slots cannot
    carry its rate).  A window with the pool's wait is not held to the node's own stability:
    least connections keeps a small node nearly always busy, a short window's rate can read
    above what its slots carry at the true service time, and that wall pinned its fitted
    service time (the lab's 2-slot node on 10 s windows behind nginx: its capacity's interval
    (0, ∞)).  All arguments broadcast together.
    """
    known = np.isfinite(given[0]) & np.isfinite(given[1])
    p_wait = np.where(known, given[0], own[0])
    theta = np.where(known, given[1], own[1])
    return p_wait, theta


#: Short windows (``window_log_residuals``): factors on the heavy-traffic variances behind the
#: expected offset of a window's mean and of its p50, p95, p99, fitted to simulated windows
#: (``python -m bench.lab.window_bias --calibrate``).  The p50's is 0: simulated windows'
#: medians sit at the stationary one or a little above it.
WINDOW_MEAN_FACTOR: Final = 0.54
WINDOW_QUANTILE_FACTORS: Final = ((0.5, 0.0), (0.95, 0.35), (0.99, 0.62))

#: Short windows (``window_excess_covariance``): factors on the same heavy-traffic variances
#: behind the spread of a window's mean, p50, p95 and p99 beyond what independent requests give
#: them, and the correlation of that spread between the four statistics (one excursion lifts
#: them together); both fitted to simulated windows (``python -m bench.lab.window_bias
#: --calibrate``: the factors by the log of the variances; the correlations are the simulated
#: median's times 0.95 — the median's smallest eigenvalue is 0.003, and weights built on it
#: would take one mix of the four statistics as nearly free of noise).
WINDOW_VARIANCE_FACTORS: Final = (1.2, 0.24, 0.94, 0.72)
WINDOW_EXCESS_CORRELATION: Final = (
    (1.0, 0.86, 0.89, 0.84),
    (0.86, 1.0, 0.68, 0.62),
    (0.89, 0.68, 1.0, 0.92),
    (0.84, 0.62, 0.92, 1.0),
)


def _time_unit(
    rate: FloatArray, c: FloatArray, s: FloatArray, v: FloatArray, arrival: FloatArray | float
) -> FloatArray:
    """
    ``σ²/δ²`` of the wait's heavy-traffic diffusion, in seconds: drift ``−δ = −(1 − ρ)``,
    variance ``σ² = ρ·S·(a + v)/c`` per second; nan at and beyond saturation.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rho = rate * s / c
        unit = rho * s * (arrival + v) / (c * (1.0 - rho) ** 2)
    out: FloatArray = np.where(rho < 1.0, unit, np.nan)
    return out


def _mean_offset(
    seconds: FloatArray,
    unit: FloatArray,
    weight: FloatArray,
    eta: FloatArray,
    mean: FloatArray,
    factor: float = WINDOW_MEAN_FACTOR,
) -> FloatArray:
    """
    ``E[ln window mean] − ln(mean)``: the window's mean wait varies with ``2u/T`` times the
    wait's variance (``u`` the wait's integrated autocorrelation time in heavy traffic,
    :func:`_time_unit`), and a positive statistic of relative variance ``V`` has its log
    ``ln(1 + V)/2`` low on average (exact for a lognormal).  The variance is scaled by
    ``factor``.  0 where unknown.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        variance = (2.0 * weight - weight * weight) / (eta * mean) ** 2  # Var(W)/m²
        out = -0.5 * np.log1p(2.0 * factor * unit / seconds * variance)
    result: FloatArray = np.where(np.isfinite(out) & (seconds > 0.0), out, 0.0)
    return result


def _wait_share(t: FloatArray, sf: FloatArray, s: FloatArray, v: FloatArray) -> FloatArray:
    """
    The share of ``P(R > t) = sf`` that the wait puts there: ``1 − P(S > t)/sf`` (gamma
    service of mean ``s`` and scv ``v``; deterministic below an scv of 1e-10), in [0, 1].
    """
    k = 1.0 / np.maximum(v, 1e-10)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        service_sf = np.where(
            v < 1e-10, (t < s).astype(np.float64), special.gammaincc(k, t * k / s)
        )
        out: FloatArray = np.clip(1.0 - service_sf / sf, 0.0, 1.0)
    return out


def _quantile_offset(
    seconds: FloatArray,
    unit: FloatArray,
    q: FloatArray,
    quantile: FloatArray,
    service_time: FloatArray,
    scv: FloatArray,
    level: tuple[FloatArray, FloatArray, FloatArray],
    idle: FloatArray,
    factors: Sequence[tuple[float, float]] = WINDOW_QUANTILE_FACTORS,
) -> FloatArray:
    """
    ``E[ln window q-quantile] − ln(stationary q-quantile)``; 0 where unknown.

    The requests above the quantile ``x`` are a share ``p = 1 − q``; the part ``f·p`` of it
    that the wait puts there (``f = 1 − P(S > x)/p``) comes in excursions of the queue, whose
    time above any high level averages ``u`` (:func:`_time_unit`; the exponential tail is
    memoryless).  A window of ``T`` seconds therefore holds a share ``p·Z`` above ``x``, with
    ``E[Z] = 1`` and ``Var(Z) = V = 2u·f/(T·p)``, and its quantile sits ``ln Z/κ`` from ``x``
    (``κ`` the response time's hazard at ``x``).  On average that is ``−ln(1 + V/2)/κ``: the
    delta method's ``−V/(2κ)`` for long windows, and where a window is unlikely to see such
    an excursion at all (``V`` large: about ``2/V`` of them expected) it reads the level whose
    excursions it does see, ``ln(V/2)/κ`` lower.  The move comes out of the excess over the
    idle station's quantile ``s_q`` and never crosses it:
    ``x̂ = s_q + (x − s_q)·exp(−ln(1 + V/2)/(κ(x − s_q)))``.  ``V`` is scaled by the factor
    of ``factors`` (pairs of quantile and factor) for ``q``, interpolated.  ``level``: the
    response time's ``(t, P(R > t), pdf)`` at a time near ``x`` (the last step of the
    inversion); ``idle``: ``s_q`` (:func:`idle_quantile`).  All arguments of one shape.
    """
    out = np.zeros(quantile.size)
    with np.errstate(invalid="ignore"):
        live = np.flatnonzero(
            (seconds > 0.0) & np.isfinite(unit) & (quantile > idle) & np.isfinite(quantile)
        )
    if live.size == 0:
        return out.reshape(quantile.shape)
    t, sf, pdf = (np.reshape(x, -1)[live] for x in level)
    tt, u, qq, x, s, v, floor = (
        np.reshape(a, -1)[live] for a in (seconds, unit, q, quantile, service_time, scv, idle)
    )
    share = _wait_share(t, sf, s, v)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        levels, scale = zip(*factors, strict=True)
        variance = 2.0 * np.interp(qq, levels, scale) * u * share / (tt * (1.0 - qq))
        shift = np.log1p(variance / 2.0) * sf / pdf
        excess = x - floor
        moved = np.log((floor + excess * np.exp(-shift / excess)) / x)
    out[live] = np.where(np.isfinite(moved), moved, 0.0)
    return out.reshape(quantile.shape)


@dataclass(frozen=True)
class _WindowTerms:
    """
    What a window's expected offsets and extra spread are made of, for the stable elements of
    a broadcast (``stable``, of the broadcast's shape): the window's length ``seconds``; the
    station's ``(s, v)``, wait ``(weight, eta)`` and mean response; the wait's time unit
    (:func:`_time_unit`); and at the percentiles' quantiles ``q`` (one column each of
    ``_PCTL``) the stationary quantile ``x`` with ``P(R > x)`` and the density there.
    """

    stable: npt.NDArray[np.bool_]
    seconds: FloatArray
    service_time: FloatArray
    scv: FloatArray
    weight: FloatArray
    eta: FloatArray
    mean: FloatArray
    unit: FloatArray
    q: FloatArray
    quantile: FloatArray
    sf: FloatArray
    pdf: FloatArray

    @classmethod
    def at(cls, *given: npt.ArrayLike) -> _WindowTerms | None:
        """
        From ``(rate, seconds, servers, service_time, scv, arrival_scv)``, broadcast together;
        None where no element is stable.
        """
        r, t, c, s, v, a = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in given))
        stable = r * s < c
        if not np.any(stable):
            return None
        r, t, c, s, v, a = (x[stable] for x in (r, t, c, s, v, a))
        weight, eta = mgc_wait(r, c, s, v, arrival_scv=a)
        qs = np.array([STAT_QUANTILES[k] for k in _PCTL], dtype=np.float64)
        q = np.broadcast_to(qs, (r.size, qs.size))
        rr, cc, ss, vv, aa, ww, ee = (
            np.repeat(x[:, None], qs.size, axis=1) for x in (r, c, s, v, a, weight, eta)
        )
        x = mgc_response_quantile(q, rr, cc, ss, vv, arrival_scv=aa)
        with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
            sf, pdf = mgc_response_sf_pdf_given_wait(x, ww, ee, ss, vv)
        return cls(
            stable, t, s, v, weight, eta, weight / eta + s, _time_unit(r, c, s, v, a), q, x,
            sf, pdf,
        )  # fmt: skip

    def column(self, x: FloatArray) -> FloatArray:
        """A per-element array repeated beside ``q``, one column per percentile."""
        out: FloatArray = np.repeat(x[:, None], self.q.shape[1], axis=1)
        return out


def expected_window_offsets(
    rate: npt.ArrayLike,
    seconds: npt.ArrayLike,
    servers: npt.ArrayLike,
    service_time: npt.ArrayLike,
    scv: npt.ArrayLike,
    arrival_scv: npt.ArrayLike = 1.0,
    *,
    mean_factor: float = WINDOW_MEAN_FACTOR,
    quantile_factors: Sequence[tuple[float, float]] = WINDOW_QUANTILE_FACTORS,
) -> FloatArray:
    """
    What a window of ``seconds`` at ``rate`` is expected to show of each statistic, as the log
    offset from the station's stationary one: shape ``(..., 4)`` for mean, p50, p95, p99 (the
    offsets :func:`window_log_residuals` adds; the factors may be given, for calibration).
    All arguments broadcast together; 0 where the station is unstable at the rate.
    """
    given = (rate, seconds, servers, service_time, scv, arrival_scv)
    out = np.zeros((*np.broadcast_shapes(*(np.shape(x) for x in given)), 4))
    w = _WindowTerms.at(*given)
    if w is None:
        return out
    values = np.empty((w.seconds.size, 4))
    values[:, 0] = _mean_offset(w.seconds, w.unit, w.weight, w.eta, w.mean, mean_factor)
    s, v = w.column(w.service_time), w.column(w.scv)
    values[:, 1:] = _quantile_offset(
        w.column(w.seconds), w.column(w.unit), w.q, w.quantile, s, v,
        (w.quantile, w.sf, w.pdf), idle_quantile(s, v, w.q), quantile_factors,
    )  # fmt: skip
    out[w.stable] = values
    return out


def window_excess_covariance(
    rate: npt.ArrayLike,
    seconds: npt.ArrayLike,
    servers: npt.ArrayLike,
    service_time: npt.ArrayLike,
    scv: npt.ArrayLike,
    arrival_scv: npt.ArrayLike = 1.0,
    *,
    factors: Sequence[float] = WINDOW_VARIANCE_FACTORS,
) -> FloatArray:
    """
    The covariance of the logs of a window's mean, p50, p95 and p99 beyond what independent
    requests give them (:func:`capplan.models.sampling.sampling_covariance`): shape
    ``(..., 4, 4)``.

    A window's requests are not independent: near saturation they queue together, and whether
    a window caught one of the queue's long excursions moves all its statistics at once.  The
    excursions are those behind the expected offsets (:func:`_quantile_offset`): the share of
    a window's requests above the q-quantile ``x`` is ``p·Z`` with ``Var(Z) = V = 2u·f/(T·p)``,
    and its quantile sits ``ln Z/κ`` from ``x``, so the log quantile varies by
    ``ln(1 + V)/(κx)²`` (the variance of ``ln Z`` for a lognormal ``Z``: ``V`` while small,
    growing only as ``ln V`` where a window rarely sees an excursion); the mean's log by
    ``ln(1 + V_m)``, ``V_m = 2u·Var(W)/(T·m²)``.  Each ``V`` is scaled by its statistic's
    factor of ``factors`` (mean, p50, p95, p99), and the four are correlated by
    ``WINDOW_EXCESS_CORRELATION``.  Simulated M/M/c and M/D/c windows of 10–60 s vary 10–50
    times more than independent requests would make them (median), and this brings the model
    within a factor of about 1.6 of their variances (rms).  All arguments broadcast together;
    0 where the station is unstable or ``seconds`` is not positive (nan: unknown).
    """
    given = (rate, seconds, servers, service_time, scv, arrival_scv)
    out = np.zeros((*np.broadcast_shapes(*(np.shape(x) for x in given)), 4, 4))
    w = _WindowTerms.at(*given)
    if w is None:
        return out
    g = np.asarray(factors, dtype=np.float64)
    s, v = w.column(w.service_time), w.column(w.scv)
    variance = np.empty((w.seconds.size, 4))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        var_w = (2.0 * w.weight - w.weight * w.weight) / (w.eta * w.eta)
        relative = 2.0 * w.unit / w.seconds * var_w / (w.mean * w.mean)
        variance[:, 0] = np.log1p(g[0] * relative)
        share = _wait_share(w.quantile, w.sf, s, v)
        excursion = 2.0 * w.column(w.unit) * share / (w.column(w.seconds) * (1.0 - w.q))
        spread = w.sf / (w.pdf * w.quantile)  # 1/(κx)
        variance[:, 1:] = np.log1p(g[1:] * excursion) * spread * spread
    variance = np.where(np.isfinite(variance) & (w.seconds > 0.0)[:, None], variance, 0.0)
    sd = np.sqrt(variance)
    corr = np.asarray(WINDOW_EXCESS_CORRELATION, dtype=np.float64)
    out[w.stable] = corr * sd[:, :, None] * sd[:, None, :]
    return out


def window_log_residuals(
    q: float | FloatArray | None,
    rate: FloatArray,
    seconds: FloatArray,
    observed: FloatArray,
    servers: FloatArray,
    service_time: FloatArray,
    scv: FloatArray,
    wait: tuple[FloatArray, FloatArray],
    arrival: FloatArray | float = 1.0,
    *,
    newton_steps: int = 0,
    idle: FloatArray | None = None,
) -> FloatArray:
    """
    ln(what the model expects a window to show) − ln(observed), for the mean (``q`` None) or
    the ``q`` quantile: the stationary statistic (:func:`log_quantile_residuals` for a
    quantile) moved by the window's length.

    A window is one stretch of a queue that forgets its state only slowly: near saturation a
    short window's tail percentiles, and less so its mean, sit below the stationary ones on
    average (most windows miss the queue's long excursions; their logs average low).  The
    expected offsets (:func:`_quantile_offset`, :func:`_mean_offset`) come from the wait's
    heavy-traffic diffusion, with factors fitted to simulated windows
    (``WINDOW_QUANTILE_FACTORS``, ``WINDOW_MEAN_FACTOR``); they vanish as ``T`` grows (as
    ``1/T``).  No offset where ``seconds`` is nan (a window whose wait is the
    pool's: its queue's relaxation is not the node's).

    Args:
        q: the quantile per element, or None for the mean.
        rate, seconds, observed: each window's arrival rate, length and statistic.
        servers, service_time, scv: the stations.
        wait: ``(A, η)`` at each window (``mgc_wait``, or a given one).
        arrival: the windows' inter-arrival scvs (1: Poisson).
        newton_steps: as for :func:`log_quantile_residuals`.
        idle: each element's idle quantile (:func:`idle_quantile`), when the caller has it.

    Returns:
        The residuals, of the arguments' broadcast shape.
    """
    unit = _time_unit(rate, servers, service_time, scv, arrival)
    weight, eta = wait
    if q is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = weight / eta + service_time
            mean = np.where(np.isfinite(mean) & (mean > 0), mean, 1e6)
            out: FloatArray = (
                np.log(mean) - np.log(observed) + _mean_offset(seconds, unit, weight, eta, mean)
            )
        return out
    qq = np.asarray(q, dtype=np.float64)
    total, t, sf, pdf = _quantile_newton(
        rate, qq, observed, servers, service_time, scv, newton_steps, wait
    )
    with np.errstate(over="ignore"):
        quantile = observed * np.exp(total)
    shape = total.shape
    full = [np.broadcast_to(x, shape) for x in (seconds, unit, qq, service_time, scv)]
    if idle is None:
        idle = idle_quantile(full[3], full[4], full[2])
    offset = _quantile_offset(
        full[0], full[1], full[2], quantile, full[3], full[4], (t, sf, pdf),
        np.broadcast_to(idle, shape),
    )  # fmt: skip
    result: FloatArray = total + offset
    return result


def _raw_residuals(
    packed: Packed,
    idx: IntArray,
    c: FloatArray,
    s: FloatArray,
    v: FloatArray,
    newton_steps: int,
) -> FloatArray:
    """
    Unweighted log residuals, shape (m, 4, w) in the order of ``_STATS``; nan where missing.
    """
    rate = packed.rate[idx]
    # Erlang C and the wait's rate once per window, for its mean and its percentiles
    arrival = 1.0 if packed.arrival is None else packed.arrival[idx]
    p_wait, theta = mgc_wait(rate, c[:, None], s[:, None], v[:, None], arrival_scv=arrival)
    with np.errstate(divide="ignore", invalid="ignore"):
        seconds = packed.requests[idx] / rate
    if packed.wait is not None:
        given = np.isfinite(packed.wait[0][idx])
        p_wait, theta = with_given_wait((p_wait, theta), (packed.wait[0][idx], packed.wait[1][idx]))
        seconds = np.where(given, np.nan, seconds)
    arrival_w = np.broadcast_to(arrival, rate.shape)
    mean_res = window_log_residuals(
        None, rate, seconds, packed.latency["mean"][idx], c[:, None], s[:, None], v[:, None],
        (p_wait, theta), arrival_w,
    )  # fmt: skip
    obs = np.stack([packed.latency[k][idx] for k in _PCTL], axis=1)  # (m, 3, w)
    qs = np.array([STAT_QUANTILES[k] for k in _PCTL])[None, :, None]
    ok = np.isfinite(obs)
    res = np.full(obs.shape, np.nan)
    if np.any(ok):
        sel = np.nonzero(ok)
        idle = np.stack([idle_quantile(s, v, float(q)) for q in qs.ravel()], axis=1)  # (m, 3)

        def pick(x: FloatArray) -> FloatArray:
            out: FloatArray = np.broadcast_to(x, obs.shape)[sel]
            return out

        res[sel] = window_log_residuals(
            pick(qs), pick(rate[:, None, :]), pick(seconds[:, None, :]), obs[sel],
            pick(c[:, None, None]), pick(s[:, None, None]), pick(v[:, None, None]),
            (pick(p_wait[:, None, :]), pick(theta[:, None, :])), pick(arrival_w[:, None, :]),
            newton_steps=newton_steps, idle=pick(idle[:, :, None]),
        )  # fmt: skip
    return np.concatenate([mean_res[:, None, :], res], axis=1)


def _residuals(
    packed: Packed,
    idx: IntArray,
    c: FloatArray,
    s: FloatArray,
    v: FloatArray,
    whiten: FloatArray | None = None,
    newton_steps: int = 0,
) -> FloatArray:
    """
    The fit's residuals, shape (m, 4·w): weighted (``whiten`` None) or whitened per window by
    ``whiten[i, j]`` (4 × 4); nan where a statistic is missing.
    """
    raw = _raw_residuals(packed, idx, c, s, v, newton_steps)
    m = len(idx)
    if whiten is None:
        statw = np.array([STAT_WEIGHTS[k] for k in _STATS])[None, :, None]
        out: FloatArray = np.sqrt(packed.weight[idx][:, None, :] * statw) * raw
        return out.reshape(m, -1)
    missing = ~np.isfinite(raw)
    white: FloatArray = np.einsum("iwab,ibw->iaw", whiten[idx], np.where(missing, 0.0, raw))
    white[missing] = np.nan
    return white.reshape(m, -1)


@dataclass(frozen=True)
class _WindowNoise:
    """
    Per node and window, the model-implied covariance of the window's log statistics, in two
    parts, each times the window's request count: independent requests' (``iid``: the relative
    ``sampling_covariance``) and the short window's excess (``excess``:
    ``window_excess_covariance``); with the statistics a window lacks as identity rows and
    columns of ``iid`` (zero in ``excess``), and ``bad`` the windows whose covariance could not
    be evaluated (identity, excess 0).
    """

    iid: FloatArray  # (n, w, 4, 4)
    excess: FloatArray  # (n, w, 4, 4)
    present: npt.NDArray[np.bool_]  # (n, w, 4)
    bad: npt.NDArray[np.bool_]  # (n, w)

    @classmethod
    def at(cls, packed: Packed, c: FloatArray, s: FloatArray, v: FloatArray) -> _WindowNoise:
        """At the stations (c, s, v), one per node."""
        n, w = packed.rate.shape
        present = np.stack([np.isfinite(packed.latency[k]) for k in _STATS], axis=2)
        used = packed.requests > 0
        iid = np.broadcast_to(np.eye(4), (n, w, 4, 4)).copy()
        excess = np.zeros((n, w, 4, 4))
        sel = np.nonzero(used)
        rate, requests = packed.rate[sel], packed.requests[sel]
        cs, ss, vs = c[sel[0]], s[sel[0]], v[sel[0]]
        center, cov = sampling_covariance(rate, cs, ss, vs)
        seconds = requests / rate
        if packed.wait is not None:  # the pool's queue: its excursions are not the node's
            seconds = np.where(np.isfinite(packed.wait[0][sel]), np.nan, seconds)
        arrival = 1.0 if packed.arrival is None else packed.arrival[sel]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            iid[sel] = cov / (center[:, :, None] * center[:, None, :])
            excess[sel] = requests[:, None, None] * window_excess_covariance(
                rate, seconds, cs, ss, vs, arrival
            )
        mask = present[..., :, None] & present[..., None, :] & used[..., None, None]
        iid = np.where(mask, iid, np.eye(4))
        excess = np.where(mask, excess, 0.0)
        bad = ~np.all(np.isfinite(iid) & np.isfinite(excess), axis=(2, 3))
        iid[bad], excess[bad] = np.eye(4), 0.0
        eig = np.linalg.eigvalsh(iid)
        bad |= eig[..., 0] <= 1e-12 * eig[..., -1]
        iid[bad], excess[bad] = np.eye(4), 0.0
        return cls(iid, excess, present, bad)


def _whitening(
    packed: Packed,
    c: FloatArray,
    s: FloatArray,
    v: FloatArray,
    noise: _WindowNoise | None = None,
    dispersion: FloatArray | None = None,
) -> FloatArray:
    """
    Per node and window, the 4 × 4 matrix that whitens the window's log residuals: √n times
    the inverse Cholesky factor of their model-implied relative sampling covariance at the
    station (c, s, v) — independent requests' (times ``dispersion`` per node, when given: see
    ``_dispersion``) plus, times n, the short window's excess — restricted to the statistics
    the window carries (``_WindowNoise``; ``noise`` when the caller has it).  A node where
    that covariance cannot be evaluated gets the stage-1 weights (diagonal).
    """
    noise = noise or _WindowNoise.at(packed, c, s, v)
    iid = noise.iid if dispersion is None else noise.iid * dispersion[:, None, None, None]
    bad = np.any(noise.bad, axis=1)
    root = np.linalg.cholesky(iid + noise.excess)
    inv_root = np.linalg.inv(root)
    present = noise.present
    inv_root = np.where(present[..., :, None] & present[..., None, :], inv_root, 0.0)
    out: FloatArray = np.sqrt(packed.requests)[..., None, None] * inv_root
    if np.any(bad):
        statw = np.array([STAT_WEIGHTS[k] for k in _STATS])
        diag = np.sqrt(packed.weight[bad][..., None] * statw)  # (b, w, 4)
        out[bad] = diag[..., :, None] * np.eye(4)
    return out


def _dispersion(packed: Packed, noise: _WindowNoise, raw: FloatArray, k: int) -> FloatArray:
    """
    Per node, how many times noisier than independent requests its windows are, where the
    model's covariance cannot explain its residuals: ``φ ≥ 1``, the root of
    ``Σ_w r_wᵀ (φ·A_w + B_w)⁻¹ r_w = N − k`` (``A`` independent requests' covariance, ``B``
    the short window's excess, both of ``noise``; ``r`` the log residuals ``raw``, shape
    (n, 4, w) as ``_raw_residuals``; N of them, k parameters) — a moment estimate, by
    bisection on ``ln φ`` for all nodes at once.  1 where the residuals are within two
    standard deviations of their expected χ² under the model (most nodes: the model's noise
    is the noise), and on a node with a window the model cannot evaluate.
    """
    n = raw.shape[0]
    r = np.where(noise.present, np.nan_to_num(raw.transpose(0, 2, 1)), 0.0)  # (n, w, 4)
    # φA + B = L(φI + C)Lᵀ with A = LLᵀ, C = L⁻¹BL⁻ᵀ = QΛQᵀ: the statistic is
    # Σ (Qᵀ L⁻¹ r)²/(φ + λ), decreasing in φ
    inv_l = np.linalg.inv(np.linalg.cholesky(noise.iid))
    lam, vec = np.linalg.eigh(inv_l @ noise.excess @ np.swapaxes(inv_l, -1, -2))
    proj = np.einsum("iwab,iwa->iwb", vec, np.einsum("iwab,iwb->iwa", inv_l, r)) ** 2
    proj *= packed.requests[..., None]  # a window's covariance is (φA + B)/n
    target = (np.count_nonzero(r != 0.0, axis=(1, 2)) - k).astype(np.float64)

    def statistic(phi: FloatArray) -> FloatArray:
        out: FloatArray = np.sum(proj / (phi[:, None, None] + lam), axis=(1, 2))
        return out

    ones = np.ones(n)
    live = ~np.any(noise.bad, axis=1) & (target > 0)
    live &= statistic(ones) > target + 2.0 * np.sqrt(2.0 * np.maximum(target, 0.0))
    if not np.any(live):
        return ones
    lo, hi = np.zeros(n), np.full(n, math.log(1e4))
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        high = statistic(np.exp(mid)) > target
        lo, hi = np.where(high, mid, lo), np.where(high, hi, mid)
    return np.where(live, np.exp(0.5 * (lo + hi)), 1.0)


def _starts(packed: Packed, c_free: bool, scv_free: bool) -> list[FloatArray]:
    """
    Starting points per node: S at 0.8 × the lowest mean latency of its windows (a response
    time is the service time plus a wait, so the lowest mean is a little above S), else of its
    p50s; a utilization of 0.5 and 0.85 at the highest rate (c free); an scv of 0.5 and 1.

    Not the lowest p50 where the mean is known: the median of a variable service time sits
    well below its mean (0.69 × for exponential service), and a start at S that small lands a
    c = 2 node in the local minimum c = 1, S ≈ half the truth, confidently wrong.
    """
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows: handled below
        lowest_mean = np.nanmin(packed.latency["mean"], axis=1)
        lowest_p50 = np.nanmin(packed.latency["p50"], axis=1)
    floor = np.where(np.isfinite(lowest_mean), lowest_mean, lowest_p50)
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
    whiten: FloatArray | None = None,
    newton_steps: int = 0,
    tol: float = 1e-10,
    max_iter: int = 200,
    final_jacobian: bool = True,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """
    Batched LM from the ``best_of`` cheapest starts per node; the lower cost wins per node.
    (``final_jacobian``: see ``batched_lm``.)

    Returns:
        Per node its parameters, cost, Jacobian, residuals (as ``_residuals``) and whether
        the LM converged.
    """
    rmax = packed.rmax

    def fun(theta: FloatArray, idx: IntArray) -> FloatArray:
        c, s, v = _unpack(theta, rmax[idx], servers[idx], c_free, scv_free)
        return _residuals(packed, idx, c, s, v, whiten, newton_steps)

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
        result = batched_lm(
            fun, x0, ftol=tol, xtol=tol, max_iter=max_iter, final_jacobian=final_jacobian
        )
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
    return best_x, best_cost, best_j, best_r, converged


#: An eigenvalue of JᵀJ below this share of its largest is a direction the data do not tell.
_NULL_SHARE = 1e-12


def _inverse_and_null(jtj: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """
    Per node, the inverse of JᵀJ on the directions the data constrain (the pseudo-inverse),
    and which entries of the parameters' covariance are unbounded: the rows and columns of the
    parameters a direction the data do not constrain (an eigenvalue ≤ ``_NULL_SHARE`` × the
    largest) moves.

    Such a direction is real: a station of 32 slots measured up to 60% utilization queues so
    little that the residuals do not move when c grows past ~40 (Erlang C underflows), and the
    Jacobian's column for c is zero.  The pseudo-inverse alone gives that direction variance
    0 — a slot count and a capacity "known" to within 0.1% where the data bound them only from
    below.
    """
    eig, vec = np.linalg.eigh(jtj)
    top = np.maximum(eig[:, -1:], 1e-300)
    null = ~(eig > _NULL_SHARE * top)  # nan-safe
    some = np.any(null, axis=1)
    eye = np.eye(jtj.shape[1])
    inv: FloatArray = np.linalg.inv(np.where(some[:, None, None], eye, jtj))
    if np.any(some):
        scale = np.where(null, 0.0, 1.0 / np.where(null, 1.0, eig))
        pseudo = np.einsum("ikj,ij,ilj->ikl", vec, scale, vec)
        inv[some] = pseudo[some]
    # a parameter the unconstrained directions move: its row and column of the covariance
    loose = np.any((np.abs(vec) > 1e-6) & null[:, None, :], axis=2)  # (n, k)
    return inv, loose[:, :, None] | loose[:, None, :]


def _covariance(jac: FloatArray, residuals: FloatArray) -> tuple[FloatArray, IntArray]:
    """
    The parameters' covariance per node, robust to how the noise varies between windows (the
    cluster-robust sandwich, clusters = windows), and its degrees of freedom.

    ``A (Σ_w J_wᵀ M_w r_w r_wᵀ M_w J_w) A`` with ``A = (JᵀJ)⁻¹`` and ``M_w = (I − H_ww)^-½``,
    ``H_ww = J_w A J_wᵀ`` the window's block of the hat matrix (Bell and McCaffrey's CR2: the
    plain sandwich understates the variance with few windows, as a window's residuals shrink
    by its leverage), on G − 1 degrees of freedom for G windows (inf where G ≤ 1).  Each
    window's residuals are already whitened by the model's own sampling covariance, so where
    that holds the sandwich estimates what s²(JᵀJ)⁻¹ does.  Where it does not — near
    saturation a window's requests queue together, its percentiles vary far more than
    independent requests would make them, and those windows are the ones that place the
    capacity — a pooled s² averages that excess over every window and understates it where it
    matters; the sandwich counts each window's own.
    """
    n, m, k = jac.shape
    w = m // 4
    r = np.nan_to_num(residuals).reshape(n, 4, w).transpose(0, 2, 1)  # (n, w, 4)
    j = np.nan_to_num(jac).reshape(n, 4, w, k).transpose(0, 2, 1, 3)  # (n, w, 4, k)
    jtj = np.einsum("iwak,iwal->ikl", j, j)
    inv, unbounded = _inverse_and_null(jtj)
    hat = np.einsum("iwak,ikl,iwbl->iwab", j, inv, j)
    eig, vec = np.linalg.eigh(np.eye(4) - hat)
    root = np.einsum("iwab,iwb,iwcb->iwac", vec, 1.0 / np.sqrt(np.maximum(eig, 1e-6)), vec)
    score = np.einsum("iwak,iwab,iwb->iwk", j, root, r)
    meat = np.einsum("iwk,iwl->ikl", score, score)
    windows = np.count_nonzero(np.any(r != 0, axis=2), axis=1)
    out: FloatArray = inv @ meat @ inv
    out[unbounded] = np.inf
    out[(windows <= 1) | (windows <= k)] = np.inf
    dof: IntArray = (windows - 1).astype(np.intp)
    return out, dof


def _scv_at_floor_fixed(cov: FloatArray, theta: FloatArray, scv_free: bool) -> FloatArray:
    """
    ``cov`` with the scv held fixed (variance 0) where the fit ran it down to the floor of its
    box: near-constant service times, whose windows cannot tell 10⁻⁸ from 10⁻⁴.  There the scv
    is clipped, its Jacobian column is 0, and ``_covariance`` would call its direction
    unbounded — and with it every interval the scv enters, the capacity's included, though
    the capacity no more moves along that direction than the residuals do: a fixed-service
    node with its slots given came out 178.3 rps [0, inf].  (Only the scv: a slot count whose
    column is 0 is bounded only from below, and stays unbounded.)
    """
    if not scv_free:
        return cov
    floor = theta[:, -1] <= _LOG_SCV_MIN
    if not np.any(floor):
        return cov
    out = cov.copy()
    out[floor, -1, :] = 0.0
    out[floor, :, -1] = 0.0
    return out


def fit_stations(
    packed: Packed, workers: FloatArray | None, *, scv_free: bool = True
) -> StationFits:
    """
    Fit one station per node (two-stage GLS, see the module docstring).

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
    rmax = packed.rmax
    # Stage 1 only places the whitening (and starts stage 2): a loose tolerance does.
    first, _, _, _, _ = _solve(
        packed,
        servers,
        c_free,
        scv_free,
        _starts(packed, c_free, scv_free),
        tol=_PILOT_TOL,
        final_jacobian=False,
    )
    station = _unpack(first, rmax, servers, c_free, scv_free)
    noise = _WindowNoise.at(packed, *station)
    whiten = _whitening(packed, *station, noise)
    # With c fitted, the reported station is the refit at the rounded c (polished residuals
    # there); this continuous fit only places c.
    steps = 0 if c_free else _NEWTON_STEPS
    theta, _, jac, residuals, converged = _solve(
        packed, servers, c_free, scv_free, [first], best_of=1, whiten=whiten, newton_steps=steps
    )
    k = theta.shape[1]
    # Where the windows are noisier than the model says (beyond their χ²'s spread), weigh
    # them by their own noise and refit those nodes.
    every = np.arange(n)
    raw = _raw_residuals(packed, every, *_unpack(theta, rmax, servers, c_free, scv_free), steps)
    dispersion = _dispersion(packed, noise, raw, k)
    over = np.flatnonzero(dispersion > 1.0)
    if over.size:
        whiten = _whitening(packed, *station, noise, dispersion)
        x, _, j, r, ok = _solve(
            packed.rows(over), servers[over], c_free, scv_free, [theta[over]], best_of=1,
            whiten=whiten[over], newton_steps=steps,
        )  # fmt: skip
        theta[over], jac[over], residuals[over], converged[over] = x, j, r, ok
    cov, dof = _covariance(jac, residuals)
    cov = _scv_at_floor_fixed(cov, theta, scv_free)
    c, s, v = _unpack(theta, rmax, servers, c_free, scv_free)
    if not c_free:
        return StationFits(
            c, s, v, theta, cov, dof, c_free, scv_free, rmax, converged,
            theta, cov, np.ones(n, dtype=bool), (c, c), np.zeros(n),
        )  # fmt: skip
    c, s, v, r_theta, r_cost, r_jac, r_res = _round_servers(
        packed, c, s, v, theta, scv_free, whiten
    )
    # Where nothing bounds c from above (its direction is unconstrained: the fit ran it up
    # until the windows stopped moving), report the smallest c the windows cannot tell from
    # the best fit instead of wherever the run stopped, and the 95% lower bound below it.
    loose = ~np.isfinite(cov[:, 1, 1]) & np.isfinite(r_cost) & (c >= 2.0)
    floor_station = None
    if np.any(loose):
        idx = np.flatnonzero(loose)
        point, floor = _bounded_below(
            packed, whiten, scv_free, idx, (c, r_theta, r_cost, r_jac, r_res)
        )
        c[idx], r_theta[idx], r_cost[idx] = point.hi, point.x, point.cost
        r_jac[idx], r_res[idx] = point.jac, point.residuals
        _, s[idx], v[idx] = _unpack(point.x, rmax[idx], point.hi, False, scv_free)
        floor_c, floor_s, floor_v = (np.full(n, np.nan) for _ in range(3))
        floor_c[idx] = floor.hi
        _, floor_s[idx], floor_v[idx] = _unpack(floor.x, rmax[idx], floor.hi, False, scv_free)
        floor_station = (floor_c, floor_s, floor_v)
    r_cov, _ = _covariance(r_jac, r_res)
    r_cov = _scv_at_floor_fixed(r_cov, r_theta, scv_free)
    r_cov[~np.isfinite(r_cost)] = np.inf  # no refit: no interval from it
    # ±2 se of the continuous c: c = rmax·S/rho, d ln c = d ln S − (1 − rho) d logit rho.
    c_cont = _unpack(theta, rmax, servers, c_free, scv_free)[0]
    g = np.zeros((n, k))
    g[:, 0], g[:, 1] = 1.0, -(1.0 - _expit(theta[:, 1]))
    with np.errstate(invalid="ignore", over="ignore"):
        se = np.sqrt(np.maximum(np.einsum("ik,ikl,il->i", g, cov, g), 0.0))
        # (ln S and logit rho place c; an unconstrained scv leaves it alone)
        se = np.where(np.all(np.isfinite(cov[:, :2, :2]), axis=(1, 2)), se, np.inf)
        low_c, high_c = c_cont * np.exp(-2.0 * se), c_cont * np.exp(2.0 * se)
    rounded = np.isfinite(r_cost) & (c == np.round(c))
    others = (np.floor(high_c) >= c + 1.0) | (np.maximum(np.ceil(low_c), 1.0) <= c - 1.0)
    resolved = rounded & np.isfinite(se) & ~others
    if floor_station is not None:
        low_c = np.where(loose, floor_station[0], low_c)
    return StationFits(
        c, s, v, theta, cov, dof, c_free, scv_free, rmax, converged,
        r_theta, r_cov, resolved, (low_c, high_c), se, floor_station,
    )  # fmt: skip


#: The rise of the refit cost over the best fit's, in residual variances, at which a slot
#: count is no longer "as good": the median of χ²₁ for the reported one (as likely to lie
#: above the truth as below), its 95% point for the lower bound.
_AS_GOOD = float(stats.chi2.ppf(0.5, 1))
_LOWER_BOUND = float(stats.chi2.ppf(0.90, 1))  # one-sided 95%: the interval is open above


@dataclass
class _Profile:
    """
    Per node of a profile search: the smallest slot count known to be as good (``hi``) with
    its refit, and the largest known not to be (``lo``).
    """

    lo: FloatArray
    hi: FloatArray
    x: FloatArray
    cost: FloatArray
    jac: FloatArray
    residuals: FloatArray


def _bounded_below(
    packed: Packed,
    whiten: FloatArray,
    scv_free: bool,
    idx: IntArray,
    rounded: tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray],
) -> tuple[_Profile, _Profile]:
    """
    For nodes ``idx`` whose windows bound c only from below: the smallest integer c whose refit
    cost is within ``_AS_GOOD`` residual variances of the best fit's, and the smallest within
    ``_LOWER_BOUND`` of it — a profile over c, by bisection on log c (the refit cost falls as c
    grows, to the plateau where the windows stop moving).

    Args:
        rounded: The refit at the rounded c of every node: (c, theta, cost, jac, residuals).

    Returns:
        The two searches' ends: ``hi`` and its refit are the answer of each.
    """
    c, theta, cost, jac, residuals = (x[idx] for x in rounded)
    k = theta.shape[1]
    variance = cost / np.maximum(np.count_nonzero(residuals != 0.0, axis=1) - k, 1)
    probes: list[tuple[IntArray, FloatArray, FloatArray]] = []  # (rows, c, cost)

    def refit(
        rows: IntArray, servers: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        nodes = idx[rows]
        sub = packed.rows(nodes)
        kept = theta[rows].copy()
        kept[:, 0] += np.log(servers / c[rows])  # the same utilization at the highest rate
        x, got, j, r, _ = _solve(
            sub, servers, False, scv_free, [theta[rows], kept], best_of=1,
            whiten=whiten[nodes], newton_steps=_NEWTON_STEPS, max_iter=_ROUND_MAX_ITER,
        )  # fmt: skip
        stable = sub.rmax < servers / _unpack(x, sub.rmax, servers, False, scv_free)[1]
        got = np.where(stable, got, np.inf)
        probes.append((rows, servers, got))
        return x, got, j, r

    def search(share: float, start: _Profile) -> _Profile:
        limit = cost + share * variance
        out = _Profile(
            np.zeros(idx.size),  # c = 0 has no fit
            start.hi.copy(),
            start.x.copy(),
            start.cost.copy(),
            start.jac.copy(),
            start.residuals.copy(),
        )
        for rows, tried, got in probes:  # what an earlier search learnt
            worse = got > limit[rows]
            out.lo[rows[worse]] = np.maximum(out.lo[rows[worse]], tried[worse])
        while True:
            rows = np.flatnonzero(out.hi - out.lo > 1.0)
            if rows.size == 0:
                return out
            lo, hi = out.lo[rows], out.hi[rows]
            mid: FloatArray = np.clip(
                np.round(np.sqrt(np.maximum(lo, 0.5) * hi)), lo + 1.0, hi - 1.0
            )
            x, got, j, r = refit(rows, mid)
            good = got <= limit[rows]
            out.lo[rows[~good]] = mid[~good]
            at = rows[good]
            out.hi[at], out.x[at], out.cost[at] = mid[good], x[good], got[good]
            out.jac[at], out.residuals[at] = j[good], r[good]

    # the rounded c is the best fit
    point = search(_AS_GOOD, _Profile(np.zeros(idx.size), c, theta, cost, jac, residuals))
    return point, search(_LOWER_BOUND, point)


def _round_servers(
    packed: Packed,
    c: FloatArray,
    s: FloatArray,
    v: FloatArray,
    theta: FloatArray,
    scv_free: bool,
    whiten: FloatArray | None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """
    Refit S (and scv) at the two integers around each fitted c; keep the better stable one.

    Returns (c, s, v) and the chosen refit's parameters, cost (inf where neither integer gave
    a stable fit: c, s, v are then the continuous fit's), Jacobian and residuals.
    """
    rmax = packed.rmax
    best_cost = np.full(c.size, np.inf)
    out_c, out_s, out_v = c.copy(), s.copy(), v.copy()
    start = theta[:, [0, 2]] if scv_free else theta[:, [0]]
    out_x = start.copy()
    out_j: FloatArray | None = None
    out_r: FloatArray | None = None
    for candidate in (np.maximum(np.floor(c), 1.0), np.maximum(np.ceil(c), 1.0)):
        # Also start from the S that keeps the continuous fit's utilization at the highest
        # rate (S·candidate/c): rounding c down at the continuous S can put that rate past
        # saturation, where the fit cannot move (a c = 2 node was refitted as c = 3 for that).
        kept = start.copy()
        kept[:, 0] += np.log(candidate / c)
        x, cost, jac, res, _ = _solve(
            packed,
            candidate,
            False,
            scv_free,
            [start, kept],
            best_of=1,
            whiten=whiten,
            newton_steps=_NEWTON_STEPS,
            max_iter=_ROUND_MAX_ITER,
        )
        if out_j is None or out_r is None:
            out_j, out_r = np.zeros_like(jac), np.zeros_like(res)
        ci, si, vi = _unpack(x, rmax, candidate, False, scv_free)
        stable = rmax < ci / si
        better = stable & (cost < best_cost)
        best_cost[better] = cost[better]
        out_c[better], out_s[better], out_v[better] = ci[better], si[better], vi[better]
        out_x[better], out_j[better], out_r[better] = x[better], jac[better], res[better]
    assert out_j is not None
    assert out_r is not None
    return out_c, out_s, out_v, out_x, best_cost, out_j, out_r


def idle_quantile(service_time: FloatArray, scv: FloatArray, q: float | FloatArray) -> FloatArray:
    """
    Per station, the q-quantile of an idle station's response time: its service time's (gamma
    with this mean and scv; the mean itself where scv < 1e-10, deterministic service).  The
    arguments broadcast together.
    """
    k = 1.0 / np.maximum(scv, 1e-10)
    with np.errstate(invalid="ignore", over="ignore"):
        gamma = special.gammainccinv(k, 1.0 - q) / k * service_time
    out: FloatArray = np.where(scv < 1e-10, service_time, gamma)
    return out


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
