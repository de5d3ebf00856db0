"""Procedurally generated training data: cartoon "puppet" characters that dance, with exact skeletons and masks.

A clip is a pure function of two seeds. The character seed fixes everything a reference image shows (body
proportions, skin, clothes and their patterns, hair, the background); the motion seed fixes how the character moves
(joint angles as sums of a few sinusoids on a shared beat, turns, placement in the frame, camera drift). Each seed
feeds its own random stream, so character 7 and motion 7 have nothing in common.

Splits: seeds in `puppet_seeds("train")` (0 to 2**31 - 1) are for training and seeds in `puppet_seeds("heldout")`
(2**31 to 2**32 - 1) are never trained on; a held-out clip takes a held-out character *and* a held-out motion, so
evaluation sees unseen characters doing unseen moves.

The body is posed in 3-D (forward kinematics from joint angles, a turn about the vertical axis, orthographic
projection), so side and back views, foreshortened limbs and which part hides which come out right. It is drawn in
2-D, back to front: limbs as tapered capsules, torso, skirt and head as polygons, each with a dark outline that shows
the joints, clothing patterns laid along each part so they move with it. The skeleton is drawn by `pose.draw_pose`
from the projected joints (body only: puppets have no fingers or face landmarks), so it lies exactly on the body.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import NamedTuple

import cv2
import numpy as np

from pose.draw import draw_pose
from pose.keypoints import (
    CONFIDENCE_THRESHOLD,
    L_ANKLE,
    L_EAR,
    L_ELBOW,
    L_EYE,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    NECK,
    NOSE,
    NUM_BODY,
    NUM_FACE,
    NUM_HAND,
    R_ANKLE,
    R_EAR,
    R_ELBOW,
    R_EYE,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
    Person,
    PoseFrame,
    PoseSequence,
)

PUPPET_FPS = 24.0
SPLITS = {"train": range(0, 2**31), "heldout": range(2**31, 2**32)}
APPEARANCE_STREAM, MOTION_STREAM, BACKGROUND_STREAM = 1, 2, 3  # the random streams a seed feeds

# A figure's points: the 18 OpenPose body points, then points only the drawing needs.
HEAD, R_TOE, L_TOE, R_HAND, L_HAND, MOUTH, HAIR = range(NUM_BODY, NUM_BODY + 7)
NUM_POINTS = NUM_BODY + 7
# side (x of the person's side when facing the camera: their right is on the image's left), then its joints
SIDES = (
    (-1.0, R_SHOULDER, R_ELBOW, R_WRIST, R_HAND, R_HIP, R_KNEE, R_ANKLE, R_TOE),
    (1.0, L_SHOULDER, L_ELBOW, L_WRIST, L_HAND, L_HIP, L_KNEE, L_ANKLE, L_TOE),
)
# Points on the head ellipsoid in units of its semi-axes (x: the image's right when facing the camera, y down,
# z forward), and how far their surface may turn away (the normal's z) before a detector stops seeing them.
FACE_POINTS = {
    NOSE: ((0.0, 0.15, 0.98), -0.05),
    R_EYE: ((-0.38, -0.1, 0.9), 0.05),
    L_EYE: ((0.38, -0.1, 0.9), 0.05),
    R_EAR: ((-0.98, 0.05, 0.0), -0.35),
    L_EAR: ((0.98, 0.05, 0.0), -0.35),
    MOUTH: ((0.0, 0.5, 0.82), 0.2),
}
HAIR_ANCHORS = {"long": (0.0, 0.75, -0.55), "bun": (0.0, -0.85, -0.5)}  # the centre of long hair, of a bun

SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 96], [160, 100, 70], [120, 72, 48], [88, 54, 36]]
)
HAIR_COLORS = ((20, 16, 14), (60, 40, 28), (110, 70, 40), (200, 160, 90), (150, 60, 30), (170, 170, 170))
PATTERNS = ("solid", "stripes", "checks", "dots")
HAIR_STYLES = ("bald", "short", "long", "bun")
TOP_STYLES = ("tank", "tshirt", "longsleeve")
BOTTOM_STYLES = ("trousers", "shorts", "skirt")
BACKGROUNDS = ("gradient", "blobs", "room", "outdoor")

# Motion channels: name -> (low, high, rest, gain). A channel's value is low + (high - low) * sigmoid(raw), where raw
# is a random offset around `rest` plus sinusoids of amplitude up to `gain`: the sigmoid keeps every joint within its
# range however the waves add up. Angles in degrees, sway in body heights, zoom as a log scale, camera in frame sizes.
LIMB_CHANNELS = {
    "arm_raise": (-15.0, 175.0, -1.0, 1.6),  # sideways; 0: hanging
    "arm_forward": (-45.0, 100.0, -0.6, 1.2),
    "elbow": (0.0, 150.0, -0.5, 1.4),
    "elbow_twist": (0.0, 90.0, 0.0, 1.0),  # the forearm folds forward (0) or up toward the head (90)
    "leg_raise": (-10.0, 45.0, -1.2, 0.9),
    "leg_forward": (-30.0, 80.0, -1.0, 0.9),
    "knee": (0.0, 110.0, -1.5, 1.0),
}
CHANNELS = {
    "turn": (-200.0, 200.0, 0.0, 0.0),  # its waves depend on the motion's style, see Motion.random
    "lean": (-15.0, 15.0, 0.0, 0.6),
    "bend": (-10.0, 30.0, -0.5, 0.5),
    "head_roll": (-20.0, 20.0, 0.0, 0.6),
    "head_turn": (-40.0, 40.0, 0.0, 0.7),
    **{f"{side}_{name}": limits for side in ("right", "left") for name, limits in LIMB_CHANNELS.items()},
    "sway": (-0.15, 0.15, 0.0, 0.8),
    "zoom": (-0.08, 0.08, 0.0, 0.5),
    "camera_x": (-0.03, 0.03, 0.0, 0.7),
    "camera_y": (-0.02, 0.02, 0.0, 0.5),
}
MIRRORED = (("arm_raise", "arm_forward", "elbow", "elbow_twist"), ("leg_raise", "leg_forward", "knee"))
NUM_WAVES = 3
CAMERA_MARGIN = 0.04  # of the longer side: the background is drawn this much larger so the camera can drift
SHIFT = 4  # OpenCV draws at 1/16 pixel precision
CIRCLE = np.stack([np.cos(np.arange(24) * np.pi / 12), np.sin(np.arange(24) * np.pi / 12)], 1)
HALF_CIRCLE = CIRCLE[np.arange(-6, 7) % 24]  # from -90 to 90 degrees


def puppet_seeds(split: str) -> range:
    """The character and motion seeds of a split, "train" or "heldout" (disjoint ranges)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return SPLITS[split]


