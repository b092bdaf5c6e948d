"""MNS queues as plain Python state, following MNS's API reference (no HTTP here).

What is modelled, as documented:
- a received message is Inactive until its NextVisibleTime (the queue's VisibilityTimeout,
  30 s by default, counted from the receive); every receive and every visibility change
  gives a new receipt handle, and only the newest one is valid, until NextVisibleTime;
- DequeueCount counts receives; FirstDequeueTime is set by the first one;
- DelaySeconds 0..604800 on send, VisibilityTimeout 1..43200 on a change,
  numOfMessages 1..16 and waitseconds 0..30 on a receive; an empty receive is 404
  MessageNotExist, after waiting up to waitseconds (long polling) for a message;
- a peek returns Active messages without changing them, at most 16.
A handle the queue never issued, or one a later receive or change replaced, is
ReceiptHandleError; one whose message is gone, or whose NextVisibleTime has passed, is
MessageNotExist (the adapter treats both as a stale receipt).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass, field

DEFAULT_VISIBILITY_S = 30
MAX_BODY_BYTES = 64 * 1024


class MnsError(Exception):
    """One of MNS's documented errors: its HTTP status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


def _invalid(message: str) -> MnsError:
    return MnsError(400, "InvalidArgument", message)


@dataclass
class StoredMessage:
    """A message in a queue and what MNS reports about it."""

    message_id: str
    body: str  # as sent: base64 text with the SDK's default encoding
    enqueue_ms: int
    visible_at: float
    priority: int = 8
    dequeue_count: int = 0
    first_dequeue_ms: int = 0
    handle: str = ""

    @property
    def md5(self) -> str:
        return hashlib.md5(self.body.encode(), usedforsecurity=False).hexdigest().upper()


@dataclass
class QueueState:
    """One queue: its attributes and its messages, oldest first."""

    visibility_s: int = DEFAULT_VISIBILITY_S
    messages: list[StoredMessage] = field(default_factory=list)


class MnsQueues:
    """The queues of one account."""

    def __init__(self, names: list[str]) -> None:
        self._queues = {name: QueueState() for name in names}
        self._changed = threading.Condition()
        # handles ever issued, so that a replaced one is told from a made-up one
        self._issued: set[str] = set()

    def names(self) -> list[str]:
        return sorted(self._queues)

    def send(self, queue: str, body: str, delay_s: int, priority: int) -> StoredMessage:
        if not 0 <= delay_s <= 604800:
            raise _invalid("The value of DelaySeconds should between 0 and 604800 seconds.")
        if not 1 <= priority <= 16:
            raise _invalid("The value of Priority should between 1 and 16.")
        if len(body.encode()) > MAX_BODY_BYTES:
            raise MnsError(400, "MessageBodyTooLong", "The message body exceeds 64 KB.")
        with self._changed:
            state = self._state(queue)
            now = time.time()
            stored = StoredMessage(
                uuid.uuid4().hex.upper(), body, int(now * 1000), now + delay_s, priority
            )
            state.messages.append(stored)
            self._changed.notify_all()
        return stored

    def receive(self, queue: str, count: int, wait_s: int) -> list[StoredMessage]:
        if not 1 <= count <= 16:
            raise _invalid("The value of numOfMessages should between 1 and 16.")
        if not 0 <= wait_s <= 30:
            raise _invalid("The value of waitseconds should between 0 and 30 seconds.")
        deadline = time.time() + wait_s
        with self._changed:
            state = self._state(queue)
            while True:
                now = time.time()
                active = [m for m in state.messages if m.visible_at <= now][:count]
                if active:
                    break
                if now >= deadline:
                    raise MnsError(404, "MessageNotExist", "Message not exist.")
                self._changed.wait(min(deadline, self._next_visible(state, now)) - now)
            for m in active:
                m.dequeue_count += 1
                m.first_dequeue_ms = m.first_dequeue_ms or int(now * 1000)
                m.visible_at = now + state.visibility_s
                m.handle = self._new_handle(m)
            return active

    def peek(self, queue: str, count: int) -> list[StoredMessage]:
        if not 1 <= count <= 16:
            raise _invalid("The value of numOfMessages should between 1 and 16.")
        with self._changed:
            state = self._state(queue)
            now = time.time()
            active = [m for m in state.messages if m.visible_at <= now][:count]
            if not active:
                raise MnsError(404, "MessageNotExist", "Message not exist.")
            return active

    def delete(self, queue: str, handle: str) -> None:
        with self._changed:
            state = self._state(queue)
            held = self._held(state, handle)
            state.messages.remove(held)

    def change_visibility(self, queue: str, handle: str, visibility_s: int) -> StoredMessage:
        if not 1 <= visibility_s <= 43200:
            raise _invalid("The value of VisibilityTimeout should between 1 and 43200 seconds.")
        with self._changed:
            state = self._state(queue)
            held = self._held(state, handle)
            held.visible_at = time.time() + visibility_s
            held.handle = self._new_handle(held)
            self._changed.notify_all()
            return held

    def _state(self, queue: str) -> QueueState:
        if queue not in self._queues:
            raise MnsError(404, "QueueNotExist", "The queue name you provided is not exist.")
        return self._queues[queue]

    def _held(self, state: QueueState, handle: str) -> StoredMessage:
        if handle not in self._issued:
            raise MnsError(
                400, "ReceiptHandleError", "The receipt handle you provide is not valid."
            )
        now = time.time()
        for m in state.messages:
            if m.handle == handle:
                if m.visible_at <= now:  # NextVisibleTime passed: Active again
                    raise MnsError(404, "MessageNotExist", "Message not exist.")
                return m
        if any(handle.startswith(_handle_prefix(m)) for m in state.messages):
            raise MnsError(
                400, "ReceiptHandleError", "The receipt handle you provide is not valid."
            )
        raise MnsError(404, "MessageNotExist", "Message not exist.")

    def _new_handle(self, message: StoredMessage) -> str:
        token = f"{message.message_id}-{uuid.uuid4().hex[:12]}"
        handle = _handle_prefix(message) + base64.b64encode(token.encode()).decode()
        self._issued.add(handle)
        return handle

    @staticmethod
    def _next_visible(state: QueueState, now: float) -> float:
        later = [m.visible_at for m in state.messages if m.visible_at > now]
        return min(later, default=now + 3600)


def _handle_prefix(message: StoredMessage) -> str:
    # Real handles start with a digit and a dash (e.g. "1-ODU4..."); the message id is
    # kept here so a replaced handle of a message still queued can be told apart.
    return f"1-{message.message_id[:8]}-"
