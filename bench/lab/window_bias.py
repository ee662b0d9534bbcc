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
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.lab.pool import DEFAULT_CV, scv
from bench.lab.stationary import simulate
from capplan.models.queueing import Station

LAWS = ("exp", "fixed", "lognormal")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=8)
    parser.add_argument("--service-ms", type=float, default=20.0)
    parser.add_argument("--law", choices=LAWS, default="fixed")
    parser.add_argument("--rates", default="370,377,386")
    parser.add_argument("--points", default="15,60,240", help="point lengths, seconds")
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--slo-ms", type=float, default=120.0)
    parser.add_argument("--warm-s", type=float, default=5.0)
    args = parser.parse_args(argv)
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
