"""What every TableStore adapter must do."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from openimm.adapters.local import SqliteTableStore
from openimm.adapters.local.sqlite_table import storage_errors
from openimm.ports import (
    ConditionFailed,
    Delete,
    Increment,
    Put,
    StorageUnavailable,
    TableStore,
)

T = "things"


def test_get_absent_is_none(table_store: TableStore) -> None:
    assert table_store.get(T, "p", "s") is None


def test_put_then_get_round_trips_json(table_store: TableStore) -> None:
    data = {"name": "Zoë", "n": 3, "f": 1.5, "ok": True, "list": [1, "x"], "nested": {"a": None}}
    table_store.put(T, "p", "s", data)
    record = table_store.get(T, "p", "s")
    assert record is not None
    assert (record.pk, record.sk, record.data, record.version) == ("p", "s", data, 1)
    assert record.expires_at is None


def test_tables_are_separate(table_store: TableStore) -> None:
    table_store.put("one", "p", "s", {"v": 1})
    assert table_store.get("two", "p", "s") is None


def test_put_replaces_whole_item_and_bumps_version(table_store: TableStore) -> None:
    table_store.put(T, "p", "s", {"a": 1, "b": 2})
    table_store.put(T, "p", "s", {"a": 5})
    record = table_store.get(T, "p", "s")
    assert record is not None
    assert record.data == {"a": 5}
    assert record.version == 2


def test_if_absent_conflicts_with_existing_item(table_store: TableStore) -> None:
    table_store.put(T, "p", "s", {"v": 1}, if_absent=True)
    with pytest.raises(ConditionFailed):
        table_store.put(T, "p", "s", {"v": 2}, if_absent=True)
    record = table_store.get(T, "p", "s")
    assert record is not None and record.data == {"v": 1}


def test_if_version_must_match(table_store: TableStore) -> None:
    with pytest.raises(ConditionFailed):
        table_store.put(T, "p", "s", {"v": 0}, if_version=1)
    table_store.put(T, "p", "s", {"v": 1})
    table_store.put(T, "p", "s", {"v": 2}, if_version=1)
    with pytest.raises(ConditionFailed):
        table_store.put(T, "p", "s", {"v": 3}, if_version=1)
    record = table_store.get(T, "p", "s")
    assert record is not None and (record.data, record.version) == ({"v": 2}, 2)


def test_delete_is_fine_when_absent_unless_versioned(table_store: TableStore) -> None:
    table_store.delete(T, "p", "s")
    with pytest.raises(ConditionFailed):
        table_store.delete(T, "p", "s", if_version=1)
    table_store.put(T, "p", "s", {})
    with pytest.raises(ConditionFailed):
        table_store.delete(T, "p", "s", if_version=2)
    table_store.delete(T, "p", "s", if_version=1)
    assert table_store.get(T, "p", "s") is None


def test_increment_creates_at_zero_then_adds(table_store: TableStore) -> None:
    record = table_store.increment(T, "p", "counter", done=1, failed=0)
    assert record.data == {"done": 1, "failed": 0}
    assert record.version == 1
    record = table_store.increment(T, "p", "counter", done=2, failed=-1)
    assert record.data == {"done": 3, "failed": -1}
    assert record.version == 2


def test_increment_keeps_other_attributes(table_store: TableStore) -> None:
    table_store.put(T, "p", "s", {"name": "x", "n": 10})
    record = table_store.increment(T, "p", "s", n=5, m=1)
    assert record.data == {"name": "x", "n": 15, "m": 1}


def test_transaction_is_all_or_nothing(table_store: TableStore) -> None:
    table_store.put(T, "p", "taken", {"v": 1})
    table_store.put(T, "p", "gone", {"v": 1})
    with pytest.raises(ConditionFailed):
        table_store.transact(
            [
                Put(T, "p", "new", {"v": 1}),
                Increment(T, "p", "count", {"n": 1}),
                Delete(T, "p", "gone"),
                Put(T, "p", "taken", {"v": 2}, if_absent=True),
            ]
        )
    assert table_store.get(T, "p", "new") is None
    assert table_store.get(T, "p", "count") is None
    assert table_store.get(T, "p", "gone") is not None
    taken = table_store.get(T, "p", "taken")
    assert taken is not None and taken.data == {"v": 1}


def test_transaction_applies_every_write(table_store: TableStore) -> None:
    table_store.put(T, "p", "gone", {})
    table_store.transact(
        [
            Put(T, "p", "a", {"v": 1}, if_absent=True),
            Increment(T, "p", "count", {"n": 2}),
            Delete(T, "p", "gone", if_version=1),
            Put("other", "p", "b", {"v": 2}),
        ]
    )
    assert [r.sk for r in table_store.scan_partition(T, "p")] == ["a", "count"]
    assert table_store.get("other", "p", "b") is not None


def test_transaction_rules(table_store: TableStore) -> None:
    with pytest.raises(ValueError):
        table_store.transact([Put(T, "p", "a", {}), Put(T, "q", "a", {})])
    with pytest.raises(ValueError):
        table_store.transact([Put(T, "p", "a", {}), Increment(T, "p", "a", {"n": 1})])
    with pytest.raises(ValueError):
        table_store.get("bad name", "p", "s")
    with pytest.raises(ValueError):
        table_store.get("bad\n", "p", "s")
    assert table_store.get(T, "p", "a") is None


def test_a_transaction_takes_as_many_writes_as_the_store_says(table_store: TableStore) -> None:
    most = table_store.max_transaction_writes
    table_store.transact([Put(T, "p", f"k{i:04d}", {"i": i}) for i in range(most)])
    assert len(list(table_store.scan_partition(T, "p"))) == most
    with pytest.raises(ValueError):
        table_store.transact([Put(T, "q", f"k{i:04d}", {"i": i}) for i in range(most + 1)])
    assert not list(table_store.scan_partition(T, "q"))


def _fill(store: TableStore, pk: str, sks: list[str]) -> None:
    for sk in sks:
        store.put(T, pk, sk, {"sk": sk})


def test_query_prefix_in_order(table_store: TableStore) -> None:
    _fill(table_store, "p", ["b#2", "a#1", "b#1", "b#10", "b", "c#1", "b$", "b#\U0001f600"])
    _fill(table_store, "other", ["b#3"])
    page = table_store.query(T, "p", sk_prefix="b#")
    assert [r.sk for r in page.records] == ["b#1", "b#10", "b#2", "b#\U0001f600"]
    assert page.next_token is None
    everything = table_store.query(T, "p")
    assert len(everything.records) == 8


def test_query_pages_both_ways(table_store: TableStore) -> None:
    sks = [f"k{i:02d}" for i in range(7)]
    _fill(table_store, "p", sks)
    for descending in (False, True):
        seen: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            page = table_store.query(
                T, "p", sk_prefix="k", start_after=token, limit=3, descending=descending
            )
            seen += [r.sk for r in page.records]
            pages += 1
            token = page.next_token
            if token is None:
                break
        assert seen == sorted(sks, reverse=descending)
        assert pages == 3


def test_query_exact_page_has_no_token(table_store: TableStore) -> None:
    _fill(table_store, "p", ["a", "b", "c"])
    page = table_store.query(T, "p", limit=3)
    assert len(page.records) == 3
    assert page.next_token is None
    with pytest.raises(ValueError):
        table_store.query(T, "p", limit=0)


def test_scan_partition_reads_past_one_page(table_store: TableStore) -> None:
    table_store.transact([Put(T, "p", f"x{i:04d}", {}) for i in range(20)])
    assert len(list(table_store.scan_partition(T, "p", sk_prefix="x"))) == 20


@pytest.fixture
def advance(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Stop the wall clock and return a function moving it on: expiry without sleeping."""
    now = [time.time()]
    monkeypatch.setattr(time, "time", lambda: now[0])

    def move(seconds: float) -> None:
        now[0] += seconds

    return move


