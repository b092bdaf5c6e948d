"""Tablestore's documented behaviour for the calls OpenIMM makes, answering a real OTSClient.

The model replaces `OTSClient._request_helper`, the one method through which every API
call goes to the network: the SDK's public methods run as they are, and each request is
still encoded by the SDK's own encoder (protobuf and PlainBuffer), so a malformed call
fails here as it would before reaching the cloud. What comes back is what the SDK's
decoder returns for that API. Errors are the SDK's OTSServiceError with the service's
codes and HTTP statuses.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import tablestore as ots

_MAX_PK_STRING_BYTES = 1024
_MAX_ATTRIBUTE_BYTES = 2 * 1024 * 1024
_MAX_BATCH_GET_ROWS = 100
_MAX_RANGE_ROWS = 5000
_TRANSACTION_TIMEOUT_S = 60.0

Key = tuple[Any, ...]
Columns = dict[str, Any]


@dataclass
class _Transaction:
    table: str
    partition: Any
    started: float
    writes: dict[Key, Columns | None] = field(default_factory=dict)


def _error(status: int, code: str, message: str) -> ots.OTSServiceError:
    return ots.OTSServiceError(status, code, message, request_id=uuid.uuid4().hex)


def _order(value: Any) -> tuple[int, bytes | int | float]:
    """Primary key values in the service's order: INF_MIN < values < INF_MAX."""
    if value is ots.INF_MIN:
        return (0, b"")
    if value is ots.INF_MAX:
        return (2, b"")
    if isinstance(value, str):
        return (1, value.encode())  # strings compare as UTF-8 bytes
    return (1, value)


def _sort_key(key: Key) -> tuple[tuple[int, bytes | int | float], ...]:
    return tuple(_order(v) for v in key)


_COMPARE = {
    ots.ComparatorType.EQUAL: lambda a, b: a == b,
    ots.ComparatorType.NOT_EQUAL: lambda a, b: a != b,
    ots.ComparatorType.GREATER_THAN: lambda a, b: a > b,
    ots.ComparatorType.GREATER_EQUAL: lambda a, b: a >= b,
    ots.ComparatorType.LESS_THAN: lambda a, b: a < b,
    ots.ComparatorType.LESS_EQUAL: lambda a, b: a <= b,
}


def _passes(condition: Any, columns: Columns | None) -> bool:
    """A column condition (or filter) on a row; a missing row has every column missing."""
    if condition is None:
        return True
    if isinstance(condition, ots.CompositeColumnCondition):
        results = [_passes(c, columns) for c in condition.sub_conditions]
        if condition.combinator == ots.LogicalOperator.AND:
            return all(results)
        if condition.combinator == ots.LogicalOperator.OR:
            return any(results)
        return not results[0]
    present = columns is not None and condition.column_name in columns
    if not present:
        return bool(condition.pass_if_missing)
    assert columns is not None
    return bool(
        _COMPARE[condition.comparator](columns[condition.column_name], condition.column_value)
    )


