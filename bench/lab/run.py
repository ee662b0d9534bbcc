"""
The lab's procedure: measure a pool of unequal nodes, let capplan fit and optimize it, then
compare capplan's configs with the usual alternatives behind the real nginx and HAProxy.

    python -m bench.lab --out DIR [--quick] [--pool FILE] [--service exp,fixed,lognormal]
                        [--balancers nginx,haproxy] [--repeats N] [--point-s S]

1. *Measure*: every node is driven directly, all at once, through a ramp of loads up to 90% of
   its capacity, in steps aligned to capplan's windows; capplan reads the nodes' access logs
   (``capplan collect`` with ``host: local``), fits them and writes its plan and configs.
2. *Predict*: each node's predicted capacity at the SLO against its measured one — the largest
   rate at which it alone meets the SLO (0.7, 0.9, 1.1 × the prediction, then bisection; the
   nodes are measured at the same time, each on its own port).
3. *Compare*: per balancer and strategy, the SLO percentile and errors at 50–90% of the pool's
   measured capacity (its nodes' sum), the largest rate meeting the SLO (bisection), and at
   120% (overload), with repeats.

Every point is stored in ``DIR/results.json`` as it is measured, and a point already there is
not run again: an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench.lab._loop import loop_factory
from bench.lab.balancers import STRATEGIES, Balancers, CapplanConfig
from bench.lab.loadgen import LoadResult, run_load_async
from bench.lab.node import fetch_stats, log_path, start_node_process
from bench.lab.pool import DEFAULT_POOL, Pool, load_pool, parse_services
from bench.lab.results import add_stationary, markdown, plot

__all__ = [
    "Lab",
    "Settings",
    "capplan_json",
    "copy_log_between",
    "keep_ramp_logs",
    "local_nodes",
    "main",
    "remove_store",
    "run_ramps",
    "wait_idle",
]

REPO = Path(__file__).resolve().parents[2]
#: Before a point, the longest wait for the nodes to work off an earlier point's backlog.
SETTLE_MAX_S = 120.0
#: nginx's default fail_timeout (10 s) and a second: how long a balancer may hold a node down
#: after the timeouts of an overloaded point.
FAIL_TIMEOUT_S = 11.0
CAPPLAN = [sys.executable, "-m", "capplan"]


@dataclass(frozen=True)
class Settings:
    """
    One lab run's knobs.
    """

    out: Path
    pool_file: Path
    services: tuple[str, ...]
    balancers: tuple[str, ...]
    strategies: tuple[str, ...]
    point_s: float
    warmup_s: float
    repeats: int
    window_s: int
    ramp: tuple[float, ...]  # fractions of each node's capacity
    ramp_windows: int  # windows per ramp step
    levels: tuple[float, ...]  # fractions of the pool's measured capacity
    bisect_steps: int
    slo_ms: float
    percentile: float
    quick: bool
    measure_nodes_min_rps: float  # nodes below this are not measured alone (quick)
    search_candidates: int
    refit: bool  # drop capplan's cached store, fit and plan (the measured logs are kept)


#: The balancers, in the order the lab runs and reports them.
BALANCERS = ("nginx", "haproxy")


def _strategies(text: str | None, quick: bool) -> tuple[str, ...]:
    """
    The strategies asked for (``--strategies``), in the lab's order; all by default.
    """
    if not text:
        return ("rr", "lc", "capplan") if quick else STRATEGIES
    asked = {s.strip() for s in text.split(",") if s.strip()}
    unknown = sorted(asked - set(STRATEGIES))
    if unknown or not asked:
        raise SystemExit(
            f"bench.lab: --strategies {text!r}: unknown {', '.join(unknown) or 'empty'}; "
            f"choose among {','.join(STRATEGIES)}"
        )
    return tuple(s for s in STRATEGIES if s in asked)


def _merged(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """
    A variant's new results, keeping the strategies of ``old`` that this run did not measure
    (``--balancers``, ``--strategies``): balancer by balancer, in the lab's order.
    """
    kept = dict((old or {}).get("strategies", {}))
    kept.update(new["strategies"])

    def order(name: str) -> tuple[int, str, int]:
        balancer, strategy = name.split("/", 1)
        first = BALANCERS.index(balancer) if balancer in BALANCERS else len(BALANCERS)
        rank = STRATEGIES.index(strategy) if strategy in STRATEGIES else len(STRATEGIES)
        return first, balancer, rank

    return {**new, "strategies": {name: kept[name] for name in sorted(kept, key=order)}}


def _settings(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)
    return Settings(
        out=Path(args.out),
        pool_file=Path(args.pool),
        services=parse_services(args.service)
        if args.service
        else (("exp",) if quick else ("exp", "fixed", "lognormal")),
        balancers=tuple(args.balancers.split(","))
        if args.balancers
        else (("nginx",) if quick else BALANCERS),
        strategies=_strategies(args.strategies, quick),
        point_s=args.point_s or (12.0 if quick else 25.0),
        warmup_s=2.0,
        repeats=args.repeats or (1 if quick else 2),
        window_s=10,
        ramp=(0.3, 0.5, 0.65, 0.8, 0.9) if quick else (0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9),
        ramp_windows=2 if quick else 3,
        levels=(0.7, 0.9) if quick else (0.5, 0.7, 0.8, 0.9),
        bisect_steps=2 if quick else 4,
        slo_ms=args.slo_ms,
        percentile=99.0,
        quick=quick,
        measure_nodes_min_rps=200.0 if quick else 0.0,
        search_candidates=0 if quick else args.search,
        refit=bool(args.refit),
    )


# --- results -----------------------------------------------------------------------------------


class Results:
    """
    ``results.json``: every point measured so far, written after each one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        self.data.setdefault("points", {})

    def point(self, key: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.data["points"].get(key)
        return found

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.data["points"][key] = value
        self.save()

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(temporary, self.path)


def _summary(result: LoadResult, percentile: float) -> dict[str, Any]:
    """
    What a point keeps: the SLO percentile counting failures, errors, who served what.
    """
    label = f"p{percentile:g}"
    failures = result.scheduled - result.ok
    return {
        "rate_rps": result.rate_rps,
        "scheduled": result.scheduled,
        "ok": result.ok,
        "error_rate": failures / result.scheduled if result.scheduled else 0.0,
        "errors": {str(k): v for k, v in result.errors.items()},
        "timeouts": result.timeouts,
        "p_ms": result.percentiles_incl_failures.get(label, math.inf),
        "p_ok_ms": result.percentiles.get(label, math.nan),
        "p50_ms": result.percentiles.get("p50", math.nan),
        "mean_ms": result.mean_ms,
        "goodput_rps": result.ok_rate_rps,
        "per_node": result.per_node,
        "held": result.held_rate,
        "lateness_p99_ms": result.lateness_ms.get("p99"),
        "refused_p99_ms": _refusal_time(result),
    }


def _refusal_time(result: LoadResult) -> float | None:
    """
    The p99 of how long refused requests (5xx) took to be refused: a limit should refuse fast.
    """
    import numpy as np

    refused = np.asarray(result.request_status) >= 500
    latency = np.asarray(result.request_latency_ms, dtype=float)
    if not refused.any() or latency.size != refused.size:
        return None
    values = latency[refused]
    values = values[np.isfinite(values)]
    return float(np.percentile(values, 99)) if values.size else None


def run_ramps(
    ramps: Sequence[tuple[tuple[str, int], Sequence[tuple[float, float]], int]], window_s: int
) -> tuple[list[LoadResult], float, float]:
    """
    Drive every ``(target, steps, seed)`` at once, each one continuous open-loop run whose rate
    steps (``(seconds, rps)``; the same lengths for all) start exactly on capplan's window
    boundaries: every window sees one load (a gap or a spill between steps would give a window
    whose few requests carry the previous step's queue).  Returns the runs' results, the
    wall-clock start (``time.time()``) and the length.
    """
    start = (math.floor(time.time() / window_s) + 2) * window_s
    total = sum(seconds for seconds, _ in ramps[0][1])

    async def all_ramps() -> list[LoadResult]:
        return list(
            await asyncio.gather(
                *(
                    run_load_async(
                        target,
                        sum(seconds * rate for seconds, rate in steps) / total,
                        total,
                        seed,
                        timeout_s=5.0,
                        warmup_s=0.0,
                        schedule=steps,
                        start_at=start,
                    )
                    for target, steps, seed in ramps
                )
            )
        )

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(all_ramps()), start, total


def keep_ramp_logs(
    pool: Pool, logs: Path, dest: Path, start: float, end: float, window_s: int
) -> None:
    """
    Once the last window has completed and the logs are flushed, copy every node's log lines
    of ``[start, end)`` from ``logs`` to ``dest`` (``copy_log_between``).
    """
    time.sleep(window_s + 6)
    dest.mkdir(parents=True, exist_ok=True)
    for n in pool.nodes:
        copy_log_between(log_path(logs, n.name), log_path(dest, n.name), start, end)


def local_nodes(pool: Pool, logs: Path, *, workers: bool = False) -> list[dict[str, Any]]:
    """
    The inventory's nodes for capplan to read the lab's logs under ``logs`` on this machine
    (``host: local``); ``workers``: with each node's slots.
    """
    return [
        {
            "name": n.name,
            "host": "local",
            "address": f"{n.address}:{n.port}",
            "proc_dir": "/proc",
            "log": {"path": str(log_path(logs, n.name))},
            **({"workers": n.slots} if workers else {}),
        }
        for n in pool.nodes
    ]


def wait_idle(addresses: Iterable[tuple[str, int]], say: Callable[[str], None]) -> None:
    """
    Wait until no node has a request queued or in service, at most ``SETTLE_MAX_S``.
    """
    addresses = list(addresses)
    deadline = time.monotonic() + SETTLE_MAX_S
    while addresses:
        stats = [fetch_stats(address) for address in addresses]
        if all(s["queued"] == 0 and s["busy"] == 0 for s in stats):
            return
        if time.monotonic() > deadline:
            say(f"    nodes still busy after {SETTLE_MAX_S:g} s; going on")
            return
        time.sleep(0.5)


def remove_store(db: Path) -> None:
    """
    Delete a capplan store with its WAL and shared-memory files (a WAL left behind would be
    read into the next store of that name).
    """
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)


