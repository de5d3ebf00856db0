"""Following the main dancer, filling short gaps and smoothing, on synthetic skeletons."""

import numpy as np

from pose import Person, PoseFrame, PoseSequence, fill_gaps, follow_main_person, smooth_sequence
from pose.keypoints import L_WRIST, NECK, NOSE


def _stick_person(x: float, y: float, height: float) -> Person:
    """A standing figure with its nose at (x, y) and `height` tall (normalised units), all body points seen."""
    person = Person.empty()
    offsets = np.array(
        [
            [0, 0],
            [0, 0.15],
            [-0.1, 0.15],
            [-0.15, 0.35],
            [-0.17, 0.5],
            [0.1, 0.15],
            [0.15, 0.35],
            [0.17, 0.5],
            [-0.07, 0.55],
            [-0.07, 0.78],
            [-0.07, 1.0],
            [0.07, 0.55],
            [0.07, 0.78],
            [0.07, 1.0],
            [-0.03, -0.03],
            [0.03, -0.03],
            [-0.06, -0.02],
            [0.06, -0.02],
        ]
    )
    person.body[:, :2] = np.array([x, y]) + offsets * height
    person.body[:, 2] = 0.9
    return person


def test_the_main_dancer_is_followed_past_a_bigger_passer_by_and_list_order():
    frames = []
    for index in range(12):
        dancer = _stick_person(0.4 + 0.01 * index, 0.1, 0.6)
        bystander = _stick_person(0.9, 0.5, 0.2)
        people = [bystander, dancer] if index % 2 else [dancer, bystander]
        if index == 5:
            people.insert(0, _stick_person(0.15, 0.02, 0.95))  # walks through the shot for one frame
        frames.append(PoseFrame(people, 1080, 1920))
    followed = follow_main_person(frames, max_gap=3)
    assert all(len(frame.people) == 1 for frame in followed)
    noses = [frame.people[0].body[NOSE, 0] for frame in followed]
    np.testing.assert_allclose(noses, 0.4 + 0.01 * np.arange(12), atol=1e-6)


def test_a_dancer_who_leaves_and_returns_is_still_the_same_track():
    frames = [PoseFrame([_stick_person(0.5, 0.1, 0.6)] if i not in (4, 5) else [], 512, 512) for i in range(10)]
    frames[7].people.append(_stick_person(0.1, 0.3, 0.5))  # someone else, briefly
    followed = follow_main_person(frames, max_gap=3)
    assert [len(frame.people) for frame in followed] == [1, 1, 1, 1, 0, 0, 1, 1, 1, 1]
    assert followed[7].people[0].body[NOSE, 0] == np.float32(0.5)


def test_short_gaps_are_interpolated_and_long_ones_reported():
    frames = []
    for index in range(24):
        present = index not in (4, 5) and not 10 <= index < 20
        frames.append(PoseFrame([_stick_person(0.1 + 0.02 * index, 0.1, 0.6)] if present else [], 640, 480))
    frames[2].people[0].body[L_WRIST, 2] = 0.0  # one point lost in one frame
    sequence = fill_gaps(PoseSequence(frames, fps=24, width=640, height=480), max_gap=3)

    assert sequence.interpolated == [4, 5]
    assert sequence.missing_frames == list(range(10, 20))
    for index in (4, 5):
        np.testing.assert_allclose(
            sequence.frames[index].people[0].body[NOSE, :2], [0.1 + 0.02 * index, 0.1], atol=1e-6
        )
        assert sequence.frames[index].people[0].body[NOSE, 2] == np.float32(0.9)
    wrist = sequence.frames[2].people[0].body[L_WRIST]
    np.testing.assert_allclose(wrist[:2], _stick_person(0.14, 0.1, 0.6).body[L_WRIST, :2], atol=1e-6)
    assert wrist[2] > 0.3


def _jitter(sequence: PoseSequence) -> float:
    necks = np.array([frame.people[0].body[NECK, :2] for frame in sequence.frames])
    return float(np.abs(np.diff(necks, n=2, axis=0)).mean())


def test_smoothing_removes_jitter_but_follows_motion():
    rng = np.random.default_rng(0)
    fps, count = 30.0, 90
    true_x = 0.3 + 0.3 * np.sin(np.linspace(0, 2 * np.pi, count))  # a sway across the frame in 3 s
    frames = []
    for index in range(count):
        person = _stick_person(true_x[index], 0.1, 0.6)
        person.body[:, :2] += rng.normal(0, 0.004, size=(18, 2))
        frames.append(PoseFrame([person], 720, 1280))
    raw = PoseSequence(frames, fps=fps, width=720, height=1280)
    smoothed = smooth_sequence(raw)

    assert _jitter(smoothed) < 0.5 * _jitter(raw)
    neck_x = np.array([frame.people[0].body[NOSE, 0] for frame in smoothed.frames])
    assert np.abs(neck_x - true_x)[10:].max() < 0.03  # keeps up: under 3 % of the width behind the sway


def test_smoothing_restarts_a_point_that_comes_back_elsewhere():
    frames = [PoseFrame([_stick_person(0.2, 0.1, 0.6)], 512, 512) for _ in range(10)]
    frames[5].people[0].body[L_WRIST, 2] = 0.0
    for frame in frames[6:]:
        frame.people[0].body[L_WRIST, :2] = (0.9, 0.9)
    smoothed = smooth_sequence(PoseSequence(frames, fps=24, width=512, height=512))
    np.testing.assert_allclose(smoothed.frames[6].people[0].body[L_WRIST, :2], (0.9, 0.9))
