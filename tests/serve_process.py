"""`openimm serve` in its own process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class ServeProcess:
    """One `openimm serve` process; `url` is where it listens.

    `args` are more `openimm serve` options; `log` is where its stderr goes (with its
    stdout by default); `env` adds environment variables.
    """

    def __init__(
        self,
        data: Path,
        args: Sequence[str] = (),
        log: int | None = subprocess.STDOUT,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data = data
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "openimm.local.cli",
                "serve",
                "--port",
                "0",
                "--data",
                str(data),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.banner = line
        match = re.search(r"http://[\d.]+:(\d+)", line)
        assert match, line
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, operation: str, body: Any, timeout: float = 30) -> tuple[int, dict[str, Any]]:
        """POST one operation (a JSON-able body, or bytes as they are): status and reply."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/{operation}",
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def kill(self) -> None:
        """Stop it at once, as a crash would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop it as a user would, then for sure."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
