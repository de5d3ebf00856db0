"""Feet in the keypoint model: COCO-WholeBody conversion, the JSON format before and after them, and the bulk maths
(gap filling, smoothing, alignment) that must carry them along with the body."""

import json

import numpy as np
import pytest

from pose import Person, PoseFrame, PoseSequence, align_poses, fill_gaps, smooth_sequence
from pose.keypoints import L_ANKLE, L_BIG_TOE, L_SHOULDER, NECK, R_ANKLE, R_HEEL, R_SHOULDER, RIGHT_HAND


def _random_person(rng: np.random.Generator) -> Person:
    return Person(
        body=rng.random((18, 3), dtype=np.float32),
        hands=rng.random((2, 21, 3), dtype=np.float32),
        face=rng.random((68, 3), dtype=np.float32),
        feet=rng.random((6, 3), dtype=np.float32),
    )


def test_wholebody_round_trip_is_exact_and_in_coco_order():
    person = _random_person(np.random.default_rng(0))
    points = person.to_wholebody(640, 480)

    assert points.shape == (133, 3)
    # COCO body 5 and 6 are the left and right shoulders, 15 and 16 the ankles; then feet, face, left, right hand.
    np.testing.assert_allclose(points[5], person.body[L_SHOULDER] * [640, 480, 1], rtol=1e-6)
    np.testing.assert_allclose(points[6], person.body[R_SHOULDER] * [640, 480, 1], rtol=1e-6)
    np.testing.assert_allclose(points[16], person.body[R_ANKLE] * [640, 480, 1], rtol=1e-6)
    np.testing.assert_allclose(points[17], person.feet[L_BIG_TOE] * [640, 480, 1], rtol=1e-6)
    np.testing.assert_allclose(points[22], person.feet[R_HEEL] * [640, 480, 1], rtol=1e-6)
    np.testing.assert_allclose(points[23], person.face[0] * [640, 480, 1], rtol=1e-6)
    np.testing.assert_allclose(points[132], person.hands[RIGHT_HAND, 20] * [640, 480, 1], rtol=1e-6)

    back = Person.from_wholebody(points, 640, 480)
    not_neck = np.arange(18) != NECK
    np.testing.assert_array_equal(back.body[not_neck], person.body[not_neck])
    for part in ("hands", "face", "feet"):
        assert getattr(back, part).dtype == np.float32
        np.testing.assert_array_equal(getattr(back, part), getattr(person, part))
    # COCO has no neck: it comes back as the shoulders' midpoint, as sure as the less sure shoulder.
    shoulders = person.body[[L_SHOULDER, R_SHOULDER]]
    np.testing.assert_allclose(back.body[NECK, :2], shoulders[:, :2].mean(axis=0), rtol=1e-6)
    assert back.body[NECK, 2] == shoulders[:, 2].min()


def test_wholebody_scores_are_clipped_and_the_shape_is_checked():
    points = np.zeros((133, 3))
    points[17, 2] = 1.3  # DWPose's SimCC peaks can pass 1
    assert Person.from_wholebody(points, 100, 100).feet[0, 2] == 1.0
    with pytest.raises(ValueError, match=r"COCO-WholeBody points must have shape \(133, 3\), got \(17, 3\)"):
        Person.from_wholebody(np.zeros((17, 3)), 100, 100)


def test_feet_default_to_not_found_and_are_checked():
    person = Person(body=np.zeros((18, 3)), hands=np.zeros((2, 21, 3)), face=np.zeros((68, 3)))
    assert person.feet.shape == (6, 3) and person.feet.dtype == np.float32 and not person.feet.any()
    assert not Person.empty().feet.any()
    with pytest.raises(ValueError, match=r"feet must have shape \(6, 3\)"):
        Person(body=np.zeros((18, 3)), hands=np.zeros((2, 21, 3)), face=np.zeros((68, 3)), feet=np.zeros((4, 3)))
    with_feet = _random_person(np.random.default_rng(1))
    np.testing.assert_array_equal(Person.from_points(with_feet.points()).feet, with_feet.feet)


def test_a_file_written_before_the_feet_loads_with_feet_not_found(tmp_path):
    body = np.full((18, 3), 0.5)
    old = {  # what `save` wrote before the feet: version 1, no "feet" key
        "format": "animate-anyone-pose",
        "version": 1,
        "fps": 24.0,
        "width": 64,
        "height": 96,
        "backend": "mediapipe",
        "interpolated": [],
        "frames": [
            {
                "width": 64,
                "height": 96,
                "people": [{"body": body.tolist(), "hands": np.zeros((2, 21, 3)).tolist(), "face": [[0, 0, 0]] * 68}],
            }
        ],
    }
    (tmp_path / "old.json").write_text(json.dumps(old))
    person = PoseSequence.load(tmp_path / "old.json").frames[0].people[0]
    np.testing.assert_array_equal(person.body, body)
    assert person.feet.shape == (6, 3) and not person.feet.any()


