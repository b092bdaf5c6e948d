"""`openimm run`'s progress bar reads the task's fan-in counters and counts the faces."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from openimm.domain.entities import Task
from openimm.local.run_progress import follow_task


class _Tasks:
    """A task row that moves on one file per read, then ends."""

    def __init__(self, total: int) -> None:
        self._reads = 0
        self._total = total

    def find(self, task_id: str) -> Task:
        done = min(self._reads, self._total)
        self._reads += 1
        status = "Succeeded" if self._reads > self._total + 1 else "Running"
        return Task(
            task_id=task_id,
            task_type="FaceClustering",
            project="p",
            dataset="d",
            status=status,
            start_time=0.0,
            request_id="r",
            total=self._total,
            done=max(done - 1, 0),
            failed=1 if done else 0,
        )


class _Figures:
    def all(self, project: str, dataset: str) -> Iterator[dict[str, Any]]:
        yield from ({"FigureId": str(i)} for i in range(7))


class _App:
    def __init__(self, total: int) -> None:
        self.tasks = _Tasks(total)
        self.figures = _Figures()


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("openimm.local.run_progress.POLL_SECONDS", 0)


def test_the_bar_shows_files_of_total_and_faces(capsys: pytest.CaptureFixture[str]) -> None:
    follow_task(_App(3), "p", "d", "t", timeout=60, show=True)

    err = capsys.readouterr().err
    assert "3/3" in err and "faces=7" in err and "file/s" in err


def test_nothing_is_shown_when_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    follow_task(_App(3), "p", "d", "t", timeout=60, show=False)

    assert capsys.readouterr() == ("", "")


def test_the_wait_ends_at_the_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    app = _App(10**9)
    follow_task(app, "p", "d", "t", timeout=0, show=False)
    assert app.tasks._reads == 1
