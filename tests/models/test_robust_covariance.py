"""
The robust covariances of the fits, against their textbook formulas written out window by window.

``station_fit._covariance`` is the cluster-robust CR2 sandwich (Bell and McCaffrey) with each
window's four statistics a cluster; ``scaled_fit._hc2_cov`` is MacKinnon and White's HC2.  Both
are batched over nodes with einsum; here one loop per window says the same thing plainly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capplan.models.scaled_fit import _hc2_cov
from capplan.models.station_fit import _covariance


def _inverse_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return np.asarray(vectors @ np.diag(values**-0.5) @ vectors.T)


def test_cr2_matches_the_formula_window_by_window() -> None:
    rng = np.random.default_rng(7)
    nodes, windows, k = 3, 9, 3
    jac = rng.normal(size=(nodes, 4 * windows, k))
    res = rng.normal(size=(nodes, 4 * windows)) * np.linspace(0.5, 3.0, 4 * windows)
    # a window without its p95 (row 2 of window 4): its residual and Jacobian row are 0
    jac[1, 2 * windows + 4] = 0.0
    res[1, 2 * windows + 4] = 0.0
    cov, dof = _covariance(jac, res)
    for i in range(nodes):
        bread = np.linalg.inv(jac[i].T @ jac[i])
        meat = np.zeros((k, k))
        for w in range(windows):
            rows = [a * windows + w for a in range(4)]  # the layout of _residuals: (stat, window)
            j_w, r_w = jac[i, rows], res[i, rows]
            adjust = _inverse_sqrt(np.eye(4) - j_w @ bread @ j_w.T)
            score = j_w.T @ adjust @ r_w
            meat += np.outer(score, score)
        np.testing.assert_allclose(cov[i], bread @ meat @ bread, rtol=1e-10)
        assert dof[i] == windows - 1


def test_cr2_is_unbounded_with_no_more_windows_than_parameters() -> None:
    rng = np.random.default_rng(8)
    jac = rng.normal(size=(1, 4 * 3, 3))
    res = rng.normal(size=(1, 4 * 3))
    cov, _ = _covariance(jac, res)
    assert np.all(np.isinf(cov))


def test_cr2_is_unbounded_along_a_direction_the_data_do_not_move() -> None:
    """
    A parameter the residuals do not depend on (a zero Jacobian column: the slot count of a
    station measured far below saturation) has infinite variance, not the pseudo-inverse's 0;
    the other parameters keep the covariance they have without it.
    """
    rng = np.random.default_rng(3)
    windows = 12
    jac = rng.normal(size=(1, 4 * windows, 3))
    res = rng.normal(size=(1, 4 * windows))
    jac[0, :, 1] = 0.0
    cov, _ = _covariance(jac, res)
    assert np.all(np.isinf(cov[0, 1, :]))
    assert np.all(np.isinf(cov[0, :, 1]))
    kept = [0, 2]
    alone, _ = _covariance(jac[:, :, kept], res)
    np.testing.assert_allclose(cov[0][np.ix_(kept, kept)], alone[0], rtol=1e-9)


def test_hc2_matches_the_formula_point_by_point() -> None:
    rng = np.random.default_rng(9)
    nodes, points, k = 2, 12, 3
    jac = rng.normal(size=(nodes, points, k))
    res = rng.normal(size=(nodes, points)) * np.linspace(0.2, 2.0, points)
    dof = np.full(nodes, points - k)
    cov = _hc2_cov(jac, res, dof)
    for i in range(nodes):
        bread = np.linalg.inv(jac[i].T @ jac[i])
        leverage = np.einsum("mk,kl,ml->m", jac[i], bread, jac[i])
        meat = (jac[i] * (res[i] ** 2 / (1 - leverage))[:, None]).T @ jac[i]
        np.testing.assert_allclose(cov[i], bread @ meat @ bread, rtol=1e-10)


def test_hc2_is_unbounded_without_degrees_of_freedom() -> None:
    rng = np.random.default_rng(10)
    jac = rng.normal(size=(1, 3, 3))
    cov = _hc2_cov(jac, rng.normal(size=(1, 3)), np.zeros(1, dtype=np.intp))
    assert np.all(np.isinf(cov))


def test_usl_joint_sandwich_is_hc3_window_by_window() -> None:
    """
    ``fit._joint_covariance``: the base fit's score per window and the SLO factor's, each over
    one minus its leverage (the base fit's hat diagonal; the window's weight share), stacked;
    bread ``[[JᵀJ, 0], [−Σ wᵢ ∂ln baseᵢ/∂θ, −Σ wᵢ]]``.  Written out here with a linear base
    curve, whose slope is known exactly.
    """
    from capplan.models.fit import STAT_QUANTILES, _joint_covariance
    from capplan.models.scaled_fit import BaseFits

    rng = np.random.default_rng(11)
    m, k = 14, 2
    rate = np.sort(rng.uniform(1.0, 50.0, size=(1, m)), axis=1)
    theta = np.array([[0.05, 0.002]])

    def base(th: np.ndarray, r: np.ndarray) -> np.ndarray:
        return np.asarray(th[:, :1] + th[:, 1:2] * r)

    jac = rng.normal(size=(1, m, k))
    res = rng.normal(size=(1, m)) * 0.1
    fits = BaseFits(
        theta, np.eye(k)[None], np.array([m - k]), np.array([True]), ("ok",), ("a", "b"),
        base, lambda th: np.full(th.shape[0], np.inf), jac, res,
    )  # fmt: skip
    stats = list(STAT_QUANTILES)
    observed = np.full((1, len(stats), m), np.nan)
    curve = base(theta, rate)[0]
    observed[0, stats.index("p99")] = curve * 3.0 * np.exp(rng.normal(0, 0.05, size=m))
    weight = rng.uniform(0.5, 2.0, size=(1, m))
    factors = np.full((1, len(stats)), np.nan)
    factors[0, stats.index("p99")] = 3.0
    fitted = np.array([stats.index("mean")])
    got = _joint_covariance(fits, theta, rate, observed, weight, fitted, factors, 0.99)
    got = got.covariance[0]

    logs = np.log(observed[0, stats.index("p99")] / curve)
    w = weight[0]
    level = np.sum(w * logs) / np.sum(w)
    j, r = jac[0], res[0]
    jtj_inv = np.linalg.inv(j.T @ j)
    bread = np.zeros((k + 1, k + 1))
    bread[:k, :k] = j.T @ j
    for i in range(m):
        slope = np.array([1.0, rate[0, i]]) / curve[i]  # ∂ ln(a + b·rate) / ∂(a, b)
        bread[k, :k] -= w[i] * slope
    bread[k, k] = -np.sum(w)
    meat = np.zeros((k + 1, k + 1))
    for i in range(m):
        h = j[i] @ jtj_inv @ j[i]
        score = np.concatenate(
            [j[i] * r[i] / (1 - h), [w[i] * (logs[i] - level) / (1 - w[i] / np.sum(w))]]
        )
        meat += np.outer(score, score)
    inv = np.linalg.inv(bread)
    np.testing.assert_allclose(got, inv @ meat @ inv.T, rtol=1e-5)


def _joint_fixture(
    m: int, k: int, seed: int, weight: np.ndarray | None = None
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """
    A ``_Sandwich`` for one node whose base curve is ``k`` columns of a design (a linear curve
    a + b·rate when k = 2, a constant when k = 1), the design, the curve's residuals and the
    p99's log ratios to the curve.
    """
    from capplan.models.fit import STAT_QUANTILES, _joint_covariance
    from capplan.models.scaled_fit import BaseFits

    rng = np.random.default_rng(seed)
    rate = np.sort(rng.uniform(1.0, 50.0, size=(1, m)), axis=1)
    theta = np.array([[0.05, 0.002][:k]])

    def base(th: np.ndarray, r: np.ndarray) -> np.ndarray:
        out = th[:, :1] + (th[:, 1:2] * r if k > 1 else 0.0 * r)
        return np.asarray(out)

    design = np.column_stack([np.ones(m), rate[0]])[:, :k]
    noise = rng.normal(size=m)
    hat = design @ np.linalg.inv(design.T @ design) @ design.T
    res = ((np.eye(m) - hat) @ noise)[None]
    fits = BaseFits(
        theta, np.eye(k)[None], np.array([m - k]), np.array([True]), ("ok",), ("a", "b")[:k],
        base, lambda th: np.full(th.shape[0], np.inf), design[None], res,
    )  # fmt: skip
    stats = list(STAT_QUANTILES)
    observed = np.full((1, len(stats), m), np.nan)
    observed[0, stats.index("p99")] = base(theta, rate)[0] * 3.0 * np.exp(rng.normal(0, 0.05, m))
    w = np.ones((1, m)) if weight is None else weight[None]
    factors = np.full((1, len(stats)), np.nan)
    factors[0, stats.index("p99")] = 3.0
    fitted = np.array([stats.index("mean")])
    sandwich = _joint_covariance(fits, theta, rate, observed, w, fitted, factors, 0.99)
    logs = np.log(observed[0, stats.index("p99")] / base(theta, rate)[0])
    return sandwich, design, res[0], logs


def test_sandwich_dof_of_a_plain_mean_is_windows_minus_one() -> None:
    """
    Satterthwaite's degrees of freedom where they are known exactly: a constant curve, or the
    factor's mean with equal weights, has every window at the same leverage, and the sandwich
    variance is then s²-like on m − 1 degrees of freedom.
    """
    m = 12
    sandwich, *_ = _joint_fixture(m, 1, seed=3)
    curve_only = np.array([[1.0, 0.0]])
    factor_only = np.array([[0.0, 1.0]])
    np.testing.assert_allclose(sandwich.dof(curve_only), [m - 1], rtol=1e-9)
    np.testing.assert_allclose(sandwich.dof(factor_only), [m - 1], rtol=1e-9)


def test_sandwich_dof_matches_the_quadratic_form_written_out() -> None:
    """
    ν = (tr M)² / tr M², M = KKᵀ, K = [diag(a)(I − H)s_ε, diag(b)(I − Q)diag(s_η/√w)], with
    aᵢ and bᵢ each window's share of gᵀA⁻¹ψᵢ per unit residual; fewer than m − k when a few
    windows carry the variance (a contrast at the far end of a line).
    """
    m, k = 15, 2
    rng = np.random.default_rng(4)
    weight = rng.uniform(0.5, 3.0, size=m)
    sandwich, design, res, logs = _joint_fixture(m, k, seed=5, weight=weight)
    grad = np.array([[1.0, 50.0, 0.7]])  # the curve at rate 50, and the factor
    hat = design @ np.linalg.inv(design.T @ design) @ design.T
    lev = np.diag(hat)
    row = grad[0] @ sandwich.bread_inv[0]
    a = (design @ row[:k]) / (1 - lev)
    share = weight / weight.sum()
    b = row[k] * weight / (1 - share)
    s_eps = np.sqrt(res @ res / (m - k))
    centre = np.eye(m) - np.outer(np.ones(m), share)
    level = share @ logs
    s_eta2 = weight @ (logs - level) ** 2 / (m - 1)
    big_k = np.hstack(
        [
            np.diag(a) @ (np.eye(m) - hat) * s_eps,
            np.diag(b) @ centre @ np.diag(np.sqrt(s_eta2 / weight)),
        ]
    )
    big_m = big_k @ big_k.T
    expected = np.trace(big_m) ** 2 / np.trace(big_m @ big_m)
    got = sandwich.dof(grad)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-8)
    assert 1.0 < got < m - k
