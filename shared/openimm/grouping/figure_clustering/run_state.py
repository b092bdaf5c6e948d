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
import numpy.typing as npt

from openimm.grouping.figure_clustering.config import (
    _UNCLUSTERED,
    INDEPENDENT,
    Embedding,
    FaceColumns,
)


class _State:
    """Mutable bookkeeping of one run: vectors, memberships and files per cluster."""

    def __init__(self, faces: FaceColumns, settled: Collection[str] | None = None) -> None:
        # the faces as they came, columns of entry i; their vectors unit rows
        self.figure_ids = faces.figure_ids
        self.file_ids = faces.file_ids
        self.came_as = faces.cluster_ids
        self.seed_eligible = faces.seed_eligible
        self.pinned = faces.pinned
        self.size = len(faces)
        self.vectors = faces.vectors
        self.members: dict[str, list[int]] = {}
        self.files: dict[str, set[str]] = {}
        self._centroids: dict[str, Embedding] = {}
        self._sum_norms: dict[str, float] = {}
        # the sum of each cached centroid's members, as it was computed from
        self._sums: dict[str, Embedding] = {}
        self._file_codes: npt.NDArray[np.intp] | None = None
        # the last `centroids` asked for, under (clock, cluster ids)
        self._stacked: tuple[tuple[int, tuple[str, ...]], Embedding] | None = None
        # a step count, and the step at which each cluster last changed in this run
        self.clock = 0
        self.changed_at: dict[str, int] = {}
        # faces an earlier run examined and left independent, when it is known what
        # changed since (`settled`): they are tried only against changed clusters
        self.retried = np.array(
            [settled is not None and cid == INDEPENDENT for cid in self.came_as], dtype=bool
        )
        # pairs of clusters a user's move says are different people
        self.apart = {
            frozenset((faces.moved_from[i], self.came_as[i]))
            for i in np.flatnonzero(self.pinned).tolist()
            if faces.moved_from[i] and self.came_as[i] not in _UNCLUSTERED
        }
        if len(set(self.figure_ids)) != self.size:
            seen = Counter(self.figure_ids)
            raise ValueError(f"duplicate figure_id {max(seen, key=seen.__getitem__)!r}")
        self.cluster_of: list[str | None] = [
            None if cid in _UNCLUSTERED else cid for cid in self.came_as
        ]
        for i, (cid, file_id) in enumerate(zip(self.cluster_of, self.file_ids, strict=True)):
            if cid is not None:
                self.members.setdefault(cid, []).append(i)
                self.files.setdefault(cid, set()).add(file_id)
        # clusters whose evidence differs from what the previous run saw (None: all)
        self.fresh = None if settled is None else set(self.members) - set(settled)

    def file_codes(self) -> npt.NDArray[np.intp]:
        """Each face's file as a small integer (one per file id, in sorted order)."""
        if self._file_codes is None:
            # computed once a run: np.unique over 100k strings costs tenths of a second
            self._file_codes = np.unique(np.asarray(self.file_ids), return_inverse=True)[1]
        return self._file_codes

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
            files.add(self.file_ids[i])

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
            self._sums[cluster_id] = total
            self._sum_norms[cluster_id] = norm
        return cached

    def mean(self, cluster_id: str) -> Embedding:
        """Mean of a cluster's member vectors, exactly as numpy's mean computes it."""
        self.centroid(cluster_id)
        total = self._sums[cluster_id]
        # numpy's mean: the same sum, divided by the count as an intp (in float64)
        count = np.intp(len(self.members[cluster_id]))
        mean: Embedding = np.true_divide(total, count, out=np.empty_like(total), casting="unsafe")
        return mean

    def sum_norm(self, cluster_id: str) -> float:
        """Length of the sum of a cluster's member vectors."""
        self.centroid(cluster_id)
        return self._sum_norms[cluster_id]

    def centroids(self, cluster_ids: Sequence[str]) -> Embedding:
        """The centroids of these clusters, one row each (read-only)."""
        # the phases ask for every cluster's several times between two changes: stacking
        # thousands of centroids each time cost more than the scans that used them
        key = (self.clock, tuple(cluster_ids))
        if self._stacked is None or self._stacked[0] != key:
            stacked = np.stack([self.centroid(cid) for cid in cluster_ids])
            stacked.flags.writeable = False
            self._stacked = (key, stacked)
        return self._stacked[1]
