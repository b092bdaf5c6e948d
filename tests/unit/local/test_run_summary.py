"""The plain-English summary at the end of `openimm run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openimm.local.run_summary import (
    RunContext,
    count_of,
    figure_summary,
    similar_summary,
    task_outcome,
)

RUN = RunContext(
    folder=Path("/photos/album"),
    bucket="album",
    project="openimm",
    dataset="album",
    state=Path("/state"),
    files=5,
)


def _figure(uri: str, cluster: str = "") -> dict[str, Any]:
    box = {"Left": 0, "Top": 0, "Width": 90, "Height": 90}
    return {"FigureId": uri, "URI": uri, "Boundary": box, "FigureClusterId": cluster}


def _report(**changes: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "task": {"TaskId": "t-1", "Status": "Succeeded"},
        "clusters": [
            {
                "ObjectId": "Cluster-a",
                "FaceCount": 3,
                "ImageCount": 2,
                "VideoCount": 1,
                "Cover": "oss://album/a.jpg",
                "Figures": [_figure("oss://album/a.jpg"), _figure("oss://album/b.jpg")],
            }
        ],
        "unclustered": [
            _figure("oss://album/c.jpg", "figure-cluster-id-independent"),
            _figure("oss://album/c.jpg", "figure-cluster-id-independent"),
            _figure("oss://album/d.jpg", "figure-cluster-id-unavailable"),
        ],
        "failed_files": [],
        "skipped_files": [],
        "unanalysed_files": [],
    }
    return {**report, **changes}


def test_plurals_are_plain_english() -> None:
    assert [count_of(n, "cluster") for n in (0, 1, 2)] == ["0 clusters", "1 cluster", "2 clusters"]
    assert count_of(1, "person", "people") == "1 person"
    assert count_of(3, "person", "people") == "3 people"


def test_people_and_faces_left_out_are_told_in_words() -> None:
    text = "\n".join(figure_summary(_report(), RUN))

    assert "Found 1 person:" in text
    assert "3 faces in 2 photos and 1 video" in text
    assert "3 faces left out:" in text
    assert "2 faces: fits no one yet: a person needs 3 clear photos to start a group" in text
    assert "oss://album/c.jpg (2 faces)" in text
    assert "1 face: not grouped yet" in text
    assert "figure-cluster-id-" not in text


def test_next_steps_name_the_state_and_the_commands() -> None:
    text = "\n".join(figure_summary(_report(), RUN))

    assert "The state is in /state" in text
    assert "openimm search PHOTO --data /state" in text
    assert "openimm serve --data /state" in text
    assert "UpdateFigureCluster" in text and "Cluster-a" in text
    assert "--retry-failed" not in text


def test_failed_skipped_and_waiting_files_are_listed_with_what_to_do() -> None:
    report = _report(
        task={"TaskId": "t-1", "Status": "Failed", "Code": "ModelUnavailable", "Message": "gone"},
        failed_files=[{"URI": "oss://album/notes.jpg", "Reason": "not an image"}],
        skipped_files=[{"Path": "\\xff.jpg", "Reason": "its name is not valid UTF-8"}],
        unanalysed_files=[{"URI": "oss://album/e.jpg"}, {"URI": "oss://album/f.jpg"}],
    )
    text = "\n".join(figure_summary(report, RUN))

    assert "failed (ModelUnavailable: gone)" in text
    assert "1 file could not be analysed:\n  oss://album/notes.jpg: not an image" in text
    assert "1 file skipped:\n  \\xff.jpg: its name is not valid UTF-8" in text
    assert "2 files not analysed yet" in text
    assert "openimm run /photos/album --retry-failed --data /state" in text


def test_long_lists_are_cut_short() -> None:
    many = [_figure(f"oss://album/{i:02}.jpg", "figure-cluster-id-independent") for i in range(25)]
    lines = figure_summary(_report(unclustered=many), RUN)

    assert "... and 15 more (--json lists them all)" in "\n".join(lines)
    assert sum("oss://album/" in line and ".jpg" in line for line in lines) < 25


def test_similar_images_summary() -> None:
    report = {
        "task": {"TaskId": "t-2", "Status": "Succeeded"},
        "clusters": [
            {
                "ObjectId": "Similar-1",
                "Files": [
                    {"URI": "oss://album/a.jpg", "ImageScore": 0.8},
                    {"URI": "oss://album/b.jpg", "ImageScore": 0.5},
                ],
            }
        ],
        "failed_files": [],
    }
    text = "\n".join(similar_summary(report, RUN))

    assert "Found 1 group of similar photos (best shot first):" in text
    assert "2 photos" in text and "0.800  oss://album/a.jpg" in text
    assert "openimm serve --data /state" in text


def test_a_task_that_did_not_end_in_time_says_so() -> None:
    task = {"TaskId": "t-3", "Status": "Running"}
    assert task_outcome(task, "search") == (
        "The search t-3 had not ended when the wait (--timeout) ran out."
    )


def test_a_task_that_failed_for_the_machine_says_to_run_again_once_fixed() -> None:
    task = {
        "TaskId": "t-4",
        "Status": "Failed",
        "Code": "ModelUnavailable",
        "Message": "The model files are not available on this machine (no network).",
    }
    waiting = [{"URI": "oss://album/a.jpg"}, {"URI": "oss://album/b.jpg"}]
    text = "\n".join(figure_summary(_report(task=task, clusters=[], unanalysed_files=waiting), RUN))
    assert "ModelUnavailable" in text and "no network" in text
    assert "2 files not analysed yet" in text
    assert "once that is fixed, run again: openimm run /photos/album --data /state" in text
    assert "--retry-failed" not in text
