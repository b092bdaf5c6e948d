"""IMM's completion notification: a CloudEvents-like envelope whose content is JSON text."""

from __future__ import annotations

import json
import uuid
from typing import Any

from openimm.api.base import format_time
from openimm.domain.entities import Task
from openimm.ports import Envelope

_ENVELOPES = uuid.UUID("8f0c2a8e-6f4b-5d0e-9a51-0b9d3c1e7a42")


def task_envelope(task: Task, *, region: str, owner_id: str) -> Envelope:
    """The envelope IMM publishes when a task ends."""
    content: dict[str, Any] = {
        "ProjectName": task.project,
        "DatasetName": task.dataset,
        "RequestId": task.request_id,
        "StartTime": format_time(task.start_time),
        "EndTime": format_time(task.end_time) if task.end_time else None,
        "UserData": task.user_data,
        "TaskType": task.task_type,
        "TaskId": task.task_id,
        "Status": task.status,
        "Code": task.code or "",
        "Message": task.message or "",
        **task.result,
    }
    return Envelope(
        # the same for every publication of this end: a notification sent again after a
        # crash (between sending and noting it sent) is a duplicate its readers can drop
        id=str(uuid.uuid5(_ENVELOPES, f"{task.task_id}/{task.status}")),
        source="acs.imm",
        type=f"imm:Task:{task.task_type}",
        subject=f"acs.imm:{region}:{owner_id}:{task.project}/{task.dataset}",
        time=format_time(task.end_time or task.start_time),
        content=json.dumps({k: v for k, v in content.items() if v is not None}, ensure_ascii=False),
        extra={"region": region, "accountid": owner_id},
    )
