"""Hostile sizes stay bounded: huge photos decoded reduced, videos streamed, analyses limited.

Memory itself is measured by bench/memory.py; these tests check the behaviour that bounds
it: a large photo reports its own size and boxes, a video is never read whole, and the
image analyses a caller waits for are refused with Throttling beyond the limit.
"""

from __future__ import annotations

import io
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from openimm.bootstrap import Settings, build, configured_parts
from openimm.vision.decode import DETECTION_PIXELS, decode_image
from serve_process import ServeProcess

pytestmark = pytest.mark.models

SCOPE = {"ProjectName": "p", "DatasetName": "d"}
# obama.jpg is 910x1137: eight times that is 66 MP, past four times what detection needs
UPSCALE = 8


def _app(tmp_path: Path) -> tuple[Any, Any]:
    settings = Settings(data_dir=tmp_path)
    parts = configured_parts(settings)
    app = build(settings, parts)
    app.call("CreateProject", {"ProjectName": "p"}, "r")
    app.call("CreateDataset", SCOPE, "r")
    return app, parts


def _drain(parts: Any, app: Any) -> None:
    while True:
        progressed = False
        for stage in ("detect", "embed", "cluster"):
            for message in parts.queue.receive(stage, max_messages=10, visibility_timeout=60):
                progressed = True
                app.run_stage(stage, message.body)
                parts.queue.ack(message)
        if not progressed:
            return


def _near(big: dict[str, int], small: dict[str, int]) -> bool:
    # the same face on an upscaled photo: boxes scale with it, within a few source pixels
    return all(abs(big[k] - UPSCALE * small[k]) <= 4 * UPSCALE for k in small)


def test_a_huge_photo_reports_its_own_size_and_boxes(tmp_path: Path, sample_photos: Path) -> None:
    app, parts = _app(tmp_path)
    with Image.open(sample_photos / "obama.jpg") as photo:
        small = photo.convert("RGB")
    big = small.resize((small.width * UPSCALE, small.height * UPSCALE), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    del big
    assert decode_image(buffer.getvalue(), reduce_to=DETECTION_PIXELS).scale == 2
    parts.blobs.write("oss://photos/big.jpg", buffer.getvalue())
    parts.blobs.write("oss://photos/small.jpg", (sample_photos / "obama.jpg").read_bytes())

    def detect(uri: str) -> list[dict[str, Any]]:
        faces: list[dict[str, Any]] = app.call(
            "DetectImageFaces", {"ProjectName": "p", "SourceURI": uri}, "r"
        )["Faces"]
        return faces

    (small_face,), (big_face,) = detect("oss://photos/small.jpg"), detect("oss://photos/big.jpg")
    assert _near(big_face["Boundary"], small_face["Boundary"]), (big_face, small_face)

    uris = ["oss://photos/small.jpg", "oss://photos/big.jpg"]
    app.call("BatchIndexFileMeta", {**SCOPE, "Files": [{"URI": u} for u in uris]}, "r")
    app.call("CreateFigureClusteringTask", SCOPE, "r")
    _drain(parts, app)
    (small_meta,) = app.call("GetFileMeta", {**SCOPE, "URI": uris[0]}, "r")["Files"]
    (big_meta,) = app.call("GetFileMeta", {**SCOPE, "URI": uris[1]}, "r")["Files"]
    assert (big_meta["ImageWidth"], big_meta["ImageHeight"]) == (
        small.width * UPSCALE,
        small.height * UPSCALE,
    )
    (small_figure,), (big_figure,) = small_meta["Figures"], big_meta["Figures"]
    assert _near(big_figure["Boundary"], small_figure["Boundary"])
    # embedded from the reduced pixels, still the same person: one cluster holds both
    assert big_figure["FigureClusterId"] == small_figure["FigureClusterId"]


def test_a_huge_corrupt_video_is_streamed_and_fails_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, parts = _app(tmp_path)
    # an MP4 header, then a gigabyte of nothing (a sparse file: no disk is used)
    video = tmp_path / "buckets" / "videos" / "broken.mp4"
    video.parent.mkdir(parents=True)
    with video.open("wb") as out:
        out.write(struct.pack(">I", 24) + b"ftypisom\x00\x00\x02\x00isomiso2")
        out.truncate(1024**3)
    uri = "oss://videos/broken.mp4"
    whole_reads: list[str] = []
    read = parts.blobs.read

    def recording_read(name: str, **kwargs: Any) -> bytes:
        whole_reads.append(name)
        data: bytes = read(name, **kwargs)
        return data

    monkeypatch.setattr(parts.blobs, "read", recording_read)
    app.call("BatchIndexFileMeta", {**SCOPE, "Files": [{"URI": uri}]}, "r")
    app.call("CreateFigureClusteringTask", SCOPE, "r")
    _drain(parts, app)

    (meta,) = app.call("GetFileMeta", {**SCOPE, "URI": uri}, "r")["Files"]
    assert meta["ObjectStatus"] == "failed"
    assert meta["Reason"].startswith("video cannot be opened"), meta
    assert uri not in whole_reads  # FFmpeg read it from its own file, in place


# ---------------------------------------------------------------- busy over HTTP


def test_analyses_beyond_the_limit_are_refused_busy(tmp_path: Path, sample_photos: Path) -> None:
    data = tmp_path / "state"
    bucket = data / "buckets" / "photos"
    bucket.mkdir(parents=True)
    with Image.open(sample_photos / "obama.jpg") as photo:
        # large enough that one analysis lasts seconds, while the others arrive
        photo.convert("RGB").resize((5460, 6822)).save(bucket / "large.jpg", quality=90)
    server = ServeProcess(data, ["--processes", "1"], env={"OPENIMM_MAX_INLINE_ANALYSES": "1"})
    try:
        assert server.call("CreateProject", {"ProjectName": "p"})[0] == 200
        body = {"ProjectName": "p", "SourceURI": "oss://photos/large.jpg"}
        start = threading.Barrier(4)
        answers: list[tuple[int, dict[str, Any]]] = []

        def detect() -> None:
            start.wait()
            answers.append(server.call("DetectImageFaces", body, timeout=120))

        callers = [threading.Thread(target=detect) for _ in range(4)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()

        codes = sorted(status for status, _ in answers)
        assert codes[0] == 200 and codes[-1] == 503, answers
        for status, reply in answers:
            if status == 503:
                assert reply["Code"] == "Throttling" and reply["RequestId"]
                assert "try again" in reply["Message"]
            else:
                assert status == 200 and len(reply["Faces"]) == 1
        # the slots are given back: a later request is answered
        assert server.call("DetectImageFaces", body, timeout=120)[0] == 200
    finally:
        server.stop()
