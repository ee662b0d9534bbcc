"""
Calibrate the lab on this machine: how fast one generator process holds its rate, and what the
node process and the generator cost in CPU.

    python -m bench.lab.calibrate [--rates 1000,2000,3000] [--duration 10] [--pool FILE]
                                  [--json] [--no-uvloop]

Starts ``python -m bench.lab.node`` on a pool (default: one wide node, 200 slots at 20 ms
exponential — 10,000 rps of capacity, so it never queues at these rates) with every port
replaced by a free one, then, for each total rate, splits it over the pool's nodes in
proportion to their capacities and runs one ``python -m bench.lab.loadgen`` process per node,
all at once, straight at the nodes (no balancer).  For each rate it prints each generator's
send lateness, whether it held its rate, its CPU use, the node process's CPU use over the same
time (from ``/proc/PID/stat``), and the latencies.  The node process is stopped by its PID at
the end.  Everything is on 127.0.0.0/8; every run is bounded by ``--duration`` (≤ 60 s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.lab.node import NodeProcess, fetch_stats, start_node_process
from bench.lab.pool import Pool, load_pool

__all__ = ["main", "wide_pool"]

MAX_DURATION_S = 60.0
MAX_RATE_RPS = 10_000.0


def wide_pool() -> Pool:
    """
    One node with room for any rate a generator can send: 200 slots at 20 ms (10,000 rps).
    """
    return Pool.model_validate(
        {
            "name": "wide",
            "service": "exp",
            "seed": 7,
            "nodes": [
                {"name": "w1", "address": "127.0.0.2", "port": 0, "slots": 200, "service_ms": 20}
            ],
        }
    )


def _free_ports(pool: Pool) -> Pool:
    nodes = [node.model_copy(update={"port": 0}) for node in pool.nodes]
    return pool.model_copy(update={"nodes": nodes})


def _run_rate(
    node: NodeProcess, pool: Pool, total_rps: float, duration_s: float, uvloop: bool
) -> dict[str, Any]:
    capacity = pool.capacity_rps
    generators: list[tuple[str, float, subprocess.Popen[str]]] = []
    before = [fetch_stats(address) for address in node.addresses.values()]
    cpu0 = node.cpu_s()
    t0 = time.monotonic()
    for index, spec in enumerate(pool.nodes):
        rate = total_rps * spec.capacity_rps / capacity
        host, port = node.addresses[spec.name]
        command = [
            sys.executable,
            "-m",
            "bench.lab.loadgen",
            "--target",
            f"{host}:{port}",
            "--rate",
            f"{rate:.3f}",
            "--duration",
            str(duration_s),
            "--seed",
            str(index + 1),
            "--json",
        ]
        if not uvloop:
            command.append("--no-uvloop")
        generators.append(
            (spec.name, rate, subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
        )
    results: list[dict[str, Any]] = []
    for name, rate, process in generators:
        out, _ = process.communicate(timeout=duration_s + 60)
        summary: dict[str, Any] = json.loads(out)
        summary["node"] = name
        summary["node_rate_rps"] = rate
        results.append(summary)
    wall = time.monotonic() - t0
    node_cpu = node.cpu_s() - cpu0
    after = [fetch_stats(address) for address in node.addresses.values()]
    served = sum(a["served"] - b["served"] for a, b in zip(after, before, strict=True))
    overshoot_ms = sum(
        a["overshoot_ms_total"] - b["overshoot_ms_total"]
        for a, b in zip(after, before, strict=True)
    )
    per_request_ms = 1000.0 * node_cpu / served if served else float("nan")
    return {
        "total_rate_rps": total_rps,
        "served": served,
        "node_process_cpu_s": node_cpu,
        "node_process_cpu_ms_per_request": per_request_ms,
        "node_process_cpu_percent_at_rate": per_request_ms * total_rps / 10.0,
        "node_mean_overshoot_ms": overshoot_ms / served if served else float("nan"),
        "wall_s": wall,
        "generators": results,
    }


def _print(point: dict[str, Any]) -> None:
    print(
        f"\ntotal {point['total_rate_rps']:g} rps: node process served {point['served']} "
        f"requests on {point['node_process_cpu_s']:.2f} s of CPU = "
        f"{point['node_process_cpu_ms_per_request']:.3f} ms per request, so "
        f"{point['node_process_cpu_percent_at_rate']:.1f}% of a core at this rate; responses "
        f"{point['node_mean_overshoot_ms']:.2f} ms after their due time on average"
    )
    for g in point["generators"]:
        late = g["lateness_ms"]
        pct = g["percentiles_ms"]
        print(
            f"  {g['node']}: rate {g['node_rate_rps']:.0f} sent {g['send_rate_rps']:.0f}/"
            f"{g['scheduled_rate_rps']:.0f} rps  lateness p50 {late['p50']:.2f} p99 "
            f"{late['p99']:.2f} max {late['max']:.1f} ms  held {g['held_rate']}  "
            f"generator CPU {g['cpu_percent']:.0f}%  latency p50 {pct['p50']:.1f} p99 "
            f"{pct['p99']:.1f} ms  ok {g['ok']}/{g['scheduled']}"
        )


def main(argv: list[str] | None = None) -> int:
    """
    The ``python -m bench.lab.calibrate`` command.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.lab.calibrate")
    parser.add_argument("--rates", default="1000,2000,3000", help="total rates, rps")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per rate (≤ 60)")
    parser.add_argument("--pool", type=Path, help="a pool YAML (default: one wide node)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S:g}]")
    if not rates or not all(0 < r <= MAX_RATE_RPS for r in rates):
        parser.error(f"--rates must be in (0, {MAX_RATE_RPS:g}]")
    pool = _free_ports(load_pool(args.pool) if args.pool else wide_pool())
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="capplan-lab-") as tmp:
        directory = Path(tmp)
        pool_file = directory / "pool.yaml"
        pool_file.write_text(yaml.safe_dump(pool.model_dump(exclude_none=True)))
        budget = len(rates) * (args.duration + 30) + 30
        node = start_node_process(
            pool_file, directory, duration_s=budget, uvloop=not args.no_uvloop
        )
        try:
            for rate in rates:
                point = _run_rate(node, pool, rate, args.duration, not args.no_uvloop)
                points.append(point)
                if not args.json:
                    _print(point)
        finally:
            node.stop()
    if args.json:
        print(json.dumps(points, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
