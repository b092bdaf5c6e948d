"""AWS Lambda HTTP events: API Gateway HTTP API and function URLs, payload format 2.0.

Format 1.0 (REST APIs) is read too where it differs only in field names, so a
misconfigured integration still gets a proper IMM error instead of a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openimm.platform._base import HttpEventView, http_reply


class LambdaHttpEvent(HttpEventView):
    """One HTTP request delivered through API Gateway or a Lambda function URL.

    Format 2.0 lowercases header names; `request_id` is API Gateway's id for this request.
    """

    __slots__ = ()

    _query_field = "queryStringParameters"

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


# The response object API Gateway / function URLs map back to HTTP.
reply = http_reply
