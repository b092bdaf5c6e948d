"""The face shard: what a clustering run reads from it is what the figure rows hold.

Real SQLite and folder blobs. The rows are the truth; every way they change (new files,
deletions, files re-analysed under the same FigureIds, faces moved by hand, a run's own
writes, a concurrent fold, a lost or damaged segment) must show in the next read, and
clustering with the shard must leave exactly the rows and clusters it leaves without.
"""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openimm.adapters.local.folder_blobs import FolderBlobStore
from openimm.adapters.local.sqlite_table import SqliteTableStore
from openimm.domain import clusters as clusters_module
from openimm.domain import face_shard
from openimm.domain.catalog import FILES, Catalog
from openimm.domain.cluster_edits import ClusterEdits
from openimm.domain.clusters import CLUSTERS, FACES_WAITING, FigureClusters
from openimm.domain.entities import dataset_key
from openimm.domain.face_shard import SHARDS, Faces, FaceShards
from openimm.domain.figure_writes import JOURNAL
from openimm.domain.figures import FigureBook, encode_vector
from openimm.grouping import ClusteringConfig
from openimm.ports import BlobStore, TableStore

WORK = "oss://work"
DIMS = 16


class Dataset:
    """One dataset on its own SQLite file and blob folder, with or without a shard."""

    def __init__(self, root: Path, sharded: bool) -> None:
        self.table: TableStore = SqliteTableStore(root / "table.db")
        self.blobs: BlobStore = FolderBlobStore(root / "blobs")
        self.figures = FigureBook(self.table)
        self.shards = FaceShards(self.table, self.blobs, self.figures, WORK, "m")
        counter = itertools.count()
        catalog = Catalog(self.table, self.blobs, "owner")
        catalog.create_project("p", {})
        catalog.create_dataset("p", "d", {})
        self.clusters = FigureClusters(
            self.table,
            catalog,
            self.figures,
            ClusteringConfig(join_similarity=0.9, seed_similarity=0.9, min_seed_images=2),
            new_id=lambda: f"Cluster-{next(counter):04d}",
            model="m",
            shards=self.shards if sharded else None,
        )
        self.edits = ClusterEdits(self.table, catalog, self.figures, self.clusters)

    def add(self, rows: list[dict[str, Any]]) -> None:
        """New files of one face each: their file rows and figure rows."""
        key = dataset_key("p", "d")
        for row in rows:
            self.table.put(
                FILES, key, row["_uri"], {"URI": row["_uri"], "_figures": [row["FigureId"]]}
            )
        self.figures.save("p", "d", rows)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every figure row as stored, without the version."""
        return {
            r["FigureId"]: {k: v for k, v in r.items() if k != "_version"}
            for r in self.figures.all("p", "d")
        }

    def cluster_rows(self) -> dict[str, dict[str, Any]]:
        """Every cluster row, times left out."""
        found = self.table.scan_partition(CLUSTERS, dataset_key("p", "d"))
        return {
            r.sk: {k: v for k, v in r.data.items() if k not in ("CreateTime", "UpdateTime")}
            for r in found
        }


def _people(seed: int, count: int, start: int = 0) -> list[dict[str, Any]]:
    """Face rows of a few people, several photos each, one face per file."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, DIMS))
    rows = []
    for i in range(start, start + count):
        person = i % 6
        vector = centres[person] + 0.15 * rng.standard_normal(DIMS)
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        rows.append(
            {
                "FigureId": f"fig-{i:04d}",
                "FigureType": "face",
                "Boundary": {"Left": 1, "Top": 2, "Width": 50 + i % 7, "Height": 60},
                "FaceQuality": round(0.5 + 0.05 * (i % 9), 2),
                "Age": 20 + i % 30,
                "Gender": "female" if person % 2 else "male",
                "GenderConfidence": 0.9,
                "FigureClusterId": "figure-cluster-id-unavailable",
                "_seed": True,
                "_pinned": False,
                "_uri": f"oss://b/{i}.jpg",
                "_file": f"file-{i}",
                "_media": "image",
                "_model": "m",
                "_embedding": encode_vector(vector),
            }
        )
    return rows


def _faces_of_rows(data: Dataset) -> Faces:
    return Faces.from_rows(data.figures.all("p", "d"), "m")


