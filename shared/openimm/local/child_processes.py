"""The processes `openimm serve` runs: HTTP servers on one shared socket, and the workers.

One Python process answers at most one core's worth of requests (one GIL), and stage
workers in the same process would hold that GIL and its core: reads waited 200 to
400 ms at p99 behind a clustering task (bench/http_server.py). So `serve` binds the
socket, then runs one HTTP process per core on it and the stage workers in a process
of their own at a lower priority (niceness 5, OPENIMM_WORKER_NICENESS): the operating
system runs requests first, and the workers take most of what is left.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

WORKER_NICENESS = int(os.environ.get("OPENIMM_WORKER_NICENESS", "5"))
_STOP_TIMEOUT_S = 40  # a worker finishes its current message (workers.stop waits 30 s)
_RESTART_DELAYS_S = (1, 2, 5, 10, 30)


def openimm_command(*args: str) -> list[str]:
    """The command line of `openimm <args>` with this interpreter, told who its parent is."""
    return [sys.executable, "-m", "openimm.local.cli", *args, "--parent", str(os.getpid())]


class ChildProcess:
    """A command run again whenever it dies, until `stop`."""

    def __init__(self, name: str, command: Sequence[str], *, nice: int = 0) -> None:
        self.name = name
        self._command = list(command)
        self._nice = nice
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watch = threading.Thread(target=self._keep_running, name=f"openimm-{name}")

    def start(self) -> None:
        """Start the process, and a thread that starts it again should it die."""
        self._spawn()
        self._watch.daemon = True
        self._watch.start()

    def signal_stop(self) -> None:
        """Ask it to finish what it is doing and end."""
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        """Wait for it to end after `signal_stop`; kill it if it takes too long."""
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %s s: killed", self.name, _STOP_TIMEOUT_S)
            proc.kill()
            proc.wait()

    def _spawn(self) -> None:
        # stdout and stderr are the server's: the children's warnings show where its do
        nice = self._nice
        self._proc = subprocess.Popen(
            self._command, preexec_fn=(lambda: os.nice(nice)) if nice else None
        )

    def _keep_running(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            assert self._proc is not None
            started = time.monotonic()
            status = self._proc.wait()
            if self._stopping.is_set():
                return
            # an hour's run was not a crash loop: count again from there
            failures = 0 if time.monotonic() - started > 3600 else failures + 1
            delay = _RESTART_DELAYS_S[min(failures, len(_RESTART_DELAYS_S)) - 1]
            log.error("%s exited with status %s; starting it in %s s", self.name, status, delay)
            if self._stopping.wait(delay):
                return
            self._spawn()


def stop_with_parent(parent: int, stop: threading.Event) -> None:
    """Set `stop` once process `parent` is gone: a killed server leaves no children behind."""

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                log.warning("the server (process %s) is gone: stopping", parent)
                stop.set()

    threading.Thread(target=watch, name="openimm-parent", daemon=True).start()
