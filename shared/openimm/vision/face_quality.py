"""Head pose, sharpness and FaceQuality, computed from the five landmarks and the face crop.

Head pose (degrees) is the rotation of a mean 3D face that best explains the five
landmarks under a scaled orthographic camera. The model's x and y are the standard
112x112 ArcFace template made left-right symmetric, in eye distances; its depths are those
of the same points on the 68-point mean face used by OpenFace and dlib (the nose tip 0.585
eye distances in front of the eye centres, the mouth corners 0.064); the nose's height was
then set so that the median pitch of 400 LFW faces (one per person, lfw-dev) is 0, and the
other 400 read +0.1 (the plain template reads pitch +7: its nose sits higher than this
detector's). The fit is closed form: the least-squares affine map from the centred model
to the centred landmarks, its nearest scaled rotation (SVD), the third row by a cross
product. The rotation is split as R = Rz(roll) Rx(-pitch) Ry(-yaw), roll last and about
the camera axis, so that
- roll: turning the image in-plane by a degrees adds exactly a to roll; positive when the
  person's left eye (image right) is lower, i.e. the head leans clockwise in the image;
- yaw: positive when the nose points to image right (the person turns to their left);
- pitch: positive when the face tilts up (chin up);
and mirrored landmarks give exactly negated yaw and roll, the same pitch.

Expected error. The fit itself is exact for the model (tests). Perspective, which it
ignores, moves pitch by at most 2.2 degrees and yaw by 0.9 for a camera 1.6 m away (25 eye
distances), 5.4 and 2.2 at 65 cm (a selfie). Measured with this detector's refined
landmarks on 17 photos (face_recognition examples): turning a photo by 10 to 40 degrees
changed roll by the turn within 1.1 degrees on average, 6.0 at worst (a face cut by the
image edge); a mirrored photo gave |yaw + yaw'| 1.7 on average (4.8 at worst), |roll +
roll'| 0.7 (3.1), |pitch - pitch'| 2.2 (6.9); across working sizes 320 to 1024 px the
angles moved by 1.0 (yaw), 2.2 (pitch) and 1.0 (roll) degrees (standard deviation). The
scale of yaw and pitch rests on the model's depths, which vary by about 10% between
people (about 3 degrees at 30); expressions move the mouth corners and so pitch (a broad
smile reads a few degrees of chin down). The old 2D formula read the lectern shot
obama2.jpg at yaw -30.4; this reads -18.8, as the photo looks.

Sharpness (0..1). The central part of the face box (skipping hair and background), in
grey, resized to SHARPNESS_SIDE px so that the face size does not change the measure,
and v = variance of its Laplacian. sharpness = 1 - exp(-v / SHARPNESS_SCALE): 0 for a flat
crop, 0.63 at v = SHARPNESS_SCALE, saturating towards 1 for crisp faces.

FaceQuality (0..1) = confidence_term * size_term * pose_term * sharpness, where
- confidence_term = clip((confidence - 0.6) / 0.35, 0, 1): 1 from 0.95 on;
- size_term = min(1, side / FULL_DETAIL_SIDE) ** 0.5, side = sqrt(box width * height):
  the embedder works on ~100 px faces, smaller ones lose detail;
- pose_term = max(0, cos(yaw) * cos(pitch)): the foreshortening of the face plane (the
  cosine of the angle between the model's face normal and the camera axis under the
  rotation above); roll does not count, alignment undoes it.
A sharp, frontal face of 100 px or more scores above 0.8; IMM's gate (quality > 0.4,
face > 75x75, |pose| < 30 degrees) then keeps it, while blurred, tiny or turned faces
fall below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from openimm.vision.types import Box, HeadPose, Pixels

# The 3D mean face in eye distances: x to image right, y down, z away from the camera.
# Right eye, left eye (of the person), nose tip, right and left mouth corner.
FACE_MODEL = np.array(
    [
        [-0.5, 0.0, 0.0],
        [0.5, 0.0, 0.0],
        [0.0, 0.64, -0.585],
        [-0.4141, 1.1546, -0.064],
        [0.4141, 1.1546, -0.064],
    ]
)
_CENTRED_MODEL_PINV = np.linalg.pinv((FACE_MODEL - FACE_MODEL.mean(axis=0)).T)
SHARPNESS_SIDE = 96
SHARPNESS_SCALE = 50.0
FULL_DETAIL_SIDE = 100.0


def head_pose(landmarks: Sequence[tuple[float, float]]) -> HeadPose:
    """Pitch, roll and yaw in degrees from (right eye, left eye, nose, mouth right, left)."""
    pts = np.asarray(landmarks[:5], dtype=np.float64)
    centred = pts - pts.mean(axis=0)
    if float(np.abs(centred).max(initial=0.0)) < 1e-6:
        return HeadPose(pitch=0.0, roll=0.0, yaw=0.0)
    affine = centred.T @ _CENTRED_MODEL_PINV  # 2x3: landmarks ~ affine @ model
    u, _, vt = np.linalg.svd(affine, full_matrices=False)
    top = u @ vt  # the rotation's first two rows, nearest to the affine map
    rotation = np.vstack([top, np.cross(top[0], top[1])])
    pitch = -math.asin(max(-1.0, min(1.0, float(rotation[2, 1]))))
    yaw = -math.atan2(-float(rotation[2, 0]), float(rotation[2, 2]))
    roll = math.atan2(-float(rotation[0, 1]), float(rotation[1, 1]))
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
    pose_term = max(0.0, math.cos(math.radians(pose.yaw)) * math.cos(math.radians(pose.pitch)))
    return float(confidence_term * size_term * pose_term * min(1.0, max(0.0, sharp)))
