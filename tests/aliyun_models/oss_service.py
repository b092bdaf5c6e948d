"""OSS's documented behaviour for the calls OpenIMM makes, as a `requests` transport adapter.

`oss2.Session(adapter=...)` takes a requests adapter: everything in oss2 (signing, headers,
XML parsing, CRC checks, error mapping) and in requests runs as it is, and this model
answers the HTTP request in place of the socket. moto's S3 server cannot stand in: it
drops `x-oss-meta-*` metadata, ignores `x-oss-forbid-overwrite` and lists in S3's XML
namespace, which oss2's parser does not read.
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

import oss2
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

_MAX_KEY_BYTES = 1023
_MAX_LIST_KEYS = 1000


@dataclass
class _Object:
    data: bytes
    etag: str
    modified: float
    content_type: str
    meta: dict[str, str]
    crc64: int


class OssService(BaseAdapter):  # type: ignore[misc]
    """Buckets and objects of one OSS region, answering oss2's HTTP requests."""

    def __init__(self, buckets: list[str]) -> None:
        super().__init__()
        self.buckets: dict[str, dict[str, _Object]] = {name: {} for name in buckets}
        self.sent: list[requests.PreparedRequest] = []  # every request, for assertions
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """The service's answer to one HTTP request."""
        self.sent.append(request)
        url = urlsplit(request.url or "")
        bucket = (url.hostname or "").split(".", 1)[0]
        key = unquote(url.path[1:])
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        headers = CaseInsensitiveDict(request.headers)
        if not str(headers.get("Authorization", "")).startswith("OSS"):
            return _error(request, 403, "AccessDenied", "The request is not signed.")
        with self._lock:
            if bucket not in self.buckets:
                return _error(request, 404, "NoSuchBucket", "The specified bucket does not exist.")
            objects = self.buckets[bucket]
            if not key:
                return self._list(request, bucket, objects, params)
            if len(key.encode()) > _MAX_KEY_BYTES:
                return _error(request, 400, "InvalidObjectName", "The object name is too long.")
            if request.method == "PUT":
                return self._put(request, objects, key, headers)
            if request.method in ("GET", "HEAD"):
                return self._get(request, objects, key)
            if request.method == "DELETE":
                objects.pop(key, None)  # absent is fine: OSS answers 204 either way
                return _response(request, 204, {})
        return _error(request, 405, "MethodNotAllowed", "The method is not modelled.")

    def close(self) -> None:
        """Nothing to release."""

    def _put(
        self,
        request: requests.PreparedRequest,
        objects: dict[str, _Object],
        key: str,
        headers: CaseInsensitiveDict[str],
    ) -> requests.Response:
        present = objects.get(key)
        if headers.get("x-oss-forbid-overwrite") == "true" and present is not None:
            return _error(request, 409, "FileAlreadyExists", "The object already exists.")
        if_match = headers.get("If-Match")
        if if_match is not None:
            if present is None:
                return _error(request, 404, "NoSuchKey", "The specified key does not exist.")
            if if_match.strip('"') != present.etag:
                return _error(
                    request, 412, "PreconditionFailed", "At least one precondition failed."
                )
        data = _body(request.body)
        crc = oss2.utils.Crc64()
        crc.update(data)
        stored = _Object(
            data=data,
            # a simple upload's ETag is the content's MD5 in upper-case hex
            etag=hashlib.md5(data, usedforsecurity=False).hexdigest().upper(),
            modified=time.time(),
            content_type=headers.get("Content-Type") or "application/octet-stream",
            # a PutObject replaces the metadata whole
            meta={k.lower(): v for k, v in headers.items() if k.lower().startswith("x-oss-meta-")},
            crc64=crc.crc,
        )
        objects[key] = stored
        return _response(
            request, 200, {"ETag": f'"{stored.etag}"', "x-oss-hash-crc64ecma": str(stored.crc64)}
        )

    def _get(
        self, request: requests.PreparedRequest, objects: dict[str, _Object], key: str
    ) -> requests.Response:
        found = objects.get(key)
        if found is None:
            if request.method == "HEAD":  # a HEAD's error has no body
                return _response(request, 404, {})
            return _error(request, 404, "NoSuchKey", "The specified key does not exist.")
        headers = {
            "Content-Length": str(len(found.data)),
            "Content-Type": found.content_type,
            "ETag": f'"{found.etag}"',
            "Last-Modified": email.utils.formatdate(found.modified, usegmt=True),
            "x-oss-hash-crc64ecma": str(found.crc64),
            "x-oss-object-type": "Normal",
            **found.meta,
        }
        body = b"" if request.method == "HEAD" else found.data
        return _response(request, 200, headers, body)

    def _list(
        self,
        request: requests.PreparedRequest,
        bucket: str,
        objects: dict[str, _Object],
        params: dict[str, str],
    ) -> requests.Response:
        if request.method != "GET" or params.get("list-type") != "2":
            return _error(request, 400, "InvalidArgument", "Only ListObjectsV2 is modelled.")
        prefix = params.get("prefix", "")
        after = params.get("continuation-token", "")
        limit = min(int(params.get("max-keys", "100")), _MAX_LIST_KEYS)
        # keys in UTF-8 byte order, as OSS lists them
        keys = sorted((k for k in objects if k.startswith(prefix) and k > after), key=str.encode)
        page, truncated = keys[:limit], len(keys) > limit
        encoded = params.get("encoding-type") == "url"
        show = (lambda k: quote(k, safe="/")) if encoded else escape
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>',
            f"<Name>{bucket}</Name><Prefix>{show(prefix)}</Prefix><MaxKeys>{limit}</MaxKeys>",
            "<EncodingType>url</EncodingType>" if encoded else "",
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
            f"<KeyCount>{len(page)}</KeyCount>",
        ]
        if truncated:
            parts.append(f"<NextContinuationToken>{show(page[-1])}</NextContinuationToken>")
        for key in page:
            found = objects[key]
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(found.modified))
            parts.append(
                f"<Contents><Key>{show(key)}</Key><LastModified>{stamp}</LastModified>"
                f'<ETag>"{found.etag}"</ETag><Type>Normal</Type><Size>{len(found.data)}</Size>'
                "<StorageClass>Standard</StorageClass></Contents>"
            )
        parts.append("</ListBucketResult>")
        body = "".join(parts).encode()
        return _response(request, 200, {"Content-Type": "application/xml"}, body)


def _body(body: Any) -> bytes:
    """The bytes sent, as requests would stream them: oss2 wraps them to count their CRC."""
    if body is None:
        return b""
    if isinstance(body, str | bytes):
        return body.encode() if isinstance(body, str) else body
    if hasattr(body, "read"):
        return bytes(body.read())
    return b"".join(bytes(chunk) for chunk in body)


def _response(
    request: requests.PreparedRequest, status: int, headers: dict[str, str], body: bytes = b""
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict(
        {"x-oss-request-id": uuid.uuid4().hex.upper(), "Content-Length": str(len(body)), **headers}
    )
    response.raw = io.BytesIO(body)
    response.request = request
    response.url = request.url or ""
    return response


def _error(
    request: requests.PreparedRequest, status: int, code: str, message: str
) -> requests.Response:
    request_id = uuid.uuid4().hex.upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>oss.aliyuncs.com</HostId></Error>"
    ).encode()
    headers = {"Content-Type": "application/xml", "x-oss-request-id": request_id}
    return _response(request, status, headers, body)
