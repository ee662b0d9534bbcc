"""
Coverage of the USL's capacity interval on windows drawn from a known USL.

    python -m bench.usl_coverage [--replicates 400] [--seed 1] [--noise 0.03]

A node follows X(N) = λN / (1 + σ(N − 1) + κN(N − 1)) with σ = 0.05, κ = 0.0005, λ = 20 rps
(peak near N = 44): 24 windows of 60 s at concurrencies 2–28, each with its throughput off by
``--noise`` (multiplicative, lognormal), its request count Poisson, its mean latency N over the
measured rate (Little's law), and its p50, p95 and p99 fixed multiples (0.8, 2.2, 3.0) of the
mean, each with a sampling noise shrinking as 1/√requests.  The SLO is the p99 at N = 28's
rate, so the true capacity lies inside the measured range.  Every replicate is fitted with
``model="usl"`` (all at once, by ``fit_nodes``) and the 95% capacity intervals holding the
true capacity are counted; also
printed: how many miss below, the median half-width, and the point estimates' median and
spread relative to the truth.  The target for any capacity interval is 93–97%.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from capplan.models.fit import NodeInput, SLOTarget, fit_nodes
from capplan.models.scaled_fit import usl_mean_latency
from capplan.samples import Window

SIGMA, KAPPA, LAMBDA = 0.05, 0.0005, 20.0
#: The percentiles' multiples of the mean latency, and their per-request noise (sd of the log).
FACTORS = {"p50": (0.8, 1.0), "p95": (2.2, 2.0), "p99": (3.0, 4.0)}
MEAN_NOISE = 0.8
CONCURRENCY = np.linspace(2.0, 28.0, 24)
START = datetime(2026, 1, 1, tzinfo=UTC)


def throughput(n: float) -> float:
    return LAMBDA * n / (1.0 + SIGMA * (n - 1.0) + KAPPA * n * (n - 1.0))


def true_capacity(slo_ms: float) -> float:
    """
    The largest rate whose p99 (3 × the USL's mean latency) is within ``slo_ms``.
    """
    theta = np.array([[SIGMA, KAPPA, LAMBDA]])
    lo, hi = 0.0, throughput(math.sqrt((1 - SIGMA) / KAPPA))
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        latency = float(usl_mean_latency(theta, np.array([[mid]]))[0, 0])
        if 1e3 * FACTORS["p99"][0] * latency <= slo_ms:
            lo = mid
        else:
            hi = mid
    return lo


def replicate(name: str, rng: np.random.Generator, noise: float) -> NodeInput:
    windows = []
    for i, n in enumerate(CONCURRENCY.tolist()):
        x = throughput(n) * math.exp(rng.normal(0.0, noise))
        requests = int(rng.poisson(x * 60.0))
        mean = n / (requests / 60.0)  # Little's law on what the window measured

        def noisy(value: float, sd: float, requests: int = requests) -> float:
            return 1e3 * value * math.exp(rng.normal(0.0, sd / math.sqrt(requests)))

        windows.append(
            Window(
                node=name,
                start=START + timedelta(minutes=i),
                seconds=60.0,
                requests=requests,
                errors=0,
                mean_ms=noisy(mean, MEAN_NOISE),
                p50_ms=noisy(FACTORS["p50"][0] * mean, FACTORS["p50"][1]),
                p95_ms=noisy(FACTORS["p95"][0] * mean, FACTORS["p95"][1]),
                p99_ms=noisy(FACTORS["p99"][0] * mean, FACTORS["p99"][1]),
                concurrency=n,
            )
        )
    return NodeInput(name, windows, None)


@dataclass(frozen=True)
class Coverage:
    truth: float
    slo_ms: float
    covered: int
    below: int  # intervals entirely below the truth
    above: int
    replicates: int
    half_width: float  # median, relative to the truth
    point_median: float  # point estimate / truth
    point_sd: float


def measure(replicates: int, seed: int, noise: float) -> Coverage:
    """
    Fit ``replicates`` nodes drawn from the known USL and count the intervals holding its
    capacity.
    """
    slo_ms = 1e3 * FACTORS["p99"][0] * CONCURRENCY[-1] / throughput(float(CONCURRENCY[-1]))
    truth = true_capacity(slo_ms)
    rng = np.random.default_rng(seed)
    nodes = [replicate(f"u{r}", rng, noise) for r in range(replicates)]
    fits = fit_nodes(nodes, SLOTarget(percentile=99.0, latency_ms=slo_ms), model="usl")
    low = np.array([f.capacity_interval[0] for f in fits])
    high = np.array([f.capacity_interval[1] for f in fits])
    point = np.array([f.capacity_rps for f in fits])
    covered = int(np.count_nonzero((low <= truth) & (truth <= high)))
    below = int(np.count_nonzero(high < truth))
    return Coverage(
        truth,
        slo_ms,
        covered,
        below,
        replicates - covered - below,
        replicates,
        float(np.median((high - low) / 2 / truth)),
        float(np.median(point / truth)),
        float(np.std(point / truth)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--noise", type=float, default=0.03, help="throughput noise (sd of log)")
    args = parser.parse_args(argv)
    got = measure(args.replicates, args.seed, args.noise)
    print(
        f"USL σ={SIGMA} κ={KAPPA} λ={LAMBDA}, p99 SLO {got.slo_ms:.1f} ms, true capacity "
        f"{got.truth:.2f} rps; {args.replicates} replicates, throughput noise {args.noise:.0%}, "
        f"seed {args.seed}"
    )
    print(
        f"coverage {got.covered}/{args.replicates} = {got.covered / args.replicates:.1%} (target "
        f"93–97%); intervals entirely below the truth {got.below}, above {got.above}"
    )
    print(
        f"median half-width {got.half_width:.2%}; point estimate / truth: "
        f"median {got.point_median:.4f}, sd {got.point_sd:.2%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
