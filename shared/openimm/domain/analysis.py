"""Face analysis of one file, in two stages: detect (+align) and embed.

The detect stage keeps the aligned crops in the blob store so the embed stage (which
may run elsewhere, batched) needs neither the original image nor the detector.
Both stages are idempotent: figure ids are derived from (URI, ETag, face index), so a
redelivered message rewrites the same rows.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openimm.domain.catalog import Catalog
from openimm.domain.entities import UNAVAILABLE, FileState, content_tag, figure_id_for
from openimm.domain.figures import VERSION, FigureBook, decode_vector, encode_vector
from openimm.domain.shots import ShotIndex, needs_measures
from openimm.errors import InvalidFile
from openimm.ports import BlobNotFound, BlobStore, BlobTooLarge, ConditionFailed
from openimm.vision.decode import DETECTION_PIXELS, decode_image
from openimm.vision.file_pixels import in_file_pixels
from openimm.vision.types import (
    DecodedImage,
    DetectedFace,
    FaceAttributeEstimator,
    FaceAttributes,
    FaceDetector,
    FaceEmbedder,
)
from openimm.vision.video import VideoInfo
from openimm.vision.video_faces import VideoFigure

VideoAnalyser = Callable[[Path], tuple[VideoInfo, list[VideoFigure]]]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisLimits:
    """What a file may be, and what makes a face good enough to found a cluster."""

    max_file_bytes: int = 200 * 1024 * 1024
    max_video_bytes: int = 2 * 1024 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_faces: int = 200
    seed_min_face_px: int = 75
    seed_max_pose_deg: float = 30.0
    # FaceQuality (vision/face_quality.py) is sharpness-led; at 0.8 only 17% of lfw-dev's
    # 250 px web photos passed, costing 0.15 of BCubed recall at equal precision; from
    # 0.4 on, 82% pass and the blurred, tiny or turned faces still fall below
    seed_min_quality: float = 0.4


def seed_eligible(face: DetectedFace, limits: AnalysisLimits) -> bool:
    """IMM's rule for faces that may found a new cluster."""
    pose = face.head_pose
    return (
        min(face.box.width, face.box.height) > limits.seed_min_face_px
        and max(abs(pose.pitch), abs(pose.roll), abs(pose.yaw)) < limits.seed_max_pose_deg
        and face.quality > limits.seed_min_quality
    )


# FaceAnalysis.progress: detected, not yet embedded
DETECTED = "detected"


