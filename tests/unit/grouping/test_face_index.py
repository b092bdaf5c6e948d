"""FaceIndex: the exact scan and the graph agree; puts and removals are incremental."""

from __future__ import annotations

import numpy as np
import pytest

from openimm.grouping.face_index import FaceIndex, GraphSettings
from openimm.grouping.face_similarity import SimilarityScale


def _people(count: int, faces: int, dim: int = 48, seed: int = 0) -> np.ndarray:
    """`faces` noisy unit vectors around each of `count` people."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count, dim))
    vectors = np.repeat(centres, faces, axis=0) + 0.4 * rng.standard_normal((count * faces, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def _keys(n: int, prefix: str = "f") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def _top(index: FaceIndex, queries: np.ndarray, k: int) -> list[list[str]]:
    return [[n.key for n in row] for row in index.search(queries, k)]


def test_exact_search_is_the_float32_ranking() -> None:
    vectors = _people(50, 20)
    index = FaceIndex(vectors.shape[1])
    index.put(_keys(len(vectors)), vectors)
    queries = _people(5, 1, seed=1)
    found = index.search(queries, 10)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    for row, expected in zip(found, truth, strict=True):
        assert [n.key for n in row] == [f"f{i}" for i in expected]
        cosines = [n.cosine for n in row]
        assert cosines == sorted(cosines, reverse=True)
    best = float((queries[0] @ vectors.T).max())
    assert found[0][0].cosine == pytest.approx(best, abs=2e-3)  # float16 storage


def test_graph_and_exact_agree() -> None:
    vectors = _people(200, 10)
    exact, graph = FaceIndex(48), FaceIndex(48, exact_limit=100)
    exact.put(_keys(len(vectors)), vectors)
    graph.put(_keys(len(vectors)), vectors)
    assert graph.uses_graph and not exact.uses_graph
    queries = _people(30, 1, seed=2)
    hits = sum(
        len(set(a) & set(b))
        for a, b in zip(_top(exact, queries, 10), _top(graph, queries, 10), strict=True)
    )
    assert hits / 300 >= 0.99
    # the graph's candidates are re-scored from the rows: the cosines agree to float16's
    e, g = exact.search(queries[:1], 5)[0], graph.search(queries[:1], 5)[0]
    assert {n.key: n.cosine for n in e} == pytest.approx({n.key: n.cosine for n in g}, abs=2e-3)


@pytest.mark.parametrize("limit", [10**6, 100])
def test_puts_and_removals_are_incremental(limit: int) -> None:
    vectors = _people(100, 10)
    index = FaceIndex(48, exact_limit=limit)
    index.put(_keys(600), vectors[:600])
    index.put(_keys(400, "g"), vectors[600:])
    assert len(index) == 1000
    gone = set(_keys(600)[::3])
    index.remove([*gone, "never-there"])
    assert len(index) == 1000 - len(gone)
    assert not gone & set(index.stored_keys())
    found = {key for row in _top(index, vectors[:600:3], 20) for key in row}
    assert not found & gone
    # a face finds itself first, whichever rows moved on removal
    assert _top(index, vectors[600:601], 1) == [["g0"]]
    assert _top(index, vectors[1:2], 1) == [["f1"]]
    # putting a key again replaces its vector
    index.put(["f1"], vectors[900:901])
    assert len(index) == 1000 - len(gone)
    assert set(_top(index, vectors[900:901], 2)[0]) == {"f1", "g300"}


def _people_in_a_subspace(count: int, faces: int, seed: int = 0) -> np.ndarray:
    """Like `_people`, in 48-D but varying mostly along 12 directions, as embeddings do."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((48, 12)))[0]
    inner = _people(count, faces, dim=12, seed=seed) @ basis.T
    vectors = inner + 0.03 * rng.standard_normal(inner.shape)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_a_graph_on_fewer_dimensions_finds_what_the_scan_finds_and_deletes_in_place() -> None:
    vectors, new = np.split(_people_in_a_subspace(201, 10), [2000])
    queries = _people_in_a_subspace(200, 1, seed=0)[::7] + 0.01
    exact = FaceIndex(48)
    graph = FaceIndex(48, exact_limit=100, graph=GraphSettings(graph_dim=16))
    for index in (exact, graph):
        index.put(_keys(len(vectors)), vectors)
        index.remove(_keys(len(vectors))[::3])
    assert graph.uses_graph
    pairs = zip(_top(exact, queries, 10), _top(graph, queries, 10), strict=True)
    hits = sum(len(set(a) & set(b)) for a, b in pairs)
    assert hits >= 0.99 * 10 * len(queries)
    found = {key for row in _top(graph, vectors[::3], 5) for key in row}
    assert not found & set(_keys(len(vectors))[::3])
    # saved and loaded, with its projection: the same answers, and new faces go through it
    restored = FaceIndex.restore(graph.snapshot())
    assert _top(restored, queries, 10) == _top(graph, queries, 10)
    restored.put(_keys(10, "new"), new)
    assert _top(restored, new[:1], 1) == [["new0"]]


