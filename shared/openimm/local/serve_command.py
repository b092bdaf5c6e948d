"""`openimm serve`: HTTP server processes on one socket and the stage workers beside them.

`openimm http` and `openimm work` are those processes; `serve` starts and supervises them
(local/child_processes.py says why processes, not threads).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from openimm.access.keyring import KEYS_FILE_ENV
from openimm.bootstrap import Settings
from openimm.local.exit_status import ExitStatus

_START_TIMEOUT_S = 60


def serve(
    settings: Settings, host: str, port: int, threads: int, processes: int, *, verbose: bool
) -> int:
    """Answer HTTP on host:port until SIGTERM or Ctrl-C."""
    from openimm.local.child_processes import WORKER_NICENESS, ChildProcess, openimm_command
    from openimm.local.http_server import free_port, shared_port_socket

    if settings.keyring is None and not is_loopback(host):
        print(
            f"openimm: refusing to serve on {host}: without access keys anyone who reaches "
            f"the port could read and change every project. Configure keys "
            f'({KEYS_FILE_ENV}, README "Access keys") or serve on 127.0.0.1.',
            file=sys.stderr,
        )
        return ExitStatus.USAGE
    try:
        # held, not listened on, so that port 0 becomes one port for every process
        reserved = shared_port_socket(host, free_port(host, port), listen=False)
    except OSError as exc:
        print(f"openimm: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return ExitStatus.ENVIRONMENT
    port = reserved.getsockname()[1]
    data = ["--data", str(settings.data_dir)] + (["-v"] if verbose else [])
    address = ["--host", host, "--port", str(port)]
    children = [
        ChildProcess(f"HTTP server {n}", openimm_command("http", *address, *data))
        for n in range(1, processes + 1)
    ]
    children.append(
        ChildProcess(
            "the stage workers",
            openimm_command("work", "--threads", str(threads), *data),
            nice=WORKER_NICENESS,
        )
    )
    stop = _stop_event(parent=None)
    for child in children:
        child.start()
    if not _listening(host, port, _START_TIMEOUT_S):
        for child in children:
            child.signal_stop()
        print(
            f"openimm: the HTTP server processes did not start in {_START_TIMEOUT_S} s "
            "(their errors are above)",
            file=sys.stderr,
        )
        return ExitStatus.ENVIRONMENT
    keys = settings.keyring
    checked = (
        f"{len(keys)} access key{'' if len(keys) == 1 else 's'}"
        if keys
        else "no access keys: loopback callers trusted"
    )
    servers = f"{processes} HTTP process{'' if processes == 1 else 'es'}"
    print(
        f"openimm serving on http://{host}:{port} "
        f"(data in {settings.data_dir}; {checked}; {servers})",
        flush=True,
    )
    try:
        while not stop.wait(3600):
            pass
    finally:
        for child in children:
            child.signal_stop()
        for child in children:
            child.wait_stopped()
        reserved.close()
    return ExitStatus.OK


def _listening(host: str, port: int, timeout: float) -> bool:
    # the banner promises a port that answers: wait for the first process to listen
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host.strip("[]"), port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def serve_http(settings: Settings, host: str, port: int, parent: int | None) -> int:
    """One HTTP server process on host:port, a port other such processes share."""
    from openimm.gallery.thumbnails import Thumbnails
    from openimm.gallery.web import gallery_wsgi
    from openimm.local.http_server import make_server, shared_port_socket
    from openimm.local.runtime import LocalRuntime
    from openimm.platform.entry import http_router_handler
    from openimm.vision.onnx_session import share_cores_among

    runtime = LocalRuntime(settings)
    # requests that analyse an image inline run this many at once: each network gets its
    # share of the cores, so a burst of them does not oversubscribe the machine
    share_cores_among(settings.max_inline_analyses)
    sock = shared_port_socket(host, port, listen=True)
    thumbnails = Thumbnails(
        runtime.app,
        Path(settings.data_dir) / "thumbnails",
        settings.thumbnail_cache_mb * 1024 * 1024,
    )
    server = make_server(
        host,
        port,
        http_router_handler(app=lambda: runtime.app),
        sock=sock,
        front=lambda api: gallery_wsgi(api, lambda: thumbnails, settings.keyring),
    )
    stop = _stop_event(parent)

    def shutdown_when_stopped() -> None:
        stop.wait()
        server.shutdown()

    threading.Thread(target=shutdown_when_stopped, daemon=True).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        runtime.close()
    return ExitStatus.OK


def work(settings: Settings, threads: int, parent: int | None) -> int:
    """Run the stage workers until SIGTERM, Ctrl-C or the end of process `parent`."""
    from openimm.local.runtime import LocalRuntime

    stop = _stop_event(parent)
    with LocalRuntime(settings, threads=threads) as runtime:
        if not runtime.start_workers():
            print(
                f"openimm: another process runs the stage workers of {settings.data_dir}",
                file=sys.stderr,
            )
            return ExitStatus.ENVIRONMENT
        while not stop.wait(3600):
            pass
    return ExitStatus.OK


def _stop_event(parent: int | None) -> threading.Event:
    """Set by SIGTERM, Ctrl-C or, given a parent process, that process's end."""
    from openimm.local.child_processes import stop_with_parent

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if parent is not None:
        stop_with_parent(parent, stop)
    return stop


def default_processes() -> int:
    """One HTTP process per core, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (a name may resolve anywhere: no)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
