"""The gallery's routes in front of the operations: the page, log-in, and the rest passed on."""

from __future__ import annotations

import io
import json
from typing import Any

from openimm.access.keyring import parse_keyring
from openimm.access.sessions import COOKIE
from openimm.gallery.web import gallery_wsgi

KEYS = parse_keyring(
    json.dumps({"AccessKeys": [{"AccessKeyId": "LTAI-a", "AccessKeySecret": "secret-a-1"}]}),
    "test",
)


def _api(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"api"]


def _call(method: str, path: str, body: bytes = b"", keys: Any = KEYS) -> Any:
    app = gallery_wsgi(_api, lambda: None, keys)  # type: ignore[arg-type, return-value]
    replies: list[Any] = []
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(body)}
    data = b"".join(app(environ, lambda status, headers: replies.append((status, headers))))
    status, headers = replies[0]
    return int(status.split()[0]), dict(headers), data


def test_the_page_and_its_files_are_served_with_their_types() -> None:
    status, headers, body = _call("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"/gallery/gallery.js" in body and headers["ETag"]
    assert _call("GET", "/gallery/gallery.js")[1]["Content-Type"].startswith("text/javascript")
    assert _call("GET", "/gallery/../pyproject.toml")[0] == 404
    assert _call("GET", "/gallery/.hidden.js")[0] == 404


def test_post_to_the_root_and_every_operation_reach_the_api() -> None:
    assert _call("POST", "/")[2] == b"api"  # IMM's RPC style, as the SDKs send it
    assert _call("POST", "/GetTask")[2] == b"api"


def test_log_in_sets_an_http_only_cookie_and_a_wrong_secret_is_refused() -> None:
    body = json.dumps({"AccessKeyId": "LTAI-a", "AccessKeySecret": "secret-a-1"}).encode()
    status, headers, _ = _call("POST", "/session", body)
    assert status == 200 and headers["Set-Cookie"].startswith(f"{COOKIE}=LTAI-a.")
    wrong = json.dumps({"AccessKeyId": "LTAI-a", "AccessKeySecret": "nope-nope"}).encode()
    status, _, reply = _call("POST", "/session", wrong)
    assert status == 400 and json.loads(reply)["Code"] == "SignatureDoesNotMatch"
    assert json.loads(_call("GET", "/session")[2]) == {"KeysRequired": True}
    assert json.loads(_call("GET", "/session", keys=None)[2]) == {"KeysRequired": False}
