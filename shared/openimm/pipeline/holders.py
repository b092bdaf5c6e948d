"""Who holds a lease, precisely enough that another process may prove the holder gone.

A holder is named by its kernel's boot id and PID namespace (the processes it can see
are the ones the reader can see), its pid, and that process's start time (so that a
reused pid is not taken for the holder). A reader in another namespace, on another
machine or on another boot proves nothing: only the lease's expiry frees it then, as
it does for every holder on Function Compute and Lambda, whose instances cannot see
each other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def this_process() -> dict[str, Any]:
    """The current process as a lease names its holder."""
    pid = os.getpid()
    return {"space": _process_space(), "pid": pid, "started": _start_ticks(pid)}


def is_gone(holder: Any) -> bool:
    """True only when `holder` (from this_process) provably no longer runs."""
    if not isinstance(holder, dict):
        return False
    space = _process_space()
    if space is None or holder.get("space") != space:
        return False
    pid = holder.get("pid")
    if type(pid) is not int or pid <= 0:
        return False
    started = _start_ticks(pid)
    # no such process, or another one that took the pid after the holder ended
    return started is None or started != holder.get("started")


def _process_space() -> str | None:
    """The boot id and PID namespace of this process; None where Linux's /proc is not."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return None
    return f"{boot}/{namespace}"


def _start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks after boot; None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19])  # field 22, starttime
