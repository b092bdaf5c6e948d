"""A dataset's faces as binary segments in the blob store, read in one go by a clustering run.

Reading 100k figure rows and decoding their base64 vectors costs seconds, while a run
that adds 1k faces needs only a second and a half of clustering. So each dataset keeps
what clustering needs of every face (vector, file, cluster, confidence, seed, pinned,
moved-from, model, row version) as segments in the work bucket: a base and the
segments appended after it, each later one overriding the earlier ones face by face.

The figure rows stay the source of truth; the shard is a cache that is never trusted
beyond what it can prove. Every committed write of figure rows leaves a journal entry
naming them in the same transaction (figure_writes.py JOURNAL). Invariant: a face named by
no journal entry is, in the shard, exactly as its row is. A run reads the pointer row
(which segments), the journal, the pointer again (a concurrent fold changes it before
deleting entries: then read again), the segments, and the rows the journal names: that
is every face as the rows hold it. Folding appends a segment of those rows, moves the
pointer by a conditional write (a stale run's fold fails there and leaves the journal
alone), and only then deletes the entries it took in: a crash in between leaves entries
that the next fold takes in again, which changes nothing. With no pointer, an unreadable
segment or a format it does not know, the shard is built again from every row.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import struct
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from openimm.domain.entities import dataset_key
from openimm.domain.figure_writes import JOURNAL
from openimm.domain.figures import VERSION, FigureBook, decode_vector
from openimm.grouping import UNAVAILABLE
from openimm.ports import BlobNotFound, BlobStore, ConditionFailed, Delete, Record, TableStore

log = logging.getLogger(__name__)

# one row per dataset: the segments that make up its shard, oldest first
SHARDS = "face_shards"
_POINTER = "faces"
_MAGIC = b"OIMMFACE2\n"
# the first format, still read: string columns whole in the header
_MAGIC_V1 = b"OIMMFACE1\n"
_HEADER = struct.Struct("<Q")
# appended faces beyond this share of the base, or this many segments: write a new base
_COMPACT_SHARE = 0.25
_MAX_SEGMENTS = 16
# pointer moved between two reads of it this many times in a row: build from the rows
_READ_ATTEMPTS = 3

Floats = npt.NDArray[np.float32]

# rows VectorRows.stack gathers at a time (20 MB of 640-D vectors), and the shortest
# run of consecutive rows it copies as a slice instead
_STACK_ROWS = 8192
_RUN_ROWS = 16


class ShardUnreadable(Exception):
    """A segment is missing, truncated or of another format: build from the rows."""


class VectorRows:
    """Face vectors left in the matrices they were read into (views on the segments).

    Row i is blocks[block[i]][row[i]]: overlaying segments and taking faces move only
    these indices. A copy of 100k vectors of 640 dimensions (256 MB) took half a second
    and more on a busy machine; clustering makes the one copy it needs itself.
    """

    def __init__(
        self,
        blocks: list[Floats],
        block: npt.NDArray[np.intp],
        row: npt.NDArray[np.intp],
        width: int,
    ) -> None:
        self.blocks = blocks
        self.block = block
        self.row = row
        self.width = width

    @staticmethod
    def of(matrix: Floats) -> VectorRows:
        """The rows of one matrix, in order."""
        n = matrix.shape[0]
        width = matrix.shape[1] if matrix.ndim == 2 else 0
        return VectorRows([matrix], np.zeros(n, np.intp), np.arange(n, dtype=np.intp), width)

    def __len__(self) -> int:
        return len(self.row)

    def __getitem__(self, i: int) -> Floats:
        vector: Floats = self.blocks[int(self.block[i])][int(self.row[i])]
        return vector

    def __iter__(self) -> Iterator[Floats]:
        blocks = self.blocks
        for b, r in zip(self.block.tolist(), self.row.tolist(), strict=True):
            yield blocks[b][r]

    def take(self, index: npt.NDArray[np.intp]) -> VectorRows:
        """These rows, in this order."""
        return VectorRows(self.blocks, self.block[index], self.row[index], self.width)

    def stack(self) -> Floats:
        """One float32 matrix of every row, in order."""
        n = len(self)
        out = np.empty((n, self.width), dtype=np.float32)
        if not n:
            return out
        # runs of consecutive rows of one block (a shard's faces in id order are mostly
        # the base's, a few new ones between) are copied as slices: no gather's fresh
        # temporary, and not np.take(out=...), which faulted 900k pages for 256 MB
        cut = np.flatnonzero((np.diff(self.block) != 0) | (np.diff(self.row) != 1)) + 1
        starts = np.concatenate(([0], cut))
        stops = np.concatenate((cut, [n]))
        long = stops - starts >= _RUN_ROWS
        for start, stop in zip(starts[long].tolist(), stops[long].tolist(), strict=True):
            first = int(self.row[start])
            out[start:stop] = self.blocks[int(self.block[start])][first : first + stop - start]
        # the rest gathered a block and a few thousand rows at a time
        rest = np.flatnonzero(np.repeat(~long, stops - starts))
        for start in range(0, rest.size, _STACK_ROWS):
            at = rest[start : start + _STACK_ROWS]
            for b in np.unique(self.block[at]).tolist():
                mine = at[self.block[at] == b]
                out[mine] = self.blocks[b][self.row[mine]]
        return out

    @staticmethod
    def concatenate(parts: Sequence[VectorRows]) -> VectorRows:
        """The rows of each part, one after the other."""
        widths = {p.width for p in parts if len(p)}
        if len(widths) > 1:
            raise ShardUnreadable("segments of different vector widths")
        blocks: list[Floats] = []
        block, row = [], []
        for part in parts:
            block.append(part.block + len(blocks))
            row.append(part.row)
            blocks.extend(part.blocks)
        return VectorRows(
            blocks,
            np.concatenate(block) if block else np.zeros(0, np.intp),
            np.concatenate(row) if row else np.zeros(0, np.intp),
            widths.pop() if widths else 0,
        )


@dataclass
class Faces:
    """Every face of a dataset as clustering sees it, one entry per figure, sorted by id."""

    figure_ids: list[str]
    versions: npt.NDArray[np.int64]
    vectors: VectorRows
    files: list[str]
    clusters: list[str]
    # FigureClusterConfidence as stored; NaN when the row has none
    confidences: npt.NDArray[np.float64]
    seed: npt.NDArray[np.bool_]
    pinned: npt.NDArray[np.bool_]
    moved_from: list[str | None]
    models: list[str | None]
    # what a cluster's statistics and cover ranking need (clusters.py), so that a run
    # recounts the clusters it changed without reading their rows
    video: npt.NDArray[np.bool_]
    quality: npt.NDArray[np.float64]
    width: npt.NDArray[np.int64]
    # NaN: not measured
    ages: npt.NDArray[np.float64]
    genders: list[str | None]
    gender_confidence: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.figure_ids)

    @staticmethod
    def from_rows(
        rows: Iterable[dict[str, Any]], model: str | None, dims: int | None = None
    ) -> Faces:
        """The faces of these rows, sorted by id: those with an embedding by `model`.

        A row without a model counts as `model`'s; `model` None takes every row. Each
        row is read into columns and let go: a shard built from 1M rows held every
        row's dict at once (7 GB with 128-D vectors).
        """
        columns = _RowColumns()
        for row in rows:
            if "_embedding" in row and row.get("_model", model) == model:
                columns.add(row)
        return columns.faces(dims)

    def take(self, index: npt.NDArray[np.intp]) -> Faces:
        """These entries, in this order."""
        at = index.tolist()
        return Faces(
            figure_ids=[self.figure_ids[i] for i in at],
            versions=self.versions[index],
            vectors=self.vectors.take(index),
            files=[self.files[i] for i in at],
            clusters=[self.clusters[i] for i in at],
            confidences=self.confidences[index],
            seed=self.seed[index],
            pinned=self.pinned[index],
            moved_from=[self.moved_from[i] for i in at],
            models=[self.models[i] for i in at],
            video=self.video[index],
            quality=self.quality[index],
            width=self.width[index],
            ages=self.ages[index],
            genders=[self.genders[i] for i in at],
            gender_confidence=self.gender_confidence[index],
        )


def _concatenate(parts: Sequence[Faces]) -> Faces:
    return Faces(
        figure_ids=[f for p in parts for f in p.figure_ids],
        versions=np.concatenate([p.versions for p in parts]),
        vectors=VectorRows.concatenate([p.vectors for p in parts]),
        files=[f for p in parts for f in p.files],
        clusters=[c for p in parts for c in p.clusters],
        confidences=np.concatenate([p.confidences for p in parts]),
        seed=np.concatenate([p.seed for p in parts]),
        pinned=np.concatenate([p.pinned for p in parts]),
        moved_from=[m for p in parts for m in p.moved_from],
        models=[m for p in parts for m in p.models],
        video=np.concatenate([p.video for p in parts]),
        quality=np.concatenate([p.quality for p in parts]),
        width=np.concatenate([p.width for p in parts]),
        ages=np.concatenate([p.ages for p in parts]),
        genders=[g for p in parts for g in p.genders],
        gender_confidence=np.concatenate([p.gender_confidence for p in parts]),
    )


@dataclass
class Segment:
    """Faces set by one fold and the figures it removed (deleted, or no longer a face)."""

    faces: Faces
    removed: list[str] = field(default_factory=list)


class _RowColumns:
    """What Faces keeps of figure rows, gathered one row at a time."""

    def __init__(self) -> None:
        self.blocks: list[Floats] = []
        self.filled = 0
        self.ids: list[str] = []
        self.versions: list[int] = []
        self.files: list[str] = []
        self.clusters: list[str] = []
        self.confidences: list[float] = []
        self.seed: list[bool] = []
        self.pinned: list[bool] = []
        self.moved_from: list[str | None] = []
        self.models: list[str | None] = []
        self.video: list[bool] = []
        self.quality: list[float] = []
        self.width: list[int] = []
        self.ages: list[float] = []
        self.genders: list[str | None] = []
        self.gender_confidence: list[float] = []
        # one string object per distinct cluster, model or gender, not one per row
        self._shared: dict[str, str] = {}

    def add(self, r: dict[str, Any]) -> None:
        """Take one row's columns; its vector goes into the current block."""
        vector = decode_vector(r["_embedding"])
        if not self.blocks or self.filled == _STACK_ROWS:
            self.blocks.append(np.empty((_STACK_ROWS, vector.size), dtype=np.float32))
            self.filled = 0
        block = self.blocks[-1]
        if vector.size != self.blocks[0].shape[1]:
            raise ValueError("vectors of different widths from one embedder")
        block[self.filled] = vector
        self.filled += 1
        share = self._shared.setdefault
        self.ids.append(r["FigureId"])
        self.versions.append(int(r.get(VERSION) or 0))
        self.files.append(r["_file"])
        cluster = r.get("FigureClusterId", UNAVAILABLE)
        self.clusters.append(share(cluster, cluster))
        confidence = r.get("FigureClusterConfidence")
        self.confidences.append(np.nan if confidence is None else float(confidence))
        self.seed.append(bool(r.get("_seed")))
        self.pinned.append(bool(r.get("_pinned")))
        self.moved_from.append(r.get("_moved_from"))
        self.models.append(None if (m := r.get("_model")) is None else share(m, m))
        self.video.append(r.get("_media") == "video")
        self.quality.append(float(r.get("FaceQuality", 0)))
        self.width.append(int(r.get("Boundary", {}).get("Width", 0)))
        self.ages.append(np.nan if r.get("Age") is None else float(r["Age"]))
        self.genders.append(share(g, g) if (g := r.get("Gender")) else None)
        self.gender_confidence.append(float(r.get("GenderConfidence", 1.0)))

    def faces(self, dims: int | None) -> Faces:
        """The rows taken, sorted by figure id; vectors left in their blocks."""
        taken = np.arange(len(self.ids), dtype=np.intp)
        if self.blocks:
            self.blocks[-1] = self.blocks[-1][: self.filled]
            width = self.blocks[0].shape[1]
            vectors = VectorRows(self.blocks, taken // _STACK_ROWS, taken % _STACK_ROWS, width)
        else:
            vectors = VectorRows.of(np.zeros((0, dims or 0), dtype=np.float32))
        arrived = Faces(
            figure_ids=self.ids,
            versions=np.array(self.versions, dtype=np.int64),
            vectors=vectors,
            files=self.files,
            clusters=self.clusters,
            confidences=np.array(self.confidences, dtype=np.float64),
            seed=np.array(self.seed, dtype=bool),
            pinned=np.array(self.pinned, dtype=bool),
            moved_from=self.moved_from,
            models=self.models,
            video=np.array(self.video, dtype=bool),
            quality=np.array(self.quality, dtype=np.float64),
            width=np.array(self.width, dtype=np.int64),
            ages=np.array(self.ages, dtype=np.float64),
            genders=self.genders,
            gender_confidence=np.array(self.gender_confidence, dtype=np.float64),
        )
        order = sorted(range(len(self.ids)), key=self.ids.__getitem__)
        return arrived.take(np.array(order, dtype=np.intp))


def encode_segment(segment: Segment) -> bytes:
    """Magic, a JSON header, then the arrays as little-endian bytes.

    Figure ids are in the header; the other string columns (files, clusters, ...)
    repeat, so the header holds each one's distinct values and the body their codes:
    100k faces' header took 0.06-0.07 s to decode with every column whole, 0.02 s so.
    """
    faces = segment.faces
    coded = [_coded(getattr(faces, name)) for name in _CODED]
    header = {
        "count": len(faces),
        "dims": faces.vectors.width,
        "figure_ids": faces.figure_ids,
        **{name: values for name, (values, _) in zip(_CODED, coded, strict=True)},
        "removed": segment.removed,
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    flags = (
        faces.seed.astype(np.uint8)
        | (faces.pinned.astype(np.uint8) << 1)
        | (faces.video.astype(np.uint8) << 2)
    )
    numbers = (faces.confidences, faces.quality, faces.ages, faces.gender_confidence)
    return b"".join(
        [
            _MAGIC,
            _HEADER.pack(len(text)),
            text,
            faces.versions.astype("<i8").tobytes(),
            faces.width.astype("<i8").tobytes(),
            *(column.astype("<f8").tobytes() for column in numbers),
            flags.tobytes(),
            *(codes.astype("<i4").tobytes() for _, codes in coded),
            # joined from the matrix itself: a copy of it as bytes first was one more
            # 2.5 GB at 1M faces
            faces.vectors.stack().astype("<f4", copy=False).data,
        ]
    )


# the string columns a segment holds as distinct values and codes (-1: None)
_CODED = ("files", "clusters", "moved_from", "models", "genders")


def _coded(column: Sequence[str | None]) -> tuple[list[str], npt.NDArray[np.int32]]:
    """A column's distinct values (first seen first) and each entry's index (-1: None)."""
    index: dict[str | None, int] = {None: -1}
    codes = [index.setdefault(value, len(index) - 1) for value in column]
    values = [value for value in index if value is not None]
    return values, np.array(codes, dtype=np.int32)


def _decoded(values: Any, codes: npt.NDArray[np.int32]) -> list[Any]:
    """The column `_coded` gave these values and codes of."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ShardUnreadable("face shard segment values are not strings")
    if codes.size and (int(codes.min()) < -1 or int(codes.max()) >= len(values)):
        raise ShardUnreadable("face shard segment codes out of range")
    # -1 reads the None appended last
    return list(map([*values, None].__getitem__, codes.tolist()))


def decode_segment(data: bytes | mmap.mmap) -> Segment:
    """The segment `encode_segment` wrote (or its first format); ShardUnreadable else.

    Its arrays are views on `data`, which they keep alive.
    """
    try:
        magic = data[: len(_MAGIC)]
        if magic == _MAGIC:
            coded = True
        elif magic == _MAGIC_V1:
            coded = False  # every column whole in the header
        else:
            raise ShardUnreadable("not a face shard segment")
        at = len(_MAGIC)
        (length,) = _HEADER.unpack_from(data, at)
        at += _HEADER.size
        header = json.loads(data[at : at + length])
        at += length
        n, dims = int(header["count"]), int(header["dims"])
        size = at + 6 * 8 * n + n + (4 * n * len(_CODED) if coded else 0) + 4 * n * dims
        if len(data) != size:
            raise ShardUnreadable("truncated face shard segment")
        # views on the blob's bytes, read-only: nothing changes a shard's faces in place
        integers = [np.frombuffer(data, "<i8", n, at + 8 * n * k) for k in (0, 1)]
        at += 16 * n
        numbers = [np.frombuffer(data, "<f8", n, at + 8 * n * k) for k in range(4)]
        at += 32 * n
        flags = np.frombuffer(data, np.uint8, n, at)
        at += n
        strings = {name: header[name] for name in _CODED}
        if coded:
            for name in _CODED:
                strings[name] = _decoded(header[name], np.frombuffer(data, "<i4", n, at))
                at += 4 * n
        vectors = np.frombuffer(data, "<f4", n * dims, at).reshape(n, dims)
        faces = Faces(
            figure_ids=header["figure_ids"],
            versions=integers[0],
            vectors=VectorRows.of(vectors),
            files=strings["files"],
            clusters=strings["clusters"],
            confidences=numbers[0],
            seed=(flags & 1).astype(bool),
            pinned=(flags & 2).astype(bool),
            moved_from=strings["moved_from"],
            models=strings["models"],
            video=(flags & 4).astype(bool),
            quality=numbers[1],
            width=integers[1],
            ages=numbers[2],
            genders=strings["genders"],
            gender_confidence=numbers[3],
        )
        columns = (faces.files, faces.clusters, faces.moved_from, faces.models, faces.genders)
        if len(faces.figure_ids) != n or any(len(c) != n for c in columns):
            raise ShardUnreadable("face shard segment columns disagree")
        return Segment(faces, list(header["removed"]))
    except (ValueError, KeyError, TypeError, struct.error) as error:
        raise ShardUnreadable(f"unreadable face shard segment: {error}") from error


def overlay(segments: Sequence[Segment]) -> Faces:
    """Segments applied in order (a later one overrides a face), sorted by figure id."""
    if len(segments) == 1 and not segments[0].removed:
        return segments[0].faces  # written sorted, one entry per figure
    latest: dict[str, int] = {}
    offset = 0
    for segment in segments:
        for figure_id in segment.removed:
            latest.pop(figure_id, None)
        for i, figure_id in enumerate(segment.faces.figure_ids):
            latest[figure_id] = offset + i
        offset += len(segment.faces)
    order = np.fromiter((latest[f] for f in sorted(latest)), dtype=np.intp, count=len(latest))
    return _concatenate([s.faces for s in segments]).take(order)


@dataclass
class ShardRead:
    """Faces as the rows hold them, and what folding them into the shard would write."""

    faces: Faces
    # the segment that brings the stored shard up to these faces (None: nothing to add)
    fold: Segment | None
    # the pointer read (None: no shard yet, or rebuilt from the rows) and its segments
    pointer: Record | None
    segment_uris: list[str]
    # faces in each of those segments
    counts: list[int]
    journal: list[str]
    rebuilt: bool


class FaceShards:
    """Each dataset's face shard: read consistently with the figure rows, folded forward."""

    def __init__(
        self,
        table: TableStore,
        blobs: BlobStore,
        figures: FigureBook,
        work_prefix: str,
        model: str | None = None,
    ) -> None:
        self._table = table
        self._blobs = blobs
        self._figures = figures
        self._prefix = work_prefix.rstrip("/")
        # the embedder whose faces the shard holds; another's rows stay out of it
        self._model = model

    def read(self, project: str, dataset: str) -> ShardRead:
        """Every face of the dataset (rows with an embedding), as its rows hold it now."""
        key = dataset_key(project, dataset)
        for _ in range(_READ_ATTEMPTS):
            pointer = self._table.get(SHARDS, key, _POINTER)
            journal = list(self._table.scan_partition(JOURNAL, key))
            again = self._table.get(SHARDS, key, _POINTER)
            if _version(again) != _version(pointer):
                continue  # a fold moved it (and may have dropped entries): read again
            if pointer is None or pointer.data.get("model") != self._model:
                break
            try:
                return self._read_segments(project, dataset, pointer, journal)
            except BlobNotFound:
                continue  # compacted away meanwhile, most likely: the pointer moved on
            except ShardUnreadable as error:
                log.warning("face shard of %s unusable (%s): built from the rows", key, error)
                break
        else:
            log.info("face shard of %s missing a segment or moving: built from the rows", key)
        # every entry of this journal is in the rows read after it: taken in by the rebuild
        journal = list(self._table.scan_partition(JOURNAL, key))
        pointer = self._table.get(SHARDS, key, _POINTER)
        faces = Faces.from_rows(self._figures.all(project, dataset), self._model)
        return ShardRead(
            faces=faces,
            fold=Segment(faces),
            pointer=pointer,
            segment_uris=[],
            counts=[],
            journal=[r.sk for r in journal],
            rebuilt=True,
        )

    def _read_segments(
        self, project: str, dataset: str, pointer: Record, journal: list[Record]
    ) -> ShardRead:
        uris = [str(u) for u in pointer.data["segments"]]
        segments = [decode_segment(self._blobs.read_mapped(uri)) for uri in uris]
        counts = [len(s.faces) for s in segments]
        named = sorted({str(f) for entry in journal for f in entry.data.get("figures", [])})
        fold = None
        if named:
            rows = self._figures.each(project, dataset, named)
            dims = segments[0].faces.vectors.width if segments else None
            fold = Segment(Faces.from_rows(rows, self._model, dims), removed=named)
            segments.append(fold)
        return ShardRead(
            faces=overlay(segments),
            fold=fold,
            pointer=pointer,
            segment_uris=uris,
            counts=counts,
            journal=[r.sk for r in journal],
            rebuilt=False,
        )

    def fold(self, project: str, dataset: str, read: ShardRead) -> bool:
        """Store what `read` took in from the rows; False when another fold came first."""
        if read.fold is None:
            return True
        key = dataset_key(project, dataset)
        counts = [*read.counts, len(read.fold.faces)]
        compact = (
            read.rebuilt
            or len(counts) > _MAX_SEGMENTS
            or sum(counts[1:]) > _COMPACT_SHARE * max(counts[0], 1)
        )
        segment = Segment(read.faces) if compact else read.fold
        uri = f"{self._prefix}/face-shards/{key}/{uuid.uuid4().hex}.seg"
        self._blobs.write(uri, encode_segment(segment), content_type="application/octet-stream")
        uris = [uri] if compact else [*read.segment_uris, uri]
        data = {
            "segments": uris,
            "counts": [len(read.faces)] if compact else counts,
            "model": self._model,
        }
        try:
            if read.pointer is None:
                self._table.put(SHARDS, key, _POINTER, data, if_absent=True)
            else:
                self._table.put(SHARDS, key, _POINTER, data, if_version=read.pointer.version)
        except ConditionFailed:
            # another fold moved the pointer since: its shard stands, this one is dropped
            with contextlib.suppress(BlobNotFound):
                self._blobs.remove(uri)
            return False
        deletes = [Delete(JOURNAL, key, sk) for sk in read.journal]
        step = self._table.max_transaction_writes
        for start in range(0, len(deletes), step):
            self._table.transact(deletes[start : start + step])
        if compact:
            for old in read.segment_uris:
                with contextlib.suppress(BlobNotFound):
                    self._blobs.remove(old)
        return True


def _version(record: Record | None) -> int | None:
    return None if record is None else record.version
