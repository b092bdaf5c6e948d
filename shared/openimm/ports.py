"""The four ports: TableStore, BlobStore, Queue, Topic.

Each port is a small abstract class whose public methods hold the rules (key checks,
conditions, expiry, URI parsing); an adapter implements a few private methods and
translates its SDK's errors into the port errors below, in one place. The shapes fit
Tablestore and DynamoDB: items addressed by (partition key, sort key), conditional
writes, atomic increments, range reads by sort-key prefix, single-partition
transactions, no joins.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

JSON = dict[str, Any]


# ---------------------------------------------------------------- errors


class PortError(Exception):
    """Base of the errors a port raises; no SDK exception crosses a port."""


class ConditionFailed(PortError):
    """A conditional write found the item in another state than required."""


class BlobNotFound(PortError):
    """No object at that URI."""


class BlobTooLarge(PortError):
    """The object is larger than the caller allowed."""


class InvalidUri(PortError):
    """The URI is not `oss://bucket/key` (or `s3://`), or its key tries to escape."""


class ForeignObject(PortError):
    """An object OpenIMM did not write is where it was asked to write: never replaced."""


class StorageUnavailable(PortError):
    """The store cannot be used now (disk full, read-only, unreachable): no item's fault."""


# ---------------------------------------------------------------- table


@dataclass(frozen=True)
class Record:
    """One stored item: its keys, its optimistic-lock version and its attributes."""

    pk: str
    sk: str
    data: JSON
    version: int = 1
    expires_at: float | None = None


@dataclass(frozen=True)
class Put:
    """Write a whole item. `if_absent` and `if_version` are conditions on the stored item."""

    table: str
    pk: str
    sk: str
    data: JSON
    if_absent: bool = False
    if_version: int | None = None
    ttl_seconds: float | None = None


@dataclass(frozen=True)
class Increment:
    """Add `delta` to numeric attributes of an item (created, at zero, if absent)."""

    table: str
    pk: str
    sk: str
    deltas: Mapping[str, int]


@dataclass(frozen=True)
class Delete:
    table: str
    pk: str
    sk: str
    if_version: int | None = None


Write = Put | Increment | Delete


@dataclass(frozen=True)
class Page:
    records: list[Record]
    next_token: str | None = None


_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}\Z")