def _same(a: Faces, b: Faces) -> None:
    assert a.figure_ids == b.figure_ids
    assert a.clusters == b.clusters and a.files == b.files
    assert a.moved_from == b.moved_from and a.models == b.models and a.genders == b.genders
    np.testing.assert_array_equal(a.vectors.stack(), b.vectors.stack())
    for name in ("versions", "confidences", "seed", "pinned", "video", "quality", "width"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.ages, b.ages)


def _read_and_fold(data: Dataset) -> Faces:
    read = data.shards.read("p", "d")
    assert data.shards.fold("p", "d", read)
    return read.faces


def test_every_change_to_the_rows_shows_in_the_next_read(tmp_path: Path) -> None:
    data = Dataset(tmp_path, sharded=True)
    data.add(_people(1, 40))
    _same(_read_and_fold(data), _faces_of_rows(data))
    key = dataset_key("p", "d")
    assert not list(data.table.scan_partition(JOURNAL, key))  # all taken in

    # new files, a deletion, a file re-analysed under the same FigureIds after its rows
    # were deleted (the store's versions start again: only the journal tells)
    data.add(_people(2, 5, start=40))
    data.figures.delete("p", "d", ["fig-0003"])
    data.figures.delete("p", "d", ["fig-0007"])
    again = _people(9, 8)[7]
    again["Age"] = 77
    data.figures.replace_file_figures("p", "d", [], [{**again, "_version": None}])
    # a face whose embedding now comes from another model leaves the shard
    other = {**_people(1, 40)[11], "_model": "other"}
    data.figures.replace_file_figures("p", "d", ["fig-0011"], [])
    data.figures.replace_file_figures("p", "d", [], [{**other, "_version": None}])
    faces = _read_and_fold(data)
    _same(faces, _faces_of_rows(data))
    assert "fig-0003" not in faces.figure_ids and "fig-0011" not in faces.figure_ids
    assert faces.ages[faces.figure_ids.index("fig-0007")] == 77

    # a fresh instance (nothing in memory) reads the same from the blobs
    cold = FaceShards(data.table, FolderBlobStore(tmp_path / "blobs"), data.figures, WORK, "m")
    _same(cold.read("p", "d").faces, _faces_of_rows(data))


def test_a_run_and_a_move_by_hand_show_in_the_shard(tmp_path: Path) -> None:
    data = Dataset(tmp_path, sharded=True)
    data.add(_people(3, 36))
    data.clusters.run("p", "d")
    _same(data.shards.read("p", "d").faces, _faces_of_rows(data))
    rows = data.rows()
    cluster = next(
        r["FigureClusterId"] for r in rows.values() if r["FigureClusterId"][:8] == "Cluster-"
    )
    face = next(f for f, r in rows.items() if r["FigureClusterId"] != cluster)
    data.edits.move_figures("p", "d", rows[face]["_uri"], {face: cluster})
    faces = data.shards.read("p", "d").faces
    _same(faces, _faces_of_rows(data))
    at = faces.figure_ids.index(face)
    assert faces.clusters[at] == cluster and faces.pinned[at]


@pytest.mark.parametrize("damage", ["lost", "truncated", "foreign"])
def test_a_lost_or_damaged_segment_is_rebuilt_from_the_rows(tmp_path: Path, damage: str) -> None:
    data = Dataset(tmp_path, sharded=True)
    data.add(_people(4, 30))
    _read_and_fold(data)
    data.add(_people(5, 3, start=30))
    pointer = data.table.get(SHARDS, dataset_key("p", "d"), "faces")
    assert pointer is not None
    uri = pointer.data["segments"][0]
    if damage == "lost":
        data.blobs.remove(uri)
    elif damage == "truncated":
        data.blobs.write(uri, data.blobs.read(uri)[:-5])
    else:
        data.blobs.write(uri, b"not a shard")
    read = data.shards.read("p", "d")
    assert read.rebuilt
    _same(read.faces, _faces_of_rows(data))
    assert data.shards.fold("p", "d", read)
    _same(data.shards.read("p", "d").faces, _faces_of_rows(data))


def _varied_faces() -> Faces:
    """Faces whose string columns repeat, hold None and non-ASCII text."""
    rows = _people(6, 12)
    for i, row in enumerate(rows):
        row["_uri"] = row["_file"] = f"oss://b/album ü/{i // 3}.jpg"
        row["FigureClusterId"] = ["Cluster-a", "Cluster-b", "figure-cluster-id-independent"][i % 3]
        if i % 4 == 0:
            row["_moved_from"] = "Cluster-c"
            del row["Gender"]
        if i % 5 == 0:
            del row["_model"]
    return Faces.from_rows(rows, "m")