@dataclass(frozen=True)
class Garment:
    color: tuple[int, int, int]
    pattern: str  # one of PATTERNS
    second_color: tuple[int, int, int]
    period: float  # the pattern's repeat, in body heights
    angle: float  # the pattern's turn on the part: 0 (stripes across a limb), 45 or 90 degrees

    @classmethod
    def random(cls, rng: np.random.Generator) -> Garment:
        color = _random_color(rng, saturation=(0.2, 1.0), value=(0.25, 0.95))
        if rng.random() < 0.5:
            second = (245, 245, 240) if sum(color) < 380 else (25, 25, 30)
        else:
            second = _random_color(rng, saturation=(0.2, 1.0), value=(0.2, 1.0))
        return cls(
            color=color,
            pattern=str(rng.choice(PATTERNS, p=[0.4, 0.25, 0.15, 0.2])),
            second_color=second,
            period=float(rng.uniform(0.03, 0.08)),
            angle=float(rng.choice([0, 0, 45, 90])),
        )

    @cached_property
    def tile(self) -> np.ndarray | None:
        """One period of the pattern, 16 x 16 RGB, wrapped over a part; None when solid."""
        if self.pattern == "solid":
            return None
        u, v = np.meshgrid(np.arange(16) + 0.5, np.arange(16) + 0.5)  # u along the part, v across
        if self.pattern == "stripes":
            second = np.clip(4.5 - np.abs(u - 8), 0, 1)  # a band of half the period, soft 1-texel edges
        elif self.pattern == "checks":
            second = ((u < 8) ^ (v < 8)).astype(np.float64)
        else:
            second = np.clip(4.5 - np.hypot(u - 8, v - 8), 0, 1)
        if self.angle == 90:
            second = second.T
        elif self.angle == 45:  # shear each row by one texel: still tiles
            second = second[np.arange(16)[:, None], (np.arange(16) + np.arange(16)[:, None]) % 16]
        color = np.array(self.color) + (np.array(self.second_color) - np.array(self.color)) * second[..., None]
        return color.round().astype(np.uint8)


