"""
The traffic split: how much of a total load Λ each node should take (pure).

Objective ``mean``: minimise the pool's total time in system Σ λᵢ·Rᵢ(λᵢ) subject to Σ λᵢ = Λ
and 0 ≤ λᵢ ≤ capᵢ.  Each term is convex for the models capplan fits, so the optimum is where
every node that carries traffic below its cap has the same marginal cost
mᵢ(λ) = d(λ·Rᵢ(λ))/dλ = ν (KKT).  For a multiplier ν each node's rate λᵢ(ν) — the largest rate
whose marginal cost is at most ν, clipped to [0, capᵢ] — is found by bisection on all nodes
at once, and ν by bisection on Σ λᵢ(ν) = Λ: the work grows linearly with the number of nodes.

Objective ``percentile``: minimise the pool's q-quantile, the smallest t with
Σ (λᵢ/Λ)·P(Tᵢ > t) ≤ 1 − q — the true tail of the pool's requests, not the worst node's.
For a fixed t the best split minimises the tail mass Σ λᵢ·P(Tᵢ(λᵢ) > t), again separable and
solved by the same multiplier bisection; an outer bisection on t finds the smallest t whose
best split meets 1 − q.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from capplan.optimize.curves import PoolCurves

__all__ = ["Split", "pool_quantile", "split_load"]

FloatArray = npt.NDArray[np.float64]

_INNER = 60  # bisection steps on each node's rate, at most
_OUTER = 60  # bisection steps on the multiplier


@dataclass(frozen=True)
class Split:
    """
    A split of the load: per-node rates and shares, and what the pool is predicted to see.
    """

    load_rps: float
    objective: str
    rates: tuple[float, ...]
    shares: tuple[float, ...]
    mean_ms: float
    quantile: float
    quantile_ms: float
    success: bool
    message: str


def _marginal(
    cost: Callable[[FloatArray], FloatArray], rate: FloatArray, cap: FloatArray
) -> FloatArray:
    """
    d cost / d rate per node, by central differences inside [0, cap].
    """
    h = np.maximum(1e-7 * cap, 1e-12)
    lo = np.maximum(rate - h, 0.0)
    hi = np.minimum(rate + h, cap)
    out: FloatArray = (cost(hi) - cost(lo)) / np.maximum(hi - lo, 1e-300)
    return out


_GRID = 64  # points per node of the marginal-cost table


def _inverse(table_rate: FloatArray, table_m: FloatArray, nu: float) -> FloatArray:
    """
    Per node, the rate where the tabulated (increasing) marginal cost reaches ``nu``: linear
    interpolation in the node's table, clipped to its ends.
    """
    n, k = table_m.shape
    idx = np.count_nonzero(table_m <= nu, axis=1)  # rows are increasing
    rows = np.arange(n)
    hi_i = np.clip(idx, 1, k - 1)
    lo_i = hi_i - 1
    m0, m1 = table_m[rows, lo_i], table_m[rows, hi_i]
    r0, r1 = table_rate[rows, lo_i], table_rate[rows, hi_i]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip((nu - m0) / (m1 - m0), 0.0, 1.0)
    rate = np.where(m1 > m0, r0 + frac * (r1 - r0), np.where(m1 <= nu, r1, r0))
    rate = np.where(idx == 0, table_rate[:, 0], rate)
    out: FloatArray = np.where(idx >= k, table_rate[:, -1], rate)
    return out


def _exact_rates(
    nu: float,
    marginal: Callable[[FloatArray], FloatArray],
    low: FloatArray,
    high: FloatArray,
    cap: FloatArray,
) -> FloatArray:
    """
    Per node, the rate in [low, high] where the marginal cost reaches ``nu`` (``high`` when
    it stays below, ``low`` when it starts above): Illinois regula falsi on all nodes at once,
    safeguarded by bisection, to 1e-9 of the cap (or to rounding in the marginal cost).
    """
    lo, hi = low.copy(), high.copy()

    def gap(rate: FloatArray) -> FloatArray:
        # 1/ν − 1/m(λ): the same root and sign as m(λ) − ν, but finite at saturation (where m is
        # inf) and nearly linear near it (m grows like 1/(c − A)²), so regula falsi converges
        # in a few steps where on m itself it crawled from one end of the bracket
        with np.errstate(divide="ignore"):
            out: FloatArray = 1.0 / nu - 1.0 / marginal(rate)
        return out

    f_lo, f_hi = gap(lo), gap(hi)
    at_hi, below_lo = f_hi <= 0, f_lo > 0
    side = np.zeros(lo.shape, dtype=np.int8)
    for step in range(_INNER):
        width = hi - lo
        # done: the bracket is narrow, or an end is the root to rounding (regula falsi often
        # lands on the root while the other end still creeps towards it)
        exact = np.minimum(np.abs(f_lo), np.abs(f_hi)) <= 1e-12 / nu
        if np.all((width <= 1e-9 * np.maximum(cap, 1e-300)) | exact | at_hi | below_lo):
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            guess = hi - f_hi * width / (f_hi - f_lo)
        inside = np.isfinite(guess) & (guess > lo) & (guess < hi)
        # every third step bisects, so a stalled side cannot slow the bracket down
        mid = np.where(inside & (step % 3 != 2), guess, 0.5 * (lo + hi))
        f_mid = gap(mid)
        left = f_mid <= 0  # the root is above mid
        lo, f_lo = np.where(left, mid, lo), np.where(left, f_mid, f_lo)
        hi, f_hi = np.where(left, hi, mid), np.where(left, f_hi, f_mid)
        # Illinois: halve the value kept at the end that did not move twice in a row
        f_hi = np.where(left & (side == 1), 0.5 * f_hi, f_hi)
        f_lo = np.where(~left & (side == -1), 0.5 * f_lo, f_lo)
        side = np.where(left, 1, -1).astype(np.int8)
    root = np.where(np.abs(f_lo) <= np.abs(f_hi), lo, hi)
    out: FloatArray = np.where(at_hi, high, np.where(below_lo, low, root))
    return out


def _solve_separable(
    cost: Callable[[FloatArray], FloatArray],
    cap: FloatArray,
    load: float,
    exact_marginal: Callable[[FloatArray], FloatArray] | None = None,
) -> FloatArray:
    """
    Minimise Σ costᵢ(λᵢ) with Σ λᵢ = load, 0 ≤ λᵢ ≤ capᵢ (each costᵢ convex and increasing).

    1. Tabulate each node's marginal cost on a grid of its range (one batched call per point).
    2. Bisect the multiplier ν on the tables' piecewise-linear inverse (no model calls).
    3. Polish: the exact rate of every node at ν, within the grid cell the table points to,
       and a few secant steps on ν until Σ λᵢ(ν) = load.
    """

    def marginal(rate: FloatArray) -> FloatArray:
        if exact_marginal is not None:
            return exact_marginal(rate)
        return _marginal(cost, rate, cap)

    fractions = np.linspace(0.0, 1.0, _GRID)
    table_rate = cap[:, None] * fractions[None, :]
    table_m = np.column_stack([marginal(table_rate[:, j]) for j in range(_GRID)])
    table_m = np.maximum.accumulate(np.where(np.isfinite(table_m), table_m, np.inf), axis=1)
    finite = table_m[np.isfinite(table_m)]
    nu_lo = float(np.min(table_m[:, 0]))
    nu_hi = float(np.max(finite)) if finite.size else nu_lo + 1.0
    for _ in range(_OUTER):
        nu = 0.5 * (nu_lo + nu_hi)
        if _inverse(table_rate, table_m, nu).sum() < load:
            nu_lo = nu
        else:
            nu_hi = nu
        if nu_hi - nu_lo <= 1e-12 * max(abs(nu_hi), 1e-300):
            break
    # Polish with exact rates.  Σ λᵢ(ν) − load is solved for ν from the table's ν: Newton steps
    # on the table's slope until the load is bracketed (one or two exact solves), then Illinois
    # regula falsi.  Each node's exact rate lies in the grid cell its table interpolation falls
    # in, and between its rates at the bracket's ends (λᵢ(ν) is monotone), which keeps every
    # per-node solve short.
    step = cap / (_GRID - 1)

    def cell(nu: float) -> tuple[FloatArray, FloatArray]:
        approx = _inverse(table_rate, table_m, nu)
        return np.maximum(approx - step, 0.0), np.minimum(approx + step, cap)

    def table_slope(nu: float) -> float:
        h = max(1e-6 * abs(nu), 1e-300)
        up = float(_inverse(table_rate, table_m, nu + h).sum())
        down = float(_inverse(table_rate, table_m, nu - h).sum())
        return (up - down) / (2.0 * h)

    tolerance = 1e-10 * max(load, 1e-300)
    nu = 0.5 * (nu_lo + nu_hi)
    low_end: tuple[float, FloatArray, float] | None = None  # (ν, rates, Σ − load ≤ 0)
    high_end: tuple[float, FloatArray, float] | None = None  # (ν, rates, Σ − load > 0)
    side = 0
    for _ in range(100):
        low, high = cell(nu)
        if low_end is not None and low_end[0] <= nu:
            low = np.maximum(low, low_end[1])
        if high_end is not None and high_end[0] >= nu:
            high = np.minimum(high, high_end[1])
        rates = _exact_rates(nu, marginal, low, np.maximum(high, low), cap)
        f = float(rates.sum()) - load
        if f <= 0:
            low_end = (nu, rates, f)
            if side == -1 and high_end is not None:
                high_end = (high_end[0], high_end[1], 0.5 * high_end[2])
            side = -1
        else:
            high_end = (nu, rates, f)
            if side == 1 and low_end is not None:
                low_end = (low_end[0], low_end[1], 0.5 * low_end[2])
            side = 1
        if abs(f) <= tolerance:
            break
        if low_end is not None and high_end is not None:
            (n_lo, r_lo, f_lo), (n_hi, r_hi, f_hi) = low_end, high_end
            if float(r_hi.sum() - r_lo.sum()) <= tolerance or n_hi - n_lo <= 1e-15 * abs(n_hi):
                break
            guess = n_hi - f_hi * (n_hi - n_lo) / (f_hi - f_lo)
            nu = guess if n_lo < guess < n_hi else 0.5 * (n_lo + n_hi)
        else:
            slope = table_slope(nu)
            move = -f / slope if slope > 0 and math.isfinite(slope) else math.nan
            if not math.isfinite(move) or move == 0:
                move = (1.0 if f < 0 else -1.0) * max(1e-6 * abs(nu), 1e-300)
            nu = nu + 1.5 * move  # overshoot a little, to bracket in one step
    if low_end is None or high_end is None:
        # the load sits exactly on a solve (|f| ≤ tolerance) with the other end unknown
        only = low_end or high_end
        assert only is not None
        low_end = high_end = only
    r_lo, r_hi = low_end[1], high_end[1]
    # Close the last gap: the nodes between their bracket ends share it in proportion.
    gap = r_hi - r_lo
    total_gap = float(gap.sum())
    missing = load - float(r_lo.sum())  # (f_lo, f_hi above may be Illinois-scaled)
    rates = r_lo + gap * (missing / total_gap) if total_gap > 0 else r_lo
    out: FloatArray = np.clip(rates, 0.0, cap)
    return out


def pool_quantile(pool: PoolCurves, rates: FloatArray, q: float) -> float:
    """
    The pool's q-quantile: the smallest t with Σ (λᵢ/Λ)·P(Tᵢ > t) ≤ 1 − q.
    """
    load = float(rates.sum())
    if load <= 0:
        return 0.0
    share = rates / load
    used = share > 0

    def tail(t: float) -> float:
        return float(np.sum(share[used] * pool.sf(t, rates)[used]))

    lo, hi = 0.0, float(np.max(pool.quantile(q, rates)[used]))
    if not math.isfinite(hi):
        return math.inf
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if tail(mid) <= 1.0 - q:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-10 * hi:
            break
    return hi


def _summary(
    pool: PoolCurves, rates: FloatArray, load: float, objective: str, q: float, message: str
) -> Split:
    mean = pool.mean(rates)
    used = rates > 0
    pool_mean = float(np.sum(rates[used] * mean[used]) / load) if load > 0 else 0.0
    return Split(
        load_rps=load,
        objective=objective,
        rates=tuple(float(r) for r in rates),
        shares=tuple(float(r / load) if load > 0 else 0.0 for r in rates),
        mean_ms=pool_mean * 1e3,
        quantile=q,
        quantile_ms=pool_quantile(pool, rates, q) * 1e3,
        success=True,
        message=message,
    )


def split_load(
    pool: PoolCurves,
    caps: FloatArray,
    load: float,
    *,
    objective: str = "mean",
    quantile: float = 0.99,
) -> Split:
    """
    The optimal split of ``load`` over the pool.

    Args:
        pool: The nodes' latency curves.
        caps: Per node, the most it may carry (its capacity at the SLO, less headroom).
        load: The total offered rate Λ (requests per second).
        objective: ``mean`` (total time in system) or ``percentile`` (the pool's q-quantile).
        quantile: The SLO's percentile as a fraction (0.99), for ``percentile`` and for the
            prediction reported either way.

    Returns:
        The split; ``success`` is False (rates at the caps) when ``load`` exceeds Σ capᵢ.
    """
    if objective not in ("mean", "percentile"):
        raise ValueError(f"objective must be 'mean' or 'percentile': {objective!r}")
    if not (math.isfinite(load) and load > 0):
        raise ValueError(f"load must be a positive number of requests per second: {load!r}")
    cap = np.minimum(np.asarray(caps, dtype=np.float64), pool.saturation * (1 - 1e-9))
    cap = np.where(np.isfinite(cap) & (cap > 0), cap, 0.0)
    if load > float(cap.sum()):
        summary = _summary(pool, cap, float(cap.sum()), objective, quantile, "")
        return Split(
            load,
            objective,
            summary.rates,
            summary.shares,
            summary.mean_ms,
            quantile,
            summary.quantile_ms,
            False,
            f"{load:.6g} rps is more than the pool can carry within its caps ({cap.sum():.6g} rps)",
        )
    if objective == "mean":

        def total_time(rate: FloatArray) -> FloatArray:
            out: FloatArray = rate * pool.mean(rate)
            return np.where(rate > 0, out, 0.0)

        rates = _solve_separable(total_time, cap, load, pool.marginal_time_in_system)
        return _summary(pool, rates, load, objective, quantile, "equal marginal time in system")

    # percentile: the smallest t whose best split keeps the tail mass within (1 − q)·Λ
    def best_for(t: float) -> tuple[FloatArray, float]:
        def tail_mass(rate: FloatArray) -> FloatArray:
            out: FloatArray = rate * pool.sf(t, rate)
            return out

        rates = _solve_separable(tail_mass, cap, load)
        return rates, float(np.sum(tail_mass(rates))) / load

    start = _solve_separable(lambda r: r * pool.mean(r), cap, load, pool.marginal_time_in_system)
    hi = pool_quantile(pool, start, quantile)
    best, target = start, 1.0 - quantile
    lo, f_lo, f_hi = 0.0, 1.0 - target, best_for(hi)[1] - target
    side = 0
    for _ in range(60):  # Illinois regula falsi on the tail mass of the best split at t
        t = hi - f_hi * (hi - lo) / (f_hi - f_lo) if f_hi != f_lo else 0.5 * (lo + hi)
        if not lo < t < hi:
            t = 0.5 * (lo + hi)
        rates, mass = best_for(t)
        f_t = mass - target
        if f_t <= 0:
            hi, f_hi, best = t, f_t, rates
            if side == -1:
                f_lo *= 0.5
            side = -1
        else:
            lo, f_lo = t, f_t
            if side == 1:
                f_hi *= 0.5
            side = 1
        if hi - lo <= 1e-7 * hi:
            break
    return _summary(pool, best, load, objective, quantile, "smallest pool percentile")
