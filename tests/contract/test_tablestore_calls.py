"""The Tablestore adapter's exact SDK calls, and the service model's documented rules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import tablestore as ots

from aliyun_models.tablestore_service import TablestoreService
from openimm.adapters.aliyun.tablestore_table import TablestoreTableStore
from openimm.ports import ConditionFailed, PortError, Put, StorageUnavailable

T = "things"
TABLE = "openimm_items"


@pytest.fixture
def client() -> Any:
    return ots.OTSClient(
        "https://openimm-test.cn-hangzhou.ots.aliyuncs.com", "key-id", "secret", "openimm-test"
    )


@pytest.fixture
def service(client: Any) -> Iterator[TablestoreService]:
    yield TablestoreService.attach(client, {TABLE: ["pk", "tbl", "sk"]})


@pytest.fixture
def store(client: Any, service: TablestoreService) -> TablestoreTableStore:
    return TablestoreTableStore(client, TABLE)


def _apis(client: Any) -> list[str]:
    return [c.args[0] for c in client._request_helper.call_args_list]


def test_a_put_is_a_local_transaction_with_a_row_condition(
    client: Any, store: TablestoreTableStore, service: TablestoreService
) -> None:
    store.put(T, "p", "s", {"v": 1}, if_absent=True)
    assert _apis(client) == ["StartLocalTransaction", "GetRow", "PutRow", "CommitTransaction"]
    calls = client._request_helper.call_args_list
    assert calls[0].args[1:] == (TABLE, [("pk", "p")])
    tid = calls[1].args[-1]
    _, table, row, condition, _, put_tid = calls[2].args
    assert (table, put_tid) == (TABLE, tid)
    assert row.primary_key == [("pk", "p"), ("tbl", T), ("sk", "s")]
    assert row.attribute_columns == [("data", '{"v":1}'), ("version", 1)]
    assert condition.row_existence_expectation == ots.RowExistenceExpectation.EXPECT_NOT_EXIST
    assert calls[3].args == ("CommitTransaction", tid)
    stored = service.rows(TABLE)[("p", T, "s")]
    assert stored == {"data": '{"v":1}', "version": 1}

    client._request_helper.reset_mock()
    store.put(T, "p", "s", {"v": 2}, ttl_seconds=60)
    _, _, row, condition, _, _ = client._request_helper.call_args_list[2].args
    assert condition.row_existence_expectation == ots.RowExistenceExpectation.EXPECT_EXIST
    column = condition.column_condition
    assert (column.column_name, column.column_value, column.comparator) == (
        "version",
        1,
        ots.ComparatorType.EQUAL,
    )
    assert column.pass_if_missing is False
    assert [name for name, _ in row.attribute_columns] == ["data", "version", "expires_at"]


def test_a_failed_condition_aborts_and_unlocks(client: Any, store: TablestoreTableStore) -> None:
    store.put(T, "p", "s", {"v": 1})
    client._request_helper.reset_mock()
    with pytest.raises(ConditionFailed):
        store.put(T, "p", "s", {"v": 2}, if_absent=True)
    assert _apis(client) == ["StartLocalTransaction", "GetRow", "AbortTransaction"]
    store.put(T, "p", "other", {})  # the partition is free again


def test_the_service_refuses_a_write_whose_condition_fails(
    client: Any, store: TablestoreTableStore
) -> None:
    store.put(T, "p", "s", {"v": 1})
    row = ots.Row([("pk", "p"), ("tbl", T), ("sk", "s")], [("data", "{}"), ("version", 1)])
    absent = ots.Condition(ots.RowExistenceExpectation.EXPECT_NOT_EXIST)
    with pytest.raises(ots.OTSServiceError) as raised:
        client.put_row(TABLE, row, absent)
    assert (raised.value.code, raised.value.http_status) == ("OTSConditionCheckFail", 403)


def test_a_locked_partition_refuses_other_writers_until_commit(
    client: Any, store: TablestoreTableStore
) -> None:
    tid = client.start_local_transaction(TABLE, [("pk", "p")])
    row = ots.Row([("pk", "p"), ("tbl", T), ("sk", "s")], [("data", "{}"), ("version", 1)])
    with pytest.raises(ots.OTSServiceError) as raised:
        client.put_row(TABLE, row)
    assert raised.value.code == "OTSRowOperationConflict"
    client.put_row(TABLE, row, transaction_id=tid)
    assert store.get(T, "p", "s") is None  # not visible before the commit
    client.commit_transaction(tid)
    record = store.get(T, "p", "s")
    assert record is not None and record.version == 1


def test_get_range_pages_on_the_next_start_key(client: Any, store: TablestoreTableStore) -> None:
    store.transact([Put(T, "p", f"k{i}", {"i": i}) for i in range(7)])
    client._request_helper.reset_mock()
    page = store.query(T, "p", sk_prefix="k", limit=5)
    assert [r.sk for r in page.records] == [f"k{i}" for i in range(5)]
    ranges = [c.args for c in client._request_helper.call_args_list]
    assert [r[0] for r in ranges] == ["GetRange"]
    _, table, direction, start, end, _, limit, *_ = ranges[0]
    assert (table, direction, limit) == (TABLE, ots.Direction.FORWARD, 6)
    assert start == [("pk", "p"), ("tbl", T), ("sk", "k")]
    assert end == [("pk", "p"), ("tbl", T), ("sk", "l")]


def test_the_expiry_filter_leaves_short_pages_that_the_adapter_follows(
    client: Any, store: TablestoreTableStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put(T, "p", "a", {}, ttl_seconds=1)
    store.put(T, "p", "b", {}, ttl_seconds=1)
    store.put(T, "p", "c", {})
    later = time.time() + 2
    monkeypatch.setattr(time, "time", lambda: later)
    client._request_helper.reset_mock()
    assert [r.sk for r in store.query(T, "p", limit=1).records] == ["c"]
    # limit 2 reads a and b, both filtered out: an empty page with a next start key
    assert _apis(client) == ["GetRange", "GetRange"]


def test_service_limits(client: Any, store: TablestoreTableStore) -> None:
    row = ots.Row([("pk", "p" * 1025), ("tbl", T), ("sk", "s")], [("data", "{}")])
    with pytest.raises(ots.OTSServiceError) as raised:
        client.put_row(TABLE, row)
    assert raised.value.code == "OTSParameterInvalid"
    with pytest.raises(ValueError, match="2 MB"):
        store.put(T, "p", "big", {"x": "y" * (2 * 1024 * 1024)})
    assert store.get(T, "p", "big") is None


def test_service_errors_become_port_errors(client: Any, store: TablestoreTableStore) -> None:
    busy = ots.OTSServiceError(503, "OTSServerBusy", "Server is busy.")
    client._request_helper.side_effect = busy
    with pytest.raises(StorageUnavailable):
        store.get(T, "p", "s")
    client._request_helper.side_effect = ots.OTSServiceError(404, "OTSObjectNotExist", "no")
    with pytest.raises(PortError):
        store.get(T, "p", "s")
    client._request_helper.side_effect = ots.OTSClientError("connection refused")
    with pytest.raises(StorageUnavailable):
        store.put(T, "p", "s", {})
