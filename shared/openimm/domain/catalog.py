"""Projects, datasets and the files indexed into them.

Rows keep IMM's own field names (PascalCase) so that what a user stored (CustomId,
CustomLabels) comes back unchanged; fields of ours that clients never see start
with an underscore.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterator
from typing import Any

from openimm.domain.entities import FileState, dataset_key, file_object_id
from openimm.errors import InvalidArgument, InvalidFile, ResourceAlreadyExists, ResourceNotFound
from openimm.ports import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    ConditionFailed,
    InvalidUri,
    TableStore,
)

PROJECTS = "projects"
DATASETS = "datasets"
FILES = "files"
ALL_PROJECTS = "project"

# IMM stores MediaType from the extension when the client does not say.
_IMAGE_EXTENSIONS = {
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".webp",
    ".gif",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
}
# what analysis wrote on a row; re-indexing the same bytes keeps it
_ANALYSIS_FIELDS = (
    "_state",
    "_detections",
    "_figures",
    "_error",
    "ImageWidth",
    "ImageHeight",
    "Orientation",
    "FigureCount",
    "ImageScore",
    "_shot",
    "_similar",
)
_VERSION = "_version"
_VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".3gp", ".flv"}


def media_type_of(uri: str) -> str:
    """`image`, `video` or `other`, from the object's extension."""
    ext = posixpath.splitext(uri.lower())[1]
    if ext in _IMAGE_EXTENSIONS:
        return "image"
    if ext in _VIDEO_EXTENSIONS:
        return "video"
    return "other"


