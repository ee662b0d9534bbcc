"""
A pool fitted in batches over worker processes gives exactly the answers of one batch.
"""

from __future__ import annotations

import pytest

import capplan.models.parallel as parallel
from capplan.models.fit import NodeFit, NodeInput, SLOTarget, fit_nodes
from capplan.models.queueing import Station
from tests.models.test_fit import SPREAD, synthetic

SLO = SLOTarget(percentile=99, latency_ms=150)


def pool() -> list[NodeInput]:
    """Seven unequal nodes, one with its slot count known and one with too few windows."""
    stations = [
        Station(servers=c, service_time=s, scv=v)
        for c, s, v in [(1, 0.02, 1.0), (2, 0.03, 0.3), (4, 0.025, 0.5), (8, 0.02, 1.2)]
    ]
    nodes = [NodeInput(f"n{i}", synthetic(st, SPREAD, seed=i + 1)) for i, st in enumerate(stations)]
    nodes.append(NodeInput("known", synthetic(stations[2], SPREAD, seed=9), workers=4))
    nodes.append(NodeInput("short", synthetic(stations[1], SPREAD[:3], seed=5)))
    nodes.append(NodeInput("again", synthetic(stations[3], SPREAD, seed=11)))
    return nodes


def same(a: list[NodeFit], b: list[NodeFit]) -> None:
    """The fits are equal field by field, floats to the last digit (nan included)."""
    assert [f.node for f in a] == [f.node for f in b]
    for x, y in zip(a, b, strict=True):
        assert repr(x) == repr(y), x.node
        for cx, cy in zip(x.candidates, y.candidates, strict=True):
            assert (cx.residuals is None) == (cy.residuals is None)
            if cx.residuals is not None:
                assert cx.residuals.tobytes() == cy.residuals.tobytes(), (x.node, cx.model)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "BATCH_NODES", 3)


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("processes", [1, 2])
def test_batches_give_the_one_batch_answers(processes: int) -> None:
    """Three batches (3, 3, 1 nodes), in this process or in two workers: fit_nodes' answers."""
    nodes = pool()
    seen: list[tuple[int, int]] = []
    got = parallel.fit_in_batches(
        nodes, SLO, processes=processes, progress=lambda d, n: seen.append((d, n))
    )
    same(got, fit_nodes(nodes, SLO))
    assert not got[5].success  # "short": too few windows, reported in its place
    assert sorted(seen) == seen
    assert {n for _, n in seen} == {7}
    assert seen[-1] == (7, 7)
    assert sorted(d for d, _ in seen) == sorted({d for d, _ in seen})  # one call per batch
    assert len(seen) == 3


@pytest.mark.usefixtures("small_batches")
def test_worker_error_reaches_the_caller() -> None:
    """A bad argument raises in the caller, as fit_nodes would, not a broken pool."""
    with pytest.raises(ValueError, match="model must be"):
        parallel.fit_in_batches(pool(), SLO, model="nope", processes=2)


def test_one_batch_stays_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool of one batch is fitted here: no worker process is started for it."""

    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a process pool was started for one batch")

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", no_pool)
    nodes = pool()[:2]
    same(parallel.fit_in_batches(nodes, SLO, processes=4), fit_nodes(nodes, SLO))
