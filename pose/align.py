"""Fitting the driving skeleton to the character: the dancer's motion, the character's proportions and placement.

The driving proportions are the median bone lengths over all frames where a bone is clearly seen, not those of
frame 0 as in MusePose's alignment: one frame with a bent arm or a turned torso would skew every frame after it.

Modes:
- `none`: the driving frame is fitted inside the character image (uniform scale, centred), the body unchanged.
- `global`: one scale and offset, so the driving body's size and neck position match the character's.
- `per-bone`: each bone keeps its direction in every frame but gets the character's length (relative to the
  dancer's median); hands and face ride along with the wrists and the nose.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from .keypoints import (
    BODY_LIMBS,
    CONFIDENCE_THRESHOLD,
    L_ANKLE,
    L_BIG_TOE,
    L_EAR,
    L_ELBOW,
    L_EYE,
    L_HEEL,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    LEFT_HAND,
    NECK,
    NOSE,
    R_ANKLE,
    R_BIG_TOE,
    R_EAR,
    R_ELBOW,
    R_EYE,
    R_HEEL,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
    RIGHT_HAND,
    Person,
    PoseFrame,
    PoseSequence,
)

logger = logging.getLogger(__name__)

ALIGN_MODES = ("none", "global", "per-bone")
# Bones count as measured above this confidence, stricter than drawing's threshold: proportions need sure points.
MEASURE_CONFIDENCE = 0.5
MIN_MEASURED_FRAMES = 3
# A character's bone shorter than this share of the length the overall scale predicts is taken as foreshortened.
FORESHORTENED = 0.6
BONE_NAMES = {  # each bone named by its child joint in BODY_LIMBS
    R_SHOULDER: "right shoulder",
    R_ELBOW: "right upper arm",
    R_WRIST: "right forearm",
    L_SHOULDER: "left shoulder",
    L_ELBOW: "left upper arm",
    L_WRIST: "left forearm",
    R_HIP: "right side of the torso",
    R_KNEE: "right thigh",
    R_ANKLE: "right shin",
    L_HIP: "left side of the torso",
    L_KNEE: "left thigh",
    L_ANKLE: "left shin",
    NOSE: "neck",
    R_EYE: "right eye",
    R_EAR: "right ear",
    L_EYE: "left eye",
    L_EAR: "left ear",
}
LEG_JOINTS = (R_KNEE, R_ANKLE, L_KNEE, L_ANKLE)  # the thighs and shins, named by their child joints
# Bones ending at the eyes and ears: tiny and noisy, so kept out of the body's overall scale.
HEAD_JOINTS = (R_EYE, R_EAR, L_EYE, L_EAR)
# The limbs (bones named by their child joint) whose absence or foreshortening in the character image is worth a
# warning: head bones come and go with every turn of the head, and their fallback is harmless.
WARNED_LIMBS = (
    R_SHOULDER,
    R_ELBOW,
    R_WRIST,
    L_SHOULDER,
    L_ELBOW,
    L_WRIST,
    R_HIP,
    R_KNEE,
    R_ANKLE,
    L_HIP,
    L_KNEE,
    L_ANKLE,
)


def align_poses(sequence: PoseSequence, reference: PoseFrame, mode: str = "global") -> tuple[PoseSequence, list[str]]:
    """The driving `sequence` refitted to the character in `reference` (its detected pose) and expressed in the
    reference image's size, plus warnings for the user (also logged) about what could not be fitted well."""
    if mode not in ALIGN_MODES:
        raise ValueError(f"Unknown alignment mode {mode!r}; choose one of {', '.join(ALIGN_MODES)}.")
    to_pixels = np.array([sequence.width, sequence.height], dtype=np.float32)
    ref_size = np.array([reference.width, reference.height], dtype=np.float32)
    # The `none` fit: the whole driving frame inside the reference image, uniformly scaled and centred.
    fit_scale = float(min(ref_size / to_pixels))
    fit_offset = (ref_size - fit_scale * to_pixels) / 2
    character = max(reference.people, key=_height, default=None)
    dancer_seen = any(frame.people for frame in sequence.frames)

    warnings: list[str] = []
    fit = None
    if mode != "none" and dancer_seen:
        if character is None:
            warnings.append("No person was found in the character image, so the motion is not fitted to its body.")
        else:
            fit = _fit_bones(sequence, character, to_pixels, ref_size, warnings)
    if fit is None:
        frames = [_transform_people(frame, fit_scale, fit_offset, to_pixels, ref_size) for frame in sequence.frames]
    elif mode == "global":
        frames = [_transform_people(frame, fit.scale, fit.offset, to_pixels, ref_size) for frame in sequence.frames]
    else:
        frames = [_refit_people(frame, fit, to_pixels, ref_size) for frame in sequence.frames]
    for warning in warnings:
        logger.warning(warning)
    aligned_frames = [PoseFrame(people=people, width=reference.width, height=reference.height) for people in frames]
    return replace(sequence, frames=aligned_frames, width=reference.width, height=reference.height), warnings


