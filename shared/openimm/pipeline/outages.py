"""Failures of the machine rather than of a file: a missing model, a full or read-only store.

A stage that meets one stops its task with a Code that says so and leaves the files as
they were (indexed, not failed), so the next task analyses them once the cause is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

from openimm.errors import first_line
from openimm.ports import StorageUnavailable
from openimm.vision.model_store import ModelFetchError


@dataclass(frozen=True)
class Outage:
    """What stopped the work, as a task's Code and Message."""

    code: str
    message: str


def outage_of(exc: BaseException) -> Outage | None:
    """The outage `exc` reports, or None when it is about the work itself."""
    cause = first_line(exc)
    if isinstance(exc, ModelFetchError):
        return Outage(
            "ModelUnavailable",
            f"The model files are not available on this machine ({cause}). No file was marked "
            "failed: fetch the models (openimm models fetch) and start the task again.",
        )
    if isinstance(exc, StorageUnavailable):
        return Outage(
            "StorageUnavailable",
            f"The state storage cannot be written now ({cause}). No file was marked failed: "
            "free space or fix the permissions, then start the task again.",
        )
    return None
