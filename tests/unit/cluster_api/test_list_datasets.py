"""ListDatasets: a project's datasets in name order, by prefix, paged."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Album


def test_datasets_come_in_name_order_by_prefix_and_page(album: Album) -> None:
    project = album.dataset["ProjectName"]
    for name in ("trip-b", "trip-a", "other"):
        album.call("CreateDataset", {"ProjectName": project, "DatasetName": name})
    every = album.call("ListDatasets", {"ProjectName": project})["Datasets"]
    names = [d["DatasetName"] for d in every]
    assert names == sorted(names) and {"trip-a", "trip-b", "other"} <= set(names)
    first = album.call("ListDatasets", {"ProjectName": project, "Prefix": "trip", "MaxResults": 1})
    rest = album.call(
        "ListDatasets",
        {
            "ProjectName": project,
            "Prefix": "trip",
            "MaxResults": 1,
            "NextToken": first["NextToken"],
        },
    )
    assert [d["DatasetName"] for d in first["Datasets"] + rest["Datasets"]] == ["trip-a", "trip-b"]
    assert "NextToken" not in rest


def test_an_unknown_project_is_not_found(album: Album) -> None:
    assert album.error("ListDatasets", {"ProjectName": "nobody"}).code == "ResourceNotFound"
