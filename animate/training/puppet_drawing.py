"""How a posed puppet is drawn: its figure (the 18 OpenPose body points and the few points only drawing needs),
the body's parts as filled and outlined polygons back to front, its clothing patterns, and the backgrounds.

`animate.training.puppets` decides what a character looks like and how it moves; this module turns one frame's
`Figure` into pixels and a mask.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from pose.keypoints import (
    L_ANKLE,
    L_ELBOW,
    L_EYE,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    NECK,
    NUM_BODY,
    R_ANKLE,
    R_ELBOW,
    R_EYE,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
)

if TYPE_CHECKING:
    from animate.training.puppets import Puppet

# A figure's points: the 18 OpenPose body points, then points only the drawing needs.
HEAD, R_TOE, L_TOE, R_HAND, L_HAND, MOUTH, HAIR = range(NUM_BODY, NUM_BODY + 7)
NUM_POINTS = NUM_BODY + 7
# side (x of the person's side when facing the camera: their right is on the image's left), then its joints
SIDES = (
    (-1.0, R_SHOULDER, R_ELBOW, R_WRIST, R_HAND, R_HIP, R_KNEE, R_ANKLE, R_TOE),
    (1.0, L_SHOULDER, L_ELBOW, L_WRIST, L_HAND, L_HIP, L_KNEE, L_ANKLE, L_TOE),
)
HAIR_ANCHORS = {"long": (0.0, 0.75, -0.55), "bun": (0.0, -0.85, -0.5)}  # the centre of long hair, of a bun

CAMERA_MARGIN = 0.04  # of the longer side: the background is drawn this much larger so the camera can drift
SHIFT = 4  # OpenCV draws at 1/16 pixel precision
CIRCLE = np.stack([np.cos(np.arange(24) * np.pi / 12), np.sin(np.arange(24) * np.pi / 12)], 1)
HALF_CIRCLE = CIRCLE[np.arange(-6, 7) % 24]  # from -90 to 90 degrees


@dataclass
class Figure:
    """One frame's posed body, ready to draw."""

    points: np.ndarray  # (NUM_POINTS, 2) pixels
    depth: np.ndarray  # (NUM_POINTS,) toward the camera, in body heights: nearer parts are drawn later
    present: np.ndarray  # (NUM_POINTS,) bool: the point exists (a given pose may lack some)
    visible: np.ndarray  # (NUM_POINTS,) bool: a detector would see it (inside the frame, not turned away)
    facing: float  # 1: facing the camera, 0: side view, -1: back to it
    head_turn: float  # where the face points on screen: -1 to the image's left, 1 to its right
    head_angle: float  # the head's tilt on screen, radians
    scale: float  # pixels per body height


class _Paint(NamedTuple):
    color: tuple[int, int, int]
    outline: tuple[int, int, int]
    tile: np.ndarray | None = None  # a pattern's period, wrapped over the part
    tile_period: float = 1.0  # the period's size on screen, pixels


