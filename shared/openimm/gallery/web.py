"""The gallery's routes in front of the IMM operations: a WSGI layer, thin by design.

`GET /` and `GET /gallery/<file>`: the page; `GET /thumbnails`: face crops and photos;
`GET|POST|DELETE /session`: whether keys are needed, log in, log out. Every other request
(every `POST /<Operation>`) goes on to the IMM operations untouched: the page changes
nothing except through them.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from openimm.access.keyring import Keyring
from openimm.access.sessions import log_in, session_cookie, set_cookie_header
from openimm.access.signatures import HttpRequest
from openimm.api.wire import dumps, error_response, new_request_id
from openimm.errors import InvalidArgument, InvalidOperation
from openimm.gallery.static_files import static_file
from openimm.gallery.thumbnails import Thumbnails

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_MAX_LOGIN_BYTES = 4096


class _MethodNotAllowed(InvalidOperation):
    http_status = 405


def gallery_wsgi(
    api: WsgiApp, thumbnails: Callable[[], Thumbnails], keyring: Keyring | None
) -> WsgiApp:
    """`api` with the gallery's routes in front of it."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ["REQUEST_METHOD"]
        route = _route(path, method)
        if route is None:
            return api(environ, start_response)
        request_id = new_request_id()
        try:
            status, headers, body = route(environ, method, thumbnails, keyring)
        except Exception as exc:
            host = str(environ.get("HTTP_HOST") or "openimm")[:255]
            status, payload = error_response(exc, request_id, host)
            headers = [("Content-Type", "application/json; charset=utf-8")]
            if isinstance(exc, _MethodNotAllowed):
                headers.append(("Allow", "GET"))
            body = dumps(payload).encode()
        headers += [("x-acs-request-id", request_id), ("Content-Length", str(len(body)))]
        start_response(_status_line(status), headers)
        return [] if method == "HEAD" else [body]

    return app


_Reply = tuple[int, list[tuple[str, str]], bytes]
_Route = Callable[[dict[str, Any], str, Callable[[], Thumbnails], Keyring | None], _Reply]


def _route(path: str, method: str) -> _Route | None:
    if path == "/":
        # `POST /` is IMM's RPC style (the SDKs' requests): only a GET is the page's
        return _page if method in ("GET", "HEAD") else None
    if path.startswith("/gallery/"):
        return _page
    if path == "/thumbnails":
        return _thumbnail
    if path == "/session":
        return _session
    return None


def _page(environ: dict[str, Any], method: str, *_: Any) -> _Reply:
    _only(method, "GET", "HEAD")
    path = environ.get("PATH_INFO") or "/"
    found = static_file("index.html" if path == "/" else path.removeprefix("/gallery/"))
    if found is None:
        return _not_found(path)
    headers = [("ETag", f'"{found.etag}"'), ("Cache-Control", "no-cache")]
    if _matches(environ, found.etag):
        return 304, headers, b""
    return 200, [("Content-Type", found.content_type), *headers], found.data


def _thumbnail(
    environ: dict[str, Any], method: str, thumbnails: Callable[[], Thumbnails], _: Any
) -> _Reply:
    _only(method, "GET", "HEAD")
    made = thumbnails().get(_signed_view(environ), environ.get("HTTP_IF_NONE_MATCH"))
    # private: a shared cache must not hand one key's pictures to another caller
    headers = [("ETag", f'"{made.etag}"'), ("Cache-Control", "private, max-age=3600")]
    if made.data is None:
        return 304, headers, b""
    return 200, [("Content-Type", "image/jpeg"), *headers], made.data


def _session(environ: dict[str, Any], method: str, _: Any, keyring: Keyring | None) -> _Reply:
    _only(method, "GET", "POST", "DELETE")
    json_type = ("Content-Type", "application/json; charset=utf-8")
    if method == "GET":
        return 200, [json_type], dumps({"KeysRequired": keyring is not None}).encode()
    if method == "DELETE":
        return 200, [json_type, ("Set-Cookie", set_cookie_header(""))], b"{}"
    if keyring is None:
        raise InvalidOperation("No access keys are configured here: no log-in is needed.")
    given = _json_body(environ)
    key_id, secret = given.get("AccessKeyId"), given.get("AccessKeySecret")
    if not isinstance(key_id, str) or not isinstance(secret, str) or not key_id:
        raise InvalidArgument("The body needs AccessKeyId and AccessKeySecret.")
    key = log_in(keyring, key_id, secret)
    cookie = set_cookie_header(session_cookie(key, time.time()))
    body = dumps({"AccessKeyId": key.key_id}).encode()
    return 200, [json_type, ("Set-Cookie", cookie)], body


def _signed_view(environ: dict[str, Any]) -> HttpRequest:
    """The request as the access gate reads it (header names lowercase, as the API's)."""
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    return HttpRequest(
        environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/"), query, headers, b""
    )


def _json_body(environ: dict[str, Any]) -> dict[str, Any]:
    raw = environ["wsgi.input"].read(_MAX_LOGIN_BYTES + 1)
    if len(raw) > _MAX_LOGIN_BYTES:
        raise InvalidArgument(f"The body exceeds {_MAX_LOGIN_BYTES} bytes.")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise InvalidArgument("The body must be a JSON object.")
    return data


def _only(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise _MethodNotAllowed(f"The method {method} is not allowed here; use {allowed[0]}.")


def _matches(environ: dict[str, Any], etag: str) -> bool:
    header = str(environ.get("HTTP_IF_NONE_MATCH") or "")
    return etag in {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")}


def _not_found(path: str) -> _Reply:
    from openimm.errors import ResourceNotFound

    raise ResourceNotFound(f"The page {path[:200]!r} does not exist.")


def _status_line(status: int) -> str:
    from http import HTTPStatus

    return f"{status} {HTTPStatus(status).phrase}"
