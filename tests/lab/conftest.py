"""
The lab's test pool, served by one ``python -m bench.lab.node`` process for the session.

Nodes (all on loopback, every port free-picked):

* ``mm2`` — c = 2, exponential 20 ms: the M/M/c validation, and nothing else (its service-time
  sequence is replayed from its seed, so no other request may reach it);
* ``fixed1`` — c = 1, fixed 20 ms: the overhead of a request;
* ``logs`` — c = 4, lognormal 20 ms (cv 0.4): the access log read by capplan's parser;
* ``slow`` — c = 1, fixed 500 ms: timeouts and the generator's in-flight bound.

Set ``CAPPLAN_LAB_UVLOOP=0`` to run both the nodes and the generator on asyncio's own loop (what
a machine without uvloop does).
"""

from __future__ import annotations

import asyncio
import heapq
import os
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
import yaml

from bench.lab._loop import loop_factory
from bench.lab.node import NodeProcess, start_node_process
from bench.lab.pool import Pool

T = TypeVar("T")
FloatArray = npt.NDArray[np.float64]

UVLOOP = os.environ.get("CAPPLAN_LAB_UVLOOP", "1") != "0"
NODE_PROCESS_DEADLINE_S = 300.0  # the node process stops by itself then, whatever happens

TEST_POOL: dict[str, Any] = {
    "name": "test",
    "service": "exp",
    "seed": 11,
    "nodes": [
        {"name": "mm2", "address": "127.0.0.2", "port": 0, "slots": 2, "service_ms": 20},
        {
            "name": "fixed1",
            "address": "127.0.0.3",
            "port": 0,
            "slots": 1,
            "service_ms": 20,
            "service": "fixed",
        },
        {
            "name": "logs",
            "address": "127.0.0.4",
            "port": 0,
            "slots": 4,
            "service_ms": 20,
            "service": "lognormal",
            "cv": 0.4,
        },
        {
            "name": "slow",
            "address": "127.0.0.5",
            "port": 0,
            "slots": 1,
            "service_ms": 500,
            "service": "fixed",
        },
    ],
}


@dataclass
class Lab:
    """
    The running test pool.
    """

    pool: Pool
    process: NodeProcess
    log_dir: Path

    def address(self, node: str) -> tuple[str, int]:
        return self.process.addresses[node]


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """
    The test pool served by a node process; stopped by its PID (SIGTERM) at the end, which must
    leave exit status 0 and no PID file.
    """
    directory = tmp_path_factory.mktemp("lab")
    pool = Pool.model_validate(TEST_POOL)
    pool_file = directory / "pool.yaml"
    pool_file.write_text(yaml.safe_dump(TEST_POOL))
    process = start_node_process(
        pool_file, directory, duration_s=NODE_PROCESS_DEADLINE_S, uvloop=UVLOOP
    )
    assert process.pid_file.read_text().strip() == str(process.pid)
    try:
        yield Lab(pool, process, directory)
    finally:
        out = process.stop()
    assert process.process.returncode == 0, out
    assert not process.pid_file.exists()
    assert '"stopped": true' in out


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """
    Run a coroutine on the lab's event loop (uvloop unless ``CAPPLAN_LAB_UVLOOP=0``).
    """
    with asyncio.Runner(loop_factory=loop_factory(uvloop=UVLOOP)) as runner:
        return runner.run(coroutine)


def fcfs_waits(arrivals: FloatArray, services: FloatArray, slots: int) -> FloatArray:
    """
    The waits of an FCFS queue with ``slots`` servers, arrival by arrival (exact M/G/c).
    """
    free = [0.0] * slots
    waits = np.empty(len(arrivals))
    for i, (arrival, service) in enumerate(zip(arrivals.tolist(), services.tolist(), strict=True)):
        start = max(arrival, heapq.heappop(free))
        waits[i] = start - arrival
        heapq.heappush(free, start + service)
    return waits


def simulated_spread(
    *,
    rate: float,
    slots: int,
    service_s: float,
    duration_s: float,
    warmup_s: float,
    replications: int,
    seed: int,
) -> dict[str, float]:
    """
    The standard deviations, over ``replications`` simulated M/M/c runs as long as a lab run
    (Poisson arrivals for ``duration_s``, the first ``warmup_s`` left out), of the statistics a
    run estimates: P(wait), the mean wait and the mean response time (seconds).

    The replications run side by side (one numpy step per arrival), so a few hundred take well
    under a second.
    """
    rng = np.random.default_rng(seed)
    expected = rate * duration_s
    n = int(expected + 6 * np.sqrt(expected) + 10)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, (replications, n)), axis=1)
    services = rng.exponential(service_s, (replications, n))
    free = np.zeros((replications, slots))
    waits = np.empty((replications, n))
    rows = np.arange(replications)
    for j in range(n):
        k = free.argmin(axis=1)
        start = np.maximum(arrivals[:, j], free[rows, k])
        waits[:, j] = start - arrivals[:, j]
        free[rows, k] = start + services[:, j]
    measured = (arrivals >= warmup_s) & (arrivals < duration_s)
    count = measured.sum(axis=1)
    p_wait = ((waits > 0) & measured).sum(axis=1) / count
    mean_wait = (waits * measured).sum(axis=1) / count
    mean_response = ((waits + services) * measured).sum(axis=1) / count
    return {
        "p_wait": float(p_wait.std(ddof=1)),
        "mean_wait_s": float(mean_wait.std(ddof=1)),
        "mean_response_s": float(mean_response.std(ddof=1)),
    }
