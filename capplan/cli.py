"""
The command line: parses, makes one core call, prints with rich, maps errors to exit codes.

No maths and no SSH here.  Every command that prints results takes ``--json`` (one JSON
document on stdout, nothing else).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from capplan import __version__
from capplan.config import default_db_path
from capplan.errors import (
    CapplanError,
    InfeasibleError,
    InputError,
    MissingToolError,
    StoreError,
    UnstableQueueError,
)
from capplan.files import read_input
from capplan.report.command import report_cmd
from capplan.status import ExitStatus

if TYPE_CHECKING:
    from capplan.inventory import Inventory, SLOSpec
    from capplan.models.fit import NodeFit, NodeInput, SLOTarget

__all__ = ["app", "run"]

app = typer.Typer(
    name="capplan",
    help="Capacity planner and load-balancer tuner for pools of unequal servers.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: How each error class maps to an exit status (most specific first).
_STATUS: tuple[tuple[type[CapplanError], ExitStatus], ...] = (
    (InputError, ExitStatus.BAD_INPUT),
    (InfeasibleError, ExitStatus.INFEASIBLE),
    (MissingToolError, ExitStatus.FAILURE),
    (StoreError, ExitStatus.FAILURE),
    (CapplanError, ExitStatus.FAILURE),
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document, nothing else.")]
AnsibleOpt = Annotated[
    Path | None,
    typer.Option(
        "--ansible-inventory",
        help="Nodes from this Ansible inventory too (YAML read directly; other formats "
        "through ansible-inventory).",
    ),
]
GroupOpt = Annotated[
    str | None, typer.Option("--group", help="Only this group of the Ansible inventory.")
]
DbOpt = Annotated[
    Path | None,
    typer.Option("--db", help="Sample store (default: $CAPPLAN_DB, else ./capplan.db)."),
]


ParallelFitOpt = Annotated[
    int | None,
    typer.Option(
        "--parallel",
        min=1,
        help="Worker processes for a pool of more than 250 nodes (default: one per core).",
    ),
]


def _stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fit_pool(
    inputs: Sequence[NodeInput],
    target: SLOTarget,
    *,
    ceiling: float,
    model: str = "auto",
    parallel: int | None = None,
    show_progress: bool = False,
    inventory: Inventory | None = None,
    pool: Sequence[NodeInput] | None = None,
) -> list[NodeFit]:
    """
    Fit the nodes as the inventory says their windows were measured (``arrivals``; ``pool``:
    every node of the inventory, for the balancer's shares and queue), in batches over worker
    processes when there are many.  ``show_progress`` (not under ``--json``): a progress bar
    on a terminal when the pool is more than one batch, and on stderr the note of an inventory
    that lists balancers without saying how its windows were measured.
    """
    from functools import partial

    from capplan.models.fit import fit_measured
    from capplan.models.parallel import BATCH_NODES, fit_in_batches

    # (the inventory's loader has checked that least connections have every node's workers)
    arrivals = inventory.arrival_model if inventory is not None else "poisson"
    note = _arrivals_note(inventory) if show_progress else None
    if note is not None:
        _stderr().print(note)

    def run(progress: Callable[[int, int], None] | None) -> list[NodeFit]:
        return fit_measured(
            inputs,
            target,
            arrivals=arrivals,
            pool=pool,
            model=model,
            utilization_ceiling=ceiling,
            fit=partial(fit_in_batches, processes=parallel, progress=progress),
        )

    out = _stdout()
    if show_progress and len(inputs) > BATCH_NODES and out.is_terminal:
        from capplan.models.fit import LEAST_CONNECTIONS_ARRIVALS, LEAST_CONNECTIONS_PASSES
        from capplan.progress import FitProgress

        passes = LEAST_CONNECTIONS_PASSES if arrivals in LEAST_CONNECTIONS_ARRIVALS else 1
        with FitProgress(out, len(inputs), passes) as bar:
            return run(bar.update)
    return run(None)


#: The least connections rule each balancer kind follows (``arrivals``), for the note of an
#: inventory whose balancers all follow the other one.
_LEAST_CONNECTIONS_RULE = {
    "haproxy": "shortest_expected_delay",
    "nginx": "least_connections",
    "ipvsadm": "least_connections",
    "keepalived": "least_connections",
}
_RULE_TEXT = {
    "least_connections": "nginx's least_conn and LVS's wlc (each waiting request at its own node)",
    "shortest_expected_delay": "HAProxy's leastconn (a waiting request to a larger node first)",
}


def _arrivals_note(inventory: Inventory | None) -> Text | None:
    """
    A note when the inventory lists balancers but does not say how the windows were measured,
    or reads them with the least connections rule of a kind of balancer it does not list.
    """
    if inventory is None or not inventory.balancers:
        return None
    said = inventory.arrivals
    if said in _RULE_TEXT:
        rules = {_LEAST_CONNECTIONS_RULE[b.kind] for b in inventory.balancers}
        if said in rules or len(rules) != 1:
            return None
        (other,) = rules
        kinds = ", ".join(sorted({b.kind for b in inventory.balancers}))
        return Text.assemble(
            ("note", "cyan"),
            f": arrivals: {said} reads the windows as {_RULE_TEXT[said]}, but the inventory's "
            f"balancers are {kinds}; if the windows were logged behind {_RULE_TEXT[other]}, "
            f"set arrivals: {other}",
        )
    if said is not None:
        return None
    return Text.assemble(
        ("note", "cyan"),
        ": the inventory does not say how the windows were measured, so they are read as "
        "Poisson traffic (each node driven alone); windows from the pool's own logs were "
        "measured behind its balancer, which this overstates the capacity of: set arrivals: "
        "round_robin (nginx's default or weights, HAProxy's roundrobin, LVS's wrr), "
        "least_connections (nginx's least_conn, LVS's wlc) or shortest_expected_delay "
        "(HAProxy's leastconn) — or poisson to silence this",
    )


_ARRIVALS_CAPTION = {
    "round_robin": "windows measured behind round robin (arrivals: round_robin): each window's "
    "share of the pool's stream evens its arrivals",
    "least_connections": "windows measured behind least connections (arrivals: "
    "least_connections): the requests that waited were spread over the nodes' own queues, each "
    "waiting for its node's slots",
    "shortest_expected_delay": "windows measured behind the shortest expected delay (arrivals: "
    "shortest_expected_delay): each request waited in the pool's shared queue, then its node "
    "served it",
}


def _finite(value: Any) -> Any:
    """
    Make a value JSON-safe: non-finite floats become null, tuples lists.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(_finite(document), indent=2, allow_nan=False) + "\n")


def _db_path(db: Path | None) -> Path:
    return db if db is not None else default_db_path()


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}g}"


# --------------------------------------------------------------------------------------------
# import / export


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A samples CSV (the canonical columns).")],
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> ExitStatus:
    """
    Import windows from a samples CSV into the store, all or nothing.
    """
    from datetime import UTC, datetime

    from capplan.samples import parse_samples
    from capplan.store import Store

    text = read_input(file)
    windows = parse_samples(text, str(file), now=datetime.now(UTC))
    path = _db_path(db)
    with Store.open(path) as store:
        result = store.import_windows(windows, str(file))
        total = store.count()
    if json_:
        _print_json(
            {
                "file": str(file),
                "db": str(path),
                "added": result.added,
                "unchanged": result.unchanged,
                "stored": total,
            }
        )
    else:
        _stdout().print(
            f"{file}: {result.added} windows added, {result.unchanged} already stored "
            f"({total} in {path})"
        )
    return ExitStatus.OK


def _duration(text: str, option: str) -> float:
    """
    ``60``, ``60s``, ``5m``, ``1h`` as seconds (positive).
    """
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    body, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1.0)
    try:
        seconds = float(body) * unit
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"{text!r} is not a duration", key=option, hint="e.g. 60s, 5m, 1h")
    return seconds


def _size(text: str, option: str) -> int:
    """
    ``1048576``, ``64k``, ``64M``, ``1G`` as bytes (binary units, positive).
    """
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    low = text.strip().lower().removesuffix("b").removesuffix("i")
    body, unit = (low[:-1], units[low[-1]]) if low and low[-1] in units else (low, 1)
    if not body.isdigit() or int(body) * unit <= 0:
        raise InputError(f"{text!r} is not a size", key=option, hint="e.g. 64M, 512k, 1G")
    return int(body) * unit


