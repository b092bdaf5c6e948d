"""Queued messages: direct JSON, MNS queue messages via EventBridge, and SQS batches.

An SQS batch goes through Powertools' batch processor, which reports partial failures
as `{"batchItemFailures": [...]}` (the event source mapping needs
ReportBatchItemFailures) and fails the invocation only when every record failed, so
the platform's retry and dead-letter policy applies to whole-batch outages.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from openimm.platform._base import EventView, is_record_list, loads

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

_log = logging.getLogger(__name__)


class BatchProcessingError(RuntimeError):
    """Every record of a batch failed, or a batch without partial reporting had failures."""


def is_sqs_batch(data: Any) -> bool:
    """Whether decoded data is a Lambda SQS batch: `{"Records": [{"eventSource": "aws:sqs"}]}`."""
    return is_record_list(data, "Records", "eventSource", "aws:sqs")


def receive_count(record: SQSRecord) -> int:
    """How often SQS has delivered the record, this time included (1 if it does not say)."""
    text = record.attributes.approximate_receive_count
    return int(text) if text and text.isdigit() else 1


def queue_name(arn: str | None) -> str:
    """The queue's name in its ARN (`arn:aws:sqs:region:account:name`)."""
    return (arn or "").rsplit(":", 1)[-1]


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
    def subject(self) -> str | None:
        """The source as EventBridge names it, e.g. `acs:mns:<region>:<account>:queues/<q>`."""
        return self._str("subject")

    @property
    def queue(self) -> str:
        """The MNS queue's name, from the subject."""
        return (self.subject or "").rsplit("/", 1)[-1]

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


def process_sqs_batch(event: Mapping[str, Any], process: Callable[[SQSRecord], None]) -> Any:
    """Run `process` on each record and report the failed ones the way Lambda expects."""
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        SqsFifoPartialProcessor,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.batch.exceptions import (
        BatchProcessingError as AllFailed,
    )

    fifo = any(
        queue_name(record.get("eventSourceARN")).endswith(".fifo")
        for record in event["Records"]
        if isinstance(record, Mapping)
    )
    # A FIFO group must not run ahead of a failed message: the FIFO processor hands the
    # rest of the batch back once one fails.
    processor = SqsFifoPartialProcessor() if fifo else BatchProcessor(EventType.SQS)

    def logged(record: SQSRecord) -> None:
        try:
            process(record)
        except Exception:
            _log.exception("SQS message %s failed", record.message_id)
            raise

    try:
        return process_partial_response(dict(event), logged, processor)
    except AllFailed as exc:
        count = len(event["Records"])
        raise BatchProcessingError(f"all {count} messages of the batch failed") from exc


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
