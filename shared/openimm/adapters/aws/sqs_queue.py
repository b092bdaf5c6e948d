"""Queue on SQS standard queues, each with its dead-letter queue "<name>-dlq".

SQS counts whole seconds: visibility timeouts and delays are rounded up. Order is
best effort, as in any standard queue. A message received `max_receives` times without
being acked is moved to the dead-letter queue by SQS itself (the redrive policy); one
given up on by `dead_letter` goes there with its reason in a message attribute. Either
keeps its original body, so SQS's own redrive can send it back.

SQS acts on any receipt it handed out for a message, even after another receiver got
it again. So a receipt here carries the end of its visibility timeout, and once that
has passed the receipt is spent: ack, retry and dead_letter ignore it, as the port
says. An ack that comes too late leaves the message to be done again (at least once).
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

from botocore.exceptions import ClientError

from openimm.adapters.aws.errors import aws_errors, error_code
from openimm.ports import DEAD_LETTER_REASON, JSON, Message, Queue, StorageUnavailable

_BATCH = 10  # SQS's most messages per receive
_MAX_DELAY_S = 900
_MAX_VISIBILITY_S = 43200
# a receipt that is no longer the current holder's: SQS's words for it
_STALE = (
    "ReceiptHandleIsInvalid",
    "InvalidParameterValue",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
)
_MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
# how long dead_letters hides the letters it reads so that one pass sees each once
_PEEK_S = 10


class SqsQueue(Queue):
    """Logical queue `q` is the SQS queue `<prefix>q`; its dead letters `<prefix>q-dlq`."""

    def __init__(
        self,
        client: Any,
        prefix: str = "",
        *,
        create_missing: bool = False,
        max_receives: int = 5,
        wait_seconds: int = 0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        # Deployed queues come from the template; creating them is for sandboxes.
        self._create_missing = create_missing
        self._max_receives = max_receives
        # long polling: 1..20 s makes an empty receive wait for a message that long
        self._wait_seconds = wait_seconds
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def _send(self, queue: str, raw_body: str, delay_seconds: float) -> str:
        delay = min(_MAX_DELAY_S, math.ceil(delay_seconds))
        with aws_errors(f"send to {queue}"):
            sent = self._client.send_message(
                QueueUrl=self._url(queue), MessageBody=raw_body, DelaySeconds=delay
            )
        return str(sent["MessageId"])

    def _receive(self, queue: str, max_messages: int, visibility_timeout: float) -> list[Message]:
        visibility = min(_MAX_VISIBILITY_S, math.ceil(max(0.0, visibility_timeout)))
        url = self._url(queue)
        # taken before asking, so never later than the end SQS counts from its receipt
        spent_at = time.time() + visibility
        got: list[Message] = []
        while len(got) < max_messages:
            with aws_errors(f"receive from {queue}"):
                answer = self._client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=min(_BATCH, max_messages - len(got)),
                    VisibilityTimeout=visibility,
                    WaitTimeSeconds=self._wait_seconds if not got else 0,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            batch = answer.get("Messages", [])
            got += [
                Message(
                    queue,
                    json.loads(m["Body"]),
                    int(m["Attributes"]["ApproximateReceiveCount"]),
                    f"{spent_at!r} {m['ReceiptHandle']}",
                    m["MessageId"],
                )
                for m in batch
            ]
            if not batch:
                break
        return got

    def _ack(self, message: Message) -> None:
        self._spend(message, "delete_message")

    def _retry(self, message: Message, delay_seconds: float) -> None:
        delay = min(_MAX_VISIBILITY_S, math.ceil(delay_seconds))
        self._spend(message, "change_message_visibility", VisibilityTimeout=delay)

    def _dead_letter(self, message: Message, reason: str) -> None:
        # Held first, so that a stale receipt sends nothing to the dead letters.
        if not self._spend(message, "change_message_visibility", VisibilityTimeout=_PEEK_S):
            return
        raw = json.dumps(message.body, separators=(",", ":"), sort_keys=True)
        with aws_errors(f"dead-letter in {message.queue}"):
            self._client.send_message(
                QueueUrl=self._url(_dead(message.queue)),
                MessageBody=raw,
                MessageAttributes={
                    DEAD_LETTER_REASON: {"DataType": "String", "StringValue": reason}
                },
            )
        self._ack(message)

    def _dead_letters(self, queue: str) -> list[tuple[JSON, str]]:
        try:
            url = self._url(_dead(queue), create=False)
        except _NoQueue:
            return []
        seen: list[tuple[int, JSON, str, str]] = []
        while True:
            with aws_errors(f"read the dead letters of {queue}"):
                answer = self._client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=_BATCH,
                    VisibilityTimeout=_PEEK_S,
                    MessageSystemAttributeNames=["SentTimestamp"],
                    MessageAttributeNames=[DEAD_LETTER_REASON],
                )
            batch = answer.get("Messages", [])
            if not batch:
                break
            for m in batch:
                reason = (
                    m.get("MessageAttributes", {}).get(DEAD_LETTER_REASON, {}).get("StringValue")
                )
                seen.append(
                    (
                        int(m["Attributes"]["SentTimestamp"]),
                        json.loads(m["Body"]),
                        reason or f"received {self._max_receives} times or more",
                        m["ReceiptHandle"],
                    )
                )
        # Reading hid them: show them again, they stay until someone redrives them.
        for _, _, _, receipt in seen:
            with aws_errors(f"read the dead letters of {queue}"):
                self._client.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0
                )
        seen.sort(key=lambda letter: letter[0])
        return [(body, reason) for _, body, reason, _ in seen]

    def _spend(self, message: Message, action: str, **args: Any) -> bool:
        """Call SQS's `action` with the message's receipt; False when the receipt is spent."""
        spent_at, handle = message.receipt.split(" ", 1)
        if time.time() >= float(spent_at):
            return False
        try:
            call = getattr(self._client, action)
            call(QueueUrl=self._url(message.queue), ReceiptHandle=handle, **args)
            return True
        except ClientError as exc:
            if error_code(exc) in _STALE:
                return False  # someone else holds the message now; theirs to decide
            with aws_errors(f"settle a message of {message.queue}"):
                raise

    def _url(self, queue: str, *, create: bool = True) -> str:
        name = self._prefix + queue
        with self._lock:
            if name in self._urls:
                return self._urls[name]
        try:
            url = str(self._client.get_queue_url(QueueName=name)["QueueUrl"])
        except ClientError as exc:
            if error_code(exc) not in _MISSING:
                with aws_errors(f"find queue {name}"):
                    raise
            if not (create and self._create_missing):
                raise _NoQueue(name) from exc
            url = self._create(name)
        with self._lock:
            self._urls[name] = url
        return url

    def _create(self, name: str) -> str:
        with aws_errors(f"create queue {name}"):
            dead = self._client.create_queue(QueueName=_dead(name))["QueueUrl"]
            arn = self._client.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            policy = {"deadLetterTargetArn": arn, "maxReceiveCount": self._max_receives}
            created = self._client.create_queue(
                QueueName=name, Attributes={"RedrivePolicy": json.dumps(policy)}
            )
        return str(created["QueueUrl"])


class _NoQueue(StorageUnavailable):
    """The queue does not exist (and is not to be created)."""


def _dead(queue: str) -> str:
    return f"{queue}-dlq"