@app.command("collect")
def collect_cmd(
    inventory: Annotated[Path, typer.Option("-i", "--inventory", help="The pool's inventory.")],
    db: DbOpt = None,
    node: Annotated[
        list[str] | None, typer.Option("--node", help="Only this node (repeat for more).")
    ] = None,
    parallel: Annotated[
        int, typer.Option("--parallel", min=1, max=1024, help="Nodes reached at once.")
    ] = 32,
    accept_new: Annotated[
        bool,
        typer.Option(
            "--accept-new", help="Add unknown host keys to known_hosts (never changed ones)."
        ),
    ] = False,
    window: Annotated[str, typer.Option("--window", help="Window length: 60s, 5m, ...")] = "60s",
    deadline: Annotated[
        str, typer.Option("--deadline", help="The whole run ends by then: 120s, 5m, ...")
    ] = "120s",
    max_bytes: Annotated[
        str, typer.Option("--max-bytes", help="Most log bytes read per node per run.")
    ] = "64M",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would run on each node; connect to none.")
    ] = False,
    ansible_inventory: AnsibleOpt = None,
    group: GroupOpt = None,
    json_: JsonOpt = False,
    source: Annotated[
        str, typer.Option("--from", help="Where windows come from: ssh (the nodes) or prometheus.")
    ] = "ssh",
    url: Annotated[
        str | None, typer.Option("--url", help="Prometheus' base URL (with --from prometheus).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Prometheus: from this time or this long ago (6h, 7d); default: after the "
            "node's newest stored window.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Prometheus: up to this time or this long ago."),
    ] = None,
) -> ExitStatus:
    """
    Collect node stats and access-log windows over SSH (or locally), or windows from
    Prometheus, into the store.
    """
    from capplan.collect.run import CollectOptions, collect, plan_nodes
    from capplan.inventory import load_inventory
    from capplan.store import Store

    inv = load_inventory(inventory, ansible=ansible_inventory, group=group)
    options = CollectOptions(
        window_s=_duration(window, "--window"),
        parallel=parallel,
        deadline_s=_duration(deadline, "--deadline"),
        max_bytes=_size(max_bytes, "--max-bytes"),
        accept_new=accept_new,
    )
    if source not in ("ssh", "prometheus"):
        raise InputError(f"{source!r} is not a source", key="--from", hint="ssh or prometheus")
    prom = None
    if source == "prometheus":
        from datetime import UTC, datetime

        from capplan.collect import prometheus

        now = datetime.now(UTC)
        prom = prometheus.PrometheusOptions(
            url=url,
            window_s=options.window_s,
            since=prometheus.parse_moment(since, now, "--since") if since else None,
            until=prometheus.parse_moment(until, now, "--until") if until else None,
            parallel=parallel,
            deadline_s=options.deadline_s,
        )
    elif url or since or until:
        raise InputError("--url, --since and --until go with --from prometheus", key="--from")
    if dry_run:
        if prom is not None:
            from capplan.collect import prometheus

            rows, problems = prometheus.dry_run(inv, prom, names=node or ())
        else:
            plans, failed = plan_nodes(inv, node or ())
            rows = [
                {
                    "node": p.node.name,
                    "route": p.route.describe() if p.route else "local",
                    "commands": p.commands(options.max_bytes),
                }
                for p in plans
            ]
            problems = [
                {"node": o.node, "stage": stage, "reason": reason}
                for o in failed
                for stage, reason in o.failures
            ]
        if json_:
            _print_json({"dry_run": True, "nodes": rows, "failures": problems})
        else:
            out = _stdout()
            for row in rows:
                out.print(f"[bold]{row['node']}[/bold]  {row['route']}")
                for command in row["commands"]:
                    out.print(f"  $ {command}", markup=False)
            for problem in problems:
                out.print(
                    f"{problem['node']}: {problem['stage']}: {problem['reason']}", markup=False
                )
        return ExitStatus.PARTIAL if problems else ExitStatus.OK
    path = _db_path(db)
    out = _stdout()
    states: dict[str, str] = {}

    def on_state(name: str, state: str) -> None:
        states[name] = state

    def run_collect(store: Store) -> list[Any]:
        if prom is not None:
            from capplan.collect import prometheus

            return prometheus.collect_prometheus(
                inv, store, prom, names=node or (), on_state=on_state
            )
        return collect(inv, store, options, names=node or (), on_state=on_state)

    with Store.open(path) as store:
        if not json_ and out.is_terminal:
            from capplan.progress import CollectProgress

            total = len(node) if node else len(inv.nodes)
            with CollectProgress(out, states, total):
                outcomes = run_collect(store)
        else:
            outcomes = run_collect(store)
    failures = [
        {"node": o.node, "stage": stage, "reason": reason}
        for o in outcomes
        for stage, reason in o.failures
    ]
    collected = [o for o in outcomes if o.status in ("ok", "partial")]
    if json_:
        _print_json(
            {
                "db": str(path),
                "nodes": [
                    {
                        "node": o.node,
                        "status": o.status,
                        "windows": o.windows,
                        "requests": o.requests,
                        "lines": o.lines,
                        "route": o.route,
                        "cpu_util": o.cpu_util,
                        "load1": o.load1,
                        "mem_available": o.mem_available,
                        "clock_offset_s": o.clock_offset_s,
                        "haproxy": o.haproxy,
                        "notes": o.notes,
                    }
                    for o in outcomes
                ],
                "failures": failures,
            }
        )
    else:
        _print_collected(outcomes, failures, path)
        note = _arrivals_note(inv) if collected else None
        if note is not None:
            _stderr().print(note)
    if not collected:
        return ExitStatus.FAILURE
    return ExitStatus.PARTIAL if failures else ExitStatus.OK


def _print_collected(outcomes: list[Any], failures: list[dict[str, str]], path: Path) -> None:
    out = _stdout()
    table = Table(title=f"collected into {path}", title_justify="left")
    for column in ("node", "status", "windows", "requests", "cpu", "load1", "mem free", "via"):
        table.add_column(column, justify="right" if column not in ("node", "via") else "left")
    style = {"ok": "green", "partial": "yellow", "failed": "red"}
    for o in outcomes:
        table.add_row(
            o.node,
            Text(o.status, style=style.get(o.status, "")),
            str(o.windows),
            str(o.requests),
            "-" if o.cpu_util is None else f"{o.cpu_util:.0%}",
            "-" if o.load1 is None else f"{o.load1:.2f}",
            "-" if o.mem_available is None else f"{o.mem_available:.0%}",
            o.route,
        )
    out.print(table)
    for o in outcomes:
        for note in o.notes:
            out.print(f"note: {o.node}: {note}", markup=False)
    if failures:
        errors = Table(title="failures", title_justify="left")
        for column in ("node", "stage", "reason"):
            errors.add_column(column, overflow="fold")
        for f in failures:
            errors.add_row(f["node"], f["stage"], Text(f["reason"]))
        out.print(errors)


@app.command("export")
def export(
    db: DbOpt = None,
    node: Annotated[str | None, typer.Option("--node", help="Only this node's windows.")] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file (default: stdout).")
    ] = None,
) -> ExitStatus:
    """
    Export stored windows as the canonical samples CSV.
    """
    from capplan.samples import write_samples
    from capplan.store import Store

    with Store.open(_db_path(db), create=False) as store:
        if node is not None and node not in store.nodes():
            raise InputError(
                f"no windows stored for node {node!r}",
                key="--node",
                hint="stored nodes: " + (", ".join(store.nodes()) or "none"),
            )
        lines = list(write_samples(store.windows(node)))
    if output is None:
        sys.stdout.write("".join(lines))
    else:
        from capplan.files import write_atomic

        write_atomic(output, "".join(lines))
    return ExitStatus.OK


# --------------------------------------------------------------------------------------------
# queue


