"""Which projects and buckets a request touches, and whether it reads or writes them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from openimm.access.gate import Access
from openimm.access.keyring import Mode
from openimm.ports import InvalidUri, parse_blob_uri

# Everything else changes a project (creates, indexes, edits, starts a task).
READ_OPERATIONS = frozenset(
    {
        "GetFileMeta",
        "GetFigureCluster",
        "BatchGetFigureCluster",
        "QueryFigureClusters",
        "QuerySimilarImageClusters",
        "SearchImageFigureCluster",
        "DetectImageFaces",
        "CompareImageFaces",
        "GetTask",
        "ListTasks",
        "SimpleQuery",
        "ListDatasets",
    }
)
# URIs OpenIMM writes to; every other URI of a request is read
WRITTEN_URIS = frozenset({"extended_message_uri"})


def accesses(operation: str, request: BaseModel) -> list[Access]:
    """The project (read or write) and every bucket the request's URIs name."""
    found: list[Access] = []
    project = getattr(request, "project_name", None)
    if isinstance(project, str):
        mode = Mode.READ if operation in READ_OPERATIONS else Mode.WRITE
        found.append(Access("project", project, mode))
    for field, uri in _uris(request):
        try:
            bucket = parse_blob_uri(uri).bucket
        except InvalidUri:
            continue  # the operation refuses it with its own message
        mode = Mode.WRITE if field in WRITTEN_URIS else Mode.READ
        found.append(Access("bucket", bucket, mode))
    return found


def _uris(value: Any, field: str = "") -> Iterator[tuple[str, str]]:
    # Every URI parameter of the contract is named ...URI (URI, SourceURI, URI1, ...).
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _uris(getattr(value, name), name)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _uris(item, field)
    elif isinstance(value, str) and field.rstrip("0123456789").endswith("uri"):
        yield field, value
