"""QueueWorkers: ack on success, retry then dead-letter on failure, drain."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openimm.adapters.local import SqliteQueue
from openimm.local.workers import QueueWorkers
from openimm.ports import JSON, Message, Queue, StorageUnavailable


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SqliteQueue]:
    q = SqliteQueue(tmp_path / "queue.db")
    yield q
    q.close()


class _Uncounted(Queue):
    """A queue that cannot count its messages, to exercise drain's other way."""

    def __init__(self, inner: SqliteQueue) -> None:
        self._inner = inner

    def _send(self, queue: str, raw_body: str, delay_seconds: float) -> str:
        return self._inner._send(queue, raw_body, delay_seconds)

    def _receive(self, queue: str, max_messages: int, visibility_timeout: float) -> list[Message]:
        return self._inner._receive(queue, max_messages, visibility_timeout)

    def _ack(self, message: Message) -> None:
        self._inner._ack(message)

    def _retry(self, message: Message, delay_seconds: float) -> None:
        self._inner._retry(message, delay_seconds)

    def _dead_letter(self, message: Message, reason: str) -> None:
        self._inner._dead_letter(message, reason)

    def _dead_letters(self, queue: str) -> list[tuple[JSON, str]]:
        return self._inner._dead_letters(queue)


def _fast(queue: Queue, handlers: dict[str, Any], **kwargs: Any) -> QueueWorkers:
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("retry_backoff", 0.01)
    return QueueWorkers(queue, handlers, **kwargs)


@pytest.mark.parametrize("counted", [True, False])
def test_success_acks_and_follow_ups_are_drained(queue: SqliteQueue, counted: bool) -> None:
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()
    q: Queue = queue if counted else _Uncounted(queue)

    def first(body: dict[str, Any]) -> None:
        with lock:
            seen.append(("first", body["n"]))
        q.send("second", {"n": body["n"]})

    def second(body: dict[str, Any]) -> None:
        with lock:
            seen.append(("second", body["n"]))

    for n in range(10):
        q.send("first", {"n": n})
    workers = _fast(q, {"first": first, "second": second}, threads=3)
    assert workers.drain(timeout=30)
    assert not workers.running
    assert sorted(seen) == sorted((stage, n) for stage in ("first", "second") for n in range(10))
    assert queue.pending("first") == queue.pending("second") == 0


def test_failure_is_retried_then_dead_lettered(queue: SqliteQueue) -> None:
    calls: list[dict[str, Any]] = []
    given_up: list[tuple[str, dict[str, Any], str]] = []

    def broken(body: dict[str, Any]) -> None:
        calls.append(body)
        body["mutated"] = True
        raise RuntimeError("disk on fire")

    queue.send("jobs", {"n": 1})
    workers = _fast(
        queue,
        {"jobs": broken},
        max_attempts=3,
        on_dead_letter=lambda *args: given_up.append(args),
    )
    assert workers.drain(timeout=30)
    assert len(calls) == 3
    assert given_up == [("jobs", {"n": 1}, "RuntimeError: disk on fire")]
    assert queue.dead_letters("jobs") == [({"n": 1}, "RuntimeError: disk on fire")]


def test_failure_then_success(queue: SqliteQueue) -> None:
    attempts: list[int] = []

    def flaky(body: dict[str, Any]) -> None:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError("try again")

    queue.send("jobs", {})
    assert _fast(queue, {"jobs": flaky}).drain(timeout=30)
    assert len(attempts) == 2
    assert queue.dead_letters("jobs") == []
    assert queue.pending("jobs") == 0


def test_a_message_sent_in_this_process_is_taken_at_once(queue: SqliteQueue) -> None:
    handled = threading.Event()
    workers = _fast(queue, {"jobs": lambda body: handled.set()}, poll_interval=30)
    queue.add_send_listener(workers.nudge)
    workers.start()
    try:
        time.sleep(0.1)  # the workers are idle, in a 30 s poll
        sent = time.monotonic()
        queue.send("jobs", {})
        assert handled.wait(10)
        assert time.monotonic() - sent < 5
    finally:
        workers.stop(timeout=5)


