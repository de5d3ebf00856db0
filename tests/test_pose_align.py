"""Alignment maths on synthetic skeletons with known bone lengths."""

import numpy as np
import pytest

from pose import Person, PoseFrame, PoseSequence, align_poses
from pose.keypoints import (
    BODY_LIMBS,
    L_ANKLE,
    L_ELBOW,
    L_HEEL,
    L_KNEE,
    L_WRIST,
    LEFT_HAND,
    NECK,
    R_ANKLE,
    R_ELBOW,
    R_KNEE,
    R_WRIST,
)

DRIVING_SIZE = np.array([1080, 1920])
REFERENCE_SIZE = np.array([512, 768])
LEG_JOINTS = (R_KNEE, R_ANKLE, L_KNEE, L_ANKLE)

# A standing body in pixels, relative to the neck, OpenPose order.
BODY = np.array(
    [
        [0, -120],
        [0, 0],
        [-100, 0],
        [-120, 200],
        [-130, 380],
        [100, 0],
        [120, 200],
        [130, 380],
        [-60, 400],
        [-60, 650],
        [-60, 900],
        [60, 400],
        [60, 650],
        [60, 900],
        [-25, -140],
        [25, -140],
        [-50, -130],
        [50, -130],
    ],
    dtype=np.float64,
)


def _person(pixels: np.ndarray, size: np.ndarray) -> Person:
    person = Person.empty()
    person.body[:, :2] = pixels / size
    person.body[:, 2] = 0.9
    return person


def _driving(frames: int = 9) -> PoseSequence:
    """The body at a fixed place, the left forearm swinging through a different angle in each frame."""
    people = []
    for index in range(frames):
        pixels = BODY + [540, 600]
        angle = np.radians(20 * index)
        pixels[L_WRIST] = pixels[L_ELBOW] + 180 * np.array([np.sin(angle), np.cos(angle)])
        person = _person(pixels, DRIVING_SIZE)
        person.hands[LEFT_HAND, :, :2] = (pixels[L_WRIST] + [0, 30]) / DRIVING_SIZE
        person.hands[LEFT_HAND, :, 2] = 1.0
        person.feet[L_HEEL, :2] = (pixels[L_ANKLE] + [-20, 40]) / DRIVING_SIZE
        person.feet[L_HEEL, 2] = 1.0
        people.append(person)
    return PoseSequence([PoseFrame([p], *DRIVING_SIZE) for p in people], fps=24, width=1080, height=1920)


def _reference(leg_stretch: float = 1.5) -> tuple[PoseFrame, np.ndarray]:
    """The character: the driving body at half size, legs `leg_stretch` times longer still, neck at (256, 200)."""
    pixels = BODY * 0.5
    hip_to_foot = pixels[LEG_JOINTS, :] - pixels[[8, 8, 11, 11]]
    pixels[list(LEG_JOINTS)] = pixels[[8, 8, 11, 11]] + hip_to_foot * leg_stretch
    pixels += [256, 200]
    return PoseFrame([_person(pixels, REFERENCE_SIZE)], *REFERENCE_SIZE), pixels


def _pixels(sequence: PoseSequence, index: int) -> np.ndarray:
    return sequence.frames[index].people[0].body[:, :2] * [sequence.width, sequence.height]


def _length(pixels: np.ndarray, child: int) -> float:
    parent = next(p for p, c in BODY_LIMBS if c == child)
    return float(np.linalg.norm(pixels[child] - pixels[parent]))


def test_none_fits_the_driving_frame_inside_the_character_image():
    aligned, warnings = align_poses(_driving(), _reference()[0], mode="none")
    assert warnings == []
    assert (aligned.width, aligned.height) == (512, 768)
    assert all((frame.width, frame.height) == (512, 768) for frame in aligned.frames)
    # 1080 x 1920 into 512 x 768: scale 0.4, centred horizontally (40 px each side).
    np.testing.assert_allclose(_pixels(aligned, 0)[NECK], np.array([540, 600]) * 0.4 + [40, 0], atol=1e-3)


def test_global_scales_by_the_median_bone_ratio_and_puts_the_neck_on_the_characters():
    reference, reference_pixels = _reference()
    aligned, warnings = align_poses(_driving(), reference, mode="global")
    assert warnings == []
    for index in (0, 4):
        pixels = _pixels(aligned, index)
        np.testing.assert_allclose(pixels[NECK], reference_pixels[NECK], atol=1e-3)
        # Most bones are at half size, only the four leg bones differ: the median ratio is 0.5.
        driving = (_driving().frames[index].people[0].body[:, :2] * DRIVING_SIZE).astype(np.float64)
        np.testing.assert_allclose(pixels - pixels[NECK], 0.5 * (driving - driving[NECK]), atol=1e-2)
    hand = aligned.frames[0].people[0].hands[LEFT_HAND, 0, :2] * REFERENCE_SIZE
    np.testing.assert_allclose(hand - _pixels(aligned, 0)[L_WRIST], [0, 15], atol=1e-2)


