"""
Per-node fitting, selection and capacity at the SLO, on windows generated from known stations.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bench._synthetic import synthetic_windows
from capplan.models.fit import (
    Candidate,
    NodeInput,
    SLOTarget,
    balancer_arrival_scvs,
    fit_least_connections,
    fit_measured,
    fit_node,
    fit_nodes,
    observations,
    with_balancer_arrivals,
)
from capplan.models.queueing import Station
from capplan.samples import Window

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SLO = SLOTarget(percentile=99, latency_ms=150, max_error_rate=0.001)


def synthetic(
    station: Station,
    utilizations: np.ndarray,
    *,
    seed: int = 1,
    noise: float = 0.02,
    percentiles: bool = True,
    error_rate: float = 0.0,
) -> list[Window]:
    """
    Windows of 60 s at the given utilizations, latencies from the station times lognormal noise.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i, u in enumerate(utilizations):
        rate = float(u) * station.max_rate
        requests = max(1, round(rate * 60))
        m = station.metrics(requests / 60.0, percentiles=(50, 95, 99))

        def noisy(x: float) -> float:
            return x * 1e3 * math.exp(rng.normal(0, noise))

        p = sorted(noisy(m.percentiles[q]) for q in (50.0, 95.0, 99.0))
        out.append(
            Window(
                node="n",
                start=T0 + timedelta(minutes=i),
                seconds=60.0,
                requests=requests,
                errors=int(rng.binomial(requests, error_rate)) if error_rate else 0,
                mean_ms=noisy(m.mean_response),
                p50_ms=p[0] if percentiles else None,
                p95_ms=p[1] if percentiles else None,
                p99_ms=p[2] if percentiles else None,
            )
        )
    return out


SPREAD = np.linspace(0.2, 0.9, 36)


