"""Space kept back on the state directory's disk, given up when that disk fills.

On a full disk nothing can be written, not even that a task failed because the disk is
full: SQLite needs room to take a message off the queue or to end a task. So the local
runtime holds a few megabytes in a file of its own, deletes it the moment a write meets
a full disk (the workers then have room to end the task with StorageUnavailable and
stop), and takes the space back once the disk has room for it and as much again. Until
then the disk counts as full: the workers record tasks as failed rather than work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from pathlib import Path

log = logging.getLogger(__name__)

RESERVE_BYTES = 8 * 1024 * 1024
_CHUNK = 1024 * 1024


class StorageReserve:
    """One file of `size` bytes in the state directory."""

    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path = path
        self._size = size
        self._lock = threading.Lock()
        self._held = path.is_file() and path.stat().st_size >= size

    @property
    def held(self) -> bool:
        """Whether the space is kept back now."""
        return self._held

    def keep(self) -> bool:
        """Keep the space back (again); False while the disk has not that much room and
        as much again to spare (so that the space just released is not taken back)."""
        with self._lock:
            if self._held:
                return True
            try:
                if shutil.disk_usage(self.path.parent).free < 2 * self._size:
                    return False
                with self.path.open("wb") as reserve:
                    # written, not just sized: a sparse file would keep nothing back
                    for _ in range(0, self._size, _CHUNK):
                        reserve.write(b"\0" * _CHUNK)
                    reserve.flush()
                    os.fsync(reserve.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    self.path.unlink()
                return False
            self._held = True
            return True

    def release(self) -> bool:
        """Give the space back to the disk; True if it was held."""
        with self._lock:
            if not self._held:
                return False
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._held = False
        log.warning(
            "the disk of %s is full: released %d MB kept for this, to record what fails",
            self.path.parent,
            self._size // (1024 * 1024),
        )
        return True
