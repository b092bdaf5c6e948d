"""S3 event notifications, direct or wrapped in SNS, SQS or EventBridge.

S3 URL-encodes object keys in notifications the HTML-form way: a space becomes '+', a
literal '+' becomes "%2B", and non-ASCII is percent-encoded UTF-8. `unquote_plus`
undoes exactly that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote_plus

from openimm.platform._base import EventView, ObjectEventView, is_record_list, loads


class S3Record(ObjectEventView):
    """One record of an S3 event notification, e.g. "ObjectCreated:Put".

    `raw_key` is the key as sent, still URL-encoded; `key` is decoded, and `uri` is
    `s3://bucket/key` with it. `size` is absent for deletions.
    """

    __slots__ = ()

    _root = "s3"
    _etag_field = "eTag"
    _scheme = "s3"

    def _decode_key(self, key: str) -> str:
        return unquote_plus(key)


class S3Event(EventView):
    """An S3 event notification: `{"Records": [...]}`."""

    __slots__ = ()

    @staticmethod
    def matches(data: Any) -> bool:
        """Whether decoded data is an S3 notification (possibly with no records)."""
        return is_record_list(data, "Records", "s3")

    @property
    def records(self) -> Iterator[S3Record]:
        """The records."""
        return (S3Record(item) for item in self._mappings("Records"))


class S3EventBridgeEvent(ObjectEventView):
    """An S3 "Object Created" event delivered by Amazon EventBridge.

    `key` is decoded (EventBridge encodes it like notifications do); `uri` is
    `s3://bucket/key` with the decoded key.
    """

    __slots__ = ()

    _root = "detail"
    _etag_field = "etag"
    _scheme = "s3"

    def _decode_key(self, key: str) -> str:
        return unquote_plus(key)

    @staticmethod
    def matches(data: Any) -> bool:
        """Whether decoded data is an EventBridge event from S3."""
        return (
            isinstance(data, Mapping)
            and data.get("source") == "aws.s3"
            and isinstance(data.get("detail"), Mapping)
        )

    @property
    def detail_type(self) -> str:
        """E.g. "Object Created"."""
        return self._str("detail-type") or ""

    @property
    def event_name(self) -> str:
        """The detail type, which names the event for EventBridge."""
        return self.detail_type

    @property
    def is_object_created(self) -> bool:
        """Whether the event reports a new or overwritten object."""
        return self.detail_type == "Object Created"


class SnsEvent(EventView):
    """A Lambda SNS trigger event: `{"Records": [{"Sns": {"Message": ...}}]}`."""

    __slots__ = ()

    @staticmethod
    def matches(data: Any) -> bool:
        """Whether decoded data is an SNS trigger event."""
        return is_record_list(data, "Records", "Sns")

    @property
    def messages(self) -> Iterator[str]:
        """The message texts, in order."""
        for item in self._get("Records") or []:
            message = item.get("Sns", {}).get("Message") if isinstance(item, Mapping) else None
            if isinstance(message, str):
                yield message


def is_test_event(data: Any) -> bool:
    """Whether data is the `s3:TestEvent` S3 sends when notifications are configured."""
    return isinstance(data, Mapping) and data.get("Event") == "s3:TestEvent"


def records_in_message(text: str) -> list[S3Record]:
    """The S3 records in a queued message: a notification, maybe inside an SNS envelope."""
    data = loads(text)
    # SNS → SQS without raw message delivery wraps the notification in an envelope.
    if isinstance(data, Mapping) and data.get("Type") == "Notification":
        message = data.get("Message")
        if not isinstance(message, str):
            raise ValueError("SNS envelope without a Message")
        data = loads(message)
    if is_test_event(data):
        return []
    if not S3Event.matches(data):
        raise ValueError("message is not an S3 event notification")
    return list(S3Event(data).records)
