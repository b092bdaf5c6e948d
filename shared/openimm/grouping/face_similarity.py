"""Similarity 0..1 of two faces: a logistic of their cosine, fitted per embedder.

Similarity = 1 / (1 + exp(-(slope * cosine + offset))) is the probability that two
faces are one person, fitted by logistic regression on lfw-dev (every genuine pair and
200k fixed-seed impostor pairs, largest face per image, the two classes weighted
equally: `python bench/search.py --sizes 0 --faces LFW_DEV --calibrate`). Equal
weights make it a likelihood ratio in disguise: 0.5 where a cosine is as likely
between two photos of one person as between two people, above 0.99 well inside the
same-person range. Under a real prior (a library has far more strangers than twins)
read it as evidence, not as odds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SimilarityScale:
    """A logistic map of cosine to 0..1 (0.5 at cosine -offset / slope)."""

    slope: float
    offset: float

    @classmethod
    def centred(cls, cosine: float, width: float) -> SimilarityScale:
        """0.5 at `cosine`, e-fold per `width` of cosine (for embedders not fitted here)."""
        return cls(slope=1.0 / width, offset=-cosine / width)

    def __call__(self, cosine: npt.ArrayLike) -> npt.NDArray[np.float64]:
        z = self.slope * np.asarray(cosine, dtype=np.float64) + self.offset
        # tanh form: no overflow at any slope
        similarity: npt.NDArray[np.float64] = 0.5 * (1.0 + np.tanh(z / 2.0))
        return similarity

    def of(self, cosine: float) -> float:
        # six places: near 1 the ranking would vanish in four
        return round(float(self(cosine)), 6)


# lfw-dev fits (bench/search.py --calibrate: 192,542 genuine and 200,000 impostor pairs).
# 0.5 at cosine 0.810 (fused), 0.910 (dlib), 0.411 (FaceNet); a median genuine pair
# scores 0.998-0.999, the 99.9th percentile of impostors 0.83 (fused), 0.92, 0.90.
SIMILARITY_BY_EMBEDDER = {
    "fused": SimilarityScale(slope=68.245, offset=-55.271),
    "dlib": SimilarityScale(slope=134.748, offset=-122.653),
    "facenet": SimilarityScale(slope=22.163, offset=-9.119),
}
