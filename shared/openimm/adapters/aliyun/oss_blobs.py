"""BlobStore on OSS buckets through `oss2`.

Outputs are marked by object metadata (`x-oss-meta-openimm-output`), which any other
PutObject replaces: an object rewritten by someone else loses the mark. The write itself
is conditional, so a foreign object that appeared since the check is never replaced:
`x-oss-forbid-overwrite` when the key was absent, `If-Match` on the ETag when replacing.
"""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import oss2

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

_MARK = "openimm-output"
_CHUNK = 1 << 20
# OSS's answers when a conditional write finds the object in another state
_CONFLICTS = {"FileAlreadyExists", "PreconditionFailed"}


class OssBlobStore(BlobStore):
    """Objects in OSS buckets of one region, `oss://bucket/key`."""

    def __init__(self, auth: Any, endpoint: str, session: Any = None) -> None:
        self._auth = auth
        self._endpoint = endpoint
        # one connection pool for every bucket
        self._session = session if session is not None else oss2.Session()
        self._buckets: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _bucket(self, name: str) -> Any:
        with self._lock:
            if name not in self._buckets:
                self._buckets[name] = oss2.Bucket(
                    self._auth, self._endpoint, name, session=self._session
                )
            return self._buckets[name]

    def _read(self, uri: BlobUri) -> bytes:
        with _sdk_errors(uri):
            stream = self._bucket(uri.bucket).get_object(uri.key)
            # read in chunks: the SDK checks each against the response's CRC as it goes
            return b"".join(iter(lambda: stream.read(_CHUNK), b""))

    def _chunks(self, uri: BlobUri) -> Iterator[bytes]:
        with _sdk_errors(uri):
            stream = self._bucket(uri.bucket).get_object(uri.key)
            yield from iter(lambda: stream.read(_CHUNK), b"")

    def _head(self, uri: BlobUri) -> BlobInfo:
        with _sdk_errors(uri):
            result = self._bucket(uri.bucket).head_object(uri.key)
        return BlobInfo(
            uri=str(uri),
            size=int(result.content_length),
            etag=result.etag,
            modified=float(result.last_modified),
            content_type=result.content_type,
            openimm_output=result.headers.get(f"x-oss-meta-{_MARK}") == "1",
        )

    def _write(self, uri: BlobUri, data: bytes, content_type: str | None) -> None:
        self._put(uri, data, _content_headers(content_type))

    def _write_output(
        self, uri: BlobUri, data: bytes, content_type: str | None, replacing: BlobInfo | None
    ) -> None:
        headers = _content_headers(content_type)
        headers[f"x-oss-meta-{_MARK}"] = "1"
        if replacing is None:
            headers["x-oss-forbid-overwrite"] = "true"
        else:
            headers["If-Match"] = f'"{replacing.etag}"'
        try:
            self._put(uri, data, headers)
        except _Conflict as exc:
            raise ForeignObject(f"{uri} changed while OpenIMM was writing it") from exc

    def _put(self, uri: BlobUri, data: bytes, headers: dict[str, str]) -> None:
        with _sdk_errors(uri):
            try:
                self._bucket(uri.bucket).put_object(uri.key, data, headers=headers)
            except oss2.exceptions.ServerError as exc:
                if exc.code in _CONFLICTS:
                    raise _Conflict(str(uri)) from exc
                raise

    def _remove(self, uri: BlobUri) -> None:
        with _sdk_errors(uri):
            self._bucket(uri.bucket).delete_object(uri.key)

    def _list(self, scheme: str, bucket: str, prefix: str) -> Iterator[BlobInfo]:
        with _sdk_errors(f"{scheme}://{bucket}/{prefix}"):
            for item in oss2.ObjectIteratorV2(self._bucket(bucket), prefix=prefix):
                uri = f"{scheme}://{bucket}/{item.key}"
                try:
                    parse_blob_uri(uri)  # a key no URI can address is not an object here
                except InvalidUri:
                    continue
                yield BlobInfo(
                    uri=uri,
                    size=int(item.size),
                    etag=item.etag,
                    modified=float(item.last_modified),
                    # a listing carries no Content-Type; a HEAD per object would cost a
                    # request each, so it is guessed from the name as the folder store does
                    content_type=mimetypes.guess_type(item.key)[0],
                )


class _Conflict(Exception):
    """A conditional write found the object changed (kept apart from other SDK errors)."""


def _content_headers(content_type: str | None) -> dict[str, str]:
    # without one oss2 guesses the type from the key's extension, as the folder store does
    return {"Content-Type": content_type} if content_type else {}


@contextmanager
def _sdk_errors(where: object) -> Iterator[None]:
    """Translate oss2's errors into port errors, in one place."""
    try:
        yield
    except oss2.exceptions.NotFound as exc:  # NoSuchKey, NoSuchBucket, a HEAD's bare 404
        raise BlobNotFound(str(where)) from exc
    except oss2.exceptions.RequestError as exc:  # the network
        raise StorageUnavailable(f"OSS unreachable for {where}: {exc}") from exc
    except oss2.exceptions.ServerError as exc:
        if exc.status >= 500 or exc.code in ("RequestTimeTooSkewed", "InvalidAccessKeyId"):
            raise StorageUnavailable(f"OSS {exc.code} for {where}") from exc
        raise PortError(f"OSS {exc.code} for {where}: {exc.message}") from exc
