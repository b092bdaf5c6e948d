"""Video files to upright RGB frames sampled in time, and their stream metadata.

Decoding is OpenCV's FFmpeg backend (opencv-python-headless bundles FFmpeg), which reads
only from a file path: bytes go to a private temporary directory first.

The input is untrusted. Before FFmpeg sees a file its first bytes must be those of a
video container (ISO BMFF/QuickTime, Matroska/WebM, AVI, FLV, MPEG-TS/PS, ASF), so that
playlists and other text formats FFmpeg would follow to further files or URLs (HLS,
concat) never reach it. Anything that cannot be opened or holds no picture is
`InvalidFile`, as for images; so is a stream that stops well before its stated length (a
truncated upload), judged only in MP4/QuickTime and AVI, whose headers count the video
frames: elsewhere (Matroska, MPEG-TS, FLV) the stated length is an estimate that may
include a longer audio track, and a valid file must not fail on it.

Rotation: phones store portrait video as landscape pixels plus a display matrix. The
FFmpeg backend applies it when CAP_PROP_ORIENTATION_AUTO is on, which is its default
(checked with OpenCV 4.14: a 90-degree matrix yields portrait frames and portrait
FRAME_WIDTH/HEIGHT); it is set explicitly anyway so that frames are always upright.

Sampling: one frame every `every_seconds`, the step widened to duration / `max_frames`
for long videos so that the samples cover the whole video; at most `max_frames` frames
are decoded to RGB. Frames between samples are only grabbed (decoded, not converted);
across a gap of more than SEEK_GAP_SECONDS the reader seeks instead, so an hour-long
video costs about `max_frames` seeks rather than an hour of decoding. MAX_GRABBED_FRAMES
bounds the work on streams whose timestamps never advance.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from openimm.errors import InvalidFile
from openimm.vision.decode import DEFAULT_MAX_PIXELS
from openimm.vision.types import DecodedImage, Pixels

DEFAULT_EVERY_SECONDS = 1.0
DEFAULT_MAX_FRAMES = 300
SEEK_GAP_SECONDS = 10.0
MAX_GRABBED_FRAMES = 200_000
# A stream may end a little before its stated duration (estimated frame counts, a last
# frame shorter than 1/fps); only a shortfall beyond this is a truncated file.
TRUNCATION_SLACK_SECONDS = 1.0
TRUNCATION_SLACK_SHARE = 0.1
_HEAD_BYTES = 512
_MP4 = "mov,mp4,m4a,3gp,3g2,mj2"
_COUNTED_FORMATS = (_MP4, "avi")
_TS_PACKET = 188

# rotation in degrees clockwise -> the EXIF orientation that describes the same turn
_EXIF_FOR_ROTATION = {0: 1, 90: 6, 180: 3, 270: 8}

# four-character codes OpenCV reports -> FFmpeg's codec names (IMM's CodecName)
_CODEC_NAMES = {
    "avc1": "h264",
    "avc3": "h264",
    "h264": "h264",
    "x264": "h264",
    "hev1": "hevc",
    "hvc1": "hevc",
    "hevc": "hevc",
    "h265": "hevc",
    "fmp4": "mpeg4",
    "mp4v": "mpeg4",
    "xvid": "mpeg4",
    "divx": "mpeg4",
    "dx50": "mpeg4",
    "mjpg": "mjpeg",
    "vp80": "vp8",
    "vp90": "vp9",
    "vp09": "vp9",
    "av01": "av1",
    "mpg1": "mpeg1video",
    "mpg2": "mpeg2video",
    "wmv3": "wmv3",
    "theo": "theora",
}


@dataclass(frozen=True)
class VideoInfo:
    """Stream metadata of a video file; width and height as displayed (rotation applied)."""

    width: int
    height: int
    duration: float  # seconds; 0.0 when the container does not say
    fps: float  # average frame rate; 0.0 when unknown
    frame_count: int  # as stated by the container (may be an estimate)
    codec: str  # FFmpeg codec name when known, else the stream's four-character code
    format: str  # FFmpeg demuxer family, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    rotation: int = 0  # degrees clockwise applied to show the video upright


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame, upright RGB, and where it sits in the video."""

    image: DecodedImage
    time: float  # seconds from the start of the stream
    index: int  # frame number, 0-based


def container_format(head: bytes) -> str:
    """FFmpeg's demuxer name for a video container recognised by its first bytes."""
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"):
        return _MP4
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska,webm"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg"
    if len(head) > 2 * _TS_PACKET and all(head[i] == 0x47 for i in range(0, len(head), _TS_PACKET)):
        return "mpegts"
    raise InvalidFile("file is not a supported video")


_SUFFIXES = {
    _MP4: ".mp4",
    "matroska,webm": ".mkv",
    "avi": ".avi",
    "flv": ".flv",
    "asf": ".asf",
    "mpeg": ".mpg",
    "mpegts": ".ts",
}