def _positive(value: float, option: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{value:g} is not a positive number", key=option)


def _slo_override(slo_ms: float | None, percentile: float | None) -> SLOSpec:
    """
    The SLO keys given on the command line (``--slo-ms``, ``--percentile``), validated.
    """
    from capplan.inventory import SLOSpec  # at run time (the import above is for types)

    if slo_ms is not None:
        _positive(slo_ms, "--slo-ms")
    if percentile is not None and not 0 < percentile < 100:
        raise InputError(f"{percentile:g} is not in (0, 100)", key="--percentile")
    return SLOSpec(percentile=percentile, latency_ms=slo_ms)


def _percentile_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise InputError(
            f"{text!r} is not a comma-separated list of percentiles", key="--percentiles"
        ) from None
    bad = [p for p in values if not 0 < p < 100]
    if not values or bad:
        raise InputError(
            f"{text!r}: each percentile must be in (0, 100)",
            key="--percentiles",
            hint="e.g. --percentiles 50,95,99,99.9",
        )
    return values


@app.command("queue")
def queue(
    servers: Annotated[
        int, typer.Option("--servers", "-c", min=1, max=100_000, help="Servers (worker slots), c.")
    ],
    service_ms: Annotated[
        float, typer.Option("--service-ms", "-s", help="Mean service time, ms (> 0).")
    ],
    rate: Annotated[
        float, typer.Option("--rate", "-r", help="Arrival rate, requests per second (> 0).")
    ],
    scv: Annotated[
        float,
        typer.Option(
            "--scv",
            min=0.0,
            help="Squared coefficient of variation of the service time: 1 exponential (M/M/c, "
            "exact), 0 fixed; other values use the M/G/c approximation (Allen–Cunneen's mean "
            "wait, the wait tail's exact decay rate).",
        ),
    ] = 1.0,
    percentiles: Annotated[
        str, typer.Option("--percentiles", "-p", help="Response-time percentiles.")
    ] = "50,95,99",
    json_: JsonOpt = False,
) -> ExitStatus:
    """
    Erlang-C calculator: wait probability, mean wait and response-time percentiles.
    """
    from capplan.models.queueing import Station

    _positive(service_ms, "--service-ms")
    _positive(rate, "--rate")
    wanted = _percentile_list(percentiles)
    asked = sorted({*wanted, 50.0, 95.0, 99.0})
    station = Station(servers=servers, service_time=service_ms / 1000.0, scv=scv)
    if rate >= station.max_rate:
        raise UnstableQueueError(
            f"unstable queue: {rate:g} rps is not below what {servers} servers at "
            f"{service_ms:g} ms can serve ({station.max_rate:g} rps); the queue is stable only "
            f"for rates below {station.max_rate:g} rps"
        )
    m = station.metrics(rate, percentiles=tuple(asked))
    model = "M/M/c" if scv == 1.0 else "M/G/c (Allen–Cunneen, exact tail rate)"
    document: dict[str, Any] = {
        "model": model,
        "servers": servers,
        "service_ms": service_ms,
        "scv": scv,
        "rate_rps": rate,
        "max_rate_rps": station.max_rate,
        "utilization": m.utilization,
        "p_wait": m.p_wait,
        "mean_wait_ms": m.mean_wait * 1000.0,
        "mean_response_ms": m.mean_response * 1000.0,
    }
    for p in asked:
        document[f"p{p:g}_ms"] = m.percentiles[p] * 1000.0
    if json_:
        _print_json(document)
        return ExitStatus.OK
    table = Table(
        title=f"{model}: c={servers}, S={service_ms:g} ms, λ={rate:g}/s", show_header=False
    )
    table.add_row("utilization", f"{m.utilization:.4f}")
    table.add_row("P(wait)", f"{m.p_wait:.6f}")
    table.add_row("mean wait", f"{_fmt(m.mean_wait * 1000.0)} ms")
    table.add_row("mean response", f"{_fmt(m.mean_response * 1000.0)} ms")
    for p in wanted:
        table.add_row(f"p{p:g} response", f"{_fmt(m.percentiles[p] * 1000.0)} ms")
    _stdout().print(table)
    return ExitStatus.OK


# --------------------------------------------------------------------------------------------
# fit

_FIT_MODELS = ("auto", "mgc", "mmc", "usl", "demand", "hyperbolic")


def _interval_text(low: float, high: float) -> str:
    return f"{_fmt(low)} – {_fmt(high) if math.isfinite(high) else '∞'}"


def _fit_table_csv(csv_file: Path, model: str, json_: bool) -> ExitStatus:
    from capplan.models.usl import fit_usl
    from capplan.samples import parse_load_table

    if model not in ("auto", "usl"):
        raise InputError(
            f"{model!r} does not fit a load,throughput table",
            key="--model",
            hint="use --model usl (or auto) with --csv",
        )
    rows = parse_load_table(read_input(csv_file), str(csv_file))
    if len(rows) < 4:
        raise InputError(
            f"{len(rows)} rows: the USL has 3 parameters and needs at least 4 rows",
            file=str(csv_file),
        )
    try:
        fit = fit_usl([r.load for r in rows], [r.throughput for r in rows])
    except ValueError as exc:
        raise InputError(str(exc), file=str(csv_file)) from None
    document = {
        "model": "usl",
        "params": {"sigma": fit.sigma, "kappa": fit.kappa, "lambda": fit.lam},
        "stderr": dict(fit.stderr),
        "interval": {k: list(v) for k, v in fit.interval.items()},
        "peak_load": fit.peak_load,
        "max_throughput": fit.max_throughput,
        "r2": fit.r2,
        "n": fit.n,
        "at_bound": list(fit.at_bound),
        "success": fit.success,
        "message": fit.message,
    }
    if json_:
        _print_json(document)
    else:
        table = Table(
            "parameter",
            "estimate",
            "std. error",
            "95% interval",
            title=f"USL fit of {csv_file} ({fit.n} rows, R² = {fit.r2:.4f})",
        )
        for key, value in (("sigma", fit.sigma), ("kappa", fit.kappa), ("lambda", fit.lam)):
            low, high = fit.interval[key]
            table.add_row(key, f"{value:.6g}", _fmt(fit.stderr[key]), _interval_text(low, high))
        out = _stdout()
        out.print(table)
        out.print(
            f"peak load N* = {_fmt(fit.peak_load)}, max throughput = {_fmt(fit.max_throughput)}"
        )
        if fit.message:
            out.print(fit.message)
    return ExitStatus.OK if fit.success else ExitStatus.FAILURE


def _params_text(model: str, p: dict[str, float]) -> str:
    """
    A model's parameters in a few characters, for the table.
    """
    from capplan.models.fit import STATIONS  # loaded already: the fit made the table

    if model in STATIONS:
        return f"c={p['servers']:g} S={p['service_ms']:.3g}ms scv={p['scv']:.2g}"
    if model == "usl":
        return f"σ={p['sigma']:.3g} κ={p['kappa']:.3g} λ={p['lambda']:.4g}"
    if model == "demand":
        return f"D={p['demand_s'] * 1e3:.3g}ms R0={p['base_ms']:.3g}ms"
    return f"a={p['a_ms']:.3g}ms b={p['b']:.3g} cap={p['cap_rps']:.4g}"


def _node_document(fit: Any) -> dict[str, Any]:
    return {
        "node": fit.node,
        "model": fit.model,
        "params": dict(fit.params),
        "stderr": dict(fit.stderr),
        "capacity_rps": fit.capacity_rps,
        "capacity_interval": list(fit.capacity_interval),
        "warnings": list(fit.warnings),
        "windows": fit.windows,
        "max_observed_rps": fit.max_observed_rps,
        "selection": fit.selection,
        "candidates": [
            {
                "model": c.model,
                "aicc": c.aicc,
                "k": c.k,
                "capacity_rps": c.capacity_rps,
                "success": c.success,
                "message": c.message,
            }
            for c in fit.candidates
        ],
        "success": fit.success,
        "message": fit.message,
    }


@app.command("fit")
def fit(
    inventory: Annotated[
        Path | None, typer.Option("-i", "--inventory", help="Inventory (nodes, SLO, workers).")
    ] = None,
    db: DbOpt = None,
    node: Annotated[
        list[str] | None, typer.Option("--node", help="Only this node (repeatable).")
    ] = None,
    model: Annotated[
        str, typer.Option("--model", help="auto | mgc | mmc | usl | demand | hyperbolic")
    ] = "auto",
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="Fit the USL to a standalone load,throughput table instead."),
    ] = None,
    slo_ms: Annotated[
        float | None, typer.Option("--slo-ms", help="What-if: SLO latency, ms.")
    ] = None,
    percentile: Annotated[
        float | None, typer.Option("--percentile", help="What-if: SLO percentile.")
    ] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile name or file.")] = None,
    ansible_inventory: AnsibleOpt = None,
    group: GroupOpt = None,
    parallel: ParallelFitOpt = None,
    json_: JsonOpt = False,
) -> ExitStatus:
    """
    Fit latency-versus-load models per node and report each node's capacity at the SLO.
    """
    if model not in _FIT_MODELS:
        raise InputError(
            f"unknown model {model!r}", key="--model", hint="one of " + ", ".join(_FIT_MODELS)
        )
    if csv_file is not None:
        return _fit_table_csv(csv_file, model, json_)
    from capplan.inventory import effective_slo, load_inventory, load_profile
    from capplan.models.fit import NodeInput, SLOTarget
    from capplan.store import Store

    override = _slo_override(slo_ms, percentile)
    if ansible_inventory is not None and inventory is None:
        raise InputError(
            "--ansible-inventory adds nodes to an inventory",
            key="-i",
            hint="give -i with the cluster, SLO and balancers (its nodes may be empty)",
        )
    inv = (
        load_inventory(inventory, ansible=ansible_inventory, group=group)
        if inventory is not None
        else None
    )
    profile_name = profile or (inv.profile if inv is not None else "balanced")
    prof = load_profile(
        profile_name, relative_to=inventory.parent if inventory is not None else None
    )
    slo = effective_slo(override, inv.slo if inv is not None else None, prof.slo)
    target = SLOTarget(slo.percentile, slo.latency_ms, slo.max_error_rate)
    with Store.open(_db_path(db), create=False) as store:
        stored = store.nodes()
        names = [n.name for n in inv.nodes] if inv is not None else stored
        if node:
            unknown = [n for n in node if n not in names]
            if unknown:
                raise InputError(
                    f"unknown node {unknown[0]!r}", key="--node", hint="nodes: " + ", ".join(names)
                )
            names = [n for n in names if n in node]
        if not names:
            raise InputError(
                "no nodes to fit: the store is empty",
                hint="run `capplan import FILE.csv` or `capplan collect` first",
            )
        arrivals = inv.arrival_model if inv is not None else "poisson"
        pool = (
            [NodeInput(n.name, list(store.windows(n.name)), n.workers) for n in inv.nodes]
            if inv is not None and arrivals != "poisson"
            else None
        )
        if pool is not None:  # every node's windows are read already
            by_name = {p.node: p for p in pool}
            inputs = [by_name[name] for name in names]
        else:
            inputs = [
                NodeInput(
                    name,
                    list(store.windows(name)),
                    inv.node(name).workers if inv is not None else None,
                )
                for name in names
            ]
    fits = _fit_pool(
        inputs,
        target,
        inventory=inv,
        pool=pool,
        ceiling=prof.utilization_ceiling,
        model=model,
        parallel=parallel,
        show_progress=not json_,
    )
    failed = [f for f in fits if not f.success]
    status = (
        ExitStatus.OK
        if not failed
        else ExitStatus.PARTIAL
        if len(failed) < len(fits)
        else ExitStatus.FAILURE
    )
    if json_:
        _print_json(
            {
                "slo": {
                    "percentile": slo.percentile,
                    "latency_ms": slo.latency_ms,
                    "max_error_rate": slo.max_error_rate,
                },
                "profile": prof.name,
                "arrivals": arrivals,
                "nodes": [_node_document(f) for f in fits],
            }
        )
        return status
    out = _stdout()
    table = Table(
        "node",
        "model",
        "capacity",
        "95% interval",
        "max seen",
        "windows",
        "fit",
        title=f"Capacity at {slo.label} ≤ {slo.latency_ms:g} ms (requests per second)",
        caption=_ARRIVALS_CAPTION.get(arrivals),
    )
    for f in fits:
        if not f.success:
            table.add_row(
                f.node, "—", "—", "—", _fmt(f.max_observed_rps), str(f.windows), f.message
            )
            continue
        table.add_row(
            f.node,
            f.model,
            _fmt(f.capacity_rps),
            _interval_text(*f.capacity_interval),
            _fmt(f.max_observed_rps),
            str(f.windows),
            _params_text(f.model, f.params),
        )
    out.print(table)
    for f in fits:
        for warning in f.warnings:
            out.print(Text.assemble(("warning", "yellow"), f": {f.node}: {warning}"))
    if node and len(fits) == 1 and fits[0].success:  # one node: its latency against load
        from capplan.report.data import node_figure
        from capplan.report.textplot import text_plot

        out.print()
        for line in text_plot(node_figure(fits[0], inputs[0].windows, target)):
            out.print(line, markup=False, highlight=False, emoji=False)
    for f in failed:
        _stderr().print(f"capplan: {f.node}: {f.message}", markup=False)
    return status


