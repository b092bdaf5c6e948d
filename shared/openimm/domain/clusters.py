"""Figure clusters: running the clustering over a dataset, and reading the result.

A cluster row holds what IMM returns (counts, cover) plus the user's own fields
(Name, CustomId, CustomLabels); its store version is the MetaLockVersion. Counts
are recomputed from the figure rows, so a re-run after a crash converges.

With a face shard (face_shard.py), a run reads every face in one go and recounts only
the clusters whose members or faces changed: a run that adds 1k faces to 100k then
costs what is new, not a read of every row. Without one, it reads every figure row.

One run places at most RUN_NEW_FACES faces that no run has weighed yet; the others wait
for the next run, which the cluster stage chains (`FACES_WAITING` in the summary). So a
library indexed before its first task (1M faces from nothing) is clustered in parts,
each within a stage's time and memory, as if runs had followed its uploads.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from openimm.domain.catalog import FILES, Catalog
from openimm.domain.entities import INDEPENDENT, UNAVAILABLE, dataset_key, new_cluster_id
from openimm.domain.face_shard import Faces, FaceShards
from openimm.domain.figures import VERSION, FigureBook, decode_vector
from openimm.errors import ResourceNotFound
from openimm.grouping.figure_clustering import (
    ClusteringConfig,
    FaceColumns,
    FaceToCluster,
    cluster_face_columns,
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
# faces never weighed that one run places at most: the size of grouping's own parts
# (figure_clustering/runs.py, where seeding's pairs outgrow memory), minutes on one core
RUN_NEW_FACES = 100_000
# figure rows a run reads and writes back at a time
_ROWS_AT_ONCE = 2000
# in a run's summary: faces left for the next run (none: the dataset is done)
FACES_WAITING = "FacesWaiting"
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


def _this_run(
    clusters: Sequence[str], pinned: Sequence[bool] | npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.intp] | None, int]:
    """Which faces (sorted by id) one run weighs (None: all), and how many wait.

    Every face a run weighed before stays in (its cluster is what later faces join);
    of those never weighed, the first RUN_NEW_FACES by figure id (no particular order of
    people) come in.
    """
    new = [
        i
        for i, (cid, hand) in enumerate(zip(clusters, pinned, strict=True))
        if cid == UNAVAILABLE and not hand
    ]
    if len(new) <= RUN_NEW_FACES:
        return None, 0
    keep = np.ones(len(clusters), dtype=bool)
    keep[new[RUN_NEW_FACES:]] = False
    return np.flatnonzero(keep), len(new) - RUN_NEW_FACES


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
        shards: FaceShards | None = None,
    ) -> None:
        self._table = table
        self._catalog = catalog
        self._figures = figures
        self.config = config
        self._new_id = new_id
        # the embedder whose vectors this run compares; others are not comparable
        self._model = model
        # each dataset's faces in one read (face_shard.py); None: read every figure row
        self._shards = shards

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
        if self._shards is not None:
            return self._run_on_shard(self._shards, project, dataset, before_writing)
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
        rows.sort(key=lambda r: str(r["FigureId"]))
        part, waiting = _this_run(
            [r.get("FigureClusterId", UNAVAILABLE) for r in rows],
            [bool(r.get("_pinned")) for r in rows],
        )
        if part is not None:
            rows = [rows[i] for i in part.tolist()]
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
            FACES_WAITING: waiting,
        }

    def _run_on_shard(
        self,
        shards: FaceShards,
        project: str,
        dataset: str,
        before_writing: Callable[[], None],
    ) -> dict[str, int]:
        """`run` on the dataset's face shard: reads and recounts only what changed.

        The same decisions as from the rows (the shard holds them as the rows do); the
        cluster rows recounted are those whose members changed in this run or since
        the last one (their digest), or whose faces' rows changed (the journal).
        """
        read = shards.read(project, dataset)
        faces = read.faces
        # sorted by id, as _this_run takes them
        part, waiting = _this_run(faces.clusters, faces.pinned)
        if part is not None:
            # the faces waiting are left out of the run as if not yet indexed
            faces = faces.take(part)
        # columns as the shard holds them, not 100k FaceToCluster objects
        columns = FaceColumns(
            figure_ids=faces.figure_ids,
            file_ids=faces.files,
            cluster_ids=faces.clusters,
            seed_eligible=faces.seed,
            pinned=faces.pinned,
            moved_from=faces.moved_from,
            # one matrix of every vector, which the run normalises in place
            vectors=faces.vectors.stack(),
        )
        key = dataset_key(project, dataset)
        records = list(self._table.scan_partition(CLUSTERS, key))
        curated = [r.sk for r in records if any(r.data.get(k) for k in USER_FIELDS)]
        digests = _digests(zip(faces.figure_ids, faces.clusters, strict=True))
        settled = [r.sk for r in records if r.data.get(SETTLED_MEMBERS) == digests.get(r.sk)]
        outcome = cluster_face_columns(columns, self.config, self._new_id, curated, settled)
        position = {figure_id: i for i, figure_id in enumerate(faces.figure_ids)}
        clusters = list(faces.clusters)
        touched = {*outcome.created, *outcome.merged, *outcome.merged.values()}
        changed: dict[str, tuple[str, float]] = {}
        # clusters a face left or joined: only their digests differ from `digests`
        moved: set[str] = set()
        for a in outcome.assignments:
            i = position[a.figure_id]
            confidence = round(a.confidence, 4)
            stored = None if math.isnan(faces.confidences[i]) else float(faces.confidences[i])
            if (clusters[i], stored) != (a.cluster_id, confidence):
                touched.update((clusters[i], a.cluster_id))
                if clusters[i] != a.cluster_id:
                    moved.update((clusters[i], a.cluster_id))
                clusters[i] = a.cluster_id
                changed[a.figure_id] = (a.cluster_id, confidence)
        after = {cid: digest for cid, digest in digests.items() if cid not in moved}
        after.update(
            _digests((f, c) for f, c in zip(faces.figure_ids, clusters, strict=True) if c in moved)
        )
        if read.rebuilt:
            touched.update(clusters)
        elif read.fold is not None:
            # their rows changed since the shard last took them in: counts, ages, cover
            touched.update(clusters[position[f]] for f in read.fold.removed if f in position)
        # members changed since the last run left them (moves, merges, deletions)
        touched.update(r.sk for r in records if r.data.get(SETTLED_MEMBERS) != after.get(r.sk))
        touched.update(after.keys() ^ {r.sk for r in records})  # new ones, and emptied ones
        touched.difference_update(RESERVED)
        before_writing()
        # cluster rows first, as `run` does
        self._recount(project, dataset, faces, clusters, touched, after, changed)
        # then the figure rows, a batch at a time (a run placing 100k faces read them all
        # at once: 600 MB of dicts)
        changed_ids = sorted(changed)
        stale = False
        for start in range(0, len(changed_ids), _ROWS_AT_ONCE):
            batch = changed_ids[start : start + _ROWS_AT_ONCE]
            rows = self._figures.get_many(project, dataset, batch)
            # a row written since the shard read it keeps what that write did, as `save`
            # would
            current = [r for r in rows if r[VERSION] == faces.versions[position[r["FigureId"]]]]
            for row in current:
                row["FigureClusterId"], row["FigureClusterConfidence"] = changed[row["FigureId"]]
            skipped = self._figures.save(project, dataset, current)
            stale = stale or bool(skipped) or len(current) < len(batch)
        if stale:
            self.refresh(project, dataset)
        shards.fold(project, dataset, read)
        return {
            "FacesClustered": sum(1 for c in clusters if c not in RESERVED),
            "FacesIndependent": sum(1 for c in clusters if c == INDEPENDENT),
            "FacesChanged": len(changed),
            "ClustersCreated": len(outcome.created),
            "ClustersMerged": len(outcome.merged),
            FACES_WAITING: waiting,
        }

    def _recount(
        self,
        project: str,
        dataset: str,
        faces: Faces,
        clusters: list[str],
        touched: set[str],
        digests: dict[str, str],
        changed: dict[str, tuple[str, float]],
    ) -> None:
        """`refresh` of the touched clusters, from the shard's columns and their covers."""
        key = dataset_key(project, dataset)
        members: dict[str, list[int]] = defaultdict(list)
        for i, cid in enumerate(clusters):
            if cid in touched:
                members[cid].append(i)
        existing = {
            r.sk: r for r in self._table.batch_get(CLUSTERS, [(key, c) for c in sorted(touched)])
        }
        tallies = {cid: _tally_faces(faces, idx) for cid, idx in members.items()}
        wanted = sorted({_cover_id(t, existing.get(cid)) for cid, t in tallies.items()})
        rows = {r["FigureId"]: r for r in self._figures.get_many(project, dataset, wanted)}

        def figure_row(figure_id: str) -> dict[str, Any] | None:
            if figure_id not in rows:
                # a cover the user chose during this recount
                rows.update(
                    (r["FigureId"], r)
                    for r in self._figures.get_many(project, dataset, [figure_id])
                )
            row = rows.get(figure_id)
            if row is not None and figure_id in changed:
                # as this run leaves it, before its figure rows are written
                row["FigureClusterId"], row["FigureClusterConfidence"] = changed[figure_id]
            return row

        cover_files = self._cover_files(project, dataset, rows.values())
        self._write_all(project, dataset, tallies, figure_row, existing, cover_files, digests)

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
        key = dataset_key(project, dataset)
        existing = {r.sk: r for r in self._table.scan_partition(CLUSTERS, key)}
        self._rewrite(project, dataset, rows, existing, settle=settle)

    def recount(self, project: str, dataset: str, cluster_ids: Iterable[str]) -> None:
        """`refresh` of these clusters alone (a user's merge or move, a file's deletion).

        Their faces are read through the index of figures by cluster: a merge at 100k
        faces read every figure row, seconds, to recount two clusters.
        """
        wanted = sorted({c for c in cluster_ids if c not in RESERVED})
        if not wanted:
            return
        rows = self._figures.cluster_rows(project, dataset, wanted)
        key = dataset_key(project, dataset)
        existing = {r.sk: r for r in self._table.batch_get(CLUSTERS, [(key, c) for c in wanted])}
        self._rewrite(project, dataset, rows, existing)

    def _rewrite(
        self,
        project: str,
        dataset: str,
        rows: Sequence[dict[str, Any]],
        existing: dict[str, Record],
        *,
        settle: bool = False,
    ) -> None:
        """Write the cluster rows of these figures' clusters; delete those of `existing`
        left without a figure."""
        members: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            cid = row.get("FigureClusterId", UNAVAILABLE)
            if cid not in RESERVED:
                members[cid].append(row)
        tallies = {cid: _tally_rows(figs) for cid, figs in members.items()}
        by_id = {row["FigureId"]: row for row in rows}
        covers = [by_id[_cover_id(t, existing.get(cid))] for cid, t in tallies.items()]
        cover_files = self._cover_files(project, dataset, covers)
        digests = _member_digests(rows) if settle else {}
        self._write_all(project, dataset, tallies, by_id.get, existing, cover_files, digests)

    def _write_all(
        self,
        project: str,
        dataset: str,
        tallies: dict[str, _Tally],
        figure_row: Callable[[str], dict[str, Any] | None],
        existing: dict[str, Record],
        cover_files: dict[str, dict[str, Any]],
        digests: dict[str, str],
    ) -> None:
        """Write each tallied cluster's row; delete the rows of `existing` left empty."""
        for cid, tally in tallies.items():
            self._write_stats(
                project,
                dataset,
                cid,
                tally,
                figure_row,
                existing.get(cid),
                cover_files,
                digests.get(cid),
            )
        self._delete_empty(dataset_key(project, dataset), existing, set(tallies))

    def _delete_empty(self, key: str, existing: dict[str, Record], live: set[str]) -> None:
        for cid, record in existing.items():
            if cid not in live:
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
        tally: _Tally,
        figure_row: Callable[[str], dict[str, Any] | None],
        record: Record | None,
        cover_files: dict[str, dict[str, Any]],
        digest: str | None = None,
    ) -> None:
        stats: dict[str, Any] = dict(tally.stats)
        compared: tuple[str, ...] = _STAT_FIELDS
        if digest is not None:
            stats[SETTLED_MEMBERS] = digest
            compared = (*_STAT_FIELDS, SETTLED_MEMBERS)
        key = dataset_key(project, dataset)
        while True:
            # again on every attempt: a user update that won may have chosen another cover
            best = figure_row(_cover_id(tally, record))
            if best is None:
                return  # deleted since it was read: its journal entry brings it back here
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


