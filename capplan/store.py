"""
The sample store: SQLite (stdlib ``sqlite3``) in WAL mode, schema versioned by
``PRAGMA user_version``.

This is an edge module: it does I/O and nothing else.  The CSV format lives in ``samples.py``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from capplan.collect.haproxy import INT_COLUMNS
from capplan.errors import InputError, StoreError
from capplan.samples import NumberedWindow, Window, format_time

__all__ = [
    "SCHEMA_VERSION",
    "ImportResult",
    "LogCursor",
    "NodeSnapshot",
    "ServerStat",
    "Store",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: How long a write waits for another capplan's write to finish before the store is "busy".
BUSY_TIMEOUT_S = 10.0


def _migrate_1(db: sqlite3.Connection) -> None:
    """
    Version 1: the windows table.
    """
    db.execute(
        """
        CREATE TABLE windows (
            node        TEXT    NOT NULL,
            start_us    INTEGER NOT NULL,  -- window start, microseconds since the epoch, UTC
            seconds     REAL    NOT NULL,
            requests    INTEGER NOT NULL,
            errors      INTEGER NOT NULL,
            mean_ms     REAL,
            p50_ms      REAL,
            p95_ms      REAL,
            p99_ms      REAL,
            concurrency REAL,
            cpu_util    REAL,
            PRIMARY KEY (node, start_us)
        ) WITHOUT ROWID
        """
    )


def _migrate_2(db: sqlite3.Connection) -> None:
    """
    Version 2 (collection): where each node's log was read up to, and each run's node stats.
    """
    db.execute(
        """
        CREATE TABLE log_cursor (
            node          TEXT    PRIMARY KEY,
            path          TEXT    NOT NULL,
            inode         INTEGER NOT NULL,
            offset        INTEGER NOT NULL,  -- next byte to read
            done_until_us INTEGER NOT NULL,  -- lines before this time are already in windows
            updated_us    INTEGER NOT NULL
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE node_snapshot (
            node             TEXT    NOT NULL,
            at_us            INTEGER NOT NULL,  -- the node's clock when /proc was read
            cpu_busy         INTEGER NOT NULL,  -- jiffies, all CPUs
            cpu_total        INTEGER NOT NULL,
            cores            INTEGER NOT NULL,
            load1            REAL,
            load5            REAL,
            load15           REAL,
            mem_total_kb     INTEGER,
            mem_available_kb INTEGER,
            PRIMARY KEY (node, at_us)
        ) WITHOUT ROWID
        """
    )


def _migrate_3(db: sqlite3.Connection) -> None:
    """
    Version 3: what HAProxy's stats socket said at each collection (``show stat``).
    """
    db.execute(
        """
        CREATE TABLE haproxy_stat (
            node     TEXT    NOT NULL,
            at_us    INTEGER NOT NULL,  -- the node's clock at the collection
            proxy    TEXT    NOT NULL,
            server   TEXT    NOT NULL,  -- FRONTEND, BACKEND or a server's name
            status   TEXT    NOT NULL,
            scur     INTEGER,  -- the counters of collect.haproxy.INT_COLUMNS, in its order
            smax     INTEGER,
            slim     INTEGER,
            qcur     INTEGER,
            qmax     INTEGER,
            qlimit   INTEGER,
            weight   INTEGER,
            rate     INTEGER,
            stot     INTEGER,
            hrsp_5xx INTEGER,
            qtime    INTEGER,
            ctime    INTEGER,
            rtime    INTEGER,
            ttime    INTEGER,
            PRIMARY KEY (node, at_us, proxy, server)
        ) WITHOUT ROWID
        """
    )


#: Migrations in order: ``MIGRATIONS[i]`` takes the schema from version ``i`` to ``i + 1``.
#: Later issues append here; never edit a released migration.
MIGRATIONS: Sequence[Callable[[sqlite3.Connection], None]] = (_migrate_1, _migrate_2, _migrate_3)
SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS = (
    "node, start_us, seconds, requests, errors, mean_ms, p50_ms, p95_ms, p99_ms, "
    "concurrency, cpu_util"
)


def _busy(exc: sqlite3.Error) -> bool:
    """
    True when ``exc`` is SQLite's "database is locked" (another connection holds the lock).
    """
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _wal(db: sqlite3.Connection) -> None:
    """
    Put the store in WAL mode, waiting up to BUSY_TIMEOUT_S for another capplan that holds it.

    SQLite answers "database is locked" at once, without its busy handler, when the switch
    meets another connection's lock: two capplans opening a new store together failed one
    time in four.  WAL is a property of the file, so the retry usually finds it done.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.2)


def _busy_message(path: str, exc: sqlite3.Error) -> str:
    return (
        f"{path}: the store is busy ({exc}); another capplan is writing, try again when it is done"
    )