def test_a_segment_reads_back_as_written() -> None:
    faces = _varied_faces()
    read = face_shard.decode_segment(face_shard.encode_segment(face_shard.Segment(faces, ["x"])))
    _same(read.faces, faces)
    assert read.removed == ["x"]


def test_a_segment_of_the_first_format_is_still_read() -> None:
    # the first format held every string column whole in its JSON header, no codes
    faces = _varied_faces()
    columns = ("figure_ids", "files", "clusters", "moved_from", "models", "genders")
    header = {"count": len(faces), "dims": DIMS, **{c: getattr(faces, c) for c in columns}}
    text = json.dumps({**header, "removed": []}).encode()
    numbers = (faces.confidences, faces.quality, faces.ages, faces.gender_confidence)
    flags = faces.seed.astype(np.uint8) | faces.pinned << 1 | faces.video << 2
    data = b"".join(
        [
            b"OIMMFACE1\n",
            struct.pack("<Q", len(text)),
            text,
            faces.versions.astype("<i8").tobytes(),
            faces.width.astype("<i8").tobytes(),
            *(column.astype("<f8").tobytes() for column in numbers),
            flags.astype(np.uint8).tobytes(),
            faces.vectors.stack().astype("<f4").tobytes(),
        ]
    )
    _same(face_shard.decode_segment(data).faces, faces)


def test_a_segment_whose_codes_point_past_its_values_is_unreadable() -> None:
    data = bytearray(face_shard.encode_segment(face_shard.Segment(_varied_faces())))
    # the first code of the first coded column (files), just before the vectors
    at = len(data) - 12 * DIMS * 4 - 5 * 12 * 4
    data[at : at + 4] = struct.pack("<i", 99)
    with pytest.raises(face_shard.ShardUnreadable, match="out of range"):
        face_shard.decode_segment(bytes(data))


def test_of_two_folds_from_one_state_the_second_changes_nothing(tmp_path: Path) -> None:
    data = Dataset(tmp_path, sharded=True)
    data.add(_people(6, 24))
    _read_and_fold(data)
    data.add(_people(7, 4, start=24))
    first = data.shards.read("p", "d")
    second = data.shards.read("p", "d")  # a stale run's view of the same state
    # a writer between the reads and the folds: its entry must survive both folds
    data.figures.delete("p", "d", ["fig-0002"])
    assert data.shards.fold("p", "d", first)
    assert not data.shards.fold("p", "d", second)
    faces = data.shards.read("p", "d").faces
    assert "fig-0002" not in faces.figure_ids
    _same(faces, _faces_of_rows(data))
    # the losing fold's segment is gone; the pointer names only blobs that exist
    pointer = data.table.get(SHARDS, dataset_key("p", "d"), "faces")
    assert pointer is not None
    stored = {b.uri for b in data.blobs.list(f"{WORK}/face-shards/")}
    assert set(pointer.data["segments"]) == stored


def test_appended_segments_are_compacted_into_one_base(tmp_path: Path) -> None:
    data = Dataset(tmp_path, sharded=True)
    data.add(_people(8, 40))
    _read_and_fold(data)
    key = dataset_key("p", "d")
    counts = []
    for step in range(6):
        data.add(_people(20 + step, 3, start=40 + 3 * step))
        _read_and_fold(data)
        pointer = data.table.get(SHARDS, key, "faces")
        assert pointer is not None
        counts.append(len(pointer.data["segments"]))
    # appended while small beside the base, then one base again
    assert counts[0] == 2 and 1 in counts[1:]
    _same(data.shards.read("p", "d").faces, _faces_of_rows(data))


def _story(data: Dataset, seed: int) -> None:
    """Runs over arrivals, a deletion, a move by hand and a merge, as a library lives."""
    data.add(_people(seed, 30))
    data.clusters.run("p", "d")
    data.add(_people(seed + 1, 12, start=30))
    data.figures.delete("p", "d", ["fig-0004", "fig-0010"])
    data.clusters.run("p", "d")
    rows = data.rows()
    clusters = sorted(
        {r["FigureClusterId"] for r in rows.values()}
        - {"figure-cluster-id-independent", "figure-cluster-id-unavailable"}
    )
    assert len(clusters) >= 2
    face = next(f for f, r in sorted(rows.items()) if r["FigureClusterId"] == clusters[0])
    data.edits.move_figures("p", "d", rows[face]["_uri"], {face: clusters[1]})
    data.add(_people(seed + 2, 10, start=42))
    data.clusters.run("p", "d")
    data.edits.merge("p", "d", [clusters[1]], clusters[0])
    data.add(_people(seed + 3, 6, start=52))
    data.clusters.run("p", "d")
    data.clusters.run("p", "d")


