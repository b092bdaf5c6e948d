"""The people of one video: sample frames, detect and embed faces, one figure per track.

Every face of every sampled frame is embedded, because linking faces across frames
needs their vectors. A figure's vector is its track's mean vector (re-normalised), not
the representative crop embedded once more: it costs nothing more, and the mean of many
views of a person cancels what a single frame adds (pose, motion blur, lighting), which
is what clustering compares against. The representative face (best FaceQuality) gives
the figure its box, pose, quality, frame time and attributes (age, gender, emotion).

Only the detections and vectors of each frame are kept, never the frames themselves,
so memory does not grow with the length of the video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openimm.vision.decode import DEFAULT_MAX_PIXELS
from openimm.vision.face_tracks import FrameFaces, TrackingConfig, track_faces
from openimm.vision.types import (
    DetectedFace,
    FaceAttributeEstimator,
    FaceAttributes,
    FaceDetector,
    FaceEmbedder,
    Vectors,
)
from openimm.vision.video import (
    DEFAULT_EVERY_SECONDS,
    DEFAULT_MAX_FRAMES,
    VideoInfo,
    open_video,
)

DEFAULT_MAX_FACES_PER_FRAME = 50


@dataclass(frozen=True)
class VideoFigure:
    """One person of a video: the representative face, in its frame, and the track's vector."""

    face: DetectedFace  # box, landmarks, pose and quality in the frame at `time`
    time: float  # seconds from the start of the video
    frame_index: int  # that frame's number in the stream, 0-based
    embedding: Vectors  # (dim,) unit vector, the track's mean
    frame_count: int  # sampled frames the person was seen in
    first_time: float
    last_time: float
    # measured on the representative face, where an estimator was given
    attributes: FaceAttributes = field(default_factory=FaceAttributes)


def analyse_video(
    data: bytes | Path,
    detector: FaceDetector,
    embedder: FaceEmbedder,
    *,
    every_seconds: float = DEFAULT_EVERY_SECONDS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_faces_per_frame: int = DEFAULT_MAX_FACES_PER_FRAME,
    tracking: TrackingConfig | None = None,
    attributes: FaceAttributeEstimator | None = None,
) -> tuple[VideoInfo, list[VideoFigure]]:
    """The video's metadata and one figure per person; raises InvalidFile on a bad file."""
    sampled: list[FrameFaces] = []
    indices: list[int] = []
    # every face's, since which face will represent its track is known only at the end;
    # the attribute nets cost a few ms a face, far less than keeping the frames
    measured: list[list[FaceAttributes]] = []
    with open_video(data) as video:
        info = video.info
        for frame in video.frames(
            every_seconds=every_seconds, max_frames=max_frames, max_pixels=max_pixels
        ):
            faces = detector.detect(frame.image)
            faces.sort(key=lambda f: (-f.box.width * f.box.height, f.box.left, f.box.top))
            faces = faces[:max_faces_per_frame]
            chips = [embedder.align(frame.image, face) for face in faces]
            vectors = (
                embedder.embed(chips) if chips else np.zeros((0, embedder.dim), dtype=np.float32)
            )
            sampled.append(FrameFaces(time=frame.time, faces=faces, vectors=vectors))
            indices.append(frame.index)
            measured.append(
                attributes.estimate(frame.image, faces)
                if attributes and faces
                else [FaceAttributes()] * len(faces)
            )
    figures = [
        VideoFigure(
            face=track.face,
            time=track.time,
            frame_index=indices[track.frame],
            embedding=track.embedding,
            frame_count=track.frame_count,
            first_time=track.first_time,
            last_time=track.last_time,
            attributes=measured[track.frame][track.face_index],
        )
        for track in track_faces(sampled, tracking)
    ]
    return info, figures