class FaceAnalysis:
    """Runs the detect and embed stages for one file at a time."""

    def __init__(
        self,
        catalog: Catalog,
        figures: FigureBook,
        blobs: BlobStore,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        work_prefix: str,
        limits: AnalysisLimits | None = None,
        attributes: FaceAttributeEstimator | None = None,
        video: VideoAnalyser | None = None,
        shots: ShotIndex | None = None,
    ) -> None:
        self._catalog = catalog
        # photos are also measured for similar-image grouping while they are decoded
        self._shots = shots
        self._attributes = attributes
        self._video = video
        self._figures = figures
        self._blobs = blobs
        self._detector = detector
        self._embedder = embedder
        self._work_prefix = work_prefix.rstrip("/")
        self.limits = limits or AnalysisLimits()

    def progress(self, project: str, dataset: str, uri: str, etag: str | None) -> str | None:
        """Where these bytes' analysis is: FileState.ANALYSED or FAILED when finished,
        DETECTED when their faces wait for the embed stage, None before that."""
        row = self._catalog.find_file(project, dataset, uri)
        if row is None or row.get("ETag") != etag:
            return None
        state = row.get("_state")
        if state in (FileState.ANALYSED, FileState.FAILED):
            return str(state)
        return DETECTED if "_detections" in row else None

    def outcome(self, project: str, dataset: str, uri: str, etag: str | None) -> bool | None:
        """For these bytes: True if analysed, False if failed, None if not finished."""
        state = self.progress(project, dataset, uri, etag)
        return {FileState.ANALYSED: True, FileState.FAILED: False}.get(state or "")

    def detect(
        self, project: str, dataset: str, uri: str, etag: str | None, *, shots: bool = False
    ) -> bool:
        """Detect and align faces, and with `shots` measure a photo for similar-image
        grouping from the same decode; True when the embed stage has work to do."""
        row = self._catalog.find_file(project, dataset, uri)
        if row is None or (etag is not None and row.get("ETag") != etag):
            return False  # deleted or replaced meanwhile: a newer message covers it
        media = row.get("MediaType") or "image"
        try:
            if media == "video" and self._video is not None:
                # FFmpeg reads a file: the video is streamed to one, never held in memory
                with self._blobs.local_file(uri, max_bytes=self.limits.max_video_bytes) as path:
                    info, figures = self._video(path)
            elif media == "image":
                data = self._blobs.read(uri, max_bytes=self.limits.max_file_bytes)
                image = decode_image(
                    data, max_pixels=self.limits.max_pixels, reduce_to=DETECTION_PIXELS
                )
            else:
                raise InvalidFile(f"media type {media!r} has no faces to analyse")
        except (InvalidFile, BlobTooLarge, BlobNotFound) as exc:
            self._fail(project, dataset, row, exc)
            return False
        tag = content_tag(row)
        if media == "video":
            row.update(_video_fields(info))
            row["_detections"] = [
                self._video_detection(uri, tag, i, figure)
                for i, figure in enumerate(figures[: self.limits.max_faces])
            ]
        else:
            row.update(
                ImageWidth=image.full_width,
                ImageHeight=image.full_height,
                Orientation=image.orientation,
            )
            row["_detections"] = self._image_detections(row, uri, tag, image)
            if shots and self._shots is not None and needs_measures(row, self._shots.model):
                row.update(self._shots.describe(row, tag, image, data))
        row.pop("_error", None)
        row.pop("_last_error", None)
        self._catalog.save_file(project, dataset, row)
        return True

    def measure_shot(self, project: str, dataset: str, uri: str, etag: str | None) -> None:
        """Measure an analysed photo for similar-image grouping, unless its row has that."""
        row = self._catalog.find_file(project, dataset, uri)
        if self._shots is None or row is None or not self._wants_shot(row, etag):
            return
        try:
            data = self._blobs.read(uri, max_bytes=self.limits.max_file_bytes)
            image = decode_image(
                data, max_pixels=self.limits.max_pixels, reduce_to=DETECTION_PIXELS
            )
        except (InvalidFile, BlobTooLarge, BlobNotFound) as exc:
            # its faces stand; the photo is left out of similar-image grouping
            log.info("photo %s not measured for similar images: %s", uri, exc)
            return
        fields = self._shots.describe(row, content_tag(row), image, data)
        while row is not None and self._wants_shot(row, etag):
            row.update(fields)
            try:
                self._catalog.save_file(project, dataset, row)
                return
            except ConditionFailed:
                # a stage wrote the row meanwhile: the measures go onto its version
                row = self._catalog.find_file(project, dataset, uri)

    def _wants_shot(self, row: dict[str, Any] | None, etag: str | None) -> bool:
        return (
            self._shots is not None
            and row is not None
            and (etag is None or row.get("ETag") == etag)
            and needs_measures(row, self._shots.model)
        )

    def _image_detections(
        self, row: dict[str, Any], uri: str, tag: str, image: DecodedImage
    ) -> list[dict[str, Any]]:
        faces = self._detector.detect(image)
        faces.sort(key=lambda f: (-f.box.width * f.box.height, f.box.left, f.box.top))
        faces = faces[: self.limits.max_faces]
        measured = (
            self._attributes.estimate(image, faces)
            if self._attributes and faces
            else [FaceAttributes()] * len(faces)
        )
        chips = [self._embedder.align(image, face) for face in faces]
        if chips:
            buffer = io.BytesIO()
            # not compressed: deflate saved 16% of a photo's chips for 4 ms of its CPU
            np.savez(buffer, chips=np.stack(chips))
            self._blobs.write(self._chips_uri(row, tag), buffer.getvalue())
        return [
            {**self._detection(uri, tag, i, in_file_pixels(face, image)), **attribute_fields(attrs)}
            for i, (face, attrs) in enumerate(zip(faces, measured, strict=True))
        ]

    def _video_detection(
        self, uri: str, tag: str, index: int, figure: VideoFigure
    ) -> dict[str, Any]:
        # a video's vector is its track's mean, already computed: embed passes it on
        return {
            **self._detection(uri, tag, index, figure.face),
            **attribute_fields(figure.attributes),
            "_media": "video",
            "_time": round(figure.time, 3),
            "_frames": figure.frame_count,
            "_span": [round(figure.first_time, 3), round(figure.last_time, 3)],
            "_embedding": encode_vector(figure.embedding),
        }

    def embed(self, project: str, dataset: str, uri: str, etag: str | None) -> bool | None:
        """Embed the aligned faces and write the figure rows.

        True when the file is analysed, False when it is gone or failed, None when its
        detections are missing (the row was replaced): detection must run again.
        """
        row = self._catalog.find_file(project, dataset, uri)
        if row is None or (etag is not None and row.get("ETag") != etag):
            return False
        if row.get("_state") == FileState.ANALYSED:
            return True  # an earlier delivery (or a parallel detect) finished this file
        if row.get("_state") == FileState.FAILED:
            return False
        if "_detections" not in row:
            return None
        detections: list[dict[str, Any]] = row["_detections"]
        vectors = np.zeros((0, self._embedder.dim), dtype=np.float32)
        if detections and all("_embedding" in d for d in detections):
            vectors = np.stack([decode_vector(d["_embedding"]) for d in detections])
        elif detections:
            raw = self._blobs.read(self._chips_uri(row, content_tag(row)))
            with np.load(io.BytesIO(raw)) as archive:
                chips = list(archive["chips"])
            vectors = self._embedder.embed(chips)
        # read by the ids about to be written too: a row read before another delivery
        # finished this file lists none, yet they exist and may be clustered by now
        ids = [*row.get("_figures", []), *(d["FigureId"] for d in detections)]
        old = {f["FigureId"]: f for f in self._figures.get_many(project, dataset, ids)}
        figures = []
        for detection, vector in zip(detections, vectors, strict=True):
            previous = old.get(detection["FigureId"], {})
            figures.append(
                {
                    **detection,
                    "FigureClusterId": previous.get("FigureClusterId", UNAVAILABLE),
                    **(
                        {"FigureClusterConfidence": previous["FigureClusterConfidence"]}
                        if "FigureClusterConfidence" in previous
                        else {}
                    ),
                    "_pinned": previous.get("_pinned", False),
                    # a user's move out of a cluster outlives a re-embed of its file
                    **(
                        {"_moved_from": previous["_moved_from"]}
                        if "_moved_from" in previous
                        else {}
                    ),
                    "_uri": uri,
                    "_file": row["ObjectId"],
                    "_media": detection.get("_media", "image"),
                    "_model": self._embedder.name,
                    "_embedding": encode_vector(vector),
                    # written only over the row read here (or none): a clustering run
                    # meanwhile makes this a conflict, and the message comes back
                    VERSION: previous.get(VERSION),
                }
            )
        self._figures.replace_file_figures(project, dataset, list(old), figures)
        row["_figures"] = [f["FigureId"] for f in figures]
        row["FigureCount"] = len(figures)
        row["_state"] = FileState.ANALYSED
        row.pop("_detections", None)
        self._catalog.save_file(project, dataset, row)
        return True

    def retry_failed(self, project: str, dataset: str) -> int:
        """Put the files that failed back to indexed, for the next task; how many."""
        count = 0
        for listed in self._catalog.files(project, dataset):
            if listed.get("_state") != FileState.FAILED:
                continue
            row = self._catalog.find_file(project, dataset, listed["URI"])
            if row is None or row.get("_state") != FileState.FAILED:
                continue
            row["_state"] = FileState.INDEXED
            row.pop("_error", None)
            try:
                self._catalog.save_file(project, dataset, row)
            except ConditionFailed:
                continue  # re-indexed or removed meanwhile: that change decides
            count += 1
        return count

    def note_error(
        self, project: str, dataset: str, uri: str, etag: str | None, error: str
    ) -> None:
        """Keep a failed attempt's error on the file, for the reason if it is given up on
        later by a queue that cannot say why (best effort: a changed row keeps its own)."""
        row = self._catalog.find_file(project, dataset, uri)
        if row is None or row.get("ETag") != etag or row.get("_state") == FileState.FAILED:
            return
        row["_last_error"] = error[:500]
        with contextlib.suppress(ConditionFailed):
            self._catalog.save_file(project, dataset, row)

    def last_error(self, project: str, dataset: str, uri: str) -> str | None:
        """The error `note_error` kept for the file, if any."""
        row = self._catalog.find_file(project, dataset, uri)
        error = row.get("_last_error") if row is not None else None
        return error if isinstance(error, str) else None

    def fail(self, project: str, dataset: str, uri: str, reason: str) -> None:
        """Mark a file failed after its stage gave up (dead letter)."""
        row = self._catalog.find_file(project, dataset, uri)
        if row is not None:
            self._fail(project, dataset, row, InvalidFile(reason))

    def _fail(self, project: str, dataset: str, row: dict[str, Any], exc: Exception) -> None:
        log.info("file %s not analysed: %s", row["URI"], exc)
        message = exc.message if isinstance(exc, InvalidFile) else str(exc)
        row.update(_state=FileState.FAILED, _error=message)
        self._catalog.save_file(project, dataset, row)

    def _chips_uri(self, row: dict[str, Any], tag: str) -> str:
        return f"{self._work_prefix}/chips/{row['ObjectId']}-{tag}.npz"

    def _detection(self, uri: str, tag: str, index: int, face: DetectedFace) -> dict[str, Any]:
        return {
            "FigureId": figure_id_for(uri, tag, index),
            **face_fields(face),
            "_landmarks": [[round(x, 1), round(y, 1)] for x, y in face.landmarks],
            "_seed": seed_eligible(face, self.limits),
        }


