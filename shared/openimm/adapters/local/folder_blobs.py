"""BlobStore on folders: bucket `b` is `root/b/`, or a mounted folder of the user's.

Etags: the md5 hex of the content for files up to 1 MiB (what OSS gives for a simple
upload); for larger files the md5 hex of "size-mtime_ns", so that listing a folder of
photos does not read every photo. Either changes whenever the content is rewritten.

A mounted bucket exposes a folder the user chose (e.g. their photos); symlinks inside
it are followed wherever they point, since the user made them. In any other bucket a
path that resolves outside the bucket folder is refused.

Outputs (`write_output`) are marked by a file under `root/.openimm-outputs/` holding the
etag written, never beside the object: the user's folders get nothing but the output.
An object whose etag no longer matches its mark was rewritten by someone else.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mimetypes
import os
import stat
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from openimm.ports import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobUri,
    ForeignObject,
    InvalidUri,
    PortError,
    StorageUnavailable,
    parse_blob_uri,
)

_MD5_MAX_BYTES = 1 << 20
# a folder no bucket can be: bucket names start with a letter or digit
_OUTPUT_MARKS = ".openimm-outputs"
_TMP_PREFIX = ".openimm-"
_TMP_SUFFIX = ".tmp"
# a streamed read (BlobStore.local_file) goes in pieces of this size
_CHUNK = 1 << 20
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)
# a write failing so is the disk's fault (full, read-only, gone), not the key's
_DISK_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM)


class FolderBlobStore(BlobStore):
    """Objects as files under `root/<bucket>/`, with some buckets mounted on other folders."""

    def __init__(self, root: Path, mounts: Mapping[str, Path] | None = None) -> None:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        self._root = root.resolve()
        self._mounts: dict[str, Path] = {}
        for bucket, folder in (mounts or {}).items():
            parse_blob_uri(f"oss://{bucket}/x")  # the same bucket-name rule as URIs
            resolved = Path(folder).resolve()
            if not resolved.is_dir():
                raise ValueError(f"mount for bucket {bucket!r} is not a folder: {folder}")
            self._mounts[bucket] = resolved
        self._output_lock = threading.Lock()

    def _bucket(self, bucket: str) -> tuple[Path, bool]:
        if bucket in self._mounts:
            return self._mounts[bucket], True
        return (self._root / bucket).resolve(), False

    def _path(self, uri: BlobUri) -> Path:
        base, mounted = self._bucket(uri.bucket)
        path = base.joinpath(*uri.key.split("/"))
        if not mounted and not path.resolve().is_relative_to(base):
            raise InvalidUri(f"{uri} leads outside its bucket")
        return path

    def _read(self, uri: BlobUri) -> bytes:
        path = self._path(uri)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise _port_error(uri, exc) from exc

    def _chunks(self, uri: BlobUri) -> Iterator[bytes]:
        path = self._path(uri)
        try:
            with path.open("rb") as stream:
                yield from iter(lambda: stream.read(_CHUNK), b"")
        except OSError as exc:
            raise _port_error(uri, exc) from exc

    def _own_file(self, uri: BlobUri) -> Path | None:
        path = self._path(uri)
        self._head(uri)  # BlobNotFound for a folder or a missing file, as a read says
        return path

    def _head(self, uri: BlobUri) -> BlobInfo:
        path = self._path(uri)
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                raise BlobNotFound(str(uri))
            info = _info(str(uri), path, st)
        except OSError as exc:
            raise _port_error(uri, exc) from exc
        try:
            marked = self._mark(uri).read_text() == info.etag
        except OSError:
            marked = False
        return replace(info, openimm_output=True) if marked else info

    def _mark(self, uri: BlobUri) -> Path:
        return self._root.joinpath(_OUTPUT_MARKS, uri.bucket, *uri.key.split("/"))

    def _write_output(
        self, uri: BlobUri, data: bytes, content_type: str | None, replacing: BlobInfo | None
    ) -> None:
        # One process serves a state folder (local/runtime.py), so a lock makes the
        # check-then-write atomic; cloud stores use a conditional put instead.
        with self._output_lock:
            try:
                now: BlobInfo | None = self._head(uri)
            except BlobNotFound:
                now = None
            if (now and now.etag) != (replacing and replacing.etag):
                raise ForeignObject(f"{uri} changed while OpenIMM was writing it")
            self._write(uri, data, content_type)
            mark = self._mark(uri)
            try:
                mark.parent.mkdir(parents=True, exist_ok=True)
                mark.write_text(self._head(uri).etag)
            except OSError as exc:
                raise StorageUnavailable(f"cannot mark {uri}: {exc.strerror or exc}") from exc

    def _write(self, uri: BlobUri, data: bytes, content_type: str | None) -> None:
        path = self._path(uri)
        tmp = path.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}{_TMP_SUFFIX}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The folders now exist, so a symlink among them is resolved by this check.
            self._path(uri)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            error = StorageUnavailable if exc.errno in _DISK_FAULTS else PortError
            raise error(f"cannot write {uri}: {exc.strerror or exc}") from exc
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise

    def _remove(self, uri: BlobUri) -> None:
        path = self._path(uri)
        with contextlib.suppress(OSError):
            self._mark(uri).unlink(missing_ok=True)
        try:
            if path.is_dir():
                return
            path.unlink(missing_ok=True)
        except OSError as exc:
            if exc.errno in _MISSING:
                return
            raise PortError(f"cannot remove {uri}: {exc.strerror or exc}") from exc
        base, mounted = self._bucket(uri.bucket)
        if mounted:
            return  # the user's folders are theirs to tidy
        # Object stores have no folders: drop the ones the removal left empty.
        parent = path.parent
        while parent != base and parent.is_relative_to(base):
            try:
                parent.rmdir()
            except OSError:
                return
            parent = parent.parent

    def _list(self, scheme: str, bucket: str, prefix: str) -> Iterator[BlobInfo]:
        base, mounted = self._bucket(bucket)
        folder_key = prefix.rpartition("/")[0]
        start = base.joinpath(*folder_key.split("/")) if folder_key else base
        if not start.is_dir():
            return
        real = start.resolve()
        if not mounted and not real.is_relative_to(base):
            return
        walk = _Walk(scheme, bucket, base, mounted, prefix)
        yield from walk.folder(start, f"{folder_key}/" if folder_key else "", frozenset([real]))


class _Walk:
    """A listing in key order, which is not the order of a plain recursive walk."""

    def __init__(self, scheme: str, bucket: str, base: Path, mounted: bool, prefix: str) -> None:
        self.scheme = scheme
        self.bucket = bucket
        self.base = base
        self.mounted = mounted
        self.prefix = prefix

    def folder(self, folder: Path, key_prefix: str, seen: frozenset[Path]) -> Iterator[BlobInfo]:
        """The objects under `folder`, whose keys start with `key_prefix`."""
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            return
        # A folder `a` holds keys `a/...`, so it sorts as "a/": after "a-b", before "a0".
        children: list[tuple[str, Path, bool]] = []
        for entry in entries:
            if entry.name.startswith(_TMP_PREFIX) and entry.name.endswith(_TMP_SUFFIX):
                continue
            try:
                is_dir = entry.is_dir()
                if not is_dir and not entry.is_file():
                    continue
            except OSError:
                continue
            key = key_prefix + entry.name + ("/" if is_dir else "")
            children.append((key, Path(entry.path), is_dir))
        children.sort(key=lambda child: child[0])
        for key, path, is_dir in children:
            wanted = key.startswith(self.prefix) or (is_dir and self.prefix.startswith(key))
            if not wanted:
                continue
            real = path.resolve() if path.is_symlink() or is_dir else path
            if not self.mounted and not real.is_relative_to(self.base):
                continue
            if is_dir:
                if real not in seen:  # a symlink back up the tree would never end
                    yield from self.folder(path, key, seen | {real})
                continue
            uri = f"{self.scheme}://{self.bucket}/{key}"
            try:
                parse_blob_uri(uri)  # a file name no URI can address is not an object
                yield _info(uri, path, path.stat())
            except (InvalidUri, OSError, UnicodeError):
                continue


def _info(uri: str, path: Path, st: os.stat_result) -> BlobInfo:
    if st.st_size <= _MD5_MAX_BYTES:
        etag = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    else:
        stamp = f"{st.st_size}-{st.st_mtime_ns}".encode()
        etag = hashlib.md5(stamp, usedforsecurity=False).hexdigest()
    return BlobInfo(
        uri=uri,
        size=st.st_size,
        etag=etag,
        modified=st.st_mtime,
        content_type=mimetypes.guess_type(path.name)[0],
    )


def _port_error(uri: BlobUri, exc: OSError) -> PortError:
    if exc.errno in _MISSING:
        return BlobNotFound(str(uri))
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidUri(f"object key too long for a file name: {uri}")
    if exc.errno == errno.EIO:  # an unreadable photo (EACCES) is that file's failure
        return StorageUnavailable(f"cannot read {uri}: {exc.strerror or exc}")
    return PortError(f"cannot read {uri}: {exc.strerror or exc}")
