"""OSS object events: the FC OSS trigger, and OSS events routed through EventBridge.

The FC trigger sends `{"events": [...]}` as JSON bytes; EventBridge wraps the same
record in a CloudEvent's `data`. Object keys arrive as the literal UTF-8 key, not
URL-encoded (unlike S3), so they are used exactly as given: decoding them would corrupt
keys that contain '%' or '+'.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from openimm.platform._base import EventView, clean_etag


class OssObjectEvent(EventView):
    """One OSS object event record."""

    __slots__ = ()

    @property
    def event_name(self) -> str:
        """E.g. "ObjectCreated:PutObject"."""
        return self._str("eventName") or ""

    @property
    def is_object_created(self) -> bool:
        """Whether the record reports a new or overwritten object."""
        return "ObjectCreated:" in self.event_name

    @property
    def region(self) -> str | None:
        """The bucket's region, e.g. "cn-hangzhou"."""
        return self._str("region")

    @property
    def bucket_name(self) -> str:
        """The bucket."""
        return self._str("oss", "bucket", "name") or ""

    @property
    def key(self) -> str:
        """The object key, exactly as stored."""
        return self._str("oss", "object", "key") or ""

    @property
    def size(self) -> int | None:
        """The object size in bytes, when reported."""
        return self._int("oss", "object", "size")

    @property
    def etag(self) -> str | None:
        """The object's ETag, when reported."""
        return clean_etag(self._str("oss", "object", "eTag"))

    @property
    def uri(self) -> str:
        """`oss://bucket/key`."""
        return f"oss://{self.bucket_name}/{self.key}"


class OssTriggerEvent(EventView):
    """The event of an FC OSS trigger: a list of object event records."""

    __slots__ = ()

    @staticmethod
    def matches(data: Any) -> bool:
        """Whether decoded event data is an FC OSS trigger event."""
        if not isinstance(data, Mapping):
            return False
        events = data.get("events")
        return (
            isinstance(events, list)
            and bool(events)
            and all(isinstance(item, Mapping) and "oss" in item for item in events)
        )

    @property
    def records(self) -> Iterator[OssObjectEvent]:
        """The object event records."""
        for item in self._get("events") or []:
            if isinstance(item, Mapping):
                yield OssObjectEvent(item)


def oss_cloud_event(data: Any) -> OssObjectEvent | None:
    """The OSS record inside an EventBridge CloudEvent (source "acs.oss"), if it is one."""
    if not isinstance(data, Mapping):
        return None
    inner = data.get("data")
    if isinstance(inner, Mapping) and isinstance(inner.get("oss"), Mapping):
        return OssObjectEvent(inner)
    return None
