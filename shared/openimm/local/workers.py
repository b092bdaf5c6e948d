"""Threads that take messages from queues and run their handlers (the local stand-in
for the serverless triggers that run each stage in the cloud)."""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol, runtime_checkable

from openimm.ports import Message, Queue

log = logging.getLogger(__name__)

# a queue that cannot be read (a full or gone disk) fails every receive: the workers
# wait longer each time, up to this, and log it at most once a minute
MAX_RECEIVE_BACKOFF_S = 10.0
RECEIVE_LOG_INTERVAL_S = 60.0

Handler = Callable[[dict[str, Any]], None]
DeadLetterHook = Callable[[str, dict[str, Any], str], None]


@runtime_checkable
class CountsPending(Protocol):
    """A queue that can tell how many messages are not done yet (SqliteQueue can)."""

    def pending(self, queue: str) -> int: ...


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry `attempt`: doubling up to `cap`, the upper half jittered, so
    that messages failing together (an outage) do not all come back together."""
    delay = min(cap, base * 2.0**attempt)
    return delay / 2 + random.uniform(0, delay / 2)


class QueueWorkers:
    """Daemon threads, each taking turns over the handled queues, one message at a time.

    A handler that returns has finished the message (ack); one that raises is retried
    with a growing delay, then dead-lettered after `max_attempts` deliveries. Handlers
    decide what is permanent by not raising.
    """

    def __init__(
        self,
        queue: Queue,
        handlers: Mapping[str, Handler],
        *,
        threads: int = 2,
        visibility_timeout: float = 300,
        max_attempts: int = 3,
        on_dead_letter: DeadLetterHook | None = None,
        on_receive_error: Callable[[Exception], object] | None = None,
        poll_interval: float = 0.2,
        retry_backoff: float = 0.5,
        max_backoff: float = 60,
    ) -> None:
        if threads < 1 or max_attempts < 1 or not handlers:
            raise ValueError("need at least one thread, one attempt and one handler")
        self._queue = queue
        self._handlers = dict(handlers)
        self._names = list(handlers)
        self._threads_wanted = threads
        self._visibility_timeout = visibility_timeout
        self._max_attempts = max_attempts
        self._on_dead_letter = on_dead_letter
        self._on_receive_error = on_receive_error
        self._poll_interval = poll_interval
        self._retry_backoff = retry_backoff
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # What drain() needs to know, all under _changed (monotonic times).
        self._changed = threading.Condition()
        self._in_flight = 0
        self._received = 0
        # messages handled: an idle worker waits for this to move (a handled message may
        # have sent the next stage's), not for a whole poll interval
        self._handled = 0
        # messages sent by anyone in this process (nudge()): also worth a look at once
        self._nudges = 0
        self._last_done = time.monotonic()
        self._retries_visible_by = 0.0
        self._quiet_round_started = -1.0
        # receives failed in a row (any thread), and when that was last logged
        self._receive_failures = 0
        self._receive_logged = -RECEIVE_LOG_INTERVAL_S

    @property
    def running(self) -> bool:
        """Whether worker threads are alive."""
        return any(t.is_alive() for t in self._threads)

    def start(self) -> None:
        """Start the threads (no-op when they run)."""
        if self.running:
            return
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"openimm-worker-{i}", daemon=True)
            for i in range(self._threads_wanted)
        ]
        for thread in self._threads:
            thread.start()
        log.info("started %d workers on %s", len(self._threads), ", ".join(self._names))

    def stop(self, timeout: float = 30) -> None:
        """Ask the threads to stop after their current message and wait up to `timeout` s."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        still = [t.name for t in self._threads if t.is_alive()]
        if still:
            log.warning("workers still busy after %.1f s: %s", timeout, ", ".join(still))
        self._threads = [t for t in self._threads if t.is_alive()]

    def drain(self, timeout: float = 60) -> bool:
        """Run until every handled queue is empty and nothing is in flight; False on timeout.

        Starts the threads if they are not running, and then stops them again.
        """
        started_here = not self.running
        if started_here:
            self.start()
        try:
            deadline = time.monotonic() + timeout
            while not self._idle():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with self._changed:
                    self._changed.wait(min(remaining, self._poll_interval))
            return True
        finally:
            if started_here:
                self.stop(max(1.0, timeout))

    def _idle(self) -> bool:
        with self._changed:
            if self._in_flight:
                return False
            received = self._received
            if not isinstance(self._queue, CountsPending):
                # Without counts: a full round that found every queue empty, begun after
                # the last message finished and after our retries became visible again.
                # (Messages sent with a delay by someone else are not seen this way.)
                return self._quiet_round_started > max(self._last_done, self._retries_visible_by)
        counts = self._queue.pending
        if any(counts(name) for name in self._names):
            return False
        with self._changed:
            # A message taken while counting may have sent more to a queue already counted.
            return self._in_flight == 0 and self._received == received

    def nudge(self, queue: str | None = None) -> None:
        """A message was sent (to `queue`): idle workers look now, not at their next poll."""
        with self._changed:
            self._nudges += 1
            self._changed.notify_all()

    def _run(self, index: int) -> None:
        turn = index  # threads start on different queues
        while not self._stop.is_set():
            round_started = time.monotonic()
            with self._changed:
                seen_before = (self._handled, self._nudges)
            quiet = True
            for k in range(len(self._names)):
                if self._stop.is_set():
                    return
                if not self._take(self._names[(turn + k) % len(self._names)]):
                    quiet = False
            turn += 1
            if quiet:
                with self._changed:
                    self._quiet_round_started = max(self._quiet_round_started, round_started)
                    self._changed.notify_all()
                    # woken by another worker's handled message (it may have sent the next
                    # stage's), a message sent in this process, stop(), or after a poll
                    # interval for delayed messages and other processes' messages
                    self._changed.wait_for(
                        partial(self._worth_a_round, seen_before), self._poll_interval
                    )

    def _worth_a_round(self, seen_before: tuple[int, int]) -> bool:
        """Whether an idle worker should look at the queues again now (under _changed)."""
        return self._stop.is_set() or (self._handled, self._nudges) != seen_before

    def _take(self, name: str) -> bool:
        """Receive and handle one message of `name`; True when the queue was empty."""
        # In flight from before the receive: a message claimed but not yet counted would
        # let drain() see an empty queue and an idle worker.
        with self._changed:
            self._in_flight += 1
        empty = False
        try:
            messages = self._queue.receive(
                name, max_messages=1, visibility_timeout=self._visibility_timeout
            )
            empty = not messages
            with self._changed:
                self._receive_failures = 0
            for message in messages:
                with self._changed:
                    self._received += 1
                self._process(message)
        except Exception as exc:
            self._receive_failed(name, exc)
        finally:
            with self._changed:
                self._in_flight -= 1
                if not empty:
                    self._last_done = time.monotonic()
                    self._handled += 1
                self._changed.notify_all()
        return empty

    def _receive_failed(self, name: str, exc: Exception) -> None:
        """Back off after a failed receive: retrying at once wrote 40 000 tracebacks a
        second to the log while the disk was full (bench/reliability.py)."""
        if self._on_receive_error is not None:
            try:
                self._on_receive_error(exc)
            except Exception:
                log.debug("on_receive_error failed", exc_info=True)
        now = time.monotonic()
        with self._changed:
            self._receive_failures += 1
            failures = self._receive_failures
            loud = now - self._receive_logged >= RECEIVE_LOG_INTERVAL_S
            if loud:
                self._receive_logged = now
        if loud:
            log.exception(
                "receiving from queue %s failed (%d in a row); retrying with a delay",
                name,
                failures,
            )
        self._stop.wait(backoff(failures, self._poll_interval, MAX_RECEIVE_BACKOFF_S))

    def _process(self, message: Message) -> None:
        name = message.queue
        if message.attempts > self._max_attempts:
            # Delivered again and again without an answer: the handler kills its process.
            self._give_up(message, f"delivered {message.attempts} times without finishing")
            return
        try:
            # A copy, so that on_dead_letter sees the body as it was sent.
            self._handlers[name](copy.deepcopy(message.body))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if message.attempts < self._max_attempts:
                delay = backoff(message.attempts, self._retry_backoff, self._max_backoff)
                # routine with at-least-once delivery (e.g. a row changed under a stage):
                # one line; the traceback is kept for the attempt that gives up
                log.info(
                    "%s message %s failed (attempt %d), retry in %.1f s: %s",
                    name,
                    message.message_id,
                    message.attempts,
                    delay,
                    reason,
                )
                self._settle(self._queue.retry, message, delay_seconds=delay)
                # Taken after the retry call, so never earlier than the queue's own clock.
                with self._changed:
                    self._retries_visible_by = max(
                        self._retries_visible_by, time.monotonic() + delay
                    )
            else:
                log.error(
                    "%s message %s failed %d times, giving up: %s",
                    name,
                    message.message_id,
                    message.attempts,
                    reason,
                    exc_info=True,
                )
                self._give_up(message, reason)
            return
        self._settle(self._queue.ack, message)

    def _give_up(self, message: Message, reason: str) -> None:
        self._settle(self._queue.dead_letter, message, reason)
        if self._on_dead_letter is not None:
            try:
                self._on_dead_letter(message.queue, message.body, reason)
            except Exception:
                log.exception("on_dead_letter failed for %s message", message.queue)

    @staticmethod
    def _settle(action: Callable[..., None], message: Message, *args: Any, **kwargs: Any) -> None:
        # The message then comes back after its visibility timeout: at-least-once holds.
        try:
            action(message, *args, **kwargs)
        except Exception:
            log.exception("could not settle %s message %s", message.queue, message.message_id)
