"""
Benchmark: fit and select models for many nodes, side by side with the plain ways.

    python -m bench.fit [--nodes 10000] [--baseline-nodes 100] [--seed 1] [--processes N]

One run, the same synthetic data for every contestant:

* ``capplan`` — what ``capplan fit`` runs: ``capplan.models.parallel.fit_in_batches`` (batches
  of 250 nodes over one worker process per core, ``--processes``), each batch
  ``capplan.models.fit.fit_nodes`` (model ``auto``: M/G/c, USL, utilization law and hyperbolic
  candidates, selection by AICc, capacity and interval);
* ``capplan, one process`` — ``fit_nodes`` on all nodes at once, in this process;
* ``capplan, one node at a time`` — ``fit_node`` in a loop (what a caller without batching gets);
* ``curve_fit loop`` — the same M/G/c station fitted node by node with a plain
  ``scipy.optimize.curve_fit`` on the same log latencies (exact quantiles from
  ``Station.response_quantile``), capacity from ``Station.max_rate_for``;
* ``pyusl`` — the USL part alone through ``pyusl`` (PyPI), against capplan's ``fit_usl``.

The per-node loops run on the first ``--baseline-nodes`` nodes (they are slow); their time for
all nodes is that per-node time × nodes, printed as a projection and labelled so.  Answers are
compared node by node: capacity at the SLO (capplan against the curve_fit loop) and the USL
coefficients (capplan against pyusl).

The data: each node is an M/G/c station (c in 1..32, mean service 10–100 ms, scv 0.1–1.5)
measured over 32–60 windows of 60 s at utilizations spread over 15–90%; each window's mean and
p50/p95/p99 are the model's times a lognormal noise of sd 0.5/√requests (at least 1%);
concurrency is Little's law; cpu_util is a service demand × rate plus noise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta

import numpy as np

from capplan.errors import CapplanError
from capplan.models.fit import MODELS, NodeInput, SLOTarget, fit_node, fit_nodes
from capplan.models.parallel import available_cores, fit_in_batches
from capplan.models.queueing import Station, mgc_mean_response, mgc_response_quantile
from capplan.models.station_fit import station_capacity
from capplan.models.usl import fit_usl
from capplan.samples import Window

SLO = SLOTarget(percentile=99, latency_ms=250, max_error_rate=0.001)
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def synthetic_pool(nodes: int, seed: int) -> tuple[list[NodeInput], np.ndarray]:
    """
    ``nodes`` synthetic nodes and their true (c, S, scv) rows.
    """
    rng = np.random.default_rng(seed)
    c = rng.choice([1, 2, 4, 8, 16, 32], size=nodes).astype(float)
    s = rng.uniform(0.010, 0.100, size=nodes)
    scv = rng.uniform(0.1, 1.5, size=nodes)
    counts = rng.integers(32, 61, size=nodes)
    width = int(counts.max())
    util = np.sort(rng.uniform(0.15, 0.90, size=(nodes, width)), axis=1)
    rate_nominal = util * (c / s)[:, None]
    requests = np.maximum(rng.poisson(rate_nominal * 60.0), 1)
    rate = np.minimum(requests / 60.0, 0.97 * (c / s)[:, None])
    cc, ss, vv = c[:, None], s[:, None], scv[:, None]
    mean = mgc_mean_response(rate, cc, ss, vv)
    quant = mgc_response_quantile(
        np.array([0.5, 0.95, 0.99])[:, None, None], rate[None], cc[None], ss[None], vv[None]
    )
    sd = np.maximum(0.5 / np.sqrt(requests), 0.01)
    noise = np.exp(rng.normal(0.0, 1.0, size=(4, nodes, width)) * sd[None])
    mean_ms = mean * noise[0] * 1e3
    pct_ms = np.sort(quant * noise[1:] * 1e3, axis=0)
    demand = rng.uniform(0.2, 0.9, size=nodes) * s / c
    cpu = np.clip(demand[:, None] * rate + rng.normal(0, 0.01, size=rate.shape), 0.0, 1.0)
    out = []
    for i in range(nodes):
        windows = [
            Window(
                node=f"n{i}",
                start=T0 + timedelta(minutes=j),
                seconds=60.0,
                requests=int(requests[i, j]),
                errors=0,
                mean_ms=float(mean_ms[i, j]),
                p50_ms=float(pct_ms[0, i, j]),
                p95_ms=float(pct_ms[1, i, j]),
                p99_ms=float(pct_ms[2, i, j]),
                concurrency=float(rate[i, j] * mean_ms[i, j] / 1e3),
                cpu_util=float(cpu[i, j]),
            )
            for j in range(int(counts[i]))
        ]
        out.append(NodeInput(f"n{i}", windows))
    return out, np.column_stack([c, s, scv])


def curve_fit_station(windows: list[Window]) -> float:
    """
    The plain way: ``curve_fit`` an M/G/c station to one node's log latencies; its capacity.
    """
    from scipy.optimize import curve_fit
    from scipy.special import expit

    rate = np.array([w.rate for w in windows])
    stats = [("mean", None), ("p50", 0.5), ("p95", 0.95), ("p99", 0.99)]
    y = np.concatenate([np.log([getattr(w, f"{k}_ms") / 1e3 for w in windows]) for k, _ in stats])
    rmax = float(rate.max())

    def model(_x: np.ndarray, log_s: float, logit_rho: float, log_scv: float) -> np.ndarray:
        srv = math.exp(log_s)
        rho = float(expit(logit_rho))
        station = Station(max(rmax * srv / rho, 1.0), srv, math.exp(log_scv))
        parts = [np.log(station.mean_response(rate))]
        parts += [np.log(station.response_quantile(float(q or 0), rate)) for _, q in stats[1:]]
        return np.concatenate(parts)

    s0 = 0.8 * min(w.p50_ms or math.inf for w in windows) / 1e3
    popt, _ = curve_fit(model, np.zeros(y.size), y, p0=[math.log(s0), 0.0, math.log(0.5)])
    srv = math.exp(popt[0])
    rho = float(expit(popt[1]))
    station = Station(max(rmax * srv / rho, 1.0), srv, math.exp(popt[2]))
    return float(station.max_rate_for(SLO.latency_ms / 1e3, SLO.percentile))


def pyusl_fit(load: np.ndarray, throughput: np.ndarray) -> tuple[float, float, float]:
    """
    pyusl's fit (it prints its results: silenced), as (sigma, kappa, lambda).
    """
    import pyusl  # type: ignore[import-untyped, import-not-found, unused-ignore]

    model = pyusl.usl()
    with contextlib.redirect_stdout(io.StringIO()):
        model.fit(list(load), list(throughput), requires_plot=False)
    return float(model.alpha), float(model.beta), float(model.gamma)


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark and print the table.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--baseline-nodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--processes", type=int, default=None, help="of the batched fit (default: one per core)"
    )
    args = parser.parse_args(argv)
    log = sys.stderr
    print(f"generating {args.nodes} nodes ...", file=log)
    pool, truth = synthetic_pool(args.nodes, args.seed)
    windows = sum(len(p.windows) for p in pool)
    print(f"{args.nodes} nodes, {windows} windows", file=log)

    processes = args.processes or available_cores()
    t = time.perf_counter()
    cli_fits = fit_in_batches(pool, SLO, processes=processes)
    t_cli = time.perf_counter() - t
    print(f"capplan fit_in_batches, {processes} processes: {t_cli:.2f} s", file=log)
    t = time.perf_counter()
    batch = fit_nodes(pool, SLO)
    t_batch = time.perf_counter() - t
    print(f"capplan fit_nodes: {t_batch:.2f} s", file=log)

    k = min(args.baseline_nodes, args.nodes)
    sample = pool[:k]
    t = time.perf_counter()
    single = [fit_node(p.node, p.windows, SLO) for p in sample]
    t_single = (time.perf_counter() - t) / k

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = []
        for p in sample:
            try:
                plain.append(curve_fit_station(list(p.windows)))
            except (RuntimeError, ValueError, ArithmeticError, CapplanError):
                plain.append(math.nan)  # as a plain loop would: the node's fit failed
    t_plain = (time.perf_counter() - t) / k

    def usl_data(p: NodeInput) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.array([w.concurrency for w in p.windows]),
            np.array([w.rate for w in p.windows]),
        )

    t = time.perf_counter()
    ours_usl = [fit_usl(*usl_data(p)) for p in sample]
    t_ours_usl = (time.perf_counter() - t) / k
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_usl = []
        for p in sample:
            try:
                theirs_usl.append(pyusl_fit(*usl_data(p)))
            except (RuntimeError, ValueError):
                theirs_usl.append((math.nan, math.nan, math.nan))
    t_pyusl = (time.perf_counter() - t) / k

    per_cli = t_cli / args.nodes
    per_batch = t_batch / args.nodes
    print()
    print(f"fit and select, {args.nodes} nodes x 32-60 windows ({windows} windows)")
    print(f"{'contestant':<34}{'ms/node':>10}{'nodes/s':>10}{'total s':>12}{'x capplan':>11}")
    rows = [
        (f"capplan fit ({processes} processes)", per_cli, False),
        ("capplan fit_nodes (one process)", per_batch, False),
        ("capplan fit_node, one at a time", t_single, True),
        ("plain curve_fit loop (M/G/c)", t_plain, True),
    ]
    for name, per, projected in rows:
        total = per * args.nodes
        mark = "*" if projected else ""
        print(
            f"{name:<34}{per * 1e3:>10.2f}{1 / per:>10.0f}{total:>11.1f}{mark:1}"
            f"{per / per_cli:>11.1f}"
        )
    print(f"USL part alone ({k} nodes):")
    print(f"{'  capplan fit_usl':<34}{t_ours_usl * 1e3:>10.2f}{1 / t_ours_usl:>10.0f}")
    print(
        f"{'  pyusl':<34}{t_pyusl * 1e3:>10.2f}{1 / t_pyusl:>10.0f}"
        f"{'':>12}{t_pyusl / t_ours_usl:>11.1f} x capplan fit_usl"
    )
    print(f"* projected from {k} nodes")
    print()
    same = [
        abs(a.capacity_rps - b.capacity_rps) <= 1e-6 * b.capacity_rps
        for a, b in zip(batch[:k], single, strict=True)
        if a.success and b.success
    ]
    print(f"capplan batched vs one at a time: {sum(same)}/{len(same)} identical capacities (1e-6)")
    alike = sum(repr(a) == repr(b) for a, b in zip(cli_fits, batch, strict=True))
    print(f"capplan over {processes} processes vs one batch: {alike}/{len(batch)} identical fits")
    mgc_direct = np.array(
        [
            next((c.capacity_rps for c in f.candidates if c.model == "mgc"), math.nan)
            for f in batch[:k]
        ]
    )
    plain_arr = np.array(plain)
    ok = np.isfinite(mgc_direct) & np.isfinite(plain_arr) & (plain_arr > 0)
    rel = np.abs(mgc_direct[ok] - plain_arr[ok]) / plain_arr[ok]
    print(
        f"M/G/c capacity, capplan vs curve_fit loop: within 1%: {np.mean(rel <= 0.01):.1%}, "
        f"median |diff| {np.median(rel):.2%}, curve_fit failures {np.count_nonzero(~ok)}"
    )
    ours_p = np.array([(f.sigma, f.kappa, f.lam) for f in ours_usl])
    theirs_p = np.array(theirs_usl)
    ok = np.all(np.isfinite(theirs_p), axis=1)
    lam_rel = np.abs(ours_p[ok, 2] - theirs_p[ok, 2]) / ours_p[ok, 2]
    print(
        f"USL lambda, capplan vs pyusl: within 1%: {np.mean(lam_rel <= 0.01):.1%}, "
        f"pyusl failures {np.count_nonzero(~ok)}"
    )
    true_cap = station_capacity(
        truth[:, 0], truth[:, 1], truth[:, 2], SLO.latency_ms / 1e3, SLO.quantile
    )
    chosen = np.array([f.capacity_rps for f in batch])
    low = np.array([f.capacity_interval[0] for f in batch])
    high = np.array([f.capacity_interval[1] for f in batch])
    meets = true_cap > 0  # a node whose service alone misses the SLO has capacity 0
    zero_ok = np.mean(chosen[~meets] == 0) if np.any(~meets) else 1.0
    error = np.abs(chosen[meets] - true_cap[meets]) / true_cap[meets]
    low_side = np.mean(chosen[meets][error > 0.05] < true_cap[meets][error > 0.05])
    inside = (low[meets] <= true_cap[meets]) & (true_cap[meets] <= high[meets])
    models = {m: int(np.count_nonzero([f.model == m for f in batch])) for m in MODELS}
    print(
        f"capplan vs truth, all {args.nodes} nodes ({np.count_nonzero(~meets)} with true "
        f"capacity 0): zero where the truth is zero: {zero_ok:.1%}; elsewhere median |capacity "
        f"error| {np.median(error):.2%}, above 5%: {np.mean(error > 0.05):.1%} (of which "
        f"below the truth: {low_side:.0%}), "
        f"true capacity inside the 95% interval: {np.mean(inside):.1%}"
    )
    print("models chosen: " + ", ".join(f"{m} {n}" for m, n in models.items() if n))
    target = 5.0
    verdict = "met" if t_cli <= target and args.nodes >= 10_000 else "NOT met"
    print(
        f"target: 10,000 nodes in under {target:g} s: {verdict} ({t_cli:.2f} s for {args.nodes}"
        f" over {processes} processes; one process {t_batch:.2f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
