"""Why a face is in no person: each such Figure says it (FigureClusterReason), in words."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openimm.domain.left_out import LEFT_OUT_BECAUSE, MOVED_OUT

if TYPE_CHECKING:
    from conftest import Album

INDEPENDENT = "figure-cluster-id-independent"
UNAVAILABLE = "figure-cluster-id-unavailable"


def test_a_face_not_grouped_yet_says_so_and_a_grouped_one_has_no_reason(album: Album) -> None:
    reds = album.add("red", 3)
    album.drain()
    (waiting,) = album.file(reds[0])["Figures"]
    assert waiting["FigureClusterId"] == UNAVAILABLE
    assert waiting["FigureClusterReason"] == LEFT_OUT_BECAUSE[UNAVAILABLE]
    album.cluster()
    (grouped,) = album.file(reds[0])["Figures"]
    assert grouped["FigureClusterId"].startswith("Cluster-")
    assert "FigureClusterReason" not in grouped


def test_a_face_that_fits_no_one_and_one_taken_out_by_hand_say_which(album: Album) -> None:
    reds = album.add("red", 3)
    (blue,) = album.add("blue", 1)
    album.cluster()
    (alone,) = album.file(blue)["Figures"]
    assert alone["FigureClusterId"] == INDEPENDENT
    assert alone["FigureClusterReason"] == LEFT_OUT_BECAUSE[INDEPENDENT]
    figure = album.file(reds[0])["Figures"][0]["FigureId"]
    moved = {"FigureId": figure, "FigureClusterId": INDEPENDENT}
    album.call("UpdateFileMeta", {**album.dataset, "File": {"URI": reds[0], "Figures": [moved]}})
    (out,) = album.file(reds[0])["Figures"]
    assert out["FigureClusterReason"] == MOVED_OUT
    # the faces left out for a reason are the ones SimpleQuery lists under its cluster id
    query = {"Field": "Figures.FigureClusterId", "Operation": "eq", "Value": INDEPENDENT}
    files = album.call("SimpleQuery", {**album.dataset, "Query": query})["Files"]
    reasons = {f["URI"]: f["Figures"][0]["FigureClusterReason"] for f in files}
    assert reasons == {blue: LEFT_OUT_BECAUSE[INDEPENDENT], reds[0]: MOVED_OUT}
