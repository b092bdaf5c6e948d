"""Which figure clusters the faces of one image belong to (SearchImageFigureCluster).

A face matches a cluster by the rules a clustering run uses to let a face join one:
its cosine to the cluster's normalised mean and the mean of its top-k cosines to the
members both reach `join_similarity`; or, with a relaxed join configured, both reach
`relaxed_join_similarity` and the cluster is its best by `join_margin` over the next
(the clustering also weighs unclustered faces against it, which search does not read).
Of two faces of the image, only the better one may take a cluster, as one person
appears once per image.

Similarity is the FigureClusterConfidence the face would get as a member
(grouping.membership_confidence of its cosine to the cluster's mean).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from openimm.domain.catalog import Catalog
from openimm.domain.clusters import RESERVED
from openimm.domain.figures import FigureBook, decode_vector
from openimm.domain.image_faces import FaceReader
from openimm.grouping.figure_clustering import ClusteringConfig, membership_confidence
from openimm.vision.types import Box

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FaceMatch:
    """One face of the searched image and the cluster it belongs to."""

    cluster_id: str
    similarity: float
    box: Box


class ImageFigureSearch:
    """Decode, detect and embed one image, then match its faces to a dataset's clusters."""

    def __init__(
        self,
        catalog: Catalog,
        figures: FigureBook,
        reader: FaceReader,
        config: ClusteringConfig,
    ) -> None:
        self._catalog = catalog
        self._figures = figures
        self._reader = reader
        self._config = config

    def search(self, project: str, dataset: str, uri: str) -> list[FaceMatch]:
        """The matching clusters of the image's faces, largest face first; [] without faces."""
        self._catalog.dataset(project, dataset)
        found = self._reader.read(uri)
        if not found.faces:
            return []
        members = self._members(project, dataset, self._reader.model, self._reader.dim)
        matches = match_faces(found.vectors, members, self._config)
        return [
            FaceMatch(cluster_id=m[0], similarity=m[1], box=face.box)
            for face, m in zip(found.file_faces, matches, strict=True)
            if m is not None
        ]

    def _members(self, project: str, dataset: str, model: str, dim: int) -> dict[str, Matrix]:
        groups: dict[str, list[Matrix]] = defaultdict(list)
        for row in self._figures.all(project, dataset):
            cluster_id = row.get("FigureClusterId")
            # vectors of another embedder are not comparable (as in a clustering run)
            if cluster_id in RESERVED or cluster_id is None or "_embedding" not in row:
                continue
            if row.get("_model", model) != model:
                continue
            vector = decode_vector(row["_embedding"])
            if vector.shape == (dim,):
                groups[cluster_id].append(vector)
        return {cid: np.stack(vectors) for cid, vectors in groups.items()}


def match_faces(
    faces: Matrix, clusters: Mapping[str, Matrix], config: ClusteringConfig
) -> list[tuple[str, float] | None]:
    """Per face (a row of `faces`): (cluster id, similarity 0..1) of its best match, or None."""
    faces = _unit(faces)
    ids = [cid for cid in sorted(clusters) if float(np.linalg.norm(clusters[cid].sum(0))) > 0]
    if not ids:
        return [None] * faces.shape[0]
    central = np.empty((faces.shape[0], len(ids)), dtype=np.float32)
    robust = np.empty_like(central)
    for col, cluster_id in enumerate(ids):
        members = _unit(clusters[cluster_id])
        total = members.sum(axis=0)
        central[:, col] = faces @ (total / np.linalg.norm(total))
        sims = faces @ members.T
        k = min(config.top_k, members.shape[0])
        robust[:, col] = np.partition(sims, members.shape[0] - k, axis=1)[:, -k:].mean(axis=1)
    passing = (central >= config.join_similarity) & (robust >= config.join_similarity)
    relaxed = config.relaxed_join_similarity
    if relaxed is not None:
        # the clustering's relaxed join, with the next cluster as the evidence against
        second = np.sort(central, axis=1)[:, -2] if len(ids) > 1 else np.full(len(faces), -1.0)
        best = central == central.max(axis=1, keepdims=True)
        passing |= (
            best
            & (central >= relaxed)
            & (robust >= relaxed)
            & (robust - second[:, None] >= config.join_margin)
        )
    proposals = [
        (-float(central[face, col]), face, ids[col])
        for face, col in zip(*np.nonzero(passing), strict=True)
    ]
    # best evidence first: of two faces wanting one cluster, the closer one takes it
    proposals.sort()
    result: list[tuple[str, float] | None] = [None] * faces.shape[0]
    taken: set[str] = set()
    for negative, face, cluster_id in proposals:
        if result[face] is not None or cluster_id in taken:
            continue
        taken.add(cluster_id)
        similarity = float(membership_confidence(np.asarray(-negative), config))
        result[face] = (cluster_id, round(similarity, 4))
    return result


def _unit(matrix: Matrix) -> Matrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: Matrix = (matrix / np.where(norms == 0.0, 1.0, norms)).astype(np.float32)
    return unit