def _paint(color: tuple[int, int, int], tile: np.ndarray | None = None, tile_period: float = 1.0) -> _Paint:
    return _Paint(color, tuple(c // 2 for c in color), tile, tile_period)


def render_figure(
    puppet: Puppet, figure: Figure, background: np.ndarray, camera: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """The frame (height, width, 3) uint8 and the character's mask (height, width) bool. `camera`: the camera's
    offset in pixels, which moves the background (drawn with a margin) as much as it moves the figure."""
    margin = (background.shape[1] - width) / 2, (background.shape[0] - height) / 2
    shift = np.array([[1.0, 0.0, margin[0] + camera[0]], [0.0, 1.0, margin[1] + camera[1]]])
    canvas = cv2.warpAffine(background, shift, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    coverage = np.zeros((height, width), np.uint8)
    _draw_shadow(canvas, puppet, figure)
    _draw_figure(canvas, coverage, puppet, figure)
    return canvas, coverage > 127


def _draw_figure(canvas: np.ndarray, coverage: np.ndarray, puppet: Puppet, figure: Figure) -> None:
    """Draws the body's parts back to front; parts at the same depth keep the order they are listed in."""
    body, scale, points, depth, present = puppet.body, figure.scale, figure.points, figure.depth, figure.present
    line = max(1, round(scale * 0.004))
    skin, hair, shoes = _paint(puppet.skin), _paint(puppet.hair), _paint(puppet.shoes)
    top, bottom = (_paint(g.color, g.tile, g.period * scale) for g in (puppet.top, puppet.bottom))
    parts: list[tuple[float, Callable[[], None]]] = []

    def limb(start: int, end: int, radii: tuple[float, float], paint: _Paint, bias: float, length: float = 1.0):
        if present[start] and present[end]:
            tip = points[start] + (points[end] - points[start]) * length
            polygon = _capsule(points[start], tip, radii[0] * scale, radii[1] * scale)
            draw = partial(_fill, canvas, coverage, polygon, paint, points[start], tip - points[start], line)
            parts.append(((depth[start] + depth[end]) / 2 + bias, draw))

    legs = bottom if puppet.bottom_style == "trousers" else skin
    arms = top if puppet.top_style == "longsleeve" else skin
    thighs = []
    for _, shoulder, elbow, wrist, hand, hip, knee, ankle, toe in SIDES:
        limb(hip, knee, (body.thigh_radius, body.shin_radius * 1.1), legs, 0.0)
        if puppet.bottom_style == "shorts":
            limb(hip, knee, (body.thigh_radius * 1.1, body.thigh_radius * 1.05), bottom, 0.001, length=0.55)
        limb(knee, ankle, (body.shin_radius, body.shin_radius * 0.8), legs, 0.0)
        limb(ankle, toe, (body.shin_radius * 0.9, body.shin_radius * 0.8), shoes, 0.002)
        thighs.append((depth[hip] + depth[knee]) / 2)
        # Arms sit a little in front of the torso, so an arm hanging at the side is not hidden by it.
        limb(shoulder, elbow, (body.arm_radius, body.forearm_radius * 1.05), arms, 0.02)
        if puppet.top_style == "tshirt":
            limb(shoulder, elbow, (body.arm_radius * 1.15, body.arm_radius * 1.1), top, 0.021, length=0.55)
        limb(elbow, wrist, (body.forearm_radius, body.forearm_radius * 0.8), arms, 0.02)
        limb(wrist, hand, (body.forearm_radius * 0.8, body.forearm_radius * 1.05), skin, 0.021)

    if present[[NECK, R_HIP, L_HIP]].all():
        neck, hips = points[NECK], (points[R_HIP] + points[L_HIP]) / 2
        spine = hips - neck
        across = np.array([spine[1], -spine[0]]) / max(np.linalg.norm(spine), 1e-6)  # toward the image's right
        # Half widths as seen: the front width shrinks as the body turns, down to the body's depth.
        shoulders = body.shoulder_width * scale
        if present[R_SHOULDER] and present[L_SHOULDER]:
            shoulders = abs(np.dot(points[L_SHOULDER] - points[R_SHOULDER], across)) / 2
        front = min(1.0, shoulders / (body.shoulder_width * scale))
        side = body.torso_depth * scale * (1 - front**2) ** 0.5
        shoulders = math.hypot(shoulders, side)
        waist = math.hypot(body.waist_width * scale * front, side)
        pelvis_half = math.hypot((body.hip_width + body.thigh_radius * 0.8) * scale * front, side)
        belt = (waist + pelvis_half) / 2
        # (fraction of the spine, half width) from the shoulders down: the shirt, and the trousers' top to the crotch
        torso = _band(neck, spine, across, [(0.0, shoulders), (0.6, waist), (0.85, belt)])
        crotch = 1 + body.thigh_radius * scale / np.linalg.norm(spine)
        pelvis = _band(neck, spine, across, [(0.7, waist), (1.0, pelvis_half), (crotch, pelvis_half * 0.5)])
        middle = (depth[NECK] + depth[R_HIP] + depth[L_HIP]) / 3
        parts.append((middle - 0.001, partial(_fill, canvas, coverage, pelvis, bottom, neck, spine, line)))
        parts.append((middle, partial(_fill, canvas, coverage, torso, top, neck, spine, line)))
        limb(R_SHOULDER, L_SHOULDER, (body.arm_radius * 1.05, body.arm_radius * 1.05), top, 0.0005)
        legs_present = present[[R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE]].all()
        if puppet.bottom_style == "skirt" and legs_present:
            # From the waist to a hem that follows the legs, flared out beyond them; in front of legs and pelvis.
            hem_distance = puppet.skirt_length * (body.thigh + body.shin) * scale
            outline = [torso[2], torso[3]]  # from where the shirt ends
            for leg in ((R_HIP, R_KNEE, R_ANKLE), (L_HIP, L_KNEE, L_ANKLE)):
                hem = _along(points[list(leg)], hem_distance)
                outline.append(hem + np.sign(np.dot(hem - hips, across)) * across * body.thigh_radius * scale * 1.6)
            skirt = cv2.convexHull(np.array(outline, np.float32))[:, 0].astype(np.float64)
            parts.append(
                (max(*thighs, middle) + 0.01, partial(_fill, canvas, coverage, skirt, bottom, neck, spine, line))
            )
    limb(NECK, HEAD, (body.head_radius * 0.38, body.head_radius * 0.38), skin, -0.002)
    if present[HEAD]:
        parts.append((depth[HEAD] + 0.05, partial(_draw_head, canvas, coverage, puppet, figure, skin, hair, line)))
        if puppet.hair_style in HAIR_ANCHORS:
            rx = body.head_radius * body.head_aspect * scale
            if puppet.hair_style == "long":
                shape = _ellipse(points[HAIR], rx * 1.25, body.head_radius * scale * 1.55, figure.head_angle)
            else:
                shape = _ellipse(points[HAIR], rx * 0.5, rx * 0.5, 0.0)
            parts.append((depth[HAIR], partial(_fill, canvas, coverage, shape, hair, points[HAIR], (0, 1), line)))

    for _, draw in sorted(parts, key=lambda part: part[0]):
        draw()


def _draw_head(canvas, coverage, puppet: Puppet, figure: Figure, skin: _Paint, hair: _Paint, line: int) -> None:
    rx, ry = np.array([puppet.body.head_aspect, 1.0]) * puppet.body.head_radius * figure.scale
    center, angle = figure.points[HEAD], figure.head_angle
    _fill(canvas, coverage, _ellipse(center, rx, ry, angle), skin, center, (0, 1), line)
    if figure.facing > 0.2:
        across = np.array([np.cos(angle), np.sin(angle)]) * rx * 0.18
        mouth = _fixed([figure.points[MOUTH] - across, figure.points[MOUTH] + across])
        cv2.polylines(canvas, [mouth], False, tuple(int(c * 0.55) for c in puppet.skin), line, cv2.LINE_AA, SHIFT)
    for eye in (R_EYE, L_EYE):
        if figure.visible[eye]:
            x, y = _fixed(figure.points[eye]).tolist()
            cv2.circle(canvas, (x, y), int(max(0.8, 0.16 * rx) * (1 << SHIFT)), puppet.eyes, -1, cv2.LINE_AA, SHIFT)
    if puppet.hair_style != "bald":
        # A cap over the crown, down to the forehead on the face's side and down the back of the head as it turns;
        # seen from behind, it covers the whole head. The ends are in degrees below the horizontal.
        behind = 180 * max(0.0, -figure.facing)
        face_end = -15 - 10 * abs(figure.head_turn) + behind
        back_end = -15 + 85 * abs(figure.head_turn) + behind
        right_end, left_end = (face_end, back_end) if figure.head_turn > 0 else (back_end, face_end)
        if right_end + left_end >= 180:
            arc = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        else:
            arc = np.radians(np.linspace(180 - left_end, 360 + right_end, 17))
        cap = np.stack([np.cos(arc) * rx, np.sin(arc) * ry - ry * 0.05], 1) * 1.1 @ _rotation_2d(angle).T + center
        _fill(canvas, coverage, cap, hair, center, (0, 1), line)


def _draw_shadow(canvas: np.ndarray, puppet: Puppet, figure: Figure) -> None:
    """A soft dark ellipse on the floor under the feet (not part of the character's mask)."""
    if not figure.present[[R_ANKLE, L_ANKLE]].all():
        return
    feet = figure.points[[R_ANKLE, L_ANKLE, R_TOE, L_TOE]]
    half_width = (feet[:, 0].max() - feet[:, 0].min()) / 2 + puppet.body.hip_width * figure.scale * 1.5
    center = (feet[:, 0].mean(), feet[:, 1].max() + puppet.body.shin_radius * figure.scale * 0.5)
    x0, y0 = max(0, int(center[0] - half_width)), max(0, int(center[1] - half_width * 0.3))
    x1 = min(canvas.shape[1], int(center[0] + half_width) + 2)
    y1 = min(canvas.shape[0], int(center[1] + half_width * 0.3) + 2)
    if x1 > x0 and y1 > y0:
        light = np.full((y1 - y0, x1 - x0), 255, np.uint8)
        ellipse = _ellipse(np.subtract(center, (x0, y0)), half_width, half_width * 0.22, 0.0)
        cv2.fillPoly(light, [_fixed(ellipse)], 165, cv2.LINE_AA, SHIFT)
        canvas[y0:y1, x0:x1] = cv2.multiply(
            canvas[y0:y1, x0:x1], cv2.cvtColor(light, cv2.COLOR_GRAY2RGB), scale=1 / 255
        )


def _fill(canvas, coverage, polygon, paint: _Paint, origin, direction, line: int) -> None:
    """Fills `polygon` with `paint` (a pattern laid along `direction` from `origin`) and outlines it."""
    fixed = _fixed(polygon)
    if paint.tile is None:
        cv2.fillPoly(canvas, [fixed], paint.color, cv2.LINE_AA, SHIFT)
    else:
        x, y, w, h = cv2.boundingRect(fixed)
        x0, y0 = max(0, x >> SHIFT), max(0, y >> SHIFT)
        x1, y1 = min(canvas.shape[1], ((x + w) >> SHIFT) + 2), min(canvas.shape[0], ((y + h) >> SHIFT) + 2)
        if x1 > x0 and y1 > y0:
            # The tile coordinates of each pixel of the box: u along `direction`, v across it.
            norm = math.hypot(*direction) or 1.0
            ux, uy = direction[0] / norm * 16 / paint.tile_period, direction[1] / norm * 16 / paint.tile_period
            ox, oy = origin[0] - x0, origin[1] - y0
            matrix = np.array([[ux, uy, -(ux * ox + uy * oy)], [-uy, ux, uy * ox - ux * oy]])
            texture = cv2.warpAffine(
                paint.tile,
                matrix,
                (x1 - x0, y1 - y0),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_WRAP,
            )
            # A hard-edged fill is enough: the anti-aliased outline drawn next covers the edge.
            inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillPoly(inside, [fixed], 255, cv2.LINE_8, SHIFT, offset=(-x0 << SHIFT, -y0 << SHIFT))
            cv2.copyTo(texture, inside, canvas[y0:y1, x0:x1])
    cv2.fillPoly(coverage, [fixed], 255, cv2.LINE_AA, SHIFT)
    cv2.polylines(canvas, [fixed], True, paint.outline, line, cv2.LINE_AA, SHIFT)


def _band(top: np.ndarray, spine: np.ndarray, across: np.ndarray, levels: list[tuple[float, float]]) -> np.ndarray:
    """A polygon symmetric about the spine, through (fraction of `spine` from `top`, half width) levels."""
    right = [top + spine * fraction + across * half for fraction, half in levels]
    return np.array(right + [top + spine * fraction - across * half for fraction, half in reversed(levels)])


def _along(polyline: np.ndarray, distance: float) -> np.ndarray:
    """The point `distance` pixels along a polyline, or its end."""
    for start, end in zip(polyline[:-1], polyline[1:], strict=True):
        length = np.linalg.norm(end - start)
        if distance <= length:
            return start + (end - start) * distance / max(length, 1e-6)
        distance -= length
    return polyline[-1]


def _capsule(start: np.ndarray, end: np.ndarray, start_radius: float, end_radius: float) -> np.ndarray:
    """A tapered capsule's outline (26, 2): a half circle round each end, joined by straight sides."""
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = math.hypot(dx, dy)
    cos, sin = (dx / length, dy / length) if length > 1e-6 else (0.0, 1.0)
    ring = HALF_CIRCLE @ np.array([[cos, sin], [-sin, cos]])  # the end's half circle, turned to the limb
    return np.concatenate([end + end_radius * ring, start - start_radius * ring])


def _ellipse(center: np.ndarray, rx: float, ry: float, angle: float) -> np.ndarray:
    return CIRCLE * (rx, ry) @ _rotation_2d(angle).T + center


def _rotation_2d(angle: float) -> np.ndarray:
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def _fixed(points) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << SHIFT)).astype(np.int32)


def random_color(rng: np.random.Generator, *, saturation: tuple[float, float], value: tuple[float, float]):
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
    return tuple(round(c * 255) for c in rgb)


def draw_background(style: str, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A background of `style` (see puppets.BACKGROUNDS) drawn from `rng`, larger than the frame by CAMERA_MARGIN on
    every side."""
    margin = math.ceil(CAMERA_MARGIN * max(width, height))
    full_size = width + 2 * margin, height + 2 * margin
    width, height = (full_size[0] + 1) // 2, (full_size[1] + 1) // 2  # drawn at half size: it is smooth, and 4x faster
    x, y = np.meshgrid(np.linspace(0, 1, width, dtype=np.float32), np.linspace(0, 1, height, dtype=np.float32))
    a, b = (np.array(random_color(rng, saturation=(0.1, 0.7), value=(0.3, 0.95)), np.float32) for _ in range(2))
    if style == "gradient":
        direction = rng.uniform(0, 2 * np.pi)
        t = x * np.cos(direction) + y * np.sin(direction)
        image = _mix(a, b, (t - t.min()) / max(t.max() - t.min(), 1e-6))
    elif style == "blobs":  # soft patches of colour
        grid = rng.uniform(0, 1, (int(rng.integers(2, 5)), int(rng.integers(2, 5)), 3)).astype(np.float32)
        image = a + (b - a) * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    elif style == "room":  # striped wallpaper, a planked floor, windows, doors and pictures
        horizon = rng.uniform(0.5, 0.75)
        floor = np.array(random_color(rng, saturation=(0.1, 0.6), value=(0.2, 0.7)), np.float32)
        wall = a + (b - a) * 0.15 * (np.sin(x * 2 * np.pi * rng.integers(4, 14)) > 0)[..., None]
        planks = 1 - 0.12 * (np.sin(y * 2 * np.pi * rng.integers(10, 30) / (1 + y)) > 0.8)
        image = np.where((y < horizon)[..., None], wall, floor * (planks * (0.85 + 0.3 * y))[..., None])
        for _ in range(int(rng.integers(0, 3))):
            x0, y0 = rng.uniform(0, 0.85), rng.uniform(0.05, horizon - 0.15)
            x1, y1 = x0 + rng.uniform(0.1, 0.3), min(horizon, y0 + rng.uniform(0.1, 0.4))
            image[(x > x0) & (x < x1) & (y > y0) & (y < y1)] = random_color(rng, saturation=(0, 0.8), value=(0.2, 1))
    else:  # outdoor: sky, perhaps a sun or moon, hills or houses on the horizon, the ground
        horizon = rng.uniform(0.45, 0.72)
        image = _mix(a, a * 0.5 + 127, y / horizon)
        if rng.random() < 0.5:
            sun = np.hypot((x - rng.uniform(0.1, 0.9)) * width / height, y - rng.uniform(0.05, 0.3))
            image[sun < rng.uniform(0.04, 0.09)] = (250, 240, rng.uniform(150, 240))
        houses = rng.random() < 0.5
        for _ in range(int(rng.integers(1, 6))):
            center, size = rng.uniform(-0.1, 1.1), rng.uniform(0.1, 0.4)
            if houses:
                shape = (np.abs(x - center) < size / 2) & (y > horizon - rng.uniform(0.1, 0.3)) & (y < horizon)
            else:
                shape = ((x - center) / size) ** 2 + ((y - horizon) / rng.uniform(0.05, 0.2)) ** 2 < 1
            image[shape] = random_color(rng, saturation=(0.2, 0.6), value=(0.2, 0.7))
        image = np.where((y < horizon)[..., None], image, b * (0.8 + 0.4 * (y - horizon))[..., None])
    grain = rng.normal(0, 5, (height, width, 1)).astype(np.float32)
    return cv2.resize((image + grain).clip(0, 255).astype(np.uint8), full_size)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * np.clip(t, 0, 1)[..., None]