@dataclass(frozen=True)
class Body:
    """Lengths and radii in body heights: a standing puppet measures about 1 from sole to crown."""

    head_radius: float  # the vertical semi-axis
    head_aspect: float  # width / height
    neck: float  # shoulder line (the OpenPose neck point) to the head's centre
    torso: float  # shoulder line to hip line
    shoulder_width: float  # half widths from here on
    waist_width: float
    hip_width: float  # to the hip joints
    torso_depth: float  # what a side view shows
    upper_arm: float
    forearm: float
    hand: float
    thigh: float
    shin: float
    foot: float
    arm_radius: float
    forearm_radius: float
    thigh_radius: float
    shin_radius: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> Body:
        build = rng.uniform(0.75, 1.35)  # slim to stocky: scales the widths
        head = rng.uniform(0.055, 0.09)
        shoulders = rng.uniform(0.075, 0.12)
        return cls(
            head_radius=head,
            head_aspect=rng.uniform(0.8, 1.05),
            neck=head * rng.uniform(1.3, 1.6),
            torso=rng.uniform(0.26, 0.33),
            shoulder_width=shoulders * build**0.5,
            waist_width=shoulders * rng.uniform(0.55, 0.95) * build,
            hip_width=rng.uniform(0.045, 0.075) * build,
            torso_depth=rng.uniform(0.05, 0.075) * build,
            upper_arm=rng.uniform(0.15, 0.19),
            forearm=rng.uniform(0.13, 0.16),
            hand=rng.uniform(0.045, 0.065),
            thigh=rng.uniform(0.21, 0.26),
            shin=rng.uniform(0.2, 0.25),
            foot=rng.uniform(0.06, 0.08),
            arm_radius=rng.uniform(0.021, 0.03) * build,
            forearm_radius=rng.uniform(0.017, 0.024) * build,
            thigh_radius=rng.uniform(0.033, 0.045) * build,
            shin_radius=rng.uniform(0.023, 0.032) * build,
        )

    @property
    def height(self) -> float:
        return self.shin_radius + self.shin + self.thigh + self.torso + self.neck + self.head_radius


@dataclass(frozen=True)
class Puppet:
    """A character's whole look, the same in every frame it appears in."""

    seed: int
    body: Body
    skin: tuple[int, int, int]
    eyes: tuple[int, int, int]
    hair_style: str  # one of HAIR_STYLES
    hair: tuple[int, int, int]
    top_style: str  # one of TOP_STYLES
    top: Garment
    bottom_style: str  # one of BOTTOM_STYLES
    bottom: Garment
    skirt_length: float  # along the leg from the hip, as a fraction of the leg
    shoes: tuple[int, int, int]
    background: str  # one of BACKGROUNDS, drawn from the seed's background stream

    @classmethod
    def random(cls, seed: int) -> Puppet:
        rng = np.random.default_rng([seed, APPEARANCE_STREAM])
        if rng.random() < 0.88:
            tone = rng.uniform(0, len(SKIN_TONES) - 1)
            low, high = SKIN_TONES[int(tone)], SKIN_TONES[min(int(tone) + 1, len(SKIN_TONES) - 1)]
            skin = tuple(int(c) for c in (low + (high - low) * (tone % 1)).round())
        else:  # a fantasy creature: green, blue, purple...
            skin = _random_color(rng, saturation=(0.3, 0.7), value=(0.5, 0.95))
        if rng.random() < 0.8:
            hair = HAIR_COLORS[rng.integers(len(HAIR_COLORS))]
        else:
            hair = _random_color(rng, saturation=(0.5, 1.0), value=(0.4, 1.0))
        return cls(
            seed=seed,
            body=Body.random(rng),
            skin=skin,
            eyes=_random_color(rng, saturation=(0.3, 0.9), value=(0.05, 0.35)),
            hair_style=str(rng.choice(HAIR_STYLES, p=[0.1, 0.4, 0.35, 0.15])),
            hair=hair,
            top_style=str(rng.choice(TOP_STYLES)),
            top=Garment.random(rng),
            bottom_style=str(rng.choice(BOTTOM_STYLES, p=[0.45, 0.25, 0.3])),
            bottom=Garment.random(rng),
            skirt_length=float(rng.uniform(0.3, 0.75)),
            shoes=_random_color(rng, saturation=(0.0, 0.8), value=(0.1, 0.9)),
            background=str(rng.choice(BACKGROUNDS)),
        )


