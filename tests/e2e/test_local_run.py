"""The main job end to end on the local runtime: real models, real SQLite, real queue."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from openimm.local import search_command
from openimm.local.cli import main
from openimm.local.exit_status import ExitStatus
from openimm.local.run_summary import count_of

pytestmark = pytest.mark.models


def _video(photo: Path, target: Path) -> None:
    """Three seconds of a photo, drifting a little, as an MP4 (mp4v)."""
    import cv2
    import numpy as np

    frame = cv2.imread(str(photo))
    height, width = frame.shape[:2]
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (width, height))
    for i in range(15):
        shift = np.float32([[1, 0, i], [0, 1, 0]])
        writer.write(cv2.warpAffine(frame, shift, (width, height)))
    writer.release()


@pytest.fixture(scope="module")
def photo_dir(sample_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("album") / "family-album"
    (folder / "2019" / "summer").mkdir(parents=True)
    for photo in sample_photos.iterdir():
        if photo.name != "32bit.png":
            shutil.copy(photo, folder / photo.name)
    # a nested folder, a space in the name, and the same person again there
    shutil.copy(sample_photos / "32bit.png", folder / "2019" / "summer" / "obama 32bit.png")
    _video(sample_photos / "obama2.jpg", folder / "2019" / "clip.mp4")
    (folder / "notes.jpg").write_text("this is not an image")
    data = (sample_photos / "obama2.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    # a name that is not UTF-8 (bytes from another system's file names) is skipped, not fatal
    shutil.copy(sample_photos / "biden.jpg", folder / os.fsdecode(b"\xffbiden.jpg"))
    return folder


@pytest.fixture(scope="module")
def report(
    photo_dir: Path, tmp_path_factory: pytest.TempPathFactory, model_dir: Path
) -> dict[str, Any]:
    state = tmp_path_factory.mktemp("state")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", str(photo_dir), "--data", str(state), "--json"])
    result: dict[str, Any] = json.loads(out.getvalue())
    result["_code"] = code
    result["_state"] = str(state)
    return result


def _cluster_of(report: dict[str, Any], suffix: str) -> set[str]:
    return {
        c["ObjectId"] for c in report["clusters"] for f in c["Figures"] if f["URI"].endswith(suffix)
    }


def test_task_succeeds_and_the_exit_status_tells_files_failed(report: dict[str, Any]) -> None:
    assert report["_code"] == ExitStatus.FILES_FAILED
    assert report["task"]["Status"] == "Succeeded"
    assert report["task"]["Progress"] == 100


def test_same_person_shares_a_cluster(report: dict[str, Any]) -> None:
    obama = [
        _cluster_of(report, name)
        for name in ("/obama.jpg", "/obama2.jpg", "/2019/summer/obama 32bit.png")
    ]
    assert all(len(c) == 1 for c in obama), report["clusters"]
    assert obama[0] == obama[1] == obama[2]
    assert not (_cluster_of(report, "/biden.jpg") & obama[0])


def test_uris_are_relative_to_the_folder(report: dict[str, Any]) -> None:
    uris = {f["URI"] for c in report["clusters"] for f in c["Figures"]}
    uris |= {f["URI"] for f in report["unclustered"]}
    assert all(u.startswith("oss://family-album/") for u in uris)
    assert any(u.endswith("/2019/summer/obama 32bit.png") for u in uris)


def test_bad_files_fail_alone(report: dict[str, Any]) -> None:
    failed = {f["URI"].rsplit("/", 1)[1]: f["Reason"] for f in report["failed_files"]}
    assert set(failed) == {"notes.jpg", "truncated.jpg"}
    assert all(reason for reason in failed.values())
    assert report["unanalysed_files"] == []


def test_a_name_that_is_not_utf8_is_skipped_with_a_reason(report: dict[str, Any]) -> None:
    (skipped,) = report["skipped_files"]
    assert skipped["Path"] == "\\xffbiden.jpg" and "UTF-8" in skipped["Reason"]


def test_the_summary_tells_people_what_was_found_and_what_next(
    photo_dir: Path, report: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code = main(["run", str(photo_dir), "--data", report["_state"]])

    out, err = capsys.readouterr()
    assert code == ExitStatus.FILES_FAILED
    assert err == ""  # no progress bar: stderr is not a terminal
    assert f"Found {count_of(len(report['clusters']), 'person', 'people')}:" in out
    assert "2 files could not be analysed:" in out and "notes.jpg: " in out
    assert "1 file skipped:" in out and "\\xffbiden.jpg: " in out
    assert f"The state is in {Path(report['_state']).resolve()}" in out
    assert "--retry-failed" in out and "openimm search PHOTO" in out
    assert "figure-cluster-id-" not in out


def test_cluster_counts_match_figures(report: dict[str, Any]) -> None:
    for c in report["clusters"]:
        assert c["FaceCount"] == len(c["Figures"])
        files = {f["URI"] for f in c["Figures"]}
        assert c["ImageCount"] + c["VideoCount"] == len(files)


def test_a_person_in_a_video_counts_once(report: dict[str, Any]) -> None:
    (cluster,) = _cluster_of(report, "/2019/clip.mp4")
    (row,) = [c for c in report["clusters"] if c["ObjectId"] == cluster]
    assert row["VideoCount"] == 1
    assert sum(f["URI"].endswith("clip.mp4") for f in row["Figures"]) == 1
    assert cluster in _cluster_of(report, "/obama.jpg")


def test_second_run_keeps_cluster_ids(photo_dir: Path, report: dict[str, Any]) -> None:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["run", str(photo_dir), "--data", report["_state"], "--json"])
    again = json.loads(out.getvalue())
    assert {c["ObjectId"] for c in again["clusters"]} == {c["ObjectId"] for c in report["clusters"]}


def _run_json(args: list[str]) -> tuple[int, dict[str, Any]]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return code, json.loads(out.getvalue())


def test_similar_images_task(photo_dir: Path, tmp_path: Path, model_dir: Path) -> None:
    args = ["run", str(photo_dir), "--task", "similar-images", "--data", str(tmp_path), "--json"]
    code, report = _run_json(args)
    assert code == ExitStatus.FILES_FAILED
    assert set(report) == {"task", "clusters", "failed_files", "skipped_files", "unanalysed_files"}
    task = report["task"]
    assert (task["TaskType"], task["Status"]) == ("SimilarImageClustering", "Succeeded")
    for cluster in report["clusters"]:
        assert set(cluster) == {"ObjectId", "Files"} and len(cluster["Files"]) >= 2
        assert all(set(f) == {"URI", "ImageScore"} for f in cluster["Files"])
    # obama2.jpg and its copy with an alpha channel are one shot; videos are not grouped
    grouped = {
        f["URI"].rsplit("/", 1)[1]: c["ObjectId"] for c in report["clusters"] for f in c["Files"]
    }
    assert grouped["obama2.jpg"] == grouped["obama 32bit.png"]
    assert "biden.jpg" not in grouped and "clip.mp4" not in grouped

    code, again = _run_json(args)
    assert code == ExitStatus.FILES_FAILED and again["clusters"] == report["clusters"]


def test_search_command_finds_the_nearest_faces(
    report: dict[str, Any], sample_photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    query, stranger = sample_photos / "obama_partial_face2.jpg", sample_photos / "biden.jpg"
    state = report["_state"]
    code = main(
        ["search", str(query), str(stranger), "--data", state, "--json", "--max-result", "3"]
    )
    found = json.loads(capsys.readouterr().out)
    assert code == 0 and found["task"]["Status"] == "Succeeded"
    obama, biden = found["sources"]
    assert obama["Image"] == str(query) and biden["Image"] == str(stranger)
    assert len(obama["Figures"]) == 3
    assert all("obama" in f["URI"] for f in obama["Figures"][:2])
    assert biden["Figures"][0]["URI"].endswith("/biden.jpg")
    assert biden["Figures"][0]["Similarity"] > 0.9 > biden["Figures"][1]["Similarity"]
    assert main(["search", str(query), "--data", report["_state"], "--dataset", "nope"]) == 1


def test_search_splits_sources_over_tasks_and_keeps_their_order(
    report: dict[str, Any],
    sample_photos: Path,
    photo_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # IMM takes 100 sources per task; two per task splits these five the same way
    monkeypatch.setattr(search_command, "MAX_SOURCES", 2)
    images = [sample_photos / n for n in ("biden.jpg", "obama.jpg", "t1.jpg", "obama2.jpg")]
    images.append(photo_dir / "notes.jpg")  # no image: its source carries a Code
    capsys.readouterr()

    code = main(["search", *map(str, images), "--data", report["_state"], "--json"])

    found = json.loads(capsys.readouterr().out)
    assert code == ExitStatus.FILES_FAILED
    assert [s["Image"] for s in found["sources"]] == [str(i) for i in images]
    assert len(found["tasks"]) == 3
    assert all(t["Status"] == "Succeeded" for t in found["tasks"])
    assert found["sources"][0]["Figures"][0]["URI"].endswith("/biden.jpg")
    assert "Code" in found["sources"][4]


@pytest.fixture
def small_album(sample_photos: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "small-album"
    folder.mkdir()
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        shutil.copy(sample_photos / name, folder / name)
    return folder


def test_without_models_the_run_fails_for_the_machine_and_a_later_run_does_the_work(
    small_album: Path, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    with monkeypatch.context() as offline:
        # an empty model folder and no package index: nothing can be fetched
        offline.setenv("OPENIMM_MODEL_DIR", str(tmp_path / "no-models"))
        offline.setenv("PIP_NO_INDEX", "1")
        code, report = _run_json(["run", str(small_album), "--data", str(state), "--json"])
    assert code == ExitStatus.ENVIRONMENT
    assert report["task"]["Status"] == "Failed"
    assert report["task"]["Code"] == "ModelUnavailable"
    assert report["failed_files"] == [] and len(report["unanalysed_files"]) == 4
    # the models back, the same state: every photo is analysed, none was given up on
    code, report = _run_json(["run", str(small_album), "--data", str(state), "--json"])
    assert code == ExitStatus.OK, report["task"]
    assert report["failed_files"] == [] and report["unanalysed_files"] == []
    assert _cluster_of(report, "obama.jpg") == _cluster_of(report, "obama3.jpg") != set()


def test_retry_failed_analyses_files_that_failed_for_a_cause_since_gone(
    small_album: Path, tmp_path: Path, model_dir: Path
) -> None:
    from openimm.bootstrap import Settings
    from openimm.local.runtime import LocalRuntime

    state = tmp_path / "state"
    assert _run_json(["run", str(small_album), "--data", str(state), "--json"])[0] == 0
    # as an earlier version left a file whose model was missing: failed for good
    with LocalRuntime(Settings(data_dir=state)) as runtime:
        catalog = runtime.app.catalog
        row = catalog.find_file("openimm", "small_album", "oss://small-album/obama3.jpg")
        assert row is not None
        row.update(_state="failed", _error="analysis failed: ModelFetchError: no network")
        catalog.save_file("openimm", "small_album", row)
    code, report = _run_json(["run", str(small_album), "--data", str(state), "--json"])
    assert code == ExitStatus.FILES_FAILED
    assert [f["URI"] for f in report["failed_files"]] == ["oss://small-album/obama3.jpg"]
    args = ["run", str(small_album), "--data", str(state), "--json", "--retry-failed"]
    code, report = _run_json(args)
    assert code == ExitStatus.OK and report["failed_files"] == []
    assert _cluster_of(report, "obama3.jpg") == _cluster_of(report, "obama.jpg") != set()
