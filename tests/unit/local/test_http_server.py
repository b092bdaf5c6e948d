"""The local server's adapter: what it hands the handler is the FC event a deployment gets."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from openimm.local.http_server import wsgi_app


def _call(environ: dict[str, Any]) -> tuple[dict[str, Any], str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}

    def handler(event: bytes, _context: Any) -> dict[str, Any]:
        seen.update(json.loads(event))
        return {"statusCode": 405, "headers": {"Allow": "POST"}, "body": '{"Code":"x"}'}

    started: list[Any] = []
    body = b"".join(wsgi_app(handler)(environ, lambda s, h: started.extend([s, h])))
    return seen, started[0], started[1], body


def _environ(**extra: Any) -> dict[str, Any]:
    body = extra.pop("body", b"")
    return {
        "REQUEST_METHOD": "POST",
        "REQUEST_URI": "/%47etTask?Action=GetTask&Tag=a&Tag=b",
        "PATH_INFO": "/GetTask",
        "QUERY_STRING": "Action=GetTask&Tag=a&Tag=b&Empty=",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_X_ACS_ACTION": "GetTask",
        "HTTP_AUTHORIZATION": "ACS3-HMAC-SHA256 Credential=k,Signature=s",
        "HTTP_X_ACS_SIGNATURE_NONCE": "n1",
        "wsgi.input": io.BytesIO(body),
        **extra,
    }


def test_the_event_carries_every_header_the_query_and_the_raw_path() -> None:
    event, status, headers, _ = _call(_environ(body=b'{"ProjectName":"p"}'))
    assert event["version"] == "v1"
    assert event["rawPath"] == "/%47etTask"
    assert event["requestContext"]["http"] == {
        "method": "POST",
        "path": "/GetTask",
        "protocol": "HTTP/1.1",
    }
    assert event["requestContext"]["requestId"]
    assert event["headers"] == {
        "content-type": "application/json",
        "content-length": "19",
        "x-acs-action": "GetTask",
        "authorization": "ACS3-HMAC-SHA256 Credential=k,Signature=s",
        "x-acs-signature-nonce": "n1",
    }
    # as FC gives them: a repeated parameter's values joined with commas, blanks kept
    assert event["queryParameters"] == {"Action": "GetTask", "Tag": "a,b", "Empty": ""}
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b'{"ProjectName":"p"}'
    assert status == "405 Method Not Allowed"
    assert ("Allow", "POST") in headers and ("Content-Length", "12") in headers


def test_a_head_reply_has_the_headers_and_no_body() -> None:
    _, status, headers, body = _call(_environ(REQUEST_METHOD="HEAD"))
    assert status.startswith("405") and ("Content-Length", "12") in headers
    assert body == b""
