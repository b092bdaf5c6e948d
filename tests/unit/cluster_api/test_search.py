"""SearchImageFigureCluster: the clusters of an image's faces, by the clustering's join rule."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pytest

from openimm.domain.cluster_search import match_faces
from openimm.grouping.figure_clustering import ClusteringConfig

if TYPE_CHECKING:
    from conftest import Album


def _search(album: Album, uri: str) -> list[dict[str, object]]:
    reply = album.call("SearchImageFigureCluster", {**album.dataset, "SourceURI": uri})
    return list(reply["Clusters"])


def test_a_face_finds_its_cluster_with_box_and_similarity(album: Album) -> None:
    reds = album.add("red", 3)
    album.add("lime", 3)
    album.cluster()
    red = album.cluster_of(reds[0])["ObjectId"]
    query = album.photo("query/rose.png", "rose", size=200)  # not indexed: any object will do
    (found,) = _search(album, query)
    assert found["ClusterId"] == red
    assert found["Boundary"] == {"Left": 50, "Top": 50, "Width": 100, "Height": 100}
    assert 0.5 < float(found["Similarity"]) <= 1.0
    # searching creates no task and indexes nothing
    tasks = album.call("ListTasks", {"ProjectName": "album"})["Tasks"]
    assert [t["TaskType"] for t in tasks] == ["FaceClustering"]
    error = album.error("GetFileMeta", {**album.dataset, "URI": query})
    assert error.code == "ResourceNotFound"


def test_no_match_and_no_face_give_an_empty_list(album: Album) -> None:
    album.add("red", 3)
    album.cluster()
    assert _search(album, album.photo("q/blue.png", "blue")) == []
    assert _search(album, album.photo("q/grey.png", "grey")) == []


def test_a_dataset_without_clusters_matches_nothing(album: Album) -> None:
    assert _search(album, album.photo("q/red.png", "red")) == []


@pytest.mark.parametrize(
    ("source", "code", "status"),
    [
        ("oss://photos/missing.png", "ResourceNotFound", 404),
        ("oss://nobucket/a.png", "ResourceNotFound", 404),
        ("oss://photos/../../etc/passwd", "InvalidArgument", 400),
        ("oss://photos/readme.png", "InvalidFile", 400),
        ("oss://photos/cut.png", "InvalidFile", 400),
        ("http://example.com/a.png", "InvalidArgument", 400),
    ],
)
def test_bad_sources_get_the_errors_indexing_gives(
    album: Album, source: str, code: str, status: int
) -> None:
    album.parts.blobs.write("oss://photos/readme.png", b"plain text, not an image")
    good = album.parts.blobs.read(album.photo("whole.png", "red"))
    album.parts.blobs.write("oss://photos/cut.png", good[: len(good) // 2])
    error = album.error("SearchImageFigureCluster", {**album.dataset, "SourceURI": source})
    assert (error.code, error.http_status) == (code, status)
    assert "Traceback" not in error.message


def test_missing_parameters_and_unknown_datasets(album: Album) -> None:
    error = album.error("SearchImageFigureCluster", album.dataset)
    assert error.code == "MissingParameter" and "SourceURI" in error.message
    error = album.error(
        "SearchImageFigureCluster",
        {"ProjectName": "album", "DatasetName": "nope", "SourceURI": "oss://photos/a.png"},
    )
    assert (error.code, error.http_status) == ("ResourceNotFound", 404)


def _unit(*rows: tuple[float, ...]) -> np.ndarray:
    matrix = np.array(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_match_faces_follows_the_join_rule() -> None:
    config = ClusteringConfig(join_similarity=0.8, seed_similarity=0.85, confidence_scale=0.05)
    clusters = {"A": _unit((1, 0, 0), (1, 0.1, 0)), "B": _unit((0, 1, 0), (0, 1, 0.1))}
    best, none = match_faces(_unit((1, 0.05, 0), (0, 0, 1)), clusters, config)
    assert best is not None and best[0] == "A" and best[1] > 0.95
    assert none is None
    # central 0.83 and top-2 mean 0.83 to A pass; 0.6 to B does not
    (between,) = match_faces(_unit((0.8, 0.6, 0)), clusters, config)
    assert between is not None and between[0] == "A" and 0.5 < between[1] < 0.95
    # at the join threshold the similarity is one half
    at_threshold = ClusteringConfig(
        join_similarity=0.7999, seed_similarity=0.85, confidence_scale=0.05
    )
    (exact,) = match_faces(_unit((0.8, 0.6, 0)), {"C": _unit((1, 0, 0))}, at_threshold)
    assert exact is not None and exact[1] == pytest.approx(0.5, abs=1e-3)


def test_two_faces_of_one_image_never_share_a_cluster() -> None:
    config = ClusteringConfig(join_similarity=0.8, seed_similarity=0.85)
    clusters = {"A": _unit((1, 0, 0)), "B": _unit((0.9, 0.44, 0))}
    faces = _unit((1, 0.01, 0), (1, 0.02, 0))
    first, second = match_faces(faces, clusters, config)
    assert first is not None and first[0] == "A"
    assert second is not None and second[0] == "B"


def test_a_relaxed_match_needs_its_cluster_to_stand_out() -> None:
    config = ClusteringConfig(
        join_similarity=0.9, seed_similarity=0.9, relaxed_join_similarity=0.8, join_margin=0.05
    )
    face = _unit((0.85, np.sqrt(1 - 0.85**2), 0))  # cosine 0.85 to A: below the strict join
    alone = {"A": _unit((1, 0, 0)), "B": _unit((0, 0, 1))}
    (match,) = match_faces(face, alone, config)
    assert match is not None and match[0] == "A" and 0.5 < match[1] < 1.0
    rival = {**alone, "B": _unit((0.82, np.sqrt(1 - 0.82**2), 0))}  # 0.999 to the face
    (none,) = match_faces(face, rival, config)
    assert none is not None and none[0] == "B"  # the rival is now the best, and passes strictly
    close = {**alone, "B": _unit((0.52, 0.854, 0.0))}
    (undecided,) = match_faces(face, close, config)
    assert undecided is None
    (strict,) = match_faces(face, alone, dataclasses.replace(config, relaxed_join_similarity=None))
    assert strict is None
