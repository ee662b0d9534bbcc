"""
Between points the lab waits for the nodes to work off any backlog: an overloaded point must not
weigh on the next one.
"""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

from bench.lab.node import fetch_stats
from bench.lab.run import Lab
from tests.lab.conftest import Lab as NodePool


def test_settle_waits_for_the_backlog(lab: NodePool) -> None:
    """Three requests left on a 1-slot, 500 ms node (clients gone): settle waits them out."""
    address = lab.address("slow")
    for _ in range(3):  # the clients leave at once; the node serves them anyway
        with socket.create_connection(address) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    assert fetch_stats(address)["busy"] == 1
    said: list[str] = []
    fake = SimpleNamespace(node_addresses={"slow": address}, after_failures=False, say=said.append)
    start = time.monotonic()
    Lab.settle(fake)  # type: ignore[arg-type]
    waited = time.monotonic() - start
    stats = fetch_stats(address)
    assert stats["queued"] == 0
    assert stats["busy"] == 0
    assert 0.9 <= waited <= 5.0, waited  # 3 × 500 ms of service, the first already begun
    assert said == []
