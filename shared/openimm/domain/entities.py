"""The things IMM talks about, as plain dataclasses: files, figures, clusters, tasks."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from openimm.grouping.figure_clustering import INDEPENDENT, UNAVAILABLE

__all__ = [
    "INDEPENDENT",
    "UNAVAILABLE",
    "FileState",
    "TaskStatus",
    "TaskType",
    "content_tag",
    "dataset_key",
    "figure_id_for",
    "file_object_id",
    "new_cluster_id",
]


def dataset_key(project: str, dataset: str) -> str:
    """The partition key of everything inside one dataset."""
    return f"{project}/{dataset}"


def file_object_id(uri: str) -> str:
    """IMM's file ObjectId: a 64-hex digest of the URI, stable across re-indexing."""
    return hashlib.sha256(uri.encode()).hexdigest()


def content_tag(row: dict[str, Any]) -> str:
    """A short tag of the bytes a file row describes (its ETag): names what was made of them."""
    return hashlib.sha256(str(row.get("ETag", "")).encode()).hexdigest()[:16]


def figure_id_for(uri: str, content_tag: str, index: int) -> str:
    """Deterministic FigureId, so a re-run stage writes the same rows (at-least-once delivery)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{uri}\n{content_tag}\n{index}"))


def new_cluster_id() -> str:
    return f"Cluster-{uuid.uuid4()}"


class FileState:
    """Where a file is in analysis."""

    INDEXED = "indexed"
    ANALYSED = "analysed"
    FAILED = "failed"


class TaskStatus:
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    TERMINAL = frozenset({"Succeeded", "Failed"})


class TaskType:
    FACE_CLUSTERING = "FaceClustering"
    SIMILAR_IMAGE_CLUSTERING = "SimilarImageClustering"
    FACES_SEARCHING = "FacesSearching"
    BATCH_INDEX = "BatchIndexFileMeta"


@dataclass
class Task:
    """An asynchronous task and its fan-in counters."""

    task_id: str
    task_type: str
    project: str
    dataset: str
    status: str
    start_time: float
    request_id: str
    user_data: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    topic: str | None = None
    end_time: float | None = None
    code: str | None = None
    message: str | None = None
    total: int = 0
    done: int = 0
    failed: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    # ended, and its notification not known to be out (Pipeline._end); since when the
    # process sending it has been at it, and which process that is (opaque here: the
    # pipeline names it so that another process may prove it gone)
    notify_pending: bool = False
    notify_claimed: float | None = None
    notify_claimer: Any = None

    @property
    def progress(self) -> int:
        """0..100: files analysed count for 90, the clustering for the last 10."""
        if self.status in TaskStatus.TERMINAL:
            return 100
        if self.total == 0:
            return 90
        return min(90, (90 * (self.done + self.failed)) // self.total)
