"""`openimm serve`'s processes: HTTP servers on one port and the stage workers, supervised."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve_process import ServeProcess


def _children(parent: int) -> dict[str, list[int]]:
    """The `openimm http` and `openimm work` processes whose parent is `parent`."""
    found: dict[str, list[int]] = {"http": [], "work": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and b"openimm.local.cli" in args:
            kind = args[args.index(b"openimm.local.cli") + 1].decode()
            found.setdefault(kind, []).append(int(entry.name))
    return found


def _every_child(parent: int) -> list[int]:
    return [pid for pids in _children(parent).values() for pid in pids]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    return state != "Z"


def _listening(pid: int) -> bool:
    """Whether process `pid` has a listening TCP socket."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = str(fd.readlink()) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                return True
    return False


def _until(condition: object, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.2)
    return False


def _list_projects(server: ServeProcess) -> int:
    request = urllib.request.Request(
        f"{server.url}/ListTasks", data=json.dumps({"ProjectName": "p"}).encode()
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path, ["--processes", "2"])
    yield process
    process.stop()


def test_serve_runs_http_processes_and_niced_workers(server: ServeProcess) -> None:
    children = _children(server.proc.pid)
    assert len(children["http"]) == 2 and len(children["work"]) == 1
    nice = int(Path(f"/proc/{children['work'][0]}/stat").read_text().rpartition(")")[2].split()[16])
    assert nice == 5
    assert "2 HTTP processes" in server.banner


def test_a_dead_http_process_is_replaced_and_the_port_keeps_answering(
    server: ServeProcess,
) -> None:
    first, second = _children(server.proc.pid)["http"]
    assert _until(lambda: _listening(first) and _listening(second))
    os.kill(first, signal.SIGKILL)
    # connections the dead process held, or that reached it as it died, are lost with
    # it; once it is gone, the other process answers every new one meanwhile
    assert _until(lambda: not _alive(first), 10)
    time.sleep(0.5)  # the kernel resets what was queued on the dead process's socket
    assert all(_list_projects(server) == 404 for _ in range(20))
    assert _until(
        lambda: (
            len(_children(server.proc.pid)["http"]) == 2
            and first not in _children(server.proc.pid)["http"]
        )
    )
    assert second in _children(server.proc.pid)["http"]


def test_stopping_serve_stops_every_process(tmp_path: Path) -> None:
    process = ServeProcess(tmp_path)
    children = _every_child(process.proc.pid)
    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(timeout=60) == 0
    assert _until(lambda: not any(_alive(pid) for pid in children), 10)


def test_a_killed_serve_leaves_no_process_behind(tmp_path: Path) -> None:
    process = ServeProcess(tmp_path, ["--processes", "2"])
    children = _every_child(process.proc.pid)
    assert len(children) == 3
    process.kill()
    assert _until(lambda: not any(_alive(pid) for pid in children), 45)
    # and a new serve on the same state directory gets the workers' lock
    again = ServeProcess(tmp_path)
    try:
        assert _until(lambda: len(_children(again.proc.pid)["work"]) == 1)
        assert _list_projects(again) == 404
    finally:
        again.stop()


def test_a_taken_port_is_an_environment_error(tmp_path: Path) -> None:
    process = ServeProcess(tmp_path / "a")
    try:
        taken = subprocess.run(
            [
                *process.proc.args[:3],
                "serve",
                "--port",
                str(process.port),
                "--data",
                str(tmp_path / "b"),
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        process.stop()
    assert taken.returncode == 4, taken.stderr
    assert "Traceback" not in taken.stderr
