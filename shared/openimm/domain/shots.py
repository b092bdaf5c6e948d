"""A photo's similar-image features as stored: on its file row, keypoints in the blob store.

A photo is measured once (vision/shot_analysis.py), by the detect stage of a similar-image
task: the task sends every photo whose row lacks measures of its bytes by the current
network through that stage (the Open-NSFW network and ORB were a third of the CPU of a
250 px photo's analysis, which indexing for people alone no longer pays). The result is
kept under SHOT on the file row: the embedding as float16 (2 KB; the grouping thresholds are
cosine distances of 0.03 and more, float16 moves a cosine by about 1e-4), the pHash as
16 hex digits (a 64-bit unsigned int is beyond what some table stores hold), the capture
time and the ImageScore parts. The ORB keypoints (up to 18 KB) go to the work bucket: a
clustering run reads them only for the few pairs it verifies, and rows stay small.
The row also shows IMM's File.ImageScore {OverallQualityScore}.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from openimm.domain.entities import content_tag
from openimm.ports import BlobNotFound, BlobStore
from openimm.vision.geometric_match import Keypoints
from openimm.vision.shot_analysis import ShotAnalyser
from openimm.vision.types import DecodedImage, Vectors

# on a file row: the stored features (private)
SHOT = "_shot"
# on a file row: IMM's ImageScore object
IMAGE_SCORE = "ImageScore"


@dataclass(frozen=True, eq=False)
class StoredShot:
    """What a clustering run reads back of one photo."""

    embedding: Vectors
    phash: int
    captured_at: float | None
    score: float
    keypoints_uri: str
    model: str


class ShotIndex:
    """Measures photos for similar-image grouping and reads the stored measures back."""

    def __init__(self, blobs: BlobStore, analyser: ShotAnalyser, work_prefix: str) -> None:
        self._blobs = blobs
        self._analyser = analyser
        self._work_prefix = work_prefix.rstrip("/")

    @property
    def model(self) -> str:
        """The embedding network whose vectors the measures hold."""
        return self._analyser.model

    def describe(
        self, row: dict[str, Any], tag: str, image: DecodedImage, data: bytes
    ) -> dict[str, Any]:
        """Measure one decoded photo; the fields to set on its file row."""
        features = self._analyser.analyse(image, data)
        uri = f"{self._work_prefix}/keypoints/{row['ObjectId']}-{tag}.orb"
        self._blobs.write(uri, features.keypoints.to_bytes())
        parts = {k: round(v, 4) for k, v in dataclasses.asdict(features.score).items()}
        overall = round(features.score.overall, 4)
        return {
            IMAGE_SCORE: {"OverallQualityScore": overall},
            SHOT: {
                "embedding": base64.b64encode(
                    np.asarray(features.embedding, dtype="<f2").tobytes()
                ).decode(),
                "phash": f"{features.phash:016x}",
                "captured_at": features.captured_at,
                "score": {**parts, "overall": overall},
                "keypoints": uri,
                "model": self._analyser.model,
                "tag": tag,
            },
        }

    def keypoints(self, shot: StoredShot) -> Keypoints | None:
        """The photo's ORB keypoints, None when the blob is gone or unreadable."""
        try:
            return Keypoints.from_bytes(self._blobs.read(shot.keypoints_uri))
        except (BlobNotFound, ValueError):
            return None


def needs_measures(row: dict[str, Any], model: str) -> bool:
    """Whether the row is a photo without measures of its present bytes by `model`."""
    if (row.get("MediaType") or "image") != "image":
        return False
    shot = row.get(SHOT)
    if not isinstance(shot, dict) or shot.get("model", "") != model:
        return True
    # rows measured before the tag was kept name it in their keypoints' blob
    tag = shot.get("tag") or str(shot.get("keypoints", "")).rsplit("-", 1)[-1].split(".")[0]
    return bool(tag != content_tag(row))


def stored_shot(row: dict[str, Any]) -> StoredShot | None:
    """The features a file row holds, None when it has none (not a photo, not analysed)."""
    shot = row.get(SHOT)
    if not isinstance(shot, dict):
        return None
    vector = np.frombuffer(base64.b64decode(shot["embedding"]), dtype="<f2").astype(np.float32)
    return StoredShot(
        embedding=vector,
        phash=int(shot["phash"], 16),
        captured_at=shot.get("captured_at"),
        score=float(shot["score"]["overall"]),
        keypoints_uri=str(shot["keypoints"]),
        model=str(shot.get("model", "")),
    )
