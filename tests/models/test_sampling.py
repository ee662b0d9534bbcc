"""
The sampling covariance of a window's (mean, p50, p95, p99), and its use in the station fit.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.special import gammaincc

from bench._synthetic import synthetic_windows
from capplan.models.fit import NodeFit, SLOTarget, fit_node
from capplan.models.queueing import (
    Station,
    mgc_mean_response,
    mgc_response_pdf,
    mgc_response_sf,
    mgc_wait,
)
from capplan.models.sampling import QUANTILES, response_moments, sampling_covariance
from capplan.models.station_fit import (
    STAT_QUANTILES,
    STAT_WEIGHTS,
    Packed,
    _dispersion,
    _whitening,
    _WindowNoise,
    window_excess_covariance,
)

QS = np.array(QUANTILES)


def exponential_covariance(a: float) -> tuple[np.ndarray, np.ndarray]:
    """(center, per-request covariance) of the four statistics of an Exp(a) response time."""
    t = -np.log1p(-QS) / a
    f = a * np.exp(-a * t)
    tail_mean = (t + 1 / a) * np.exp(-a * t)  # E[T; T > t]
    mu = 1 / a
    cov = np.empty((4, 4))
    cov[0, 0] = 1 / a**2
    cov[0, 1:] = cov[1:, 0] = (tail_mean - mu * (1 - QS)) / f
    lo, hi = np.minimum.outer(QS, QS), np.maximum.outer(QS, QS)
    cov[1:, 1:] = lo * (1 - hi) / np.outer(f, f)
    return np.concatenate([[mu], t]), cov


class TestExact:
    @pytest.mark.parametrize("rho", [0.2, 0.6, 0.9])
    def test_mm1_is_exponential(self, rho: float) -> None:
        """M/M/1: the response time is Exp(μ − λ), every entry in closed form."""
        s = 0.01
        rate = rho / s
        center, cov = sampling_covariance(rate, 1.0, s, 1.0)
        want_center, want_cov = exponential_covariance(1 / s - rate)
        np.testing.assert_allclose(center, want_center, rtol=1e-9)
        np.testing.assert_allclose(cov, want_cov, rtol=1e-8)

    @pytest.mark.parametrize(("c", "scv"), [(4, 0.3), (8, 1.0), (2, 0.1), (3, 2.0)])
    def test_tail_mean_against_closed_form(self, c: float, scv: float) -> None:
        """
        The Gauss–Legendre E[T; T > t] against its closed form for gamma service and an
        exponential wait (weight A, rate η): t·P(T > t) + E[(S − t)⁺] + (P(T > t) − (1 − A)·P(S >
        t)) / η.
        """
        s = 0.02
        rate = np.array([0.2, 0.5, 0.8, 0.95]) * c / s
        center, cov = sampling_covariance(rate, c, s, scv)
        mu = center[:, 0]
        t = center[:, 1:]
        f = mgc_response_pdf(t, rate[:, None], c, s, scv)
        tail_mean = cov[:, 0, 1:] * f + mu[:, None] * (1 - QS)
        p_wait, theta = (x[:, None] for x in mgc_wait(rate, c, s, scv))
        k, scale = 1 / scv, s * scv
        sf_s = gammaincc(k, t / scale)
        excess = k * scale * gammaincc(k + 1, t / scale) - t * sf_s
        sf_t = mgc_response_sf(t, rate[:, None], c, s, scv)
        want = t * sf_t + excess + (sf_t - (1 - p_wait) * sf_s) / theta
        np.testing.assert_allclose(tail_mean, want, rtol=1e-6 if scv <= 1 else 1e-3)

    def test_moments(self) -> None:
        """The mean is the model's; Var(T) = scv·s² + Var(W) (M/M/1: sd = mean)."""
        rate = np.array([10.0, 50.0, 90.0])
        mean, sd = response_moments(rate, 1.0, 0.01, 1.0)
        np.testing.assert_allclose(mean, mgc_mean_response(rate, 1.0, 0.01, 1.0))
        np.testing.assert_allclose(sd, mean, rtol=1e-12)


