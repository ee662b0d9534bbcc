"""
The report page: one self-contained HTML file (pure: figure data and SVGs in, text out).

Everything is inline — the CSS, each figure's SVG and a few lines of script — and the page's
Content-Security-Policy forbids fetching anything (``default-src 'none'``; the one script is
allowed by its hash), so it views the same with no network and a browser would refuse, and
report in its console, any reference to the outside.  Every string from the user's files
(cluster, inventory path, node and kind names, notes) is escaped by Jinja2's autoescape; the
SVGs come from matplotlib, which escapes the text it writes.

The script checks that every figure holds its plot and sets ``<body data-ready="1">`` and
``data-figures`` (what the headless-browser test reads); a figure without its plot is an
error in the console.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping
from functools import cache

import jinja2
from markupsafe import Markup

from capplan import __version__
from capplan.report.data import ReportData

__all__ = ["SCRIPT", "render_html", "script_hash"]

#: The page's one script (its hash is in the page's Content-Security-Policy).
SCRIPT = """
(function () {
  "use strict";
  var body = document.body;
  var figures = document.querySelectorAll("figure[data-figure]");
  var missing = [];
  figures.forEach(function (figure) {
    if (!figure.querySelector("svg")) {
      missing.push(figure.getAttribute("data-figure"));
    }
  });
  body.setAttribute("data-figures", String(figures.length));
  var expected = Number(body.getAttribute("data-expected"));
  if (missing.length || figures.length !== expected) {
    console.error("capplan report: " + figures.length + " of " + expected +
                  " figures; without a plot: " + (missing.join(", ") || "none"));
    body.setAttribute("data-ready", "0");
  } else {
    body.setAttribute("data-ready", "1");
  }
})();
"""


def script_hash() -> str:
    """
    The CSP source that allows ``SCRIPT``: ``'sha256-…'``.
    """
    digest = hashlib.sha256(SCRIPT.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _num(value: float | None, digits: int = 4) -> str:
    """
    A number for a table: ``digits`` significant digits, ``—`` when unknown, ``∞`` when
    unbounded.
    """
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞"
    if math.isnan(value):
        return "—"
    return f"{value:.{digits}g}"


def _share(value: float) -> str:
    return f"{value:.1%}"


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("capplan.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = _num
    env.filters["share"] = _share
    return env


#: How the report says the windows were read, by the inventory's ``arrivals``.
ARRIVALS_TEXT = {
    "poisson": "Poisson traffic, each node on its own",
    "round_robin": "measured behind round robin",
    "least_connections": "measured behind least connections, each waiting request at its node",
    "shortest_expected_delay": "measured behind least connections, the pool's one queue",
}


def render_html(data: ReportData, svgs: Mapping[str, str]) -> str:
    """
    The report page.

    Args:
        data: The report's data (``capplan.report.build.build_report``).
        svgs: Each figure's inline SVG by figure id (``capplan.report.figures.figure_svgs``);
            exactly the ids of ``data.figure_ids``.

    Returns:
        The page's HTML.
    """
    ids = list(data.figure_ids)
    if sorted(ids) != sorted(svgs):
        raise ValueError(f"svgs must hold exactly the figures {ids}: got {sorted(svgs)}")
    template = _environment().get_template("report.html.j2")
    return template.render(
        d=data,
        arrivals_text=ARRIVALS_TEXT,
        svgs={k: Markup(v) for k, v in svgs.items()},  # matplotlib's own SVG, text escaped
        script=Markup(SCRIPT),  # a constant
        csp_script=script_hash(),
        version=__version__,
    )