class Catalog:
    """The project -> dataset -> file hierarchy."""

    def __init__(self, table: TableStore, blobs: BlobStore, owner_id: str) -> None:
        self._table = table
        self._blobs = blobs
        self.owner_id = owner_id

    # ------------------------------------------------------------ projects

    def create_project(self, name: str, attributes: dict[str, Any]) -> dict[str, Any]:
        """A new project; ResourceAlreadyExists when the name is taken."""
        now = time.time()
        row = {
            **attributes,
            "ProjectName": name,
            "OwnerId": self.owner_id,
            "CreateTime": now,
            "UpdateTime": now,
            "DatasetCount": 0,
        }
        try:
            self._table.put(PROJECTS, ALL_PROJECTS, name, row, if_absent=True)
        except ConditionFailed:
            raise ResourceAlreadyExists(f"The project {name!r} already exists.") from None
        return row

    def project(self, name: str) -> dict[str, Any]:
        """The project row, or ResourceNotFound."""
        record = self._table.get(PROJECTS, ALL_PROJECTS, name)
        if record is None:
            raise ResourceNotFound(f"The project {name!r} does not exist.")
        return record.data

    # ------------------------------------------------------------ datasets

    def create_dataset(self, project: str, name: str, attributes: dict[str, Any]) -> dict[str, Any]:
        """A new dataset in an existing project."""
        self.project(project)
        now = time.time()
        row = {
            **attributes,
            "ProjectName": project,
            "DatasetName": name,
            "OwnerId": self.owner_id,
            "CreateTime": now,
            "UpdateTime": now,
        }
        try:
            self._table.put(DATASETS, project, name, row, if_absent=True)
        except ConditionFailed:
            raise ResourceAlreadyExists(
                f"The dataset {name!r} already exists in project {project!r}."
            ) from None
        return row

    def dataset(self, project: str, name: str) -> dict[str, Any]:
        """The dataset row, or ResourceNotFound naming what is missing."""
        record = self._table.get(DATASETS, project, name)
        if record is None:
            self.project(project)
            raise ResourceNotFound(f"The dataset {name!r} does not exist in project {project!r}.")
        return record.data

    def datasets(self, project: str) -> list[str]:
        """The names of a project's datasets (ResourceNotFound without the project)."""
        self.project(project)
        return [record.sk for record in self._table.scan_partition(DATASETS, project)]

    # ------------------------------------------------------------ files

    def index_file(self, project: str, dataset: str, given: dict[str, Any]) -> dict[str, Any]:
        """Record (or refresh) one file's metadata; analysis happens in the stages."""
        self.dataset(project, dataset)
        uri = str(given["URI"])
        info = self.stat(uri)
        key = dataset_key(project, dataset)
        old = self._table.get(FILES, key, uri)
        now = time.time()
        row: dict[str, Any] = {
            **{k: v for k, v in given.items() if v is not None},
            "URI": uri,
            "ObjectId": file_object_id(uri),
            "ObjectType": "file",
            "OwnerId": self.owner_id,
            "ProjectName": project,
            "DatasetName": dataset,
            "Filename": posixpath.basename(uri),
            "MediaType": given.get("MediaType") or media_type_of(uri),
            "ContentType": given.get("ContentType") or info.content_type,
            "Size": info.size,
            "ETag": info.etag,
            "FileModifiedTime": info.modified,
            "CreateTime": old.data["CreateTime"] if old else now,
            "UpdateTime": now,
            "_state": FileState.INDEXED,
        }
        if old and old.data.get("ETag") == info.etag:
            # same bytes as before: keep the analysis (done or under way), refresh the rest
            for name in _ANALYSIS_FIELDS:
                if name in old.data:
                    row[name] = old.data[name]
        self._table.put(FILES, key, uri, row)
        return row

    def stat(self, uri: str, parameter: str = "URI") -> BlobInfo:
        """The stored object behind a URI, or the IMM error naming the request's parameter."""
        try:
            return self._blobs.head(uri)
        except InvalidUri as exc:
            raise InvalidArgument(f"The parameter {parameter} is invalid: {exc}") from None
        except BlobNotFound:
            raise ResourceNotFound(f"The object {uri!r} does not exist.") from None

    def read(self, uri: str, max_bytes: int) -> bytes:
        """The bytes of a stored object, or the IMM error indexing would give for it."""
        try:
            return self._blobs.read(uri, max_bytes=max_bytes)
        except InvalidUri as exc:
            raise InvalidArgument(f"The parameter URI is invalid: {exc}") from None
        except BlobNotFound:
            raise ResourceNotFound(f"The object {uri!r} does not exist.") from None
        except BlobTooLarge:
            raise InvalidFile(f"The object {uri!r} is larger than {max_bytes} bytes.") from None

    def file(self, project: str, dataset: str, uri: str) -> dict[str, Any]:
        """The file row, or ResourceNotFound."""
        self.dataset(project, dataset)
        record = self._table.get(FILES, dataset_key(project, dataset), uri)
        if record is None:
            raise ResourceNotFound(f"The file {uri!r} is not indexed in dataset {dataset!r}.")
        return record.data

    def find_file(self, project: str, dataset: str, uri: str) -> dict[str, Any] | None:
        """The file row (with its `_version`) or None: stages tolerate deleted files."""
        record = self._table.get(FILES, dataset_key(project, dataset), uri)
        return {**record.data, _VERSION: record.version} if record else None

    def save_file(self, project: str, dataset: str, row: dict[str, Any]) -> None:
        """Write back a row read by find_file; ConditionFailed if it changed meanwhile."""
        data = {k: v for k, v in row.items() if k != _VERSION}
        self._table.put(
            FILES, dataset_key(project, dataset), row["URI"], data, if_version=row[_VERSION]
        )

    def update_file(
        self, project: str, dataset: str, uri: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Set user fields (CustomId, CustomLabels) of an indexed file; its row after."""
        self.dataset(project, dataset)
        while True:
            row = self.find_file(project, dataset, uri)
            if row is None:
                raise ResourceNotFound(f"The file {uri!r} is not indexed in dataset {dataset!r}.")
            if fields:
                row.update(fields, UpdateTime=time.time())
                try:
                    self.save_file(project, dataset, row)
                except ConditionFailed:
                    continue  # a stage wrote the row meanwhile: apply the fields to its version
            return {k: v for k, v in row.items() if k != _VERSION}

    def remove_file(self, project: str, dataset: str, uri: str) -> dict[str, Any]:
        """Delete the file's row and return what it was."""
        row = self.file(project, dataset, uri)
        self._table.delete(FILES, dataset_key(project, dataset), uri)
        return row

    def files(self, project: str, dataset: str) -> Iterator[dict[str, Any]]:
        """Every file row of a dataset."""
        for record in self._table.scan_partition(FILES, dataset_key(project, dataset)):
            yield record.data