class TestMonteCarlo:
    def test_covariance_of_simulated_windows(self) -> None:
        """
        Windows of n i.i.d. response times (the model's law: wait 0 or exponential, plus
        gamma service): their statistics' covariance times n matches the asymptotic one.
        """
        c, s, scv, rate = 4.0, 0.025, 0.3, 120.0
        n, windows = 2000, 3000
        rng = np.random.default_rng(7)
        p_wait, theta = (float(x) for x in mgc_wait(rate, c, s, scv))
        wait = np.where(
            rng.uniform(size=(windows, n)) < p_wait,
            rng.exponential(1 / theta, size=(windows, n)),
            0.0,
        )
        times = wait + rng.gamma(1 / scv, s * scv, size=(windows, n))
        stats = np.column_stack([times.mean(axis=1), *np.quantile(times, QS, axis=1)])
        center, cov = sampling_covariance(rate, c, s, scv)
        # (the sample p99 of 2,000 requests is biased low by O(1/n): about 0.5% here)
        np.testing.assert_allclose(stats.mean(axis=0), center, rtol=1e-2)
        observed = np.cov(stats, rowvar=False) * n
        sd = np.sqrt(np.diag(cov))
        np.testing.assert_allclose(np.sqrt(np.diag(observed)), sd, rtol=0.08)
        corr = cov / np.outer(sd, sd)
        observed_corr = observed / np.outer(np.sqrt(np.diag(observed)), np.sqrt(np.diag(observed)))
        np.testing.assert_allclose(observed_corr, corr, atol=0.06)


class TestBatched:
    def test_broadcasts_over_nodes_and_windows(self) -> None:
        """Per-node parameters (n, 1) against rates (n, w) give each element's own answer."""
        servers = np.array([[2.0], [5.0]])
        service = np.array([[0.03], [0.01]])
        scv = np.array([[0.5], [1.5]])
        rate = np.array([[10.0, 40.0, 70.0], [100.0, 300.0, 480.0]])
        center, cov = sampling_covariance(rate, servers, service, scv)
        assert center.shape == (2, 3, 4)
        assert cov.shape == (2, 3, 4, 4)
        for i in range(2):
            for j in range(3):
                one_center, one_cov = sampling_covariance(
                    rate[i, j], servers[i, 0], service[i, 0], scv[i, 0]
                )
                np.testing.assert_allclose(center[i, j], one_center, rtol=1e-12)
                np.testing.assert_allclose(cov[i, j], one_cov, rtol=1e-10)

    def test_unstable_is_nan(self) -> None:
        center, cov = sampling_covariance(np.array([50.0, 250.0]), 2.0, 0.01, 1.0)
        assert np.all(np.isfinite(center[0]))
        assert np.all(np.isfinite(cov[0]))
        assert np.all(np.isnan(center[1]))
        assert np.all(np.isnan(cov[1]))


class TestWhitening:
    @staticmethod
    def station_windows() -> tuple[Packed, tuple[float, float, float], np.ndarray]:
        """
        One node's windows at five rates, the statistics at the model's values; some lack the
        p95, one lacks the mean.
        """
        c, s, v = 4.0, 0.025, 0.3
        rate = np.array([[30.0, 60.0, 90.0, 120.0, 140.0]])
        requests = rate * 60
        center, _ = sampling_covariance(rate, c, s, v)
        latency = {key: center[..., j].copy() for j, key in enumerate(STAT_QUANTILES)}
        latency["p95"][0, [1, 3]] = np.nan
        latency["mean"][0, 4] = np.nan
        return Packed(rate, requests / requests.mean(), latency, requests), (c, s, v), requests

    @pytest.mark.parametrize("dispersion", [1.0, 3.0])
    def test_missing_statistics_use_the_sub_matrix(self, dispersion: float) -> None:
        """
        ‖M r‖² = r_pᵀ Σ_p⁻¹ r_p for each window, with Σ_p the covariance of the log statistics
        the window carries (here: some windows lack the p95, one lacks the mean): independent
        requests' relative covariance over n, times the dispersion, plus the short window's
        excess.
        """
        packed, (c, s, v), requests = self.station_windows()
        rate = packed.rate
        whiten = _whitening(
            packed, np.array([c]), np.array([s]), np.array([v]), dispersion=np.array([dispersion])
        )
        rng = np.random.default_rng(3)
        center, cov = sampling_covariance(rate, c, s, v)
        excess = window_excess_covariance(rate, 60.0, c, s, v)
        assert np.all(np.diagonal(excess[0, 3]) > 0)  # 120 rps of 160: it is there
        for j in range(rate.shape[1]):
            present = np.array([np.isfinite(packed.latency[k][0, j]) for k in STAT_QUANTILES])
            r = np.where(present, rng.normal(size=4), 0.0)
            rel = cov[0, j] / np.outer(center[0, j], center[0, j])
            total = dispersion * rel / requests[0, j] + excess[0, j]
            sub = total[np.ix_(present, present)]
            want = r[present] @ np.linalg.solve(sub, r[present])
            got = float(np.sum((whiten[0, j] @ r) ** 2))
            assert got == pytest.approx(want, rel=1e-9)
            assert math.isfinite(got)

    @pytest.mark.parametrize("dispersion", [1.0, 4.0])
    def test_dispersion_is_what_the_residuals_show(self, dispersion: float) -> None:
        """
        Residuals drawn from the model's covariance give a dispersion of 1; drawn with the
        independent requests' part four times as large, about 4 (200 windows).
        """
        packed, (c, s, v), _ = self.station_windows()
        wide = 40
        packed = Packed(
            np.tile(packed.rate, wide),
            np.tile(packed.weight, wide),
            {k: np.tile(x, wide) for k, x in packed.latency.items()},
            np.tile(packed.requests, wide),
        )
        stations = (np.array([c]), np.array([s]), np.array([v]))
        noise = _WindowNoise.at(packed, *stations)
        total = dispersion * noise.iid + noise.excess
        root = np.linalg.cholesky(total / packed.requests[..., None, None])
        z = np.random.default_rng(5).standard_normal(noise.present.shape)
        r = np.einsum("iwab,iwb->iwa", root, z)
        r = np.where(noise.present, r, np.nan).transpose(0, 2, 1)  # (n, 4, w)
        got = float(_dispersion(packed, noise, r, 3)[0])
        if dispersion == 1.0:
            assert got == 1.0
        else:
            assert got == pytest.approx(dispersion, rel=0.15)

    def test_degenerate_node_keeps_stage_one_weights(self) -> None:
        """Where the covariance cannot be evaluated (unstable station) the weights are kept."""
        rate = np.array([[30.0, 60.0]])
        requests = rate * 60
        latency = {key: np.full((1, 2), 0.05) for key in STAT_QUANTILES}
        packed = Packed(rate, requests / requests.mean(), latency, requests)
        whiten = _whitening(packed, np.array([1.0]), np.array([0.025]), np.array([0.3]))
        weights = np.array([STAT_WEIGHTS[k] for k in STAT_QUANTILES])
        for j in range(2):
            want = np.diag(np.sqrt(packed.weight[0, j] * weights))
            np.testing.assert_allclose(whiten[0, j], want)