# --------------------------------------------------------------------------------------------
# optimize


def _observed_peak(windows_by_node: dict[str, list[Any]]) -> float:
    """
    The highest pool load seen: per window start, the sum of the nodes' rates; the maximum.
    """
    totals: dict[Any, float] = {}
    for windows in windows_by_node.values():
        for w in windows:
            totals[w.start] = totals.get(w.start, 0.0) + w.rate
    return max(totals.values(), default=0.0)


def _optimize_document(opt: Any) -> dict[str, Any]:
    plan = opt.plan
    thresholds = plan.pool.thresholds.model_dump(exclude_none=True)
    return {
        "load_rps": plan.inputs.load_rps,
        "objective": opt.split.objective,
        "profile": plan.inputs.profile,
        "slo": plan.inputs.slo.model_dump(),
        "methods": plan.methods.model_dump(exclude_none=True),
        "methods_reason": plan.pool.reasons.get("methods", ""),
        "nodes": [
            {
                "node": n.node,
                "state": n.state,
                "share": n.share,
                "rate_rps": n.rate_rps,
                "capacity_rps": n.capacity_rps,
                "weights": n.weights.model_dump(exclude_none=True),
                "realized_share": n.realized_share.model_dump(exclude_none=True),
                "limits": n.limits.model_dump(exclude_none=True),
                "reasons": dict(n.reasons),
            }
            for n in plan.nodes
        ],
        "pool": {
            "thresholds": {
                k: {"value": v, "reason": plan.pool.reasons.get(k, "")}
                for k, v in thresholds.items()
            },
            "predicted": dict(plan.pool.predicted),
        },
        "not_expressible": plan.not_expressible.model_dump(exclude_none=True),
        "warnings": list(opt.warnings),
    }