class TestStationFit:
    def test_recovers_a_known_mgc_station(self) -> None:
        """c, the service time and the scv of an M/G/c station come back from its windows."""
        truth = Station(servers=4, service_time=0.025, scv=0.3)
        fit = fit_node("n", synthetic(truth, SPREAD), SLO, model="mgc")
        assert fit.success
        assert 4 == fit.params["servers"]
        assert fit.params["service_ms"] == pytest.approx(25.0, rel=0.03)
        assert fit.params["scv"] == pytest.approx(0.3, abs=0.08)

    def test_capacity_interval_covers_truth(self) -> None:
        """The true capacity at the SLO lies in the reported 95% interval."""
        truth = Station(servers=8, service_time=0.02, scv=0.5)
        expected = truth.max_rate_for(0.150, 99)
        fit = fit_node("n", synthetic(truth, SPREAD, seed=3), SLO, model="mgc")
        low, high = fit.capacity_interval
        assert low <= expected <= high
        assert fit.capacity_rps == pytest.approx(expected, rel=0.03)

    @pytest.mark.parametrize("scv", [0.8, 1.0, 1.3])
    def test_two_slots_of_variable_service_are_not_taken_for_one(self, scv: float) -> None:
        """
        A c = 2 node whose service time varies (scv ≈ 1): its median latency at low load is
        well below its mean service time.  Started from that median, the fit settled on c = 1
        with S ≈ half the truth and a narrow interval around a wrong capacity (on bench.fit's
        synthetic pool, every c = 2 node with scv ≥ 0.8 measured up to 60–75% utilization).
        The windows carry the noise real ones do (``bench._synthetic``: the four statistics'
        joint sampling noise and the queue's excursions); with this module's ``synthetic`` (2%
        of independent noise on each statistic, which real windows never show: their p95 and
        p99 rest on the same requests) the interval missed the truth by 0.2–0.6% on this seed.
        """
        truth = Station(servers=2, service_time=0.050, scv=scv)
        expected = truth.max_rate_for(0.300, 99)
        windows = synthetic_windows(truth, seed=5, count=36, seconds=60.0, low=0.15, high=0.65)
        fit = fit_node("n", windows, SLOTarget(99, 300), model="mgc")
        assert 2 == fit.params["servers"]
        assert fit.params["service_ms"] == pytest.approx(50.0, rel=0.05)
        low, high = fit.capacity_interval
        assert low <= expected <= high

    def test_workers_fix_the_slot_count(self) -> None:
        """With workers given, c is not fitted."""
        truth = Station(servers=6, service_time=0.02, scv=1.0)
        fit = fit_node("n", synthetic(truth, SPREAD), SLO, model="mmc", workers=6)
        assert 6 == fit.params["servers"]
        assert "servers" not in fit.stderr
        assert "slot count from the inventory (6)" == fit.message

    def test_auto_prefers_mgc_on_station_data(self) -> None:
        """On data from an M/G/c station, AICc selects mgc."""
        truth = Station(servers=4, service_time=0.02, scv=0.2)
        fit = fit_node("n", synthetic(truth, SPREAD), SLO)
        assert "mgc" == fit.model
        assert {"mgc", "usl", "demand", "hyperbolic"} == {c.model for c in fit.candidates}

    def test_few_noisy_station_windows_keep_a_mechanistic_model(self) -> None:
        """
        On 11 noisy windows of an M/M/2 node (the lab's quick ramp), the hyperbola's better
        AICc is noise: plain AICc chose it for 19 of these 30 seeds; the F test keeps M/G/c.
        The noise (8% on every statistic of every window) is four times what the model
        expects at light load and less than it expects near saturation: the fit sees that in
        its residuals and weighs the windows by it (``station_fit._dispersion``).  Its 95%
        intervals hold the truth in 29 of the 30 (a true 95% interval misses more than 3 of 30
        only 6% of the time).
        """
        truth = Station(servers=2, service_time=0.02, scv=1.0)
        expected = truth.max_rate_for(0.150, 99)
        misses = []
        for seed in range(30):
            windows = synthetic(truth, np.linspace(0.2, 0.95, 11), seed=seed, noise=0.08)
            fit = fit_node("n", windows, SLO)
            assert "hyperbolic" != fit.model, (seed, fit.selection)
            low, high = fit.capacity_interval
            if fit.model == "mgc" and not low <= expected <= high:
                misses.append((seed, fit.capacity_interval))
        assert len(misses) <= 3, misses

    def test_hyperbola_chosen_when_no_mechanistic_model_fits(self) -> None:
        """Latency creeping up as a power of load is no queue: the fallback is taken, and why."""
        rng = np.random.default_rng(0)
        windows = []
        for i, rate in enumerate(np.linspace(20, 180, 40)):
            shape = 0.03 + 0.02 * (rate / 200) ** 4 / (1 - rate / 200) ** 0.3
            p99 = shape * math.exp(rng.normal(0, 0.02)) * 1e3
            windows.append(
                Window(
                    node="n",
                    start=T0 + timedelta(minutes=i),
                    seconds=60.0,
                    requests=int(rate * 60),
                    errors=0,
                    mean_ms=p99 / 2,
                    p50_ms=p99 * 0.4,
                    p95_ms=p99 * 0.8,
                    p99_ms=p99,
                )
            )
        fit = fit_node("n", windows, SLO)
        assert "hyperbolic" == fit.model
        assert "lacks fit against the empirical hyperbola" in fit.selection

    def test_without_percentiles_falls_back_to_mmc_with_warning(self) -> None:
        """Means alone cannot tell the scv: auto uses M/M/c and says so."""
        truth = Station(servers=4, service_time=0.02, scv=1.0)
        windows = synthetic(truth, SPREAD, percentiles=False)
        fit = fit_node("n", windows, SLOTarget(99, 150))
        assert "mgc" not in {c.model for c in fit.candidates}
        assert any("assuming exponential service (M/M/c)" in w for w in fit.warnings)

    def test_deterministic(self) -> None:
        """The same windows give the same fit, value for value."""
        truth = Station(servers=3, service_time=0.03, scv=0.4)
        windows = synthetic(truth, SPREAD)
        first, second = fit_node("n", windows, SLO), fit_node("n", windows, SLO)
        assert first == second


