"""Topic as a JSON Lines file, optionally also POSTed to a webhook."""

from __future__ import annotations

import fcntl
import http.client
import json
import logging
import os
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from openimm.ports import JSON, Topic

logger = logging.getLogger(__name__)


# how far back a notification published again is looked for: a second publication comes
# within a minute of the first, when at most a few thousand other tasks have ended
_RECENT_BYTES = 4 * 1024 * 1024


def _holds(fd: int, envelope_id: Any) -> bool:
    """Whether the recent lines of the open file hold a message with this id."""
    if not isinstance(envelope_id, str) or not envelope_id:
        return False
    size = os.fstat(fd).st_size
    start = max(0, size - _RECENT_BYTES)
    recent = os.pread(fd, size - start, start)
    needle = json.dumps(envelope_id).encode()
    for raw in recent.splitlines():
        if needle in raw:
            try:
                if json.loads(raw)["message"].get("id") == envelope_id:
                    return True
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a partial first line of the window, or a foreign one
    return False


class JsonlTopic(Topic):
    """Appends `{"topic": ..., "message": ...}` lines; the file is the durable record."""

    def __init__(self, path: Path, webhook_url: str | None = None, timeout: float = 5) -> None:
        if webhook_url is not None:
            scheme = urllib.parse.urlsplit(webhook_url).scheme
            if scheme not in ("http", "https"):
                raise ValueError(f"webhook URL must be http or https: {webhook_url!r}")
        self._path = Path(path)
        self._webhook_url = webhook_url
        self._timeout = timeout
        self._lock = threading.Lock()

    def _publish(self, topic: str, message: JSON) -> None:
        line = json.dumps({"topic": topic, "message": message}, ensure_ascii=False) + "\n"
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # One write of the whole line in append mode, so lines of other processes
            # appending to the same file do not interleave with it.
            fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                # other processes append too: hold the file while looking and writing
                fcntl.flock(fd, fcntl.LOCK_EX)
                if _holds(fd, message.get("id")):
                    return  # published again after a crash: the record has it already
                data = line.encode()
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        if self._webhook_url is not None:
            self._post(topic, message)

    def _post(self, topic: str, message: JSON) -> None:
        assert self._webhook_url is not None
        request = urllib.request.Request(
            self._webhook_url,
            data=json.dumps(message, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json", "X-OpenIMM-Topic": topic},
            method="POST",
        )
        try:
            with _OPENER.open(request, timeout=self._timeout) as response:
                response.read()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # The JSONL line is already written; a webhook that is down loses nothing.
            logger.warning("webhook %s for topic %s failed: %s", self._webhook_url, topic, exc)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would turn the POST into a GET, or lead to a scheme never configured.
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
