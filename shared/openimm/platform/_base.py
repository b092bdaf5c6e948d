"""What every event wrapper shares: a read-only view of decoded JSON, and the decoding."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes | bytearray | str) -> Any:
    """Decode strict JSON text (UTF-8 when bytes); raises ValueError on anything else."""
    text = bytes(raw).decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
    return json.loads(text, parse_constant=_refuse_constant)


def as_event(event: Any) -> Any:
    """The event as Python data: FC hands over bytes, Lambda already-parsed JSON."""
    if isinstance(event, (bytes, bytearray, str)):
        return loads(event)
    return event


class EventView:
    """A read-only view of one event's JSON, with typed accessors in the subclasses."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    @property
    def raw(self) -> Mapping[str, Any]:
        """The JSON object as received."""
        return self._data

    def _get(self, *path: str) -> Any:
        node: Any = self._data
        for key in path:
            if not isinstance(node, Mapping):
                return None
            node = node.get(key)
        return node

    def _mappings(self, *path: str) -> Iterator[Mapping[str, Any]]:
        """The mapping items of the list at `path`, skipping anything else."""
        for item in self._get(*path) or []:
            if isinstance(item, Mapping):
                yield item

    def _str(self, *path: str) -> str | None:
        value = self._get(*path)
        return value if isinstance(value, str) else None

    def _int(self, *path: str) -> int | None:
        value = self._get(*path)
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        # Some producers send sizes as decimal strings.
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return None

    def _map(self, *path: str) -> Mapping[str, Any]:
        value = self._get(*path)
        return value if isinstance(value, Mapping) else {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self._data)!r})"


def clean_etag(value: str | None) -> str | None:
    """An ETag without the quotes some producers keep around it."""
    if not value:
        return None
    return value.strip('"') or None


def is_record_list(
    data: Any, list_key: str, marker_key: str, marker_value: str | None = None
) -> bool:
    """Whether `data[list_key]` is a non-empty list of mappings that all carry `marker_key`.

    With `marker_value`, each item's `marker_key` must also equal it.
    """
    if not isinstance(data, Mapping):
        return False
    items = data.get(list_key)
    return (
        isinstance(items, list)
        and bool(items)
        and all(
            isinstance(item, Mapping)
            and marker_key in item
            and (marker_value is None or item.get(marker_key) == marker_value)
            for item in items
        )
    )


class ObjectEventView(EventView):
    """One object event: bucket and object under `_root`, as OSS, S3 and EventBridge send.

    Subclasses name the JSON root, the ETag field, the URI scheme, and override
    `_decode_key` when the producer encodes keys.
    """

    __slots__ = ()

    _root: ClassVar[str]
    _etag_field: ClassVar[str]
    _scheme: ClassVar[str]

    def _decode_key(self, key: str) -> str:
        return key

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
        return self._str(self._root, "bucket", "name") or ""

    @property
    def raw_key(self) -> str:
        """The key as sent, before any decoding."""
        return self._str(self._root, "object", "key") or ""

    @property
    def key(self) -> str:
        """The object key, decoded as the producer requires."""
        return self._decode_key(self.raw_key)

    @property
    def size(self) -> int | None:
        """The object size in bytes, when reported."""
        return self._int(self._root, "object", "size")

    @property
    def etag(self) -> str | None:
        """The object's ETag, when reported."""
        return clean_etag(self._str(self._root, "object", self._etag_field))

    @property
    def uri(self) -> str:
        """`scheme://bucket/key` with the decoded key."""
        return f"{self._scheme}://{self.bucket_name}/{self.key}"


class HttpEventView(EventView):
    """One HTTP request event; subclasses name the query field and read method and path."""

    __slots__ = ()

    _query_field: ClassVar[str]

    @property
    def headers(self) -> Mapping[str, str]:
        """Request headers."""
        return self._map("headers")

    def header(self, name: str) -> str | None:
        """One header, looked up case-insensitively."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted and isinstance(value, str):
                return value
        return None

    @property
    def host(self) -> str | None:
        """The host the client addressed: the Host header, else the trigger's domain."""
        return self.header("host") or self._str("requestContext", "domainName")

    @property
    def query(self) -> Mapping[str, str]:
        """Query parameters; repeated parameters are joined with commas."""
        return self._map(self._query_field)

    @property
    def body(self) -> str | None:
        """The body text, Base64 when `is_base64_encoded`."""
        return self._str("body")

    @property
    def is_base64_encoded(self) -> bool:
        """Whether `body` is Base64."""
        return self._get("isBase64Encoded") is True

    @property
    def request_id(self) -> str | None:
        """The platform's id for this request."""
        return self._str("requestContext", "requestId") or None


def http_reply(status: int, body: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """The response object FC, API Gateway and function URLs map back to HTTP."""
    return {
        "statusCode": status,
        "headers": dict(headers),
        "isBase64Encoded": False,
        "body": body,
    }
