"""The dataset lease: one writer of cluster memberships per dataset at a time.

A clustering run reads every figure, decides, then writes; a merge or a user's move
in between would be overwritten by the run's stale rows. Whoever changes memberships
holds the lease, a row with an expiry so that a crashed holder cannot block forever.

The row names its holder's process (`holders.py`): a holder on the same machine that
is provably gone (a crashed run, a killed server) is replaced at once instead of after
the expiry. A holder keeps its lease by renewing it before each write phase
(`HeldLease.keep`); one that finds the lease gone or taken (it stalled past the expiry)
stops there, before writing over its successor's work.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from openimm.domain.entities import dataset_key
from openimm.errors import ConcurrentUpdateConflict
from openimm.pipeline.holders import is_gone, this_process
from openimm.ports import ConditionFailed, TableStore

log = logging.getLogger(__name__)

LEASES = "leases"
_SORT_KEY = "cluster"


class DatasetBusy(ConcurrentUpdateConflict):
    """Another holder changes the dataset's clusters right now."""


class LeaseLost(DatasetBusy):
    """The lease expired under a stalled holder and may be another's now: stop writing."""


@dataclass
class HeldLease:
    """A lease this process holds; `keep` renews it, or says it is lost."""

    _table: TableStore
    _key: str
    _data: dict[str, Any]
    _seconds: float

    def keep(self) -> None:
        """Renew the lease for its full term; LeaseLost if it is no longer this holder's."""
        current = self._table.get(LEASES, self._key, _SORT_KEY)
        if current is None or current.data.get("holder") != self._data["holder"]:
            raise LeaseLost(f"the lease of {self._key} expired under its holder")
        try:
            self._table.put(
                LEASES,
                self._key,
                _SORT_KEY,
                self._data,
                if_version=current.version,
                ttl_seconds=self._seconds,
            )
        except ConditionFailed:
            raise LeaseLost(f"the lease of {self._key} was taken from its holder") from None


class DatasetLease:
    """Take and give back the lease of one dataset."""

    def __init__(self, table: TableStore, seconds: float) -> None:
        self._table = table
        self.seconds = seconds

    @contextmanager
    def held(self, project: str, dataset: str, task_id: str | None = None) -> Iterator[HeldLease]:
        """Hold the lease for the block; DatasetBusy (409) when someone else holds it."""
        key = dataset_key(project, dataset)
        data = {"holder": uuid.uuid4().hex, "task_id": task_id, "process": this_process()}
        if not self._take(key, data):
            raise DatasetBusy(
                f"The figure clusters of dataset {dataset!r} are being changed by another "
                "task; try again when it has finished."
            )
        try:
            yield HeldLease(self._table, key, data, self.seconds)
        finally:
            current = self._table.get(LEASES, key, _SORT_KEY)
            if current is not None and current.data.get("holder") == data["holder"]:
                self._table.delete(LEASES, key, _SORT_KEY, if_version=current.version)

    def _take(self, key: str, data: dict[str, Any]) -> bool:
        for _ in range(2):
            try:
                self._table.put(
                    LEASES, key, _SORT_KEY, data, if_absent=True, ttl_seconds=self.seconds
                )
                return True
            except ConditionFailed:
                current = self._table.get(LEASES, key, _SORT_KEY)
                if current is None:
                    continue  # expired or given back between the two calls
                if not is_gone(current.data.get("process")):
                    return False
                log.info("the lease of %s was held by a process that is gone; taken", key)
                try:
                    self._table.delete(LEASES, key, _SORT_KEY, if_version=current.version)
                except ConditionFailed:
                    return False  # someone else got there first
        return False
