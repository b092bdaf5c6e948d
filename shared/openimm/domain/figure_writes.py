"""Writes of figure rows, each with its row in the index by cluster, in one transaction.

Every write of a figure goes through here, so the index (domain/figure_members.py)
moves with the figure: a figure row's write is conditional on the version read, and
the index rows it changes (out of the cluster it was in, into the one it is in now)
are in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from openimm.domain.figure_members import (
    MEMBERS,
    MemberIndex,
    Membership,
    membership,
    membership_writes,
)
from openimm.ports import ConditionFailed, Delete, Put, Record, TableStore, Write

FIGURES = "figures"
# on a row read here: the store version it was read at, so that a save writes only
# rows nobody changed (or deleted) since
VERSION = "_version"
# on a row read here: its cluster membership as stored then, so that a save moves the
# figure's index row without reading the figure again
MEMBERSHIP = "_membership"
# how often a write over whatever is stored is tried again when another writer came first
_ATTEMPTS = 5
# One row per committed transaction of figure writes, naming the figures, written in that
# transaction: what changed since the dataset's face shard last took it in
# (face_shard.py). A write that commits always leaves its entry; the shard's owner
# deletes the entries it took in.
JOURNAL = "figure_journal"


class FigureWrites:
    """Writes and deletes of one table's figure rows, their index rows with them."""

    def __init__(self, table: TableStore) -> None:
        self._table = table
        self._members = MemberIndex(table)

    def apply(self, key: str, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Write rows with their index rows; the FigureIds skipped on their version read.

        A row carrying VERSION is written only if still at that version (None: only if
        absent); one without VERSION is written over whatever is stored, tried again
        when another writer came first.
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

    def complete_index(self, key: str) -> int:
        """Index the figures written before the index existed; how many were missing."""
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
                *(Delete(MEMBERS, key, sk) for sk, _ in have),
                *membership_writes(key, record.sk, None, want),
            ]
            groups.append((record.sk, _one_per_item(writes)))
        self._commit(groups)
        # the ones that failed were rewritten meanwhile, index and all
        self._members.mark_complete(key)
        return len(groups)

    def _changes(self, key: str, rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[Write]]]:
        """Each row's write, on the version it was read at, with its index writes."""
        unread = [
            row["FigureId"]
            for row in rows
            if VERSION not in row or (row[VERSION] is not None and MEMBERSHIP not in row)
        ]
        found = {r.sk: r for r in self._table.batch_get(FIGURES, [(key, f) for f in unread])}
        groups: list[tuple[str, list[Write]]] = []
        for row in rows:
            fid = row["FigureId"]
            now = found.get(fid)
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
            writes: list[Write] = [Put(FIGURES, key, fid, stored(row), **condition)]
            writes += membership_writes(key, fid, before, membership(row))
            groups.append((fid, writes))
        return groups

    def remove(self, key: str, figure_ids: Sequence[str]) -> set[str]:
        """Delete figures and their index rows (absent ones are fine); the FigureClusterIds
        the deleted ones had, as read for their deletion."""
        pending = list(figure_ids)
        clusters: set[str] = set()
        for _ in range(_ATTEMPTS):
            if not pending:
                return clusters
            records = self._table.batch_get(FIGURES, [(key, f) for f in pending])
            groups: list[tuple[str, list[Write]]] = [
                (
                    record.sk,
                    [
                        Delete(FIGURES, key, record.sk, if_version=record.version),
                        *membership_writes(key, record.sk, membership(record.data), None),
                    ],
                )
                for record in records
            ]
            pending = self._commit(groups)
            failed = set(pending)
            for record in records:
                was = membership(record.data)
                if was is not None and record.sk not in failed:
                    clusters.add(was.cluster_id)
        if pending:
            raise ConditionFailed(f"figures {pending} kept changing")
        return clusters

    def _commit(self, groups: Sequence[tuple[str, list[Write]]]) -> list[str]:
        """Write each figure's group whole, several to a transaction; the ids that failed."""
        failed: list[str] = []
        # one write of each transaction is its journal entry
        step = self._table.max_transaction_writes - 1
        chunk: list[tuple[str, list[Write]]] = []
        for number, group in enumerate(groups):
            chunk.append(group)
            size = sum(len(writes) for _, writes in chunk)
            following = groups[number + 1][1] if number + 1 < len(groups) else None
            if following is not None and size + len(following) <= step:
                continue
            try:
                self._table.transact(_journaled(chunk))
            except ConditionFailed:
                # one stale row fails its chunk: write the others one by one
                for group in chunk:
                    try:
                        self._table.transact(_journaled([group]))
                    except ConditionFailed:
                        failed.append(group[0])
            chunk = []
        return failed


def versioned(record: Record) -> dict[str, Any]:
    """A stored figure row as read: its data, with the version and membership read."""
    found = membership(record.data)
    stamp = None if found is None else [found.cluster_id, found.uri]
    return {**record.data, VERSION: record.version, MEMBERSHIP: stamp}


def stored(row: dict[str, Any]) -> dict[str, Any]:
    """A figure row as it is stored: without what was noted when it was read."""
    return {k: v for k, v in row.items() if k not in (VERSION, MEMBERSHIP)}


def _journaled(groups: Sequence[tuple[str, list[Write]]]) -> list[Write]:
    """The groups' writes and the journal entry naming their figures, to commit together."""
    writes = [w for _, group in groups for w in group]
    named = [fid for fid, _ in groups]
    return [*writes, Put(JOURNAL, writes[0].pk, uuid.uuid4().hex, {"figures": named})]


def _one_per_item(writes: list[Write]) -> list[Write]:
    """The last write of each item: a Delete then a Put of one index row is the Put."""
    last = {(w.table, w.sk): w for w in writes}
    return list(last.values())


def _read_membership(stamp: list[str] | None) -> Membership | None:
    return None if stamp is None else Membership(stamp[0], stamp[1])
