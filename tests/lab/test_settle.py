"""
Between points the lab waits for the nodes to work off any backlog: an overloaded point must not
weigh on the next one.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import SimpleNamespace

import yaml

from bench.lab.node import fetch_stats, start_node_process
from bench.lab.run import Lab

#: One 1-slot node serving a fixed 500 ms (its own process: the session's test pool may have
#: reached its deadline by the time this runs, after the quick lab).
POOL = {
    "name": "settle",
    "service": "fixed",
    "seed": 3,
    "nodes": [{"name": "slow", "address": "127.0.0.6", "port": 0, "slots": 1, "service_ms": 500}],
}


def test_settle_waits_for_the_backlog(tmp_path: Path) -> None:
    """Three requests left on a 1-slot, 500 ms node (clients gone): settle waits them out."""
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(yaml.safe_dump(POOL))
    process = start_node_process(pool_file, tmp_path, duration_s=60)
    try:
        address = process.addresses["slow"]
        for _ in range(3):  # the clients leave at once; the node serves them anyway
            with socket.create_connection(address) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        assert fetch_stats(address)["busy"] == 1
        said: list[str] = []
        fake = SimpleNamespace(
            node_addresses={"slow": address}, after_failures=False, say=said.append
        )
        start = time.monotonic()
        Lab.settle(fake)  # type: ignore[arg-type]
        waited = time.monotonic() - start
        stats = fetch_stats(address)
        assert stats["queued"] == 0
        assert stats["busy"] == 0
        assert 0.9 <= waited <= 5.0, waited  # 3 × 500 ms of service, the first already begun
        assert said == []
    finally:
        process.stop()
