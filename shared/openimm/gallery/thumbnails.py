"""Face crops and photo thumbnails of a dataset's files, cached on disk.

`GET /thumbnails?ProjectName=&DatasetName=&URI=[&FigureId=][&Size=]` answers a JPEG of
the file (or of one of its faces). Only a file indexed in that dataset is ever read, and
only through the blob store, so no request path reaches the disk: a URI of another
bucket, a path trick or a file not indexed is ResourceNotFound, and a bucket or project
the caller's key is not granted is Forbidden.RAM, as the IMM operations answer.

The cache key (also the ETag) covers what the picture depends on: the file's URI and
stored version, the face's box and the size. A photo replaced under the same URI gets a
new key; its old thumbnails are never asked for again, and the cache's size cap sends
them out in their turn (gallery/crop_cache.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from openimm.access.gate import UNCHECKED, Access, Caller
from openimm.access.keyring import Mode
from openimm.access.signatures import HttpRequest
from openimm.api.base import Name, OssUri, RequestModel
from openimm.api.operations import Application
from openimm.api.parse import parse_request
from openimm.errors import Forbidden, InvalidArgument, ResourceNotFound
from openimm.gallery.crop_cache import DEFAULT_CAP_BYTES, CropCache
from openimm.ports import InvalidUri, parse_blob_uri
from openimm.vision.thumbnail import thumbnail_jpeg
from openimm.vision.types import Box

DEFAULT_SIZE = 160
# the largest photo read for a thumbnail, as for analysis
MAX_SOURCE_BYTES = 200 * 1024 * 1024
# bumped when the crop or encoding changes, so cached pictures are made again
_RECIPE = "face-square-0.25/jpeg-85/v1"


class ThumbnailRequest(RequestModel):
    """The query of GET /thumbnails (IMM's parameter names and checks)."""

    project_name: Name
    dataset_name: Name
    uri: Annotated[OssUri, Field(alias="URI")]
    figure_id: Annotated[str | None, Field(alias="FigureId", min_length=1, max_length=128)] = None
    size: Annotated[int, Field(alias="Size", ge=32, le=1024)] = DEFAULT_SIZE


@dataclass(frozen=True)
class Thumbnail:
    """A JPEG and its ETag; `data` is None when the client's copy is current."""

    etag: str
    data: bytes | None


class Thumbnails:
    """Makes, caches and authorises thumbnails for one application."""

    def __init__(
        self, app: Application, cache_dir: Path, cache_bytes: int = DEFAULT_CAP_BYTES
    ) -> None:
        self._app = app
        self._cache = CropCache(cache_dir, cache_bytes)

    def get(self, request: HttpRequest, if_none_match: str | None = None) -> Thumbnail:
        """The thumbnail a GET asks for, for the caller it is from; IMM errors otherwise."""
        caller = self._app.gate.admit(request) if self._app.gate is not None else UNCHECKED
        wanted = parse_request(ThumbnailRequest, dict(request.query))
        self._authorise(caller, wanted)
        row = self._app.catalog.file(wanted.project_name, wanted.dataset_name, wanted.uri)
        box = self._box(wanted, row) if wanted.figure_id else None
        etag = _etag(wanted, row, box)
        if if_none_match is not None and etag in _etags(if_none_match):
            return Thumbnail(etag, None)
        cached = self._cache.read(etag)
        if cached is not None:
            return Thumbnail(etag, cached)
        data = self._app.catalog.read(wanted.uri, MAX_SOURCE_BYTES)
        jpeg = thumbnail_jpeg(data, wanted.size, box, file_size=_file_size(row))
        self._cache.write(etag, jpeg)
        return Thumbnail(etag, jpeg)

    def _authorise(self, caller: Caller, wanted: ThumbnailRequest) -> None:
        try:
            bucket = parse_blob_uri(wanted.uri).bucket
        except InvalidUri as exc:
            raise InvalidArgument(f"The parameter URI is invalid: {exc}") from None
        if bucket == self._app.work_bucket:
            raise Forbidden(f"The bucket {bucket!r} is OpenIMM's own work bucket.")
        caller.check(
            [
                Access("project", wanted.project_name, Mode.READ),
                Access("bucket", bucket, Mode.READ),
            ]
        )

    def _box(self, wanted: ThumbnailRequest, row: Mapping[str, Any]) -> Box:
        figure_id = str(wanted.figure_id)
        found = (
            self._app.figures.get_many(wanted.project_name, wanted.dataset_name, [figure_id])
            if figure_id in row.get("_figures", [])
            else []
        )
        if not found:
            raise ResourceNotFound(
                f"The figure {figure_id!r} is not a face of file {wanted.uri!r}."
            )
        b = found[0]["Boundary"]
        return Box(int(b["Left"]), int(b["Top"]), int(b["Width"]), int(b["Height"]))


def _file_size(row: Mapping[str, Any]) -> tuple[int, int] | None:
    """The upright photo's (width, height) as its analysis found them, if it was."""
    width, height = row.get("ImageWidth"), row.get("ImageHeight")
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    return None


def _etag(wanted: ThumbnailRequest, row: Mapping[str, Any], box: Box | None) -> str:
    version = [row.get(k) for k in ("ETag", "FileHash", "Size", "FileModifiedTime")]
    text = repr((_RECIPE, wanted.uri, version, box, wanted.size))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")}
