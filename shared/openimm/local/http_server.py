"""`openimm serve`: a local HTTP trigger that feeds the same handler the cloud runs.

Each request is turned into the FC 3.0 HTTP-trigger event a deployed function
would receive, so the local server exercises the real decode/route/encode path.
The HTTP server itself is waitress (bench/http_server.py measured it against the
hand-made server it replaced and against uvicorn); this module only adapts: a WSGI
application that builds the event and writes back the handler's reply, and an
error page in IMM's shape for what waitress refuses before the handler sees it.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from openimm.api.wire import dumps, error_response, new_request_id
from openimm.errors import InvalidArgument
from openimm.platform.entry import MAX_BODY_BYTES

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Any]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]

# waitress's knobs (its Adjustments), sized for a small machine and many keep-alive clients
SERVER_SETTINGS: dict[str, Any] = {
    # threads that run the handler in each server process (serve runs one per core)
    "threads": 4,
    # pending connections the kernel holds while all are busy (it caps this at somaxconn)
    "backlog": 2048,
    # open connections at once; further ones wait in the backlog
    "connection_limit": 1000,
    # poll(2) rather than select(2), whose 1024-descriptor limit is below connection_limit
    "asyncore_use_poll": True,
    # seconds an idle keep-alive connection (or a stalled request) stays open
    "channel_timeout": 60,
    # the handler's own limit; waitress refuses bodies above it before reading them
    "max_request_body_size": MAX_BODY_BYTES + 1,
    "max_request_header_size": 64 * 1024,
    "ident": "openimm",
    "clear_untrusted_proxy_headers": False,
}


class _LocalContext:
    """The few context attributes handlers read."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.function_name = "openimm-local"


def _query_parameters(query: str) -> dict[str, str]:
    """The query as FC gives it: repeated parameters joined with commas."""
    params: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    return params


def fc_event(
    method: str, raw_path: str, query: str, headers: Iterable[tuple[str, str]], body: bytes
) -> bytes:
    """The FC 3.0 HTTP-trigger event for one request (repeated headers joined by commas)."""
    joined: dict[str, str] = {}
    for name, value in headers:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return json.dumps(
        {
            "version": "v1",
            "rawPath": raw_path,
            "headers": joined,
            "queryParameters": _query_parameters(query),
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
            "requestContext": {
                "requestId": new_request_id(),
                "http": {
                    "method": method,
                    "path": urllib.parse.unquote(raw_path),
                    "protocol": "HTTP/1.1",
                },
            },
        }
    ).encode()


def _environ_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The request headers of a WSGI environ, names lowercased (`x-acs-action`)."""
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key
        else:
            continue
        if value:
            headers.append((name.replace("_", "-").lower(), value))
    return headers


def wsgi_app(handler: Handler) -> Callable[[dict[str, Any], StartResponse], list[bytes]]:
    """A WSGI application answering every request through `handler`."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raw_uri = environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/"
        raw_path = urllib.parse.urlsplit(raw_uri).path or "/"
        body = environ["wsgi.input"].read()
        event = fc_event(
            environ["REQUEST_METHOD"],
            raw_path,
            environ.get("QUERY_STRING", ""),
            _environ_headers(environ),
            body,
        )
        reply = handler(event, _LocalContext(""))
        status = int(reply.get("statusCode", 200))
        raw = reply.get("body", "")
        data = base64.b64decode(raw) if reply.get("isBase64Encoded") else str(raw).encode()
        headers = [(name, str(value)) for name, value in (reply.get("headers") or {}).items()]
        headers.append(("Content-Length", str(len(data))))
        start_response(f"{status} {_reason(status)}", headers)
        # HEAD: the headers a POST would get, no body (waitress leaves that to the app)
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [data]

    return app


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _ImmErrorTask(ErrorTask):  # type: ignore[misc]
    """What waitress refuses itself (a bad request line or Content-Length, a body over
    the limit), answered as IMM does: `{RequestId, Code, Message}`."""

    def execute(self) -> None:
        error = self.request.error
        request_id = new_request_id()
        # every one is about the request (waitress's 501 is an unsupported Transfer-Encoding)
        if isinstance(error, RequestEntityTooLarge):
            message = f"body exceeds {MAX_BODY_BYTES} bytes"
        else:
            message = f"{error.reason}: {error.body}"
        headers = getattr(self.request, "headers", None) or {}
        host_id = str(headers.get("HOST") or "openimm")[:255]
        status, payload = error_response(InvalidArgument(message), request_id, host_id)
        body = dumps(payload).encode()
        self.status = f"{status} {_reason(status)}"
        self.response_headers.extend(
            [
                ("Content-Type", "application/json; charset=utf-8"),
                ("x-acs-request-id", request_id),
            ]
        )
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _ImmChannel(HTTPChannel):  # type: ignore[misc]
    error_task_class = _ImmErrorTask


class HttpServer:
    """A waitress server; `serve_forever` runs it until `shutdown`, then `server_close`
    closes every connection.

    `shutdown` only sets a flag (safe in a signal handler, which must not take the
    wake-up pipe's lock the loop may hold): the loop sees it within one poll timeout.
    """

    def __init__(self, server: BaseWSGIServer) -> None:
        self._server = server
        self._stopping = False

    @property
    def server_address(self) -> tuple[str, int]:
        return (str(self._server.effective_host), int(self._server.effective_port))

    def serve_forever(self) -> None:
        adj = self._server.adj
        while not self._stopping:
            wasyncore.loop(
                timeout=adj.asyncore_loop_timeout,
                map=self._server._map,
                use_poll=adj.asyncore_use_poll,
                count=1,
            )

    def shutdown(self) -> None:
        self._stopping = True

    def server_close(self) -> None:
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._server._map)


WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def make_server(
    host: str,
    port: int,
    handler: Handler,
    *,
    sock: socket.socket | None = None,
    front: Callable[[WsgiApp], WsgiApp] | None = None,
) -> HttpServer:
    """A waitress server answering every request through `handler`: on host:port, or on
    `sock`, a socket already listening (shared by several server processes). `front`
    wraps the handler's WSGI application with routes of its own (the gallery's)."""
    where: dict[str, Any] = {"sockets": [sock]} if sock is not None else {"host": host}
    if sock is None:
        where["port"] = port
    application: WsgiApp = wsgi_app(handler)
    if front is not None:
        application = front(application)
    server = create_server(application, **where, **SERVER_SETTINGS)
    if not isinstance(server, BaseWSGIServer):
        server.close()
        raise ValueError(f"{host}:{port} names more than one socket")
    server.channel_class = _ImmChannel
    return HttpServer(server)


def free_port(host: str, port: int) -> int:
    """`port` (or, for 0, a port the system picks) when no other server holds it.

    Checked without SO_REUSEPORT, which would let this serve join another's port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host.strip("[]"), port))
        return int(probe.getsockname()[1])


def shared_port_socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """A socket on host:port that other processes may bind too (SO_REUSEPORT).

    The kernel spreads new connections evenly over the processes listening so; with one
    shared listening socket, whichever process woke first took them (37 and 13 of 50).
    Unlistened, it only holds the port for the processes to come."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
        if listen:
            sock.listen(SERVER_SETTINGS["backlog"])
    except OSError:
        sock.close()
        raise
    return sock