def copy_log_between(source: Path, dest: Path, start: float, end: float) -> None:
    """
    Copy the lines of a node's log logged (completed) in ``[start, end)`` (``time.time()``
    seconds): lines after the end are the queue draining once the load stopped — a last
    window of a few requests with the whole queue's wait, which is no load level at all and
    pulled one fit's service time up by half — and lines before the start belong to earlier
    loads.
    """
    with source.open(encoding="utf-8") as src, dest.open("w", encoding="utf-8") as out:
        for line in src:
            stamp = line.partition("[")[2].partition("]")[0]
            try:
                moment = datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp()
            except ValueError:
                out.write(line)
                continue
            if start <= moment < end:
                out.write(line)


def _weights_key(weights: dict[str, int]) -> str:
    return ",".join(f"{name}={weight}" for name, weight in weights.items())


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# --- the lab -----------------------------------------------------------------------------------


def capplan_json(*args: str | Path, check: bool = True) -> dict[str, Any]:
    command = [*CAPPLAN, *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    if check and done.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    document: dict[str, Any] = (
        json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    )
    return document


class Lab:
    """
    One pool with one service-time distribution: its nodes, capplan's advice, the balancers.
    """

    def __init__(
        self, settings: Settings, pool: Pool, results: Results, log: Callable[[str], None]
    ):
        self.s = settings
        self.pool = pool
        self.results = results
        self.say = log
        self.dir = settings.out / f"{pool.name}-{pool.service}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = f"{pool.name}/{pool.service}"
        self.node_addresses: dict[str, tuple[str, int]] = {}
        self.after_failures = False  # the last point had failures (see settle)

    def settle(self) -> None:
        """
        Wait until no node has a request queued or in service, then, after a point with
        failures, out nginx's fail_timeout: a node works off every request it took, even one
        whose client has gone (as real servers do), so an overloaded point leaves a backlog,
        and a balancer may still hold a node down for its timeouts — either would weigh on the
        next point, whichever strategy it measures.
        """
        wait_idle(self.node_addresses.values(), self.say)
        if self.after_failures:
            time.sleep(FAIL_TIMEOUT_S)
            self.after_failures = False

    # -- load ----------------------------------------------------------------------------------

    def _run_points(
        self,
        points: Sequence[tuple[tuple[str, int], float]],
        seed: int,
        duration_s: float | None = None,
        warmup_s: float | None = None,
    ) -> list[LoadResult]:
        """
        Load several targets at once, each at its rate, for one point's length.
        """
        duration = self.s.point_s if duration_s is None else duration_s
        warmup = self.s.warmup_s if warmup_s is None else warmup_s

        async def all_points() -> list[LoadResult]:
            return list(
                await asyncio.gather(
                    *(
                        run_load_async(
                            target,
                            rate,
                            duration,
                            seed + i,
                            timeout_s=5.0,
                            warmup_s=warmup,
                        )
                        for i, (target, rate) in enumerate(points)
                    )
                )
            )

        for attempt in range(3):
            self.settle()
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                results = runner.run(all_points())
            self.after_failures = any(r.scheduled > r.ok for r in results)
            if all(r.held_rate for r in results):
                return results
            self.say(f"    generator could not hold its rate (attempt {attempt + 1}); again")
            time.sleep(2)
        raise RuntimeError(
            "the generator could not hold its rate three times: is the machine busy?"
        )

    def point(self, key: str, target: tuple[str, int], rate: float, seed: int) -> dict[str, Any]:
        """
        One measured point (or the stored one).
        """
        full = f"{self.prefix}/{key}"
        found = self.stored(full, rate)
        if found is not None:
            return found
        (result,) = self._run_points([(target, rate)], seed)
        summary: dict[str, Any] = _json_safe(_summary(result, self.s.percentile))
        self.results.put(full, summary)
        self.say(
            f"  {key}: {rate:.0f} rps → p{self.s.percentile:g} {summary['p_ms']} ms, "
            f"errors {summary['error_rate']:.4f}"
        )
        return summary

    def stored(self, key: str, rate: float) -> dict[str, Any] | None:
        """
        The point stored under ``key`` if it was measured at ``rate``: points are keyed by
        fractions of a capacity, and a refit that moves the capacity moves their rates.
        """
        found = self.results.point(key)
        if found is None or not math.isclose(found["rate_rps"], rate, rel_tol=0.005):
            return None
        return found

    def meets(self, summary: dict[str, Any]) -> bool:
        p = summary["p_ms"]
        return p is not None and p <= self.s.slo_ms and summary["error_rate"] <= 0.001

    # -- 1. measure ------------------------------------------------------------------------------

    def measure(self, nodes: Any) -> None:
        """
        Drive every node at once through the ramp, steps aligned to capplan's windows.
        """
        marker = self.dir / "ramp.done"
        if marker.exists():
            return
        w = self.s.window_s
        step_s = float(self.s.ramp_windows * w)
        self.say(f"measure: ramp {self.s.ramp} of each node's capacity, {step_s:g} s per step")
        results, start, total = run_ramps(
            [
                (
                    nodes.addresses[n.name],
                    [(step_s, f * n.capacity_rps) for f in self.s.ramp],
                    1000 + i,
                )
                for i, n in enumerate(self.pool.nodes)
            ],
            w,
        )
        late = max(r.lateness_ms.get("p99", math.nan) for r in results)
        self.say(f"  ramp done: generator lateness p99 {late:.1f} ms (worst node)")
        if not all(r.held_rate for r in results):
            raise RuntimeError(
                "the generator could not hold the ramp's rates: is the machine busy?"
            )
        # capplan reads the ramp's logs as they are now: the nodes go on logging every later
        # point, which must not reach a fit (--refit reads these copies again).
        logs, ramp_logs = self.dir / "logs", self.dir / "ramp-logs"
        keep_ramp_logs(self.pool, logs, ramp_logs, -math.inf, start + total, w)
        marker.write_text("done\n")

    def inventory(self) -> Path:
        path = self.dir / "inventory.yaml"
        nodes = local_nodes(self.pool, self.dir / "ramp-logs")
        document = {
            "cluster": self.pool.name,
            "profile": "balanced",
            "arrivals": "poisson",  # the ramp drives each node through its own port
            "slo": {
                "percentile": self.s.percentile,
                "latency_ms": self.s.slo_ms,
                "max_error_rate": 0.001,
            },
            "nodes": nodes,
            "balancers": [
                {"kind": "nginx", "name": "capplan", "output": "nginx-capplan.conf"},
                {"kind": "haproxy", "name": "capplan", "output": "haproxy-capplan.cfg"},
            ],
        }
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def advise(self) -> tuple[dict[str, Any], CapplanConfig]:
        """
        capplan collect → fit → optimize on the ramp's logs; the fit and capplan's configs.
        """
        inventory = self.inventory()
        db = self.dir / "capplan.db"
        fit_file = self.dir / "fit.json"
        if self.s.refit:  # capplan changed: collect, fit and optimize again on the same logs
            remove_store(db)
            for stale in (fit_file, self.dir / "plan.yaml"):
                stale.unlink(missing_ok=True)
        if not fit_file.exists():
            collected = capplan_json(
                "collect", "-i", inventory, "--db", db, "--window", f"{self.s.window_s}s", "--json"
            )
            stored = {n["node"]: n["windows"] for n in collected.get("nodes", [])}
            self.say(f"collect: windows stored {stored}")
            fit = capplan_json("fit", "-i", inventory, "--db", db, "--json")
            fit_file.write_text(json.dumps(fit, indent=1))
        fit = json.loads(fit_file.read_text())
        predicted = sum(n["capacity_rps"] for n in fit["nodes"])
        # The load to plan for: 70% of the predicted capacity (within the profile's headroom).
        load = round(0.7 * predicted)
        configs = self.dir / "capplan"
        plan = self.dir / "plan.yaml"
        if not plan.exists():
            capplan_json(
                "optimize",
                "-i",
                inventory,
                "--db",
                db,
                "--load",
                load,
                "--out",
                plan,
                "--emit",
                "nginx,haproxy",
                "--out-dir",
                configs,
                "--json",
            )
        thresholds = yaml.safe_load(plan.read_text())["pool"]["thresholds"]
        config = CapplanConfig(
            nginx_upstream=(configs / "nginx-capplan.conf").read_text(),
            haproxy_backend=(configs / "haproxy-capplan.cfg").read_text(),
            connect_timeout_ms=thresholds.get("connect_timeout_ms"),
            server_timeout_ms=thresholds.get("server_timeout_ms"),
        )
        return fit, config

    # -- 2. predict ----------------------------------------------------------------------------

    def node_capacities(self, nodes: Any, fit: dict[str, Any]) -> dict[str, float | None]:
        """
        Each node's measured capacity at the SLO, all nodes bisected at the same time.
        """
        # The probes start from the first fit's predictions, kept: a node's measured capacity
        # is the node's, and a refit (a newer capplan) must not move it, nor every rate after.
        bases = self.results.data.setdefault("probe_basis", {})
        predicted = bases.setdefault(
            self.prefix, {n["node"]: float(n["capacity_rps"]) for n in fit["nodes"]}
        )
        todo = [
            n.name
            for n in self.pool.nodes
            if n.capacity_rps >= self.s.measure_nodes_min_rps and predicted.get(n.name)
        ]
        # Bracket: [largest passing, smallest failing] per node (inf: none failed yet).
        low: dict[str, float] = {n: 0.0 for n in todo}
        high: dict[str, float] = {n: math.inf for n in todo}
        steps = [("probe", f) for f in (0.7, 0.9, 1.1)]
        steps += [("bisect", float(i)) for i in range(self.s.bisect_steps)]
        for step, (kind, value) in enumerate(steps):
            rates: dict[str, float] = {}
            for name in todo:
                if kind == "probe":
                    if value * predicted[name] < high[name]:
                        rates[name] = value * predicted[name]
                    continue
                top = high[name] if math.isfinite(high[name]) else 1.3 * predicted[name]
                rates[name] = 0.5 * (low[name] + top)
            keys = {name: f"{self.prefix}/node/{name}/{kind}{value}" for name in rates}
            missing = {n: r for n, r in rates.items() if self.stored(keys[n], r) is None}
            if missing:
                targets = [(nodes.addresses[n], r) for n, r in missing.items()]
                results = self._run_points(targets, 5000 + 10 * step)
                for (name, rate), result in zip(missing.items(), results, strict=True):
                    summary = _json_safe(_summary(result, self.s.percentile))
                    self.results.put(keys[name], summary)
                    self.say(f"  {name} alone at {rate:.0f} rps: p99 {summary['p_ms']} ms")
            for name in rates:
                summary = self.results.point(keys[name])
                assert summary is not None
                rate = summary["rate_rps"]
                if self.meets(summary):
                    low[name] = max(low[name], rate)
                else:
                    high[name] = min(high[name], rate)
        return {
            n.name: (low[n.name] if n.name in low and low[n.name] > 0 else None)
            for n in self.pool.nodes
        }

    # -- 3. compare ----------------------------------------------------------------------------

    def compare(self, balancers: Balancers, capacity: float) -> dict[str, Any]:
        """
        Every balancer/strategy at the levels, at 120%, and its largest rate meeting the SLO.
        """
        strategies: dict[str, Any] = {}
        for balancer in self.s.balancers:
            for strategy in self.s.strategies:
                name = f"{balancer}/{strategy}"
                # capplan's points are keyed by its config too: advice that changes (a newer
                # capplan, --refit) is measured again, the other strategies' points are kept.
                key = (
                    f"{name}@{balancers.capplan_digest(balancer)}"
                    if strategy == "capplan"
                    else name
                )
                if strategy == "optimum":
                    weights = self.search_optimum(balancers, balancer, capacity)
                    balancers.set_optimum(balancer, weights)
                    key = f"{name}@{_weights_key(weights)}"
                target = balancers.target(balancer, strategy)
                entry: dict[str, Any] = {"p99_ms": {}, "error_rate": {}, "spread": {}}
                if strategy == "optimum":
                    entry["weights"] = weights
                for level in self.s.levels:
                    runs = [
                        self.point(f"{key}/{level}/{r}", target, level * capacity, 100 * r + 7)
                        for r in range(self.s.repeats)
                    ]
                    ps = [x["p_ms"] if x["p_ms"] is not None else math.inf for x in runs]
                    entry["p99_ms"][str(level)] = _json_safe(sorted(ps)[len(ps) // 2])
                    entry["error_rate"][str(level)] = max(x["error_rate"] for x in runs)
                    entry["spread"][str(level)] = _json_safe([min(ps), max(ps)])
                over = self.point(f"{key}/1.2/0", target, 1.2 * capacity, 77)
                entry["overload"] = {
                    "goodput_rps": over["goodput_rps"],
                    "p99_ms": over["p_ok_ms"],  # the admitted requests' p99
                    "refused": over["scheduled"] - over["ok"],
                    "refused_p99_ms": over["refused_p99_ms"],
                }
                if not self.s.quick:
                    # each repeat is a bisection of its own; the lower middle one is reported
                    rates = sorted(
                        self.max_rate(key if r == 0 else f"{key}/r{r}", target, capacity, r)
                        for r in range(self.s.repeats)
                    )
                    entry["max_rate_at_slo"] = rates[(len(rates) - 1) // 2]
                    entry["max_rate_spread"] = [rates[0], rates[-1]]
                strategies[name] = entry
        return strategies

    def search_optimum(
        self, balancers: Balancers, balancer: str, capacity: float
    ) -> dict[str, int]:
        """
        The weights (with least connections) giving the lowest SLO percentile at 90% of the
        pool's capacity: a coordinate search from the better of the slot weights and capplan's
        own, each node's weight × 1.25 and ÷ 1.25 in turn, a move kept only when it gains more
        than 2% — within ``search_candidates`` points. Without a budget: the slot weights.
        """
        slots = {n.name: n.slots for n in self.pool.nodes}
        if self.s.search_candidates <= 0:
            return slots
        top = 256 if balancer == "haproxy" else 1000
        rate = 0.9 * capacity
        target = balancers.target(balancer, "optimum")
        tried: dict[str, float] = {}

        def score(weights: dict[str, int]) -> float:
            label = _weights_key(weights)
            if label not in tried:
                balancers.set_optimum(balancer, weights)
                summary = self.point(f"{balancer}/search/{label}", target, rate, 91)
                p = summary["p_ms"]
                failed = p is None or summary["error_rate"] > 0.001
                tried[label] = math.inf if failed else float(p)
            return tried[label]

        plan = yaml.safe_load((self.dir / "plan.yaml").read_text())
        advised = {
            n["node"]: max(1, int(n.get("weights", {}).get(balancer, 1))) for n in plan["nodes"]
        }
        best = min((slots, advised), key=score)
        names = [n.name for n in self.pool.nodes]
        improved = True
        while improved and len(tried) < self.s.search_candidates:
            improved = False
            for name in names:
                for factor in (1.25, 0.8):
                    if len(tried) >= self.s.search_candidates:
                        break
                    moved = dict(best)
                    moved[name] = min(top, max(1, round(best[name] * factor)))
                    if moved[name] == best[name] or _weights_key(moved) in tried:
                        continue
                    if score(moved) < 0.98 * score(best):
                        best, improved = moved, True
                        break
        self.say(f"  {balancer}/optimum: {_weights_key(best)} (p99 {score(best)} ms at 90%)")
        return best

    def max_rate(
        self, name: str, target: tuple[str, int], capacity: float, repeat: int = 0
    ) -> float:
        """
        The largest rate meeting the SLO: from 0.5 and 1.1 × capacity, raised by 0.2 × capacity
        while it still meets the SLO (a pool balanced by least connections can carry more than
        the sum of its nodes measured alone: it routes around a busy node), up to 2 ×; then
        bisection between the last rate that met it and the first that did not.  ``repeat``
        seeds the points' arrivals (0: the first bisection's).
        """
        seed = 1000 * repeat
        low, high = 0.5 * capacity, 1.1 * capacity
        if not self.meets(self.point(f"{name}/max/low", target, low, 31 + seed)):
            return 0.0
        raised = 0
        while self.meets(
            self.point(f"{name}/max/high{raised or ''}", target, high, 32 + raised + seed)
        ):
            raised += 1
            if high >= 2.0 * capacity:
                return high
            low, high = high, high + 0.2 * capacity
        for step in range(self.s.bisect_steps + 1):
            middle = 0.5 * (low + high)
            if self.meets(self.point(f"{name}/max/{step}", target, middle, 40 + step + seed)):
                low = middle
            else:
                high = middle
        return low

    def run(self) -> dict[str, Any]:
        """
        The whole procedure for this pool; its part of results.json.
        """
        pool_file = self.dir / "pool.yaml"
        pool_file.write_text(
            yaml.safe_dump(self.pool.model_dump(exclude_none=True), sort_keys=False)
        )
        (self.dir / "logs").mkdir(exist_ok=True)
        nodes = start_node_process(pool_file, self.dir / "logs", duration_s=4 * 3600)
        self.node_addresses = dict(nodes.addresses)
        balancers: Balancers | None = None
        try:
            self.measure(nodes)
            fit, config = self.advise()
            plan = yaml.safe_load((self.dir / "plan.yaml").read_text())
            measured = self.node_capacities(nodes, fit)
            predicted = {n["node"]: n for n in fit["nodes"]}
            known = [v for v in measured.values() if v is not None]
            pool_measured = sum(known) if len(known) == len(self.pool.nodes) else None
            pool_predicted = sum(float(n["capacity_rps"]) for n in fit["nodes"])
            capacity = pool_measured or pool_predicted
            balancers = Balancers(self.pool, self.dir / "balancers", config)
            balancers.start()
            strategies = self.compare(balancers, capacity)
        finally:
            if balancers is not None:
                balancers.stop()
            nodes.stop()
        return {
            "pool": {
                "name": self.pool.name,
                "service": self.pool.service,
                "cv": self.pool.cv,
                "nodes": [n.model_dump(exclude_none=True) for n in self.pool.nodes],
                "measured_rps": pool_measured,
                "predicted_rps": pool_predicted,
                "levels_of": "measured" if pool_measured else "predicted",
            },
            "nodes": [
                {
                    "node": n.name,
                    "nominal_rps": n.capacity_rps,
                    "predicted_rps": predicted[n.name]["capacity_rps"],
                    "predicted_interval": predicted[n.name]["capacity_interval"],
                    "model": predicted[n.name]["model"],
                    "measured_rps": measured[n.name],
                }
                for n in self.pool.nodes
            ],
            "strategies": strategies,
            "capplan": {
                "methods": plan["methods"],
                "queue_timeout_ms": plan["pool"]["thresholds"].get("queue_timeout_ms"),
            },
        }


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the lab and write DIR/results.json and DIR/results.md.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.lab", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="results directory (resumable)")
    parser.add_argument("--quick", action="store_true", help="the short CI variant (~10 min)")
    parser.add_argument("--pool", default=str(DEFAULT_POOL))
    parser.add_argument("--service", help="exp,fixed,lognormal (default: all; quick: exp)")
    parser.add_argument(
        "--strategies",
        help=f"{','.join(STRATEGIES)} (default: all; quick: rr,lc,capplan); the others' "
        "results already in DIR are kept",
    )
    parser.add_argument("--balancers", help="nginx,haproxy (default: both; quick: nginx)")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--point-s", type=float)
    parser.add_argument("--slo-ms", type=float, default=120.0)
    parser.add_argument(
        "--search",
        type=int,
        default=12,
        help="points the optimum's weight search may measure per balancer (0: slot weights)",
    )
    parser.add_argument(
        "--refit",
        action="store_true",
        help="collect, fit and optimize again (after a capplan change)",
    )
    args = parser.parse_args(argv)

    def stop(signum: int, _frame: object) -> None:
        # Python's default for SIGTERM ends the process at once: the balancers and the node
        # process would outlive it. SystemExit runs every `finally`, which stops them by PID.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        settings = _settings(args)
    except ValueError as error:
        parser.error(str(error))
    settings.out.mkdir(parents=True, exist_ok=True)
    for program in ("nginx", "haproxy"):
        if program in settings.balancers and not (
            shutil.which(program) or Path(f"/usr/sbin/{program}").exists()
        ):
            print(
                f"bench.lab: {program} is not installed (apt-get install {program})",
                file=sys.stderr,
            )
            return 1
    results = Results(settings.out / "results.json")
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {text}", flush=True)

    base = load_pool(settings.pool_file)
    variants: dict[str, Any] = results.data.setdefault("variants", {})
    for service in settings.services:
        pool = base.model_copy(update={"service": service})
        say(f"pool {pool.name}, service {service}")
        key = f"{pool.name}/{service}"
        variants[key] = _merged(variants.get(key), Lab(settings, pool, results, say).run())
        results.save()
    slo_label = f"p{settings.percentile:g}"
    results.data["slo"] = {
        "percentile": settings.percentile,
        "latency_ms": settings.slo_ms,
        "max_error_rate": 0.001,
    }
    results.save()
    say("stationary capacities of the nodes (simulated; once per node) ...")
    if add_stationary(variants, results.data["slo"]):
        results.save()
    table = markdown(variants, slo_label)
    (settings.out / "results.md").write_text(table)
    plot(variants, settings.out / "results.svg", settings.slo_ms)
    print(table)
    say("done")
    return 0