class TestRoundedSlotCount:
    """The interval is that of the refit at the rounded c, unless the data cannot tell c."""

    @staticmethod
    def fit(servers: int, low: float, high: float) -> NodeFit:
        station = Station(servers=servers, service_time=0.02, scv=0.5)
        windows = synthetic_windows(station, seed=3, low=low, high=high, count=30, seconds=20)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fit_node("n", windows, SLOTarget(99, 150), model="mgc")

    def test_resolved_slot_count(self) -> None:
        fit = self.fit(4, 0.2, 0.9)
        assert fit.params["servers"] == 4
        assert "cannot tell" not in fit.message
        low, high = fit.capacity_interval
        assert low < fit.capacity_rps < high

    def test_unresolved_slot_count_says_so_and_stays_wide(self) -> None:
        fit = self.fit(16, 0.2, 0.6)
        assert "the data cannot tell it" in fit.message
        low, high = fit.capacity_interval
        assert low < fit.capacity_rps < high
        assert high / low > 1.2  # c ± 2 se spans 14–18: the capacity is that uncertain


@pytest.mark.parametrize(
    ("servers", "service", "scv", "rho"),
    [
        (1, 0.020, 1.0, 0.5),  # M/M/1
        (4, 0.025, 0.3, 0.85),
        (32, 0.013, 5.0, 0.53),  # very variable service
        (8, 0.100, 0.0, 0.9),  # deterministic: a point mass at S
        (200, 0.120, 5.0, 0.98),
        (2, 0.050, 0.01, 0.14),  # nearly fixed service
    ],
)
def test_truncated_mean_matches_the_integral_of_the_survival_function(
    servers: int, service: float, scv: float, rho: float
) -> None:
    """
    E[min(T, t)] in closed form against ∫₀ᵗ P(T > u) du by adaptive quadrature, at the
    station's p50, p95 and p99 (where the sampling covariance uses it).
    """
    from scipy import integrate

    from capplan.models.queueing import (
        mgc_response_quantile,
        mgc_response_truncated_mean_given_wait,
        mgc_wait,
    )

    rate = rho * servers / service
    p_wait, theta = (float(x) for x in mgc_wait(rate, servers, service, scv))
    for q in QUANTILES:
        t = float(mgc_response_quantile(q, rate, servers, service, scv))
        want, _ = integrate.quad(
            lambda u: float(mgc_response_sf(u, rate, servers, service, scv)),
            0.0,
            t,
            points=[service] if service < t else None,
            limit=500,
            epsabs=0.0,
            epsrel=1e-13,
        )
        one = np.ones(1)
        got = mgc_response_truncated_mean_given_wait(
            t * one, p_wait * one, theta * one, service * one, scv * one
        )
        assert float(got[0]) == pytest.approx(want, rel=1e-12)
