"""Function Compute 3.0 HTTP trigger events (built-in runtimes, payload version "v1").

The runtime passes the request as JSON bytes and maps a returned
`{statusCode, headers, isBase64Encoded, body}` object back to the HTTP response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openimm.platform._base import EventView


class FcHttpEvent(EventView):
    """One HTTP request delivered by an FC 3.0 HTTP trigger."""

    __slots__ = ()

    @staticmethod
    def matches(data: Any) -> bool:
        """Whether decoded event data is an FC HTTP trigger request."""
        return (
            isinstance(data, Mapping)
            and data.get("version") == "v1"
            and "rawPath" in data
            and isinstance(data.get("requestContext"), Mapping)
        )

    @property
    def method(self) -> str:
        """The HTTP method, uppercase."""
        return (self._str("requestContext", "http", "method") or "").upper()

    @property
    def raw_path(self) -> str:
        """The path as sent, still percent-encoded."""
        return self._str("rawPath") or "/"

    @property
    def path(self) -> str:
        """The decoded path (falls back to rawPath)."""
        return self._str("requestContext", "http", "path") or self.raw_path

    @property
    def headers(self) -> Mapping[str, str]:
        """Request headers; repeated headers are joined with commas."""
        return self._map("headers")

    def header(self, name: str) -> str | None:
        """One header, looked up case-insensitively."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted and isinstance(value, str):
                return value
        return None

    @property
    def query(self) -> Mapping[str, str]:
        """Query parameters; repeated parameters are joined with commas."""
        return self._map("queryParameters")

    @property
    def body(self) -> str | None:
        """The body text, Base64 when `is_base64_encoded`."""
        return self._str("body")

    @property
    def is_base64_encoded(self) -> bool:
        """Whether `body` is Base64 (FC does this for binary content types)."""
        return self._get("isBase64Encoded") is True

    @property
    def request_id(self) -> str | None:
        """FC's id for this invocation."""
        return self._str("requestContext", "requestId") or None


def reply(status: int, body: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """The response object FC maps back to HTTP."""
    return {
        "statusCode": status,
        "headers": dict(headers),
        "isBase64Encoded": False,
        "body": body,
    }
