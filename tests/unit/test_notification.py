"""IMM's task notification envelope: one id for one end of a task, however often sent."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

from openimm.domain.entities import Task
from openimm.pipeline.notification import task_envelope

TASK = Task(
    task_id="CreateFigureClusteringTask-0190b3a2-7c1e-7d3a-9f00-000000000001",
    task_type="FaceClustering",
    project="p",
    dataset="d",
    status="Succeeded",
    start_time=1_700_000_000.0,
    end_time=1_700_000_060.0,
    request_id="req-1",
    topic="t",
)


def test_the_same_end_has_the_same_id() -> None:
    first = task_envelope(TASK, region="cn-hangzhou", owner_id="1")
    again = task_envelope(TASK, region="cn-hangzhou", owner_id="1")
    assert first.id == again.id and uuid.UUID(first.id).version == 5
    assert json.loads(first.content)["TaskId"] == TASK.task_id


def test_another_task_or_end_has_another_id() -> None:
    ids = {
        task_envelope(task, region="cn-hangzhou", owner_id="1").id
        for task in (
            TASK,
            replace(TASK, task_id=TASK.task_id[:-1] + "2"),
            replace(TASK, status="Failed"),
        )
    }
    assert len(ids) == 3
