"""A platform's HTTP front (an API gateway, a function's HTTP trigger) on 127.0.0.1.

Subclasses say how a request becomes the platform's event and how the handler is called;
the reply (statusCode, headers, body, isBase64Encoded) has the same shape on both.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[Any, Any], Any]


class HttpFront:
    """Serves each request by calling `invoke(event(...))` and writing back its reply."""

    def __init__(self) -> None:
        front = self

        class _Request(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                front._forward(self)

            def do_GET(self) -> None:
                front._forward(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Request)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def event(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Any:
        """The platform's event for one request."""
        raise NotImplementedError

    def invoke(self, event: Any) -> dict[str, Any]:
        """Call the function with the event as the platform would; its reply."""
        raise NotImplementedError

    def _forward(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("content-length") or 0)
        raw = request.rfile.read(length) if length else b""
        reply = self.invoke(
            self.event(request.command, request.path, dict(request.headers.items()), raw)
        )
        body = reply.get("body") or ""
        data = base64.b64decode(body) if reply.get("isBase64Encoded") else body.encode()
        request.send_response(int(reply.get("statusCode", 200)))
        for name, value in (reply.get("headers") or {}).items():
            request.send_header(name, value)
        request.send_header("content-length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def text_or_base64(raw: bytes) -> tuple[str, bool]:
    """A body as the platforms pass it: UTF-8 text, else Base64 (and a flag saying so)."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), True
