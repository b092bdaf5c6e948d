"""What the vision layer hands to the rest: plain images, boxes, landmarks, scores, vectors.

Nothing here imports onnxruntime, OpenCV or dlib; the services see only these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

Pixels = npt.NDArray[np.uint8]
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DecodedImage:
    """An image upright (EXIF orientation applied), as RGB uint8 HxWx3."""

    rgb: Pixels
    width: int
    height: int
    format: str
    orientation: int = 1
    # A large file is decoded reduced (vision/decode.py): one pixel here stands for
    # scale x scale of the file's, whose upright size is full_width x full_height
    # (0: not reduced, the same as width x height).
    scale: int = 1
    full_width: int = 0
    full_height: int = 0

    def __post_init__(self) -> None:
        if not self.full_width:
            object.__setattr__(self, "full_width", self.width)
        if not self.full_height:
            object.__setattr__(self, "full_height", self.height)

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class Box:
    """Pixel box in the upright image."""

    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class HeadPose:
    """Degrees, estimated from the five landmarks."""

    pitch: float
    roll: float
    yaw: float


@dataclass(frozen=True)
class DetectedFace:
    """One face as the detector saw it, with the scores the quality gate needs."""

    box: Box
    # right eye, left eye (of the person), nose tip, right and left mouth corner: (x, y)
    landmarks: tuple[tuple[float, float], ...]
    confidence: float
    head_pose: HeadPose
    sharpness: float  # 0..1
    quality: float  # 0..1, see vision/face_quality.py


Gender = Literal["male", "female"]


@dataclass(frozen=True)
class FaceAttributes:
    """What attribute models measured on one face; None where nothing measured it."""

    age: float | None = None  # years, expectation over the model's age distribution
    age_sd: float | None = None  # years, spread of that distribution
    gender: Gender | None = None
    gender_confidence: float | None = None  # 0..1, probability of `gender`
    emotion: str | None = None  # IMM's noun: happiness, neutral, sadness, ...
    emotion_confidence: float | None = None  # 0..1, probability of `emotion`


class FaceDetector(Protocol):
    """Finds faces with five landmarks in an upright image."""

    def detect(self, image: DecodedImage) -> list[DetectedFace]: ...


class FaceEmbedder(Protocol):
    """Aligns faces and turns them into L2-normalised vectors."""

    name: str
    dim: int

    def align(self, image: DecodedImage, face: DetectedFace) -> Pixels:
        """The embedder's canonical crop of one face (RGB uint8)."""
        ...

    def embed(self, chips: list[Pixels]) -> Vectors:
        """(N, dim) float32 unit vectors for aligned crops."""
        ...


class FaceAttributeEstimator(Protocol):
    """Measures attributes (age, gender, emotion, ...) of detected faces."""

    def estimate(self, image: DecodedImage, faces: list[DetectedFace]) -> list[FaceAttributes]:
        """One FaceAttributes per face, in the order of `faces`."""
        ...
