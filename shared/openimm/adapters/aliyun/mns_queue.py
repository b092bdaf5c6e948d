"""Queue on MNS queues: logical queue `q` is the MNS queue `<prefix>q`, its dead letters
`<prefix>q-dlq`.

MNS hides a received message for the queue's own VisibilityTimeout; it takes no timeout
per receive. So `receive` asks for the caller's timeout with ChangeMessageVisibility right
after, and keeps the receipt handle that call returns: MNS gives a new handle on every
receive and every visibility change, and only the newest is valid, until its
NextVisibleTime. MNS counts whole seconds from 1 (a timeout or retry delay is rounded up,
0 becomes 1 s). It refuses a stale handle itself (ReceiptHandleError or MessageNotExist),
so ack, retry and dead_letter simply ignore one, as the port says.

A dead letter is a message of `<prefix>q-dlq` whose body wraps the original with its
reason: `{"dead_letter": {"queue": q, "reason": ..., "body": {...}}}`. The reason travels in
the body rather than in an MNS message property because the EventBridge MNS trigger that
feeds the dead-letter function delivers the message body only. The same queue is the
dead-letter queue of the stage's EventBridge trigger, which writes the event it gave up
on (a CloudEvent whose `data.messageBody` is the original body); `dead_letters` reads both.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mns.mns_exception import MNSClientNetworkException, MNSExceptionBase, MNSServerException
from mns.queue import Message as MnsMessage

from openimm.ports import JSON, Message, PortError, Queue, StorageUnavailable, WrappedLetter

_BATCH = 16  # MNS's most messages per BatchReceiveMessage / BatchPeekMessage
_MAX_DELAY_S = 604800  # SendMessage's DelaySeconds: 0..7 days
_MAX_VISIBILITY_S = 43200  # ChangeMessageVisibility: 1..43200 s
# how long dead_letter holds a message while it copies it to the dead letters
_HOLD_S = 30
# MNS's codes for a handle that is no longer the holder's (received again, expired, gone)
_STALE = {"ReceiptHandleError", "MessageNotExist"}
# MNS's codes for a service that cannot take the request now, whatever the request
_OUTAGES = {"InternalError", "ServiceUnavailable", "TimeExpired", "AccessDenied"}
_PLATFORM_REASON = "given up on by the queue's trigger after its retries"


class MnsQueue(Queue):
    """Queues of one MNS account (`mns.account.Account`), created beforehand with their
    dead-letter queues (README, "Deploy to Function Compute")."""

    def __init__(self, account: Any, prefix: str = "", *, wait_seconds: int = 0) -> None:
        self._account = account
        self._prefix = prefix
        # long polling: 1..30 s makes an empty receive wait for a message that long
        self._wait_seconds = wait_seconds
        # The account's client holds one HTTP connection, which threads must not share.
        self._lock = threading.Lock()

    def _send(self, queue: str, raw_body: str, delay_seconds: float) -> str:
        delay = min(_MAX_DELAY_S, math.ceil(delay_seconds))
        return self._put(queue, raw_body, delay)

    def _receive(self, queue: str, max_messages: int, visibility_timeout: float) -> list[Message]:
        visibility = _visibility(visibility_timeout)
        mns_queue = self._queue(queue)
        got: list[Message] = []
        while len(got) < max_messages:
            wait = self._wait_seconds if not got else 0
            batch = self._batch_receive(
                mns_queue, queue, min(_BATCH, max_messages - len(got)), wait
            )
            for received in batch:
                handle = self._change(mns_queue, received.receipt_handle, visibility)
                if handle is None:
                    continue  # lost to the queue's own timeout before it was extended
                got.append(
                    Message(
                        queue,
                        json.loads(_text(received.message_body)),
                        int(received.dequeue_count),
                        handle,
                        str(received.message_id),
                    )
                )
            if not batch:
                break
        return got

    def _ack(self, message: Message) -> None:
        self._delete(message.queue, message.receipt)

    def _retry(self, message: Message, delay_seconds: float) -> None:
        self._change(self._queue(message.queue), message.receipt, _visibility(delay_seconds))

    def _dead_letter(self, message: Message, reason: str) -> None:
        # Held first, so that a stale receipt sends nothing to the dead letters; the hold
        # returns the handle the final delete needs.
        handle = self._change(self._queue(message.queue), message.receipt, _HOLD_S)
        if handle is None:
            return
        letter = WrappedLetter(message.queue, reason, message.body).to_json()
        self._put(_dead(message.queue), json.dumps(letter, separators=(",", ":")), 0)
        self._delete(message.queue, handle)

    def _dead_letters(self, queue: str) -> list[tuple[JSON, str]]:
        # Peeking leaves the letters as they are (a receive would hide them from the
        # dead-letter function's trigger); MNS peeks at most 16 messages, the oldest.
        dead = self._queue(_dead(queue))
        try:
            with self._calling(f"read the dead letters of {queue}", reads=True):
                peeked = dead.batch_peek_message(_BATCH)
        except (_Missing, _Empty):
            return []
        peeked.sort(key=lambda m: int(m.enqueue_time))
        return [letter_of(_text(m.message_body)) for m in peeked]

    # ------------------------------------------------------------ SDK calls

    def _queue(self, queue: str) -> Any:
        return self._account.get_queue(self._prefix + queue)

    def _put(self, queue: str, raw_body: str, delay: int) -> str:
        with self._calling(f"send to {queue}"):
            sent = self._queue(queue).send_message(MnsMessage(raw_body, delay_seconds=delay))
        return str(sent.message_id)

    def _batch_receive(self, mns_queue: Any, queue: str, size: int, wait: int) -> list[Any]:
        try:
            with self._calling(f"receive from {queue}", reads=True):
                return list(mns_queue.batch_receive_message(size, wait_seconds=wait))
        except _Empty:
            return []

    def _change(self, mns_queue: Any, handle: str, visibility: int) -> str | None:
        """The new receipt handle, or None when `handle` is no longer the holder's."""
        try:
            with self._calling(f"hold a message of {mns_queue.queue_name}"):
                changed = mns_queue.change_message_visibility(handle, visibility)
        except _Stale:
            return None
        return str(changed.receipt_handle)

    def _delete(self, queue: str, handle: str) -> None:
        try:
            with self._calling(f"delete a message of {queue}"):
                self._queue(queue).delete_message(handle)
        except _Stale:
            pass  # someone else holds the message now, or it is gone: theirs to decide

    @contextmanager
    def _calling(self, action: str, *, reads: bool = False) -> Iterator[None]:
        """One SDK call at a time, its errors translated into port errors, in one place.

        MNS answers MessageNotExist both to a read of an empty queue (`reads`) and to a
        receipt handle whose message has moved on.
        """
        try:
            with self._lock:
                yield
        except MNSClientNetworkException as exc:
            raise StorageUnavailable(f"MNS unreachable ({action}): {exc.message}") from exc
        except MNSServerException as exc:
            if exc.type == "QueueNotExist":
                raise _Missing(f"MNS queue missing ({action})") from exc
            if exc.type == "MessageNotExist" and reads:
                raise _Empty(action) from exc
            if exc.type in _STALE:
                raise _Stale(action) from exc
            if exc.type in _OUTAGES:
                raise StorageUnavailable(f"MNS {exc.type} ({action})") from exc
            raise PortError(f"MNS {exc.type} ({action}): {exc.message}") from exc
        except MNSExceptionBase as exc:  # the SDK's own checks of the request
            raise PortError(f"MNS {exc.type} ({action}): {exc.message}") from exc


