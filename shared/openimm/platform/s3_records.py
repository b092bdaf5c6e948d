"""S3 event notifications, direct or wrapped in SNS, SQS or EventBridge.

S3 URL-encodes object keys in notifications the HTML-form way: a space becomes '+', a
literal '+' becomes "%2B", and non-ASCII is percent-encoded UTF-8. `unquote_plus`
undoes exactly that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote_plus

from openimm.platform._base import EventView, clean_etag, loads


class S3Record(EventView):
    """One record of an S3 event notification."""

    __slots__ = ()

    @property
    def event_name(self) -> str:
        """E.g. "ObjectCreated:Put"."""
        return self._str("eventName") or ""

    @property
    def is_object_created(self) -> bool:
        """Whether the record reports a new or overwritten object."""
        return "ObjectCreated:" in self.event_name

    @property
    def bucket_name(self) -> str:
        """The bucket."""
        return self._str("s3", "bucket", "name") or ""

    @property
    def raw_key(self) -> str:
        """The key as sent, still URL-encoded."""
        return self._str("s3", "object", "key") or ""

    @property
    def key(self) -> str:
        """The decoded object key."""
        return unquote_plus(self.raw_key)

    @property
    def size(self) -> int | None:
        """The object size in bytes (absent for deletions)."""
        return self._int("s3", "object", "size")

    @property
    def etag(self) -> str | None:
        """The object's ETag."""
        return clean_etag(self._str("s3", "object", "eTag"))

    @property
    def uri(self) -> str:
        """`s3://bucket/key` with the decoded key."""
        return f"s3://{self.bucket_name}/{self.key}"


class S3Event(EventView):
    """An S3 event notification: `{"Records": [...]}`."""

    __slots__ = ()

    @staticmethod
    def matches(data: Any) -> bool:
        """Whether decoded data is an S3 notification (possibly with no records)."""
        if not isinstance(data, Mapping):
            return False
        records = data.get("Records")
        return (
            isinstance(records, list)
            and bool(records)
            and all(isinstance(item, Mapping) and "s3" in item for item in records)
        )

    @property
    def records(self) -> Iterator[S3Record]:
        """The records."""
        for item in self._get("Records") or []:
            if isinstance(item, Mapping):
                yield S3Record(item)


class S3EventBridgeEvent(EventView):
    """An S3 "Object Created" event delivered by Amazon EventBridge."""

    __slots__ = ()

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

    @property
    def bucket_name(self) -> str:
        """The bucket."""
        return self._str("detail", "bucket", "name") or ""

    @property
    def key(self) -> str:
        """The decoded object key (EventBridge encodes it like notifications do)."""
        return unquote_plus(self._str("detail", "object", "key") or "")

    @property
    def size(self) -> int | None:
        """The object size in bytes."""
        return self._int("detail", "object", "size")

    @property
    def etag(self) -> str | None:
        """The object's ETag."""
        return clean_etag(self._str("detail", "object", "etag"))

    @property
    def uri(self) -> str:
        """`s3://bucket/key` with the decoded key."""
        return f"s3://{self.bucket_name}/{self.key}"


class SnsEvent(EventView):
    """A Lambda SNS trigger event: `{"Records": [{"Sns": {"Message": ...}}]}`."""

    __slots__ = ()

    @staticmethod
    def matches(data: Any) -> bool:
        """Whether decoded data is an SNS trigger event."""
        if not isinstance(data, Mapping):
            return False
        records = data.get("Records")
        return (
            isinstance(records, list)
            and bool(records)
            and all(isinstance(item, Mapping) and "Sns" in item for item in records)
        )

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
