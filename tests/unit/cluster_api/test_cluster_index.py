"""The index of figures by cluster stays the figures' own view through every change.

SimpleQuery reads one person's faces from it; each test compares the whole index with
the figure rows after clustering runs, merges, moves, re-analysis and deletion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openimm.domain.entities import dataset_key
from openimm.domain.figure_members import COMPLETE, MEMBERS, member_key
from openimm.domain.figures import FIGURES
from openimm.ports import Delete

if TYPE_CHECKING:
    from conftest import Album

INDEPENDENT = "figure-cluster-id-independent"


def _assert_index_matches(album: Album) -> None:
    """One index row per figure, under its cluster, naming its file; no other rows."""
    table, key = album.parts.table, dataset_key("album", "family")
    figures = {r.sk: r.data for r in table.scan_partition(FIGURES, key)}
    want = {member_key(d["FigureClusterId"], fid): d["_uri"] for fid, d in figures.items()}
    have = {r.sk: r.data["_uri"] for r in table.scan_partition(MEMBERS, key) if r.sk != COMPLETE}
    assert figures and have == want
    assert table.get(MEMBERS, key, COMPLETE) is not None


def _files_of(album: Album, cluster_id: str) -> list[str]:
    query = {"Field": "Figures.FigureClusterId", "Operation": "eq", "Value": cluster_id}
    reply = album.call("SimpleQuery", {**album.dataset, "Query": query, "MaxResults": 100})
    return [f["URI"] for f in reply["Files"]]


def _move(album: Album, uri: str, to: str) -> None:
    figure = album.file(uri)["Figures"][0]["FigureId"]
    file: Any = {"URI": uri, "Figures": [{"FigureId": figure, "FigureClusterId": to}]}
    album.call("UpdateFileMeta", {**album.dataset, "File": file})


def test_analysis_and_clustering_runs_keep_the_index(album: Album) -> None:
    reds = album.add("red", 3)
    album.drain()
    _assert_index_matches(album)  # every face waits under "unavailable"
    album.cluster()
    _assert_index_matches(album)
    limes = album.add("lime", 3)
    album.cluster()
    _assert_index_matches(album)
    red, lime = (album.cluster_of(u[0])["ObjectId"] for u in (reds, limes))
    assert _files_of(album, red) == sorted(reds) and _files_of(album, lime) == sorted(limes)


def test_a_merge_and_a_move_keep_the_index(album: Album) -> None:
    reds, limes = album.add("red", 3), album.add("lime", 3)
    album.cluster()
    red, lime = (album.cluster_of(u[0])["ObjectId"] for u in (reds, limes))
    album.call("CreateFigureClustersMergingTask", {**album.dataset, "From": lime, "To": red})
    album.drain()
    _assert_index_matches(album)
    assert _files_of(album, red) == sorted(reds + limes) and _files_of(album, lime) == []
    _move(album, reds[0], INDEPENDENT)
    _assert_index_matches(album)
    assert reds[0] not in _files_of(album, red)
    assert _files_of(album, INDEPENDENT) == [reds[0]]


def test_a_replaced_file_and_a_deleted_one_keep_the_index(album: Album) -> None:
    reds = album.add("red", 3)
    album.add("lime", 3)
    album.cluster()
    red = album.cluster_of(reds[0])["ObjectId"]
    # the same URI now shows someone else: its face is embedded again
    album.photo("red0.png", "blue")
    album.index([reds[0]])
    album.drain()
    _assert_index_matches(album)
    album.call("DeleteFileMeta", {**album.dataset, "URI": reds[1]})
    _assert_index_matches(album)
    assert reds[1] not in _files_of(album, red)
    album.cluster()
    _assert_index_matches(album)


def test_a_dataset_written_before_the_index_is_answered_then_indexed(album: Album) -> None:
    reds = album.add("red", 3)
    album.cluster()
    red = album.cluster_of(reds[0])["ObjectId"]
    # as a dataset written by an earlier version: figures, and no index at all
    table, key = album.parts.table, dataset_key("album", "family")
    for record in list(table.scan_partition(MEMBERS, key)):
        table.transact([Delete(MEMBERS, key, record.sk)])
    assert _files_of(album, red) == sorted(reds)  # every figure read instead
    album.add("lime", 2)
    album.cluster()  # its run indexes the figures the writers did not
    _assert_index_matches(album)
    assert _files_of(album, red) == sorted(reds)
