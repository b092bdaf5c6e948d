"""IMM's gate for faces that may found a cluster: size, pose and quality, each strict."""

from __future__ import annotations

import dataclasses

import pytest

from openimm.domain.analysis import AnalysisLimits, seed_eligible
from openimm.vision import Box, DetectedFace, HeadPose

LIMITS = AnalysisLimits()


def _face(
    side: int = 120, pose: tuple[float, float, float] = (0, 0, 0), quality: float = 0.9
) -> DetectedFace:
    points = ((0.0, 0.0),) * 5
    return DetectedFace(Box(0, 0, side, side + 20), points, 0.99, HeadPose(*pose), 1.0, quality)


def test_a_good_face_passes() -> None:
    assert seed_eligible(_face(), LIMITS)


@pytest.mark.parametrize(
    "face",
    [
        _face(side=75),  # must be larger than 75x75
        _face(pose=(30.0, 0.0, 0.0)),  # every angle under 30 degrees
        _face(pose=(0.0, -31.0, 0.0)),
        _face(pose=(0.0, 0.0, 45.0)),
        _face(quality=LIMITS.seed_min_quality),  # quality above the threshold
    ],
)
def test_small_turned_or_poor_faces_fail(face: DetectedFace) -> None:
    assert not seed_eligible(face, LIMITS)


def test_the_gate_is_configurable() -> None:
    strict = dataclasses.replace(LIMITS, seed_min_face_px=150, seed_min_quality=0.95)
    assert not seed_eligible(_face(), strict)
    assert seed_eligible(_face(side=200, quality=0.97), strict)
