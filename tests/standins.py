"""Stand-ins for the vision models in fast tests: a photo's colour is its person.

Every photo is one solid colour and holds one face in its middle (none when the photo
is grey); the face's vector is that colour, so colours are people and their cosines are
known in advance. The real models run in tests/e2e and tests/unit/vision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openimm.adapters.local import FolderBlobStore, JsonlTopic, SqliteQueue, SqliteTableStore
from openimm.bootstrap import Parts
from openimm.vision.types import Box, DecodedImage, DetectedFace, HeadPose, Pixels, Vectors


class ColourDetector:
    """One good face in the middle of a coloured photo, none in a grey one."""

    def detect(self, image: DecodedImage) -> list[DetectedFace]:
        w, h = image.width, image.height
        red, green, blue = (int(v) for v in image.rgb[h // 2, w // 2])
        if red == green == blue:
            return []
        return [
            DetectedFace(
                box=Box(w // 4, h // 4, w // 2, h // 2),
                landmarks=((0.0, 0.0),) * 5,
                confidence=0.99,
                head_pose=HeadPose(0.0, 0.0, 0.0),
                sharpness=1.0,
                quality=0.95,
            )
        ]


class ColourEmbedder:
    """The vector is the crop's mean colour."""

    name = "colour"
    dim = 3

    def align(self, image: DecodedImage, face: DetectedFace) -> Pixels:
        b = face.box
        return image.rgb[b.top : b.top + b.height, b.left : b.left + b.width][:8, :8].copy()

    def embed(self, chips: list[Pixels]) -> Vectors:
        means = np.array([c.reshape(-1, 3).mean(axis=0) for c in chips], dtype=np.float32)
        return means / np.linalg.norm(means, axis=1, keepdims=True)


def colour_parts(folder: Path) -> Parts:
    """Local adapters under `folder`, with the colour stand-ins as models."""
    return Parts(
        table=SqliteTableStore(folder / "table.db"),
        blobs=FolderBlobStore(folder / "buckets"),
        queue=SqliteQueue(folder / "queue.db"),
        topic=JsonlTopic(folder / "notices.jsonl"),
        detector=ColourDetector(),
        embedder=ColourEmbedder(),
    )
