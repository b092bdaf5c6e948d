"""warm_up: every network of the face path runs once; a failure is the first photo's."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from openimm.vision.types import DecodedImage, DetectedFace
from openimm.vision.warm_up import warm_up, warm_up_in_background


class _Recorder:
    def __init__(self, broken: bool = False) -> None:
        self.calls: list[str] = []
        self.broken = broken
        self.dim = 4

    def detect(self, image: DecodedImage) -> list[DetectedFace]:
        self.calls.append("detect")
        if self.broken:
            raise OSError("model download failed")
        return []

    def align(self, image: DecodedImage, face: DetectedFace) -> Any:
        self.calls.append("align")
        return np.zeros((8, 8, 3), np.uint8)

    def embed(self, chips: list[Any]) -> Any:
        self.calls.append("embed")
        return np.zeros((len(chips), self.dim), np.float32)

    def estimate(self, image: DecodedImage, faces: list[DetectedFace]) -> list[Any]:
        self.calls.append("estimate")
        return []


def test_each_part_runs_once() -> None:
    part = _Recorder()
    warm_up(part, part, part)  # type: ignore[arg-type]
    assert part.calls == ["detect", "align", "embed", "estimate"]


def test_in_the_background_a_failure_is_left_to_the_first_photo() -> None:
    part = _Recorder(broken=True)
    warm_up_in_background(part, part, None).join(10)  # type: ignore[arg-type]
    assert part.calls == ["detect"]
    with pytest.raises(OSError):
        warm_up(part, part, None)  # type: ignore[arg-type]
