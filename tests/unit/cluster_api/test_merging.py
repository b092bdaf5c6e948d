"""CreateFigureClustersMergingTask: a task on the cluster stage, under the dataset lease."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from openimm.pipeline.stages import PipelineSettings

if TYPE_CHECKING:
    from conftest import Album

MERGING = "FigureClustersMerging"


def _red_and_lime(album: Album) -> tuple[list[str], list[str], str, str]:
    reds, limes = album.add("red", 3), album.add("lime", 3)
    album.cluster()
    return (
        reds,
        limes,
        album.cluster_of(reds[0])["ObjectId"],
        album.cluster_of(limes[0])["ObjectId"],
    )


def _merge(album: Album, **given: Any) -> str:
    body = {**album.dataset, **given}
    return str(album.call("CreateFigureClustersMergingTask", body)["TaskId"])


def test_a_merge_is_a_task_that_moves_and_pins_every_face(album: Album) -> None:
    reds, limes, red, lime = _red_and_lime(album)
    reply = album.call(
        "CreateFigureClustersMergingTask",
        {
            **album.dataset,
            "From": lime,
            "To": red,
            "UserData": "u-1",
            "Tags": {"by": "me"},
            "Notification": {"MNS": {"TopicName": "merges"}},
        },
    )
    assert reply["TaskId"].startswith("CreateFigureClustersMergingTask-") and reply["EventId"]
    running = album.task(MERGING, reply["TaskId"])
    assert running["Status"] == "Running"  # nothing happens before the cluster stage runs
    assert album.get(lime)["FaceCount"] == 3
    album.drain()
    done = album.task(MERGING, reply["TaskId"])
    assert done["Status"] == "Succeeded" and done["Progress"] == 100
    assert done["UserData"] == "u-1" and done["Tags"] == {"by": "me"}
    merged = album.get(red)
    assert merged["FaceCount"] == 6 and merged["ImageCount"] == 6
    assert [c["ObjectId"] for c in album.clusters()] == [red]
    for uri in limes:
        row = album.figure_row(uri)
        assert row["FigureClusterId"] == red and row["_pinned"] is True
    assert album.figure_row(reds[0]).get("_pinned") is not True
    (notice,) = [n for n in album.notices() if n["TaskType"] == MERGING]
    assert notice["TaskId"] == reply["TaskId"] and notice["Status"] == "Succeeded"
    assert notice["Result"] == {"ClustersMerged": 1, "FacesMoved": 3}
    listed = album.call("ListTasks", {"ProjectName": "album", "TaskTypes": [MERGING]})["Tasks"]
    assert [t["TaskId"] for t in listed] == [reply["TaskId"]]


def test_a_merge_sticks_and_new_faces_of_either_join_the_target(album: Album) -> None:
    _, limes, red, lime = _red_and_lime(album)
    _merge(album, Froms=[lime], To=red)
    album.drain()
    album.add("lime", 1, prefix="new-lime")
    album.add("red", 1, prefix="new-red")
    task = album.cluster()
    assert task["Status"] == "Succeeded"
    assert [c["ObjectId"] for c in album.clusters()] == [red]
    assert album.get(red)["FaceCount"] == 8
    assert album.cluster_of("oss://photos/new-lime0.png")["ObjectId"] == red
    for uri in limes:
        assert album.figure_row(uri)["FigureClusterId"] == red


def test_several_sources_merge_at_once(album: Album) -> None:
    _, _, red, lime = _red_and_lime(album)
    blues = album.add("blue", 3)
    album.cluster()
    blue = album.cluster_of(blues[0])["ObjectId"]
    _merge(album, Froms=[lime, blue, lime], To=red)
    album.drain()
    assert [c["ObjectId"] for c in album.clusters()] == [red]
    assert album.get(red)["FaceCount"] == 9


def test_a_merge_waits_for_a_running_clustering(album: Album) -> None:
    _, _, red, lime = _red_and_lime(album)
    album.app.pipeline.settings = PipelineSettings(busy_retry_seconds=0.0)
    table = album.parts.table
    table.put("leases", "album/family", "cluster", {"holder": "a clustering run"})
    task_id = _merge(album, From=lime, To=red)
    (message,) = album.parts.queue.receive("cluster", visibility_timeout=30)
    album.app.run_stage("cluster", message.body)
    album.parts.queue.ack(message)
    assert album.task(MERGING, task_id)["Status"] == "Running"
    assert album.parts.queue.pending("cluster") == 1  # type: ignore[attr-defined]
    assert album.get(lime)["FaceCount"] == 3
    table.delete("leases", "album/family", "cluster")
    album.drain()
    assert album.task(MERGING, task_id)["Status"] == "Succeeded"
    assert album.get(red)["FaceCount"] == 6


def test_a_target_deleted_after_the_request_fails_the_task(album: Album) -> None:
    reds, _, red, lime = _red_and_lime(album)
    task_id = _merge(album, From=lime, To=red)
    for uri in reds:
        album.call("DeleteFileMeta", {**album.dataset, "URI": uri})
    album.drain()
    task = album.task(MERGING, task_id)
    assert task["Status"] == "Failed" and task["Code"] == "ResourceNotFound"
    assert red in task["Message"]
    assert album.get(lime)["FaceCount"] == 3


def test_a_redelivered_merge_changes_nothing_more(album: Album) -> None:
    _, _, red, lime = _red_and_lime(album)
    task_id = _merge(album, From=lime, To=red)
    (message,) = album.parts.queue.receive("cluster", visibility_timeout=30)
    album.app.edits.merge("album", "family", [lime], red)  # a crashed first attempt
    album.app.run_stage("cluster", message.body)
    album.parts.queue.ack(message)
    assert album.task(MERGING, task_id)["Status"] == "Succeeded"
    assert album.get(red)["FaceCount"] == 6


@pytest.mark.parametrize(
    ("given", "code", "status", "names"),
    [
        ({"From": "{lime}", "Froms": ["{lime}"], "To": "{red}"}, "InvalidArgument", 400, "Froms"),
        ({"To": "{red}"}, "MissingParameter", 400, "From"),
        ({"From": "{lime}"}, "MissingParameter", 400, "To"),
        ({"From": "{red}", "To": "{red}"}, "InvalidArgument", 400, "To"),
        ({"Froms": ["{lime}", "{red}"], "To": "{red}"}, "InvalidArgument", 400, "To"),
        ({"From": "Cluster-nope", "To": "{red}"}, "ResourceNotFound", 404, "Cluster-nope"),
        ({"Froms": ["{lime}", "Cluster-gone"], "To": "{red}"}, "ResourceNotFound", 404, "gone"),
        ({"From": "{lime}", "To": "Cluster-nope"}, "ResourceNotFound", 404, "Cluster-nope"),
        (
            {"From": "figure-cluster-id-independent", "To": "{red}"},
            "InvalidArgument",
            400,
            "From",
        ),
        (
            {"From": "{lime}", "To": "figure-cluster-id-unavailable"},
            "InvalidArgument",
            400,
            "To",
        ),
        ({"Froms": "{lime}", "To": "{red}"}, "InvalidArgument", 400, "Froms"),
        ({"Froms": [], "To": "{red}"}, "InvalidArgument", 400, "Froms"),
        ({"Froms": [7], "To": "{red}"}, "InvalidArgument", 400, "Froms.1"),
        ({"From": "", "To": "{red}"}, "InvalidArgument", 400, "From"),
        ({"From": "{lime}", "To": "{red}", "Tags": "x"}, "InvalidArgument", 400, "Tags"),
    ],
)
def test_bad_requests_create_no_task(
    album: Album, given: dict[str, Any], code: str, status: int, names: str
) -> None:
    _, _, red, lime = _red_and_lime(album)

    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value.format(red=red, lime=lime) if isinstance(value, str) else value

    error = album.error(
        "CreateFigureClustersMergingTask",
        {**album.dataset, **{k: fill(v) for k, v in given.items()}},
    )
    assert (error.code, error.http_status) == (code, status)
    assert names in error.message
    tasks = album.call("ListTasks", {"ProjectName": "album", "TaskTypes": [MERGING]})["Tasks"]
    assert tasks == []
    assert album.parts.queue.pending("cluster") == 0  # type: ignore[attr-defined]


def test_an_unknown_dataset_is_not_found(album: Album) -> None:
    error = album.error(
        "CreateFigureClustersMergingTask",
        {"ProjectName": "album", "DatasetName": "nope", "From": "Cluster-a", "To": "Cluster-b"},
    )
    assert (error.code, error.http_status) == ("ResourceNotFound", 404)
