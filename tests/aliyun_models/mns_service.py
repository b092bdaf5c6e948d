"""MNS's documented answers to the topic and queue APIs, in place of the SDK's HTTP connection.

The model replaces `MNSHttp.send_request` of an Account's client, the one method that
sends a built, signed request: the SDK's validation, XML encoding, signing and response
decoding run as they are. The queues' state lives in mns_queues.py; this module is the
wire format (one method per API action, errors rendered in one place).
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from mns.mns_http import RequestInternal, ResponseInternal

from aliyun_models.mns_queues import MnsError, MnsQueues, StoredMessage

_NS = "http://mns.aliyuncs.com/doc/v1/"
_MAX_BODY_BYTES = 64 * 1024
_TOPIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,255}\Z")
_QUEUE_MESSAGES = re.compile(r"/queues/([^/?]+)/messages(?:\?(.*))?")


class MnsService:
    """Topics and queues of one MNS account, and the messages sent to them."""

    def __init__(self, topics: list[str], queues: list[str] | None = None) -> None:
        self.topics: dict[str, list[str]] = {name: [] for name in topics}
        self.queues = MnsQueues(list(queues or []))
        self.sent: list[RequestInternal] = []
        self._lock = threading.Lock()

    def attach(self, account: Any) -> None:
        """Answer the account's requests from now on (its topics and queues share the client)."""
        account.mns_client.http.send_request = self.send_request

    def send_request(self, request: RequestInternal) -> ResponseInternal:
        """The service's answer to one HTTP request."""
        with self._lock:
            self.sent.append(request)
        if not str(request.header.get("Authorization", "")).startswith("MNS "):
            return _error(MnsError(403, "AccessDenied", "The request is not signed."))
        try:
            return self._dispatch(request)
        except MnsError as exc:
            return _error(exc)

    def _dispatch(self, request: RequestInternal) -> ResponseInternal:
        match = re.fullmatch(r"/topics/([^/]+)/messages", request.uri)
        if match is not None and request.method == "POST":
            return self._publish(match.group(1), request)
        match = _QUEUE_MESSAGES.fullmatch(request.uri)
        if match is None:
            raise MnsError(400, "InvalidArgument", "Only messages are modelled.")
        queue, query = match.group(1), _query(match.group(2) or "")
        actions: dict[str, Callable[[str, RequestInternal, dict[str, str]], ResponseInternal]] = {
            "POST": self._send_message,
            "GET": self._receive_or_peek,
            "DELETE": self._delete_message,
            "PUT": self._change_visibility,
        }
        if request.method not in actions:
            raise MnsError(400, "InvalidArgument", f"{request.method} is not modelled.")
        return actions[request.method](queue, request, query)

    # ------------------------------------------------------------ topics

    def _publish(self, name: str, request: RequestInternal) -> ResponseInternal:
        if not _TOPIC_NAME.match(name):
            raise MnsError(400, "InvalidArgument", "The topic name is invalid.")
        body = _field(request, "MessageBody")
        if len(body.encode()) > _MAX_BODY_BYTES:
            raise MnsError(400, "MessageBodyTooLong", "The message body exceeds 64 KB.")
        with self._lock:
            if name not in self.topics:
                raise MnsError(404, "TopicNotExist", "The topic you provided does not exist.")
            self.topics[name].append(body)
        digest = hashlib.md5(body.encode(), usedforsecurity=False).hexdigest().upper()
        return _accepted(uuid.uuid4().hex.upper(), digest)

    # ------------------------------------------------------------ queues

    def _send_message(
        self, queue: str, request: RequestInternal, query: dict[str, str]
    ) -> ResponseInternal:
        root = ElementTree.fromstring(request.data)
        if root.tag != f"{{{_NS}}}Message":  # BatchSendMessage: not used by OpenIMM
            raise MnsError(400, "InvalidArgument", "Only SendMessage is modelled.")
        stored = self.queues.send(
            queue,
            _field(request, "MessageBody"),
            int(_field(request, "DelaySeconds") or 0),
            int(_field(request, "Priority") or 8),
        )
        return _accepted(stored.message_id, stored.md5)

    def _receive_or_peek(
        self, queue: str, request: RequestInternal, query: dict[str, str]
    ) -> ResponseInternal:
        batch = "numOfMessages" in query
        count = int(query.get("numOfMessages", "1"))
        if query.get("peekonly") == "true":
            got = self.queues.peek(queue, count)
            return _messages(got, batch, receipts=False)
        got = self.queues.receive(queue, count, int(query.get("waitseconds", "0")))
        return _messages(got, batch, receipts=True)

    def _delete_message(
        self, queue: str, request: RequestInternal, query: dict[str, str]
    ) -> ResponseInternal:
        if "ReceiptHandle" not in query:  # BatchDeleteMessage: not used by OpenIMM
            raise MnsError(400, "InvalidArgument", "Only DeleteMessage is modelled.")
        self.queues.delete(queue, query["ReceiptHandle"])
        return _ok(204, "")

    def _change_visibility(
        self, queue: str, request: RequestInternal, query: dict[str, str]
    ) -> ResponseInternal:
        changed = self.queues.change_visibility(
            queue, query["ReceiptHandle"], int(query["VisibilityTimeout"])
        )
        return _ok(
            200,
            f'<ChangeVisibility xmlns="{_NS}"><ReceiptHandle>{changed.handle}</ReceiptHandle>'
            f"<NextVisibleTime>{int(changed.visible_at * 1000)}</NextVisibleTime>"
            "</ChangeVisibility>",
        )


