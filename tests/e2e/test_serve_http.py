"""`openimm serve` as an HTTP server: limits, malformed requests, keep-alive, many clients.

Whatever the server refuses itself must still read as an IMM error, `{RequestId, Code,
Message}`, never a traceback, a server's own page or a dropped connection.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serve_process import ServeProcess

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ServeProcess]:
    srv = ServeProcess(tmp_path_factory.mktemp("serve-http") / "state")
    yield srv
    srv.stop()


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; the status, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def _imm_error(body: bytes, code: str) -> dict[str, Any]:
    reply = json.loads(body)
    assert set(reply) == {"RequestId", "HostId", "Code", "Message"}, reply
    assert reply["Code"] == code and reply["RequestId"]
    return reply


def test_a_body_over_the_limit_gets_an_imm_error(server: ServeProcess) -> None:
    from openimm.platform.entry import MAX_BODY_BYTES

    # refused on its Content-Length, before the body is read (the client may stop sending)
    length = str(MAX_BODY_BYTES + 1).encode()
    status, _, body = _raw(
        server.port,
        b"POST /CreateProject HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n{",
    )
    assert status == 400
    message = _imm_error(body, "InvalidArgument")["Message"]
    assert message == f"body exceeds {MAX_BODY_BYTES} bytes"


def test_a_body_at_the_limit_reaches_the_handler(server: ServeProcess) -> None:
    from openimm.platform.entry import MAX_BODY_BYTES

    body = b'{"ProjectName":"big"' + b" " * (MAX_BODY_BYTES - 21) + b"}"
    assert len(body) == MAX_BODY_BYTES
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/CreateProject", body, {"Content-Type": "application/json"})
    reply = conn.getresponse()
    assert reply.status == 200, reply.read()
    assert json.loads(reply.read())["Project"]["ProjectName"] == "big"
    conn.close()


@pytest.mark.parametrize("length", [b"abc", b"-1", b"1e3", b"99999999999999999999999"])
def test_a_garbage_content_length_gets_an_imm_error(server: ServeProcess, length: bytes) -> None:
    status, headers, body = _raw(
        server.port,
        b"POST /CreateProject HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n{}",
    )
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    reply = _imm_error(body, "InvalidArgument")
    assert headers["x-acs-request-id"] == reply["RequestId"]


def test_a_malformed_request_line_gets_an_imm_error(server: ServeProcess) -> None:
    status, _, body = _raw(server.port, b"NONSENSE\r\n\r\n")
    assert status == 400
    _imm_error(body, "InvalidArgument")


def test_head_gets_the_status_without_a_body(server: ServeProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("HEAD", "/ListTasks")
    reply = conn.getresponse()
    assert reply.status == 405 and reply.getheader("Allow") == "POST"
    assert reply.getheader("x-acs-request-id")
    assert reply.read() == b""
    conn.close()


def test_options_gets_an_imm_error(server: ServeProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("OPTIONS", "/ListTasks")
    reply = conn.getresponse()
    assert reply.status == 405 and reply.getheader("Allow") == "POST"
    assert "OPTIONS" in _imm_error(reply.read(), "InvalidOperation")["Message"]
    conn.close()


def _post(conn: http.client.HTTPConnection, operation: str, body: Any) -> tuple[int, Any]:
    conn.request("POST", f"/{operation}", json.dumps(body), {"Content-Type": "application/json"})
    reply = conn.getresponse()
    return reply.status, json.loads(reply.read())


def test_keep_alive_serves_several_requests_on_one_connection(server: ServeProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    assert _post(conn, "CreateProject", {"ProjectName": "kept"})[0] == 200
    sock = conn.sock
    status, reply = _post(conn, "ListTasks", {"ProjectName": "kept"})
    assert status == 200 and reply["RequestId"]
    assert conn.sock is sock  # not reconnected
    conn.close()


def test_many_connections_at_once_are_all_answered(server: ServeProcess) -> None:
    clients = 60
    start = threading.Barrier(clients)
    results: list[int | str] = []

    def client() -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.connect()
            start.wait(timeout=30)
            for _ in range(3):
                status, reply = _post(conn, "ListTasks", {"ProjectName": "nobody"})
                assert reply["RequestId"]
            conn.close()
            results.append(status)
        except Exception as exc:  # the assertion below reports it
            results.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [404] * clients
