"""UpdateFileMeta: a file's user fields, and faces moved between clusters by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Album

INDEPENDENT = "figure-cluster-id-independent"


def _figure(album: Album, uri: str) -> str:
    return str(album.file(uri)["Figures"][0]["FigureId"])


def _update(album: Album, file: Any) -> dict[str, Any]:
    return album.call("UpdateFileMeta", {**album.dataset, "File": file})


def test_user_fields_change_and_the_analysis_stays(album: Album) -> None:
    (uri,) = album.add("red", 1)
    album.drain()
    before = album.file(uri)
    reply = _update(album, {"URI": uri, "CustomId": "img-1", "CustomLabels": {"trip": "Rome"}})
    assert reply == {}
    after = album.file(uri)
    assert after["CustomId"] == "img-1" and after["CustomLabels"] == {"trip": "Rome"}
    assert after["Figures"] == before["Figures"] and after["ObjectStatus"] == "succeeded"
    _update(album, {"URI": uri, "CustomLabels": {"trip": "Paris"}})
    assert album.file(uri)["CustomLabels"] == {"trip": "Paris"}
    assert album.file(uri)["CustomId"] == "img-1"


def test_a_moved_face_stays_moved_across_clustering_runs(album: Album) -> None:
    reds = album.add("red", 4)
    roses = album.add("rose", 3, prefix="rose")
    album.cluster()
    (cluster,) = album.clusters()  # red and rose look alike: one cluster of seven
    assert cluster["FaceCount"] == 7
    limes = album.add("lime", 3)
    album.cluster()
    lime = album.cluster_of(limes[0])["ObjectId"]
    red = cluster["ObjectId"]
    figure = _figure(album, roses[0])
    _update(album, {"URI": roses[0], "Figures": [{"FigureId": figure, "FigureClusterId": lime}]})
    row = album.figure_row(roses[0])
    assert row["FigureClusterId"] == lime and row["_pinned"] is True
    assert row["_moved_from"] == red and row["FigureClusterConfidence"] == 1.0
    assert album.get(red)["FaceCount"] == 6 and album.get(lime)["FaceCount"] == 4
    album.add("rose", 1, prefix="late-rose")
    album.cluster()
    assert album.figure_row(roses[0])["FigureClusterId"] == lime
    assert album.get(lime)["FaceCount"] == 4 and album.get(red)["FaceCount"] == 7
    assert album.figure_row(reds[0])["FigureClusterId"] == red


def test_a_face_taken_out_stays_out_and_an_emptied_cluster_goes(album: Album) -> None:
    limes = album.add("lime", 3)
    album.cluster()
    lime = album.cluster_of(limes[0])["ObjectId"]
    for uri in limes:
        _update(
            album,
            {
                "URI": uri,
                "Figures": [{"FigureId": _figure(album, uri), "FigureClusterId": INDEPENDENT}],
            },
        )
    assert album.clusters() == []
    row = album.figure_row(limes[0])
    assert row["FigureClusterId"] == INDEPENDENT and row["_moved_from"] == lime
    assert row["FigureClusterConfidence"] == 0.0
    album.cluster()  # three good faces of one person would seed a cluster, but they are pinned
    assert album.clusters() == []
    assert album.file(limes[0])["Figures"][0]["FigureClusterId"] == INDEPENDENT


@pytest.mark.parametrize(
    ("file", "code", "status", "names"),
    [
        ({"URI": "oss://photos/none.png"}, "ResourceNotFound", 404, "none.png"),
        (
            {"URI": "{uri}", "Figures": [{"FigureId": "no-such-face", "FigureClusterId": "{red}"}]},
            "ResourceNotFound",
            404,
            "no-such-face",
        ),
        (
            {
                "URI": "{uri}",
                "Figures": [{"FigureId": "{face}", "FigureClusterId": "Cluster-nope"}],
            },
            "ResourceNotFound",
            404,
            "Cluster-nope",
        ),
        (
            {
                "URI": "{uri}",
                "Figures": [
                    {"FigureId": "{face}", "FigureClusterId": "figure-cluster-id-unavailable"}
                ],
            },
            "InvalidArgument",
            400,
            "FigureClusterId",
        ),
        (
            {"URI": "{uri}", "Figures": [{"FigureClusterId": "{red}"}]},
            "MissingParameter",
            400,
            "File.Figures.1.FigureId",
        ),
        (
            {"URI": "{uri}", "Figures": [{"FigureId": "{face}"}]},
            "MissingParameter",
            400,
            "FigureClusterId",
        ),
        (
            {
                "URI": "{uri}",
                "Figures": [
                    {"FigureId": "{face}", "FigureClusterId": "{red}"},
                    {"FigureId": "{face}", "FigureClusterId": INDEPENDENT},
                ],
            },
            "InvalidArgument",
            400,
            "File.Figures.2.FigureId",
        ),
        ({"CustomId": "x"}, "MissingParameter", 400, "File.URI"),
        ({"URI": "photos/a.png"}, "InvalidArgument", 400, "File.URI"),
        ({"URI": "{uri}", "Figures": "nope"}, "InvalidArgument", 400, "File.Figures"),
        ({"URI": "{uri}", "CustomLabels": "nope"}, "InvalidArgument", 400, "File.CustomLabels"),
    ],
)
def test_bad_requests_change_nothing(
    album: Album, file: dict[str, Any], code: str, status: int, names: str
) -> None:
    reds = album.add("red", 3)
    album.cluster()
    red = album.cluster_of(reds[0])["ObjectId"]
    fill = {"uri": reds[0], "red": red, "face": _figure(album, reds[0])}

    def filled(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: filled(v) for k, v in value.items()}
        if isinstance(value, list):
            return [filled(v) for v in value]
        return value.format(**fill) if isinstance(value, str) else value

    given = filled({**file, "CustomId": "changed"}) if "URI" in file else filled(file)
    before = (album.file(reds[0]), album.get(red))
    error = album.error("UpdateFileMeta", {**album.dataset, "File": given})
    assert (error.code, error.http_status) == (code, status)
    assert names in error.message
    assert (album.file(reds[0]), album.get(red)) == before


def test_moves_wait_for_a_running_clustering(album: Album) -> None:
    reds = album.add("red", 3)
    album.cluster()
    album.parts.table.put("leases", "album/family", "cluster", {"holder": "a clustering run"})
    error = album.error(
        "UpdateFileMeta",
        {
            **album.dataset,
            "File": {
                "URI": reds[0],
                "CustomId": "x",
                "Figures": [{"FigureId": _figure(album, reds[0]), "FigureClusterId": INDEPENDENT}],
            },
        },
    )
    assert (error.code, error.http_status) == ("ConcurrentUpdateConflict", 409)
    assert "CustomId" not in album.file(reds[0])
    # user fields alone do not touch memberships and need no lease
    _update(album, {"URI": reds[0], "CustomId": "x"})
    assert album.file(reds[0])["CustomId"] == "x"


def test_deleting_files_removes_their_faces_and_empty_clusters(album: Album) -> None:
    reds = album.add("red", 3)
    limes = album.add("lime", 3)
    album.cluster()
    red = album.cluster_of(reds[0])["ObjectId"]
    figure = _figure(album, reds[0])
    album.call("DeleteFileMeta", {**album.dataset, "URI": reds[0]})
    assert album.app.figures.get_many("album", "family", [figure]) == []
    assert album.get(red)["FaceCount"] == 2
    for uri in reds[1:]:
        album.call("DeleteFileMeta", {**album.dataset, "URI": uri})
    assert [c["FaceCount"] for c in album.clusters()] == [3]
    error = album.error("GetFigureCluster", {**album.dataset, "ObjectId": red})
    assert error.code == "ResourceNotFound"
    assert album.cluster_of(limes[0])["FaceCount"] == 3