def test_per_bone_gives_each_bone_the_characters_length_and_keeps_its_direction():
    reference, reference_pixels = _reference()
    driving = _driving()
    aligned, warnings = align_poses(driving, reference, mode="per-bone")
    assert warnings == []
    for index in range(len(driving)):
        pixels = _pixels(aligned, index)
        source = driving.frames[index].people[0].body[:, :2] * DRIVING_SIZE
        for parent, child in BODY_LIMBS:
            assert _length(pixels, child) == pytest.approx(_length(reference_pixels, child), rel=1e-3)
            direction = (pixels[child] - pixels[parent]) / _length(pixels, child)
            expected = (source[child] - source[parent]) / _length(source, child)
            np.testing.assert_allclose(direction, expected, atol=1e-3)
    # The hand rides with its (refitted) wrist at the body's overall scale.
    hand = aligned.frames[3].people[0].hands[LEFT_HAND, 0, :2] * REFERENCE_SIZE
    np.testing.assert_allclose(hand - _pixels(aligned, 3)[L_WRIST], [0, 15], atol=1e-2)
    # So does the heel with its (refitted, longer-legged) ankle.
    heel = aligned.frames[3].people[0].feet[L_HEEL, :2] * REFERENCE_SIZE
    np.testing.assert_allclose(heel - _pixels(aligned, 3)[L_ANKLE], [-10, 20], atol=1e-2)


def test_driving_proportions_come_from_the_median_not_the_first_frame():
    driving = _driving()
    first = driving.frames[0].people[0]
    elbow = first.body[L_ELBOW, :2] * DRIVING_SIZE
    first.body[L_WRIST, :2] = (elbow + (first.body[L_WRIST, :2] * DRIVING_SIZE - elbow) * 0.3) / DRIVING_SIZE
    reference, reference_pixels = _reference()
    aligned, _ = align_poses(driving, reference, mode="per-bone")
    forearm = _length(reference_pixels, L_WRIST)
    assert _length(_pixels(aligned, 5), L_WRIST) == pytest.approx(forearm, rel=1e-3)
    assert _length(_pixels(aligned, 0), L_WRIST) == pytest.approx(0.3 * forearm, rel=1e-3)


def test_hidden_and_foreshortened_character_limbs_are_warned_about():
    reference, reference_pixels = _reference(leg_stretch=1.0)
    character = reference.people[0]
    character.body[[R_KNEE, R_ANKLE], 2] = 0.0  # e.g. behind a table
    elbow = reference_pixels[R_ELBOW]
    character.body[R_WRIST, :2] = (elbow + (reference_pixels[R_WRIST] - elbow) * 0.3) / REFERENCE_SIZE
    aligned, warnings = align_poses(_driving(), reference, mode="per-bone")

    assert len(warnings) == 2
    assert "right thigh" in warnings[0] and "right shin" in warnings[0]
    assert "right forearm" in warnings[1] and "foreshortened" in warnings[1]
    # Both fall back to the overall scale (0.5) instead of the character's measurement.
    pixels = _pixels(aligned, 2)
    assert _length(pixels, R_WRIST) == pytest.approx(0.5 * _length(BODY, R_WRIST), rel=1e-3)
    assert _length(pixels, R_ANKLE) == pytest.approx(0.5 * _length(BODY, R_ANKLE), rel=1e-3)


def test_a_character_image_without_a_person_falls_back_to_fitting_the_frame():
    empty = PoseFrame([], *REFERENCE_SIZE)
    aligned, warnings = align_poses(_driving(), empty, mode="per-bone")
    assert len(warnings) == 1 and "No person was found in the character image" in warnings[0]
    fitted, _ = align_poses(_driving(), empty, mode="none")
    np.testing.assert_array_equal(_pixels(aligned, 3), _pixels(fitted, 3))


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="per-bone"):
        align_poses(_driving(), _reference()[0], mode="stretch")


def test_a_half_length_photo_gets_one_warning_about_its_missing_legs(media_dir):
    """skimage's astronaut (a real photo, cut off at the waist) driven by the real dance: one sentence says the legs
    are not in the picture, instead of listing each missing bone; a full-body character gets no such warning."""
    import skimage.data

    from pose import detect_image, extract_poses, read_image

    dance = extract_poses(media_dir / "hero_dance.mp4", backend="mediapipe", hands=False, face=False, max_frames=12)
    astronaut = detect_image(skimage.data.astronaut(), "mediapipe", hands=False, face=False)
    warnings = align_poses(dance, astronaut, "global")[1]
    assert any(warning.startswith("The character image shows no legs (a half-length picture?)") for warning in warnings)
    assert not any("thigh" in warning or "shin" in warning for warning in warnings)
    hero = detect_image(read_image(media_dir / "ref_hero.png"), "mediapipe", hands=False, face=False)
    assert not any("no legs" in warning for warning in align_poses(dance, hero, "global")[1])
