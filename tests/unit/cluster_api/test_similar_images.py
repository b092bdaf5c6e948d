"""Similar-image clusters through the operations: bursts made here from the sample photos.

The photos are measured by the real networks (Open-NSFW embedding, pHash, ImageScore, ORB);
faces come from the colour stand-ins, which these tests do not look at.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
from PIL import Image

from openimm.vision.types import Pixels

if TYPE_CHECKING:
    from conftest import Album

pytestmark = pytest.mark.models

# a burst of five frames of one shot, a pair of another, three photos of other scenes
BURST = (
    "lectern.jpg",
    "lectern-q40.jpg",
    "lectern-bright.jpg",
    "lectern-crop.jpg",
    "lectern-small.jpg",
)
PAIR = ("biden.jpg", "biden-shift.jpg")
OTHERS = ("portrait.jpg", "standing.jpg", "poker.jpg")


def _jpeg(rgb: Pixels, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _load(path: Path, side: int = 900) -> Pixels:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    scale = side / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def photos(sample_photos: Path) -> dict[str, bytes]:
    """File name -> JPEG bytes of the burst, the pair and the other scenes."""
    lectern = _load(sample_photos / "obama2.jpg")
    h, w = lectern.shape[:2]
    biden = _load(sample_photos / "biden.jpg")
    bh, bw = biden.shape[:2]
    shift = np.float32([[1, 0, 0.02 * bw], [0, 1, 0.01 * bh]])
    return {
        "lectern.jpg": _jpeg(lectern),
        "lectern-q40.jpg": _jpeg(lectern, 40),
        "lectern-bright.jpg": _jpeg(np.clip(lectern * 1.25, 0, 255).astype(np.uint8)),
        "lectern-crop.jpg": _jpeg(lectern[h // 25 : h - h // 25, w // 25 : w - w // 25]),
        "lectern-small.jpg": _jpeg(
            cv2.resize(lectern, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        ),
        "biden.jpg": _jpeg(biden),
        "biden-shift.jpg": _jpeg(
            cv2.warpAffine(biden, shift, (bw, bh), borderMode=cv2.BORDER_REFLECT)
        ),
        "portrait.jpg": _jpeg(_load(sample_photos / "obama.jpg")),
        "standing.jpg": _jpeg(_load(sample_photos / "obama3.jpg")),
        "poker.jpg": _jpeg(_load(sample_photos / "t1.jpg")),
    }


def _add(album: Album, photos: dict[str, bytes], names: tuple[str, ...]) -> list[str]:
    uris = [album.upload(name, photos[name]) for name in names]
    album.index(uris)
    return uris


def _groups(album: Album) -> dict[str, set[str]]:
    """ObjectId -> the file names of the cluster."""
    return {
        c["ObjectId"]: {f["URI"].rsplit("/", 1)[1] for f in c["Files"]}
        for c in album.similar_clusters()
    }


def test_bursts_are_grouped_and_other_scenes_left_alone(
    shot_album: Album, photos: dict[str, bytes]
) -> None:
    _add(shot_album, photos, BURST + PAIR + OTHERS)
    task = shot_album.group_similar()
    assert task["Status"] == "Succeeded" and task["TaskType"] == "SimilarImageClustering"
    assert task["TaskId"].startswith("SimilarImageClustering-")

    groups = _groups(shot_album)
    assert sorted(groups.values(), key=len) == [set(PAIR), set(BURST)]
    for cluster in shot_album.similar_clusters():
        assert cluster["ObjectId"].startswith("SimilarImageCluster-")
        assert set(cluster) == {"ObjectId", "CreateTime", "UpdateTime", "Files"}
        scores = [f["ImageScore"] for f in cluster["Files"]]
        assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
        if len(cluster["Files"]) == len(BURST):
            # the full-size, well-exposed original is the best shot of its burst
            assert cluster["Files"][0]["URI"].endswith("/lectern.jpg")

    file = shot_album.file("oss://photos/lectern-q40.jpg")
    assert 0 < file["ImageScore"]["OverallQualityScore"] < 1


def test_notification_carries_the_summary(shot_album: Album, photos: dict[str, bytes]) -> None:
    _add(shot_album, photos, PAIR + OTHERS[:1])
    task_id = shot_album.call(
        "CreateSimilarImageClusteringTask",
        {
            **shot_album.dataset,
            "UserData": '{"ID":"u1"}',
            "Tags": {"job": "dedup"},
            "Notification": {"MNS": {"TopicName": "album-events"}},
        },
    )["TaskId"]
    shot_album.drain()
    (envelope,) = shot_album.envelopes()
    assert envelope["type"] == "imm:Task:SimilarImageClustering"
    content = shot_album.notices()[0]
    assert content["TaskId"] == task_id and content["Status"] == "Succeeded"
    assert content["TaskType"] == "SimilarImageClustering" and content["UserData"] == '{"ID":"u1"}'
    result = content["Result"]
    assert result["ClustersCreated"] == 1 and result["ImagesClustered"] == 2
    assert result["FilesAnalysed"] == 3 and result["FilesFailed"] == 0
    task = shot_album.task("SimilarImageClustering", task_id)
    assert task["Tags"] == {"job": "dedup"} and task["Progress"] == 100


def test_runs_are_incremental_and_ids_stable(shot_album: Album, photos: dict[str, bytes]) -> None:
    _add(shot_album, photos, BURST[:2] + OTHERS)
    shot_album.group_similar()
    (first,) = shot_album.similar_clusters()
    assert {f["URI"].rsplit("/", 1)[1] for f in first["Files"]} == set(BURST[:2])

    _add(shot_album, photos, BURST[2:] + PAIR)
    summary = shot_album.group_similar()
    assert summary["Status"] == "Succeeded"
    groups = _groups(shot_album)
    assert groups[first["ObjectId"]] == set(BURST)
    assert sorted(groups.values(), key=len) == [set(PAIR), set(BURST)]
    (grown,) = [c for c in shot_album.similar_clusters() if c["ObjectId"] == first["ObjectId"]]
    assert grown["CreateTime"] == first["CreateTime"] and grown["UpdateTime"] > first["UpdateTime"]

    # nothing new: nothing moves, nothing is rewritten
    settled = shot_album.similar_clusters()
    assert shot_album.group_similar()["Status"] == "Succeeded"
    assert shot_album.similar_clusters() == settled
    result = shot_album.notices()[-1]["Result"]
    assert (result["ImagesChanged"], result["ClustersCreated"], result["Verifications"]) == (
        0,
        0,
        0,
    )


def test_deleting_below_two_images_deletes_the_cluster(
    shot_album: Album, photos: dict[str, bytes]
) -> None:
    burst = _add(shot_album, photos, BURST[:3])
    pair = _add(shot_album, photos, PAIR)
    shot_album.group_similar()
    before = _groups(shot_album)

    shot_album.call("DeleteFileMeta", {**shot_album.dataset, "URI": pair[1]})
    shot_album.call("DeleteFileMeta", {**shot_album.dataset, "URI": burst[2]})
    after = _groups(shot_album)
    (burst_id,) = [cid for cid, names in before.items() if names == set(BURST[:3])]
    assert after == {burst_id: set(BURST[:2])}

    # the photo left alone joins its copy again once that is back
    shot_album.upload(PAIR[1], photos[PAIR[1]])
    shot_album.index([pair[1]])
    shot_album.group_similar()
    groups = _groups(shot_album)
    assert set(PAIR) in groups.values() and groups[burst_id] == set(BURST[:2])


def test_query_sorts_pages_and_filters(shot_album: Album, photos: dict[str, bytes]) -> None:
    _add(shot_album, photos, BURST[:2])
    shot_album.group_similar()
    _add(shot_album, photos, PAIR)
    shot_album.group_similar()
    newest_first = shot_album.similar_clusters()
    assert [len(c["Files"]) for c in newest_first] == [2, 2]
    assert newest_first[0]["CreateTime"] > newest_first[1]["CreateTime"]
    oldest_first = shot_album.similar_clusters(Sort="CreateTime", Order="asc")
    assert oldest_first == newest_first[::-1]

    page = shot_album.call("QuerySimilarImageClusters", {**shot_album.dataset, "MaxResults": 1})
    (one,) = page["SimilarImageClusters"]
    rest = shot_album.call(
        "QuerySimilarImageClusters",
        {**shot_album.dataset, "MaxResults": 1, "NextToken": page["NextToken"]},
    )
    assert [one, *rest["SimilarImageClusters"]] == newest_first and "NextToken" not in rest
    assert shot_album.similar_clusters(CustomLabels="event=wedding") == []


def test_other_bytes_under_a_uri_leave_the_cluster(
    shot_album: Album, photos: dict[str, bytes]
) -> None:
    burst = _add(shot_album, photos, BURST[:3])
    shot_album.group_similar()
    (cluster_id,) = _groups(shot_album)

    # another scene uploaded over a burst frame: it is measured again and judged anew
    shot_album.upload(BURST[2], photos[OTHERS[0]])
    shot_album.index([burst[2]])
    shot_album.group_similar()
    assert _groups(shot_album) == {cluster_id: set(BURST[:2])}


def test_photos_are_measured_when_a_similar_image_task_first_needs_them(
    shot_album: Album, photos: dict[str, bytes]
) -> None:
    # indexing and people-grouping leave the similar-image measures (and ImageScore) out
    uris = _add(shot_album, photos, BURST[:3] + OTHERS[:1])
    assert shot_album.cluster()["Status"] == "Succeeded"
    assert all("ImageScore" not in shot_album.file(uri) for uri in uris)

    # the first similar-image task measures every analysed photo, then groups them
    task = shot_album.group_similar()
    assert task["Status"] == "Succeeded"
    assert _groups(shot_album) and set(*_groups(shot_album).values()) == set(BURST[:3])
    assert all(0 < shot_album.file(uri)["ImageScore"]["OverallQualityScore"] < 1 for uri in uris)
    rows = {uri: shot_album.parts.table.get("files", "album/family", uri) for uri in uris}

    # the next one measures nothing again: no row is rewritten
    assert shot_album.group_similar()["Status"] == "Succeeded"
    for uri, before in rows.items():
        after = shot_album.parts.table.get("files", "album/family", uri)
        assert before is not None and after is not None and after.version == before.version


def test_measures_of_another_network_are_taken_again(
    shot_album: Album, photos: dict[str, bytes]
) -> None:
    uris = _add(shot_album, photos, BURST[:2])
    shot_album.group_similar()
    table = shot_album.parts.table
    record = table.get("files", "album/family", uris[0])
    assert record is not None
    # as if measured by a network this deployment no longer runs
    table.put(
        "files",
        "album/family",
        uris[0],
        {**record.data, "_shot": {**record.data["_shot"], "model": "retired-net"}},
    )
    shot_album.group_similar()
    record = table.get("files", "album/family", uris[0])
    assert record is not None and record.data["_shot"]["model"] != "retired-net"
    assert set(*_groups(shot_album).values()) == set(BURST[:2])
