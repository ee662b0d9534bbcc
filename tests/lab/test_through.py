"""
The check of capplan's fits through the real balancers (bench.lab.through): what it hands
capplan and how it reports (no measuring here; the measured run is a documented command).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.lab.pool import load_pool
from bench.lab.run import copy_log_between, remove_store
from bench.lab.through import FITS, inventory, markdown
from capplan.inventory import parse_inventory


@pytest.mark.parametrize(("label", "arrivals", "workers"), FITS)
def test_every_way_of_fitting_is_an_inventory_capplan_accepts(
    tmp_path: Path, label: str, arrivals: str, workers: bool
) -> None:
    pool = load_pool(Path("bench/lab/pools/default.yaml"))
    text = yaml.safe_dump(inventory(pool, tmp_path, arrivals, workers))
    parsed = parse_inventory(text, f"{label}.yaml")
    assert parsed.arrivals == arrivals
    assert [n.workers for n in parsed.nodes] == (
        [n.slots for n in pool.nodes] if workers else [None] * len(pool.nodes)
    )
    assert [n.log.path for n in parsed.nodes if n.log] == [
        str(tmp_path / f"{n.name}.access.log") for n in pool.nodes
    ]


def test_a_ramps_log_is_copied_between_its_start_and_end(tmp_path: Path) -> None:
    source, dest = tmp_path / "n1.log", tmp_path / "copy.log"
    lines = [
        f'127.0.0.1 - - [24/Nov/2026:21:00:{s:02d} +0000] "GET / HTTP/1.1" 200 2 "-" "-" 0.020'
        for s in (8, 9, 10, 29, 30, 31)
    ]
    source.write_text("\n".join(lines) + "\n")
    start = 1795554010.0  # 2026-11-24 21:00:10 UTC
    assert math.isclose(start % 60, 10.0)
    copy_log_between(source, dest, start, start + 20)
    assert dest.read_text().splitlines() == lines[2:4]


def _fit(capacity: float, servers: float, interval: tuple[float, float]) -> dict[str, Any]:
    return {
        "capacity_rps": capacity,
        "capacity_interval": list(interval),
        "servers": servers,
        "scv": 1.0,
        "model": "mgc",
    }


def test_the_table_gives_each_fit_over_the_stationary_capacity() -> None:
    document = {
        "variants": {
            "default/exp": {
                "pool": {
                    "name": "default",
                    "service": "exp",
                    "nodes": [
                        {"name": "n1", "slots": 2, "service_ms": 20},
                        {"name": "n2", "slots": 4, "service_ms": 20},
                    ],
                },
                "stationary": {"n1": {"rps": 50.0}, "n2": {"rps": 150.0}},
                "fits": {
                    "nginx/wrr": {
                        "poisson": {
                            "n1": _fit(60.0, 3, (55.0, 65.0)),
                            "n2": _fit(150.0, 4, (140.0, 160.0)),
                        },
                        "round_robin": {
                            "n1": _fit(50.0, 2, (45.0, 55.0)),
                            "n2": {"capacity_rps": None},
                        },
                    }
                },
            }
        }
    }
    table = markdown(document)
    assert "n1 (c 2) 50.0 rps, n2 (c 4) 150.0 rps" in table
    # 60/50 with three slots fitted, its interval missing 50; 150/150; geometric mean √1.2
    assert f"| nginx/wrr | poisson | 1.20 (c 3)* | 1.00 | {math.sqrt(1.2):.3f} |" in table
    assert "| nginx/wrr | round_robin | 1.00 | failed | 1.000 |" in table


def test_a_refit_removes_the_store_with_its_wal(tmp_path: Path) -> None:
    """A store left in WAL mode by an interrupted run goes with its -wal and -shm files."""
    db = tmp_path / "capplan.db"
    for name in ("capplan.db", "capplan.db-wal", "capplan.db-shm", "other.db-wal"):
        (tmp_path / name).write_bytes(b"x")
    remove_store(db)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db-wal"]