@app.command("optimize")
def optimize(
    inventory: Annotated[Path, typer.Option("-i", "--inventory", help="The pool's inventory.")],
    db: DbOpt = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile name or file.")] = None,
    load: Annotated[
        float | None,
        typer.Option(
            "--load",
            help="Load to plan for, rps (default: the inventory's, else the observed peak).",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the plan here.")] = None,
    emit: Annotated[
        str | None,
        typer.Option("--emit", help="Render these targets too: nginx,haproxy,ipvsadm,keepalived."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir", help="Write rendered configs here (default: each balancer's output)."
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Compare the plan and configs with the files: exit 4 on drift, write nothing.",
        ),
    ] = False,
    slo_ms: Annotated[float | None, typer.Option("--slo-ms", help="What-if: SLO latency.")] = None,
    percentile: Annotated[
        float | None, typer.Option("--percentile", help="What-if: SLO percentile.")
    ] = None,
    ansible_inventory: AnsibleOpt = None,
    group: GroupOpt = None,
    json_: JsonOpt = False,
) -> ExitStatus:
    """
    Fit, split the load, derive limits and thresholds, write the plan and configs.
    """
    from capplan.inventory import effective_slo, load_inventory, load_profile
    from capplan.models.fit import NodeInput, SLOTarget
    from capplan.optimize.build import build_plan
    from capplan.planfile import TARGETS, dump_plan
    from capplan.render import render
    from capplan.samples import format_time
    from capplan.store import Store

    override = _slo_override(slo_ms, percentile)
    if load is not None:
        _positive(load, "--load")
    targets: list[str] = []
    if emit:
        targets = [t.strip() for t in emit.split(",") if t.strip()]
        known = (*TARGETS, *_MONITORING)
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise InputError(
                f"unknown target {unknown[0]!r}", key="--emit", hint="targets: " + ",".join(known)
            )
    inv = load_inventory(inventory, ansible=ansible_inventory, group=group)
    prof = load_profile(profile or inv.profile, relative_to=inventory.parent)
    slo = effective_slo(override, inv.slo, prof.slo)
    target = SLOTarget(slo.percentile, slo.latency_ms, slo.max_error_rate)
    with Store.open(_db_path(db), create=False) as store:
        windows = {n.name: list(store.windows(n.name)) for n in inv.nodes}
    if not any(windows.values()):
        raise InputError(
            "no stored windows for any node of the inventory",
            file=str(inventory),
            hint="run `capplan collect -i INV` or `capplan import FILE.csv` first",
        )
    fits = _fit_pool(
        [NodeInput(n.name, windows[n.name], n.workers) for n in inv.nodes],
        target,
        inventory=inv,
        ceiling=prof.utilization_ceiling,
        show_progress=not json_,
    )
    capacity = _capacity_of(out, inv.cluster) if out is not None else None
    load_from = None
    if load is not None:
        load_rps = load
    elif inv.load_rps:
        load_rps = inv.load_rps
    else:
        load_rps = _observed_peak(windows)
        load_from = "observed peak"
    if not load_rps > 0:
        raise InputError(
            "no load to plan for: the windows carry no requests",
            file=str(inventory),
            key="load_rps",
            hint="give --load RPS or load_rps in the inventory",
        )
    errors = []
    for n in inv.nodes:
        requests = sum(w.requests for w in windows[n.name])
        errors.append(sum(w.errors for w in windows[n.name]) / requests if requests else 0.0)
    starts = [w.start for ws in windows.values() for w in ws]
    opt = build_plan(
        inventory=inv,
        inventory_name=str(inventory),
        profile=prof,
        slo=slo,
        fits=fits,
        load_rps=load_rps,
        windows=sum(len(ws) for ws in windows.values()),
        newest=format_time(max(starts)) if starts else None,
        error_rates=errors,
        capacity=capacity,
        load_from=load_from,
    )
    plan = opt.plan
    outputs: list[tuple[Path, str, str | None]] = []  # (path, text, target or None for plan)
    if out is not None:
        outputs.append((out, dump_plan(plan), None))
    snapshot: Path | None = None  # openmetrics: a snapshot, written but never drift-checked
    for target_kind in targets:
        if target_kind in _MONITORING:
            folder = out_dir if out_dir is not None else inventory.parent
            dest = folder / f"{plan.cluster}{_MONITORING[target_kind]}"
            if target_kind == "openmetrics":
                snapshot = dest
            else:
                outputs.append((dest, _rules_text(inv, prof, plan), target_kind))
            continue
        chosen = [b for b in plan.balancers if b.kind == target_kind]
        if not chosen:
            raise InputError(
                f"--emit {target_kind}, but the inventory has no {target_kind} balancer",
                file=str(inventory),
                key="balancers",
            )
        for bal in chosen:
            if out_dir is not None:
                name = Path(bal.output).name if bal.output else f"{target_kind}-{bal.name}.conf"
                dest = out_dir / name
            elif bal.output:
                dest = inventory.parent / Path(bal.output).expanduser()  # beside the inventory
            else:
                raise InputError(
                    f"the {target_kind} balancer {bal.name!r} has no output",
                    file=str(inventory),
                    key="balancers",
                    hint="give it an output, or pass --out-dir",
                )
            outputs.append((dest, render(plan, target_kind, bal.name), target_kind))
    drift = False
    for dest, text, kind in outputs:
        if check:
            drift |= _check_drift(dest, text)
        elif kind is None:
            from capplan.files import write_atomic

            write_atomic(dest, text)
        elif kind == "prometheus-rules":
            _write_rules(dest, text)
        else:
            _write_checked(dest, text, kind)
    if snapshot is not None and not check:
        from capplan.monitoring.metrics import write_metrics

        write_metrics(snapshot, _optimize_metrics(opt, fits))
        outputs.append((snapshot, "", "openmetrics"))
    if json_:
        document = _optimize_document(opt)
        document["files"] = [str(d) for d, _, _ in outputs]
        document["drift"] = drift
        _print_json(document)
    else:
        _print_optimized(opt, slo.label)
        for dest, _, _ in outputs:
            verb = "checked" if check else "wrote"
            _stderr().print(Text(f"{verb} {dest}"))
    if drift:
        _stderr().print("capplan: files differ from what the inventory and windows generate")
        return ExitStatus.DRIFT
    return ExitStatus.OK


def _capacity_of(path: Path, cluster: str) -> Any:
    """
    The ``capacity:`` section of the plan at ``path`` (written by ``capplan plan --out``), or
    None when there is no such file or section. A section that does not validate, or belongs
    to another cluster, is an input error: rewriting the plan would lose it.
    """
    import yaml

    from capplan.planfile import PlanCapacity, parse_plan

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return None  # not a plan: optimize overwrites it, as it always did
    if not isinstance(document, dict) or not {"version", "capacity"} <= document.keys():
        return None  # not a plan with a capacity section (optimize overwrites it)
    capacity: PlanCapacity | None = _of_cluster(parse_plan(text, str(path)), path, cluster).capacity
    return capacity


def _of_cluster(plan: Any, path: Path, cluster: str) -> Any:
    """
    ``plan`` (read from ``path``) when it is ``cluster``'s; an input error otherwise.
    """
    if plan.cluster != cluster:
        raise InputError(
            f"the plan is for cluster {plan.cluster!r}, the inventory for {cluster!r}",
            file=str(path),
            key="cluster",
            hint="give this cluster's plan.yaml",
        )
    return plan


def _print_optimized(opt: Any, label: str) -> None:
    plan = opt.plan
    out = _stdout()
    kinds = list(plan.methods.model_dump(exclude_none=True))
    table = Table(
        "node",
        "state",
        "share",
        "rate",
        "capacity",
        *kinds,
        "max conns",
        "max active",
        title=f"Split of {plan.inputs.load_rps:.6g} rps ({opt.split.objective} "
        f"objective, {plan.inputs.profile} profile)",
    )
    for n in plan.nodes:
        w = n.weights.model_dump()
        table.add_row(
            n.node,
            n.state,
            f"{n.share:.4f}",
            _fmt(n.rate_rps),
            _fmt(n.capacity_rps),
            *[str(w[k]) for k in kinds],
            str(n.limits.max_conns) if n.limits.max_conns else "—",
            str(n.limits.max_active) if n.limits.max_active else "—",
        )
    out.print(table)
    out.print(
        Text(
            "methods: "
            + ", ".join(f"{k} {v}" for k, v in plan.methods.model_dump(exclude_none=True).items())
            + (f" — {plan.pool.reasons['methods']}" if "methods" in plan.pool.reasons else "")
        )
    )
    thresholds = Table("threshold", "value", "reason")
    for k, v in plan.pool.thresholds.model_dump(exclude_none=True).items():
        thresholds.add_row(k, f"{v:g}", plan.pool.reasons.get(k, ""))
    out.print(thresholds)
    predicted = plan.pool.predicted
    out.print(
        Text(
            "predicted: "
            + ", ".join(f"{k} {v:.4g}" for k, v in predicted.items())
            + f" (SLO {label})"
        )
    )
    for w in opt.warnings:
        out.print(Text.assemble(("warning", "yellow"), f": {w}"))


# --------------------------------------------------------------------------------------------
# render / validate

TargetOpt = Annotated[
    str, typer.Option("--target", "-t", help="nginx | haproxy | ipvsadm | keepalived")
]


def _diff(old: str, new: str, name: str) -> str:
    import difflib

    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{name} (on disk)",
            tofile=f"{name} (from the plan)",
        )
    )


#: What --emit writes besides balancer configs, and the suffix of the file (after the cluster).
_MONITORING = {"prometheus-rules": ".rules.yml", "openmetrics": ".prom"}


def _rules_text(inv: Any, prof: Any, plan: Any) -> str:
    from capplan.monitoring.rules import render_rules

    matches = [
        dict(n.prometheus.match)
        if n.prometheus is not None and n.prometheus.match is not None
        else {"instance": n.address}
        for n in inv.nodes
    ]
    return render_rules(
        plan,
        inv.prometheus,
        matches,
        alert_for_s=prof.alert_for_s,
        load_alert_for_s=prof.load_alert_for_s,
        window_s=prof.alert_window_s,
    )


def _write_rules(path: Path, text: str) -> None:
    """
    Check with promtool, then write atomically (with a warning when promtool is missing).
    """
    from capplan.files import write_atomic
    from capplan.monitoring.check import check_rules

    try:
        problems = check_rules(text, str(path))
    except MissingToolError as exc:
        write_atomic(path, text)
        _stderr().print(
            Text.assemble(("warning", "yellow"), f": {path}: not checked by promtool ({exc})")
        )
        return
    if problems:
        raise CapplanError(
            f"{path}: the generated rules failed `promtool check rules`: {'; '.join(problems)}; "
            "the file was not written (this is a bug in capplan: please report it)"
        )
    write_atomic(path, text)


def _optimize_metrics(opt: Any, fits: Sequence[Any]) -> Any:
    import time

    from capplan.monitoring.metrics import NodeMetrics, PoolMetrics

    plan = opt.plan
    thresholds = {
        name: value
        for name, value in (
            ("alert", plan.pool.thresholds.alert_load_rps),
            ("scale_out", plan.pool.thresholds.scale_out_load_rps),
        )
        if value is not None
    }
    intervals = {f.node: f.capacity_interval for f in fits}
    return PoolMetrics(
        cluster=plan.cluster,
        nodes=[
            NodeMetrics(
                n.node,
                n.capacity_rps,
                intervals.get(n.node, (math.inf, math.inf)),
                share=n.share,
                max_conns=n.limits.max_conns,
            )
            for n in plan.nodes
        ],
        thresholds=thresholds,
        generated_at=time.time(),
    )


def _write_checked(path: Path, text: str, target: str) -> None:
    """
    Validate, then write atomically; a failed check leaves the old file as it was.
    """
    from capplan.files import write_atomic
    from capplan.render import lint, write_validated

    try:
        result = write_validated(path, text, target)
    except MissingToolError as exc:
        # Without the balancer's own checker, capplan's lint still has to pass; say plainly
        # that the real program has not checked the file.
        findings = lint(text, target, file=str(path))
        if findings:
            problems = "; ".join(f"{f.file}:{f.line}: {f.message}" for f in findings)
            raise CapplanError(
                f"{path}: the generated {target} config failed capplan's lint: "
                f"{problems}; the file was not written"
            ) from None
        write_atomic(path, text)
        _stderr().print(
            Text.assemble(
                ("warning", "yellow"),
                f": {path}: checked by capplan's lint only, not by {target} itself ({exc})",
            )
        )
        return
    if not result.ok:
        problems = "; ".join(result.messages)
        raise CapplanError(
            f"{path}: the generated {target} config failed its check ({result.checked_by}): "
            f"{problems}; the file was not written (this is a bug in capplan: please report "
            "it with the plan)"
        )


def _check_drift(path: Path, text: str) -> bool:
    """
    True (and the diff printed) when ``path`` differs from ``text``.
    """
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = ""
    if current == text:
        return False
    sys.stdout.write(_diff(current, text, str(path)))
    return True


# --------------------------------------------------------------------------------------------
# plan


def _iso(epoch: float | None) -> str | None:
    from datetime import UTC, datetime

    from capplan.samples import format_time

    if epoch is None:
        return None
    return format_time(datetime.fromtimestamp(epoch, UTC))


def _pool_history(windows: dict[str, list[Any]]) -> Any:
    """
    The pool's load over time from the store: per window start, the sum of the nodes' rates.
    """
    from capplan.plan.forecast import history_from

    totals: dict[Any, float] = {}
    for ws in windows.values():
        for w in ws:
            totals[w.start] = totals.get(w.start, 0.0) + w.rate
    if len(totals) < 2:
        raise InputError(
            "--history store: the store holds fewer than 2 windows for the inventory's nodes",
            key="--history",
            hint="collect or import more windows, or give --growth",
        )
    starts = sorted(totals)
    return history_from([t.timestamp() for t in starts], [totals[t] for t in starts])


def _plan_document(result: Any) -> dict[str, Any]:
    forecast = result.forecast
    fleet = result.fleet
    months = []
    for m in range(1, forecast.horizon_months + 1):
        low, median, high = forecast.month(m)
        entry: dict[str, Any] = {
            "month": m,
            "start": _iso(result.month_start(m)),
            "load_rps": {"low": low, "median": median, "high": high},
        }
        if fleet is not None:
            month = fleet.months[m - 1]
            nodes: dict[str, dict[str, int]] = {}
            spot: dict[str, dict[str, int]] = {}
            added: dict[str, dict[str, int]] = {}
            for (kind, zone, price), n in sorted(month.counts.items()):
                nodes.setdefault(kind, {})[zone] = nodes.get(kind, {}).get(zone, 0) + n
                if price == "spot":
                    spot.setdefault(kind, {})[zone] = n
            for (kind, zone, _price), n in sorted(month.added.items()):
                added.setdefault(kind, {})[zone] = added.get(kind, {}).get(zone, 0) + n
            entry.update(
                nodes=nodes,
                spot_nodes=spot,
                added=added,
                cost_per_month=round(month.cost_per_month, 2),
                usable_rps=month.usable_rps,
                binding=month.binding.text,
                spare_rps=month.binding.spare_rps,
            )
        months.append(entry)
    ex = result.pool.exhaustion
    pool = result.pool
    return {
        "load_rps": forecast.current,
        "plan_for": result.plan_for,
        "forecast": {
            "method": forecast.method,
            "level": forecast.level,
            "origin": _iso(forecast.origin),
        },
        "policy": {
            "target_utilization": result.policy.target_utilization,
            "n_plus": result.policy.n_plus,
            "survive": "zone" if result.policy.survive_zone else None,
            "max_spot_share": result.policy.max_spot_share,
            "price_model": result.policy.price_model,
        },
        "kinds": [
            {
                "kind": k.kind,
                "capacity_rps": k.capacity_rps,
                "capacity_interval": list(k.interval),
                "source": k.source,
            }
            for k in result.kinds
        ],
        "pool": {
            "nodes": pool.nodes,
            "usable_rps": dict(zip(("low", "point", "high"), pool.usable_rps, strict=True)),
            "binding": pool.binding.text,
        },
        "months": months,
        "exhaustion": None
        if ex is None
        else {"early": _iso(ex.early), "median": _iso(ex.median), "late": _iso(ex.late)},
        "order_by": _iso(result.order_by),
        "orders": [
            {
                "kind": o.kind,
                "zone": o.zone,
                "price_model": o.price_model,
                "count": o.count,
                "month": o.month,
                "needed_by": _iso(o.needed_by),
                "order_by": _iso(o.order_by),
            }
            for o in result.orders
        ],
        "fleet": None
        if fleet is None
        else {
            "method": fleet.method,
            "total_cost": round(fleet.total_cost, 2),
            "lower_bound": fleet.bound,
            "gap": fleet.gap,
            "optimal": fleet.optimal,
        },
        "notes": list(result.notes),
    }


@app.command("plan")
def plan_cmd(
    inventory: Annotated[
        Path, typer.Option("-i", "--inventory", help="Inventory with kinds, zones, planning.")
    ],
    db: DbOpt = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile name or file.")] = None,
    load: Annotated[
        float | None,
        typer.Option("--load", help="Peak load now, rps (default: inventory's, else observed)."),
    ] = None,
    growth: Annotated[
        str | None, typer.Option("--growth", help="Compound growth, e.g. 8%/month or 60%/year.")
    ] = None,
    history: Annotated[
        str | None,
        typer.Option("--history", help="Forecast from a time,rps CSV, or `store` for the store's."),
    ] = None,
    horizon: Annotated[int, typer.Option("--horizon", help="Months to plan.")] = 12,
    plan_for: Annotated[
        str, typer.Option("--plan-for", help="Band of the forecast to buy for: high|median|low.")
    ] = "high",
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="What-if: without this node.")
    ] = None,
    add: Annotated[
        list[str] | None,
        typer.Option("--add", help="What-if: KIND=N or KIND@ZONE=N more nodes today."),
    ] = None,
    slo_ms: Annotated[float | None, typer.Option("--slo-ms", help="What-if: SLO latency.")] = None,
    percentile: Annotated[
        float | None, typer.Option("--percentile", help="What-if: SLO percentile.")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="auto | rolling | horizon (see the README).")
    ] = "auto",
    time_limit: Annotated[
        float, typer.Option("--time-limit", help="Seconds the whole-horizon solver may take.")
    ] = 5.0,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Plan as of this time (ISO-8601 or epoch; default: now)."),
    ] = None,
    emit: Annotated[
        str | None,
        typer.Option(
            "--emit", help="openmetrics: write CLUSTER.prom for node_exporter's textfile collector."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Where --emit writes (default: beside the inventory)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Add this plan as the capacity section of a plan.yaml that `capplan optimize "
            "--out` wrote; optimize keeps it and says when its forecast crosses the scale-out "
            "trigger.",
        ),
    ] = None,
    ansible_inventory: AnsibleOpt = None,
    group: GroupOpt = None,
    json_: JsonOpt = False,
) -> ExitStatus:
    """
    How many nodes, of which kind, in which zone, by when, at what cost.
    """
    import time

    from capplan.inventory import effective_slo, load_inventory, load_profile
    from capplan.models.fit import NodeInput, SLOTarget
    from capplan.plan.build import parse_add, plan_capacity
    from capplan.plan.fleet import METHODS
    from capplan.plan.forecast import (
        growth_forecast,
        history_forecast,
        parse_growth,
        read_history_csv,
    )
    from capplan.samples import parse_time
    from capplan.store import Store

    if method not in METHODS:
        raise InputError(f"unknown method {method!r}", key="--method", hint=" | ".join(METHODS))
    if emit is not None and emit.strip() != "openmetrics":
        raise InputError(f"unknown target {emit!r}", key="--emit", hint="openmetrics")
    if growth is not None and history is not None:
        raise InputError(
            "--growth and --history both give the demand's future", hint="give one of them"
        )
    _positive(time_limit, "--time-limit")
    if load is not None:
        _positive(load, "--load")
    what_ifs = [
        name
        for name, given in (
            ("--remove", remove),
            ("--add", add),
            ("--slo-ms", slo_ms),
            ("--percentile", percentile),
        )
        if given
    ]
    if out is not None and what_ifs:
        raise InputError(
            f"{what_ifs[0]} is a what-if, and --out records the plan",
            key="--out",
            hint="drop the what-if to record the plan, or --out to try the what-if",
        )
    if out is not None and not out.exists():
        raise InputError(
            "no plan.yaml to add the capacity plan to",
            file=str(out),
            hint=f"write it first: capplan optimize -i {inventory} --out {out}",
        )
    adds = [parse_add(a) for a in add or ()]
    now = time.time() if at is None else parse_time(at).timestamp()
    override = _slo_override(slo_ms, percentile)
    inv = load_inventory(inventory, ansible=ansible_inventory, group=group)
    prof = load_profile(profile or inv.profile, relative_to=inventory.parent)
    slo = effective_slo(override, inv.slo, prof.slo)
    with Store.open(_db_path(db), create=False) as store:
        windows = {n.name: list(store.windows(n.name)) for n in inv.nodes}
    fits = _fit_pool(
        [NodeInput(n.name, windows[n.name], n.workers) for n in inv.nodes if windows[n.name]],
        SLOTarget(slo.percentile, slo.latency_ms, slo.max_error_rate),
        inventory=inv,
        ceiling=prof.utilization_ceiling,
        show_progress=not json_,
    )
    if history is not None:
        past = _pool_history(windows) if history == "store" else read_history_csv(history)
        forecast = history_forecast(past, horizon, now=now if at is not None else None)
    else:
        load_now = load if load is not None else inv.load_rps or _observed_peak(windows)
        if not load_now > 0:
            raise InputError(
                "no load to plan for",
                file=str(inventory),
                key="load_rps",
                hint="give --load RPS, load_rps in the inventory, or --history",
            )
        rate = parse_growth(growth) if growth is not None else 0.0
        forecast = growth_forecast(load_now, rate, horizon, now=now)
        if growth is None:
            forecast = _with_note(forecast, "no --growth or --history: demand held flat")
    result = plan_capacity(
        inventory=inv,
        fits=fits,
        forecast=forecast,
        plan_for=plan_for,
        remove=remove or (),
        add=adds,
        method=method,
        time_limit_s=time_limit,
    )
    files: list[Path] = []
    if out is not None:
        _record_capacity(out, inv.cluster, result)
        files.append(out)
    if emit is not None:
        from capplan.monitoring.metrics import write_metrics

        written = (out_dir if out_dir is not None else inventory.parent) / f"{inv.cluster}.prom"
        write_metrics(written, _plan_metrics(inv.cluster, fits, result))
        files.append(written)
    if json_:
        document = _plan_document(result)
        document["files"] = [str(f) for f in files]
        _print_json(document)
    else:
        _print_plan(result, slo.label, slo.latency_ms)
        for written in files:
            _stderr().print(Text(f"wrote {written}"))
        if out is not None:
            _stderr().print(
                Text(f"run `capplan optimize -i {inventory} --out {out}` to use it in the plan")
            )
    return ExitStatus.OK


