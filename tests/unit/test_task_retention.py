"""Tasks are kept seven days, as IMM's are; asking for one after that says so."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from openimm.adapters.local import SqliteTableStore
from openimm.domain.tasks import RETENTION_SECONDS, TaskBook, created_at, new_task_id
from openimm.errors import ResourceNotFound

DAY = 24 * 3600


def test_task_ids_are_uuids_that_carry_their_creation_time() -> None:
    now = time.time()
    task_id = new_task_id("CreateFigureClusteringTask", now)
    assert task_id.startswith("CreateFigureClusteringTask-")
    assert uuid.UUID(task_id[-36:]).version == 7
    assert abs((created_at(task_id) or 0) - now) < 0.001
    assert created_at(f"CreateFigureClusteringTask-{uuid.uuid4()}") is None
    assert created_at("nonsense") is None
    # newer ids sort after older ones
    assert new_task_id("T", now) < new_task_id("T", now + 1)


def test_an_expired_task_is_named_as_expired(tmp_path: Path) -> None:
    book = TaskBook(SqliteTableStore(tmp_path / "table.db"))
    old = new_task_id("CreateFigureClusteringTask", time.time() - RETENTION_SECONDS - DAY)
    with pytest.raises(ResourceNotFound, match="has expired: tasks are kept for 7 days"):
        book.get("album", old)
    recent = new_task_id("CreateFigureClusteringTask", time.time() - DAY)
    with pytest.raises(ResourceNotFound, match="does not exist in project 'album'"):
        book.get("album", recent)