class TableStore(ABC):
    """Items in named tables, addressed by partition and sort key."""

    max_transaction_writes = 25

    def get(self, table: str, pk: str, sk: str) -> Record | None:
        """The item, or None when absent or expired."""
        self._check(table, pk, sk)
        record = self._get(table, pk, sk)
        if record is None or _expired(record):
            return None
        return record

    def batch_get(self, table: str, keys: Sequence[tuple[str, str]]) -> list[Record]:
        """The items found among `keys`, in the order asked; absent ones left out."""
        for pk, sk in keys:
            self._check(table, pk, sk)
        found = {(r.pk, r.sk): r for r in self._batch_get(table, list(keys))}
        return [found[k] for k in keys if k in found and not _expired(found[k])]

    def query(
        self,
        table: str,
        pk: str,
        *,
        sk_prefix: str = "",
        start_after: str | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> Page:
        """Items of one partition whose sort key starts with `sk_prefix`, in sort-key order."""
        self._check(table, pk, sk_prefix or "-")
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be 1..1000")
        # Paging is decided on what the adapter returned, before expired items are
        # dropped: otherwise an expired item on a page would end the scan early.
        raw = self._query(table, pk, sk_prefix, start_after, limit + 1, descending)
        token = raw[limit - 1].sk if len(raw) > limit else None
        return Page([r for r in raw[:limit] if not _expired(r)], token)

    def scan_partition(self, table: str, pk: str, *, sk_prefix: str = "") -> Iterator[Record]:
        """Every item of one partition (with that prefix), page by page."""
        token: str | None = None
        while True:
            page = self.query(table, pk, sk_prefix=sk_prefix, start_after=token, limit=1000)
            yield from page.records
            if page.next_token is None:
                return
            token = page.next_token

    def put(
        self,
        table: str,
        pk: str,
        sk: str,
        data: JSON,
        *,
        if_absent: bool = False,
        if_version: int | None = None,
        ttl_seconds: float | None = None,
    ) -> None:
        """Write an item; raises ConditionFailed when a condition does not hold."""
        self.transact([Put(table, pk, sk, data, if_absent, if_version, ttl_seconds)])

    def increment(self, table: str, pk: str, sk: str, **deltas: int) -> Record:
        """Atomically add to numeric attributes and return the item as it is after."""
        self._check(table, pk, sk)
        return self._increment(Increment(table, pk, sk, deltas), time.time())

    def delete(self, table: str, pk: str, sk: str, *, if_version: int | None = None) -> None:
        """Remove an item (absent is fine unless `if_version` is given)."""
        self.transact([Delete(table, pk, sk, if_version)])

    def transact(self, writes: Sequence[Write]) -> None:
        """Apply all writes or none; every write must be in the same partition."""
        if not writes:
            return
        if len(writes) > self.max_transaction_writes:
            raise ValueError(f"at most {self.max_transaction_writes} writes in a transaction")
        partitions = {w.pk for w in writes}
        if len(partitions) != 1:
            raise ValueError("a transaction stays inside one partition")
        # DynamoDB refuses two writes to one item in a transaction; refuse it everywhere.
        if len({(w.table, w.sk) for w in writes}) != len(writes):
            raise ValueError("at most one write per item in a transaction")
        for w in writes:
            self._check(w.table, w.pk, w.sk)
        self._transact(list(writes), time.time())

    @staticmethod
    def _check(table: str, pk: str, sk: str) -> None:
        if not _NAME.match(table):
            raise ValueError(f"bad table name {table!r}")
        # bytes, as Tablestore (1 KB) and DynamoDB (sort keys 1024) count them
        if not pk or not sk or len(pk.encode()) > 1024 or len(sk.encode()) > 1024:
            raise ValueError("keys must be 1..1024 bytes in UTF-8")

    # an adapter implements these
    @abstractmethod
    def _get(self, table: str, pk: str, sk: str) -> Record | None: ...

    @abstractmethod
    def _batch_get(self, table: str, keys: list[tuple[str, str]]) -> list[Record]: ...

    @abstractmethod
    def _query(
        self,
        table: str,
        pk: str,
        sk_prefix: str,
        start_after: str | None,
        limit: int,
        descending: bool,
    ) -> list[Record]: ...

    @abstractmethod
    def _transact(self, writes: list[Write], now: float) -> None:
        """Apply atomically; an expired item counts as absent; raise ConditionFailed."""

    def _increment(self, write: Increment, now: float) -> Record:
        # A read after the write may already include other callers' increments, so a
        # counter handing out numbers would give one twice: adapters that can return
        # the new item from the write itself (DynamoDB ALL_NEW, SQLite) override this.
        self._transact([write], now)
        record = self._get(write.table, write.pk, write.sk)
        assert record is not None
        return record


def _expired(record: Record) -> bool:
    return record.expires_at is not None and record.expires_at <= time.time()


# ---------------------------------------------------------------- blobs


@dataclass(frozen=True)
class BlobUri:
    scheme: str
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9\-.]{1,61}[a-z0-9]\Z")


