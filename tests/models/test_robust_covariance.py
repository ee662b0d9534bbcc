"""
The robust covariances of the fits, against their textbook formulas written out window by window.

``station_fit._covariance`` is the cluster-robust CR2 sandwich (Bell and McCaffrey) with each
window's four statistics a cluster; ``scaled_fit._hc2_cov`` is MacKinnon and White's HC2.  Both
are batched over nodes with einsum; here one loop per window says the same thing plainly.
"""

from __future__ import annotations

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
