"""Figure rows: one face on one file, with its embedding and cluster assignment."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from openimm.domain.entities import dataset_key
from openimm.ports import Delete, Put, TableStore

FIGURES = "figures"


def encode_vector(vector: npt.NDArray[np.float32]) -> str:
    """Embeddings travel as base64 of little-endian float32 (compact, exact)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def decode_vector(text: str) -> npt.NDArray[np.float32]:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


class FigureBook:
    """All figures of a dataset live in one partition, keyed by FigureId."""

    def __init__(self, table: TableStore) -> None:
        self._table = table

    def all(self, project: str, dataset: str) -> Iterator[dict[str, Any]]:
        """Every figure row of a dataset."""
        for record in self._table.scan_partition(FIGURES, dataset_key(project, dataset)):
            yield record.data

    def get_many(
        self, project: str, dataset: str, figure_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The rows of these figures, in that order (missing ones left out)."""
        key = dataset_key(project, dataset)
        return [r.data for r in self._table.batch_get(FIGURES, [(key, f) for f in figure_ids])]

    def replace_file_figures(
        self, project: str, dataset: str, old_ids: Sequence[str], rows: Sequence[dict[str, Any]]
    ) -> None:
        """Write a file's figures and delete the ones it no longer has."""
        key = dataset_key(project, dataset)
        keep = {row["FigureId"] for row in rows}
        writes: list[Put | Delete] = [Put(FIGURES, key, row["FigureId"], row) for row in rows]
        writes += [Delete(FIGURES, key, fid) for fid in old_ids if fid not in keep]
        self._write(writes)

    def save(self, project: str, dataset: str, rows: Sequence[dict[str, Any]]) -> None:
        """Write figure rows (after a clustering run changed them)."""
        key = dataset_key(project, dataset)
        self._write([Put(FIGURES, key, row["FigureId"], row) for row in rows])

    def delete(self, project: str, dataset: str, figure_ids: Sequence[str]) -> None:
        key = dataset_key(project, dataset)
        self._write([Delete(FIGURES, key, fid) for fid in figure_ids])

    def _write(self, writes: Sequence[Put | Delete]) -> None:
        # chunks, not one transaction: each write is idempotent on its own
        step = self._table.max_transaction_writes
        for start in range(0, len(writes), step):
            self._table.transact(writes[start : start + step])
