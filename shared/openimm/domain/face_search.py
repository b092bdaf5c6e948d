"""CreateFacesSearchingTask's work: the faces of a dataset nearest to each query image.

Each source image's largest face is the query; the answer is up to MaxResult figures of
the dataset by descending Similarity (grouping/face_similarity.py), with the file they
are on and their box. A source that cannot be read, or has no face, gets its own Code
and Message; the others are answered all the same.

A warm instance keeps one FaceIndex per dataset and brings it up to date before each
search by the figure ids it is missing or still holds: a figure id derives from the
file's URI, ETag and face number, so a vector never changes under its id and only new
and deleted faces cost work; the ids come from the dataset's face shard (face_shard.py:
its segments and the rows changed since, as the rows hold them), or without one from a
scan of every figure row.

A dataset's graph is built ahead of its first search: after each figure clustering task
the search stage is asked to `prepare` the dataset's index (pipeline/stages.py), which
builds it, or loads and catches it up, and saves it (index_snapshots.py). Faces are added
CATCH_UP_CHUNK at a time, the snapshot saved after each chunk once a graph exists, so a
build longer than the stage's timeout goes on where the last delivery stopped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openimm.domain.face_shard import FaceShards
from openimm.domain.figures import FigureBook, decode_vector
from openimm.domain.image_faces import FaceReader
from openimm.domain.index_snapshots import IndexSnapshots
from openimm.errors import ImmError
from openimm.grouping.face_index import FaceIndex
from openimm.grouping.face_similarity import SimilarityScale


@dataclass(frozen=True)
class FoundFigure:
    """A face of the dataset near the query."""

    figure_id: str
    uri: str
    boundary: dict[str, int]
    similarity: float


@dataclass(frozen=True)
class SourceOutcome:
    """What one source image found; code and message when it could not be searched."""

    uri: str
    figures: list[FoundFigure] = field(default_factory=list)
    code: str | None = None
    message: str | None = None

    def fields(self) -> dict[str, Any]:
        """IMM-style fields, as the task result and its notification carry them."""
        if self.code is not None:
            return {"URI": self.uri, "Code": self.code, "Message": self.message}
        return {
            "URI": self.uri,
            "Figures": [
                {
                    "FigureId": f.figure_id,
                    "URI": f.uri,
                    "Boundary": f.boundary,
                    "Similarity": f.similarity,
                }
                for f in self.figures
            ],
        }


IndexFactory = Callable[[int], FaceIndex]

# faces added to an index between two saves of its snapshot (a 1M-face graph: four saves)
CATCH_UP_CHUNK = 250_000


class DatasetFaces:
    """Per warm instance: one FaceIndex per dataset, refreshed by the figure ids that changed.

    The `keep` datasets searched last stay in memory; an older one is rebuilt when needed.
    """

    def __init__(
        self,
        figures: FigureBook,
        model: str,
        index_factory: IndexFactory,
        keep: int = 4,
        shards: FaceShards | None = None,
        snapshots: IndexSnapshots | None = None,
        chunk: int = CATCH_UP_CHUNK,
    ) -> None:
        self._figures = figures
        self._model = model
        self._new_index = index_factory
        self._keep = keep
        # every face in one read; None: a scan of every figure row
        self._shards = shards
        # where a graph index is saved for cold instances; None: built wherever needed
        self._snapshots = snapshots
        self._chunk = chunk
        # per dataset: faces put or removed since its index was loaded or last saved
        self._unsaved: dict[tuple[str, str], int] = {}
        self._indexes: OrderedDict[tuple[str, str], FaceIndex] = OrderedDict()
        self._lock = threading.Lock()

    def current(self, project: str, dataset: str, dim: int) -> FaceIndex:
        """The dataset's index, with every face of the embedder's model and no other."""
        with self._lock:
            index = self._indexes.get((project, dataset))
            if index is None or index.dim != dim:
                loaded = self._snapshots.load(project, dataset, dim) if self._snapshots else None
                index = self._indexes[(project, dataset)] = loaded or self._new_index(dim)
                self._unsaved[(project, dataset)] = 0
            self._indexes.move_to_end((project, dataset))
            while len(self._indexes) > self._keep:
                self._indexes.popitem(last=False)
            seen: set[str] = set()
            keys: list[str] = []
            vectors: list[np.ndarray[Any, np.dtype[np.float32]]] = []
            for figure_id, vector in self._faces(project, dataset, index):
                seen.add(figure_id)
                if figure_id not in index and vector.shape == (dim,):
                    keys.append(figure_id)
                    vectors.append(vector)
            gone = [key for key in index.stored_keys() if key not in seen]
            index.remove(gone)
            self._save_when_behind(project, dataset, index, len(gone))
            for start in range(0, len(keys), self._chunk):
                stop = start + self._chunk
                index.put(keys[start:stop], np.stack(vectors[start:stop]))
                self._save_when_behind(project, dataset, index, len(keys[start:stop]))
            return index

    def _save_when_behind(self, project: str, dataset: str, index: FaceIndex, moved: int) -> None:
        """Save a graph index once the saved one lags by a twentieth of its faces."""
        unsaved = self._unsaved.get((project, dataset), 0) + moved
        self._unsaved[(project, dataset)] = unsaved
        # below the graph's size a build is a scan's setup: nothing worth saving
        if self._snapshots is None or not index.uses_graph or unsaved <= len(index) // 20:
            return
        self._snapshots.save(project, dataset, index)
        self._unsaved[(project, dataset)] = 0

    def _faces(
        self, project: str, dataset: str, index: FaceIndex
    ) -> Iterator[tuple[str, np.ndarray[Any, np.dtype[np.float32]]]]:
        """(FigureId, vector) of every face of the model; a vector only where not indexed."""
        if self._shards is not None:
            faces = self._shards.read(project, dataset).faces
            yield from zip(faces.figure_ids, faces.vectors, strict=True)
            return
        missing = np.zeros(0, dtype=np.float32)
        for row in self._figures.all(project, dataset):
            if "_embedding" not in row or row.get("_model", self._model) != self._model:
                continue
            figure_id = row["FigureId"]
            # decoding is the cost: only for faces the index does not hold yet
            yield figure_id, missing if figure_id in index else decode_vector(row["_embedding"])


class FacesSearch:
    """Runs the searches of a FacesSearching task."""

    def __init__(
        self,
        reader: FaceReader,
        figures: FigureBook,
        faces: DatasetFaces,
        scale: SimilarityScale,
    ) -> None:
        self._reader = reader
        self._figures = figures
        self._faces = faces
        self._scale = scale

    def prepare(self, project: str, dataset: str) -> None:
        """Bring the dataset's index up to date, and saved, ahead of its next search."""
        self._faces.current(project, dataset, self._reader.dim)

    def search(
        self, project: str, dataset: str, uris: Sequence[str], max_result: int
    ) -> list[SourceOutcome]:
        """One outcome per source, in the order given."""
        queries: dict[int, np.ndarray[Any, np.dtype[np.float32]]] = {}
        outcomes: list[SourceOutcome | None] = []
        for number, uri in enumerate(uris):
            try:
                found = self._reader.read(uri)
            except ImmError as exc:
                outcomes.append(SourceOutcome(uri, code=exc.code, message=exc.message))
                continue
            if not found.faces:
                outcomes.append(
                    SourceOutcome(uri, code="NoFaceDetected", message="No face in the image.")
                )
                continue
            queries[number] = found.vectors[0]
            outcomes.append(None)
        if queries:
            index = self._faces.current(project, dataset, self._reader.dim)
            numbers = sorted(queries)
            found_lists = index.search(np.stack([queries[n] for n in numbers]), max_result)
            for number, neighbours in zip(numbers, found_lists, strict=True):
                outcomes[number] = SourceOutcome(
                    uris[number], self._figures_of(project, dataset, neighbours)
                )
        return [outcome for outcome in outcomes if outcome is not None]

    def _figures_of(self, project: str, dataset: str, neighbours: list[Any]) -> list[FoundFigure]:
        rows = {
            row["FigureId"]: row
            for row in self._figures.get_many(project, dataset, [n.key for n in neighbours])
        }
        # a face deleted since the index was refreshed is left out
        return [
            FoundFigure(
                figure_id=n.key,
                uri=rows[n.key]["_uri"],
                boundary=rows[n.key]["Boundary"],
                similarity=self._scale.of(n.cosine),
            )
            for n in neighbours
            if n.key in rows
        ]
