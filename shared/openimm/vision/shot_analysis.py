"""What similar-image grouping keeps of one photo, measured once when the photo is analysed.

One pass over a decoded photo gives everything grouping/similar_images.py compares, so a
clustering run reads stored numbers and never decodes an image:
- the Open-NSFW embedding, the 64-bit pHash and the EXIF capture time, exactly as
  vision/image_features.py measures them (from the working copy and the file's bytes);
- the ImageScore of vision/image_score.py (sharpness, exposure, noise, JPEG artefacts,
  resolution), which picks a cluster's best shot. Eyes open is not part of it: the face
  analysis finds five landmarks per face (eye centres, nose, mouth corners), which do not
  tell an open eye from a shut one;
- ORB keypoints of the working copy (vision/geometric_match.py), at most 18,010 bytes,
  for the geometric check of pairs the other evidence leaves open.

Video files are not analysed here: a similar-image cluster holds photos.
"""

from __future__ import annotations

from dataclasses import dataclass

from openimm.vision.capture_time import capture_time
from openimm.vision.geometric_match import Keypoints, keypoints
from openimm.vision.image_embedding import ImageEmbedder
from openimm.vision.image_features import working_copy
from openimm.vision.image_ops import grey
from openimm.vision.image_score import ImageScore, image_score
from openimm.vision.perceptual_hash import phash
from openimm.vision.types import DecodedImage, Vectors


@dataclass(frozen=True, eq=False)
class ShotFeatures:
    """The measures of one photo that similar-image grouping uses."""

    embedding: Vectors  # unit vector (vision/image_embedding.py)
    phash: int  # 64 bits, unsigned
    captured_at: float | None  # POSIX seconds, None when the file does not say
    score: ImageScore
    keypoints: Keypoints


class ShotAnalyser:
    """Decoded photos (and their file bytes, for EXIF) to ShotFeatures."""

    def __init__(self, embedder: ImageEmbedder | None = None) -> None:
        self._embedder = embedder if embedder is not None else ImageEmbedder()

    @property
    def model(self) -> str:
        """The embedding network: vectors of different networks are not comparable."""
        return self._embedder.name

    def analyse(self, image: DecodedImage, data: bytes | None) -> ShotFeatures:
        """Measure one upright photo; `data` is its file, read for the capture time only."""
        # one shrunk copy serves every measure that does not need native pixels: each
        # shrinking the photo itself cost more than the network at 2 MP
        view = working_copy(image.rgb)
        return ShotFeatures(
            embedding=self._embedder.embed([view])[0],
            phash=phash(grey(view)),
            captured_at=capture_time(data),
            score=image_score(image.rgb, view=view),
            keypoints=keypoints(view),
        )
