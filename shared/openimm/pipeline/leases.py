"""The dataset lease: one writer of cluster memberships per dataset at a time.

A clustering run reads every figure, decides, then writes; a merge or a user's move
in between would be overwritten by the run's stale rows. Whoever changes memberships
holds the lease, a row with an expiry so that a crashed holder cannot block forever.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from openimm.domain.entities import dataset_key
from openimm.errors import ConcurrentUpdateConflict
from openimm.ports import ConditionFailed, TableStore

LEASES = "leases"
_SORT_KEY = "cluster"


class DatasetBusy(ConcurrentUpdateConflict):
    """Another holder changes the dataset's clusters right now."""


class DatasetLease:
    """Take and give back the lease of one dataset."""

    def __init__(self, table: TableStore, seconds: float) -> None:
        self._table = table
        self.seconds = seconds

    @contextmanager
    def held(self, project: str, dataset: str, task_id: str | None = None) -> Iterator[None]:
        """Hold the lease for the block; DatasetBusy (409) when someone else holds it."""
        key = dataset_key(project, dataset)
        holder = uuid.uuid4().hex
        try:
            self._table.put(
                LEASES,
                key,
                _SORT_KEY,
                {"holder": holder, "task_id": task_id},
                if_absent=True,
                ttl_seconds=self.seconds,
            )
        except ConditionFailed:
            raise DatasetBusy(
                f"The figure clusters of dataset {dataset!r} are being changed by another "
                "task; try again when it has finished."
            ) from None
        try:
            yield
        finally:
            current = self._table.get(LEASES, key, _SORT_KEY)
            if current is not None and current.data.get("holder") == holder:
                self._table.delete(LEASES, key, _SORT_KEY, if_version=current.version)
