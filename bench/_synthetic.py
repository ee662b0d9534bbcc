"""
Windows measured on a known M/G/c station, with the sampling noise of real measurements.

A window of ``seconds`` at offered utilization ``u`` serves ``n ~ Poisson(u · max_rate ·
seconds)`` requests.  Its latency statistics (mean, p50, p95, p99) are those of the ``n``
response times it saw, so they carry sampling noise of the size real measurements have:

* the distribution they are sampled from is the station's response time at the window's
  *realised* rate ``n / seconds`` (what the fit sees as the window's rate).  Over 60 s the
  queue relaxes many times, so a window's latencies follow the load it actually carried; taking
  the nominal rate instead would add an errors-in-variables term that no measurement shows;
* the statistics are drawn from their joint asymptotic normal law (``noise="joint"``, the
  default): with ``T`` the response time, ``μ, σ`` its mean and sd, ``t_q`` its quantiles and
  ``f`` its density, the Bahadur representation ``t̂_q ≈ t_q + (1{T > t_q} − (1 − q)) / f(t_q)``
  gives per-request covariances

  - Var(T) = σ² = scv·s² + Var(W), Var(W) = 2C/θ² − (C/θ)² (W the wait: 0 with probability
    1 − C, else exponential with mean 1/θ);
  - Cov(T, t̂_q) = (E[T; T > t_q] − μ(1 − q)) / f(t_q), with
    E[T; T > t] = t·P(T > t) + μ − ∫₀ᵗ P(T > u) du (Gauss–Legendre, vectorised);
  - Cov(t̂_a, t̂_b) = a(1 − b) / (f(t_a) f(t_b)) for a ≤ b;

  each divided by ``n``.  So Var(mean) = σ²/n and Var(t̂_q) = q(1 − q)/(n f(t_q)²), and the
  four statistics of a window are correlated as a real window's are (the p95 and p99 of one
  window rest on overlapping slow requests; a slow burst lifts the mean with them).
  ``noise="independent"`` keeps the variances and drops the correlations; ``noise="none"``
  gives the centers themselves (the model's values, moved as below).

Response times are independent within a window here (the response-time law of
:class:`~capplan.models.queueing.Station`, sampled i.i.d.), except for what a window of its
length is expected to show near saturation, where they queue together: each window's center is
moved by :func:`capplan.models.station_fit.expected_window_offsets` (a short window's tail
percentiles read below the stationary ones), and its four statistics are multiplied by one
log-normal draw of :func:`capplan.models.station_fit.window_excess_covariance` (whether the
window caught one of the queue's excursions moves them together), so the windows follow the
fit's own law.

Everything is seeded: the same arguments give the same windows, value for value.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

from capplan.models.fit import NodeInput, SLOTarget, fit_node, fit_nodes
from capplan.models.queueing import Station
from capplan.models.sampling import QUANTILES as _QUANTILES
from capplan.models.sampling import response_moments as _response_moments
from capplan.models.sampling import sampling_covariance as _sampling_covariance
from capplan.models.station_fit import expected_window_offsets, window_excess_covariance
from capplan.samples import Window

__all__ = [
    "CONFIGS",
    "QUANTILES",
    "Config",
    "Noise",
    "Outcome",
    "replicate",
    "replicate_batch",
    "response_moments",
    "sampling_covariance",
    "synthetic_windows",
]

FloatArray = npt.NDArray[np.float64]
Noise = Literal["joint", "independent", "none"]

#: The window percentiles, as quantiles (the columns p50, p95, p99).
QUANTILES = _QUANTILES
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def response_moments(station: Station, rate: FloatArray) -> tuple[FloatArray, FloatArray]:
    """
    Mean and standard deviation of the response time at each rate (see
    :func:`capplan.models.sampling.response_moments`).
    """
    return _response_moments(rate, station.servers, station.service_time, station.scv)


def sampling_covariance(station: Station, rate: FloatArray) -> tuple[FloatArray, FloatArray]:
    """
    The model's (mean, p50, p95, p99) at each rate and their per-request covariance (see
    :func:`capplan.models.sampling.sampling_covariance`).

    Returns:
        ``center`` of shape (n, 4) in seconds, and ``cov`` of shape (n, 4, 4): the asymptotic
        covariance of a window's four statistics is ``cov / requests``.
    """
    if station.scv < 1e-6:
        raise ValueError("sample quantiles of a response time with an atom have no normal limit")
    r = np.asarray(rate, dtype=np.float64)
    return _sampling_covariance(r, station.servers, station.service_time, station.scv)


def synthetic_windows(
    station: Station,
    *,
    seed: int,
    count: int = 40,
    seconds: float = 60.0,
    low: float = 0.2,
    high: float = 0.9,
    noise: Noise = "joint",
    node: str = "n",
) -> list[Window]:
    """
    ``count`` windows of ``seconds`` at utilizations spread over [low, high].

    The utilizations are stratified: one uniform draw in each of ``count`` equal slices of
    [low, high], so every replicate spans the range evenly but no two share a design.
    """
    rng = np.random.default_rng(seed)
    edges = np.linspace(low, high, count + 1)
    util = edges[:-1] + rng.uniform(size=count) * np.diff(edges)
    requests = rng.poisson(util * station.max_rate * seconds)
    requests = np.clip(requests, 1, math.floor(station.max_rate * seconds * (1 - 1e-9)))
    rate = requests / seconds
    center, cov = sampling_covariance(station, rate)
    center = center * np.exp(
        expected_window_offsets(rate, seconds, station.servers, station.service_time, station.scv)
    )
    excess = window_excess_covariance(
        rate, seconds, station.servers, station.service_time, station.scv
    )
    if noise == "independent":
        cov = cov * np.eye(4)[None, :, :]
        excess = excess * np.eye(4)[None, :, :]
    z = rng.standard_normal((count, 4))
    values = center.copy()
    if noise != "none":
        chol = np.linalg.cholesky(cov / requests[:, None, None])
        values += np.einsum("nij,nj->ni", chol, z)
        # the window's excursions: a log-normal factor on all four statistics at once
        lam, vec = np.linalg.eigh(excess)
        root = vec * np.sqrt(np.maximum(lam, 0.0))[:, None, :]
        values *= np.exp(np.einsum("nij,nj->ni", root, rng.standard_normal((count, 4))))
    out = []
    for i in range(count):
        mean, p50, p95, p99 = (float(v) * 1e3 for v in values[i])
        out.append(
            Window(
                node=node,
                start=T0 + timedelta(seconds=seconds * i),
                seconds=seconds,
                requests=int(requests[i]),
                errors=0,
                mean_ms=mean,
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
            )
        )
    return out


@dataclass(frozen=True)
class Config:
    """
    One coverage configuration: a known station, an SLO at p99 and the windows' design.
    """

    name: str
    servers: float
    service_time: float
    scv: float
    slo_ms: float
    count: int = 40
    seconds: float = 60.0
    percentile: float = 99.0

    @property
    def station(self) -> Station:
        return Station(servers=self.servers, service_time=self.service_time, scv=self.scv)

    @property
    def slo(self) -> SLOTarget:
        return SLOTarget(percentile=self.percentile, latency_ms=self.slo_ms)

    @property
    def truth(self) -> float:
        """
        The true capacity at the SLO (rps).
        """
        return float(self.station.max_rate_for(self.slo_ms * 1e-3, self.percentile))


#: The configurations checked: capacity at the SLO near 80–85% utilization, inside the data.
CONFIGS = (
    Config("c4-scv0.3", servers=4, service_time=0.025, scv=0.3, slo_ms=120.0),
    Config("c8-scv1.0", servers=8, service_time=0.020, scv=1.0, slo_ms=120.0),
)


@dataclass(frozen=True)
class Outcome:
    """
    One replicate: the fit's capacity and interval against the truth, and the fit's time.
    """

    config: str
    seed: int
    truth: float
    capacity: float
    low: float
    high: float
    seconds: float
    servers: float
    #: The exception a failed fit raised ("" when it succeeded).
    error: str = ""

    @property
    def covered(self) -> bool:
        return not self.error and self.low <= self.truth <= self.high

    @property
    def relative_width(self) -> float:
        return (self.high - self.low) / self.truth


def replicate(
    config: Config, seed: int, noise: Noise = "joint", workers: int | None = None
) -> Outcome:
    """
    Generate one replicate's windows and fit them with ``model="mgc"`` (module level, so a
    process pool can run it).  A fit that raises is an outcome too: it carries the error (and
    covers nothing), so a pool run reports it with its seed instead of dying on it.
    """
    windows = synthetic_windows(
        config.station, seed=seed, count=config.count, seconds=config.seconds, noise=noise
    )
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = fit_node("n", windows, config.slo, model="mgc", workers=workers)
    except Exception as exc:  # a crash is a finding, reported with its seed
        elapsed = time.perf_counter() - started
        nan = math.nan
        return Outcome(config.name, seed, config.truth, nan, nan, nan, elapsed, nan, repr(exc))
    elapsed = time.perf_counter() - started
    low, high = fit.capacity_interval
    return Outcome(
        config.name,
        seed,
        config.truth,
        fit.capacity_rps,
        low,
        high,
        elapsed,
        float(fit.params.get("servers", math.nan)),
        "" if fit.success else f"fit failed: {fit.message}",
    )


def replicate_batch(
    config: Config, seeds: list[int], noise: Noise = "joint", workers: int | None = None
) -> list[Outcome]:
    """
    Many replicates fitted together by ``fit_nodes`` (one node per replicate): the answers of
    ``fit_node`` (which is ``fit_nodes`` with one node) at a fraction of the cost.

    Each outcome's ``seconds`` is the batch's time over its size.  When the batch raises, every
    replicate is refitted alone by :func:`replicate`, so the one that fails carries the error.
    """
    inputs = [
        NodeInput(
            f"seed-{seed}",
            synthetic_windows(
                config.station, seed=seed, count=config.count, seconds=config.seconds, noise=noise
            ),
            workers,
        )
        for seed in seeds
    ]
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fits = fit_nodes(inputs, config.slo, model="mgc")
    except Exception:
        return [replicate(config, seed, noise, workers) for seed in seeds]
    each = (time.perf_counter() - started) / max(len(seeds), 1)
    return [
        Outcome(
            config.name,
            seed,
            config.truth,
            fit.capacity_rps,
            fit.capacity_interval[0],
            fit.capacity_interval[1],
            each,
            float(fit.params.get("servers", math.nan)),
            "" if fit.success else f"fit failed: {fit.message}",
        )
        for seed, fit in zip(seeds, fits, strict=True)
    ]
