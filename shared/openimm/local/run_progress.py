"""`openimm run` follows its task: files analysed of total, faces found, rate and ETA on stderr."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from tqdm import tqdm

from openimm.domain.entities import TaskStatus

# the task row is read this often (a row read: the run's end is seen within 50 ms), the
# bar drawn at most every REDRAW_SECONDS
POLL_SECONDS = 0.05
REDRAW_SECONDS = 0.25
# counting the faces scans the dataset's figure rows: at most every 2 s, and never more
# than 1/20 of the time (a 100k-photo dataset takes a while to scan)
FACE_COUNT_MIN_SECONDS = 2.0
FACE_COUNT_SHARE = 20


class FaceCounter:
    """The number of faces in a dataset, counted again only when that is cheap enough."""

    def __init__(self, app: Any, project: str, dataset: str) -> None:
        self._app, self._project, self._dataset = app, project, dataset
        self._next = 0.0
        self.count = 0

    def refresh(self, *, force: bool = False) -> int:
        """The face count, counted again if its interval has passed (or `force`)."""
        now = time.monotonic()
        if force or now >= self._next:
            self.count = sum(1 for _ in self._app.figures.all(self._project, self._dataset))
            took = time.monotonic() - now
            self._next = now + max(FACE_COUNT_MIN_SECONDS, FACE_COUNT_SHARE * took)
        return self.count


def follow_task(
    app: Any,
    project: str,
    dataset: str,
    task_id: str,
    *,
    timeout: float,
    show: bool,
    count_faces: bool = True,
) -> None:
    """Wait until the task ends or `timeout` seconds pass, showing a progress bar if `show`."""
    deadline = time.monotonic() + timeout
    faces = FaceCounter(app, project, dataset) if show and count_faces else None
    # the task row holds the fan-in counters, so one row read per poll is all it costs
    task = app.tasks.find(task_id)
    if task is None:
        return
    bar = tqdm(
        desc="analysing",
        total=task.total,
        unit="file",
        file=sys.stderr,
        disable=not show,
        dynamic_ncols=True,
    )
    drawn = -math.inf
    try:
        while task is not None:
            ended = task.status in TaskStatus.TERMINAL
            if ended or time.monotonic() - drawn >= REDRAW_SECONDS:
                bar.update(task.done + task.failed - bar.n)
                if task.total and task.done + task.failed >= task.total:
                    bar.set_description("grouping", refresh=False)
                if faces is not None:
                    bar.set_postfix(faces=faces.refresh(force=ended), refresh=False)
                bar.refresh()
                drawn = time.monotonic()
            if ended or time.monotonic() > deadline:
                return
            time.sleep(POLL_SECONDS)
            task = app.tasks.find(task_id)
    finally:
        bar.close()
