"""What every event wrapper shares: a read-only view of decoded JSON, and the decoding."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


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
