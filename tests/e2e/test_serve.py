"""`openimm serve` as a user drives it: real HTTP on 127.0.0.1, a real process, kill -9."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from serve_process import ServeProcess

pytestmark = pytest.mark.models

PROJECT, DATASET, BUCKET = "album", "family", "photos"


class Server(ServeProcess):
    """One `openimm serve` process on a free port, called with JSON bodies."""

    def ok(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        status, reply = self.call(operation, body)
        assert status == 200, (operation, reply)
        assert reply["RequestId"]
        return reply

    def wait(
        self, task_id: str, timeout: float = 300, task_type: str = "FaceClustering"
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.ok(
                "GetTask", {"ProjectName": PROJECT, "TaskType": task_type, "TaskId": task_id}
            )
            if task["Status"] != "Running":
                return task
            time.sleep(0.3)
        raise AssertionError(f"task {task_id} still running")


def _photos(sample_photos: Path, data: Path, names: list[str]) -> list[str]:
    bucket = data / "buckets" / BUCKET
    bucket.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(sample_photos / name, bucket / name)
    return [f"oss://{BUCKET}/{n}" for n in names]


@pytest.fixture
def server(tmp_path: Path, model_dir: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "state")
    yield srv
    srv.stop()


def _setup(server: Server) -> None:
    server.ok("CreateProject", {"ProjectName": PROJECT})
    server.ok("CreateDataset", {"ProjectName": PROJECT, "DatasetName": DATASET})


def test_the_whole_path_over_http(server: Server, sample_photos: Path) -> None:
    _setup(server)
    uris = _photos(
        sample_photos,
        server.data,
        ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "biden.jpg"],
    )
    server.ok(
        "BatchIndexFileMeta",
        {"ProjectName": PROJECT, "DatasetName": DATASET, "Files": [{"URI": u} for u in uris]},
    )
    created = server.ok(
        "CreateFigureClusteringTask",
        {
            "ProjectName": PROJECT,
            "DatasetName": DATASET,
            "UserData": '{"ID":"u1"}',
            "Tags": {"job": "nightly"},
            "Notification": {"MNS": {"TopicName": "album-events"}},
        },
    )
    task = server.wait(created["TaskId"])
    assert task["Status"] == "Succeeded" and task["Progress"] == 100
    assert task["UserData"] == '{"ID":"u1"}' and task["Tags"] == {"job": "nightly"}

    query = server.ok(
        "QueryFigureClusters",
        {"ProjectName": PROJECT, "DatasetName": DATASET, "Sort": "FaceCount", "Order": "desc"},
    )
    clusters = query["FigureClusters"]
    assert clusters and clusters[0]["ImageCount"] >= 3
    top = server.ok(
        "GetFigureCluster",
        {"ProjectName": PROJECT, "DatasetName": DATASET, "ObjectId": clusters[0]["ObjectId"]},
    )["FigureCluster"]
    assert top["ObjectType"] == "figure-cluster" and top["ObjectId"].startswith("Cluster-")
    assert top["Cover"]["URI"].startswith("oss://photos/obama")
    assert top["Cover"]["Figures"][0]["FigureClusterId"] == top["ObjectId"]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", top["CreateTime"])

    meta = server.ok(
        "GetFileMeta",
        {"ProjectName": PROJECT, "DatasetName": DATASET, "URI": "oss://photos/obama.jpg"},
    )["Files"][0]
    assert meta["Figures"][0]["FigureClusterId"] == top["ObjectId"]
    assert not any(k.startswith("_") for k in meta)

    lines = (server.data / "notifications.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    mine = [e for e in events if e["topic"] == "album-events"]
    assert len(mine) == 1
    envelope = mine[0]["message"]
    assert envelope["source"] == "acs.imm" and envelope["type"] == "imm:Task:FaceClustering"
    content = json.loads(envelope["content"])
    assert content["TaskId"] == created["TaskId"] and content["Status"] == "Succeeded"
    assert content["UserData"] == '{"ID":"u1"}'


def test_bad_input_gets_imm_errors(server: Server, sample_photos: Path) -> None:
    status, reply = server.call("CreateProject", {})
    assert status == 400 and reply["Code"] == "MissingParameter" and reply["RequestId"]
    assert "ProjectName" in reply["Message"]
    _setup(server)
    status, reply = server.call(
        "CreateFigureClusteringTask",
        {"ProjectName": PROJECT, "DatasetName": DATASET, "UserData": "x" * 2049},
    )
    assert status == 400 and reply["Code"] == "InvalidArgument"
    assert "UserData" in reply["Message"]
    status, reply = server.call(
        "GetFigureCluster",
        {"ProjectName": PROJECT, "DatasetName": DATASET, "ObjectId": "Cluster-nope"},
    )
    assert status == 404 and reply["Code"] == "ResourceNotFound"
    status, reply = server.call("CreateProject", b"{not json")
    assert status == 400 and reply["Code"] == "InvalidArgument"
    status, reply = server.call("NoSuchOperation", {})
    assert status == 400 and reply["Code"] == "InvalidOperation"
    status, reply = server.call(
        "IndexFileMeta",
        {
            "ProjectName": PROJECT,
            "DatasetName": DATASET,
            "File": {"URI": "oss://photos/../../etc/passwd"},
        },
    )
    assert status == 400 and reply["Code"] == "InvalidArgument"
    status, reply = server.call(
        "IndexFileMeta",
        {"ProjectName": PROJECT, "DatasetName": DATASET, "File": {"URI": "oss://photos/none.jpg"}},
    )
    assert status == 404 and reply["Code"] == "ResourceNotFound"
    assert "Traceback" not in json.dumps(reply)


def test_broken_files_fail_per_file_and_the_task_ends(server: Server, sample_photos: Path) -> None:
    from PIL import Image

    _setup(server)
    uris = _photos(sample_photos, server.data, ["obama.jpg"])
    bucket = server.data / "buckets" / BUCKET
    (bucket / "readme.jpg").write_text("plain text, not a JPEG")
    good = (sample_photos / "obama2.jpg").read_bytes()
    (bucket / "cut.jpg").write_bytes(good[: len(good) // 2])
    Image.new("1", (20000, 20000)).save(bucket / "huge.png")
    uris += ["oss://photos/readme.jpg", "oss://photos/cut.jpg", "oss://photos/huge.png"]
    server.ok(
        "BatchIndexFileMeta",
        {"ProjectName": PROJECT, "DatasetName": DATASET, "Files": [{"URI": u} for u in uris]},
    )
    created = server.ok(
        "CreateFigureClusteringTask", {"ProjectName": PROJECT, "DatasetName": DATASET}
    )
    task = server.wait(created["TaskId"])
    assert task["Status"] == "Succeeded"
    for name in ("readme.jpg", "cut.jpg", "huge.png"):
        meta = server.ok(
            "GetFileMeta",
            {"ProjectName": PROJECT, "DatasetName": DATASET, "URI": f"oss://photos/{name}"},
        )["Files"][0]
        assert meta["ObjectStatus"] == "failed" and meta["Reason"], meta
    meta = server.ok(
        "GetFileMeta",
        {"ProjectName": PROJECT, "DatasetName": DATASET, "URI": "oss://photos/obama.jpg"},
    )["Files"][0]
    assert meta["ObjectStatus"] == "succeeded" and meta["FigureCount"] == 1


def test_a_killed_server_finishes_the_task_after_restart(
    tmp_path: Path, sample_photos: Path, model_dir: Path
) -> None:
    data = tmp_path / "state"
    first = Server(data)
    try:
        _setup(first)
        names = [p.name for p in sorted(sample_photos.iterdir())]
        uris = _photos(sample_photos, data, names)
        first.ok(
            "BatchIndexFileMeta",
            {"ProjectName": PROJECT, "DatasetName": DATASET, "Files": [{"URI": u} for u in uris]},
        )
        created = first.ok(
            "CreateFigureClusteringTask", {"ProjectName": PROJECT, "DatasetName": DATASET}
        )
        time.sleep(1.0)
        running = first.ok(
            "GetTask",
            {"ProjectName": PROJECT, "TaskType": "FaceClustering", "TaskId": created["TaskId"]},
        )
        assert running["Status"] == "Running"  # the kill lands mid-task
    finally:
        first.kill()
    second = Server(data)
    try:
        task = second.wait(created["TaskId"])
        assert task["Status"] == "Succeeded"
        query = second.ok("QueryFigureClusters", {"ProjectName": PROJECT, "DatasetName": DATASET})
        assert query["FigureClusters"]
    finally:
        second.stop()


def test_editing_and_searching_clusters_over_http(server: Server, sample_photos: Path) -> None:
    _setup(server)
    dataset = {"ProjectName": PROJECT, "DatasetName": DATASET}
    uris = _photos(
        sample_photos, server.data, ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
    )
    server.ok("BatchIndexFileMeta", {**dataset, "Files": [{"URI": u} for u in uris]})
    first = server.ok("CreateFigureClusteringTask", dataset)
    assert server.wait(first["TaskId"])["Status"] == "Succeeded"
    (cluster,) = server.ok("QueryFigureClusters", dataset)["FigureClusters"]
    obama = cluster["ObjectId"]

    # a photo never indexed finds the person's cluster; a stranger finds none
    (query,) = _photos(sample_photos, server.data, ["obama_partial_face.jpg"])
    found = server.ok("SearchImageFigureCluster", {**dataset, "SourceURI": query})["Clusters"]
    assert [c["ClusterId"] for c in found] == [obama]
    assert 0.5 <= found[0]["Similarity"] <= 1.0 and found[0]["Boundary"]["Width"] > 0
    stranger = server.ok("SearchImageFigureCluster", {**dataset, "SourceURI": uris[3]})
    assert stranger["Clusters"] == []

    update = {"ObjectId": obama, "MetaLockVersion": cluster["MetaLockVersion"], "Name": "Barack"}
    server.ok("UpdateFigureCluster", {**dataset, "FigureCluster": update})
    status, reply = server.call("UpdateFigureCluster", {**dataset, "FigureCluster": update})
    assert status == 409 and reply["Code"] == "ConcurrentUpdateConflict"

    # a face taken out by hand stays out when the clustering runs again
    meta = server.ok("GetFileMeta", {**dataset, "URI": uris[2]})["Files"][0]
    out = {
        "FigureId": meta["Figures"][0]["FigureId"],
        "FigureClusterId": "figure-cluster-id-independent",
    }
    server.ok("UpdateFileMeta", {**dataset, "File": {"URI": uris[2], "Figures": [out]}})
    again = server.ok("CreateFigureClusteringTask", dataset)
    assert server.wait(again["TaskId"])["Status"] == "Succeeded"
    meta = server.ok("GetFileMeta", {**dataset, "URI": uris[2]})["Files"][0]
    assert meta["Figures"][0]["FigureClusterId"] == "figure-cluster-id-independent"
    after = server.ok("GetFigureCluster", {**dataset, "ObjectId": obama})["FigureCluster"]
    assert after["Name"] == "Barack" and after["FaceCount"] == cluster["FaceCount"] - 1


def test_searching_detecting_and_comparing_faces_over_http(
    server: Server, sample_photos: Path
) -> None:
    _setup(server)
    dataset = {"ProjectName": PROJECT, "DatasetName": DATASET}
    uris = _photos(
        sample_photos, server.data, ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
    )
    server.ok("BatchIndexFileMeta", {**dataset, "Files": [{"URI": u} for u in uris]})
    # the clustering task ends once every file is analysed: then all faces are searchable
    assert server.wait(server.ok("CreateFigureClusteringTask", dataset)["TaskId"])

    (query,) = _photos(sample_photos, server.data, ["obama_partial_face.jpg"])
    (server.data / "buckets" / BUCKET / "notes.jpg").write_text("plain text, not a JPEG")
    created = server.ok(
        "CreateFacesSearchingTask",
        {
            **dataset,
            "Sources": [{"URI": query}, {"URI": "oss://photos/notes.jpg"}],
            "MaxResult": 4,
            "UserData": "mine",
            "Notification": {"MNS": {"TopicName": "searches"}},
        },
    )
    task = server.wait(created["TaskId"], task_type="FacesSearching")
    assert task["Status"] == "Succeeded" and task["TaskType"] == "FacesSearching"
    found, broken = task["Result"]["Sources"]
    figures = found["Figures"]
    assert {f["URI"] for f in figures[:3]} == set(uris[:3]) and figures[3]["URI"] == uris[3]
    similarities = [f["Similarity"] for f in figures]
    assert similarities == sorted(similarities, reverse=True)
    assert similarities[0] > 0.9 and similarities[3] < 0.1
    assert figures[0]["Boundary"]["Width"] > 0 and figures[0]["FigureId"]
    assert broken["URI"] == "oss://photos/notes.jpg" and broken["Code"] == "InvalidFile"

    lines = (server.data / "notifications.jsonl").read_text().splitlines()
    (event,) = [json.loads(line) for line in lines if '"searches"' in line]
    assert event["message"]["type"] == "imm:Task:FacesSearching"
    content = json.loads(event["message"]["content"])
    assert content["Result"] == task["Result"] and content["UserData"] == "mine"

    for change, code, status in (
        ({"MaxResult": 101}, "InvalidArgument", 400),
        ({"Sources": [{"URI": "oss://elsewhere/obama.jpg"}]}, "ResourceNotFound", 404),
        ({"Sources": [{"URI": "/etc/passwd"}]}, "InvalidArgument", 400),
    ):
        body = {**dataset, "Sources": [{"URI": query}], **change}
        status_code, reply = server.call("CreateFacesSearchingTask", body)
        assert (status_code, reply["Code"]) == (status, code), reply
        assert reply["RequestId"] and "Traceback" not in reply["Message"]

    faces = server.ok("DetectImageFaces", {"ProjectName": PROJECT, "SourceURI": uris[0]})["Faces"]
    assert len(faces) == 1 and faces[0]["Boundary"]["Width"] > 50 and "Age" in faces[0]

    def compare(first: str, second: str) -> float:
        body = {"ProjectName": PROJECT, "Source": {"URI1": first, "URI2": second}}
        return float(server.ok("CompareImageFaces", body)["Similarity"])

    assert compare(uris[0], uris[1]) > 0.9
    assert compare(uris[0], uris[3]) < 0.1
    status_code, reply = server.call(
        "CompareImageFaces",
        {"ProjectName": PROJECT, "Source": {"URI1": uris[0], "URI2": "oss://photos/notes.jpg"}},
    )
    assert (status_code, reply["Code"]) == (400, "InvalidFile")


def test_similar_image_clustering_over_http(server: Server, sample_photos: Path) -> None:
    _setup(server)
    dataset = {"ProjectName": PROJECT, "DatasetName": DATASET}
    bucket = server.data / "buckets" / BUCKET
    uris = _photos(sample_photos, server.data, ["obama2.jpg", "biden.jpg"])
    # the same shot again: re-encoded smaller and a little brighter
    with Image.open(sample_photos / "obama2.jpg") as photo:
        shot = photo.convert("RGB")
        again = shot.resize((shot.width * 3 // 4, shot.height * 3 // 4))
        again.point(lambda v: min(255, int(v * 1.15))).save(bucket / "again.jpg", quality=60)
    uris.append(f"oss://{BUCKET}/again.jpg")
    server.ok("BatchIndexFileMeta", {**dataset, "Files": [{"URI": u} for u in uris]})

    created = server.ok(
        "CreateSimilarImageClusteringTask",
        {**dataset, "UserData": "bursts", "Notification": {"MNS": {"TopicName": "shots"}}},
    )
    task = server.wait(created["TaskId"], task_type="SimilarImageClustering")
    assert (task["Status"], task["UserData"]) == ("Succeeded", "bursts")

    (cluster,) = server.ok("QuerySimilarImageClusters", dataset)["SimilarImageClusters"]
    assert cluster["ObjectId"].startswith("SimilarImageCluster-")
    files = cluster["Files"]
    assert sorted(f["URI"] for f in files) == sorted([uris[0], uris[2]])
    scores = [f["ImageScore"] for f in files]
    assert all(0.0 < s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)

    lines = (server.data / "notifications.jsonl").read_text().splitlines()
    (event,) = [json.loads(line) for line in lines if '"shots"' in line]
    assert event["message"]["type"] == "imm:Task:SimilarImageClustering"
    content = json.loads(event["message"]["content"])
    assert content["TaskId"] == created["TaskId"] and content["UserData"] == "bursts"

    # a deletion that leaves one photo deletes the cluster
    server.ok("DeleteFileMeta", {**dataset, "URI": uris[2]})
    assert server.ok("QuerySimilarImageClusters", dataset)["SimilarImageClusters"] == []

    for operation, change, status, code in (
        ("QuerySimilarImageClusters", {"MaxResults": 101}, 400, "InvalidArgument"),
        ("QuerySimilarImageClusters", {"NextToken": "not a token"}, 400, "InvalidArgument"),
        ("CreateSimilarImageClusteringTask", {"UserData": "x" * 2049}, 400, "InvalidArgument"),
        ("CreateSimilarImageClusteringTask", {"DatasetName": "nowhere"}, 404, "ResourceNotFound"),
    ):
        status_code, reply = server.call(operation, {**dataset, **change})
        assert (status_code, reply["Code"]) == (status, code), reply
        assert reply["RequestId"] and "Traceback" not in reply["Message"]
