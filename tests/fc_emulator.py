"""What Function Compute 3.0 and its triggers do around a handler, on 127.0.0.1.

- `HttpTrigger`: an FC HTTP trigger (event format v1) in front of a handler, on a real
  socket, so that an unmodified client (the official IMM SDK) reaches the handler.
- `oss_object_created`: the event an OSS trigger sends for one new object.
- `MnsTrigger`: an EventBridge MNS queue trigger as s.yaml configures it: one message an
  invocation, the body base64-decoded, the invocation retried on failure
  (BACKOFF_RETRY: three more tries), and with errors tolerated, the event written to the
  dead-letter queue once the retries are spent; the message is consumed either way.
  Handlers get the event as FC gives it: JSON bytes.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aliyun_models.mns_queues import MnsError, MnsQueues
from function_faults import InstanceCrash
from http_front import Handler, HttpFront, text_or_base64


class FcContext:
    """The fields of FC's context object that handlers read."""

    def __init__(self, function_name: str) -> None:
        self.request_id = str(uuid.uuid4())
        self.function = type("Function", (), {"name": function_name})()


class HttpTrigger(HttpFront):
    """An anonymous FC HTTP trigger of one function, on 127.0.0.1."""

    def __init__(self, handler: Handler, function_name: str = "openimm-api") -> None:
        self._handler = handler
        self._function_name = function_name
        super().__init__()

    def invoke(self, event: Any) -> dict[str, Any]:
        # FC hands a function its event as JSON bytes
        reply: dict[str, Any] = self._handler(
            json.dumps(event).encode(), FcContext(self._function_name)
        )
        return reply

    def event(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Any:
        """The v1 event FC builds: the headers as sent, the query decoded, text or Base64."""
        parts = urlsplit(target)
        domain = "openimm-api-abcdefghij.cn-hangzhou.fcapp.run"
        body, encoded = text_or_base64(raw)
        return {
            "version": "v1",
            "rawPath": parts.path,
            "body": body,
            "isBase64Encoded": encoded,
            "headers": headers,
            "queryParameters": dict(parse_qsl(parts.query, keep_blank_values=True)),
            "requestContext": {
                "accountId": "1234567890123456",
                "domainName": domain,
                "domainPrefix": domain.split(".", 1)[0],
                "http": {
                    "method": method,
                    "path": parts.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": headers.get("User-Agent", ""),
                },
                "requestId": f"1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:8]}",
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "timeEpoch": str(int(time.time() * 1000)),
            },
        }


def oss_object_created(
    bucket: str, key: str, size: int, etag: str, region: str, account: str
) -> bytes:
    """The event an OSS trigger sends for one new object, as FC hands it over."""
    event = {
        "events": [
            {
                "eventName": "ObjectCreated:PutObject",
                "eventSource": "acs:oss",
                "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "eventVersion": "1.0",
                "oss": {
                    "bucket": {
                        "arn": f"acs:oss:{region}:{account}:{bucket}",
                        "name": bucket,
                        "ownerIdentity": account,
                    },
                    "object": {"deltaSize": size, "eTag": etag, "key": key, "size": size},
                    "ossSchemaVersion": "1.0",
                    "ruleId": uuid.uuid4().hex,
                },
                "region": region,
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"requestId": uuid.uuid4().hex.upper()[:24]},
                "userIdentity": {"principalId": account},
            }
        ]
    }
    return json.dumps(event).encode()


class MnsTrigger:
    """One EventBridge MNS queue trigger of one function."""

    def __init__(
        self,
        queues: MnsQueues,
        queue: str,
        handler: Handler,
        *,
        dead_letter_queue: str | None,
        retries: int,
        function_name: str,
        region: str,
        account: str,
    ) -> None:
        self._queues = queues
        self.queue = queue
        self._handler = handler
        self._dead_letters = dead_letter_queue
        self._retries = retries
        self.function_name = function_name
        self._subject = f"acs:mns:{region}:{account}:queues/{queue}"
        self._account = account
        self._region = region
        self.invocations = 0
        self.crashes = 0
        self.failures = 0
        self.dead_lettered = 0
        self.redelivered = 0
        # called with the decoded body before each delivery; returning True delivers the
        # message twice (EventBridge, like MNS, delivers at least once)
        self.redeliver: Callable[[Any], bool] | None = None

    def poll(self) -> int:
        """Deliver the oldest visible message, if any; 1 if one was taken."""
        try:
            [message] = self._queues.receive(self.queue, 1, 0)
        except MnsError as exc:
            if exc.code == "MessageNotExist":
                return 0
            raise
        event = self._event(message.message_id, base64.b64decode(message.body).decode())
        times = 2 if self.redeliver is not None and self.redeliver(event) else 1
        self.redelivered += times - 1
        for _ in range(times):
            if not self._deliver(event) and self._dead_letters is not None:
                # errors tolerated: the event goes on to the dead-letter queue
                letter = base64.b64encode(json.dumps(event).encode()).decode()
                self._queues.send(self._dead_letters, letter, 0, 8)
                self.dead_lettered += 1
        self._queues.delete(self.queue, message.handle)
        return 1

    def backlog(self) -> int:
        """Messages in the queue, visible or not."""
        return self._queues.size(self.queue)

    def _deliver(self, event: dict[str, Any]) -> bool:
        for _ in range(1 + self._retries):
            self.invocations += 1
            try:
                self._handler(json.dumps(event).encode(), FcContext(self.function_name))
                return True
            except InstanceCrash:
                self.crashes += 1
            except Exception:
                self.failures += 1
        return False

    def _event(self, message_id: str, body: str) -> dict[str, Any]:
        bus = f"MNS-{self.function_name}-{self.queue}"
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        return {
            "id": str(uuid.uuid4()),
            "source": bus,
            "specversion": "1.0",
            "type": "mns:Queue:SendMessage",
            "datacontenttype": "application/json; charset=utf-8",
            "subject": self._subject,
            "time": now,
            "aliyunaccountid": self._account,
            "aliyunpublishtime": now,
            "aliyunoriginalaccountid": self._account,
            "aliyuneventbusname": bus,
            "aliyunregionid": self._region,
            "aliyunpublishaddr": "127.0.0.1",
            "data": {
                "requestId": uuid.uuid4().hex.upper()[:24],
                "messageId": message_id,
                "messageBody": body,
            },
        }


def run_triggers(
    triggers: Iterable[MnsTrigger], done: Callable[[], bool], *, timeout_s: float
) -> float:
    """Poll every trigger in turn until `done()` and every queue is empty; the seconds taken."""
    triggers = list(triggers)
    start = time.monotonic()
    while True:
        if not sum(trigger.poll() for trigger in triggers):
            if done() and all(trigger.backlog() == 0 for trigger in triggers):
                return time.monotonic() - start
            time.sleep(0.1)
        if time.monotonic() - start > timeout_s:
            backlog = {trigger.queue: trigger.backlog() for trigger in triggers}
            raise TimeoutError(f"not done after {timeout_s:.0f} s; backlogs: {backlog}")
