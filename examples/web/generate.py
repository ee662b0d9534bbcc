"""
Generate ``samples.csv`` for the example pool: four unequal nodes behind one balancer.

The model (so anyone can check what capplan's fit should find):

* each node is an M/G/c station — ``c`` worker slots, mean service time ``S``, service-time
  squared coefficient of variation ``scv`` — with Poisson arrivals;
* the windows are 60 s long, one every 15 minutes over two days; the offered rate follows a
  daily curve between about 15% and 88% of the node's saturation rate ``c / S``;
* a window's mean and p50/p95/p99 latency are the model's (M/G/c, see
  ``capplan.models.queueing``), moved by what a 60 s window is expected to show of them near
  saturation (``capplan.models.station_fit.expected_window_offsets``), times one lognormal
  factor for all four of how far the window's queue strayed (its excursions:
  ``capplan.models.station_fit.window_excess_covariance``), times a lognormal measurement
  noise whose spread shrinks with the window's request count (sd = 0.6 / sqrt(requests), at
  least 1%);
* ``concurrency`` is Little's law (rate × mean latency); ``cpu_util`` is the node's CPU demand per
  request × rate (utilization law) plus 0.01 of noise; errors are binomial with p = 0.0002.

Run ``python examples/web/generate.py`` to rewrite ``samples.csv`` (deterministic: seed 20261120).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from capplan.models.queueing import Station
from capplan.models.station_fit import expected_window_offsets, window_excess_covariance
from capplan.samples import Window, write_samples

#: name: (slots c, mean service ms, scv, CPU seconds per request)
NODES = {
    "web-1": (2, 20.0, 0.25, 0.0035),
    "web-2": (4, 20.0, 0.25, 0.0018),
    "web-3": (8, 20.0, 0.16, 0.0009),
    "web-4": (8, 30.0, 1.0, 0.0011),
}
START = datetime(2026, 11, 18, 0, 0, tzinfo=UTC)
WINDOWS = 192  # two days, one 60-second window every 15 minutes
SEED = 20261120


def windows(rng: np.random.Generator) -> list[Window]:
    """
    All nodes' windows, ordered by node then start.
    """
    out: list[Window] = []
    for node, (c, service_ms, scv, cpu_per_request) in NODES.items():
        station = Station(servers=c, service_time=service_ms / 1000.0, scv=scv)
        for i in range(WINDOWS):
            hour = (i * 15 / 60.0) % 24
            daily = 0.5 - 0.5 * math.cos(2 * math.pi * (hour - 4) / 24)  # 0 at 04:00, 1 at 16:00
            utilization = 0.15 + 0.73 * daily
            rate = utilization * station.max_rate
            requests = int(rng.poisson(rate * 60))
            if requests == 0:
                continue
            observed = requests / 60.0
            held = min(observed, 0.985 * station.max_rate)
            m = station.metrics(held, percentiles=(50, 95, 99))
            moved = np.exp(expected_window_offsets(held, 60.0, c, service_ms / 1000.0, scv))
            # the window's excursions: one log-normal factor on all four statistics at once
            excess = window_excess_covariance(held, 60.0, c, service_ms / 1000.0, scv)
            lam, vec = np.linalg.eigh(excess)
            moved *= np.exp(vec @ (np.sqrt(np.maximum(lam, 0.0)) * rng.standard_normal(4)))
            sd = max(0.01, 0.6 / math.sqrt(requests))

            def noisy(seconds: float, sd: float = sd) -> float:
                return round(float(seconds) * 1000.0 * math.exp(rng.normal(0.0, sd)), 3)

            mean_ms = noisy(m.mean_response * moved[0])
            p50, p95, p99 = sorted(
                noisy(m.percentiles[p] * moved[k]) for k, p in ((1, 50.0), (2, 95.0), (3, 99.0))
            )
            cpu = min(1.0, max(0.0, cpu_per_request * observed + rng.normal(0.0, 0.01)))
            out.append(
                Window(
                    node=node,
                    start=START + timedelta(minutes=15 * i),
                    seconds=60.0,
                    requests=requests,
                    errors=int(rng.binomial(requests, 0.0002)),
                    mean_ms=mean_ms,
                    p50_ms=p50,
                    p95_ms=p95,
                    p99_ms=p99,
                    concurrency=round(observed * mean_ms / 1000.0, 4),
                    cpu_util=round(cpu, 4),
                )
            )
    return out


def main() -> None:
    """
    Write samples.csv beside this script.
    """
    rng = np.random.default_rng(SEED)
    target = Path(__file__).with_name("samples.csv")
    target.write_text("".join(write_samples(windows(rng))), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