def face_fields(face: DetectedFace) -> dict[str, Any]:
    """IMM's Figure fields that the detector measures on a face."""
    box = face.box
    return {
        "FigureType": "face",
        "FigureConfidence": round(face.confidence, 4),
        "Boundary": {"Left": box.left, "Top": box.top, "Width": box.width, "Height": box.height},
        "HeadPose": {
            "Pitch": round(face.head_pose.pitch, 2),
            "Roll": round(face.head_pose.roll, 2),
            "Yaw": round(face.head_pose.yaw, 2),
        },
        "FaceQuality": round(face.quality, 4),
        "Sharpness": round(face.sharpness, 4),
    }


def attribute_fields(attrs: FaceAttributes) -> dict[str, Any]:
    """IMM's Figure attribute fields, only for what a model measured."""
    fields: dict[str, Any] = {
        "Age": round(attrs.age) if attrs.age is not None else None,
        "AgeSD": round(attrs.age_sd, 2) if attrs.age_sd is not None else None,
        "Gender": attrs.gender,
        "GenderConfidence": (
            round(attrs.gender_confidence, 4) if attrs.gender_confidence is not None else None
        ),
        "Emotion": attrs.emotion,
        "EmotionConfidence": (
            round(attrs.emotion_confidence, 4) if attrs.emotion_confidence is not None else None
        ),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _video_fields(info: VideoInfo) -> dict[str, Any]:
    """IMM's video metadata fields of a File."""
    return {
        "VideoWidth": info.width,
        "VideoHeight": info.height,
        "Duration": round(info.duration, 3),
        "FormatName": info.format,
        "VideoStreams": [
            {
                "CodecName": info.codec,
                "Width": info.width,
                "Height": info.height,
                "FrameCount": info.frame_count,
                "AverageFrameRate": str(info.fps),
                "Rotate": str(info.rotation),
            }
        ],
    }