def _record_capacity(out: Path, cluster: str, result: Any) -> None:
    """
    Put the capacity plan into the plan.yaml at ``out`` (its other sections unchanged).
    """
    from capplan.files import write_atomic
    from capplan.plan.build import capacity_section
    from capplan.planfile import dump_plan, load_plan

    existing = _of_cluster(load_plan(out), out, cluster)
    write_atomic(out, dump_plan(existing.model_copy(update={"capacity": capacity_section(result)})))


def _plan_metrics(cluster: str, fits: Sequence[Any], result: Any) -> Any:
    from capplan.monitoring.metrics import NodeMetrics, PoolMetrics

    origin = result.forecast.origin
    ex = result.pool.exhaustion
    days = {}
    if ex is not None:
        for bound in ("early", "median", "late"):
            when = getattr(ex, bound)
            if when is not None:
                days[bound] = (when - origin) / 86400.0
    return PoolMetrics(
        cluster=cluster,
        nodes=[NodeMetrics(f.node, f.capacity_rps, f.capacity_interval) for f in fits if f.success],
        usable_rps=dict(zip(("low", "point", "high"), result.pool.usable_rps, strict=True)),
        days_to_exhaustion=days,
        generated_at=origin,
    )


def _with_note(forecast: Any, note: str) -> Any:
    from dataclasses import replace

    return replace(forecast, notes=(*forecast.notes, note))


