"""Exit statuses of the `openimm` command (README.md lists them for scripts)."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitStatus(IntEnum):
    """What a non-zero exit of `openimm` means."""

    OK = 0
    # the task ended Failed or did not end in time; a request was refused
    TASK_FAILED = 1
    # argparse's own status: a mistyped command line, a bad OPENIMM_* setting
    USAGE = 2
    # the task succeeded, but some files could not be analysed (the report names them)
    FILES_FAILED = 3
    # the machine, not the photos: model files unavailable, state directory unwritable
    ENVIRONMENT = 4


# task Codes that name the machine rather than the photos (the pipeline ends a task Failed
# with them and leaves its files indexed, so the same run can go on once it is fixed)
ENVIRONMENT_CODES = frozenset({"ModelUnavailable", "StorageUnavailable"})


def exit_status_of(task: dict[str, Any], *, failed_files: int) -> ExitStatus:
    """The exit status of a run or search from its task (GetTask fields) and failed files."""
    if task.get("Status") != "Succeeded":
        if task.get("Code") in ENVIRONMENT_CODES:
            return ExitStatus.ENVIRONMENT
        return ExitStatus.TASK_FAILED
    return ExitStatus.FILES_FAILED if failed_files else ExitStatus.OK
