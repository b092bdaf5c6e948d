"""The MNS queue adapter's exact requests, and the service model's documented answers."""

from __future__ import annotations

import base64
import json
import threading
import time
from xml.etree import ElementTree

import mns.account
import pytest
from mns.mns_exception import MNSClientNetworkException

from aliyun_models.mns_service import MnsService
from event_fixtures import load_json
from openimm.adapters.aliyun.mns_queue import MnsQueue, letter_of
from openimm.ports import PortError, StorageUnavailable

_NS = "{http://mns.aliyuncs.com/doc/v1/}"
QUEUES = ["openimm-detect", "openimm-detect-dlq"]


@pytest.fixture
def service() -> MnsService:
    return MnsService([], QUEUES)


def _queue(service: MnsService, wait_seconds: int = 0) -> MnsQueue:
    account = mns.account.Account(
        "https://123.mns.cn-hangzhou.aliyuncs.com", "key-id", "secret", "security-token"
    )
    service.attach(account)
    return MnsQueue(account, "openimm-", wait_seconds=wait_seconds)


@pytest.fixture
def queue(service: MnsService) -> MnsQueue:
    return _queue(service)


def _calls(service: MnsService) -> list[tuple[str, str]]:
    calls = [(r.method, r.uri) for r in service.sent]
    service.sent.clear()
    return calls


def _body(request: object) -> tuple[str, str]:
    """The decoded message body and the DelaySeconds of a SendMessage request."""
    root = ElementTree.fromstring(request.data)  # type: ignore[attr-defined]
    body = base64.b64decode(root.findtext(f"{_NS}MessageBody") or "").decode()
    return body, root.findtext(f"{_NS}DelaySeconds") or ""


def test_send_is_one_base64_message_with_its_delay(service: MnsService, queue: MnsQueue) -> None:
    queue.send("detect", {"uri": "oss://b/k", "n": 1}, delay_seconds=2.5)
    (request,) = service.sent
    assert (request.method, request.uri) == ("POST", "/queues/openimm-detect/messages")
    assert request.header["security-token"] == "security-token"
    assert _body(request) == ('{"n":1,"uri":"oss://b/k"}', "3")


def test_receive_holds_each_message_and_keeps_the_new_handle(
    service: MnsService, queue: MnsQueue
) -> None:
    for n in range(20):
        queue.send("detect", {"n": n})
    _calls(service)
    got = queue.receive("detect", max_messages=20, visibility_timeout=44.2)
    calls = _calls(service)
    # at most 16 a batch, then one visibility change (to the caller's timeout) per message
    assert calls[0] == ("GET", "/queues/openimm-detect/messages?numOfMessages=16&waitseconds=0")
    assert calls[17] == ("GET", "/queues/openimm-detect/messages?numOfMessages=4&waitseconds=0")
    changes = [uri for method, uri in calls if method == "PUT"]
    assert len(changes) == 20
    assert all(uri.endswith("&VisibilityTimeout=45") for uri in changes)
    # the handle each change returned, not the receive's (which the change replaced)
    for message, uri in zip(got, changes, strict=True):
        assert f"ReceiptHandle={message.receipt}&" not in uri
        assert message.attempts == 1
    assert sorted(m.body["n"] for m in got) == list(range(20))
    queue.ack(got[0])
    assert _calls(service) == [
        ("DELETE", f"/queues/openimm-detect/messages?ReceiptHandle={got[0].receipt}")
    ]


def test_dequeue_count_is_the_attempt(service: MnsService, queue: MnsQueue) -> None:
    queue.send("detect", {"n": 1})
    [first] = queue.receive("detect", visibility_timeout=30)
    queue.retry(first, delay_seconds=0)  # MNS's shortest: 1 s
    assert "VisibilityTimeout=1" in service.sent[-1].uri
    time.sleep(1.2)
    [second] = queue.receive("detect")
    assert (second.attempts, second.message_id) == (2, first.message_id)


def test_dead_letter_wraps_the_body_with_its_reason(service: MnsService, queue: MnsQueue) -> None:
    queue.send("detect", {"n": 1})
    [message] = queue.receive("detect", visibility_timeout=60)
    _calls(service)
    queue.dead_letter(message, "DecodeError: not an image")
    hold, put, delete = service.sent
    assert (hold.method, put.method, delete.method) == ("PUT", "POST", "DELETE")
    assert hold.uri.endswith(f"ReceiptHandle={message.receipt}&VisibilityTimeout=30")
    assert put.uri == "/queues/openimm-detect-dlq/messages"
    body, _ = _body(put)
    assert json.loads(body) == {
        "dead_letter": {"queue": "detect", "reason": "DecodeError: not an image", "body": {"n": 1}}
    }
    # the hold gave a new handle: the delete uses it
    assert f"ReceiptHandle={message.receipt}" not in delete.uri
    assert queue.receive("detect") == []
    _calls(service)
    assert queue.dead_letters("detect") == [({"n": 1}, "DecodeError: not an image")]
    # peeked, not received: still there for the dead-letter function's trigger
    assert _calls(service) == [
        ("GET", "/queues/openimm-detect-dlq/messages?peekonly=true&numOfMessages=16")
    ]
    assert queue.dead_letters("detect") == [({"n": 1}, "DecodeError: not an image")]


def test_letters_of_the_trigger_itself_are_read_too() -> None:
    # what an EventBridge MNS trigger writes to its dead-letter queue: the event it gave up on
    event = {"data": {"messageId": "M", "messageBody": base64.b64encode(b'{"n":2}').decode()}}
    body, reason = letter_of(json.dumps(event))
    assert body == {"n": 2}
    assert "retries" in reason
    assert letter_of(json.dumps({"data": {"messageBody": '{"n":3}'}}))[0] == {"n": 3}
    assert letter_of("not json")[0] == {"value": "not json"}


def test_long_polling_waits_for_a_message(service: MnsService) -> None:
    queue = _queue(service, wait_seconds=2)
    sender = _queue(service)
    timer = threading.Timer(0.3, lambda: sender.send("detect", {"n": 1}))
    timer.start()
    started = time.monotonic()
    [message] = queue.receive("detect")
    timer.join()
    assert message.body == {"n": 1}
    assert 0.2 < time.monotonic() - started < 2
    assert "waitseconds=2" in service.sent[0].uri


def test_sdk_errors_become_port_errors(
    service: MnsService, queue: MnsQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StorageUnavailable, match="missing"):
        queue.send("embed", {"n": 1})  # QueueNotExist: deployed queues come first
    assert queue.dead_letters("embed") == []
    with pytest.raises(PortError, match="InvalidArgument"):
        _queue(service, wait_seconds=31).receive("detect")

    def down(request: object) -> object:
        raise MNSClientNetworkException("NetWorkException", "connection refused")

    monkeypatch.setattr(service, "send_request", down)
    service.attach(queue._account)
    with pytest.raises(StorageUnavailable, match="unreachable"):
        queue.send("detect", {"n": 1})


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("fc_eventbridge_mns_dlq_openimm", "UnidentifiedImageError: cannot identify image file"),
        ("fc_eventbridge_mns_dlq_platform", "given up on by the queue's trigger after its retries"),
    ],
)
def test_both_kinds_of_letter_as_the_dead_letter_trigger_delivers_them(
    fixture: str, reason: str
) -> None:
    stage = load_json("fc_eventbridge_mns")["data"]["messageBody"]
    event = load_json(fixture)
    assert letter_of(event["data"]["messageBody"]) == (json.loads(stage), reason)
