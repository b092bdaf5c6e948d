"""What a user changes in figure clusters: their own fields, merges, faces moved by hand.

Faces placed by a user are pinned (`_pinned`): no clustering run moves them again, and
they count as evidence for their cluster, so similar new faces follow them. A face
moved out of a cluster remembers it (`_moved_from`) so that the clustering can keep
the two clusters apart. Merges and moves change memberships and must hold the
dataset lease (pipeline/leases.py); editing a cluster's own fields needs only its
MetaLockVersion.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from openimm.domain.catalog import FILES, Catalog
from openimm.domain.clusters import (
    CLUSTERS,
    COVER_FIGURE,
    RESERVED,
    FigureClusters,
    cover_of,
)
from openimm.domain.entities import INDEPENDENT, UNAVAILABLE, dataset_key
from openimm.domain.figures import FigureBook
from openimm.errors import ConcurrentUpdateConflict, InvalidArgument, ResourceNotFound
from openimm.ports import ConditionFailed, TableStore

PINNED = "_pinned"
MOVED_FROM = "_moved_from"
# a user's placement is certain, whatever the vectors say
USER_CONFIDENCE = 1.0


class ClusterEdits:
    """User edits of the figure clusters of a dataset."""

    def __init__(
        self, table: TableStore, catalog: Catalog, figures: FigureBook, clusters: FigureClusters
    ) -> None:
        self._table = table
        self._catalog = catalog
        self._figures = figures
        self._clusters = clusters

    # ------------------------------------------------------------ a cluster's own fields

    def update_cluster(
        self,
        project: str,
        dataset: str,
        cluster_id: str,
        fields: Mapping[str, Any],
        *,
        cover_figure: str | None = None,
        lock_version: int | None = None,
    ) -> None:
        """Set Name/CustomId/CustomLabels (and the cover face) of one cluster.

        With `lock_version`, the update happens only if the row is still at that
        version (ConcurrentUpdateConflict otherwise, nothing written).
        """
        _check_real(cluster_id, "ObjectId")
        self._catalog.dataset(project, dataset)
        key = dataset_key(project, dataset)
        while True:
            record = self._table.get(CLUSTERS, key, cluster_id)
            if record is None:
                raise _no_cluster(cluster_id, dataset)
            if lock_version is not None and record.version != lock_version:
                raise _stale(cluster_id, lock_version, record.version)
            data = {**record.data, **fields, "UpdateTime": time.time()}
            if cover_figure is not None:
                data[COVER_FIGURE] = cover_figure
                data["Cover"] = self._cover(project, dataset, cluster_id, cover_figure)
            try:
                self._table.put(CLUSTERS, key, cluster_id, data, if_version=record.version)
                return
            except ConditionFailed:
                if lock_version is not None:
                    raise _stale(cluster_id, lock_version, None) from None
                # a clustering refresh won: apply the user's fields on top of its counts

    def _cover(self, project: str, dataset: str, cluster_id: str, figure_id: str) -> Any:
        found = self._figures.get_many(project, dataset, [figure_id])
        if not found or found[0].get("FigureClusterId") != cluster_id:
            raise InvalidArgument(
                f"The parameter FigureCluster.Cover.Figures.1.FigureId is invalid: {figure_id!r} "
                f"is not a face of figure cluster {cluster_id!r}."
            )
        figure = found[0]
        record = self._table.get(FILES, dataset_key(project, dataset), figure["_uri"])
        return cover_of(record.data if record else {"URI": figure["_uri"]}, figure)

    # ------------------------------------------------------------ merging

    def check_merge(self, project: str, dataset: str, sources: Sequence[str], target: str) -> None:
        """Refuse a merge that cannot happen: reserved, unknown or overlapping ids."""
        for cluster_id in sources:
            _check_real(cluster_id, "From")
        _check_real(target, "To")
        if target in sources:
            raise InvalidArgument(
                "The parameter To must not be one of the clusters merged into it."
            )
        found = {
            c["ObjectId"] for c in self._clusters.get_many(project, dataset, [*sources, target])
        }
        for cluster_id in [*sources, target]:
            if cluster_id not in found:
                raise _no_cluster(cluster_id, dataset)

    def merge(
        self, project: str, dataset: str, sources: Sequence[str], target: str
    ) -> dict[str, int]:
        """Move every face of the source clusters into the target, pinned; returns counts.

        Idempotent: a repeated merge finds nothing left to move. The target must still
        exist (ResourceNotFound); sources deleted meanwhile are skipped.
        """
        key = dataset_key(project, dataset)
        if self._table.get(CLUSTERS, key, target) is None:
            raise _no_cluster(target, dataset)
        present = self._table.batch_get(CLUSTERS, [(key, c) for c in sources])
        moved = self._figures.cluster_rows(project, dataset, sources)
        for row in moved:
            row.update(
                {
                    "FigureClusterId": target,
                    "FigureClusterConfidence": USER_CONFIDENCE,
                    PINNED: True,
                }
            )
        # figures first: a crash before the recount leaves stale counts a redelivery fixes
        self._figures.save(project, dataset, moved)
        self._clusters.recount(project, dataset, [target, *sources])
        return {"ClustersMerged": len(present), "FacesMoved": len(moved)}

    # ------------------------------------------------------------ faces moved by hand

    def move_figures(self, project: str, dataset: str, uri: str, moves: Mapping[str, str]) -> None:
        """Put faces of one file into the given clusters (or none: INDEPENDENT), pinned."""
        row = self._catalog.file(project, dataset, uri)
        on_file = set(row.get("_figures", []))
        for figure_id, cluster_id in moves.items():
            if figure_id not in on_file:
                raise ResourceNotFound(f"The figure {figure_id!r} is not a face of file {uri!r}.")
            if cluster_id == UNAVAILABLE:
                raise InvalidArgument(
                    f"The parameter FigureClusterId cannot be {UNAVAILABLE!r}: "
                    f"use {INDEPENDENT!r} to take a face out of its cluster."
                )
        targets = sorted({c for c in moves.values() if c not in RESERVED})
        found = {c["ObjectId"] for c in self._clusters.get_many(project, dataset, targets)}
        for cluster_id in targets:
            if cluster_id not in found:
                raise _no_cluster(cluster_id, dataset)
        figures = self._figures.get_many(project, dataset, list(moves))
        touched = {*targets, *(f.get("FigureClusterId", UNAVAILABLE) for f in figures)}
        for figure in figures:
            old = figure.get("FigureClusterId", UNAVAILABLE)
            new = moves[figure["FigureId"]]
            if old != new and old not in RESERVED:
                figure[MOVED_FROM] = old
            figure.update(
                {
                    "FigureClusterId": new,
                    "FigureClusterConfidence": 0.0 if new == INDEPENDENT else USER_CONFIDENCE,
                    PINNED: True,
                }
            )
        self._figures.save(project, dataset, figures)
        self._clusters.recount(project, dataset, touched)


def _check_real(cluster_id: str, parameter: str) -> None:
    if cluster_id in RESERVED:
        raise InvalidArgument(
            f"The parameter {parameter} cannot be {cluster_id!r}: it names no figure cluster."
        )


def _no_cluster(cluster_id: str, dataset: str) -> ResourceNotFound:
    return ResourceNotFound(
        f"The figure cluster {cluster_id!r} does not exist in dataset {dataset!r}."
    )


def _stale(cluster_id: str, given: int, current: int | None) -> ConcurrentUpdateConflict:
    now = f" (it is {current})" if current is not None else ""
    return ConcurrentUpdateConflict(
        f"The MetaLockVersion {given} of figure cluster {cluster_id!r} is not its current "
        f"version{now}: read the cluster again and retry."
    )