@dataclass
class _BoneFit:
    ratios: dict[int, float]  # character length / dancer's median length, per bone keyed by its child joint
    scale: float  # the body's overall ratio (median of the bones')
    head_scale: float  # the face's ratio (from the eye bones)
    offset: np.ndarray  # pixel offset that puts the dancer's median neck on the character's neck


def _fit_bones(
    sequence: PoseSequence, character: Person, to_pixels: np.ndarray, ref_size: np.ndarray, warnings: list[str]
) -> _BoneFit | None:
    """How the dancer's bones scale onto the character's; None (with a warning) if the character can't be measured."""
    driving_lengths, driving_neck = _driving_proportions(sequence, to_pixels)
    character_points = character.body[:, :2] * ref_size
    character_seen = character.body[:, 2] > MEASURE_CONFIDENCE
    ratios, hidden = {}, []
    for parent, child in BODY_LIMBS:
        if child not in driving_lengths:
            continue
        if character_seen[parent] and character_seen[child]:
            length = float(np.linalg.norm(character_points[child] - character_points[parent]))
            ratios[child] = length / driving_lengths[child]
        elif child in WARNED_LIMBS:
            hidden.append(BONE_NAMES[child])
    if not ratios or not character_seen[NECK]:
        warnings.append(
            "The character's body is too hidden to measure (its neck or every bone is missing), so the motion is "
            "only fitted inside the image. Use a character image that shows the head and shoulders at least."
        )
        return None
    body_ratios = [ratio for child, ratio in ratios.items() if child not in HEAD_JOINTS]
    scale = float(np.median(body_ratios or list(ratios.values())))
    legs = [BONE_NAMES[joint] for joint in LEG_JOINTS if joint in driving_lengths]
    if legs and set(legs) <= set(hidden):
        warnings.append(
            "The character image shows no legs (a half-length picture?), but the dancer's legs move: they are drawn "
            "at the body's scale and may run out of the picture, and the model has to invent them. A full-body "
            "character image works best."
        )
        hidden = [bone for bone in hidden if bone not in legs]
    if hidden:
        warnings.append(
            f"The character image does not show its {', '.join(hidden)}; "
            "the fit uses the bones it shows, and the hidden ones follow the overall scale."
        )
    foreshortened = [child for child, ratio in ratios.items() if ratio < FORESHORTENED * scale]
    warned = [BONE_NAMES[child] for child in foreshortened if child in WARNED_LIMBS]
    if warned:
        warnings.append(
            f"In the character image, the {', '.join(warned)} {'is' if len(warned) == 1 else 'are'} much shorter "
            "than the body's scale predicts (foreshortened or bent), so the overall scale is used instead. "
            "A straight, front-facing character image fits best."
        )
    for child in foreshortened:
        ratios[child] = scale
    eyes = [ratios[joint] for joint in (R_EYE, L_EYE) if joint in ratios]
    return _BoneFit(
        ratios=ratios,
        scale=scale,
        head_scale=float(np.median(eyes)) if eyes else scale,
        offset=character_points[NECK] - scale * driving_neck,
    )


