"""
A lab node's stationary capacity at the SLO, by simulation of its queue (pure computation).

    python -m bench.lab.stationary --slots 22 [--service-ms 20] [--law exp|fixed|lognormal]
                                   [--cv 0.4] [--slo-ms 120] [--percentile 99]

A node of the lab is an M/G/c station whose parameters are known (the pool file: slots, mean
service time, service law and cv).  Its *stationary* capacity — the largest rate whose long-run
p99 meets the SLO, which is what capplan's models predict — is found here by simulating that
station: the exact FCFS multi-server recursion (each arrival takes the slot that frees first),
seeded, pooled over several long runs, and a bisection on the rate.

The lab also *measures* each node's capacity with short points (``run.py``); near saturation a
short point's p99 is well below the long-run one (``bench.lab.window_bias`` shows by how much),
so that measurement overstates the stationary capacity by a few percent.  The lab reports both,
and checks capplan's intervals against each.
"""

from __future__ import annotations

import argparse
import heapq
import math
from collections.abc import Callable

import numpy as np
from scipy import optimize, stats

from bench.lab.pool import DEFAULT_CV, service_times
from capplan.models.queueing import Station

#: Long runs per rate, their length and the warm-up before each (seconds).
RUNS, RUN_S, WARM_S = 6, 300.0, 5.0
#: Bisection steps on the rate (2⁻¹² of the bracket: below 0.01% of the capacity).
STEPS = 12


def simulate(
    rate: float,
    servers: int,
    service_s: float,
    law: str,
    duration_s: float,
    warm_s: float,
    *,
    seed: int,
    cv: float = DEFAULT_CV,
) -> np.ndarray:
    """
    Response times (s) of the requests that arrive in ``[warm_s, warm_s + duration_s)`` at an
    M/G/c station that starts empty at 0: Poisson arrivals at ``rate``; service times of mean
    ``service_s``, ``exp``, ``fixed`` or ``lognormal`` with coefficient of variation ``cv``
    (as the lab's nodes draw them).
    """
    rng = np.random.default_rng(seed)
    horizon = warm_s + duration_s
    n = int(rate * horizon + 10 * np.sqrt(rate * horizon) + 10)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, n))
    arrivals = arrivals[arrivals < horizon]
    n = arrivals.size
    service = service_times(rng, law, service_s, cv, n)
    response = fcfs_response(arrivals, servers, service)
    kept: np.ndarray = response[arrivals >= warm_s]
    return kept


def fcfs_response(arrivals: np.ndarray, servers: int, service: np.ndarray) -> np.ndarray:
    """
    Response times of requests arriving at ``arrivals`` (sorted) at ``servers`` slots with one
    FIFO queue: the exact recursion, each request taking the slot that frees first.
    """
    free = [0.0] * servers  # when each slot frees, as a heap
    response = np.empty(arrivals.size)
    for i in range(arrivals.size):
        start = max(arrivals[i], heapq.heappop(free))
        done = start + service[i]
        heapq.heappush(free, done)
        response[i] = done - arrivals[i]
    return response


def long_run_quantile(
    rate: float, servers: int, service_s: float, law: str, cv: float, q: float, seed: int = 0
) -> float:
    """
    The ``q`` quantile of the response time over ``RUNS`` pooled runs of ``RUN_S`` seconds
    (the same seeds at every rate, so the estimate moves smoothly with the rate).
    """
    runs = [
        simulate(rate, servers, service_s, law, RUN_S, WARM_S, seed=seed + k, cv=cv)
        for k in range(RUNS)
    ]
    return float(np.quantile(np.concatenate(runs), q))


def mdc_wait_cdf(servers: int, rate: float, service: float) -> Callable[[float], float]:
    """
    The exact M/D/c waiting-time cdf (fixed service ``service``, Poisson ``rate``): the number
    in system at times ``D`` apart is the chain ``N' = max(N − c, 0) + Poisson(λD)`` (solved on
    a state space cut where its geometric tail is below 1e-16), and for ``(k−1)D ≤ x < kD``,
    ``P(W ≤ x) = Σ_{j<kc} Q_{kc−j−1}·pmf_Poisson(j; λ(kD − x))`` with ``Q_n = P(N ≤ n + c)``
    (Franx, "A simple solution for the M/D/c waiting time distribution", Oper. Res. Letters
    29, 2001).
    """
    load = rate * service
    size = int(servers + load + 10 * math.sqrt(load + 1) + 45 / (1 - load / servers) + 50)
    arrivals = stats.poisson.pmf(np.arange(size), load)
    chain = np.zeros((size, size))
    for n in range(size):
        base = max(n - servers, 0)
        chain[n, base:] = arrivals[: size - base]
    chain[:, -1] += 1.0 - chain.sum(axis=1)
    system = chain.T - np.eye(size)
    system[-1, :] = 1.0
    target = np.zeros(size)
    target[-1] = 1.0
    queue = np.cumsum(np.linalg.solve(system, target))[servers:]

    def cdf(x: float) -> float:
        k = math.floor(x / service) + 1
        j = np.arange(k * servers)
        index = np.minimum(k * servers - j - 1, queue.size - 1)
        return float(np.sum(queue[index] * stats.poisson.pmf(j, rate * (k * service - x))))

    return cdf


