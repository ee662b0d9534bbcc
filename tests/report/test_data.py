"""
Golden checks on the data behind each figure of the example's report: every number a figure
draws is the one the fit, the optimizer or the planner computed (not pixel goldens).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from capplan.inventory import SLO
from capplan.models.fit import SLOTarget, fit_node
from capplan.report.build import Report, build_report
from capplan.report.data import GRID_POINTS, node_figure, split_figure, to_document
from tests.report.conftest import GROWTH, HORIZON, LOAD, SAMPLES, Example

SLO_MS = 150.0  # the example inventory's slo.latency_ms (p99)


def csv_rows(node: str) -> list[dict[str, str]]:
    with SAMPLES.open(encoding="utf-8", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["node"] == node]


class TestNodeFigures:
    def test_one_figure_per_node_in_inventory_order(self, report: Report, example: Example):
        """The report has a figure per inventory node, with its id, in inventory order."""
        assert [n.name for n in example.inventory.nodes] == [n.node for n in report.data.nodes]
        assert (
            "node-web-1",
            "node-web-2",
            "node-web-3",
            "node-web-4",
            "split",
            "plan",
        ) == report.data.figure_ids

    def test_points_are_the_windows(self, report: Report) -> None:
        """Each point is one window of samples.csv: requests / seconds against its p99."""
        for figure in report.data.nodes:
            rows = [r for r in csv_rows(figure.node) if int(r["requests"]) > 0 and r["p99_ms"]]
            expected = sorted(
                (int(r["requests"]) / float(r["seconds"]), float(r["p99_ms"])) for r in rows
            )
            assert "p99" == figure.stat
            assert len(expected) == len(figure.points) == figure.windows
            np.testing.assert_allclose(np.array(expected), np.array(sorted(figure.points)), 1e-12)
        first = csv_rows("web-1")[0]
        assert (2027 / 60, 55.246) == pytest.approx(report.data.nodes[0].points[0])
        assert (int(first["requests"]) / 60, float(first["p99_ms"])) == pytest.approx(
            report.data.nodes[0].points[0]
        )

    def test_slo_line_is_the_slo_latency(self, report: Report) -> None:
        """The SLO line of every node figure is the SLO's latency, labelled with its percentile."""
        for figure in report.data.nodes:
            assert SLO_MS == figure.slo_ms
            assert "p99" == figure.slo_stat
        assert SLO_MS == report.data.slo_ms

    def test_capacity_marker_is_the_fit(self, report: Report) -> None:
        """The capacity marker and its band are the fit's capacity and 95% interval, exactly."""
        for figure, fit in zip(report.data.nodes, report.fits, strict=True):
            assert fit.success
            assert fit.capacity_rps == figure.capacity_rps
            assert fit.capacity_interval == figure.capacity_interval
            assert fit.model == figure.model
            assert fit.max_observed_rps == figure.max_observed_rps
            low, high = figure.capacity_interval or (math.nan, math.nan)
            assert low <= figure.capacity_rps <= (high if high is not None else math.inf)

    def test_chosen_curve_meets_the_slo_at_the_capacity(self, report: Report) -> None:
        """
        The chosen model's p99 is the SLO latency at the capacity (no window breaks the error
        bound here), and the sampled curve crosses the SLO line in the grid cell holding it.
        """
        for figure, fit in zip(report.data.nodes, report.fits, strict=True):
            assert fit.curve is not None
            at_capacity = float(fit.curve.quantile(np.array([fit.capacity_rps]), 0.99)[0])
            assert SLO_MS == pytest.approx(at_capacity * 1e3, rel=1e-4)
            chosen = figure.chosen
            assert chosen is not None
            assert fit.model == chosen.model
            step = chosen.rate_rps[1] - chosen.rate_rps[0]
            crossing = next(
                r
                for r, y in zip(chosen.rate_rps, chosen.latency_ms, strict=True)
                if y is None or y > SLO_MS
            )
            assert fit.capacity_rps <= crossing < fit.capacity_rps + step

    def test_curves_sample_each_candidate(self, report: Report) -> None:
        """Every fitted candidate has a curve; exactly one is chosen; the curve is its model's."""
        for figure, fit in zip(report.data.nodes, report.fits, strict=True):
            fitted = [c for c in fit.candidates if c.success and c.curve is not None]
            assert [c.model for c in fitted] == [c.model for c in figure.curves]
            assert 1 == sum(c.chosen for c in figure.curves)
            for curve, candidate in zip(figure.curves, fitted, strict=True):
                assert GRID_POINTS == len(curve.rate_rps) == len(curve.latency_ms)
                assert 0.0 == curve.rate_rps[0]
                assert figure.x_max == pytest.approx(curve.rate_rps[-1])
                assert candidate.curve is not None
                rate = curve.rate_rps[GRID_POINTS // 4]
                expected = float(candidate.curve.quantile(np.array([rate]), 0.99)[0]) * 1e3
                assert expected == pytest.approx(curve.latency_ms[GRID_POINTS // 4])

    def test_curves_are_monotone(self, report: Report) -> None:
        """
        Latency never falls as load rises, and once unbounded (None) it stays so — for every
        chosen curve and every queueing-based one.  (A USL fit with a negative σ predicts a
        slight fall at low load, superlinear scaling; the figure shows it as fitted.)
        """
        checked = 0
        for figure in report.data.nodes:
            for curve in figure.curves:
                finite = [y for y in curve.latency_ms if y is not None]
                assert finite, (figure.node, curve.model)
                assert curve.latency_ms[: len(finite)] == tuple(finite), (figure.node, curve.model)
                assert all(y > 0 for y in finite)
                if curve.chosen or curve.model != "usl":
                    pairs = itertools.pairwise(finite)
                    assert all(b >= a * (1 - 1e-9) for a, b in pairs), (figure.node, curve.model)
                    checked += 1
        assert checked >= 12

    def test_axes_show_what_matters(self, report: Report) -> None:
        """The x range holds the capacity and every window; the y range holds the SLO line."""
        for figure in report.data.nodes:
            assert figure.capacity_rps is not None
            assert figure.x_max > max(figure.capacity_rps, figure.max_observed_rps)
            assert figure.y_max >= 1.5 * SLO_MS
            assert figure.y_max <= 4 * SLO_MS

    def test_failed_node(self, example: Example) -> None:
        """A node whose fit fails still gets its points, and no curve or capacity."""
        windows = example.windows["web-1"][:3]
        target = SLOTarget(99, SLO_MS, 0.001)
        fit = fit_node("web-1", windows, target)
        figure = node_figure(fit, windows, target)
        assert not figure.success
        assert 3 == len(figure.points)
        assert () == figure.curves
        assert figure.chosen is None
        assert figure.capacity_rps is None
        assert figure.capacity_interval is None
        assert "at least 4" in figure.message

    def test_mean_points_when_no_percentile(self, example: Example) -> None:
        """Windows without p99 are drawn by their mean, with the p99 curve the capacity uses."""
        windows = [replace(w, p99_ms=None) for w in example.windows["web-3"]]
        target = SLOTarget(99, SLO_MS, 0.001)
        figure = node_figure(fit_node("web-3", windows, target), windows, target)
        assert "mean" == figure.stat
        expected = sorted(w.mean_ms for w in windows if w.mean_ms is not None)
        assert expected == pytest.approx(sorted(y for _, y in figure.points), rel=1e-12)
        assert figure.slo_curve is not None
        assert "p99" == figure.slo_curve.stat
        assert all(c.stat == "mean" for c in figure.curves)


class TestSplit:
    def test_after_is_the_plan(self, report: Report) -> None:
        """After: each node's share and rate are the plan's; the shares sum to 1."""
        split = report.data.split
        assert split is not None
        assert report.optimized is not None
        plan = report.optimized.plan
        assert LOAD == split.load_rps
        assert [n.share for n in plan.nodes] == [n.after_share for n in split.nodes]
        assert [n.rate_rps for n in plan.nodes] == [n.after_rps for n in split.nodes]
        assert 1.0 == pytest.approx(sum(n.after_share for n in split.nodes), abs=1e-5)
        assert LOAD == pytest.approx(sum(n.after_rps for n in split.nodes), rel=1e-5)
        assert "percentile" == split.objective

    def test_before_is_round_robin(self, report: Report) -> None:
        """Before: an unweighted round robin's equal shares of the same load."""
        split = report.data.split
        assert split is not None
        assert [0.25] * 4 == [n.before_share for n in split.nodes]
        assert [LOAD / 4] * 4 == [n.before_rps for n in split.nodes]
        assert "round robin" in split.before_label

    def test_pool_latency_after_is_the_plans_prediction(self, report: Report) -> None:
        """The pool's p99 after is what the plan predicts (the same curves, the same split)."""
        split = report.data.split
        assert split is not None
        assert report.optimized is not None
        predicted = report.optimized.plan.pool.predicted["p99_ms"]
        assert split.after_pool_ms == pytest.approx(predicted, rel=1e-3)
        assert split.after_pool_ms is not None
        assert split.after_pool_ms <= SLO_MS
        for node in split.nodes:
            assert node.after_ms is not None
            assert node.after_ms <= SLO_MS * (1 + 1e-6)

    def test_round_robin_overloads_the_small_node(self, report: Report) -> None:
        """
        150 rps each is past web-1's saturation (2 slots × 1/20 ms = 100 rps): its latency and
        the pool's are unbounded, and the note names it.
        """
        split = report.data.split
        assert split is not None
        web1 = split.nodes[0]
        fit = report.fits[0]
        assert 100.0 == pytest.approx(
            fit.params["servers"] / (fit.params["service_ms"] * 1e-3), rel=0.02
        )
        assert web1.before_ms is None
        assert split.before_pool_ms is None
        assert "web-1" in split.before_note
        assert [s.capacity_rps for s in split.nodes] == [f.capacity_rps for f in report.fits]
        headroom = 0.2  # the balanced profile's
        for node in split.nodes:
            assert node.capacity_rps is not None
            assert node.cap_rps is not None
            assert node.capacity_rps * (1 - headroom) == pytest.approx(node.cap_rps)

    def test_given_shares_are_renormalised(self, report: Report) -> None:
        """Shares given for before (an earlier plan's) are scaled to sum to 1; missing is 0."""
        assert report.optimized is not None
        split = split_figure(
            report.fits,
            report.optimized,
            SLO(99, SLO_MS, 0.001),
            0.2,
            before={"web-2": 7.0, "web-3": 13.0, "elsewhere": 5.0},
            before_label="before: last week's plan",
        )
        assert [0.0, 0.35, 0.65, 0.0] == pytest.approx([n.before_share for n in split.nodes])
        assert [0.0, 210.0, 390.0, 0.0] == pytest.approx([n.before_rps for n in split.nodes])
        assert "before: last week's plan" == split.before_label
        # web-3 at 390 rps is past its capacity (380) but short of its saturation (8 slots /
        # 20 ms = 400 rps): a finite p99 above the SLO; web-2 at 210 is past its 200
        assert split.nodes[2].before_ms is not None
        assert split.nodes[2].before_ms > SLO_MS
        assert split.nodes[1].before_ms is None
        assert split.before_pool_ms is None
        assert "web-2" in split.before_note
        with pytest.raises(ValueError, match="before"):
            split_figure(report.fits, report.optimized, SLO(99, SLO_MS, 0.001), 0.2, before={})


class TestPlan:
    def test_months_are_the_plans(self, report: Report) -> None:
        """Per month: demand grows 6%/month from 600 rps; cost and fleet are the planner's."""
        plan = report.data.plan
        assert plan is not None
        assert report.capacity is not None
        fleet = report.capacity.fleet
        assert fleet is not None
        assert HORIZON == len(plan.months)
        for month, planned in zip(plan.months, fleet.months, strict=True):
            expected = LOAD * (1 + GROWTH) ** month.month
            assert expected == pytest.approx(month.load_median)
            assert month.load_low == month.load_median == month.load_high  # growth: no band
            assert planned.cost_per_month == month.cost_per_month
            assert planned.usable_rps == month.usable_rps
            assert month.usable_rps is not None
            assert month.usable_rps >= month.load_high - 1e-6
            assert sum(planned.counts.values()) == month.nodes
        assert fleet.total_cost == plan.total_cost
        assert plan.total_cost == pytest.approx(
            sum(m.cost_per_month or 0.0 for m in plan.months), rel=1e-9
        )
        assert "2026-11-23" == plan.months[0].start
        assert report.capacity.pool.usable_rps == plan.today_usable_rps

    def test_no_forecast_no_plan(self, report: Report, example: Example) -> None:
        """Without a forecast the plan section (and its figure) is left out."""
        data = build_report(
            inventory=example.inventory,
            inventory_name="inventory.yaml",
            profile=example.profile,
            slo=SLO(99, SLO_MS, 0.001),
            windows={"web-3": example.windows["web-3"]},
            load_rps=200.0,
            forecast=None,
            as_of="2026-11-23T00:00:00Z",
        ).data
        assert data.plan is None
        assert "plan" not in data.figure_ids
        assert [False, False, True, False] == [n.success for n in data.nodes]
        assert data.split is not None
        assert any("web-1: gets no traffic" in note for note in data.notes)


class TestDocument:
    def test_json_document(self, report: Report) -> None:
        """The document is strict JSON (no NaN) holding every figure's data."""
        document = to_document(report.data)
        text = json.dumps(document, allow_nan=False)
        assert list(report.data.figure_ids) == document["figures"]
        assert {"cluster", "slo", "load_rps", "nodes", "split", "plan", "notes"} <= set(document)
        assert "poisson" == document["arrivals"]  # the example's inventory says so
        node = json.loads(text)["nodes"][0]
        assert report.fits[0].capacity_rps == node["capacity_rps"]
        assert list(report.fits[0].capacity_interval) == node["capacity_interval"]
        assert SLO_MS == node["slo_ms"]
        assert {"model", "stat", "chosen", "rate_rps", "latency_ms"} == set(node["curves"][0])