class _Tally(NamedTuple):
    """What a cluster row is recounted from: its statistics but the cover, and its faces."""

    stats: dict[str, Any]
    members: frozenset[str]
    # the member the cover ranking chooses (`_cover_rank`)
    ranked: str


def _tally_rows(figs: list[dict[str, Any]]) -> _Tally:
    return _Tally(
        stats={
            "FaceCount": len(figs),
            "ImageCount": len({f["_file"] for f in figs if f.get("_media") != "video"}),
            "VideoCount": len({f["_file"] for f in figs if f.get("_media") == "video"}),
            **_demographics(figs),
        },
        members=frozenset(f["FigureId"] for f in figs),
        ranked=max(figs, key=_cover_rank)["FigureId"],
    )


def _cover_id(tally: _Tally, record: Record | None) -> str:
    # the user's choice while that face is still a member, else the best-ranked face
    chosen = record.data.get(COVER_FIGURE) if record is not None else None
    return str(chosen) if chosen in tally.members else tally.ranked


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
    return _demographics_of(
        [float(f["Age"]) for f in figs if f.get("Age") is not None],
        [(f["Gender"], float(f.get("GenderConfidence", 1.0))) for f in figs if f.get("Gender")],
    )


def _demographics_of(ages: list[float], votes: Iterable[tuple[str, float]]) -> dict[str, Any]:
    tally: dict[str, float] = defaultdict(float)
    for gender, confidence in votes:
        tally[gender] += confidence
    stats: dict[str, Any] = {
        "Gender": max(sorted(tally), key=lambda g: tally[g]) if tally else None,
        "AverageAge": round(sum(ages) / len(ages), 1) if ages else None,
        "MinAge": min(ages) if ages else None,
        "MaxAge": max(ages) if ages else None,
    }
    return stats


