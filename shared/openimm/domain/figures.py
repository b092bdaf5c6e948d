"""Figure rows: one face on one file, with its embedding and cluster assignment."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from openimm.domain.entities import dataset_key
from openimm.domain.figure_members import MEMBERS as MEMBERS_TABLE
from openimm.domain.figure_members import MemberIndex, Membership, membership, membership_writes
from openimm.ports import ConditionFailed, Delete, Put, Record, TableStore, Write

log = logging.getLogger(__name__)

FIGURES = "figures"
# on a row read here: the store version it was read at, so that a save writes only
# rows nobody changed (or deleted) since
VERSION = "_version"
# on a row read here: its cluster membership as stored then, so that a save moves the
# figure's index row without reading the figure again
MEMBERSHIP = "_membership"
# how often a write over whatever is stored is tried again when another writer came first
_ATTEMPTS = 5


def encode_vector(vector: npt.NDArray[np.float32]) -> str:
    """Embeddings travel as base64 of little-endian float32 (compact, exact)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def decode_vector(text: str) -> npt.NDArray[np.float32]:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


class FigureBook:
    """All figures of a dataset live in one partition, keyed by FigureId."""

    def __init__(self, table: TableStore) -> None:
        self._table = table
        self._members = MemberIndex(table)

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
        skipped = self._apply(key, rows)
        if skipped:
            raise ConditionFailed(f"figures {skipped} changed meanwhile")
        self._remove(key, [fid for fid in old_ids if fid not in keep])

    def save(self, project: str, dataset: str, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Write changed figure rows; the FigureIds skipped because they changed meanwhile.

        A row read by `all` or `get_many` is written only if still at the version read:
        a file deleted or re-analysed during a clustering run keeps what that did.
        """
        key = dataset_key(project, dataset)
        # a row without a version read is written over whatever is there
        rows = [row if row.get(VERSION) is not None else _stored(row) for row in rows]
        skipped = self._apply(key, rows)
        if skipped:
            log.info("%d figure rows changed meanwhile; left as they are", len(skipped))
        return skipped

    def delete(self, project: str, dataset: str, figure_ids: Sequence[str]) -> None:
        self._remove(dataset_key(project, dataset), figure_ids)

    # ------------------------------------------------------------ membership index

    def start_index(self, project: str, dataset: str) -> None:
        """A new dataset's index is complete from its first figure on."""
        self._members.mark_complete(dataset_key(project, dataset))

    def complete_index(self, project: str, dataset: str) -> int:
        """Index the figures written before the index existed; how many were missing."""
        key = dataset_key(project, dataset)
        if self._members.complete(key):
            return 0
        indexed = self._members.by_figure(key)
        groups: list[tuple[str, list[Write]]] = []
        for record in self._table.scan_partition(FIGURES, key):
            want = membership(record.data)
            have = indexed.get(record.sk, [])
            if [m for _, m in have] == ([] if want is None else [want]):
                continue
            # the figure is written back as read, on its version: a writer that changed
            # it meanwhile indexed it itself, and this one fails instead of undoing that
            writes: list[Write] = [
                Put(FIGURES, key, record.sk, record.data, if_version=record.version),
                *(Delete(MEMBERS_TABLE, key, sk) for sk, _ in have),
                *membership_writes(key, record.sk, None, want),
            ]
            groups.append((record.sk, _one_per_item(writes)))
        self._commit(groups)
        # the ones that failed were rewritten meanwhile, index and all
        self._members.mark_complete(key)
        if groups:
            log.info("%d figures of %s/%s indexed by cluster", len(groups), project, dataset)
        return len(groups)

    def cluster_files(self, project: str, dataset: str, cluster_id: str) -> list[str]:
        """The URIs of the files with a face in this cluster, sorted."""
        key = dataset_key(project, dataset)
        if self._members.complete(key):
            return sorted({m.uri for _, m in self._members.members(key, cluster_id)})
        # written before the index existed and not clustered since: every figure is read
        return sorted(
            {
                str(f["_uri"])
                for f in self.all(project, dataset)
                if f.get("FigureClusterId") == cluster_id
            }
        )

    # ------------------------------------------------------------ writes

    def _apply(self, key: str, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Write rows with their index rows; the FigureIds skipped on their version read.

        A row without VERSION is written over whatever is stored, tried again when
        another writer came first.
        """
        over = {row["FigureId"] for row in rows if VERSION not in row}
        failed = self._commit(self._changes(key, rows))
        retry = [row for row in rows if row["FigureId"] in over and row["FigureId"] in failed]
        for _ in range(_ATTEMPTS):
            if not retry:
                break
            again = set(self._commit(self._changes(key, retry)))
            retry = [row for row in retry if row["FigureId"] in again]
        if retry:
            raise ConditionFailed(f"figures {[r['FigureId'] for r in retry]} kept changing")
        return [fid for fid in failed if fid not in over]

    def _changes(self, key: str, rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[Write]]]:
        """Each row's write, on the version it was read at, with its index writes."""
        unread = [
            row["FigureId"]
            for row in rows
            if VERSION not in row or (row[VERSION] is not None and MEMBERSHIP not in row)
        ]
        stored = {r.sk: r for r in self._table.batch_get(FIGURES, [(key, f) for f in unread])}
        groups: list[tuple[str, list[Write]]] = []
        for row in rows:
            fid = row["FigureId"]
            now = stored.get(fid)
            version = row.get(VERSION, None if now is None else now.version)
            if version is None:
                before = None
            elif VERSION in row and MEMBERSHIP in row:
                before = _read_membership(row[MEMBERSHIP])
            else:
                # at another version than `version` the write fails on its condition
                before = None if now is None else membership(now.data)
            condition: dict[str, Any] = (
                {"if_absent": True} if version is None else {"if_version": version}
            )
            writes: list[Write] = [Put(FIGURES, key, fid, _stored(row), **condition)]
            writes += membership_writes(key, fid, before, membership(row))
            groups.append((fid, writes))
        return groups

    def _remove(self, key: str, figure_ids: Sequence[str]) -> None:
        """Delete figures and their index rows (absent ones are fine)."""
        pending = list(figure_ids)
        for _ in range(_ATTEMPTS):
            if not pending:
                return
            groups: list[tuple[str, list[Write]]] = [
                (
                    record.sk,
                    [
                        Delete(FIGURES, key, record.sk, if_version=record.version),
                        *membership_writes(key, record.sk, membership(record.data), None),
                    ],
                )
                for record in self._table.batch_get(FIGURES, [(key, f) for f in pending])
            ]
            pending = self._commit(groups)
        if pending:
            raise ConditionFailed(f"figures {pending} kept changing")

    def _commit(self, groups: Sequence[tuple[str, list[Write]]]) -> list[str]:
        """Write each figure's group whole, several to a transaction; the ids that failed."""
        failed: list[str] = []
        step = self._table.max_transaction_writes
        chunk: list[tuple[str, list[Write]]] = []
        for number, group in enumerate(groups):
            chunk.append(group)
            size = sum(len(writes) for _, writes in chunk)
            following = groups[number + 1][1] if number + 1 < len(groups) else None
            if following is not None and size + len(following) <= step:
                continue
            try:
                self._table.transact([w for _, writes in chunk for w in writes])
            except ConditionFailed:
                # one stale row fails its chunk: write the others one by one
                for fid, writes in chunk:
                    try:
                        self._table.transact(writes)
                    except ConditionFailed:
                        failed.append(fid)
            chunk = []
        return failed


def _versioned(record: Record) -> dict[str, Any]:
    found = membership(record.data)
    stamp = None if found is None else [found.cluster_id, found.uri]
    return {**record.data, VERSION: record.version, MEMBERSHIP: stamp}


def _one_per_item(writes: list[Write]) -> list[Write]:
    """The last write of each item: a Delete then a Put of one index row is the Put."""
    last = {(w.table, w.sk): w for w in writes}
    return list(last.values())


def _read_membership(stamp: list[str] | None) -> Membership | None:
    return None if stamp is None else Membership(stamp[0], stamp[1])


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in (VERSION, MEMBERSHIP)}
