"""Video sampling, metadata and per-person figures, on videos written inside the tests."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from openimm.errors import InvalidFile
from openimm.vision import DlibEmbedder, RetinaFaceDetector
from openimm.vision import video as video_module
from openimm.vision.video import container_format, probe_video, sample_frames
from openimm.vision.video_faces import analyse_video

FPS = 5
WIDTH, HEIGHT = 400, 512
Frames = Sequence[np.ndarray]


def _write(path: Path, frames: Frames, fourcc: str = "mp4v", fps: float = FPS) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"this OpenCV build cannot write {fourcc}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def _plain_frames(count: int, width: int = 160, height: int = 120) -> list[np.ndarray]:
    """Frame i is grey level 8*i, with a red block top left to tell the orientation."""
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 8 * i, dtype=np.uint8)
        frame[:40, :20] = (0, 0, 255)  # BGR red
        frames.append(frame)
    return frames


def _photo_frame(photo: Path, step: int) -> np.ndarray:
    """The photo fitted into the canvas, moved a few pixels per frame like a hand-held shot."""
    image = Image.open(photo).convert("RGB")
    scale = min(WIDTH / image.width, HEIGHT / image.height) * 0.9
    image = image.resize((round(image.width * scale), round(image.height * scale)))
    canvas = np.full((HEIGHT, WIDTH, 3), 40, dtype=np.uint8)
    x = (WIDTH - image.width) // 2 + (step % 5) * 3 - 6
    y = (HEIGHT - image.height) // 2 + (step % 3) * 2
    canvas[y : y + image.height, x : x + image.width] = np.asarray(image)[:, :, ::-1]
    return canvas


def _rotate_display(mp4: bytes, a: int, b: int, c: int, d: int) -> bytes:
    """Set the display matrix of every track header (tkhd) of an MP4, as phones do."""
    data = bytearray(mp4)

    def boxes(start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
        while start + 8 <= end:
            size, kind = struct.unpack(">I4s", data[start : start + 8])
            if size < 8:
                return
            yield kind, start, start + size
            start += size

    found = 0
    for kind, start, end in boxes(0, len(data)):
        if kind != b"moov":
            continue
        for trak, t_start, t_end in boxes(start + 8, end):
            if trak != b"trak":
                continue
            for tkhd, h_start, _ in boxes(t_start + 8, t_end):
                if tkhd == b"tkhd":
                    offset = h_start + (60 if data[h_start + 8] == 1 else 48)
                    data[offset : offset + 36] = struct.pack(
                        ">9i", a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30
                    )
                    found += 1
    assert found, "no track header found"
    return bytes(data)


# ------------------------------------------------------------------ frames and metadata


def test_probe_reports_size_duration_rate_and_codec(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.mp4", _plain_frames(30))
    info = probe_video(path.read_bytes())
    assert (info.width, info.height, info.fps, info.frame_count) == (160, 120, 5.0, 30)
    assert info.duration == pytest.approx(6.0)
    assert info.codec == "mpeg4" and info.format.startswith("mov,mp4")
    assert info.rotation == 0
    assert probe_video(path) == info


def test_frames_are_sampled_in_time_as_rgb(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.mp4", _plain_frames(30))
    frames = list(sample_frames(path.read_bytes(), every_seconds=1.0))
    assert [f.time for f in frames] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert [f.index for f in frames] == [0, 5, 10, 15, 20, 25]
    for frame in frames:
        image = frame.image
        assert image.rgb.shape == (120, 160, 3) and image.rgb.dtype == np.uint8
        assert image.rgb[10, 5, 0] > 200 and image.rgb[10, 5, 2] < 60  # red stays red
        assert abs(int(image.rgb[100, 120, 1]) - 8 * frame.index) <= 6


def test_long_videos_spread_the_samples_and_seek(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "plain.mp4", _plain_frames(30))
    monkeypatch.setattr(video_module, "SEEK_GAP_SECONDS", 0.5)
    frames = list(sample_frames(path, every_seconds=0.2, max_frames=3))
    assert [f.time for f in frames] == [0.0, 2.0, 4.0]  # step widened to 6 s / 3
    for frame in frames:
        assert abs(int(frame.image.rgb[100, 120, 1]) - 8 * frame.index) <= 6
        assert frame.index == round(frame.time * FPS)


def test_mjpeg_avi_and_a_single_frame_video(tmp_path: Path) -> None:
    avi = _write(tmp_path / "plain.avi", _plain_frames(10), fourcc="MJPG")
    assert probe_video(avi).codec == "mjpeg" and probe_video(avi).format == "avi"
    # a sample time between two frames takes the nearer one, the earlier on a tie
    times = [f.time for f in sample_frames(avi.read_bytes(), every_seconds=0.5)]
    assert times == [0.0, 0.4, 1.0, 1.4]
    one = _write(tmp_path / "one.mp4", _plain_frames(1))
    frames = list(sample_frames(one.read_bytes()))
    assert [(f.time, f.index) for f in frames] == [(0.0, 0)]


@pytest.mark.parametrize(("matrix", "rotation"), [((0, 1, -1, 0), 90), ((0, -1, 1, 0), 270)])
def test_rotation_metadata_gives_upright_frames(
    tmp_path: Path, matrix: tuple[int, int, int, int], rotation: int
) -> None:
    stored = _plain_frames(5)
    path = _write(tmp_path / "landscape.mp4", stored)
    rotated = _rotate_display(path.read_bytes(), *matrix)
    info = probe_video(rotated)
    assert (info.width, info.height, info.rotation) == (120, 160, rotation)
    frame = next(iter(sample_frames(rotated)))
    assert frame.image.rgb.shape == (160, 120, 3)
    assert frame.image.orientation == {90: 6, 270: 8}[rotation]
    turn = cv2.ROTATE_90_CLOCKWISE if rotation == 90 else cv2.ROTATE_90_COUNTERCLOCKWISE
    expected = cv2.rotate(stored[0], turn)[:, :, ::-1]
    assert np.abs(frame.image.rgb.astype(int) - expected).mean() < 4


# ------------------------------------------------------------------ bad files


def test_text_and_playlists_are_not_videos(tmp_path: Path) -> None:
    for data in (b"just some text\n" * 50, b"#EXTM3U\n#EXTINF:1,\nsegment0.ts\n", b""):
        with pytest.raises(InvalidFile):
            probe_video(data)
        with pytest.raises(InvalidFile):
            list(sample_frames(data))
    with pytest.raises(InvalidFile, match="not a supported video"):
        container_format(b"GIF89a" + bytes(100))


def test_truncated_videos_are_invalid(tmp_path: Path) -> None:
    mp4 = _write(tmp_path / "plain.mp4", _plain_frames(30)).read_bytes()
    with pytest.raises(InvalidFile, match="cannot be opened"):
        list(sample_frames(mp4[: len(mp4) // 2]))
    # AVI plays without its index, so a cut one opens and its frames stop early
    avi = _write(tmp_path / "plain.avi", _plain_frames(30), fourcc="MJPG").read_bytes()
    with pytest.raises(InvalidFile, match="truncated"):
        list(sample_frames(avi[: len(avi) // 3]))


def test_frames_over_the_pixel_limit_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.mp4", _plain_frames(3))
    with pytest.raises(InvalidFile, match="more than the limit"):
        list(sample_frames(path, max_pixels=160 * 120 - 1))


# ------------------------------------------------------------------ people in a video


@pytest.mark.models
def test_one_figure_per_person_with_its_frame_time(
    tmp_path: Path,
    sample_photos: Path,
    detector: RetinaFaceDetector,
    embedder: DlibEmbedder,
) -> None:
    # 0-2 s obama.jpg, 2-4 s biden.jpg, 4-6 s obama2.jpg: Obama returns after a gap
    plan = [("obama.jpg", 0), ("biden.jpg", 10), ("obama2.jpg", 20)]
    frames = [
        _photo_frame(sample_photos / name, start + k) for name, start in plan for k in range(10)
    ]
    path = _write(tmp_path / "three.mp4", frames)
    info, figures = analyse_video(path.read_bytes(), detector, embedder, every_seconds=1.0)
    assert (info.width, info.height, info.duration) == (WIDTH, HEIGHT, 6.0)
    assert len(figures) == 2
    obama, biden = figures
    assert (obama.first_time, obama.last_time, obama.frame_count) == (0.0, 5.0, 4)
    assert (biden.first_time, biden.last_time, biden.frame_count) == (2.0, 3.0, 2)
    assert obama.time in (0.0, 1.0, 4.0, 5.0) and biden.time in (2.0, 3.0)
    assert obama.frame_index == round(obama.time * FPS)
    for figure in figures:
        assert figure.embedding.shape == (embedder.dim,)
        assert float(np.linalg.norm(figure.embedding)) == pytest.approx(1.0, abs=1e-5)
        box = figure.face.box
        assert box.left >= 0 and box.left + box.width <= WIDTH and box.top + box.height <= HEIGHT
    assert float(obama.embedding @ biden.embedding) < 0.9


@pytest.mark.models
def test_video_figures_carry_their_representatives_attributes(
    tmp_path: Path,
    sample_photos: Path,
    detector: RetinaFaceDetector,
    embedder: DlibEmbedder,
) -> None:
    from openimm.vision.attributes import attribute_estimator

    frames = [_photo_frame(sample_photos / "obama.jpg", k) for k in range(4)]
    path = _write(tmp_path / "obama.mp4", frames)
    estimator = attribute_estimator()
    _, figures = analyse_video(
        path.read_bytes(), detector, embedder, every_seconds=1.0, attributes=estimator
    )
    assert len(figures) == 1
    attrs = figures[0].attributes
    assert attrs.gender == "male" and attrs.age is not None and 20 < attrs.age < 70
    assert attrs.emotion is not None
    _, plain = analyse_video(path.read_bytes(), detector, embedder, every_seconds=1.0)
    assert plain[0].attributes.age is None and plain[0].attributes.gender is None
