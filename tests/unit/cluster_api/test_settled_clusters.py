"""A clustering run tells the algorithm which clusters are as the previous run left them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_mock import MockerFixture

import openimm.domain.clusters as clusters_module

if TYPE_CHECKING:
    from conftest import Album


def _settled_of_next_run(album: Album, mocker: MockerFixture) -> list[str]:
    spy = mocker.spy(clusters_module, "cluster_face_columns")
    album.cluster()
    settled: list[str] = spy.call_args.args[4]
    mocker.stop(spy)
    return settled


def test_clusters_untouched_since_the_last_run_are_settled(
    album: Album, mocker: MockerFixture
) -> None:
    album.add("red", 3)
    album.add("blue", 3)
    album.cluster()
    ids = sorted(c["ObjectId"] for c in album.clusters())

    assert sorted(_settled_of_next_run(album, mocker)) == ids


def test_a_cluster_changed_between_runs_is_weighed_again(
    album: Album, mocker: MockerFixture
) -> None:
    reds = album.add("red", 4)
    album.add("blue", 3)
    album.cluster()
    red = album.cluster_of(reds[0])["ObjectId"]
    blue = next(c["ObjectId"] for c in album.clusters() if c["ObjectId"] != red)

    album.call("DeleteFileMeta", {**album.dataset, "URI": reds[1]})

    assert _settled_of_next_run(album, mocker) == [blue]
    # the run that saw the deletion settles the cluster again
    assert sorted(_settled_of_next_run(album, mocker)) == sorted([red, blue])


def test_a_cluster_that_grew_in_a_run_is_settled_after_it(
    album: Album, mocker: MockerFixture
) -> None:
    reds = album.add("red", 3)
    album.cluster()
    album.add("rose", 2)
    first: dict[str, Any] = album.cluster_of(reds[0])

    settled = _settled_of_next_run(album, mocker)

    assert first["FaceCount"] == 3
    assert settled == [first["ObjectId"]]
    assert album.cluster_of(reds[0])["FaceCount"] == 5
    assert _settled_of_next_run(album, mocker) == [first["ObjectId"]]
