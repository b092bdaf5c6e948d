"""Head pose, sharpness and FaceQuality, computed from the five landmarks and the face crop.

Head pose (degrees). Landmarks are first rotated so the eye line is horizontal.
- roll  = angle of the eye line (person's right eye to left eye); positive when the
  person's left eye (image right) is lower, i.e. the head leans clockwise in the image.
- yaw   = atan(dx / YAW_DEPTH), dx = horizontal offset of the nose tip from the eye
  midpoint, in eye distances. For a head turned by yaw the nose tip, standing YAW_DEPTH eye
  distances in front of the eye plane, moves by depth*sin(yaw) while the eye distance
  shrinks by cos(yaw), hence the tangent. Positive when the nose points to image right
  (the person turns to their left).
- pitch = atan((PITCH_FRONTAL - t) * PITCH_GAIN), t = vertical position of the nose tip
  between the eye line (0) and the mouth line (1). PITCH_FRONTAL is t of a frontal face;
  the gain is the eye-to-mouth height over the depth of the eyes and mouth behind the nose
  tip, in the same small-angle model. Positive when the face tilts up (chin up).
The constants come from a generic 3D head and were checked on frontal sample photos.

Sharpness (0..1). The central part of the face box (skipping hair and background), in
grey, resized to SHARPNESS_SIDE px so that the face size does not change the measure,
and v = variance of its Laplacian. sharpness = 1 - exp(-v / SHARPNESS_SCALE): 0 for a flat
crop, 0.63 at v = SHARPNESS_SCALE, saturating towards 1 for crisp faces.

FaceQuality (0..1) = confidence_term * size_term * pose_term * sharpness, where
- confidence_term = clip((confidence - 0.6) / 0.35, 0, 1): 1 from 0.95 on;
- size_term = min(1, side / FULL_DETAIL_SIDE) ** 0.5, side = sqrt(box width * height):
  the embedder works on ~100 px faces, smaller ones lose detail;
- pose_term = max(0, cos(sqrt(yaw^2 + pitch^2))): the foreshortening of the face plane;
  roll does not count, alignment undoes it.
A sharp, frontal face of 100 px or more scores above 0.8; IMM's gate (quality > 0.8,
face > 75x75, |pose| < 30 degrees) then keeps it, while blurred, tiny or turned faces
fall below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from openimm.vision.types import Box, HeadPose, Pixels

YAW_DEPTH = 0.42
PITCH_FRONTAL = 0.5
PITCH_GAIN = 2.4
SHARPNESS_SIDE = 96
SHARPNESS_SCALE = 50.0
FULL_DETAIL_SIDE = 100.0


def head_pose(landmarks: Sequence[tuple[float, float]]) -> HeadPose:
    """Pitch, roll and yaw in degrees from (right eye, left eye, nose, mouth right, left)."""
    pts = np.asarray(landmarks[:5], dtype=np.float64)
    right_eye, left_eye, nose, mouth_right, mouth_left = pts
    eye_vec = left_eye - right_eye
    roll = math.atan2(eye_vec[1], eye_vec[0])
    eye_dist = float(np.hypot(*eye_vec))
    if eye_dist < 1e-6:
        return HeadPose(pitch=0.0, roll=math.degrees(roll), yaw=0.0)
    cos_r, sin_r = math.cos(-roll), math.sin(-roll)
    rotate = np.array([[cos_r, -sin_r], [sin_r, cos_r]])
    eye_mid = (right_eye + left_eye) / 2
    nose_r = rotate @ (nose - eye_mid)
    mouth_r = rotate @ ((mouth_right + mouth_left) / 2 - eye_mid)
    yaw = math.atan(nose_r[0] / eye_dist / YAW_DEPTH)
    pitch = 0.0
    if mouth_r[1] > 1e-6:
        t = nose_r[1] / mouth_r[1]
        pitch = math.atan((PITCH_FRONTAL - t) * PITCH_GAIN)
    return HeadPose(pitch=math.degrees(pitch), roll=math.degrees(roll), yaw=math.degrees(yaw))


def sharpness(rgb: Pixels, box: Box) -> float:
    """Focus of the face in 0..1: saturating variance of the Laplacian of the inner face."""
    import cv2

    # the inner 60% x 70% holds eyes, nose and mouth, and little hair or background
    left = box.left + round(box.width * 0.2)
    top = box.top + round(box.height * 0.15)
    right = box.left + round(box.width * 0.8)
    bottom = box.top + round(box.height * 0.85)
    crop = rgb[max(0, top) : max(0, bottom), max(0, left) : max(0, right)]
    if crop.shape[0] < 2 or crop.shape[1] < 2:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    shrinking = grey.shape[0] > SHARPNESS_SIDE
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    grey = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=interpolation)
    variance = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return 1.0 - math.exp(-variance / SHARPNESS_SCALE)


def face_quality(confidence: float, box: Box, pose: HeadPose, sharp: float) -> float:
    """FaceQuality in 0..1; see the module docstring for the formula."""
    confidence_term = min(1.0, max(0.0, (confidence - 0.6) / 0.35))
    side = math.sqrt(max(0, box.width) * max(0, box.height))
    size_term = min(1.0, side / FULL_DETAIL_SIDE) ** 0.5
    off_axis = math.radians(math.hypot(pose.yaw, pose.pitch))
    pose_term = max(0.0, math.cos(off_axis))
    return float(confidence_term * size_term * pose_term * min(1.0, max(0.0, sharp)))
