"""Figure clusters: running the clustering over a dataset, and reading the result.

A cluster row holds what IMM returns (counts, cover) plus the user's own fields
(Name, CustomId, CustomLabels); its store version is the MetaLockVersion. Counts
are recomputed from the figure rows, so a re-run after a crash converges.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from openimm.domain.catalog import FILES, Catalog
from openimm.domain.entities import INDEPENDENT, UNAVAILABLE, dataset_key, new_cluster_id
from openimm.domain.figures import FigureBook, decode_vector
from openimm.errors import ResourceNotFound
from openimm.grouping.figure_clustering import (
    ClusteringConfig,
    FaceToCluster,
    cluster_figures,
)
from openimm.ports import ConditionFailed, Record, TableStore

log = logging.getLogger(__name__)

CLUSTERS = "clusters"
RESERVED = (UNAVAILABLE, INDEPENDENT)
# on a cluster row: the FigureId the user chose as cover (UpdateFigureCluster)
COVER_FIGURE = "_cover_figure"
# what a user sets on a cluster: such a cluster keeps its id when merged automatically
USER_FIELDS = ("Name", "CustomId", "CustomLabels", COVER_FIGURE)
# on a cluster row: a digest of its members as the last clustering run left them; a
# cluster whose members still match is "settled" and the next run need not reweigh it
SETTLED_MEMBERS = "_settled_members"
_STAT_FIELDS = (
    "FaceCount",
    "ImageCount",
    "VideoCount",
    "Cover",
    "Gender",
    "AverageAge",
    "MinAge",
    "MaxAge",
)


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row without our private (underscore) fields."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


class FigureClusters:
    """Clustering runs and the cluster rows of every dataset."""

    def __init__(
        self,
        table: TableStore,
        catalog: Catalog,
        figures: FigureBook,
        config: ClusteringConfig,
        new_id: Callable[[], str] = new_cluster_id,
        model: str | None = None,
    ) -> None:
        self._table = table
        self._catalog = catalog
        self._figures = figures
        self.config = config
        self._new_id = new_id
        # the embedder whose vectors this run compares; others are not comparable
        self._model = model

    # ------------------------------------------------------------ running

    def run(
        self, project: str, dataset: str, before_writing: Callable[[], None] = lambda: None
    ) -> dict[str, int]:
        """Cluster every face of a dataset incrementally; returns what changed.

        `before_writing` runs between deciding and writing, and raises to write nothing
        (the dataset lease renewed, or found lost after a long run).
        """
        # a dataset written before the cluster index existed gets it on its next run
        self._figures.complete_index(project, dataset)
        rows = [r for r in self._figures.all(project, dataset) if "_embedding" in r]
        if self._model is not None:
            other = [r for r in rows if r.get("_model", self._model) != self._model]
            if other:
                # left as they are until their files are indexed again with this embedder
                log.warning(
                    "%d figures of %s/%s were embedded by another model; not clustered",
                    len(other),
                    project,
                    dataset,
                )
                rows = [r for r in rows if r.get("_model", self._model) == self._model]
        faces = [
            FaceToCluster(
                figure_id=r["FigureId"],
                file_id=r["_file"],
                embedding=decode_vector(r["_embedding"]),
                cluster_id=r.get("FigureClusterId", UNAVAILABLE),
                seed_eligible=bool(r.get("_seed")),
                pinned=bool(r.get("_pinned")),
                moved_from=r.get("_moved_from"),
            )
            for r in rows
        ]
        key = dataset_key(project, dataset)
        records = list(self._table.scan_partition(CLUSTERS, key))
        curated = [r.sk for r in records if any(r.data.get(k) for k in USER_FIELDS)]
        digests = _member_digests(rows)
        # deletions, moves and merges since the last run change a digest: those clusters,
        # and the independent faces near them, are weighed again
        settled = [r.sk for r in records if r.data.get(SETTLED_MEMBERS) == digests.get(r.sk)]
        outcome = cluster_figures(faces, self.config, self._new_id, curated, settled)
        by_id = {r["FigureId"]: r for r in rows}
        changed = []
        for a in outcome.assignments:
            row = by_id[a.figure_id]
            confidence = round(a.confidence, 4)
            if (row.get("FigureClusterId"), row.get("FigureClusterConfidence")) != (
                a.cluster_id,
                confidence,
            ):
                row["FigureClusterId"] = a.cluster_id
                row["FigureClusterConfidence"] = confidence
                changed.append(row)
        before_writing()
        # cluster rows first: a crash after this leaves rows a re-run recounts (and
        # digests that no longer match, so that the re-run weighs those clusters again)
        self.refresh(project, dataset, rows, settle=True)
        if self._figures.save(project, dataset, changed):
            # some files changed during the run (deleted, re-analysed): count what is stored
            self.refresh(project, dataset)
        clustered = sum(1 for r in rows if r.get("FigureClusterId") not in RESERVED)
        return {
            "FacesClustered": clustered,
            "FacesIndependent": sum(1 for r in rows if r.get("FigureClusterId") == INDEPENDENT),
            "FacesChanged": len(changed),
            "ClustersCreated": len(outcome.created),
            "ClustersMerged": len(outcome.merged),
        }

    def refresh(
        self,
        project: str,
        dataset: str,
        rows: Sequence[dict[str, Any]] | None = None,
        *,
        settle: bool = False,
    ) -> None:
        """Recount every cluster of a dataset from its figures; delete the empty ones.

        `settle`: a clustering run's own refresh, which records the members it left.
        """
        if rows is None:
            rows = list(self._figures.all(project, dataset))
        members: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            cid = row.get("FigureClusterId", UNAVAILABLE)
            if cid not in RESERVED:
                members[cid].append(row)
        key = dataset_key(project, dataset)
        existing = {r.sk: r for r in self._table.scan_partition(CLUSTERS, key)}
        covers = [_cover_figure(figs, existing.get(cid)) for cid, figs in members.items()]
        cover_files = self._cover_files(project, dataset, covers)
        digests = _member_digests(rows) if settle else {}
        for cid, figs in members.items():
            self._write_stats(
                project, dataset, cid, figs, existing.get(cid), cover_files, digests.get(cid)
            )
        for cid, record in existing.items():
            if cid not in members:
                # changed meanwhile (a user update): the next refresh removes it
                with contextlib.suppress(ConditionFailed):
                    self._table.delete(CLUSTERS, key, cid, if_version=record.version)

    def _cover_files(
        self, project: str, dataset: str, covers: Iterable[dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        uris = sorted({figure["_uri"] for figure in covers})
        key = dataset_key(project, dataset)
        found = self._table.batch_get(FILES, [(key, u) for u in uris])
        return {r.sk: r.data for r in found}

    def _write_stats(
        self,
        project: str,
        dataset: str,
        cid: str,
        figs: list[dict[str, Any]],
        record: Record | None,
        cover_files: dict[str, dict[str, Any]],
        digest: str | None = None,
    ) -> None:
        stats: dict[str, Any] = {
            "FaceCount": len(figs),
            "ImageCount": len({f["_file"] for f in figs if f.get("_media") != "video"}),
            "VideoCount": len({f["_file"] for f in figs if f.get("_media") == "video"}),
            **_demographics(figs),
        }
        compared: tuple[str, ...] = _STAT_FIELDS
        if digest is not None:
            stats[SETTLED_MEMBERS] = digest
            compared = (*_STAT_FIELDS, SETTLED_MEMBERS)
        key = dataset_key(project, dataset)
        while True:
            # again on every attempt: a user update that won may have chosen another cover
            best = _cover_figure(figs, record)
            if best["_uri"] not in cover_files:
                found = self._table.get(FILES, key, best["_uri"])
                cover_files[best["_uri"]] = found.data if found else {"URI": best["_uri"]}
            stats["Cover"] = cover_of(cover_files[best["_uri"]], best)
            chosen = record.data.get(COVER_FIGURE) if record is not None else None
            lost_cover = chosen is not None and chosen != best["FigureId"]
            if (
                record is not None
                and not lost_cover
                and all(record.data.get(k) == stats[k] for k in compared)
            ):
                return
            now = time.time()
            base = (
                record.data
                if record is not None
                else {
                    "ObjectId": cid,
                    "ObjectType": "figure-cluster",
                    "ProjectName": project,
                    "DatasetName": dataset,
                    "OwnerId": self._catalog.owner_id,
                    "CreateTime": now,
                }
            )
            data = {**base, **stats, "UpdateTime": now}
            if lost_cover:
                # the user's cover face left the cluster: the ranking chooses again
                del data[COVER_FIGURE]
            try:
                if record is None:
                    self._table.put(CLUSTERS, key, cid, data, if_absent=True)
                else:
                    self._table.put(CLUSTERS, key, cid, data, if_version=record.version)
                return
            except ConditionFailed:
                record = self._table.get(CLUSTERS, key, cid)  # a user update won: keep it

    # ------------------------------------------------------------ reading

    def get(self, project: str, dataset: str, cluster_id: str) -> dict[str, Any]:
        """One cluster with its MetaLockVersion, or ResourceNotFound."""
        self._catalog.dataset(project, dataset)
        record = self._table.get(CLUSTERS, dataset_key(project, dataset), cluster_id)
        if record is None:
            raise ResourceNotFound(
                f"The figure cluster {cluster_id!r} does not exist in dataset {dataset!r}."
            )
        return _with_lock(record)

    def get_many(
        self, project: str, dataset: str, cluster_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The clusters found among these ids, in that order."""
        self._catalog.dataset(project, dataset)
        key = dataset_key(project, dataset)
        return [
            _with_lock(r) for r in self._table.batch_get(CLUSTERS, [(key, c) for c in cluster_ids])
        ]

    def all(self, project: str, dataset: str) -> list[dict[str, Any]]:
        """Every cluster of a dataset (filters, sorting and paging happen in the caller)."""
        self._catalog.dataset(project, dataset)
        key = dataset_key(project, dataset)
        return [_with_lock(r) for r in self._table.scan_partition(CLUSTERS, key)]


