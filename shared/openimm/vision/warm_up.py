"""Load the face networks ahead of the first photo, on a core that would otherwise wait.

A fresh `openimm run` spends its first half second importing and indexing on one core;
then both workers take photos, and the first of them waits for every network to load
(a third of a second of onnxruntime sessions and first runs). Loading them meanwhile, on
the idle core, takes that wait off the run (bench/vision.py).
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from openimm.vision.types import (
    Box,
    DecodedImage,
    DetectedFace,
    FaceAttributeEstimator,
    FaceDetector,
    FaceEmbedder,
    HeadPose,
)

log = logging.getLogger(__name__)

_SIDE = 64
# a face filling most of the blank image, landmarks where a face's would be
_FACE = DetectedFace(
    Box(8, 8, 48, 48),
    ((24.0, 28.0), (40.0, 28.0), (32.0, 36.0), (26.0, 46.0), (38.0, 46.0)),
    1.0,
    HeadPose(0.0, 0.0, 0.0),
    1.0,
    1.0,
)


def warm_up(
    detector: FaceDetector,
    embedder: FaceEmbedder,
    attributes: FaceAttributeEstimator | None,
) -> None:
    """Run each network once on a blank image, which loads it."""
    image = _blank()
    detector.detect(image)
    warm_up_embedder(embedder, image)
    if attributes is not None:
        attributes.estimate(image, [_FACE])


def warm_up_embedder(embedder: FaceEmbedder, image: DecodedImage | None = None) -> None:
    """Run the embedder's networks once on a blank face (which makes their int8 copies)."""
    blank = image if image is not None else _blank()
    embedder.embed([embedder.align(blank, _FACE)])


def _blank() -> DecodedImage:
    return DecodedImage(np.zeros((_SIDE, _SIDE, 3), np.uint8), _SIDE, _SIDE, "raw")


def _warm_up_quietly(
    detector: FaceDetector,
    embedder: FaceEmbedder,
    attributes: FaceAttributeEstimator | None,
) -> None:
    try:
        warm_up(detector, embedder, attributes)
    except Exception:
        # e.g. a model that cannot be fetched: the first photo reports it, as it would
        log.debug("loading the face networks ahead failed", exc_info=True)


def warm_up_in_background(
    detector: FaceDetector,
    embedder: FaceEmbedder,
    attributes: FaceAttributeEstimator | None,
) -> threading.Thread:
    """`warm_up` on a daemon thread, started; a failure is only logged."""
    thread = threading.Thread(
        target=_warm_up_quietly,
        args=(detector, embedder, attributes),
        name="openimm-warm-up",
        daemon=True,
    )
    thread.start()
    return thread