def _print_plan(result: Any, label: str, latency_ms: float) -> None:
    out = _stdout()
    doc = _plan_document(result)
    pool = result.pool
    low, point, high = pool.usable_rps
    out.print(
        Text(
            f"Today's pool ({pool.nodes} nodes) serves {_fmt(point)} rps "
            f"({_interval_text(low, high)}) at {label} ≤ {latency_ms:g} ms in its worst loss: "
            f"{pool.binding.text}."
        )
    )
    ex = doc["exhaustion"]
    if ex is None:
        out.print(Text("Demand stays within it over the horizon (even at the early date)."))
    elif pool.exhaustion.exceeded_now:
        out.print(Text("Demand already exceeds it (at the capacity's low end)."))
    else:
        out.print(
            Text(
                f"Demand outgrows it: early {ex['early'][:10]}, "
                f"median {(ex['median'] or 'beyond the horizon')[:10]}, "
                f"late {(ex['late'] or 'beyond the horizon')[:10]}."
            )
        )
    if result.fleet is not None:
        table = Table(
            "month",
            "starts",
            f"peak rps (plan for {result.plan_for})",
            "fleet",
            "added",
            "cost / month",
            "binding",
            title=f"Cheapest fleet per month ({result.policy.price_model} prices)",
        )
        for m in doc["months"]:
            load_ = m["load_rps"]
            fleet_text = ", ".join(
                f"{sum(zones.values())} {kind}" for kind, zones in m["nodes"].items()
            )
            added_text = ", ".join(
                f"+{n} {kind}@{z or '-'}"
                for kind, zones in m["added"].items()
                for z, n in zones.items()
            )
            band = (
                _fmt(load_["median"])
                if load_["low"] == load_["high"]
                else f"{_fmt(load_['median'])} ({_fmt(load_['low'])}–{_fmt(load_['high'])})"
            )
            table.add_row(
                str(m["month"]),
                m["start"][:10],
                band,
                fleet_text,
                added_text or "—",
                f"{m['cost_per_month']:,.2f}",
                m["binding"],
            )
        out.print(table)
        fleet = result.fleet
        proof = (
            "proven optimal"
            if fleet.optimal
            else f"within {fleet.gap:.1%} of optimal"
            if fleet.gap is not None
            else "each month proven optimal, the horizon not"
        )
        out.print(Text(f"Cost over the horizon: {fleet.total_cost:,.2f} ({proof})."))
        origin = result.forecast.origin
        for o, raw in zip(doc["orders"], result.orders, strict=True):
            late = origin - raw.order_by
            when = (
                f"by {o['order_by'][:10]}"
                if late <= 0
                else f"now (the lead time ran out {late / 86400:.0f} day(s) ago)"
                if late >= 86400
                else "now"
            )
            out.print(
                Text(
                    f"order {o['count']} × {o['kind']} in zone {o['zone'] or '-'} "
                    f"({o['price_model']}) {when}, for month {o['month']}"
                )
            )
    for note in result.notes:
        out.print(Text.assemble(("note", "cyan"), f": {note}"))