def cover_of(file_row: dict[str, Any], figure: dict[str, Any]) -> dict[str, Any]:
    """A cluster's Cover: the file as IMM shows it, with the cover face as its only figure."""
    return {**public(file_row), "Figures": [public(figure)]}


def _cover_figure(figs: list[dict[str, Any]], record: Record | None) -> dict[str, Any]:
    # the user's choice while that face is still a member, else the best-ranked face
    chosen = record.data.get(COVER_FIGURE) if record is not None else None
    for figure in figs:
        if figure["FigureId"] == chosen:
            return figure
    return max(figs, key=_cover_rank)


def _cover_rank(row: dict[str, Any]) -> tuple[bool, float, int, str]:
    # a photo makes a better cover than a video frame of the same quality
    box = row.get("Boundary", {})
    return (
        row.get("_media") != "video",
        float(row.get("FaceQuality", 0)),
        int(box.get("Width", 0)),
        row["FigureId"],
    )


def _demographics(figs: list[dict[str, Any]]) -> dict[str, Any]:
    """Gender by confidence-weighted vote and age statistics, from what models measured."""
    ages = [float(f["Age"]) for f in figs if f.get("Age") is not None]
    votes: dict[str, float] = defaultdict(float)
    for f in figs:
        if f.get("Gender"):
            votes[f["Gender"]] += float(f.get("GenderConfidence", 1.0))
    stats: dict[str, Any] = {
        "Gender": max(sorted(votes), key=lambda g: votes[g]) if votes else None,
        "AverageAge": round(sum(ages) / len(ages), 1) if ages else None,
        "MinAge": min(ages) if ages else None,
        "MaxAge": max(ages) if ages else None,
    }
    return stats


def _member_digests(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Per cluster, a digest of its members' FigureIds (order does not matter)."""
    members: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        cid = row.get("FigureClusterId", UNAVAILABLE)
        if cid not in RESERVED:
            members[cid].append(row["FigureId"])
    return {
        cid: hashlib.blake2b("\n".join(sorted(ids)).encode(), digest_size=8).hexdigest()
        for cid, ids in members.items()
    }


def _with_lock(record: Record) -> dict[str, Any]:
    return {**public(record.data), "MetaLockVersion": record.version}