@dataclass(frozen=True, eq=False)
class Motion:
    """A dance, defined at any time: each of CHANNELS as a few sinusoids on a shared beat; and where the puppet
    stands in the frame."""

    seed: int
    offset: np.ndarray  # (channels,) raw offsets
    amplitude: np.ndarray  # (channels, NUM_WAVES)
    frequency: np.ndarray  # (channels, NUM_WAVES) Hz
    phase: np.ndarray  # (channels, NUM_WAVES) radians
    center_x: float  # where the puppet stands, in frame widths
    ground: float  # where its feet are, in frame heights
    fill: float  # its standing height, in frame heights

    @classmethod
    def random(cls, seed: int) -> Motion:
        rng = np.random.default_rng([seed, MOTION_STREAM])
        names = list(CHANNELS)
        rest, gain = np.array([CHANNELS[name][2:] for name in names]).T
        beat, energy = rng.uniform(0.35, 1.1), rng.uniform(0.4, 1.3)
        offset = rest + rng.normal(0.0, 0.6, len(names))
        amplitude = rng.uniform(0.0, 1.0, (len(names), NUM_WAVES)) * gain[:, None] * energy
        frequency = beat * rng.choice([0.25, 0.5, 1.0, 2.0], (len(names), NUM_WAVES))
        phase = rng.uniform(0.0, 2 * np.pi, (len(names), NUM_WAVES))
        # Dances are often symmetric: the left limbs repeat the right ones, in step or half a wave later.
        for group in MIRRORED:
            if rng.random() < 0.5:
                shift = rng.choice([0.0, np.pi])
                for name in group:
                    right, left = names.index(f"right_{name}"), names.index(f"left_{name}")
                    offset[left], amplitude[left], frequency[left] = offset[right], amplitude[right], frequency[right]
                    phase[left] = phase[right] + shift
        # Mostly facing the camera; some dances swing to side views, a few turn all the way round.
        turn, style = names.index("turn"), rng.choice(3, p=[0.55, 0.3, 0.15])
        offset[turn] = rng.normal(0.0, (0.05, 0.3, 0.5)[style])
        amplitude[turn] = rng.uniform(0.0, 1.0, NUM_WAVES) * (0.1, 0.4, 1.5)[style]
        frequency[turn] = beat * rng.choice([0.125, 0.25, 0.5], NUM_WAVES)
        return cls(
            seed=seed,
            offset=offset,
            amplitude=amplitude,
            frequency=frequency,
            phase=phase,
            center_x=float(rng.uniform(0.38, 0.62)),
            ground=float(rng.uniform(0.86, 0.97)),
            fill=float(rng.uniform(0.55, 0.82)),
        )

    def channels(self, times: np.ndarray) -> dict[str, np.ndarray]:
        """Each channel's value at `times` (seconds): name -> (frames,)."""
        waves = self.amplitude * np.sin(2 * np.pi * self.frequency * times[:, None, None] + self.phase)
        unit = 1 / (1 + np.exp(-(self.offset + waves.sum(axis=2))))  # (frames, channels)
        return {name: low + (high - low) * unit[:, i] for i, (name, (low, high, _, _)) in enumerate(CHANNELS.items())}


@dataclass
class PuppetClip:
    frames: np.ndarray  # (frames, height, width, 3) uint8 RGB
    skeletons: np.ndarray  # (frames, height, width, 3) uint8, DWPose style, body only
    masks: np.ndarray  # (frames, height, width) bool: the character's pixels
    poses: PoseSequence  # the body points, normalised to the frame (confidence 0: out of the frame or turned away)
    reference: np.ndarray  # (height, width, 3) uint8: the same character in another pose
    reference_mask: np.ndarray  # (height, width) bool


def render_clip(
    character_seed: int, motion_seed: int, num_frames: int, width: int, height: int, fps: float = PUPPET_FPS
) -> PuppetClip:
    """`num_frames` frames at `fps` of character `character_seed` doing dance `motion_seed`, starting at time 0. The
    reference image comes from the same dance after the clip: the most frontal of a few moments."""
    puppet, motion = Puppet.random(character_seed), Motion.random(motion_seed)
    candidates = num_frames / fps + np.array([0.5, 1.3, 2.1, 2.9])
    times = np.concatenate([np.arange(num_frames) / fps, candidates])
    placement = (motion.center_x, motion.ground, motion.fill)
    figures, cameras = _pose_figures(puppet, motion.channels(times), placement, width, height)
    chosen = num_frames + int(np.argmax([figure.facing for figure in figures[num_frames:]]))
    background = _draw_background(puppet, width, height)
    rendered = [
        _render(puppet, figures[i], background, cameras[i], width, height) for i in [*range(num_frames), chosen]
    ]
    frames, masks = zip(*rendered, strict=True)
    return _clip(puppet, figures[:num_frames], frames[:-1], masks[:-1], frames[-1], masks[-1], fps, width, height)