def test_feet_round_trip_losslessly_in_a_version_1_file(tmp_path):
    rng = np.random.default_rng(2)
    person = _random_person(rng)
    person.feet[0] = (np.float32(1 / 3), np.float32(1e-8), np.nextafter(np.float32(1), np.float32(0)))
    sequence = PoseSequence([PoseFrame([person, _random_person(rng)], 640, 480)], fps=25, width=640, height=480)
    path = sequence.save(tmp_path / "poses.json")

    data = json.loads(path.read_text())
    assert data["version"] == 1 and len(data["frames"][0]["people"][0]["feet"]) == 6
    loaded = PoseSequence.load(path).frames[0].people
    for original, copy in zip(sequence.frames[0].people, loaded, strict=True):
        assert copy.feet.dtype == np.float32
        np.testing.assert_array_equal(copy.feet, original.feet)


def _walking(frames: int) -> PoseSequence:
    """A figure whose ankles and feet move right by 0.01 per frame, with a little jitter on the feet."""
    rng = np.random.default_rng(3)
    people = []
    for index in range(frames):
        person = Person.empty()
        person.body[:, :2] = rng.uniform(0.3, 0.7, size=(18, 2))
        person.body[:, 2] = 0.9
        person.body[L_ANKLE, :2] = (0.4 + 0.01 * index, 0.8)
        person.body[R_ANKLE, :2] = (0.6 + 0.01 * index, 0.8)
        person.feet[:, 0] = np.repeat(person.body[[L_ANKLE, R_ANKLE], 0], 3) + rng.normal(0, 0.002, 6)
        person.feet[:, 1] = 0.85
        person.feet[:, 2] = 0.9
        people.append(person)
    return PoseSequence([PoseFrame([person], 100, 100) for person in people], fps=25, width=100, height=100)


def test_feet_are_filled_and_smoothed_with_the_body():
    sequence = _walking(9)
    sequence.frames[4].people[0].feet[:] = 0.0  # the detector lost the feet for one frame
    filled = fill_gaps(sequence, max_gap=2).frames[4].people[0]
    neighbours = (sequence.frames[3].people[0].feet + sequence.frames[5].people[0].feet) / 2
    np.testing.assert_allclose(filled.feet[:, :2], neighbours[:, :2], atol=1e-6)
    assert (filled.feet[:, 2] > 0.3).all()

    raw = np.stack([frame.people[0].feet[:, 0] for frame in sequence.frames])
    smoothed = np.stack([frame.people[0].feet[:, 0] for frame in smooth_sequence(sequence).frames])
    assert not np.array_equal(smoothed, raw)  # the feet went through the filter too
    # Jitter, the change from one frame to the next beyond the steady walk, shrinks.
    assert np.abs(np.diff(smoothed, 2, axis=0)).mean() < np.abs(np.diff(raw, 2, axis=0)).mean()


def test_global_alignment_moves_the_feet_with_the_ankles():
    sequence = _walking(5)
    reference = PoseFrame([sequence.frames[0].people[0]], 200, 300)
    aligned, _ = align_poses(sequence, reference, mode="global")
    for before, after in zip(sequence.frames, aligned.frames, strict=True):
        before, after = before.people[0], after.people[0]
        # One scale and offset for every point, so the foot keeps its offset from its ankle, scaled.
        ankle_to_toe_before = (before.feet[L_BIG_TOE, :2] - before.body[L_ANKLE, :2]) * [100, 100]
        ankle_to_toe_after = (after.feet[L_BIG_TOE, :2] - after.body[L_ANKLE, :2]) * [200, 300]
        leg_before = np.linalg.norm((before.body[L_ANKLE, :2] - before.body[R_ANKLE, :2]) * [100, 100])
        leg_after = np.linalg.norm((after.body[L_ANKLE, :2] - after.body[R_ANKLE, :2]) * [200, 300])
        np.testing.assert_allclose(ankle_to_toe_after, ankle_to_toe_before * leg_after / leg_before, rtol=1e-4)
        np.testing.assert_array_equal(after.feet[:, 2], before.feet[:, 2])
