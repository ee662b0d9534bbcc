"""
The lab's balancers: the real nginx and HAProxy start with a port per strategy, and the
``optimum`` weights move on one balancer without touching the other.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from bench.lab.balancers import STRATEGIES, Balancers
from bench.lab.pool import DEFAULT_POOL, load_pool


def _haproxy_weights(sock_path: Path) -> dict[str, int]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(sock_path))
        sock.sendall(b"show servers state optimum\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    weights: dict[str, int] = {}
    lines = answer.decode().splitlines()
    header = next(line for line in lines if line.startswith("# be_id"))
    columns = header.lstrip("# ").split()
    for line in lines:
        if line and not line.startswith("#") and len(line.split()) == len(columns):
            row = dict(zip(columns, line.split(), strict=True))
            weights[row["srv_name"]] = int(row["srv_uweight"])
    return weights


def _nginx_optimum_weights(conf: str) -> dict[str, int]:
    block = conf.split("upstream optimum {", 1)[1].split("}", 1)[0]
    return {
        address: int(weight) for address, weight in re.findall(r"server (\S+) weight=(\d+);", block)
    }


def test_optimum_moves_per_balancer(tmp_path: Path) -> None:
    pool = load_pool(DEFAULT_POOL)
    balancers = Balancers(pool, tmp_path, capplan=None)
    balancers.start()
    try:
        assert set(balancers.nginx_ports) == set(STRATEGIES) - {"capplan"}
        slots = {n.name: n.slots for n in pool.nodes}
        assert _haproxy_weights(tmp_path / "haproxy.sock") == slots

        balancers.set_optimum("haproxy", {"n1": 3, "n2": 5, "n3": 9, "n4": 7})
        assert _haproxy_weights(tmp_path / "haproxy.sock") == {
            "n1": 3,
            "n2": 5,
            "n3": 9,
            "n4": 7,
        }
        conf = (tmp_path / "nginx.conf").read_text()
        assert _nginx_optimum_weights(conf) == {
            f"{n.address}:{n.port}": n.slots for n in pool.nodes
        }, "moving HAProxy's weights rewrote nginx's"

        balancers.set_optimum("nginx", {"n1": 1, "n2": 4, "n3": 10, "n4": 10})
        conf = (tmp_path / "nginx.conf").read_text()
        assert list(_nginx_optimum_weights(conf).values()) == [1, 4, 10, 10]
        assert "least_conn;" in conf.split("upstream optimum {", 1)[1].split("}", 1)[0]
        assert balancers._processes["nginx"].poll() is None, "nginx died on the reload"
        assert _haproxy_weights(tmp_path / "haproxy.sock")["n3"] == 9
    finally:
        balancers.stop()


@pytest.mark.parametrize("balancer", ["nginx", "haproxy"])
def test_set_optimum_unchanged_is_a_no_op(tmp_path: Path, balancer: str) -> None:
    pool = load_pool(DEFAULT_POOL)
    balancers = Balancers(pool, tmp_path, capplan=None)
    balancers.optimum[balancer] = {"n1": 2}
    balancers.set_optimum(balancer, {"n1": 2})  # no process started: any action would fail
    assert balancers.optimum[balancer] == {"n1": 2}
