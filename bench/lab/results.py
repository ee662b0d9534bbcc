"""
What the lab's ``results.json`` says, for people: the tables (with capplan's ratios against each
alternative), the issue's targets checked one by one, and a plot — pure functions of the
document, so a finished or interrupted run can be reported again without measuring anything.

A variant's strategies are keyed ``BALANCER/STRATEGY``; each holds ``p99_ms`` and
``error_rate`` per load level (fractions of the pool's capacity, as strings), ``spread`` (the
repeats' lowest and highest p99), ``max_rate_at_slo`` (with ``--repeats``, the lower middle of
the repeats' bisections, and ``max_rate_spread`` their lowest and highest) and ``overload``
(at 120%: ``goodput_rps``, ``p99_ms`` of the admitted requests, ``refused``,
``refused_p99_ms``).  A p99 of None is a failed point (more than the SLO's error budget
failed, counted as infinitely slow).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.lab.pool import DEFAULT_CV
from bench.lab.stationary import mdc_capacity, stationary_capacity

__all__ = [
    "ALTERNATIVES",
    "Target",
    "add_stationary",
    "markdown",
    "node_stationary",
    "plot",
    "pool_stationary",
    "targets",
]

#: The configurations capplan must beat (``optimum`` is the limit, not an alternative).
ALTERNATIVES = ("rr", "lc", "wrr", "wlc")

#: Independent seed sets of each node's simulated stationary capacity (the median is reported).
STATIONARY_SEEDS = 4

#: A refusal seen by the client comes this much after the balancer's queue timeout at most: the
#: connection and the answer on loopback, and HAProxy's timers, which tick in milliseconds.
ROUND_TRIP_MS = 5.0


@dataclass(frozen=True)
class Target:
    """
    One of the issue's targets on one variant and balancer: what, whether met, the figures.
    """

    variant: str
    balancer: str
    what: str
    met: bool | None  # None: not measured (e.g. a strategy missing from a quick run)
    figures: str


def _p(entry: Mapping[str, Any], level: str) -> float:
    value = entry.get("p99_ms", {}).get(level)
    return math.inf if value is None else float(value)


def _balancers(strategies: Mapping[str, Any]) -> list[str]:
    return sorted({name.split("/")[0] for name in strategies})


def _ratio(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return "-"
    return f"{a / b:.2f}×"


def _ms(value: float | None) -> str:
    return "∞" if value is None or not math.isfinite(value) else f"{value:.0f}"


def targets(variant: str, result: Mapping[str, Any]) -> list[Target]:
    """
    The issue's targets for one variant (a pool with one service law), per balancer.
    """
    out: list[Target] = []
    for key, against, reference in (
        ("measured_rps", "measured", "the measured capacity"),
        ("stationary_rps", "the stationary one (simulated)", "the stationary capacity (simulated)"),
    ):
        out += _prediction_targets(variant, result["nodes"], key, against, reference)
    strategies = result["strategies"]
    capacity = result["pool"].get("measured_rps") or result["pool"].get("predicted_rps")
    queue_timeout = (result.get("capplan") or {}).get("queue_timeout_ms")
    for balancer in _balancers(strategies):
        ours = strategies.get(f"{balancer}/capplan")
        if ours is None:
            continue
        others = {
            s: strategies[f"{balancer}/{s}"]
            for s in ALTERNATIVES
            if f"{balancer}/{s}" in strategies
        }
        rate = ours.get("max_rate_at_slo")
        rates = {s: e.get("max_rate_at_slo") for s, e in others.items()}
        known = {s: r for s, r in rates.items() if r is not None}
        if rate is not None and known:
            best = max(known, key=lambda s: known[s])
            out.append(
                Target(
                    variant,
                    balancer,
                    "max rate at the SLO ≥ 1.0× the best of rr, lc, wrr, wlc",
                    rate >= known[best],
                    f"{rate:.0f} vs {best} {known[best]:.0f} rps ({_ratio(rate, known[best])})",
                )
            )
        optimum = strategies.get(f"{balancer}/optimum", {}).get("max_rate_at_slo")
        if rate is not None and optimum:
            out.append(
                Target(
                    variant,
                    balancer,
                    "max rate at the SLO ≥ 0.95× optimum",
                    rate >= 0.95 * optimum,
                    f"{rate:.0f} vs {optimum:.0f} rps ({_ratio(rate, optimum)})",
                )
            )
        if "0.8" in ours.get("p99_ms", {}) and others:
            best = min(others, key=lambda s: _p(others[s], "0.8"))
            mine, theirs = _p(ours, "0.8"), _p(others[best], "0.8")
            out.append(
                Target(
                    variant,
                    balancer,
                    "p99 at 80% ≤ the best alternative's",
                    mine <= theirs,
                    f"{_ms(mine)} vs {best} {_ms(theirs)} ms",
                )
            )
        over = ours.get("overload")
        if over and capacity:
            goodput = over["goodput_rps"]
            out.append(
                Target(
                    variant,
                    balancer,
                    "120%: goodput ≥ 95% of capacity",
                    goodput >= 0.95 * capacity,
                    f"{goodput:.0f} of {capacity:.0f} rps ({goodput / capacity:.1%})",
                )
            )
            admitted = over.get("p99_ms")
            if "0.8" in ours.get("p99_ms", {}):  # a quick run has no 80% level
                at80 = _p(ours, "0.8")
                out.append(
                    Target(
                        variant,
                        balancer,
                        "120%: admitted p99 ≤ 1.5× capplan's p99 at 80%",
                        admitted is not None and admitted <= 1.5 * at80,
                        f"{_ms(admitted)} vs 1.5 × {_ms(at80)} ms",
                    )
                )
            refused = over.get("refused_p99_ms")
            if queue_timeout is not None:
                out.append(
                    Target(
                        variant,
                        balancer,
                        "120%: the excess refused within the queue timeout (p99; +5 ms for "
                        "the round trip and the balancer's millisecond timers)",
                        None if refused is None else refused <= queue_timeout + ROUND_TRIP_MS,
                        "nothing refused"
                        if refused is None
                        else f"{refused:.0f} ms vs {queue_timeout} ms",
                    )
                )
    return out


def _prediction_targets(
    variant: str, nodes: Sequence[Mapping[str, Any]], key: str, against: str, reference: str
) -> list[Target]:
    """
    The node targets against one reference (``key`` of each node, where it has one): the
    median error of the predictions, and whether the intervals cover it for most nodes.
    """
    known = [n for n in nodes if n.get(key)]
    if not known:
        return []
    median = statistics.median(abs(n["predicted_rps"] / n[key] - 1) for n in known)
    covered = sum(_covers(n["predicted_interval"], n[key]) for n in known)
    return [
        Target(
            variant,
            "-",
            f"predicted node capacity within ±10% of {against} (median over nodes)",
            median <= 0.10,
            f"median error {median:.1%}",
        ),
        Target(
            variant,
            "-",
            f"the 95% interval covers {reference} for most nodes",
            covered > len(known) / 2,
            f"{covered} of {len(known)} nodes",
        ),
    ]


def _covers(interval: Sequence[float | None], value: float) -> bool:
    lo, hi = interval
    return lo is not None and hi is not None and lo <= value <= hi


def add_stationary(variants: Mapping[str, Any], slo: Mapping[str, Any]) -> int:
    """
    Give every node of every variant that lacks one its stationary capacity at the SLO
    (:func:`node_stationary`) as ``stationary_rps``, the seed sets' lowest and highest as
    ``stationary_range``, and every variant of more than one node its pool's
    (:func:`pool_stationary`, where it is one M/G/c) as ``pool_stationary_rps`` and
    ``pool_stationary_range``.  Returns how many nodes were computed (each takes seconds to a
    minute; the results are kept in the document).
    """
    done = 0
    for result in variants.values():
        pool = result["pool"]
        specs = {n["name"]: n for n in pool["nodes"]}
        for node in result["nodes"]:
            if node.get("stationary_rps") or node["node"] not in specs:
                continue
            median, spread = node_stationary(specs[node["node"]], pool, slo)
            node["stationary_rps"] = median
            node["stationary_range"] = spread
            done += 1
        if "pool_stationary_rps" not in result and len(pool["nodes"]) > 1:
            bound = pool_stationary(pool, slo)
            if bound is not None:
                result["pool_stationary_rps"], result["pool_stationary_range"] = bound
    return done


def pool_stationary(
    pool: Mapping[str, Any], slo: Mapping[str, Any]
) -> tuple[float, list[float]] | None:
    """
    What no dispatch to the pool's nodes can beat: the stationary capacity at the SLO of one
    FCFS queue over all their slots (a request takes whichever slot frees first), as
    :func:`node_stationary` gives it for one node of that many slots; None where the nodes
    differ in mean service time or service law (no single M/G/c then).
    """
    laws = {
        (
            node.get("service") or pool["service"],
            float(node.get("cv") or pool.get("cv", DEFAULT_CV)),
            float(node["service_ms"]),
        )
        for node in pool["nodes"]
    }
    if len(laws) != 1:
        return None
    ((law, cv, service_ms),) = laws
    slots = sum(int(node["slots"]) for node in pool["nodes"])
    spec = {"slots": slots, "service_ms": service_ms, "service": law, "cv": cv}
    return node_stationary(spec, pool, slo)


def node_stationary(
    spec: Mapping[str, Any], pool: Mapping[str, Any], slo: Mapping[str, Any]
) -> tuple[float, list[float]]:
    """
    A lab node's stationary capacity at the SLO, simulated from its parameters (``spec``: a
    pool file's node; ``pool``: the pool's ``service`` and ``cv``, which a node may override;
    :func:`bench.lab.stationary.stationary_capacity`): the median over ``STATIONARY_SEEDS``
    independent seed sets, and their lowest and highest.  Fixed service is exact instead
    (:func:`bench.lab.stationary.mdc_capacity`; its range is the value twice).
    """
    law = spec.get("service") or pool["service"]
    cv = spec.get("cv") or pool.get("cv", DEFAULT_CV)
    if law == "fixed":  # exact: no simulation needed
        exact = mdc_capacity(
            int(spec["slots"]),
            float(spec["service_ms"]),
            float(slo["latency_ms"]),
            float(slo["percentile"]),
        )
        return exact, [exact, exact]
    values = sorted(
        stationary_capacity(
            int(spec["slots"]),
            float(spec["service_ms"]),
            law,
            float(cv),
            float(slo["latency_ms"]),
            float(slo["percentile"]),
            seed=1000 * k,
        )
        for k in range(STATIONARY_SEEDS)
    )
    return statistics.median(values), [values[0], values[-1]]


def markdown(variants: Mapping[str, Any], slo_label: str) -> str:
    """
    Per variant: the nodes' predicted and measured capacities, each strategy's figures, capplan's
    ratios against each alternative, and the targets.
    """
    lines: list[str] = []
    for variant, result in variants.items():
        lines.append(f"### {variant}\n")
        lines.append(
            "| node | predicted rps [95% interval] | measured rps | error "
            "| stationary rps, simulated [seed sets' range] | error |"
        )
        lines.append("|---|---|---|---|---|---|")
        for n in result["nodes"]:
            measured = n["measured_rps"]
            error = f"{n['predicted_rps'] / measured - 1:+.1%}" if measured else "-"
            lo, hi = (math.inf if x is None else x for x in n["predicted_interval"])
            interval = f"{n['predicted_rps']:.1f} [{lo:.1f}, {hi:.1f}]"
            shown = f"{measured:.1f}" if measured else "-"
            steady = n.get("stationary_rps")
            if steady:
                low, high = n["stationary_range"]
                steady_cell = f"{steady:.1f} [{low:.1f}, {high:.1f}]"
                steady_error = f"{n['predicted_rps'] / steady - 1:+.1%}"
            else:
                steady_cell = steady_error = "-"
            lines.append(
                f"| {n['node']} | {interval} | {shown} | {error} | {steady_cell} | {steady_error} |"
            )
        lines.append("")
        bound = result.get("pool_stationary_rps")
        if bound:
            low, high = result["pool_stationary_range"]
            slots = sum(int(node["slots"]) for node in result["pool"]["nodes"])
            lines.append(
                f"One FCFS queue over all {slots} slots, which no dispatch to the nodes can beat, "
                f"meets the SLO up to {bound:.0f} rps, stationary (seed sets {low:.0f}–{high:.0f};"
                " simulated, exact for fixed service).\n"
            )
        strategies = result["strategies"]
        levels = sorted({lv for s in strategies.values() for lv in s["p99_ms"]}, key=float)
        header = ["strategy"] + [f"{slo_label} @{float(lv):.0%} (ms)" for lv in levels]
        header += ["max rps at SLO", "120%: goodput rps", "120%: admitted p99 ms", "120%: refused"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for name, s in strategies.items():
            cells = [name]
            for lv in levels:
                spread = s.get("spread", {}).get(lv)
                cell = _ms(s["p99_ms"].get(lv))
                if spread and spread[0] != spread[1]:
                    cell += f" ({_ms(spread[0])}–{_ms(spread[1])})"
                cells.append(cell)
            cell = f"{s['max_rate_at_slo']:.0f}" if "max_rate_at_slo" in s else "-"
            low_high = s.get("max_rate_spread")
            if low_high and low_high[0] != low_high[1]:
                cell += f" ({low_high[0]:.0f}–{low_high[1]:.0f})"
            cells.append(cell)
            over = s["overload"]
            cells.append(f"{over['goodput_rps']:.0f}")
            cells.append(_ms(over["p99_ms"]))
            cells.append(str(over["refused"]))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for name, s in strategies.items():
            if "weights" in s:
                weights = ", ".join(f"{k} {v}" for k, v in s["weights"].items())
                lines.append(f"`{name}` weights found by the search: {weights}  ")
        lines.append("")
        for balancer in _balancers(strategies):
            ours = strategies.get(f"{balancer}/capplan")
            if ours is None:
                continue
            compared = [s for s in (*ALTERNATIVES, "optimum") if f"{balancer}/{s}" in strategies]
            if "max_rate_at_slo" not in ours and "0.8" not in ours["p99_ms"]:
                continue  # a quick run: nothing to compare as a ratio
            lines.append(f"capplan on {balancer}, as a ratio to each alternative:\n")
            lines.append("| | " + " | ".join(compared) + " |")
            lines.append("|---|" + "---|" * len(compared))
            rate = ours.get("max_rate_at_slo")
            row = ["max rps at SLO (higher is better)"]
            for s in compared:
                theirs = strategies[f"{balancer}/{s}"].get("max_rate_at_slo")
                row.append(_ratio(rate, theirs) if rate is not None and theirs else "-")
            lines.append("| " + " | ".join(row) + " |")
            row = [f"{slo_label} at 80% (lower is better)"]
            for s in compared:
                row.append(_ratio(_p(ours, "0.8"), _p(strategies[f"{balancer}/{s}"], "0.8")))
            lines.append("| " + " | ".join(row) + " |")
            lines.append("")
        found = targets(variant, result)
        if found:
            lines.append("| target | balancer | met | figures |")
            lines.append("|---|---|---|---|")
            for t in found:
                met = "-" if t.met is None else ("yes" if t.met else "**no**")
                lines.append(f"| {t.what} | {t.balancer} | {met} | {t.figures} |")
            lines.append("")
    return "\n".join(lines)


def plot(variants: Mapping[str, Any], path: Path, slo_ms: float) -> None:
    """
    One row per variant and balancer: each strategy's p99 against the load (failed points at
    the top edge), the SLO line, and the largest rate meeting the SLO per strategy.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = [
        (variant, balancer, result)
        for variant, result in variants.items()
        for balancer in _balancers(result["strategies"])
    ]
    if not rows:
        return
    figure = Figure(figsize=(11, 3.2 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), 2, squeeze=False)
    for (variant, balancer, result), (curve, bars) in zip(rows, axes, strict=True):
        strategies = {
            name.split("/")[1]: s
            for name, s in result["strategies"].items()
            if name.startswith(f"{balancer}/")
        }
        top = 10 * slo_ms
        for name, s in strategies.items():
            levels = sorted(s["p99_ms"], key=float)
            xs = [float(lv) for lv in levels]
            ys = [min(_p(s, lv), top) for lv in levels]
            over = s.get("overload")
            if over:
                xs.append(1.2)
                ys.append(top if over["p99_ms"] is None else min(float(over["p99_ms"]), top))
            style = "-" if name == "capplan" else "--"
            curve.plot(
                xs, ys, style, marker="o", label=name, linewidth=2 if name == "capplan" else 1
            )
        curve.axhline(slo_ms, color="black", linewidth=0.8, linestyle=":")
        curve.set_yscale("log")
        curve.set_ylim(top=top * 1.2)
        curve.set_xlabel("load, fraction of the pool's capacity (1.2: admitted requests)")
        curve.set_ylabel("p99 (ms)")
        curve.set_title(f"{variant}, {balancer}")
        curve.legend(fontsize="small", ncols=2)
        names = [n for n in strategies if "max_rate_at_slo" in strategies[n]]
        values = [strategies[n]["max_rate_at_slo"] for n in names]
        colours = ["tab:red" if n == "capplan" else "tab:gray" for n in names]
        bars.bar(names, values, color=colours)
        bars.set_ylabel("largest rate meeting the SLO (rps)")
        bars.set_title(f"{variant}, {balancer}: max rate at the SLO")
    figure.savefig(path)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Report a results directory again: the nodes' stationary capacities added where missing
    (kept in ``results.json``), then ``results.md`` and ``results.svg`` rewritten.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.lab.results", description="report a lab run's results.json again"
    )
    parser.add_argument("out", type=Path, help="the lab's results directory")
    args = parser.parse_args(argv)
    path = args.out / "results.json"
    data = json.loads(path.read_text())
    slo = data["slo"]
    if add_stationary(data["variants"], slo):
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(temporary, path)
    table = markdown(data["variants"], f"p{slo['percentile']:g}")
    (args.out / "results.md").write_text(table)
    plot(data["variants"], args.out / "results.svg", float(slo["latency_ms"]))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