def test_ttl_expiry(table_store: TableStore, advance: Callable[[float], None]) -> None:
    table_store.put(T, "p", "short", {"v": 1}, ttl_seconds=10)
    table_store.put(T, "p", "long", {"v": 1}, ttl_seconds=3600)
    short = table_store.get(T, "p", "short")
    assert short is not None and short.expires_at == pytest.approx(time.time() + 10)
    advance(10)
    assert table_store.get(T, "p", "short") is None
    assert [r.sk for r in table_store.query(T, "p").records] == ["long"]
    assert [r.sk for r in table_store.batch_get(T, [("p", "short"), ("p", "long")])] == ["long"]
    # An expired item counts as absent for conditions, versions and increments.
    with pytest.raises(ConditionFailed):
        table_store.put(T, "p", "short", {"v": 2}, if_version=1)
    table_store.put(T, "p", "short", {"v": 2}, if_absent=True)
    again = table_store.get(T, "p", "short")
    assert again is not None and (again.version, again.expires_at) == (1, None)


def test_increment_restarts_an_expired_item(
    table_store: TableStore, advance: Callable[[float], None]
) -> None:
    table_store.put(T, "p", "c", {"n": 5}, ttl_seconds=10)
    assert table_store.increment(T, "p", "c", n=1).data == {"n": 6}
    advance(11)
    assert table_store.increment(T, "p", "c", n=1).data == {"n": 1}


def test_expired_items_do_not_end_paging_early(
    table_store: TableStore, advance: Callable[[float], None]
) -> None:
    table_store.put(T, "p", "a", {}, ttl_seconds=10)
    table_store.put(T, "p", "b", {}, ttl_seconds=10)
    _fill(table_store, "p", ["c", "d", "e"])
    advance(11)
    # A page may come back short (even empty) while its token says there is more.
    seen: list[str] = []
    token: str | None = None
    while True:
        page = table_store.query(T, "p", limit=2, start_after=token)
        seen += [r.sk for r in page.records]
        token = page.next_token
        if token is None:
            break
    assert seen == ["c", "d", "e"]
    assert [r.sk for r in table_store.scan_partition(T, "p")] == ["c", "d", "e"]