def mdc_capacity(servers: int, service_ms: float, slo_ms: float, percentile: float) -> float:
    """
    The exact largest rate (rps) whose M/D/c response-time percentile meets ``slo_ms``
    (:func:`mdc_wait_cdf`, root-found on the rate to 1e-9 of it, between 0.9 and 1.1 times
    capplan's model, which is within 0.3% of it): fixed service needs no simulation, whose
    long-run p99 scatters by about 1% between seed sets.
    """
    service_s, q = service_ms / 1e3, percentile / 100.0
    top = servers / service_s
    model = Station(servers, service_s, 0.0).max_rate_for(slo_ms / 1e3, percentile)
    low, high = 0.9 * model, min(1.1 * model, 0.995 * top)

    def excess(rate: float) -> float:
        return q - mdc_wait_cdf(servers, rate, service_s)(slo_ms / 1e3 - service_s)

    if model <= 0.0:
        return 0.0
    if excess(low) > 0.0:  # not met even there (never seen): search from near 0
        low = 0.01 * low
    if excess(high) <= 0.0:  # met even there (never seen): a lower bound
        return high
    return float(optimize.brentq(excess, low, high, xtol=1e-9 * top))


def stationary_capacity(
    servers: int,
    service_ms: float,
    law: str,
    cv: float,
    slo_ms: float,
    percentile: float,
    *,
    seed: int = 0,
) -> float:
    """
    The largest rate (rps) whose simulated long-run percentile meets ``slo_ms``: bisection
    between 0 and the station's saturation ``servers / service``.
    """
    service_s = service_ms / 1e3
    q = percentile / 100.0
    lo, hi = 0.0, servers / service_s
    for _ in range(STEPS):
        mid = 0.5 * (lo + hi)
        if long_run_quantile(mid, servers, service_s, law, cv, q, seed) * 1e3 <= slo_ms:
            lo = mid
        else:
            hi = mid
    return lo


def main(argv: list[str] | None = None) -> int:
    """
    Print one station's stationary capacity at the SLO as the lab's report computes it
    (``bench.lab.results.node_stationary``: the median over its seed sets and their range;
    exact for fixed service), and for exponential service the exact M/M/c one beside it.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.lab.stationary", description=__doc__.split("\n\n")[0].strip()
    )
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--service-ms", type=float, default=20.0)
    parser.add_argument("--law", choices=("exp", "fixed", "lognormal"), default="exp")
    parser.add_argument("--cv", type=float, default=DEFAULT_CV, help="lognormal's (default 0.4)")
    parser.add_argument("--slo-ms", type=float, default=120.0)
    parser.add_argument("--percentile", type=float, default=99.0)
    args = parser.parse_args(argv)
    if args.slots < 1 or not args.service_ms > 0 or not args.slo_ms > 0 or not args.cv > 0:
        parser.error("--slots must be at least 1; --service-ms, --slo-ms and --cv above 0")
    if not 0 < args.percentile < 100:
        parser.error("--percentile must be in (0, 100)")
    from bench.lab.results import node_stationary  # (that module imports this one)

    spec = {"slots": args.slots, "service_ms": args.service_ms, "service": args.law, "cv": args.cv}
    slo = {"latency_ms": args.slo_ms, "percentile": args.percentile}
    median, (low, high) = node_stationary(spec, {"service": args.law}, slo)
    how = "exact (M/D/c)" if args.law == "fixed" else "simulated, median of the seed sets"
    print(
        f"{args.slots} slots, {args.service_ms:g} ms {args.law} service: p{args.percentile:g} "
        f"<= {args.slo_ms:g} ms up to {median:.1f} rps, {how} [{low:.1f}, {high:.1f}]"
    )
    if args.law == "exp":
        exact = Station(args.slots, args.service_ms / 1e3).max_rate_for(
            args.slo_ms / 1e3, args.percentile
        )
        print(f"exact (M/M/c): {exact:.1f} rps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
