"""Similar-image clusters: grouping a dataset's photos incrementally, and the cluster rows.

Where each photo is lives on its file row (MEMBERSHIP: its cluster, and whether a run has
examined it), so that re-indexing other bytes under the same URI (which drops the row's
analysis fields) takes the photo out as well. Cluster rows are derived from those
memberships by refresh(): best shot first, and a cluster of fewer than two photos is
deleted, also right after DeleteFileMeta. A run re-reads the memberships, so a
photo left alone by a deletion joins other photos again later.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from openimm.domain.catalog import Catalog
from openimm.domain.entities import FileState, dataset_key
from openimm.domain.shots import SHOT, ShotIndex, StoredShot, needs_measures, stored_shot
from openimm.grouping.similar_images import GroupingConfig, ImageToGroup, group_similar_images
from openimm.ports import ConditionFailed, TableStore
from openimm.vision.geometric_match import Keypoints, same_shot

log = logging.getLogger(__name__)

SIMILAR_CLUSTERS = "similar_clusters"
# on a file row: {"cluster": id or None, "examined": bool}
MEMBERSHIP = "_similar"
MIN_IMAGES = 2


def new_similar_cluster_id() -> str:
    return f"SimilarImageCluster-{uuid.uuid4()}"


class SimilarImageClusters:
    """Grouping runs over a dataset's photos and the SimilarImageCluster rows they leave."""

    def __init__(
        self,
        table: TableStore,
        catalog: Catalog,
        shots: ShotIndex | None,
        config: GroupingConfig,
        new_id: Callable[[], str] = new_similar_cluster_id,
        model: str | None = None,
    ) -> None:
        self._table = table
        self._catalog = catalog
        self._shots = shots
        self.config = config
        self._new_id = new_id
        # the embedding network whose vectors a run compares; others are left out
        self._model = model

    # ------------------------------------------------------------ running

    def run(
        self, project: str, dataset: str, before_writing: Callable[[], None] = lambda: None
    ) -> dict[str, int]:
        """Group the dataset's photos (new ones against all); returns what changed.

        `before_writing` runs between deciding and writing, and raises to write nothing.
        """
        rows, shots = self._photos(project, dataset)
        images = [
            ImageToGroup(
                file_id=row["URI"],
                embedding=shots[row["URI"]].embedding,
                phash=shots[row["URI"]].phash,
                captured_at=shots[row["URI"]].captured_at,
                score=shots[row["URI"]].score,
                cluster_id=row.get(MEMBERSHIP, {}).get("cluster"),
                examined=bool(row.get(MEMBERSHIP, {}).get("examined")),
            )
            for row in rows
        ]
        outcome = group_similar_images(images, self.config, self._new_id, self._verifier(shots))
        before_writing()
        changed = 0
        for row in rows:
            membership = {"cluster": outcome.assignments[row["URI"]], "examined": True}
            if row.get(MEMBERSHIP) != membership:
                row[MEMBERSHIP] = membership
                changed += self._save_membership(project, dataset, row["URI"], row)
        self.refresh(project, dataset)
        return {
            "ImagesClustered": sum(1 for c in outcome.assignments.values() if c is not None),
            "ImagesExamined": len(rows),
            "ImagesChanged": changed,
            "ClustersCreated": len(outcome.created),
            "ClustersDissolved": len(outcome.dissolved),
            "Verifications": outcome.verifications,
        }

    def unmeasured(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The analysed photos among `rows` that a run cannot group until they are measured."""
        if self._shots is None:
            return []
        return [
            row
            for row in rows
            if row.get("_state") == FileState.ANALYSED and needs_measures(row, self._shots.model)
        ]

    def _photos(
        self, project: str, dataset: str
    ) -> tuple[list[dict[str, Any]], dict[str, StoredShot]]:
        rows, shots = [], {}
        skipped = 0
        for row in self._catalog.files(project, dataset):
            shot = stored_shot(row) if row.get("_state") == FileState.ANALYSED else None
            if shot is None:
                continue
            if self._model is not None and shot.model != self._model:
                skipped += 1  # measured by another network: the next task measures it again
                continue
            rows.append(row)
            shots[row["URI"]] = shot
        if skipped:
            log.warning("%d photos of %s/%s measured by another model", skipped, project, dataset)
        return rows, shots

    def _verifier(self, shots: dict[str, StoredShot]) -> Callable[[str, str], bool | None]:
        loaded: dict[str, Keypoints | None] = {}

        def keypoints_of(uri: str) -> Keypoints | None:
            if uri not in loaded:
                loaded[uri] = self._shots.keypoints(shots[uri]) if self._shots else None
            return loaded[uri]

        def verify(a: str, b: str) -> bool | None:
            first, second = keypoints_of(a), keypoints_of(b)
            return None if first is None or second is None else same_shot(first, second)

        return verify

    def _save_membership(
        self, project: str, dataset: str, uri: str, computed: dict[str, Any]
    ) -> int:
        """Write the membership onto the stored row if it still holds the same photo."""
        for _ in range(3):
            row = self._catalog.find_file(project, dataset, uri)
            if row is None or row.get(SHOT) != computed.get(SHOT):
                return 0  # deleted or re-indexed meanwhile: the next run sees it anew
            row[MEMBERSHIP] = computed[MEMBERSHIP]
            try:
                self._catalog.save_file(project, dataset, row)
                return 1
            except ConditionFailed:
                continue  # a stage or a user wrote the row meanwhile: apply to that version
        log.info("membership of %s not saved: the row keeps changing", uri)
        return 0

    def file_removed(self, project: str, dataset: str, row: dict[str, Any]) -> None:
        """Recount after a file's deletion: nothing to do unless it was in a cluster (a
        refresh reads every file row of the dataset)."""
        if (row.get(MEMBERSHIP) or {}).get("cluster"):
            self.refresh(project, dataset)

    def refresh(self, project: str, dataset: str) -> None:
        """Rewrite every cluster row from the stored memberships; delete the small ones."""
        members: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for row in self._catalog.files(project, dataset):
            cluster = (row.get(MEMBERSHIP) or {}).get("cluster")
            shot = stored_shot(row)
            if cluster and shot is not None:
                members[cluster].append((row["URI"], shot.score))
        key = dataset_key(project, dataset)
        existing = {r.sk: r for r in self._table.scan_partition(SIMILAR_CLUSTERS, key)}
        for cluster, files in members.items():
            if len(files) < MIN_IMAGES:
                continue
            # best shot first, as grouping orders them (score, then URI)
            ordered = sorted(files, key=lambda f: (-f[1], f[0]))
            listed = [{"URI": uri, "ImageScore": score} for uri, score in ordered]
            record = existing.get(cluster)
            if record is not None and record.data.get("Files") == listed:
                continue
            now = time.time()
            base = record.data if record is not None else {"ObjectId": cluster, "CreateTime": now}
            data = {**base, "Files": listed, "UpdateTime": now}
            self._table.put(SIMILAR_CLUSTERS, key, cluster, data)
        for cluster, record in existing.items():
            if len(members.get(cluster, ())) < MIN_IMAGES:
                with contextlib.suppress(ConditionFailed):
                    self._table.delete(SIMILAR_CLUSTERS, key, cluster, if_version=record.version)

    # ------------------------------------------------------------ reading

    def all(self, project: str, dataset: str) -> list[dict[str, Any]]:
        """Every cluster of a dataset (filters, sorting and paging happen in the caller)."""
        self._catalog.dataset(project, dataset)
        key = dataset_key(project, dataset)
        return [r.data for r in self._table.scan_partition(SIMILAR_CLUSTERS, key)]
