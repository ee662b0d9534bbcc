"""
The batched fitters give the answers of the one-node fitters, and nodes do not affect each other.
"""

from __future__ import annotations

import numpy as np
import pytest

from capplan.models.demand import fit_demand
from capplan.models.empirical import fit_hyperbolic
from capplan.models.fit import NodeInput, SLOTarget, fit_node, fit_nodes
from capplan.models.queueing import Station
from capplan.models.scaled_fit import fit_demand_many, fit_hyperbolic_many, fit_usl_many
from capplan.models.usl import fit_usl
from tests.conftest import REFERENCE
from tests.models.test_fit import SPREAD, synthetic


def pad(rows: list[np.ndarray], fill: float = np.nan) -> np.ndarray:
    """Rows of different lengths as one padded array."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), fill)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def reference(name: str, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(REFERENCE / name, delimiter=",", skiprows=1)[:rows]
    return data[:, 0], data[:, 1]


class TestUSLMany:
    def test_same_as_fit_usl_on_published_sets(self) -> None:
        """σ, κ, λ and their standard errors equal fit_usl's on the R usl package's data sets."""
        sets = [
            reference("usl-raytracer.csv", 6),
            reference("usl-raytracer.csv"),  # optimum on the face κ = 0
            reference("usl-synthetic.csv"),
        ]
        many = fit_usl_many(
            pad([s[0] for s in sets], 1.0),
            pad([s[1] for s in sets], 0.0),
            pad([np.ones(len(s[0])) for s in sets], 0.0),
        )
        for i, (load, x) in enumerate(sets):
            one = fit_usl(load, x)
            expected = np.array([one.sigma, one.kappa, one.lam])
            np.testing.assert_allclose(many.theta[i], expected, rtol=1e-5, atol=1e-9)
            se = [one.stderr[k] for k in ("sigma", "kappa", "lambda")]
            np.testing.assert_allclose(np.sqrt(np.diag(many.covariance[i])), se, rtol=1e-3)
        assert 0.0 == many.theta[1, 1]  # κ exactly on its bound, as fit_usl reports

    def test_too_few_points_fail_alone(self) -> None:
        """A node with 3 points fails with a reason; its neighbour is fitted."""
        load, x = reference("usl-synthetic.csv")
        many = fit_usl_many(
            pad([load, load[:3]], 1.0),
            pad([x, x[:3]], 0.0),
            pad([np.ones(len(load)), np.ones(3)], 0.0),
        )
        assert [True, False] == list(many.success)
        assert "needs at least 4 windows" in many.messages[1]


class TestOtherModelsMany:
    def test_hyperbolic_same_as_fit_hyperbolic(self) -> None:
        """a, b and cap equal fit_hyperbolic's on noisy synthetic curves."""
        rng = np.random.default_rng(7)
        rates, ys = [], []
        for a, b, cap in ((0.02, 0.5, 100.0), (0.01, 2.0, 400.0), (0.05, 0.1, 50.0)):
            r = np.sort(rng.uniform(0.1, 0.9, 40)) * cap
            rates.append(r)
            ys.append((a + b / (cap - r)) * np.exp(rng.normal(0, 0.03, r.size)))
        many = fit_hyperbolic_many(pad(rates, 0.0), pad(ys), pad([np.ones(40)] * 3, 0.0))
        for i in range(3):
            one = fit_hyperbolic(rates[i], ys[i])
            np.testing.assert_allclose(many.theta[i], [one.a, one.b, one.cap], rtol=1e-4)

    def test_demand_same_as_fit_demand(self) -> None:
        """D and its standard error equal fit_demand's."""
        rng = np.random.default_rng(3)
        x = rng.uniform(10, 100, 30)
        u = 0.004 * x + rng.normal(0, 0.01, 30)
        w = rng.uniform(100, 1000, 30)
        one = fit_demand(x, np.clip(u, 0, 1), weights=w)
        many = fit_demand_many(
            x[None], np.clip(u, 0, 1)[None], w[None], np.full((1, 30), 0.02), np.ones((1, 30)), 0.8
        )
        assert one.demand == pytest.approx(float(many.theta[0, 0]), rel=1e-12)
        assert one.stderr == pytest.approx(float(np.sqrt(many.covariance[0, 0, 0])), rel=1e-12)


class TestFitNodes:
    def test_batch_equals_one_at_a_time(self) -> None:
        """Fitting nodes together gives each node the fit it gets alone."""
        slo = SLOTarget(99, 150, 0.001)
        stations = [
            Station(2, 0.02, 0.25),
            Station(4, 0.03, 1.0),
            Station(8, 0.015, 0.5),
        ]
        windows = [synthetic(st, SPREAD, seed=i) for i, st in enumerate(stations)]
        workers = [None, 4, None]
        together = fit_nodes(
            [
                NodeInput(f"n{i}", w, k)
                for i, (w, k) in enumerate(zip(windows, workers, strict=True))
            ],
            slo,
        )
        for i, (w, k) in enumerate(zip(windows, workers, strict=True)):
            alone = fit_node(f"n{i}", w, slo, workers=k)
            assert alone.model == together[i].model
            assert alone.params == pytest.approx(together[i].params, rel=1e-6)
            assert alone.capacity_rps == pytest.approx(together[i].capacity_rps, rel=1e-6)

    def test_a_failing_node_does_not_take_others_down(self) -> None:
        """A node with too few windows fails alone; the others are fitted."""
        slo = SLOTarget(99, 150, 0.001)
        good = synthetic(Station(4, 0.02, 0.5), SPREAD)
        fits = fit_nodes(
            [NodeInput("a", good), NodeInput("b", good[:2]), NodeInput("c", good)], slo
        )
        assert [True, False, True] == [f.success for f in fits]
        assert fits[0].capacity_rps == fits[2].capacity_rps