def _query(raw: str) -> dict[str, str]:
    # The SDK puts receipt handles in the query unencoded; split without unquoting.
    pairs = (part.split("=", 1) for part in raw.split("&") if part)
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


def _field(request: RequestInternal, name: str) -> str:
    root = ElementTree.fromstring(request.data)
    return root.findtext(f"{{{_NS}}}{name}") or ""


def _message_xml(m: StoredMessage, receipts: bool) -> str:
    parts = [
        f"<MessageId>{m.message_id}</MessageId>",
        f"<MessageBody>{escape(m.body)}</MessageBody>",
        f"<MessageBodyMD5>{m.md5}</MessageBodyMD5>",
        f"<EnqueueTime>{m.enqueue_ms}</EnqueueTime>",
        f"<FirstDequeueTime>{m.first_dequeue_ms}</FirstDequeueTime>",
        f"<DequeueCount>{m.dequeue_count}</DequeueCount>",
        f"<Priority>{m.priority}</Priority>",
    ]
    if receipts:
        parts.append(f"<ReceiptHandle>{m.handle}</ReceiptHandle>")
        parts.append(f"<NextVisibleTime>{int(m.visible_at * 1000)}</NextVisibleTime>")
    return "<Message>" + "".join(parts) + "</Message>"


def _messages(got: list[StoredMessage], batch: bool, receipts: bool) -> ResponseInternal:
    if not batch:
        (one,) = got
        inner = _message_xml(one, receipts).replace("<Message>", f'<Message xmlns="{_NS}">', 1)
        return _ok(200, inner)
    body = "".join(_message_xml(m, receipts) for m in got)
    return _ok(200, f'<Messages xmlns="{_NS}">{body}</Messages>')


def _accepted(message_id: str, md5: str) -> ResponseInternal:
    """The answer to a PublishMessage or SendMessage: the message's id and body MD5."""
    return _ok(
        201,
        f'<Message xmlns="{_NS}"><MessageId>{message_id}</MessageId>'
        f"<MessageBodyMD5>{md5}</MessageBodyMD5></Message>",
    )


def _request_id() -> str:
    return base64.b16encode(uuid.uuid4().bytes[:12]).decode()


def _ok(status: int, xml_body: str) -> ResponseInternal:
    text = f'<?xml version="1.0" encoding="UTF-8"?>{xml_body}' if xml_body else ""
    return ResponseInternal(status, {"x-mns-request-id": _request_id()}, text)


def _error(exc: MnsError) -> ResponseInternal:
    request_id = _request_id()
    answer = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error xmlns="{_NS}">'
        f"<Code>{exc.code}</Code><Message>{escape(exc.message)}</Message>"
        f"<RequestId>{request_id}</RequestId>"
        f"<HostId>http://123.mns.cn-hangzhou.aliyuncs.com</HostId></Error>"
    )
    return ResponseInternal(exc.status, {"x-mns-request-id": request_id}, answer)
