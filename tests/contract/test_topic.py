"""What every Topic adapter must do (plus JSONL and webhook details at the end)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from openimm.adapters.local import JsonlTopic
from openimm.ports import JSON, Envelope, Topic

Published = Callable[[], list[tuple[str, JSON]]]


def _envelope(n: int = 1) -> Envelope:
    return Envelope(
        id=f"id-{n}",
        source="acs:imm:cn-hangzhou:123:project/p",
        type="FigureClustering:Succeeded",
        subject="acs:imm:cn-hangzhou:123:project/p/dataset/d",
        time="2024-01-01T00:00:00Z",
        content=json.dumps({"TaskId": f"t-{n}", "Status": "Succeeded"}),
        extra={"UserData": "中文"},
    )


def test_publish_delivers_the_envelope(topic: Topic, published: Published) -> None:
    topic.publish("imm-events", _envelope(1))
    topic.publish("imm-events", _envelope(2))
    got = published()
    assert [name for name, _ in got] == ["imm-events", "imm-events"]
    assert got[0][1] == _envelope(1).to_json()
    assert json.loads(got[1][1]["content"])["TaskId"] == "t-2"


def test_bad_topic_name(topic: Topic) -> None:
    with pytest.raises(ValueError):
        topic.publish("bad topic", _envelope())


def test_concurrent_publishes_are_all_delivered(topic: Topic, published: Published) -> None:
    threads = [threading.Thread(target=topic.publish, args=("t", _envelope(n))) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ids = sorted(message["id"] for _, message in published())
    assert ids == sorted(f"id-{n}" for n in range(20))


# ---------------------------------------------------------------- JSONL only


class _Receiver:
    """A webhook on 127.0.0.1 that records what was POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.got_one = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append((self.path, headers, json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.got_one.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.close()


def test_jsonl_lines(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.jsonl"
    topic = JsonlTopic(path)
    topic.publish("a", _envelope(1))
    topic.publish("b", _envelope(2))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["topic"] for line in lines] == ["a", "b"]
    assert json.loads(lines[0])["message"]["UserData"] == "中文"


def test_jsonl_keeps_one_line_of_a_notification_published_again(
    tmp_path: Path, receiver: _Receiver
) -> None:
    # a crash between publishing and noting it published makes the task publish again,
    # with the same envelope id: the record, and the webhook, get it once
    path = tmp_path / "events.jsonl"
    first, second = JsonlTopic(path, webhook_url=receiver.url), JsonlTopic(path)
    first.publish("a", _envelope(1))
    first.publish("a", _envelope(2))
    second.publish("a", _envelope(1))
    first.publish("a", _envelope(1))
    ids = [json.loads(line)["message"]["id"] for line in path.read_text().splitlines()]
    assert ids == ["id-1", "id-2"]
    assert len(receiver.requests) == 2


def test_webhook_receives_the_envelope(tmp_path: Path, receiver: _Receiver) -> None:
    topic = JsonlTopic(tmp_path / "events.jsonl", webhook_url=receiver.url)
    topic.publish("imm-events", _envelope(7))
    assert receiver.got_one.wait(5)
    path, headers, body = receiver.requests[0]
    assert path == "/hook"
    assert headers["content-type"] == "application/json"
    assert headers["x-openimm-topic"] == "imm-events"
    assert body == _envelope(7).to_json()
    assert (tmp_path / "events.jsonl").exists()


def test_dead_webhook_does_not_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    topic = JsonlTopic(tmp_path / "events.jsonl", webhook_url=url, timeout=2)
    with caplog.at_level(logging.WARNING):
        topic.publish("imm-events", _envelope())
    assert "webhook" in caplog.text
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 1


def test_failing_webhook_does_not_raise(tmp_path: Path) -> None:
    failing = _Receiver(status=500)
    try:
        topic = JsonlTopic(tmp_path / "events.jsonl", webhook_url=failing.url)
        topic.publish("imm-events", _envelope())
        assert failing.got_one.wait(5)
    finally:
        failing.close()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "javascript:x"])
def test_webhook_must_be_http(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError):
        JsonlTopic(tmp_path / "events.jsonl", webhook_url=url)
