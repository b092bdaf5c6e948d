"""Function Compute 3.0 HTTP trigger events (built-in runtimes, payload version "v1").

The runtime passes the request as JSON bytes and maps a returned
`{statusCode, headers, isBase64Encoded, body}` object back to the HTTP response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openimm.platform._base import HttpEventView, http_reply


class FcHttpEvent(HttpEventView):
    """One HTTP request delivered by an FC 3.0 HTTP trigger.

    Repeated headers are joined with commas; FC Base64-encodes bodies of binary content
    types; `request_id` is FC's id for this invocation.
    """

    __slots__ = ()

    _query_field = "queryParameters"

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


# The response object FC maps back to HTTP.
reply = http_reply
