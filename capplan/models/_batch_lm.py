"""
Levenberg–Marquardt for many small, independent least-squares problems at once.

``scipy.optimize.least_squares`` solves one problem per call; fitting 10,000 nodes one call at a
time spends most of its time in Python.  Here the problems share one NumPy evaluation per step:
each node keeps its own damping, accepts or rejects its own step and stops on its own
convergence test, and only the nodes still moving are evaluated again.  This is the classic
Marquardt iteration (Marquardt 1963, with Nielsen's diagonal scaling), written for arrays of
problems; it is not a general replacement for scipy's solvers, and the per-node path
(``capplan.models.fit.fit_node``) stays on ``least_squares`` as the reference it is checked
against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BatchResult", "batched_lm"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: ``fun(x, idx)``: residuals of problems ``idx`` at parameters ``x`` (one row per problem),
#: shape (len(idx), m); nan marks a residual that does not exist (ragged data) and counts as 0.
Residuals = Callable[[FloatArray, IntArray], FloatArray]


@dataclass(frozen=True)
class BatchResult:
    """
    Solutions of a batch: parameters, residuals and Jacobian at the solution, per problem.
    """

    x: FloatArray  # (n, k)
    residuals: FloatArray  # (n, m), nan-free
    jacobian: FloatArray  # (n, m, k)
    cost: FloatArray  # (n,) sum of squared residuals
    iterations: IntArray  # (n,)
    converged: npt.NDArray[np.bool_]  # (n,)


def _clean(r: FloatArray) -> FloatArray:
    return np.where(np.isfinite(r), r, 0.0)


def _jacobian(
    fun: Residuals,
    x: FloatArray,
    idx: IntArray,
    r: FloatArray,
    rel_step: float,
    hi: FloatArray | None = None,
) -> FloatArray:
    """
    Forward differences, one evaluation per parameter for all problems at once (backward
    where a forward step would cross an upper bound).
    """
    n, k = x.shape
    jac = np.empty((n, r.shape[1], k))
    for j in range(k):
        h = rel_step * np.maximum(np.abs(x[:, j]), 1.0)
        if hi is not None:
            h = np.where(x[:, j] + h > hi[j], -h, h)
        xh = x.copy()
        xh[:, j] += h
        jac[:, :, j] = (_clean(fun(xh, idx)) - r) / h[:, None]
    return jac


def batched_lm(
    fun: Residuals,
    x0: FloatArray,
    *,
    max_iter: int = 100,
    ftol: float = 1e-10,
    xtol: float = 1e-10,
    gtol: float = 1e-10,
    rel_step: float = 1.5e-8,
    lower: FloatArray | None = None,
    upper: FloatArray | None = None,
    final_jacobian: bool = True,
) -> BatchResult:
    """
    Minimise each problem's sum of squared residuals from its own starting point.

    Args:
        fun: Residual function over a subset of problems (see ``Residuals``).
        x0: Starting points, shape (n, k).
        max_iter: Most Jacobian evaluations per problem.
        ftol: Stop a problem when an accepted step lowers its cost by less than this share.
        xtol: Stop a problem when its step is below this share of its parameters' size.
        gtol: Stop a problem when its gradient is below this share of its cost.
        rel_step: Relative step of the forward-difference Jacobian.
        lower: Lower bounds per parameter (shape (k,)); a step is projected onto the box, so
            a parameter whose optimum lies on its bound ends exactly on it.
        upper: Upper bounds per parameter (shape (k,)).
        final_jacobian: Evaluate the Jacobian at the solutions (False: ``jacobian`` is the one
            of each problem's last iteration, which a caller that wants only ``x`` need not
            pay k more evaluations for).

    Returns:
        The solutions; ``converged`` is False for a problem that hit ``max_iter`` or whose
        damping ran away (no step lowers its cost).
    """
    x = np.array(x0, dtype=np.float64, copy=True)
    n, k = x.shape
    lo = np.full(k, -np.inf) if lower is None else np.asarray(lower, dtype=np.float64)
    hi = np.full(k, np.inf) if upper is None else np.asarray(upper, dtype=np.float64)
    x = np.clip(x, lo, hi)
    every = np.arange(n)
    r = _clean(fun(x, every))
    cost = np.einsum("ij,ij->i", r, r)
    mu = np.full(n, 1e-3)
    iterations = np.zeros(n, dtype=np.intp)
    converged = np.zeros(n, dtype=bool)
    jac = np.zeros((n, r.shape[1], k))
    active = every
    eye = np.eye(k)
    for _ in range(max_iter):
        if active.size == 0:
            break
        xa, ra = x[active], r[active]
        ja = _jacobian(fun, xa, active, ra, rel_step, hi)
        jac[active] = ja
        iterations[active] += 1
        a = np.einsum("imk,iml->ikl", ja, ja)
        g = np.einsum("imk,im->ik", ja, ra)
        # Variables held at a bound (the descent direction points out of the box) leave the
        # linear solve: projecting a step computed with them free would crawl.
        held = ((xa <= lo) & (g > 0)) | ((xa >= hi) & (g < 0))
        if np.any(held):
            keep = (~held).astype(np.float64)
            a = a * keep[:, :, None] * keep[:, None, :] + held[:, :, None] * eye
            g = g * keep
        diag = np.maximum(np.einsum("ikk->ik", a), 1e-12)
        # Try a few damping levels in one pass before giving up on this Jacobian.
        accepted = np.zeros(active.size, dtype=bool)
        step = np.zeros_like(xa)
        new_r = ra
        new_cost = cost[active]
        mu_a = mu[active]
        for _attempt in range(6):
            pending = np.flatnonzero(~accepted)
            if pending.size == 0:
                break
            lhs = a[pending] + (mu_a[pending][:, None] * diag[pending])[:, :, None] * eye
            try:
                delta = -np.linalg.solve(lhs, g[pending][:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                delta = -np.einsum("ikl,il->ik", np.linalg.pinv(lhs), g[pending])
            trial = np.clip(xa[pending] + delta, lo, hi)
            delta = trial - xa[pending]
            r_trial = _clean(fun(trial, active[pending]))
            c_trial = np.einsum("ij,ij->i", r_trial, r_trial)
            better = np.isfinite(c_trial) & (c_trial < new_cost[pending])
            good = pending[better]
            accepted[good] = True
            step[good] = delta[better]
            new_r = new_r.copy() if new_r is ra else new_r
            new_r[good] = r_trial[better]
            new_cost[good] = c_trial[better]
            mu_a[pending[better]] = np.maximum(mu_a[pending[better]] / 3.0, 1e-12)
            mu_a[pending[~better]] *= 8.0
        old_cost = cost[active]
        x[active] = xa + step
        r[active] = new_r
        cost[active] = new_cost
        mu[active] = mu_a
        small_f = accepted & (old_cost - new_cost <= ftol * np.maximum(old_cost, 1e-300))
        small_x = accepted & np.all(np.abs(step) <= xtol * (np.abs(xa) + xtol), axis=1)
        # First-order optimality (scipy's gtol test): the gradient is negligible.
        # (g is already projected: a gradient pointing out of the box at a bound is held)
        small_g = np.max(np.abs(g), axis=1) <= gtol * np.maximum(old_cost, 1e-300)
        stuck = ~accepted & (mu_a > 1e10)
        # No step lowers the cost any more: at a minimum up to the precision of the
        # forward-difference Jacobian when the gradient is small on that scale.
        scale = np.maximum(np.max(np.abs(xa), axis=1), 1.0)
        tiny = 1e-6 * np.maximum(old_cost, 1e-300)
        settled = stuck & (np.max(np.abs(g), axis=1) * scale <= tiny)
        ok = small_f | small_x | small_g | settled | (old_cost == 0)
        converged[active[ok]] = True
        done = ok | stuck
        active = active[~done]
    # The Jacobian at the final point (problems that stopped on an accepted step moved after
    # their last Jacobian).
    if final_jacobian:
        jac = _jacobian(fun, x, every, r, rel_step, hi)
    return BatchResult(x, r, jac, cost, iterations, converged)
