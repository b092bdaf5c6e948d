"""Face analysis of one file, in two stages: detect (+align) and embed.

The detect stage keeps the aligned crops in the blob store so the embed stage (which
may run elsewhere, batched) needs neither the original image nor the detector.
Both stages are idempotent: figure ids are derived from (URI, ETag, face index), so a
redelivered message rewrites the same rows.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from openimm.domain.catalog import Catalog
from openimm.domain.entities import UNAVAILABLE, FileState, figure_id_for
from openimm.domain.figures import FigureBook, encode_vector
from openimm.errors import InvalidFile
from openimm.ports import BlobNotFound, BlobStore, BlobTooLarge
from openimm.vision.decode import decode_image
from openimm.vision.types import DetectedFace, FaceDetector, FaceEmbedder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisLimits:
    """What a file may be, and what makes a face good enough to found a cluster."""

    max_file_bytes: int = 200 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_faces: int = 200
    seed_min_face_px: int = 75
    seed_max_pose_deg: float = 30.0
    seed_min_quality: float = 0.8


def seed_eligible(face: DetectedFace, limits: AnalysisLimits) -> bool:
    """IMM's rule for faces that may found a new cluster."""
    pose = face.head_pose
    return (
        min(face.box.width, face.box.height) > limits.seed_min_face_px
        and max(abs(pose.pitch), abs(pose.roll), abs(pose.yaw)) < limits.seed_max_pose_deg
        and face.quality > limits.seed_min_quality
    )


def _content_tag(row: dict[str, Any]) -> str:
    return hashlib.sha256(str(row.get("ETag", "")).encode()).hexdigest()[:16]


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
    ) -> None:
        self._catalog = catalog
        self._figures = figures
        self._blobs = blobs
        self._detector = detector
        self._embedder = embedder
        self._work_prefix = work_prefix.rstrip("/")
        self.limits = limits or AnalysisLimits()

    def outcome(self, project: str, dataset: str, uri: str, etag: str | None) -> bool | None:
        """For these bytes: True if analysed, False if failed, None if not finished."""
        row = self._catalog.find_file(project, dataset, uri)
        if row is None or row.get("ETag") != etag:
            return None
        return {FileState.ANALYSED: True, FileState.FAILED: False}.get(row.get("_state", ""))

    def detect(self, project: str, dataset: str, uri: str, etag: str | None) -> bool:
        """Detect and align faces; True when the embed stage has work to do."""
        row = self._catalog.find_file(project, dataset, uri)
        if row is None or (etag is not None and row.get("ETag") != etag):
            return False  # deleted or replaced meanwhile: a newer message covers it
        try:
            if row.get("MediaType") not in (None, "image"):
                raise InvalidFile(f"media type {row.get('MediaType')!r} is not analysed yet")
            data = self._blobs.read(uri, max_bytes=self.limits.max_file_bytes)
            image = decode_image(data, max_pixels=self.limits.max_pixels)
        except (InvalidFile, BlobTooLarge, BlobNotFound) as exc:
            self._fail(project, dataset, row, exc)
            return False
        faces = self._detector.detect(image)
        faces.sort(key=lambda f: (-f.box.width * f.box.height, f.box.left, f.box.top))
        faces = faces[: self.limits.max_faces]
        chips = [self._embedder.align(image, face) for face in faces]
        tag = _content_tag(row)
        if chips:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, chips=np.stack(chips))
            self._blobs.write(self._chips_uri(row, tag), buffer.getvalue())
        row.update(
            ImageWidth=image.width,
            ImageHeight=image.height,
            Orientation=image.orientation,
            _detections=[self._detection(uri, tag, i, f) for i, f in enumerate(faces)],
        )
        row.pop("_error", None)
        self._catalog.save_file(project, dataset, row)
        return True

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
        if detections:
            raw = self._blobs.read(self._chips_uri(row, _content_tag(row)))
            with np.load(io.BytesIO(raw)) as archive:
                chips = list(archive["chips"])
            vectors = self._embedder.embed(chips)
        old = {
            f["FigureId"]: f
            for f in self._figures.get_many(project, dataset, row.get("_figures", []))
        }
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
                    "_uri": uri,
                    "_file": row["ObjectId"],
                    "_model": self._embedder.name,
                    "_embedding": encode_vector(vector),
                }
            )
        self._figures.replace_file_figures(project, dataset, list(old), figures)
        row["_figures"] = [f["FigureId"] for f in figures]
        row["FigureCount"] = len(figures)
        row["_state"] = FileState.ANALYSED
        row.pop("_detections", None)
        self._catalog.save_file(project, dataset, row)
        return True

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
        box = face.box
        return {
            "FigureId": figure_id_for(uri, tag, index),
            "FigureType": "face",
            "FigureConfidence": round(face.confidence, 4),
            "Boundary": {
                "Left": box.left,
                "Top": box.top,
                "Width": box.width,
                "Height": box.height,
            },
            "HeadPose": {
                "Pitch": round(face.head_pose.pitch, 2),
                "Roll": round(face.head_pose.roll, 2),
                "Yaw": round(face.head_pose.yaw, 2),
            },
            "FaceQuality": round(face.quality, 4),
            "Sharpness": round(face.sharpness, 4),
            "_landmarks": [[round(x, 1), round(y, 1)] for x, y in face.landmarks],
            "_seed": seed_eligible(face, self.limits),
        }
