"""Skeleton images in the DWPose style that the released Animate Anyone weights were trained to read.

The style (data/pose.png and data/dance_kps.mp4 show it): on black, each body limb is a filled ellipse 2 x 4 px thick
in its OpenPose colour, the limbs dimmed to 60 %, then each joint a 4 px disc in full colour; hand edges are 2 px
lines coloured around the hue circle with blue 4 px points; face points are 3 px white discs. DWPose draws at a
short side of 512 px and the reference pipeline resizes those images to the generation size, so we scale every
width by `min(width, height) / 512`: identical to DWPose at 512, and what the model saw at other sizes.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import cv2
import numpy as np

from .keypoints import BODY_LIMBS, CONFIDENCE_THRESHOLD, PoseFrame, PoseSequence

# The OpenPose palette, RGB: joint i and limb i (in BODY_LIMBS order) take colour i.
BODY_COLORS = (
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
)
# Hand edges in DWPose's order: for each finger (thumb first), wrist to knuckle, then joint to joint up to the tip.
HAND_EDGES = tuple(
    edge
    for knuckle in (1, 5, 9, 13, 17)
    for edge in ((0, knuckle), (knuckle, knuckle + 1), (knuckle + 1, knuckle + 2), (knuckle + 2, knuckle + 3))
)
# Edge i takes hue i / 20 at full saturation and value; OpenCV rounds DWPose's float colours half to even, as
# Python's round() does.
HAND_EDGE_COLORS = tuple(
    tuple(round(channel * 255) for channel in colorsys.hsv_to_rgb(edge / len(HAND_EDGES), 1.0, 1.0))
    for edge in range(len(HAND_EDGES))
)
HAND_POINT_COLOR = (0, 0, 255)
FACE_POINT_COLOR = (255, 255, 255)
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
    to_pixels = np.array([width, height, 1], dtype=np.float32)
    shaded = confidence_colors

    if body:
        # Every limb first, then every joint on top, as DWPose layers them.
        for person in frame.people:
            _draw_limbs(canvas, (person.body * to_pixels).tolist(), _radius(4, scale), shaded)
        for person in frame.people:
            _draw_points(canvas, (person.body * to_pixels).tolist(), BODY_COLORS, _radius(4, scale), shaded)
    if hands:
        for person in frame.people:
            for hand in person.hands:
                _draw_hand(canvas, (hand * to_pixels).tolist(), scale, shaded)
    if face:
        for person in frame.people:
            colors = (FACE_POINT_COLOR,) * len(person.face)
            _draw_points(canvas, (person.face * to_pixels).tolist(), colors, _radius(3, scale), shaded)
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


Point = list[float]  # x and y in pixels, confidence


def _draw_limbs(canvas: np.ndarray, points: list[Point], thickness: int, shaded: bool) -> None:
    """DWPose fills each limb's ellipse, then multiplies the whole layer by 0.6, truncating; limbs come first on
    the black canvas, so filling them in the dimmed colour gives the same pixels without touching the rest."""
    for limb, (start, end) in enumerate(BODY_LIMBS):
        (x0, y0, confidence0), (x1, y1, confidence1) = points[start], points[end]
        weakest = min(confidence0, confidence1)
        if weakest <= CONFIDENCE_THRESHOLD:
            continue
        length = math.hypot(x1 - x0, y1 - y0)
        angle = int(math.degrees(math.atan2(y0 - y1, x0 - x1)))
        center = (int((x0 + x1) / 2), int((y0 + y1) / 2))
        polygon = cv2.ellipse2Poly(center, (int(length / 2), thickness), angle, 0, 360, 1)
        dimmed = tuple(channel * 3 // 5 for channel in _shade(BODY_COLORS[limb], weakest, shaded))
        cv2.fillConvexPoly(canvas, polygon, dimmed)


def _draw_points(
    canvas: np.ndarray, points: list[Point], colors: tuple[tuple[int, int, int], ...], radius: int, shaded: bool
) -> None:
    for (x, y, confidence), color in zip(points, colors, strict=True):
        if confidence > CONFIDENCE_THRESHOLD:
            cv2.circle(canvas, (int(x), int(y)), radius, _shade(color, confidence, shaded), thickness=-1)


def _draw_hand(canvas: np.ndarray, points: list[Point], scale: float, shaded: bool) -> None:
    for edge, (start, end) in enumerate(HAND_EDGES):
        (x0, y0, confidence0), (x1, y1, confidence1) = points[start], points[end]
        weakest = min(confidence0, confidence1)
        if weakest > CONFIDENCE_THRESHOLD:
            color = _shade(HAND_EDGE_COLORS[edge], weakest, shaded)
            cv2.line(canvas, (int(x0), int(y0)), (int(x1), int(y1)), color, thickness=_radius(2, scale))
    _draw_points(canvas, points, (HAND_POINT_COLOR,) * len(points), _radius(4, scale), shaded)


def _shade(color: tuple[int, int, int], confidence: float, shaded: bool) -> tuple[int, int, int]:
    if not shaded:
        return color
    return tuple(round(channel * min(1.0, confidence)) for channel in color)


def _radius(pixels_at_512: int, scale: float) -> int:
    return max(1, round(pixels_at_512 * scale))
