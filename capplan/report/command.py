"""
``capplan report``: the command (an edge: reads the inventory and the store, writes files).

It parses its options, loads what ``capplan optimize`` and ``capplan plan`` load, makes one
core call (``build_report``), draws the figures and writes the page (and, with ``--png``, each
figure alone).  ``capplan.cli`` registers ``report_cmd`` as the ``report`` command.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from capplan.errors import InputError, MissingToolError
from capplan.status import ExitStatus

__all__ = ["DEFAULT_OUTPUT", "report_cmd"]

DEFAULT_OUTPUT = Path("capplan-report.html")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _write_bytes(path: Path, content: bytes) -> None:
    """
    Write ``content`` through a temporary file beside ``path`` and a rename.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report_cmd(
    inventory: Annotated[Path, typer.Option("-i", "--inventory", help="The pool's inventory.")],
    db: Annotated[
        Path | None,
        typer.Option("--db", help="Sample store (default: $CAPPLAN_DB, else ./capplan.db)."),
    ] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile name or file.")] = None,
    load: Annotated[
        float | None,
        typer.Option(
            "--load",
            help="Load to split and plan for, rps (default: the inventory's, else the observed "
            "peak).",
        ),
    ] = None,
    growth: Annotated[
        str | None,
        typer.Option("--growth", help="Compound growth for the plan, e.g. 8%/month or 60%/year."),
    ] = None,
    horizon: Annotated[int, typer.Option("--horizon", help="Months to plan.")] = 12,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="The fleet solver, as `capplan plan --method`: auto | rolling | horizon "
            "(rolling gives the same plan on every run; the others stop at a time limit).",
        ),
    ] = "auto",
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help=f"Write the page here (default: {DEFAULT_OUTPUT}, unless --png is given).",
        ),
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option("--png", help="Write each figure alone as a PNG into this folder."),
    ] = None,
    before: Annotated[
        Path | None,
        typer.Option(
            "--before",
            help="Compare with this earlier plan's shares (default: equal shares, as an "
            "unweighted round robin sends).",
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Plan as of this time (ISO-8601 or epoch; default: now)."),
    ] = None,
    ansible_inventory: Annotated[
        Path | None,
        typer.Option(
            "--ansible-inventory",
            help="Nodes from this Ansible inventory too (YAML read directly; other formats "
            "through ansible-inventory).",
        ),
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Only this group of the Ansible inventory.")
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the figures' data as one JSON document.")
    ] = False,
) -> ExitStatus:
    """
    A self-contained HTML report: latency against load per node, the split, the plan's cost.
    """
    # The CLI's own helpers, so that the store, the load and the output are the same as
    # optimize's and plan's (imported here: capplan.cli imports this module).
    from capplan.cli import _db_path, _observed_peak, _positive, _print_json, _stderr
    from capplan.inventory import effective_slo, load_inventory, load_profile
    from capplan.plan.fleet import METHODS
    from capplan.plan.forecast import growth_forecast, parse_growth
    from capplan.planfile import load_plan
    from capplan.report.build import build_report
    from capplan.samples import format_time, parse_time
    from capplan.store import Store

    if method not in METHODS:
        raise InputError(f"unknown method {method!r}", key="--method", hint=" | ".join(METHODS))
    if load is not None:
        _positive(load, "--load")
    now = time.time() if at is None else parse_time(at).timestamp()
    rate = parse_growth(growth) if growth is not None else 0.0
    inv = load_inventory(inventory, ansible=ansible_inventory, group=group)
    prof = load_profile(profile or inv.profile, relative_to=inventory.parent)
    slo = effective_slo(None, inv.slo, prof.slo)
    shares: dict[str, float] | None = None
    label = None
    if before is not None:
        earlier = load_plan(before)
        shares = {n.node: n.share for n in earlier.nodes if n.state == "active"}
        if not any(shares.get(n.name, 0.0) > 0 for n in inv.nodes):
            raise InputError(
                "the plan gives no share to any node of the inventory",
                file=str(before),
                key="nodes",
            )
        label = f"before: the shares of {before}"
    with Store.open(_db_path(db), create=False) as store:
        windows = {n.name: list(store.windows(n.name)) for n in inv.nodes}
    load_rps = load if load is not None else inv.load_rps or _observed_peak(windows)
    if not load_rps > 0:
        raise InputError(
            "no load to report on: the windows carry no requests",
            file=str(inventory),
            key="load_rps",
            hint="give --load RPS or load_rps in the inventory",
        )
    forecast = growth_forecast(load_rps, rate, horizon, now=now)
    report = build_report(
        inventory=inv,
        inventory_name=str(inventory),
        profile=prof,
        slo=slo,
        windows=windows,
        load_rps=load_rps,
        forecast=forecast,
        as_of=format_time(datetime.fromtimestamp(now, UTC)),
        before=shares,
        before_label=label,
        method=method,
    )
    try:
        from capplan.report.figures import make_figures, to_png, to_svg
    except ImportError as exc:  # matplotlib missing from this installation
        raise MissingToolError(
            f"capplan report draws with matplotlib, which cannot be imported ({exc}): "
            "install it with `pip install matplotlib`"
        ) from None
    from capplan.files import write_atomic
    from capplan.report.data import to_document
    from capplan.report.html import render_html

    figures = make_figures(report.data)
    written: list[Path] = []
    if output is not None or png is None:
        page = output if output is not None else DEFAULT_OUTPUT
        svgs = {fid: to_svg(fig, f"fig{i}") for i, (fid, fig) in enumerate(figures, start=1)}
        write_atomic(page, render_html(report.data, svgs))
        written.append(page)
    if png is not None:
        png.mkdir(parents=True, exist_ok=True)
        for fid, fig in figures:
            if not _FILE_NAME.fullmatch(fid):  # node names are checked on load; be sure
                raise InputError(f"{fid!r} cannot name a file", key="--png")
            path = png / f"{fid}.png"
            _write_bytes(path, to_png(fig))
            written.append(path)
    failed = [f for f in report.fits if not f.success]
    if json_:
        document = to_document(report.data)
        document["files"] = [str(p) for p in written]
        _print_json(document)
    else:
        err = _stderr()
        for note in report.data.notes:
            if note.startswith(("split: not shown", "capacity plan: not shown")):
                err.print(f"capplan: warning: {note}", markup=False)
        for f in failed:
            err.print(f"capplan: {f.node}: {f.message}", markup=False)
        for path in written:
            err.print(f"wrote {path}", markup=False)
    if not failed:
        return ExitStatus.OK
    return ExitStatus.PARTIAL if len(failed) < len(report.fits) else ExitStatus.FAILURE
