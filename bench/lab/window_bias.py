"""
What a point of the lab measures near a node's capacity: the p99 of a short point against the
stationary p99 that capplan's models predict, by simulation of the node's queue.

    python -m bench.lab.window_bias [--servers 8] [--service-ms 20] [--law fixed]
                                    [--rates 370,377,386] [--points 15,60,240] [--seeds 24]
                                    [--slo-ms 120] [--warm-s 5]

A node of the lab is an M/G/c station (``c`` slots, one FIFO queue, Poisson arrivals).  Near
capacity its queue makes long, rare excursions, and the p99 of one point of a few seconds is a
poor estimate of the long-run p99: most points see no large excursion, so the median point's
p99 is well below the stationary one, and a point "meets the SLO" at rates where the stationary
p99 is far above it.  The lab's measured node capacities (the largest rate whose point meets
the SLO) are therefore above the stationary capacities that capplan predicts, by more the
closer to saturation the SLO sits — the measurement's bias, not the model's.

For each rate this prints the model's p99 (``capplan.models.queueing.Station``), a long
simulation's p99 (``--seeds`` runs of the longest point length, pooled), and for each point
length the median and mean p99 of ``--seeds`` simulated points (each after ``--warm-s``
seconds of the same load, so not from an empty queue) and the share of them within
``--slo-ms``.  The simulation is
the exact FCFS multi-server recursion (each arrival takes the slot that frees first), seeded;
service times as the lab's nodes draw them (``exp``, ``fixed``, or ``lognormal`` with cv 0.4).
Pure computation, nothing started; about ten seconds at the defaults.

``--calibrate`` fits the factors of ``capplan.models.station_fit``'s short-window offsets
(``WINDOW_MEAN_FACTOR``, ``WINDOW_QUANTILE_FACTORS``): for exponential and fixed service of 20
ms on c = 1, 2, 4, 8 slots at ρ = 0.5–0.93, ``--hours`` of simulated Poisson arrivals per
point (12 runs after 30 s of warm-up) are cut into windows of 5, 10, 20 and 60 s, and each
window's mean, p50, p95 and p99 are compared with those of all its point's requests pooled
(the stationary ones); the mean over windows of the log ratio is what the offsets predict from
the model at the true station.  Prints the fitted factors and, per law and window length, how
far the offsets with the shipped factors land from the simulation (and, for comparison, how far
no offset does).  Then the windows' spread: the factors of ``WINDOW_VARIANCE_FACTORS``, fitted
to each point's variance of the log statistics (the model: independent requests' covariance
over the expected request count plus ``window_excess_covariance``), and the median
correlations of the simulated excess behind ``WINDOW_EXCESS_CORRELATION``; about 7 minutes
at the default 10 hours a point.

``--relaxations`` prints instead the table behind ``capplan.models.fit.STATIONARY_RELAXATIONS``:
for c = 1, 2, 8, exponential and fixed service of 20 ms, ρ = 0.5–0.9 and windows of 10 s and
60 s, the geometric mean of simulated windows' p99 (after 5 s of warm-up) over the model's,
against the window's length in relaxation times of the queue, ``(1 + scv)/2 · S/(c(1 − √ρ)²)``;
about five seconds.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from scipy import optimize

from bench.lab.pool import DEFAULT_CV, scv, service_times
from bench.lab.stationary import fcfs_response, simulate
from capplan.models import station_fit
from capplan.models.queueing import Station, relaxation_time
from capplan.models.sampling import sampling_covariance

LAWS = ("exp", "fixed", "lognormal")


def relaxations() -> None:
    """
    The geometric mean of short windows' p99 over the model's, by length in relaxation times.
    """
    service_s = 0.020
    rows = []
    for law in ("exp", "fixed"):
        v = scv(law, DEFAULT_CV)
        for servers in (1, 2, 8):
            station = Station(servers, service_s, v)
            for rho in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9):
                rate = rho * servers / service_s
                model = station.response_quantile(0.99, rate)
                tau = float(relaxation_time(servers, service_s, v, rate))
                for seconds, seeds in ((10.0, 40), (60.0, 16)):
                    p99 = [
                        np.quantile(
                            simulate(rate, servers, service_s, law, seconds, 5.0, seed=k), 0.99
                        )
                        for k in range(seeds)
                    ]
                    ratio = float(np.exp(np.mean(np.log(p99))) / model)
                    rows.append((seconds / tau, ratio, law, servers, rho, seconds))
    print(f"{'relaxations':>11} {'p99 / model':>11}  law    c    ρ  window")
    for length, ratio, law, servers, rho, seconds in sorted(rows):
        print(f"{length:>11.1f} {ratio:>11.3f}  {law:<5} {servers:>2} {rho:>4}  {seconds:>4.0f} s")


#: The calibration's window lengths (s), statistics and their quantiles.
CALIBRATION_LENGTHS = (5.0, 10.0, 20.0, 60.0)
_QS = np.array([0.5, 0.95, 0.99])


def _window_logs(law: str, servers: int, rho: float, hours: float, seed: int) -> dict[float, Any]:
    """
    Per window length: the mean over windows of ln(window statistic / pooled statistic) for the
    mean, p50, p95 and p99, and its standard error.
    """
    service_s = 0.020
    rate = rho * servers / service_s
    rng = np.random.default_rng(seed)
    runs, warm = 12, 30.0
    length = hours * 3600.0 / runs
    stats: dict[float, list[list[float]]] = {t: [] for t in CALIBRATION_LENGTHS}
    pooled = []
    for _ in range(runs):
        n = int(rate * (warm + length) + 10 * np.sqrt(rate * (warm + length)) + 10)
        arrivals = np.cumsum(rng.exponential(1.0 / rate, n))
        arrivals = arrivals[arrivals < warm + length]
        service = service_times(rng, law, service_s, DEFAULT_CV, arrivals.size)
        response = fcfs_response(arrivals, servers, service)
        keep = arrivals >= warm
        arrivals, response = arrivals[keep] - warm, response[keep]
        pooled.append(response)
        for t in CALIBRATION_LENGTHS:
            count = int(length // t)
            cuts = np.searchsorted(arrivals, np.arange(count + 1) * t)
            for k in range(count):
                window = response[cuts[k] : cuts[k + 1]]
                if window.size >= 20:
                    stats[t].append([window.mean(), *np.percentile(window, [50, 95, 99])])
    everything = np.concatenate(pooled)
    reference = np.array([everything.mean(), *np.percentile(everything, [50, 95, 99])])
    out = {}
    for t, rows in stats.items():
        if not rows:
            raise SystemExit(f"--hours {hours:g}: no window of {t:g} s; give more hours")
        logs = np.log(np.array(rows) / reference)
        out[t] = (logs.mean(axis=0), logs.std(axis=0) / np.sqrt(len(rows)), np.cov(logs.T))
    return out


def _predicted(
    law: str, servers: int, rho: float, seconds: float, mean_factor: float, factors: Any
) -> np.ndarray:
    """
    The offsets capplan expects for this station and window length (mean, p50, p95, p99).
    """
    service_s = 0.020
    out: np.ndarray = station_fit.expected_window_offsets(
        rho * servers / service_s, seconds, servers, service_s, scv(law, DEFAULT_CV),
        mean_factor=mean_factor, quantile_factors=factors,
    )  # fmt: skip
    return out


def _spread(law: str, servers: int, rho: float, seconds: float) -> tuple[np.ndarray, Any]:
    """
    Independent requests' covariance of a window's log statistics (over its expected request
    count), and a function of the variance factors giving the excess capplan adds to it.
    """
    service_s = 0.020
    rate, v = rho * servers / service_s, scv(law, DEFAULT_CV)
    center, cov = sampling_covariance(rate, servers, service_s, v)
    iid = cov / np.outer(center, center) / (rate * seconds)

    def excess(factors: Any) -> np.ndarray:
        out: np.ndarray = station_fit.window_excess_covariance(
            rate, seconds, servers, service_s, v, factors=factors
        )
        return out

    return iid, excess


def _calibrate_spread(points: list[Any]) -> None:
    """
    Fit ``WINDOW_VARIANCE_FACTORS`` to the simulated windows' variances of their log
    statistics (the misfit: the log of the model's variance over the simulated one), and give
    the median correlations of the simulated excess (over what independent requests give,
    where that is at most 30% of the variance): ``WINDOW_EXCESS_CORRELATION``.
    """
    shipped = np.array(station_fit.WINDOW_VARIANCE_FACTORS)
    rows = []
    for law, servers, rho, t, _, _, cov in points:
        iid, excess = _spread(law, servers, rho, t)
        rows.append((law, t, iid, excess, cov))
    names = ("mean", "p50", "p95", "p99")
    fitted = []
    for stat, name in enumerate(names):
        use = [r for r in rows if r[4][stat, stat] > 1e-12 and np.isfinite(r[2][stat, stat])]

        def misfit(g: np.ndarray, stat: int = stat, use: list[Any] = use) -> np.ndarray:
            factors = shipped.copy()
            factors[stat] = g[0]
            return np.array(
                [np.log(i[stat, stat] + e(factors)[stat, stat]) - np.log(c[stat, stat])
                 for _, _, i, e, c in use]
            )  # fmt: skip

        fit = optimize.least_squares(misfit, [1.0], bounds=(0, 20))
        fitted.append(fit.x[0])
        rms = np.sqrt(np.mean(misfit(fit.x) ** 2))
        alone = np.array([np.log(i[stat, stat] / c[stat, stat]) for _, _, i, _, c in use])
        print(
            f"{name} variance: factor {fit.x[0]:.3f}; rms of ln(model / simulated variance) "
            f"{rms:.2f} (independent requests alone: {np.sqrt(np.mean(alone**2)):.2f}, "
            f"{len(use)} points)"
        )
    print(f"shipped: {tuple(float(g) for g in shipped)}")
    corr = []
    for _, _, iid, _, cov in rows:
        extra = cov - iid
        d = np.diag(extra)
        dominant = np.all(np.diag(iid) <= 0.3 * np.diag(cov))
        if np.all(np.isfinite(iid)) and np.all(d > 0) and dominant:
            corr.append(extra / np.sqrt(np.outer(d, d)))
    median = np.median(np.array(corr), axis=0)
    print(f"excess correlation, median of {len(corr)} points (mean, p50, p95, p99):")
    print(np.array2string(median, precision=2))
    shipped_corr = np.array(station_fit.WINDOW_EXCESS_CORRELATION)
    print(
        f"  smallest eigenvalue {np.linalg.eigvalsh(median)[0]:.4f}; shipped (0.95 × off the "
        f"diagonal), smallest eigenvalue {np.linalg.eigvalsh(shipped_corr)[0]:.4f}:"
    )
    print(np.array2string(shipped_corr, precision=2))


def calibrate(hours: float) -> None:
    """
    Fit the short-window offsets' factors to simulated windows; print them and the errors.
    Then the factors and correlations of the windows' excess spread (``_calibrate_spread``).
    """
    points = []
    for law in ("exp", "fixed"):
        for servers in (1, 2, 4, 8):
            for rho in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93):
                seed = 1000 * servers + int(rho * 100) + (0 if law == "exp" else 500)
                logs = _window_logs(law, servers, rho, hours, seed)
                points += [(law, servers, rho, t, *logs[t]) for t in CALIBRATION_LENGTHS]
                print(f"  simulated {law} c={servers} ρ={rho}", flush=True)
    shipped = (station_fit.WINDOW_MEAN_FACTOR, station_fit.WINDOW_QUANTILE_FACTORS)

    def misfit(stat: int, factor: float) -> np.ndarray:
        quantile = dict(shipped[1])
        if stat:
            quantile[float(_QS[stat - 1])] = factor
        mean = factor if stat == 0 else shipped[0]
        out = []
        for law, servers, rho, t, logs, se, _ in points:
            pred = _predicted(law, servers, rho, t, mean, tuple(quantile.items()))
            out.append((pred[stat] - logs[stat]) / max(float(se[stat]), 0.003))
        return np.array(out)

    for stat, name in ((0, "mean"), (2, "p95"), (3, "p99")):
        fit = optimize.least_squares(
            lambda f, s=stat: misfit(s, float(f[0])), [0.5], bounds=(0, 10)
        )
        print(f"{name}: factor {fit.x[0]:.3f}")
    print(f"shipped: mean {shipped[0]:g}, quantiles {shipped[1]}")
    title = "rms of (offset − simulated): mean, p50, p95, p99"
    print(f"{'law':<6}{'window':>7}  {title:<48}  no offset")
    for law in ("exp", "fixed"):
        for t in CALIBRATION_LENGTHS:
            rows = [p for p in points if p[0] == law and p[3] == t]
            sim = np.array([p[4] for p in rows])
            pred = np.array([_predicted(law, c, rho, t, *shipped) for _, c, rho, *_ in rows])
            rms = np.sqrt(np.mean((pred - sim) ** 2, axis=0))
            raw = np.sqrt(np.mean(sim**2, axis=0))
            print(f"{law:<6}{t:>6.0f}s  {np.array2string(rms, precision=3):<48}  "
                  f"{np.array2string(raw, precision=3)}")  # fmt: skip
    _calibrate_spread(points)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--relaxations", action="store_true", help="the window-length table (see above)"
    )
    parser.add_argument(
        "--calibrate", action="store_true", help="fit the short-window offsets' factors"
    )
    parser.add_argument("--hours", type=float, default=10.0, help="--calibrate: per point")
    parser.add_argument("--servers", type=int, default=8)
    parser.add_argument("--service-ms", type=float, default=20.0)
    parser.add_argument("--law", choices=LAWS, default="fixed")
    parser.add_argument("--rates", default="370,377,386")
    parser.add_argument("--points", default="15,60,240", help="point lengths, seconds")
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--slo-ms", type=float, default=120.0)
    parser.add_argument("--warm-s", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.relaxations:
        relaxations()
        return 0
    if args.calibrate:
        calibrate(args.hours)
        return 0
    rates = [float(r) for r in args.rates.split(",")]
    points = [float(p) for p in args.points.split(",")]
    service_s = args.service_ms / 1e3
    station = Station(args.servers, service_s, scv(args.law, DEFAULT_CV))
    slo_s = args.slo_ms / 1e3
    capacity = station.max_rate_for(slo_s, 99)
    print(
        f"M/G/{args.servers}, {args.law} service of {args.service_ms:g} ms, p99 <= "
        f"{args.slo_ms:g} ms: stationary capacity by the model {capacity:.1f} rps "
        f"({capacity * service_s / args.servers:.1%} utilization); {args.seeds} seeds"
    )
    header = f"{'rps':>6} {'model p99':>10} {'long run':>9}"
    for p in points:
        header += f" | {p:>4.0f} s: median  mean  within"
    print(header)
    for rate in rates:
        model = station.response_quantile(0.99, rate) * 1e3
        runs = [
            simulate(rate, args.servers, service_s, args.law, max(points), args.warm_s, seed=k)
            for k in range(args.seeds)
        ]
        long_run = np.quantile(np.concatenate(runs), 0.99) * 1e3
        row = f"{rate:>6.0f} {model:>10.1f} {long_run:>9.1f}"
        for p in points:
            p99 = np.array(
                [
                    np.quantile(
                        simulate(
                            rate, args.servers, service_s, args.law, p, args.warm_s, seed=1000 + k
                        ),
                        0.99,
                    )
                    for k in range(args.seeds)
                ]
            )
            row += (
                f" | {np.median(p99) * 1e3:>14.1f} {np.mean(p99) * 1e3:>5.1f}"
                f" {np.mean(p99 <= slo_s):>7.0%}"
            )
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