class TablestoreService:
    """Tables, rows and local transactions of one Tablestore instance, in memory."""

    def __init__(self, client: Any, tables: dict[str, list[str]]) -> None:
        self._client = client
        self._schemas = tables
        self._rows: dict[str, dict[Key, Columns]] = {name: {} for name in tables}
        self._transactions: dict[str, _Transaction] = {}
        self._lock = threading.Lock()

    @classmethod
    def attach(cls, client: Any, tables: dict[str, list[str]]) -> TablestoreService:
        """Answer the client's calls from now on; `client._request_helper` records them."""
        service = cls(client, tables)
        client._request_helper = mock.Mock(side_effect=service.request)
        return service

    def request(self, api_name: str, *args: Any, **kwargs: Any) -> Any:
        """What the service answers to one API call, decoded as the SDK would."""
        self._client.protocol.encoder.encode_request(api_name, *args, **kwargs).SerializeToString()
        # the API's name on the wire, GetRange, is the method _api_get_range
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", api_name).lower()
        handler = getattr(self, f"_api_{snake}", None)
        if handler is None:
            raise _error(400, "OTSUnsupportOperation", f"{api_name} is not modelled")
        with self._lock:
            return handler(*args, **kwargs)

    def rows(self, table: str) -> dict[Key, Columns]:
        """The committed rows of a table (for assertions)."""
        with self._lock:
            return dict(self._rows[table])

    # ------------------------------------------------------------ helpers

    def _table(self, name: str) -> dict[Key, Columns]:
        if name not in self._rows:
            raise _error(404, "OTSObjectNotExist", "Requested table does not exist.")
        return self._rows[name]

    def _key(self, table: str, primary_key: list[tuple[str, Any]], *, bounds: bool = False) -> Key:
        names = [name for name, *_ in primary_key]
        if names != self._schemas[table]:
            raise _error(400, "OTSParameterInvalid", "Validate PK name fail.")
        for _, value in primary_key:
            if bounds and value in (ots.INF_MIN, ots.INF_MAX):
                continue
            if not isinstance(value, str):
                raise _error(400, "OTSParameterInvalid", "Validate PK type fail.")
            if len(value.encode()) > _MAX_PK_STRING_BYTES:
                raise _error(400, "OTSParameterInvalid", "The length of pk string exceeds 1024.")
        return tuple(value for _, value in primary_key)

    def _live_transactions(self) -> None:
        # A local transaction not committed within 60 s is aborted by the service.
        now = time.monotonic()
        for tid, txn in list(self._transactions.items()):
            if now - txn.started > _TRANSACTION_TIMEOUT_S:
                del self._transactions[tid]

    def _transaction(self, tid: str | None, table: str, key: Key) -> _Transaction | None:
        """The transaction a row call runs in; a locked partition refuses other writers."""
        self._live_transactions()
        if tid is None:
            for txn in self._transactions.values():
                if txn.table == table and txn.partition == key[0]:
                    raise _error(409, "OTSRowOperationConflict", "Data is being modified.")
            return None
        txn = self._transactions.get(tid)
        if txn is None:
            raise _error(404, "OTSSessionNotExist", "Transaction does not exist or timed out.")
        if txn.table != table or txn.partition != key[0]:
            raise _error(400, "OTSParameterInvalid", "Row is outside the transaction's partition.")
        return txn

    def _view(self, table: str, key: Key, txn: _Transaction | None) -> Columns | None:
        if txn is not None and key in txn.writes:
            return txn.writes[key]
        return self._rows[table].get(key)

    def _check(self, condition: Any, current: Columns | None) -> None:
        expect = condition.row_existence_expectation if condition else "IGNORE"
        failed = (
            (expect == ots.RowExistenceExpectation.EXPECT_EXIST and current is None)
            or (expect == ots.RowExistenceExpectation.EXPECT_NOT_EXIST and current is not None)
            or (condition is not None and not _passes(condition.column_condition, current))
        )
        if failed:
            raise _error(403, "OTSConditionCheckFail", "Condition check failed.")

    def _store(
        self, table: str, key: Key, columns: Columns | None, txn: _Transaction | None
    ) -> None:
        if txn is not None:
            txn.writes[key] = columns
        elif columns is None:
            self._rows[table].pop(key, None)
        else:
            self._rows[table][key] = columns

    def _row(self, table: str, key: Key, columns: Columns) -> ots.Row:
        stamp = int(time.time() * 1000)
        primary = list(zip(self._schemas[table], key, strict=True))
        return ots.Row(primary, [(name, value, stamp) for name, value in columns.items()])

    # ------------------------------------------------------------ APIs

    def _api_get_row(
        self, table: str, primary_key: Any, _columns: Any, column_filter: Any, *rest: Any
    ) -> Any:
        transaction_id = rest[-1]  # the SDK passes the transaction last
        self._table(table)
        key = self._key(table, primary_key)
        txn = self._transaction(transaction_id, table, key) if transaction_id else None
        columns = self._view(table, key, txn)
        if columns is None or not _passes(column_filter, columns):
            return ots.CapacityUnit(1, 0), None, None
        return ots.CapacityUnit(1, 0), self._row(table, key, columns), None

    def _api_put_row(
        self, table: str, row: Any, condition: Any, return_type: Any, transaction_id: str | None
    ) -> Any:
        self._table(table)
        key = self._key(table, row.primary_key)
        columns = {name: value for name, value, *_ in row.attribute_columns}
        for value in columns.values():
            if isinstance(value, str | bytes) and len(value) > _MAX_ATTRIBUTE_BYTES:
                raise _error(400, "OTSParameterInvalid", "The length of attribute exceeds 2MB.")
        txn = self._transaction(transaction_id, table, key)
        self._check(condition, self._view(table, key, txn))
        self._store(table, key, columns, txn)
        return ots.CapacityUnit(0, 1), None

    def _api_delete_row(
        self,
        table: str,
        primary_key: Any,
        condition: Any,
        return_type: Any,
        transaction_id: str | None,
    ) -> Any:
        self._table(table)
        key = self._key(table, primary_key)
        txn = self._transaction(transaction_id, table, key)
        self._check(condition, self._view(table, key, txn))
        self._store(table, key, None, txn)
        return ots.CapacityUnit(0, 1), None

    def _api_batch_get_row(self, request: Any) -> Any:
        if sum(len(item.primary_keys) for item in request.items.values()) > _MAX_BATCH_GET_ROWS:
            raise _error(400, "OTSParameterInvalid", "Rows count exceeds the upper limit: 100.")
        result: dict[str, list[ots.RowDataItem]] = {}
        for table, item in request.items.items():
            rows = self._table(table)
            answers = []
            for primary_key in item.primary_keys:
                key = self._key(table, primary_key)
                columns = rows.get(key)
                found = columns is not None and _passes(item.column_filter, columns)
                row = self._row(table, key, columns) if found and columns is not None else None
                answers.append(
                    ots.RowDataItem(
                        True,
                        None,
                        None,
                        table,
                        ots.CapacityUnit(1, 0),
                        row.primary_key if row else None,
                        row.attribute_columns if row else None,
                    )
                )
            result[table] = answers
        return result

    def _api_get_range(
        self,
        table: str,
        direction: str,
        start: Any,
        end: Any,
        _columns: Any,
        limit: int | None,
        column_filter: Any,
        *_versions_and_wide_rows: Any,
    ) -> Any:
        rows = self._table(table)
        low, high = self._key(table, start, bounds=True), self._key(table, end, bounds=True)
        backward = direction == ots.Direction.BACKWARD
        lo, hi = _sort_key(low), _sort_key(high)
        if backward:
            inside = [k for k in rows if hi < _sort_key(k) <= lo]
        else:
            inside = [k for k in rows if lo <= _sort_key(k) < hi]
        inside.sort(key=_sort_key, reverse=backward)
        # The limit counts rows read; the filter then drops some, so a page may be short
        # (even empty) with a next start key: callers page on that key, not on the count.
        count = min(limit or _MAX_RANGE_ROWS, _MAX_RANGE_ROWS)
        scanned, rest = inside[:count], inside[count:]
        page = [self._row(table, k, rows[k]) for k in scanned if _passes(column_filter, rows[k])]
        next_start = list(zip(self._schemas[table], rest[0], strict=True)) if rest else None
        return ots.CapacityUnit(len(scanned), 0), next_start, page, None

    def _api_start_local_transaction(self, table: str, key: Any) -> str:
        self._table(table)
        if [name for name, _ in key] != self._schemas[table][:1]:
            raise _error(400, "OTSParameterInvalid", "The key must be the partition key.")
        self._live_transactions()
        partition = key[0][1]
        if any(t.table == table and t.partition == partition for t in self._transactions.values()):
            raise _error(409, "OTSRowOperationConflict", "Data is being modified.")
        tid = uuid.uuid4().hex.upper()
        self._transactions[tid] = _Transaction(table, partition, time.monotonic())
        return tid

    def _api_commit_transaction(self, transaction_id: str) -> None:
        self._live_transactions()
        txn = self._transactions.pop(transaction_id, None)
        if txn is None:
            raise _error(404, "OTSSessionNotExist", "Transaction does not exist or timed out.")
        for key, columns in txn.writes.items():
            self._store(txn.table, key, columns, None)

    def _api_abort_transaction(self, transaction_id: str) -> None:
        if self._transactions.pop(transaction_id, None) is None:
            raise _error(404, "OTSSessionNotExist", "Transaction does not exist or timed out.")