def test_the_graph_comes_and_goes_with_the_size() -> None:
    vectors = _people(30, 10)
    index = FaceIndex(48, exact_limit=200)
    index.put(_keys(150), vectors[:150])
    assert not index.uses_graph
    index.put(_keys(150, "g"), vectors[150:])
    assert index.uses_graph
    index.remove(_keys(150) + _keys(60, "g"))
    assert not index.uses_graph and len(index) == 90
    assert _top(index, vectors[250:251], 1) == [["g100"]]


def test_empty_index_and_zero_count() -> None:
    index = FaceIndex(8)
    assert index.search(np.ones((2, 8), dtype=np.float32), 5) == [[], []]
    index.put(["a"], np.ones((1, 8), dtype=np.float32))
    assert index.search(np.ones((1, 8), dtype=np.float32), 0) == [[]]
    assert [n.key for n in index.search(np.ones((1, 8), dtype=np.float32), 5)[0]] == ["a"]
    with pytest.raises(ValueError):
        index.put(["a", "b"], np.ones((1, 8), dtype=np.float32))


def test_similarity_scale_is_a_logistic_of_cosine() -> None:
    scale = SimilarityScale.centred(0.8, 0.05)
    assert scale.of(0.8) == 0.5
    assert scale.of(0.95) > 0.95 > 0.05 > scale.of(0.65)
    values = scale(np.array([0.0, 0.5, 0.9, 1.0]))
    assert np.all(np.diff(values) > 0) and values[0] >= 0.0 and values[-1] <= 1.0


class _Figures:
    """The one FigureBook method DatasetFaces reads, over rows per dataset."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, object]]] = {}

    def all(self, project: str, dataset: str) -> list[dict[str, object]]:
        return self.rows.get(dataset, [])


def _row(figure_id: str, vector: list[float], model: str = "m") -> dict[str, object]:
    from openimm.domain.figures import encode_vector

    return {
        "FigureId": figure_id,
        "_model": model,
        "_embedding": encode_vector(np.asarray(vector, dtype=np.float32)),
    }


def test_dataset_faces_refresh_by_ids_and_keep_recent_datasets() -> None:
    from openimm.domain.face_search import DatasetFaces

    figures = _Figures()
    figures.rows["d1"] = [_row("a", [1, 0]), _row("b", [0, 1]), _row("x", [1, 1], model="other")]
    faces = DatasetFaces(figures, "m", FaceIndex, keep=2)  # type: ignore[arg-type]
    first = faces.current("p", "d1", 2)
    assert sorted(first.stored_keys()) == ["a", "b"]  # another model's vectors stay out
    figures.rows["d1"] = [_row("b", [0, 1]), _row("c", [0.6, 0.8])]
    again = faces.current("p", "d1", 2)
    assert again is first and sorted(again.stored_keys()) == ["b", "c"]
    faces.current("p", "d2", 2)
    faces.current("p", "d3", 2)
    assert faces.current("p", "d1", 2) is not first  # the least recent went
