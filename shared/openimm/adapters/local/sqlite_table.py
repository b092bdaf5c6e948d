"""TableStore on one SQLite file, shared by threads and by processes."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openimm.adapters.item_rules import apply_write, live, prefix_end
from openimm.ports import (
    Increment,
    Record,
    StorageUnavailable,
    TableStore,
    Write,
)

_BUSY_TIMEOUT_S = 30.0
# keys of one batch_get statement (SQLite allows 32766 parameters since 3.32)
_KEYS_PER_SELECT = 500
_MAX_IDLE = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    data TEXT NOT NULL,
    version INTEGER NOT NULL,
    expires_at REAL,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;
"""


# SQLite's words for a database that cannot be used now, whatever the statement
_OUTAGES = (
    "database or disk is full",
    "readonly database",
    "disk i/o error",
    "unable to open database",
)


@contextmanager
def storage_errors(path: str) -> Iterator[None]:
    """Raise StorageUnavailable for a full, read-only or unreachable database or folder."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if any(words in str(exc).lower() for words in _OUTAGES):
            raise StorageUnavailable(f"{path}: {exc}") from exc
        raise
    except OSError as exc:
        raise StorageUnavailable(f"{path}: {exc.strerror or exc}") from exc


class SqliteConnections:
    """A pool of connections to one SQLite database (one locked connection for :memory:)."""

    def __init__(self, path: str | Path, schema: str) -> None:
        self._path = str(path)
        self._lock = threading.RLock()
        # Pooled rather than one per thread: a server that starts a thread per request
        # would otherwise open a connection per request and never close it.
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        with storage_errors(self._path):
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            # A :memory: database exists once per connection, so every thread must share it.
            self._shared = self._open() if self._path == ":memory:" else None
        with self.connection() as conn:
            conn.executescript(schema)

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun explicitly, so a write can take
        # the lock up front (BEGIN IMMEDIATE) instead of failing on upgrade.
        conn = sqlite3.connect(
            self._path,
            timeout=_BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection held exclusively while inside the block (do not nest blocks)."""
        with storage_errors(self._path), self._connection() as conn:
            yield conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._shared is not None:
            with self._lock:
                yield self._shared
            return
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._path} is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            with self._lock:
                keep = not self._closed and len(self._idle) < _MAX_IDLE
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database lock; rolled back on any exception."""
        with self.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several statements see one snapshot."""
        with self.connection() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def close(self) -> None:
        """Close the idle connections; those in use close when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            if self._shared is not None:
                idle.append(self._shared)
        for conn in idle:
            conn.close()


class SqliteTableStore(TableStore):
    """Items of every table in one SQLite table `items`, WAL mode."""

    # one file has no item limit per request: a clustering run's 1k figure rows went
    # in 126 transactions of 25, each with its journal entry for the face shard to read
    max_transaction_writes = 250

    def __init__(self, path: str | Path) -> None:
        self._db = SqliteConnections(path, _SCHEMA)

    def close(self) -> None:
        """Close the database connections."""
        self._db.close()

    def purge_expired(self, now: float | None = None) -> int:
        """Delete expired items for good; returns how many went."""
        with self._db.write() as conn:
            cursor = conn.execute(
                "DELETE FROM items WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (time.time() if now is None else now,),
            )
            return cursor.rowcount

    def _get(self, table: str, pk: str, sk: str) -> Record | None:
        with self._db.connection() as conn:
            return _fetch(conn, table, pk, sk)

    def _batch_get(self, table: str, keys: list[tuple[str, str]]) -> list[Record]:
        by_partition: dict[str, list[str]] = {}
        for pk, sk in dict.fromkeys(keys):
            by_partition.setdefault(pk, []).append(sk)
        found: list[Record] = []
        with self._db.read() as conn:
            # one statement per few hundred keys of a partition: a clustering run reads
            # 1k figure rows at once, 90 ms so against 160 ms one SELECT each
            for pk, sks in by_partition.items():
                for start in range(0, len(sks), _KEYS_PER_SELECT):
                    chunk = sks[start : start + _KEYS_PER_SELECT]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        "SELECT pk, sk, data, version, expires_at FROM items"
                        f" WHERE tbl = ? AND pk = ? AND sk IN ({marks})",
                        (table, pk, *chunk),
                    )
                    found.extend(_record(row) for row in rows)
        return found

    def _query(
        self,
        table: str,
        pk: str,
        sk_prefix: str,
        start_after: str | None,
        limit: int,
        descending: bool,
    ) -> list[Record]:
        # Expired items are skipped here too, so that a page is full when it can be.
        sql = (
            "SELECT pk, sk, data, version, expires_at FROM items"
            " WHERE tbl = ? AND pk = ? AND (expires_at IS NULL OR expires_at > ?)"
        )
        args: list[str | float | int] = [table, pk, time.time()]
        if sk_prefix:
            sql += " AND sk >= ?"
            args.append(sk_prefix)
            end = prefix_end(sk_prefix)
            if end is not None:
                sql += " AND sk < ?"
                args.append(end)
        if start_after is not None:
            sql += " AND sk < ?" if descending else " AND sk > ?"
            args.append(start_after)
        sql += f" ORDER BY sk {'DESC' if descending else 'ASC'} LIMIT ?"
        args.append(limit)
        with self._db.connection() as conn:
            return [_record(row) for row in conn.execute(sql, args)]

    def _transact(self, writes: list[Write], now: float) -> None:
        with self._db.write() as conn:
            for write in writes:
                _apply(conn, write, now)

    def _increment(self, write: Increment, now: float) -> Record:
        with self._db.write() as conn:
            record = _apply(conn, write, now)
        assert record is not None
        return record


def _fetch(conn: sqlite3.Connection, table: str, pk: str, sk: str) -> Record | None:
    row = conn.execute(
        "SELECT pk, sk, data, version, expires_at FROM items WHERE tbl = ? AND pk = ? AND sk = ?",
        (table, pk, sk),
    ).fetchone()
    return None if row is None else _record(row)


def _record(row: tuple[str, str, str, int, float | None]) -> Record:
    pk, sk, data, version, expires_at = row
    return Record(pk, sk, json.loads(data), version, expires_at)


def _live(conn: sqlite3.Connection, table: str, pk: str, sk: str, now: float) -> Record | None:
    return live(_fetch(conn, table, pk, sk), now)


def _store(conn: sqlite3.Connection, table: str, record: Record) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO items (tbl, pk, sk, data, version, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            table,
            record.pk,
            record.sk,
            json.dumps(record.data, separators=(",", ":"), ensure_ascii=False),
            record.version,
            record.expires_at,
        ),
    )


def _head(conn: sqlite3.Connection, table: str, pk: str, sk: str, now: float) -> Record | None:
    """The live item's version and expiry, its data left unread (empty)."""
    row = conn.execute(
        "SELECT version, expires_at FROM items WHERE tbl = ? AND pk = ? AND sk = ?",
        (table, pk, sk),
    ).fetchone()
    return None if row is None else live(Record(pk, sk, {}, row[0], row[1]), now)


def _apply(conn: sqlite3.Connection, write: Write, now: float) -> Record | None:
    """Apply one write inside an open transaction; returns the item as it is after."""
    # a put or delete weighs only the version and expiry of what is there, so its JSON
    # (a figure row's is 4 KB) is not decoded
    read = _live if isinstance(write, Increment) else _head
    record = apply_write(write, read(conn, write.table, write.pk, write.sk, now), now)
    if record is not None:
        _store(conn, write.table, record)
    else:
        conn.execute(
            "DELETE FROM items WHERE tbl = ? AND pk = ? AND sk = ?",
            (write.table, write.pk, write.sk),
        )
    return record
