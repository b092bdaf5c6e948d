"""A user's merge or move, and a file's deletion, recount the clusters they touch alone:
their faces are read through the index by cluster, never every figure of the dataset."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from openimm.domain.catalog import Catalog
from openimm.domain.figures import FigureBook

if TYPE_CHECKING:
    from conftest import Album


def _stats(album: Album) -> dict[str, dict[str, Any]]:
    """Each cluster as the API shows it, times left out."""
    return {
        c["ObjectId"]: {k: v for k, v in c.items() if not k.endswith("Time")}
        for c in album.clusters()
    }


def _every_row_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    def all_rows(*args: object) -> Any:
        raise AssertionError("every figure or file row of the dataset was read")

    monkeypatch.setattr(FigureBook, "all", all_rows)
    # a file in no similar-image cluster changes none: the file rows are not read either
    monkeypatch.setattr(Catalog, "files", all_rows)


def test_edits_recount_their_clusters_as_a_full_refresh_would(
    album: Album, monkeypatch: pytest.MonkeyPatch
) -> None:
    reds, limes = album.add("red", 4), album.add("lime", 3)
    blues = album.add("blue", 3)
    album.cluster()
    red, lime = album.cluster_of(reds[0])["ObjectId"], album.cluster_of(limes[0])["ObjectId"]
    blue = album.cluster_of(blues[0])["ObjectId"]

    with monkeypatch.context() as patch:
        _every_row_unread(patch)
        # a face moved by hand, then a merge, then a deleted file
        (figure,) = album.file(reds[0])["Figures"]
        album.call(
            "UpdateFileMeta",
            {
                **album.dataset,
                "File": {
                    "URI": reds[0],
                    "Figures": [{"FigureId": figure["FigureId"], "FigureClusterId": blue}],
                },
            },
        )
        assert album.get(red)["FaceCount"] == 3 and album.get(blue)["FaceCount"] == 4
        body = {**album.dataset, "From": lime, "To": red}
        album.call("CreateFigureClustersMergingTask", body)
        album.drain()
        assert album.get(red)["FaceCount"] == 6
        album.call("DeleteFileMeta", {**album.dataset, "URI": blues[0]})
        assert album.get(blue)["FaceCount"] == 3
        recounted = _stats(album)

    album.app.clusters.refresh(album.dataset["ProjectName"], album.dataset["DatasetName"])
    assert _stats(album) == recounted
    assert sorted(recounted) == sorted([red, blue])


def test_a_cluster_a_deletion_empties_goes(album: Album, monkeypatch: pytest.MonkeyPatch) -> None:
    limes = album.add("lime", 3)
    album.cluster()
    lime = album.cluster_of(limes[0])["ObjectId"]
    _every_row_unread(monkeypatch)
    for uri in limes:
        album.call("DeleteFileMeta", {**album.dataset, "URI": uri})
    assert lime not in _stats(album)
