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
2-D by `animate.training.puppet_drawing`, back to front: limbs as tapered capsules, torso, skirt and head as polygons,
each with a dark outline that shows the joints, clothing patterns laid along each part so they move with it. The
skeleton is drawn by `pose.draw_pose` from the projected joints (body only: puppets have no fingers or face
landmarks), so it lies exactly on the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from animate.training.puppet_drawing import (
    HAIR,
    HAIR_ANCHORS,
    HEAD,
    L_TOE,
    MOUTH,
    NUM_POINTS,
    R_TOE,
    SIDES,
    Figure,
    draw_background,
    random_color,
    render_figure,
)
from pose.draw import draw_pose
from pose.keypoints import (
    CONFIDENCE_THRESHOLD,
    L_ANKLE,
    L_EAR,
    L_EYE,
    L_HIP,
    NECK,
    NOSE,
    NUM_BODY,
    NUM_FACE,
    NUM_HAND,
    R_ANKLE,
    R_EAR,
    R_EYE,
    R_HIP,
    Person,
    PoseFrame,
    PoseSequence,
)

PUPPET_FPS = 24.0
SPLITS = {"train": range(0, 2**31), "heldout": range(2**31, 2**32)}
APPEARANCE_STREAM, MOTION_STREAM, BACKGROUND_STREAM = 1, 2, 3  # the random streams a seed feeds

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
        color = random_color(rng, saturation=(0.2, 1.0), value=(0.25, 0.95))
        if rng.random() < 0.5:
            second = (245, 245, 240) if sum(color) < 380 else (25, 25, 30)
        else:
            second = random_color(rng, saturation=(0.2, 1.0), value=(0.2, 1.0))
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
            skin = random_color(rng, saturation=(0.3, 0.7), value=(0.5, 0.95))
        if rng.random() < 0.8:
            hair = HAIR_COLORS[rng.integers(len(HAIR_COLORS))]
        else:
            hair = random_color(rng, saturation=(0.5, 1.0), value=(0.4, 1.0))
        return cls(
            seed=seed,
            body=Body.random(rng),
            skin=skin,
            eyes=random_color(rng, saturation=(0.3, 0.9), value=(0.05, 0.35)),
            hair_style=str(rng.choice(HAIR_STYLES, p=[0.1, 0.4, 0.35, 0.15])),
            hair=hair,
            top_style=str(rng.choice(TOP_STYLES)),
            top=Garment.random(rng),
            bottom_style=str(rng.choice(BOTTOM_STYLES, p=[0.45, 0.25, 0.3])),
            bottom=Garment.random(rng),
            skirt_length=float(rng.uniform(0.3, 0.75)),
            shoes=random_color(rng, saturation=(0.0, 0.8), value=(0.1, 0.9)),
            background=str(rng.choice(BACKGROUNDS)),
        )

    def draw_background(self, width: int, height: int) -> np.ndarray:
        """This character's background, from the seed's own stream, larger than the frame by CAMERA_MARGIN."""
        rng = np.random.default_rng([self.seed, BACKGROUND_STREAM])
        return draw_background(self.background, rng, width, height)


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
    background = puppet.draw_background(width, height)
    rendered = [
        render_figure(puppet, figures[i], background, cameras[i], width, height) for i in [*range(num_frames), chosen]
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
    background = puppet.draw_background(width, height)
    still = np.zeros(2)
    frames, masks = zip(
        *[render_figure(puppet, figure, background, still, width, height) for figure in figures], strict=True
    )

    rest = {name: np.array([12.0 if name.endswith("arm_raise") else 0.0]) for name in CHANNELS}
    necks = [b[NECK, 0] / width for b in bodies if _seen(b, NECK)]
    soles = [b[i, 1] / height for b in bodies for i in (R_ANKLE, L_ANKLE) if _seen(b, i)]
    placement = (
        np.median(necks) if necks else 0.5,
        min(0.98, np.median(soles) + 0.02) if soles else 0.95,
        scale * puppet.body.height / height,
    )
    (figure,), _ = _pose_figures(puppet, rest, placement, width, height)
    reference, reference_mask = render_figure(puppet, figure, background, still, width, height)
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


def _pose_figures(
    puppet: Puppet,
    channels: dict[str, np.ndarray],
    placement: tuple[float, float, float],
    width: int,
    height: int,
) -> tuple[list[Figure], np.ndarray]:
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
        Figure(
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


def _figure_from_pose(puppet: Puppet, body: np.ndarray, scale: float, width: int, height: int) -> Figure:
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
    return Figure(
        points=points,
        depth=depth,
        present=present,
        visible=present & inside,
        facing=(-1 if facing_back else 1) * (1 - head_turn**2) ** 0.5,
        head_turn=head_turn,
        head_angle=float(np.arctan2(up[0], -up[1])),
        scale=scale,
    )
