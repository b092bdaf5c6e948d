"""The exit status of `openimm run` and `openimm search` from how their task ended."""

from __future__ import annotations

from openimm.local.exit_status import ExitStatus, exit_status_of


def test_a_task_that_succeeded_for_every_file_exits_ok() -> None:
    assert exit_status_of({"Status": "Succeeded"}, failed_files=0) == ExitStatus.OK == 0


def test_failed_files_exit_apart_from_a_failed_task() -> None:
    assert exit_status_of({"Status": "Succeeded"}, failed_files=2) == ExitStatus.FILES_FAILED
    failed = {"Status": "Failed", "Code": "InternalError"}
    assert exit_status_of(failed, failed_files=2) == ExitStatus.TASK_FAILED


def test_a_task_still_running_when_the_wait_ends_counts_as_failed() -> None:
    assert exit_status_of({"Status": "Running"}, failed_files=0) == ExitStatus.TASK_FAILED


def test_a_task_that_failed_for_the_machine_exits_as_environment() -> None:
    for code in ("ModelUnavailable", "StorageUnavailable"):
        task = {"Status": "Failed", "Code": code}
        assert exit_status_of(task, failed_files=0) == ExitStatus.ENVIRONMENT == 4