def test_delayed_retry_is_waited_for_without_counts(queue: SqliteQueue) -> None:
    attempts: list[int] = []

    def flaky(body: dict[str, Any]) -> None:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError("try again")

    queue.send("jobs", {})
    workers = _fast(_Uncounted(queue), {"jobs": flaky}, retry_backoff=0.2)
    assert workers.drain(timeout=30)
    assert len(attempts) == 2


def test_a_message_that_keeps_killing_its_worker_is_given_up(queue: SqliteQueue) -> None:
    queue.send("jobs", {"n": 1})
    for _ in range(2):  # received, then the process died: no ack, no retry
        assert queue.receive("jobs", visibility_timeout=0)
    ran: list[dict[str, Any]] = []
    given_up: list[str] = []
    workers = _fast(
        queue,
        {"jobs": ran.append},
        max_attempts=2,
        on_dead_letter=lambda q, body, reason: given_up.append(reason),
    )
    assert workers.drain(timeout=30)
    assert ran == []
    assert given_up == ["delivered 3 times without finishing"]


def test_drain_times_out_while_busy(queue: SqliteQueue) -> None:
    release = threading.Event()
    queue.send("jobs", {})
    workers = _fast(queue, {"jobs": lambda body: release.wait(10) and None})
    workers.start()
    try:
        assert not workers.drain(timeout=0.2)
        assert workers.running  # started by start(), so drain leaves them running
        release.set()
        assert workers.drain(timeout=10)
    finally:
        release.set()
        workers.stop(timeout=10)
    assert not workers.running


def test_broken_dead_letter_hook_is_only_logged(queue: SqliteQueue) -> None:
    def hook(q: str, body: dict[str, Any], reason: str) -> None:
        raise ValueError("hook broken")

    def broken(body: dict[str, Any]) -> None:
        raise KeyError("x")

    queue.send("jobs", {})
    workers = _fast(queue, {"jobs": broken}, max_attempts=1, on_dead_letter=hook)
    assert workers.drain(timeout=30)
    assert queue.dead_letters("jobs") == [({}, "KeyError: 'x'")]


def test_works_on_an_in_memory_queue() -> None:
    queue = SqliteQueue(":memory:")
    done: list[int] = []
    for n in range(5):
        queue.send("jobs", {"n": n})
    assert _fast(queue, {"jobs": lambda body: done.append(body["n"])}, threads=4).drain(10)
    assert sorted(done) == list(range(5))
    queue.close()


def test_arguments_are_checked(queue: SqliteQueue) -> None:
    with pytest.raises(ValueError):
        QueueWorkers(queue, {})
    with pytest.raises(ValueError):
        QueueWorkers(queue, {"jobs": print}, threads=0)


def test_retry_delays_double_up_to_the_cap_and_are_jittered() -> None:
    from openimm.local.workers import backoff

    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (9, 30.0)):
        delays = [backoff(attempt, 0.5, 30.0) for _ in range(200)]
        assert all(full / 2 <= delay <= full for delay in delays)
        assert len(set(delays)) > 100  # messages failing together come back apart


class _Unreadable(_Uncounted):
    """A queue whose every receive fails, as one on a full disk does; counts them."""

    def __init__(self, inner: SqliteQueue) -> None:
        super().__init__(inner)
        self.receives = 0

    def _receive(self, queue: str, max_messages: int, visibility_timeout: float) -> list[Message]:
        self.receives += 1
        raise StorageUnavailable("cannot write queue.db: database or disk is full")


def test_failing_receives_back_off_and_are_logged_once_a_minute(
    queue: SqliteQueue, caplog: pytest.LogCaptureFixture
) -> None:
    unreadable = _Unreadable(queue)
    workers = _fast(unreadable, {"jobs": lambda body: None}, threads=2)
    workers.start()
    try:
        time.sleep(1.0)
    finally:
        workers.stop(timeout=10)
    # without a backoff the threads tried tens of thousands of times a second
    assert 2 <= unreadable.receives <= 20
    failures = [r for r in caplog.records if "receiving from queue" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info
