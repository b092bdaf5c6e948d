"""SimpleQuery: the files showing one person (Figures.FigureClusterId eq), paged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import Album


def _query(album: Album, value: str, **more: Any) -> dict[str, Any]:
    query = {"Field": "Figures.FigureClusterId", "Operation": "eq", "Value": value}
    return album.call("SimpleQuery", {**album.dataset, "Query": query, **more})


def test_the_files_of_one_cluster_come_in_uri_order_with_their_faces(album: Album) -> None:
    reds, limes = album.add("red", 3), album.add("lime", 3)
    album.cluster()
    red = album.cluster_of(reds[0])["ObjectId"]
    files = _query(album, red)["Files"]
    assert [f["URI"] for f in files] == sorted(reds)
    assert all(f["Figures"][0]["FigureClusterId"] == red for f in files)
    assert not set(limes) & {f["URI"] for f in files}


def test_pages_follow_next_token(album: Album) -> None:
    reds = album.add("red", 5)
    album.cluster()
    red = album.cluster_of(reds[0])["ObjectId"]
    first = _query(album, red, MaxResults=2)
    second = _query(album, red, MaxResults=2, NextToken=first["NextToken"])
    third = _query(album, red, MaxResults=2, NextToken=second["NextToken"])
    seen = [f["URI"] for page in (first, second, third) for f in page["Files"]]
    assert seen == sorted(reds) and "NextToken" not in third


def test_other_fields_and_operations_are_refused_plainly(album: Album) -> None:
    error = album.error(
        "SimpleQuery",
        {**album.dataset, "Query": {"Field": "Size", "Operation": "gt", "Value": "1"}},
    )
    assert error.code == "InvalidArgument" and "Query.Field" in error.message


def test_an_unknown_cluster_has_no_files(album: Album) -> None:
    album.add("red", 3)
    album.cluster()
    assert _query(album, "Cluster-none")["Files"] == []
