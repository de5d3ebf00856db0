"""The keypoint data model and its JSON file format."""

import json

import numpy as np
import pytest

from pose import Person, PoseFrame, PoseSequence


def _random_person(rng: np.random.Generator) -> Person:
    return Person(
        body=rng.random((18, 3), dtype=np.float32),
        hands=rng.random((2, 21, 3), dtype=np.float32),
        face=rng.random((68, 3), dtype=np.float32),
    )


def test_json_round_trip_is_lossless(tmp_path):
    rng = np.random.default_rng(0)
    person = _random_person(rng)
    # Values that a decimal round trip gets wrong if it is careless about float32.
    person.body[0] = (np.float32(1 / 3), np.float32(1e-8), np.nextafter(np.float32(1), np.float32(0)))
    frames = [
        PoseFrame([person, _random_person(rng)], 1080, 1920),
        PoseFrame([], 1080, 1920),
        PoseFrame([_random_person(rng)], 540, 960),
    ]
    sequence = PoseSequence(frames, fps=30000 / 1001, width=1080, height=1920, backend="dwpose", interpolated=[2])
    path = sequence.save(tmp_path / "poses.json")
    loaded = PoseSequence.load(path)

    assert loaded.fps == sequence.fps and (loaded.width, loaded.height) == (1080, 1920)
    assert loaded.backend == "dwpose" and loaded.interpolated == [2] and loaded.missing_frames == [1]
    assert [(f.width, f.height, len(f.people)) for f in loaded.frames] == [
        (1080, 1920, 2),
        (1080, 1920, 0),
        (540, 960, 1),
    ]
    for original, copy in zip(
        [p for f in frames for p in f.people], [p for f in loaded.frames for p in f.people], strict=True
    ):
        for part in ("body", "hands", "face"):
            assert getattr(copy, part).dtype == np.float32
            np.testing.assert_array_equal(getattr(copy, part), getattr(original, part))
    assert not list(tmp_path.glob(".*partial*"))


def test_loading_something_else_is_a_clear_error(tmp_path):
    not_json = tmp_path / "video.json"
    not_json.write_bytes(b"\x00\x01 not json")
    with pytest.raises(ValueError, match="not a pose JSON file"):
        PoseSequence.load(not_json)
    other_json = tmp_path / "other.json"
    other_json.write_text(json.dumps({"frames": []}))
    with pytest.raises(ValueError, match="not a pose sequence"):
        PoseSequence.load(other_json)
    sequence = PoseSequence([PoseFrame([], 64, 64)], fps=24, width=64, height=64)
    data = json.loads(sequence.save(tmp_path / "poses.json").read_text())
    data["version"] = 99
    (tmp_path / "future.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="version 99"):
        PoseSequence.load(tmp_path / "future.json")


def test_person_arrays_are_checked():
    with pytest.raises(ValueError, match=r"body must have shape \(18, 3\)"):
        Person(body=np.zeros((17, 3)), hands=np.zeros((2, 21, 3)), face=np.zeros((68, 3)))
    person = Person(body=np.zeros((18, 3)), hands=np.zeros((2, 21, 3)), face=np.zeros((68, 3)))
    assert person.body.dtype == np.float32
    assert Person.from_points(person.points()).hands.shape == (2, 21, 3)