@pytest.mark.parametrize("seed", [11, 12])
def test_clustering_leaves_the_same_rows_with_and_without_the_shard(
    tmp_path: Path, seed: int
) -> None:
    rows_only = Dataset(tmp_path / "rows", sharded=False)
    sharded = Dataset(tmp_path / "shard", sharded=True)
    _story(rows_only, seed)
    _story(sharded, seed)
    assert sharded.rows() == rows_only.rows()
    assert sharded.cluster_rows() == rows_only.cluster_rows()
    assert len(sharded.cluster_rows()) >= 2


def test_a_library_beyond_one_run_s_share_is_placed_over_chained_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 50 faces indexed before any run, 20 new faces a run: three runs, each as if the
    # library had arrived in parts, the same with and without the shard
    monkeypatch.setattr(clusters_module, "RUN_NEW_FACES", 20)
    waits: dict[bool, list[int]] = {}
    datasets = {}
    for sharded in (False, True):
        data = datasets[sharded] = Dataset(tmp_path / str(sharded), sharded)
        data.add(_people(15, 50))
        waits[sharded] = []
        while not waits[sharded] or waits[sharded][-1]:
            waits[sharded].append(data.clusters.run("p", "d")[FACES_WAITING])
            unweighed = [
                f for f, r in data.rows().items() if r["FigureClusterId"].endswith("unavailable")
            ]
            assert len(unweighed) == waits[sharded][-1]
    assert waits == {False: [30, 10, 0], True: [30, 10, 0]}
    assert datasets[True].rows() == datasets[False].rows()
    assert datasets[True].cluster_rows() == datasets[False].cluster_rows()
    # one cluster per person (faces i, i+6, i+12... are one person), most faces placed
    members: dict[str, set[int]] = {}
    for figure_id, row in datasets[True].rows().items():
        if row["FigureClusterId"].startswith("Cluster-"):
            members.setdefault(row["FigureClusterId"], set()).add(int(figure_id[4:]) % 6)
    assert all(len(people) == 1 for people in members.values())
    assert sum(1 for r in datasets[True].rows().values() if "Cluster-" in r["FigureClusterId"]) > 40


def test_a_run_keeps_rows_written_during_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = Dataset(tmp_path, sharded=True)
    data.add(_people(13, 30))
    late = _people(14, 1)[0]

    def meanwhile() -> None:
        # a file re-analysed between deciding and writing: its row stays as written
        data.figures.replace_file_figures("p", "d", [], [late])

    data.clusters.run("p", "d", before_writing=meanwhile)
    stored = data.rows()["fig-0000"]
    assert stored["FigureClusterId"] == "figure-cluster-id-unavailable"
    assert stored["_embedding"] == late["_embedding"]
    _same(data.shards.read("p", "d").faces, _faces_of_rows(data))
    monkeypatch.setattr(face_shard, "_COMPACT_SHARE", 0.0)  # every fold writes a base
    data.clusters.run("p", "d")
    _same(data.shards.read("p", "d").faces, _faces_of_rows(data))


def test_stacked_vectors_are_the_rows_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # runs of rows shorter than the blocks' runs, and runs mixing blocks, alike; a run
    # of consecutive rows copied as a slice, the rest gathered
    monkeypatch.setattr(face_shard, "_STACK_ROWS", 4)
    monkeypatch.setattr(face_shard, "_RUN_ROWS", 3)
    rng = np.random.default_rng(5)
    blocks = [rng.standard_normal((n, DIMS)).astype(np.float32) for n in (9, 3, 5)]
    parts = [face_shard.VectorRows.of(b) for b in blocks]
    rows = face_shard.VectorRows.concatenate(parts)
    order = np.concatenate([np.arange(9), rng.permutation(np.arange(9, 17))]).astype(np.intp)
    taken = rows.take(order)

    stacked = taken.stack()

    assert stacked.dtype == np.float32 and stacked.shape == (17, DIMS)
    np.testing.assert_array_equal(stacked, np.array([taken[i] for i in range(17)]))