def letter_of(raw_body: str) -> tuple[JSON, str]:
    """The original body and the reason of one message of a dead-letter queue.

    Either OpenIMM's own letter (`{"dead_letter": {...}}`) or the event an EventBridge
    MNS trigger gave up on (its `data.messageBody` is the original body, maybe base64).
    """
    decoded = _json_body(raw_body)
    letter = WrappedLetter.from_json(decoded)
    if letter is not None:
        return dict(letter.body or {}), letter.reason
    data = decoded.get("data")
    if isinstance(data, dict) and isinstance(data.get("messageBody"), str):
        return _json_body(data["messageBody"]), _PLATFORM_REASON
    return decoded, _PLATFORM_REASON


def _json_body(text: str) -> JSON:
    """A message body as it may come: JSON text, or base64 of it (EventBridge without
    decoding); anything else is kept as `{"value": text}`."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = json.loads(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            return {"value": text}
    return value if isinstance(value, dict) else {"value": value}


def _text(body: bytes | str) -> str:
    # The SDK base64-decodes bodies (its default encoding) into bytes.
    return body.decode() if isinstance(body, bytes) else body


def _visibility(seconds: float) -> int:
    return max(1, min(_MAX_VISIBILITY_S, math.ceil(seconds)))


def _dead(queue: str) -> str:
    return f"{queue}-dlq"


class _Missing(StorageUnavailable):
    """The queue does not exist: deployed queues are created beforehand."""


class _Empty(PortError):
    """A receive found no message (MNS answers 404 MessageNotExist)."""


class _Stale(PortError):
    """The receipt handle is no longer the holder's."""
