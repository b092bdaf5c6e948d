"""TableStore on one Tablestore table, every write inside a local transaction.

Layout: primary key (`pk`, `tbl`, `sk`), so the partition key is the port's partition key
and a transaction over several port tables of one partition is one local transaction.
Attributes: `data` (the item's JSON), `version`, and `expires_at` (seconds, absent when
the item never expires): Tablestore's own TTL is per table, so expiry is an attribute that
reads filter on.

Writes start a local transaction on the partition (which locks it), read the items under
the lock, decide the conditions, then write each row with a condition stating what was
read (row existence and `version`), and commit. Several writers of one partition meet
as OTSRowOperationConflict at the start and retry.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import tablestore as ots

from openimm.adapters.item_rules import apply_write, live, prefix_end
from openimm.ports import (
    ConditionFailed,
    Increment,
    PortError,
    Record,
    StorageUnavailable,
    TableStore,
    Write,
)

# Tablestore's limits: BatchGetRow reads at most 100 rows, an attribute holds at most 2 MB
_BATCH_GET_ROWS = 100
_MAX_ATTRIBUTE_BYTES = 2 * 1024 * 1024
_LOCK_WAIT_S = 30.0
# errors of the service, not of the request: the store is unusable for now
_OUTAGES = {
    "OTSServerBusy",
    "OTSServerUnavailable",
    "OTSInternalServerError",
    "OTSTimeout",
    "OTSPartitionUnavailable",
    "OTSNotEnoughCapacityUnit",
    "OTSOperationThrottled",
    "OTSQuotaExhausted",
    "OTSTableNotReady",
    "OTSAuthFailed",
    "OTSNoPermissionAccess",
}


class TablestoreTableStore(TableStore):
    """Items of every port table in one Tablestore table of primary key (pk, tbl, sk)."""

    # the Tablestore table's primary key, all strings; the first is the partition key
    primary_key_names = ("pk", "tbl", "sk")

    def __init__(self, client: Any, table_name: str = "openimm_items") -> None:
        self._client = client
        self.table_name = table_name
        self._table = table_name

    # ------------------------------------------------------------ reads

    def _get(self, table: str, pk: str, sk: str) -> Record | None:
        with _sdk_errors():
            _, row, _ = self._client.get_row(self._table, _key(pk, table, sk), max_version=1)
        return None if row is None else _record(row)

    def _batch_get(self, table: str, keys: list[tuple[str, str]]) -> list[Record]:
        unique = list(dict.fromkeys(keys))
        found: list[Record] = []
        for start in range(0, len(unique), _BATCH_GET_ROWS):
            chunk = [_key(pk, table, sk) for pk, sk in unique[start : start + _BATCH_GET_ROWS]]
            request = ots.BatchGetRowRequest()
            request.add(ots.TableInBatchGetRowItem(self._table, chunk, max_version=1))
            with _sdk_errors():
                response = self._client.batch_get_row(request)
            for item in response.get_result_by_table(self._table) or []:
                if not item.is_ok:
                    raise _port_error(item.error_code, item.error_message)
                if item.row is not None:
                    found.append(_record(item.row))
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
        start, end = _range(pk, table, sk_prefix, start_after, descending)
        direction = ots.Direction.BACKWARD if descending else ots.Direction.FORWARD
        # Expired items are filtered out by the service, so that a page is full when it can be.
        live = ots.SingleColumnCondition(
            "expires_at", time.time(), ots.ComparatorType.GREATER_THAN, pass_if_missing=True
        )
        records: list[Record] = []
        while start is not None and len(records) < limit:
            with _sdk_errors():
                _, start, rows, _ = self._client.get_range(
                    self._table,
                    direction,
                    start,
                    end,
                    limit=limit - len(records),
                    column_filter=live,
                    max_version=1,
                )
            for row in rows:
                record = _record(row)
                if descending and record.sk < sk_prefix:
                    return records
                if record.sk != start_after and record.sk.startswith(sk_prefix):
                    records.append(record)
        return records[:limit]

    # ------------------------------------------------------------ writes

    def _transact(self, writes: list[Write], now: float) -> None:
        self._write(writes, now)

    def _increment(self, write: Increment, now: float) -> Record:
        # The item is computed under the partition's lock: it is what this increment made.
        after = self._write([write], now)[0]
        assert after is not None
        return after

    def _write(self, writes: list[Write], now: float) -> list[Record | None]:
        """Apply the writes in one local transaction; the items as they are after."""
        pk = writes[0].pk
        with self._transaction(pk) as tid:
            stored = [self._read_locked(tid, w) for w in writes]
            after = [apply_write(w, live(s, now), now) for w, s in zip(writes, stored, strict=True)]
            for write, before, record in zip(writes, stored, after, strict=True):
                self._send(tid, write, before, record)
        return after

    def _read_locked(self, tid: str, write: Write) -> Record | None:
        with _sdk_errors():
            key = _key(write.pk, write.table, write.sk)
            _, row, _ = self._client.get_row(self._table, key, max_version=1, transaction_id=tid)
        return None if row is None else _record(row)

    def _send(self, tid: str, write: Write, before: Record | None, after: Record | None) -> None:
        # The condition states what was read, so a write that raced the lock still fails.
        if before is None:
            condition = ots.Condition(ots.RowExistenceExpectation.EXPECT_NOT_EXIST)
        else:
            condition = ots.Condition(
                ots.RowExistenceExpectation.EXPECT_EXIST,
                ots.SingleColumnCondition(
                    "version", before.version, ots.ComparatorType.EQUAL, pass_if_missing=False
                ),
            )
        key = _key(write.pk, write.table, write.sk)
        with _sdk_errors():
            if after is not None:
                row = ots.Row(key, _attributes(after))
                self._client.put_row(self._table, row, condition, transaction_id=tid)
            elif before is not None:
                self._client.delete_row(self._table, ots.Row(key), condition, transaction_id=tid)

    @contextmanager
    def _transaction(self, pk: str) -> Iterator[str]:
        tid = self._start(pk)
        try:
            yield tid
        except BaseException:
            # the lock goes anyway when the transaction times out: the first error matters
            with contextlib.suppress(ots.OTSError):
                self._client.abort_transaction(tid)
            raise
        with _sdk_errors():
            self._client.commit_transaction(tid)

    def _start(self, pk: str) -> str:
        """Lock the partition, waiting while another writer holds it."""
        deadline = time.monotonic() + _LOCK_WAIT_S
        pause = 0.005
        while True:
            try:
                tid: str = self._client.start_local_transaction(self._table, [("pk", pk)])
                return tid
            except ots.OTSServiceError as exc:
                if exc.code != "OTSRowOperationConflict" or time.monotonic() > deadline:
                    raise _port_error(exc.code, exc.message) from exc
            except ots.OTSClientError as exc:
                raise StorageUnavailable(f"Tablestore: {exc.message}") from exc
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 0.2)


def _key(pk: str, table: str, sk: str) -> list[tuple[str, Any]]:
    return [("pk", pk), ("tbl", table), ("sk", sk)]


def _range(
    pk: str, table: str, prefix: str, start_after: str | None, descending: bool
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """GetRange's inclusive start and exclusive end for a prefix and a page's last key."""
    low: Any = prefix or ots.INF_MIN
    high: Any = prefix_end(prefix) or ots.INF_MAX
    if descending:
        # The start is inclusive: the row at `start_after` (or at the prefix's end) is
        # read and dropped; the end is the partition's start, the walk stops below prefix.
        start = high if start_after is None else start_after
        return _key(pk, table, start), _key(pk, table, ots.INF_MIN)
    if start_after is not None:
        after = start_after + "\x00"  # the smallest key above start_after
        low = after if low is ots.INF_MIN else max(low, after)
    return _key(pk, table, low), _key(pk, table, high)


def _attributes(record: Record) -> list[tuple[str, Any]]:
    data = json.dumps(record.data, separators=(",", ":"), ensure_ascii=False)
    if len(data.encode()) > _MAX_ATTRIBUTE_BYTES:
        raise ValueError(f"item {record.pk}/{record.sk} is over Tablestore's 2 MB per attribute")
    columns: list[tuple[str, Any]] = [("data", data), ("version", record.version)]
    if record.expires_at is not None:
        columns.append(("expires_at", float(record.expires_at)))
    return columns


def _record(row: Any) -> Record:
    keys = dict(row.primary_key)
    # attribute columns come back as (name, value, timestamp)
    attributes = {column[0]: column[1] for column in row.attribute_columns}
    expires = attributes.get("expires_at")
    return Record(
        pk=keys["pk"],
        sk=keys["sk"],
        data=json.loads(attributes["data"]),
        version=int(attributes["version"]),
        expires_at=None if expires is None else float(expires),
    )


@contextmanager
def _sdk_errors() -> Iterator[None]:
    """Translate the SDK's errors into port errors, in one place."""
    try:
        yield
    except ots.OTSServiceError as exc:
        raise _port_error(exc.code, exc.message) from exc
    except ots.OTSClientError as exc:
        raise StorageUnavailable(f"Tablestore: {exc.message}") from exc


def _port_error(code: str, message: str) -> PortError:
    if code == "OTSConditionCheckFail":
        return ConditionFailed(f"Tablestore: {message}")
    if code in _OUTAGES:
        return StorageUnavailable(f"Tablestore {code}: {message}")
    return PortError(f"Tablestore {code}: {message}")
