"""The keypoint data model: people, frames and sequences, with a lossless JSON file format.

Coordinates are normalised to [0, 1] by the frame's width and height, so a pose can be drawn at any size; each point
carries a confidence in [0, 1], and a point that was not found has confidence 0. Body points follow the OpenPose-18
order, hands the 21-point OpenPose/MediaPipe hand, face the 68-point iBUG layout (see DESIGN.md, "Pose conventions"),
feet the 6 foot points of COCO-WholeBody. `Person.to_wholebody` and `Person.from_wholebody` convert to and from the
133-point COCO-WholeBody layout that DWPose outputs (Jin et al., ECCV 2020).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BODY_NAMES = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)
NOSE, NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = range(8)
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE, R_EYE, L_EYE, R_EAR, L_EAR = range(8, 18)
# The 17 limbs OpenPose and DWPose draw, as (parent, child): a tree rooted at the neck, parents listed first.
BODY_LIMBS = (
    (NECK, R_SHOULDER),
    (NECK, L_SHOULDER),
    (R_SHOULDER, R_ELBOW),
    (R_ELBOW, R_WRIST),
    (L_SHOULDER, L_ELBOW),
    (L_ELBOW, L_WRIST),
    (NECK, R_HIP),
    (R_HIP, R_KNEE),
    (R_KNEE, R_ANKLE),
    (NECK, L_HIP),
    (L_HIP, L_KNEE),
    (L_KNEE, L_ANKLE),
    (NECK, NOSE),
    (NOSE, R_EYE),
    (R_EYE, R_EAR),
    (NOSE, L_EYE),
    (L_EYE, L_EAR),
)
LEFT_HAND, RIGHT_HAND = 0, 1  # index into Person.hands: the person's own left and right, not the image's
# Person.feet, in COCO-WholeBody's order: the person's own left foot, then the right.
FOOT_NAMES = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
L_BIG_TOE, L_SMALL_TOE, L_HEEL, R_BIG_TOE, R_SMALL_TOE, R_HEEL = range(6)

NUM_BODY, NUM_HAND, NUM_FACE, NUM_FEET = 18, 21, 68, 6
# All of a person's points, as `Person.points()` stacks them: body, left hand, right hand, face, feet. The feet come
# last so that the older parts keep their offsets (the body is still points[:NUM_BODY]).
NUM_POINTS = NUM_BODY + 2 * NUM_HAND + NUM_FACE + NUM_FEET

# COCO-WholeBody's 133 points: 17 body (COCO order), 6 feet, 68 face, 21 left hand, 21 right hand.
NUM_WHOLEBODY = 133
# OpenPose-18 joint -> COCO body point; the neck (-1), absent from COCO, is the shoulders' midpoint.
BODY_FROM_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
COCO_LEFT_SHOULDER, COCO_RIGHT_SHOULDER = 5, 6
WHOLEBODY_FEET = slice(17, 23)
WHOLEBODY_FACE = slice(23, 91)
WHOLEBODY_LEFT_HAND = slice(91, 112)
WHOLEBODY_RIGHT_HAND = slice(112, 133)

# A point counts as seen above this confidence: DWPose's own drawing threshold, which the released Animate Anyone
# weights were trained with.
CONFIDENCE_THRESHOLD = 0.3

FORMAT_NAME = "animate-anyone-pose"
# Still version 1 with feet added: readers before the feet read each person's "body", "hands" and "face" by name and
# ignore other keys, so they still load newer files (without the feet), where a version 2 would make them refuse
# every new file; `load` reads a person without "feet" (written before the feet) as feet not found.
FORMAT_VERSION = 1


@dataclass
class Person:
    """One person's keypoints: each row is (x, y, confidence), x and y normalised to [0, 1]."""

    body: np.ndarray  # (18, 3) float32, OpenPose order
    hands: np.ndarray  # (2, 21, 3) float32, [left, right] of the person
    face: np.ndarray  # (68, 3) float32
    # (6, 3) float32, FOOT_NAMES order; not found unless a backend finds them (older files and backends have none)
    feet: np.ndarray = field(default_factory=lambda: np.zeros((NUM_FEET, 3), np.float32))

    def __post_init__(self):
        self.body = _checked(self.body, (NUM_BODY, 3), "body")
        self.hands = _checked(self.hands, (2, NUM_HAND, 3), "hands")
        self.face = _checked(self.face, (NUM_FACE, 3), "face")
        self.feet = _checked(self.feet, (NUM_FEET, 3), "feet")

    @classmethod
    def empty(cls) -> Person:
        return cls(
            body=np.zeros((NUM_BODY, 3), np.float32),
            hands=np.zeros((2, NUM_HAND, 3), np.float32),
            face=np.zeros((NUM_FACE, 3), np.float32),
            feet=np.zeros((NUM_FEET, 3), np.float32),
        )

    def points(self) -> np.ndarray:
        """All points stacked as (NUM_POINTS, 3): body, left hand, right hand, face, feet (a copy, for bulk maths)."""
        return np.concatenate([self.body, self.hands.reshape(-1, 3), self.face, self.feet])

    @classmethod
    def from_points(cls, points: np.ndarray) -> Person:
        """Inverse of `points()`."""
        hands_end = NUM_BODY + 2 * NUM_HAND
        face_end = hands_end + NUM_FACE
        return cls(
            body=points[:NUM_BODY],
            hands=points[NUM_BODY:hands_end].reshape(2, NUM_HAND, 3),
            face=points[hands_end:face_end],
            feet=points[face_end:],
        )

    def to_wholebody(self, width: int, height: int) -> np.ndarray:
        """The person's 133 COCO-WholeBody points (x, y, score) in pixels of a `width` x `height` frame: what DWPose
        outputs. The neck has no COCO point and is left out. float64, so that `from_wholebody` gets back exactly
        the same float32 values."""
        points = np.zeros((NUM_WHOLEBODY, 3))
        for joint, coco in enumerate(BODY_FROM_COCO):
            if coco >= 0:
                points[coco] = self.body[joint]
        points[WHOLEBODY_FEET] = self.feet
        points[WHOLEBODY_FACE] = self.face
        points[WHOLEBODY_LEFT_HAND] = self.hands[LEFT_HAND]
        points[WHOLEBODY_RIGHT_HAND] = self.hands[RIGHT_HAND]
        points[:, :2] *= [width, height]
        return points

    @classmethod
    def from_wholebody(cls, points: np.ndarray, width: int, height: int) -> Person:
        """A person from 133 COCO-WholeBody points (x, y, score) in pixels of a `width` x `height` frame: the inverse
        of `to_wholebody`. The neck is derived, as DWPose's OpenPose conversion does: the shoulders' midpoint, as sure
        as the less sure shoulder. Scores are clipped to [0, 1] (DWPose's SimCC peaks can pass 1)."""
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (NUM_WHOLEBODY, 3):
            raise ValueError(f"COCO-WholeBody points must have shape ({NUM_WHOLEBODY}, 3), got {points.shape}")
        normalised = np.concatenate([points[:, :2] / [width, height], np.clip(points[:, 2:], 0.0, 1.0)], axis=1)
        body = normalised[list(BODY_FROM_COCO)]
        shoulders = normalised[[COCO_LEFT_SHOULDER, COCO_RIGHT_SHOULDER]]
        body[NECK] = (*shoulders[:, :2].mean(axis=0), shoulders[:, 2].min())
        return cls(
            body=body,
            hands=np.stack([normalised[WHOLEBODY_LEFT_HAND], normalised[WHOLEBODY_RIGHT_HAND]]),
            face=normalised[WHOLEBODY_FACE],
            feet=normalised[WHOLEBODY_FEET],
        )

    def body_box(self) -> tuple[float, float, float, float] | None:
        """(x0, y0, x1, y1) of the seen body points in normalised units, or None if none is seen."""
        seen = self.body[self.body[:, 2] > CONFIDENCE_THRESHOLD]
        if len(seen) == 0:
            return None
        return float(seen[:, 0].min()), float(seen[:, 1].min()), float(seen[:, 0].max()), float(seen[:, 1].max())


