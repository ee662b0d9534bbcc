"""
The SQLite sample store, against a real SQLite database file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from capplan.errors import InputError, StoreError
from capplan.samples import parse_samples
from capplan.store import SCHEMA_VERSION, Store

CSV = (
    "node,start,seconds,requests,errors,mean_ms,cpu_util\n"
    "a,2026-11-20T10:00:00Z,60,100,0,20.5,0.3\n"
    "a,2026-11-20T10:01:00Z,60,110,1,21.5,\n"
    "b,2026-11-20T10:00:00.5Z,30,50,0,9.25,0.1\n"
)


class TestStore:
    def test_new_store_is_migrated_and_in_wal_mode(self, db: Path) -> None:
        """A new file gets the current schema version and WAL journaling."""
        with Store.open(db) as store:
            assert SCHEMA_VERSION == store.schema_version
        con = sqlite3.connect(db)
        assert "wal" == con.execute("PRAGMA journal_mode").fetchone()[0]

    def test_import_then_read(self, db: Path) -> None:
        """Imported windows read back equal, ordered by node then start."""
        parsed = parse_samples(CSV, "s.csv")
        with Store.open(db) as store:
            result = store.import_windows(parsed, "s.csv")
            assert (3, 0) == (result.added, result.unchanged)
            assert [n.window for n in parsed] == list(store.windows())
            assert ["a", "b"] == store.nodes()
            assert 2 == store.count("a")
            assert [parsed[2].window] == list(store.windows("b"))

    def test_reimport_changes_nothing(self, db: Path) -> None:
        """Importing the same file twice stores each window once."""
        with Store.open(db) as store:
            store.import_windows(parse_samples(CSV, "s.csv"), "s.csv")
            again = store.import_windows(parse_samples(CSV, "s.csv"), "s.csv")
            assert (0, 3) == (again.added, again.unchanged)
            assert 3 == store.count()

    def test_conflict_rolls_back_everything(self, db: Path) -> None:
        """A window stored with other values fails the whole import; nothing new is stored."""
        with Store.open(db) as store:
            store.import_windows(
                parse_samples(CSV.splitlines(True)[0] + CSV.splitlines(True)[1], "s.csv"), "s.csv"
            )
            changed = CSV.replace(
                "a,2026-11-20T10:00:00Z,60,100,0,20.5", "a,2026-11-20T10:00:00Z,60,100,0,99"
            )
            with pytest.raises(InputError) as info:
                store.import_windows(parse_samples(changed, "t.csv"), "t.csv")
            assert str(info.value).startswith(
                "t.csv:2: mean_ms: window a @ 2026-11-20T10:00:00Z is already stored with "
                "other values (mean_ms); nothing was imported"
            )
            assert 1 == store.count()

    def test_store_survives_reopen(self, db: Path) -> None:
        """Data persists across connections (a real file)."""
        with Store.open(db) as store:
            store.import_windows(parse_samples(CSV, "s.csv"), "s.csv")
        with Store.open(db, create=False) as store:
            assert 3 == store.count()

    def test_missing_store_when_not_creating(self, tmp_path: Path) -> None:
        """Reading a store that does not exist says what to run."""
        with pytest.raises(StoreError, match="no sample store here; run `capplan import"):
            Store.open(tmp_path / "none.db", create=False)

    def test_newer_schema_refused(self, db: Path) -> None:
        """A store written by a newer capplan is refused, not damaged."""
        con = sqlite3.connect(db)
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        con.close()
        with pytest.raises(StoreError, match="written by a newer capplan"):
            Store.open(db)

    def test_not_a_database(self, tmp_path: Path) -> None:
        """A file that is not SQLite is reported, not overwritten."""
        path = tmp_path / "x.db"
        path.write_bytes(b"this is not sqlite" * 100)
        with pytest.raises(StoreError, match="not a usable capplan sample store"):
            Store.open(path)
        assert b"this is not sqlite" * 100 == path.read_bytes()


def test_row_has_every_window_field_in_table_order(tmp_path: Path) -> None:
    """The row written for a window names each of its fields, in the table's column order."""
    import dataclasses
    from datetime import UTC, datetime

    from capplan.samples import Window
    from capplan.store import _row

    window = Window(
        "n", datetime(2026, 1, 1, tzinfo=UTC), 60.0, 7, 1, 1.5, 2.5, 3.5, 4.5, 0.5, 0.25
    )
    row = _row(window)
    assert len(row) == len(dataclasses.fields(Window))
    with Store.open(tmp_path / "s.db") as store:
        columns = [c[1] for c in store._db.execute("PRAGMA table_info(windows)")]
    assert columns[0] == "node"
    assert columns[1] == "start_us"
    named = dict(zip(columns[2:], row[2:], strict=True))
    assert named == {f.name: getattr(window, f.name) for f in dataclasses.fields(Window)[2:]}


def _open_after(path: str, barrier: object, results: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        with Store.open(path) as store:
            results.put(store.schema_version)  # type: ignore[attr-defined]
    except StoreError as exc:
        results.put(str(exc))  # type: ignore[attr-defined]


def test_two_processes_create_one_store_at_once(tmp_path: Path) -> None:
    """Two capplans opening a store that does not exist yet both get it, ready.

    SQLite refuses the switch to WAL at once ("database is locked", no busy wait) when it meets
    the other's lock: without a retry, a quarter of such opens failed.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    for i in range(20):
        barrier = context.Barrier(2)
        path = str(tmp_path / f"{i}.db")
        workers = [
            context.Process(target=_open_after, args=(path, barrier, results)) for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        got = [results.get(timeout=5) for _ in workers]
        assert got == [SCHEMA_VERSION, SCHEMA_VERSION], (i, got)