def parse_blob_uri(uri: str) -> BlobUri:
    """Split `oss://bucket/key` (or `s3://`); reject keys that could escape their bucket."""
    match = re.match(r"^(oss|s3)://([^/]+)/(.+)\Z", uri or "")
    if not match:
        raise InvalidUri(f"URI must look like oss://bucket/object: {uri!r}")
    scheme, bucket, key = match.groups()
    if not _BUCKET.match(bucket):
        raise InvalidUri(f"bad bucket name in {uri!r}")
    parts = key.split("/")
    if (
        len(key.encode()) > 1023
        or "\x00" in key
        or "\\" in key
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise InvalidUri(f"bad object key in {uri!r}")
    return BlobUri(scheme, bucket, key)


@dataclass(frozen=True)
class BlobInfo:
    uri: str
    size: int
    etag: str
    modified: float
    content_type: str | None = None
    # written by `write_output` and unchanged since: OpenIMM may replace it
    openimm_output: bool = False


class BlobStore(ABC):
    """Objects addressed by `oss://bucket/key` URIs."""

    def read(self, uri: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; BlobTooLarge when it exceeds `max_bytes`."""
        parsed = parse_blob_uri(uri)
        if max_bytes is not None:
            info = self._head(parsed)
            if info.size > max_bytes:
                raise BlobTooLarge(f"{uri} is {info.size} bytes, more than {max_bytes}")
        return self._read(parsed)

    def head(self, uri: str) -> BlobInfo:
        """Size, etag and modification time; BlobNotFound when absent."""
        return self._head(parse_blob_uri(uri))

    def read_mapped(self, uri: str) -> bytes | mmap.mmap:
        """The object's bytes, mapped from its file where it is one on this machine.

        Only for objects replaced whole, never rewritten in place (OpenIMM's own work
        files): a file cut short under a map faults its reader. A map costs no memory
        of its own: a 270 MB face shard segment read took 0.17 s, nearly all of it
        filling fresh memory.
        """
        parsed = parse_blob_uri(uri)
        own = self._own_file(parsed)
        if own is not None:
            try:
                with own.open("rb") as file:
                    if os.fstat(file.fileno()).st_size:
                        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            except OSError:
                pass  # gone or unreadable meanwhile: the read says which, as a port error
        return self._read(parsed)

    @contextmanager
    def local_file(self, uri: str, *, max_bytes: int | None = None) -> Iterator[Path]:
        """A file on this machine with the object's bytes, for readers that need a path
        (FFmpeg), never the whole object in memory; BlobTooLarge beyond `max_bytes`.

        An object already on this disk is its own file; any other is streamed in
        chunks to a private temporary file, counted as it comes (the object may have
        grown since its size was read), and deleted on leaving the block.
        """
        parsed = parse_blob_uri(uri)
        if max_bytes is not None:
            info = self._head(parsed)
            if info.size > max_bytes:
                raise BlobTooLarge(f"{uri} is {info.size} bytes, more than {max_bytes}")
        own = self._own_file(parsed)
        if own is not None:
            # the size read first may be stale here too: the file handed out is measured
            if max_bytes is not None and own.stat().st_size > max_bytes:
                raise BlobTooLarge(f"{uri} is more than {max_bytes} bytes")
            yield own
            return
        # the key's suffix stays: some readers guess a format from it
        suffix = PurePosixPath(parsed.key).suffix
        suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
        with tempfile.TemporaryDirectory(prefix="openimm-blob-") as folder:
            path = Path(folder) / f"object{suffix}"
            written = 0
            with path.open("wb") as out:
                for chunk in self._chunks(parsed):
                    written += len(chunk)
                    if max_bytes is not None and written > max_bytes:
                        raise BlobTooLarge(f"{uri} is more than {max_bytes} bytes")
                    out.write(chunk)
            yield path

    def write(self, uri: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store the object whole (readers never see half of it)."""
        self._write(parse_blob_uri(uri), data, content_type)

    def write_output(self, uri: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store an output where a caller asked for it, marked as OpenIMM's.

        Raises ForeignObject rather than replace an object OpenIMM did not write.
        """
        parsed = parse_blob_uri(uri)
        self._write_output(parsed, data, content_type, self._replaceable(parsed))

    def check_output(self, uri: str) -> None:
        """Raise ForeignObject when `write_output(uri, ...)` would be refused now."""
        self._replaceable(parse_blob_uri(uri))

    def _replaceable(self, uri: BlobUri) -> BlobInfo | None:
        """The object OpenIMM may replace there (None: absent); ForeignObject if another's."""
        try:
            present = self._head(uri)
        except BlobNotFound:
            return None
        if not present.openimm_output:
            raise ForeignObject(f"{uri} exists and was not written by OpenIMM")
        return present

    def remove(self, uri: str) -> None:
        """Delete the object; absent is fine."""
        self._remove(parse_blob_uri(uri))

    def list(self, prefix_uri: str) -> Iterator[BlobInfo]:
        """Objects whose URI starts with `prefix_uri` (`oss://bucket/` lists a bucket)."""
        match = re.match(r"^(oss|s3)://([^/]+)/(.*)\Z", prefix_uri)
        if not match:
            raise InvalidUri(f"bad prefix {prefix_uri!r}")
        scheme, bucket, prefix = match.groups()
        if (
            not _BUCKET.match(bucket)
            or ".." in prefix.split("/")
            or "\x00" in prefix
            or "\\" in prefix
        ):
            raise InvalidUri(f"bad prefix {prefix_uri!r}")
        yield from self._list(scheme, bucket, prefix)

    @abstractmethod
    def _read(self, uri: BlobUri) -> bytes: ...

    @abstractmethod
    def _chunks(self, uri: BlobUri) -> Iterator[bytes]:
        """The object's bytes in pieces of about a megabyte; BlobNotFound when absent."""

    def _own_file(self, uri: BlobUri) -> Path | None:
        """The object's own file when it is one on this machine (None: not a file here)."""
        return None

    @abstractmethod
    def _head(self, uri: BlobUri) -> BlobInfo: ...

    @abstractmethod
    def _write(self, uri: BlobUri, data: bytes, content_type: str | None) -> None: ...

    @abstractmethod
    def _write_output(
        self, uri: BlobUri, data: bytes, content_type: str | None, replacing: BlobInfo | None
    ) -> None:
        """Write and mark; only if the object is still `replacing` (None: still absent)."""

    @abstractmethod
    def _remove(self, uri: BlobUri) -> None: ...

    @abstractmethod
    def _list(self, scheme: str, bucket: str, prefix: str) -> Iterator[BlobInfo]: ...


# ---------------------------------------------------------------- queue


@dataclass(frozen=True)
class Message:
    """A received message: its body, how often it was delivered, and its receipt."""

    queue: str
    body: JSON
    attempts: int
    receipt: str
    message_id: str = ""


# How a dead letter keeps the reason it was given up with, for whatever reads the
# dead-letter queue (the dead-letter function): in a message attribute of this name
# where the queue has attributes (SQS), else wrapped as {DEAD_LETTER: {queue, reason,
# body}} (MNS, whose triggers deliver the body alone).
DEAD_LETTER_REASON = "openimm-reason"
DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class WrappedLetter:
    """A dead letter whose reason travels in its body: {DEAD_LETTER: {queue, reason, body}}."""

    queue: str
    reason: str
    body: Any

    def to_json(self) -> JSON:
        return {DEAD_LETTER: {"queue": self.queue, "reason": self.reason, "body": self.body}}

    @staticmethod
    def from_json(value: Any) -> WrappedLetter | None:
        """The letter `value` wraps, or None when it is not one."""
        inner = value.get(DEAD_LETTER) if isinstance(value, Mapping) else None
        if not isinstance(inner, Mapping):
            return None
        return WrappedLetter(
            str(inner.get("queue") or ""), str(inner.get("reason") or ""), inner.get("body")
        )


class Queue(ABC):
    """Named queues with at-least-once delivery, visibility timeouts and dead letters."""

    max_body_bytes = 64 * 1024

    def send(self, queue: str, body: JSON, *, delay_seconds: float = 0) -> str:
        """Enqueue a JSON body; returns the message id."""
        if not _NAME.match(queue):
            raise ValueError(f"bad queue name {queue!r}")
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True)
        if len(raw.encode()) > self.max_body_bytes:
            raise ValueError("message body too large")
        return self._send(queue, raw, max(0.0, delay_seconds))

    def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout: float = 60
    ) -> list[Message]:
        """Take up to `max_messages` visible messages, hidden for `visibility_timeout` s."""
        return self._receive(queue, max_messages, visibility_timeout)

    def ack(self, message: Message) -> None:
        """The message is done: remove it."""
        self._ack(message)

    def retry(self, message: Message, *, delay_seconds: float = 0) -> None:
        """Make the message visible again after `delay_seconds`."""
        self._retry(message, max(0.0, delay_seconds))

    def dead_letter(self, message: Message, reason: str) -> None:
        """Move the message to the queue's dead letters with the reason."""
        self._dead_letter(message, reason[:2000])

    def dead_letters(self, queue: str) -> list[tuple[JSON, str]]:
        """The bodies and reasons of the messages that were given up on."""
        return self._dead_letters(queue)

    @abstractmethod
    def _send(self, queue: str, raw_body: str, delay_seconds: float) -> str: ...

    @abstractmethod
    def _receive(
        self, queue: str, max_messages: int, visibility_timeout: float
    ) -> list[Message]: ...

    @abstractmethod
    def _ack(self, message: Message) -> None: ...

    @abstractmethod
    def _retry(self, message: Message, delay_seconds: float) -> None: ...

    @abstractmethod
    def _dead_letter(self, message: Message, reason: str) -> None: ...

    @abstractmethod
    def _dead_letters(self, queue: str) -> list[tuple[JSON, str]]: ...


# ---------------------------------------------------------------- topic


@dataclass(frozen=True)
class Envelope:
    """An IMM notification: `content` is the JSON string of the task's result."""

    id: str
    source: str
    type: str
    subject: str
    time: str
    content: str
    extra: JSON = field(default_factory=dict)

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "source": self.source,
            "specversion": "1.0",
            "type": self.type,
            "datacontenttype": "application/json;charset=utf-8",
            "subject": self.subject,
            "time": self.time,
            "content": self.content,
            **self.extra,
        }


class Topic(ABC):
    """Where completion notifications go (MNS topic, SNS, a local file)."""

    def publish(self, topic: str, envelope: Envelope) -> None:
        """Deliver one notification to the named topic."""
        if not _NAME.match(topic):
            raise ValueError(f"bad topic name {topic!r}")
        self._publish(topic, envelope.to_json())

    @abstractmethod
    def _publish(self, topic: str, message: JSON) -> None: ...