@dataclass
class PoseFrame:
    """The people found in one frame of `width` x `height` pixels. After tracking, the followed person is first."""

    people: list[Person]
    width: int
    height: int


@dataclass
class PoseSequence:
    """The poses of a video, one `PoseFrame` per kept frame, at `fps` frames per second.

    `interpolated` lists the frames whose person was filled in from its neighbours (a short detection gap);
    `missing_frames` lists those where nobody was found and nothing was filled in.
    """

    frames: list[PoseFrame]
    fps: float
    width: int
    height: int
    backend: str = ""
    interpolated: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def missing_frames(self) -> list[int]:
        return [index for index, frame in enumerate(self.frames) if not frame.people]

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the sequence as JSON; written to a temporary name first, so a killed job leaves no partial file."""
        path = Path(path)
        data = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "backend": self.backend,
            "interpolated": self.interpolated,
            "frames": [_frame_to_dict(frame) for frame in self.frames],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PoseSequence:
        """Reads a file written by `save`. Raises ValueError for a file that is not a pose sequence."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path.name} is not a pose JSON file ({error}).") from error
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ValueError(f"{path.name} is not a pose sequence written by `python -m pose extract`.")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path.name} has pose format version {data.get('version')}; expected {FORMAT_VERSION}.")
        return cls(
            frames=[_frame_from_dict(frame) for frame in data["frames"]],
            fps=float(data["fps"]),
            width=int(data["width"]),
            height=int(data["height"]),
            backend=data["backend"],
            interpolated=[int(index) for index in data["interpolated"]],
        )


def _checked(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    if array.shape != shape:
        raise ValueError(f"Person.{name} must have shape {shape}, got {array.shape}")
    return array


def _frame_to_dict(frame: PoseFrame) -> dict:
    people = [
        {
            "body": _exact(person.body),
            "hands": _exact(person.hands),
            "face": _exact(person.face),
            "feet": _exact(person.feet),
        }
        for person in frame.people
    ]
    return {"width": frame.width, "height": frame.height, "people": people}


def _frame_from_dict(data: dict) -> PoseFrame:
    people = [
        Person(
            body=np.array(p["body"]),
            hands=np.array(p["hands"]),
            face=np.array(p["face"]),
            feet=np.array(p.get("feet", np.zeros((NUM_FEET, 3)))),  # files written before the feet have none
        )
        for p in data["people"]
    ]
    return PoseFrame(people=people, width=int(data["width"]), height=int(data["height"]))


def _exact(array: np.ndarray) -> list:
    """Nested lists of the shortest decimals that read back to the same float32 values (lossless, and half the
    size of printing them as float64)."""
    # numpy prints a float32 scalar as the shortest decimal that reads back to the same float32.
    flat = [float(str(value)) for value in array.ravel()]
    return np.array(flat, dtype=object).reshape(array.shape).tolist()
