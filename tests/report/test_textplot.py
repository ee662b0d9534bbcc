"""
The terminal's text plot of one node (`capplan fit --node N`): its size, and that the SLO line,
the capacity marker, the curve and the points sit where the figure data puts them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from capplan.report.build import Report
from capplan.report.data import NodeFigure
from capplan.report.textplot import text_plot
from capplan.status import ExitStatus
from tests.conftest import CLI
from tests.report.conftest import INVENTORY

WIDTH, HEIGHT = 60, 15
LABEL = 8  # "   150 |"


def plot_rows(lines: list[str]) -> list[str]:
    """The plot area's rows, padded to the full width."""
    return [line[LABEL:].ljust(WIDTH) for line in lines[1 : 1 + HEIGHT]]


def row_of(figure: NodeFigure, y: float) -> int:
    return HEIGHT - 1 - round(y / figure.y_max * (HEIGHT - 1))


def column_of(figure: NodeFigure, x: float) -> int:
    return round(x / figure.x_max * (WIDTH - 1))


class TestTextPlot:
    def test_size(self, report: Report) -> None:
        """A title, 15 rows of 60 columns plus labels, an axis, its labels and a legend."""
        lines = text_plot(report.data.nodes[0])
        assert lines[0].startswith("web-1: mgc, latency (ms, p99) against load (rps)")
        assert all(len(line) <= LABEL + WIDTH for line in lines[1:])
        assert lines[1 + HEIGHT].startswith(" " * (LABEL - 1) + "+" + "-" * WIDTH)
        assert 1 + HEIGHT + 2 + 2 == len(lines)  # the legend takes two lines here
        assert all(line.isascii() for line in lines)

    def test_slo_line_and_capacity(self, report: Report) -> None:
        """The SLO's row is dashes labelled 150; the capacity's column is a bar, + on the SLO."""
        for figure in report.data.nodes:
            lines = text_plot(figure)
            rows = plot_rows(lines)
            slo = row_of(figure, figure.slo_ms)
            assert lines[1 + slo].startswith("   150 |")
            assert set(rows[slo]) <= set("-+|*o^")  # drawn across; the curve may cover it
            assert "-" in rows[slo]
            assert figure.capacity_rps is not None
            col = column_of(figure, figure.capacity_rps)
            assert {"|", "+", "*", "o", "^"} >= {row[col] for row in rows}
            assert sum(row[col] in "|+" for row in rows) >= HEIGHT // 2
            assert f"| capacity {figure.capacity_rps:.4g} rps" in "\n".join(lines)

    def test_curve_and_points(self, report: Report) -> None:
        """The chosen curve starts at its value at no load; the windows are drawn."""
        figure = report.data.nodes[0]
        chosen = figure.chosen
        assert chosen is not None
        assert chosen.latency_ms[0] is not None
        rows = plot_rows(text_plot(figure))
        assert "*" == rows[row_of(figure, chosen.latency_ms[0])][0]
        assert sum(row.count("o") for row in rows) >= 5
        assert "^ " not in "\n".join(text_plot(figure))  # web-1: every window is on the plot

    def test_points_above_the_top(self, report: Report) -> None:
        """Windows above the top are drawn as ^ on the top row and counted in the legend."""
        figure = replace(report.data.nodes[0], points=((10.0, 10_000.0), (20.0, 50.0)))
        lines = text_plot(figure)
        assert "^" == plot_rows(lines)[0][column_of(figure, 10.0)]
        assert "^ 1 above" in lines[-2] + lines[-1]

    def test_no_model(self, report: Report) -> None:
        """A node with no model shows its points and the SLO, and says so."""
        figure = replace(
            report.data.nodes[0],
            curves=(),
            model=None,
            capacity_rps=None,
            capacity_interval=None,
            success=False,
        )
        lines = text_plot(figure)
        assert lines[0].startswith("web-1: no model")
        assert "*" not in "".join(plot_rows(lines))
        assert "capacity" not in lines[-1]

    def test_open_interval(self, report: Report) -> None:
        """An interval the data cannot bound above reads as open, in the plot and the figure."""
        from matplotlib.figure import Figure

        from capplan.report.figures import draw_node

        figure = replace(report.data.nodes[0], capacity_interval=(70.0, None))
        assert "(95%: 70-open)" in "\n".join(text_plot(figure))
        drawn = Figure()
        draw_node(drawn, figure)
        [axes] = drawn.axes
        assert any("70–open" in text.get_text() for text in axes.get_legend().get_texts())

    def test_bad_size(self, report: Report) -> None:
        """A plot too small to read is refused, naming both sizes."""
        with pytest.raises(ValueError, match="width"):
            text_plot(report.data.nodes[0], width=5)


class TestFitCommand:
    def test_fit_one_node_prints_the_plot(self, cli: CLI, store: Path) -> None:
        """`capplan fit --node web-2` prints the table, then the node's text plot."""
        result = cli("fit", "-i", INVENTORY, "--db", store, "--node", "web-2")
        assert ExitStatus.OK == result.status, result.stderr
        assert "web-2: mgc, latency (ms, p99) against load (rps)" in result.stdout
        assert "   150 |" in result.stdout
        assert "| capacity 179 rps" in result.stdout

    def test_no_plot_for_several_nodes_or_json(self, cli: CLI, store: Path) -> None:
        """Two nodes, or --json: no plot (JSON stays one document)."""
        two = cli("fit", "-i", INVENTORY, "--db", store, "--node", "web-1", "--node", "web-2")
        assert ExitStatus.OK == two.status
        assert "against load" not in two.stdout
        one = cli("fit", "-i", INVENTORY, "--db", store, "--node", "web-1", "--json")
        assert ExitStatus.OK == one.status
        assert "web-1" == one.json["nodes"][0]["node"]
