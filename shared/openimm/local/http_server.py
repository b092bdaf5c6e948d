"""`openimm serve`: a local HTTP trigger that feeds the same handler the cloud runs.

Each request is turned into the FC 3.0 HTTP-trigger event a deployed function
would receive, so the local server exercises the real decode/route/encode path.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024

Handler = Callable[[Any, Any], Any]


class _LocalContext:
    """The few context attributes handlers read."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.function_name = "openimm-local"


def _fc_event(method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> bytes:
    request_id = str(uuid.uuid4()).upper()
    return json.dumps(
        {
            "version": "v1",
            "rawPath": path,
            "headers": headers,
            "queryParameters": dict(urllib.parse.parse_qsl(query, keep_blank_values=True)),
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
            "requestContext": {
                "requestId": request_id,
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1"},
            },
        }
    ).encode()


def make_server(host: str, port: int, handler: Handler) -> ThreadingHTTPServer:
    """An HTTP server on host:port answering every request through `handler`."""

    class RequestHandler(BaseHTTPRequestHandler):
        server_version = "openimm"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._reply(413, {"Code": "InvalidArgument", "Message": "body too large"})
                return
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            event = _fc_event(self.command, path, query, dict(self.headers.items()), body)
            reply = handler(event, _LocalContext(""))
            status = int(reply.get("statusCode", 200))
            raw = reply.get("body", "")
            data = base64.b64decode(raw) if reply.get("isBase64Encoded") else str(raw).encode()
            self.send_response(status)
            for name, value in (reply.get("headers") or {}).items():
                self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = _serve  # noqa: N815
        do_GET = _serve  # noqa: N815
        do_PUT = _serve  # noqa: N815
        do_DELETE = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

    server = ThreadingHTTPServer((host, port), RequestHandler)
    server.daemon_threads = True
    return server