def render_with_poses(character_seed: int, poses: PoseSequence, width: int, height: int) -> PuppetClip:
    """Character `character_seed` following the first person of each frame of `poses` (e.g. extracted from a real
    video), drawn at `width` x `height`; its limbs join the given points, its widths and head keep the character's
    proportions. The poses' frame is scaled to cover the size and centre-cropped, as `VideoSamples` does with videos.
    The reference image shows the character standing at rest, facing the camera, where the dancer mostly is."""
    puppet = Puppet.random(character_seed)
    zoom = max(width / poses.width, height / poses.height)
    offset = np.array([width - poses.width * zoom, height - poses.height * zoom]) / 2
    bodies = []
    for frame in poses.frames:
        body = frame.people[0].body.copy() if frame.people else np.zeros((NUM_BODY, 3), np.float32)
        body[:, :2] = body[:, :2] * (poses.width * zoom, poses.height * zoom) + offset
        bodies.append(body)
    # Pixels per body height from the median shoulder-to-hip length: the puppet takes the dancer's size.
    torsos = [
        np.linalg.norm(b[NECK, :2] - b[[R_HIP, L_HIP], :2].mean(0)) for b in bodies if _seen(b, NECK, R_HIP, L_HIP)
    ]
    scale = float(np.median(torsos)) / puppet.body.torso if torsos else 0.6 * height / puppet.body.height
    figures = [_figure_from_pose(puppet, body, scale, width, height) for body in bodies]
    background = _draw_background(puppet, width, height)
    still = np.zeros(2)
    frames, masks = zip(*[_render(puppet, figure, background, still, width, height) for figure in figures], strict=True)

    rest = {name: np.array([12.0 if name.endswith("arm_raise") else 0.0]) for name in CHANNELS}
    necks = [b[NECK, 0] / width for b in bodies if _seen(b, NECK)]
    soles = [b[i, 1] / height for b in bodies for i in (R_ANKLE, L_ANKLE) if _seen(b, i)]
    placement = (
        np.median(necks) if necks else 0.5,
        min(0.98, np.median(soles) + 0.02) if soles else 0.95,
        scale * puppet.body.height / height,
    )
    (figure,), _ = _pose_figures(puppet, rest, placement, width, height)
    reference, reference_mask = _render(puppet, figure, background, still, width, height)
    return _clip(puppet, figures, frames, masks, reference, reference_mask, poses.fps, width, height)


def _clip(puppet, figures, frames, masks, reference, reference_mask, fps, width, height) -> PuppetClip:
    pose_frames = []
    for figure in figures:
        body = np.zeros((NUM_BODY, 3), np.float32)
        body[:, :2] = figure.points[:NUM_BODY] / (width, height)
        body[:, 2] = figure.visible[:NUM_BODY]
        person = Person(body, np.zeros((2, NUM_HAND, 3)), np.zeros((NUM_FACE, 3)))
        pose_frames.append(PoseFrame([person] if figure.visible.any() else [], width, height))
    return PuppetClip(
        frames=np.stack(frames),
        skeletons=np.stack([draw_pose(frame, hands=False, face=False) for frame in pose_frames]),
        masks=np.stack(masks),
        poses=PoseSequence(pose_frames, fps, width, height, backend=f"puppet {puppet.seed}"),
        reference=reference,
        reference_mask=reference_mask,
    )


# ---- posing ----


@dataclass
class _Figure:
    """One frame's posed body, ready to draw."""

    points: np.ndarray  # (NUM_POINTS, 2) pixels
    depth: np.ndarray  # (NUM_POINTS,) toward the camera, in body heights: nearer parts are drawn later
    present: np.ndarray  # (NUM_POINTS,) bool: the point exists (a given pose may lack some)
    visible: np.ndarray  # (NUM_POINTS,) bool: a detector would see it (inside the frame, not turned away)
    facing: float  # 1: facing the camera, 0: side view, -1: back to it
    head_turn: float  # where the face points on screen: -1 to the image's left, 1 to its right
    head_angle: float  # the head's tilt on screen, radians
    scale: float  # pixels per body height