def _driving_proportions(sequence: PoseSequence, to_pixels: np.ndarray) -> tuple[dict[int, float], np.ndarray]:
    """Median length (pixels) of each bone, keyed by its child joint, over the frames where it is clearly seen, and
    the median neck position."""
    bodies = np.stack([frame.people[0].body for frame in sequence.frames if frame.people])  # (frames, 18, 3)
    points = bodies[..., :2] * to_pixels
    seen = bodies[..., 2] > MEASURE_CONFIDENCE
    lengths = {}
    for parent, child in BODY_LIMBS:
        both = seen[:, parent] & seen[:, child]
        if both.sum() >= MIN_MEASURED_FRAMES:
            lengths[child] = float(np.median(np.linalg.norm(points[both, child] - points[both, parent], axis=1)))
    neck_seen = bodies[:, NECK, 2] > CONFIDENCE_THRESHOLD
    neck = np.median(points[neck_seen, NECK], axis=0) if neck_seen.any() else to_pixels / 2
    return lengths, neck


def _transform_people(
    frame: PoseFrame, scale: float, offset: np.ndarray, to_pixels: np.ndarray, ref_size: np.ndarray
) -> list[Person]:
    """Every point mapped by pixel -> scale * pixel + offset, renormalised to the reference size."""
    people = []
    for person in frame.people:
        points = person.points()
        points[:, :2] = (points[:, :2] * to_pixels * scale + offset) / ref_size
        people.append(Person.from_points(points))
    return people


def _refit_people(frame: PoseFrame, fit: _BoneFit, to_pixels: np.ndarray, ref_size: np.ndarray) -> list[Person]:
    """The `per-bone` fit of the frame's person: bone directions from the frame, lengths from the fit."""
    if not frame.people:
        return []
    person = frame.people[0]
    body = person.body[:, :2] * to_pixels
    fitted = fit.scale * body + fit.offset  # the global fit, kept for the neck and for points without a seen parent
    seen = person.body[:, 2] > CONFIDENCE_THRESHOLD
    for parent, child in BODY_LIMBS:  # parents come first, so each bone hangs off its refitted parent
        if seen[parent] and seen[child]:
            fitted[child] = fitted[parent] + fit.ratios.get(child, fit.scale) * (body[child] - body[parent])

    refit = Person.empty()
    refit.body[:] = person.body
    refit.body[:, :2] = fitted / ref_size
    # Hands keep the body's overall size and follow their wrist; the face takes the head's size and follows the nose.
    for side, wrist in ((LEFT_HAND, L_WRIST), (RIGHT_HAND, R_WRIST)):
        hand = person.hands[side]
        refit.hands[side] = hand
        refit.hands[side, :, :2] = (fit.scale * (hand[:, :2] * to_pixels - body[wrist]) + fitted[wrist]) / ref_size
    refit.face[:] = person.face
    refit.face[:, :2] = (fit.head_scale * (person.face[:, :2] * to_pixels - body[NOSE]) + fitted[NOSE]) / ref_size
    # Feet, like hands, keep the body's size and follow their ankle.
    refit.feet[:] = person.feet
    for first, last, ankle in ((L_BIG_TOE, L_HEEL, L_ANKLE), (R_BIG_TOE, R_HEEL, R_ANKLE)):
        foot = person.feet[first : last + 1, :2] * to_pixels
        refit.feet[first : last + 1, :2] = (fit.scale * (foot - body[ankle]) + fitted[ankle]) / ref_size
    return [refit]


def _height(person: Person) -> float:
    box = person.body_box()
    return 0.0 if box is None else box[3] - box[1]