def _tally_faces(faces: Faces, members: list[int]) -> _Tally:
    """`_tally_rows` of these faces, from the shard's columns."""
    video, files, ages = faces.video, faces.files, faces.ages
    return _Tally(
        stats={
            "FaceCount": len(members),
            "ImageCount": len({files[i] for i in members if not video[i]}),
            "VideoCount": len({files[i] for i in members if video[i]}),
            **_demographics_of(
                [float(ages[i]) for i in members if not math.isnan(ages[i])],
                [
                    (gender, float(faces.gender_confidence[i]))
                    for i in members
                    if (gender := faces.genders[i])
                ],
            ),
        },
        members=frozenset(faces.figure_ids[i] for i in members),
        ranked=faces.figure_ids[
            max(
                members,
                key=lambda i: (
                    not video[i],
                    float(faces.quality[i]),
                    int(faces.width[i]),
                    faces.figure_ids[i],
                ),
            )
        ],
    )


def _member_digests(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Per cluster, a digest of its members' FigureIds (order does not matter)."""
    return _digests((row["FigureId"], row.get("FigureClusterId", UNAVAILABLE)) for row in rows)


def _digests(memberships: Iterable[tuple[str, str]]) -> dict[str, str]:
    """`_member_digests` of (FigureId, cluster id) pairs."""
    members: dict[str, list[str]] = defaultdict(list)
    for figure_id, cid in memberships:
        if cid not in RESERVED:
            members[cid].append(figure_id)
    return {
        cid: hashlib.blake2b("\n".join(sorted(ids)).encode(), digest_size=8).hexdigest()
        for cid, ids in members.items()
    }


def _with_lock(record: Record) -> dict[str, Any]:
    return {**public(record.data), "MetaLockVersion": record.version}
