"""UpdateFigureCluster: the user's fields, the optimistic lock, a cover that sticks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from openimm.errors import ConcurrentUpdateConflict

if TYPE_CHECKING:
    from conftest import Album


def _one_red_cluster(album: Album) -> tuple[list[str], dict[str, object]]:
    uris = album.add("red", 3)
    album.cluster()
    (cluster,) = album.clusters()
    return uris, cluster


def _update(album: Album, cluster: dict[str, object]) -> dict[str, object]:
    return {**album.dataset, "FigureCluster": cluster}


def test_user_fields_change_and_the_lock_version_moves_on(album: Album) -> None:
    _, cluster = _one_red_cluster(album)
    version = cluster["MetaLockVersion"]
    reply = album.call(
        "UpdateFigureCluster",
        _update(
            album,
            {
                "ObjectId": cluster["ObjectId"],
                "MetaLockVersion": version,
                "Name": "Grandma",
                "CustomId": "person-1",
                "CustomLabels": {"side": "mother", "age": 80},
            },
        ),
    )
    assert reply == {}
    after = album.get(str(cluster["ObjectId"]))
    assert after["Name"] == "Grandma" and after["CustomId"] == "person-1"
    assert after["CustomLabels"] == {"side": "mother", "age": "80"}
    assert after["MetaLockVersion"] == version + 1
    assert after["FaceCount"] == 3 and after["Cover"] == cluster["Cover"]
    # a later clustering run recounts, and keeps what the user wrote
    album.add("red", 1, prefix="late")
    album.cluster()
    again = album.get(str(cluster["ObjectId"]))
    assert again["FaceCount"] == 4 and again["Name"] == "Grandma"


def test_a_stale_lock_version_is_a_conflict_and_writes_nothing(album: Album) -> None:
    _, cluster = _one_red_cluster(album)
    cid = str(cluster["ObjectId"])
    album.call("UpdateFigureCluster", _update(album, {"ObjectId": cid, "Name": "first"}))
    before = album.get(cid)
    error = album.error(
        "UpdateFigureCluster",
        _update(
            album,
            {"ObjectId": cid, "MetaLockVersion": cluster["MetaLockVersion"], "Name": "second"},
        ),
    )
    assert isinstance(error, ConcurrentUpdateConflict)
    assert error.code == "ConcurrentUpdateConflict" and error.http_status == 409
    assert "MetaLockVersion" in error.message
    assert album.get(cid) == before


def test_without_a_lock_version_the_update_always_applies(album: Album) -> None:
    _, cluster = _one_red_cluster(album)
    cid = str(cluster["ObjectId"])
    for name in ("a", "b"):
        album.call("UpdateFigureCluster", _update(album, {"ObjectId": cid, "Name": name}))
    assert album.get(cid)["Name"] == "b"


def test_a_chosen_cover_sticks_while_its_face_stays(album: Album) -> None:
    uris, cluster = _one_red_cluster(album)
    cid = str(cluster["ObjectId"])
    automatic = cluster["Cover"]["URI"]
    chosen_uri = next(u for u in uris if u != automatic)
    chosen = album.file(chosen_uri)["Figures"][0]["FigureId"]
    album.call(
        "UpdateFigureCluster",
        # the cover as GetFigureCluster returns it: a file whose first figure is the face
        _update(
            album,
            {"ObjectId": cid, "Cover": {"URI": chosen_uri, "Figures": [{"FigureId": chosen}]}},
        ),
    )
    cover = album.get(cid)["Cover"]
    assert cover["URI"] == chosen_uri and cover["Figures"][0]["FigureId"] == chosen
    album.add("red", 2, prefix="more")
    album.cluster()
    after = album.get(cid)
    assert after["FaceCount"] == 5 and after["Cover"]["Figures"][0]["FigureId"] == chosen
    # its file deleted, the ranking picks a cover again
    album.call("DeleteFileMeta", {**album.dataset, "URI": chosen_uri})
    fallback = album.get(cid)["Cover"]
    assert fallback["URI"] != chosen_uri and fallback["Figures"][0]["FigureClusterId"] == cid


def test_a_cover_face_must_belong_to_the_cluster(album: Album) -> None:
    _, cluster = _one_red_cluster(album)
    (blue,) = album.add("blue", 1)
    album.drain()
    stranger = album.file(blue)["Figures"][0]["FigureId"]
    before = album.get(str(cluster["ObjectId"]))
    error = album.error(
        "UpdateFigureCluster",
        _update(
            album,
            {
                "ObjectId": cluster["ObjectId"],
                "Name": "x",
                "Cover": {"Figures": [{"FigureId": stranger}]},
            },
        ),
    )
    assert (error.code, error.http_status) == ("InvalidArgument", 400)
    assert "Cover" in error.message
    assert album.get(str(cluster["ObjectId"])) == before


@pytest.mark.parametrize(
    ("figure_cluster", "code", "status", "names"),
    [
        ({"ObjectId": "Cluster-nope", "Name": "x"}, "ResourceNotFound", 404, "Cluster-nope"),
        ({"ObjectId": "figure-cluster-id-independent"}, "InvalidArgument", 400, "ObjectId"),
        ({"ObjectId": "figure-cluster-id-unavailable"}, "InvalidArgument", 400, "ObjectId"),
        ({"Name": "x"}, "MissingParameter", 400, "FigureCluster.ObjectId"),
        ({"ObjectId": "c", "MetaLockVersion": "two"}, "InvalidArgument", 400, "MetaLockVersion"),
        ({"ObjectId": "c", "MetaLockVersion": -1}, "InvalidArgument", 400, "MetaLockVersion"),
        ({"ObjectId": "c", "CustomLabels": ["a"]}, "InvalidArgument", 400, "CustomLabels"),
        ({"ObjectId": "c", "Cover": {"Figures": []}}, "InvalidArgument", 400, "Cover.Figures"),
        ("not json", "InvalidArgument", 400, "FigureCluster"),
    ],
)
def test_bad_requests(
    album: Album, figure_cluster: object, code: str, status: int, names: str
) -> None:
    error = album.error("UpdateFigureCluster", _update(album, figure_cluster))
    assert (error.code, error.http_status) == (code, status)
    assert names in error.message


def test_the_figure_cluster_is_required(album: Album) -> None:
    error = album.error("UpdateFigureCluster", album.dataset)
    assert error.code == "MissingParameter" and "FigureCluster" in error.message
