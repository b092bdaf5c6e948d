"""MNS's documented answers to PublishMessage, in place of the SDK's HTTP connection.

The model replaces `MNSHttp.send_request` of an Account's client, the one method that
sends a built, signed request: the SDK's validation, XML encoding, signing and response
decoding run as they are.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import uuid
from typing import Any
from xml.etree import ElementTree

from mns.mns_http import RequestInternal, ResponseInternal

_NS = "http://mns.aliyuncs.com/doc/v1/"
_MAX_BODY_BYTES = 64 * 1024
_TOPIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,255}\Z")


class MnsService:
    """Topics of one MNS account and the messages published to them."""

    def __init__(self, topics: list[str]) -> None:
        self.topics: dict[str, list[str]] = {name: [] for name in topics}
        self.sent: list[RequestInternal] = []
        self._lock = threading.Lock()

    def attach(self, account: Any) -> None:
        """Answer the account's requests from now on (its topics share the client)."""
        account.mns_client.http.send_request = self.send_request

    def send_request(self, request: RequestInternal) -> ResponseInternal:
        """The service's answer to one HTTP request."""
        self.sent.append(request)
        if not str(request.header.get("Authorization", "")).startswith("MNS "):
            return _error(403, "AccessDenied", "The request is not signed.")
        match = re.fullmatch(r"/topics/([^/]+)/messages", request.uri)
        if request.method != "POST" or match is None:
            return _error(400, "InvalidArgument", "Only PublishMessage is modelled.")
        name = match.group(1)
        if not _TOPIC_NAME.match(name):
            return _error(400, "InvalidArgument", "The topic name is invalid.")
        root = ElementTree.fromstring(request.data)
        body = root.findtext(f"{{{_NS}}}MessageBody") or ""
        if len(body.encode()) > _MAX_BODY_BYTES:
            return _error(400, "MessageBodyTooLong", "The message body exceeds 64 KB.")
        with self._lock:
            if name not in self.topics:
                return _error(404, "TopicNotExist", "The topic you provided does not exist.")
            self.topics[name].append(body)
        digest = hashlib.md5(body.encode(), usedforsecurity=False).hexdigest().upper()
        answer = (
            f'<?xml version="1.0" encoding="UTF-8"?><Message xmlns="{_NS}">'
            f"<MessageId>{uuid.uuid4().hex.upper()}</MessageId>"
            f"<MessageBodyMD5>{digest}</MessageBodyMD5></Message>"
        )
        return ResponseInternal(201, {"x-mns-request-id": _request_id()}, answer)


def _request_id() -> str:
    return base64.b16encode(uuid.uuid4().bytes[:12]).decode()


def _error(status: int, code: str, message: str) -> ResponseInternal:
    request_id = _request_id()
    answer = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error xmlns="{_NS}">'
        f"<Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId>"
        f"<HostId>http://123.mns.cn-hangzhou.aliyuncs.com</HostId></Error>"
    )
    return ResponseInternal(status, {"x-mns-request-id": request_id}, answer)
