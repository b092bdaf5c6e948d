"""Nearest faces of a dataset by cosine: exact numpy up to EXACT_LIMIT faces, HNSW beyond.

Vectors are unit-length embeddings (the ones clustering uses). Up to EXACT_LIMIT faces
a search scans them all, as float32 rows (numpy converts float16 to float32 slower than
it multiplies: a float16 scan took 15x as long). Above it an HNSW graph (usearch,
float16 vectors, native deletion) proposes candidates that the stored rows, now
float16, re-score, so both paths give the same cosines to float16's 1e-3. Since the
graph only proposes, it is built on the rows projected onto their 256 leading directions
(uncentred principal axes, fitted when the graph is built and saved with it): real
embeddings hold their energy in few directions (FaceNet's 512-D vectors 0.99997 of it in
128), and the build costs 2.4x less at the same recall.

bench/search.py (640-D vectors clustered like fused embeddings, top 100 per query, one
query at a time, 2 busy cores): the exact scan takes 0.55 ms p50 at 10k faces, 6 ms at
100k and 16 ms at 200k; at 100k the graph 7 ms (efSearch 1000) with recall@10 0.998 and
a 64 s build, where the unprojected graph took 154 s in the same run (43 s on a quieter
day). So the graph takes over above 100k faces, where the scan's cost starts to matter.
At 1M faces the projected graph answers in 17 ms p50 (42 ms p99, a busy machine) with
recall@10 0.9885 (efSearch 1000 for the top 100; the unprojected graph 0.990), takes
~2.3 GB with the rows, and is saved as a 2.1 GB snapshot that a cold instance reads and
loads in 24 s (domain/index_snapshots.py) instead of building it.
Updates are incremental: `put` and `remove` touch only the faces named, in the rows and
the graph alike.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]
Keys = npt.NDArray[np.int64]

# faces up to which a search scans every vector (see the module docstring)
EXACT_LIMIT = 100_000


# vectors added on one thread at most (bench/search.py builds 1M on every core)
_ONE_THREAD_ADD = 10_000


@dataclass(frozen=True)
class Neighbour:
    """One indexed face near a query."""

    key: str
    cosine: float


class GraphIndex(Protocol):
    """An approximate nearest-neighbour index over integer labels (inner product)."""

    def add(self, labels: Keys, vectors: Matrix) -> None: ...

    def remove(self, labels: Keys) -> None: ...

    def search(self, queries: Matrix, count: int) -> Keys:
        """Per query, up to `count` labels, -1 where fewer were found."""
        ...

    def to_bytes(self) -> bytes:
        """The graph as bytes that `GraphLoader` turns back into it."""
        ...


# bytes of a saved graph -> the graph, with these settings
GraphLoader = Any


@dataclass(frozen=True)
class GraphSettings:
    """HNSW parameters, chosen with bench/search.py (see the module docstring)."""

    connectivity: int = 32
    expansion_add: int = 128
    # efSearch: this many times the candidates asked for, and at least expansion_search;
    # at 1M faces (unprojected) 5 x 200 candidates gave recall@10 0.990 at 18.7 ms p50,
    # 3 x gave 0.985
    expansion_factor: int = 5
    expansion_search: int = 256
    # candidates re-scored exactly per result asked for
    oversample: int = 2
    # the graph's vectors: the rows' leading principal directions, this many (see the
    # module docstring); fewer dimensions than this are used as they are
    graph_dim: int = 256


class UsearchGraph:
    """usearch's HNSW with float16 vectors; deletions are native (no rebuild)."""

    def __init__(self, dim: int, settings: GraphSettings) -> None:
        from usearch.index import Index

        self._settings = settings
        self._index: Any = Index(
            ndim=dim,
            metric="ip",
            dtype="f16",
            connectivity=settings.connectivity,
            expansion_add=settings.expansion_add,
            expansion_search=settings.expansion_search,
        )

    def add(self, labels: Keys, vectors: Matrix) -> None:
        if len(labels):
            # A small batch (a task's new faces) on one thread: the same graph every time,
            # where parallel inserts made a rare face miss itself; a big one on every core.
            threads = 1 if len(labels) <= _ONE_THREAD_ADD else 0
            self._index.add(labels, vectors, threads=threads)

    def remove(self, labels: Keys) -> None:
        if len(labels):
            self._index.remove(labels)

    def to_bytes(self) -> bytes:
        return bytes(self._index.save())

    @staticmethod
    def from_bytes(data: bytes, settings: GraphSettings) -> UsearchGraph:
        """A graph `to_bytes` saved, whole in memory (a view would pin the buffer)."""
        from usearch.index import Index

        graph = UsearchGraph.__new__(UsearchGraph)
        graph._settings = settings
        graph._index = Index.restore(data)
        if graph._index is None:
            raise ValueError("not a saved usearch graph")
        graph._index.expansion_search = settings.expansion_search
        return graph

    def search(self, queries: Matrix, count: int) -> Keys:
        settings = self._settings
        self._index.expansion_search = max(
            settings.expansion_search, settings.expansion_factor * count
        )
        found = self._index.search(queries, count)
        result = np.full((len(queries), count), -1, dtype=np.int64)
        if len(queries) == 1:
            # one query gets a Matches of the labels found, not a padded BatchMatches
            keys = np.asarray(found.keys, dtype=np.int64)
            result[0, : len(keys)] = keys
            return result
        keys = np.asarray(found.keys, dtype=np.int64)
        for row, number in enumerate(np.asarray(found.counts)):
            result[row, :number] = keys[row, :number]
        return result


