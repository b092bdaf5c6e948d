"""The faces of one stored image, read on request (no indexing): DetectImageFaces,
CompareImageFaces, and the query images of the searches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from openimm.domain.analysis import attribute_fields, face_fields
from openimm.domain.catalog import Catalog
from openimm.errors import InvalidArgument
from openimm.grouping.face_similarity import SimilarityScale
from openimm.vision import FaceAnalyser
from openimm.vision.file_pixels import in_file_pixels
from openimm.vision.types import (
    DecodedImage,
    DetectedFace,
    FaceAttributeEstimator,
    FaceAttributes,
    Vectors,
)


@dataclass(frozen=True)
class FoundFaces:
    """An image's faces, largest first, with one unit vector each."""

    image: DecodedImage
    faces: list[DetectedFace]  # in the decoded pixels, which may be reduced
    vectors: Vectors

    @property
    def file_faces(self) -> list[DetectedFace]:
        """The faces with their boxes and landmarks in the file's pixels, to report."""
        return [in_file_pixels(face, self.image) for face in self.faces]


class FaceReader:
    """Read, decode, detect and embed one object; IMM errors for what cannot be read."""

    def __init__(self, catalog: Catalog, analyser: FaceAnalyser, max_bytes: int) -> None:
        self._catalog = catalog
        self._analyser = analyser
        self._max_bytes = max_bytes

    @property
    def model(self) -> str:
        """The embedder's name: vectors of another model are not comparable."""
        return self._analyser.embedder.name

    @property
    def dim(self) -> int:
        return self._analyser.embedder.dim

    def read(self, uri: str) -> FoundFaces:
        """Raises ResourceNotFound, InvalidArgument or InvalidFile as indexing would."""
        data = self._catalog.read(uri, self._max_bytes)
        image, faces, vectors = self._analyser.analyse(data)
        order = sorted(range(len(faces)), key=lambda i: -faces[i].box.width * faces[i].box.height)
        return FoundFaces(
            image, [faces[i] for i in order], np.asarray(vectors, dtype=np.float32)[order]
        )


class ImageFaces:
    """DetectImageFaces and CompareImageFaces."""

    def __init__(
        self,
        catalog: Catalog,
        reader: FaceReader,
        scale: SimilarityScale,
        attributes: FaceAttributeEstimator | None = None,
    ) -> None:
        self._catalog = catalog
        self._reader = reader
        self._scale = scale
        self._attributes = attributes

    def detect(self, project: str, uri: str) -> list[dict[str, Any]]:
        """IMM Figure fields of every face, largest first (attributes as measured)."""
        self._catalog.project(project)
        found = self._reader.read(uri)
        measured = (
            self._attributes.estimate(found.image, found.faces)
            if self._attributes and found.faces
            else [FaceAttributes()] * len(found.faces)
        )
        return [
            {**face_fields(face), **attribute_fields(attrs)}
            for face, attrs in zip(found.file_faces, measured, strict=True)
        ]

    def compare(self, project: str, first: str, second: str) -> float:
        """Similarity 0..1 of the largest faces of two images (grouping/face_similarity)."""
        self._catalog.project(project)
        vectors = []
        for number, uri in enumerate((first, second), start=1):
            found = self._reader.read(uri)
            if not found.faces:
                raise InvalidArgument(f"The parameter Source.URI{number} has no face: {uri!r}.")
            vectors.append(found.vectors[0])
        return self._scale.of(float(np.dot(vectors[0], vectors[1])))
