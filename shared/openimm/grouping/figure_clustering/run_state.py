"""The mutable state of one run: who is in which cluster, and what changed when.

Memberships, files per cluster (one face per image per cluster), cached centroids and
a step clock that stamps each cluster's last change: later joins look only at clusters
changed since they last weighed a face, and `settled` (what the previous run left as
it is) lets a run skip the clusters it already weighed its independent faces against.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np

from openimm.grouping.figure_clustering.config import (
    _UNCLUSTERED,
    INDEPENDENT,
    Embedding,
    FaceToCluster,
)
from openimm.grouping.unit_rows import unit_rows


class _State:
    """Mutable bookkeeping of one run: vectors, memberships and files per cluster."""

    def __init__(self, faces: list[FaceToCluster], settled: Collection[str] | None = None) -> None:
        self.faces = faces
        self.vectors = unit_rows([f.embedding for f in faces])
        self.members: dict[str, list[int]] = {}
        self.files: dict[str, set[str]] = {}
        self._centroids: dict[str, Embedding] = {}
        self._sum_norms: dict[str, float] = {}
        # a step count, and the step at which each cluster last changed in this run
        self.clock = 0
        self.changed_at: dict[str, int] = {}
        # faces an earlier run examined and left independent, when it is known what
        # changed since (`settled`): they are tried only against changed clusters
        self.retried = np.array(
            [settled is not None and face.cluster_id == INDEPENDENT for face in faces], dtype=bool
        )
        # pairs of clusters a user's move says are different people
        self.apart = {
            frozenset((face.moved_from, face.cluster_id))
            for face in faces
            if face.pinned and face.moved_from and face.cluster_id not in _UNCLUSTERED
        }
        if len({face.figure_id for face in faces}) != len(faces):
            seen = Counter(face.figure_id for face in faces)
            raise ValueError(f"duplicate figure_id {max(seen, key=seen.__getitem__)!r}")
        self.cluster_of: list[str | None] = [
            None if face.cluster_id in _UNCLUSTERED else face.cluster_id for face in faces
        ]
        for i, face in enumerate(faces):
            if self.cluster_of[i] is not None:
                self.members.setdefault(face.cluster_id, []).append(i)
                self.files.setdefault(face.cluster_id, set()).add(face.file_id)
        # clusters whose evidence differs from what the previous run saw (None: all)
        self.fresh = None if settled is None else set(self.members) - set(settled)

    def is_fresh(self, cluster_id: str) -> bool:
        """Whether a cluster changed since the previous run (or it is not known)."""
        return self.fresh is None or cluster_id in self.fresh

    def unassigned(self, indices: Sequence[int]) -> list[int]:
        """The given faces that are still in no cluster."""
        return [i for i in indices if self.cluster_of[i] is None]

    def add(self, cluster_id: str, indices: Sequence[int]) -> None:
        """Put faces into a cluster, creating it if new."""
        members = self.members.setdefault(cluster_id, [])
        files = self.files.setdefault(cluster_id, set())
        self._centroids.pop(cluster_id, None)
        self.clock += 1
        self.changed_at[cluster_id] = self.clock
        if self.fresh is not None:
            self.fresh.add(cluster_id)
        for i in indices:
            self.cluster_of[i] = cluster_id
            members.append(i)
            files.add(self.faces[i].file_id)

    def merge(self, survivor: str, gone: str) -> None:
        """Move every member of cluster `gone` into `survivor`."""
        self._centroids.pop(gone, None)
        self.files.pop(gone)
        self.add(survivor, self.members.pop(gone))

    def centroid(self, cluster_id: str) -> Embedding:
        """Normalised mean of a cluster's members (zero vector if they cancel out)."""
        cached = self._centroids.get(cluster_id)
        if cached is None:
            total: Embedding = self.vectors[self.members[cluster_id]].sum(axis=0)
            norm = float(np.linalg.norm(total))
            cached = (total / norm).astype(np.float32) if norm > 0.0 else total
            self._centroids[cluster_id] = cached
            self._sum_norms[cluster_id] = norm
        return cached

    def sum_norm(self, cluster_id: str) -> float:
        """Length of the sum of a cluster's member vectors."""
        self.centroid(cluster_id)
        return self._sum_norms[cluster_id]

    def centroids(self, cluster_ids: Sequence[str]) -> Embedding:
        """The centroids of these clusters, one row each."""
        return np.stack([self.centroid(cid) for cid in cluster_ids])
