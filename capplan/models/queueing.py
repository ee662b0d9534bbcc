"""
Queueing maths for one node: Erlang B and C, M/M/c, and M/G/c (Allen–Cunneen, exact tail rate).

A node is a :class:`Station`: ``servers`` identical slots (worker processes, connections, cores)
fed by Poisson arrivals at ``rate`` and served first come, first served, each request taking a
service time with mean ``service_time`` and squared coefficient of variation ``scv``.  With
``scv == 1`` (exponential service) every result is the exact M/M/c one; otherwise:

* P(wait) is Erlang C (the M/M/c value, the usual M/G/c approximation);
* the mean wait is Allen–Cunneen: ``Wq = C / (c·mu - lambda) · (ca² + cs²) / 2`` with ``ca² = 1``;
* the wait's tail is ``P(W > t) = A·e^(−ηt)``: ``η`` is its exact asymptotic decay rate, the
  root of ``E[e^(ηS/c)]·E[e^(−η·A_arrival)] = 1`` (with every slot busy, ``c`` slots clear work
  as one server with service ``S/c``: Crommelin's root for M/D/c, ``cμ − λ`` for M/M/c), and
  ``A = C·η/θ`` keeps the mean wait Allen–Cunneen's (``θ = 2(cμ − λ)/(ca² + cs²)``, the
  heavy-traffic limit of ``η``: with fixed service at ρ = 0.8 it is 5–8% slower for c ≤ 4, which
  put M/D/c's p99 up to 5% high and its capacity up to 6% low);
* the response time ``T = W + S`` takes ``W = 0`` with probability ``1 - A`` and otherwise an
  exponential wait of rate ``η``, plus a service time ``S`` drawn from a gamma distribution with
  the given mean and ``scv`` (``scv = 0``: deterministic).  The kernels below call the wait's
  weight and rate ``(C, θ)``: for them it is any such law.

Times are in whatever unit the caller uses (seconds or milliseconds), rates in its inverse.
Functions taking numbers also take numpy arrays (broadcast together, computed without Python loops
over elements); a Python number in gives a Python ``float`` out.

The ``mgc_*`` functions are the batch form, for fitting many stations at once: every argument,
the station parameters included, broadcasts (float64 arrays out, 0-d for scalars), and unstable
elements give ``inf`` / 1 / 0 instead of raising.  :class:`Station` validates its arguments and
delegates to the same kernels, so there is one implementation of the maths.

Sources: A. O. Allen, *Probability, Statistics, and Queueing Theory* (2nd ed., 1990), §6 (Erlang
C, M/M/c waiting-time distribution, Allen–Cunneen); D. Gross et al., *Fundamentals of Queueing
Theory* (4th ed.), §2.3; W. Whitt, "Approximations for the GI/G/m queue" (1993); C. D.
Crommelin, "Delay probability formulae when the holding times are constant" (1932); J. Abate,
G. L. Choudhury and W. Whitt, "Exponential approximations for tail probabilities in queues, I:
waiting times", Operations Research 43 (1995): the GI/GI/s wait's asymptotic decay rate, and
its tail approximated as ``A·e^(−ηt)`` with ``A`` the mean wait times ``η``.  Erlang B uses
the Poisson identity ``B(c, A) = pmf(c; A) / cdf(c; A)`` with the regularised incomplete gamma
function, which is exact for large ``c``, needs no factorials and extends smoothly to real ``c``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, overload

import numpy as np
import numpy.typing as npt
from scipy import special

from capplan.errors import UnstableQueueError

__all__ = [
    "PooledQueue",
    "QueueMetrics",
    "Station",
    "erlang_b",
    "erlang_c",
    "mgc_mean_response",
    "mgc_response_pdf",
    "mgc_response_quantile",
    "mgc_response_sf",
    "mgc_response_sf_given_wait",
    "mgc_response_sf_pdf",
    "mgc_response_sf_pdf_given_wait",
    "mgc_wait",
    "own_queue_wait_rate",
    "relaxation_time",
]

FloatArray = npt.NDArray[np.float64]
AnyArray = npt.NDArray[Any]
IndexArray = npt.NDArray[np.intp]
ArrayLike = npt.ArrayLike

_TINY: Final = 1e-280  # below this, incomplete gamma values lose relative precision
_LOG_TINY: Final = -745.0  # exp() of anything lower is 0.0 in double precision
_MIN_SCV: Final = 1e-10  # service time with a smaller scv is treated as deterministic
_MIN_SPREAD: Final = 1e-9  # ca² + scv below this: a queue that (almost) never waits
_LOG_2PI: Final = math.log(2.0 * math.pi)
_STIRLING_CUTOFF: Final = 15.0
_QUANTILE_RTOL: Final = 1e-12
_RATE_RTOL: Final = 1e-12
_MAX_ITERATIONS: Final = 200
_ASYMPTOTIC_MIN_Z: Final = 60.0  # ₁F₁(1; k+1; -z) by its asymptotic series for z ≥ max(60, 10k)
_ASYMPTOTIC_K_FACTOR: Final = 10.0
_ASYMPTOTIC_TERMS: Final = 20
_SERIES_SF_MAX_CDF: Final = 0.99  # Q = 1 - P by the series only where P ≤ this (≤ 2 digits lost)
_SINHC_SERIES_MAX: Final = 0.1  # ln(sinh y / y) and its derivatives by their series below this
_MIN_DECAY_WEIGHT: Final = 1e-14  # P(wait) below this: the wait's tail keeps Allen–Cunneen's θ
_EXACT_SCV: Final = 1e-12  # scv and ca² within this of 1: M/M/c, whose tail rate is exact


# --------------------------------------------------------------------------- helpers


def _is_scalar(*values: Any) -> bool:
    """
    Whether every value is a plain number (not an array or a list).

    Args:
        values: the caller's arguments.

    Returns:
        True when the result should be a Python float.
    """
    return all(not isinstance(v, np.ndarray) and np.ndim(v) == 0 for v in values)


def _float64(value: object, name: str) -> FloatArray:
    """
    ``value`` as a float64 array (a view when it already is one), or a ValueError naming it.
    """
    try:
        array: FloatArray = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be a real number or an array of them, got {value!r}"
        ) from exc
    return array


def _real_array(value: object, name: str) -> FloatArray:
    """
    Convert an argument to a float64 array, rejecting non-numbers and NaN.

    Args:
        value: the argument.
        name: its name, for the error message.

    Returns:
        The argument as a float64 array (0-d for a scalar).
    """
    array = _float64(value, name)
    _require(array, np.isnan(array), name, "a number, not NaN")
    return array


def _require(array: FloatArray, bad: npt.NDArray[np.bool_], name: str, requirement: str) -> None:
    """
    Raise ``ValueError`` naming the argument and its first bad value when any value is bad.

    Args:
        array: the argument's values.
        bad: mask of the bad values (same shape as ``array``).
        name: the argument's name.
        requirement: what the values must be, e.g. ``"a finite number > 0"``.
    """
    if np.asarray(bad).any():
        values = np.asarray(array)[np.asarray(bad)]
        extra = f" (and {values.size - 1} more bad values)" if values.size > 1 else ""
        raise ValueError(f"{name} must be {requirement}, got {float(values.flat[0])!r}{extra}")


def _flatten(*arrays: FloatArray) -> tuple[tuple[int, ...], list[FloatArray]]:
    """
    Broadcast arrays together and flatten them to 1-D copies.

    Args:
        arrays: the arrays.

    Returns:
        The broadcast shape and the flattened arrays.
    """
    try:
        broadcast = np.broadcast_arrays(*arrays)
    except ValueError as exc:
        raise ValueError(f"array arguments cannot be broadcast together: {exc}") from exc
    shape = broadcast[0].shape
    return shape, [np.array(b, dtype=np.float64).reshape(-1) for b in broadcast]


def _result(values: FloatArray, shape: tuple[int, ...], scalar: bool) -> float | FloatArray:
    """
    Shape a flat result like the inputs: a Python float for scalar inputs.

    Args:
        values: the flat result.
        shape: the broadcast shape of the inputs.
        scalar: whether all inputs were scalars.

    Returns:
        ``values`` reshaped, or its only element as a float.
    """
    if scalar:
        return float(values[0])
    return values.reshape(shape)


def _stirling_error(n: FloatArray) -> FloatArray:
    """
    ``ln Γ(n+1) - (n + 1/2)·ln n + n - ln(2π)/2`` by its asymptotic series (for n ≥ 15).

    Args:
        n: the argument, at least 15 (the truncation error is then below 3e-16).

    Returns:
        The Stirling-formula error.
    """
    n2 = n * n
    return (
        1.0 / 12.0
        - (1.0 / 360.0 - (1.0 / 1260.0 - (1.0 / 1680.0 - 1.0 / 1188.0 / n2) / n2) / n2) / n2
    ) / n


def _log_pmf_direct(n: FloatArray, y: FloatArray) -> FloatArray:
    """
    ``ln(y**n · e**-y / Γ(n+1))`` by the direct formula (for ``n`` below 15).
    """
    return np.asarray(special.xlogy(n, y) - y - special.gammaln(n + 1.0), dtype=np.float64)


def _log_pmf_loader(n: FloatArray, y: FloatArray) -> FloatArray:
    """
    ``ln(y**n · e**-y / Γ(n+1))`` in Loader's form (for ``n`` of at least 15).
    """
    u = (y - n) / n
    deviance = n * (u - np.log1p(u))
    return np.asarray(
        -_stirling_error(n) - 0.5 * (_LOG_2PI + np.log(n)) - deviance, dtype=np.float64
    )


def _log_poisson_pmf(n: FloatArray, y: FloatArray) -> FloatArray:
    """
    ``ln(y**n · e**-y / Γ(n+1))`` for real ``n > 0`` and ``y ≥ 0``, without cancellation.

    For large ``n`` the direct formula subtracts numbers of size ``n·ln n``; Loader's form
    ``-stirling_error(n) - ln(2πn)/2 - n·(u - ln(1+u))`` with ``u = y/n - 1`` does not.  Each
    element is computed by one form only (``n ≥ 15``: Loader's).

    Args:
        n: the (real) count.
        y: the Poisson mean (broadcast against ``n``).

    Returns:
        The log of the (continued) Poisson probability mass; ``-inf`` when ``y == 0``.
    """
    if n.shape != y.shape:
        n, y = np.broadcast_arrays(n, y)
    big = n >= _STIRLING_CUTOFF
    count = int(np.count_nonzero(big))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if count == big.size:
            return _log_pmf_loader(n, y)
        if count == 0:
            return _log_pmf_direct(n, y)
        # the majority form on all elements (cheaper than splitting), the other on the rest
        if 2 * count >= big.size:
            out = _log_pmf_loader(np.maximum(n, _STIRLING_CUTOFF), y)
            index = np.flatnonzero(~big)
            out.reshape(-1)[index] = _log_pmf_direct(n.reshape(-1)[index], y.reshape(-1)[index])
        else:
            out = _log_pmf_direct(n, y)
            index = np.flatnonzero(big)
            out.reshape(-1)[index] = _log_pmf_loader(n.reshape(-1)[index], y.reshape(-1)[index])
    return out


def _upper_gamma_cf(a: FloatArray, x: FloatArray) -> FloatArray:
    """
    ``h`` such that ``Γ(a, x) = e**-x · x**a · h``, by Lentz's continued fraction.

    Converges quickly for ``x > a + 1``; used only far in the Poisson tail, where the regularised
    incomplete gamma function underflows.

    Args:
        a: the shape.
        x: the argument.

    Returns:
        The continued fraction's value.
    """
    floor = 1e-300
    b = x + 1.0 - a
    c = np.full_like(x, 1.0 / floor)
    d = 1.0 / b
    h = d.copy()
    for i in range(1, 10_000):
        an = -i * (i - a)
        b = b + 2.0
        d = an * d + b
        d = np.where(np.abs(d) < floor, floor, d)
        c = b + an / c
        c = np.where(np.abs(c) < floor, floor, c)
        d = 1.0 / d
        delta = d * c
        h = h * delta
        if np.all(np.abs(delta - 1.0) < 1e-15):
            break
    return h


def _erlang_b(servers: FloatArray, load: FloatArray) -> FloatArray:
    """
    Erlang B on validated arrays (broadcast together).

    Args:
        servers: server counts (≥ 1, real).
        load: offered loads in Erlangs (≥ 0).

    Returns:
        The blocking probabilities.
    """
    if servers.shape != load.shape:
        servers, load = np.broadcast_arrays(servers, load)
    log_pmf = _log_poisson_pmf(servers, load)
    cdf = np.asarray(special.gammaincc(servers + 1.0, load), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        blocking = np.asarray(np.exp(log_pmf - np.log(cdf)), dtype=np.float64)
    tail = cdf < _TINY
    if tail.any():
        cf = _upper_gamma_cf(servers[tail] + 1.0, load[tail])
        blocking[tail] = 1.0 / (load[tail] * cf)
    return blocking


def _erlang_c(servers: FloatArray, load: FloatArray) -> FloatArray:
    """
    Erlang C on validated arrays (broadcast together) with ``load < servers``.

    Args:
        servers: server counts (≥ 1, real).
        load: offered loads in Erlangs, below ``servers``.

    Returns:
        The probabilities of waiting.
    """
    blocking = _erlang_b(servers, load)
    rho = load / servers
    return np.asarray(blocking / ((1.0 - rho) + rho * blocking), dtype=np.float64)


# --------------------------------------------------------------------------- Erlang B and C


@overload
def erlang_b(servers: float, offered_load: float) -> float: ...
@overload
def erlang_b(servers: AnyArray, offered_load: float | AnyArray) -> FloatArray: ...
@overload
def erlang_b(servers: float, offered_load: AnyArray) -> FloatArray: ...
@overload
def erlang_b(servers: float | AnyArray, offered_load: float | AnyArray) -> float | FloatArray: ...
def erlang_b(servers: float | AnyArray, offered_load: float | AnyArray) -> float | FloatArray:
    """
    Erlang B: the probability that an arrival finds all servers busy in M/M/c/c (a loss system).

    Computed as ``pmf(c; A) / cdf(c; A)`` of a Poisson(A) variable, in log space with the
    regularised incomplete gamma function: O(1) per value, accurate for ``c`` up to millions, and
    smooth in ``c`` (a real ``c`` gives the standard continuation ``1/B = A·∫e^{-At}(1+t)^c dt``).

    Args:
        servers: number of servers ``c``, at least 1 (need not be an integer).
        offered_load: offered load ``A = λ·E[S]`` in Erlangs, at least 0 (may exceed ``c``).

    Returns:
        The blocking probability, in [0, 1].
    """
    scalar = _is_scalar(servers, offered_load)
    c = _real_array(servers, "servers")
    a = _real_array(offered_load, "offered_load")
    _require(c, ~(np.isfinite(c) & (c >= 1.0)), "servers", "a finite number >= 1")
    _require(a, ~(np.isfinite(a) & (a >= 0.0)), "offered_load", "a finite number of Erlangs >= 0")
    shape, (c, a) = _flatten(c, a)
    return _result(_erlang_b(c, a), shape, scalar)


@overload
def erlang_c(servers: float, offered_load: float) -> float: ...
@overload
def erlang_c(servers: AnyArray, offered_load: float | AnyArray) -> FloatArray: ...
@overload
def erlang_c(servers: float, offered_load: AnyArray) -> FloatArray: ...
@overload
def erlang_c(servers: float | AnyArray, offered_load: float | AnyArray) -> float | FloatArray: ...
def erlang_c(servers: float | AnyArray, offered_load: float | AnyArray) -> float | FloatArray:
    """
    Erlang C: the probability that an arrival has to wait in M/M/c.

    ``C = B / (1 - ρ·(1 - B))`` with ``B`` the Erlang B value and ``ρ = A / c``.

    Args:
        servers: number of servers ``c``, at least 1 (need not be an integer).
        offered_load: offered load ``A = λ·E[S]`` in Erlangs, at least 0 and below ``c``.

    Returns:
        The probability of waiting, in [0, 1].

    Raises:
        UnstableQueueError: when ``offered_load >= servers`` (the queue grows without bound).
    """
    scalar = _is_scalar(servers, offered_load)
    c = _real_array(servers, "servers")
    a = _real_array(offered_load, "offered_load")
    _require(c, ~(np.isfinite(c) & (c >= 1.0)), "servers", "a finite number >= 1")
    _require(a, ~(np.isfinite(a) & (a >= 0.0)), "offered_load", "a finite number of Erlangs >= 0")
    shape, (c, a) = _flatten(c, a)
    unstable = a >= c
    if np.any(unstable):
        i = int(np.argmax(unstable))
        raise UnstableQueueError(
            f"unstable queue: offered load {a[i]:g} Erlangs is not below {c[i]:g} servers; "
            f"the queue is stable only for an offered load below {c[i]:g} Erlangs "
            "(utilization below 1)"
        )
    return _result(_erlang_c(c, a), shape, scalar)


# --------------------------------------------------------------------------- M/G/c kernels
#
# The maths of the M/G/c response time, on flat arrays: ``t``/``q`` (the "driver") is 1-D of
# length n and every other argument is either 0-d or 1-D of length n.  No validation here.


def _sub(values: FloatArray, index: IndexArray) -> FloatArray:
    """
    ``values[index]`` for a 1-D array; a 0-d array (a parameter shared by all elements) as is.
    """
    return values if values.ndim == 0 else values[index]


def _log_sinhc(y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """
    ``L(y) = ln(sinh(y)/y)`` for ``y ≥ 0`` (0 at 0) and its first two derivatives,
    ``coth(y) − 1/y`` and ``1/y² − 1/sinh²(y)``: by their series below ``_SINHC_SERIES_MAX``
    (no cancellation; the first term left out is below 3e-16 for ``L`` there, 3e-14 and 2e-12
    for the derivatives, which only steer an iteration), else from ``e^(−2y)`` (no overflow).
    ``L`` is even, ``0 ≤ L' < 1`` and ``0 < L'' ≤ 1/3``.
    """
    y2 = y * y
    small = y < _SINHC_SERIES_MAX
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        e = np.exp(-2.0 * y)
        value = np.where(
            small,
            y2 * (1 / 6 + y2 * (-1 / 180 + y2 * (1 / 2835 - y2 / 37800))),
            y - np.log(2.0 * y) + np.log1p(-e),
        )
        first = np.where(
            small,
            y * (1 / 3 + y2 * (-1 / 45 + y2 * (2 / 945 - y2 / 4725))),
            (1.0 + e) / (1.0 - e) - 1.0 / y,
        )
        second = np.where(
            small,
            1 / 3 + y2 * (-1 / 15 + y2 * (2 / 189 - y2 / 675)),
            1.0 / y2 - 4.0 * e / (1.0 - e) ** 2,
        )
    return value, first, second


def _decay_rate(
    load: FloatArray,
    servers: FloatArray,
    service_time: FloatArray,
    scv: FloatArray,
    arrival_scv: FloatArray | float,
    theta: FloatArray,
    p_wait: FloatArray,
) -> FloatArray:
    """
    The exact decay rate ``η`` of the wait's tail, ``P(W > t) ∝ e^(−ηt)`` as ``t → ∞``.

    With every slot busy the ``c`` slots clear work as one server with service times ``S/c``
    would (their departure counts have the same large deviations), so ``η`` is the root of the
    single-server (Lindley / Cramér–Lundberg) equation ``E[e^(ηS/c)]·E[e^(−ηA)] = 1``, with
    ``S`` gamma (mean ``E[S]``, scv ``v``) and the inter-arrival time ``A`` gamma (mean ``1/λ``,
    scv ``a``; exponential for Poisson).  In ``x = η·E[S]/c`` and ``ρ = λ·E[S]/c``:
    ``−ln(1 − v·x)/v = ln(1 + a·x/ρ)/a =: σ``.  Solved for ``σ``, where it is nearly linear:
    with ``h(u) = (e^u − 1)/u`` the equation is ``ρ·h(aσ) = h(−vσ)``, and since
    ``ln h(u) = u/2 + L(u/2)`` (``L(y) = ln(sinh y / y)``, even, of curvature at most 1/3)
    it reads ``ψ(σ) = ln ρ + (a + v)σ/2 + L(aσ/2) − L(vσ/2) = 0`` — exactly linear when
    ``a = v``, increasing, with no pole (``x = (1 − e^(−vσ))/v`` reaches ``1/v`` only as
    ``σ → ∞``).  Newton's iteration from the root of the quadratic expansion
    (``L(y) ≈ y²/6``), bracketed, stops where the step's predicted error ``ψ''·δ²/(2ψ')``
    is below ``_RATE_RTOL``/100 relative, or the step itself below ``_RATE_RTOL``: about two
    evaluations of ``ψ`` per element.  Exponential service and arrivals give
    ``η = cμ − λ`` (M/M/c's exact rate, returned as ``θ``); deterministic service gives
    Crommelin's M/D/c rate; heavy traffic gives Allen–Cunneen's ``θ = 2(cμ − λ)/(a + v)``; at
    ``ρ`` 0.8 with ``v = 0`` the root is 5–8% faster than ``θ`` for c = 1–4.  ``θ`` is kept
    where ``a + v`` is (almost) 0 (a queue that never waits) or where (almost) nothing waits.

    Args:
        load: offered loads ``λ·E[S]``, each below ``servers``.
        servers: server counts.
        service_time: mean service times.
        scv: service-time scvs ``v``.
        arrival_scv: inter-arrival scvs ``a``.
        theta: Allen–Cunneen's rates, the answer where the root is not sought.
        p_wait: Erlang C: where it is below 1e-14 the wait is beyond any percentile and
            the root is not sought either.

    Returns:
        ``η``, of the broadcast shape.
    """
    shape = np.broadcast_shapes(
        np.shape(load),
        np.shape(servers),
        np.shape(service_time),
        np.shape(scv),
        np.shape(arrival_scv),
        np.shape(theta),
        np.shape(p_wait),
    )
    load, servers, service_time, scv, arrival, theta, p_wait = (
        np.broadcast_to(np.asarray(x, dtype=np.float64), shape).reshape(-1)
        for x in (load, servers, service_time, scv, arrival_scv, theta, p_wait)
    )
    eta = theta.copy()
    scv = np.where(scv < _MIN_SCV, 0.0, scv)  # as the response-time kernels treat it
    arrival = np.where(arrival < _MIN_SCV, 0.0, arrival)
    solve = np.flatnonzero(
        (p_wait >= _MIN_DECAY_WEIGHT)
        & (arrival + scv >= _MIN_SPREAD)
        & ~((np.abs(scv - 1.0) <= _EXACT_SCV) & (np.abs(arrival - 1.0) <= _EXACT_SCV))
    )
    if solve.size == 0:
        return eta.reshape(shape)
    c, v, a = servers[solve], scv[solve], arrival[solve]
    rho, gap = load[solve] / c, (c - load[solve]) / c
    log_rho = np.where(rho < 0.5, np.log(rho), np.log1p(-gap))  # each exact where it is used
    half = 0.5 * (a + v)
    quad = (a * a - v * v) / 24.0  # ψ ≈ ln ρ + half·σ + quad·σ²
    disc = half * half - 4.0 * quad * log_rho
    sigma = np.where(
        disc > 0.0,
        -2.0 * log_rho / (half + np.sqrt(np.maximum(disc, 0.0))),
        -log_rho / half,
    )
    low, high = np.zeros(sigma.shape), np.full(sigma.shape, np.inf)
    live = np.arange(sigma.size)  # elements still moving: each stops on its own
    for _ in range(_MAX_ITERATIONS):
        now, al, vl = sigma[live], a[live], v[live]
        la, la1, la2 = _log_sinhc(0.5 * al * now)
        lv, lv1, lv2 = _log_sinhc(0.5 * vl * now)
        psi = log_rho[live] + half[live] * now + la - lv
        slope = half[live] + 0.5 * (al * la1 - vl * lv1)  # ≥ a/2, > 0
        curve = 0.25 * (al * al * la2 - vl * vl * lv2)
        lo = np.where(psi < 0.0, now, low[live])
        hi = np.where(psi >= 0.0, now, high[live])
        low[live], high[live] = lo, hi
        step = psi / slope
        newton = now - step
        inside = np.isfinite(newton) & (newton >= lo) & (newton <= hi)
        nxt = np.where(inside, newton, np.where(np.isfinite(hi), 0.5 * (lo + hi), 2.0 * now))
        predicted = np.abs(curve) * step * step / (2.0 * slope)  # Newton's error after the step
        moving = (np.abs(nxt - now) > _RATE_RTOL * now) & ~(
            inside & (predicted <= 0.01 * _RATE_RTOL * nxt)
        )
        sigma[live] = nxt
        live = live[moving]
        if live.size == 0:
            break
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(v > 0.0, -np.expm1(-v * sigma) / np.where(v > 0.0, v, 1.0), sigma)
    eta[solve] = x * c / service_time[solve]
    return eta.reshape(shape)


def _wait_parameters(
    load: FloatArray,
    servers: FloatArray,
    service_time: FloatArray,
    scv: FloatArray,
    arrival_scv: FloatArray | float = 1.0,
) -> tuple[FloatArray, FloatArray]:
    """
    The wait's weight and rate, for stable loads: ``P(W > t) = A·e^(−ηt)`` for ``t > 0``.

    ``η`` is the tail's exact decay rate (:func:`_decay_rate`) and ``A = C·η/θ`` (at most 1),
    so that the mean wait ``A/η = C/θ`` stays Allen–Cunneen's, with Erlang C ``C`` and
    ``θ = (cμ - λ)·2/(ca² + scv)``.  For M/M/c ``η = θ`` and ``A = C``: exact.

    Args:
        load: offered loads ``λ·E[S]``, each below ``servers``.
        servers: server counts.
        service_time: mean service times.
        scv: service-time scvs.
        arrival_scv: inter-arrival scvs ``ca²`` (1: Poisson).

    Returns:
        ``(A, η)`` (``θ`` is capped where ``ca² + scv`` is 0, a queue that never waits).
    """
    p_wait = _erlang_c(servers, load)
    spread = np.maximum(arrival_scv + scv, _MIN_SPREAD)
    theta = np.asarray((servers - load) / service_time * (2.0 / spread), dtype=np.float64)
    eta = _decay_rate(load, servers, service_time, scv, arrival_scv, theta, p_wait)
    weight = np.minimum(p_wait * (eta / theta), 1.0)  # exactly C where η is θ
    return np.asarray(weight, dtype=np.float64), eta


def _mean_response(p_wait: FloatArray, theta: FloatArray, service_time: FloatArray) -> FloatArray:
    """
    Allen–Cunneen mean response time: the mean wait ``C/θ`` plus the mean service time.
    """
    return np.asarray(p_wait / theta + service_time, dtype=np.float64)


def _deterministic_sf_pdf(
    t: FloatArray,
    p_wait: FloatArray,
    theta: FloatArray,
    service_time: FloatArray,
    want_sf: bool,
    want_pdf: bool,
) -> tuple[FloatArray | None, FloatArray | None]:
    """
    ``P(T > t)`` and the density of ``T = S + W`` (point mass left out) for deterministic ``S``.
    """
    sf = pdf = None
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        decay = np.exp(-theta * (t - service_time))
        if want_sf:
            tail = np.where(np.isinf(t), 0.0, p_wait * decay)
            sf = np.clip(np.where(t < service_time, 1.0, tail), 0.0, 1.0)
        if want_pdf:
            pdf = np.where(t > service_time, p_wait * theta * decay, 0.0)
    return sf, pdf


def _kummer_asymptotic(k: FloatArray, z: FloatArray) -> FloatArray:
    """
    ``₁F₁(1; k+1; -z)`` for ``z ≥ max(60, 10·k)`` by its asymptotic series.

    ``₁F₁(1; k+1; -z) = k·∫₀¹ (1-v)^{k-1} e^{-zv} dv ~ (k/z)·Σ (1-k)_n / z^n`` (Watson's lemma);
    with 20 terms in this range the truncation error and the neglected ``O(e^{-z})`` part are
    below 1e-16 relative (checked against a 40-digit sum of the convergent Kummer series: worst
    4e-16, where SciPy's ``hyp1f1`` is off by up to 2e-13 and takes 0.3–0.5 µs per value).

    Args:
        k: gamma shapes.
        z: arguments (``-x``), each at least ``max(60, 10·k)``.

    Returns:
        The function values.
    """
    inv = 1.0 / z
    total = np.ones(z.shape)
    for j in range(_ASYMPTOTIC_TERMS - 1, -1, -1):
        total *= (j + 1.0 - k) * inv
        total += 1.0
    return np.asarray(k * inv * total, dtype=np.float64)


def _gamma_service_sf(k: FloatArray, y: FloatArray, log_pmf: FloatArray) -> FloatArray:
    """
    ``Q(k, y)``, the regularised upper incomplete gamma function: ``P(S > t)`` with ``y = β·t``.

    SciPy's ``gammaincc`` takes microseconds per value for ``y ≤ 1.1`` and ``k ≤ 1.1·y`` (its
    ``igamc_series`` branch; typical for scv ≥ 1), against about 0.1 µs elsewhere.  There
    ``Q = 1 - P`` with ``P(k, y) = P(k+1, y) + pmf_Poisson(k; y)`` (two positive terms, both fast)
    is used where ``P ≤ 0.99``, so at most two digits are lost; other values use ``gammaincc``.

    Args:
        k: gamma shapes.
        y: ``β·t`` (≥ 0, may be infinite), 1-D.
        log_pmf: ``ln pmf_Poisson(k; y)``.

    Returns:
        ``Q(k, y)``.
    """
    series = (y <= 1.1) & (k <= 1.1 * y + 0.1)
    index = np.flatnonzero(series)
    if index.size == 0:
        return np.asarray(special.gammaincc(k, y), dtype=np.float64)
    cdf = special.gammainc(_sub(k, index) + 1.0, y[index]) + np.exp(log_pmf[index])
    good = cdf <= _SERIES_SF_MAX_CDF
    out = np.empty(y.shape)
    out[index[good]] = 1.0 - cdf[good]
    series[index[~good]] = False
    rest = np.flatnonzero(~series)
    if rest.size:
        out[rest] = special.gammaincc(_sub(k, rest), y[rest])
    return out


def _gamma_wait(
    t: FloatArray, theta: FloatArray, k: FloatArray, beta: FloatArray, y: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """
    The wait term ``w(t) = E[exp(-θ·(t - S)); S ≤ t]`` of gamma service (shape ``k``, rate
    ``β``) and ``ln pmf_Poisson(k; β·t)``, by the routes :func:`_gamma_sf_pdf` describes.

    Args:
        t: times (≥ 0, may be infinite), 1-D.
        theta: rates of the exponential wait.
        k: gamma shapes.
        beta: gamma rates.
        y: ``β·t``, which the callers have.

    Returns:
        ``(w, ln pmf)``; ``w`` is 0 at ``t = 0`` and ``t = inf``.
    """
    with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
        inside = (t > 0.0) & (t < np.inf)
        b = beta - theta
        x = b * t
        gamma_route = inside & (b > 0.0) & (x >= np.maximum(k - 5.0 * np.sqrt(k), 0.5 * k))
        wait = np.zeros(t.shape)
        index = np.flatnonzero(gamma_route)
        if index.size:
            kg, thg = _sub(k, index), _sub(theta, index)
            wait[index] = np.exp(
                -kg * np.log1p(-thg / _sub(beta, index))
                - thg * t[index]
                + np.log(special.gammainc(kg, x[index]))
            )
        log_pmf = _log_poisson_pmf(k, y)
        index = np.flatnonzero(inside & ~gamma_route & (log_pmf > _LOG_TINY))
        pmf = np.exp(log_pmf[index])
        if index.size:
            kh, xh = _sub(k, index), x[index]
            asymptotic = -xh >= np.maximum(_ASYMPTOTIC_MIN_Z, _ASYMPTOTIC_K_FACTOR * kh)
            kummer = np.empty(index.shape)
            part = np.flatnonzero(asymptotic)
            if part.size:
                kummer[part] = _kummer_asymptotic(_sub(kh, part), -xh[part])
            part = np.flatnonzero(~asymptotic)
            if part.size:
                kummer[part] = special.hyp1f1(1.0, _sub(kh, part) + 1.0, xh[part])
            wait[index] = pmf * kummer
    return wait, log_pmf


def _gamma_sf_pdf(
    t: FloatArray,
    p_wait: FloatArray,
    theta: FloatArray,
    service_time: FloatArray,
    scv: FloatArray,
    want_sf: bool,
    want_pdf: bool,
) -> tuple[FloatArray | None, FloatArray | None]:
    """
    ``P(T > t)`` and the density of ``T = S + W`` for gamma ``S`` (scv ≥ 1e-10), sharing work.

    ``P(T > t) = P(S > t) + C·w(t)`` and ``f_T(t) = (1 - C)·f_S(t) + C·θ·w(t)`` with the wait
    term ``w(t) = E[exp(-θ·(t - S)); S ≤ t]``, which has two exact routes, chosen per element to
    avoid overflow and cancellation (``b = β - θ`` with ``β`` the gamma rate and ``k`` its shape):

    * ``b > 0`` and ``x = b·t ≥ max(k - 5√k, k/2)``:
      ``(β/b)^k · e^{-θt} · P(k, x)`` (regularised lower incomplete gamma, here not tiny), in
      log space;
    * otherwise (including ``θ ≥ β`` and ``θ ≈ β``):
      ``pmf_Poisson(k; β·t) · ₁F₁(1; k+1; x)``, where ``₁F₁(1; k+1; x)`` is in (0, 1] for
      ``x ≤ 0`` and below ``√k`` for ``0 < x < k - 5√k`` (no overflow, no cancellation);
      ``₁F₁`` by its asymptotic series where ``-x ≥ max(60, 10k)`` (many servers, light load:
      faster and more accurate there than SciPy's ``hyp1f1``), else by ``hyp1f1``.

    ``ln pmf_Poisson(k; β·t)`` also gives the service density ``f_S(t) = (k/t)·pmf`` and the
    fast route of ``P(S > t)`` (:func:`_gamma_service_sf`); it is computed once, as is ``w``,
    which both outputs use.

    Args:
        t: times (≥ 0, may be infinite), 1-D.
        p_wait: Erlang C values.
        theta: rates of the exponential wait.
        service_time: mean service times.
        scv: service-time scvs, each at least 1e-10.
        want_sf: whether to compute ``P(T > t)``.
        want_pdf: whether to compute the density.

    Returns:
        ``(sf, pdf)``, each None when not wanted.
    """
    with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
        k = 1.0 / scv
        beta = 1.0 / (scv * service_time)
        y = beta * t
        inside = (t > 0.0) & (t < np.inf)
        wait, log_pmf = _gamma_wait(t, theta, k, beta, y)
        sf = pdf = None
        if want_sf:
            service_sf = _gamma_service_sf(k, y, log_pmf)
            sf = np.clip(service_sf + p_wait * wait, 0.0, 1.0)
        if want_pdf:
            service_pdf = np.where(inside, np.exp(np.log(k) - np.log(t) + log_pmf), 0.0)
            pdf = (1.0 - p_wait) * service_pdf + p_wait * theta * wait
    return sf, pdf


def _sf_pdf(
    t: FloatArray,
    p_wait: FloatArray,
    theta: FloatArray,
    service_time: FloatArray,
    scv: FloatArray,
    want_sf: bool = True,
    want_pdf: bool = True,
) -> tuple[FloatArray | None, FloatArray | None]:
    """
    ``P(T > t)`` and the density of ``T``, for any mix of deterministic and gamma service.

    Args:
        t: times (≥ 0, may be infinite), 1-D.
        p_wait: Erlang C values.
        theta: rates of the exponential wait.
        service_time: mean service times.
        scv: service-time scvs (below 1e-10: deterministic service).
        want_sf: whether to compute ``P(T > t)``.
        want_pdf: whether to compute the density.

    Returns:
        ``(sf, pdf)``, each None when not wanted.
    """
    deterministic = scv < _MIN_SCV
    if not deterministic.any():
        return _gamma_sf_pdf(t, p_wait, theta, service_time, scv, want_sf, want_pdf)
    if deterministic.all():
        return _deterministic_sf_pdf(t, p_wait, theta, service_time, want_sf, want_pdf)
    det = np.flatnonzero(deterministic)
    gam = np.flatnonzero(~deterministic)
    parts = (
        (
            det,
            _deterministic_sf_pdf(
                t[det],
                _sub(p_wait, det),
                _sub(theta, det),
                _sub(service_time, det),
                want_sf,
                want_pdf,
            ),
        ),
        (
            gam,
            _gamma_sf_pdf(
                t[gam],
                _sub(p_wait, gam),
                _sub(theta, gam),
                _sub(service_time, gam),
                _sub(scv, gam),
                want_sf,
                want_pdf,
            ),
        ),
    )
    sf = np.empty(t.shape) if want_sf else None
    pdf = np.empty(t.shape) if want_pdf else None
    for index, (part_sf, part_pdf) in parts:
        if sf is not None and part_sf is not None:
            sf[index] = part_sf
        if pdf is not None and part_pdf is not None:
            pdf[index] = part_pdf
    return sf, pdf


def _response_sf(
    t: FloatArray, p_wait: FloatArray, theta: FloatArray, service_time: FloatArray, scv: FloatArray
) -> FloatArray:
    """
    ``P(T > t)`` (see :func:`_sf_pdf`).
    """
    sf, _ = _sf_pdf(t, p_wait, theta, service_time, scv, want_pdf=False)
    assert sf is not None
    return sf


def _response_isf(
    q: FloatArray, p_wait: FloatArray, theta: FloatArray, service_time: FloatArray, scv: FloatArray
) -> FloatArray:
    """
    The smallest ``t`` with ``P(T > t) ≤ q``.

    Deterministic service has a closed form.  Otherwise a vectorised safeguarded Newton
    iteration on ``ln P(T > t) - ln q`` (Newton steps that leave the bracket or do not halve the
    previous step are replaced by bisection, geometric while the bracket spans more than a
    factor 2) within the bracket ``[isf_S(q), isf_W(q/2) + E[S] + sd(S)·√(2/q - 1)]`` (``T ≥ S``;
    a union bound with Cantelli's inequality for ``S``, which needs no gamma inversion), from
    ``isf_S(q) + ln(C/q)/θ``, to a relative tolerance of 1e-12.  When waiting is negligible
    the answer is ``isf_S(q)`` within rounding, where Newton tends to land just below the
    bracket; the bound itself is then tried once (else ~40 bisections would follow).

    Args:
        q: upper-tail probabilities in (0, 1), 1-D.
        p_wait: Erlang C values.
        theta: conditional wait rates.
        service_time: mean service times.
        scv: service-time scvs (below 1e-10: deterministic service).

    Returns:
        The response-time quantiles at ``1 - q``.
    """
    deterministic = np.broadcast_to(scv < _MIN_SCV, q.shape)
    out = np.empty(q.shape)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
        det = np.flatnonzero(deterministic)
        if det.size:
            qd, cd, thd = q[det], _sub(p_wait, det), _sub(theta, det)
            extra = np.where(cd > qd, np.log(cd / qd) / thd, 0.0)
            out[det] = _sub(service_time, det) + extra
        gam = np.flatnonzero(~deterministic)
        if gam.size == 0:
            return out
        if gam.size < q.size:
            q = q[gam]
            p_wait, theta = _sub(p_wait, gam), _sub(theta, gam)
            service_time, scv = _sub(service_time, gam), _sub(scv, gam)
        k = 1.0 / scv
        beta = 1.0 / (scv * service_time)
        wait_q = np.where(2.0 * p_wait > q, np.log(2.0 * p_wait / q) / theta, 0.0)
        lo = np.asarray(special.gammainccinv(k, q) / beta, dtype=np.float64)
        # Cantelli: P(S > E[S] + sd·√(2/q - 1)) ≤ q/2 for any distribution
        hi = np.maximum(wait_q + service_time * (1.0 + np.sqrt(scv * (2.0 / q - 1.0))), lo)
        log_q = np.log(q)
        t = np.minimum(lo + np.where(p_wait > q, np.log(p_wait / q) / theta, 0.0), hi)
        last_step = hi - lo
        lo_untested = np.ones(q.shape, dtype=bool)
        active = np.flatnonzero(hi > lo)
        for _ in range(_MAX_ITERATIONS):
            if active.size == 0:
                break
            ta = t[active]
            sf, pdf = _gamma_sf_pdf(
                ta,
                _sub(p_wait, active),
                _sub(theta, active),
                _sub(service_time, active),
                _sub(scv, active),
                True,
                True,
            )
            assert sf is not None
            assert pdf is not None
            g = np.log(sf) - log_q[active]
            slope = -pdf / sf
            above = g > 0.0  # P(T > t) > q: the quantile is beyond t
            lo_a = np.where(above, ta, lo[active])
            hi_a = np.where(above, hi[active], ta)
            lo[active], hi[active] = lo_a, hi_a
            newton = ta - g / slope
            probe = lo_untested[active] & ~above & np.isfinite(newton) & (newton <= lo_a)
            lo_untested[active] &= ~(above | probe)
            use_newton = (
                np.isfinite(newton)
                & (newton >= lo_a)
                & (newton <= hi_a)
                & (np.abs(newton - ta) <= 0.5 * last_step[active])
            )
            # bisection halves ln(hi/lo) while the bracket spans more than a factor 2 (for
            # k ≪ 1 the service quantiles span hundreds of orders of magnitude), else hi - lo
            wide = (hi_a > 2.0 * lo_a) & (lo_a > 0.0)
            bisect = np.where(wide, np.sqrt(lo_a) * np.sqrt(hi_a), 0.5 * (lo_a + hi_a))
            new = np.where(probe, lo_a, np.where(use_newton, newton, bisect))
            new = np.where(g == 0.0, ta, new)  # an exact root
            step = np.abs(new - ta)
            last_step[active] = step
            t[active] = new
            done = (step <= _QUANTILE_RTOL * new) | (hi_a - lo_a <= _QUANTILE_RTOL * hi_a)
            active = active[~done]
    out[gam] = t
    return out


# --------------------------------------------------------------------------- batched M/G/c


def _batch_argument(
    value: object, name: str, requirement: str, low: float, *, strict: bool, high: float
) -> FloatArray:
    """
    An argument of the batch API as a float64 array (no copy when it is one), range-checked.

    The check is two reductions (min and max, which propagate NaN); only when it fails is the
    element-wise mask built, for the error message.

    Args:
        value: the argument.
        name: its name, for the error message.
        requirement: what the values must be, for the error message.
        low: the lower bound.
        strict: whether the lower bound is excluded.
        high: the (excluded) upper bound; ``inf`` for finite values, NaN to allow ``inf``.

    Returns:
        The argument as a float64 array.
    """
    array = _float64(value, name)
    if array.size:
        smallest, largest = float(array.min()), float(array.max())
        low_ok = smallest > low if strict else smallest >= low
        high_ok = largest <= np.inf if math.isnan(high) else largest < high
        if not (low_ok and high_ok):
            with np.errstate(invalid="ignore"):
                above = array > low if strict else array >= low
                below = array <= np.inf if math.isnan(high) else array < high
            _require(array, ~(above & below), name, requirement)
    return array


def _batch_flat(*arrays: FloatArray) -> tuple[tuple[int, ...], list[FloatArray]]:
    """
    Broadcast shape of the arguments, and each as 1-D over it (0-d when it has one value).

    A full-size argument is a view (a copy only when not C-contiguous); a single value stays
    0-d (shared by all elements); only an argument broadcast along some axes is copied.

    Args:
        arrays: the arguments; the first is the driver, always returned 1-D.

    Returns:
        The broadcast shape and the arrays.
    """
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError as exc:
        raise ValueError(f"array arguments cannot be broadcast together: {exc}") from exc
    size = math.prod(shape)
    flat: list[FloatArray] = []
    for i, a in enumerate(arrays):
        if a.shape == shape:
            flat.append(a.reshape(-1))
        elif a.size != 1:
            flat.append(np.broadcast_to(a, shape).reshape(-1))
        elif i == 0:
            flat.append(np.broadcast_to(a.reshape(-1), (size,)))
        else:
            flat.append(a.reshape(()))
    return shape, flat


def _batch_parameters(
    rate: object, servers: object, service_time: object, scv: object, arrival_scv: object
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """
    Validate the station parameters of the batch API and the arrivals' scv.
    """
    return (
        _batch_argument(rate, "rate", "a finite rate >= 0", 0.0, strict=False, high=np.inf),
        _batch_argument(servers, "servers", "a finite number >= 1", 1.0, strict=False, high=np.inf),
        _batch_argument(
            service_time, "service_time", "a finite number > 0", 0.0, strict=True, high=np.inf
        ),
        _batch_argument(scv, "scv", "a finite number >= 0", 0.0, strict=False, high=np.inf),
        _batch_argument(
            arrival_scv, "arrival_scv", "a finite number >= 0", 0.0, strict=False, high=np.inf
        ),
    )


def _batch_wait(
    rate: FloatArray,
    servers: FloatArray,
    service_time: FloatArray,
    scv: FloatArray,
    arrival_scv: FloatArray | float = 1.0,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_] | None]:
    """
    ``(C, θ, unstable)`` on flat arguments; unstable elements (``λ ≥ c/E[S]``) get ``λ = 0``.

    Returns:
        Erlang C, the conditional wait rate, and the unstable mask (None when all are stable).
    """
    load = rate * service_time
    with np.errstate(over="ignore"):
        unstable = (load >= servers) | (rate >= servers / service_time)
    if not unstable.any():
        return (*_wait_parameters(load, servers, service_time, scv, arrival_scv), None)
    load = np.where(unstable, 0.0, load)
    return (*_wait_parameters(load, servers, service_time, scv, arrival_scv), unstable)


def _fill(values: FloatArray, unstable: npt.NDArray[np.bool_] | None, fill: float) -> None:
    """
    Set the unstable elements of ``values`` (1-D) to ``fill``, in place.
    """
    if unstable is not None:
        np.copyto(values, fill, where=unstable)


def relaxation_time(
    servers: ArrayLike, service_time: ArrayLike, scv: ArrayLike, rate: ArrayLike
) -> FloatArray:
    """
    The heavy-traffic relaxation time of an M/G/c queue, ``(1 + scv)/2 · S / (c(1 − √ρ)²)``
    with ``ρ = λS/c`` (Morse's ``1/(μ(1 − √ρ)²)`` for M/M/1): how long the queue takes to
    forget where it started, and so how long a window must last to show its stationary
    percentiles.  inf at and beyond saturation.
    """
    c, s, v, lam = (np.asarray(x, dtype=np.float64) for x in (servers, service_time, scv, rate))
    rho = lam * s / c
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = (1.0 + v) / 2.0 * s / (c * (1.0 - np.sqrt(np.minimum(rho, 1.0))) ** 2)
    out: FloatArray = np.where(rho < 1.0, tau, np.inf)
    return out


def mgc_mean_response(
    rate: ArrayLike,
    servers: ArrayLike,
    service_time: ArrayLike,
    scv: ArrayLike,
    *,
    arrival_scv: ArrayLike = 1.0,
) -> FloatArray:
    """
    Mean M/G/c response time, Allen–Cunneen: ``C / (cμ - λ) · (ca² + scv)/2 + E[S]``, batched.

    All arguments broadcast together (numpy rules); the station parameters may differ per
    element.  Unlike :class:`Station`, an unstable element does not raise.

    Args:
        rate: arrival rates ``λ``, finite, at least 0.
        servers: server counts ``c``, finite, at least 1 (need not be integers).
        service_time: mean service times ``E[S]``, finite, greater than 0.
        scv: service-time scvs, finite, at least 0.
        arrival_scv: inter-arrival scvs ``ca²``, finite, at least 0: 1 (the default) is
            Poisson arrivals, M/G/c; below 1 smoother arrivals (GI/G/c), e.g. a balancer's
            even interleaving (:mod:`capplan.optimize.curves`).

    Returns:
        The mean response times (float64, the broadcast shape); ``inf`` where
        ``rate >= servers / service_time``.
    """
    parameters = _batch_parameters(rate, servers, service_time, scv, arrival_scv)
    shape, flat = _batch_flat(*parameters)
    rate_, servers_, service_time_, scv_, arrival_ = flat
    p_wait, theta, unstable = _batch_wait(rate_, servers_, service_time_, scv_, arrival_)
    mean = _mean_response(p_wait, theta, service_time_)
    _fill(mean, unstable, np.inf)
    return mean.reshape(shape)


def _batch_sf_pdf(
    t: ArrayLike,
    rate: ArrayLike,
    servers: ArrayLike,
    service_time: ArrayLike,
    scv: ArrayLike,
    want_sf: bool,
    want_pdf: bool,
    arrival_scv: ArrayLike = 1.0,
) -> tuple[tuple[int, ...], FloatArray | None, FloatArray | None]:
    """
    Validate, broadcast and compute ``P(T > t)`` and/or the density (flat results).
    """
    times = _batch_argument(t, "t", "a time >= 0", 0.0, strict=False, high=math.nan)
    parameters = _batch_parameters(rate, servers, service_time, scv, arrival_scv)
    shape, (times, rate_, servers_, service_time_, scv_, arrival_) = _batch_flat(times, *parameters)
    p_wait, theta, unstable = _batch_wait(rate_, servers_, service_time_, scv_, arrival_)
    sf, pdf = _sf_pdf(times, p_wait, theta, service_time_, scv_, want_sf, want_pdf)
    if sf is not None:
        _fill(sf, unstable, 1.0)
    if pdf is not None:
        _fill(pdf, unstable, 0.0)
    return shape, sf, pdf


def mgc_response_sf(
    t: ArrayLike,
    rate: ArrayLike,
    servers: ArrayLike,
    service_time: ArrayLike,
    scv: ArrayLike,
    *,
    arrival_scv: ArrayLike = 1.0,
) -> FloatArray:
    """
    ``P(T > t)`` of the M/G/c response time (see :meth:`Station.response_sf`), batched.

    All arguments broadcast together (numpy rules); the station parameters may differ per
    element, deterministic (scv below 1e-10) and gamma service mixed.

    Args:
        t: times, at least 0 (may be ``inf``).
        rate: arrival rates ``λ``, finite, at least 0.
        servers: server counts ``c``, finite, at least 1 (need not be integers).
        service_time: mean service times ``E[S]``, finite, greater than 0.
        scv: service-time scvs, finite, at least 0.
        arrival_scv: inter-arrival scvs, as for :func:`mgc_mean_response`.

    Returns:
        The survival probabilities (float64, the broadcast shape); 1 where
        ``rate >= servers / service_time`` (unstable: the response time is unbounded).
    """
    shape, sf, _ = _batch_sf_pdf(t, rate, servers, service_time, scv, True, False, arrival_scv)
    assert sf is not None
    return sf.reshape(shape)


def mgc_response_pdf(
    t: ArrayLike, rate: ArrayLike, servers: ArrayLike, service_time: ArrayLike, scv: ArrayLike
) -> FloatArray:
    """
    Density of the M/G/c response time (see :meth:`Station.response_pdf`), batched.

    For deterministic service the point mass ``1 - C`` at the service time is left out.
    Arguments as for :func:`mgc_response_sf`.

    Returns:
        The densities (float64, the broadcast shape); 0 where ``rate >= servers/service_time``.
    """
    shape, _, pdf = _batch_sf_pdf(t, rate, servers, service_time, scv, False, True)
    assert pdf is not None
    return pdf.reshape(shape)


def mgc_response_sf_pdf(
    t: ArrayLike, rate: ArrayLike, servers: ArrayLike, service_time: ArrayLike, scv: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """
    :func:`mgc_response_sf` and :func:`mgc_response_pdf` at the same points, in one pass.

    Erlang C, the wait term and the Poisson log-mass are computed once for both (about half
    the work of the two calls).  Arguments as for :func:`mgc_response_sf`.

    Returns:
        ``(sf, pdf)``, each float64 of the broadcast shape; ``(1, 0)`` where unstable.
    """
    shape, sf, pdf = _batch_sf_pdf(t, rate, servers, service_time, scv, True, True)
    assert sf is not None
    assert pdf is not None
    return sf.reshape(shape), pdf.reshape(shape)


def mgc_wait(
    rate: ArrayLike,
    servers: ArrayLike,
    service_time: ArrayLike,
    scv: ArrayLike,
    *,
    arrival_scv: ArrayLike = 1.0,
) -> tuple[FloatArray, FloatArray]:
    """
    The load-dependent part of the M/G/c response time, batched: the wait's weight ``A`` and
    rate ``η`` (``P(W > t) = A·e^(−ηt)``; module docstring), with ``A/η`` Allen–Cunneen's mean
    wait ``C/(cμ − λ)·(ca² + scv)/2``; for M/M/c, Erlang C and ``cμ − λ``.

    Computed once per rate, they give the mean (``A/η + E[S]``) and, through
    :func:`mgc_response_sf_pdf_given_wait`, the distribution at any number of times.  Arguments
    as for :func:`mgc_mean_response`.

    Returns:
        ``(A, η)``, float64 of the broadcast shape; nan where ``rate >= servers/service_time``.
    """
    parameters = _batch_parameters(rate, servers, service_time, scv, arrival_scv)
    shape, flat = _batch_flat(*parameters)
    p_wait, theta, unstable = _batch_wait(*flat)
    _fill(p_wait, unstable, math.nan)
    _fill(theta, unstable, math.nan)
    return p_wait.reshape(shape), theta.reshape(shape)


def _given_wait(
    t: FloatArray,
    p_wait: FloatArray,
    theta: FloatArray,
    service_time: FloatArray,
    scv: FloatArray,
    want_pdf: bool,
) -> tuple[FloatArray, FloatArray | None]:
    shape = t.shape
    p_wait, theta = p_wait.reshape(-1), theta.reshape(-1)
    unstable: npt.NDArray[np.bool_] | None = np.isnan(p_wait)
    if unstable is not None and unstable.any():  # evaluated idle, then filled as unstable
        p_wait, theta = np.where(unstable, 0.0, p_wait), np.where(unstable, 1.0, theta)
    else:
        unstable = None
    sf, pdf = _sf_pdf(
        t.reshape(-1),
        p_wait,
        theta,
        service_time.reshape(-1),
        scv.reshape(-1),
        want_sf=True,
        want_pdf=want_pdf,
    )
    assert sf is not None
    _fill(sf, unstable, 1.0)
    if pdf is not None:
        _fill(pdf, unstable, 0.0)
        pdf = pdf.reshape(shape)
    return sf.reshape(shape), pdf


def mgc_response_sf_given_wait(
    t: FloatArray, p_wait: FloatArray, theta: FloatArray, service_time: FloatArray, scv: FloatArray
) -> FloatArray:
    """
    :func:`mgc_response_sf` from the stations' :func:`mgc_wait` (no Erlang C to compute).

    All arguments are float64 arrays of one shape, not validated (inner loops: the station
    fits, the sampling covariance); ``t`` at least 0.  1 where ``p_wait`` is nan (unstable).
    """
    return _given_wait(t, p_wait, theta, service_time, scv, False)[0]


def mgc_response_sf_pdf_given_wait(
    t: FloatArray, p_wait: FloatArray, theta: FloatArray, service_time: FloatArray, scv: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """
    :func:`mgc_response_sf_pdf` from the stations' :func:`mgc_wait`; arguments as for
    :func:`mgc_response_sf_given_wait`.  ``(1, 0)`` where ``p_wait`` is nan (unstable).
    """
    sf, pdf = _given_wait(t, p_wait, theta, service_time, scv, True)
    assert pdf is not None
    return sf, pdf


def mgc_response_truncated_mean_given_wait(
    t: FloatArray, p_wait: FloatArray, theta: FloatArray, service_time: FloatArray, scv: FloatArray
) -> FloatArray:
    """
    ``E[min(T, t)] = ∫₀ᵗ P(T > u) du`` of the M/G/c response time, in closed form, from the
    stations' :func:`mgc_wait`.

    With ``T = S + W``, ``W`` 0 with probability ``1 - C`` and else exponential of rate ``θ``:
    ``E[min(T, t)] = t·P(S ≥ t) + E[S; S < t] + C·(P(S < t) - w(t))/θ``, where ``w`` is the
    wait term of :func:`_gamma_sf_pdf` and, for gamma service, ``E[S; S < t] = E[S]·P(k+1, βt)``
    (``P`` the regularised lower incomplete gamma function).  Arguments as for
    :func:`mgc_response_sf_given_wait` (one shape, not validated); nan where ``p_wait`` is nan.
    """
    shape = t.shape
    t, p_wait, theta, s, v = (x.reshape(-1) for x in (t, p_wait, theta, service_time, scv))
    out = np.empty(t.shape)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
        det = np.flatnonzero(v < _MIN_SCV)
        if det.size:
            td, sd, thd = t[det], s[det], theta[det]
            before = sd < td
            wait = np.where(before, np.exp(-thd * (td - sd)), 0.0)
            out[det] = np.where(before, sd, td) + p_wait[det] * (before - wait) / thd
        gam = np.flatnonzero(v >= _MIN_SCV)
        if gam.size:
            tg, sg, vg, thg = t[gam], s[gam], v[gam], theta[gam]
            k, beta = 1.0 / vg, 1.0 / (vg * sg)
            y = beta * tg
            wait, log_pmf = _gamma_wait(tg, thg, k, beta, y)
            above = _gamma_service_sf(k, y, log_pmf)
            below_mean = sg * special.gammainc(k + 1.0, y)
            out[gam] = tg * above + below_mean + p_wait[gam] * ((1.0 - above) - wait) / thg
    out[np.isnan(p_wait)] = np.nan
    return out.reshape(shape)


def mgc_response_quantile(
    p: ArrayLike,
    rate: ArrayLike,
    servers: ArrayLike,
    service_time: ArrayLike,
    scv: ArrayLike,
    *,
    arrival_scv: ArrayLike = 1.0,
) -> FloatArray:
    """
    M/G/c response-time quantile (see :meth:`Station.response_quantile`), batched.

    Vectorised safeguarded Newton–bisection (closed form for deterministic service), to a
    relative tolerance of 1e-12; unstable elements are not iterated.

    Args:
        p: probabilities in (0, 1).
        rate: arrival rates ``λ``, finite, at least 0.
        servers: server counts ``c``, finite, at least 1 (need not be integers).
        service_time: mean service times ``E[S]``, finite, greater than 0.
        scv: service-time scvs, finite, at least 0.
        arrival_scv: inter-arrival scvs, as for :func:`mgc_mean_response`.

    Returns:
        The quantiles (float64, the broadcast shape); ``inf`` where
        ``rate >= servers / service_time``.
    """
    probs = _batch_argument(p, "p", "a probability in (0, 1)", 0.0, strict=True, high=1.0)
    parameters = _batch_parameters(rate, servers, service_time, scv, arrival_scv)
    shape, (probs, rate_, servers_, service_time_, scv_, arrival_) = _batch_flat(probs, *parameters)
    p_wait, theta, unstable = _batch_wait(rate_, servers_, service_time_, scv_, arrival_)
    q = 1.0 - probs
    if unstable is None:
        return _response_isf(q, p_wait, theta, service_time_, scv_).reshape(shape)
    out = np.full(q.shape, np.inf)
    stable = np.flatnonzero(~np.broadcast_to(unstable, q.shape))
    if stable.size:
        out[stable] = _response_isf(
            q[stable],
            _sub(p_wait, stable),
            _sub(theta, stable),
            _sub(service_time_, stable),
            _sub(scv_, stable),
        )
    return out.reshape(shape)


# --------------------------------------------------------------------------- stations


@dataclass(frozen=True)
class QueueMetrics:
    """
    Steady-state figures of one station at one arrival rate (times in the caller's unit).

    Attributes:
        servers: number of servers ``c``.
        arrival_rate: arrival rate ``λ``.
        service_time: mean service time ``E[S]``.
        scv: squared coefficient of variation of the service time.
        utilization: ``λ·E[S] / c``.
        p_wait: probability that a request waits (Erlang C).
        mean_wait: mean time in queue (Allen–Cunneen; exact for M/M/c).
        mean_response: mean wait plus mean service time.
        percentiles: response-time percentiles, keyed by percent (e.g. ``99.0``).
    """

    servers: float
    arrival_rate: float
    service_time: float
    scv: float
    utilization: float
    p_wait: float
    mean_wait: float
    mean_response: float
    percentiles: dict[float, float]


@dataclass(frozen=True)
class Station:
    """
    A multi-server FCFS queue with Poisson arrivals: M/G/c, approximated as the module says.

    Attributes:
        servers: number of servers ``c`` (slots), at least 1; normally an integer, but a real
            value is accepted (the formulas are smooth in ``c``, which helps fitting).
        service_time: mean service time ``E[S]``, greater than 0.
        scv: squared coefficient of variation of the service time ``Var[S] / E[S]²``, at
            least 0: 1 is exponential (exact M/M/c), 0 deterministic.  The response-time
            distribution models ``S`` as gamma with this mean and scv; below 1e-10 ``S`` is
            treated as deterministic (its standard deviation is then below 1e-5 of its mean).
    """

    servers: float
    service_time: float
    scv: float = 1.0

    def __post_init__(self) -> None:
        """
        Validate the parameters and store them as floats.
        """
        checks: tuple[tuple[str, float, float, bool], ...] = (
            ("servers", self.servers, 1.0, True),
            ("service_time", self.service_time, 0.0, False),
            ("scv", self.scv, 0.0, True),
        )
        for name, value, minimum, inclusive in checks:
            requirement = f"a finite number {'>=' if inclusive else '>'} {minimum:g}"
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} must be {requirement}, got {value!r}") from exc
            above = number >= minimum if inclusive else number > minimum
            if not (math.isfinite(number) and above):
                raise ValueError(f"{name} must be {requirement}, got {value!r}")
            object.__setattr__(self, name, number)

    # ----------------------------------------------------------------- parameters

    @property
    def max_rate(self) -> float:
        """
        The service capacity ``c / E[S]``: the queue is stable only for arrival rates below it.
        """
        return self.servers / self.service_time

    @property
    def _parameters(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """
        ``(servers, service_time, scv)`` as 0-d float64 arrays, for the batch kernels.
        """
        return np.asarray(self.servers), np.asarray(self.service_time), np.asarray(self.scv)

    def _rates(self, rate: object, *, stable: bool = True) -> FloatArray:
        """
        Validate arrival rates.

        Args:
            rate: the caller's ``rate`` argument.
            stable: whether to require rates below :attr:`max_rate`.

        Returns:
            The rates as a float64 array.
        """
        rates = _real_array(rate, "rate")
        _require(rates, ~(np.isfinite(rates) & (rates >= 0.0)), "rate", "a finite rate >= 0")
        if stable:
            unstable = (rates >= self.max_rate) | (rates * self.service_time >= self.servers)
            if np.any(unstable):
                bad = float(rates[unstable].flat[0])
                raise UnstableQueueError(
                    f"unstable queue: arrival rate {bad:g} is not below the service capacity "
                    f"{self.max_rate:g} ({self.servers:g} servers / service time "
                    f"{self.service_time:g}); the queue is stable only for arrival rates below "
                    f"{self.max_rate:g}"
                )
        return rates

    def _wait_parameters(self, rates: FloatArray) -> tuple[FloatArray, FloatArray]:
        """
        The wait's weight and rate ``(A, η)`` (module docstring), on flat stable rates.

        Args:
            rates: arrival rates, each below :attr:`max_rate`.

        Returns:
            ``(A, η)``: ``P(W > t) = A·e^(−ηt)``; ``A/η`` is Allen–Cunneen's mean wait.
        """
        servers, service_time, scv = self._parameters
        return _wait_parameters(rates * service_time, servers, service_time, scv)

    # ----------------------------------------------------------------- means

    @overload
    def utilization(self, rate: float) -> float: ...
    @overload
    def utilization(self, rate: AnyArray) -> FloatArray: ...
    @overload
    def utilization(self, rate: float | AnyArray) -> float | FloatArray: ...
    def utilization(self, rate: float | AnyArray) -> float | FloatArray:
        """
        Server utilization ``λ·E[S] / c``.

        Does not check stability: at or above :attr:`max_rate` it is the offered utilization ≥ 1.

        Args:
            rate: arrival rate ``λ``, at least 0.

        Returns:
            The utilization.
        """
        scalar = _is_scalar(rate)
        rates = self._rates(rate, stable=False)
        shape, (flat,) = _flatten(rates)
        return _result(flat * self.service_time / self.servers, shape, scalar)

    @overload
    def p_wait(self, rate: float) -> float: ...
    @overload
    def p_wait(self, rate: AnyArray) -> FloatArray: ...
    @overload
    def p_wait(self, rate: float | AnyArray) -> float | FloatArray: ...
    def p_wait(self, rate: float | AnyArray) -> float | FloatArray:
        """
        Probability that a request waits: Erlang C (exact for M/M/c, the usual M/G/c estimate).

        Args:
            rate: arrival rate ``λ``, at least 0 and below :attr:`max_rate`.

        Returns:
            The probability of waiting (0 at rate 0).

        Raises:
            UnstableQueueError: when ``rate >= max_rate``.
        """
        scalar = _is_scalar(rate)
        shape, (rates,) = _flatten(self._rates(rate))
        servers, service_time, _ = self._parameters
        return _result(_erlang_c(servers, rates * service_time), shape, scalar)

    def wait_isf(self, probability: float, rate: float) -> float:
        """
        The wait exceeded with ``probability``: ``P(W > t) = A·e^(−ηt)``, so ``t = ln(A/p)/η``
        (0 when ``A`` is at most ``probability``).

        Args:
            probability: in (0, 1).
            rate: arrival rate ``λ`` (a scalar), at least 0 and below :attr:`max_rate`.

        Raises:
            UnstableQueueError: when ``rate >= max_rate``.
        """
        if not (isinstance(probability, int | float) and 0.0 < probability < 1.0):
            raise ValueError(f"probability must be in (0, 1), got {probability!r}")
        if not _is_scalar(rate):
            raise ValueError(f"rate must be a single number, got {rate!r}")
        _, (rates,) = _flatten(self._rates(rate))
        p_wait, theta = self._wait_parameters(rates)
        c, th = float(p_wait[0]), float(theta[0])
        return math.log(c / probability) / th if c > probability else 0.0

    @overload
    def mean_wait(self, rate: float) -> float: ...
    @overload
    def mean_wait(self, rate: AnyArray) -> FloatArray: ...
    @overload
    def mean_wait(self, rate: float | AnyArray) -> float | FloatArray: ...
    def mean_wait(self, rate: float | AnyArray) -> float | FloatArray:
        """
        Mean time in queue, Allen–Cunneen: ``C / (cμ - λ) · (1 + scv) / 2`` (exact for M/M/c).

        Args:
            rate: arrival rate ``λ``, at least 0 and below :attr:`max_rate`.

        Returns:
            The mean wait (0 at rate 0).

        Raises:
            UnstableQueueError: when ``rate >= max_rate``.
        """
        scalar = _is_scalar(rate)
        shape, (rates,) = _flatten(self._rates(rate))
        p_wait, theta = self._wait_parameters(rates)
        return _result(p_wait / theta, shape, scalar)

    @overload
    def mean_response(self, rate: float) -> float: ...
    @overload
    def mean_response(self, rate: AnyArray) -> FloatArray: ...
    @overload
    def mean_response(self, rate: float | AnyArray) -> float | FloatArray: ...
    def mean_response(self, rate: float | AnyArray) -> float | FloatArray:
        """
        Mean response time: mean wait plus mean service time.

        Args:
            rate: arrival rate ``λ``, at least 0 and below :attr:`max_rate`.

        Returns:
            The mean response time (``service_time`` at rate 0).

        Raises:
            UnstableQueueError: when ``rate >= max_rate``.
        """
        scalar = _is_scalar(rate)
        shape, (rates,) = _flatten(self._rates(rate))
        p_wait, theta = self._wait_parameters(rates)
        _, service_time, _ = self._parameters
        return _result(_mean_response(p_wait, theta, service_time), shape, scalar)

    # ----------------------------------------------------------------- distribution

    @overload
    def response_sf(self, t: float, rate: float) -> float: ...
    @overload
    def response_sf(self, t: AnyArray, rate: float | AnyArray) -> FloatArray: ...
    @overload
    def response_sf(self, t: float, rate: AnyArray) -> FloatArray: ...
    @overload
    def response_sf(self, t: float | AnyArray, rate: float | AnyArray) -> float | FloatArray: ...
    def response_sf(self, t: float | AnyArray, rate: float | AnyArray) -> float | FloatArray:
        """
        ``P(T > t)``: the probability that the response time (wait + service) exceeds ``t``.

        ``T = W + S`` (FCFS): ``W = 0`` with probability ``1 - A``, else exponential with the
        tail's exact rate ``η`` (``A = C·η/θ``: the mean is Allen–Cunneen's); ``S`` gamma
        with mean ``service_time`` and shape ``1/scv``.  For ``scv = 1`` this is the exact M/M/c
        response-time distribution.

        Args:
            t: time, at least 0 (may be ``inf``).
            rate: arrival rate ``λ``, at least 0 and below :attr:`max_rate`.

        Returns:
            The survival probability, in [0, 1], broadcast over ``t`` and ``rate``.

        Raises:
            UnstableQueueError: when ``rate >= max_rate``.
        """
        scalar = _is_scalar(t, rate)
        times = _real_array(t, "t")
        _require(times, times < 0.0, "t", "a time >= 0")
        rates = self._rates(rate)
        shape, (times, rates) = _flatten(times, rates)
        p_wait, theta = self._wait_parameters(rates)
        _, service_time, scv = self._parameters
        return _result(_response_sf(times, p_wait, theta, service_time, scv), shape, scalar)

    def response_pdf(self, t: AnyArray, rate: AnyArray) -> FloatArray:
        """
        Density of the response time at ``t`` (arrays, broadcast; the continuous part only).

        For deterministic service ``T`` has a point mass ``1 - C`` at the service time, which
        this density leaves out.

        Args:
            t: times, at least 0.
            rate: arrival rates, at least 0 and below :attr:`max_rate`.

        Returns:
            The density, broadcast over ``t`` and ``rate``.

        Raises:
            UnstableQueueError: when a rate is at or above ``max_rate``.
        """
        times = _real_array(t, "t")
        _require(times, times < 0.0, "t", "a time >= 0")
        rates = self._rates(rate)
        shape, (times, rates) = _flatten(times, rates)
        p_wait, theta = self._wait_parameters(rates)
        _, service_time, scv = self._parameters
        _, pdf = _sf_pdf(times, p_wait, theta, service_time, scv, want_sf=False)
        assert pdf is not None
        return pdf.reshape(shape)

    @overload
    def response_quantile(self, p: float, rate: float) -> float: ...
    @overload
    def response_quantile(self, p: AnyArray, rate: float | AnyArray) -> FloatArray: ...
    @overload
    def response_quantile(self, p: float, rate: AnyArray) -> FloatArray: ...
    @overload
    def response_quantile(
        self, p: float | AnyArray, rate: float | AnyArray
    ) -> float | FloatArray: ...
    def response_quantile(self, p: float | AnyArray, rate: float | AnyArray) -> float | FloatArray:
        """
        Response-time quantile: the smallest ``t`` with ``P(T ≤ t) ≥ p``.

        Inverts :meth:`response_sf` by a vectorised safeguarded Newton–bisection iteration on
        whole arrays (no per-element Python loop; closed form for deterministic service), to a
        relative tolerance of 1e-12.  The result is never below the service-time quantile and is
        increasing in ``p`` and in ``rate``.

        Args:
            p: probability in (0, 1), e.g. 0.99 for the 99th percentile.
            rate: arrival rate ``λ``, at least 0 and below :attr:`max_rate`.

        Returns:
            The quantile, broadcast over ``p`` and ``rate``.

        Raises:
            UnstableQueueError: when ``rate >= max_rate``.
        """
        scalar = _is_scalar(p, rate)
        probs = _real_array(p, "p")
        _require(probs, ~((probs > 0.0) & (probs < 1.0)), "p", "a probability in (0, 1)")
        rates = self._rates(rate)
        shape, (probs, rates) = _flatten(probs, rates)
        p_wait, theta = self._wait_parameters(rates)
        _, service_time, scv = self._parameters
        quantiles = _response_isf(1.0 - probs, p_wait, theta, service_time, scv)
        return _result(quantiles, shape, scalar)

    # ----------------------------------------------------------------- summaries

    def metrics(
        self, rate: float, percentiles: Sequence[float] = (50.0, 95.0, 99.0)
    ) -> QueueMetrics:
        """
        All steady-state figures at one arrival rate.

        At rate 0 the figures are those of service alone (no wait).

        Args:
            rate: arrival rate ``λ`` (a scalar), at least 0 and below :attr:`max_rate`.
            percentiles: response-time percentiles to report, in percent, each in (0, 100).

        Returns:
            The metrics; ``percentiles`` maps each asked percent (as a float) to its time, and
            the times never decrease with the percent.

        Raises:
            UnstableQueueError: when ``rate >= max_rate``.
        """
        if not _is_scalar(rate):
            raise ValueError(f"rate must be a single number, got {rate!r}")
        rates = self._rates(rate)
        percents = _real_array(list(percentiles), "percentiles")
        _require(percents, ~((percents > 0.0) & (percents < 100.0)), "percentiles", "in (0, 100)")
        _, (rates,) = _flatten(rates)
        p_wait, theta = self._wait_parameters(rates)
        servers, service_time, scv = self._parameters
        order = np.argsort(percents)
        times = np.empty_like(percents)
        if percents.size:
            sorted_q = 1.0 - percents[order] / 100.0
            solved = _response_isf(
                sorted_q, np.asarray(p_wait[0]), np.asarray(theta[0]), service_time, scv
            )
            times[order] = np.maximum.accumulate(solved)
        return QueueMetrics(
            servers=self.servers,
            arrival_rate=float(rates[0]),
            service_time=self.service_time,
            scv=self.scv,
            utilization=float(rates[0]) * self.service_time / self.servers,
            p_wait=float(_erlang_c(servers, rates * service_time)[0]),
            mean_wait=float(p_wait[0] / theta[0]),
            mean_response=float(_mean_response(p_wait, theta, service_time)[0]),
            percentiles={float(pc): float(tm) for pc, tm in zip(percents, times, strict=True)},
        )

    @overload
    def max_rate_for(self, latency: float, percentile: float | None = None) -> float: ...
    @overload
    def max_rate_for(self, latency: AnyArray, percentile: float | None = None) -> FloatArray: ...
    @overload
    def max_rate_for(
        self, latency: float | AnyArray, percentile: float | None = None
    ) -> float | FloatArray: ...
    def max_rate_for(
        self, latency: float | AnyArray, percentile: float | None = None
    ) -> float | FloatArray:
        """
        The largest arrival rate at which the response time stays within ``latency``.

        Bisection on the rate over ``[0, max_rate)`` (the response time increases with the
        rate), vectorised over ``latency``, to 1e-12 of :attr:`max_rate`; the returned rate
        meets the target.  For a percentile the test is ``P(T > latency) ≤ 1 - percentile/100``.

        Args:
            latency: the response-time target, a finite time > 0.
            percentile: the percentile (in percent, in (0, 100)) that must stay within
                ``latency``; None for the mean response time.

        Returns:
            The rate, below :attr:`max_rate`; 0 when even service alone misses the target.
        """
        scalar = _is_scalar(latency)
        targets = _real_array(latency, "latency")
        _require(targets, ~(np.isfinite(targets) & (targets > 0.0)), "latency", "a finite time > 0")
        shape, (targets,) = _flatten(targets)
        _, service_time, scv = self._parameters
        meets: Callable[[FloatArray], npt.NDArray[np.bool_]]
        if percentile is None:

            def meets(rates: FloatArray) -> npt.NDArray[np.bool_]:
                p_wait, theta = self._wait_parameters(rates)
                return np.asarray(_mean_response(p_wait, theta, service_time) <= targets)

        else:
            if not (isinstance(percentile, int | float) and 0.0 < percentile < 100.0):
                raise ValueError(f"percentile must be a percent in (0, 100), got {percentile!r}")
            q = 1.0 - float(percentile) / 100.0

            def meets(rates: FloatArray) -> npt.NDArray[np.bool_]:
                p_wait, theta = self._wait_parameters(rates)
                sf = _response_sf(targets, p_wait, theta, service_time, scv)
                return np.asarray(sf <= q)

        lo = np.zeros_like(targets)
        hi = np.full_like(targets, self.max_rate)
        feasible = meets(lo)
        while np.any(hi - lo > _RATE_RTOL * self.max_rate):
            mid = 0.5 * (lo + hi)
            ok = meets(mid)
            lo = np.where(ok, mid, lo)
            hi = np.where(ok, hi, mid)
        return _result(np.where(feasible, lo, 0.0), shape, scalar)


def own_queue_wait_rate(theta: ArrayLike, node_rate: float, pool_rate: float) -> FloatArray:
    """
    The rate of the exponential wait of a request that waits in its own node's queue, where the
    pool's one queue would make it wait at rate ``theta`` (e.g. :attr:`PooledQueue.wait_station`'s
    ``θ`` of :func:`mgc_wait`): least connections as nginx's ``least_conn`` and LVS's ``wlc``
    count them, the fewest open requests per weight, weights in proportion to the nodes'
    service rates.

    In one queue a waiting request finds ``K`` ahead of it, about geometric with
    ``P(K ≥ k) = exp(−k·θ/M)`` (``M`` the pool's service rate, ``pool_rate``: ``K + 1``
    departures at rate ``M`` make the wait of rate ``θ``).  Least connections spreads the
    requests that wait over the nodes in proportion to their weights, so node i holds a share
    ``μᵢ/M`` of them (``μᵢ``: ``node_rate``) — ``P(Kᵢ ≥ k) = exp(−k·θ/μᵢ)`` — and a request
    sent there waits for ``Kᵢ + 1`` of its own node's departures, at rate ``μᵢ``: an
    exponential wait of rate ``μᵢ·(1 − exp(−θ/μᵢ))``.  Divided by the same expression at
    ``μᵢ = M`` and multiplied by ``θ`` (so that a pool of one node is its own queue), it is
    ``θ`` when the queue is long (``θ ≪ μᵢ``) and less, down to about ``μᵢ``, when it is short:
    a small node's requests wait for one of its own few slots, not for the first of the pool's
    many.  Simulated on the
    lab's pool (``python -m bench.lab.behind --service exp --workers``) it takes the c = 2
    node's fitted capacity from 0.94× its true one (the pool's one queue) to 0.99×.

    Returns:
        float64 of ``theta``'s shape; nan where ``theta`` is nan.
    """
    if not (node_rate > 0 and pool_rate >= node_rate):
        raise ValueError(
            f"need 0 < node_rate <= pool_rate, got node_rate {node_rate!r}, pool_rate {pool_rate!r}"
        )
    th = np.asarray(theta, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        own = node_rate * -np.expm1(-th / node_rate)
        pooled = pool_rate * -np.expm1(-th / pool_rate)
        out: FloatArray = np.where(th > 0, th * own / np.where(th > 0, pooled, 1.0), th)
    return out


@dataclass(frozen=True)
class PooledQueue:
    """
    One FCFS queue feeding several stations' slots: a balancer that holds each node to its
    slots (HAProxy's ``maxconn``) and queues the rest, a request taking the first slot free.

    The wait is that of one M/G/c (:attr:`wait_station`): ``Σ slotsᵢ`` servers, the nodes'
    service rates ``μᵢ = serversᵢ / service_timeᵢ`` added up (so the mean service time is
    ``Σ slotsᵢ / Σ μᵢ``), and the throughput-weighted scv ``Σ (μᵢ/Σμ)·scvᵢ``: while every
    slot is busy the queue drains through the nodes' own departure processes, whose variance
    adds up, so the spread of the nodes' mean service times adds no variability to the wait.
    A request's own service is its node's, node i taking the share ``μᵢ / Σμ`` (the share
    while every slot is busy, the loads that matter for a tail).  Exact for identical
    exponential nodes; for the unequal pool of ``tests/models/test_queueing.py`` the wait tail
    is within its simulation's noise up to 90% utilization.

    Attributes:
        stations: per node ``(servers, service_time, scv)``, as for :class:`Station`.
        slots: per node, the slots the balancer lets it use (at least 1).
    """

    stations: tuple[tuple[float, float, float], ...]
    slots: tuple[int, ...]
    _rates: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.stations or len(self.stations) != len(self.slots):
            raise ValueError(
                f"one slot count per station, at least one: {len(self.slots)} for "
                f"{len(self.stations)}"
            )
        if any(n < 1 for n in self.slots):
            raise ValueError(f"slots must be at least 1: {list(self.slots)!r}")
        rates = np.array([Station(*station).max_rate for station in self.stations])
        object.__setattr__(self, "_rates", rates)

    @property
    def max_rate(self) -> float:
        """
        The pool's service capacity ``Σ μᵢ``.
        """
        return float(np.sum(self._rates))

    @property
    def rates(self) -> FloatArray:
        """
        Per node, its service rate ``μᵢ = serversᵢ / service_timeᵢ``.
        """
        out: FloatArray = self._rates.copy()
        return out

    @property
    def shares(self) -> FloatArray:
        """
        Per node, its share of the requests while every slot is busy: ``μᵢ / Σ μ``.
        """
        out: FloatArray = self._rates / self.max_rate
        return out

    @property
    def wait_station(self) -> Station:
        """
        The M/G/c whose wait is the pool's.
        """
        slots = float(sum(self.slots))
        scv = float(np.dot(self.shares, [v for _, _, v in self.stations]))
        return Station(slots, slots / self.max_rate, scv)

    def wait_isf(self, probability: float, rate: float) -> float:
        """
        The wait exceeded with ``probability`` at ``rate`` (see :meth:`Station.wait_isf`).
        """
        return self.wait_station.wait_isf(probability, rate)

    def response_sf(self, t: float, rate: float) -> float:
        """
        ``P(T > t)`` at ``rate``: the pool's wait plus the serving node's service time.
        """
        station = self.wait_station
        rates = station._rates(rate)
        _, (rates,) = _flatten(rates)
        p_wait, theta = station._wait_parameters(rates)
        service = np.array(self.slots, dtype=np.float64) / self._rates
        scv = np.array([v for _, _, v in self.stations], dtype=np.float64)
        times = np.full(len(self.slots), float(t))
        tails = _response_sf(
            times,
            np.broadcast_to(p_wait, times.shape),
            np.broadcast_to(theta, times.shape),
            service,
            scv,
        )
        return float(np.dot(self.shares, tails))

    def max_rate_for(self, latency: float, percentile: float) -> float:
        """
        The largest rate at which ``P(T > latency) ≤ 1 − percentile/100`` (bisection to 1e-12
        of :attr:`max_rate`, the rate returned meets it); 0 when service alone misses it.
        """
        if not (math.isfinite(latency) and latency > 0):
            raise ValueError(f"latency must be a finite time > 0, got {latency!r}")
        if not (0.0 < percentile < 100.0):
            raise ValueError(f"percentile must be a percent in (0, 100), got {percentile!r}")
        q = 1.0 - percentile / 100.0
        top = self.max_rate
        if self.response_sf(latency, 0.0) > q:
            return 0.0
        lo, hi = 0.0, top
        while hi - lo > _RATE_RTOL * top:
            mid = 0.5 * (lo + hi)
            if self.response_sf(latency, mid) > q:
                hi = mid
            else:
                lo = mid
        return lo
