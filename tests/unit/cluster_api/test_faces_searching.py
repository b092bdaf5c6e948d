"""CreateFacesSearchingTask, DetectImageFaces and CompareImageFaces on the colour stand-ins.

Colours are people (conftest.py): red . rose = 0.99, red . lime = 0.64, red . blue = 0.31;
grey photos have no face.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from openimm.bootstrap import Settings, build
from openimm.grouping import face_index
from openimm.grouping.face_index import GraphSettings

if TYPE_CHECKING:
    from conftest import Album


def _search(album: Album, sources: list[str], **extra: Any) -> dict[str, Any]:
    """Run a FacesSearching task to its end; the task as GetTask shows it."""
    body = {**album.dataset, "Sources": [{"URI": s} for s in sources], **extra}
    task_id = album.call("CreateFacesSearchingTask", body)["TaskId"]
    assert task_id.startswith("CreateFacesSearchingTask-")
    album.drain()
    return album.task("FacesSearching", task_id)


def _analysed(album: Album) -> dict[str, list[str]]:
    photos = {"red": album.add("red", 3), "lime": album.add("lime", 2)}
    album.drain()
    return photos


def test_the_largest_face_finds_the_nearest_faces_in_order(album: Album) -> None:
    photos = _analysed(album)
    query = album.photo("query/rose.png", "rose", size=200)
    task = _search(album, [query], MaxResult=4)
    assert task["Status"] == "Succeeded" and task["Progress"] == 100
    (source,) = task["Result"]["Sources"]
    assert source["URI"] == query
    figures = source["Figures"]
    assert len(figures) == 4
    assert {f["URI"] for f in figures[:3]} == set(photos["red"])
    assert figures[3]["URI"] in photos["lime"]
    similarities = [f["Similarity"] for f in figures]
    assert similarities == sorted(similarities, reverse=True)
    assert similarities[0] > 0.9 and similarities[3] < 0.5
    assert all(0.0 <= s <= 1.0 for s in similarities)
    red = album.file(photos["red"][0])["Figures"][0]
    found = next(f for f in figures if f["URI"] == photos["red"][0])
    assert found["FigureId"] == red["FigureId"] and found["Boundary"] == red["Boundary"]


def test_default_max_result_and_sources_that_cannot_be_searched(album: Album) -> None:
    for colour in ("red", "rose", "lime", "blue"):
        album.add(colour, 2)
    album.drain()
    grey = album.photo("q/grey.png", "grey")
    album.parts.blobs.write("oss://photos/readme.png", b"plain text, not an image")
    task = _search(album, [album.photo("q/red.png", "red"), grey, "oss://photos/readme.png"])
    assert task["Status"] == "Succeeded"
    found, no_face, not_image = task["Result"]["Sources"]
    assert len(found["Figures"]) == 5  # IMM's default MaxResult
    assert no_face == {"URI": grey, "Code": "NoFaceDetected", "Message": "No face in the image."}
    assert not_image["Code"] == "InvalidFile" and not_image["URI"] == "oss://photos/readme.png"


def test_the_notification_carries_the_result(album: Album) -> None:
    _analysed(album)
    task = _search(
        album,
        [album.photo("q/red.png", "red")],
        UserData='{"id": 7}',
        Notification={"MNS": {"TopicName": "searches"}},
    )
    (content,) = [n for n in album.notices() if n["TaskType"] == "FacesSearching"]
    assert content["TaskId"] == task["TaskId"] and content["Status"] == "Succeeded"
    assert content["UserData"] == '{"id": 7}'
    assert content["Result"] == task["Result"]
    lines = (album.notices_path).read_text().splitlines()
    envelope = json.loads(lines[-1])
    assert envelope["topic"] == "searches"
    assert envelope["message"]["type"] == "imm:Task:FacesSearching"


def test_new_and_deleted_faces_reach_the_index(album: Album) -> None:
    photos = _analysed(album)
    query = album.photo("q/red.png", "red")
    first = _search(album, [query], MaxResult=100)["Result"]["Sources"][0]["Figures"]
    assert len(first) == 5
    album.call("DeleteFileMeta", {**album.dataset, "URI": photos["red"][0]})
    new = album.add("rose", 1, prefix="new-rose")
    album.drain()
    after = _search(album, [query], MaxResult=100)["Result"]["Sources"][0]["Figures"]
    uris = [f["URI"] for f in after]
    assert len(after) == 5 and photos["red"][0] not in uris and new[0] in uris


def test_a_large_result_goes_to_an_object(open_album: Callable[..., Album]) -> None:
    album = open_album(message_limit=300)
    blobs = album.parts.blobs
    album.add("red", 4)
    album.drain()
    query = album.photo("q/red.png", "red")
    task = _search(album, [query], Notification={"MNS": {"TopicName": "searches"}})
    assert "Result" not in task
    uri = task["ExtendedMessageURI"]
    assert uri.startswith("oss://openimm-work/") and task["TaskId"] in uri
    stored = json.loads(blobs.read(uri))
    assert len(stored["Result"]["Sources"][0]["Figures"]) == 4
    (content,) = album.notices()
    assert content["ExtendedMessageURI"] == uri and "Result" not in content
    # the request may name the object
    chosen = "oss://photos/results/search.json"
    task = _search(
        album, [query], Notification={"MNS": {"TopicName": "t"}, "ExtendedMessageURI": chosen}
    )
    assert task["ExtendedMessageURI"] == chosen
    assert json.loads(blobs.read(chosen))["Result"] == stored["Result"]
    # OpenIMM may replace its own output there, and a folder gets <task id>.json
    again = _search(album, [query], Notification={"ExtendedMessageURI": chosen})
    assert again["ExtendedMessageURI"] == chosen
    folder = _search(album, [query], Notification={"ExtendedMessageURI": "oss://photos/out/"})
    assert folder["ExtendedMessageURI"] == f"oss://photos/out/{folder['TaskId']}.json"


def test_a_result_never_replaces_an_object_openimm_did_not_write(
    open_album: Callable[..., Album],
) -> None:
    album = open_album(message_limit=300)
    blobs = album.parts.blobs
    album.add("red", 4)
    album.drain()
    query = album.photo("q/red.png", "red")
    photo = album.add("lime", 1)[0]
    before = blobs.read(photo)
    body = {**album.dataset, "Sources": [{"URI": query}]}
    error = album.error(
        "CreateFacesSearchingTask", {**body, "Notification": {"ExtendedMessageURI": photo}}
    )
    assert (error.code, error.http_status) == ("InvalidArgument", 400)
    assert "did not write" in error.message and photo in error.message
    # an object that appears between the request and the result is kept too
    late = "oss://photos/results/late.json"
    task_id = album.call(
        "CreateFacesSearchingTask", {**body, "Notification": {"ExtendedMessageURI": late}}
    )["TaskId"]
    blobs.write(late, b"the user's own file")
    album.drain()
    task = album.task("FacesSearching", task_id)
    assert task["Status"] == "Succeeded"
    assert task["ExtendedMessageURI"].startswith("oss://openimm-work/task-results/")
    assert blobs.read(late) == b"the user's own file" and blobs.read(photo) == before
    # an output the user rewrote is theirs from then on
    mine = "oss://photos/results/mine.json"
    _search(album, [query], Notification={"ExtendedMessageURI": mine})
    blobs.write(mine, b"edited by the user")
    error = album.error(
        "CreateFacesSearchingTask", {**body, "Notification": {"ExtendedMessageURI": mine}}
    )
    assert error.code == "InvalidArgument"


@pytest.mark.parametrize(
    ("change", "code", "status", "named"),
    [
        ({"MaxResult": 101}, "InvalidArgument", 400, "MaxResult"),
        ({"MaxResult": -1}, "InvalidArgument", 400, "MaxResult"),
        ({"Sources": [{"URI": "oss://otherbucket/a.png"}]}, "ResourceNotFound", 404, ""),
        ({"Sources": [{"URI": "oss://photos/missing.png"}]}, "ResourceNotFound", 404, ""),
        ({"Sources": [{"URI": "http://example.com/a.png"}]}, "InvalidArgument", 400, "URI"),
        ({"Sources": [{"URI": "oss://photos/../../etc/passwd"}]}, "InvalidArgument", 400, ""),
        ({"Sources": []}, "InvalidArgument", 400, "Sources"),
        ({"Sources": None}, "MissingParameter", 400, "Sources"),
        ({"DatasetName": "nope"}, "ResourceNotFound", 404, "nope"),
    ],
)
def test_bad_requests_get_imm_errors_and_create_no_task(
    album: Album, change: dict[str, Any], code: str, status: int, named: str
) -> None:
    body = {**album.dataset, "Sources": [{"URI": album.photo("q/red.png", "red")}], **change}
    body = {k: v for k, v in body.items() if v is not None}
    error = album.error("CreateFacesSearchingTask", body)
    assert (error.code, error.http_status) == (code, status)
    assert named in error.message and "Traceback" not in error.message
    assert album.call("ListTasks", {"ProjectName": "album"})["Tasks"] == []


def test_detect_image_faces(album: Album) -> None:
    (face,) = album.call(
        "DetectImageFaces",
        {"ProjectName": "album", "SourceURI": album.photo("q/red.png", "red", size=200)},
    )["Faces"]
    assert face["Boundary"] == {"Left": 50, "Top": 50, "Width": 100, "Height": 100}
    assert face["FigureType"] == "face" and face["FaceQuality"] == 0.95
    assert "Age" not in face  # nothing measured it
    grey = album.call(
        "DetectImageFaces", {"ProjectName": "album", "SourceURI": album.photo("g.png", "grey")}
    )
    assert grey["Faces"] == []
    error = album.error(
        "DetectImageFaces", {"ProjectName": "nope", "SourceURI": "oss://photos/g.png"}
    )
    assert (error.code, error.http_status) == ("ResourceNotFound", 404)


def test_compare_image_faces(album: Album) -> None:
    red, rose, blue = (album.photo(f"c/{c}.png", c) for c in ("red", "rose", "blue"))

    def compare(first: str, second: str) -> float:
        body = {"ProjectName": "album", "Source": {"URI1": first, "URI2": second}}
        return float(album.call("CompareImageFaces", body)["Similarity"])

    assert compare(red, rose) > 0.95
    assert compare(red, blue) < 0.05
    assert compare(red, red) == compare(red, red)
    grey = album.photo("c/grey.png", "grey")
    error = album.error(
        "CompareImageFaces", {"ProjectName": "album", "Source": {"URI1": red, "URI2": grey}}
    )
    assert error.code == "InvalidArgument" and "URI2" in error.message
    error = album.error("CompareImageFaces", {"ProjectName": "album", "Source": {"URI1": red}})
    assert error.code == "MissingParameter" and "URI2" in error.message


def test_a_search_given_up_ends_failed(album: Album) -> None:
    body = {**album.dataset, "Sources": [{"URI": album.photo("q/red.png", "red")}]}
    task_id = album.call("CreateFacesSearchingTask", body)["TaskId"]
    (message,) = album.parts.queue.receive("search", max_messages=5, visibility_timeout=30)
    album.app.give_up("search", message.body, "worker died")
    task = album.task("FacesSearching", task_id)
    assert (task["Status"], task["Code"]) == ("Failed", "InternalError")
    assert task["Message"] == "searching failed: worker died"
    album.app.run_stage("search", message.body)  # a late redelivery changes nothing
    assert album.task("FacesSearching", task_id)["Status"] == "Failed"


def test_a_clustering_task_builds_and_saves_the_search_graph_ahead(
    open_album: Callable[..., Album], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []
    real = face_index.UsearchGraph.__init__

    def counted(self: face_index.UsearchGraph, dim: int, settings: GraphSettings) -> None:
        builds.append(dim)  # a graph loaded from a snapshot is not constructed
        real(self, dim, settings)

    monkeypatch.setattr(face_index.UsearchGraph, "__init__", counted)
    album = open_album(face_exact_limit=2)  # five faces go through a graph
    photos = _analysed(album)
    assert not builds
    assert album.cluster()["Status"] == "Succeeded"
    assert len(builds) == 1  # by the search stage, after the clustering
    query = album.photo("query/rose.png", "rose", size=200)
    warm = _search(album, [query], MaxResult=4)["Result"]["Sources"][0]["Figures"]
    assert len(builds) == 1

    # a cold instance over the same storage loads the saved graph: no build in the search
    settings = Settings(data_dir=tmp_path, join_similarity=0.80, seed_similarity=0.85)
    cold_app = build(dataclasses.replace(settings, face_exact_limit=2), album.parts)
    cold = type(album)(album.parts, cold_app, tmp_path / "notices.jsonl")
    found = _search(cold, [query], MaxResult=4)["Result"]["Sources"][0]["Figures"]
    assert len(builds) == 1
    assert found == warm
    assert {f["URI"] for f in found[:3]} == set(photos["red"])


def test_a_dataset_within_the_exact_limit_saves_no_graph(album: Album) -> None:
    _analysed(album)
    assert album.cluster()["Status"] == "Succeeded"
    assert not list(album.parts.blobs.list("oss://openimm-work/face-index/"))
