"""What every Queue adapter must do (plus a two-process SQLite check at the end).

Times are whole seconds: SQS and MNS count visibility timeouts and delays in seconds (an
adapter rounds up; MNS's shortest visibility is 1 s), so the waits below are a second and
a bit more.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aws_sandbox import SANDBOX, fresh_name
from openimm import ports
from openimm.adapters.aws.sqs_queue import SqsQueue
from openimm.adapters.local import SqliteQueue
from openimm.ports import Queue

_PAST_ONE_SECOND = 1.3


def test_send_receive_ack(queue: Queue) -> None:
    message_id = queue.send("jobs", {"n": 1, "text": "Zoë"})
    [message] = queue.receive("jobs", visibility_timeout=30)
    assert (message.queue, message.body, message.attempts) == ("jobs", {"n": 1, "text": "Zoë"}, 1)
    assert message.message_id == message_id
    assert message.receipt
    queue.ack(message)
    assert queue.receive("jobs") == []


def test_queues_are_separate(queue: Queue) -> None:
    for n in range(3):
        queue.send("a", {"n": n})
        time.sleep(0.002)
    queue.send("b", {"n": 99})
    got = queue.receive("a", max_messages=10)
    # Sorted: an SQS standard queue orders only on a best-effort basis.
    assert sorted(m.body["n"] for m in got) == [0, 1, 2]
    assert [m.body["n"] for m in queue.receive("b", max_messages=10)] == [99]


def test_received_message_is_hidden_then_redelivered(queue: Queue) -> None:
    queue.send("jobs", {"n": 1})
    [first] = queue.receive("jobs", visibility_timeout=1)
    assert queue.receive("jobs") == []
    time.sleep(_PAST_ONE_SECOND)
    [second] = queue.receive("jobs", visibility_timeout=30)
    assert second.body == {"n": 1}
    assert second.attempts == 2
    assert second.receipt != first.receipt


def test_stale_receipt_is_ignored(queue: Queue) -> None:
    queue.send("jobs", {"n": 1})
    [stale] = queue.receive("jobs", visibility_timeout=1)
    time.sleep(_PAST_ONE_SECOND)
    [current] = queue.receive("jobs", visibility_timeout=30)
    queue.ack(stale)
    queue.dead_letter(stale, "late")
    queue.retry(stale)
    assert queue.dead_letters("jobs") == []
    assert queue.receive("jobs") == []  # still hidden for the current holder
    queue.retry(current)
    # MNS's shortest visibility is 1 s: a retry without delay shows the message within it.
    time.sleep(_PAST_ONE_SECOND)
    [again] = queue.receive("jobs")
    assert again.attempts == 3
    # A retried receipt whose visibility has not run out may still act on SQS (it acts
    # on any receipt it gave for the message), so it is used only after the new holder's.
    queue.ack(again)
    queue.ack(current)
    queue.retry(again)
    assert queue.receive("jobs") == []


def test_retry_with_delay(queue: Queue) -> None:
    queue.send("jobs", {"n": 1})
    [message] = queue.receive("jobs", visibility_timeout=30)
    queue.retry(message, delay_seconds=1)
    assert queue.receive("jobs") == []
    time.sleep(_PAST_ONE_SECOND)
    [again] = queue.receive("jobs")
    assert again.attempts == 2


def test_send_with_delay(queue: Queue) -> None:
    queue.send("jobs", {"n": 1}, delay_seconds=1)
    assert queue.receive("jobs") == []
    time.sleep(_PAST_ONE_SECOND)
    assert [m.body for m in queue.receive("jobs")] == [{"n": 1}]


def test_dead_letters(queue: Queue) -> None:
    queue.send("jobs", {"n": 1})
    queue.send("jobs", {"n": 2})
    first, second = queue.receive("jobs", max_messages=2)
    queue.dead_letter(first, "ValueError: bad")
    queue.dead_letter(second, "x" * 5000)
    letters = queue.dead_letters("jobs")
    assert letters[0] == ({"n": 1}, "ValueError: bad")
    assert letters[1][0] == {"n": 2}
    assert len(letters[1][1]) == 2000
    assert queue.dead_letters("other") == []
    assert queue.receive("jobs") == []


def test_send_rules(queue: Queue) -> None:
    with pytest.raises(ValueError):
        queue.send("bad name", {})
    with pytest.raises(ValueError):
        queue.send("jobs", {"blob": "x" * (queue.max_body_bytes + 1)})


def test_two_handles_never_claim_the_same_message(open_queue: Callable[[], Queue]) -> None:
    first, second = open_queue(), open_queue()
    total = 60
    for n in range(total):
        first.send("jobs", {"n": n})
    claimed: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def take(queue: Queue) -> None:
        try:
            while True:
                got = queue.receive("jobs", max_messages=3, visibility_timeout=60)
                if not got:
                    return
                with lock:
                    claimed.extend(m.body["n"] for m in got)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(q,)) for q in (first, second) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(claimed) == list(range(total))


# ---------------------------------------------------------------- SQLite only

_TAKER = textwrap.dedent(
    """
    import json, sys
    from openimm.adapters.local import SqliteQueue
    queue = SqliteQueue(sys.argv[1])
    taken = []
    while True:
        got = queue.receive("jobs", max_messages=2, visibility_timeout=60)
        if not got:
            break
        taken += [m.body["n"] for m in got]
    print(json.dumps(taken))
    """
)


def test_sqlite_two_processes_never_claim_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    total = 200
    for n in range(total):
        queue.send("jobs", {"n": n})
    shared = Path(ports.__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(shared)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TAKER, str(path)], stdout=subprocess.PIPE, env=env, text=True
        )
        for _ in range(3)
    ]
    taken: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        taken += json.loads(out)
    assert sorted(taken) == list(range(total))
    queue.close()


def test_sqlite_messages_survive_a_restart(tmp_path: Path) -> None:
    before = SqliteQueue(tmp_path / "queue.db")
    before.send("jobs", {"n": 1})
    before.send("jobs", {"n": 2})
    [held] = before.receive("jobs", visibility_timeout=0.2)
    before.close()  # as if the process died holding `held`
    after = SqliteQueue(tmp_path / "queue.db")
    assert after.pending("jobs") == 2
    [other] = after.receive("jobs", visibility_timeout=30)
    assert other.body != held.body
    time.sleep(0.3)
    [again] = after.receive("jobs", visibility_timeout=30)
    assert (again.body, again.attempts) == (held.body, 2)
    after.close()


def test_sqlite_release_in_flight(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "queue.db")
    queue.send("jobs", {"n": 1})
    queue.send("jobs", {"n": 2}, delay_seconds=60)
    [held] = queue.receive("jobs", visibility_timeout=60)
    assert queue.release_in_flight() == 1
    [again] = queue.receive("jobs")
    assert again.body == held.body
    queue.ack(held)  # the old holder is gone: its receipt no longer counts
    assert queue.pending("jobs") == 2
    queue.close()


# ---------------------------------------------------------------- SQS only


def test_sqs_gives_up_after_max_receives() -> None:
    """The redrive policy moves a message received too often to the dead letters."""
    queue = SqsQueue(
        SANDBOX.client("sqs"), fresh_name("queue") + "-", create_missing=True, max_receives=2
    )
    queue.send("jobs", {"n": 1})
    for _ in range(2):
        assert len(queue.receive("jobs", visibility_timeout=1)) == 1
        time.sleep(_PAST_ONE_SECOND)
    assert queue.receive("jobs") == []
    assert queue.dead_letters("jobs") == [({"n": 1}, "received 2 times or more")]
    assert queue.dead_letters("jobs") == [({"n": 1}, "received 2 times or more")]
