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

``--relaxations`` prints instead the table behind ``capplan.models.fit.STATIONARY_RELAXATIONS``:
for c = 1, 2, 8, exponential and fixed service of 20 ms, ρ = 0.5–0.9 and windows of 10 s and
60 s, the geometric mean of simulated windows' p99 (after 5 s of warm-up) over the model's,
against the window's length in relaxation times of the queue, ``(1 + scv)/2 · S/(c(1 − √ρ)²)``;
about five seconds.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.lab.pool import DEFAULT_CV, scv
from bench.lab.stationary import simulate
from capplan.models.queueing import Station, relaxation_time

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--relaxations", action="store_true", help="the window-length table (see above)"
    )
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
