"""track_faces on made-up detections: linking, gaps, cuts, merging and the one-face rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from openimm.vision.face_tracks import FrameFaces, box_iou, track_faces
from openimm.vision.types import Box, DetectedFace, HeadPose, Vectors

DIM = 8


def _vector(*parts: tuple[int, float]) -> Vectors:
    v = np.zeros(DIM, dtype=np.float64)
    for axis, value in parts:
        v[axis] = value
    return (v / np.linalg.norm(v)).astype(np.float32)


def _near(base: int, cosine: float, other: int) -> Vectors:
    """A unit vector at exactly `cosine` to axis `base`."""
    return _vector((base, cosine), (other, math.sqrt(1 - cosine**2)))


def _face(left: int, top: int = 50, side: int = 100, quality: float = 0.9) -> DetectedFace:
    return DetectedFace(
        box=Box(left, top, side, side),
        landmarks=((0.0, 0.0),) * 5,
        confidence=0.99,
        head_pose=HeadPose(0.0, 0.0, 0.0),
        sharpness=0.9,
        quality=quality,
    )


def _frame(time: float, *faces: tuple[DetectedFace, Vectors]) -> FrameFaces:
    vectors = np.stack([v for _, v in faces]) if faces else np.zeros((0, DIM), np.float32)
    return FrameFaces(time=time, faces=[f for f, _ in faces], vectors=vectors)


A, B = 0, 1  # axes of two people


def test_box_iou() -> None:
    assert box_iou(Box(0, 0, 10, 10), Box(0, 0, 10, 10)) == 1.0
    assert box_iou(Box(0, 0, 10, 10), Box(5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou(Box(0, 0, 10, 10), Box(10, 0, 10, 10)) == 0.0


def test_one_person_moving_is_one_track_with_its_best_face() -> None:
    frames = [
        _frame(float(t), (_face(100 + 10 * t, quality=q), _near(A, 0.97, 2 + t % 3)))
        for t, q in enumerate([0.5, 0.95, 0.7, 0.6])
    ]
    (track,) = track_faces(frames)
    assert (track.frame_count, track.first_time, track.last_time) == (4, 0.0, 3.0)
    assert (track.frame, track.time, track.face_index, track.face.quality) == (1, 1.0, 0, 0.95)
    assert float(np.linalg.norm(track.embedding)) == pytest.approx(1.0, abs=1e-6)
    assert float(track.embedding[A]) > 0.97  # the mean is closer to the person than any frame


def test_a_different_person_in_the_same_place_after_a_cut_starts_a_new_track() -> None:
    # strangers' dlib vectors often reach cosine 0.85; boxes overlapping must not join them
    frames = [_frame(float(t), (_face(100), _vector((A, 1.0)))) for t in range(3)]
    frames += [_frame(float(t), (_face(102), _near(A, 0.85, B))) for t in range(3, 6)]
    tracks = track_faces(frames)
    assert [(t.first_time, t.last_time) for t in tracks] == [(0.0, 2.0), (3.0, 5.0)]


def test_a_person_returning_later_elsewhere_is_merged() -> None:
    frames = [_frame(0.0, (_face(0), _near(A, 0.98, 2))), _frame(1.0, (_face(0), _vector((A, 1))))]
    frames += [_frame(float(t), (_face(300), _near(B, 0.99, 3))) for t in range(2, 8)]
    frames += [_frame(8.0, (_face(600), _near(A, 0.97, 4))), _frame(9.0)]
    tracks = track_faces(frames)
    assert [(t.first_time, t.last_time, t.frame_count) for t in tracks] == [
        (0.0, 8.0, 3),
        (2.0, 7.0, 6),
    ]


def test_a_fast_move_without_overlap_links_on_appearance_alone() -> None:
    frames = [
        _frame(0.0, (_face(0), _vector((A, 1)))),
        _frame(1.0, (_face(500), _near(A, 0.96, 2))),
    ]
    assert len(track_faces(frames)) == 1
    # but not a merely similar face: cosine 0.91 without overlap
    frames[1] = _frame(1.0, (_face(500), _near(A, 0.91, 2)))
    assert len(track_faces(frames)) == 2


def test_two_faces_of_one_frame_never_share_a_track() -> None:
    # twins: identical vectors, side by side, in every frame
    twin = _vector((A, 1))
    frames = [_frame(float(t), (_face(0), twin), (_face(300), twin)) for t in range(4)]
    tracks = track_faces(frames)
    assert len(tracks) == 2
    assert all(t.frame_count == 4 for t in tracks)
    assert {t.face.box.left for t in tracks} == {0, 300}


def test_a_short_gap_keeps_the_track_open() -> None:
    frames = [
        _frame(0.0, (_face(100), _vector((A, 1)))),
        _frame(1.0),
        _frame(2.0),
        _frame(3.0, (_face(110), _near(A, 0.91, 2))),
    ]
    (track,) = track_faces(frames)
    assert track.frame_count == 2 and track.last_time == 3.0


def test_no_faces_and_mismatched_input() -> None:
    assert track_faces([]) == []
    assert track_faces([_frame(0.0), _frame(1.0)]) == []
    with pytest.raises(ValueError, match="one vector"):
        track_faces([FrameFaces(0.0, [_face(0)], np.zeros((0, DIM), np.float32))])
