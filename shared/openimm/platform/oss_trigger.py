"""OSS object events: the FC OSS trigger, and OSS events routed through EventBridge.

The FC trigger sends `{"events": [...]}` as JSON bytes; EventBridge wraps the same
record in a CloudEvent's `data`. Object keys arrive as the literal UTF-8 key, not
URL-encoded (unlike S3), so they are used exactly as given: decoding them would corrupt
keys that contain '%' or '+'.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from openimm.platform._base import EventView, ObjectEventView, is_record_list


class OssObjectEvent(ObjectEventView):
    """One OSS object event record, e.g. "ObjectCreated:PutObject".

    `key` is the object key exactly as stored; `uri` is `oss://bucket/key`.
    """

    __slots__ = ()

    _root = "oss"
    _etag_field = "eTag"
    _scheme = "oss"

    @property
    def region(self) -> str | None:
        """The bucket's region, e.g. "cn-hangzhou"."""
        return self._str("region")


class OssTriggerEvent(EventView):
    """The event of an FC OSS trigger: a list of object event records."""

    __slots__ = ()

    @staticmethod
    def matches(data: Any) -> bool:
        """Whether decoded event data is an FC OSS trigger event."""
        return is_record_list(data, "events", "oss")

    @property
    def records(self) -> Iterator[OssObjectEvent]:
        """The object event records."""
        return (OssObjectEvent(item) for item in self._mappings("events"))


def oss_cloud_event(data: Any) -> OssObjectEvent | None:
    """The OSS record inside an EventBridge CloudEvent (source "acs.oss"), if it is one."""
    if not isinstance(data, Mapping):
        return None
    inner = data.get("data")
    if isinstance(inner, Mapping) and isinstance(inner.get("oss"), Mapping):
        return OssObjectEvent(inner)
    return None