def _to_us(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _row(w: Window) -> tuple[object, ...]:
    # the fields in table order, by name: dataclasses.astuple deep-copies, 5× slower
    return (
        w.node,
        _to_us(w.start),
        w.seconds,
        w.requests,
        w.errors,
        w.mean_ms,
        w.p50_ms,
        w.p95_ms,
        w.p99_ms,
        w.concurrency,
        w.cpu_util,
    )


def _window(row: Sequence[object]) -> Window:
    node, start_us, *rest = row
    return Window(str(node), _from_us(int(start_us)), *rest)  # type: ignore[call-overload, arg-type]


@dataclass(frozen=True)
class LogCursor:
    """
    Where a node's access log was read up to: the file (by path and inode), the next byte,
    and the time before which every line is already counted in a stored window.
    """

    path: str
    inode: int
    offset: int
    done_until: float  # epoch seconds


@dataclass(frozen=True)
class NodeSnapshot:
    """
    A node's counters and gauges at one moment of its own clock (epoch seconds).
    """

    at: float
    cpu_busy: int
    cpu_total: int
    cores: int
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    mem_total_kb: int | None = None
    mem_available_kb: int | None = None


@dataclass(frozen=True)
class ServerStat:
    """
    One row of HAProxy's ``show stat`` as the store keeps it (counters None when empty).
    """

    proxy: str
    server: str
    status: str
    counters: dict[str, int | None]


@dataclass(frozen=True)
class ImportResult:
    """
    What an import did: windows added, and windows already stored with the same values.
    """

    added: int
    unchanged: int


class Store:
    """
    An open sample store.  Use as a context manager, or call ``close()``.
    """

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> Store:
        """
        Open (and create or migrate) the store at ``path``; ``":memory:"`` for a scratch store.

        Args:
            path: The database file.
            create: When False, a missing file is an error instead of a new empty store.

        Returns:
            The open store.
        """
        name = str(path)
        if not create and name != ":memory:" and not Path(name).exists():
            raise StoreError(
                f"{name}: no sample store here; run `capplan import FILE.csv` or "
                "`capplan collect` first, or pass --db / set $CAPPLAN_DB"
            )
        if name != ":memory:" and not Path(name).exists():
            # the store holds node names and addresses: readable by its owner only (SQLite
            # gives its -wal and -shm files the same mode)
            try:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass  # another capplan made it just now
            except OSError as exc:
                raise StoreError(f"{name}: cannot create the sample store: {exc}") from None
        try:
            db = sqlite3.connect(name, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{name}: cannot open the sample store: {exc}") from None
        store = cls(db, name)
        try:
            db.execute(f"PRAGMA busy_timeout = {round(BUSY_TIMEOUT_S * 1000)}")
            if name != ":memory:":
                _wal(db)
            db.execute("PRAGMA foreign_keys = ON")
            store._migrate()
        except sqlite3.DatabaseError as exc:
            db.close()
            if _busy(exc):
                # e.g. a migration waiting for another capplan's long write: not a bad file
                raise StoreError(_busy_message(name, exc)) from None
            raise StoreError(
                f"{name}: not a usable capplan sample store ({exc}); "
                "point --db at another file or move this one away"
            ) from None
        return store

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} was written by a newer capplan "
                f"(this one knows up to {SCHEMA_VERSION}); upgrade capplan"
            )
        if version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](self._db)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        """
        The schema version of the open database.
        """
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """
        Close the database.
        """
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _begin(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(_busy_message(self.path, exc)) from None

    def _put_window(self, window: Window) -> list[str] | None:
        """
        Insert one window inside the open transaction.

        Returns:
            None when it was added, ``[]`` when the same window was already stored, else the
            columns whose stored values differ (nothing is written then).
        """
        row = _row(window)
        found = self._db.execute(
            f"SELECT {_COLUMNS} FROM windows WHERE node = ? AND start_us = ?", row[:2]
        ).fetchone()
        if found is None:
            self._db.execute(
                f"INSERT INTO windows ({_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row
            )
            return None
        stored = _window(found)
        return [] if stored == window else window.differences(stored)

    def import_windows(self, windows: Iterable[NumberedWindow], file: str) -> ImportResult:
        """
        Store windows in one transaction: all of them, or none when one conflicts.

        A window already stored with the same values is left as it is; one stored with other
        values is an error naming the file line and the columns that differ.

        Args:
            windows: Parsed windows with their line numbers.
            file: The file's name, for messages.

        Returns:
            How many windows were added and how many were already there.
        """
        added = unchanged = 0
        self._begin()
        try:
            for numbered in windows:
                window = numbered.window
                diff = self._put_window(window)
                if diff is None:
                    added += 1
                    continue
                if not diff:
                    unchanged += 1
                    continue
                raise InputError(
                    f"window {window.node} @ {format_time(window.start)} is already stored "
                    f"with other values ({', '.join(diff)}); nothing was imported",
                    file=file,
                    line=numbered.line,
                    key=diff[0],
                    hint="a window is identified by node and start; fix the row or use "
                    "another --db",
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return ImportResult(added, unchanged)

    def save_collection(
        self,
        node: str,
        windows: Sequence[Window],
        *,
        cursor: LogCursor | None,
        snapshot: NodeSnapshot | None,
        stats: Sequence[ServerStat] = (),
        stats_at: float | None = None,
    ) -> ImportResult:
        """
        Store one node's harvest in one transaction: its windows, where its log was read up
        to and its stats snapshot — all or nothing, so a run killed midway neither loses
        lines nor counts them twice.

        Raises:
            StoreError: a window is already stored with other values (e.g. imported from a
                CSV for the same node); nothing of this node is stored then.
        """
        added = unchanged = 0
        now_us = _to_us(datetime.now(UTC))
        self._begin()
        try:
            for window in windows:
                diff = self._put_window(window)
                if diff is None:
                    added += 1
                elif not diff:
                    unchanged += 1
                else:
                    raise StoreError(
                        f"{self.path}: window {node} @ {format_time(window.start)} is "
                        f"already stored with other values ({', '.join(diff)}); nothing of "
                        f"{node} was stored: its windows may have come from an import — "
                        "export them and remove the file, or use another --db"
                    )
            if cursor is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO log_cursor VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        node,
                        cursor.path,
                        cursor.inode,
                        cursor.offset,
                        round(cursor.done_until * 1e6),
                        now_us,
                    ),
                )
            if snapshot is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO node_snapshot VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (node, round(snapshot.at * 1e6), *astuple(snapshot)[1:]),
                )
            if stats and stats_at is not None:
                marks = ", ".join("?" * (5 + len(INT_COLUMNS)))
                self._db.executemany(
                    "INSERT OR REPLACE INTO haproxy_stat (node, at_us, proxy, server, status, "
                    f"{', '.join(INT_COLUMNS)}) VALUES ({marks})",
                    [
                        (
                            node,
                            round(stats_at * 1e6),
                            row.proxy,
                            row.server,
                            row.status,
                            *(row.counters.get(c) for c in INT_COLUMNS),
                        )
                        for row in stats
                    ],
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return ImportResult(added, unchanged)

    def cursor(self, node: str) -> LogCursor | None:
        """
        Where ``node``'s log was read up to, or None before its first collection.
        """
        row = self._db.execute(
            "SELECT path, inode, offset, done_until_us FROM log_cursor WHERE node = ?", (node,)
        ).fetchone()
        if row is None:
            return None
        return LogCursor(str(row[0]), int(row[1]), int(row[2]), int(row[3]) / 1e6)

    def server_stats(self, node: str) -> list[tuple[float, ServerStat]]:
        """
        Everything ``node``'s HAProxy stats socket said, oldest first, with the node's time.
        """
        rows = self._db.execute(
            f"SELECT at_us, proxy, server, status, {', '.join(INT_COLUMNS)} FROM haproxy_stat "
            "WHERE node = ? ORDER BY at_us, proxy, server",
            (node,),
        )
        return [
            (
                int(r[0]) / 1e6,
                ServerStat(
                    str(r[1]), str(r[2]), str(r[3]), dict(zip(INT_COLUMNS, r[4:], strict=True))
                ),
            )
            for r in rows
        ]

    def snapshots(self, node: str, *, since: float | None = None) -> list[NodeSnapshot]:
        """
        ``node``'s stats snapshots, oldest first; only those at or after ``since`` when given.
        """
        since_us = -(2**62) if since is None else round(since * 1e6)
        rows = self._db.execute(
            "SELECT at_us, cpu_busy, cpu_total, cores, load1, load5, load15, mem_total_kb, "
            "mem_available_kb FROM node_snapshot WHERE node = ? AND at_us >= ? ORDER BY at_us",
            (node, since_us),
        )
        return [NodeSnapshot(int(r[0]) / 1e6, *r[1:]) for r in rows]

    def windows(self, node: str | None = None) -> Iterator[Window]:
        """
        Stored windows, ordered by node then start; only ``node``'s when given.
        """
        if node is None:
            cursor = self._db.execute(f"SELECT {_COLUMNS} FROM windows ORDER BY node, start_us")
        else:
            cursor = self._db.execute(
                f"SELECT {_COLUMNS} FROM windows WHERE node = ? ORDER BY start_us", (node,)
            )
        for row in cursor:
            yield _window(row)

    def nodes(self) -> list[str]:
        """
        The names of the nodes with stored windows, sorted.
        """
        return [r[0] for r in self._db.execute("SELECT DISTINCT node FROM windows ORDER BY node")]

    def count(self, node: str | None = None) -> int:
        """
        How many windows are stored (for ``node`` only, when given).
        """
        if node is None:
            return int(self._db.execute("SELECT count(*) FROM windows").fetchone()[0])
        sql = "SELECT count(*) FROM windows WHERE node = ?"
        return int(self._db.execute(sql, (node,)).fetchone()[0])
