"""Figure rows: one face on one file, with its embedding and cluster assignment."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from openimm.domain.entities import dataset_key
from openimm.ports import ConditionFailed, Delete, Put, Record, TableStore

log = logging.getLogger(__name__)

FIGURES = "figures"
# on a row read here: the store version it was read at, so that a save writes only
# rows nobody changed (or deleted) since
VERSION = "_version"


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
            yield _versioned(record)

    def get_many(
        self, project: str, dataset: str, figure_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The rows of these figures, in that order (missing ones left out)."""
        key = dataset_key(project, dataset)
        return [
            _versioned(r) for r in self._table.batch_get(FIGURES, [(key, f) for f in figure_ids])
        ]

    def replace_file_figures(
        self, project: str, dataset: str, old_ids: Sequence[str], rows: Sequence[dict[str, Any]]
    ) -> None:
        """Write a file's figures and delete the ones it no longer has.

        A row carrying VERSION is written only if still at that version, and one whose
        VERSION is None only if absent: ConditionFailed when another writer came first.
        """
        key = dataset_key(project, dataset)
        keep = {row["FigureId"] for row in rows}
        writes: list[Put | Delete] = [
            Put(FIGURES, key, row["FigureId"], _stored(row), **_condition(row)) for row in rows
        ]
        writes += [Delete(FIGURES, key, fid) for fid in old_ids if fid not in keep]
        self._write(writes)

    def save(self, project: str, dataset: str, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Write changed figure rows; the FigureIds skipped because they changed meanwhile.

        A row read by `all` or `get_many` is written only if still at the version read:
        a file deleted or re-analysed during a clustering run keeps what that did.
        """
        key = dataset_key(project, dataset)
        puts = [
            Put(FIGURES, key, row["FigureId"], _stored(row), if_version=row.get(VERSION))
            for row in rows
        ]
        skipped: list[str] = []
        step = self._table.max_transaction_writes
        for start in range(0, len(puts), step):
            chunk = puts[start : start + step]
            try:
                self._table.transact(chunk)
            except ConditionFailed:
                # one stale row fails its chunk: write the others one by one
                for put in chunk:
                    try:
                        self._table.transact([put])
                    except ConditionFailed:
                        skipped.append(put.sk)
        if skipped:
            log.info("%d figure rows changed meanwhile; left as they are", len(skipped))
        return skipped

    def delete(self, project: str, dataset: str, figure_ids: Sequence[str]) -> None:
        key = dataset_key(project, dataset)
        self._write([Delete(FIGURES, key, fid) for fid in figure_ids])

    def _write(self, writes: Sequence[Put | Delete]) -> None:
        # chunks, not one transaction: each write is idempotent on its own
        step = self._table.max_transaction_writes
        for start in range(0, len(writes), step):
            self._table.transact(writes[start : start + step])


def _versioned(record: Record) -> dict[str, Any]:
    return {**record.data, VERSION: record.version}


def _condition(row: dict[str, Any]) -> dict[str, Any]:
    if VERSION not in row:
        return {}
    version = row[VERSION]
    return {"if_absent": True} if version is None else {"if_version": version}


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != VERSION}