class TestHonesty:
    def test_low_load_data_is_flagged_and_unbounded(self) -> None:
        """Windows all below 30% of capacity give a warning and an open-ended interval."""
        truth = Station(servers=8, service_time=0.02, scv=0.5)
        fit = fit_node("n", synthetic(truth, np.linspace(0.03, 0.12, 30)), SLO, model="mgc")
        assert any("the data cannot support this number" in w for w in fit.warnings)
        assert math.isinf(fit.capacity_interval[1])
        assert fit.capacity_interval[0] <= fit.max_observed_rps

    def test_a_slot_count_the_windows_bound_only_from_below(self) -> None:
        """
        32 slots measured up to 60% utilization queue so little that the windows do not move
        when c grows past ~40: the fit ran c away (here to its bound, a million slots, with an
        interval of ±0.5% round 13.6 million rps).  Now the smallest c the windows cannot tell
        from the best fit is reported (a capacity that errs low), with an interval from the
        95% lower bound on c, open above.
        """
        truth = Station(servers=32, service_time=0.0735, scv=0.32)
        expected = truth.max_rate_for(0.300, 99)
        windows = synthetic(truth, np.linspace(0.15, 0.6, 36), seed=1)
        fit = fit_node("n", windows, SLOTarget(99, 300), model="mgc")
        mgc = next(c for c in fit.candidates if c.model == "mgc")
        assert 20 <= mgc.params["servers"] <= 32
        assert 0.7 * expected <= mgc.capacity_rps <= expected
        low, high = mgc.capacity_interval
        assert 0.6 * expected <= low <= mgc.capacity_rps
        assert math.isinf(high)
        assert "the windows bound it only from below (c ≥ " in mgc.message
        assert any("bound the slot count only from below" in w for w in fit.warnings)

    def test_too_few_windows(self) -> None:
        """Fewer than 4 windows is a failure with a reason, not a number."""
        truth = Station(servers=2, service_time=0.02)
        fit = fit_node("n", synthetic(truth, np.array([0.3, 0.5, 0.7])), SLO)
        assert not fit.success
        assert "3 windows with requests: at least 4 are needed" == fit.message
        assert math.isnan(fit.capacity_rps)

    def test_error_rate_caps_capacity(self) -> None:
        """Windows that break the error bound cap capacity below them, with a warning."""
        truth = Station(servers=4, service_time=0.02, scv=0.5)
        windows = synthetic(truth, SPREAD)
        broken = [
            Window(**{**w.__dict__, "errors": w.requests // 50})
            if w.rate > 0.6 * truth.max_rate
            else w
            for w in windows
        ]
        fit = fit_node("n", broken, SLO, model="mgc")
        assert fit.capacity_rps <= 0.6 * truth.max_rate
        assert any("break the SLO's error bound" in w for w in fit.warnings)

    @pytest.mark.parametrize("model", ["mgc", "usl", "hyperbolic", "mmc"])
    def test_capacity_monotone_in_slo(self, model: str) -> None:
        """A looser latency SLO never gives a lower capacity."""
        truth = Station(servers=4, service_time=0.02, scv=0.4)
        windows = synthetic(truth, SPREAD)
        capacities = [
            fit_node("n", windows, SLOTarget(99, ms), model=model).capacity_rps
            for ms in (60.0, 90.0, 150.0, 400.0)
        ]
        assert capacities == sorted(capacities)

    def test_unknown_model(self) -> None:
        """An unknown model name is a ValueError naming it."""
        with pytest.raises(ValueError, match="'nope'"):
            fit_node("n", [], SLO, model="nope")


def test_a_slot_count_rounded_down_is_refitted_inside_stability() -> None:
    """
    The lab's c = 2, 20 ms exponential node, 24 noisy 10 s windows of its ramp (captured). The
    continuous fit put c at 2.6 with S = 23.8 ms; refitted at c = 2 from that S, the highest
    window's rate (95 rps) was past saturation (2 / 23.8 ms = 84 rps) and the fit could not
    move, so c = 3 and S = 29 ms won, whose p99 at no load is over the 120 ms SLO: capacity 0.
    Refitted from the S that keeps the continuous fit's utilization, c = 2 wins.  Its 10 s
    windows near saturation read low, and the fit expects them to (``window_log_residuals``;
    the capacity was 9% above the truth before); they also vary far more than independent
    requests would make them, and the fit weighs them down by that
    (``window_excess_covariance``): 6% above the truth on this ramp (3% without).  Between
    seeds of such ramps this node's fitted capacity varies by 3.7%, 2.6% high on average
    (``python -m bench.lab.behind --service exp --coverage 40 --control --window-s 10``).
    """
    from pathlib import Path

    from capplan.samples import parse_samples

    text = (Path(__file__).parent / "data" / "lab-n1-exp.csv").read_text()
    windows = [w.window for w in parse_samples(text, "lab-n1-exp.csv")]
    fit = fit_node("n1", windows, SLOTarget(percentile=99, latency_ms=120, max_error_rate=0.001))
    mgc = next(c for c in fit.candidates if c.model == "mgc")
    truth = Station(2, 0.020, 1.0).max_rate_for(0.120, 99)  # 54.4 rps
    assert mgc.params["servers"] == 2
    assert mgc.params["service_ms"] == pytest.approx(20, rel=0.1)
    assert mgc.params["scv"] == pytest.approx(1, abs=0.25)
    low, high = mgc.capacity_interval
    assert low <= truth <= high
    assert fit.capacity_rps == pytest.approx(truth, rel=0.08)


def _candidate(model: str, capacity: float, aicc: float) -> Candidate:
    return Candidate(model, {}, {}, 3, 20, 1.0, aicc, capacity, (capacity, capacity), True, "")


def test_a_capacity_the_windows_contradict_is_not_chosen() -> None:
    """
    A chosen capacity below half the rate up to which every window met the SLO contradicts the
    windows: the best-AICc model that agrees is used, with a warning; when none agrees the
    chosen one stays, and the warning says so.
    """
    from capplan.models.fit import _consistent

    zero = _candidate("mgc", 0.0, -60.0)
    usl = _candidate("usl", 58.0, 90.0)
    hyperbola = _candidate("hyperbolic", 53.8, -50.0)
    chosen, selection, warning = _consistent(zero, "AICc", [zero, usl, hyperbola], 47.9)
    assert chosen is hyperbola
    assert selection == "AICc; mgc contradicted the windows"
    assert warning == (
        "mgc put capacity at 0 rps, below half of the 47.9 rps up to which every window met "
        "the SLO: hyperbolic is used instead"
    )
    assert _consistent(usl, "AICc", [zero, usl], 47.9) == (usl, "AICc", None)
    chosen, _, warning = _consistent(zero, "AICc", [zero], 47.9)
    assert chosen is zero
    assert warning is not None
    assert "no other model agrees with them" in warning


def _scored(model: str, rss: float, aicc: float) -> Candidate:
    return Candidate(model, {}, {}, 3, 36, rss, aicc, 100.0, (90.0, 110.0), True, "")


def test_the_queueing_model_is_kept_unless_another_fits_significantly_better() -> None:
    """
    A USL whose AICc beats M/G/c's by 4 on 36 windows (a residual variance 11% lower) fits the
    noise: M/G/c is kept.  One whose residual variance is a third of M/G/c's is taken, and
    the selection says why.
    """
    from capplan.models.fit import _select

    mgc = _scored("mgc", 1.0, -300.0)
    close = _scored("usl", 0.89, -304.0)
    chosen, selection = _select([mgc, close], "p99")
    assert chosen is mgc
    assert "usl fits no significantly better than the queueing model mgc" in selection
    far = _scored("usl", 0.33, -340.0)
    chosen, selection = _select([mgc, far], "p99")
    assert chosen is far
    assert "mgc lacks fit against it" in selection
    # without a queueing model, AICc among the others as before
    assert _select([close, far], "p99")[0] is far
    # a hyperbola tested against the queueing model once, and said so once
    hyperbola = _scored("hyperbolic", 0.2, -350.0)
    chosen, selection = _select([mgc, hyperbola], "p99")
    assert chosen is hyperbola
    assert 1 == selection.count("lacks fit")


@pytest.mark.parametrize(
    ("name", "stationary"),
    [("lab-n1-fixed", 79.76), ("lab-n3-exp", 346.66)],
    ids=["fixed c=2", "exp c=8"],
)
def test_short_windows_near_saturation_do_not_pick_the_hyperbola(
    name: str, stationary: float
) -> None:
    """
    The lab's ramps (captured, 24 windows of 10 s): fixed 20 ms service on c = 2 and
    exponential on c = 8.  Near saturation a 10 s window's p99 reads 20–50% below the
    stationary p99, and over every window the hyperbola, following them, beat M/G/c on the F
    test and put capacity 7% and 4% above the stationary one (85.8 and 360.5 rps; exact M/D/2
    and M/M/8: 79.76 and 346.66).  Tested over the windows long enough to show stationary
    percentiles, it does not: M/G/c is kept.  The exponential node's interval holds the
    stationary capacity.  The fixed one's starts 0.1% above it (80.45 [79.82, 81.08]): the
    windows' expected offsets (``station_fit.window_log_residuals``) took most of the 10 s
    windows' bias out (81.1 [80.1, 82.0] before them), not all.
    """
    from pathlib import Path

    from capplan.samples import parse_samples

    text = (Path(__file__).parent / "data" / f"{name}.csv").read_text()
    windows = [w.window for w in parse_samples(text, f"{name}.csv")]
    fit = fit_node("n", windows, SLOTarget(percentile=99, latency_ms=120, max_error_rate=0.001))
    assert fit.model == "mgc", fit.selection
    assert "windows long enough to show stationary percentiles" in fit.selection
    low, high = fit.capacity_interval
    if name == "lab-n1-fixed":  # what is left of the short windows' bias
        assert fit.capacity_rps == pytest.approx(stationary, rel=0.01)
        assert low < 1.002 * stationary
    else:
        assert low <= stationary <= high
    hyperbola = next(c for c in fit.candidates if c.model == "hyperbolic")
    assert hyperbola.capacity_rps > 1.03 * stationary  # what the old choice would have said


def test_the_lack_of_fit_test_is_over_the_stationary_windows() -> None:
    """
    A challenger that fits better only on the windows too short for stationary percentiles
    does not replace the queueing model; one that fits better on the others does.  Windows
    too few to test leave the queueing model in place, and the selection says why.
    """
    from capplan.models.fit import _select

    def scored(model: str, residuals: list[float], aicc: float) -> Candidate:
        res = np.array(residuals)
        return Candidate(
            model, {}, {}, 3, res.size, float(res @ res), aicc, 100.0, (90.0, 110.0), True, "",
            residuals=res,
        )  # fmt: skip

    rng = np.random.default_rng(2)
    base = rng.normal(0.0, 0.05, size=30)
    short = np.arange(30) >= 20  # the ten busiest windows are too short
    mgc = scored("mgc", list(np.where(short, base + 0.4, base)), -100.0)
    hyperbola = scored("hyperbolic", list(base * 0.9), -150.0)
    assert _select([mgc, hyperbola], "p99")[0] is hyperbola  # over every window
    chosen, why = _select([mgc, hyperbola], "p99", ~short)
    assert chosen is mgc
    assert "over the 20 of 30 windows long enough to show stationary percentiles" in why
    better = scored("hyperbolic", list(np.where(short, base, base * 0.3)), -200.0)
    assert _select([mgc, better], "p99", ~short)[0] is better
    chosen, why = _select([mgc, hyperbola], "p99", np.arange(30) < 3)
    assert chosen is mgc
    assert "too few windows long enough to show stationary percentiles" in why


def test_stationary_windows_follow_the_relaxation_time() -> None:
    """
    Windows of 10 s on a c = 2, 20 ms exponential station: at ρ = 0.5 the relaxation time
    S/(c(1 − √ρ)²) is 0.117 s (85 of them in a window: too few), at ρ = 0.3 0.050 s (200);
    60 s windows at ρ = 0.5 hold 513.  Past saturation no window is stationary.
    """
    from capplan.models.fit import _stationary_windows, observations

    mgc = Candidate(
        "mgc", {"servers": 2.0, "service_ms": 20.0, "scv": 1.0}, {}, 3, 4, 1.0, -10.0, 80.0,
        (70.0, 90.0), True, "",
    )  # fmt: skip
    rates = [30.0, 50.0, 50.0, 110.0]
    seconds = [10.0, 10.0, 60.0, 10.0]
    windows = [
        Window("n", T0 + timedelta(minutes=i), s, int(r * s), 0, 30.0, 25.0, 60.0, 90.0)
        for i, (r, s) in enumerate(zip(rates, seconds, strict=True))
    ]
    keep = _stationary_windows([mgc], observations("n", windows))
    assert keep is not None
    assert [True, False, True, False] == keep.tolist()
    # every window long enough: no restriction
    assert _stationary_windows([mgc], observations("n", windows[2:3])) is None


def test_an_idle_latency_near_the_slo_lets_the_interval_reach_zero() -> None:
    """
    Eight slots of exponential 50 ms service: idle, the p99 is the service time's, 230 ms.
    Against a p99 SLO of 235 ms the capacity is 102.5 rps, but a station a few percent slower
    or more variable meets it at no rate at all: the capacity jumps to 0, and the windows cannot
    rule that out — the interval reaches down to 0.  Against 400 ms it does not.
    """
    from capplan.models.station_fit import idle_quantile

    truth = Station(servers=8, service_time=0.05, scv=1.0)
    assert idle_quantile(np.array([0.05]), np.array([1.0]), 0.99)[0] == pytest.approx(
        truth.response_quantile(0.99, 1e-9), rel=1e-9
    )
    assert idle_quantile(np.array([0.05]), np.array([0.0]), 0.99)[0] == 0.05
    windows = synthetic(truth, SPREAD, seed=3, noise=0.05)
    tight = fit_node("n", windows, SLOTarget(99, 235))
    assert tight.model == "mgc"
    assert tight.capacity_rps > 0
    assert tight.capacity_interval[0] == 0.0
    loose = fit_node("n", windows, SLOTarget(99, 400))
    low, high = loose.capacity_interval
    assert 0.0 < low <= truth.max_rate_for(0.400, 99) <= high


@pytest.mark.parametrize(
    ("node", "servers", "service_s", "scv"),
    [
        ("edge545", 4, 0.09464201, 0.30381851),
        ("edge1026", 4, 0.07876822, 0.47469764),
        ("edge1170", 2, 0.05400688, 1.02282825),
    ],
)
def test_windows_a_hair_under_the_slo_do_not_contradict_a_capacity_of_zero(
    node: str, servers: int, service_s: float, scv: float
) -> None:
    """
    Three nodes of ``bench.fit``'s synthetic pool (seed 1, nodes 545, 1026 and 1170, captured)
    whose service time alone misses the p99 SLO of 250 ms by a hair: their capacity is 0.
    M/G/c says so, but their lightest windows read p99s just under 250 ms, and the guard that
    replaces a model "contradicting the windows" took the hyperbola or the utilization law
    instead (10–18 rps with narrow intervals).  A window now meets the SLO for the guard only by
    two standard deviations of its own log residual.
    """
    from pathlib import Path

    from capplan.models.station_fit import station_capacity
    from capplan.samples import parse_samples

    text = (Path(__file__).parent / "data" / "idle-edge.csv").read_text()
    windows = [w.window for w in parse_samples(text, "idle-edge.csv") if w.window.node == node]
    slo = SLOTarget(percentile=99, latency_ms=250, max_error_rate=0.001)
    truth = station_capacity(
        np.array([float(servers)]), np.array([service_s]), np.array([scv]), 0.250, 0.99
    )
    assert truth[0] == 0.0
    fit = fit_node(node, windows, slo)
    assert fit.capacity_rps == 0.0, (fit.model, fit.selection, fit.warnings)
    assert fit.capacity_interval[0] == 0.0


def window(node: str, minute: int, requests: int, seconds: float = 60.0) -> Window:
    return Window(
        node=node,
        start=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=minute),
        seconds=seconds,
        requests=requests,
        errors=0,
        mean_ms=20.0 if requests else None,
    )


class TestBalancerArrivals:
    def test_share_of_the_windows_alike(self) -> None:
        """A window's scv is the node's share of the requests of the pool's windows alike."""
        pool = {
            "a": [window("a", 0, 100), window("a", 1, 300), window("a", 2, 50)],
            "b": [window("b", 0, 300), window("b", 1, 100), window("b", 5, 70)],
            "c": [window("c", 0, 0), window("c", 2, 50, seconds=30.0)],
        }
        got = balancer_arrival_scvs(pool)
        assert [0.25, 0.75] == got["a"][:2]
        assert math.isnan(got["a"][2])  # minute 2: no other 60 s window then
        assert [0.75, 0.25] == got["b"][:2]
        assert math.isnan(got["b"][2])  # minute 5: alone
        assert 0.0 == got["c"][0]  # an empty window
        assert math.isnan(got["c"][1])  # a 30 s window is not alike

    def test_windows_without_peers_are_fitted_as_poisson_with_a_warning(self) -> None:
        """Windows no other node shares are taken as Poisson traffic, and the fit says so."""
        truth = Station(servers=4, service_time=0.025, scv=0.5)
        ws = synthetic(truth, SPREAD, seed=2)
        poisson = fit_node("n", ws, SLO, model="mgc")
        unknown = [math.nan] * len(ws)
        [fit] = fit_nodes([NodeInput("n", ws, arrival_scv=unknown)], SLO, model="mgc")
        assert fit.capacity_rps == poisson.capacity_rps
        assert any(
            f"{len(ws)} of {len(ws)} windows line up with no other" in w for w in fit.warnings
        )

    def test_node_fitted_alone_keeps_the_pool_shares(self) -> None:
        """--node N: the shares still come from every node of the pool."""
        pool = {"a": [window("a", 0, 100)], "b": [window("b", 0, 300)]}
        [one] = with_balancer_arrivals([NodeInput("a", pool["a"])], pool)
        assert [0.25] == one.arrival_scv

    def test_observations_keep_each_window_its_scv(self) -> None:
        """Empty windows are dropped with their scv; a count that does not match is refused."""
        ws = [window("a", 0, 100), window("a", 1, 0), window("a", 2, 50)]
        obs = observations("a", ws, [0.2, 0.9, 0.4])
        assert obs.arrival is not None
        assert [0.2, 0.4] == obs.arrival.tolist()
        assert observations("a", ws).arrival is None
        with pytest.raises(ValueError, match="2 arrival scvs for 3 windows"):
            observations("a", ws, [0.2, 0.4])

    def test_smoother_arrivals_mean_less_capacity_for_the_same_windows(self) -> None:
        """
        The same waits under smoother arrivals need a slower station: read as behind a
        balancer, Poisson windows give a lower capacity (and ca² = 1 changes nothing).
        """
        truth = Station(servers=4, service_time=0.025, scv=0.5)
        ws = synthetic(truth, SPREAD, seed=2)
        poisson = fit_node("n", ws, SLO, model="mgc")
        ones = fit_nodes([NodeInput("n", ws, arrival_scv=[1.0] * len(ws))], SLO, model="mgc")
        smooth = fit_nodes([NodeInput("n", ws, arrival_scv=[0.2] * len(ws))], SLO, model="mgc")
        assert repr(ones[0]) == repr(poisson)
        assert smooth[0].capacity_rps < 0.97 * poisson.capacity_rps


class TestMeasuredFit:
    def test_unknown_arrivals_refused(self) -> None:
        with pytest.raises(ValueError, match="arrivals must be one of poisson, round_robin"):
            fit_measured([], SLO, arrivals="random")

    def test_least_connections_needs_workers(self) -> None:
        """A node's slots cannot be fitted behind least connections: refused, named."""
        ws = synthetic(Station(servers=2, service_time=0.02, scv=1.0), SPREAD)
        nodes = [NodeInput("a", ws, 2), NodeInput("b", ws)]
        with pytest.raises(ValueError, match="give workers for b"):
            fit_least_connections(nodes, SLO)

    def test_given_wait_one_per_window(self) -> None:
        ws = [window("a", 0, 100), window("a", 1, 50)]
        with pytest.raises(ValueError, match="1 wait rates for 2 windows"):
            observations("a", ws, wait=([0.1, 0.2], [30.0]))

    def test_poisson_is_fit_nodes(self) -> None:
        """arrivals: poisson is exactly fit_nodes."""
        ws = synthetic(Station(servers=4, service_time=0.025, scv=0.5), SPREAD, seed=4)
        [got] = fit_measured([NodeInput("n", ws)], SLO, model="mgc")
        assert repr(got) == repr(fit_node("n", ws, SLO, model="mgc"))

    def test_least_connections_says_which_windows_it_took_as_poisson(self) -> None:
        """A node whose windows line up with no other's is fitted alone, with the warning."""
        st = Station(servers=2, service_time=0.02, scv=1.0)
        a = synthetic(st, SPREAD, seed=1)
        b = [replace(w, node="b", start=w.start + timedelta(seconds=7)) for w in a]
        fits = fit_least_connections([NodeInput("a", a, 2), NodeInput("b", b, 2)], SLO)
        assert all(any("line up with no other node's" in w for w in f.warnings) for f in fits)

    def test_least_connections_without_percentiles_uses_mmc(self) -> None:
        """Windows with means only: the pool's rounds use M/M/c stations, and every node fits."""
        st = Station(servers=2, service_time=0.02, scv=1.0)
        a = synthetic(st, SPREAD, seed=1, percentiles=False)
        b = [replace(w, node="b") for w in synthetic(st, SPREAD, seed=2, percentiles=False)]
        fits = fit_least_connections([NodeInput("a", a, 2), NodeInput("b", b, 2)], SLO, model="mmc")
        assert [True, True] == [f.success for f in fits]
        assert [2.0, 2.0] == [f.params["servers"] for f in fits]
