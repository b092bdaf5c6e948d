"""Figure rows: one face on one file, with its embedding and cluster assignment."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from openimm.domain.entities import dataset_key
from openimm.domain.figure_members import MemberIndex
from openimm.domain.figure_writes import FIGURES as FIGURES
from openimm.domain.figure_writes import VERSION as VERSION
from openimm.domain.figure_writes import FigureWrites, stored, versioned
from openimm.ports import ConditionFailed, TableStore

log = logging.getLogger(__name__)

# rows `each` reads at a time
_BATCH = 1000


def encode_vector(vector: npt.NDArray[np.float32]) -> str:
    """Embeddings travel as base64 of little-endian float32 (compact, exact)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def decode_vector(text: str) -> npt.NDArray[np.float32]:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


class FigureBook:
    """All figures of a dataset live in one partition, keyed by FigureId."""

    def __init__(self, table: TableStore) -> None:
        self._table = table
        self._writes = FigureWrites(table)
        self._members = MemberIndex(table)

    def all(self, project: str, dataset: str) -> Iterator[dict[str, Any]]:
        """Every figure row of a dataset."""
        for record in self._table.scan_partition(FIGURES, dataset_key(project, dataset)):
            yield versioned(record)

    def get_many(
        self, project: str, dataset: str, figure_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The rows of these figures, in that order (missing ones left out)."""
        key = dataset_key(project, dataset)
        return [
            versioned(r) for r in self._table.batch_get(FIGURES, [(key, f) for f in figure_ids])
        ]

    def each(
        self, project: str, dataset: str, figure_ids: Sequence[str]
    ) -> Iterator[dict[str, Any]]:
        """`get_many` read a batch at a time: 100k rows with their vectors held at once
        were 600 MB of dicts."""
        for start in range(0, len(figure_ids), _BATCH):
            yield from self.get_many(project, dataset, figure_ids[start : start + _BATCH])

    def replace_file_figures(
        self, project: str, dataset: str, old_ids: Sequence[str], rows: Sequence[dict[str, Any]]
    ) -> None:
        """Write a file's figures and delete the ones it no longer has.

        A row carrying VERSION is written only if still at that version, and one whose
        VERSION is None only if absent: ConditionFailed when another writer came first.
        """
        key = dataset_key(project, dataset)
        keep = {row["FigureId"] for row in rows}
        skipped = self._writes.apply(key, rows)
        if skipped:
            raise ConditionFailed(f"figures {skipped} changed meanwhile")
        self._writes.remove(key, [fid for fid in old_ids if fid not in keep])

    def save(self, project: str, dataset: str, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Write changed figure rows; the FigureIds skipped because they changed meanwhile.

        A row read by `all` or `get_many` is written only if still at the version read:
        a file deleted or re-analysed during a clustering run keeps what that did.
        """
        key = dataset_key(project, dataset)
        # a row without a version read is written over whatever is there
        rows = [row if row.get(VERSION) is not None else stored(row) for row in rows]
        skipped = self._writes.apply(key, rows)
        if skipped:
            log.info("%d figure rows changed meanwhile; left as they are", len(skipped))
        return skipped

    def delete(self, project: str, dataset: str, figure_ids: Sequence[str]) -> set[str]:
        """Delete figures (absent ones are fine); the FigureClusterIds they had."""
        return self._writes.remove(dataset_key(project, dataset), figure_ids)

    # ------------------------------------------------------------ the index by cluster

    def start_index(self, project: str, dataset: str) -> None:
        """A new dataset's index is complete from its first figure on."""
        self._members.mark_complete(dataset_key(project, dataset))

    def complete_index(self, project: str, dataset: str) -> int:
        """Index the figures written before the index existed; how many were missing."""
        added = self._writes.complete_index(dataset_key(project, dataset))
        if added:
            log.info("%d figures of %s/%s indexed by cluster", added, project, dataset)
        return added

    def cluster_rows(
        self, project: str, dataset: str, cluster_ids: Iterable[str]
    ) -> list[dict[str, Any]]:
        """The rows of the figures in these clusters (read a batch at a time).

        Through the index where it is complete: a cluster's faces, not every figure of
        the dataset (100k figure rows took 4.5 s to read); otherwise every row is read.
        """
        key = dataset_key(project, dataset)
        wanted = set(cluster_ids)
        if not self._members.complete(key):
            return [f for f in self.all(project, dataset) if f.get("FigureClusterId") in wanted]
        ids = [fid for cid in sorted(wanted) for fid, _ in self._members.members(key, cid)]
        # a figure that left the cluster since its index row was read is not a member
        return [f for f in self.each(project, dataset, ids) if f.get("FigureClusterId") in wanted]

    def cluster_files(self, project: str, dataset: str, cluster_id: str) -> list[str]:
        """The URIs of the files with a face in this cluster, sorted."""
        key = dataset_key(project, dataset)
        if self._members.complete(key):
            return sorted({m.uri for _, m in self._members.members(key, cluster_id)})
        # written before the index existed and not clustered since: every figure is read
        return sorted({str(f["_uri"]) for f in self.cluster_rows(project, dataset, [cluster_id])})
