"""
The report's figures, drawn with matplotlib from the figure data (``capplan.report.data``).

Only drawing happens here: every number comes from the data.  Figures are made with the
object-oriented API (``matplotlib.figure.Figure``, the Agg canvas; no pyplot, no global
figure state) under fixed rc settings, so the same data give the same bytes: SVG text is kept
as text (``svg.fonttype: none``, searchable, escaped by matplotlib), its ids come from a fixed
salt and are prefixed with the figure's id (several SVGs share one HTML page), and no date is
written.  ``inline_svg`` strips what an SVG inside HTML does not need — the XML prolog, the
namespace declarations and the RDF metadata, which name URLs — so the page refers to nothing
outside itself.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from capplan.report.data import NodeFigure, PlanFigure, ReportData, SplitFigure

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = ["figure_pngs", "figure_svgs", "inline_svg", "make_figures", "to_png", "to_svg"]

#: Fixed settings: deterministic output, text kept as text, no maths parsing of labels.
RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "capplan-report",
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8.0,
    "legend.framealpha": 0.9,
    "figure.dpi": 100.0,
    "savefig.dpi": 100.0,
}

MODEL_COLOURS = {
    "mgc": "#1f77b4",
    "mmc": "#17becf",
    "usl": "#2ca02c",
    "demand": "#9467bd",
    "hyperbolic": "#8c564b",
}
POINTS = "#7f7f7f"
SLO = "#d62728"
CAPACITY = "#ff7f0e"
BEFORE = "#b0b0b0"
AFTER = "#1f77b4"


@contextmanager
def _settings() -> Iterator[None]:
    with matplotlib.rc_context(RC):
        yield


def _series(rates: tuple[float, ...], values: tuple[float | None, ...]) -> tuple[list[float], ...]:
    """
    The finite part of a curve (None past saturation is simply not drawn).
    """
    xs = [x for x, y in zip(rates, values, strict=True) if y is not None]
    ys = [y for y in values if y is not None]
    return xs, ys


def draw_node(fig: Figure, data: NodeFigure) -> None:
    """
    One node: windows as points, each model's curve, the SLO line, the capacity and interval.
    """
    ax = fig.add_subplot()
    if data.points:
        xs, ys = zip(*data.points, strict=True)
        ax.scatter(
            xs,
            ys,
            s=9,
            color=POINTS,
            alpha=0.7,
            linewidths=0,
            zorder=3,  # over the curves: the fit is judged by the points around it
            label=f"windows ({data.stat})",
        )
    for curve in sorted(data.curves, key=lambda c: c.chosen):  # the chosen one on top
        xs_c, ys_c = _series(curve.rate_rps, curve.latency_ms)
        label = f"{curve.model} {curve.stat}" + (" (chosen)" if curve.chosen else "")
        ax.plot(
            xs_c,
            ys_c,
            color=MODEL_COLOURS.get(curve.model, "#333333"),
            linewidth=2.2 if curve.chosen else 1.0,
            linestyle="-" if curve.chosen else "--",
            alpha=1.0 if curve.chosen else 0.8,
            label=label,
        )
    if data.slo_curve is not None:
        xs_s, ys_s = _series(data.slo_curve.rate_rps, data.slo_curve.latency_ms)
        ax.plot(
            xs_s,
            ys_s,
            color=MODEL_COLOURS.get(data.slo_curve.model, "#333333"),
            linewidth=1.6,
            linestyle=":",
            label=f"{data.slo_curve.model} {data.slo_curve.stat} (capacity read here)",
        )
    ax.axhline(
        data.slo_ms,
        color=SLO,
        linestyle="--",
        linewidth=1.2,
        label=f"SLO {data.slo_stat} ≤ {data.slo_ms:g} ms",
    )
    if data.capacity_rps is not None:
        label = f"capacity {data.capacity_rps:.4g} rps"
        if data.capacity_interval is not None:
            low, high = data.capacity_interval
            right = high if high is not None else data.x_max
            label += f" (95%: {low:.4g}–{f'{high:.4g}' if high is not None else 'open'})"
            ax.axvspan(low, right, color=CAPACITY, alpha=0.18, linewidth=0)
        ax.axvline(data.capacity_rps, color=CAPACITY, linewidth=1.6, label=label)
    ax.set_xlim(0.0, data.x_max)
    ax.set_ylim(0.0, data.y_max)
    ax.set_xlabel("offered load (requests per second)")
    ax.set_ylabel(f"latency, {data.stat} (ms)")
    title = f"{data.node}: {data.model}" if data.model else f"{data.node}: no model"
    ax.set_title(title)
    if not data.success:
        ax.text(
            0.5,
            0.5,
            data.message,
            transform=ax.transAxes,
            ha="center",
            va="center",
            wrap=True,
            fontsize=8,
        )
    ax.legend(loc="upper left")


def _ms_text(value: float | None) -> str:
    return f"{value:.4g} ms" if value is not None else "unbounded"


def draw_split(fig: Figure, data: SplitFigure) -> None:
    """
    The split before and after: each node's rate, with its capacity and planned cap.
    """
    ax = fig.add_subplot()
    n = len(data.nodes)
    width = 0.38
    xs = list(range(n))
    ax.bar(
        [x - width / 2 for x in xs],
        [node.before_rps for node in data.nodes],
        width,
        color=BEFORE,
        label=data.before_label,
    )
    ax.bar(
        [x + width / 2 for x in xs],
        [node.after_rps for node in data.nodes],
        width,
        color=AFTER,
        label="after: capplan's split",
    )
    first_cap, first_planned = True, True
    for x, node in zip(xs, data.nodes, strict=True):
        if node.capacity_rps is not None:
            ax.hlines(
                node.capacity_rps,
                x - 0.45,
                x + 0.45,
                colors=CAPACITY,
                linewidth=2.0,
                label="capacity at the SLO" if first_cap else "_nolegend_",
            )
            first_cap = False
        if node.cap_rps is not None:
            ax.hlines(
                node.cap_rps,
                x - 0.45,
                x + 0.45,
                colors=CAPACITY,
                linewidth=1.0,
                linestyles="--",
                label="capacity less headroom" if first_planned else "_nolegend_",
            )
            first_planned = False
    ax.set_xticks(xs, [node.node for node in data.nodes])
    ax.set_ylabel("rate (requests per second)")
    ax.set_title(
        f"Split of {data.load_rps:g} rps — pool {data.slo_stat}: before "
        f"{_ms_text(data.before_pool_ms)}, after {_ms_text(data.after_pool_ms)} "
        f"(SLO {data.slo_ms:g} ms)"
    )
    ax.legend(loc="upper left")


def _month_ticks(ax: Axes, data: PlanFigure) -> None:
    months = [m.month for m in data.months]
    step = max(1, math.ceil(len(months) / 12))
    ticks = months[::step]
    ax.set_xticks(ticks, [data.months[t - 1].start[:7] for t in ticks], rotation=45, ha="right")


def draw_plan(fig: Figure, data: PlanFigure) -> None:
    """
    The plan over the horizon: demand and usable capacity on top, cost per month below.
    """
    has_cost = data.total_cost is not None
    axes = fig.subplots(2 if has_cost else 1, 1, sharex=True, squeeze=False)
    top = axes[0][0]
    months = [m.month for m in data.months]
    top.fill_between(
        months,
        [m.load_low for m in data.months],
        [m.load_high for m in data.months],
        color=AFTER,
        alpha=0.2,
        linewidth=0,
        label="demand band",
    )
    top.plot(months, [m.load_median for m in data.months], color=AFTER, label="demand (median)")
    usable = [(m.month, m.usable_rps) for m in data.months if m.usable_rps is not None]
    if usable:
        top.step(
            [u[0] for u in usable],
            [u[1] for u in usable],
            where="mid",
            color=CAPACITY,
            linewidth=1.6,
            label="planned fleet: usable in its worst loss",
        )
    today = data.today_usable_rps[1]
    if math.isfinite(today):
        top.axhline(today, color=SLO, linestyle="--", linewidth=1.0, label="today's pool: usable")
    top.set_ylabel("peak rps")
    top.set_ylim(bottom=0.0)
    top.set_title(f"Capacity plan (buying for the forecast's {data.plan_for} band)")
    top.legend(loc="upper left")
    if has_cost:
        bottom = axes[1][0]
        bottom.bar(
            months,
            [m.cost_per_month or 0.0 for m in data.months],
            color=CAPACITY,
            width=0.7,
        )
        bottom.set_ylabel(f"cost per month ({data.price_model})")
        bottom.set_title(f"Cost over the horizon: {data.total_cost:,.2f}")
        _month_ticks(bottom, data)
    else:
        _month_ticks(top, data)


def make_figures(data: ReportData) -> list[tuple[str, Figure]]:
    """
    Every figure of the report, with its id (``ReportData.figure_ids``), in page order.
    """
    out: list[tuple[str, Figure]] = []
    with _settings():
        for node in data.nodes:
            fig = Figure(figsize=(6.4, 4.2), layout="constrained")
            draw_node(fig, node)
            out.append((f"node-{node.node}", fig))
        if data.split is not None:
            fig = Figure(figsize=(8.0, 4.2), layout="constrained")
            draw_split(fig, data.split)
            out.append(("split", fig))
        if data.plan is not None:
            fig = Figure(figsize=(8.0, 6.0), layout="constrained")
            draw_plan(fig, data.plan)
            out.append(("plan", fig))
    return out


_ID = re.compile(r'\bid="([^"]+)"')
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_REF = re.compile(r'(href="#|url\(#)([^")]+)')


def inline_svg(svg: str, prefix: str) -> str:
    """
    A matplotlib SVG made fit to sit inside an HTML page next to others.

    Drops the XML prolog and DOCTYPE, the RDF metadata and the namespace declarations (HTML
    parses ``<svg>`` into the SVG namespace by itself), writes ``xlink:href`` as SVG 2's
    ``href``, and prefixes every id and reference to one with ``prefix`` so that ids stay
    unique on the page.

    Args:
        svg: The SVG document matplotlib wrote.
        prefix: A letter, then letters, digits, ``_`` or ``-`` (e.g. ``fig3``): it goes into
            attributes unescaped, so nothing else is accepted.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"prefix must be a letter then letters, digits, _ or -: {prefix!r}")
    start = svg.find("<svg")
    if start < 0:
        raise ValueError("not an SVG document: no <svg> element")
    text = svg[start:]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    text = text.replace("xlink:href=", "href=")
    text = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = _REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text)
    return text.strip() + "\n"


def _save(fig: Figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    metadata: dict[str, str | None] = {"Date": None} if fmt == "svg" else {"Software": None}
    with _settings():
        fig.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()


def to_svg(fig: Figure, prefix: str) -> str:
    """
    A figure as an SVG to inline in the page, its ids prefixed with ``prefix`` (see
    ``inline_svg``; the page uses ``fig1``, ``fig2``, … in page order).
    """
    return inline_svg(_save(fig, "svg").decode("utf-8"), prefix)


def to_png(fig: Figure) -> bytes:
    """
    A figure as a PNG (100 dpi).
    """
    return _save(fig, "png")


def figure_svgs(data: ReportData) -> dict[str, str]:
    """
    Each figure as an SVG to inline in the page, by figure id, in page order.
    """
    return {fid: to_svg(fig, f"fig{i}") for i, (fid, fig) in enumerate(make_figures(data), start=1)}


def figure_pngs(data: ReportData) -> dict[str, bytes]:
    """
    Each figure as a PNG (100 dpi), by figure id, in page order.
    """
    return {fid: to_png(fig) for fid, fig in make_figures(data)}
