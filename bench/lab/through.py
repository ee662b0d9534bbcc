"""
What capplan fits from windows measured through the real balancers: the lab's ramp driven
through nginx's and HAProxy's weighted round robin and weighted least connections, each node's
log read by ``capplan collect``, the nodes fitted with each ``arrivals``.

    python -m bench.lab.through --out DIR [--service exp,lognormal,fixed]
                                [--balancers nginx,haproxy] [--strategies wrr,wlc]

A production pool's windows come from behind its balancer, which evens each node's arrivals;
``bench.lab.behind`` simulates that (exact FCFS nodes, idealised dispatch) and shows that read
as Poisson traffic such windows overstate every node's capacity, which the inventory's
``arrivals`` corrects.  This is the same check on the real programs: the lab's pool (its nodes
are M/G/c stations served by timers, ``bench/lab/node.py``) behind the lab's nginx and HAProxy
(``bench/lab/balancers.py``; ``wrr`` and ``wlc`` weight the nodes by their slots), one
open-loop Poisson stream per ramp through one balancer port, its rate stepping through 20–90%
of the pool's slot capacity exactly on capplan's 10 s windows (three windows a step, as the
lab's own ramp, which drives each node through its own port instead).  The nodes' logs of each
ramp are copied aside and read by ``capplan collect`` (``host: local``), then ``capplan fit``
runs on them once per way of reading them: ``arrivals: poisson`` (what capplan assumed before),
``round_robin``, ``least_connections`` (nginx's rule), ``shortest_expected_delay`` (HAProxy's),
with the slots fitted from the windows or given as ``workers`` (the last two need them).  Each
fitted capacity at the SLO (p99 ≤ 120 ms) is compared with the node's stationary capacity,
simulated from its known parameters (``bench.lab.stationary``; exact for fixed service) — what
a fit of Poisson windows aims at.

Everything is stored in ``DIR/results.json`` as it is done (a ramp already measured is not run
again; ``--refit`` fits the kept logs again after a capplan change), the table in
``DIR/results.md``.  About 4.5 minutes a ramp, four ramps a service law.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.lab.balancers import STRATEGIES, Balancers
from bench.lab.node import start_node_process
from bench.lab.pool import DEFAULT_POOL, Pool, load_pool, parse_services
from bench.lab.results import node_stationary
from bench.lab.run import (
    BALANCERS,
    Results,
    capplan_json,
    keep_ramp_logs,
    local_nodes,
    remove_store,
    run_ramps,
    wait_idle,
)

__all__ = ["FITS", "main", "markdown"]

#: The ramp: fractions of the pool's slot capacity, each held for RAMP_WINDOWS windows.
RAMP = (0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9)
RAMP_WINDOWS = 3
WINDOW_S = 10
SLO = {"percentile": 99.0, "latency_ms": 120.0, "max_error_rate": 0.001}
#: The ways each ramp's windows are fitted: a label, the inventory's ``arrivals``, and whether
#: each node's slots are given as ``workers``.
FITS: tuple[tuple[str, str, bool], ...] = (
    ("poisson", "poisson", False),
    ("round_robin", "round_robin", False),
    ("poisson, workers", "poisson", True),
    ("round_robin, workers", "round_robin", True),
    ("least_connections, workers", "least_connections", True),
    ("shortest_expected_delay, workers", "shortest_expected_delay", True),
)


def inventory(pool: Pool, logs: Path, arrivals: str, workers: bool) -> dict[str, Any]:
    """
    The inventory capplan reads a ramp's logs with: every node ``host: local``.
    """
    return {
        "cluster": pool.name,
        "profile": "balanced",
        "arrivals": arrivals,
        "slo": dict(SLO),
        "nodes": local_nodes(pool, logs, workers=workers),
    }


class Through:
    """
    One pool and service law: the ramps through the balancers, and capplan's fits of them.
    """

    def __init__(
        self,
        pool: Pool,
        out: Path,
        results: Results,
        routes: Sequence[str],
        say: Callable[[str], None],
    ) -> None:
        self.pool = pool
        self.dir = out / f"{pool.name}-{pool.service}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.results = results
        self.routes = routes  # "nginx/wrr", ...
        self.say = say
        self.entry: dict[str, Any] = results.data.setdefault("variants", {}).setdefault(
            f"{pool.name}/{pool.service}", {}
        )

    def ramp_dir(self, route: str) -> Path:
        return self.dir / route.replace("/", "-")

    def measure(self) -> None:
        """
        Every ramp not yet measured: start the nodes and the balancers, drive each ramp through
        its port, copy the nodes' logs of its span aside.
        """
        todo = [r for r in self.routes if not (self.ramp_dir(r) / "ramp.done").exists()]
        if not todo:
            return
        pool_file = self.dir / "pool.yaml"
        pool_file.write_text(
            yaml.safe_dump(self.pool.model_dump(exclude_none=True), sort_keys=False)
        )
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        nodes = start_node_process(pool_file, logs, duration_s=len(todo) * 600 + 600)
        balancers = Balancers(self.pool, self.dir / "balancers", None)
        try:
            balancers.start()
            for i, route in enumerate(todo):
                balancer, strategy = route.split("/")
                wait_idle(nodes.addresses.values(), self.say)
                self.ramp(balancers.target(balancer, strategy), route, seed=2000 + i)
        finally:
            balancers.stop()
            nodes.stop()

    def ramp(self, target: tuple[str, int], route: str, seed: int) -> None:
        """
        One ramp through ``target``; the nodes' logs of its span copied to its directory.
        """
        step_s = float(RAMP_WINDOWS * WINDOW_S)
        self.say(f"  {route}: ramp {RAMP[0]:g}–{RAMP[-1]:g} of {self.pool.capacity_rps:g} rps")
        (result,), start, total = run_ramps(
            [(target, [(step_s, f * self.pool.capacity_rps) for f in RAMP], seed)], WINDOW_S
        )
        if not result.held_rate:
            raise RuntimeError(
                f"{route}: the generator could not hold the ramp's rates: is the machine busy?"
            )
        where = self.ramp_dir(route) / "logs"
        keep_ramp_logs(self.pool, self.dir / "logs", where, start, start + total, WINDOW_S)
        served = {name: int(count) for name, count in result.per_node.items()}
        self.say(
            f"    done: {result.ok} of {result.scheduled} answered, lateness p99 "
            f"{result.lateness_ms.get('p99', math.nan):.1f} ms; served {served}"
        )
        (self.ramp_dir(route) / "ramp.done").write_text(json.dumps({"served": served}) + "\n")

    def fit(self, refit: bool) -> None:
        """
        Each ramp's logs collected once and fitted every way of ``FITS``.
        """
        fits: dict[str, Any] = self.entry.setdefault("fits", {})
        for route in self.routes:
            here = self.ramp_dir(route)
            db = here / "capplan.db"
            if refit:
                fits.pop(route, None)
                remove_store(db)
            if route in fits and all(label in fits[route] for label, _, _ in FITS):
                continue
            if not db.exists():
                path = here / "collect.yaml"
                path.write_text(
                    yaml.safe_dump(inventory(self.pool, here / "logs", "poisson", False))
                )
                collected = capplan_json(
                    "collect", "-i", path, "--db", db, "--window", f"{WINDOW_S}s", "--json"
                )
                stored = {n["node"]: n["windows"] for n in collected.get("nodes", [])}
                self.say(f"  {route}: windows stored {stored}")
            done: dict[str, Any] = fits.setdefault(route, {})
            for label, arrivals, workers in FITS:
                if label in done:
                    continue
                path = here / f"{label.replace(', ', '-')}.yaml"
                path.write_text(
                    yaml.safe_dump(inventory(self.pool, here / "logs", arrivals, workers))
                )
                fitted = capplan_json("fit", "-i", path, "--db", db, "--json")
                done[label] = {
                    n["node"]: {
                        "capacity_rps": n["capacity_rps"],
                        "capacity_interval": n["capacity_interval"],
                        "servers": n.get("params", {}).get("servers"),
                        "scv": n.get("params", {}).get("scv"),
                        "model": n["model"],
                    }
                    for n in fitted["nodes"]
                }
                self.results.save()
                self.say(
                    f"  {route} as {label}: "
                    + ", ".join(f"{k} {v['capacity_rps']:.0f}" for k, v in done[label].items())
                )

    def stationary(self) -> None:
        """
        Each node's stationary capacity at the SLO, simulated (exact for fixed service; once,
        kept in results.json).
        """
        found: dict[str, Any] = self.entry.setdefault("stationary", {})
        pool = self.pool.model_dump(exclude_none=True)
        for spec in pool["nodes"]:
            if spec["name"] in found:
                continue
            self.say(f"  stationary capacity of {spec['name']} ...")
            median, spread = node_stationary(spec, pool, SLO)
            found[spec["name"]] = {"rps": median, "range": spread}
            self.results.save()
        self.entry["pool"] = pool


def _cell(fit: Mapping[str, Any], truth: float, slots: int) -> str:
    """
    A fitted node against its stationary capacity: the ratio, the fitted slots when they are
    not the true ones, a mark when the 95% interval misses it.
    """
    capacity = fit.get("capacity_rps")
    if not capacity:
        return "failed"
    text = f"{capacity / truth:.2f}"
    servers = fit.get("servers")
    if servers is not None and round(servers) != slots:
        text += f" (c {servers:g})"
    low, high = fit.get("capacity_interval") or (None, None)
    if low is not None and high is not None and not low <= truth <= high:
        text += "*"
    return text


def _route_order(route: str) -> tuple[int, int, str]:
    balancer, _, strategy = route.partition("/")
    first = BALANCERS.index(balancer) if balancer in BALANCERS else len(BALANCERS)
    rank = STRATEGIES.index(strategy) if strategy in STRATEGIES else len(STRATEGIES)
    return first, rank, route


def _label_order(label: str) -> tuple[int, str]:
    labels = [name for name, _, _ in FITS]
    return (labels.index(label) if label in labels else len(labels)), label


def markdown(document: Mapping[str, Any]) -> str:
    """
    Per service law, per ramp and way of fitting: each node's fitted capacity over its
    stationary one (simulated; exact for fixed service), and their geometric mean.
    """
    out = []
    for name, entry in document.get("variants", {}).items():
        pool = entry.get("pool")
        stationary = entry.get("stationary", {})
        if not pool or not entry.get("fits"):
            continue
        specs = {n["name"]: n for n in pool["nodes"]}
        names = [n["name"] for n in pool["nodes"]]
        law = pool["service"] + (f" cv {pool.get('cv')}" if pool["service"] == "lognormal" else "")
        out.append(f"### {name} ({law})\n")
        out.append(
            f"stationary capacity at the SLO ({'exact' if law == 'fixed' else 'simulated'}): "
            + ", ".join(
                f"{n} (c {specs[n]['slots']}) {stationary[n]['rps']:.1f} rps"
                for n in names
                if n in stationary
            )
            + "\n"
        )
        out.append("| ramp through | fitted as | " + " | ".join(names) + " | geometric mean |")
        out.append("|---|---|" + "---|" * len(names) + "---|")
        for route in sorted(entry["fits"], key=_route_order):
            fits = entry["fits"][route]
            for label in sorted(fits, key=_label_order):
                nodes = fits[label]
                cells, logs = [], []
                for n in names:
                    fit = nodes.get(n, {})
                    truth = stationary.get(n, {}).get("rps")
                    if not truth:
                        cells.append("-")
                        continue
                    cells.append(_cell(fit, truth, int(specs[n]["slots"])))
                    if fit.get("capacity_rps"):
                        logs.append(math.log(fit["capacity_rps"] / truth))
                mean = f"{math.exp(sum(logs) / len(logs)):.3f}" if logs else "-"
                out.append(f"| {route} | {label} | " + " | ".join(cells) + f" | {mean} |")
        out.append("")
    out.append(
        "(fitted capacity ÷ stationary capacity; (c N): the slots fitted, when not the true "
        "ones; *: the 95% interval misses the stationary capacity)\n"
    )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lab.through", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="results directory (resumable)")
    parser.add_argument("--pool", default=str(DEFAULT_POOL))
    parser.add_argument("--service", default="exp,lognormal,fixed")
    parser.add_argument("--balancers", default="nginx,haproxy")
    parser.add_argument("--strategies", default="wrr,wlc")
    parser.add_argument("--refit", action="store_true", help="collect and fit the kept logs again")
    args = parser.parse_args(argv)
    strategies = [s for s in args.strategies.split(",") if s]
    if not strategies or set(strategies) - {"rr", "lc", "wrr", "wlc"}:
        parser.error("--strategies: choose among rr,lc,wrr,wlc")
    balancers = [b for b in args.balancers.split(",") if b]
    if not balancers or set(balancers) - {"nginx", "haproxy"}:
        parser.error("--balancers: choose among nginx,haproxy")
    routes = [f"{b}/{s}" for b in balancers for s in strategies]
    try:
        services = parse_services(args.service)
    except ValueError as error:
        parser.error(str(error))

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # runs every `finally`: balancers and nodes stop by PID

    signal.signal(signal.SIGTERM, stop)
    out = Path(args.out).resolve()  # the inventories name the logs by absolute path
    out.mkdir(parents=True, exist_ok=True)
    results = Results(out / "results.json")
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {text}", flush=True)

    base = load_pool(args.pool)
    for service in services:
        pool = base.model_copy(update={"service": service})
        say(f"pool {pool.name}, service {service}")
        through = Through(pool, out, results, routes, say)
        through.measure()
        through.fit(args.refit)
        through.stationary()
        results.save()
    table = markdown(results.data)
    (out / "results.md").write_text(table)
    print(table)
    say("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