@app.command("render")
def render_cmd(
    plan_file: Annotated[Path, typer.Argument(help="A plan.yaml written by capplan optimize.")],
    target: TargetOpt,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write here (default: the balancer's output)."),
    ] = None,
    balancer: Annotated[
        str | None, typer.Option("--balancer", help="Which balancer of that kind, by name.")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Compare with the file on disk: exit 4 on drift.")
    ] = False,
) -> ExitStatus:
    """
    Render one balancer's config from a plan (validated before it is written).
    """
    from capplan.planfile import load_plan
    from capplan.render import render

    plan = load_plan(plan_file)
    text = render(plan, target, balancer)
    dest = output
    if dest is None:
        chosen = plan.balancer(target, balancer)
        # a balancer's output is relative to the plan's folder (as it was to the inventory's)
        dest = plan_file.parent / Path(chosen.output).expanduser() if chosen.output else None
    if check:
        if dest is None:
            raise InputError(
                "--check needs a file to compare with",
                key="--check",
                hint="give -o FILE or an output for the balancer in the plan",
            )
        if _check_drift(dest, text):
            _stderr().print(f"capplan: {dest}: differs from what {plan_file} generates")
            return ExitStatus.DRIFT
        _stderr().print(f"{dest}: up to date")
        return ExitStatus.OK
    if dest is None:
        sys.stdout.write(text)
        return ExitStatus.OK
    _write_checked(dest, text, target)
    _stderr().print(f"wrote {dest}")
    return ExitStatus.OK


@app.command("validate")
def validate_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Config files to check.")],
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="nginx | haproxy | ipvsadm | keepalived (default: guessed from the content)",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> ExitStatus:
    """
    Check configs with the real nginx / haproxy / keepalived and capplan's own lint.
    """
    from capplan.render import detect_target, validate

    results = []
    for path in paths:
        text = read_input(path)
        kind = target or detect_target(text)
        if kind is None:
            raise InputError(
                "cannot tell which balancer this config is for",
                file=str(path),
                hint="give --target nginx|haproxy|ipvsadm|keepalived",
            )
        results.append((path, validate(path, kind)))
    bad = [r for _, r in results if not r.ok]
    if json_:
        _print_json(
            {
                "files": [
                    {
                        "file": str(p),
                        "target": r.target,
                        "ok": r.ok,
                        "messages": list(r.messages),
                        "checked_by": r.checked_by,
                    }
                    for p, r in results
                ]
            }
        )
    else:
        out = _stdout()
        for path, r in results:
            verdict = "ok" if r.ok else "FAILED"
            out.print(Text(f"{path}: {r.target}: {verdict} (checked by {r.checked_by})"))
            for message in r.messages:
                out.print(Text(f"  {message}"))
    return ExitStatus.BAD_INPUT if bad else ExitStatus.OK


# --------------------------------------------------------------------------------------------
# profiles


@app.command("man")
def man_cmd(
    out_dir: Annotated[
        Path, typer.Option("-o", "--out-dir", help="Write the pages here (created if missing).")
    ] = Path("man"),
    json_: JsonOpt = False,
) -> ExitStatus:
    """
    Write man pages for capplan and each command, generated from the commands themselves.

    Install them with e.g. `install -m 644 man/*.1 /usr/local/share/man/man1/`; read one
    without installing with `man -l man/capplan-plan.1`.  The footer's date is
    $SOURCE_DATE_EPOCH's when set (reproducible builds), else none.
    """
    from datetime import UTC, datetime

    from capplan.files import write_atomic
    from capplan.man import man_pages

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    date = datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d") if epoch else ""
    pages = man_pages(typer.main.get_command(app), "capplan", __version__, date)
    written = []
    for name, text in pages.items():
        write_atomic(out_dir / name, text)
        written.append(str(out_dir / name))
    if json_:
        _print_json({"files": written})
    else:
        _stderr().print(Text(f"wrote {len(written)} man pages to {out_dir}"))
    return ExitStatus.OK


@app.command("profiles")
def profiles(json_: JsonOpt = False) -> ExitStatus:
    """
    List the built-in profiles.
    """
    from capplan.inventory import builtin_profiles, load_profile

    found = [load_profile(name) for name in builtin_profiles()]
    if json_:
        _print_json({"profiles": [p.model_dump() for p in found]})
        return ExitStatus.OK
    table = Table("profile", "SLO", "objective", "headroom", "method", "detect", "idle")
    for p in found:
        slo = f"p{p.slo.percentile:g} ≤ {p.slo.latency_ms:g} ms" if p.slo.latency_ms else "—"
        table.add_row(
            p.name,
            slo,
            p.objective,
            f"{p.headroom:.0%}",
            f"{p.methods.nginx} / {p.methods.haproxy} / {p.methods.ipvsadm}",
            f"{p.detection_s:g} s",
            p.idle_nodes,
        )
    out = _stdout()
    out.print(table)
    for p in found:
        out.print(Text(f"{p.name}: {' '.join(p.description.split())}"))
    return ExitStatus.OK


# --------------------------------------------------------------------------------------------
# report (the command lives in capplan/report/command.py)

app.command("report")(report_cmd)


# --------------------------------------------------------------------------------------------
# entry point


def _version(value: bool) -> None:
    if value:
        _stdout().print(f"capplan {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """
    Capacity planner and load-balancer tuner for pools of unequal servers.
    """


def run(argv: Sequence[str]) -> ExitStatus:
    """
    Run one command and return its exit status; errors become a message on stderr.

    Set ``CAPPLAN_DEBUG=1`` to let unexpected errors raise with their traceback.
    """
    debug = os.environ.get("CAPPLAN_DEBUG", "") not in ("", "0")
    try:
        result = app(args=list(argv), prog_name="capplan", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
        return ExitStatus(code) if code in ExitStatus._value2member_map_ else ExitStatus.FAILURE
    except typer.Abort:
        _stderr().print("capplan: aborted")
        return ExitStatus.FAILURE
    except typer.TyperException as exc:  # usage errors (typer's vendored click)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            _stderr().print(f"capplan: {exc.format_message()}", markup=False)
        code = getattr(exc, "exit_code", ExitStatus.BAD_INPUT)
        return ExitStatus.BAD_INPUT if code == 2 else ExitStatus.FAILURE
    except CapplanError as exc:
        _stderr().print(f"capplan: {exc}", markup=False)
        for error_type, status in _STATUS:
            if isinstance(exc, error_type):
                return status
        return ExitStatus.FAILURE  # pragma: no cover - CapplanError is last in _STATUS
    except KeyboardInterrupt:
        _stderr().print("capplan: interrupted")
        return ExitStatus.FAILURE
    except Exception as exc:
        if debug:
            raise
        _stderr().print(
            f"capplan: internal error: {type(exc).__name__}: {exc} "
            "(this is a bug; rerun with CAPPLAN_DEBUG=1 for the traceback and report it)",
            markup=False,
        )
        return ExitStatus.FAILURE
    if isinstance(result, ExitStatus):
        return result
    return ExitStatus.OK
