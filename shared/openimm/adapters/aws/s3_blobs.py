"""BlobStore on S3: `oss://bucket/key` and `s3://bucket/key` both name S3 objects.

Outputs carry the user-defined metadata `openimm-output: 1`. Any other writer's PUT
replaces the metadata with its own, so an object still marked is one OpenIMM wrote and
nobody rewrote. Writing an output is a conditional PUT (If-None-Match: * when the key
was absent, If-Match: <etag> when replacing OpenIMM's own), so an object put there
between the check and the write is never overwritten.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from openimm.adapters.aws.errors import aws_errors, error_code
from openimm.ports import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobUri,
    ForeignObject,
    InvalidUri,
    parse_blob_uri,
)

_MARK = "openimm-output"
_ABSENT = ("404", "NoSuchKey", "NotFound")
# a streamed read (BlobStore.local_file) goes in pieces of this size
_CHUNK = 1 << 20
# the object changed between the check and the conditional PUT
_RACED = ("412", "PreconditionFailed", "409", "ConditionalRequestConflict")


class S3BlobStore(BlobStore):
    """Objects in S3 buckets; the bucket is the URI's, the key the URI's key."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def _read(self, uri: BlobUri) -> bytes:
        try:
            got = self._client.get_object(Bucket=uri.bucket, Key=uri.key)
            body: bytes = got["Body"].read()
            return body
        except ClientError as exc:
            if error_code(exc) in _ABSENT:
                raise BlobNotFound(str(uri)) from exc
            with aws_errors(f"read {uri}"):
                raise

    def _chunks(self, uri: BlobUri) -> Iterator[bytes]:
        try:
            got = self._client.get_object(Bucket=uri.bucket, Key=uri.key)
            yield from got["Body"].iter_chunks(_CHUNK)
        except ClientError as exc:
            if error_code(exc) in _ABSENT:
                raise BlobNotFound(str(uri)) from exc
            with aws_errors(f"read {uri}"):
                raise

    def _head(self, uri: BlobUri) -> BlobInfo:
        try:
            got = self._client.head_object(Bucket=uri.bucket, Key=uri.key)
        except ClientError as exc:
            if error_code(exc) in _ABSENT:
                raise BlobNotFound(str(uri)) from exc
            with aws_errors(f"head {uri}"):
                raise
        return BlobInfo(
            uri=str(uri),
            size=int(got["ContentLength"]),
            etag=got["ETag"].strip('"'),
            modified=got["LastModified"].timestamp(),
            content_type=got.get("ContentType"),
            openimm_output=got.get("Metadata", {}).get(_MARK) == "1",
        )

    def _write(self, uri: BlobUri, data: bytes, content_type: str | None) -> None:
        with aws_errors(f"write {uri}"):
            self._client.put_object(**_put(uri, data, content_type))

    def _write_output(
        self, uri: BlobUri, data: bytes, content_type: str | None, replacing: BlobInfo | None
    ) -> None:
        condition = (
            {"IfNoneMatch": "*"} if replacing is None else {"IfMatch": f'"{replacing.etag}"'}
        )
        try:
            self._client.put_object(
                **_put(uri, data, content_type), Metadata={_MARK: "1"}, **condition
            )
        except ClientError as exc:
            if error_code(exc) in _RACED:
                raise ForeignObject(f"{uri} changed while OpenIMM was writing it") from exc
            with aws_errors(f"write {uri}"):
                raise

    def _remove(self, uri: BlobUri) -> None:
        with aws_errors(f"remove {uri}"):
            self._client.delete_object(Bucket=uri.bucket, Key=uri.key)

    def _list(self, scheme: str, bucket: str, prefix: str) -> Iterator[BlobInfo]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        )
        with aws_errors(f"list {scheme}://{bucket}/{prefix}"):
            for page in pages:
                for entry in page.get("Contents", []):
                    uri = f"{scheme}://{bucket}/{entry['Key']}"
                    try:
                        parse_blob_uri(uri)
                    except InvalidUri:
                        continue  # a key no URI can address is not an object here
                    # A listing gives no content type: the key's extension stands for it.
                    yield BlobInfo(
                        uri=uri,
                        size=int(entry["Size"]),
                        etag=entry["ETag"].strip('"'),
                        modified=entry["LastModified"].timestamp(),
                        content_type=mimetypes.guess_type(entry["Key"])[0],
                    )


def _put(uri: BlobUri, data: bytes, content_type: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key, "Body": data}
    content_type = content_type or mimetypes.guess_type(uri.key)[0]
    if content_type:
        args["ContentType"] = content_type
    return args
