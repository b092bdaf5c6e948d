"""What similar-image grouping needs of one image or video key frame, in one pass.

ImageFeatures holds a CNN embedding (vision/image_embedding.py), two perceptual hashes
(vision/perceptual_hash.py), a colour signature (vision/colour_signature.py), the capture
time (vision/capture_time.py), the size and the shot's quality (vision/image_quality.py).
Every measure is taken from one copy of the image shrunk to at most WORKING_SIDE px, so
a 50-megapixel photo costs about what a 1-megapixel one does.

Thresholds, measured by bench/image_features.py on labelled near-duplicate sets (UKBench
copies, resolution variants of one portrait, a 16 s handheld sequence, the 24 Kodak
photos as different-but-similar negatives) and on synthetic bursts of the Kodak photos
(5% crop, exposure x0.7 and x1.3, JPEG quality 50, 3%/2% shift):
- embedding cosine distance: burst frames <= 0.080 (crop 0.071, shift 0.046, exposure
  0.030, JPEG 0.009); sequence frames up to 1.5 s apart <= 0.096; greyscale, rotated and
  letterboxed copies 0.125..0.147; different photos >= 0.144 (p5 0.25). At
  NEAR_DUPLICATE_COSINE = 0.12, single-linkage grouping mixes no two groups in either set.
- pHash Hamming distance: JPEG copies <= 2 bits, exposure changes <= 8, 5% crops and 3%
  shifts up to 16, different photos >= 16 (p5 24). The hashes confirm copies
  (NEAR_DUPLICATE_PHASH = 10); the embedding is what groups bursts and sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openimm.vision.capture_time import capture_time
from openimm.vision.colour_signature import colour_signature
from openimm.vision.image_embedding import ImageEmbedder
from openimm.vision.image_ops import grey, shrink
from openimm.vision.image_quality import ImageQuality, image_quality
from openimm.vision.perceptual_hash import dhash, phash
from openimm.vision.types import DecodedImage, Pixels, Vectors

WORKING_SIDE = 1024
NEAR_DUPLICATE_COSINE = 0.12
NEAR_DUPLICATE_PHASH = 10


@dataclass(frozen=True, eq=False)
class ImageFeatures:
    """Features of one upright image; compare two with the functions of this module."""

    embedding: Vectors  # (1024,) float32, unit L2 norm
    phash: int  # 64 bits, unsigned
    dhash: int  # 64 bits, unsigned
    colour: Vectors  # (72,) float32, unit L2 norm (sqrt of the HSV histogram)
    captured_at: float | None  # POSIX seconds, see vision/capture_time.py
    width: int
    height: int
    quality: ImageQuality


def cosine_distance(a: Vectors, b: Vectors) -> float:
    """1 - cosine similarity of two unit vectors: 0 identical .. 2 opposite."""
    return 1.0 - float(np.dot(a, b))


def working_copy(rgb: Pixels) -> Pixels:
    """The image shrunk (area averaging) to at most WORKING_SIDE px on its long side."""
    return shrink(rgb, WORKING_SIDE)


class ImageFeatureExtractor:
    """Decoded images (photos or video frames) to ImageFeatures; batches the embedding."""

    def __init__(self, embedder: ImageEmbedder | None = None) -> None:
        self.embedder = embedder if embedder is not None else ImageEmbedder()

    def extract(
        self,
        image: DecodedImage,
        exif_source: bytes | None = None,
        *,
        captured_at: float | None = None,
    ) -> ImageFeatures:
        """Features of one image; capture time from `exif_source` (file bytes) or `captured_at`."""
        return self.extract_batch([image], [exif_source], [captured_at])[0]

    def extract_batch(
        self,
        images: Sequence[DecodedImage],
        exif_sources: Sequence[bytes | None] | None = None,
        captured_at: Sequence[float | None] | None = None,
    ) -> list[ImageFeatures]:
        """Features of several images, their embeddings computed in batches."""
        sources = list(exif_sources) if exif_sources is not None else [None] * len(images)
        fallback = list(captured_at) if captured_at is not None else [None] * len(images)
        if not len(sources) == len(fallback) == len(images):
            raise ValueError("one exif source and one capture time per image, or none")
        views = [working_copy(image.rgb) for image in images]
        embeddings = self.embedder.embed(views)
        features = []
        for image, view, embedding, source, when in zip(
            images, views, embeddings, sources, fallback, strict=True
        ):
            luma = grey(view)
            taken = capture_time(source)
            features.append(
                ImageFeatures(
                    embedding=embedding,
                    phash=phash(luma),
                    dhash=dhash(luma),
                    colour=colour_signature(view),
                    captured_at=taken if taken is not None else when,
                    width=image.width,
                    height=image.height,
                    quality=image_quality(luma),
                )
            )
        return features