def _pose_figures(
    puppet: Puppet,
    channels: dict[str, np.ndarray],
    placement: tuple[float, float, float],
    width: int,
    height: int,
) -> tuple[list[_Figure], np.ndarray]:
    """The figures of the frames of `channels`, and each frame's camera offset in pixels (frames, 2). `placement`:
    where the puppet stands (frame widths), where its feet are and its standing height (frame heights)."""
    body = puppet.body
    center_x, ground, fill = placement
    points, head = _forward_kinematics(puppet, {name: np.radians(value) for name, value in channels.items()})
    turn = _rotation(1, np.radians(channels["turn"]))
    points = np.einsum("fij,fpj->fpi", turn, points)  # (frames, points, 3)
    head = turn @ head

    # Stand on the ground: the lowest sole touches it, so bent knees lower the body.
    soles = np.maximum(points[:, [R_ANKLE, L_ANKLE], 1] + body.shin_radius, points[:, [R_TOE, L_TOE], 1]).max(1)
    scale = fill * height / body.height * np.exp(channels["zoom"])
    cameras = np.stack([channels["camera_x"] * width, channels["camera_y"] * height], axis=1)
    origin = np.stack([center_x * width + channels["sway"] * scale, np.full_like(scale, ground * height)], 1) - cameras
    standing = points[..., :2] - np.stack([np.zeros_like(soles), soles], 1)[:, None]
    screen = origin[:, None] + scale[:, None, None] * standing  # (frames, points, 2)

    inside = (screen >= 0).all(2) & (screen[..., 0] < width) & (screen[..., 1] < height)
    semi_axes = np.array([body.head_aspect, 1.0, body.head_aspect])
    normals = np.array([offset for offset, _ in FACE_POINTS.values()]) / semi_axes
    normals = np.einsum("fij,pj->fpi", head, normals / np.linalg.norm(normals, axis=1, keepdims=True))
    visible = inside.copy()
    visible[:, list(FACE_POINTS)] &= normals[..., 2] > np.array([limit for _, limit in FACE_POINTS.values()])
    forward, up = head[:, :, 2], -head[:, :, 1]  # the head's axes in camera space, (frames, 3)
    return [
        _Figure(
            points=screen[f],
            depth=points[f, :, 2],
            present=np.ones(NUM_POINTS, bool),
            visible=visible[f],
            facing=float(forward[f, 2]),
            head_turn=float(forward[f, 0]),
            head_angle=float(np.arctan2(up[f, 0], -up[f, 1])),
            scale=float(scale[f]),
        )
        for f in range(len(scale))
    ], cameras


