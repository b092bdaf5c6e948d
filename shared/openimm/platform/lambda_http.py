"""AWS Lambda HTTP events: API Gateway HTTP API and function URLs, payload format 2.0.

Format 1.0 (REST APIs) is read too where it differs only in field names, so a
misconfigured integration still gets a proper IMM error instead of a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openimm.platform._base import EventView


class LambdaHttpEvent(EventView):
    """One HTTP request delivered through API Gateway or a Lambda function URL."""

    __slots__ = ()

    @staticmethod
    def matches(data: Any) -> bool:
        """Whether decoded event data is an API Gateway / function URL request."""
        if not isinstance(data, Mapping) or not isinstance(data.get("requestContext"), Mapping):
            return False
        return data.get("version") == "2.0" or "routeKey" in data or "httpMethod" in data

    @property
    def version(self) -> str:
        """The payload format version ("2.0" or "1.0")."""
        return self._str("version") or "1.0"

    @property
    def method(self) -> str:
        """The HTTP method, uppercase."""
        method = self._str("requestContext", "http", "method") or self._str("httpMethod")
        return (method or "").upper()

    @property
    def path(self) -> str:
        """The request path (with any stage prefix)."""
        return self._str("rawPath") or self._str("path") or "/"

    @property
    def route_key(self) -> str | None:
        """The matched route, e.g. "POST /CreateProject" or "$default"."""
        return self._str("routeKey")

    @property
    def headers(self) -> Mapping[str, str]:
        """Request headers (lowercased by format 2.0)."""
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
        return self._map("queryStringParameters")

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
        """API Gateway's id for this request."""
        return self._str("requestContext", "requestId") or None


def reply(status: int, body: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """The response object API Gateway / function URLs map back to HTTP."""
    return {
        "statusCode": status,
        "headers": dict(headers),
        "isBase64Encoded": False,
        "body": body,
    }