def test_batch_get_keeps_order_and_skips_absent(table_store: TableStore) -> None:
    _fill(table_store, "p", ["a", "b"])
    _fill(table_store, "q", ["c"])
    found = table_store.batch_get(T, [("q", "c"), ("p", "zz"), ("p", "b"), ("p", "a")])
    assert [(r.pk, r.sk) for r in found] == [("q", "c"), ("p", "b"), ("p", "a")]
    assert table_store.batch_get(T, []) == []


def test_batch_get_of_many_keys(table_store: TableStore) -> None:
    stored = [f"k{i:04d}" for i in range(0, 1300, 2)]
    step = table_store.max_transaction_writes
    for start in range(0, len(stored), step):
        table_store.transact([Put(T, "p", sk, {"sk": sk}) for sk in stored[start : start + step]])
    asked = [*[("p", f"k{i:04d}") for i in reversed(range(1300))], ("q", "k0000"), ("p", "k0002")]
    found = table_store.batch_get(T, asked)
    assert [r.sk for r in found] == [*sorted(stored, reverse=True), "k0002"]
    assert all(r.data == {"sk": r.sk} for r in found)


def _in_threads(threads: int, work: Callable[[], None]) -> None:
    """Run `work` in that many threads at once; re-raise the first error any raised."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=guarded) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    if errors:
        raise errors[0]


def test_concurrent_increments_add_up(table_store: TableStore) -> None:
    threads, rounds = 8, 40
    returned: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(rounds):
            n = table_store.increment(T, "p", "counter", n=1).data["n"]
            with lock:
                returned.append(n)

    _in_threads(threads, work)
    record = table_store.get(T, "p", "counter")
    assert record is not None and record.data == {"n": threads * rounds}
    # Each caller sees the value its own increment produced: no number handed out twice.
    assert sorted(returned) == list(range(1, threads * rounds + 1))


def test_concurrent_versioned_puts_lose_no_update(table_store: TableStore) -> None:
    # Read, add one, write back if still at the version read: the optimistic loop the
    # services use. Every write must either land or raise ConditionFailed, never both.
    threads, rounds = 4, 10
    table_store.put(T, "p", "doc", {"n": 0})

    def work() -> None:
        for _ in range(rounds):
            while True:
                record = table_store.get(T, "p", "doc")
                assert record is not None
                try:
                    table_store.put(
                        T, "p", "doc", {"n": record.data["n"] + 1}, if_version=record.version
                    )
                    break
                except ConditionFailed:
                    continue

    _in_threads(threads, work)
    record = table_store.get(T, "p", "doc")
    assert record is not None
    assert (record.data, record.version) == ({"n": threads * rounds}, threads * rounds + 1)


# ---------------------------------------------------------------- SQLite only


def test_sqlite_purge_expired(advance: Callable[[float], None]) -> None:
    store = SqliteTableStore(":memory:")
    store.put(T, "p", "old", {}, ttl_seconds=10)
    store.put(T, "p", "new", {})
    advance(11)
    assert store.purge_expired() == 1
    assert store.purge_expired() == 0
    assert store.get(T, "p", "new") is not None
    store.close()


def test_sqlite_two_handles_share_one_file(tmp_path: Path) -> None:
    one = SqliteTableStore(tmp_path / "t.db")
    two = SqliteTableStore(tmp_path / "t.db")
    one.put(T, "p", "s", {"v": 1})
    two.put(T, "p", "s", {"v": 2}, if_version=1)
    with pytest.raises(ConditionFailed):
        one.put(T, "p", "s", {"v": 3}, if_version=1)
    record = one.get(T, "p", "s")
    assert record is not None and record.data == {"v": 2}
    one.close()
    two.close()


def test_sqlite_threads_come_and_go_without_leaking_connections(tmp_path: Path) -> None:
    store = SqliteTableStore(tmp_path / "t.db")
    # Like a server starting a thread per request.
    for n in range(40):
        thread = threading.Thread(target=store.put, args=(T, "p", f"s{n}", {}))
        thread.start()
        thread.join(30)
    assert len(list(store.scan_partition(T, "p"))) == 40
    assert len(store._db._idle) == 1
    store.close()


def test_sqlite_where_no_database_can_be_made_is_storage_unavailable(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the state folder should be")
    with pytest.raises(StorageUnavailable, match="state"):
        SqliteTableStore(tmp_path / "state" / "table.db")


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        ("database or disk is full", True),
        ("attempt to write a readonly database", True),
        ("disk I/O error", True),
        ("no such table: items", False),
    ],
)
def test_sqlite_errors_of_the_disk_are_storage_unavailable(error: str, outage: bool) -> None:
    def fail() -> None:
        with storage_errors("table.db"):
            raise sqlite3.OperationalError(error)

    with pytest.raises(StorageUnavailable if outage else sqlite3.OperationalError) as raised:
        fail()
    assert isinstance(raised.value, StorageUnavailable) == outage
