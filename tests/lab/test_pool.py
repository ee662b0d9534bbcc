"""
The lab's pool files, and the loopback-only rule every part of the lab keeps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.lab.loadgen import parse_target, run_load
from bench.lab.node import ServiceTimes, start_pool
from bench.lab.pool import (
    DEFAULT_POOL,
    LARGE_POOL,
    NodeSpec,
    Pool,
    PoolError,
    load_pool,
    parse_pool,
    parse_services,
    require_loopback,
)
from tests.lab.conftest import run_async

NODE = "{name: a, address: %s, port: 8080, slots: 2, service_ms: 20}"


def _pool(node: str, extra: str = "") -> str:
    return f"name: p\nseed: 1\n{extra}nodes:\n  - {node}\n"


def test_default_pool() -> None:
    pool = load_pool(DEFAULT_POOL)
    assert [n.slots for n in pool.nodes] == [2, 4, 8, 8]
    assert {n.service_ms for n in pool.nodes} == {20.0}
    assert [n.capacity_rps for n in pool.nodes] == [100.0, 200.0, 400.0, 400.0]
    assert [n.address for n in pool.nodes] == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    assert pool.service == "exp"
    assert pool.scv_of("n1") == 1.0
    assert pool.station("n3").max_rate == pytest.approx(400.0)


def test_large_pool() -> None:
    pool = load_pool(LARGE_POOL)
    assert 6 <= len(pool.nodes) <= 8
    assert len({n.service_ms for n in pool.nodes}) >= 3
    assert len({n.capacity_rps for n in pool.nodes}) == len(pool.nodes)
    assert pool.service == "lognormal"
    assert 0.3 <= pool.cv <= 0.5
    assert all(n.service_ms >= 20 for n in pool.nodes)


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "192.168.1.10",
        "172.16.0.1",
        "8.8.8.8",
        "128.0.0.1",
        "0.0.0.0",
        "::1",
        "example.org",
        "127.0.0.256",
    ],
)
def test_pool_refuses_a_non_loopback_address(address: str) -> None:
    with pytest.raises(PoolError, match=r"nodes\.0\.address"):
        parse_pool(_pool(NODE % f'"{address}"'))


def test_pool_checks_its_nodes() -> None:
    assert parse_pool(_pool(NODE % "127.9.8.7")).nodes[0].address == "127.9.8.7"
    with pytest.raises(PoolError, match="service_ms"):
        parse_pool(_pool("{name: a, address: 127.0.0.2, port: 1, slots: 1, service_ms: 10}"))
    with pytest.raises(PoolError, match="slots"):
        parse_pool(_pool("{name: a, address: 127.0.0.2, port: 1, slots: 0, service_ms: 20}"))
    with pytest.raises(PoolError, match="used twice"):
        parse_pool(_pool(NODE % "127.0.0.2" + "\n  - " + NODE % "127.0.0.3"))
    twin = "{name: b, address: 127.0.0.2, port: 8080, slots: 1, service_ms: 20}"
    with pytest.raises(PoolError, match=r"listen on 127\.0\.0\.2:8080"):
        parse_pool(_pool(NODE % "127.0.0.2" + "\n  - " + twin))
    with pytest.raises(PoolError, match="service"):
        parse_pool(_pool(NODE % "127.0.0.2", "service: gamma\n"))
    with pytest.raises(PoolError, match="colour: Extra inputs"):
        parse_pool(_pool(NODE % "127.0.0.2", "colour: blue\n"))
    mixed = parse_pool(
        _pool(
            "{name: a, address: 127.0.0.2, port: 1, slots: 1, service_ms: 20, service: fixed}",
            "service: lognormal\ncv: 0.5\n",
        )
    )
    assert mixed.service_of("a") == "fixed"
    assert mixed.scv_of("a") == 0.0


def test_require_loopback() -> None:
    assert require_loopback("localhost") == "127.0.0.1"
    assert require_loopback("127.0.0.2") == "127.0.0.2"
    for host in ("10.1.2.3", "::1", "example.org", "", "1.1.1.1"):
        with pytest.raises(ValueError, match=r"loopback|IPv4"):
            require_loopback(host)


def test_generator_refuses_a_non_loopback_target() -> None:
    with pytest.raises(ValueError, match="loopback"):
        parse_target("10.0.0.1:80")
    with pytest.raises(ValueError, match="loopback"):
        run_load(("192.168.0.1", 80), 1.0, 1.0, warmup_s=0.0)
    assert parse_target("127.0.0.2:8080") == ("127.0.0.2", 8080)


def test_node_server_refuses_a_non_loopback_address(tmp_path: object) -> None:
    """
    A pool built around the validation still cannot make a node bind outside loopback.
    """
    node = NodeSpec.model_construct(
        name="x", address="10.0.0.1", port=0, slots=1, service_ms=20.0, service=None, cv=None
    )
    pool = Pool.model_construct(name="p", service="exp", cv=0.4, seed=0, nodes=[node])
    with pytest.raises(ValueError, match="loopback"):
        run_async(start_pool(pool, str(tmp_path)))


@pytest.mark.parametrize(
    ("kind", "cv", "scv"), [("exp", 1.0, 1.0), ("fixed", 0.4, 0.0), ("lognormal", 0.4, 0.16)]
)
def test_service_times(kind: str, cv: float, scv: float) -> None:
    times = ServiceTimes(kind, 0.025, cv=cv, seed=[3, 1])  # type: ignore[arg-type]
    draws = times.draw(200_000)
    assert draws.mean() == pytest.approx(0.025, rel=0.01)
    assert draws.var() / draws.mean() ** 2 == pytest.approx(scv, abs=0.02)
    again = ServiceTimes(kind, 0.025, cv=cv, seed=[3, 1])  # type: ignore[arg-type]
    assert [again.next() for _ in range(5000)] == draws[:5000].tolist()
    other = ServiceTimes(kind, 0.025, cv=cv, seed=[3, 2])  # type: ignore[arg-type]
    if kind != "fixed":
        assert not np.allclose(other.draw(10), draws[:10])
    assert math.isfinite(float(draws.max()))


def test_service_laws_are_parsed_and_checked() -> None:
    """--service: known laws in the order given, duplicates once; anything else is refused."""
    assert parse_services("fixed, exp,fixed") == ("fixed", "exp")
    with pytest.raises(ValueError, match="unknown gamma; choose among exp,fixed,lognormal"):
        parse_services("exp,gamma")
    with pytest.raises(ValueError, match="empty"):
        parse_services(" , ")
