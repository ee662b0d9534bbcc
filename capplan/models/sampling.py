"""
The sampling covariance of a window's latency statistics under an M/G/c station (batched).

A window of ``n`` requests reports the mean and the p50, p95 and p99 of its response times.
With ``T`` the response time, ``μ, σ`` its mean and sd, ``t_q`` its quantiles and ``f`` its
density, the Bahadur representation ``t̂_q ≈ t_q + (1{T > t_q} − (1 − q)) / f(t_q)`` gives the
per-request covariances of (mean, t̂_50, t̂_95, t̂_99):

- Var(T) = σ² = scv·s² + Var(W), Var(W) = 2C/θ² − (C/θ)² (``W`` the wait: 0 with probability
  1 − C, else exponential with mean 1/θ);
- Cov(T, t̂_q) = (E[T; T > t_q] − μ(1 − q)) / f(t_q), with
  E[T; T > t] = t·P(T > t) + μ − E[min(T, t)], the truncated mean in closed form
  (``mgc_response_truncated_mean_given_wait``);
- Cov(t̂_a, t̂_b) = a(1 − b) / (f(t_a) f(t_b)) for a ≤ b;

each divided by ``n`` for the window's statistics.  Everything is vectorised over any shape of
rates and station parameters (numpy broadcasting); unstable elements give nan.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from capplan.models.queueing import (
    mgc_response_pdf,
    mgc_response_quantile,
    mgc_response_truncated_mean_given_wait,
    mgc_wait,
)

__all__ = ["QUANTILES", "response_moments", "sampling_covariance"]

FloatArray = npt.NDArray[np.float64]

#: The window percentiles, as quantiles (the columns p50, p95, p99).
QUANTILES = (0.50, 0.95, 0.99)


def response_moments(
    rate: npt.ArrayLike,
    servers: npt.ArrayLike,
    service_time: npt.ArrayLike,
    scv: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """
    Mean and standard deviation of the response time (all arguments broadcast together).

    ``T = W + S`` with ``W`` and ``S`` independent, ``W`` 0 or exponential (weight ``A``, rate
    ``η``: :func:`capplan.models.queueing.mgc_wait`): Var(T) = scv·s² + 2A/η² − (A/η)².
    Unstable elements give (inf, nan).
    """
    r, c, s, v = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.float64) for x in (rate, servers, service_time, scv))
    )
    weight, eta = mgc_wait(r, c, s, v)
    stable = r * s < c
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        wq = weight / eta
        mean = np.where(stable, wq + s, np.inf)
        var_w = 2.0 * weight / eta**2 - wq**2
        sd = np.sqrt(v * s**2 + var_w)
    return mean, np.where(stable, sd, np.nan)


def sampling_covariance(
    rate: npt.ArrayLike,
    servers: npt.ArrayLike,
    service_time: npt.ArrayLike,
    scv: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """
    The model's (mean, p50, p95, p99) and their per-request covariance, at each element.

    Args:
        rate, servers, service_time, scv: broadcast together to a shape ``B``.

    Returns:
        ``center`` of shape B + (4,) in seconds, and ``cov`` of shape B + (4, 4): the
        asymptotic covariance of a window's four statistics is ``cov / requests``.  Unstable
        elements are nan.
    """
    r, c, s, v = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.float64) for x in (rate, servers, service_time, scv))
    )
    shape = r.shape
    stable = r * s < c
    r = np.where(stable, r, 0.0)  # evaluated at rate 0, then masked out
    qs = np.array(QUANTILES)
    mu, sd = response_moments(r, c, s, v)
    ex = (Ellipsis, None)
    tq = mgc_response_quantile(qs, r[ex], c[ex], s[ex], v[ex])  # B + (3,)
    f = mgc_response_pdf(tq, r[ex], c[ex], s[ex], v[ex])
    p_wait, theta = mgc_wait(r, c, s, v)
    integral = mgc_response_truncated_mean_given_wait(
        tq, *(np.broadcast_to(x[ex], tq.shape) for x in (p_wait, theta, s, v))
    )
    tail = 1.0 - qs
    tail_mean = tq * tail + mu[ex] - integral  # E[T; T > t_q]
    cov = np.empty((*shape, 4, 4))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cov[..., 0, 0] = sd**2
        cross = (tail_mean - mu[ex] * tail) / f
        cov[..., 0, 1:] = cross
        cov[..., 1:, 0] = cross
        lo = np.minimum.outer(qs, qs)
        hi = np.maximum.outer(qs, qs)
        cov[..., 1:, 1:] = lo * (1.0 - hi) / (f[..., :, None] * f[..., None, :])
    center = np.concatenate([mu[ex], tq], axis=-1)
    center[~stable] = np.nan
    cov[~stable] = np.nan
    return center, cov
