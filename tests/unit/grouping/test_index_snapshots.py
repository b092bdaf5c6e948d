"""A saved face index loads as it was saved, and a cold instance loads it instead of building."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openimm.adapters.local.folder_blobs import FolderBlobStore
from openimm.adapters.local.sqlite_table import SqliteTableStore
from openimm.domain.face_search import DatasetFaces
from openimm.domain.figures import FigureBook, encode_vector
from openimm.domain.index_snapshots import IndexSnapshots
from openimm.grouping import face_index
from openimm.grouping.face_index import FaceIndex, GraphSettings

DIM = 24


def _vectors(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, DIM))
    vectors = centres[rng.integers(0, 8, count)] + 0.3 * rng.standard_normal((count, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _figure_rows(count: int, seed: int) -> tuple[np.ndarray, list[dict[str, object]]]:
    """`count` unit vectors and the figure rows holding them (f000, f001, ...)."""
    vectors = _vectors(count, seed)
    rows: list[dict[str, object]] = [
        {"FigureId": f"f{i:03d}", "_model": "m", "_embedding": encode_vector(vectors[i])}
        for i in range(count)
    ]
    return vectors, rows


def _top(index: FaceIndex, queries: np.ndarray, k: int = 10) -> list[list[tuple[str, float]]]:
    return [[(n.key, round(n.cosine, 5)) for n in row] for row in index.search(queries, k)]


@pytest.mark.parametrize("exact_limit", [40, 10_000])  # through the graph, and exact
def test_a_restored_index_answers_and_changes_as_the_saved_one(exact_limit: int) -> None:
    vectors = _vectors(120, seed=1)
    index = FaceIndex(DIM, exact_limit=exact_limit, graph=GraphSettings())
    index.put([f"f{i}" for i in range(100)], vectors[:100])
    index.remove(["f3", "f50"])
    restored = FaceIndex.restore(index.snapshot())
    assert restored.uses_graph == index.uses_graph == (exact_limit == 40)
    assert sorted(restored.stored_keys()) == sorted(index.stored_keys())
    queries = _vectors(6, seed=2)
    assert _top(restored, queries) == _top(index, queries)
    # both go on alike: new faces get labels the graph has not seen
    for each in (index, restored):
        each.put([f"f{i}" for i in range(100, 120)], vectors[100:])
        each.remove(["f7"])
    assert _top(restored, queries) == _top(index, queries)


def test_what_is_not_a_snapshot_is_refused() -> None:
    index = FaceIndex(DIM, exact_limit=10)
    index.put(["a", "b"], _vectors(2, seed=3))
    data = index.snapshot()
    for bad in (b"", b"something else", data[:-3]):
        with pytest.raises(ValueError):
            FaceIndex.restore(bad)


def test_a_cold_instance_loads_the_saved_graph_and_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = FigureBook(SqliteTableStore(tmp_path / "t.db"))
    vectors, rows = _figure_rows(150, seed=4)
    figures.save("p", "d", rows[:120])
    blobs = FolderBlobStore(tmp_path / "blobs")

    def small(dim: int) -> FaceIndex:
        return FaceIndex(dim, exact_limit=40)

    warm = DatasetFaces(figures, "m", small, snapshots=IndexSnapshots(blobs, "oss://work", "m"))
    built = warm.current("p", "d", DIM)
    assert built.uses_graph

    # a cold instance: faces deleted and added since the save; it must not build a graph
    figures.delete("p", "d", ["f005", "f006"])
    figures.save("p", "d", rows[120:])
    builds: list[int] = []
    real = face_index.UsearchGraph.__init__

    def counted(self: face_index.UsearchGraph, dim: int, settings: GraphSettings) -> None:
        builds.append(dim)  # a graph loaded from bytes is not constructed
        real(self, dim, settings)

    monkeypatch.setattr(face_index.UsearchGraph, "__init__", counted)
    cold = DatasetFaces(figures, "m", small, snapshots=IndexSnapshots(blobs, "oss://work", "m"))
    loaded = cold.current("p", "d", DIM)
    assert loaded.uses_graph and not builds
    expected = sorted({f"f{i:03d}" for i in range(150)} - {"f005", "f006"})
    assert sorted(loaded.stored_keys()) == expected
    fresh = FaceIndex(DIM, exact_limit=10_000)
    fresh.put(expected, np.stack([vectors[int(k[1:])] for k in expected]))
    queries = _vectors(5, seed=5)
    # the graph proposes, the rows re-score: the top faces are the exact ones here
    assert [[k for k, _ in row[:3]] for row in _top(loaded, queries)] == [
        [k for k, _ in row[:3]] for row in _top(fresh, queries)
    ]


def test_an_unreadable_snapshot_is_built_again(tmp_path: Path) -> None:
    figures = FigureBook(SqliteTableStore(tmp_path / "t.db"))
    vectors = _vectors(60, seed=6)
    figures.save(
        "p",
        "d",
        [{"FigureId": f"f{i}", "_embedding": encode_vector(vectors[i])} for i in range(60)],
    )
    blobs = FolderBlobStore(tmp_path / "blobs")
    blobs.write("oss://work/face-index/p/d/m.idx", b"damaged")
    snapshots = IndexSnapshots(blobs, "oss://work", "m")
    assert snapshots.load("p", "d", DIM) is None
    index = DatasetFaces(figures, "m", FaceIndex, snapshots=snapshots).current("p", "d", DIM)
    assert len(index) == 60


def test_a_long_build_is_saved_chunk_by_chunk_and_goes_on_from_the_last_save(
    tmp_path: Path,
) -> None:
    figures = FigureBook(SqliteTableStore(tmp_path / "t.db"))
    vectors, rows = _figure_rows(150, seed=7)
    figures.save("p", "d", rows)
    saved: list[int] = []

    class Counted(IndexSnapshots):
        def save(self, project: str, dataset: str, index: FaceIndex) -> None:
            saved.append(len(index))
            super().save(project, dataset, index)

    def small(dim: int) -> FaceIndex:
        return FaceIndex(dim, exact_limit=40)

    snapshots = Counted(FolderBlobStore(tmp_path / "blobs"), "oss://work", "m")
    DatasetFaces(figures, "m", small, snapshots=snapshots, chunk=50).current("p", "d", DIM)
    # the first chunk crossed the exact limit: from then on, each chunk is saved
    assert saved == [50, 100, 150]

    # an instance stopped after the first save: the next one starts from 50 faces, not 0
    first = FaceIndex(DIM, exact_limit=40)
    first.put([r["FigureId"] for r in rows[:50]], vectors[:50])
    snapshots.save("p", "d", first)
    saved.clear()
    resumed = DatasetFaces(figures, "m", small, snapshots=snapshots, chunk=50)
    assert len(resumed.current("p", "d", DIM)) == 150
    assert saved == [100, 150]