def _forward_kinematics(puppet: Puppet, angles: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Body points (frames, NUM_POINTS, 3) before the turn, mid-hip at the origin, x to the image's right when
    facing the camera, y down, z toward the camera; and the head's rotation (frames, 3, 3)."""
    body = puppet.body
    points = np.zeros((len(angles["lean"]), NUM_POINTS, 3))
    torso = _rotation(2, angles["lean"]) @ _rotation(0, -angles["bend"])  # the torso pivots on the hips
    neck = torso @ np.array([0.0, -body.torso, 0.0])
    points[:, NECK] = neck
    for side, shoulder, elbow, wrist, hand, hip, knee, ankle, toe in SIDES:
        name = "right" if side < 0 else "left"
        points[:, shoulder] = neck + torso @ np.array([side * body.shoulder_width, 0.0, 0.0])
        upper = _limb_direction(angles[f"{name}_arm_raise"], angles[f"{name}_arm_forward"], side)
        # The elbow folds the forearm forward or, twisted, up and in toward the head; never outward.
        twist = angles[f"{name}_elbow_twist"][:, None]
        toward = np.cos(twist) * np.array([0.0, 0.0, 1.0]) + np.sin(twist) * np.array([-side, -1.0, 0.0]) / 2**0.5
        lower = _bend(upper, toward, angles[f"{name}_elbow"])
        upper, lower = np.einsum("fij,fj->fi", torso, upper), np.einsum("fij,fj->fi", torso, lower)
        points[:, elbow] = points[:, shoulder] + body.upper_arm * upper
        points[:, wrist] = points[:, elbow] + body.forearm * lower
        points[:, hand] = points[:, wrist] + body.hand * lower
        points[:, hip] = (side * body.hip_width, 0.0, 0.0)  # the legs hang from the pelvis, which stays upright
        thigh = _limb_direction(angles[f"{name}_leg_raise"], angles[f"{name}_leg_forward"], side)
        shin = _bend(thigh, np.array([0.0, 0.0, -1.0]), angles[f"{name}_knee"])  # knees fold backward
        points[:, knee] = points[:, hip] + body.thigh * thigh
        points[:, ankle] = points[:, knee] + body.shin * shin
        points[:, toe] = points[:, ankle] + body.foot * np.array([0.0, 0.35, 0.94])  # feet stay level

    tilt = torso @ _rotation(2, angles["head_roll"])
    head = tilt @ _rotation(1, angles["head_turn"])
    points[:, HEAD] = neck + tilt @ np.array([0.0, -body.neck, 0.0])
    semi_axes = body.head_radius * np.array([body.head_aspect, 1.0, body.head_aspect])
    anchors = {index: offset for index, (offset, _) in FACE_POINTS.items()}
    anchors[HAIR] = HAIR_ANCHORS.get(puppet.hair_style, (0.0, 0.0, 0.0))
    for index, offset in anchors.items():
        points[:, index] = points[:, HEAD] + head @ (np.array(offset) * semi_axes)
    return points, head


def _limb_direction(raise_: np.ndarray, forward: np.ndarray, side: float) -> np.ndarray:
    """Unit vectors (frames, 3): straight down, swung forward by `forward`, then out to `side` by `raise_`."""
    return np.stack([side * np.sin(raise_), np.cos(raise_) * np.cos(forward), np.cos(raise_) * np.sin(forward)], 1)


def _bend(direction: np.ndarray, toward: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """`direction` (frames, 3) turned by `angle` toward `toward` (its part perpendicular to `direction`)."""
    perpendicular = _perpendicular(toward, direction)
    # An arm pointing where the elbow would fold it has no bending plane: fold it upward instead.
    along = np.linalg.norm(perpendicular, axis=-1, keepdims=True) < 1e-3
    perpendicular = np.where(along, _perpendicular(np.array([0.0, -1.0, 0.0]), direction), perpendicular)
    perpendicular /= np.linalg.norm(perpendicular, axis=-1, keepdims=True).clip(1e-6)
    return np.cos(angle)[:, None] * direction + np.sin(angle)[:, None] * perpendicular


def _perpendicular(vector: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The part of `vector` perpendicular to the unit vectors `direction` (frames, 3)."""
    return vector - np.sum(vector * direction, axis=-1, keepdims=True) * direction


def _rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotations (frames, 3, 3) by `angle` about the x (0), y (1) or z (2) axis."""
    cos, sin = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    matrix = np.zeros((len(angle), 3, 3))
    matrix[:, axis, axis] = 1
    matrix[:, i, i], matrix[:, i, j], matrix[:, j, i], matrix[:, j, j] = cos, -sin, sin, cos
    return matrix


def _seen(body: np.ndarray, *indices: int) -> bool:
    return all(body[i, 2] > CONFIDENCE_THRESHOLD for i in indices)


def _figure_from_pose(puppet: Puppet, body: np.ndarray, scale: float, width: int, height: int) -> _Figure:
    """A figure on 2-D body keypoints (NUM_BODY, 3) in pixels. What a pose lacks comes from the character's
    proportions (head, hands, feet) or a guess: arms in front of the body, long hair behind it unless no face shows."""
    points = np.zeros((NUM_POINTS, 2))
    points[:NUM_BODY] = body[:, :2]
    present = np.zeros(NUM_POINTS, bool)
    present[:NUM_BODY] = body[:, 2] > CONFIDENCE_THRESHOLD
    depth = np.zeros(NUM_POINTS)
    for _, shoulder, elbow, wrist, hand, *_ in SIDES:
        depth[[shoulder, elbow, wrist, hand]] = 0.01
        if present[elbow] and present[wrist]:
            along = points[wrist] - points[elbow]
            points[hand] = points[wrist] + along / max(np.linalg.norm(along), 1e-6) * puppet.body.hand * scale
            present[hand] = True

    face = [i for i in (R_EAR, L_EAR, R_EYE, L_EYE) if present[i]]
    if face:
        points[HEAD] = points[face].mean(0)
    elif present[NOSE]:
        points[HEAD] = points[NOSE]
    else:
        points[HEAD] = points[NECK] - (0, puppet.body.neck * scale)
    present[HEAD] = bool(face) or present[NOSE] or present[NECK]
    rx, ry = puppet.body.head_radius * puppet.body.head_aspect * scale, puppet.body.head_radius * scale
    head_turn = float(np.clip((points[NOSE, 0] - points[HEAD, 0]) / rx, -1, 1)) if present[NOSE] and face else 0.0
    facing_back = not present[[NOSE, R_EYE, L_EYE]].any()
    up = points[HEAD] - points[NECK] if present[NECK] and present[HEAD] else np.array([0.0, -1.0])
    up /= max(np.linalg.norm(up), 1e-6)
    for _, *_, ankle, toe in SIDES:
        points[toe] = points[ankle] + np.array([0.8 * head_turn, 0.4]) / np.hypot(0.8 * head_turn, 0.4) * (
            puppet.body.foot * scale
        )
        present[toe] = present[ankle]
    points[MOUTH] = points[HEAD] - up * 0.5 * ry + (head_turn * 0.8 * rx, 0)
    points[HAIR] = points[HEAD] - up * HAIR_ANCHORS.get(puppet.hair_style, (0, 0, 0))[1] * ry
    present[[MOUTH, HAIR]] = present[HEAD]
    depth[HAIR] = 0.1 if facing_back else -0.1
    inside = (points >= 0).all(1) & (points[:, 0] < width) & (points[:, 1] < height)
    return _Figure(
        points=points,
        depth=depth,
        present=present,
        visible=present & inside,
        facing=(-1 if facing_back else 1) * (1 - head_turn**2) ** 0.5,
        head_turn=head_turn,
        head_angle=float(np.arctan2(up[0], -up[1])),
        scale=scale,
    )


# ---- drawing ----


class _Paint(NamedTuple):
    color: tuple[int, int, int]
    outline: tuple[int, int, int]
    tile: np.ndarray | None = None  # a pattern's period, wrapped over the part
    tile_period: float = 1.0  # the period's size on screen, pixels


def _paint(color: tuple[int, int, int], tile: np.ndarray | None = None, tile_period: float = 1.0) -> _Paint:
    return _Paint(color, tuple(c // 2 for c in color), tile, tile_period)


def _render(
    puppet: Puppet, figure: _Figure, background: np.ndarray, camera: np.ndarray, width: int, height: int
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


def _draw_figure(canvas: np.ndarray, coverage: np.ndarray, puppet: Puppet, figure: _Figure) -> None:
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


def _draw_head(canvas, coverage, puppet: Puppet, figure: _Figure, skin: _Paint, hair: _Paint, line: int) -> None:
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


def _draw_shadow(canvas: np.ndarray, puppet: Puppet, figure: _Figure) -> None:
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


def _random_color(rng: np.random.Generator, *, saturation: tuple[float, float], value: tuple[float, float]):
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
    return tuple(round(c * 255) for c in rgb)


# ---- backgrounds ----


def _draw_background(puppet: Puppet, width: int, height: int) -> np.ndarray:
    """The character's background, larger than the frame by CAMERA_MARGIN on every side."""
    margin = math.ceil(CAMERA_MARGIN * max(width, height))
    full_size = width + 2 * margin, height + 2 * margin
    width, height = (full_size[0] + 1) // 2, (full_size[1] + 1) // 2  # drawn at half size: it is smooth, and 4x faster
    rng = np.random.default_rng([puppet.seed, BACKGROUND_STREAM])
    x, y = np.meshgrid(np.linspace(0, 1, width, dtype=np.float32), np.linspace(0, 1, height, dtype=np.float32))
    a, b = (np.array(_random_color(rng, saturation=(0.1, 0.7), value=(0.3, 0.95)), np.float32) for _ in range(2))
    if puppet.background == "gradient":
        direction = rng.uniform(0, 2 * np.pi)
        t = x * np.cos(direction) + y * np.sin(direction)
        image = _mix(a, b, (t - t.min()) / max(t.max() - t.min(), 1e-6))
    elif puppet.background == "blobs":  # soft patches of colour
        grid = rng.uniform(0, 1, (int(rng.integers(2, 5)), int(rng.integers(2, 5)), 3)).astype(np.float32)
        image = a + (b - a) * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    elif puppet.background == "room":  # striped wallpaper, a planked floor, windows, doors and pictures
        horizon = rng.uniform(0.5, 0.75)
        floor = np.array(_random_color(rng, saturation=(0.1, 0.6), value=(0.2, 0.7)), np.float32)
        wall = a + (b - a) * 0.15 * (np.sin(x * 2 * np.pi * rng.integers(4, 14)) > 0)[..., None]
        planks = 1 - 0.12 * (np.sin(y * 2 * np.pi * rng.integers(10, 30) / (1 + y)) > 0.8)
        image = np.where((y < horizon)[..., None], wall, floor * (planks * (0.85 + 0.3 * y))[..., None])
        for _ in range(int(rng.integers(0, 3))):
            x0, y0 = rng.uniform(0, 0.85), rng.uniform(0.05, horizon - 0.15)
            x1, y1 = x0 + rng.uniform(0.1, 0.3), min(horizon, y0 + rng.uniform(0.1, 0.4))
            image[(x > x0) & (x < x1) & (y > y0) & (y < y1)] = _random_color(rng, saturation=(0, 0.8), value=(0.2, 1))
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
            image[shape] = _random_color(rng, saturation=(0.2, 0.6), value=(0.2, 0.7))
        image = np.where((y < horizon)[..., None], image, b * (0.8 + 0.4 * (y - horizon))[..., None])
    grain = rng.normal(0, 5, (height, width, 1)).astype(np.float32)
    return cv2.resize((image + grain).clip(0, 255).astype(np.uint8), full_size)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * np.clip(t, 0, 1)[..., None]
