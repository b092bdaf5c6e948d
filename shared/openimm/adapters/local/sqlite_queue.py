"""Queue on SQLite: durable, shared by threads and processes, at-least-once delivery."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from openimm.adapters.local.sqlite_table import SqliteConnections
from openimm.ports import JSON, Message, Queue

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL,
    receipt TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (queue, visible_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_queue ON dead_letters (queue, at);
"""


class SqliteQueue(Queue):
    """Messages in a SQLite table; a receive claims them with a fresh receipt."""

    def __init__(self, path: str | Path) -> None:
        self._db = SqliteConnections(path, _SCHEMA)
        self._send_listeners: list[Callable[[str], object]] = []

    def add_send_listener(self, listener: Callable[[str], object]) -> None:
        """Call `listener(queue)` after each message sent without delay through this object
        (idle workers of this process look at once instead of at their next poll)."""
        self._send_listeners.append(listener)

    def close(self) -> None:
        """Close the database connections."""
        self._db.close()

    def pending(self, queue: str) -> int:
        """Messages not done yet: visible, delayed or in flight (dead letters excluded)."""
        with self._db.connection() as conn:
            row = conn.execute("SELECT COUNT(*) FROM messages WHERE queue = ?", (queue,))
            count: int = row.fetchone()[0]
            return count

    def release_in_flight(self) -> int:
        """Make every received, unfinished message visible now; returns how many.

        Only safe when no live process is handling messages of this database, e.g. at
        the start of the one process allowed to run workers.
        """
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE messages SET visible_at = ?, receipt = NULL WHERE receipt IS NOT NULL",
                (time.time(),),
            )
            return cursor.rowcount

    def _send(self, queue: str, raw_body: str, delay_seconds: float) -> str:
        message_id = uuid.uuid4().hex
        now = time.time()
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO messages (id, queue, body, attempts, visible_at, receipt, created_at)"
                " VALUES (?, ?, ?, 0, ?, NULL, ?)",
                (message_id, queue, raw_body, now + delay_seconds, now),
            )
        if delay_seconds <= 0:
            for listener in self._send_listeners:
                listener(queue)
        return message_id

    def _receive(self, queue: str, max_messages: int, visibility_timeout: float) -> list[Message]:
        if max_messages < 1:
            return []
        now = time.time()
        hidden_until = now + max(0.0, visibility_timeout)
        claimed: list[Message] = []
        # BEGIN IMMEDIATE serialises claims across processes: a row picked here cannot
        # be picked by anyone else until `hidden_until`.
        with self._db.write() as conn:
            rows = conn.execute(
                "SELECT id, body, attempts FROM messages"
                " WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, rowid LIMIT ?",
                (queue, now, max_messages),
            ).fetchall()
            for message_id, body, attempts in rows:
                receipt = uuid.uuid4().hex
                conn.execute(
                    "UPDATE messages SET receipt = ?, visible_at = ?, attempts = ? WHERE id = ?",
                    (receipt, hidden_until, attempts + 1, message_id),
                )
                claimed.append(Message(queue, json.loads(body), attempts + 1, receipt, message_id))
        return claimed

    def _ack(self, message: Message) -> None:
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM messages WHERE id = ? AND receipt = ?",
                (message.message_id, message.receipt),
            )

    def _retry(self, message: Message, delay_seconds: float) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE messages SET visible_at = ?, receipt = NULL WHERE id = ? AND receipt = ?",
                (time.time() + delay_seconds, message.message_id, message.receipt),
            )

    def _dead_letter(self, message: Message, reason: str) -> None:
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT queue, body, attempts FROM messages WHERE id = ? AND receipt = ?",
                (message.message_id, message.receipt),
            ).fetchone()
            if row is None:
                return  # someone else holds the message now; theirs to decide
            conn.execute("DELETE FROM messages WHERE id = ?", (message.message_id,))
            conn.execute(
                "INSERT OR REPLACE INTO dead_letters (id, queue, body, reason, attempts, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (message.message_id, row[0], row[1], reason, row[2], time.time()),
            )

    def _dead_letters(self, queue: str) -> list[tuple[JSON, str]]:
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT body, reason FROM dead_letters WHERE queue = ? ORDER BY at, rowid",
                (queue,),
            ).fetchall()
        return [(json.loads(body), reason) for body, reason in rows]
