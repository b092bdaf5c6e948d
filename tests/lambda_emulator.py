"""What Lambda and its event sources do around a handler, on 127.0.0.1 and a moto server.

- `HttpApi`: an HTTP API (payload format 2.0) in front of a handler, on a real socket,
  so that an unmodified client (the official IMM SDK) reaches the handler through it.
- `EventSourceMapping`: an SQS event source mapping: receives batches with their
  attributes, invokes the handler, deletes what succeeded (honouring
  `batchItemFailures`), and leaves the rest to come back after the visibility timeout,
  where the queue's own redrive policy moves it to its dead-letter queue in time.
- `InstanceCrash`: raised inside a handler, the instance dies mid-invocation (out of
  memory, timeout): no reply, nothing deleted, however far the batch had got.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Handler = Callable[[Any, Any], Any]
ACCOUNT = "123456789012"


class InstanceCrash(BaseException):
    """The function's instance died mid-invocation: the runtime sends no reply at all."""


class LambdaContext:
    """The fields of Lambda's context object that handlers read."""

    def __init__(self, function_name: str, timeout_s: float = 60) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{function_name}"
        self.memory_limit_in_mb = 2048
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def s3_object_created(bucket: str, key: str, size: int, etag: str) -> dict[str, Any]:
    """The event S3 sends a function for one new object (one record, key URL-encoded)."""
    from urllib.parse import quote_plus

    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "openimm-uploads",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag.strip('"'),
                        "sequencer": f"{time.time_ns():X}",
                    },
                },
            }
        ]
    }


class HttpApi:
    """An HTTP API's $default route to one function, on 127.0.0.1 (payload format 2.0)."""

    def __init__(self, handler: Handler, function_name: str = "openimm-api") -> None:
        api = self

        class _Request(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                api._forward(self)

            def do_GET(self) -> None:
                api._forward(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._handler = handler
        self._function_name = function_name
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Request)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.invocations = 0

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _forward(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("content-length") or 0)
        raw = request.rfile.read(length) if length else b""
        event = self.event(request.command, request.path, dict(request.headers.items()), raw)
        self.invocations += 1
        reply = self._handler(event, LambdaContext(self._function_name))
        body = reply.get("body") or ""
        data = base64.b64decode(body) if reply.get("isBase64Encoded") else body.encode()
        request.send_response(int(reply.get("statusCode", 200)))
        for name, value in (reply.get("headers") or {}).items():
            request.send_header(name, value)
        request.send_header("content-length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def event(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Any:
        """The event API Gateway builds: lower-case headers, decoded query, text or Base64."""
        parts = urlsplit(target)
        query: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            # repeated names are joined with commas, as the HTTP API does
            query[name] = f"{query[name]},{value}" if name in query else value
        lowered = {name.lower(): value for name, value in headers.items()}
        domain = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
        try:
            body, encoded = raw.decode("utf-8"), False
        except UnicodeDecodeError:
            body, encoded = base64.b64encode(raw).decode(), True
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": parts.path,
            "rawQueryString": parts.query,
            "headers": lowered,
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": "a1b2c3d4e5",
                "domainName": domain,
                "domainPrefix": "a1b2c3d4e5",
                "http": {
                    "method": method,
                    "path": parts.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": lowered.get("user-agent", ""),
                },
                "requestId": base64.b64encode(uuid.uuid4().bytes[:10]).decode(),
                "routeKey": "$default",
                "stage": "$default",
                "timeEpoch": int(time.time() * 1000),
            },
            "isBase64Encoded": encoded,
        }
        if query:
            event["queryStringParameters"] = query
        if raw:
            event["body"] = body
        return event


class EventSourceMapping:
    """Lambda's poller for one SQS queue and one function (ReportBatchItemFailures on)."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        *,
        batch_size: int,
        visibility_s: int,
        function_name: str,
        batching_window_s: float = 0,
    ) -> None:
        self._sqs = sqs
        self.queue_url = queue_url
        self._arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._handler = handler
        self.batch_size = batch_size
        self._visibility_s = visibility_s
        self.function_name = function_name
        self.invocations = 0
        self.crashes = 0
        self.failed_records = 0
        self.before_invoke: Callable[[list[dict[str, Any]]], None] | None = None
        # MaximumBatchingWindowInSeconds: wait that long for a full batch
        self._window_s = batching_window_s
        self._waiting_since: float | None = None

    def poll(self) -> int:
        """One receive and, if it got messages, one invocation; returns the batch's size."""
        if self._window_s and not self._batch_ready():
            return 0
        self._waiting_since = None
        reply = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            VisibilityTimeout=self._visibility_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        messages = reply.get("Messages", [])
        if not messages:
            return 0
        records = [self._record(message) for message in messages]
        if self.before_invoke is not None:
            self.before_invoke(records)
        self.invocations += 1
        try:
            result = self._handler({"Records": records}, LambdaContext(self.function_name))
        except InstanceCrash:
            self.crashes += 1
            return len(records)
        except Exception:
            # a function error: Lambda returns the whole batch to the queue
            self.failed_records += len(records)
            return len(records)
        failed = {
            item["itemIdentifier"]
            for item in (result or {}).get("batchItemFailures", [])
            if isinstance(item, dict)
        }
        self.failed_records += len(failed)
        done = [
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
            for index, message in enumerate(messages)
            if message["MessageId"] not in failed
        ]
        if done:
            self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=done)
        return len(records)

    def _batch_ready(self) -> bool:
        visible = int(
            self._sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        if visible >= self.batch_size:
            return True
        if not visible:
            return False
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        return now - self._waiting_since >= self._window_s

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        attributes = {
            name: message.get("MessageAttributes", {})[name]
            for name in message.get("MessageAttributes", {})
        }
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                key: value
                for key, value in message.get("Attributes", {}).items()
                if key
                in (
                    "ApproximateReceiveCount",
                    "SentTimestamp",
                    "SenderId",
                    "ApproximateFirstReceiveTimestamp",
                )
            },
            "messageAttributes": {
                name: {
                    "stringValue": value.get("StringValue"),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value.get("DataType", "String"),
                }
                for name, value in attributes.items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self._arn,
            "awsRegion": "us-east-1",
        }

    def backlog(self) -> int:
        """Messages in the queue, visible or in flight."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


def run_mappings(
    mappings: Iterable[EventSourceMapping],
    done: Callable[[], bool],
    *,
    timeout_s: float,
    idle_sleep_s: float = 0.2,
) -> float:
    """Poll every mapping in turn until `done()` and every queue is empty; the seconds taken.

    Raises TimeoutError (with each queue's backlog) when that takes longer than `timeout_s`.
    """
    mappings = list(mappings)
    start = time.monotonic()
    while True:
        received = sum(mapping.poll() for mapping in mappings)
        if not received:
            if done() and all(mapping.backlog() == 0 for mapping in mappings):
                return time.monotonic() - start
            time.sleep(idle_sleep_s)
        if time.monotonic() - start > timeout_s:
            backlog = {mapping.function_name: mapping.backlog() for mapping in mappings}
            raise TimeoutError(f"not done after {timeout_s:.0f} s; backlogs: {json.dumps(backlog)}")
