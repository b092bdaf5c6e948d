"""The thumbnails made so far, on disk, bounded in size: the least recently used go first.

Files are named by their ETag in 256 folders. A hit sets the file's modification time
to now, so that time orders the files by last use for every process serving from the
same folder. Each process counts what it writes; once that passes the cap, or a tenth
of it since the last look, it measures the folder and removes the least recently used
files down to nine tenths of the cap. The folder thus stays within the cap plus a
tenth of it for each process writing into it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path

DEFAULT_CAP_BYTES = 512 * 1024 * 1024
_LOW_WATER = 0.9
_LOOK_EVERY = 0.1


class CropCache:
    """JPEGs by ETag in one folder, kept under `cap_bytes`."""

    def __init__(self, folder: Path, cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        if cap_bytes < 1:
            raise ValueError("the thumbnail cache needs a cap of at least one byte")
        self._folder = folder
        self._cap = cap_bytes
        self._lock = threading.Lock()
        # bytes in the folder as last measured plus those written here since (None: never)
        self._estimate: int | None = None
        self._since_look = 0

    def read(self, etag: str) -> bytes | None:
        """The cached JPEG, marked as just used; None when not cached."""
        path = self._path(etag)
        try:
            data = path.read_bytes()
            os.utime(path)
        except FileNotFoundError:
            return None  # never made, or removed by another process's trim meanwhile
        return data

    def write(self, etag: str, data: bytes) -> None:
        """Keep a JPEG, then trim the folder if it may be over the cap."""
        _write_atomically(self._path(etag), data)
        with self._lock:
            if self._estimate is None:
                self._estimate = self._measure()[1]
            else:
                self._estimate += len(data)
            self._since_look += len(data)
            if self._estimate > self._cap or self._since_look > self._cap * _LOOK_EVERY:
                self._estimate = self._trim()
                self._since_look = 0

    def size(self) -> int:
        """Bytes in the folder now."""
        return self._measure()[1]

    def _trim(self) -> int:
        """Remove the least recently used files down to the low-water mark; bytes left."""
        files, total = self._measure()
        if total <= self._cap:
            return total
        files.sort()
        for _, size, path in files:
            if total <= self._cap * _LOW_WATER:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                total -= size
        return total

    def _measure(self) -> tuple[list[tuple[float, int, Path]], int]:
        """(last use, size, path) of every cached JPEG, and their total size."""
        files: list[tuple[float, int, Path]] = []
        if not self._folder.is_dir():
            return files, 0
        for shard in os.scandir(self._folder):
            if not shard.is_dir():
                continue
            for entry in os.scandir(shard.path):
                if not entry.name.endswith(".jpg"):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    stat = entry.stat()
                    files.append((stat.st_mtime, stat.st_size, Path(entry.path)))
        return files, sum(size for _, size, _ in files)

    def _path(self, etag: str) -> Path:
        return self._folder / etag[:2] / f"{etag}.jpg"


def _write_atomically(path: Path, data: bytes) -> None:
    # several HTTP processes may make the same thumbnail at once: each renames its own
    # complete file into place, so no reader ever sees half a JPEG
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
