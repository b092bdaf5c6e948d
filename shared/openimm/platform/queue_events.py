"""Stage messages: direct JSON, MNS queue messages via EventBridge, and SQS batches.

An SQS batch reports partial failures as `{"batchItemFailures": [{"itemIdentifier":
messageId}]}` (the event source mapping needs ReportBatchItemFailures). Each record is
processed on its own; the invocation itself fails only when every record failed, so the
platform's retry and dead-letter policy applies to whole-batch outages.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from openimm.platform._base import EventView, is_record_list, loads

_log = logging.getLogger(__name__)


class BatchProcessingError(RuntimeError):
    """Every record of a batch failed, or a batch without partial reporting had failures."""


class SqsRecord(EventView):
    """One SQS message of a Lambda SQS batch."""

    __slots__ = ()

    @property
    def message_id(self) -> str:
        """The id SQS expects back in `batchItemFailures`."""
        return self._str("messageId") or ""

    @property
    def body(self) -> str:
        """The message body text."""
        return self._str("body") or ""

    @property
    def receive_count(self) -> int | None:
        """How often SQS has delivered the message, this time included."""
        return self._int("attributes", "ApproximateReceiveCount")

    @property
    def is_fifo(self) -> bool:
        """Whether the message comes from a FIFO queue, where order must hold."""
        return (self._str("eventSourceARN") or "").endswith(".fifo")


class SqsEvent(EventView):
    """A Lambda SQS batch: `{"Records": [{"eventSource": "aws:sqs", ...}]}`."""

    __slots__ = ()

    @staticmethod
    def matches(data: Any) -> bool:
        """Whether decoded data is an SQS batch."""
        return is_record_list(data, "Records", "eventSource", "aws:sqs")

    @property
    def records(self) -> Iterator[SqsRecord]:
        """The messages, in delivery order."""
        return (SqsRecord(item) for item in self._mappings("Records"))


class MnsCloudEvent(EventView):
    """An MNS queue message delivered by EventBridge (FC's MNS queue trigger)."""

    __slots__ = ()

    @staticmethod
    def matches(data: Any) -> bool:
        """Whether decoded data is a CloudEvent carrying an MNS message."""
        if not isinstance(data, Mapping):
            return False
        inner = data.get("data")
        return isinstance(inner, Mapping) and "messageBody" in inner

    @property
    def message_id(self) -> str:
        """MNS's message id."""
        return self._str("data", "messageId") or self._str("id") or ""

    def json_body(self) -> Any:
        """The message body decoded as JSON, Base64-wrapped or not."""
        body = self._get("data", "messageBody")
        if not isinstance(body, str):
            # EventBridge may already have parsed a JSON body.
            return body
        try:
            return loads(body)
        except ValueError:
            pass
        # The MNS SDKs Base64-encode bodies by default; the trigger may not decode them.
        try:
            decoded = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("MNS message body is neither JSON nor Base64 JSON") from None
        return loads(decoded)


def mns_batch(data: Any) -> list[MnsCloudEvent] | None:
    """The messages of an EventBridge delivery (one CloudEvent or a list), else None."""
    if MnsCloudEvent.matches(data):
        return [MnsCloudEvent(data)]
    if isinstance(data, list) and data and all(MnsCloudEvent.matches(item) for item in data):
        return [MnsCloudEvent(item) for item in data]
    return None


def process_sqs_batch(event: SqsEvent, process: Callable[[SqsRecord], None]) -> dict[str, Any]:
    """Run `process` on each record and report the failed ones the way Lambda expects."""
    records = list(event.records)
    failed: list[str] = []
    first_error: Exception | None = None
    for record in records:
        if failed and record.is_fifo:
            # A FIFO group must not run ahead of a failed message: hand the rest back.
            failed.append(record.message_id)
            continue
        try:
            process(record)
        except Exception as exc:
            _log.exception("SQS message %s failed", record.message_id)
            failed.append(record.message_id)
            first_error = first_error or exc
    if records and len(failed) == len(records):
        message = f"all {len(records)} messages of the batch failed"
        raise BatchProcessingError(message) from first_error
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def process_all(items: list[Any], process: Callable[[Any], None], what: str) -> None:
    """Run `process` on every item, then raise if any failed (the platform retries all)."""
    errors: list[Exception] = []
    for item in items:
        try:
            process(item)
        except Exception as exc:
            if len(items) == 1:
                raise
            _log.exception("%s failed", what)
            errors.append(exc)
    if errors:
        raise BatchProcessingError(f"{len(errors)} of {len(items)} {what}s failed") from errors[0]
