"""Where a task's result goes: inline in the task and its notification, or to an object.

An MNS message carries at most 64 KB, and a table row not much more; a larger result
(a FacesSearching task of 100 sources x 100 faces) is written as JSON to an object,
and the task and its notification carry that object's ExtendedMessageURI instead.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from openimm.ports import BlobStore, ForeignObject

log = logging.getLogger(__name__)

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
        own = f"{self._work_prefix}/task-results/{task_id}.json"
        target = self.target(task_id, uri) if uri else own
        if target == own:
            self._blobs.write(own, text, content_type="application/json")
            return {"ExtendedMessageURI": own}
        try:
            self._blobs.write_output(target, text, content_type="application/json")
        except ForeignObject:
            # Someone put an object there after the request was checked: theirs stays, and
            # the result goes where OpenIMM keeps its own; the task says where.
            log.warning("task %s: %s is not OpenIMM's, result written to %s", task_id, target, own)
            self._blobs.write(own, text, content_type="application/json")
            return {"ExtendedMessageURI": own}
        return {"ExtendedMessageURI": target}

    @staticmethod
    def target(task_id: str, uri: str) -> str:
        """The object a requested ExtendedMessageURI names (a folder gets `<task>.json`)."""
        return f"{uri}{task_id}.json" if uri.endswith("/") else uri

    def check(self, uri: str) -> None:
        """Raise ForeignObject when the requested object is someone else's already."""
        if not uri.endswith("/"):
            self._blobs.check_output(uri)
