"""Who is in a cluster: one small row per figure under its FigureClusterId.

The rows live in the figures' partition (another table, the same partition key), so a
figure's write and its membership's write go in one transaction: the index is never
behind the figures. Reading one person's faces is then a range read of that person's
rows instead of a read of every figure of the dataset.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from openimm.ports import Delete, Put, TableStore

MEMBERS = "figure_members"
# A dataset's index is complete once this row exists: datasets are born with it, and
# one written before the index existed gets it when its figures are indexed. The name
# has no "/", so no cluster's prefix ever reaches it.
COMPLETE = "complete"
_SEPARATOR = "/"


@dataclass(frozen=True)
class Membership:
    """The cluster a figure is in and the file it is on."""

    cluster_id: str
    uri: str


def membership(row: Mapping[str, Any]) -> Membership | None:
    """What a figure row says about its cluster; None when it has no FigureClusterId."""
    cluster_id = row.get("FigureClusterId")
    if cluster_id is None:
        return None
    return Membership(str(cluster_id), str(row.get("_uri", "")))


def member_key(cluster_id: str, figure_id: str) -> str:
    """The sort key of a figure's row under its cluster (clusters' rows are contiguous)."""
    return f"{cluster_id}{_SEPARATOR}{figure_id}"


def membership_writes(
    pk: str, figure_id: str, before: Membership | None, after: Membership | None
) -> list[Put | Delete]:
    """The index writes that go with a figure going from `before` to `after`."""
    if before == after:
        return []
    writes: list[Put | Delete] = []
    if before is not None and (after is None or before.cluster_id != after.cluster_id):
        writes.append(Delete(MEMBERS, pk, member_key(before.cluster_id, figure_id)))
    if after is not None:
        writes.append(
            Put(MEMBERS, pk, member_key(after.cluster_id, figure_id), {"_uri": after.uri})
        )
    return writes


class MemberIndex:
    """Reads of the membership index of one table."""

    def __init__(self, table: TableStore) -> None:
        self._table = table

    def complete(self, pk: str) -> bool:
        """Whether every figure of the partition is in the index."""
        return self._table.get(MEMBERS, pk, COMPLETE) is not None

    def mark_complete(self, pk: str) -> None:
        """Record that the index holds every figure of the partition."""
        self._table.put(MEMBERS, pk, COMPLETE, {})

    def members(self, pk: str, cluster_id: str) -> Iterator[tuple[str, Membership]]:
        """(FigureId, membership) of every figure in one cluster, in FigureId order."""
        prefix = cluster_id + _SEPARATOR
        for record in self._table.scan_partition(MEMBERS, pk, sk_prefix=prefix):
            yield record.sk[len(prefix) :], Membership(cluster_id, str(record.data["_uri"]))

    def by_figure(self, pk: str) -> dict[str, list[tuple[str, Membership]]]:
        """Every index row of the partition, by FigureId: (sort key, membership)."""
        found: dict[str, list[tuple[str, Membership]]] = {}
        for record in self._table.scan_partition(MEMBERS, pk):
            if record.sk == COMPLETE:
                continue
            cluster_id, _, figure_id = record.sk.rpartition(_SEPARATOR)
            entry = (record.sk, Membership(cluster_id, str(record.data["_uri"])))
            found.setdefault(figure_id, []).append(entry)
        return found
