"""Task rows: create, read, list, fan-in per file, finish.

A task row lives in its own partition (pk = TaskId) together with one marker per
file it waits for, so that "mark this file done" and "count it" are one
single-partition transaction: a redelivered stage message finds its marker and
counts nothing twice. A second table indexes tasks by project for ListTasks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from openimm.domain.entities import Task, TaskStatus
from openimm.errors import ResourceNotFound
from openimm.ports import ConditionFailed, Increment, Put, TableStore

TASKS = "tasks"
TASKS_BY_PROJECT = "tasks_by_project"
TASK_ROW = "task"
RETENTION_SECONDS = 7 * 24 * 3600


def new_task_id(operation: str, now: float | None = None) -> str:
    """IMM-style id: the operation name and a uuid, one whose first 48 bits are the
    creation time in milliseconds (the layout of UUID version 7)."""
    millis = int((time.time() if now is None else now) * 1000) & (2**48 - 1)
    value = (millis << 80) | (uuid.uuid4().int & (2**80 - 1))
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    return f"{operation}-{uuid.UUID(int=value)}"


def created_at(task_id: str) -> float | None:
    """When a task of `new_task_id` was created (seconds), None for any other id."""
    try:
        value = uuid.UUID(task_id[-36:])
    except ValueError:
        return None
    return (value.int >> 80) / 1000 if value.version == 7 else None


def _to_row(task: Task) -> dict[str, Any]:
    return dataclasses.asdict(task)


def _from_row(data: dict[str, Any]) -> Task:
    names = {f.name for f in dataclasses.fields(Task)}
    return Task(**{k: v for k, v in data.items() if k in names})


class TaskBook:
    """The tasks of every project, kept seven days."""

    def __init__(self, table: TableStore) -> None:
        self._table = table

    def create(self, task: Task) -> None:
        """Store a new task and index it under its project."""
        self._table.put(
            TASKS,
            task.task_id,
            TASK_ROW,
            _to_row(task),
            if_absent=True,
            ttl_seconds=RETENTION_SECONDS,
        )
        self._table.put(
            TASKS_BY_PROJECT,
            task.project,
            _index_key(task.start_time, task.task_id),
            {"task_id": task.task_id},
            ttl_seconds=RETENTION_SECONDS,
        )

    def get(self, project: str, task_id: str) -> Task:
        """The task, or ResourceNotFound (also when it belongs to another project)."""
        record = self._table.get(TASKS, task_id, TASK_ROW) if task_id else None
        if record is None or record.data.get("project") != project:
            created = created_at(task_id) if record is None else None
            if created is not None and time.time() - created > RETENTION_SECONDS:
                day = time.strftime("%Y-%m-%d", time.gmtime(created))
                raise ResourceNotFound(
                    f"The task {task_id!r} has expired: tasks are kept for 7 days, and this "
                    f"one was created on {day}."
                )
            raise ResourceNotFound(f"The task {task_id!r} does not exist in project {project!r}.")
        return _from_row(record.data)

    def find(self, task_id: str) -> Task | None:
        """The task by id alone (stages carry only the id)."""
        record = self._table.get(TASKS, task_id, TASK_ROW)
        return _from_row(record.data) if record else None

    def list(self, project: str, *, newest_first: bool = True) -> Iterator[Task]:
        """Tasks of a project by start time."""
        token: str | None = None
        while True:
            page = self._table.query(
                TASKS_BY_PROJECT, project, start_after=token, limit=200, descending=newest_first
            )
            ids = [(r.data["task_id"], TASK_ROW) for r in page.records]
            for record in self._table.batch_get(TASKS, ids):
                yield _from_row(record.data)
            if page.next_token is None:
                return
            token = page.next_token

    def count_file(self, task_id: str, file_key: str, *, ok: bool) -> Task:
        """Count one file of the task once, however often this is called; return the task."""
        # a ConditionFailed means an earlier delivery counted this file already
        with contextlib.suppress(ConditionFailed):
            self._table.transact(
                [
                    Put(
                        TASKS,
                        task_id,
                        f"file#{file_key}",
                        {"ok": ok},
                        if_absent=True,
                        ttl_seconds=RETENTION_SECONDS,
                    ),
                    Increment(TASKS, task_id, TASK_ROW, {"done" if ok else "failed": 1}),
                ]
            )
        task = self.find(task_id)
        if task is None:
            raise ResourceNotFound(f"The task {task_id!r} does not exist.")
        return task

    def finish(
        self,
        task_id: str,
        status: str,
        *,
        code: str | None = None,
        message: str | None = None,
        result: dict[str, Any] | None = None,
        claimer: Any = None,
    ) -> Task | None:
        """Move a running task to Succeeded/Failed once; None when it had already ended.

        A task with a topic ends with its notification pending, until `notified`, claimed
        by `claimer` (the process about to send it).
        """
        assert status in TaskStatus.TERMINAL

        def end(data: dict[str, Any]) -> dict[str, Any] | None:
            if data.get("status") in TaskStatus.TERMINAL:
                return None
            ended = {**data, "status": status, "code": code, "message": message}
            now = time.time()
            ended.update(
                end_time=now,
                notify_pending=bool(data.get("topic")),
                notify_claimed=now,
                notify_claimer=claimer,
            )
            if result is not None:
                ended["result"] = result
            return ended

        return self._change(task_id, end)

    def claim_notification(
        self,
        task_id: str,
        grace_seconds: float,
        claimer: Any = None,
        gone: Callable[[Any], bool] = lambda claimer: False,
    ) -> Task | None:
        """Take over the ended task's pending notification from whoever claimed it more
        than `grace_seconds` ago, or sooner when `gone` proves that claimer gone; the task
        if `claimer` now sends it, else None."""

        def claim(data: dict[str, Any]) -> dict[str, Any] | None:
            if not data.get("notify_pending"):
                return None
            since = data.get("notify_claimed") or 0.0
            if time.time() - since < grace_seconds and not gone(data.get("notify_claimer")):
                return None
            return {**data, "notify_claimed": time.time(), "notify_claimer": claimer}

        return self._change(task_id, claim)

    def notified(self, task_id: str) -> None:
        """Note that the ended task's notification went out."""
        self._change(
            task_id,
            lambda data: {**data, "notify_pending": False} if data.get("notify_pending") else None,
        )

    def _change(
        self, task_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> Task | None:
        """Write `change` of the task row (None: leave it); the task written, or None."""
        while True:
            record = self._table.get(TASKS, task_id, TASK_ROW)
            data = change(dict(record.data)) if record is not None else None
            if record is None or data is None:
                return None
            try:
                self._table.put(
                    TASKS,
                    task_id,
                    TASK_ROW,
                    data,
                    if_version=record.version,
                    ttl_seconds=RETENTION_SECONDS,
                )
            except ConditionFailed:
                continue  # a file was counted meanwhile: read again
            return _from_row(data)


def _index_key(start_time: float, task_id: str) -> str:
    return f"{start_time:017.6f}#{task_id}"
