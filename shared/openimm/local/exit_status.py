"""Exit statuses of the `openimm` command (README.md lists them for scripts)."""

from __future__ import annotations

from enum import IntEnum


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