class VideoReader:
    """An opened video file: its metadata, and one pass of sampled frames. Close it after use."""

    def __init__(self, data: bytes | Path) -> None:
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._capture: Any = None
        try:
            self._open(data)
        except BaseException:
            self.close()
            raise

    def _open(self, data: bytes | Path) -> None:
        if isinstance(data, Path):
            with data.open("rb") as stream:
                head = stream.read(_HEAD_BYTES)
            if not head:
                raise InvalidFile("file is empty")
            fmt = container_format(head)
            path = data
        else:
            if not data:
                raise InvalidFile("file is empty")
            fmt = container_format(data[:_HEAD_BYTES])
            self._tempdir = tempfile.TemporaryDirectory(prefix="openimm-video-")
            path = Path(self._tempdir.name) / f"video{_SUFFIXES[fmt]}"
            path.write_bytes(data)
        import cv2

        self._cv2: Any = cv2
        self._capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            raise InvalidFile("video cannot be opened: damaged, truncated or unsupported codec")
        self._capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        self.info = self._probe(fmt)

    def _probe(self, fmt: str) -> VideoInfo:
        cv2, capture = self._cv2, self._capture
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width <= 0 or height <= 0:
            raise InvalidFile("video has no picture")
        fps = _finite(capture.get(cv2.CAP_PROP_FPS))
        frame_count = max(0, int(_finite(capture.get(cv2.CAP_PROP_FRAME_COUNT))))
        duration = frame_count / fps if fps > 0 and frame_count > 0 else 0.0
        rotation = round(_finite(capture.get(cv2.CAP_PROP_ORIENTATION_META)) / 90) * 90 % 360
        return VideoInfo(
            width=width,
            height=height,
            duration=round(duration, 3),
            fps=round(fps, 3),
            frame_count=frame_count,
            codec=_codec_name(int(_finite(capture.get(cv2.CAP_PROP_FOURCC))) & 0xFFFFFFFF),
            format=fmt,
            rotation=rotation,
        )

    def frames(
        self,
        *,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Iterator[VideoFrame]:
        """Upright RGB frames, one per `every_seconds` (widened to cover long videos)."""
        if not every_seconds > 0 or max_frames < 1:
            raise ValueError("every_seconds must be > 0 and max_frames >= 1")
        info = self.info
        if info.width * info.height > max_pixels:
            raise InvalidFile(
                f"video frames have {info.width * info.height} pixels, "
                f"more than the limit {max_pixels}"
            )
        cv2, capture = self._cv2, self._capture
        step = max(every_seconds, info.duration / max_frames)
        # a frame within half a frame interval of a sample time stands for it
        tolerance = 0.5 / info.fps if info.fps > 0 else 0.0
        target, last, grabbed, emitted, sought = 0.0, -math.inf, 0, 0, 0.0
        while emitted < max_frames and grabbed < MAX_GRABBED_FRAMES:
            far = target - max(last, 0.0) > SEEK_GAP_SECONDS
            # one seek per sample time: where seeking fails, grabbing forward still gets there
            if far and sought < target < info.duration:
                capture.set(cv2.CAP_PROP_POS_MSEC, target * 1000.0)
                sought = target
            if not capture.grab():
                break
            grabbed += 1
            index = max(0, int(_finite(capture.get(cv2.CAP_PROP_POS_FRAMES))) - 1)
            time = _finite(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
            if time < 0 or (time <= last and info.fps > 0):
                time = index / info.fps if info.fps > 0 else max(last, 0.0)
            last = time
            if time + tolerance < target:
                continue
            ok, bgr = capture.retrieve()
            if not ok or bgr is None:
                raise InvalidFile(f"video frame at {time:.2f} s cannot be decoded")
            yield VideoFrame(self._upright(bgr, max_pixels), round(time, 3), index)
            emitted += 1
            while target <= time + tolerance:
                target += step
        else:
            return  # stopped by a cap, not by the end of the stream
        if grabbed == 0 and info.frame_count > 0:
            raise InvalidFile("video has no decodable frames")
        slack = max(TRUNCATION_SLACK_SECONDS, TRUNCATION_SLACK_SHARE * info.duration)
        counted = info.format in _COUNTED_FORMATS
        if counted and info.duration > 0 and max(last, 0.0) < info.duration - slack:
            raise InvalidFile(
                f"video is truncated: frames stop at {max(last, 0.0):.1f} s "
                f"of {info.duration:.1f} s"
            )

    def _upright(self, bgr: Any, max_pixels: int) -> DecodedImage:
        frame = np.asarray(bgr)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise InvalidFile("video frame cannot be converted to RGB")
        height, width = int(frame.shape[0]), int(frame.shape[1])
        if width * height > max_pixels:
            raise InvalidFile(
                f"video frame has {width * height} pixels, more than the limit {max_pixels}"
            )
        rgb: Pixels = np.ascontiguousarray(frame[:, :, ::-1])
        return DecodedImage(
            rgb=rgb,
            width=width,
            height=height,
            format=self.info.codec,
            orientation=_EXIF_FOR_ROTATION.get(self.info.rotation, 1),
        )

    def close(self) -> None:
        """Release the decoder and delete the temporary copy."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_video(data: bytes | Path) -> VideoReader:
    """Open a video file (bytes or a path) for probing and sampling; use it with `with`."""
    return VideoReader(data)


def probe_video(data: bytes | Path) -> VideoInfo:
    """Width, height, duration, frame rate, frame count and codec of a video file."""
    with VideoReader(data) as video:
        return video.info


def sample_frames(
    data: bytes | Path,
    *,
    every_seconds: float = DEFAULT_EVERY_SECONDS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[VideoFrame]:
    """Upright RGB frames of a video with their times; raises InvalidFile on a bad file."""
    with VideoReader(data) as video:
        yield from video.frames(
            every_seconds=every_seconds, max_frames=max_frames, max_pixels=max_pixels
        )


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


def _codec_name(fourcc: int) -> str:
    tag = fourcc.to_bytes(4, "little", signed=False).decode("latin-1").strip("\x00 ")
    return _CODEC_NAMES.get(tag.lower(), tag or "unknown")
