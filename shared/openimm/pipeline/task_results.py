"""Where a task's result goes: inline in the task and its notification, or to an object.

An MNS message carries at most 64 KB, and a table row not much more; a larger result
(a FacesSearching task of 100 sources x 100 faces) is written as JSON to an object,
and the task and its notification carry that object's ExtendedMessageURI instead.
"""

from __future__ import annotations

import json
from typing import Any

from openimm.ports import BlobStore

MESSAGE_LIMIT = 64 * 1024


class TaskResults:
    """Puts task results inline or, past `limit` bytes of JSON, into an object."""

    def __init__(self, blobs: BlobStore, work_prefix: str, limit: int = MESSAGE_LIMIT) -> None:
        self._blobs = blobs
        self._work_prefix = work_prefix.rstrip("/")
        self.limit = limit

    def place(self, task_id: str, result: dict[str, Any], uri: str | None) -> dict[str, Any]:
        """The result as the task keeps it; `uri` (the request's, if any) names the object."""
        text = json.dumps(result, ensure_ascii=False).encode()
        if len(text) <= self.limit:
            return result
        target = uri or f"{self._work_prefix}/task-results/{task_id}.json"
        if target.endswith("/"):
            target = f"{target}{task_id}.json"
        self._blobs.write(target, text, content_type="application/json")
        return {"ExtendedMessageURI": target}
