"""Skeleton images in the DWPose style that the released Animate Anyone weights were trained to read.

The style (data/pose.png and data/dance_kps.mp4 show it): on black, each body limb is a filled ellipse 2 x 4 px thick
in its OpenPose colour, the limbs dimmed to 60 %, then each joint a 4 px disc in full colour; hand edges are 2 px
lines coloured around the hue circle with blue 4 px points; face points are 3 px white discs. DWPose draws at a
short side of 512 px and the reference pipeline resizes those images to the generation size, so we scale every
width by `min(width, height) / 512`: identical to DWPose at 512, and what the model saw at other sizes.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

from .keypoints import BODY_LIMBS, CONFIDENCE_THRESHOLD, PoseFrame, PoseSequence

# The OpenPose palette, RGB: joint i and limb i (in BODY_LIMBS order) take colour i.
BODY_COLORS = np.array(
    [
        [255, 0, 0],
        [255, 85, 0],
        [255, 170, 0],
        [255, 255, 0],
        [170, 255, 0],
        [85, 255, 0],
        [0, 255, 0],
        [0, 255, 85],
        [0, 255, 170],
        [0, 255, 255],
        [0, 170, 255],
        [0, 85, 255],
        [0, 0, 255],
        [85, 0, 255],
        [170, 0, 255],
        [255, 0, 255],
        [255, 0, 170],
        [255, 0, 85],
    ],
    dtype=np.float32,
)
# Hand edges in DWPose's order: for each finger (thumb first), wrist to knuckle, then joint to joint up to the tip.
HAND_EDGES = tuple(
    edge
    for knuckle in (1, 5, 9, 13, 17)
    for edge in ((0, knuckle), (knuckle, knuckle + 1), (knuckle + 1, knuckle + 2), (knuckle + 2, knuckle + 3))
)
HAND_EDGE_COLORS = np.array([colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0) for i in range(len(HAND_EDGES))]) * 255
HAND_POINT_COLOR = np.array([0, 0, 255], dtype=np.float32)
FACE_POINT_COLOR = np.array([255, 255, 255], dtype=np.float32)

# DWPose multiplies the limb layer by 0.6 and truncates to uint8; a lookup table gives the same bytes several times
# faster than the float multiply.
LIMB_DIMMING = (np.arange(256) * 0.6).astype(np.uint8)
DWPOSE_SHORT_SIDE = 512


def draw_pose(
    frame: PoseFrame,
    width: int | None = None,
    height: int | None = None,
    *,
    body: bool = True,
    hands: bool = True,
    face: bool = True,
    confidence_colors: bool = False,
) -> np.ndarray:
    """Draws every person of `frame` on black at `width` x `height` (default: the frame's size): (H, W, 3) uint8 RGB.

    `confidence_colors` scales each colour by the point's confidence (the limb's by the weaker end), so unsure
    points show darker.
    """
    width = width or frame.width
    height = height or frame.height
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    scale = min(width, height) / DWPOSE_SHORT_SIDE
    size = np.array([width, height], dtype=np.float32)

    if body:
        for person in frame.people:
            _draw_limbs(canvas, person.body[:, :2] * size, person.body[:, 2], scale, confidence_colors)
        canvas = cv2.LUT(canvas, LIMB_DIMMING)
        for person in frame.people:
            for joint, (x, y, confidence) in enumerate(person.body):
                if confidence > CONFIDENCE_THRESHOLD:
                    color = _shade(BODY_COLORS[joint], confidence, confidence_colors)
                    cv2.circle(canvas, _pixel(x * width, y * height), _radius(4, scale), color, thickness=-1)
    if hands:
        for person in frame.people:
            for hand in person.hands:
                _draw_hand(canvas, hand[:, :2] * size, hand[:, 2], scale, confidence_colors)
    if face:
        radius = _radius(3, scale)
        for person in frame.people:
            for x, y, confidence in person.face:
                if confidence > CONFIDENCE_THRESHOLD:
                    color = _shade(FACE_POINT_COLOR, confidence, confidence_colors)
                    cv2.circle(canvas, _pixel(x * width, y * height), radius, color, thickness=-1)
    return canvas


def overlay_pose(
    image: np.ndarray, frame: PoseFrame, *, body: bool = True, hands: bool = True, face: bool = True
) -> np.ndarray:
    """Draws the skeleton over an RGB uint8 image (e.g. the character), which is dimmed so the colours stand out."""
    height, width = image.shape[:2]
    skeleton = draw_pose(frame, width, height, body=body, hands=hands, face=face)
    drawn = skeleton.max(axis=2, keepdims=True) > 0
    return np.where(drawn, skeleton, (image * 0.5).astype(np.uint8))


class SkeletonFrames(Sequence):
    """The skeleton images of a pose sequence, drawn on demand, so a long clip never holds them all in memory.

    `len()` is the number of frames and `frames[i]` is an (height, width, 3) uint8 RGB image.
    """

    def __init__(
        self,
        sequence: PoseSequence,
        width: int,
        height: int,
        *,
        body: bool = True,
        hands: bool = True,
        face: bool = True,
    ):
        self.sequence = sequence
        self.width = width
        self.height = height
        self.parts = {"body": body, "hands": hands, "face": face}

    def __len__(self) -> int:
        return len(self.sequence.frames)

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return draw_pose(self.sequence.frames[index], self.width, self.height, **self.parts)


def _draw_limbs(canvas: np.ndarray, points: np.ndarray, confidence: np.ndarray, scale: float, shaded: bool) -> None:
    thickness = _radius(4, scale)
    for limb, (start, end) in enumerate(BODY_LIMBS):
        weakest = min(confidence[start], confidence[end])
        if weakest <= CONFIDENCE_THRESHOLD:
            continue
        (x0, y0), (x1, y1) = points[start], points[end]
        length = float(np.hypot(x1 - x0, y1 - y0))
        angle = int(np.degrees(np.arctan2(y0 - y1, x0 - x1)))
        center = (int((x0 + x1) / 2), int((y0 + y1) / 2))
        polygon = cv2.ellipse2Poly(center, (int(length / 2), thickness), angle, 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, _shade(BODY_COLORS[limb], weakest, shaded))


def _draw_hand(canvas: np.ndarray, points: np.ndarray, confidence: np.ndarray, scale: float, shaded: bool) -> None:
    seen = confidence > CONFIDENCE_THRESHOLD
    for edge, (start, end) in enumerate(HAND_EDGES):
        if seen[start] and seen[end]:
            color = _shade(HAND_EDGE_COLORS[edge], min(confidence[start], confidence[end]), shaded)
            cv2.line(canvas, _pixel(*points[start]), _pixel(*points[end]), color, thickness=_radius(2, scale))
    radius = _radius(4, scale)
    for (x, y), confidence_of_point, is_seen in zip(points, confidence, seen, strict=True):
        if is_seen:
            cv2.circle(canvas, _pixel(x, y), radius, _shade(HAND_POINT_COLOR, confidence_of_point, shaded), -1)


def _shade(color: np.ndarray, confidence: float, shaded: bool) -> tuple[int, int, int]:
    if shaded:
        color = color * min(1.0, float(confidence))
    return tuple(round(float(channel)) for channel in color)  # round half to even, as OpenCV converts colours


def _pixel(x: float, y: float) -> tuple[int, int]:
    return int(x), int(y)


def _radius(pixels_at_512: int, scale: float) -> int:
    return max(1, round(pixels_at_512 * scale))
