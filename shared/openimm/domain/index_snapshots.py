"""Each dataset's face search index saved in the work bucket, so a cold instance loads it.

Above 100k faces the search goes through an HNSW graph whose build takes minutes (a
1M-face graph tens of minutes on two busy cores): longer than a search task may take.
The search stage builds and saves it after each face clustering task (face_search.py),
and a saved index is loaded instead (its rows and graph as they were: 2.1 GB, read and
loaded in 24 s at 1M faces, bench/search.py) and brought up to date like a warm one, by
the figure ids it misses or still holds (face_search.py): a face's vector never changes
under its id, so an old snapshot is only ever behind, never wrong. Whichever instance
saves last wins; any snapshot serves.
"""

from __future__ import annotations

import logging

from openimm.domain.entities import dataset_key
from openimm.grouping.face_index import FaceIndex
from openimm.ports import BlobNotFound, BlobStore

log = logging.getLogger(__name__)


class IndexSnapshots:
    """Load and save one dataset's FaceIndex (one embedder's) as one blob."""

    def __init__(self, blobs: BlobStore, work_prefix: str, model: str) -> None:
        self._blobs = blobs
        self._prefix = work_prefix.rstrip("/")
        self._model = model

    def load(self, project: str, dataset: str, dim: int) -> FaceIndex | None:
        """The saved index of these vectors, or None (none saved, unreadable, other size)."""
        try:
            index = FaceIndex.restore(self._blobs.read(self._uri(project, dataset)))
        except BlobNotFound:
            return None
        except ValueError as error:
            log.warning("face index snapshot of %s/%s unusable: %s", project, dataset, error)
            return None
        return index if index.dim == dim else None

    def save(self, project: str, dataset: str, index: FaceIndex) -> None:
        """Save the index as it is now."""
        self._blobs.write(
            self._uri(project, dataset), index.snapshot(), content_type="application/octet-stream"
        )

    def _uri(self, project: str, dataset: str) -> str:
        return f"{self._prefix}/face-index/{dataset_key(project, dataset)}/{self._model}.idx"