def usearch_graph(dim: int, settings: GraphSettings) -> GraphIndex:
    return UsearchGraph(dim, settings)


def usearch_graph_from_bytes(data: bytes, settings: GraphSettings) -> GraphIndex:
    return UsearchGraph.from_bytes(data, settings)


_SNAPSHOT = b"OIMMINDEX1\n"
_LENGTH = struct.Struct("<QQ")


class FaceIndex:
    """Keyed unit vectors; top-k by cosine, exact or through a graph above `exact_limit`."""

    def __init__(
        self,
        dim: int,
        *,
        exact_limit: int = EXACT_LIMIT,
        graph: GraphSettings | None = None,
        graph_factory: Any = usearch_graph,
    ) -> None:
        self.dim = dim
        self.exact_limit = exact_limit
        self._graph_settings = graph or GraphSettings()
        self._graph_factory = graph_factory
        # float32 while scanned (numpy converts float16 slower than it multiplies),
        # float16 beside the graph, which only re-scores a few rows per query
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._count = 0
        self._slots: dict[str, int] = {}
        self._keys: list[str] = []
        # graph labels are per row, not per slot: a slot changes hands on removal
        self._labels = np.zeros(0, dtype=np.int64)
        self._slot_of_label: dict[int, int] = {}
        self._next_label = 0
        self._graph: GraphIndex | None = None
        # rows -> the graph's vectors (dim x graph_dim); None: the rows themselves
        self._basis: Matrix | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def stored_keys(self) -> list[str]:
        """The keys held, in no particular order."""
        with self._lock:
            return list(self._keys)

    @property
    def uses_graph(self) -> bool:
        return self._graph is not None

    def put(self, keys: Sequence[str], vectors: Matrix) -> None:
        """Add faces, or replace the vectors of keys already there."""
        if len(keys) != len(vectors):
            raise ValueError("one vector per key")
        if len(keys) == 0:
            return
        vectors = _unit(np.asarray(vectors, dtype=np.float32).reshape(len(keys), self.dim))
        with self._lock:
            self._remove([k for k in keys if k in self._slots])
            self._reserve(self._count + len(keys))
            start = self._count
            labels = np.arange(self._next_label, self._next_label + len(keys), dtype=np.int64)
            self._next_label += len(keys)
            self._matrix[start : start + len(keys)] = vectors
            self._labels[start : start + len(keys)] = labels
            for offset, key in enumerate(keys):
                self._slots[key] = start + offset
                self._slot_of_label[int(labels[offset])] = start + offset
            self._keys.extend(keys)
            self._count += len(keys)
            if self._graph is not None:
                self._graph.add(labels, self._graph_vectors(vectors))
            self._fit_strategy()

    def remove(self, keys: Iterable[str]) -> None:
        """Forget these faces (unknown keys are ignored)."""
        with self._lock:
            self._remove([k for k in keys if k in self._slots])
            self._fit_strategy()

    def search(self, queries: Matrix, count: int) -> list[list[Neighbour]]:
        """Per query row, up to `count` faces by descending cosine."""
        queries = _unit(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        with self._lock:
            if self._count == 0 or count <= 0:
                return [[] for _ in range(len(queries))]
            if self._graph is None:
                slots, scores = self._exact(queries, count)
            else:
                slots, scores = self._through_graph(queries, count)
            return [
                [
                    Neighbour(self._keys[int(slot)], float(score))
                    for slot, score in zip(row_slots, row_scores, strict=True)
                    if slot >= 0
                ]
                for row_slots, row_scores in zip(slots, scores, strict=True)
            ]

    def snapshot(self) -> bytes:
        """The whole index as bytes (keys, rows and graph), for `restore` elsewhere."""
        with self._lock:
            header = {
                "dim": self.dim,
                "exact_limit": self.exact_limit,
                "count": self._count,
                "keys": self._keys,
                "next_label": self._next_label,
                "dtype": self._matrix.dtype.str,
                "graph_dim": 0 if self._basis is None else self._basis.shape[1],
            }
            text = json.dumps(header, separators=(",", ":")).encode()
            graph = self._graph.to_bytes() if self._graph is not None else b""
            basis = b"" if self._basis is None else self._basis.astype("<f4").tobytes()
            return b"".join(
                [
                    _SNAPSHOT,
                    _LENGTH.pack(len(text), len(graph)),
                    text,
                    self._labels[: self._count].astype("<i8").tobytes(),
                    self._matrix[: self._count].tobytes(),
                    basis,
                    graph,
                ]
            )

    @staticmethod
    def restore(
        data: bytes,
        *,
        exact_limit: int | None = None,
        graph: GraphSettings | None = None,
        graph_loader: GraphLoader = usearch_graph_from_bytes,
        graph_factory: Any = usearch_graph,
    ) -> FaceIndex:
        """The index `snapshot` saved, its graph loaded rather than built; ValueError if not one.

        `exact_limit` None: the saved index's own.
        """
        if not data.startswith(_SNAPSHOT):
            raise ValueError("not a face index snapshot")
        at = len(_SNAPSHOT)
        text_length, graph_length = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        header = json.loads(data[at : at + text_length])
        at += text_length
        count, dim, dtype = int(header["count"]), int(header["dim"]), np.dtype(header["dtype"])
        # a snapshot saved before graphs were projected has no graph_dim: the rows themselves
        graph_dim = int(header.get("graph_dim", 0))
        rows_length = count * 8 + count * dim * dtype.itemsize
        if len(data) != at + rows_length + dim * graph_dim * 4 + graph_length:
            raise ValueError("truncated face index snapshot")
        limit = int(header["exact_limit"]) if exact_limit is None else exact_limit
        index = FaceIndex(dim, exact_limit=limit, graph=graph, graph_factory=graph_factory)
        labels = np.frombuffer(data, "<i8", count, at).astype(np.int64)
        at += count * 8
        matrix = np.frombuffer(data, dtype, count * dim, at).reshape(count, dim)
        at += count * dim * dtype.itemsize
        if graph_dim:
            basis = np.frombuffer(data, "<f4", dim * graph_dim, at).reshape(dim, graph_dim)
            index._basis = basis.astype(np.float32)
            at += dim * graph_dim * 4
        index._reserve(count)
        index._matrix = index._matrix.astype(dtype)
        index._matrix[:count] = matrix
        index._labels[:count] = labels
        index._count = count
        index._keys = [str(k) for k in header["keys"]]
        index._slots = {key: slot for slot, key in enumerate(index._keys)}
        index._slot_of_label = {int(label): slot for slot, label in enumerate(labels.tolist())}
        index._next_label = int(header["next_label"])
        if graph_length:
            index._graph = graph_loader(data[at : at + graph_length], index._graph_settings)
        index._fit_strategy()
        return index

    # ------------------------------------------------------------ internals

    def _exact(self, queries: Matrix, count: int) -> tuple[Keys, Matrix]:
        count = min(count, self._count)
        scores = queries @ self._matrix[: self._count].T
        if count < self._count:
            slots = np.argpartition(-scores, count - 1, axis=1)[:, :count]
        else:
            slots = np.broadcast_to(np.arange(self._count), scores.shape)
        return _ordered(slots.astype(np.int64), np.take_along_axis(scores, slots, axis=1))

    def _through_graph(self, queries: Matrix, count: int) -> tuple[Keys, Matrix]:
        assert self._graph is not None
        wanted = min(self._count, count * self._graph_settings.oversample)
        labels = self._graph.search(self._graph_vectors(queries), wanted)
        slots = np.array(
            [[self._slot_of_label.get(int(label), -1) for label in row] for row in labels],
            dtype=np.int64,
        ).reshape(len(queries), -1)
        # re-scored from the stored rows: the exact path's cosines (to float16's 1e-3)
        rows = self._matrix[np.maximum(slots, 0)].astype(np.float32)
        scores = np.einsum("qkd,qd->qk", rows, queries)
        scores = np.where(slots >= 0, scores, -np.inf).astype(np.float32)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :count]
        return np.take_along_axis(slots, keep, axis=1), np.take_along_axis(scores, keep, axis=1)

    def _remove(self, keys: list[str]) -> None:
        if not keys:
            return
        gone = []
        for key in keys:
            slot = self._slots.pop(key)
            label = int(self._labels[slot])
            gone.append(label)
            del self._slot_of_label[label]
            last = self._count - 1
            if slot != last:
                # the last row moves into the hole: removal stays O(1) per face
                moved_key = self._keys[last]
                self._matrix[slot] = self._matrix[last]
                self._labels[slot] = self._labels[last]
                self._keys[slot] = moved_key
                self._slots[moved_key] = slot
                self._slot_of_label[int(self._labels[slot])] = slot
            self._keys.pop()
            self._count -= 1
        if self._graph is not None:
            self._graph.remove(np.asarray(gone, dtype=np.int64))

    def _reserve(self, size: int) -> None:
        if size <= len(self._matrix):
            return
        capacity = max(size, 2 * len(self._matrix), 1024)
        matrix = np.zeros((capacity, self.dim), dtype=self._matrix.dtype)
        matrix[: self._count] = self._matrix[: self._count]
        labels = np.full(capacity, -1, dtype=np.int64)
        labels[: self._count] = self._labels[: self._count]
        self._matrix, self._labels = matrix, labels

    def _fit_strategy(self) -> None:
        if self._graph is None and self._count > self.exact_limit:
            graph_dim = self._graph_settings.graph_dim
            rows = self._matrix[: self._count]
            self._basis = _principal_basis(rows, graph_dim) if graph_dim < self.dim else None
            graph = self._graph_factory(min(graph_dim, self.dim), self._graph_settings)
            for start in range(0, self._count, 65_536):
                stop = min(self._count, start + 65_536)
                vectors = self._graph_vectors(rows[start:stop].astype(np.float32))
                graph.add(self._labels[start:stop], vectors)
            self._graph = graph
            self._matrix = self._matrix.astype(np.float16)
        elif self._graph is not None and self._count <= self.exact_limit // 2:
            # well below the limit again (mass deletion): the scan is cheaper than the graph
            self._graph = None
            self._basis = None
            self._matrix = self._matrix.astype(np.float32)

    def _graph_vectors(self, vectors: Matrix) -> Matrix:
        if self._basis is None:
            return vectors
        projected: Matrix = np.ascontiguousarray(vectors @ self._basis, dtype=np.float32)
        return projected


def _principal_basis(rows: npt.NDArray[Any], dim: int) -> Matrix:
    """The `dim` directions holding most of the rows' energy (uncentred: inner products)."""
    # a sample of evenly spaced rows fits it as well as all of them, in a second
    sample = rows[:: max(1, len(rows) // 50_000)].astype(np.float32)
    _, directions = np.linalg.eigh((sample.T @ sample).astype(np.float64))
    basis: Matrix = np.ascontiguousarray(directions[:, ::-1][:, :dim], dtype=np.float32)
    return basis


def _ordered(slots: Keys, scores: Matrix) -> tuple[Keys, Matrix]:
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(slots, order, axis=1), np.take_along_axis(scores, order, axis=1)


def _unit(matrix: Matrix) -> Matrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: Matrix = (matrix / np.where(norms == 0.0, 1.0, norms)).astype(np.float32)
    return unit
